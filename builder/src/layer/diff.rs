//! The fallback when overlayfs cannot be mounted: copy the base tree, let the step run
//! in the copy, then diff the two trees by metadata.
//!
//! Contract of [`write_diff_layer`]: given the base tree and the tree after the step,
//! writes the layer the overlay path ([`super::write_layer`] on the upper dir) would have
//! written for the same operations, byte for byte, with the same writer:
//! - an object is *changed* when its type, mode, uid, gid, mtime (seconds and
//!   nanoseconds) or xattrs differ, or, for non-directories, its size, device number or
//!   symlink target; a regular file whose size and mtime are equal is assumed unchanged
//!   (Docker's naive diff makes the same bet: content is not read). Changed and added
//!   objects are written; an added directory with everything below it;
//! - every ancestor directory of a written entry is written too, with its current
//!   metadata (overlay copies ancestors up, so they appear in an upper dir);
//! - a deleted object becomes `.wh.<name>` (a deleted directory one whiteout, not one
//!   per child), with the parent's mtime, clamped;
//! - a directory is written *opaque* (marker plus its whole content) where overlay would
//!   make it so: a directory created where the base had a non-directory, or, when
//!   [`DiffOptions::replaced_after`] is known, a directory born after the copy was made
//!   (`rm -rf d && mkdir d`). Without birth times such a replacement comes out as
//!   per-child whiteouts plus additions: the same file system, other bytes;
//! - where overlay breaks a hardlink on copy-up and the copy does not (modifying one
//!   name of a multiply-linked file modifies all of them here), the diff writes every
//!   changed name; the result is the more faithful one.
//!
//! Contract of [`copy_tree`]: copies a tree preserving types, contents, hardlinks, owners,
//! modes, xattrs and nanosecond mtimes, never following symlinks; regular files are
//! reflinked where the file system can, else copied in the kernel (`copy_file_range`).
//! Device nodes, owners and xattrs the process may not create or set (no privilege)
//! are skipped and counted in the [`CopyReport`]; other failures are errors.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, StatxFlags, Uid, XattrFlags};
use rustix::io::Errno;

use super::fsutil::{self, Meta, XattrSource, cstring};
use super::write::{Emitted, Emitter, TarStats, WriteOptions, whiteout_name};
use super::{Error, LayerInfo, LayerMediaType};

/// A file-system timestamp (seconds and nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FsTimestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// How to diff.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Directories of the after tree born after this instant were created by the step;
    /// take it from [`CopyReport::finished_at`].
    pub replaced_after: Option<FsTimestamp>,
}

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Objects created (hardlinks included).
    pub entries: u64,
    /// Bytes of regular-file content copied or cloned.
    pub bytes: u64,
    /// Regular files shared by reflink instead of copied.
    pub reflinked: u64,
    /// Device nodes not created (creating them needs privilege).
    pub devices_skipped: u64,
    /// Objects whose owner could not be set (ids outside what the process may use).
    pub owners_not_preserved: u64,
    /// Xattrs that could not be set (a namespace the process may not write).
    pub xattrs_not_preserved: u64,
    /// The file system's clock when the copy was complete (birth time of a probe
    /// file), for [`DiffOptions::replaced_after`]; `None` where birth times are not kept.
    pub finished_at: Option<FsTimestamp>,
}

/// Writes the layer that turns `lower` into `upper` (see the module docs).
pub fn write_diff_layer<W: Write + Send>(
    lower: &Path,
    upper: &Path,
    options: &WriteOptions,
    diff: &DiffOptions,
    sink: W,
) -> Result<(LayerInfo, W), Error> {
    let media_type = LayerMediaType::for_compression(options.compression, options.format)?;
    let (out, sink) = super::compress::run(options.compression, sink, |tar| {
        write_diff_tar(lower, upper, options, diff, tar).map(|s| s.entries)
    })?;
    Ok((out.into_info(media_type), sink))
}

/// The uncompressed tar of [`write_diff_layer`], single-threaded.
pub fn write_diff_tar(
    lower: &Path,
    upper: &Path,
    options: &WriteOptions,
    diff: &DiffOptions,
    out: &mut dyn Write,
) -> Result<TarStats, Error> {
    let open = |p: &Path| {
        fsutil::open_dir(p).map_err(|source| Error::ReadSource {
            path: p.to_path_buf(),
            source,
        })
    };
    let lower_fd = open(lower)?;
    let upper_fd = open(upper)?;
    let exclude: HashSet<Vec<u8>> = options
        .exclude
        .iter()
        .map(|p| super::write::normalize_rel(p.as_os_str().as_encoded_bytes()))
        .collect();
    let mut walk = DiffWalk {
        lower,
        upper,
        exclude: &exclude,
        replaced_after: diff.replaced_after,
        changes: Vec::new(),
    };
    let upper_root_meta =
        fsutil::fstat_meta(upper_fd.as_fd()).map_err(|source| Error::ReadSource {
            path: upper.to_path_buf(),
            source,
        })?;
    walk.dir(
        Some(lower_fd.as_fd()),
        upper_fd.as_fd(),
        b"",
        &upper_root_meta,
    )?;
    let changes = walk.changes;

    let mut emitter = Emitter::new(out, options.source_date_epoch);
    let mut parent_cache: Option<(Vec<u8>, OwnedFd)> = None;
    for change in changes {
        match change {
            Change::Node { rel, meta } => {
                let (parent, name) = super::write::split_rel(&rel);
                let cached = matches!(&parent_cache, Some((p, _)) if p.as_slice() == parent);
                if !cached {
                    let fd = open_beneath(upper_fd.as_fd(), parent).map_err(|source| {
                        Error::ReadSource {
                            path: fsutil::rel_to_path(upper, parent),
                            source,
                        }
                    })?;
                    parent_cache = Some((parent.to_vec(), fd));
                }
                let (_, pfd) = parent_cache.as_ref().expect("set above");
                let cname = cstring(name).map_err(|source| Error::ReadSource {
                    path: fsutil::rel_to_path(upper, &rel),
                    source,
                })?;
                match emitter.node(upper, pfd.as_fd(), &cname, &rel, &meta, false)? {
                    Emitted::Directory(_) | Emitted::Other | Emitted::Skipped => {}
                }
            }
            Change::Whiteout { rel, mtime } => emitter.whiteout(&rel, mtime)?,
            Change::Opaque { rel, mtime } => emitter.opaque(&rel, mtime)?,
        }
    }
    emitter.finish()
}

/// Opens the directory `rel` below `root` without following any symlink.
fn open_beneath(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    Ok(rustix::fs::openat2(
        root,
        cstring(path)?.as_c_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )?)
}

/// One planned entry, in tar order.
enum Change {
    Node { rel: Vec<u8>, meta: Meta },
    Whiteout { rel: Vec<u8>, mtime: i64 },
    Opaque { rel: Vec<u8>, mtime: i64 },
}

struct DiffWalk<'a> {
    lower: &'a Path,
    upper: &'a Path,
    exclude: &'a HashSet<Vec<u8>>,
    replaced_after: Option<FsTimestamp>,
    changes: Vec<Change>,
}

enum Item {
    Deleted,
    Present { upper: Meta, lower: Option<Meta> },
}

impl DiffWalk<'_> {
    fn upper_err(&self, rel: &[u8]) -> impl Fn(io::Error) -> Error + use<> {
        let path = fsutil::rel_to_path(self.upper, rel);
        move |source| Error::ReadSource {
            path: path.clone(),
            source,
        }
    }

    fn lower_err(&self, rel: &[u8]) -> impl Fn(io::Error) -> Error + use<> {
        let path = fsutil::rel_to_path(self.lower, rel);
        move |source| Error::ReadSource {
            path: path.clone(),
            source,
        }
    }

    /// Plans the changes inside the directory `rel` (upper metadata `dir_meta`); with
    /// `lower` absent everything in it is new.
    fn dir(
        &mut self,
        lower: Option<BorrowedFd<'_>>,
        upper: BorrowedFd<'_>,
        rel: &[u8],
        dir_meta: &Meta,
    ) -> Result<(), Error> {
        let upper_names = fsutil::sorted_names(upper).map_err(self.upper_err(rel))?;
        let lower_names = match lower {
            Some(fd) => fsutil::sorted_names(fd).map_err(self.lower_err(rel))?,
            None => Vec::new(),
        };
        let lower_set: HashSet<&CStr> = lower_names.iter().map(|n| n.as_c_str()).collect();
        let upper_set: HashSet<&CStr> = upper_names.iter().map(|n| n.as_c_str()).collect();

        let mut items: Vec<(Vec<u8>, CString, Item)> = Vec::new();
        for name in &upper_names {
            let child = fsutil::join_rel(rel, name.as_bytes());
            if self.exclude.contains(&child) {
                continue;
            }
            let um = fsutil::stat_at(upper, name).map_err(self.upper_err(&child))?;
            let lm = match lower {
                Some(fd) if lower_set.contains(name.as_c_str()) => {
                    Some(fsutil::stat_at(fd, name).map_err(self.lower_err(&child))?)
                }
                _ => None,
            };
            items.push((
                name.as_bytes().to_vec(),
                name.clone(),
                Item::Present {
                    upper: um,
                    lower: lm,
                },
            ));
        }
        for name in &lower_names {
            let child = fsutil::join_rel(rel, name.as_bytes());
            if !upper_set.contains(name.as_c_str()) && !self.exclude.contains(&child) {
                items.push((whiteout_name(name.as_bytes()), name.clone(), Item::Deleted));
            }
        }
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        for (_, name, item) in items {
            let child = fsutil::join_rel(rel, name.as_bytes());
            match item {
                Item::Deleted => self.changes.push(Change::Whiteout {
                    rel: child,
                    mtime: dir_meta.mtime,
                }),
                Item::Present {
                    upper: um,
                    lower: None,
                } => {
                    self.added(upper, &name, child, um)?;
                }
                Item::Present {
                    upper: um,
                    lower: Some(lm),
                } => {
                    let lower_fd = lower.expect("a lower entry implies a lower dir");
                    self.both(lower_fd, upper, &name, child, lm, um)?;
                }
            }
        }
        Ok(())
    }

    /// A new object: written with everything below it.
    fn added(
        &mut self,
        upper: BorrowedFd<'_>,
        name: &CStr,
        rel: Vec<u8>,
        meta: Meta,
    ) -> Result<(), Error> {
        let is_dir = meta.file_type == FileType::Directory;
        self.changes.push(Change::Node {
            rel: rel.clone(),
            meta,
        });
        if is_dir {
            let fd = fsutil::open_dir_at(upper, name).map_err(self.upper_err(&rel))?;
            self.dir(None, fd.as_fd(), &rel, &meta)?;
        }
        Ok(())
    }

    fn both(
        &mut self,
        lower: BorrowedFd<'_>,
        upper: BorrowedFd<'_>,
        name: &CStr,
        rel: Vec<u8>,
        lm: Meta,
        um: Meta,
    ) -> Result<(), Error> {
        let upper_is_dir = um.file_type == FileType::Directory;
        let lower_is_dir = lm.file_type == FileType::Directory;
        if upper_is_dir && (!lower_is_dir || self.born_after_copy(upper, name, &rel)?) {
            // Overlay makes a directory created over a deleted object opaque.
            self.changes.push(Change::Node {
                rel: rel.clone(),
                meta: um,
            });
            self.changes.push(Change::Opaque {
                rel: rel.clone(),
                mtime: um.mtime,
            });
            let fd = fsutil::open_dir_at(upper, name).map_err(self.upper_err(&rel))?;
            return self.dir(None, fd.as_fd(), &rel, &um);
        }
        let changed = self.changed(lower, upper, name, &rel, &lm, &um)?;
        if !upper_is_dir {
            if changed {
                self.changes.push(Change::Node { rel, meta: um });
            }
            return Ok(());
        }
        // Both directories: written if changed or if anything below is.
        let mark = self.changes.len();
        self.changes.push(Change::Node {
            rel: rel.clone(),
            meta: um,
        });
        let lfd = fsutil::open_dir_at(lower, name).map_err(self.lower_err(&rel))?;
        let ufd = fsutil::open_dir_at(upper, name).map_err(self.upper_err(&rel))?;
        self.dir(Some(lfd.as_fd()), ufd.as_fd(), &rel, &um)?;
        if !changed && self.changes.len() == mark + 1 {
            self.changes.truncate(mark);
        }
        Ok(())
    }

    fn born_after_copy(
        &self,
        upper: BorrowedFd<'_>,
        name: &CStr,
        rel: &[u8],
    ) -> Result<bool, Error> {
        let Some(after) = self.replaced_after else {
            return Ok(false);
        };
        let Some(born) = birth_time(upper, name).map_err(self.upper_err(rel))? else {
            return Ok(false);
        };
        Ok(born > after)
    }

    fn changed(
        &self,
        lower: BorrowedFd<'_>,
        upper: BorrowedFd<'_>,
        name: &CStr,
        rel: &[u8],
        lm: &Meta,
        um: &Meta,
    ) -> Result<bool, Error> {
        if lm.file_type != um.file_type
            || lm.mode != um.mode
            || lm.uid != um.uid
            || lm.gid != um.gid
            || lm.mtime != um.mtime
            || lm.mtime_nsec != um.mtime_nsec
        {
            return Ok(true);
        }
        if um.file_type != FileType::Directory
            && (lm.size != um.size
                || lm.rdev_major != um.rdev_major
                || lm.rdev_minor != um.rdev_minor)
        {
            return Ok(true);
        }
        if um.file_type == FileType::Symlink {
            let lt = rustix::fs::readlinkat(lower, name, Vec::new())
                .map_err(|e| self.lower_err(rel)(e.into()))?;
            let ut = rustix::fs::readlinkat(upper, name, Vec::new())
                .map_err(|e| self.upper_err(rel)(e.into()))?;
            if lt != ut {
                return Ok(true);
            }
        }
        let lx = object_xattrs(self.lower, lower, name, rel, lm).map_err(self.lower_err(rel))?;
        let ux = object_xattrs(self.upper, upper, name, rel, um).map_err(self.upper_err(rel))?;
        Ok(lx != ux)
    }
}

/// The content xattrs of an object, read through an fd where it can be opened.
fn object_xattrs(
    root: &Path,
    dir: BorrowedFd<'_>,
    name: &CStr,
    rel: &[u8],
    meta: &Meta,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let all = match meta.file_type {
        FileType::Directory => {
            let fd = fsutil::open_dir_at(dir, name)?;
            fsutil::read_xattrs(XattrSource::Fd(fd.as_fd()))?
        }
        FileType::RegularFile => {
            let fd = fsutil::open_file_at(dir, name)?;
            fsutil::read_xattrs(XattrSource::Fd(fd.as_fd()))?
        }
        _ => {
            let path = fsutil::rel_to_path(root, rel);
            fsutil::read_xattrs(XattrSource::Path(&path))?
        }
    };
    Ok(super::write::content_xattrs(all))
}

fn birth_time(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<FsTimestamp>> {
    match rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME) {
        Ok(st) if st.stx_mask & StatxFlags::BTIME.bits() != 0 => Ok(Some(FsTimestamp {
            secs: st.stx_btime.tv_sec,
            nanos: st.stx_btime.tv_nsec,
        })),
        Ok(_) | Err(Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Copies the tree `src` to the new directory `dst` (see the module docs).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyReport, Error> {
    let src_fd = fsutil::open_dir(src).map_err(|source| Error::ReadSource {
        path: src.to_path_buf(),
        source,
    })?;
    let dst_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Filesystem {
            action: "copying to",
            path,
            source,
        }
    };
    std::fs::create_dir(dst).map_err(dst_err(dst))?;
    let dst_fd = fsutil::open_dir(dst).map_err(dst_err(dst))?;
    let mut copier = Copier {
        src,
        dst,
        dst_root: dst_fd.as_fd(),
        links: HashMap::new(),
        report: CopyReport::default(),
        can_reflink: true,
        buf: Vec::new(),
    };
    copier.dir(src_fd.as_fd(), dst_fd.as_fd(), b"")?;
    let root_meta = fsutil::fstat_meta(src_fd.as_fd()).map_err(|source| Error::ReadSource {
        path: src.to_path_buf(),
        source,
    })?;
    let xattrs = fsutil::read_xattrs(XattrSource::Fd(src_fd.as_fd())).map_err(|source| {
        Error::ReadSource {
            path: src.to_path_buf(),
            source,
        }
    })?;
    apply_meta_fd(dst_fd.as_fd(), &root_meta, &xattrs, &mut copier.report).map_err(dst_err(dst))?;
    copier.report.finished_at = probe_now(dst_fd.as_fd()).map_err(dst_err(dst))?;
    Ok(copier.report)
}

/// The file system's current time: the birth time of a file created and removed now.
fn probe_now(dir: BorrowedFd<'_>) -> io::Result<Option<FsTimestamp>> {
    let name = c".kiln-clock-probe";
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    drop(fd);
    let born = birth_time(dir, name);
    rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    born
}

struct Copier<'a> {
    src: &'a Path,
    dst: &'a Path,
    dst_root: BorrowedFd<'a>,
    /// (dev, ino) in the source → the first copy's path in the destination.
    links: HashMap<(u64, u64), CString>,
    report: CopyReport,
    can_reflink: bool,
    buf: Vec<u8>,
}

impl Copier<'_> {
    fn dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, rel: &[u8]) -> Result<(), Error> {
        let names = fsutil::sorted_names(src).map_err(|source| Error::ReadSource {
            path: fsutil::rel_to_path(self.src, rel),
            source,
        })?;
        for name in names {
            let child = fsutil::join_rel(rel, name.as_bytes());
            self.object(src, dst, &name, &child)?;
        }
        Ok(())
    }

    fn object(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        rel: &[u8],
    ) -> Result<(), Error> {
        let src_path = fsutil::rel_to_path(self.src, rel);
        let read_err = |source| Error::ReadSource {
            path: src_path.clone(),
            source,
        };
        let dst_path = fsutil::rel_to_path(self.dst, rel);
        let write_err = |source| Error::Filesystem {
            action: "copying to",
            path: dst_path.clone(),
            source,
        };
        let meta = fsutil::stat_at(src, name).map_err(read_err)?;
        if meta.file_type != FileType::Directory && meta.nlink > 1 {
            if let Some(first) = self.links.get(&(meta.dev, meta.ino)) {
                rustix::fs::linkat(self.dst_root, first, dst, name, AtFlags::empty())
                    .map_err(|e| write_err(e.into()))?;
                self.report.entries += 1;
                return Ok(());
            }
            self.links
                .insert((meta.dev, meta.ino), cstring(rel).map_err(read_err)?);
        }
        match meta.file_type {
            FileType::Directory => {
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| write_err(e.into()))?;
                let sfd = fsutil::open_dir_at(src, name).map_err(read_err)?;
                let dfd = fsutil::open_dir_at(dst, name).map_err(write_err)?;
                self.dir(sfd.as_fd(), dfd.as_fd(), rel)?;
                let xattrs = fsutil::read_xattrs(XattrSource::Fd(sfd.as_fd())).map_err(read_err)?;
                apply_meta_fd(dfd.as_fd(), &meta, &xattrs, &mut self.report).map_err(write_err)?;
            }
            FileType::RegularFile => {
                let sfd = fsutil::open_file_at(src, name).map_err(read_err)?;
                let dfd = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| write_err(e.into()))?;
                self.contents(&sfd, &dfd, meta.size, &src_path, &dst_path)?;
                let xattrs = fsutil::read_xattrs(XattrSource::Fd(sfd.as_fd())).map_err(read_err)?;
                apply_meta_fd(dfd.as_fd(), &meta, &xattrs, &mut self.report).map_err(write_err)?;
            }
            FileType::Symlink
            | FileType::CharacterDevice
            | FileType::BlockDevice
            | FileType::Fifo => {
                let xattrs = fsutil::read_xattrs(XattrSource::Path(&src_path)).map_err(read_err)?;
                if meta.file_type == FileType::Symlink {
                    let target = rustix::fs::readlinkat(src, name, Vec::new())
                        .map_err(|e| read_err(e.into()))?;
                    rustix::fs::symlinkat(target.as_c_str(), dst, name)
                        .map_err(|e| write_err(e.into()))?;
                } else {
                    match rustix::fs::mknodat(
                        dst,
                        name,
                        meta.file_type,
                        Mode::from_raw_mode(meta.mode & 0o777),
                        rustix::fs::makedev(meta.rdev_major, meta.rdev_minor),
                    ) {
                        Ok(()) => {}
                        Err(Errno::PERM) if meta.file_type != FileType::Fifo => {
                            self.report.devices_skipped += 1;
                            return Ok(());
                        }
                        Err(e) => return Err(write_err(e.into())),
                    }
                }
                apply_meta_at(dst, name, &meta, &xattrs, &mut self.report).map_err(write_err)?;
            }
            // Sockets are not copied: they are not content.
            _ => return Ok(()),
        }
        self.report.entries += 1;
        Ok(())
    }

    fn contents(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        size: u64,
        src_path: &Path,
        dst_path: &Path,
    ) -> Result<(), Error> {
        let write_err = |source| Error::Filesystem {
            action: "copying to",
            path: dst_path.to_path_buf(),
            source,
        };
        if size == 0 {
            return Ok(());
        }
        if self.can_reflink {
            match rustix::fs::ioctl_ficlone(dst, src) {
                Ok(()) => {
                    self.report.reflinked += 1;
                    self.report.bytes += size;
                    return Ok(());
                }
                // Not supported here: don't try again for every file.
                Err(_) => self.can_reflink = false,
            }
        }
        let mut done = 0u64;
        while done < size {
            match rustix::fs::copy_file_range(src, None, dst, None, (size - done) as usize) {
                Ok(0) => break,
                Ok(n) => done += n as u64,
                Err(Errno::INTR) => {}
                Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) if done == 0 => {
                    return self.read_write(src, dst, size, src_path, dst_path);
                }
                Err(e) => return Err(write_err(e.into())),
            }
        }
        if done != size {
            return Err(Error::SourceChanged {
                path: src_path.to_path_buf(),
                expected: size,
                actual: done,
            });
        }
        self.report.bytes += size;
        Ok(())
    }

    fn read_write(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        size: u64,
        src_path: &Path,
        dst_path: &Path,
    ) -> Result<(), Error> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; 256 * 1024];
        }
        let mut reader = File::from(src.try_clone().map_err(|source| Error::ReadSource {
            path: src_path.to_path_buf(),
            source,
        })?);
        let mut writer = File::from(dst.try_clone().map_err(|source| Error::Filesystem {
            action: "copying to",
            path: dst_path.to_path_buf(),
            source,
        })?);
        let mut done = 0u64;
        loop {
            let n = match reader.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::ReadSource {
                        path: src_path.to_path_buf(),
                        source,
                    });
                }
            };
            writer
                .write_all(&self.buf[..n])
                .map_err(|source| Error::Filesystem {
                    action: "copying to",
                    path: dst_path.to_path_buf(),
                    source,
                })?;
            done += n as u64;
        }
        if done != size {
            return Err(Error::SourceChanged {
                path: src_path.to_path_buf(),
                expected: size,
                actual: done,
            });
        }
        self.report.bytes += size;
        Ok(())
    }
}

fn ids(meta: &Meta) -> (Option<Uid>, Option<Gid>) {
    let uid = u32::try_from(meta.uid)
        .ok()
        .filter(|u| *u != u32::MAX)
        .map(Uid::from_raw);
    let gid = u32::try_from(meta.gid)
        .ok()
        .filter(|g| *g != u32::MAX)
        .map(Gid::from_raw);
    (uid, gid)
}

fn times(meta: &Meta) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: meta.mtime,
        tv_nsec: meta.mtime_nsec.into(),
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Owner, mode, xattrs (after chown, which clears file capabilities) and times, by fd.
/// What the process may not set (foreign owners, privileged xattrs) is counted in
/// `report`, not fatal: the copy is as faithful as the privilege allows.
fn apply_meta_fd(
    fd: BorrowedFd<'_>,
    meta: &Meta,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    report: &mut CopyReport,
) -> io::Result<()> {
    let (uid, gid) = ids(meta);
    tolerate(
        rustix::fs::fchown(fd, uid, gid),
        &mut report.owners_not_preserved,
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))?;
    for (name, value) in xattrs {
        let set = rustix::fs::fsetxattr(fd, cstring(name)?.as_c_str(), value, XattrFlags::empty());
        tolerate(set, &mut report.xattrs_not_preserved)?;
    }
    rustix::fs::futimens(fd, &times(meta))?;
    Ok(())
}

/// The same by name, for symlinks and special files.
fn apply_meta_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    meta: &Meta,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    report: &mut CopyReport,
) -> io::Result<()> {
    let (uid, gid) = ids(meta);
    let chown = rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW);
    tolerate(chown, &mut report.owners_not_preserved)?;
    if meta.file_type != FileType::Symlink {
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())?;
    }
    if !xattrs.is_empty() {
        let path = fsutil::proc_path(dir, name.to_bytes());
        for (xname, value) in xattrs {
            let set = rustix::fs::lsetxattr(
                &path,
                cstring(xname)?.as_c_str(),
                value,
                XattrFlags::empty(),
            );
            tolerate(set, &mut report.xattrs_not_preserved)?;
        }
    }
    rustix::fs::utimensat(dir, name, &times(meta), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// A permission error is counted; anything else fails the copy.
fn tolerate(result: Result<(), Errno>, count: &mut u64) -> io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(Errno::PERM | Errno::INVAL | Errno::NOTSUP | Errno::ACCESS) => {
            *count += 1;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
