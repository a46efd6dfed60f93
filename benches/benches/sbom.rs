//! Cataloging throughput of `kiln-sbom`:
//!
//! - `dpkg-status/host`: the Debian cataloger on this host's `/` (status file,
//!   `.list` presence, copyright files) — packages per second.
//! - `tree/host-usr`: every cataloger over the host's `/usr`, `/etc` and
//!   `/var/lib/dpkg` as one layer directory — bytes of the tree per second
//!   (files are matched by path; only metadata and executables are read).
//! - `dist-infos/dir` and `dist-infos/tar`: a generated tree of N Python
//!   distributions plus filler files, as a directory and as a tar stream —
//!   packages per second and stream bytes per second.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_sbom::{Catalogers, DirTree, Inventory, LayerInfo, TarLayer, catalog_tree};

const DISTRIBUTIONS: usize = 2_000;

fn tree_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(listing) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in listing.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}

fn host(c: &mut Criterion) {
    if !Path::new("/var/lib/dpkg/status").is_file() {
        eprintln!("no dpkg database on this host: skipping host benchmarks");
        return;
    }
    let deb_only = Catalogers {
        deb: true,
        ..Catalogers::NONE
    };
    let packages = catalog_tree(Path::new("/"), deb_only)
        .expect("catalog /")
        .packages()
        .len();
    let mut group = c.benchmark_group("dpkg-status");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(packages as u64));
    group.bench_function("host", |b| {
        b.iter(|| black_box(catalog_tree(Path::new("/"), deb_only).unwrap().packages()))
    });
    group.finish();

    let scope = ["/usr", "/etc", "/var/lib/dpkg"];
    let bytes: u64 = scope.iter().map(|path| tree_bytes(Path::new(path))).sum();
    let mut group = c.benchmark_group("tree");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("host-usr", |b| {
        b.iter(|| {
            let mut inventory = Inventory::new(Catalogers::ALL);
            inventory
                .apply_layer(
                    LayerInfo::default(),
                    &mut DirTree::rootfs("/").only_under(scope),
                )
                .unwrap();
            black_box(inventory.packages())
        })
    });
    group.finish();
}

/// A tree of `DISTRIBUTIONS` dist-info directories, each with filler module files.
fn generated_tree() -> PathBuf {
    let root = std::env::temp_dir().join(format!("kiln-sbom-bench-{}", std::process::id()));
    let site = root.join("usr/local/lib/python3.11/site-packages");
    for index in 0..DISTRIBUTIONS {
        let name = format!("package{index}");
        let dist_info = site.join(format!("{name}-1.{index}.0.dist-info"));
        fs::create_dir_all(&dist_info).unwrap();
        fs::write(
            dist_info.join("METADATA"),
            format!(
                "Metadata-Version: 2.1\nName: {name}\nVersion: 1.{index}.0\nLicense: MIT\nRequires-Dist: package{} (>=1)\n\n{}\n",
                (index + 1) % DISTRIBUTIONS,
                "Long description. ".repeat(50)
            ),
        )
        .unwrap();
        fs::write(dist_info.join("RECORD"), "x,,\n".repeat(20)).unwrap();
        let module = site.join(&name);
        fs::create_dir_all(&module).unwrap();
        for file in 0..5 {
            fs::write(module.join(format!("m{file}.py")), "x = 1\n".repeat(400)).unwrap();
        }
    }
    root
}

fn generated(c: &mut Criterion) {
    let root = generated_tree();
    let python_only = Catalogers {
        python: true,
        ..Catalogers::NONE
    };
    let mut group = c.benchmark_group("dist-infos");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(DISTRIBUTIONS as u64));
    group.bench_function("dir", |b| {
        b.iter(|| black_box(catalog_tree(&root, python_only).unwrap().packages()))
    });
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar runs");
    assert!(tar.status.success(), "tar failed");
    let stream = tar.stdout;
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("tar", |b| {
        b.iter(|| {
            let mut inventory = Inventory::new(Catalogers::ALL);
            inventory
                .apply_layer(LayerInfo::default(), &mut TarLayer::new(&stream[..]))
                .unwrap();
            black_box(inventory.packages())
        })
    });
    group.finish();
    let _ = fs::remove_dir_all(&root);
}

criterion_group!(benches, host, generated);
criterion_main!(benches);
