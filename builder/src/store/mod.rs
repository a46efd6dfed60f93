//! The content store: a directory that is itself a valid OCI image layout.

use std::path::PathBuf;

use crate::digest::Digest;

/// Errors from the content store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A named image in the store.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub name: String,
    pub digest: Digest,
}

/// The content store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn open_default() -> Result<Store, Error> {
        Ok(Store {
            root: PathBuf::from("."),
        })
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    pub fn images(&self) -> Result<Vec<ImageEntry>, Error> {
        Ok(Vec::new())
    }
}
