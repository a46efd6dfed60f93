//! The build cache: what a step produced, by the step's cache key.
//!
//! A step's key is the digest of its parent's key, the instruction after
//! variable expansion, the build args it can see, and for COPY/ADD the digest
//! of the selected source files. A record lives at `<store>/cache/<key-hex>.json`
//! and names the layer the step wrote (if any) and when the step first ran, so
//! a fully cached rebuild reproduces the same history and image digest.
//! Records are written atomically and survive restarts; the layers they name
//! are ordinary store blobs.
//!
//! Besides the local records, a [`Cache`] can hold records imported from a
//! remote cache ([`remote`]: `--cache-from`). Those are consulted when no local
//! record with its blob exists; their layer blob is fetched — and verified
//! against its digest — only when a step actually hits, and the record is then
//! written locally. A blob that cannot be fetched or does not match its digest
//! makes the lookup a miss (with a warning event): the step runs instead, and
//! nothing unverified enters the store.
//!
//! Every hit and every [`Cache::put`] is noted, with the stage it happened in
//! ([`in_stage`]), so that `--cache-to` can export exactly the records a build
//! used ([`Cache::used`]). Specs for both directions are parsed by [`spec`].

pub mod remote;
pub mod spec;

pub use remote::{BlobSource, ImportedRecords};
pub use spec::{CacheCompression, CacheExport, CacheImport, CacheLocation, CacheMode};

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::progress::Reporter;
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
    #[error("cache spec {spec:?}: unknown cache type {kind:?} (kiln supports registry and local)")]
    UnknownCacheType { spec: String, kind: String },
    #[error("cache spec {spec:?}: unknown option {key:?} for type={kind}")]
    UnknownCacheKey {
        spec: String,
        kind: String,
        key: String,
    },
    #[error("cache spec {spec:?}: {key}= is missing")]
    MissingCacheKey { spec: String, key: &'static str },
    #[error("cache spec {spec:?}: {key}={value:?} is not valid (expected {expected})")]
    InvalidCacheValue {
        spec: String,
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("cache {reference}: {operation}")]
    Registry {
        reference: String,
        operation: &'static str,
        #[source]
        source: Box<kiln_registry::Error>,
    },
    #[error("cache {reference}: {what}")]
    Store {
        reference: String,
        what: String,
        #[source]
        source: crate::store::Error,
    },
    #[error("cache {location}: {source}")]
    Layout {
        location: PathBuf,
        #[source]
        source: kiln_registry::StoreError,
    },
    #[error("cache {reference}: {what} is not valid JSON")]
    Json {
        reference: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cache {reference} is not a kiln cache (artifact type {found:?})")]
    NotACache { reference: String, found: String },
    #[error("cache {reference}: {problem}")]
    BadManifest {
        reference: String,
        problem: &'static str,
    },
    #[error("cache {reference}: cache mount {id:?}: {problem}")]
    BadMount {
        reference: String,
        id: String,
        problem: &'static str,
    },
    #[error("cache mount {path}")]
    MountArchive {
        path: PathBuf,
        #[source]
        source: crate::layer::Error,
    },
    #[error("starting the registry client: {source}")]
    Runtime {
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

thread_local! {
    /// The stage the current thread is building, for [`Cache::used`].
    static CURRENT_STAGE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `f` with cache hits and puts on this thread attributed to `stage` (the
/// stage's Dockerfile index); the solver builds each stage on its own thread.
pub fn in_stage<T>(stage: usize, f: impl FnOnce() -> T) -> T {
    let previous = CURRENT_STAGE.replace(Some(stage));
    let out = f();
    CURRENT_STAGE.set(previous);
    out
}

/// A record this build hit or wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedRecord {
    /// The stage it was used in ([`in_stage`]), when known.
    pub stage: Option<usize>,
    pub key: Digest,
    pub record: Record,
}

/// The cache inside a store.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    imported: Option<Arc<remote::Imported>>,
    used: Arc<Mutex<Vec<UsedRecord>>>,
}

impl Cache {
    pub fn new(store: &Store) -> Cache {
        Cache {
            dir: store.root().join("cache"),
            imported: None,
            used: Arc::default(),
        }
    }

    /// This cache, also answering from `records` (see the [module docs](self));
    /// warnings about blobs that could not be fetched go to `reporter`.
    pub fn with_imported(self, records: ImportedRecords, reporter: &Reporter) -> Cache {
        Cache {
            imported: (!records.is_empty())
                .then(|| Arc::new(remote::Imported::new(records, reporter.clone()))),
            ..self
        }
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    fn read(&self, key: &Digest) -> Option<Record> {
        let bytes = fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The record for `key`, if any and if its layer blob is present — locally,
    /// or fetched now from the remote cache the record was imported from.
    pub fn get(&self, store: &Store, key: &Digest) -> Option<Record> {
        let found = match self.read(key) {
            Some(record)
                if record
                    .layer
                    .as_ref()
                    .is_none_or(|layer| store.has_blob(&layer.digest)) =>
            {
                Some(record)
            }
            _ => {
                let record = self.imported.as_ref()?.get(store, key)?;
                // Written locally so the next build hits without the remote; losing
                // this write only costs that.
                let _ = self.write(key, &record);
                Some(record)
            }
        };
        if let Some(record) = &found {
            self.note(key, record);
        }
        found
    }

    /// Records what a step produced (and notes it as used by this build).
    pub fn put(&self, key: &Digest, record: &Record) -> Result<(), Error> {
        self.write(key, record)?;
        self.note(key, record);
        Ok(())
    }

    /// The records this build hit or wrote, in the order it did so.
    pub fn used(&self) -> Vec<UsedRecord> {
        self.used.lock().expect("cache journal lock").clone()
    }

    fn note(&self, key: &Digest, record: &Record) {
        self.used
            .lock()
            .expect("cache journal lock")
            .push(UsedRecord {
                stage: CURRENT_STAGE.get(),
                key: key.clone(),
                record: record.clone(),
            });
    }

    fn write(&self, key: &Digest, record: &Record) -> Result<(), Error> {
        let bytes = serde_json::to_vec(record).expect("cache record serialises");
        write_atomically(&self.dir, &self.path(key), &bytes)
    }

    fn source_digest_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("sources").join(key.hex())
    }

    /// A remembered digest of what a `COPY --from` selects in an immutable
    /// rootfs (`key` names the layers' chain ID and the selection), so that a
    /// cached rebuild does not walk and hash that tree again.
    pub fn source_digest(&self, key: &Digest) -> Option<Digest> {
        fs::read_to_string(self.source_digest_path(key))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Remembers [`source_digest`](Self::source_digest) for `key`.
    pub fn put_source_digest(&self, key: &Digest, digest: &Digest) -> Result<(), Error> {
        let path = self.source_digest_path(key);
        let dir = path.parent().expect("under the cache dir");
        write_atomically(dir, &path, digest.to_string().as_bytes())
    }
}

/// Writes `bytes` to `path` (in `dir`) through a temporary file and a rename,
/// so readers see the whole old or the whole new content.
fn write_atomically(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<(), Error> {
    let io = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(dir))?;
    tmp.persist(path).map_err(|e| Error::Io {
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
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
