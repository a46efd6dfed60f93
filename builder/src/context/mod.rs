//! The build context: the directory `COPY` and `ADD` read from, after
//! `.dockerignore`.
//!
//! # Contract
//!
//! - [`BuildContext::open`] reads the ignore rules (cheap); the directory is
//!   walked once, lazily, on the first [`BuildContext::index`] call, into an
//!   in-memory index sorted by path (component order, so a directory's subtree
//!   is contiguous). Later steps of the same build reuse that index.
//! - Ignore rules follow Docker ([`patterns`]): `<Dockerfile>.dockerignore`
//!   next to the Dockerfile takes precedence over the context's
//!   `.dockerignore`. The Dockerfile and `.dockerignore` themselves are
//!   excluded only when a pattern lists them. An excluded directory is still
//!   entered when a `!` pattern could re-include something below it, and is
//!   then kept (as a parent) when something below it was re-included.
//! - Content digests ([`BuildContext::digest`]) are computed on demand and
//!   memoised for the life of the `BuildContext`. With a stat cache file
//!   ([`ContextOptions::stat_cache`]) a file whose (path, size, mtime, inode,
//!   ctime) are unchanged since the digest was stored is not read again;
//!   [`BuildContext::save_stat_cache`] writes the cache back (temp file +
//!   rename). Entries whose ctime is within [`RACY_WINDOW_NS`] of the moment
//!   they were hashed are not stored, so a write that lands in the same clock
//!   tick as the hashing cannot be missed (git's "racy clean" problem).
//!
//! # Errors
//!
//! [`Error::Io`] names the path that failed; [`Error::IgnoreFile`] names the
//! ignore file and the bad pattern; [`Error::NotARegularFile`] is returned when
//! a digest is asked of something that is not a regular file.

pub mod patterns;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::{Digest, Hasher};
use patterns::{MatchInfo, PatternError, PatternMatcher};

/// Entries whose ctime is this close to (or after) the time they were hashed
/// are not persisted in the stat cache (coarse kernel clocks tick every few ms).
pub const RACY_WINDOW_NS: i64 = 20_000_000;

const STAT_CACHE_HEADER: &str = "kiln-stat-cache v2";

/// Errors from reading a build context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    IgnoreFile {
        path: PathBuf,
        #[source]
        source: PatternError,
    },
    #[error("{path}: not a regular file")]
    NotARegularFile { path: PathBuf },
    #[error("{path}: build context is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: PathBuf },
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// The type of a file system object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// A point in time as stored in inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn as_nanos(&self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }
}

/// The metadata kiln keeps about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    /// Device number, for character and block devices.
    pub rdev: u64,
    /// Target of a symlink, as stored.
    pub link_target: Option<PathBuf>,
}

impl FileMeta {
    /// Builds the metadata from an `lstat` result; `link_target` is read by the
    /// caller for symlinks.
    pub fn from_std(md: &fs::Metadata, link_target: Option<PathBuf>) -> FileMeta {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_file() {
            FileKind::File
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else if ft.is_char_device() {
            FileKind::CharDevice
        } else {
            FileKind::BlockDevice
        };
        FileMeta {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            mtime: Timestamp {
                secs: md.mtime(),
                nanos: md.mtime_nsec() as u32,
            },
            ctime: Timestamp {
                secs: md.ctime(),
                nanos: md.ctime_nsec() as u32,
            },
            ino: md.ino(),
            dev: md.dev(),
            nlink: md.nlink(),
            rdev: md.rdev(),
            link_target,
        }
    }

    /// `lstat` a path (and read its link target when it is a symlink).
    pub fn read(path: &Path) -> io::Result<FileMeta> {
        let md = fs::symlink_metadata(path)?;
        let target = if md.file_type().is_symlink() {
            Some(fs::read_link(path)?)
        } else {
            None
        };
        Ok(FileMeta::from_std(&md, target))
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}

/// How to open a context.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// The Dockerfile's path; `<it>.dockerignore` beside it wins over the
    /// context's `.dockerignore`.
    pub dockerfile: Option<PathBuf>,
    /// A file kiln may use to remember content digests between builds.
    pub stat_cache: Option<PathBuf>,
}

/// One indexed path.
#[derive(Debug)]
pub struct IndexEntry {
    /// Relative to the context root; empty for the root itself.
    pub path: PathBuf,
    pub meta: FileMeta,
    /// One past the last index of this entry's subtree.
    subtree_end: usize,
    facts: OnceLock<FileFacts>,
}

/// Extended attributes as (name, value), sorted by name.
pub type Xattrs = Vec<(OsString, Vec<u8>)>;

/// What is read from a regular file's content and inode beyond `lstat`.
#[derive(Debug, Clone)]
struct FileFacts {
    digest: Digest,
    xattrs: Xattrs,
    /// When kiln read the file (ns since the epoch); `None` when the facts
    /// came from the stat cache.
    hashed_at_ns: Option<i64>,
}

/// The walked context: every path not excluded, sorted in component order,
/// with the root (empty path) first.
#[derive(Debug)]
pub struct Index {
    entries: Vec<IndexEntry>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, pos: usize) -> &IndexEntry {
        &self.entries[pos]
    }

    /// Position of a relative path (`""` is the root).
    pub fn position(&self, path: &Path) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.path.as_path().cmp(path))
            .ok()
    }

    pub fn get(&self, path: &Path) -> Option<&FileMeta> {
        self.position(path).map(|i| &self.entries[i].meta)
    }

    /// Positions of the direct children of the directory at `pos`, by name.
    pub fn children(&self, pos: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.entries[pos].subtree_end;
        let mut next = pos + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let current = next;
            next = self.entries[current].subtree_end;
            Some(current)
        })
    }

    /// Positions of everything below `pos` (excluding it), in order.
    pub fn descendants(&self, pos: usize) -> std::ops::Range<usize> {
        pos + 1..self.entries[pos].subtree_end
    }

    pub fn iter(&self) -> impl Iterator<Item = &IndexEntry> {
        self.entries.iter()
    }

    /// Resolves `path` (relative to the context root; a leading `/` is the
    /// root too) to an index position. Symlinks in parents — and in the final
    /// component when `follow_final` — are followed *within the context*:
    /// absolute targets start again at the context root and `..` stops there.
    /// `None` when something on the way is missing, ignored or not a directory.
    pub fn lookup(&self, path: &Path, follow_final: bool) -> Result<Option<usize>, Error> {
        use std::path::Component;
        fn push(todo: &mut Vec<std::ffi::OsString>, path: &Path) {
            let parts: Vec<_> = path
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_owned()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            todo.extend(parts.into_iter().rev());
        }
        let mut todo = Vec::new();
        push(&mut todo, path);
        let mut stack = vec![0usize];
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let parent = *stack.last().expect("root stays on the stack");
            if !self.entries[parent].meta.is_dir() {
                return Ok(None);
            }
            let Some(child) = self.position(&self.entries[parent].path.join(&name)) else {
                return Ok(None);
            };
            let meta = &self.entries[child].meta;
            if meta.kind == FileKind::Symlink && (!todo.is_empty() || follow_final) {
                links += 1;
                if links > 40 {
                    return Err(Error::SymlinkLoop {
                        path: path.to_owned(),
                    });
                }
                let target = meta.link_target.clone().unwrap_or_default();
                if target.has_root() {
                    stack.truncate(1);
                }
                push(&mut todo, &target);
                continue;
            }
            stack.push(child);
        }
        Ok(stack.last().copied())
    }
}

#[derive(Debug, Clone)]
struct CachedStat {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    ctime_ns: i128,
    digest: Digest,
    xattrs: Xattrs,
}

/// A build context directory with its ignore rules.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    ignore: PatternMatcher,
    ignore_file: Option<PathBuf>,
    stat_cache_path: Option<PathBuf>,
    index: Mutex<Option<Arc<Index>>>,
    /// Keyed by the relative path's bytes (hashing bytes is much cheaper
    /// than hashing a `Path` component by component).
    stat_cache: OnceLock<HashMap<Vec<u8>, CachedStat>>,
    hashed_fresh: AtomicBool,
}

impl BuildContext {
    /// Opens `root` and reads its ignore rules. Nothing is walked yet.
    pub fn open(root: impl Into<PathBuf>, options: ContextOptions) -> Result<BuildContext, Error> {
        let root = root.into();
        let md = fs::metadata(&root).map_err(io_err(&root))?;
        if !md.is_dir() {
            return Err(Error::NotADirectory { path: root });
        }
        let mut candidates = Vec::new();
        if let Some(dockerfile) = &options.dockerfile {
            let mut name = dockerfile.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(root.join(".dockerignore"));
        let mut ignore = PatternMatcher::default();
        let mut ignore_file = None;
        for candidate in candidates {
            match fs::read(&candidate) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    ignore = PatternMatcher::new(patterns::parse_dockerignore(&text)).map_err(
                        |source| Error::IgnoreFile {
                            path: candidate.clone(),
                            source,
                        },
                    )?;
                    ignore_file = Some(candidate);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(candidate)(e)),
            }
        }
        Ok(BuildContext {
            root,
            ignore,
            ignore_file,
            stat_cache_path: options.stat_cache,
            index: Mutex::new(None),
            stat_cache: OnceLock::new(),
            hashed_fresh: AtomicBool::new(false),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore rules in effect.
    pub fn ignore(&self) -> &PatternMatcher {
        &self.ignore
    }

    /// Which ignore file was read, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// The index, walking the context on first use.
    pub fn index(&self) -> Result<Arc<Index>, Error> {
        let mut slot = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = slot.as_ref() {
            return Ok(index.clone());
        }
        // The root itself may be reached through a symlink: describe its target.
        let root_meta =
            FileMeta::from_std(&fs::metadata(&self.root).map_err(io_err(&self.root))?, None);
        // Reading the stat cache overlaps with the (system-call bound) walk.
        let mut listings = std::thread::scope(|scope| {
            if self.stat_cache_path.is_some() {
                scope.spawn(|| self.stat_cache());
            }
            self.scan()
        })?;
        let mut entries = vec![IndexEntry {
            path: PathBuf::new(),
            meta: root_meta,
            subtree_end: 0,
            facts: OnceLock::new(),
        }];
        assemble(Path::new(""), &mut listings, &mut entries);
        entries[0].subtree_end = entries.len();
        let index = Arc::new(Index { entries });
        *slot = Some(index.clone());
        Ok(index)
    }

    /// Lists every directory that must be looked at, in parallel: a shared
    /// queue of directories, each worker reading one directory, `lstat`ing
    /// its entries, applying the ignore rules and queueing the directories to
    /// descend into. Returns the listing of each visited directory.
    fn scan(&self) -> Result<HashMap<PathBuf, Vec<Child>>, Error> {
        struct Queue {
            todo: Vec<(PathBuf, MatchInfo)>,
            /// Directories queued or being read.
            pending: usize,
            failed: Option<Error>,
        }
        let queue = Mutex::new(Queue {
            todo: vec![(PathBuf::new(), MatchInfo::default())],
            pending: 1,
            failed: None,
        });
        let wake = Condvar::new();
        let listings = Mutex::new(HashMap::new());
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4);
        let worker = || {
            loop {
                let (rel_dir, info) = {
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if q.failed.is_some() || q.pending == 0 {
                            wake.notify_all();
                            return;
                        }
                        if let Some(job) = q.todo.pop() {
                            break job;
                        }
                        q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let result = self.list_dir(&rel_dir, &info);
                let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                q.pending -= 1;
                match result {
                    Ok(children) => {
                        for child in children.iter().filter(|c| c.descend) {
                            q.todo.push((rel_dir.join(&child.name), child.info.clone()));
                            q.pending += 1;
                        }
                        listings
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(rel_dir, children);
                    }
                    Err(e) => {
                        q.failed.get_or_insert(e);
                    }
                }
                wake.notify_all();
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(worker);
            }
            worker();
        });
        let q = queue.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = q.failed {
            return Err(e);
        }
        Ok(listings.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// One directory's entries (sorted by name) with their ignore verdicts.
    fn list_dir(&self, rel_dir: &Path, dir_info: &MatchInfo) -> Result<Vec<Child>, Error> {
        let abs_dir = self.root.join(rel_dir);
        let mut children = Vec::new();
        for dirent in fs::read_dir(&abs_dir).map_err(io_err(&abs_dir))? {
            let dirent = dirent.map_err(io_err(&abs_dir))?;
            let name = dirent.file_name();
            let md = dirent.metadata().map_err(io_err(dirent.path()))?;
            let (excluded, info, descend) = if self.ignore.is_empty() {
                (false, MatchInfo::default(), md.is_dir())
            } else {
                let rel = rel_dir.join(&name);
                let text = rel.to_string_lossy();
                let (excluded, info) = self.ignore.matches_with_parent(&text, dir_info);
                let descend = md.is_dir() && (!excluded || self.ignore.must_descend(&text, &info));
                (excluded, info, descend)
            };
            if excluded && !descend {
                continue;
            }
            let link_target = if md.file_type().is_symlink() {
                let abs = abs_dir.join(&name);
                Some(fs::read_link(&abs).map_err(io_err(&abs))?)
            } else {
                None
            };
            children.push(Child {
                meta: FileMeta::from_std(&md, link_target),
                name,
                excluded,
                info,
                descend,
            });
        }
        children.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(children)
    }

    fn stat_cache(&self) -> &HashMap<Vec<u8>, CachedStat> {
        self.stat_cache.get_or_init(|| match &self.stat_cache_path {
            // An unreadable or stale cache is only a lost optimisation.
            Some(path) => load_stat_cache(path, &self.root).unwrap_or_default(),
            None => HashMap::new(),
        })
    }

    /// The sha256 of a regular file's content, by path relative to the root.
    pub fn digest(&self, rel: &Path) -> Result<Digest, Error> {
        let index = self.index()?;
        let pos = index.position(rel).ok_or_else(|| Error::Io {
            path: self.root.join(rel),
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
        self.digest_at(&index, pos)
    }

    /// The sha256 of the regular file at index position `pos`.
    pub fn digest_at(&self, index: &Index, pos: usize) -> Result<Digest, Error> {
        Ok(self.facts_at(index, pos)?.digest.clone())
    }

    /// The xattrs of the entry at `pos` (sorted by name). For regular files
    /// they are memoised and kept in the stat cache with the digest (an xattr
    /// change moves the ctime, so an unchanged stat means unchanged xattrs).
    pub fn xattrs_at(&self, index: &Index, pos: usize) -> Result<Xattrs, Error> {
        let entry = index.entry(pos);
        if entry.meta.kind == FileKind::File {
            return Ok(self.facts_at(index, pos)?.xattrs.clone());
        }
        let abs = self.root.join(&entry.path);
        crate::rootfs::xattr::list(&abs).map_err(io_err(abs))
    }

    fn facts_at<'i>(&self, index: &'i Index, pos: usize) -> Result<&'i FileFacts, Error> {
        let entry = index.entry(pos);
        if let Some(done) = entry.facts.get() {
            return Ok(done);
        }
        if entry.meta.kind != FileKind::File {
            return Err(Error::NotARegularFile {
                path: self.root.join(&entry.path),
            });
        }
        if let Some(cached) = self.stat_cache().get(entry.path.as_os_str().as_bytes())
            && cached.size == entry.meta.size
            && cached.mtime_ns == entry.meta.mtime.as_nanos()
            && cached.ino == entry.meta.ino
            && cached.ctime_ns == entry.meta.ctime.as_nanos()
        {
            let _ = entry.facts.set(FileFacts {
                digest: cached.digest.clone(),
                xattrs: cached.xattrs.clone(),
                hashed_at_ns: None,
            });
            return Ok(entry.facts.get().expect("just set"));
        }
        let abs = self.root.join(&entry.path);
        let hashed_at_ns = now_ns();
        let xattrs = crate::rootfs::xattr::list(&abs).map_err(io_err(&abs))?;
        let digest = hash_file(&abs)?;
        self.hashed_fresh.store(true, Ordering::Relaxed);
        let _ = entry.facts.set(FileFacts {
            digest,
            xattrs,
            hashed_at_ns: Some(hashed_at_ns),
        });
        Ok(entry.facts.get().expect("just set"))
    }

    /// Computes the digests of many files at once, spreading the reading over
    /// the available cores. Positions that are not regular files are skipped.
    pub fn digest_all(&self, index: &Index, positions: &[usize]) -> Result<(), Error> {
        let todo: Vec<usize> = positions
            .iter()
            .copied()
            .filter(|p| {
                let e = index.entry(*p);
                e.meta.kind == FileKind::File && e.facts.get().is_none()
            })
            .collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(todo.len() / 64 + 1);
        if threads <= 1 {
            for pos in todo {
                self.facts_at(index, pos)?;
            }
            return Ok(());
        }
        let chunk = todo.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || -> Result<(), Error> {
                        for pos in part {
                            self.facts_at(index, *pos)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    }

    /// Writes the stat cache back, if one was configured and anything was
    /// hashed. Files no longer in the context are dropped from it.
    pub fn save_stat_cache(&self) -> Result<(), Error> {
        let Some(path) = &self.stat_cache_path else {
            return Ok(());
        };
        if !self.hashed_fresh.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(index) = self.index.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(());
        };
        let old = self.stat_cache();
        let mut out = String::with_capacity(index.len() * 120);
        out.push_str(STAT_CACHE_HEADER);
        out.push(' ');
        out.push_str(&hex::encode(self.root.as_os_str().as_bytes()));
        out.push('\n');
        for entry in index.iter() {
            let meta = &entry.meta;
            if meta.kind != FileKind::File || entry.path.as_os_str().as_bytes().contains(&b'\n') {
                continue;
            }
            let (digest, xattrs) = match entry.facts.get() {
                Some(FileFacts {
                    hashed_at_ns: Some(at),
                    ..
                }) if meta.ctime.as_nanos() >= i128::from(*at - RACY_WINDOW_NS)
                    || meta.mtime.as_nanos() >= i128::from(*at - RACY_WINDOW_NS) =>
                {
                    continue;
                }
                Some(facts) => (&facts.digest, &facts.xattrs),
                None => match old.get(entry.path.as_os_str().as_bytes()) {
                    Some(c)
                        if c.size == meta.size
                            && c.mtime_ns == meta.mtime.as_nanos()
                            && c.ino == meta.ino
                            && c.ctime_ns == meta.ctime.as_nanos() =>
                    {
                        (&c.digest, &c.xattrs)
                    }
                    _ => continue,
                },
            };
            use std::fmt::Write as _;
            let _ = write!(
                out,
                "{} {} {} {} {} {} ",
                meta.size,
                meta.mtime.as_nanos(),
                meta.ino,
                meta.ctime.as_nanos(),
                digest.hex(),
                hex::encode(entry.path.as_os_str().as_bytes()),
            );
            if xattrs.is_empty() {
                out.push('-');
            }
            for (i, (name, value)) in xattrs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{}={}",
                    hex::encode(name.as_bytes()),
                    hex::encode(value)
                );
            }
            out.push('\n');
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
        tmp.write_all(out.as_bytes()).map_err(io_err(tmp.path()))?;
        tmp.persist(path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// One directory entry found by [`BuildContext::scan`].
#[derive(Debug)]
struct Child {
    name: OsString,
    meta: FileMeta,
    /// Matched by the ignore rules (kept only as a parent, if at all).
    excluded: bool,
    info: MatchInfo,
    /// A directory whose listing was taken.
    descend: bool,
}

/// Builds the depth-first, name-ordered index below `rel_dir` from the
/// listings; returns whether anything was included. Excluded directories
/// are kept only when something below them was included.
fn assemble(
    rel_dir: &Path,
    listings: &mut HashMap<PathBuf, Vec<Child>>,
    out: &mut Vec<IndexEntry>,
) -> bool {
    let Some(children) = listings.remove(rel_dir) else {
        return false;
    };
    let mut any = false;
    for child in children {
        let rel = rel_dir.join(&child.name);
        let pos = out.len();
        let descend = child.descend.then(|| rel.clone());
        out.push(IndexEntry {
            path: rel,
            meta: child.meta,
            subtree_end: pos + 1,
            facts: OnceLock::new(),
        });
        if let Some(rel) = descend {
            let below = assemble(&rel, listings, out);
            if child.excluded && !below {
                out.truncate(pos);
                continue;
            }
            out[pos].subtree_end = out.len();
        }
        any = true;
    }
    any
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The sha256 of a file's content, streamed.
pub fn hash_file(path: &Path) -> Result<Digest, Error> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path)(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

fn load_stat_cache(path: &Path, root: &Path) -> Option<HashMap<Vec<u8>, CachedStat>> {
    use std::os::unix::ffi::OsStringExt;
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.split_terminator('\n');
    let header = lines.next()?;
    let expected = format!(
        "{STAT_CACHE_HEADER} {}",
        hex::encode(root.as_os_str().as_bytes())
    );
    if header != expected {
        return None;
    }
    let mut map = HashMap::with_capacity(text.len() / 100);
    for line in lines {
        let mut fields = line.split(' ');
        let mut next = || fields.next();
        let size = next()?.parse().ok()?;
        let mtime_ns = next()?.parse().ok()?;
        let ino = next()?.parse().ok()?;
        let ctime_ns = next()?.parse().ok()?;
        let digest: Digest = format!("sha256:{}", next()?).parse().ok()?;
        let rel = hex::decode(next()?).ok()?;
        let mut xattrs = Vec::new();
        let field = next()?;
        if field != "-" {
            for pair in field.split(',') {
                let (name, value) = pair.split_once('=')?;
                xattrs.push((
                    OsString::from_vec(hex::decode(name).ok()?),
                    hex::decode(value).ok()?,
                ));
            }
        }
        map.insert(
            rel,
            CachedStat {
                size,
                mtime_ns,
                ino,
                ctime_ns,
                digest,
                xattrs,
            },
        );
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<BuildContext>();
        shareable::<Index>();
    }

    #[test]
    fn lookup_follows_symlinks_inside_the_context_only() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("real")).unwrap();
        fs::write(dir.path().join("real/f"), "f").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("rel")).unwrap();
        std::os::unix::fs::symlink("/../../real/f", dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("host")).unwrap();
        let ctx = BuildContext::open(dir.path(), ContextOptions::default()).unwrap();
        let index = ctx.index().unwrap();
        let f = index.position(Path::new("real/f")).unwrap();
        assert_eq!(index.lookup(Path::new("rel/f"), false).unwrap(), Some(f));
        assert_eq!(index.lookup(Path::new("/abs"), true).unwrap(), Some(f));
        assert_ne!(index.lookup(Path::new("abs"), false).unwrap(), Some(f));
        // Absolute targets resolve against the context root, never the host.
        assert_eq!(index.lookup(Path::new("host"), true).unwrap(), None);
    }

    #[test]
    fn children_follow_subtrees() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/c"), "c").unwrap();
        fs::write(dir.path().join("a/x"), "x").unwrap();
        fs::write(dir.path().join("a.txt"), "t").unwrap();
        let ctx = BuildContext::open(dir.path(), ContextOptions::default()).unwrap();
        let index = ctx.index().unwrap();
        let names: Vec<_> = index.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            names,
            ["", "a", "a/b", "a/b/c", "a/x", "a.txt"].map(PathBuf::from)
        );
        let a = index.position(Path::new("a")).unwrap();
        let kids: Vec<_> = index
            .children(a)
            .map(|p| index.entry(p).path.clone())
            .collect();
        assert_eq!(kids, ["a/b", "a/x"].map(PathBuf::from));
        let root_kids: Vec<_> = index
            .children(0)
            .map(|p| index.entry(p).path.clone())
            .collect();
        assert_eq!(root_kids, ["a", "a.txt"].map(PathBuf::from));
        assert_eq!(ctx.digest(Path::new("a/x")).unwrap(), Digest::of(b"x"));
    }
}
