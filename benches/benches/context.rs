//! Build-context cost for a 10k-file context: walking it, hashing it cold,
//! and a no-op rebuild that finds every digest in the stat cache (target:
//! ≤ 50 ms). Each iteration is what one build does for `COPY . /app`: open the
//! context, plan the copy (walk + `.dockerignore` + digests + xattrs), and
//! compute the cache digest. A last benchmark writes that copy into a layer
//! directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kiln_builder::context::{BuildContext, ContextOptions};
use kiln_builder::copy::{self, CopyOp, Source};
use kiln_builder::rootfs::RootfsView;

const DIRS: usize = 100;
const FILES_PER_DIR: usize = 100;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn make_context() -> Scratch {
    let root = std::env::temp_dir().join(format!("kiln-bench-context-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let scratch = Scratch(root.clone());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for d in 0..DIRS {
        let dir = root.join(format!("src/pkg{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            // 512 B .. 4 KiB of varied bytes: a source tree, ~22 MB in all.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = 512 + (seed % 3584) as usize;
            let body: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            fs::write(dir.join(format!("file{f:03}.rs")), body).unwrap();
        }
    }
    fs::write(root.join(".dockerignore"), "target\n**/*.tmp\n").unwrap();
    scratch
}

fn copy_all() -> CopyOp {
    CopyOp {
        sources: vec![".".into()],
        dest: "/app/".into(),
        workdir: "/".into(),
        ..CopyOp::default()
    }
}

fn one_build(root: &Path, stat_cache: Option<PathBuf>) {
    let ctx = BuildContext::open(
        root,
        ContextOptions {
            dockerfile: None,
            stat_cache,
        },
    )
    .unwrap();
    let plan = copy::plan(Source::Context(&ctx), &copy_all()).unwrap();
    assert_eq!(plan.len(), DIRS * FILES_PER_DIR + DIRS + 3);
    std::hint::black_box(copy::cache_digest(&plan));
    ctx.save_stat_cache().unwrap();
}

fn context_benches(c: &mut Criterion) {
    let scratch = make_context();
    let root = scratch.0.clone();
    let cache = root.with_extension("stat-cache");
    let mut group = c.benchmark_group("context_10k_files");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    group.bench_function("walk_only", |b| {
        b.iter(|| {
            let ctx = BuildContext::open(&root, ContextOptions::default()).unwrap();
            std::hint::black_box(ctx.index().unwrap().len())
        })
    });
    group.bench_function("walk_and_hash_cold", |b| b.iter(|| one_build(&root, None)));

    // Let the files age past the racy window, then fill the stat cache once.
    std::thread::sleep(Duration::from_millis(100));
    one_build(&root, Some(cache.clone()));
    group.bench_function("noop_rebuild_with_stat_cache", |b| {
        b.iter(|| one_build(&root, Some(cache.clone())))
    });

    // Writing the planned copy into a fresh layer dir (copy_file_range, then
    // owner, mode, mtime per file).
    let ctx = BuildContext::open(&root, ContextOptions::default()).unwrap();
    let plan = copy::plan(Source::Context(&ctx), &copy_all()).unwrap();
    let empty = RootfsView::empty();
    let mut round = 0;
    group.bench_function("execute_copy_into_layer_dir", |b| {
        b.iter_batched(
            || {
                round += 1;
                let layer = root.with_extension(format!("layer-{round}"));
                fs::create_dir_all(&layer).unwrap();
                Scratch(layer)
            },
            |layer| {
                let stats = copy::execute(&plan, &empty, &layer.0).unwrap();
                assert_eq!(stats.files as usize, DIRS * FILES_PER_DIR + 1);
                layer
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    let _ = fs::remove_file(&cache);
}

criterion_group!(benches, context_benches);
criterion_main!(benches);
