//! `COPY` and `ADD`: selecting sources, computing their cache digest, and
//! writing them into a fresh layer directory.
//!
//! # Contract
//!
//! [`plan`] resolves an instruction against its source (the build context or
//! a stage's rootfs) and reads everything the cache key needs; [`cache_digest`]
//! hashes that; [`execute`] writes the result into an *empty layer dir* that
//! the layer writer turns into a tar. Nothing is mounted.
//!
//! The rules are BuildKit's (`dockerfile2llb` + fsutil's copier):
//!
//! - Sources are relative to the source root (`/x`, `../x` and `x` are the
//!   same); wildcards are Go's `filepath.Match` per path component, matched
//!   after `.dockerignore`. A literal source that does not exist fails with
//!   `"/x": not found`; a wildcard that matches nothing contributes nothing,
//!   and when no source contributes anything the instruction fails with
//!   `COPY failed: no source files were specified`.
//! - A source named directly is followed if it is a symlink (the copy is
//!   named after the link); symlinks inside copied directories stay symlinks.
//!   Hardlinks within the copied set stay hardlinks; xattrs are kept.
//! - A directory source copies its *contents*. With more than one source
//!   (after wildcard expansion, heredocs included) the destination must end
//!   with `/`. The destination is relative to WORKDIR; one ending in `/` (or
//!   `.`), or an existing directory, receives `dest/<basename>` for files.
//! - Destination paths are resolved through the destination rootfs, symlinks
//!   followed within the root (so `COPY x /lib/` lands in `/usr/lib/` on a
//!   merged-usr base). Parent directories that exist below are mirrored into
//!   the layer with their metadata (as overlay copy-up would); missing ones
//!   are created 0755 and owned by the `--chown` user (root without it), as
//!   BuildKit's `MkdirAll` does. A directory source whose destination does
//!   not exist and does not end in `/` gives the new directory its own
//!   metadata; an existing destination directory keeps its metadata.
//! - Files keep their mode and mtime. Context files are owned by 0:0 (the
//!   context transfer resets ownership); files from a stage keep their
//!   owner. `--chown` replaces the owner of everything copied; `--chmod`
//!   ([`Chmod`]) applies to copied files and directories (not to created
//!   parents, not to archive contents).
//! - `--exclude` patterns match paths relative to each source directory and
//!   the wildcard-expanded source paths themselves. `--parents` copies the
//!   source path under the destination, from the last `/./` pivot if any.
//! - `ADD` extracts local tar archives (plain, gzip, bzip2, xz, zstd —
//!   detected by content) into the destination directory, refusing entries
//!   and hardlinks that climb out of it and relative symlinks that point out
//!   of it; entry parents resolve within the root. Archive ownership is kept
//!   unless `--chown`. The archive's own root entry (`./`) does not change the
//!   destination directory's metadata. `ADD <url>` downloads (mode 0600, mtime
//!   from `Last-Modified`), verified against `--checksum` when given (the
//!   download is then deferred to [`execute`], so a cache hit needs no
//!   network). Git sources are refused as not supported yet.
//! - `COPY <<EOF /path` writes the heredoc body as a 0644 file named after the
//!   heredoc (under `dest/` when dest is a directory).
//!
//! The cache digest covers, per copied object in order: destination-relative
//! path, type, mode after `--chmod`, owner after `--chown` (the `--chown` text
//! when it names users, since names resolve in the destination), link target,
//! device number, hardlink target, xattrs and content sha256 — never mtimes,
//! so touching a file does not bust the cache — plus the destination and the
//! flags.
//!
//! # Errors
//!
//! See [`Error`]: missing sources, multi-source destinations without `/`,
//! unknown users and groups, unsafe archive entries, download and checksum
//! failures, each naming the source, path, URL or entry concerned.

pub mod archive;
pub mod chmod;
mod execute;
pub mod remote;
mod tree;
pub mod users;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

pub use chmod::{Chmod, ChmodError};
pub use execute::{CopyStats, execute, execute_linked, make_dir_all};
pub use users::{ChownSpec, UserError};

use crate::context::patterns::{self, PatternError, PatternMatcher};
use crate::context::{self, BuildContext, FileKind, FileMeta, Timestamp};
use crate::digest::Digest;
use crate::rootfs::{self, RootfsView};
use remote::{DownloadError, Downloaded};
use tree::{Node, Tree};

/// Errors from planning or executing a copy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Context(#[from] context::Error),
    #[error(transparent)]
    Rootfs(#[from] rootfs::Error),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("{instruction} failed: \"{path}\": not found")]
    NotFound {
        instruction: &'static str,
        path: String,
    },
    #[error("{instruction} failed: no source files were specified")]
    NoSourceFiles { instruction: &'static str },
    #[error(
        "When using {instruction} with more than one source file, the destination must be a directory and end with a /"
    )]
    DestinationNotDirectory { instruction: &'static str },
    #[error("source can't be a URL for COPY: {url}")]
    UrlInCopy { url: String },
    #[error("checksum can't be specified for non-HTTP(S) sources: {source_path}")]
    ChecksumWithoutUrl { source_path: String },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("cannot copy to non-directory: {path}")]
    NotADirectory { path: PathBuf },
    #[error("cannot overwrite directory {path} with a non-directory")]
    WouldReplaceDirectory { path: PathBuf },
    #[error("{archive}: refusing entry {entry:?}: {reason}")]
    UnsafeArchiveEntry {
        archive: String,
        entry: String,
        reason: &'static str,
    },
    #[error("{archive}: {source}")]
    Archive {
        archive: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Where a copy reads from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The build context (after `.dockerignore`).
    Context(&'a BuildContext),
    /// Another stage or image (`COPY --from`).
    Rootfs(&'a RootfsView),
}

/// `COPY` or `ADD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyKind {
    #[default]
    Copy,
    Add,
}

impl CopyKind {
    fn name(self) -> &'static str {
        match self {
            CopyKind::Copy => "COPY",
            CopyKind::Add => "ADD",
        }
    }
}

/// An inline source: `COPY <<NAME dest` with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
}

/// One `COPY`/`ADD` instruction as the frontend hands it over (variables
/// already expanded).
#[derive(Debug, Clone, Default)]
pub struct CopyOp {
    pub kind: CopyKind,
    /// File, directory, wildcard or (ADD) URL sources.
    pub sources: Vec<String>,
    /// Heredoc sources, copied after `sources`.
    pub heredocs: Vec<Heredoc>,
    pub dest: String,
    /// The stage's WORKDIR (`/` when empty).
    pub workdir: String,
    /// `--chown` as written.
    pub chown: Option<String>,
    pub chmod: Option<Chmod>,
    pub exclude: Vec<String>,
    pub parents: bool,
    /// `--link`; it only enters the cache digest here, the caller picks
    /// [`execute_linked`].
    pub link: bool,
    /// `ADD --checksum`.
    pub checksum: Option<Digest>,
    /// `ADD --keep-git-dir` (refused: git sources are not supported yet).
    pub keep_git_dir: bool,
}

/// A resolved instruction, ready to hash and execute.
#[derive(Debug)]
pub struct CopyPlan {
    kind: CopyKind,
    dest: PathBuf,
    dest_is_dir: bool,
    chown: Option<ChownSpec>,
    chmod: Option<Chmod>,
    parents: bool,
    link: bool,
    exclude: Vec<String>,
    units: Vec<Unit>,
    /// Downloads live here until the plan is dropped.
    scratch: Option<tempfile::TempDir>,
}

#[derive(Debug)]
enum Unit {
    /// A file or directory (with its subtree) from the source tree.
    Tree {
        /// The source as named in messages (`/dir/file`).
        name: String,
        /// Destination name when a single file lands in a directory.
        basename: OsString,
        /// Root first (relative path ""), then the selected subtree.
        items: Vec<Item>,
    },
    Archive {
        name: String,
        host: PathBuf,
        digest: Digest,
    },
    Remote {
        url: String,
        file_name: String,
        host: PathBuf,
        checksum: Option<Digest>,
        /// `None` until downloaded (deferred when a checksum is known).
        downloaded: Option<Downloaded>,
    },
    Inline {
        name: String,
        body: String,
        mtime: Timestamp,
    },
}

#[derive(Debug)]
struct Item {
    rel: PathBuf,
    host: PathBuf,
    /// Context index position, for memoised digests.
    pos: Option<usize>,
    meta: FileMeta,
    digest: Option<Digest>,
    xattrs: Vec<(OsString, Vec<u8>)>,
    /// (unit, item) of an earlier item that is the same inode.
    hardlink_to: Option<(usize, usize)>,
}

impl CopyPlan {
    /// A plan that copies nothing into `dest` (for [`make_dir_all`]).
    fn empty(dest: &Path) -> CopyPlan {
        CopyPlan {
            kind: CopyKind::Copy,
            dest: dest.to_owned(),
            dest_is_dir: true,
            chown: None,
            chmod: None,
            parents: false,
            link: false,
            exclude: Vec::new(),
            units: Vec::new(),
            scratch: None,
        }
    }

    /// `--chown`, parsed (names not yet resolved).
    pub fn chown(&self) -> Option<&ChownSpec> {
        self.chown.as_ref()
    }

    /// The absolute destination (after WORKDIR), without a trailing `/`.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Whether the destination was written as a directory (`/` or `.` at the end).
    pub fn dest_is_dir(&self) -> bool {
        self.dest_is_dir
    }

    /// How many objects (files, directories, links) the plan copies from
    /// trees, plus one per archive, download and heredoc.
    pub fn len(&self) -> usize {
        self.units
            .iter()
            .map(|u| match u {
                Unit::Tree { items, .. } => items.len(),
                _ => 1,
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

fn is_git(source: &str) -> bool {
    if source.starts_with("git@") || source.starts_with("git://") || source.starts_with("ssh://") {
        return true;
    }
    if is_url(source) {
        let without_fragment = source.split('#').next().unwrap_or(source);
        return without_fragment.trim_end_matches('/').ends_with(".git");
    }
    false
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        secs: d.as_secs() as i64,
        nanos: d.subsec_nanos(),
    }
}

/// Resolves `op` against `source`: expands wildcards, applies `.dockerignore`
/// (already in the context index), `--exclude` and `--parents`, reads the
/// metadata, xattrs and content digests of everything selected, and (without
/// `--checksum`) downloads URLs.
pub fn plan(source: Source<'_>, op: &CopyOp) -> Result<CopyPlan, Error> {
    let instruction = op.kind.name();
    // Only file sources need the tree (and, for the context, its walk).
    let needs_tree = op.sources.iter().any(|s| !is_url(s) && !is_git(s));
    let tree = match source {
        Source::Context(ctx) if needs_tree => Some(Tree::Context {
            ctx,
            index: ctx.index()?,
        }),
        Source::Rootfs(view) if needs_tree => Some(Tree::Rootfs(view)),
        _ => None,
    };
    if op.keep_git_dir {
        return Err(Error::Unsupported {
            what: "ADD --keep-git-dir (git sources)".to_owned(),
        });
    }
    let dest_is_dir = op.dest.is_empty() || op.dest == "." || op.dest.ends_with('/');
    let workdir = if op.workdir.is_empty() {
        "/"
    } else {
        &op.workdir
    };
    let joined = if op.dest.starts_with('/') {
        op.dest.clone()
    } else {
        format!("{workdir}/{}", op.dest)
    };
    let dest = PathBuf::from(patterns::clean(&format!("/{joined}")));
    let chown = op
        .chown
        .as_deref()
        .map(str::parse::<ChownSpec>)
        .transpose()?;
    let exclude = PatternMatcher::new(&op.exclude)?;
    let mut plan = CopyPlan {
        kind: op.kind,
        dest,
        dest_is_dir,
        chown,
        chmod: op.chmod.clone(),
        parents: op.parents,
        link: op.link,
        exclude: op.exclude.clone(),
        units: Vec::new(),
        scratch: None,
    };

    for src in &op.sources {
        if is_git(src) {
            return Err(Error::Unsupported {
                what: format!("{instruction} from a git repository ({src})"),
            });
        }
        if is_url(src) {
            if op.kind == CopyKind::Copy {
                return Err(Error::UrlInCopy { url: src.clone() });
            }
            plan_remote(&mut plan, src, op.checksum.clone())?;
            continue;
        }
        if op.checksum.is_some() {
            return Err(Error::ChecksumWithoutUrl {
                source_path: src.clone(),
            });
        }
        let tree = tree.as_ref().expect("file sources have a tree");
        if op.parents {
            plan_parents(&mut plan, tree, src, &exclude, instruction)?;
        } else {
            plan_source(&mut plan, tree, src, &exclude, op.kind)?;
        }
    }
    for heredoc in &op.heredocs {
        plan.units.push(Unit::Inline {
            name: heredoc.name.clone(),
            body: heredoc.body.clone(),
            mtime: now(),
        });
    }
    if plan.units.is_empty() {
        return Err(Error::NoSourceFiles { instruction });
    }
    if plan.units.len() > 1 && !plan.dest_is_dir {
        return Err(Error::DestinationNotDirectory { instruction });
    }
    link_hardlinks(&mut plan.units);
    if let Some(tree) = &tree {
        read_digests(tree, &mut plan.units)?;
    }
    Ok(plan)
}

fn plan_remote(plan: &mut CopyPlan, url: &str, checksum: Option<Digest>) -> Result<(), Error> {
    if plan.scratch.is_none() {
        plan.scratch = Some(
            tempfile::Builder::new()
                .prefix("kiln-add-")
                .tempdir()
                .map_err(io_err(std::env::temp_dir()))?,
        );
    }
    let scratch = plan.scratch.as_ref().expect("just created").path();
    let host = scratch.join(format!("download-{}", plan.units.len()));
    let downloaded = match &checksum {
        Some(_) => None,
        None => Some(remote::download(url, &host)?),
    };
    plan.units.push(Unit::Remote {
        url: url.to_owned(),
        file_name: remote::file_name(url),
        host,
        checksum,
        downloaded,
    });
    Ok(())
}

/// A plain source: a path or wildcard; each match becomes one unit.
fn plan_source(
    plan: &mut CopyPlan,
    tree: &Tree<'_>,
    src: &str,
    exclude: &PatternMatcher,
    kind: CopyKind,
) -> Result<(), Error> {
    let instruction = kind.name();
    let cleaned = patterns::clean(&format!("/{src}"));
    let wildcard = patterns::has_wildcards(&cleaned);
    let matches = if wildcard {
        tree.expand(&cleaned)?
    } else {
        tree.lookup(Path::new(&cleaned), false)?
            .into_iter()
            .collect()
    };
    if matches.is_empty() && !wildcard {
        return Err(Error::NotFound {
            instruction,
            path: cleaned,
        });
    }
    for named in matches {
        let rel_text = named
            .path
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned();
        if !exclude.is_empty() && !rel_text.is_empty() && exclude.matches(&rel_text) {
            continue;
        }
        let basename = named
            .path
            .file_name()
            .map(|n| n.to_owned())
            .unwrap_or_default();
        let name = named.path.to_string_lossy().into_owned();
        // The source itself is followed when it is a symlink (BuildKit's
        // FollowSymlinks for the top-level path).
        let root = if named.meta.kind == FileKind::Symlink {
            tree.lookup(&named.path, true)?
                .ok_or_else(|| Error::NotFound {
                    instruction,
                    path: name.clone(),
                })?
        } else {
            named
        };
        if kind == CopyKind::Add
            && root.meta.kind == FileKind::File
            && archive::detect(&root.host)
                .map_err(io_err(&root.host))?
                .is_some()
        {
            plan.units.push(Unit::Archive {
                name,
                host: root.host.clone(),
                digest: match (tree, root.position()) {
                    (Tree::Context { ctx, index }, Some(pos)) => ctx.digest_at(index, pos)?,
                    _ => context::hash_file(&root.host)?,
                },
            });
            continue;
        }
        let mut items = vec![item_from(PathBuf::new(), root.clone())];
        if root.meta.is_dir() {
            let mut found = Vec::new();
            tree.walk_filtered(&root, None, exclude, &mut found)?;
            items.extend(found.into_iter().map(|(rel, node)| item_from(rel, node)));
        }
        plan.units.push(Unit::Tree {
            name,
            basename,
            items,
        });
    }
    Ok(())
}

/// `--parents`: the part after the last `/./` pivot (or the whole path) is
/// kept under the destination.
fn plan_parents(
    plan: &mut CopyPlan,
    tree: &Tree<'_>,
    src: &str,
    exclude: &PatternMatcher,
    instruction: &'static str,
) -> Result<(), Error> {
    let (pivot, pattern) = match src.split_once("/./") {
        Some((pivot, pattern)) => (pivot, pattern),
        None => ("/", src),
    };
    let pivot = patterns::clean(&format!("/{pivot}"));
    let pattern = patterns::clean(&format!("/{pattern}"))
        .trim_start_matches('/')
        .to_owned();
    let root = tree
        .lookup(Path::new(&pivot), true)?
        .filter(|n| n.meta.is_dir())
        .ok_or_else(|| Error::NotFound {
            instruction,
            path: pivot.clone(),
        })?;
    let include = PatternMatcher::new([pattern.as_str()])?;
    let mut found = Vec::new();
    let any = tree.walk_filtered(&root, Some(&include), exclude, &mut found)?;
    if !any {
        if patterns::has_wildcards(&pattern) {
            return Ok(());
        }
        return Err(Error::NotFound {
            instruction,
            path: patterns::clean(&format!("{pivot}/{pattern}")),
        });
    }
    let mut items = vec![item_from(PathBuf::new(), root.clone())];
    items.extend(found.into_iter().map(|(rel, node)| item_from(rel, node)));
    plan.units.push(Unit::Tree {
        name: src.to_owned(),
        basename: OsString::new(),
        items,
    });
    Ok(())
}

fn item_from(rel: PathBuf, node: Node) -> Item {
    Item {
        rel,
        pos: node.position(),
        host: node.host,
        meta: node.meta,
        digest: None,
        xattrs: Vec::new(),
        hardlink_to: None,
    }
}

/// Marks later occurrences of an inode (non-directories with several links)
/// as hardlinks to the first one copied.
fn link_hardlinks(units: &mut [Unit]) {
    let mut seen = std::collections::HashMap::new();
    for (u, unit) in units.iter_mut().enumerate() {
        let Unit::Tree { items, .. } = unit else {
            continue;
        };
        for (i, item) in items.iter_mut().enumerate() {
            if item.meta.is_dir() || item.meta.nlink < 2 {
                continue;
            }
            let key = (item.meta.dev, item.meta.ino);
            match seen.get(&key) {
                Some(first) => item.hardlink_to = Some(*first),
                None => {
                    seen.insert(key, (u, i));
                }
            }
        }
    }
}

/// Fills in content digests (in parallel) and xattrs of every tree item.
fn read_digests(tree: &Tree<'_>, units: &mut [Unit]) -> Result<(), Error> {
    let wanted: Vec<&mut Item> = units
        .iter_mut()
        .filter_map(|u| match u {
            Unit::Tree { items, .. } => Some(items.iter_mut()),
            _ => None,
        })
        .flatten()
        .collect();
    match tree {
        Tree::Context { ctx, index } => {
            // Files first, in parallel (digest and xattrs together, from the
            // stat cache when it still applies).
            let positions: Vec<usize> = wanted
                .iter()
                .filter(|i| i.meta.kind == FileKind::File)
                .filter_map(|i| i.pos)
                .collect();
            ctx.digest_all(index, &positions)?;
            for item in wanted {
                let pos = item.pos.expect("context items carry positions");
                item.xattrs = ctx.xattrs_at(index, pos)?;
                if item.meta.kind == FileKind::File && item.hardlink_to.is_none() {
                    item.digest = Some(ctx.digest_at(index, pos)?);
                }
            }
        }
        Tree::Rootfs(_) => {
            let mut files = Vec::new();
            for item in wanted {
                let mut xattrs = rootfs::xattr::list(&item.host).map_err(io_err(&item.host))?;
                xattrs.retain(|(name, _)| !rootfs::xattr::is_overlay_internal(name));
                item.xattrs = xattrs;
                if item.meta.kind == FileKind::File && item.hardlink_to.is_none() {
                    files.push(item);
                }
            }
            let hosts: Vec<PathBuf> = files.iter().map(|i| i.host.clone()).collect();
            let digests = hash_parallel(&hosts)?;
            for (item, digest) in files.into_iter().zip(digests) {
                item.digest = Some(digest);
            }
        }
    }
    Ok(())
}

fn hash_parallel(paths: &[PathBuf]) -> Result<Vec<Digest>, Error> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(paths.len() / 64 + 1);
    if threads <= 1 {
        return paths
            .iter()
            .map(|p| context::hash_file(p).map_err(Error::from))
            .collect();
    }
    let chunk = paths.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|p| context::hash_file(p).map_err(Error::from))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(paths.len());
        for worker in workers {
            out.extend(
                worker
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))?,
            );
        }
        Ok(out)
    })
}

/// Length-prefixed fields, so no two different plans hash alike.
fn put(h: &mut Vec<u8>, bytes: &[u8]) {
    h.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    h.extend_from_slice(bytes);
}

fn put_u(h: &mut Vec<u8>, n: u64) {
    h.extend_from_slice(&n.to_le_bytes());
}

/// The digest of what the plan copies: see the module docs for what enters it.
pub fn cache_digest(plan: &CopyPlan) -> Digest {
    use std::os::unix::ffi::OsStrExt;
    // Fields are gathered in one buffer and hashed once: many tiny hasher
    // updates cost more than the hashing itself.
    let mut h = Vec::with_capacity(4096 + plan.len() * 128);
    put(&mut h, b"kiln-copy-v1");
    put(&mut h, plan.kind.name().as_bytes());
    put(&mut h, plan.dest.as_os_str().as_bytes());
    put_u(&mut h, u64::from(plan.dest_is_dir));
    put_u(&mut h, u64::from(plan.parents));
    put_u(&mut h, u64::from(plan.link));
    let chown_numeric = plan.chown.as_ref().and_then(ChownSpec::numeric);
    match (&plan.chown, chown_numeric) {
        (None, _) => put(&mut h, b"chown:none"),
        (Some(_), Some((uid, gid))) => put(&mut h, format!("chown:{uid}:{gid}").as_bytes()),
        (Some(spec), None) => put(&mut h, format!("chown-names:{spec}").as_bytes()),
    }
    put(
        &mut h,
        plan.chmod.as_ref().map_or("", |c| c.as_str()).as_bytes(),
    );
    put_u(&mut h, plan.exclude.len() as u64);
    for pattern in &plan.exclude {
        put(&mut h, pattern.as_bytes());
    }
    for unit in &plan.units {
        match unit {
            Unit::Tree {
                name,
                basename,
                items,
            } => {
                put(&mut h, b"tree");
                put(&mut h, name.as_bytes());
                put(&mut h, basename.as_bytes());
                put_u(&mut h, items.len() as u64);
                for item in items {
                    let meta = &item.meta;
                    put(&mut h, item.rel.as_os_str().as_bytes());
                    put_u(&mut h, meta.kind as u64);
                    let mode = match (&plan.chmod, meta.kind) {
                        (Some(c), kind) if kind != FileKind::Symlink => {
                            c.apply(meta.mode, meta.is_dir())
                        }
                        _ => meta.mode,
                    };
                    put_u(&mut h, u64::from(mode));
                    if plan.chown.is_none() {
                        put_u(&mut h, u64::from(meta.uid));
                        put_u(&mut h, u64::from(meta.gid));
                    }
                    put(
                        &mut h,
                        meta.link_target
                            .as_deref()
                            .map_or(&[][..], |t| t.as_os_str().as_bytes()),
                    );
                    if matches!(meta.kind, FileKind::CharDevice | FileKind::BlockDevice) {
                        put_u(&mut h, meta.rdev);
                    }
                    match item.hardlink_to {
                        Some((u, i)) => {
                            put(&mut h, b"hardlink");
                            put_u(&mut h, u as u64);
                            put_u(&mut h, i as u64);
                        }
                        None => put(&mut h, b"own"),
                    }
                    put_u(&mut h, item.xattrs.len() as u64);
                    for (name, value) in &item.xattrs {
                        put(&mut h, name.as_bytes());
                        put(&mut h, value);
                    }
                    put(
                        &mut h,
                        item.digest.as_ref().map_or("", |d| d.hex()).as_bytes(),
                    );
                }
            }
            Unit::Archive { name, digest, .. } => {
                put(&mut h, b"archive");
                put(&mut h, name.as_bytes());
                put(&mut h, digest.hex().as_bytes());
            }
            Unit::Remote {
                url,
                file_name,
                checksum,
                downloaded,
                ..
            } => {
                put(&mut h, b"remote");
                put(&mut h, url.as_bytes());
                put(&mut h, file_name.as_bytes());
                let content = checksum
                    .as_ref()
                    .or(downloaded.as_ref().map(|d| &d.digest))
                    .map_or("", |d| d.hex());
                put(&mut h, content.as_bytes());
            }
            Unit::Inline { name, body, .. } => {
                put(&mut h, b"heredoc");
                put(&mut h, name.as_bytes());
                put(&mut h, body.as_bytes());
            }
        }
    }
    Digest::of(&h)
}
