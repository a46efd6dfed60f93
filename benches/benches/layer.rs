//! Layer write + compress throughput on a generated ~300 MB tree, against
//! `tar -c | gzip`, `pigz` and `zstd` in the same run.
//!
//! The tree: ~90 MB of small text files (compressible) and ~210 MB of big binaries
//! (incompressible pseudo-random bytes), so about 30 % of the bytes compress — close to
//! a typical `apt-get install` layer. Content is generated from a fixed seed, so runs
//! compare. Run with `cargo bench -p kiln-benches --bench layer`; `KILN_BENCH_MB=N`
//! scales the tree, `KILN_BENCH_TREE=/some/dir` measures an existing tree instead.
//! Throughput is uncompressed tar bytes per second of wall time.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use kiln_builder::layer::{self, ApplyOptions, Compression, SourceDateEpoch, WriteOptions};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: fast and good enough to defeat compressors.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const WORDS: &[&str] = &[
    "package",
    "version",
    "depends",
    "libc6",
    "description",
    "the",
    "of",
    "and",
    "install",
    "config",
    "return",
    "function",
    "import",
    "static",
    "const",
    "value",
    "error",
    "string",
    "usr/lib",
    "x86_64-linux-gnu",
    "README",
    "license",
    "copyright",
    "GNU",
    "General",
    "Public",
    "free",
    "software",
    "{",
    "}",
    "(",
    ")",
    ";",
    "=",
    "if",
    "else",
    "for",
    "while",
];

fn generate(root: &Path, total_mb: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let text_bytes = total_mb * 1024 * 1024 * 3 / 10;
    let bin_bytes = total_mb * 1024 * 1024 - text_bytes;
    let mut n = 0u64;
    let mut done = 0u64;
    while done < text_bytes {
        let dir = root.join(format!("usr/share/doc/pkg{:03}", n / 50));
        fs::create_dir_all(&dir).unwrap();
        let size = 1024 + rng.next() % 10_240;
        let mut text = String::with_capacity(size as usize + 16);
        while (text.len() as u64) < size {
            text.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
            text.push(if rng.next().is_multiple_of(12) {
                '\n'
            } else {
                ' '
            });
        }
        fs::write(dir.join(format!("file{n}.txt")), &text).unwrap();
        done += text.len() as u64;
        n += 1;
    }
    let mut i = 0;
    let mut done = 0u64;
    let chunk = 10 * 1024 * 1024;
    fs::create_dir_all(root.join("usr/lib/big")).unwrap();
    while done < bin_bytes {
        let size = chunk.min(bin_bytes - done);
        let mut data = vec![0u8; size as usize];
        for word in data.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        fs::write(root.join(format!("usr/lib/big/blob{i}.so")), &data).unwrap();
        done += size;
        i += 1;
    }
}

/// CPU seconds used so far by this process (all threads) and by its waited-for
/// children, from `/proc/self/stat` (clock ticks are 100 Hz on Linux).
fn cpu_seconds() -> (f64, f64) {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime is field 14 overall.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| fields.get(i - 3).copied().unwrap_or(0.0) / 100.0;
    (at(14) + at(15), at(16) + at(17))
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs
}

fn kiln(tree: &Path, name: &str, compression: Compression, input: u64) -> Vec<u8> {
    let options = WriteOptions {
        compression,
        source_date_epoch: Some(SourceDateEpoch(0)),
        ..Default::default()
    };
    let (cpu_before, _) = cpu_seconds();
    let start = Instant::now();
    let (info, blob) = layer::write_layer(tree, &options, Vec::new()).unwrap();
    let secs = start.elapsed().as_secs_f64();
    report(name, input, info.size, secs, cpu_seconds().0 - cpu_before);
    blob
}

fn shell(tree: &Path, name: &str, compressor: &str, input: u64) {
    let program = compressor.split_whitespace().next().unwrap();
    if Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        println!("{name:<34} skipped ({program} not installed)");
        return;
    }
    let (_, cpu_before) = cpu_seconds();
    let start = Instant::now();
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("tar -C '{}' -cf - . | {compressor} | wc -c", tree.display()),
        ])
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let size: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    report(name, input, size, secs, cpu_seconds().1 - cpu_before);
}

fn report(name: &str, input: u64, output: u64, secs: f64, cpu: f64) {
    println!(
        "{name:<34} {:>7.1} MB/s  {:>6.2} s wall  {:>6.2} s cpu  ratio {:>5.3}",
        mb_per_s(input, secs),
        secs,
        cpu,
        output as f64 / input as f64
    );
    let _ = io::stdout().flush();
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` run of benches passes nothing
    // useful either way: this binary always runs the whole comparison.
    let total_mb: u64 = std::env::var("KILN_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let work = std::env::temp_dir().join(format!("kiln-layer-bench-{}", std::process::id()));
    fs::create_dir_all(&work).unwrap();
    let tree = match std::env::var_os("KILN_BENCH_TREE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let tree = work.join("tree");
            fs::create_dir_all(&tree).unwrap();
            generate(&tree, total_mb);
            tree
        }
    };
    let mut tar_size = io::sink();
    let input = layer::write_tar(&tree, &WriteOptions::default(), &mut tar_size)
        .unwrap()
        .bytes;
    println!(
        "tree {}: {:.0} MB of tar ({} cores available)",
        tree.display(),
        input as f64 / 1048576.0,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let _ = kiln(
        &tree,
        "kiln uncompressed (tar+sha256)",
        Compression::Uncompressed,
        input,
    );
    let _ = kiln(&tree, "kiln gzip -1", Compression::Gzip { level: 1 }, input);
    let _ = kiln(
        &tree,
        "kiln gzip -2",
        Compression::single_stream_gzip(),
        input,
    );
    let _ = kiln(&tree, "kiln gzip -3", Compression::Gzip { level: 3 }, input);
    let _ = kiln(&tree, "kiln gzip -6", Compression::Gzip { level: 6 }, input);
    let _ = kiln(
        &tree,
        "kiln parallel gzip -1",
        Compression::ParallelGzip { level: 1 },
        input,
    );
    let gz = kiln(
        &tree,
        "kiln parallel gzip -2 (default)",
        Compression::gzip(),
        input,
    );
    let _ = kiln(
        &tree,
        "kiln parallel gzip -6",
        Compression::ParallelGzip { level: 6 },
        input,
    );
    let _ = kiln(&tree, "kiln zstd -3", Compression::zstd(), input);
    let _ = kiln(
        &tree,
        "kiln zstd -3 (2 workers)",
        Compression::Zstd {
            level: 3,
            workers: 2,
        },
        input,
    );
    shell(&tree, "tar | gzip -1", "gzip -1", input);
    shell(&tree, "tar | gzip -6", "gzip -6", input);
    shell(&tree, "tar | pigz -1", "pigz -1", input);
    shell(&tree, "tar | pigz -6", "pigz -6", input);
    shell(&tree, "tar | zstd -3", "zstd -3 -c", input);

    let dest: PathBuf = work.join("unpacked");
    let (cpu_before, _) = cpu_seconds();
    let start = Instant::now();
    layer::unpack_layer(&gz[..], &dest, &ApplyOptions::overlay_lower_dir(None)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().0 - cpu_before;
    report("kiln unpack gzip -2", input, gz.len() as u64, secs, cpu);
    let dest2 = work.join("unpacked-tar");
    fs::create_dir(&dest2).unwrap();
    let blob = work.join("layer.tar.gz");
    fs::write(&blob, &gz).unwrap();
    let (_, cpu_before) = cpu_seconds();
    let start = Instant::now();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&blob)
        .arg("-C")
        .arg(&dest2)
        .status()
        .unwrap();
    assert!(status.success());
    report(
        "tar -xzf (same blob)",
        input,
        gz.len() as u64,
        start.elapsed().as_secs_f64(),
        cpu_seconds().1 - cpu_before,
    );

    fs::remove_dir_all(&work).unwrap();
}
