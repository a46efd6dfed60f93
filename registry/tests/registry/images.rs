//! Small real OCI images built in the test: gzip'd tar layers with a few files (one of
//! incompressible pseudo-random bytes of a chosen size), an OCI config with the layers'
//! diff IDs, and an OCI manifest; optionally a two-platform index.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use kiln_registry::digest::sha256_digest;
use kiln_registry::manifest::media_types;
use kiln_registry::{BlobStore, Digest, OciDir, RawManifest};

/// An image written into an [`OciDir`].
pub struct TestImage {
    pub manifest: RawManifest,
    pub config: (Digest, Bytes),
    pub layers: Vec<(Digest, Bytes)>,
}

/// Deterministic incompressible bytes (xorshift64*).
pub fn noise(seed: &str, length: usize) -> Vec<u8> {
    let mut state = seed.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |acc, b| {
        (acc ^ b as u64).wrapping_mul(0x1000_0000_01B3)
    }) | 1;
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

/// A gzip'd tar layer: `/etc/<seed>.conf`, `/bin/<seed>` (executable) and
/// `/data/<seed>.bin` of `random_size` pseudo-random bytes. Returns (blob, diff ID).
pub fn layer(seed: &str, random_size: usize) -> (Bytes, Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    };
    add(
        &format!("etc/{seed}.conf"),
        0o644,
        format!("name = {seed}\n").as_bytes(),
    );
    add(&format!("bin/{seed}"), 0o755, b"#!/bin/sh\necho hello\n");
    add(
        &format!("data/{seed}.bin"),
        0o644,
        &noise(seed, random_size),
    );
    let tar = builder.into_inner().unwrap();
    let diff_id = sha256_digest(&tar);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar).unwrap();
    (Bytes::from(encoder.finish().unwrap()), diff_id)
}

/// Builds an image with one layer per entry of `layer_sizes` into `store`.
pub fn build(
    store: &OciDir,
    seed: &str,
    layer_sizes: &[usize],
    os: &str,
    architecture: &str,
) -> TestImage {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, size) in layer_sizes.iter().enumerate() {
        let (blob, diff_id) = layer(&format!("{seed}-{i}"), *size);
        let digest = sha256_digest(&blob);
        store.put(&digest, &blob).unwrap();
        layers.push((digest, blob));
        diff_ids.push(diff_id.to_string());
    }
    let config = serde_json::json!({
        "architecture": architecture,
        "os": os,
        "config": {"Env": ["PATH=/bin"], "Cmd": [format!("/bin/{seed}-0")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Bytes::from(serde_json::to_vec(&config).unwrap());
    let config_digest = sha256_digest(&config);
    store.put(&config_digest, &config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|(digest, blob)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest.to_string(),
            "size": blob.len(),
        })).collect::<Vec<_>>(),
    });
    let manifest = RawManifest::new(
        serde_json::to_vec(&manifest).unwrap(),
        Some(media_types::OCI_MANIFEST),
    );
    store.put(&manifest.digest, &manifest.bytes).unwrap();
    store.set_ref(seed, &manifest.descriptor()).unwrap();
    TestImage {
        manifest,
        config: (config_digest, config),
        layers,
    }
}

/// An index over `images`, each with its platform (`os/arch[/variant]`), stored in
/// `store`.
pub fn index(store: &OciDir, images: &[(&TestImage, &str)]) -> RawManifest {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|(image, platform)| {
            let parts: Vec<&str> = platform.split('/').collect();
            let mut platform = serde_json::json!({"os": parts[0], "architecture": parts[1]});
            if let Some(variant) = parts.get(2) {
                platform["variant"] = serde_json::json!(variant);
            }
            serde_json::json!({
                "mediaType": media_types::OCI_MANIFEST,
                "digest": image.manifest.digest.to_string(),
                "size": image.manifest.bytes.len(),
                "platform": platform,
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
    });
    let raw = RawManifest::new(
        serde_json::to_vec(&index).unwrap(),
        Some(media_types::OCI_INDEX),
    );
    store.put(&raw.digest, &raw.bytes).unwrap();
    raw
}

/// Asserts that a store holds only verified blobs: no temporary files, and every file
/// under `blobs/sha256` hashes to its name. Returns the blob names.
pub fn assert_store_clean(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let blobs = root.join("blobs");
    if !blobs.exists() {
        return names;
    }
    for algorithm in std::fs::read_dir(&blobs).unwrap() {
        let algorithm = algorithm.unwrap();
        for entry in std::fs::read_dir(algorithm.path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.'),
                "temporary file left in the store: {}",
                entry.path().display()
            );
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_eq!(
                sha256_digest(&bytes).digest(),
                name,
                "unverified blob in the store"
            );
            names.push(name);
        }
    }
    names.sort();
    names
}
