//! Layers: deterministic tar writing and safe, whiteout-aware unpacking.
//!
//! A layer is a tar stream of the files one build step added, changed or deleted.
//! This module turns a directory into such a stream and back:
//!
//! - [`write_layer`] walks an overlayfs *upper dir* (what a `RUN` changed) or a plain
//!   directory of new files (`COPY`) and writes a deterministic tar: entries in
//!   depth-first order with each directory's children sorted by name bytes (the order
//!   of Go's `filepath.Walk`, which Docker and BuildKit use; parents always precede
//!   their children), numeric uid/gid only, PAX records for long names, large ids and
//!   xattrs, hardlinks kept, and overlay whiteouts / opaque directories converted to
//!   `.wh.<name>` / `.wh..wh..opq` entries. With a [`SourceDateEpoch`] every newer
//!   mtime is clamped to it, so two builds of the same inputs give the same bytes.
//! - The tar is hashed (diffID), compressed and hashed again (blob digest) in one
//!   streaming pass: tar production and the diffID on the calling thread, compression
//!   and the blob digest on a second thread, connected by a bounded channel of
//!   buffers. Nothing is held in memory beyond a few buffers. The default compression
//!   is gzip at [`DEFAULT_GZIP_LEVEL`] compressed on every core in a form whose bytes
//!   do not depend on the core count ([`Compression::ParallelGzip`]); single-stream
//!   gzip, zstd and plain tar are offered too.
//! - [`write_diff_layer`] is the fallback when overlayfs cannot be mounted: it compares
//!   a base tree with a full copy of it after the step ([`copy_tree`] makes the copy)
//!   and writes the layer the overlay path would have written.
//! - [`unpack_layer`] / [`apply_layer`] extract a gzip, zstd or plain layer (detected by
//!   magic) safely: no path may leave the target root (`..` is refused, symlinks met
//!   on the way are resolved inside the root with `openat2(RESOLVE_IN_ROOT)`), whiteouts
//!   are either applied ([`ApplyMode::Flatten`]) or recorded as overlay whiteouts for a
//!   per-layer lower dir ([`ApplyMode::OverlayLowerDir`]), and the diffID is verified.
//!
//! Notes for the callers:
//! - executor: mount with `redirect_dir=off,metacopy=off` (and `index=off`); redirects
//!   and metacopy-only files in an upper dir are not layer content and are not
//!   interpreted here. Unmount (or at least stop the step) before writing the layer.
//!   Mount points the executor created in the upper dir (`etc/resolv.conf`, ...) go in
//!   [`WriteOptions::exclude`]. Rootless overlay (`userxattr`) marks opaque dirs with
//!   `user.overlay.opaque`: both namespaces are read; unpack lower dirs for it with
//!   [`OverlayXattrNamespace::User`].
//! - store: a per-layer dir is unpacked as `.<name>.partial-*` beside its final path and
//!   renamed in; a process killed mid-unpack can leave such a sibling behind, which is
//!   safe to delete.
//! - a per-layer lower dir holds only that layer's entries, so an entry whose parent is
//!   a symlink from an *earlier* layer (not a Docker-written layer, which always names
//!   real paths) lands under a real directory. Where that matters, apply the layer in
//!   [`ApplyMode::Flatten`] onto the mounted overlay instead (as containerd does):
//!   symlinks then resolve through the lower layers and deletions become whiteouts.
//!
//! Every operation returns an [`Error`] naming the path or entry it failed on; nothing
//! is printed.

mod apply;
mod compress;
mod diff;
mod fsutil;
mod pgzip;
mod tarfmt;
mod write;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::Digest;

pub use apply::{
    ApplyMode, ApplyOptions, ApplyReport, ApplyWarning, OverlayXattrNamespace, apply_layer,
    unpack_layer,
};
pub use compress::DetectedCompression;
pub use diff::{CopyReport, DiffOptions, FsTimestamp, copy_tree, write_diff_layer, write_diff_tar};
pub use write::{TarStats, WriteOptions, write_layer, write_tar};

/// The diffID of a layer with no entries: the sha256 of the 1024 zero bytes that end
/// every tar. Docker and BuildKit know it too; such a layer is skipped, not written.
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// The gzip level kiln writes layers with unless told otherwise.
///
/// Measured with the `layer` bench (zlib-rs, one compression thread, 2 cores shared
/// with other jobs; ratios are compressed/uncompressed):
///
/// | tree | level 1 | level 2 | level 6 |
/// | --- | --- | --- | --- |
/// | `/usr/bin` (462 MB, binaries) | 60–100 MB/s, 0.481 | 38–66 MB/s, 0.399 | 24–39 MB/s, 0.372 |
/// | `/usr/lib/python3.11` (51 MB, text) | 72 MB/s, 0.390 | 51 MB/s, 0.320 | 28 MB/s, 0.291 |
///
/// Level 1 is zlib-ng's "quick" strategy: fastest, but its layers are 30 % larger than
/// level 6 and everyone who pulls the image pays for that. Level 2 is 1.6–1.8× as fast
/// as level 6 (and faster than GNU `gzip -1`) for layers only 7–10 % larger, so it is
/// the default; users who want both speed and size should pick zstd. The level is part
/// of the layer's identity (changing it changes every blob digest), so it is pinned
/// here rather than taken from the backend's default.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;

/// The zstd level used unless told otherwise (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How a layer's tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain tar: the blob digest equals the diffID.
    Uncompressed,
    /// Single-stream gzip (flate2 with the zlib-rs backend) at a fixed level 0–9,
    /// compressed on one thread while the tar is produced on another.
    Gzip { level: u32 },
    /// gzip compressed on every core: 512 KiB blocks, each primed with the previous
    /// block's last 32 KiB and ended by a sync flush (pigz's scheme), in one gzip member
    /// any reader accepts. The bytes depend only on the input and the level, never on
    /// the number of cores, but differ from [`Compression::Gzip`]'s.
    ParallelGzip { level: u32 },
    /// zstd at a fixed level. `workers > 0` uses zstd's multithreaded mode; its output is
    /// the same for any worker count ≥ 1 but differs from single-threaded output, so the
    /// choice between 0 and ≥ 1 is part of the layer's identity. Needs the `zstd`
    /// cargo feature (on by default).
    Zstd { level: i32, workers: u32 },
}

/// The default is [`Compression::ParallelGzip`] at [`DEFAULT_GZIP_LEVEL`]: the same ratio
/// as single-stream gzip, on every core. On `/usr/bin` with 2 busy shared cores it ran
/// at 85 MB/s against 66 MB/s single-stream (7.0 s of CPU either way, so an idle
/// 2-core machine gets close to twice the speed), and its bytes do not change with the
/// machine, which reproducible builds need.
impl Default for Compression {
    fn default() -> Self {
        Compression::ParallelGzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }
}

impl Compression {
    /// The default gzip: parallel, at [`DEFAULT_GZIP_LEVEL`].
    pub fn gzip() -> Compression {
        Compression::default()
    }

    /// Single-stream gzip at [`DEFAULT_GZIP_LEVEL`].
    pub fn single_stream_gzip() -> Compression {
        Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }

    /// Single-threaded zstd at [`DEFAULT_ZSTD_LEVEL`].
    pub fn zstd() -> Compression {
        Compression::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
            workers: 0,
        }
    }
}

/// Which manifest flavour the layer's media type is spelled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ManifestFormat {
    #[default]
    Oci,
    /// Docker schema 2 (`application/vnd.docker.*`).
    Docker,
}

/// A layer blob's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerMediaType {
    OciTar,
    OciTarGzip,
    OciTarZstd,
    DockerTar,
    DockerTarGzip,
}

impl LayerMediaType {
    /// The media type a layer written with `compression` has in a `format` manifest.
    /// Docker schema 2 has no zstd layer type.
    pub fn for_compression(
        compression: Compression,
        format: ManifestFormat,
    ) -> Result<LayerMediaType, Error> {
        Ok(match (format, compression) {
            (ManifestFormat::Oci, Compression::Uncompressed) => LayerMediaType::OciTar,
            (ManifestFormat::Oci, Compression::Gzip { .. } | Compression::ParallelGzip { .. }) => {
                LayerMediaType::OciTarGzip
            }
            (ManifestFormat::Oci, Compression::Zstd { .. }) => LayerMediaType::OciTarZstd,
            (ManifestFormat::Docker, Compression::Uncompressed) => LayerMediaType::DockerTar,
            (
                ManifestFormat::Docker,
                Compression::Gzip { .. } | Compression::ParallelGzip { .. },
            ) => LayerMediaType::DockerTarGzip,
            (ManifestFormat::Docker, Compression::Zstd { .. }) => {
                return Err(Error::UnsupportedMediaType {
                    compression,
                    format,
                });
            }
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            LayerMediaType::OciTar => "application/vnd.oci.image.layer.v1.tar",
            LayerMediaType::OciTarGzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            LayerMediaType::OciTarZstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            LayerMediaType::DockerTar => "application/vnd.docker.image.rootfs.diff.tar",
            LayerMediaType::DockerTarGzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
}

impl fmt::Display for LayerMediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LayerMediaType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            LayerMediaType::OciTar,
            LayerMediaType::OciTarGzip,
            LayerMediaType::OciTarZstd,
            LayerMediaType::DockerTar,
            LayerMediaType::DockerTarGzip,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| Error::UnknownMediaType {
            media_type: s.to_owned(),
        })
    }
}

/// `SOURCE_DATE_EPOCH`: seconds since 1970; every entry mtime newer than it is clamped
/// to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceDateEpoch(pub i64);

impl SourceDateEpoch {
    pub(crate) fn clamp(epoch: Option<SourceDateEpoch>, mtime: i64) -> i64 {
        match epoch {
            Some(SourceDateEpoch(e)) if mtime > e => e,
            _ => mtime,
        }
    }
}

impl FromStr for SourceDateEpoch {
    type Err = Error;

    /// Parses the decimal integer form the reproducible-builds spec prescribes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(SourceDateEpoch)
            .ok_or_else(|| Error::InvalidSourceDateEpoch {
                value: s.to_owned(),
            })
    }
}

/// What writing a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (goes into the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the blob as written to the sink (goes into the manifest).
    pub digest: Digest,
    /// Bytes written to the sink.
    pub size: u64,
    pub media_type: LayerMediaType,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Tar entries written (files, dirs, links, whiteouts), not counting PAX headers.
    pub entries: u64,
}

impl LayerInfo {
    /// True when the layer has no entries: the step changed nothing on disk and the
    /// caller should not add a layer (Docker writes none for metadata-only steps).
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Everything that can go wrong writing, diffing, copying or applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    ReadSource {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} changed while it was being read (expected {expected} bytes, read {actual})")]
    SourceChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("writing the layer stream: {source}")]
    Sink {
        #[source]
        source: std::io::Error,
    },
    #[error("compression worker failed: {reason}")]
    CompressionWorker { reason: &'static str },
    #[error("zstd layers need kiln built with the `zstd` feature")]
    ZstdUnavailable,
    #[error("invalid zstd setting (level {level}, workers {workers}): {source}")]
    ZstdSetting {
        level: i32,
        workers: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("gzip level {level} is out of range 0..=9")]
    GzipLevel { level: u32 },
    #[error("{compression:?} layers have no media type in {format:?} manifests")]
    UnsupportedMediaType {
        compression: Compression,
        format: ManifestFormat,
    },
    #[error("unknown layer media type {media_type:?}")]
    UnknownMediaType { media_type: String },
    #[error("invalid SOURCE_DATE_EPOCH {value:?}: expected a non-negative integer of seconds")]
    InvalidSourceDateEpoch { value: String },
    #[error("reading the layer tar: {source}")]
    ReadLayer {
        #[source]
        source: std::io::Error,
    },
    #[error("layer entry {entry:?}: path escapes the root")]
    PathEscapes { entry: String },
    #[error("layer entry {entry:?}: hardlink target {target:?} escapes the root")]
    LinkEscapes { entry: String, target: String },
    #[error("layer entry {entry:?}: unsupported entry type {kind:?}")]
    UnsupportedEntry { entry: String, kind: char },
    #[error("layer entry {entry:?}: a parent path component is not a directory")]
    ParentNotDirectory { entry: String },
    #[error("layer entry {entry:?}: {action}: {source}")]
    Extract {
        entry: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("layer diffID mismatch: expected {expected}, unpacked {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("destination {path} already exists")]
    DestinationExists { path: PathBuf },
    #[error("{action} {path}: {source}")]
    Filesystem {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
