//! Manifests kept as the raw bytes they were fetched or built as (their digest is of
//! those bytes), with their media type, and parsed on demand into `oci-spec` types.
//!
//! Both OCI and Docker schema 2 media types are handled: a Docker manifest list reads
//! as an [`ImageIndex`], a Docker v2 manifest as an [`ImageManifest`] (the JSON shapes
//! are the same). Docker schema 1 is refused with a clear error.

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::digest::{Digest, sha256_digest};
use crate::error::{Error, Result};

/// Media type strings.
pub mod media_types {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 1 (unsupported).
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1, signed (unsupported).
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// The OCI empty descriptor (`{}`), used as the config of artifacts.
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

    /// Every manifest type this client accepts, for `Accept` headers.
    pub const ACCEPTED: &[&str] = &[
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_MANIFEST,
    ];
}

use media_types::*;

/// The largest manifest accepted (as containerd: 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// Whether a manifest describes one image or a list of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2).
    Image,
    /// An index (OCI index or Docker manifest list).
    Index,
}

/// The kind of a manifest media type, `None` for anything else.
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// A manifest's bytes, media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The media type (from the registry's `Content-Type` or the document itself).
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The bytes exactly as fetched or built.
    pub bytes: Bytes,
}

impl RawManifest {
    /// Wraps bytes, computing their SHA-256 digest. The media type is `media_type`
    /// when it names a manifest type, else the document's `mediaType`, else inferred
    /// from its fields (`manifests` → OCI index, `config` → OCI manifest).
    pub fn new(bytes: impl Into<Bytes>, media_type: Option<&str>) -> RawManifest {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        let media_type = detect_media_type(&bytes, media_type);
        RawManifest {
            media_type,
            digest,
            bytes,
        }
    }

    /// Image or index; refuses other media types (naming `reference`).
    pub fn kind(&self, reference: &str) -> Result<ManifestKind> {
        manifest_kind(&self.media_type).ok_or_else(|| unsupported(reference, &self.media_type))
    }

    /// Parses as an image manifest.
    pub fn image_manifest(&self, reference: &str) -> Result<ImageManifest> {
        serde_json::from_slice(&self.bytes).map_err(|source| Error::InvalidManifest {
            reference: reference.to_owned(),
            kind: "image manifest",
            source,
        })
    }

    /// Parses as an index.
    pub fn index(&self, reference: &str) -> Result<ImageIndex> {
        serde_json::from_slice(&self.bytes).map_err(|source| Error::InvalidManifest {
            reference: reference.to_owned(),
            kind: "image index",
            source,
        })
    }

    /// A descriptor of this manifest (media type, digest, size).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::from(self.media_type.as_str()),
            self.bytes.len() as u64,
            self.digest.clone(),
        )
    }
}

pub(crate) fn unsupported(reference: &str, media_type: &str) -> Error {
    let hint = if media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED {
        "; Docker schema 1 manifests are deprecated and not supported, push the image again with a current tool".to_owned()
    } else {
        format!(" (supported: {})", ACCEPTED.join(", "))
    };
    Error::UnsupportedManifest {
        reference: reference.to_owned(),
        media_type: media_type.to_owned(),
        hint,
    }
}

fn detect_media_type(bytes: &[u8], declared: Option<&str>) -> String {
    let declared = declared.map(|value| value.split(';').next().unwrap_or(value).trim());
    if let Some(declared) = declared
        && (manifest_kind(declared).is_some()
            || declared == DOCKER_SCHEMA1
            || declared == DOCKER_SCHEMA1_SIGNED)
    {
        return declared.to_owned();
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(media_type),
            ..
        }) => media_type,
        Ok(Probe {
            schema_version: Some(1),
            ..
        }) => DOCKER_SCHEMA1.to_owned(),
        Ok(Probe {
            manifests: Some(_), ..
        }) => OCI_INDEX.to_owned(),
        Ok(Probe {
            config: Some(_), ..
        }) => OCI_MANIFEST.to_owned(),
        _ => declared.unwrap_or("application/octet-stream").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_comes_from_header_then_body_then_shape() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(RawManifest::new(&index[..], None).media_type, OCI_INDEX);
        assert_eq!(
            RawManifest::new(&index[..], Some(DOCKER_MANIFEST_LIST)).media_type,
            DOCKER_MANIFEST_LIST
        );
        assert_eq!(
            RawManifest::new(&index[..], Some("application/json; charset=utf-8")).media_type,
            OCI_INDEX
        );
        let docker =
            format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{}}}}"#);
        assert_eq!(RawManifest::new(docker, None).media_type, DOCKER_MANIFEST);
        let schema1 = RawManifest::new(&br#"{"schemaVersion":1,"fsLayers":[]}"#[..], None);
        let message = schema1.kind("x").unwrap_err().to_string();
        assert!(message.contains("schema 1"), "{message}");
    }

    #[test]
    fn docker_schema2_parses_into_oci_types() {
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{DOCKER_CONFIG}","size":7023,"digest":"sha256:{a}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":32654,"digest":"sha256:{b}"}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64)
        );
        let raw = RawManifest::new(text.clone(), Some(DOCKER_MANIFEST));
        assert_eq!(raw.kind("x").unwrap(), ManifestKind::Image);
        let manifest = raw.image_manifest("x").unwrap();
        assert_eq!(manifest.layers().len(), 1);
        assert_eq!(manifest.config().size(), 7023);
        assert_eq!(raw.digest, sha256_digest(text.as_bytes()));
        assert_eq!(raw.descriptor().size(), text.len() as u64);
    }
}
