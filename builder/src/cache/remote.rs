//! Records imported from a remote cache (`--cache-from`), whose layer blobs are
//! fetched on first use.
//!
//! Contract: an [`ImportedRecords`] maps cache keys to records, each tied to the
//! [`BlobSource`] it came from (the first source to offer a key wins, as sources
//! are given in `--cache-from` order). When the solver hits such a record and its
//! layer blob is not in the store, the source copies the blob in, verified against
//! the record's digest and size; on any failure the hit becomes a miss, a warning
//! event says why, and the key is not tried again in this build.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use super::{CachedLayer, Error, Record};
use crate::digest::Digest;
use crate::progress::Reporter;
use crate::store::Store;

/// Where the layer blobs of imported records come from.
pub trait BlobSource: Send + Sync + fmt::Debug {
    /// The cache's name for messages (its reference or directory).
    fn name(&self) -> &str;

    /// Copies the blob `layer` names into `store`, verified against its digest and
    /// size; nothing enters the store when they do not match.
    fn fetch(&self, layer: &CachedLayer, store: &Store) -> Result<(), Error>;
}

/// Records from one or more remote caches.
#[derive(Debug, Default)]
pub struct ImportedRecords {
    records: HashMap<Digest, (Record, usize)>,
    sources: Vec<Arc<dyn BlobSource>>,
}

impl ImportedRecords {
    pub fn new() -> ImportedRecords {
        ImportedRecords::default()
    }

    /// Adds the records of one source; returns how many keys were new.
    pub fn add(
        &mut self,
        source: Arc<dyn BlobSource>,
        records: impl IntoIterator<Item = (Digest, Record)>,
    ) -> usize {
        let index = self.sources.len();
        self.sources.push(source);
        let mut added = 0;
        for (key, record) in records {
            self.records.entry(key).or_insert_with(|| {
                added += 1;
                (record, index)
            });
        }
        added
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record for `key` and the source of its blob.
    pub fn get(&self, key: &Digest) -> Option<(&Record, &Arc<dyn BlobSource>)> {
        self.records
            .get(key)
            .map(|(record, index)| (record, &self.sources[*index]))
    }
}

/// Imported records as the cache consults them during one build.
#[derive(Debug)]
pub(super) struct Imported {
    records: ImportedRecords,
    reporter: Reporter,
    refused: Mutex<HashSet<Digest>>,
}

impl Imported {
    pub(super) fn new(records: ImportedRecords, reporter: Reporter) -> Imported {
        Imported {
            records,
            reporter,
            refused: Mutex::default(),
        }
    }

    /// The record for `key` with its blob now in `store`, or `None` (a miss).
    pub(super) fn get(&self, store: &Store, key: &Digest) -> Option<Record> {
        let (record, source) = self.records.get(key)?;
        let Some(layer) = &record.layer else {
            return Some(record.clone());
        };
        if store.has_blob(&layer.digest) {
            return Some(record.clone());
        }
        if self.refused.lock().expect("refused lock").contains(key) {
            return None;
        }
        match source.fetch(layer, store) {
            Ok(()) if store.has_blob(&layer.digest) => Some(record.clone()),
            outcome => {
                self.refused
                    .lock()
                    .expect("refused lock")
                    .insert(key.clone());
                let why = match outcome {
                    // The error names the cache again; keep what follows.
                    Err(Error::Registry {
                        operation, source, ..
                    }) => {
                        format!("{operation}: {}", error_chain(&*source))
                    }
                    Err(error) => error_chain(&error),
                    Ok(()) => "the blob did not arrive".to_owned(),
                };
                self.reporter.warn(format!(
                    "cache {}: layer {} not used: {why}; the step runs instead",
                    source.name(),
                    layer.digest
                ));
                None
            }
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}
