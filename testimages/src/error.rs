//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while making images or running the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A program could not be started (usually: its Debian package is missing).
    #[error("cannot run `{program}` (is its Debian package installed?): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// A program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    /// A JSON file of an image layout could not be read or written.
    #[error("JSON of {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// An OCI layout has no manifest with the asked-for reference name.
    #[error("OCI layout {} has no image named {name:?}", layout.display())]
    NoSuchImage { layout: PathBuf, name: String },

    /// An OCI layout's index or manifest lacks a field this crate needs.
    #[error("OCI layout {}: {field} missing or malformed in {}", layout.display(), blob)]
    MalformedLayout {
        layout: PathBuf,
        blob: String,
        field: &'static str,
    },

    /// The file tree holds something that cannot go into a layer.
    #[error("{}: unsupported file type in an image tree", path.display())]
    UnsupportedFileType { path: PathBuf },

    /// `/bin/busybox` is not the static binary from Debian's `busybox-static`.
    #[error("/bin/busybox must come from Debian's busybox-static package, dpkg says: {owner}")]
    BusyboxNotStatic { owner: String },

    /// Making this image needs root (debootstrap, chroot, mounts).
    #[error("making the {image} image needs root (or a cache made by root at {})", cache.display())]
    NeedsRoot { image: &'static str, cache: PathBuf },

    /// The host architecture has no OCI name known here.
    #[error("unsupported host architecture {arch}")]
    UnsupportedArchitecture { arch: &'static str },

    /// The registry process exited before it answered.
    #[error("docker-registry exited ({status}) before answering on {url}; log: {log_tail}")]
    RegistryExited {
        url: String,
        status: String,
        log_tail: String,
    },

    /// The registry did not answer `GET /v2/` in time.
    #[error("docker-registry did not answer GET {url}/v2/ within {waited:?}; log: {log_tail}")]
    RegistryNotReady {
        url: String,
        waited: Duration,
        log_tail: String,
    },

    /// An HTTP request made by the harness failed below the HTTP level.
    #[error("HTTP request to {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// A PEM file made by `openssl` did not hold the expected block.
    #[error("{}: no PEM block {label:?}", path.display())]
    Pem { path: PathBuf, label: &'static str },

    /// The token signing key was rejected by `ring`.
    #[error("token signing key {}: rejected by ring: {reason}", path.display())]
    SigningKey { path: PathBuf, reason: String },

    /// skopeo reported a digest that is not `sha256:<64 hex>`.
    #[error("{}: not a sha256 digest: {content:?}", path.display())]
    BadDigest { path: PathBuf, content: String },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
