//! The crate's error type. Every variant names what was being fetched or sent (URL,
//! reference, digest, registry) so a message alone tells the user what failed.

use std::path::PathBuf;

use crate::auth::CredentialError;
use crate::digest::{Digest, UnsupportedAlgorithm};
use crate::platform::PlatformError;
use crate::reference::ReferenceError;
use crate::store::StoreError;

/// Errors from registry operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference string was invalid.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A platform string was invalid.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// Credentials could not be read or written.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// A digest algorithm this crate cannot verify.
    #[error(transparent)]
    UnsupportedAlgorithm(#[from] UnsupportedAlgorithm),
    /// A CA certificate or client certificate could not be loaded.
    #[error("registry {registry}: cannot load certificate {path}: {reason}")]
    Certificate {
        /// The registry the certificate is for.
        registry: String,
        /// The certificate file (or `<inline PEM>`).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("registry {registry}: cannot set up the HTTP client: {source}")]
    ClientSetup {
        /// The registry.
        registry: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The request could not be completed (connection refused, reset, timed out, TLS),
    /// after the allowed retries.
    #[error("{method} {url}: {detail} (gave up after {attempts} attempt(s))")]
    Transport {
        /// HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The error chain, flattened.
        detail: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: registry answered HTTP {status}{detail}")]
    Status {
        /// HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The registry's error codes and messages, prefixed with `: ` (or empty).
        detail: String,
    },
    /// The manifest or blob does not exist.
    #[error("{what} not found ({method} {url} answered HTTP 404){detail}")]
    NotFound {
        /// What was looked for (`manifest ghcr.io/o/i:1`, `blob sha256:…`).
        what: String,
        /// HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The registry's error codes and messages, prefixed with `: ` (or empty).
        detail: String,
    },
    /// The registry refused the credentials (or their absence).
    #[error("registry {registry} refused access to {url} (HTTP {status}){detail}; {hint}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The URL requested.
        url: String,
        /// 401 or 403.
        status: u16,
        /// The registry's error codes and messages, prefixed with `: ` (or empty).
        detail: String,
        /// What the user can do.
        hint: String,
    },
    /// The token endpoint named in a `WWW-Authenticate` challenge failed.
    #[error("cannot get a token from {realm} (service {service:?}, scopes {scopes:?}): {reason}")]
    TokenRequest {
        /// The challenge's realm (token endpoint URL).
        realm: String,
        /// The challenge's service.
        service: String,
        /// The scopes asked for.
        scopes: Vec<String>,
        /// What went wrong.
        reason: String,
    },
    /// A `WWW-Authenticate` challenge could not be used.
    #[error("registry {registry} sent an unusable authentication challenge {header:?}: {reason}")]
    BadChallenge {
        /// The registry.
        registry: String,
        /// The header value.
        header: String,
        /// What is wrong.
        reason: String,
    },
    /// A manifest's bytes do not hash to the digest it was pinned to or announced with.
    #[error(
        "manifest {reference} does not match its digest: expected {expected}, got {actual}; refusing it"
    )]
    ManifestDigestMismatch {
        /// The reference fetched.
        reference: String,
        /// The pinned (or announced) digest.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A manifest was larger than the limit.
    #[error("manifest {reference} is larger than {limit} bytes; refusing it")]
    ManifestTooLarge {
        /// The reference fetched.
        reference: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The manifest's media type is not one this client handles.
    #[error("manifest {reference} has unsupported media type {media_type:?}{hint}")]
    UnsupportedManifest {
        /// The reference fetched.
        reference: String,
        /// Its media type.
        media_type: String,
        /// Extra advice (e.g. for Docker schema 1).
        hint: String,
    },
    /// The manifest's JSON could not be read.
    #[error("manifest {reference} is not a valid {kind}: {source}")]
    InvalidManifest {
        /// The reference fetched.
        reference: String,
        /// What it was parsed as.
        kind: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
    /// An index had no manifest for the wanted platform.
    #[error("{reference} has no image for platform {wanted} (available: {available})")]
    NoMatchingPlatform {
        /// The reference fetched.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms offered, comma-separated.
        available: String,
    },
    /// A blob failed verification or could not be stored or read.
    #[error("blob {digest} ({repository}): {source}")]
    Blob {
        /// The repository it belongs to.
        repository: String,
        /// The blob.
        digest: Digest,
        /// The store's error (digest or size mismatch, I/O).
        source: Box<StoreError>,
    },
    /// The connection closed before the whole blob arrived, after the allowed retries.
    #[error(
        "blob {digest} from {url}: received {received} of {expected} bytes before the connection failed ({detail}); gave up after {attempts} attempt(s)"
    )]
    Truncated {
        /// The blob.
        digest: Digest,
        /// The URL.
        url: String,
        /// Bytes received in the last attempt.
        received: u64,
        /// The blob's size.
        expected: u64,
        /// The last error.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The registry sent a blob larger than its descriptor says.
    #[error(
        "blob {digest} from {url}: the registry sent more than the {expected} bytes its descriptor declares; refusing it"
    )]
    BlobTooLarge {
        /// The blob.
        digest: Digest,
        /// The URL.
        url: String,
        /// The declared size.
        expected: u64,
    },
    /// An upload `Location` (or a `Link`) was missing or not a URL.
    #[error("{method} {url}: the registry returned an invalid {header} header {value:?}")]
    InvalidHeader {
        /// HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The header name.
        header: &'static str,
        /// Its value.
        value: String,
    },
    /// The registry stored a pushed manifest under another digest than its bytes have.
    #[error(
        "pushed manifest {reference}: the registry reports digest {reported}, but its bytes hash to {expected}"
    )]
    PushedDigestMismatch {
        /// Where it was pushed.
        reference: String,
        /// Our digest.
        expected: Digest,
        /// The `Docker-Content-Digest` the registry answered.
        reported: String,
    },
    /// A manifest to push references a blob that is missing from the source.
    #[error("cannot push {reference}: {what} {digest} is missing from the source store")]
    MissingSource {
        /// Where it was being pushed.
        reference: String,
        /// What is missing (`blob`, `manifest`).
        what: &'static str,
        /// Its digest.
        digest: Digest,
    },
}

impl Error {
    /// Wraps a store error with the blob and repository it concerns.
    pub(crate) fn blob(repository: &str, digest: &Digest, source: StoreError) -> Error {
        Error::Blob {
            repository: repository.to_owned(),
            digest: digest.clone(),
            source: Box::new(source),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
