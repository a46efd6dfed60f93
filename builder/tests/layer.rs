//! Layer writer, applier and diff against real file systems: real overlay mounts, real
//! device nodes, xattrs and hardlinks, GNU tar as an independent reader.
//!
//! Most cases need root (overlay mounts, mknod, chown, `trusted.*` xattrs); without it
//! they say so and return.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_builder::digest::Digest;
use kiln_builder::layer::{
    self, ApplyMode, ApplyOptions, Compression, CopyReport, DiffOptions, Error, LayerInfo,
    SourceDateEpoch, WriteOptions,
};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags};

const EPOCH: i64 = 1_500_000_000;
const OLD: i64 = 1_000_000_000;

fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping: needs root (overlay mounts, mknod, chown)");
    false
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Sets every mtime below `root` (root included) to `secs`, children first.
fn set_all_mtimes(root: &Path, secs: i64) {
    for entry in fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            set_all_mtimes(&path, secs);
        } else {
            set_mtime(&path, secs);
        }
    }
    set_mtime(root, secs);
}

fn write_file(path: &Path, content: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

fn mknod(path: &Path, file_type: FileType, major: u32, minor: u32, mode: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        file_type,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
}

/// What a tree looks like, for comparing two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    link: Option<String>,
    content: Option<Digest>,
    rdev: u64,
    xattrs: Vec<(String, Vec<u8>)>,
    /// The first path (in sorted order) sharing this inode, for hardlinks.
    same_inode_as: Option<String>,
}

fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let same_inode_as = if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            match inodes.get(&key) {
                Some(first) => Some(first.clone()),
                None => {
                    inodes.insert(key, rel.clone());
                    None
                }
            }
        } else {
            None
        };
        let mut xattrs = Vec::new();
        let mut list = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(&path, &mut list[..]).unwrap_or(0);
        for xname in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let xname_str = String::from_utf8_lossy(xname).into_owned();
            if xname_str.contains(".overlay.") {
                continue;
            }
            let mut value = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(&path, xname, &mut value[..]).unwrap();
            value.truncate(len);
            xattrs.push((xname_str, value));
        }
        xattrs.sort();
        out.insert(
            rel.clone(),
            Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: if ft.is_dir() { 0 } else { meta.size() },
                mtime: meta.mtime(),
                link: ft
                    .is_symlink()
                    .then(|| fs::read_link(&path).unwrap().to_string_lossy().into_owned()),
                content: ft.is_file().then(|| Digest::of(&fs::read(&path).unwrap())),
                rdev: meta.rdev(),
                xattrs,
                same_inode_as,
            },
        );
        if ft.is_dir() {
            walk(root, &path, out, inodes);
        }
    }
}

struct TarEntry {
    path: String,
    kind: char,
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: u64,
    link: Option<String>,
    raw_header: Vec<u8>,
}

fn decompress(blob: &[u8]) -> Vec<u8> {
    if blob.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        blob.to_vec()
    }
}

fn tar_entries(tar: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            TarEntry {
                path: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                kind: h.entry_type().as_byte() as char,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mode: h.mode().unwrap(),
                mtime: h.mtime().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
                raw_header: h.as_bytes().to_vec(),
            }
        })
        .collect()
}

fn write(source: &Path, options: &WriteOptions) -> (LayerInfo, Vec<u8>) {
    layer::write_layer(source, options, Vec::new()).unwrap()
}

fn epoch_options(compression: Compression) -> WriteOptions {
    WriteOptions {
        compression,
        source_date_epoch: Some(SourceDateEpoch(EPOCH)),
        ..Default::default()
    }
}

/// A tree with every kind of object the writer has to handle.
fn rich_tree(root: &Path) {
    write_file(&root.join("etc/hostname"), b"kiln\n");
    write_file(&root.join("usr/bin/su"), b"#!/bin/sh\nexit 0\n");
    fs::set_permissions(root.join("usr/bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    write_file(
        &root.join("usr/bin/ping"),
        &[0x7f, b'E', b'L', b'F', 0, 1, 2, 3],
    );
    // cap_net_raw+ep, as setcap writes it (VFS_CAP_REVISION_2).
    let cap: [u8; 20] = [
        0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0,
        0, 0,
    ];
    setxattr(&root.join("usr/bin/ping"), "security.capability", &cap);
    setxattr(&root.join("etc/hostname"), "user.kiln.note", b"hello");
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(root.join("srv/shared")).unwrap();
    fs::set_permissions(root.join("srv/shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    // Hardlinks: three names of one inode.
    write_file(&root.join("usr/lib/libfoo.so.1"), &vec![7u8; 70_000]);
    fs::hard_link(
        root.join("usr/lib/libfoo.so.1"),
        root.join("usr/lib/libfoo-hard"),
    )
    .unwrap();
    fs::hard_link(
        root.join("usr/lib/libfoo.so.1"),
        root.join("srv/libfoo-copy"),
    )
    .unwrap();
    symlink("libfoo.so.1", root.join("usr/lib/libfoo.so")).unwrap();
    symlink("/etc/hostname", root.join("srv/abs-link")).unwrap();
    // Long names: > 100 and > 255 bytes, and a long symlink target.
    let long_dir = root.join("long").join("d".repeat(90));
    let name_120 = format!("{}.txt", "n".repeat(116));
    write_file(&long_dir.join(&name_120), b"long name");
    let deep = long_dir.join("e".repeat(200)).join("f".repeat(150));
    write_file(&deep.join("leaf"), b"very long path");
    let long_target = format!("{}/{}", "d".repeat(90), name_120);
    symlink(&long_target, root.join("long/link-to-long")).unwrap();
    // Owners other than root.
    write_file(&root.join("home/user/.profile"), b"export A=1\n");
    rustix::fs::chown(
        root.join("home/user"),
        Some(rustix::fs::Uid::from_raw(1000)),
        Some(rustix::fs::Gid::from_raw(1000)),
    )
    .unwrap();
    rustix::fs::chown(
        root.join("home/user/.profile"),
        Some(rustix::fs::Uid::from_raw(1000)),
        Some(rustix::fs::Gid::from_raw(100)),
    )
    .unwrap();
    rustix::fs::chownat(
        rustix::fs::CWD,
        root.join("srv/abs-link"),
        Some(rustix::fs::Uid::from_raw(33)),
        Some(rustix::fs::Gid::from_raw(33)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    // Special files.
    fs::create_dir_all(root.join("dev")).unwrap();
    mknod(
        &root.join("dev/null"),
        FileType::CharacterDevice,
        1,
        3,
        0o666,
    );
    mknod(&root.join("dev/loop9"), FileType::BlockDevice, 7, 9, 0o660);
    mknod(&root.join("dev/pipe"), FileType::Fifo, 0, 0, 0o644);
    // A sparse file: 8 MiB hole between two bytes.
    use std::io::{Seek, SeekFrom, Write};
    fs::create_dir_all(root.join("var")).unwrap();
    let mut sparse = fs::File::create(root.join("var/sparse")).unwrap();
    sparse.write_all(b"a").unwrap();
    sparse.seek(SeekFrom::Start(8 << 20)).unwrap();
    sparse.write_all(b"z").unwrap();
    drop(sparse);
    set_all_mtimes(root, OLD);
    set_mtime(&root.join("etc/hostname"), OLD + 12345);
}

#[test]
fn same_tree_twice_gives_identical_digests_sorted_entries_and_no_names() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    rich_tree(&tree);
    for compression in [
        Compression::gzip(),
        Compression::single_stream_gzip(),
        Compression::Gzip { level: 6 },
        Compression::ParallelGzip { level: 6 },
        Compression::zstd(),
        Compression::Uncompressed,
    ] {
        let (a, blob_a) = write(&tree, &epoch_options(compression));
        let (b, blob_b) = write(&tree, &epoch_options(compression));
        assert_eq!(a, b, "{compression:?}");
        assert!(blob_a == blob_b, "{compression:?}: blobs differ");
        assert_eq!(a.digest, Digest::of(&blob_a));
        assert_eq!(a.size, blob_a.len() as u64);
        assert!(!a.is_empty());
    }
    // Every compression has the same diffID: the tar is the same.
    let (gz, blob) = write(&tree, &epoch_options(Compression::gzip()));
    let (zs, _) = write(&tree, &epoch_options(Compression::zstd()));
    assert_eq!(gz.diff_id, zs.diff_id);
    let (single, _) = write(&tree, &epoch_options(Compression::single_stream_gzip()));
    assert_eq!(gz.diff_id, single.diff_id);
    // Other gzip readers accept the (default) parallel form.
    let pgz_path = dir.path().join("parallel.tar.gz");
    fs::write(&pgz_path, &blob).unwrap();
    let check = Command::new("gzip")
        .arg("-t")
        .arg(&pgz_path)
        .status()
        .unwrap();
    assert!(check.success(), "gzip -t rejects the parallel gzip blob");
    assert_eq!(
        gz.media_type.as_str(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        zs.media_type.as_str(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );

    // The gzip header carries no mtime and no file name.
    assert_eq!(&blob[0..3], &[0x1f, 0x8b, 0x08]);
    assert_eq!(blob[3] & 0x08, 0, "FNAME set");
    assert_eq!(&blob[4..8], &[0, 0, 0, 0], "gzip mtime");

    let tar = decompress(&blob);
    assert_eq!(Digest::of(&tar), gz.diff_id);
    assert_eq!(tar.len() as u64, gz.uncompressed_size);
    let entries = tar_entries(&tar);
    assert_eq!(entries.len() as u64, gz.entries);
    // Sorted: depth-first, children by name bytes, parents first.
    let keys: Vec<Vec<Vec<u8>>> = entries
        .iter()
        .map(|e| {
            e.path
                .trim_end_matches('/')
                .split('/')
                .map(|c| c.as_bytes().to_vec())
                .collect()
        })
        .collect();
    for pair in keys.windows(2) {
        assert!(
            pair[0] < pair[1],
            "out of order: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    for e in &entries {
        // uname (265..297) and gname (297..329) are empty.
        assert!(e.raw_header[265..329].iter().all(|&b| b == 0), "{}", e.path);
        // Clamped: nothing newer than the epoch; older mtimes kept.
        assert!(e.mtime as i64 <= EPOCH);
    }
    let by_path = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    assert_eq!(by_path("etc/hostname").mtime as i64, OLD + 12345);
    assert_eq!(by_path("usr/bin/su").mode, 0o4755);
    assert_eq!(by_path("tmp/").mode, 0o1777);
    assert_eq!(by_path("srv/shared/").mode, 0o2775);
    assert_eq!(by_path("home/user/.profile").uid, 1000);
    assert_eq!(by_path("home/user/.profile").gid, 100);
    assert_eq!(by_path("srv/abs-link").uid, 33);
    assert_eq!(by_path("dev/null").kind, '3');
    assert_eq!(by_path("dev/loop9").kind, '4');
    assert_eq!(by_path("dev/pipe").kind, '6');
    // Hardlinks: first name in tar order is the file, the others link to it.
    assert_eq!(by_path("srv/libfoo-copy").kind, '0');
    assert_eq!(by_path("usr/lib/libfoo-hard").kind, '1');
    assert_eq!(
        by_path("usr/lib/libfoo-hard").link.as_deref(),
        Some("srv/libfoo-copy")
    );
    assert_eq!(by_path("usr/lib/libfoo.so.1").kind, '1');

    // Newer mtimes are clamped to the epoch.
    let now_tree = dir.path().join("now");
    write_file(&now_tree.join("fresh"), b"new");
    let (_, blob) = write(&now_tree, &epoch_options(Compression::Uncompressed));
    let entries = tar_entries(&blob);
    assert_eq!(entries[0].path, "fresh");
    assert_eq!(entries[0].mtime as i64, EPOCH);
    let (_, blob) = write(&now_tree, &WriteOptions::default());
    assert!(tar_entries(&decompress(&blob))[0].mtime as i64 > EPOCH);
}

#[test]
fn rich_tree_round_trips_through_write_and_unpack() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    rich_tree(&tree);
    for (compression, mode) in [
        (Compression::gzip(), ApplyMode::Flatten),
        (
            Compression::single_stream_gzip(),
            ApplyMode::OverlayLowerDir,
        ),
        (Compression::zstd(), ApplyMode::OverlayLowerDir),
        (Compression::Uncompressed, ApplyMode::Flatten),
    ] {
        let (info, blob) = write(
            &tree,
            &WriteOptions {
                compression,
                ..Default::default()
            },
        );
        let out = dir
            .path()
            .join(format!("out-{compression:?}-{mode:?}").replace(' ', ""));
        let report = layer::unpack_layer(
            &blob[..],
            &out,
            &ApplyOptions {
                mode,
                expected_diff_id: Some(info.diff_id.clone()),
                overlay_xattrs: Default::default(),
            },
        )
        .unwrap();
        assert_eq!(report.diff_id, info.diff_id);
        assert_eq!(report.entries, info.entries);
        assert_eq!(report.compressed_size, blob.len() as u64);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let (want, got) = (snapshot(&tree), snapshot(&out));
        for (path, node) in &want {
            assert_eq!(got.get(path), Some(node), "{path} ({compression:?})");
        }
        assert_eq!(want.len(), got.len());
        // The capability survived chown.
        assert!(
            got["usr/bin/ping"]
                .xattrs
                .iter()
                .any(|(n, _)| n == "security.capability")
        );
        assert_eq!(
            got["usr/lib/libfoo.so.1"].same_inode_as.as_deref(),
            Some("srv/libfoo-copy")
        );
        // The root of an unpacked layer is 0755 (not the temp dir's 0700).
        assert_eq!(fs::metadata(&out).unwrap().mode() & 0o7777, 0o755);
    }
}

#[test]
fn gnu_tar_reads_long_names_and_xattrs() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    rich_tree(&tree);
    let tar_path = dir.path().join("layer.tar");
    let mut file = fs::File::create(&tar_path).unwrap();
    let stats =
        layer::write_tar(&tree, &epoch_options(Compression::Uncompressed), &mut file).unwrap();
    drop(file);
    assert_eq!(fs::metadata(&tar_path).unwrap().len(), stats.bytes);

    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    assert!(
        listing.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let text = String::from_utf8(listing.stdout).unwrap();
    let long_leaf = format!(
        "long/{}/{}/{}/leaf",
        "d".repeat(90),
        "e".repeat(200),
        "f".repeat(150)
    );
    assert!(long_leaf.len() > 255);
    assert!(text.lines().any(|l| l.ends_with(&long_leaf)), "{text}");
    let name_120 = format!("long/{}/{}.txt", "d".repeat(90), "n".repeat(116));
    assert!(text.lines().any(|l| l.ends_with(&name_120)));
    assert!(
        text.lines()
            .any(|l| l.starts_with("-rwsr-xr-x 0/0") && l.ends_with("usr/bin/su")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("-rw-r--r-- 1000/100") && l.ends_with("home/user/.profile"))
    );
    assert!(
        text.lines()
            .any(|l| l.contains("usr/lib/libfoo-hard link to srv/libfoo-copy"))
    );
    assert!(text.lines().any(|l| l.contains(&format!(
        "long/link-to-long -> {}/{}.txt",
        "d".repeat(90),
        "n".repeat(116)
    ))));
    assert!(!text.contains("PaxHeaders"));

    // GNU tar restores the xattrs from the SCHILY records.
    let out = dir.path().join("gnu-out");
    fs::create_dir(&out).unwrap();
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let got = snapshot(&out);
    let want = snapshot(&tree);
    assert_eq!(got["usr/bin/ping"].xattrs, want["usr/bin/ping"].xattrs);
    assert_eq!(got["etc/hostname"].xattrs, want["etc/hostname"].xattrs);
    assert_eq!(got[&long_leaf].content, want[&long_leaf].content);
}

#[test]
fn unpacks_gnu_tar_archives_with_long_names_sparse_files_and_padding() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    rich_tree(&tree);
    let tar_path = dir.path().join("gnu.tar");
    // GNU format: `././@LongLink` names, old-style sparse entries, a `./` root entry and
    // the archive padded to a 10 KiB record.
    let status = Command::new("tar")
        .args(["--format=gnu", "--sparse", "--numeric-owner", "-cf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = fs::read(&tar_path).unwrap();
    assert_eq!(bytes.len() % 10240, 0);
    let out = dir.path().join("out");
    let report = layer::unpack_layer(
        &bytes[..],
        &out,
        &ApplyOptions::flatten(Some(Digest::of(&bytes))),
    )
    .unwrap();
    assert_eq!(report.uncompressed_size, bytes.len() as u64);
    let strip = |mut tree: BTreeMap<String, Node>| {
        // GNU format carries no xattrs.
        tree.values_mut().for_each(|n| n.xattrs.clear());
        tree
    };
    assert_eq!(strip(snapshot(&out)), strip(snapshot(&tree)));
    assert_eq!(fs::metadata(&out).unwrap().mtime(), OLD);
}

/// An overlay mount that is unmounted when dropped.
struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    fn mount(lowers: &[&Path], upper: Option<(&Path, &Path)>, merged: &Path) -> Overlay {
        let lower = lowers
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let mut opts = format!("lowerdir={lower},redirect_dir=off,metacopy=off,index=off");
        if let Some((upper, work)) = upper {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                upper.display(),
                work.display()
            ));
        }
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(merged)
            .status()
            .unwrap();
        assert!(status.success(), "mount overlay {opts}");
        Overlay {
            merged: merged.to_path_buf(),
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

/// The base tree the change-set tests start from; all mtimes old.
fn base_tree(root: &Path) {
    write_file(&root.join("etc/hostname"), b"base\n");
    write_file(&root.join("etc/old"), b"to be deleted");
    write_file(&root.join("bin/tool"), b"tool");
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    write_file(&root.join("var/cache/a"), b"a");
    write_file(&root.join("var/cache/sub/b"), b"b");
    write_file(&root.join("usr/share/doc/README"), b"docs");
    write_file(&root.join("usr/share/doc/more/x"), b"x");
    write_file(&root.join("usr/lib/deep/file"), b"deep v1");
    write_file(&root.join("usr/lib/deep/other"), b"other");
    write_file(&root.join("opt/was-file"), b"becomes a dir");
    set_all_mtimes(root, OLD);
}

/// The same operations a RUN step would do, applied to `root` (a merged overlay or a copy).
fn change_set(root: &Path) {
    write_file(&root.join("etc/new.conf"), b"new");
    fs::write(root.join("etc/hostname"), b"changed\n").unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(root.join("etc/old")).unwrap();
    fs::remove_dir_all(root.join("var/cache")).unwrap();
    fs::create_dir(root.join("var/cache")).unwrap();
    write_file(&root.join("var/cache/fresh"), b"fresh");
    fs::remove_dir_all(root.join("usr/share/doc")).unwrap();
    // Rewrite in place with the same size: only the mtime tells.
    fs::write(root.join("usr/lib/deep/file"), b"deep v2").unwrap();
    fs::remove_file(root.join("opt/was-file")).unwrap();
    write_file(&root.join("opt/was-file/now-dir"), b"inside");
    symlink("new.conf", root.join("etc/link")).unwrap();
    fs::hard_link(root.join("etc/new.conf"), root.join("etc/new-hard")).unwrap();
}

#[test]
fn overlay_upper_dir_becomes_whiteouts_and_opaque_markers() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged) = (
        dir.path().join("lower"),
        dir.path().join("upper"),
        dir.path().join("work"),
        dir.path().join("merged"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    base_tree(&lower);
    {
        let _mount = Overlay::mount(&[&lower], Some((&upper, &work)), &merged);
        change_set(&merged);
    }
    let (info, blob) = write(&upper, &epoch_options(Compression::gzip()));
    let entries = tar_entries(&decompress(&blob));
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "bin/",
            "bin/tool",
            "etc/",
            "etc/.wh.old",
            "etc/hostname",
            "etc/link",
            "etc/new-hard",
            "etc/new.conf",
            "opt/",
            "opt/was-file/",
            "opt/was-file/.wh..wh..opq",
            "opt/was-file/now-dir",
            "usr/",
            "usr/lib/",
            "usr/lib/deep/",
            "usr/lib/deep/file",
            "usr/share/",
            "usr/share/.wh.doc",
            "var/",
            "var/cache/",
            "var/cache/.wh..wh..opq",
            "var/cache/fresh",
        ]
    );
    assert_eq!(info.entries, names.len() as u64);
    let by_path = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    // Whiteouts: empty regular files, 0644, root, clamped.
    for p in ["etc/.wh.old", "usr/share/.wh.doc", "var/cache/.wh..wh..opq"] {
        let e = by_path(p);
        assert_eq!(
            (e.kind, e.mode, e.uid, e.gid, e.mtime as i64),
            ('0', 0o644, 0, 0, EPOCH),
            "{p}"
        );
    }
    // Copied-up ancestors keep their old metadata.
    assert_eq!(by_path("usr/lib/").mtime as i64, OLD);
    assert_eq!(by_path("bin/tool").mode, 0o700);
    assert_eq!(
        by_path("etc/new.conf").kind,
        '1',
        "second name of the new inode in tar order"
    );

    // Apply base + layer flattened and compare with what the overlay showed.
    let flat = dir.path().join("flat");
    let (base_info, base_blob) = write(&lower, &WriteOptions::default());
    layer::unpack_layer(
        &base_blob[..],
        &flat,
        &ApplyOptions::flatten(Some(base_info.diff_id)),
    )
    .unwrap();
    layer::apply_layer(&blob[..], &flat, &ApplyOptions::flatten(Some(info.diff_id))).unwrap();
    let got = snapshot(&flat);
    assert!(!got.contains_key("etc/old"));
    assert!(!got.contains_key("usr/share/doc"));
    assert!(!got.contains_key("var/cache/a"));
    assert!(!got.contains_key("var/cache/sub"));
    assert_eq!(got["var/cache/fresh"].kind, "file");
    assert_eq!(got["opt/was-file"].kind, "dir");
    assert_eq!(fs::read(flat.join("etc/hostname")).unwrap(), b"changed\n");
    assert_eq!(fs::read(flat.join("usr/lib/deep/other")).unwrap(), b"other");
}

#[test]
fn metadata_diff_writes_the_same_layer_as_the_overlay_path() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged, copy) = (
        dir.path().join("lower"),
        dir.path().join("upper"),
        dir.path().join("work"),
        dir.path().join("merged"),
        dir.path().join("copy"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    base_tree(&lower);
    {
        let _mount = Overlay::mount(&[&lower], Some((&upper, &work)), &merged);
        change_set(&merged);
    }
    let options = epoch_options(Compression::gzip());
    let (overlay_info, overlay_blob) = write(&upper, &options);

    let report: CopyReport = layer::copy_tree(&lower, &copy).unwrap();
    assert_eq!(
        snapshot(&lower),
        snapshot(&copy),
        "copy_tree preserves everything"
    );
    assert!(report.finished_at.is_some(), "ext4 keeps birth times");
    // File-system timestamps are coarse (a clock tick); make the step start later.
    std::thread::sleep(std::time::Duration::from_millis(50));
    change_set(&copy);
    let diff = DiffOptions {
        replaced_after: report.finished_at,
    };
    let (diff_info, diff_blob) =
        layer::write_diff_layer(&lower, &copy, &options, &diff, Vec::new()).unwrap();
    let names = |blob: &[u8]| -> Vec<String> {
        tar_entries(&decompress(blob))
            .into_iter()
            .map(|e| format!("{} {} {:o} {}", e.path, e.kind, e.mode, e.mtime))
            .collect()
    };
    assert_eq!(names(&diff_blob), names(&overlay_blob));
    assert_eq!(diff_info.diff_id, overlay_info.diff_id);
    assert_eq!(diff_info.digest, overlay_info.digest);

    // Nothing changed: an empty layer.
    let (same, _) =
        layer::write_diff_layer(&copy, &copy, &options, &DiffOptions::default(), Vec::new())
            .unwrap();
    assert!(same.is_empty());
    assert_eq!(same.diff_id.to_string(), layer::EMPTY_LAYER_DIFF_ID);
}

#[test]
fn whiteouts_flatten_and_stack_as_overlay_lower_dirs() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    write_file(&base.join("a"), b"a");
    write_file(&base.join("b"), b"b");
    write_file(&base.join("d/old"), b"old");
    write_file(&base.join("d/sub/deeper"), b"deeper");
    // The second layer, written by hand as an overlay upper dir would hold it.
    let top = dir.path().join("top");
    fs::create_dir(&top).unwrap();
    mknod(&top.join("a"), FileType::CharacterDevice, 0, 0, 0);
    fs::create_dir(top.join("d")).unwrap();
    setxattr(&top.join("d"), "trusted.overlay.opaque", b"y");
    write_file(&top.join("d/new"), b"new");
    let (base_info, base_blob) = write(&base, &WriteOptions::default());
    let (top_info, top_blob) = write(&top, &WriteOptions::default());
    let top_names: Vec<String> = tar_entries(&decompress(&top_blob))
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(top_names, [".wh.a", "d/", "d/.wh..wh..opq", "d/new"]);

    // Flatten: deletions performed.
    let flat = dir.path().join("flat");
    layer::unpack_layer(&base_blob[..], &flat, &ApplyOptions::flatten(None)).unwrap();
    layer::apply_layer(&top_blob[..], &flat, &ApplyOptions::flatten(None)).unwrap();
    let got: Vec<String> = snapshot(&flat).into_keys().collect();
    assert_eq!(got, ["b", "d", "d/new"]);

    // Overlay lower dirs: deletions recorded, the mount hides them.
    let l1 = dir.path().join("l1");
    let l2 = dir.path().join("l2");
    layer::unpack_layer(
        &base_blob[..],
        &l1,
        &ApplyOptions::overlay_lower_dir(Some(base_info.diff_id)),
    )
    .unwrap();
    layer::unpack_layer(
        &top_blob[..],
        &l2,
        &ApplyOptions::overlay_lower_dir(Some(top_info.diff_id)),
    )
    .unwrap();
    let wh = fs::symlink_metadata(l2.join("a")).unwrap();
    assert_eq!((wh.rdev(), wh.file_type().is_file()), (0, false));
    let mut value = [0u8; 8];
    let n = rustix::fs::lgetxattr(l2.join("d"), "trusted.overlay.opaque", &mut value[..]).unwrap();
    assert_eq!(&value[..n], b"y");
    let merged = dir.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let _mount = Overlay::mount(&[&l2, &l1], None, &merged);
    let seen: Vec<String> = snapshot(&merged).into_keys().collect();
    assert_eq!(seen, ["b", "d", "d/new"]);

    // A layer that deletes `d` and makes it anew without an opaque marker (as other
    // tools write it): flattened, the old content is gone; as a lower dir, `d` must
    // come out opaque to say the same.
    let mut tar = Vec::new();
    raw_entry(&mut tar, ".wh.d", b'0', "", b"");
    raw_entry(&mut tar, "d", b'5', "", b"");
    raw_entry(&mut tar, "d/again", b'0', "", b"again");
    let tar = finish_tar(tar);
    let flat2 = dir.path().join("flat2");
    layer::unpack_layer(&base_blob[..], &flat2, &ApplyOptions::flatten(None)).unwrap();
    layer::apply_layer(&tar[..], &flat2, &ApplyOptions::flatten(None)).unwrap();
    let got: Vec<String> = snapshot(&flat2).into_keys().collect();
    assert_eq!(got, ["a", "b", "d", "d/again"]);
    let l3 = dir.path().join("l3");
    layer::unpack_layer(&tar[..], &l3, &ApplyOptions::overlay_lower_dir(None)).unwrap();
    let merged3 = dir.path().join("merged3");
    fs::create_dir(&merged3).unwrap();
    let _mount3 = Overlay::mount(&[&l3, &l1], None, &merged3);
    let seen: Vec<String> = snapshot(&merged3).into_keys().collect();
    assert_eq!(seen, ["a", "b", "d", "d/again"]);
}

fn raw_entry(out: &mut Vec<u8>, name: &str, typeflag: u8, link: &str, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_mode(if typeflag == b'5' { 0o755 } else { 0o644 });
    header.set_size(data.len() as u64);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(OLD as u64);
    header.set_entry_type(tar::EntryType::new(typeflag));
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish_tar(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

fn dir_is_empty_of_partials(parent: &Path, keep: &[&str]) {
    let left: Vec<String> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn applier_refuses_or_contains_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let sentinel = outside.join("sentinel");
    fs::write(&sentinel, b"untouched").unwrap();
    let root_parent = dir.path().join("layers");
    fs::create_dir(&root_parent).unwrap();
    let outside_rel = outside
        .strip_prefix("/")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();

    // `..` in a path: refused, nothing left behind.
    let mut tar = Vec::new();
    raw_entry(&mut tar, "ok", b'0', "", b"fine");
    raw_entry(&mut tar, "../outside/sentinel", b'0', "", b"pwned");
    let err = layer::unpack_layer(
        &finish_tar(tar)[..],
        &root_parent.join("dotdot"),
        &ApplyOptions::flatten(None),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::PathEscapes { entry } if entry == "../outside/sentinel"),
        "{err}"
    );
    assert!(err.to_string().contains("../outside/sentinel"));
    dir_is_empty_of_partials(&root_parent, &[]);

    // A hardlink whose target climbs out: refused.
    let mut tar = Vec::new();
    raw_entry(&mut tar, "passwd", b'1', "../../etc/passwd", b"");
    let err = layer::unpack_layer(
        &finish_tar(tar)[..],
        &root_parent.join("hardlink"),
        &ApplyOptions::flatten(None),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::LinkEscapes { entry, .. } if entry == "passwd"),
        "{err}"
    );
    dir_is_empty_of_partials(&root_parent, &[]);

    // Absolute paths and symlinks to / or up and out: contained in the root.
    let mut tar = Vec::new();
    raw_entry(&mut tar, "/abs/path", b'0', "", b"absolute");
    raw_entry(&mut tar, "a", b'2', "/", b"");
    raw_entry(
        &mut tar,
        &format!("a/{outside_rel}/sentinel"),
        b'0',
        "",
        b"pwned via a",
    );
    raw_entry(&mut tar, "b", b'2', "../../../../../../..", b"");
    raw_entry(
        &mut tar,
        &format!("b/{outside_rel}/via-b"),
        b'0',
        "",
        b"pwned via b",
    );
    // A symlink at the last component is replaced, not written through.
    raw_entry(&mut tar, "c", b'2', sentinel.to_str().unwrap(), b"");
    raw_entry(&mut tar, "c", b'0', "", b"replaced the link");
    // A hardlink through a symlinked parent resolves inside the root too.
    raw_entry(
        &mut tar,
        "h",
        b'1',
        &format!("a/{outside_rel}/sentinel"),
        b"",
    );
    let dest = root_parent.join("contained");
    let report =
        layer::unpack_layer(&finish_tar(tar)[..], &dest, &ApplyOptions::flatten(None)).unwrap();
    assert_eq!(report.entries, 8);
    assert_eq!(fs::read(&sentinel).unwrap(), b"untouched");
    assert!(!outside.join("via-b").exists());
    assert!(!Path::new("/abs/path").exists());
    assert_eq!(fs::read(dest.join("abs/path")).unwrap(), b"absolute");
    let inside = dest.join(&outside_rel);
    assert_eq!(fs::read(inside.join("sentinel")).unwrap(), b"pwned via a");
    assert_eq!(fs::read(inside.join("via-b")).unwrap(), b"pwned via b");
    assert_eq!(fs::read(dest.join("c")).unwrap(), b"replaced the link");
    assert!(fs::symlink_metadata(dest.join("c")).unwrap().is_file());
    assert_eq!(
        fs::metadata(dest.join("h")).unwrap().ino(),
        fs::metadata(inside.join("sentinel")).unwrap().ino()
    );
    // The symlinks themselves are kept as the layer wrote them.
    assert_eq!(fs::read_link(dest.join("a")).unwrap(), Path::new("/"));

    // Whiteouts cannot climb out either.
    let mut tar = Vec::new();
    raw_entry(&mut tar, "a", b'2', "/", b"");
    raw_entry(
        &mut tar,
        &format!("a/{outside_rel}/.wh.sentinel"),
        b'0',
        "",
        b"",
    );
    let flat = root_parent.join("whiteout");
    fs::create_dir(&flat).unwrap();
    layer::apply_layer(&finish_tar(tar)[..], &flat, &ApplyOptions::flatten(None)).unwrap();
    assert_eq!(fs::read(&sentinel).unwrap(), b"untouched");
    let mut tar = Vec::new();
    raw_entry(&mut tar, "x/.wh...", b'0', "", b"");
    let err =
        layer::apply_layer(&finish_tar(tar)[..], &flat, &ApplyOptions::flatten(None)).unwrap_err();
    assert!(matches!(err, Error::PathEscapes { .. }), "{err}");
    assert!(outside.exists());
}

#[test]
fn diff_id_mismatch_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_file(&tree.join("etc/file"), b"content");
    let (info, blob) = write(&tree, &WriteOptions::default());
    let parent = dir.path().join("layers");
    fs::create_dir(&parent).unwrap();
    let wrong = Digest::of(b"something else");
    let err = layer::unpack_layer(
        &blob[..],
        &parent.join("l"),
        &ApplyOptions::overlay_lower_dir(Some(wrong.clone())),
    )
    .unwrap_err();
    match err {
        Error::DiffIdMismatch { expected, actual } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, info.diff_id);
        }
        other => panic!("unexpected {other}"),
    }
    dir_is_empty_of_partials(&parent, &[]);
    // A truncated blob fails too, and leaves nothing.
    let err = layer::unpack_layer(
        &blob[..blob.len() / 2],
        &parent.join("l"),
        &ApplyOptions::overlay_lower_dir(None),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::ReadLayer { .. } | Error::Extract { .. }),
        "{err}"
    );
    dir_is_empty_of_partials(&parent, &[]);
    // The right digest unpacks; a second unpack to the same place is refused.
    layer::unpack_layer(
        &blob[..],
        &parent.join("l"),
        &ApplyOptions::overlay_lower_dir(Some(info.diff_id.clone())),
    )
    .unwrap();
    let err = layer::unpack_layer(
        &blob[..],
        &parent.join("l"),
        &ApplyOptions::overlay_lower_dir(None),
    )
    .unwrap_err();
    assert!(matches!(err, Error::DestinationExists { .. }), "{err}");
    dir_is_empty_of_partials(&parent, &["l"]);
}

#[test]
fn plain_copy_dir_and_docker_media_type() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_file(&tree.join("app/main.py"), b"print('hi')\n");
    let (info, _) = layer::write_layer(
        &tree,
        &WriteOptions {
            format: layer::ManifestFormat::Docker,
            ..Default::default()
        },
        Vec::new(),
    )
    .unwrap();
    assert_eq!(
        info.media_type.as_str(),
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let err = layer::write_layer(
        &tree,
        &WriteOptions {
            format: layer::ManifestFormat::Docker,
            compression: Compression::zstd(),
            ..Default::default()
        },
        Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::UnsupportedMediaType { .. }));
    let missing = layer::write_layer(
        &dir.path().join("nope"),
        &WriteOptions::default(),
        Vec::new(),
    )
    .unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}
