//! The build cache: what a step produced, by the step's cache key.
//!
//! A step's key is the digest of its parent's key, the instruction after
//! variable expansion, the build args it can see, and for COPY/ADD the digest
//! of the selected source files. A record lives at `<store>/cache/<key-hex>.json`
//! and names the layer the step wrote (if any) and when the step first ran, so
//! a fully cached rebuild reproduces the same history and image digest.
//! Records are written atomically and survive restarts; the layers they name
//! are ordinary store blobs.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::store::Store;

/// Errors of the cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A layer a step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

/// What the cache remembers of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `None` for a step that changed no file (no layer is written).
    pub layer: Option<CachedLayer>,
    /// RFC 3339 time the step first ran; reused so cached rebuilds are identical.
    pub created: String,
}

/// Builds a cache key from its parts, in order, each length-prefixed so that
/// no two different part lists hash alike.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    hasher: Hasher,
}

impl KeyBuilder {
    pub fn new(kind: &str) -> KeyBuilder {
        let mut builder = KeyBuilder::default();
        builder.part("kiln-cache-v1");
        builder.part(kind);
        builder
    }

    pub fn part(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value);
        self
    }

    pub fn finish(self) -> Digest {
        self.hasher.finish()
    }
}

/// The cache inside a store.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(store: &Store) -> Cache {
        Cache {
            dir: store.root().join("cache"),
        }
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The record for `key`, if any and if its layer blob is still present.
    pub fn get(&self, store: &Store, key: &Digest) -> Option<Record> {
        let bytes = fs::read(self.path(key)).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        match &record.layer {
            Some(layer) if !store.has_blob(&layer.digest) => None,
            _ => Some(record),
        }
    }

    pub fn put(&self, key: &Digest, record: &Record) -> Result<(), Error> {
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| Error::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io(&self.dir))?;
        let bytes = serde_json::to_vec(record).expect("cache record serialises");
        tmp.write_all(&bytes).map_err(io(&self.dir))?;
        let path = self.path(key);
        tmp.persist(&path).map_err(|e| Error::Io {
            path,
            source: e.error,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous() {
        let mut a = KeyBuilder::new("exec");
        a.part("ab").part("c");
        let mut b = KeyBuilder::new("exec");
        b.part("a").part("bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn records_round_trip_and_need_their_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = Cache::new(&store);
        let key = KeyBuilder::new("exec").finish();
        let blob = store.write_blob(b"layer").unwrap();
        let record = Record {
            layer: Some(CachedLayer {
                digest: blob.clone(),
                diff_id: blob,
                size: 5,
                media_type: "m".into(),
            }),
            created: "2024-01-01T00:00:00Z".into(),
        };
        cache.put(&key, &record).unwrap();
        assert_eq!(cache.get(&store, &key), Some(record.clone()));
        let missing = Record {
            layer: Some(CachedLayer {
                digest: Digest::of(b"gone"),
                ..record.layer.clone().unwrap()
            }),
            ..record
        };
        let other = KeyBuilder::new("copy").finish();
        cache.put(&other, &missing).unwrap();
        assert_eq!(cache.get(&store, &other), None);
    }
}
