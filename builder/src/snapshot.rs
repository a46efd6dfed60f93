//! Snapshots: each layer's files, unpacked once, in a directory keyed by the
//! layer's chain ID, ready to be stacked as overlayfs lower directories.
//!
//! ```text
//! <store>/snapshots/<chain-id-hex>/   one layer's files, overlay format
//!                                     (whiteouts are 0/0 char devices, opaque
//!                                     directories carry the opaque xattr)
//! ```
//!
//! A `RUN` step's overlay upper dir is already in this format, so after the step
//! it is *moved* into place as the new layer's snapshot: built layers are never
//! unpacked. Base layers are unpacked on first use only (a fully cached rebuild
//! unpacks nothing). Creation goes through a temp dir and a rename, so a crash
//! or a concurrent kiln leaves either a whole snapshot or none.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::store::Store;

/// Errors of the snapshot directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The snapshots of one store.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    scratch: PathBuf,
}

impl Snapshots {
    pub fn new(store: &Store) -> Result<Snapshots, Error> {
        let dir = store.root().join("snapshots");
        let scratch = store.root().join("tmp");
        for d in [&dir, &scratch] {
            fs::create_dir_all(d).map_err(|source| Error::Io {
                path: d.clone(),
                source,
            })?;
        }
        Ok(Snapshots { dir, scratch })
    }

    /// Where the snapshot of `chain_id` lives (present or not).
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).is_dir()
    }

    /// A fresh, empty scratch directory on the store's filesystem (so that a
    /// rename into `snapshots/` is atomic). Removed on drop unless committed.
    pub fn scratch_dir(&self, prefix: &str) -> Result<tempfile::TempDir, Error> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.scratch)
            .map_err(|source| Error::Io {
                path: self.scratch.clone(),
                source,
            })
    }

    /// Makes `dir` the snapshot of `chain_id`. If another process got there
    /// first, `dir` is discarded: both hold the same layer.
    pub fn commit(&self, chain_id: &Digest, dir: &Path) -> Result<PathBuf, Error> {
        let target = self.path(chain_id);
        match fs::rename(dir, &target) {
            Ok(()) => Ok(target),
            Err(_) if target.is_dir() => {
                remove_tree(dir);
                Ok(target)
            }
            Err(source) => Err(Error::Io {
                path: target,
                source,
            }),
        }
    }

    /// Ensures the snapshot of `chain_id` exists, filling a scratch dir with
    /// `fill` when it does not.
    pub fn ensure<E>(
        &self,
        chain_id: &Digest,
        fill: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, E>
    where
        E: From<Error>,
    {
        if self.exists(chain_id) {
            return Ok(self.path(chain_id));
        }
        let scratch = self.scratch_dir("unpack-")?;
        let content = scratch.path().join("layer");
        fill(&content)?;
        let path = self.commit(chain_id, &content)?;
        Ok(path)
    }
}

/// Removes a tree that may contain read-only directories.
pub fn remove_tree(path: &Path) {
    if fs::remove_dir_all(path).is_ok() {
        return;
    }
    // Read-only directories (mode 0555 from a layer) block removal of their
    // children: open them up first.
    fn open_up(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.is_dir() {
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
                if let Ok(entries) = fs::read_dir(path) {
                    for entry in entries.flatten() {
                        open_up(&entry.path());
                    }
                }
            }
        }
    }
    open_up(path);
    let _ = fs::remove_dir_all(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_fills_once_and_commit_tolerates_a_race() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let snaps = Snapshots::new(&store).unwrap();
        let id = Digest::of(b"chain");
        let mut calls = 0;
        for _ in 0..2 {
            let path = snaps
                .ensure::<Error>(&id, |d| {
                    calls += 1;
                    fs::create_dir_all(d).unwrap();
                    fs::write(d.join("f"), b"x").unwrap();
                    Ok(())
                })
                .unwrap();
            assert_eq!(fs::read(path.join("f")).unwrap(), b"x");
        }
        assert_eq!(calls, 1);
        // A second writer that lost the race has its copy discarded.
        let other = snaps.scratch_dir("race-").unwrap();
        fs::write(other.path().join("g"), b"y").unwrap();
        let kept = snaps.commit(&id, other.path()).unwrap();
        assert!(kept.join("f").exists());
        assert!(!other.path().exists());
    }
}
