//! Reproducibility checks: rebuild an image and explain how it differs.
//!
//! # Contract
//!
//! - [`compare`] takes two images (a published one and its rebuild, or two
//!   builds of the same inputs) and gives a [`Report`]. Equal manifest digests
//!   make an equal report without reading any layer. Otherwise:
//!   - **Layers** are paired by position (the config's diff IDs). A pair with
//!     the same digest is `equal`; the same diff ID but another digest is
//!     `recompressed` (same files, other compression); otherwise both tar
//!     streams are read (never extracted; file contents hashed while
//!     streaming, so memory grows with the number of files, not their size) and
//!     every added, removed or changed entry is listed with the attributes that
//!     differ (type, content with both sizes and SHA-256s, mode, uid, gid,
//!     mtime, link, device, xattrs). A pair whose files are all equal but whose
//!     tars differ says whether the entry order differs. When the layer counts
//!     differ, the extra layers are `only_left` / `only_right`.
//!   - Each layer names what made it: the instruction and `Dockerfile:N` (and
//!     stage) from the build that knows them, else the config history's
//!     `created_by` (entries that are not `empty_layer`, in order).
//!   - **Config** fields are compared one by one ([`config`]'s rules) and listed
//!     with both values; so are the manifest's own fields (media types,
//!     annotations), leaving out the digests and sizes the layer and config
//!     sections cover.
//! - [`published`] fetches the image to verify against (a registry reference,
//!   always asked of the registry, or an OCI layout) and the inputs its build
//!   recorded in its SBOM; [`rebuild_inputs`] merges them with the user's;
//!   [`isolated_build`] builds into a fresh temporary store with no cache, so
//!   nothing of an earlier build is reused.
//! - Nothing here prints: builds send progress through the [`Reporter`], the
//!   report is data for the caller to render.
//!
//! # Errors
//!
//! [`Error`]: a failed build or pull (with its own context), an unreadable
//! store blob, a layer stream that cannot be read ([`Error::LayerRead`] names
//! the layer), a registry failure fetching the SBOM referrer.

mod config;
mod files;
mod inputs;

pub use inputs::*;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::build::{self, BuildOutput, ImageInfo, LayerRef, sbom::LayerOrigin};
use crate::digest::Digest;
use crate::image::{self, ImageConfig, Manifest};
use crate::progress::Reporter;
use crate::store::{self, Store};

/// Errors of a verification.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A build or pull failed (boxed: it is large).
    #[error(transparent)]
    Build(Box<build::Error>),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the files of layer {layer}")]
    LayerRead {
        layer: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("{reference}: fetching the SBOM referrer of {subject}")]
    Referrer {
        reference: String,
        subject: Digest,
        #[source]
        source: Box<kiln_registry::Error>,
    },
    #[error("{reference}: its SBOM {document} is not CycloneDX JSON")]
    BadSbom {
        reference: String,
        document: String,
        #[source]
        source: serde_json::Error,
    },
}

impl From<build::Error> for Error {
    fn from(error: build::Error) -> Error {
        Error::Build(Box::new(error))
    }
}

/// What [`compare`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The two images have the same manifest digest.
    pub equal: bool,
    pub left: ImageSummary,
    pub right: ImageSummary,
    /// The inputs the builds used and where each came from.
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// Manifest fields that differ (not the config and layer digests).
    pub manifest: Vec<FieldChange>,
    /// Image config fields that differ.
    pub config: Vec<FieldChange>,
    /// Every layer position of either image.
    pub layers: Vec<LayerReport>,
}

impl Report {
    /// Layers that are not `equal`.
    pub fn differing_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|layer| layer.status != LayerStatus::Equal)
            .count()
    }
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// `published localhost:5000/app:1`, `rebuilt`, `build 1`, …
    pub label: String,
    pub digest: String,
    pub media_type: String,
    pub config_digest: String,
    pub layers: usize,
}

/// An input of the build(s) and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// `SOURCE_DATE_EPOCH`, `build-arg NAME`, `target`, `base NAME`, `format`, …
    pub name: String,
    pub value: String,
    /// `flag`, `sbom` (recorded in the published image's SBOM), `config`
    /// (the published config), `manifest`, `git` (the context's last commit),
    /// `default`.
    pub from: String,
}

/// A field whose values differ; `None` where one side lacks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// `config.Env.PATH`, `config.Labels["org.opencontainers.image.version"]`, `history[3].created`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<serde_json::Value>,
}

/// How a layer position compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    Equal,
    /// Same files (diff ID), other compressed bytes.
    Recompressed,
    Different,
    /// Only the left image has a layer here.
    OnlyLeft,
    /// Only the right image has a layer here.
    OnlyRight,
}

/// One side's layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSide {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

/// A layer position of the two images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub index: usize,
    pub status: LayerStatus,
    /// The instruction that made the layer (as written, or the history's `created_by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    /// `Dockerfile:12`, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// For a base image's layer: `reference@sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<LayerSide>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<LayerSide>,
    /// For a `different` pair: the entries that differ, by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileChange>,
    /// For a `different` pair: the entries both have come in another order.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub entry_order_differs: bool,
}

/// An entry's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Other,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Hardlink => "hardlink",
            FileKind::CharDevice => "char_device",
            FileKind::BlockDevice => "block_device",
            FileKind::Fifo => "fifo",
            FileKind::Other => "other",
        })
    }
}

/// A layer entry's metadata as its tar header (and content) give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky, octal (`0755`).
    pub mode: String,
    pub uid: u64,
    pub gid: u64,
    /// Content bytes (0 for anything but a regular file).
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// SHA-256 of the content, for regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink or hardlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// `major:minor` of a device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub xattrs: std::collections::BTreeMap<String, String>,
}

/// How an entry differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileChangeKind {
    /// Only in the right layer.
    Added,
    /// Only in the left layer.
    Removed,
    Changed,
}

/// An entry that differs between two paired layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    pub change: FileChangeKind,
    /// For `changed`: each attribute that differs, with both values as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<FileMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<FileMeta>,
}

/// One attribute of an entry, on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeChange {
    /// `type`, `content`, `mode`, `uid`, `gid`, `mtime`, `link`, `device`, `xattrs`.
    pub attribute: String,
    pub left: String,
    pub right: String,
}

/// An image to compare, with where its blobs are.
#[derive(Debug, Clone)]
pub struct ImageSide {
    pub label: String,
    /// The store (or OCI layout) holding its manifest, config and layers.
    pub blobs: Store,
    pub digest: Digest,
    pub media_type: String,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerRef>,
    /// What made each layer, when a build knows it (empty otherwise).
    pub origins: Vec<LayerOrigin>,
}

impl ImageSide {
    /// The image a build wrote into `store`.
    pub fn from_build(
        label: impl Into<String>,
        store: &Store,
        output: &BuildOutput,
    ) -> Result<ImageSide, Error> {
        let config = ImageConfig::parse(
            &store.read_blob(&output.config_digest)?,
            &output.config_digest,
        )?;
        Ok(ImageSide {
            label: label.into(),
            blobs: store.clone(),
            digest: output.descriptor.digest.clone(),
            media_type: output.descriptor.media_type.clone(),
            config_digest: output.config_digest.clone(),
            config,
            layers: output.layers.clone(),
            origins: output.origins.clone(),
        })
    }

    /// An image read from `blobs` (a store or layout).
    pub fn from_info(
        label: impl Into<String>,
        blobs: &Store,
        info: &ImageInfo,
    ) -> Result<ImageSide, Error> {
        let manifest = Manifest::parse(
            &blobs.read_blob(&info.manifest_digest)?,
            &info.manifest_digest,
        )?;
        Ok(ImageSide {
            label: label.into(),
            blobs: blobs.clone(),
            digest: info.manifest_digest.clone(),
            media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| image::OCI_MANIFEST.to_owned()),
            config_digest: manifest.config.digest.clone(),
            config: info.config.clone(),
            layers: info.layers.clone(),
            origins: Vec::new(),
        })
    }

    fn summary(&self) -> ImageSummary {
        ImageSummary {
            label: self.label.clone(),
            digest: self.digest.to_string(),
            media_type: self.media_type.clone(),
            config_digest: self.config_digest.to_string(),
            layers: self.layers.len(),
        }
    }

    /// What made layer `index`: the build's record, else the config history.
    fn origin(&self, index: usize) -> Option<LayerOrigin> {
        if let Some(origin) = self.origins.get(index) {
            return Some(origin.clone());
        }
        let created_by = build::sbom::layer_history(&self.config.history, self.layers.len())
            .into_iter()
            .nth(index)
            .flatten()?;
        Some(LayerOrigin {
            created_by: Some(created_by),
            ..LayerOrigin::default()
        })
    }

    fn json(&self, digest: &Digest) -> Result<serde_json::Value, Error> {
        let bytes = self.blobs.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| {
            Error::Image(image::Error::Config {
                digest: digest.clone(),
                source,
            })
        })
    }
}

fn layer_side(layer: &LayerRef) -> LayerSide {
    LayerSide {
        digest: layer.digest.to_string(),
        diff_id: layer.diff_id.to_string(),
        size: layer.size,
        media_type: layer.media_type.clone(),
    }
}

/// The manifest without what the config and layer sections cover.
fn manifest_fields(mut manifest: serde_json::Value) -> serde_json::Value {
    if let Some(config) = manifest.get_mut("config").and_then(|c| c.as_object_mut()) {
        config.remove("digest");
        config.remove("size");
    }
    if let Some(layers) = manifest.get_mut("layers").and_then(|l| l.as_array_mut()) {
        for layer in layers {
            if let Some(layer) = layer.as_object_mut() {
                layer.remove("digest");
                layer.remove("size");
            }
        }
    }
    manifest
}

/// Compares two images (see the module contract); `reporter` hears which
/// layers are being read.
pub fn compare(left: &ImageSide, right: &ImageSide, reporter: &Reporter) -> Result<Report, Error> {
    let equal = left.digest == right.digest;
    let mut manifest = Vec::new();
    let mut config = Vec::new();
    if !equal {
        config::diff_json(
            "",
            &manifest_fields(left.json(&left.digest)?),
            &manifest_fields(right.json(&right.digest)?),
            &mut manifest,
        );
        if left.config_digest != right.config_digest {
            config::diff_json(
                "",
                &left.json(&left.config_digest)?,
                &right.json(&right.config_digest)?,
                &mut config,
            );
        }
    }
    let mut layers = Vec::new();
    for index in 0..left.layers.len().max(right.layers.len()) {
        let (a, b) = (left.layers.get(index), right.layers.get(index));
        let origin = right.origin(index).or_else(|| left.origin(index));
        let status = match (a, b) {
            (Some(a), Some(b)) if a.digest == b.digest => LayerStatus::Equal,
            (Some(a), Some(b)) if a.diff_id == b.diff_id => LayerStatus::Recompressed,
            (Some(_), Some(_)) => LayerStatus::Different,
            (Some(_), None) => LayerStatus::OnlyLeft,
            (None, _) => LayerStatus::OnlyRight,
        };
        // A layer only one side has is described by that side's history.
        let origin = match status {
            LayerStatus::OnlyLeft => left.origin(index),
            _ => origin,
        }
        .unwrap_or_default();
        let mut report = LayerReport {
            index,
            status,
            instruction: origin.created_by,
            source: origin.source,
            stage: origin.stage,
            base_image: origin.base_image,
            left: a.map(layer_side),
            right: b.map(layer_side),
            files: Vec::new(),
            entry_order_differs: false,
        };
        if let (LayerStatus::Different, Some(a), Some(b)) = (status, a, b) {
            reporter.notice(format!(
                "comparing the files of layer {index} ({} and {})",
                short(&a.digest),
                short(&b.digest)
            ));
            let (left_index, right_index) = std::thread::scope(|scope| {
                let reading = scope.spawn(|| files::index_layer(&left.blobs, &a.digest));
                let right_index = files::index_layer(&right.blobs, &b.digest);
                (reading.join().expect("layer reader panicked"), right_index)
            });
            let (changes, order_differs) = files::diff_layers(&left_index?, &right_index?);
            report.files = changes;
            report.entry_order_differs = order_differs;
        }
        layers.push(report);
    }
    Ok(Report {
        equal,
        left: left.summary(),
        right: right.summary(),
        inputs: Vec::new(),
        manifest,
        config,
        layers,
    })
}

/// The first 12 hex digits of a digest, for messages.
pub fn short(digest: &Digest) -> &str {
    &digest.hex()[..12]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::History;
    use std::io::Write;

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// An image in `store` of layers (the blob, and its tar for the diff ID)
    /// with one history entry per layer.
    fn image(store: &Store, label: &str, layers: &[(Vec<u8>, Vec<u8>)]) -> ImageSide {
        let refs: Vec<LayerRef> = layers
            .iter()
            .map(|(blob, tar)| LayerRef {
                digest: store.write_blob(blob).unwrap(),
                diff_id: Digest::of(tar),
                size: blob.len() as u64,
                media_type: image::OCI_LAYER_GZIP.to_owned(),
            })
            .collect();
        let config = ImageConfig {
            os: "linux".to_owned(),
            architecture: "amd64".to_owned(),
            rootfs: image::RootFs {
                kind: "layers".to_owned(),
                diff_ids: refs.iter().map(|l| l.diff_id.clone()).collect(),
            },
            history: (0..refs.len())
                .map(|i| History {
                    created_by: Some(format!("RUN step {i}")),
                    ..History::default()
                })
                .collect(),
            ..ImageConfig::default()
        };
        let config_bytes = config.to_bytes();
        let config_digest = store.write_blob(&config_bytes).unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(image::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config: image::Descriptor {
                media_type: image::OCI_CONFIG.to_owned(),
                digest: config_digest.clone(),
                size: config_bytes.len() as u64,
                annotations: None,
                platform: None,
                artifact_type: None,
            },
            layers: refs
                .iter()
                .map(|l| image::Descriptor {
                    media_type: l.media_type.clone(),
                    digest: l.digest.clone(),
                    size: l.size,
                    annotations: None,
                    platform: None,
                    artifact_type: None,
                })
                .collect(),
            subject: None,
            annotations: None,
        };
        ImageSide {
            label: label.to_owned(),
            blobs: store.clone(),
            digest: store.write_blob(&manifest.to_bytes()).unwrap(),
            media_type: image::OCI_MANIFEST.to_owned(),
            config_digest,
            config,
            layers: refs,
            origins: Vec::new(),
        }
    }

    #[test]
    fn layers_pair_by_position_and_extra_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let same = tar(&[("etc/os", b"kiln")]);
        let before = tar(&[("app/a", b"1"), ("app/gone", b"x")]);
        let after = tar(&[("app/a", b"2"), ("app/new", b"y")]);
        let extra = tar(&[("extra", b"z")]);
        let recompressed = tar(&[("r", b"r")]);
        let left = image(
            &store,
            "left",
            &[
                (gzip(&same), same.clone()),
                (gzip(&before), before.clone()),
                (gzip(&recompressed), recompressed.clone()),
            ],
        );
        let right = image(
            &store,
            "right",
            &[
                (gzip(&same), same.clone()),
                (gzip(&after), after.clone()),
                // The same tar, uncompressed: same diff ID, other digest.
                (recompressed.clone(), recompressed.clone()),
                (gzip(&extra), extra.clone()),
            ],
        );
        let report = compare(&left, &right, &Reporter::silent()).unwrap();
        assert!(!report.equal);
        let statuses: Vec<LayerStatus> = report.layers.iter().map(|l| l.status).collect();
        assert_eq!(
            statuses,
            vec![
                LayerStatus::Equal,
                LayerStatus::Different,
                LayerStatus::Recompressed,
                LayerStatus::OnlyRight
            ]
        );
        assert_eq!(report.differing_layers(), 3);
        assert_eq!(report.layers[1].instruction.as_deref(), Some("RUN step 1"));
        assert_eq!(report.layers[3].instruction.as_deref(), Some("RUN step 3"));
        assert!(report.layers[3].left.is_none());
        let files: Vec<(&str, FileChangeKind)> = report.layers[1]
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.change))
            .collect();
        assert_eq!(
            files,
            vec![
                ("app/a", FileChangeKind::Changed),
                ("app/gone", FileChangeKind::Removed),
                ("app/new", FileChangeKind::Added),
            ]
        );
        // The config differs in the changed layer's diff ID and in the extra
        // layer's diff ID and history entry.
        let paths: Vec<&str> = report.config.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["rootfs.diff_ids[1]", "rootfs.diff_ids[3]", "history[3]"]
        );
        // The manifest's own fields: the extra layer's media type entry.
        assert_eq!(report.manifest.len(), 1, "{:?}", report.manifest);
        assert_eq!(report.manifest[0].path, "layers[3]");

        let same_again = compare(&left, &left, &Reporter::silent()).unwrap();
        assert!(same_again.equal);
        assert!(same_again.config.is_empty() && same_again.manifest.is_empty());
        assert_eq!(same_again.differing_layers(), 0);
    }
}
