//! Root file system trees on disk: scanning them into layer entries, diffing
//! two states of one tree into an upper layer, cleaning build leftovers, and
//! work directories that are unmounted before they are removed.
//!
//! Contract: [`scan`] lists a tree in walk order without following symlinks
//! and without the contents of `dev`, `proc` and `sys` (those directories
//! themselves are kept, empty). [`entries`] turns a scan into layer entries
//! with mtimes clamped to [`SOURCE_DATE_EPOCH`] (symlinks always get it: tar
//! appliers do not restore symlink times, so anything else would not survive a
//! round trip), numeric ids, and hard links as `Link` entries to their first
//! path. [`diff`] compares a tree with a [`Snapshot`] taken earlier of the
//! same tree (inode, ctime and metadata: any write or rename shows) and gives
//! the upper layer: new and changed entries with their parent directories,
//! `.wh.` whiteouts for deleted paths and `.wh..wh..opq` for replaced
//! directories. Errors: unreadable entries and unsupported file types
//! (sockets) are errors, not skipped.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::layer::{Content, Entry, EntryKind, SOURCE_DATE_EPOCH, walk_order};
use crate::{Error, command};

/// Directories whose contents never go into an image (the runtime mounts them).
const RUNTIME_DIRS: [&[u8]; 3] = [b"dev", b"proc", b"sys"];

/// One path of a scanned tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeEntry {
    /// Relative to the tree root, `/`-separated.
    pub rel: Vec<u8>,
    pub full: PathBuf,
    pub meta: Metadata,
    /// Symlink target, for symlinks.
    pub link: Option<Vec<u8>>,
}

/// Lists the tree under `root` in walk order (see the module docs).
pub(crate) fn scan(root: &Path) -> Result<Vec<TreeEntry>, Error> {
    let mut out = Vec::new();
    scan_dir(root, &[], &mut out)?;
    Ok(out)
}

fn scan_dir(dir: &Path, rel: &[u8], out: &mut Vec<TreeEntry>) -> Result<(), Error> {
    let mut children: Vec<(Vec<u8>, PathBuf)> = fs::read_dir(dir)
        .map_err(Error::io("read directory", dir))?
        .map(|child| {
            let child = child.map_err(Error::io("read directory", dir))?;
            Ok((child.file_name().into_vec(), child.path()))
        })
        .collect::<Result<_, Error>>()?;
    children.sort();
    for (name, full) in children {
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(&name);
        let meta = fs::symlink_metadata(&full).map_err(Error::io("stat", &full))?;
        let link = if meta.file_type().is_symlink() {
            let target = fs::read_link(&full).map_err(Error::io("read symlink", &full))?;
            Some(target.into_os_string().into_vec())
        } else {
            None
        };
        let is_dir = meta.is_dir();
        out.push(TreeEntry {
            rel: child_rel.clone(),
            full: full.clone(),
            meta,
            link,
        });
        if is_dir && !(rel.is_empty() && RUNTIME_DIRS.contains(&name.as_slice())) {
            scan_dir(&full, &child_rel, out)?;
        }
    }
    Ok(())
}

/// An item of a layer before hard links are resolved.
enum Item<'a> {
    Tree(&'a TreeEntry),
    /// A whiteout file for the given path.
    Whiteout(Vec<u8>),
    /// The opaque marker inside the given directory.
    Opaque(Vec<u8>),
}

impl Item<'_> {
    fn path(&self) -> Vec<u8> {
        match self {
            Item::Tree(t) => t.rel.clone(),
            Item::Whiteout(path) => whiteout_path(path),
            Item::Opaque(dir) => {
                let mut p = dir.clone();
                p.extend_from_slice(b"/.wh..wh..opq");
                p
            }
        }
    }
}

fn whiteout_path(path: &[u8]) -> Vec<u8> {
    let (parent, name) = match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let mut p = parent.to_vec();
    p.extend_from_slice(b".wh.");
    p.extend_from_slice(name);
    p
}

/// Layer entries for a whole scanned tree.
pub(crate) fn entries(tree: &[TreeEntry]) -> Result<Vec<Entry>, Error> {
    resolve(tree.iter().map(Item::Tree).collect())
}

/// Sorts `items` into walk order and turns them into entries, writing the
/// second and later paths of a hard-linked file as links to the first.
fn resolve(mut items: Vec<Item<'_>>) -> Result<Vec<Entry>, Error> {
    let mut keyed: Vec<(Vec<u8>, Item<'_>)> = items.drain(..).map(|i| (i.path(), i)).collect();
    keyed.sort_by(|a, b| walk_order(&a.0, &b.0));
    let mut first_paths: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(keyed.len());
    for (path, item) in keyed {
        let tree = match item {
            Item::Tree(tree) => tree,
            Item::Whiteout(_) | Item::Opaque(_) => {
                out.push(Entry {
                    path,
                    kind: EntryKind::File {
                        content: Content::Bytes(Vec::new()),
                        size: 0,
                    },
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: SOURCE_DATE_EPOCH,
                });
                continue;
            }
        };
        let meta = &tree.meta;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Directory
        } else if file_type.is_file() {
            let key = (meta.dev(), meta.ino());
            match (meta.nlink() > 1).then(|| first_paths.get(&key)).flatten() {
                Some(first) => EntryKind::Hardlink {
                    target: first.clone(),
                },
                None => {
                    if meta.nlink() > 1 {
                        first_paths.insert(key, path.clone());
                    }
                    EntryKind::File {
                        content: Content::Path(tree.full.clone()),
                        size: meta.len(),
                    }
                }
            }
        } else if file_type.is_symlink() {
            EntryKind::Symlink {
                target: tree.link.clone().unwrap_or_default(),
            }
        } else if file_type.is_char_device() || file_type.is_block_device() {
            let (major, minor) = device_numbers(meta.rdev());
            if file_type.is_char_device() {
                EntryKind::CharDevice { major, minor }
            } else {
                EntryKind::BlockDevice { major, minor }
            }
        } else if file_type.is_fifo() {
            EntryKind::Fifo
        } else {
            return Err(Error::UnsupportedFileType {
                path: tree.full.clone(),
            });
        };
        let mtime = if file_type.is_symlink() {
            SOURCE_DATE_EPOCH
        } else {
            u64::try_from(meta.mtime())
                .unwrap_or(0)
                .min(SOURCE_DATE_EPOCH)
        };
        out.push(Entry {
            path,
            kind,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime,
        });
    }
    Ok(out)
}

/// Linux's encoding of device numbers in `st_rdev` (glibc's major/minor).
fn device_numbers(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// What identifies the state of one path: any write, chmod, chown or rename
/// changes at least one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    link: Option<Vec<u8>>,
}

impl Fingerprint {
    fn of(entry: &TreeEntry) -> Self {
        let m = &entry.meta;
        Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            ctime: (m.ctime(), m.ctime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            link: entry.link.clone(),
        }
    }
}

/// The state of a tree at one moment, to [`diff`] against later.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    paths: HashMap<Vec<u8>, Fingerprint>,
}

impl Snapshot {
    pub(crate) fn of(tree: &[TreeEntry]) -> Snapshot {
        Snapshot {
            paths: tree
                .iter()
                .map(|e| (e.rel.clone(), Fingerprint::of(e)))
                .collect(),
        }
    }
}

fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|&c| c == b'/').map(|i| &path[..i])
}

/// The upper layer that turns the snapshotted tree into `now` (see the module
/// docs).
pub(crate) fn diff(before: &Snapshot, now: &[TreeEntry]) -> Result<Vec<Entry>, Error> {
    let now_by_path: HashMap<&[u8], &TreeEntry> =
        now.iter().map(|e| (e.rel.as_slice(), e)).collect();
    let mut included: HashSet<&[u8]> = HashSet::new();
    let mut items: Vec<Item<'_>> = Vec::new();
    let mut need_parents: Vec<Vec<u8>> = Vec::new();

    for entry in now {
        let fingerprint = Fingerprint::of(entry);
        let Some(old) = before.paths.get(&entry.rel) else {
            included.insert(&entry.rel);
            continue;
        };
        if *old == fingerprint {
            continue;
        }
        included.insert(&entry.rel);
        let was_dir = old.mode & 0o170000 == 0o040000;
        if was_dir && entry.meta.is_dir() && old.ino != fingerprint.ino {
            // Removed and made again: hide everything the lower layer had.
            items.push(Item::Opaque(entry.rel.clone()));
        }
    }
    let opaque: HashSet<Vec<u8>> = items
        .iter()
        .filter_map(|i| match i {
            Item::Opaque(dir) => Some(dir.clone()),
            _ => None,
        })
        .collect();

    // Whiteouts for deleted paths whose parent still is a directory that is
    // not opaque (an opaque or deleted parent already hides them).
    let mut deleted: Vec<&Vec<u8>> = before
        .paths
        .keys()
        .filter(|p| !now_by_path.contains_key(p.as_slice()))
        .collect();
    deleted.sort();
    for path in deleted {
        let parent_ok = match parent(path) {
            None => true,
            Some(dir) => {
                now_by_path.get(dir).is_some_and(|e| e.meta.is_dir()) && !opaque.contains(dir)
            }
        };
        if parent_ok && !is_under_opaque(path, &opaque) {
            need_parents.push(path.clone());
            items.push(Item::Whiteout(path.clone()));
        }
    }

    // Parent directories of everything in the layer.
    let children: Vec<Vec<u8>> = included
        .iter()
        .map(|p| p.to_vec())
        .chain(need_parents)
        .collect();
    for path in children {
        let mut current = parent(&path);
        while let Some(dir) = current {
            if let Some(entry) = now_by_path.get(dir) {
                included.insert(entry.rel.as_slice());
            }
            current = parent(dir);
        }
    }
    items.extend(
        now.iter()
            .filter(|e| included.contains(e.rel.as_slice()))
            .map(Item::Tree),
    );
    resolve(items)
}

fn is_under_opaque(path: &[u8], opaque: &HashSet<Vec<u8>>) -> bool {
    let mut current = parent(path);
    while let Some(dir) = current {
        if opaque.contains(dir) {
            return true;
        }
        current = parent(dir);
    }
    false
}

/// Removes what a Debian install leaves behind that differs from run to run
/// or does not belong in an image: logs, apt lists and caches, `-old`
/// backups, the host's hostname and resolv.conf; and pins the password-age
/// field of `/etc/shadow` to [`SOURCE_DATE_EPOCH`].
pub(crate) fn clean_debian_tree(root: &Path) -> Result<(), Error> {
    for file in [
        "etc/hostname",
        "etc/resolv.conf",
        "etc/machine-id",
        "var/cache/ldconfig/aux-cache",
        "var/log/alternatives.log",
        "var/log/bootstrap.log",
        "var/log/dpkg.log",
        "run/mount/utab",
    ] {
        remove_file_if_exists(&root.join(file))?;
    }
    // Keep directories (apt wants `partial/`), drop every file below them.
    for dir in [
        "var/lib/apt/lists",
        "var/cache/apt",
        "var/log/apt",
        "tmp",
        "var/tmp",
    ] {
        remove_files_below(&root.join(dir))?;
    }
    for dir in ["var/lib/dpkg", "var/cache/debconf", "etc"] {
        let dir = root.join(dir);
        for child in fs::read_dir(&dir).map_err(Error::io("read directory", &dir))? {
            let child = child.map_err(Error::io("read directory", &dir))?;
            let name = child.file_name();
            let bytes = name.as_bytes();
            let is_backup = bytes.ends_with(b"-old")
                || (dir.ends_with("etc")
                    && [
                        &b"passwd-"[..],
                        b"group-",
                        b"shadow-",
                        b"gshadow-",
                        b"subuid-",
                        b"subgid-",
                    ]
                    .contains(&bytes));
            if is_backup && child.file_type().is_ok_and(|t| t.is_file()) {
                remove_file_if_exists(&child.path())?;
            }
        }
    }
    pin_shadow_dates(&root.join("etc/shadow"))
}

fn remove_file_if_exists(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

fn remove_files_below(dir: &Path) -> Result<(), Error> {
    let Ok(children) = fs::read_dir(dir) else {
        return Ok(());
    };
    for child in children {
        let child = child.map_err(Error::io("read directory", dir))?;
        let path = child.path();
        if child
            .file_type()
            .map_err(Error::io("stat", &path))?
            .is_dir()
        {
            remove_files_below(&path)?;
        } else {
            remove_file_if_exists(&path)?;
        }
    }
    Ok(())
}

/// Sets the "last password change" field (days since the epoch, i.e. the
/// build date) of every account to [`SOURCE_DATE_EPOCH`]'s day.
fn pin_shadow_dates(shadow: &Path) -> Result<(), Error> {
    let Ok(text) = fs::read_to_string(shadow) else {
        return Ok(());
    };
    let day = (SOURCE_DATE_EPOCH / 86_400).to_string();
    let pinned: String = text
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 2 && !fields[2].is_empty() {
                fields[2] = &day;
            }
            fields.join(":") + "\n"
        })
        .collect();
    if pinned != text {
        fs::write(shadow, pinned).map_err(Error::io("write", shadow))?;
    }
    Ok(())
}

/// Mount points at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(mounts) = fs::read("/proc/self/mounts") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = mounts
        .split(|&c| c == b'\n')
        .filter_map(|line| line.split(|&c| c == b' ').nth(1))
        .map(|field| PathBuf::from(OsStr::from_bytes(&unescape_mount_path(field))))
        .filter(|mount| mount.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    found
}

/// `/proc/self/mounts` escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let octal = std::str::from_utf8(&field[i + 1..i + 4]).unwrap_or("0");
            out.push(u8::from_str_radix(octal, 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// Unmounts everything at or below `dir` (lazily, deepest first).
pub(crate) fn unmount_below(dir: &Path) {
    for mount in mounts_below(dir) {
        // Best effort: a failure leaves the mount, which `WorkDir` then sees
        // and refuses to delete through.
        let _ = Command::new("umount").arg("-l").arg(&mount).output();
    }
}

/// A scratch directory that is unmounted (everything below it) and removed
/// on drop. If something stays mounted it is left on disk rather than risk
/// deleting through a bind mount of a host directory.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub(crate) fn new_in(parent: &Path, prefix: &str) -> Result<WorkDir, Error> {
        fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(Error::io("create a work directory in", parent))?;
        Ok(WorkDir { path: dir.keep() })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        unmount_below(&self.path);
        if mounts_below(&self.path).is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Keeps a file system mounted at a path until dropped.
#[derive(Debug)]
pub(crate) struct Mount {
    target: PathBuf,
}

impl Mount {
    /// `mount ARGS... TARGET`.
    pub(crate) fn new(args: &[&str], target: &Path) -> Result<Mount, Error> {
        command::run(Command::new("mount").args(args).arg(target))?;
        Ok(Mount {
            target: target.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        unmount_below(&self.target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let kind = match &e.kind {
                    EntryKind::Directory => "d",
                    EntryKind::File { .. } => "f",
                    EntryKind::Symlink { .. } => "s",
                    EntryKind::Hardlink { .. } => "h",
                    _ => "o",
                };
                format!("{kind} {}", String::from_utf8_lossy(&e.path))
            })
            .collect()
    }

    #[test]
    fn scan_walks_sorted_and_skips_runtime_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["a/b", "dev/pts", "proc/1", "b"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("a/b/f"), b"x").unwrap();
        fs::write(root.join("a-z"), b"y").unwrap();
        fs::hard_link(root.join("a-z"), root.join("b/hard")).unwrap();
        symlink("/a/b/f", root.join("b/sym")).unwrap();
        let tree = scan(root).unwrap();
        let listed = paths(&entries(&tree).unwrap());
        assert_eq!(
            listed,
            [
                "d a", "d a/b", "f a/b/f", "f a-z", "d b", "h b/hard", "s b/sym", "d dev", "d proc"
            ]
        );
        let all = entries(&tree).unwrap();
        let sym = all.iter().find(|e| e.path == b"b/sym").unwrap();
        assert_eq!(sym.mtime, SOURCE_DATE_EPOCH);
        assert!(matches!(&sym.kind, EntryKind::Symlink { target } if target == b"/a/b/f"));
        assert!(
            matches!(&all.iter().find(|e| e.path == b"b/hard").unwrap().kind, EntryKind::Hardlink { target } if target == b"a-z")
        );
    }

    #[test]
    fn diff_finds_changes_deletions_and_replaced_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["etc/apt", "usr/lib/x", "usr/share/doc", "var/gone/deep"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "etc/apt/keep",
            "etc/apt/change",
            "etc/chmod",
            "usr/lib/x/old",
            "usr/share/doc/a",
            "var/gone/deep/f",
        ] {
            fs::write(root.join(f), b"old").unwrap();
        }
        let before = Snapshot::of(&scan(root).unwrap());
        // File times tick with the kernel's coarse clock: a change within the
        // same tick as the snapshot could keep the same ctime.
        std::thread::sleep(std::time::Duration::from_millis(50));

        fs::write(root.join("etc/apt/change"), b"new").unwrap();
        fs::set_permissions(root.join("etc/chmod"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(root.join("usr/share/doc/b"), b"added").unwrap();
        // Moved away rather than deleted, so the new directory cannot reuse
        // the inode number and must be seen as replaced.
        let aside = tempfile::tempdir_in(root.parent().unwrap()).unwrap();
        fs::rename(root.join("usr/lib/x"), aside.path().join("x")).unwrap();
        fs::create_dir(root.join("usr/lib/x")).unwrap();
        fs::write(root.join("usr/lib/x/new"), b"n").unwrap();
        fs::remove_dir_all(root.join("var/gone")).unwrap();

        let layer = diff(&before, &scan(root).unwrap()).unwrap();
        assert_eq!(
            paths(&layer),
            [
                "d etc",
                "d etc/apt",
                "f etc/apt/change",
                "f etc/chmod",
                "d usr",
                "d usr/lib",
                "d usr/lib/x",
                "f usr/lib/x/.wh..wh..opq",
                "f usr/lib/x/new",
                "d usr/share",
                "d usr/share/doc",
                "f usr/share/doc/b",
                "d var",
                "f var/.wh.gone",
            ]
        );
        let chmod = layer.iter().find(|e| e.path == b"etc/chmod").unwrap();
        assert_eq!(chmod.mode, 0o600);
        // Nothing changed: nothing in the layer.
        let again = Snapshot::of(&scan(root).unwrap());
        assert!(diff(&again, &scan(root).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn clean_removes_logs_and_pins_shadow() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "etc",
            "var/log/apt",
            "var/lib/apt/lists/partial",
            "var/lib/dpkg",
            "var/cache/debconf",
            "var/cache/apt/archives/partial",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "etc/hostname",
            "etc/passwd-",
            "var/log/dpkg.log",
            "var/log/apt/history.log",
            "var/lib/apt/lists/x_Packages",
            "var/lib/dpkg/status-old",
            "var/cache/debconf/config.dat-old",
            "var/cache/apt/archives/a.deb",
        ] {
            fs::write(root.join(f), b"x").unwrap();
        }
        fs::write(root.join("var/log/wtmp"), b"").unwrap();
        fs::write(
            root.join("etc/shadow"),
            "root:*:20000:0:99999:7:::\nnobody:*::0:99999:7:::\n",
        )
        .unwrap();
        clean_debian_tree(root).unwrap();
        let left: Vec<String> = paths(&entries(&scan(root).unwrap()).unwrap());
        assert_eq!(
            left,
            [
                "d etc",
                "f etc/shadow",
                "d var",
                "d var/cache",
                "d var/cache/apt",
                "d var/cache/apt/archives",
                "d var/cache/apt/archives/partial",
                "d var/cache/debconf",
                "d var/lib",
                "d var/lib/apt",
                "d var/lib/apt/lists",
                "d var/lib/apt/lists/partial",
                "d var/lib/dpkg",
                "d var/log",
                "d var/log/apt",
                "f var/log/wtmp",
            ]
        );
        let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
        assert_eq!(
            shadow,
            "root:*:19723:0:99999:7:::\nnobody:*::0:99999:7:::\n"
        );
    }

    #[test]
    fn device_numbers_decode() {
        assert_eq!(device_numbers(0x0103), (1, 3));
        assert_eq!(device_numbers(0x0500), (5, 0));
    }

    #[test]
    fn mount_paths_unescape() {
        assert_eq!(unescape_mount_path(br"/a\040b"), b"/a b".to_vec());
        assert_eq!(unescape_mount_path(b"/plain"), b"/plain".to_vec());
    }
}
