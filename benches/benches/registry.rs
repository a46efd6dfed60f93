//! Push and pull a 200 MB image through a loopback `docker-registry`, with kiln and
//! with `skopeo copy`, in the same run, and print the throughput of each.
//!
//! The image (four 50 MB layers of incompressible bytes, stored gzip so no tool
//! recompresses them) is generated once under the target directory. Every round
//! starts a fresh registry (so neither tool can skip or mount a blob it has seen
//! before: skopeo remembers blob locations across runs) and pulls into fresh
//! directories. `KILN_BENCH_ROUNDS` sets the number of rounds (default 2); the table
//! shows the best round. `KILN_BENCH_CHUNK_MB` makes kiln upload in `PATCH` chunks of
//! that size instead of one streamed `PATCH` per blob.
//!
//! Run with `cargo bench -p kiln-benches --bench registry`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_registry::digest::sha256_digest;
use kiln_registry::manifest::media_types;
use kiln_registry::{
    BlobStore, ClientConfig, OciDir, PullOptions, PushOptions, RawManifest, Reference,
    RegistryClient,
};
use kiln_testimages::registry::{Mode, TestRegistry};

const LAYERS: usize = 4;
const LAYER_BYTES: usize = 50 * 1024 * 1024;
const IMAGE_NAME: &str = "bench";

fn noise(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// The benchmark image as an OCI layout, built on first use.
fn image_layout() -> (PathBuf, RawManifest, u64) {
    let root = PathBuf::from(option_env!("CARGO_TARGET_TMPDIR").unwrap_or("/tmp"))
        .join("kiln-registry-bench-image");
    let store = OciDir::create(&root).expect("create the benchmark layout");
    if let Ok(descriptor) = store.resolve(Some(IMAGE_NAME)) {
        let bytes = store
            .read_all(descriptor.digest())
            .expect("read the benchmark manifest");
        let manifest = RawManifest::new(bytes, Some(media_types::OCI_MANIFEST));
        let total = total_size(&manifest);
        return (root, manifest, total);
    }
    eprintln!(
        "generating the {} MB benchmark image in {}",
        (LAYERS * LAYER_BYTES) >> 20,
        root.display()
    );
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for index in 0..LAYERS {
        let mut tar = tar::Builder::new(Vec::new());
        let data = noise(index as u64 + 1, LAYER_BYTES);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        tar.append_data(&mut header, format!("data/layer-{index}.bin"), &data[..])
            .unwrap();
        let tar = tar.into_inner().unwrap();
        diff_ids.push(sha256_digest(&tar).to_string());
        // Stored (level 0) gzip: valid and incompressible, so no tool recompresses it.
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        gzip.write_all(&tar).unwrap();
        let blob = gzip.finish().unwrap();
        let digest = sha256_digest(&blob);
        store.put(&digest, &blob).unwrap();
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest.to_string(),
            "size": blob.len(),
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = sha256_digest(&config);
    store.put(&config_digest, &config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let manifest = RawManifest::new(manifest, Some(media_types::OCI_MANIFEST));
    store.put(&manifest.digest, &manifest.bytes).unwrap();
    store.set_ref(IMAGE_NAME, &manifest.descriptor()).unwrap();
    let total = total_size(&manifest);
    (root, manifest, total)
}

fn total_size(manifest: &RawManifest) -> u64 {
    let image = manifest.image_manifest("bench").unwrap();
    image.config().size() + image.layers().iter().map(|l| l.size()).sum::<u64>()
}

fn skopeo(args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as a test: skip
    // the heavy work there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("registry bench: run with `cargo bench` to measure");
        return;
    }
    if !have("docker-registry") || !have("skopeo") {
        println!("registry bench skipped: docker-registry and skopeo are needed");
        return;
    }
    let rounds: usize = std::env::var("KILN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let (layout, manifest, total) = image_layout();
    let source = OciDir::open(&layout).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = ClientConfig::anonymous();
    config.chunk_size = std::env::var("KILN_BENCH_CHUNK_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|megabytes| megabytes * 1024 * 1024);
    let client = RegistryClient::new(config);
    let scratch = tempfile::tempdir().unwrap();
    let layout_ref = format!("oci:{}:{IMAGE_NAME}", layout.display());

    let mut results: Vec<(&str, &str, Vec<Duration>)> = vec![
        ("push", "kiln", vec![]),
        ("push", "skopeo copy", vec![]),
        ("pull", "kiln", vec![]),
        ("pull", "skopeo copy", vec![]),
    ];
    for round in 0..rounds {
        let registry = TestRegistry::start(Mode::Http).expect("start docker-registry");
        let host = registry.host();
        let kiln_target = Reference::parse(&format!("{host}/kiln-{round}/image:1")).unwrap();
        let started = Instant::now();
        let report = runtime
            .block_on(client.push(&kiln_target, &manifest, &source, &PushOptions::default()))
            .expect("kiln push");
        results[0].2.push(started.elapsed());
        assert_eq!(report.stats.blobs_uploaded, LAYERS + 1);

        results[1].2.push(skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &layout_ref,
            &format!("docker://{host}/skopeo-{round}/image:1"),
        ]));

        // Both pull the same image (pushed by kiln) into fresh directories.
        let pull_dir = scratch.path().join(format!("kiln-pull-{round}"));
        let store = OciDir::create(&pull_dir).unwrap();
        let started = Instant::now();
        let pulled = runtime
            .block_on(client.pull(&kiln_target, &PullOptions::default(), &store))
            .expect("kiln pull");
        results[2].2.push(started.elapsed());
        assert_eq!(pulled.manifest.digest, manifest.digest);
        assert_eq!(pulled.stats.blobs_fetched, LAYERS + 1);

        let skopeo_dir = scratch.path().join(format!("skopeo-pull-{round}"));
        results[3].2.push(skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{host}/kiln-{round}/image:1"),
            &format!("oci:{}:{IMAGE_NAME}", skopeo_dir.display()),
        ]));
        let _ = std::fs::remove_dir_all(&pull_dir);
        let _ = std::fs::remove_dir_all(&skopeo_dir);
    }

    let megabytes = total as f64 / 1e6;
    println!();
    println!(
        "registry push/pull of a {megabytes:.0} MB image ({LAYERS} layers) through docker-registry on loopback, best of {rounds}"
    );
    println!(
        "kiln uploads: {}",
        match client.config().chunk_size {
            None => "one streamed PATCH per blob".to_owned(),
            Some(size) => format!("PATCH chunks of {} MiB", size >> 20),
        }
    );
    println!(
        "{:<6} {:<12} {:>10} {:>10}   all rounds (s)",
        "op", "tool", "seconds", "MB/s"
    );
    for (operation, tool, times) in &results {
        let best = times.iter().min().copied().unwrap_or_default();
        let all: Vec<String> = times
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect();
        println!(
            "{:<6} {:<12} {:>10.2} {:>10.0}   {}",
            operation,
            tool,
            best.as_secs_f64(),
            megabytes / best.as_secs_f64(),
            all.join(" ")
        );
    }
}
