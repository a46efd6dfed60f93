//! The layer applier: a (compressed) layer tar in, files on disk out, safely.
//!
//! Contract:
//! - compression is detected by magic (gzip, zstd, plain); the diffID (sha256 of the
//!   uncompressed tar, every byte of it) is computed while extracting and checked
//!   against [`ApplyOptions::expected_diff_id`] when given;
//! - no entry writes outside the root: a leading `/` is stripped (as tar does), any
//!   `..` component is refused ([`Error::PathEscapes`], [`Error::LinkEscapes`]), every
//!   parent directory is resolved with `openat2(RESOLVE_IN_ROOT)` so a symlink met on
//!   the way resolves as it would inside the image (`a -> /etc` then `a/passwd` writes
//!   `<root>/etc/passwd`), and the last component is never followed (an existing
//!   object there is replaced, a directory kept if the entry is a directory too);
//! - whiteouts: in [`ApplyMode::Flatten`] `.wh.<name>` deletes `<name>` and
//!   `.wh..wh..opq` empties its directory of everything this layer did not create; in
//!   [`ApplyMode::OverlayLowerDir`] they become a 0/0 character device and the
//!   `<ns>.overlay.opaque=y` xattr, so stacking the directory as an overlay lower dir
//!   hides the lower files;
//! - ownership (lchown for symlinks), modes (setuid etc. after chown), xattrs
//!   (`SCHILY.xattr.*`, except overlay's own, which a layer must not smuggle in) and
//!   mtimes are restored; directories get their mode and mtime last. What the process
//!   may not do (device nodes or foreign owners without privilege, privileged xattr
//!   namespaces) is skipped and reported as an [`ApplyWarning`];
//! - [`unpack_layer`] extracts into a fresh temp dir beside the destination and renames
//!   it into place only when everything (diffID included) succeeded; on error nothing is
//!   left behind. [`apply_layer`] works in place on an existing tree (no such guarantee:
//!   on error the tree is partly modified and should be discarded).

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::Timespec;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::Error;
use super::compress::{self, DetectedCompression};
use super::fsutil::{self, cstring, display_rel};
use super::write::split_rel;
use crate::digest::{Digest, HashingReader};

/// How whiteouts are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// The target is a per-layer directory to be stacked as an overlayfs lower dir:
    /// deletions are recorded as overlay whiteouts, not performed.
    OverlayLowerDir,
    /// The target is a merged tree (or the first layer): deletions are performed.
    Flatten,
}

/// Which xattr namespace overlayfs reads opaque markers from: `trusted.` (mounted as
/// real root) or `user.` (mounted with `userxattr` inside a user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayXattrNamespace {
    #[default]
    Trusted,
    User,
}

impl OverlayXattrNamespace {
    fn opaque_name(self) -> &'static CStr {
        match self {
            OverlayXattrNamespace::Trusted => c"trusted.overlay.opaque",
            OverlayXattrNamespace::User => c"user.overlay.opaque",
        }
    }
}

/// How to apply a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    pub mode: ApplyMode,
    /// When given, the uncompressed tar must hash to this or the apply fails.
    pub expected_diff_id: Option<Digest>,
    pub overlay_xattrs: OverlayXattrNamespace,
}

impl ApplyOptions {
    pub fn overlay_lower_dir(expected_diff_id: Option<Digest>) -> ApplyOptions {
        ApplyOptions {
            mode: ApplyMode::OverlayLowerDir,
            expected_diff_id,
            overlay_xattrs: OverlayXattrNamespace::Trusted,
        }
    }

    pub fn flatten(expected_diff_id: Option<Digest>) -> ApplyOptions {
        ApplyOptions {
            mode: ApplyMode::Flatten,
            expected_diff_id,
            overlay_xattrs: OverlayXattrNamespace::Trusted,
        }
    }
}

/// Something that was not restored because the process lacks the privilege.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyWarning {
    DeviceSkipped {
        entry: String,
    },
    OwnershipNotRestored {
        entry: String,
        uid: u64,
        gid: u64,
    },
    XattrNotRestored {
        entry: String,
        name: String,
    },
    /// The layer carried an overlayfs xattr; it was dropped so it cannot steer overlay.
    OverlayXattrDropped {
        entry: String,
        name: String,
    },
}

/// At most this many warnings are kept; the rest are only counted.
const MAX_WARNINGS: usize = 100;

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    /// Bytes read from the layer blob.
    pub compressed_size: u64,
    pub compression: DetectedCompression,
    /// Tar entries processed (whiteouts included, PAX headers not).
    pub entries: u64,
    pub warnings: Vec<ApplyWarning>,
    /// Warnings beyond the first 100, counted only.
    pub warnings_dropped: u64,
}

/// Extracts `layer` into the new directory `dest` (which must not exist) through a temp
/// dir beside it, renamed into place only on success.
pub fn unpack_layer<R: Read + Send>(
    layer: R,
    dest: &Path,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    let fs_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Filesystem {
            action,
            path,
            source,
        }
    };
    if dest.symlink_metadata().is_ok() {
        return Err(Error::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    // Removed (symlink-safely) on drop unless kept below.
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(parent)
        .map_err(fs_err("creating a temp dir in", parent))?;
    // tempfile makes it 0700; an image root is 0755 unless the layer says otherwise.
    rustix::fs::chmod(temp.path(), Mode::from_raw_mode(0o755))
        .map_err(|e| fs_err("chmod", temp.path())(e.into()))?;
    let report = apply_layer(layer, temp.path(), options)?;
    let temp_path = temp.keep();
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        &temp_path,
        rustix::fs::CWD,
        dest,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(report),
        Err(e) => {
            let _ = fsutil::remove_tree(&temp_path);
            if e == Errno::EXIST {
                Err(Error::DestinationExists {
                    path: dest.to_path_buf(),
                })
            } else {
                Err(fs_err("renaming the unpacked layer to", dest)(e.into()))
            }
        }
    }
}

/// Applies `layer` in place onto the existing directory `root`.
pub fn apply_layer<R: Read + Send>(
    layer: R,
    root: &Path,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    let root_fd = fsutil::open_dir(root).map_err(|source| Error::Filesystem {
        action: "opening",
        path: root.to_path_buf(),
        source,
    })?;
    let compressed = Arc::new(AtomicU64::new(0));
    let counting = CountingReader {
        inner: layer,
        count: Arc::clone(&compressed),
    };
    let (tar_reader, compression) = compress::decompressed(counting)?;
    let (entries, warnings, dropped, diff_id, uncompressed_size) =
        compress::read_ahead(tar_reader, |reader| {
            let hashing = HashingReader::new(reader);
            let mut extractor = Extractor {
                root: root_fd.as_fd(),
                mode: options.mode,
                overlay_xattrs: options.overlay_xattrs,
                created: HashSet::new(),
                deferred_dirs: Vec::new(),
                deferred_index: HashMap::new(),
                parent_cache: None,
                warnings: Vec::new(),
                warnings_dropped: 0,
                entries: 0,
                buf: vec![0u8; 256 * 1024],
            };
            let mut archive = tar::Archive::new(hashing);
            extractor.extract_all(&mut archive)?;
            extractor.finish_dirs()?;
            // Hash the rest of the stream too (end blocks, record padding): the diffID
            // covers every byte.
            let mut hashing = archive.into_inner();
            io::copy(&mut hashing, &mut io::sink())
                .map_err(|source| Error::ReadLayer { source })?;
            let (_, diff_id, size) = hashing.finish();
            Ok::<_, Error>((
                extractor.entries,
                extractor.warnings,
                extractor.warnings_dropped,
                diff_id,
                size,
            ))
        })?;
    if let Some(expected) = &options.expected_diff_id
        && *expected != diff_id
    {
        return Err(Error::DiffIdMismatch {
            expected: expected.clone(),
            actual: diff_id,
        });
    }
    Ok(ApplyReport {
        diff_id,
        uncompressed_size,
        compressed_size: compressed.load(Ordering::Relaxed),
        compression,
        entries,
        warnings,
        warnings_dropped: dropped,
    })
}

struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One entry's metadata after PAX overrides.
struct EntryMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    mtime_nsec: u32,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct DeferredDir {
    rel: Vec<u8>,
    mode: u32,
    mtime: i64,
    mtime_nsec: u32,
}

struct Extractor<'a> {
    root: BorrowedFd<'a>,
    mode: ApplyMode,
    overlay_xattrs: OverlayXattrNamespace,
    /// Paths this layer created, which an opaque marker must not remove.
    created: HashSet<Vec<u8>>,
    deferred_dirs: Vec<DeferredDir>,
    deferred_index: HashMap<Vec<u8>, usize>,
    /// The last parent directory resolved, reused by the next entries in it.
    parent_cache: Option<(Vec<u8>, OwnedFd)>,
    warnings: Vec<ApplyWarning>,
    warnings_dropped: u64,
    entries: u64,
    buf: Vec<u8>,
}

/// Turns an entry's path into a relative path inside the root: leading `/` and `.`
/// components dropped; `None` if a `..` component appears.
fn normalize(raw: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return None,
            c => parts.push(c),
        }
    }
    Some(parts.join(&b'/'))
}

fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
}

fn ts(sec: i64, nsec: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl<'a> Extractor<'a> {
    fn warn(&mut self, warning: ApplyWarning) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(warning);
        } else {
            self.warnings_dropped += 1;
        }
    }

    fn extract_all<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), Error> {
        let read_err = |source| Error::ReadLayer { source };
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            self.extract_one(&mut entry)?;
        }
        Ok(())
    }

    fn extract_one<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = display_rel(&raw_path);
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            return Ok(());
        }
        self.entries += 1;
        let rel = normalize(&raw_path).ok_or_else(|| Error::PathEscapes {
            entry: shown.clone(),
        })?;
        let meta = self.entry_meta(entry, &shown)?;
        let (parent, name) = split_rel(&rel);

        if let Some(target) = name.strip_prefix(b".wh.") {
            if target == b".wh..opq" {
                return self.opaque(parent, &shown);
            }
            if target.starts_with(b".wh.") {
                // Other AUFS bookkeeping (`.wh..wh.plnk`, ...): not content.
                return Ok(());
            }
            if target.is_empty() || target == b"." || target == b".." {
                return Err(Error::PathEscapes { entry: shown });
            }
            return self.whiteout(parent, target, &shown);
        }

        if rel.is_empty() {
            // The root itself ("./"): only its metadata applies.
            if !kind.is_dir() {
                return Err(Error::UnsupportedEntry {
                    entry: shown,
                    kind: kind.as_byte() as char,
                });
            }
            self.own(self.root, None, &shown, &meta)?;
            self.set_xattrs_fd(self.root, &shown, &meta.xattrs)?;
            self.defer_dir(&rel, &meta);
            return Ok(());
        }

        let pfd = self.parent(parent, &shown)?;
        let cname = cstring(name).map_err(|e| extract(&shown, "naming", e))?;
        self.invalidate_under(&rel);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.clear_slot(pfd.as_fd(), &cname, false, &shown)?;
                let fd = rustix::fs::openat(
                    pfd.as_fd(),
                    &cname,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| extract(&shown, "creating file", e.into()))?;
                let mut file = File::from(fd);
                self.copy_data(entry, &mut file, &shown)?;
                let fd = file.as_fd();
                self.own(fd, None, &shown, &meta)?;
                rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
                    .map_err(|e| extract(&shown, "chmod", e.into()))?;
                self.set_xattrs_fd(fd, &shown, &meta.xattrs)?;
                rustix::fs::futimens(fd, &ts(meta.mtime, meta.mtime_nsec))
                    .map_err(|e| extract(&shown, "setting mtime", e.into()))?;
            }
            tar::EntryType::Directory => {
                // A directory over this layer's own whiteout: "deleted, then made anew",
                // which a lower dir can only say by being opaque.
                let over_whiteout = self.mode == ApplyMode::OverlayLowerDir
                    && fsutil::stat_at(pfd.as_fd(), &cname).is_ok_and(|m| m.is_whiteout_device());
                let kept = self.clear_slot(pfd.as_fd(), &cname, true, &shown)?;
                if !kept {
                    rustix::fs::mkdirat(pfd.as_fd(), &cname, Mode::from_raw_mode(0o700))
                        .map_err(|e| extract(&shown, "creating directory", e.into()))?;
                }
                let dfd = fsutil::open_dir_at(pfd.as_fd(), &cname)
                    .map_err(|e| extract(&shown, "opening directory", e))?;
                if over_whiteout {
                    self.mark_opaque(dfd.as_fd(), &shown)?;
                }
                self.own(dfd.as_fd(), None, &shown, &meta)?;
                self.set_xattrs_fd(dfd.as_fd(), &shown, &meta.xattrs)?;
                self.defer_dir(&rel, &meta);
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                self.clear_slot(pfd.as_fd(), &cname, false, &shown)?;
                rustix::fs::symlinkat(
                    cstring(&target)
                        .map_err(|e| extract(&shown, "naming", e))?
                        .as_c_str(),
                    pfd.as_fd(),
                    &cname,
                )
                .map_err(|e| extract(&shown, "creating symlink", e.into()))?;
                self.finish_special(pfd.as_fd(), &cname, name, &shown, &meta, false)?;
            }
            tar::EntryType::Link => {
                let raw_target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = normalize(&raw_target)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Error::LinkEscapes {
                        entry: shown.clone(),
                        target: display_rel(&raw_target),
                    })?;
                if target == rel {
                    return Ok(());
                }
                let (tparent, tname) = split_rel(&target);
                let tpfd = self.resolve_dir(tparent, false, &shown)?;
                let tcname = cstring(tname).map_err(|e| extract(&shown, "naming", e))?;
                self.clear_slot(pfd.as_fd(), &cname, false, &shown)?;
                rustix::fs::linkat(tpfd.as_fd(), &tcname, pfd.as_fd(), &cname, AtFlags::empty())
                    .map_err(|e| extract(&shown, "creating hardlink", e.into()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.clear_slot(pfd.as_fd(), &cname, false, &shown)?;
                match rustix::fs::mknodat(
                    pfd.as_fd(),
                    &cname,
                    file_type,
                    Mode::from_raw_mode(meta.mode & 0o777),
                    rustix::fs::makedev(major, minor),
                ) {
                    Ok(()) => {}
                    Err(Errno::PERM) if file_type != FileType::Fifo => {
                        self.warn(ApplyWarning::DeviceSkipped { entry: shown });
                        return Ok(());
                    }
                    Err(e) => return Err(extract(&shown, "creating device node", e.into())),
                }
                self.finish_special(pfd.as_fd(), &cname, name, &shown, &meta, true)?;
            }
            other => {
                return Err(Error::UnsupportedEntry {
                    entry: shown,
                    kind: other.as_byte() as char,
                });
            }
        }
        self.created.insert(rel);
        Ok(())
    }

    /// Ownership, mode, xattrs and mtime of a symlink or special file, by name.
    fn finish_special(
        &mut self,
        pfd: BorrowedFd<'_>,
        cname: &CStr,
        name: &[u8],
        shown: &str,
        meta: &EntryMeta,
        chmod: bool,
    ) -> Result<(), Error> {
        self.own(pfd, Some(cname), shown, meta)?;
        if chmod {
            rustix::fs::chmodat(pfd, cname, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(|e| extract(shown, "chmod", e.into()))?;
        }
        if !meta.xattrs.is_empty() {
            let path = fsutil::proc_path(pfd, name);
            for (xname, value) in &meta.xattrs {
                let cxname = cstring(xname).map_err(|e| extract(shown, "naming xattr", e))?;
                if let Err(e) = rustix::fs::lsetxattr(&path, &cxname, value, XattrFlags::empty()) {
                    self.xattr_failed(shown, xname, e)?;
                }
            }
        }
        rustix::fs::utimensat(
            pfd,
            cname,
            &ts(meta.mtime, meta.mtime_nsec),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| extract(shown, "setting mtime", e.into()))
    }

    fn entry_meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<EntryMeta, Error> {
        let header = entry.header();
        let bad = |what: &'static str| move |e: io::Error| extract(shown, what, e);
        let mut meta = EntryMeta {
            mode: header.mode().map_err(bad("reading mode"))? & 0o7777,
            uid: header.uid().map_err(bad("reading uid"))?,
            gid: header.gid().map_err(bad("reading gid"))?,
            mtime: header.mtime().map_err(bad("reading mtime"))? as i64,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        };
        let mut dropped = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(bad("reading PAX header"))? {
            for ext in pax {
                let ext = ext.map_err(bad("reading PAX header"))?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if fsutil::is_overlay_xattr(name) {
                        dropped.push(display_rel(name));
                    } else {
                        meta.xattrs.push((name.to_vec(), value.to_vec()));
                    }
                    continue;
                }
                let text = std::str::from_utf8(value).unwrap_or("");
                match key {
                    b"uid" => meta.uid = text.parse().map_err(|_| pax_err(shown, "uid"))?,
                    b"gid" => meta.gid = text.parse().map_err(|_| pax_err(shown, "gid"))?,
                    b"mtime" => {
                        (meta.mtime, meta.mtime_nsec) =
                            parse_pax_time(text).ok_or_else(|| pax_err(shown, "mtime"))?
                    }
                    _ => {}
                }
            }
        }
        for name in dropped {
            self.warn(ApplyWarning::OverlayXattrDropped {
                entry: shown.to_owned(),
                name,
            });
        }
        Ok(meta)
    }

    fn copy_data<R: Read>(
        &mut self,
        entry: &mut R,
        file: &mut File,
        shown: &str,
    ) -> Result<(), Error> {
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::ReadLayer { source }),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| extract(shown, "writing file", e))?;
        }
    }

    /// chown (by fd, or by name without following when `name` is given).
    fn own(
        &mut self,
        fd: BorrowedFd<'_>,
        name: Option<&CStr>,
        shown: &str,
        meta: &EntryMeta,
    ) -> Result<(), Error> {
        let ids = u32::try_from(meta.uid)
            .ok()
            .zip(u32::try_from(meta.gid).ok())
            .filter(|(u, g)| *u != u32::MAX && *g != u32::MAX);
        let result = match ids {
            None => Err(Errno::INVAL),
            Some((uid, gid)) => {
                let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
                match name {
                    None => rustix::fs::fchown(fd, uid, gid),
                    Some(n) => rustix::fs::chownat(fd, n, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
                }
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(Errno::PERM | Errno::INVAL) => {
                self.warn(ApplyWarning::OwnershipNotRestored {
                    entry: shown.to_owned(),
                    uid: meta.uid,
                    gid: meta.gid,
                });
                Ok(())
            }
            Err(e) => Err(extract(shown, "chown", e.into())),
        }
    }

    fn set_xattrs_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        shown: &str,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), Error> {
        for (name, value) in xattrs {
            let cname = cstring(name).map_err(|e| extract(shown, "naming xattr", e))?;
            if let Err(e) = rustix::fs::fsetxattr(fd, &cname, value, XattrFlags::empty()) {
                self.xattr_failed(shown, name, e)?;
            }
        }
        Ok(())
    }

    fn xattr_failed(&mut self, shown: &str, name: &[u8], e: Errno) -> Result<(), Error> {
        match e {
            Errno::PERM | Errno::ACCESS | Errno::NOTSUP | Errno::NOENT => {
                self.warn(ApplyWarning::XattrNotRestored {
                    entry: shown.to_owned(),
                    name: display_rel(name),
                });
                Ok(())
            }
            e => Err(extract(shown, "setting xattr", e.into())),
        }
    }

    fn defer_dir(&mut self, rel: &[u8], meta: &EntryMeta) {
        let dir = DeferredDir {
            rel: rel.to_vec(),
            mode: meta.mode,
            mtime: meta.mtime,
            mtime_nsec: meta.mtime_nsec,
        };
        match self.deferred_index.get(rel) {
            Some(&i) => self.deferred_dirs[i] = dir,
            None => {
                self.deferred_index
                    .insert(rel.to_vec(), self.deferred_dirs.len());
                self.deferred_dirs.push(dir);
            }
        }
    }

    /// Directory modes and mtimes, after everything inside them was written.
    fn finish_dirs(&mut self) -> Result<(), Error> {
        self.parent_cache = None;
        let dirs = std::mem::take(&mut self.deferred_dirs);
        for dir in dirs.iter().rev() {
            let shown = display_rel(&dir.rel);
            let mode = Mode::from_raw_mode(dir.mode);
            let times = ts(dir.mtime, dir.mtime_nsec);
            if dir.rel.is_empty() {
                rustix::fs::fchmod(self.root, mode)
                    .map_err(|e| extract(&shown, "chmod", e.into()))?;
                rustix::fs::futimens(self.root, &times)
                    .map_err(|e| extract(&shown, "setting mtime", e.into()))?;
                continue;
            }
            let (parent, name) = split_rel(&dir.rel);
            let pfd = match self.open_in_root(parent) {
                Ok(fd) => fd,
                // Removed by a later whiteout (flatten mode).
                Err(Errno::NOENT | Errno::NOTDIR) => continue,
                Err(e) => return Err(extract(&shown, "resolving parent", e.into())),
            };
            let cname = cstring(name).map_err(|e| extract(&shown, "naming", e))?;
            match fsutil::stat_at(pfd.as_fd(), &cname) {
                Ok(m) if m.file_type == FileType::Directory => {}
                _ => continue,
            }
            rustix::fs::chmodat(pfd.as_fd(), &cname, mode, AtFlags::empty())
                .map_err(|e| extract(&shown, "chmod", e.into()))?;
            rustix::fs::utimensat(pfd.as_fd(), &cname, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| extract(&shown, "setting mtime", e.into()))?;
        }
        Ok(())
    }

    /// Makes room for a new object `name`: an existing directory is kept when the new
    /// object is a directory too (returns true); anything else there is removed.
    fn clear_slot(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CStr,
        new_is_dir: bool,
        shown: &str,
    ) -> Result<bool, Error> {
        match fsutil::stat_at(pfd, name) {
            Ok(m) if m.file_type == FileType::Directory && new_is_dir => Ok(true),
            Ok(_) => {
                fsutil::remove_at(pfd, name).map_err(|e| extract(shown, "replacing", e))?;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(extract(shown, "inspecting", e)),
        }
    }

    fn whiteout(&mut self, parent: &[u8], target: &[u8], shown: &str) -> Result<(), Error> {
        let target_rel = fsutil::join_rel(parent, target);
        let cname = cstring(target).map_err(|e| extract(shown, "naming", e))?;
        self.invalidate_under(&target_rel);
        match self.mode {
            ApplyMode::Flatten => {
                let pfd = match self.open_in_root(parent) {
                    Ok(fd) => fd,
                    // Nothing there to delete.
                    Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                    Err(e) => return Err(extract(shown, "resolving parent", e.into())),
                };
                fsutil::remove_at(pfd.as_fd(), &cname)
                    .map_err(|e| extract(shown, "deleting", e))?;
                self.created.remove(&target_rel);
            }
            ApplyMode::OverlayLowerDir => {
                let pfd = self.parent(parent, shown)?;
                self.clear_slot(pfd.as_fd(), &cname, false, shown)?;
                rustix::fs::mknodat(
                    pfd.as_fd(),
                    &cname,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| extract(shown, "creating overlay whiteout", e.into()))?;
                self.created.insert(target_rel);
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &[u8], shown: &str) -> Result<(), Error> {
        let dfd = self.resolve_dir(dir, true, shown)?;
        match self.mode {
            ApplyMode::Flatten => {
                let created = &self.created;
                fsutil::clear_dir(dfd.as_fd(), |name| {
                    created.contains(&fsutil::join_rel(dir, name.to_bytes()))
                })
                .map_err(|e| extract(shown, "emptying opaque directory", e))?;
                // Anything cached below `dir` may be gone now.
                if let Some((cached, _)) = &self.parent_cache
                    && is_under(cached, dir)
                    && cached.as_slice() != dir
                {
                    self.parent_cache = None;
                }
            }
            ApplyMode::OverlayLowerDir => self.mark_opaque(dfd.as_fd(), shown)?,
        }
        Ok(())
    }

    fn mark_opaque(&self, dir: BorrowedFd<'_>, shown: &str) -> Result<(), Error> {
        rustix::fs::fsetxattr(
            dir,
            self.overlay_xattrs.opaque_name(),
            b"y",
            XattrFlags::empty(),
        )
        .map_err(|e| extract(shown, "marking directory opaque", e.into()))
    }

    fn invalidate_under(&mut self, rel: &[u8]) {
        if let Some((cached, _)) = &self.parent_cache
            && is_under(cached, rel)
        {
            self.parent_cache = None;
        }
    }

    /// The parent directory of an entry, created (0755, owned by the caller) if missing.
    fn parent(&mut self, parent: &[u8], shown: &str) -> Result<OwnedFd, Error> {
        if let Some((cached, fd)) = &self.parent_cache
            && cached.as_slice() == parent
        {
            return rustix::io::dup(fd).map_err(|e| extract(shown, "dup", e.into()));
        }
        let fd = self.resolve_dir(parent, true, shown)?;
        let copy = rustix::io::dup(&fd).map_err(|e| extract(shown, "dup", e.into()))?;
        self.parent_cache = Some((parent.to_vec(), copy));
        Ok(fd)
    }

    /// Opens the directory `rel` inside the root, resolving symlinks as the image would.
    fn open_in_root(&self, rel: &[u8]) -> Result<OwnedFd, Errno> {
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        let cpath = cstring(path).map_err(|_| Errno::INVAL)?;
        loop {
            match rustix::fs::openat2(
                self.root,
                &cpath,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                // The kernel asks for a retry when a rename raced the lookup.
                Err(Errno::AGAIN | Errno::INTR) => continue,
                other => return other,
            }
        }
    }

    fn resolve_dir(&mut self, rel: &[u8], create: bool, shown: &str) -> Result<OwnedFd, Error> {
        match self.open_in_root(rel) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                return Err(Error::ParentNotDirectory {
                    entry: shown.to_owned(),
                });
            }
            Err(e) => return Err(extract(shown, "resolving parent directory", e.into())),
        }
        // Create the missing components one by one, each resolved from the root again.
        let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
        for i in 0..comps.len() {
            let prefix = comps[..=i].join(&b'/');
            match self.open_in_root(&prefix) {
                Ok(_) => continue,
                Err(Errno::NOENT) => {}
                Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                    return Err(Error::ParentNotDirectory {
                        entry: shown.to_owned(),
                    });
                }
                Err(e) => return Err(extract(shown, "resolving parent directory", e.into())),
            }
            let up = comps[..i].join(&b'/');
            let ufd = self
                .open_in_root(&up)
                .map_err(|e| extract(shown, "resolving parent directory", e.into()))?;
            let cname = cstring(comps[i]).map_err(|e| extract(shown, "naming", e))?;
            match rustix::fs::mkdirat(ufd.as_fd(), &cname, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    self.created.insert(prefix);
                }
                // A dangling symlink: its target does not exist inside the root.
                Err(Errno::EXIST) => {
                    return Err(Error::ParentNotDirectory {
                        entry: shown.to_owned(),
                    });
                }
                Err(e) => return Err(extract(shown, "creating parent directory", e.into())),
            }
        }
        self.open_in_root(rel)
            .map_err(|e| extract(shown, "resolving parent directory", e.into()))
    }
}

fn extract(entry: &str, action: &'static str, source: io::Error) -> Error {
    Error::Extract {
        entry: entry.to_owned(),
        action,
        source,
    }
}

fn pax_err(entry: &str, key: &'static str) -> Error {
    extract(
        entry,
        "reading PAX header",
        io::Error::new(io::ErrorKind::InvalidData, format!("bad {key} record")),
    )
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.123456789`.
fn parse_pax_time(text: &str) -> Option<(i64, u32)> {
    let (secs, frac) = match text.split_once('.') {
        Some((s, f)) => (s, f),
        None => (text, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c.to_digit(10)?;
        nanos += d * 10u32.pow(8 - i as u32);
    }
    if secs < 0 && nanos > 0 {
        return Some((secs - 1, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_root_and_dots_and_refuses_dotdot() {
        assert_eq!(normalize(b"/etc/./passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"usr//lib/").unwrap(), b"usr/lib");
        assert!(normalize(b"../escape").is_none());
        assert!(normalize(b"a/../../b").is_none());
        assert!(normalize(b"a/..").is_none());
    }

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn is_under_matches_components_not_prefixes() {
        assert!(is_under(b"a/b", b"a"));
        assert!(is_under(b"a", b"a"));
        assert!(!is_under(b"ab", b"a"));
        assert!(is_under(b"anything", b""));
    }
}
