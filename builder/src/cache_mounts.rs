//! Persistent directories for `RUN --mount=type=cache`, kept in the content store.
//!
//! # Layout (the contract cache export/import relies on)
//!
//! ```text
//! <store root>/cache-mounts/<hex sha256 of the cache id>/
//!     data/        the directory mounted at the step's target
//!     meta.json    {"id": "…", "created": "…", "last_used": "…"} (RFC 3339, UTC)
//!     lock         flock(2) target for the sharing modes
//!     private/<n>/ extra instances for `sharing=private` (never exported)
//! ```
//!
//! The cache id defaults to the mount's target (the frontend applies that default).
//! `data/` is created atomically (built under a temporary name, then renamed), so a
//! concurrent build never sees a half-seeded cache.
//!
//! # Sharing
//!
//! - `shared`: any number of steps use `data/` at once (a shared lock).
//! - `locked`: one step at a time: an exclusive lock, waited for; it also waits for
//!   `shared` users to finish.
//! - `private`: `data/` when nobody else uses it, otherwise a fresh instance under
//!   `private/<n>/` that the next `private` user may reuse.
//!
//! A lease holds its lock until dropped.
//!
//! # Errors
//!
//! [`Error`] names the path that could not be created, locked, read or written.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::digest::Digest;
use crate::store::Store;

/// The subdirectory of an entry that is mounted.
pub const DATA_DIR: &str = "data";
/// The entry's metadata file.
pub const META_FILE: &str = "meta.json";

/// Errors of cache mount bookkeeping.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cache mount {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache mount {id}: seeding it failed: {reason}")]
    Seed { id: String, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The entry directory of cache `id`: `<store root>/cache-mounts/<hex sha256 of id>`.
/// The mounted directory is its [`DATA_DIR`], the metadata its [`META_FILE`].
pub fn cache_mount_dir(store: &Store, id: &str) -> PathBuf {
    store
        .root()
        .join("cache-mounts")
        .join(Digest::of(id.as_bytes()).hex())
}

/// `meta.json` of an entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheMeta {
    pub id: String,
    pub created: String,
    pub last_used: String,
}

/// How concurrent steps share one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// Ownership and mode given to a cache directory when it is first created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewDir {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A cache directory in use by one step; the lock is released on drop.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    _lock: File,
}

impl Lease {
    /// The directory to mount.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn lock_file(path: &Path) -> Result<File, Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

fn flock(file: &File, path: &Path, operation: FlockOperation) -> Result<bool, Error> {
    loop {
        match rustix::fs::flock(file, operation) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => {
                return Err(Error::Io {
                    path: path.to_owned(),
                    source: errno.into(),
                });
            }
        }
    }
}

/// Creates `dir` (when missing) with `new`'s metadata, filled by `seed` first.
fn ensure_dir(
    dir: &Path,
    new: NewDir,
    seed: &mut dyn FnMut(&Path) -> Result<(), String>,
    id: &str,
) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().expect("cache dirs have a parent");
    let staging = tempfile::Builder::new()
        .prefix(".new-")
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    seed(staging.path()).map_err(|reason| Error::Seed {
        id: id.to_owned(),
        reason,
    })?;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(new.mode))
        .map_err(io_err(staging.path()))?;
    std::os::unix::fs::chown(staging.path(), Some(new.uid), Some(new.gid))
        .map_err(io_err(staging.path()))?;
    let staged = staging.keep();
    if let Err(error) = std::fs::rename(&staged, dir) {
        crate::snapshot::remove_tree(&staged);
        // Another build created it first: theirs wins.
        if !dir.is_dir() {
            return Err(Error::Io {
                path: dir.to_owned(),
                source: error,
            });
        }
    }
    Ok(())
}

fn write_meta(entry: &Path, id: &str, now: &str) -> Result<(), Error> {
    let path = entry.join(META_FILE);
    let created = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CacheMeta>(&bytes).ok())
        .map(|meta| meta.created)
        .unwrap_or_else(|| now.to_owned());
    let meta = CacheMeta {
        id: id.to_owned(),
        created,
        last_used: now.to_owned(),
    };
    let staged = tempfile::NamedTempFile::new_in(entry).map_err(io_err(entry))?;
    std::fs::write(
        staged.path(),
        serde_json::to_vec(&meta).expect("meta serialises"),
    )
    .map_err(io_err(staged.path()))?;
    staged
        .persist(&path)
        .map_err(|e| Error::Io {
            path: path.clone(),
            source: e.error,
        })
        .map(drop)
}

/// Opens (creating on first use) the cache `id` for one step.
///
/// On creation the directory gets `new`'s mode and owner, after `seed` filled it
/// (`from=`/`source=`; a no-op otherwise). `now` (RFC 3339) updates `meta.json`.
pub fn open(
    store: &Store,
    id: &str,
    sharing: Sharing,
    new: NewDir,
    now: &str,
    seed: &mut dyn FnMut(&Path) -> Result<(), String>,
) -> Result<Lease, Error> {
    let entry = cache_mount_dir(store, id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&entry)
        .map_err(io_err(&entry))?;
    let lock_path = entry.join("lock");
    let lock = lock_file(&lock_path)?;
    let data = entry.join(DATA_DIR);
    let lease = match sharing {
        Sharing::Shared => {
            flock(&lock, &lock_path, FlockOperation::LockShared)?;
            Lease {
                path: data,
                _lock: lock,
            }
        }
        Sharing::Locked => {
            flock(&lock, &lock_path, FlockOperation::LockExclusive)?;
            Lease {
                path: data,
                _lock: lock,
            }
        }
        Sharing::Private => {
            if flock(&lock, &lock_path, FlockOperation::NonBlockingLockExclusive)? {
                Lease {
                    path: data,
                    _lock: lock,
                }
            } else {
                drop(lock);
                let mut n = 0u32;
                loop {
                    let instance = entry.join("private").join(n.to_string());
                    std::fs::create_dir_all(&instance).map_err(io_err(&instance))?;
                    let path = instance.join("lock");
                    let lock = lock_file(&path)?;
                    if flock(&lock, &path, FlockOperation::NonBlockingLockExclusive)? {
                        // A private instance starts empty (BuildKit: a new mount).
                        let data = instance.join(DATA_DIR);
                        ensure_dir(&data, new, &mut |_| Ok(()), id)?;
                        return Ok(Lease {
                            path: data,
                            _lock: lock,
                        });
                    }
                    n += 1;
                }
            }
        }
    };
    ensure_dir(&lease.path, new, seed, id)?;
    write_meta(&entry, id, now)?;
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_dir() -> NewDir {
        NewDir {
            mode: 0o755,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        }
    }

    #[test]
    fn entry_is_named_by_the_ids_sha256_and_keeps_meta() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = cache_mount_dir(&store, "/root/.cache");
        assert_eq!(
            entry,
            dir.path()
                .join("cache-mounts")
                .join(Digest::of(b"/root/.cache").hex())
        );
        let mut seeded = 0;
        let lease = open(
            &store,
            "/root/.cache",
            Sharing::Shared,
            new_dir(),
            "2024-01-01T00:00:00Z",
            &mut |dir| {
                seeded += 1;
                std::fs::write(dir.join("seed"), b"x").map_err(|e| e.to_string())
            },
        )
        .unwrap();
        assert_eq!(lease.path(), entry.join("data"));
        assert!(entry.join("data/seed").is_file());
        drop(lease);
        let _again = open(
            &store,
            "/root/.cache",
            Sharing::Shared,
            new_dir(),
            "2024-01-02T00:00:00Z",
            &mut |_| panic!("seeded twice"),
        )
        .unwrap();
        assert_eq!(seeded, 1);
        let meta: CacheMeta =
            serde_json::from_slice(&std::fs::read(entry.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta.id, "/root/.cache");
        assert_eq!(meta.created, "2024-01-01T00:00:00Z");
        assert_eq!(meta.last_used, "2024-01-02T00:00:00Z");
    }

    #[test]
    fn private_gives_a_fresh_dir_while_the_shared_one_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = "2024-01-01T00:00:00Z";
        let first = open(&store, "c", Sharing::Private, new_dir(), now, &mut |_| {
            Ok(())
        })
        .unwrap();
        let second = open(&store, "c", Sharing::Private, new_dir(), now, &mut |_| {
            Ok(())
        })
        .unwrap();
        assert_ne!(first.path(), second.path());
        assert!(
            second
                .path()
                .starts_with(cache_mount_dir(&store, "c").join("private"))
        );
        drop(first);
        let third = open(&store, "c", Sharing::Private, new_dir(), now, &mut |_| {
            Ok(())
        })
        .unwrap();
        assert_eq!(third.path(), cache_mount_dir(&store, "c").join("data"));
    }
}
