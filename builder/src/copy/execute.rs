//! Writing a [`CopyPlan`] into an empty layer directory (see the module docs
//! of [`crate::copy`] for the rules).
//!
//! Paths in the destination are resolved through a merged view of the layer
//! directory being written on top of the destination rootfs, so symlinks
//! (existing below, or just copied) are followed within the root and never
//! out of it. Directory mtimes are set last, after everything inside them
//! has been written.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{CopyPlan, Error, Item, Unit, archive, io_err, remote};
use crate::context::{FileKind, Timestamp, patterns};
use crate::rootfs::{Entry, RootfsView, xattr};

/// What [`execute`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Devices and fifos.
    pub special: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Writes the plan into the empty `layer_dir`, resolving the destination,
/// `--chown` names and the metadata of existing parents against
/// `dest_rootfs` (the stage's rootfs before this step, top-most layer first).
pub fn execute(
    plan: &CopyPlan,
    dest_rootfs: &RootfsView,
    layer_dir: &Path,
) -> Result<CopyStats, Error> {
    let owner = match &plan.chown {
        Some(spec) => Some(spec.resolve(dest_rootfs)?),
        None => None,
    };
    Executor::new(plan, dest_rootfs.clone(), layer_dir, owner).run()
}

/// `COPY --link`: like [`execute`] over an empty destination, so the layer
/// does not depend on what is below it (parents are created 0755, owned by
/// root or the `--chown` user). `users` is only read for `--chown` names.
pub fn execute_linked(
    plan: &CopyPlan,
    users: &RootfsView,
    layer_dir: &Path,
) -> Result<CopyStats, Error> {
    let owner = match &plan.chown {
        Some(spec) => Some(spec.resolve(users)?),
        None => None,
    };
    Executor::new(plan, RootfsView::empty(), layer_dir, owner).run()
}

/// `WORKDIR` as BuildKit runs it (`mkdir -p`, owned by the stage's USER):
/// writes into the empty `layer_dir` every directory of `path` missing from
/// `dest_rootfs`, 0755 and owned by `owner`, following symlinks within the
/// root. Returns how many directories were made; none means the step changes
/// nothing (the parents mirrored on the way are then no diff at all).
pub fn make_dir_all(
    dest_rootfs: &RootfsView,
    layer_dir: &Path,
    path: &Path,
    owner: (u32, u32),
) -> Result<u64, Error> {
    let plan = CopyPlan::empty(path);
    let mut executor = Executor::new(&plan, dest_rootfs.clone(), layer_dir, Some(owner));
    executor.ensure_dir(path)?;
    for (host, mtime) in executor.dir_times.iter().rev() {
        set_times(host, *mtime)?;
    }
    Ok(executor.stats.dirs)
}

struct Executor<'p> {
    plan: &'p CopyPlan,
    lower: RootfsView,
    merged: RootfsView,
    layer: PathBuf,
    owner: Option<(u32, u32)>,
    /// Requested directory path → resolved path, both inside the rootfs.
    ensured: HashMap<PathBuf, PathBuf>,
    /// Directories this copy created that exist nowhere below.
    fresh: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, Timestamp)>,
    /// Host path each written tree item went to, for hardlinks.
    written: HashMap<(usize, usize), PathBuf>,
    stats: CopyStats,
}

/// Where a new regular file's bytes come from.
enum Content<'a> {
    File(File),
    Bytes(&'a [u8]),
}

/// Final metadata of one written object.
struct Finish<'a> {
    uid: u32,
    gid: u32,
    mode: Option<u32>,
    xattrs: &'a [(std::ffi::OsString, Vec<u8>)],
    mtime: Option<Timestamp>,
}

impl<'p> Executor<'p> {
    fn new(
        plan: &'p CopyPlan,
        lower: RootfsView,
        layer: &Path,
        owner: Option<(u32, u32)>,
    ) -> Executor<'p> {
        Executor {
            plan,
            merged: lower.with_upper(layer.to_owned()),
            lower,
            layer: layer.to_owned(),
            owner,
            ensured: HashMap::new(),
            fresh: HashSet::new(),
            dir_times: Vec::new(),
            written: HashMap::new(),
            stats: CopyStats::default(),
        }
    }

    fn run(mut self) -> Result<CopyStats, Error> {
        for u in 0..self.plan.units.len() {
            match &self.plan.units[u] {
                Unit::Tree { .. } => self.place_tree(u)?,
                Unit::Archive { name, host, .. } => self.extract(name, host)?,
                Unit::Remote {
                    url,
                    file_name,
                    host,
                    checksum,
                    downloaded,
                } => {
                    let fetched = match downloaded {
                        Some(d) => d.clone(),
                        None => remote::download(url, host)?,
                    };
                    if let Some(expected) = checksum
                        && *expected != fetched.digest
                    {
                        return Err(Error::ChecksumMismatch {
                            url: url.clone(),
                            expected: expected.clone(),
                            actual: fetched.digest,
                        });
                    }
                    let target = self.file_target(OsStr::new(file_name))?;
                    let (uid, gid) = self.owner.unwrap_or((0, 0));
                    let mode = self
                        .plan
                        .chmod
                        .as_ref()
                        .map_or(0o600, |c| c.apply(0o600, false));
                    let source = File::open(host).map_err(io_err(host))?;
                    let meta = Finish {
                        uid,
                        gid,
                        mode: Some(mode),
                        xattrs: &[],
                        mtime: Some(fetched.last_modified.unwrap_or_else(super::now)),
                    };
                    let n = self.write_file(&target, Content::File(source), &meta)?;
                    self.stats.files += 1;
                    self.stats.bytes += n;
                }
                Unit::Inline { name, body, mtime } => {
                    let target = self.file_target(OsStr::new(name))?;
                    let (uid, gid) = self.owner.unwrap_or((0, 0));
                    let mode = self
                        .plan
                        .chmod
                        .as_ref()
                        .map_or(0o644, |c| c.apply(0o644, false));
                    let meta = Finish {
                        uid,
                        gid,
                        mode: Some(mode),
                        xattrs: &[],
                        mtime: Some(*mtime),
                    };
                    let n = self.write_file(&target, Content::Bytes(body.as_bytes()), &meta)?;
                    self.stats.files += 1;
                    self.stats.bytes += n;
                }
            }
        }
        for (host, mtime) in self.dir_times.iter().rev() {
            set_times(host, *mtime)?;
        }
        Ok(self.stats)
    }

    fn host(&self, logical: &Path) -> PathBuf {
        self.layer
            .join(logical.strip_prefix("/").unwrap_or(logical))
    }

    fn mode_for(&self, kind: FileKind, mode: u32) -> u32 {
        match &self.plan.chmod {
            Some(c) if kind != FileKind::Symlink => c.apply(mode, kind == FileKind::Dir),
            _ => mode,
        }
    }

    /// Where a single file named `basename` goes: into the destination when
    /// it is (or was written as) a directory, else to the destination itself.
    fn file_target(&mut self, basename: &OsStr) -> Result<PathBuf, Error> {
        let dest = self.plan.dest.clone();
        let into_dir = self.plan.dest_is_dir
            || self
                .merged
                .lookup_follow(&dest)?
                .is_some_and(|e| e.meta.is_dir());
        if into_dir {
            Ok(self.ensure_dir(&dest)?.join(basename))
        } else {
            let parent = self.ensure_dir(dest.parent().unwrap_or(Path::new("/")))?;
            Ok(parent.join(dest.file_name().unwrap_or_default()))
        }
    }

    /// Makes `logical` (and its parents) a directory in the layer, mirroring
    /// or creating each one; returns its symlink-free path.
    fn ensure_dir(&mut self, logical: &Path) -> Result<PathBuf, Error> {
        let Some(name) = logical.file_name() else {
            return Ok(PathBuf::from("/"));
        };
        if let Some(resolved) = self.ensured.get(logical) {
            return Ok(resolved.clone());
        }
        let parent = self.ensure_dir(logical.parent().unwrap_or(Path::new("/")))?;
        let candidate = parent.join(name);
        let resolved = self.dir_at(&candidate, None)?;
        self.ensured.insert(logical.to_owned(), resolved.clone());
        Ok(resolved)
    }

    /// Makes `candidate` (whose parent is a resolved directory in the layer) a
    /// directory: kept if already in the layer, mirrored if it exists below,
    /// followed if it is a symlink, else created — with `new` (a source
    /// directory's metadata) or as 0755 owned by the `--chown` user.
    fn dir_at(&mut self, candidate: &Path, new: Option<&Item>) -> Result<PathBuf, Error> {
        if let Some(resolved) = self.ensured.get(candidate) {
            return Ok(resolved.clone());
        }
        let host = self.host(candidate);
        match fs::symlink_metadata(&host) {
            Ok(md) if md.is_dir() => {
                self.ensured
                    .insert(candidate.to_owned(), candidate.to_owned());
                return Ok(candidate.to_owned());
            }
            Ok(md) if md.file_type().is_symlink() => return self.follow_dir(candidate),
            Ok(_) => {
                return Err(Error::NotADirectory {
                    path: candidate.to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&host)(e)),
        }
        let parent_fresh = candidate.parent().is_some_and(|p| self.fresh.contains(p));
        let below = if parent_fresh {
            None
        } else {
            self.lower.lookup(candidate)?
        };
        match below {
            Some(entry) if entry.meta.is_dir() => self.mirror(&entry, &host)?,
            Some(entry) if entry.meta.kind == FileKind::Symlink => {
                return self.follow_dir(candidate);
            }
            Some(_) => {
                return Err(Error::NotADirectory {
                    path: candidate.to_owned(),
                });
            }
            None => {
                fs::create_dir(&host).map_err(io_err(&host))?;
                match new {
                    Some(item) => {
                        let (uid, gid) = self.owner.unwrap_or((item.meta.uid, item.meta.gid));
                        finish(
                            &host,
                            false,
                            &Finish {
                                uid,
                                gid,
                                mode: Some(self.mode_for(FileKind::Dir, item.meta.mode)),
                                xattrs: &item.xattrs,
                                mtime: None,
                            },
                        )?;
                        self.dir_times.push((host.clone(), item.meta.mtime));
                    }
                    None => {
                        let (uid, gid) = self.owner.unwrap_or((0, 0));
                        finish(
                            &host,
                            false,
                            &Finish {
                                uid,
                                gid,
                                mode: Some(0o755),
                                xattrs: &[],
                                mtime: None,
                            },
                        )?;
                    }
                }
                self.stats.dirs += 1;
                self.fresh.insert(candidate.to_owned());
            }
        }
        self.ensured
            .insert(candidate.to_owned(), candidate.to_owned());
        Ok(candidate.to_owned())
    }

    fn follow_dir(&mut self, link: &Path) -> Result<PathBuf, Error> {
        let resolved = self.merged.resolve(link)?;
        if resolved == link {
            return Err(Error::NotADirectory {
                path: link.to_owned(),
            });
        }
        let out = self.ensure_dir(&resolved)?;
        self.ensured.insert(link.to_owned(), out.clone());
        Ok(out)
    }

    /// Copies up a directory that exists below: same owner, mode, xattrs, mtime.
    fn mirror(&mut self, entry: &Entry, host: &Path) -> Result<(), Error> {
        fs::create_dir(host).map_err(io_err(host))?;
        let mut xattrs = xattr::list(&entry.real_path).map_err(io_err(&entry.real_path))?;
        xattrs.retain(|(n, _)| !xattr::is_overlay_internal(n));
        finish(
            host,
            false,
            &Finish {
                uid: entry.meta.uid,
                gid: entry.meta.gid,
                mode: Some(entry.meta.mode),
                xattrs: &xattrs,
                mtime: None,
            },
        )?;
        self.dir_times.push((host.to_owned(), entry.meta.mtime));
        Ok(())
    }

    /// Clears the way for a non-directory at `target`. A directory in the
    /// layer or below is an error unless `replace_dirs` (archive semantics).
    fn clear_target(
        &mut self,
        target: &Path,
        host: &Path,
        replace_dirs: bool,
    ) -> Result<(), Error> {
        match fs::symlink_metadata(host) {
            Ok(md) if md.is_dir() => {
                if !replace_dirs {
                    return Err(Error::WouldReplaceDirectory {
                        path: target.to_owned(),
                    });
                }
                fs::remove_dir_all(host).map_err(io_err(host))?;
                self.forget_dirs_under(target);
            }
            Ok(_) => fs::remove_file(host).map_err(io_err(host))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(host)(e)),
        }
        let parent_fresh = target.parent().is_some_and(|p| self.fresh.contains(p));
        if !replace_dirs
            && !parent_fresh
            && self.lower.lookup(target)?.is_some_and(|e| e.meta.is_dir())
        {
            return Err(Error::WouldReplaceDirectory {
                path: target.to_owned(),
            });
        }
        if replace_dirs {
            self.forget_dirs_under(target);
        }
        Ok(())
    }

    fn forget_dirs_under(&mut self, target: &Path) {
        if self.ensured.values().any(|v| v.starts_with(target))
            || self.ensured.keys().any(|k| k.starts_with(target))
        {
            self.ensured
                .retain(|k, v| !k.starts_with(target) && !v.starts_with(target));
            self.fresh.retain(|d| !d.starts_with(target));
        }
    }

    /// Creates the regular file `target` from `content` and gives it its
    /// final metadata through the open descriptor (no path lookups). The
    /// data moves with `copy_file_range` when `content` is a file.
    fn write_file(
        &mut self,
        target: &Path,
        content: Content<'_>,
        meta: &Finish<'_>,
    ) -> Result<u64, Error> {
        let host = self.host(target);
        let parent_fresh = target.parent().is_some_and(|p| self.fresh.contains(p));
        if !parent_fresh && self.lower.lookup(target)?.is_some_and(|e| e.meta.is_dir()) {
            return Err(Error::WouldReplaceDirectory {
                path: target.to_owned(),
            });
        }
        let create = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&host)
        };
        let mut out = match create() {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.clear_target(target, &host, false)?;
                create().map_err(io_err(&host))?
            }
            Err(e) => return Err(io_err(&host)(e)),
        };
        let n = match content {
            // Between two files io::copy uses copy_file_range (reflinks on
            // file systems that share extents); the concrete types matter.
            Content::File(mut source) => io::copy(&mut source, &mut out),
            Content::Bytes(mut bytes) => io::copy(&mut bytes, &mut out),
        }
        .map_err(io_err(&host))?;
        finish_fd(&out, &host, meta)?;
        Ok(n)
    }

    fn place_tree(&mut self, u: usize) -> Result<(), Error> {
        let plan = self.plan;
        let Unit::Tree {
            basename, items, ..
        } = &plan.units[u]
        else {
            unreachable!("place_tree is called for tree units");
        };
        let root = &items[0];
        if !root.meta.is_dir() {
            let target = self.file_target(basename)?;
            return self.write_item(u, 0, &target);
        }
        let dest = plan.dest.clone();
        let root_resolved = if plan.dest_is_dir || dest == Path::new("/") {
            self.ensure_dir(&dest)?
        } else {
            let parent = self.ensure_dir(dest.parent().unwrap_or(Path::new("/")))?;
            let candidate = parent.join(dest.file_name().unwrap_or_default());
            self.dir_at(&candidate, Some(root))?
        };
        let mut dirs: HashMap<&Path, PathBuf> = HashMap::new();
        dirs.insert(Path::new(""), root_resolved);
        for (i, item) in items.iter().enumerate().skip(1) {
            let parent_rel = item.rel.parent().unwrap_or(Path::new(""));
            let parent = dirs
                .get(parent_rel)
                .expect("items come parents first")
                .clone();
            let target = parent.join(item.rel.file_name().unwrap_or_default());
            if item.meta.is_dir() {
                let resolved = self.dir_at(&target, Some(item))?;
                dirs.insert(&item.rel, resolved);
            } else {
                self.write_item(u, i, &target)?;
            }
        }
        Ok(())
    }

    fn write_item(&mut self, u: usize, i: usize, target: &Path) -> Result<(), Error> {
        let plan = self.plan;
        let Unit::Tree { items, .. } = &plan.units[u] else {
            unreachable!("write_item is called for tree units");
        };
        let item = &items[i];
        let host = self.host(target);
        if item.meta.kind == FileKind::File && item.hardlink_to.is_none() {
            let (uid, gid) = self.owner.unwrap_or((item.meta.uid, item.meta.gid));
            let meta = Finish {
                uid,
                gid,
                mode: Some(self.mode_for(item.meta.kind, item.meta.mode)),
                xattrs: &item.xattrs,
                mtime: Some(item.meta.mtime),
            };
            let source = File::open(&item.host).map_err(io_err(&item.host))?;
            let n = self.write_file(target, Content::File(source), &meta)?;
            self.stats.files += 1;
            self.stats.bytes += n;
            self.written.insert((u, i), host);
            return Ok(());
        }
        self.clear_target(target, &host, false)?;
        if let Some(first) = item.hardlink_to
            && let Some(first_host) = self.written.get(&first)
        {
            fs::hard_link(first_host, &host).map_err(io_err(&host))?;
            self.stats.hardlinks += 1;
            self.written.insert((u, i), host);
            return Ok(());
        }
        let (uid, gid) = self.owner.unwrap_or((item.meta.uid, item.meta.gid));
        let mut meta = Finish {
            uid,
            gid,
            mode: Some(self.mode_for(item.meta.kind, item.meta.mode)),
            xattrs: &item.xattrs,
            mtime: Some(item.meta.mtime),
        };
        match item.meta.kind {
            FileKind::File => {
                // A hardlink whose first name was not written: copy the content.
                let n = fs::copy(&item.host, &host).map_err(io_err(&item.host))?;
                self.stats.files += 1;
                self.stats.bytes += n;
            }
            FileKind::Symlink => {
                let link = item.meta.link_target.clone().unwrap_or_default();
                std::os::unix::fs::symlink(&link, &host).map_err(io_err(&host))?;
                meta.mode = None;
                self.stats.symlinks += 1;
            }
            FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice => {
                make_node(&host, item.meta.kind, item.meta.mode, item.meta.rdev)?;
                self.stats.special += 1;
            }
            // Sockets cannot be copied meaningfully; BuildKit skips them too.
            FileKind::Socket => return Ok(()),
            FileKind::Dir => unreachable!("directories are placed by dir_at"),
        }
        finish(&host, item.meta.kind == FileKind::Symlink, &meta)?;
        self.written.insert((u, i), host);
        Ok(())
    }

    /// `ADD` of a local archive: extract into the destination directory.
    fn extract(&mut self, name: &str, archive_path: &Path) -> Result<(), Error> {
        let arch = |source: io::Error| Error::Archive {
            archive: name.to_owned(),
            source,
        };
        let unsafe_entry = |entry: &str, reason| Error::UnsafeArchiveEntry {
            archive: name.to_owned(),
            entry: entry.to_owned(),
            reason,
        };
        let dest = self.plan.dest.clone();
        let target_dir = self.ensure_dir(&dest)?;
        let (_, reader) = archive::open_decompressed(archive_path).map_err(arch)?;
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().map_err(arch)? {
            let mut entry = entry.map_err(arch)?;
            let kind = entry.header().entry_type();
            if matches!(
                kind,
                tar::EntryType::XGlobalHeader
                    | tar::EntryType::XHeader
                    | tar::EntryType::GNULongName
                    | tar::EntryType::GNULongLink
            ) {
                continue;
            }
            let raw = entry.path().map_err(arch)?.to_string_lossy().into_owned();
            let rel = safe_relative(&raw)
                .ok_or_else(|| unsafe_entry(&raw, "its path climbs out of the destination"))?;
            let Some(file_name) = rel.file_name().map(|n| n.to_owned()) else {
                // The archive's own root (`./`): the destination keeps its metadata.
                continue;
            };
            let logical = target_dir.join(&rel);
            let parent = self.ensure_dir(logical.parent().unwrap_or(Path::new("/")))?;
            let final_path = parent.join(&file_name);
            let host = self.host(&final_path);
            let header = entry.header();
            let mode = header.mode().map_err(arch)? & 0o7777;
            // Empty numeric fields read as 0, as Go's archive/tar does.
            let (uid, gid) = self.owner.unwrap_or((
                header.uid().unwrap_or(0) as u32,
                header.gid().unwrap_or(0) as u32,
            ));
            let mtime = Timestamp {
                secs: header.mtime().unwrap_or(0) as i64,
                nanos: 0,
            };
            let device = match kind {
                tar::EntryType::Char | tar::EntryType::Block => (
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                ),
                _ => (0, 0),
            };
            let link_name = entry.link_name().map_err(arch)?.map(|l| l.into_owned());
            let xattrs = pax_xattrs(&mut entry).map_err(arch)?;
            let mut meta = Finish {
                uid,
                gid,
                mode: Some(mode),
                xattrs: &xattrs,
                mtime: Some(mtime),
            };
            match kind {
                tar::EntryType::Directory => {
                    match fs::symlink_metadata(&host) {
                        Ok(md) if md.is_dir() => {}
                        Ok(_) => {
                            fs::remove_file(&host).map_err(io_err(&host))?;
                            self.forget_dirs_under(&final_path);
                            fs::create_dir(&host).map_err(io_err(&host))?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            if self
                                .lower
                                .lookup(&final_path)?
                                .is_some_and(|e| e.meta.kind == FileKind::Symlink)
                            {
                                // A directory entry over a symlink below
                                // (e.g. `lib` on a merged-usr base): go through it.
                                self.ensure_dir(&final_path)?;
                                continue;
                            }
                            fs::create_dir(&host).map_err(io_err(&host))?;
                        }
                        Err(e) => return Err(io_err(&host)(e)),
                    }
                    meta.mtime = None;
                    finish(&host, false, &meta)?;
                    self.dir_times.push((host, mtime));
                    self.ensured.insert(final_path.clone(), final_path);
                    self.stats.dirs += 1;
                }
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    self.clear_target(&final_path, &host, true)?;
                    let file = File::create(&host).map_err(io_err(&host))?;
                    let mut out = BufWriter::with_capacity(256 * 1024, file);
                    let n = io::copy(&mut entry, &mut out).map_err(arch)?;
                    out.flush().map_err(io_err(&host))?;
                    drop(out);
                    finish(&host, false, &meta)?;
                    self.stats.files += 1;
                    self.stats.bytes += n;
                }
                tar::EntryType::Symlink => {
                    let target = link_name.unwrap_or_default();
                    if !target.has_root() {
                        let rel_parent = rel.parent().unwrap_or(Path::new(""));
                        let joined = rel_parent.join(&target);
                        if safe_relative(&joined.to_string_lossy()).is_none() {
                            return Err(unsafe_entry(
                                &raw,
                                "its symlink target points out of the destination",
                            ));
                        }
                    }
                    self.clear_target(&final_path, &host, true)?;
                    std::os::unix::fs::symlink(&target, &host).map_err(io_err(&host))?;
                    meta.mode = None;
                    finish(&host, true, &meta)?;
                    self.stats.symlinks += 1;
                }
                tar::EntryType::Link => {
                    let link = link_name.unwrap_or_default();
                    let link_rel = safe_relative(&link.to_string_lossy()).ok_or_else(|| {
                        unsafe_entry(&raw, "its hardlink target is out of the destination")
                    })?;
                    let link_logical = self.merged.resolve(target_dir.join(&link_rel))?;
                    let link_host = self.host(&link_logical);
                    if fs::symlink_metadata(&link_host).is_err() {
                        self.copy_up(&link_logical, &link_host, &raw, name)?;
                    }
                    self.clear_target(&final_path, &host, true)?;
                    fs::hard_link(&link_host, &host).map_err(io_err(&host))?;
                    self.stats.hardlinks += 1;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let file_kind = match kind {
                        tar::EntryType::Char => FileKind::CharDevice,
                        tar::EntryType::Block => FileKind::BlockDevice,
                        _ => FileKind::Fifo,
                    };
                    self.clear_target(&final_path, &host, true)?;
                    let dev = rustix::fs::makedev(device.0, device.1);
                    make_node(&host, file_kind, mode, dev)?;
                    finish(&host, false, &meta)?;
                    self.stats.special += 1;
                }
                // Other entry types carry nothing to extract.
                _ => {}
            }
        }
        Ok(())
    }

    /// A hardlink in an archive to a file that exists only below: copy it
    /// into the layer first so the link has something to point at.
    fn copy_up(
        &mut self,
        logical: &Path,
        host: &Path,
        entry: &str,
        archive: &str,
    ) -> Result<(), Error> {
        let below = self.lower.lookup(logical)?;
        let Some(below) = below.filter(|e| e.meta.kind == FileKind::File) else {
            return Err(Error::UnsafeArchiveEntry {
                archive: archive.to_owned(),
                entry: entry.to_owned(),
                reason: "its hardlink target does not exist",
            });
        };
        if let Some(parent) = logical.parent() {
            self.ensure_dir(parent)?;
        }
        fs::copy(&below.real_path, host).map_err(io_err(host))?;
        let mut xattrs = xattr::list(&below.real_path).map_err(io_err(&below.real_path))?;
        xattrs.retain(|(n, _)| !xattr::is_overlay_internal(n));
        finish(
            host,
            false,
            &Finish {
                uid: below.meta.uid,
                gid: below.meta.gid,
                mode: Some(below.meta.mode),
                xattrs: &xattrs,
                mtime: Some(below.meta.mtime),
            },
        )
    }
}

/// The entry's path relative to the extraction root, or `None` when it
/// climbs out (`../x`, `a/../../x`). Leading `/` and `./` are dropped.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let cleaned = patterns::clean(path.trim_start_matches('/'));
    if cleaned == ".." || cleaned.starts_with("../") {
        return None;
    }
    if cleaned == "." {
        return Some(PathBuf::new());
    }
    Some(PathBuf::from(cleaned))
}

fn pax_xattrs<R: io::Read>(
    entry: &mut tar::Entry<'_, R>,
) -> io::Result<Vec<(std::ffi::OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(extensions) = entry.pax_extensions()? {
        for ext in extensions {
            let ext = ext?;
            if let Ok(key) = ext.key()
                && let Some(name) = key.strip_prefix("SCHILY.xattr.")
            {
                out.push((name.into(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

fn make_node(host: &Path, kind: FileKind, mode: u32, dev: u64) -> Result<(), Error> {
    let file_type = match kind {
        FileKind::CharDevice => rustix::fs::FileType::CharacterDevice,
        FileKind::BlockDevice => rustix::fs::FileType::BlockDevice,
        _ => rustix::fs::FileType::Fifo,
    };
    rustix::fs::mknodat(
        rustix::fs::CWD,
        host,
        file_type,
        rustix::fs::Mode::from_raw_mode(mode & 0o7777),
        dev,
    )
    .map_err(|e| io_err(host)(e.into()))
}

/// Owner first (chown clears setuid and file capabilities), then mode, then
/// xattrs, then times.
fn finish(host: &Path, is_symlink: bool, meta: &Finish<'_>) -> Result<(), Error> {
    rustix::fs::chownat(
        rustix::fs::CWD,
        host,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err(host)(e.into()))?;
    if let Some(mode) = meta.mode
        && !is_symlink
    {
        fs::set_permissions(host, fs::Permissions::from_mode(mode)).map_err(io_err(host))?;
    }
    for (name, value) in meta.xattrs {
        if xattr::is_overlay_internal(name) {
            continue;
        }
        match xattr::set(host, name, value) {
            Ok(()) => {}
            // The target file system has no xattrs (or, for symlinks, refuses
            // the namespace): nothing else can be done.
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) if is_symlink && e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => return Err(io_err(host)(e)),
        }
    }
    if let Some(mtime) = meta.mtime {
        set_times(host, mtime)?;
    }
    Ok(())
}

/// [`finish`] through an open regular file.
fn finish_fd(file: &File, host: &Path, meta: &Finish<'_>) -> Result<(), Error> {
    let fail = |e: rustix::io::Errno| io_err(host)(e.into());
    rustix::fs::fchown(
        file,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
    )
    .map_err(fail)?;
    if let Some(mode) = meta.mode {
        rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(mode)).map_err(fail)?;
    }
    for (name, value) in meta.xattrs {
        if xattr::is_overlay_internal(name) {
            continue;
        }
        match rustix::fs::fsetxattr(file, name, value, rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    if let Some(mtime) = meta.mtime {
        let ts = rustix::fs::Timespec {
            tv_sec: mtime.secs,
            tv_nsec: i64::from(mtime.nanos),
        };
        rustix::fs::futimens(
            file,
            &rustix::fs::Timestamps {
                last_access: ts,
                last_modification: ts,
            },
        )
        .map_err(fail)?;
    }
    Ok(())
}

fn set_times(host: &Path, mtime: Timestamp) -> Result<(), Error> {
    let ts = rustix::fs::Timespec {
        tv_sec: mtime.secs,
        tv_nsec: i64::from(mtime.nanos),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        host,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err(host)(e.into()))
}
