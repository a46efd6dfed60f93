//! Errors of `kiln-sbom`.
//!
//! Two kinds of failure are kept apart:
//!
//! - [`Error`] stops the operation: the layer stream or directory cannot be read,
//!   the SBOM cannot be written, the image digest is malformed. An
//!   [`Inventory`](crate::Inventory) that returns an `Error` from `apply_layer`
//!   is left exactly as it was before the call.
//! - [`CatalogError`] is about one file a cataloger wanted to read (a malformed
//!   `METADATA`, a truncated Go build-info block, an unreadable `package.json`).
//!   It does not stop cataloging: it is recorded as a [`Diagnostic`] with the file's
//!   path, and the file contributes no packages.

use std::io;
use std::path::PathBuf;

/// A failure that stops cataloging or writing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory of a tree or layer directory could not be listed.
    #[error("listing directory {path}: {source}")]
    ReadDir {
        /// Host path of the directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// A directory entry's metadata or link target could not be read.
    #[error("reading metadata of {path}: {source}")]
    Metadata {
        /// Host path of the entry.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The layer tar stream is malformed or could not be read.
    #[error("reading layer tar stream (after entry {after:?}): {source}")]
    TarStream {
        /// Path of the last entry read successfully, if any.
        after: Option<String>,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The SBOM document could not be serialised or written.
    #[error("writing the CycloneDX document: {source}")]
    WriteBom {
        /// The underlying serialisation or I/O error.
        source: serde_json::Error,
    },
    /// A kept [`LayerDelta`](crate::LayerDelta) could not be read back.
    #[error("reading a kept layer delta: {reason}")]
    ReadDelta {
        /// What is wrong (malformed JSON, another format).
        reason: String,
    },
    /// A digest given by the caller is not `sha256:` followed by 64 lowercase hex digits.
    #[error("{what} digest {digest:?} is not sha256:<64 lowercase hex digits>")]
    InvalidDigest {
        /// Which digest (image, base image `REF`, …).
        what: String,
        /// The digest as given.
        digest: String,
    },
}

/// Why one file a cataloger read yielded no packages.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The file is larger than the cataloger accepts.
    #[error("larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The JSON document (package.json, lock file, cargo-auditable data) is malformed.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A required field is missing from a metadata record.
    #[error("record starting at line {line}: missing field {field}")]
    MissingField {
        /// The field that is missing.
        field: &'static str,
        /// Line (1-based) where the record starts.
        line: usize,
    },
    /// The ELF headers are inconsistent.
    #[error("malformed ELF file: {reason}")]
    Elf {
        /// What is wrong.
        reason: &'static str,
    },
    /// The Go build information block is malformed or in an unsupported format.
    #[error("Go build info: {reason}")]
    GoBuildInfo {
        /// What is wrong.
        reason: &'static str,
    },
    /// The cargo-auditable `.dep-v0` section could not be decompressed.
    #[error("cargo-auditable data: {reason}")]
    CargoAuditable {
        /// What is wrong.
        reason: &'static str,
    },
}

/// A non-fatal problem with one file, kept by the [`Inventory`](crate::Inventory).
#[derive(Debug)]
pub struct Diagnostic {
    /// Index of the layer (in application order) that contained the file.
    pub layer: usize,
    /// Path of the file inside the image, starting with `/`.
    pub path: String,
    /// What went wrong.
    pub error: CatalogError,
}
