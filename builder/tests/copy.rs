//! COPY/ADD end to end: real directories, real tar/compression tools, a real
//! HTTP server on loopback, overlay-format layer dirs made by hand. We run as
//! root here, so ownership, devices and trusted.* xattrs are real.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_builder::context::patterns::{PatternMatcher, parse_dockerignore};
use kiln_builder::context::{BuildContext, ContextOptions};
use kiln_builder::copy::{
    self, Chmod, CopyKind, CopyOp, CopyPlan, CopyStats, Error, Heredoc, Source,
};
use kiln_builder::digest::Digest;
use kiln_builder::rootfs::RootfsView;
use tempfile::TempDir;

fn write(root: &Path, rel: &str, body: &str) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, body).unwrap();
    p
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, secs: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn op(sources: &[&str], dest: &str) -> CopyOp {
    CopyOp {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.to_owned(),
        workdir: "/".to_owned(),
        ..CopyOp::default()
    }
}

fn context(dir: &Path) -> BuildContext {
    BuildContext::open(dir, ContextOptions::default()).unwrap()
}

/// Plans and executes against `dest` (empty when `None`), returning the layer dir.
fn run(source: Source<'_>, op: &CopyOp, dest: Option<&RootfsView>) -> (TempDir, CopyStats) {
    let plan = copy::plan(source, op).unwrap();
    let layer = tempfile::tempdir().unwrap();
    let empty = RootfsView::empty();
    let stats = copy::execute(&plan, dest.unwrap_or(&empty), layer.path()).unwrap();
    (layer, stats)
}

fn plan_err(source: Source<'_>, op: &CopyOp) -> String {
    copy::plan(source, op).unwrap_err().to_string()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn owner(path: &Path) -> (u32, u32) {
    let md = fs::symlink_metadata(path).unwrap();
    (md.uid(), md.gid())
}

fn mtime(path: &Path) -> i64 {
    fs::symlink_metadata(path).unwrap().mtime()
}

fn listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

// ---------------------------------------------------------------- patterns

#[test]
fn dockerignore_pattern_table() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dockerignore/cases.jsonl"
    );
    let text = fs::read_to_string(fixture).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(patterns) = case.get("patterns") else {
            continue;
        };
        let lines: Vec<&str> = patterns
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let matcher = PatternMatcher::new(parse_dockerignore(&lines.join("\n"))).unwrap();
        let path = case["path"].as_str().unwrap();
        let expected = case["matched"].as_bool().unwrap();
        assert_eq!(
            matcher.matches(path),
            expected,
            "patterns {lines:?} against {path:?}"
        );
        checked += 1;
    }
    assert!(checked > 100, "only {checked} cases ran");
}

#[test]
fn dockerignore_excludes_and_reincludes_inside_excluded_dirs() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let root = ctx_dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(
        root,
        ".dockerignore",
        "# build junk\ndocs\n!docs/keep.md\n*.log\n/secret\nnode_modules\n",
    );
    write(root, "docs/keep.md", "keep");
    write(root, "docs/other.md", "other");
    write(root, "docs/deep/x.md", "x");
    write(root, "app.log", "log");
    write(root, "sub/app.log", "nested logs are not matched by *.log");
    write(root, "secret", "s");
    write(root, "sub/secret", "only the top-level one is ignored");
    write(root, "node_modules/a/b.js", "b");
    write(root, "main.rs", "fn main() {}");
    let ctx = context(root);
    let (layer, _) = run(Source::Context(&ctx), &op(&["."], "/app/"), None);
    assert_eq!(
        listing(layer.path()),
        [
            "app/",
            "app/.dockerignore",
            "app/Dockerfile",
            "app/docs/",
            "app/docs/keep.md",
            "app/main.rs",
            "app/sub/",
            "app/sub/app.log",
            "app/sub/secret",
        ]
    );
    // An ignored file cannot be named as a source either.
    let err = plan_err(Source::Context(&ctx), &op(&["docs/other.md"], "/x"));
    assert!(err.contains("\"/docs/other.md\": not found"), "{err}");
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let root = ctx_dir.path();
    write(root, ".dockerignore", "a.txt\n");
    write(root, "build/app.Dockerfile", "FROM scratch\n");
    write(root, "build/app.Dockerfile.dockerignore", "b.txt\n");
    write(root, "a.txt", "a");
    write(root, "b.txt", "b");
    let ctx = BuildContext::open(
        root,
        ContextOptions {
            dockerfile: Some(root.join("build/app.Dockerfile")),
            stat_cache: None,
        },
    )
    .unwrap();
    let index = ctx.index().unwrap();
    assert!(index.get(Path::new("a.txt")).is_some());
    assert!(index.get(Path::new("b.txt")).is_none());
    assert_eq!(
        ctx.ignore_file(),
        Some(root.join("build/app.Dockerfile.dockerignore").as_path())
    );
}

// ---------------------------------------------------------------- basic rules

#[test]
fn single_file_to_file_keeps_mode_and_mtime_and_gets_root_owner() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let f = write(ctx_dir.path(), "a.txt", "hello");
    chmod(&f, 0o640);
    set_mtime(&f, 1_000_000);
    lchown(&f, 1234, 1234);
    let ctx = context(ctx_dir.path());
    let (layer, stats) = run(Source::Context(&ctx), &op(&["a.txt"], "/dst/b.txt"), None);
    let out = layer.path().join("dst/b.txt");
    assert_eq!(fs::read_to_string(&out).unwrap(), "hello");
    assert_eq!(mode(&out), 0o640);
    assert_eq!(mtime(&out), 1_000_000);
    assert_eq!(owner(&out), (0, 0));
    assert_eq!(mode(&layer.path().join("dst")), 0o755);
    assert_eq!(stats.files, 1);
    assert_eq!(stats.bytes, 5);
}

#[test]
fn file_into_dir_with_slash_and_relative_to_workdir() {
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "a.txt", "a");
    let ctx = context(ctx_dir.path());
    let (layer, _) = run(Source::Context(&ctx), &op(&["a.txt"], "/dst/"), None);
    assert!(layer.path().join("dst/a.txt").is_file());

    let mut relative = op(&["/a.txt"], "sub/");
    relative.workdir = "/work".into();
    let (layer, _) = run(Source::Context(&ctx), &relative, None);
    assert!(layer.path().join("work/sub/a.txt").is_file());

    let mut dot = op(&["a.txt"], ".");
    dot.workdir = "/w".into();
    let (layer, _) = run(Source::Context(&ctx), &dot, None);
    assert!(layer.path().join("w/a.txt").is_file());
}

#[test]
fn existing_dest_dir_receives_basename_and_parents_are_mirrored() {
    let lower = tempfile::tempdir().unwrap();
    fs::create_dir_all(lower.path().join("opt/tools")).unwrap();
    chmod(&lower.path().join("opt"), 0o711);
    lchown(&lower.path().join("opt"), 7, 8);
    set_mtime(&lower.path().join("opt"), 123_456);
    chmod(&lower.path().join("opt/tools"), 0o750);
    set_mtime(&lower.path().join("opt/tools"), 654_321);
    let view = RootfsView::new(vec![lower.path().to_owned()]);
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "a.txt", "a");
    let ctx = context(ctx_dir.path());
    let (layer, _) = run(
        Source::Context(&ctx),
        &op(&["a.txt"], "/opt/tools"),
        Some(&view),
    );
    assert!(layer.path().join("opt/tools/a.txt").is_file());
    let opt = layer.path().join("opt");
    assert_eq!(mode(&opt), 0o711);
    assert_eq!(owner(&opt), (7, 8));
    assert_eq!(mtime(&opt), 123_456);
    assert_eq!(mode(&opt.join("tools")), 0o750);
    assert_eq!(mtime(&opt.join("tools")), 654_321);
}

#[test]
fn directory_source_copies_its_contents() {
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "dir/x", "x");
    write(ctx_dir.path(), "dir/sub/y", "y");
    chmod(&ctx_dir.path().join("dir"), 0o700);
    set_mtime(&ctx_dir.path().join("dir/sub"), 42);
    let ctx = context(ctx_dir.path());
    let (layer, stats) = run(Source::Context(&ctx), &op(&["dir"], "/app"), None);
    assert_eq!(
        listing(layer.path()),
        ["app/", "app/sub/", "app/sub/y", "app/x"]
    );
    // The new destination directory takes the source directory's metadata.
    assert_eq!(mode(&layer.path().join("app")), 0o700);
    assert_eq!(mtime(&layer.path().join("app/sub")), 42);
    assert_eq!(stats.files, 2);
    // With a trailing slash the destination is created by MkdirAll: 0755.
    let (layer, _) = run(Source::Context(&ctx), &op(&["dir"], "/app/"), None);
    assert_eq!(mode(&layer.path().join("app")), 0o755);
}

#[test]
fn wildcards_and_the_several_sources_rule() {
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "a.txt", "a");
    write(ctx_dir.path(), "b.txt", "b");
    write(ctx_dir.path(), "c.md", "c");
    write(ctx_dir.path(), "d/e.txt", "e");
    let ctx = context(ctx_dir.path());
    let (layer, _) = run(Source::Context(&ctx), &op(&["*.txt"], "/dst/"), None);
    assert_eq!(listing(layer.path()), ["dst/", "dst/a.txt", "dst/b.txt"]);
    let (layer, _) = run(
        Source::Context(&ctx),
        &op(&["*/e.tx?", "[c]*"], "/dst/"),
        None,
    );
    assert_eq!(listing(layer.path()), ["dst/", "dst/c.md", "dst/e.txt"]);

    let expected = "When using COPY with more than one source file, the destination must be a directory and end with a /";
    assert_eq!(
        plan_err(Source::Context(&ctx), &op(&["*.txt"], "/dst")),
        expected
    );
    assert_eq!(
        plan_err(Source::Context(&ctx), &op(&["a.txt", "c.md"], "/dst")),
        expected
    );
    // One wildcard match to a plain destination is a file copy.
    let (layer, _) = run(Source::Context(&ctx), &op(&["c*"], "/only"), None);
    assert_eq!(fs::read_to_string(layer.path().join("only")).unwrap(), "c");
}

#[test]
fn missing_sources_are_named() {
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "a.txt", "a");
    let ctx = context(ctx_dir.path());
    assert_eq!(
        plan_err(Source::Context(&ctx), &op(&["nope.txt"], "/x")),
        "COPY failed: \"/nope.txt\": not found"
    );
    assert_eq!(
        plan_err(Source::Context(&ctx), &op(&["*.nothing"], "/x/")),
        "COPY failed: no source files were specified"
    );
    // A wildcard that matches nothing is fine next to a source that exists.
    let (layer, _) = run(
        Source::Context(&ctx),
        &op(&["a.txt", "*.nothing"], "/x/"),
        None,
    );
    assert!(layer.path().join("x/a.txt").is_file());
    let mut add = op(&["missing.tar"], "/x");
    add.kind = CopyKind::Add;
    assert_eq!(
        plan_err(Source::Context(&ctx), &add),
        "ADD failed: \"/missing.tar\": not found"
    );
    assert!(
        plan_err(Source::Context(&ctx), &op(&["http://example.com/x"], "/x"))
            .contains("can't be a URL for COPY")
    );
}

// ---------------------------------------------------------------- ownership and modes

fn passwd_rootfs() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1300:App:/home/app:/bin/sh\n",
    );
    write(dir.path(), "etc/group", "root:x:0:\nstaff:x:2345:app\n");
    dir
}

#[test]
fn chown_by_name_reads_passwd_and_group_of_the_destination() {
    let rootfs = passwd_rootfs();
    let view = RootfsView::new(vec![rootfs.path().to_owned()]);
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "dir/f", "f");
    let ctx = context(ctx_dir.path());

    let mut by_names = op(&["dir"], "/new/parent/app/");
    by_names.chown = Some("app:staff".into());
    let (layer, _) = run(Source::Context(&ctx), &by_names, Some(&view));
    assert_eq!(owner(&layer.path().join("new/parent/app/f")), (1234, 2345));
    // Created parents belong to the --chown user too (BuildKit's MkdirAll).
    assert_eq!(owner(&layer.path().join("new")), (1234, 2345));
    assert_eq!(mode(&layer.path().join("new")), 0o755);
    // /etc exists below and is mirrored with its own owner, not chowned.
    let mut user_only = op(&["dir/f"], "/etc/f");
    user_only.chown = Some("app".into());
    let (layer, _) = run(Source::Context(&ctx), &user_only, Some(&view));
    assert_eq!(owner(&layer.path().join("etc/f")), (1234, 1300));
    assert_eq!(owner(&layer.path().join("etc")), (0, 0));

    let mut unknown = op(&["dir"], "/x/");
    unknown.chown = Some("nobody2".into());
    let plan = copy::plan(Source::Context(&ctx), &unknown).unwrap();
    let layer = tempfile::tempdir().unwrap();
    let err = copy::execute(&plan, &view, layer.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user nobody2: no matching entries in passwd file"
    );
    let mut bad_group = op(&["dir"], "/x/");
    bad_group.chown = Some("app:nogroup".into());
    let plan = copy::plan(Source::Context(&ctx), &bad_group).unwrap();
    let err = copy::execute(&plan, &view, layer.path()).unwrap_err();
    assert!(
        err.to_string().contains("unable to find group nogroup"),
        "{err}"
    );
}

#[test]
fn numeric_chown_needs_no_passwd() {
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "f", "f");
    let ctx = context(ctx_dir.path());
    let mut o = op(&["f"], "/a/f");
    o.chown = Some("1000:1000".into());
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(owner(&layer.path().join("a/f")), (1000, 1000));
    o.chown = Some("1001".into());
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(owner(&layer.path().join("a/f")), (1001, 1001));
}

#[test]
fn chmod_octal_and_symbolic_apply_to_files_and_dirs() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let f = write(ctx_dir.path(), "dir/f", "f");
    let x = write(ctx_dir.path(), "dir/x", "x");
    chmod(&f, 0o664);
    chmod(&x, 0o744);
    chmod(&ctx_dir.path().join("dir"), 0o770);
    let ctx = context(ctx_dir.path());
    let mut o = op(&["dir"], "/out");
    o.chmod = Some("0755".parse::<Chmod>().unwrap());
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(mode(&layer.path().join("out/f")), 0o755);
    assert_eq!(mode(&layer.path().join("out")), 0o755);

    o.chmod = Some("g-w,a+rX".parse().unwrap());
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(mode(&layer.path().join("out/f")), 0o644);
    assert_eq!(mode(&layer.path().join("out/x")), 0o755);
    assert_eq!(mode(&layer.path().join("out")), 0o755);
}

#[test]
fn exclude_patterns_are_relative_to_each_source() {
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "dir/a.md", "a");
    write(ctx_dir.path(), "dir/b.rs", "b");
    write(ctx_dir.path(), "dir/sub/skip/c.rs", "c");
    write(ctx_dir.path(), "dir/sub/keep.rs", "k");
    write(ctx_dir.path(), "home.txt", "h");
    write(ctx_dir.path(), "homer.rs", "h");
    let ctx = context(ctx_dir.path());
    let mut o = op(&["dir"], "/app/");
    o.exclude = vec!["*.md".into(), "sub/skip".into()];
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(
        listing(layer.path()),
        ["app/", "app/b.rs", "app/sub/", "app/sub/keep.rs"]
    );
    // Exclusions also filter what a wildcard matched (Docker's docs example).
    let mut o = op(&["hom*"], "/mydir/");
    o.exclude = vec!["*.txt".into()];
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(listing(layer.path()), ["mydir/", "mydir/homer.rs"]);
}

#[test]
fn parents_keep_the_source_path() {
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "a/b/c.txt", "c");
    write(ctx_dir.path(), "a/b/other.txt", "o");
    write(ctx_dir.path(), "x/y/z", "z");
    write(ctx_dir.path(), "x/y/w", "w");
    write(ctx_dir.path(), "p1/package.json", "1");
    write(ctx_dir.path(), "p2/package.json", "2");
    write(ctx_dir.path(), "p2/src/index.js", "no");
    chmod(&ctx_dir.path().join("a/b"), 0o701);
    let ctx = context(ctx_dir.path());
    let mut o = op(&["a/b/c.txt"], "/dst/");
    o.parents = true;
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(
        listing(layer.path()),
        ["dst/", "dst/a/", "dst/a/b/", "dst/a/b/c.txt"]
    );
    // Directories on the way keep their source metadata.
    assert_eq!(mode(&layer.path().join("dst/a/b")), 0o701);

    let mut o = op(&["./x/./y/z"], "/dst/");
    o.parents = true;
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(listing(layer.path()), ["dst/", "dst/y/", "dst/y/z"]);

    let mut o = op(&["*/package.json"], "/dst/");
    o.parents = true;
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(
        listing(layer.path()),
        [
            "dst/",
            "dst/p1/",
            "dst/p1/package.json",
            "dst/p2/",
            "dst/p2/package.json"
        ]
    );
    let mut o = op(&["a/nope"], "/dst/");
    o.parents = true;
    assert!(plan_err(Source::Context(&ctx), &o).contains("\"/a/nope\": not found"));
}

// ---------------------------------------------------------------- links, special bits, xattrs

#[test]
fn symlinks_hardlinks_setuid_and_xattrs_are_kept() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let root = ctx_dir.path();
    let f = write(root, "dir/file", "content");
    std::os::unix::fs::symlink("file", root.join("dir/link")).unwrap();
    std::os::unix::fs::symlink("../outside/nowhere", root.join("dir/dangling")).unwrap();
    fs::hard_link(&f, root.join("dir/hard")).unwrap();
    let suid = write(root, "dir/suid", "#!/bin/sh\n");
    chmod(&suid, 0o4755);
    rustix::fs::lsetxattr(&f, "user.kiln", b"v1", rustix::fs::XattrFlags::empty()).unwrap();
    // A file capability (cap_net_bind_service+ep), as setcap writes it.
    let cap: [u8; 20] = [
        0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    rustix::fs::lsetxattr(
        &suid,
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    std::os::unix::fs::symlink("dir/file", root.join("toplink")).unwrap();
    let ctx = context(root);

    let (layer, stats) = run(Source::Context(&ctx), &op(&["dir"], "/d/"), None);
    let d = layer.path().join("d");
    assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("file"));
    assert_eq!(
        fs::read_link(d.join("dangling")).unwrap(),
        Path::new("../outside/nowhere")
    );
    let a = fs::metadata(d.join("file")).unwrap();
    let b = fs::metadata(d.join("hard")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlink kept");
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(mode(&d.join("suid")), 0o4755);
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(d.join("file"), "user.kiln", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"v1");
    let n = rustix::fs::lgetxattr(d.join("suid"), "security.capability", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], &cap);

    // A symlink named as the source is followed and named after the link.
    let (layer, _) = run(Source::Context(&ctx), &op(&["toplink"], "/t/"), None);
    let t = layer.path().join("t/toplink");
    assert!(fs::symlink_metadata(&t).unwrap().is_file());
    assert_eq!(fs::read_to_string(&t).unwrap(), "content");
}

// ---------------------------------------------------------------- ADD archives

fn tar_fixture() -> TempDir {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "pkg/bin/tool", "#!/bin/sh\necho tool\n");
    chmod(&src.path().join("pkg/bin/tool"), 0o755);
    write(src.path(), "pkg/README", "readme");
    std::os::unix::fs::symlink("bin/tool", src.path().join("pkg/run")).unwrap();
    src
}

#[test]
fn add_extracts_local_archives_of_every_compression() {
    let src = tar_fixture();
    let ctx_dir = tempfile::tempdir().unwrap();
    let variants = [
        ("plain.tar", vec!["-cf"]),
        ("gz.tar.gz", vec!["-czf"]),
        ("xz.txz", vec!["-cJf"]),
        ("zst.tar.zst", vec!["--zstd", "-cf"]),
        ("bz.tar.bz2", vec!["-cjf"]),
        // Compression is detected by content, not by name.
        ("misnamed.bin", vec!["-czf"]),
    ];
    for (name, flags) in &variants {
        let status = Command::new("tar")
            .args(flags)
            .arg(ctx_dir.path().join(name))
            .arg("--owner=55")
            .arg("--group=66")
            .arg("-C")
            .arg(src.path())
            .arg("pkg")
            .status()
            .unwrap();
        assert!(status.success(), "tar {flags:?}");
    }
    let ctx = context(ctx_dir.path());
    for (name, _) in &variants {
        let mut o = op(&[name], "/opt");
        o.kind = CopyKind::Add;
        let (layer, stats) = run(Source::Context(&ctx), &o, None);
        let tool = layer.path().join("opt/pkg/bin/tool");
        assert_eq!(
            fs::read_to_string(&tool).unwrap(),
            "#!/bin/sh\necho tool\n",
            "{name}"
        );
        assert_eq!(mode(&tool), 0o755, "{name}");
        assert_eq!(owner(&tool), (55, 66), "{name}: archive ownership kept");
        assert_eq!(
            fs::read_link(layer.path().join("opt/pkg/run")).unwrap(),
            Path::new("bin/tool")
        );
        assert_eq!(stats.files, 2, "{name}");
    }
    // COPY never extracts.
    let (layer, _) = run(Source::Context(&ctx), &op(&["gz.tar.gz"], "/opt/"), None);
    assert!(layer.path().join("opt/gz.tar.gz").is_file());
    // --chown overrides the archive's owners.
    let mut o = op(&["plain.tar"], "/opt");
    o.kind = CopyKind::Add;
    o.chown = Some("7:8".into());
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(owner(&layer.path().join("opt/pkg/README")), (7, 8));
}

/// A tar entry with an arbitrary (unsafe) name, written by hand because the
/// tar crate refuses to build such names.
fn raw_tar(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, body) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(body.len() as u64);
        header.set_entry_type(tar::EntryType::new(*kind));
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn add_refuses_archives_that_escape() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "dotdot.tar",
            raw_tar(&[("../x", b'0', "", b"evil")]),
            "climbs out",
        ),
        (
            "deep.tar",
            raw_tar(&[("a/../../x", b'0', "", b"evil")]),
            "climbs out",
        ),
        (
            "link.tar",
            raw_tar(&[("l", b'2', "../../etc", b"")]),
            "symlink target",
        ),
        (
            "hard.tar",
            raw_tar(&[("h", b'1', "../etc/passwd", b"")]),
            "hardlink target",
        ),
    ];
    for (name, bytes, _) in &cases {
        fs::write(ctx_dir.path().join(name), bytes).unwrap();
    }
    let ctx = context(ctx_dir.path());
    for (name, _, reason) in &cases {
        let mut o = op(&[name], "/dst");
        o.kind = CopyKind::Add;
        let plan = copy::plan(Source::Context(&ctx), &o).unwrap();
        let layer = tempfile::tempdir().unwrap();
        let err = copy::execute(&plan, &RootfsView::empty(), layer.path()).unwrap_err();
        assert!(
            matches!(err, Error::UnsafeArchiveEntry { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(reason), "{name}: {err}");
        assert!(!layer.path().join("x").exists());
    }
    // Absolute names are taken relative to the destination, like Docker.
    fs::write(
        ctx_dir.path().join("abs.tar"),
        raw_tar(&[("/etc/abs", b'0', "", b"ok")]),
    )
    .unwrap();
    let ctx = context(ctx_dir.path());
    let mut o = op(&["abs.tar"], "/dst");
    o.kind = CopyKind::Add;
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(
        fs::read_to_string(layer.path().join("dst/etc/abs")).unwrap(),
        "ok"
    );
}

// ---------------------------------------------------------------- ADD URLs

/// Serves `body` for every request (at most `count`), with a Last-Modified.
fn serve(body: &'static [u8], count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body).unwrap();
        }
    });
    format!("http://{addr}/files/tool.bin?v=1")
}

#[test]
fn add_url_downloads_with_and_without_checksum() {
    const BODY: &[u8] = b"remote bytes\n";
    let url = serve(BODY, 3);
    let ctx_dir = tempfile::tempdir().unwrap();
    let ctx = context(ctx_dir.path());

    let mut o = op(&[&url], "/dl/");
    o.kind = CopyKind::Add;
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    let got = layer.path().join("dl/tool.bin");
    assert_eq!(fs::read(&got).unwrap(), BODY);
    assert_eq!(mode(&got), 0o600);
    assert_eq!(mtime(&got), 784_111_777);

    o.checksum = Some(Digest::of(BODY));
    let plan = copy::plan(Source::Context(&ctx), &o).unwrap();
    let layer = tempfile::tempdir().unwrap();
    copy::execute(&plan, &RootfsView::empty(), layer.path()).unwrap();
    assert_eq!(fs::read(layer.path().join("dl/tool.bin")).unwrap(), BODY);

    o.checksum = Some(Digest::of(b"something else"));
    let plan = copy::plan(Source::Context(&ctx), &o).unwrap();
    let layer = tempfile::tempdir().unwrap();
    let err = copy::execute(&plan, &RootfsView::empty(), layer.path()).unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert!(!layer.path().join("dl/tool.bin").exists());

    let mut git = op(&["https://github.com/moby/buildkit.git#v0.12.0"], "/src");
    git.kind = CopyKind::Add;
    assert!(plan_err(Source::Context(&ctx), &git).contains("not supported yet"));
    let mut checksum_local = op(&["x"], "/x");
    checksum_local.kind = CopyKind::Add;
    checksum_local.checksum = Some(Digest::of(b""));
    assert!(plan_err(Source::Context(&ctx), &checksum_local).contains("non-HTTP(S)"));
}

// ---------------------------------------------------------------- heredocs

#[test]
fn heredoc_becomes_a_file() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let ctx = context(ctx_dir.path());
    let mut o = op(&[], "/etc/motd");
    o.heredocs = vec![Heredoc {
        name: "EOF".into(),
        body: "hello\nworld\n".into(),
    }];
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    let motd = layer.path().join("etc/motd");
    assert_eq!(fs::read_to_string(&motd).unwrap(), "hello\nworld\n");
    assert_eq!(mode(&motd), 0o644);
    let mut o = op(&[], "/app/");
    o.heredocs = vec![
        Heredoc {
            name: "one".into(),
            body: "1".into(),
        },
        Heredoc {
            name: "two".into(),
            body: "2".into(),
        },
    ];
    o.chmod = Some("755".parse().unwrap());
    let (layer, _) = run(Source::Context(&ctx), &o, None);
    assert_eq!(listing(layer.path()), ["app/", "app/one", "app/two"]);
    assert_eq!(mode(&layer.path().join("app/two")), 0o755);

    // Heredocs alone never walk the context: this one is gone by now.
    let gone_dir = tempfile::tempdir().unwrap();
    let gone = context(gone_dir.path());
    drop(gone_dir);
    let (layer, _) = run(Source::Context(&gone), &o, None);
    assert!(layer.path().join("app/one").is_file());
}

// ---------------------------------------------------------------- rootfs view

fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

fn opaque(path: &Path) {
    rustix::fs::lsetxattr(
        path,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

/// lower: /a/{x,y}, /b/{z}, /etc/passwd; upper: whiteout /a/x, opaque /b
/// with /b/w, a new /c.
fn overlay_layers() -> (TempDir, TempDir, RootfsView) {
    let lower = tempfile::tempdir().unwrap();
    write(lower.path(), "a/x", "x");
    write(lower.path(), "a/y", "y");
    write(lower.path(), "b/z", "z");
    write(lower.path(), "etc/passwd", "svc:x:501:502::/:/bin/false\n");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        lower.path().join("a/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let upper = tempfile::tempdir().unwrap();
    fs::create_dir_all(upper.path().join("a")).unwrap();
    whiteout(&upper.path().join("a/x"));
    write(upper.path(), "b/w", "w");
    opaque(&upper.path().join("b"));
    write(upper.path(), "c", "c");
    let view = RootfsView::new(vec![upper.path().to_owned(), lower.path().to_owned()]);
    (lower, upper, view)
}

#[test]
fn rootfs_view_respects_whiteouts_and_opaque_dirs() {
    let (_lower, _upper, view) = overlay_layers();
    assert!(view.lookup("/a/x").unwrap().is_none());
    assert_eq!(view.lookup("/a/y").unwrap().unwrap().layer, 1);
    assert!(view.lookup("/b/z").unwrap().is_none());
    let names = |p: &str| -> Vec<String> {
        view.read_dir(p)
            .unwrap()
            .into_iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names("/a"), ["fifo", "y"]);
    assert_eq!(names("/b"), ["w"]);
    assert_eq!(names("/"), ["a", "b", "c", "etc"]);
    let mut body = String::new();
    view.open("/a/y")
        .unwrap()
        .read_to_string(&mut body)
        .unwrap();
    assert_eq!(body, "y");

    // COPY --from over this view sees the merged tree, owners kept.
    lchown(&_lower.path().join("a/y"), 501, 502);
    let (layer, _) = run(Source::Rootfs(&view), &op(&["/"], "/copy/"), None);
    assert_eq!(
        listing(layer.path()),
        [
            "copy/",
            "copy/a/",
            "copy/a/fifo",
            "copy/a/y",
            "copy/b/",
            "copy/b/w",
            "copy/c",
            "copy/etc/",
            "copy/etc/passwd"
        ]
    );
    assert_eq!(owner(&layer.path().join("copy/a/y")), (501, 502));
    let fifo = fs::symlink_metadata(layer.path().join("copy/a/fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    assert_eq!(fifo.mode() & 0o7777, 0o640);
    // No overlay bookkeeping leaks into the copy.
    let mut buf = [0u8; 8];
    assert!(
        rustix::fs::lgetxattr(
            layer.path().join("copy/b"),
            "trusted.overlay.opaque",
            &mut buf[..]
        )
        .is_err()
    );

    // --chown names resolve through the view (passwd from the lower layer).
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "f", "f");
    let ctx = context(ctx_dir.path());
    let mut o = op(&["f"], "/srv/f");
    o.chown = Some("svc".into());
    let (layer, _) = run(Source::Context(&ctx), &o, Some(&view));
    assert_eq!(owner(&layer.path().join("srv/f")), (501, 502));
}

#[test]
fn destination_symlinks_are_followed_within_the_root() {
    let lower = tempfile::tempdir().unwrap();
    fs::create_dir_all(lower.path().join("usr/lib")).unwrap();
    chmod(&lower.path().join("usr/lib"), 0o751);
    std::os::unix::fs::symlink("usr/lib", lower.path().join("lib")).unwrap();
    std::os::unix::fs::symlink("/../../../usr/lib", lower.path().join("abslib")).unwrap();
    let view = RootfsView::new(vec![lower.path().to_owned()]);
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "libfoo.so", "so");
    let ctx = context(ctx_dir.path());
    let (layer, _) = run(
        Source::Context(&ctx),
        &op(&["libfoo.so"], "/lib/x86_64/"),
        Some(&view),
    );
    assert_eq!(
        listing(layer.path()),
        [
            "usr/",
            "usr/lib/",
            "usr/lib/x86_64/",
            "usr/lib/x86_64/libfoo.so"
        ]
    );
    assert_eq!(mode(&layer.path().join("usr/lib")), 0o751);
    let (layer, _) = run(
        Source::Context(&ctx),
        &op(&["libfoo.so"], "/abslib/"),
        Some(&view),
    );
    assert_eq!(
        listing(layer.path()),
        ["usr/", "usr/lib/", "usr/lib/libfoo.so"]
    );
}

#[test]
fn linked_copy_ignores_the_layers_below() {
    let lower = tempfile::tempdir().unwrap();
    fs::create_dir_all(lower.path().join("opt")).unwrap();
    chmod(&lower.path().join("opt"), 0o700);
    write(lower.path(), "etc/passwd", "app:x:1234:1300::/:/bin/sh\n");
    let view = RootfsView::new(vec![lower.path().to_owned()]);
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "f", "f");
    let ctx = context(ctx_dir.path());
    let mut o = op(&["f"], "/opt/f");
    o.link = true;
    let plan = copy::plan(Source::Context(&ctx), &o).unwrap();
    let layer = tempfile::tempdir().unwrap();
    copy::execute_linked(&plan, &view, layer.path()).unwrap();
    assert_eq!(mode(&layer.path().join("opt")), 0o755);
    assert_eq!(owner(&layer.path().join("opt")), (0, 0));
    o.chown = Some("app".into());
    let plan = copy::plan(Source::Context(&ctx), &o).unwrap();
    let layer = tempfile::tempdir().unwrap();
    copy::execute_linked(&plan, &view, layer.path()).unwrap();
    assert_eq!(owner(&layer.path().join("opt/f")), (1234, 1300));
    assert_eq!(owner(&layer.path().join("opt")), (1234, 1300));
}

// ---------------------------------------------------------------- cache digests

fn digest_of(ctx_root: &Path, o: &CopyOp) -> Digest {
    let ctx = context(ctx_root);
    let plan: CopyPlan = copy::plan(Source::Context(&ctx), o).unwrap();
    copy::cache_digest(&plan)
}

#[test]
fn cache_digest_follows_content_and_metadata_not_mtimes() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let root = ctx_dir.path();
    let f = write(root, "src/a.txt", "a");
    write(root, "src/b.txt", "b");
    write(root, "unrelated.txt", "u");
    write(root, "src/ignored.log", "1");
    write(root, ".dockerignore", "src/*.log\n");
    let o = op(&["src"], "/app/");
    let base = digest_of(root, &o);
    assert_eq!(base, digest_of(root, &o), "stable");

    set_mtime(&f, 999);
    assert_eq!(base, digest_of(root, &o), "touching a file keeps the key");
    write(root, "unrelated.txt", "changed");
    assert_eq!(
        base,
        digest_of(root, &o),
        "files outside the selection do not count"
    );
    write(root, "src/ignored.log", "22");
    write(root, "src/new.log", "new");
    assert_eq!(base, digest_of(root, &o), "ignored files do not count");

    let original_mode = mode(&f);
    chmod(&f, 0o600);
    let moded = digest_of(root, &o);
    assert_ne!(base, moded, "mode change");
    chmod(&f, original_mode);
    assert_eq!(base, digest_of(root, &o));

    write(root, "src/a.txt", "A");
    assert_ne!(base, digest_of(root, &o), "content change");
    write(root, "src/a.txt", "a");
    assert_eq!(base, digest_of(root, &o));

    let mut other_dest = o.clone();
    other_dest.dest = "/elsewhere/".into();
    assert_ne!(base, digest_of(root, &other_dest));
    let mut chowned = o.clone();
    chowned.chown = Some("1:1".into());
    assert_ne!(base, digest_of(root, &chowned));
    let mut chmodded = o.clone();
    chmodded.chmod = Some("700".parse().unwrap());
    assert_ne!(base, digest_of(root, &chmodded));
}

#[test]
fn stat_cache_skips_unchanged_files_and_catches_changes() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let root = ctx_dir.path();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_dir.path().join("stat-cache");
    let f = write(root, "a.txt", "first");
    let b = write(root, "b.txt", "bbb");
    rustix::fs::lsetxattr(&b, "user.note", b"kept", rustix::fs::XattrFlags::empty()).unwrap();
    // Files must be older than the racy window to be remembered.
    set_mtime(&f, 1_000);
    set_mtime(&root.join("b.txt"), 1_000);
    std::thread::sleep(std::time::Duration::from_millis(60));
    let open = || {
        BuildContext::open(
            root,
            ContextOptions {
                dockerfile: None,
                stat_cache: Some(cache.clone()),
            },
        )
        .unwrap()
    };
    let ctx = open();
    assert_eq!(
        ctx.digest(Path::new("a.txt")).unwrap(),
        Digest::of(b"first")
    );
    assert_eq!(ctx.digest(Path::new("b.txt")).unwrap(), Digest::of(b"bbb"));
    ctx.save_stat_cache().unwrap();
    let saved = fs::read_to_string(&cache).unwrap();
    assert_eq!(saved.lines().count(), 3, "{saved}");
    assert!(saved.contains(Digest::of(b"first").hex()));
    assert!(saved.contains(&hex::encode("user.note")), "{saved}");

    // xattrs come back from the cache with the digest.
    let ctx = open();
    let index = ctx.index().unwrap();
    let pos = index.position(Path::new("b.txt")).unwrap();
    let xattrs = ctx.xattrs_at(&index, pos).unwrap();
    assert_eq!(xattrs, vec![("user.note".into(), b"kept".to_vec())]);

    // Same size, same mtime, different content: ctime gives it away.
    fs::write(&f, "FIRST").unwrap();
    set_mtime(&f, 1_000);
    let ctx = open();
    assert_eq!(
        ctx.digest(Path::new("a.txt")).unwrap(),
        Digest::of(b"FIRST")
    );
    assert_eq!(ctx.digest(Path::new("b.txt")).unwrap(), Digest::of(b"bbb"));

    // A corrupt cache is ignored, not trusted.
    fs::write(&cache, "garbage").unwrap();
    let ctx = open();
    assert_eq!(ctx.digest(Path::new("b.txt")).unwrap(), Digest::of(b"bbb"));
}

// ---------------------------------------------------------------- WORKDIR

#[test]
fn workdir_makes_only_the_missing_directories_owned_by_the_user() {
    let lower = tempfile::tempdir().unwrap();
    fs::create_dir_all(lower.path().join("srv/app")).unwrap();
    chmod(&lower.path().join("srv"), 0o711);
    set_mtime(&lower.path().join("srv"), 123_456);
    // `/var/run` → `/run`: the new directories go to where the link points.
    fs::create_dir_all(lower.path().join("run")).unwrap();
    fs::create_dir_all(lower.path().join("var")).unwrap();
    std::os::unix::fs::symlink("../run", lower.path().join("var/run")).unwrap();
    let view = RootfsView::new(vec![lower.path().to_owned()]);

    let layer = tempfile::tempdir().unwrap();
    let made = copy::make_dir_all(
        &view,
        layer.path(),
        Path::new("/srv/app/work/sub"),
        (65534, 65533),
    )
    .unwrap();
    assert_eq!(made, 2);
    let work = layer.path().join("srv/app/work");
    for dir in [work.clone(), work.join("sub")] {
        assert_eq!(mode(&dir), 0o755, "{}", dir.display());
        assert_eq!(owner(&dir), (65534, 65533), "{}", dir.display());
    }
    // Existing parents are mirrored with their own metadata, not the user's.
    assert_eq!(mode(&layer.path().join("srv")), 0o711);
    assert_eq!(owner(&layer.path().join("srv")), (0, 0));
    assert_eq!(mtime(&layer.path().join("srv")), 123_456);

    let through_link = tempfile::tempdir().unwrap();
    let made = copy::make_dir_all(
        &view,
        through_link.path(),
        Path::new("/var/run/app"),
        (0, 0),
    )
    .unwrap();
    assert_eq!(made, 1);
    assert!(through_link.path().join("run/app").is_dir());
    assert!(!through_link.path().join("var/run").exists());

    let nothing_new = tempfile::tempdir().unwrap();
    let made =
        copy::make_dir_all(&view, nothing_new.path(), Path::new("/srv/app"), (1, 1)).unwrap();
    assert_eq!(
        made, 0,
        "an existing WORKDIR makes no directory (and no layer)"
    );
}
