//! File-system helpers shared by the writer, the diff, the copier and the applier.
//!
//! Everything here works relative to directory file descriptors and never follows a
//! symlink in the last path component, so a tree that contains hostile symlinks can be
//! walked, read and removed without touching anything outside it. Errors are plain
//! `io::Error`s; callers attach the path.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Stat};
use rustix::io::Errno;

/// The metadata of one file-system object, decoded from `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub file_type: FileType,
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

impl Meta {
    // The `stat` field types differ between architectures; the casts are the portable
    // way to widen them.
    #[allow(clippy::unnecessary_cast)]
    pub fn from_stat(st: &Stat) -> Meta {
        let rdev = st.st_rdev as u64;
        Meta {
            file_type: FileType::from_raw_mode(st.st_mode as _),
            mode: (st.st_mode as u32) & 0o7777,
            uid: st.st_uid as u64,
            gid: st.st_gid as u64,
            size: st.st_size as u64,
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as u32,
            rdev_major: rustix::fs::major(rdev as _),
            rdev_minor: rustix::fs::minor(rdev as _),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
        }
    }

    /// An overlayfs whiteout: a character device 0/0.
    pub fn is_whiteout_device(&self) -> bool {
        self.file_type == FileType::CharacterDevice && self.rdev_major == 0 && self.rdev_minor == 0
    }
}

/// `lstat` of `name` in `dir`.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// `fstat` of an open object.
pub(crate) fn fstat_meta(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rustix::fs::fstat(fd)?))
}

/// Opens the directory `name` in `dir` for reading, refusing a symlink.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a directory by path (the root of a walk).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the regular file `name` in `dir` for reading, refusing a symlink.
pub(crate) fn open_file_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?)
}

/// The names in a directory (without `.` and `..`), sorted by bytes.
pub(crate) fn sorted_names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    // Reads from the fd's current offset: rewind so a reused fd lists everything.
    rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
    let mut buf: Vec<MaybeUninit<u8>> = vec![MaybeUninit::uninit(); 32 * 1024];
    let mut raw = RawDir::new(dir, &mut buf);
    let mut names = Vec::new();
    while let Some(entry) = raw.next() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push(name.to_owned());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// `parent/name` for relative layer paths (bytes, `/`-separated, no leading `/`).
pub(crate) fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        out.extend_from_slice(parent);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

pub(crate) fn rel_to_path(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

pub(crate) fn display_rel(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}

/// Overlay's own bookkeeping xattrs (`trusted.overlay.*`, or `user.overlay.*` when
/// mounted with `userxattr`): never layer content.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Where xattrs are read from: an open fd, or (for symlinks and special files, which
/// cannot be opened for reading) a path whose last component is not followed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    Path(&'a Path),
}

/// All xattrs of an object, sorted by name, as (name, value) pairs. File systems without
/// xattr support give an empty list.
pub(crate) fn read_xattrs(source: XattrSource<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut list = vec![0u8; 1024];
    let len = loop {
        let res = match source {
            XattrSource::Fd(fd) => rustix::fs::flistxattr(fd, &mut list[..]),
            XattrSource::Path(p) => rustix::fs::llistxattr(p, &mut list[..]),
        };
        match res {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let needed = match source {
                    XattrSource::Fd(fd) => rustix::fs::flistxattr_query(fd)?,
                    XattrSource::Path(p) => rustix::fs::llistxattr_query(p)?,
                };
                list.resize(needed.max(list.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).expect("xattr names from the kernel have no NUL");
        // `None`: removed between listing and reading; it no longer exists.
        if let Some(value) = read_xattr(source, &cname)? {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

fn read_xattr(source: XattrSource<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; 256];
    loop {
        let res = match source {
            XattrSource::Fd(fd) => rustix::fs::fgetxattr(fd, name, &mut value[..]),
            XattrSource::Path(p) => rustix::fs::lgetxattr(p, name, &mut value[..]),
        };
        match res {
            Ok(n) => {
                value.truncate(n);
                return Ok(Some(value));
            }
            Err(Errno::RANGE) => {
                let needed = match source {
                    XattrSource::Fd(fd) => rustix::fs::fgetxattr_query(fd, name)?,
                    XattrSource::Path(p) => rustix::fs::lgetxattr_query(p, name)?,
                };
                value.resize(needed.max(value.len() * 2), 0);
            }
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A path naming `name` inside the directory `dir` without resolving any path again:
/// `/proc/self/fd/<dir>/<name>`. Used for the `l*xattr` calls, which have no `*at` form.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(name));
    p
}

/// Removes `name` in `dir`, recursively if it is a directory, never following symlinks.
/// A missing `name` is not an error.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let meta = match stat_at(dir, name) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type == FileType::Directory {
        let sub = open_dir_at(dir, name)?;
        clear_dir(sub.as_fd(), |_| false)?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes every entry of `dir` for which `keep` returns false.
pub(crate) fn clear_dir(dir: BorrowedFd<'_>, keep: impl Fn(&CStr) -> bool) -> io::Result<()> {
    for name in sorted_names(dir)? {
        if !keep(&name) {
            remove_at(dir, &name)?;
        }
    }
    Ok(())
}

/// Removes a whole tree given by path (used for the applier's own temp dirs).
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let parent_fd = open_dir(parent)?;
    let cname = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    remove_at(parent_fd.as_fd(), &cname)
}

pub(crate) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_at_does_not_follow_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir(tree.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.path().join("d/link")).unwrap();
        let root = open_dir(tree.path()).unwrap();
        remove_at(root.as_fd(), c"d").unwrap();
        assert!(!tree.path().join("d").exists());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn names_are_sorted_by_bytes() {
        let tree = tempfile::tempdir().unwrap();
        for n in ["b", "a-c", "a", "B", ".wh.x"] {
            std::fs::write(tree.path().join(n), b"").unwrap();
        }
        let root = open_dir(tree.path()).unwrap();
        let names: Vec<_> = sorted_names(root.as_fd())
            .unwrap()
            .into_iter()
            .map(|n| n.into_string().unwrap())
            .collect();
        assert_eq!(names, [".wh.x", "B", "a", "a-c", "b"]);
    }
}
