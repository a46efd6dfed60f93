//! Image documents: kiln's own image config type and manifest assembly.
//!
//! `oci-spec`'s config type drops Docker's fields (Healthcheck, OnBuild, Shell,
//! ArgsEscaped) and unknown keys, so a base image's HEALTHCHECK would be lost.
//! [`ImageConfig`] keeps Docker's image-spec fields, in both media types (as
//! BuildKit does), plus every key it does not know, and serialises with sorted
//! maps so that its digest is stable.
//!
//! Pulled documents are kept as the raw bytes they were; these types are used to
//! *read* a base and to *write* what kiln builds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Errors reading image documents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image config {digest}: {source}")]
    Config {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest}: {source}")]
    Manifest {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest} has media type {media_type}, which kiln cannot use as an image")]
    UnsupportedManifest { digest: Digest, media_type: String },
}

/// The runtime part of an image config (`config` in the JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Keys kiln does not model, kept verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Docker's `Healthcheck` (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// An image config, OCI or Docker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<ImageConfig, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::Config {
            digest: digest.clone(),
            source,
        })
    }

    /// Canonical bytes: fixed field order, sorted maps, no insignificant space.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("image config serialises")
    }

    /// The value of `key` in `Env`, as a process would see it.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.config.env.as_ref()?.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// Sets `key=value` in `Env`, replacing an earlier value in place.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
}

/// A content descriptor inside a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// A platform in an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<Manifest, Error> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|source| Error::Manifest {
                digest: digest.clone(),
                source,
            })?;
        match manifest.media_type.as_deref() {
            None | Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => Ok(manifest),
            Some(other) => Err(Error::UnsupportedManifest {
                digest: digest.clone(),
                media_type: other.to_owned(),
            }),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialises")
    }
}

/// Which family of media types an image is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Oci,
    Docker,
}

impl Format {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }

    /// The layer media type for this format, given the OCI one.
    pub fn layer_media_type(self, oci: &str) -> String {
        match (self, oci) {
            (Format::Docker, OCI_LAYER_GZIP) => DOCKER_LAYER_GZIP.to_owned(),
            (Format::Docker, OCI_LAYER_TAR) => {
                "application/vnd.docker.image.rootfs.diff.tar".into()
            }
            (Format::Oci, DOCKER_LAYER_GZIP) => OCI_LAYER_GZIP.to_owned(),
            _ => oci.to_owned(),
        }
    }
}

/// The chain ID of a stack of diff IDs, as the OCI spec defines it:
/// `ChainID(L0) = DiffID(L0)`, `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_docker_fields_and_unknown_keys() {
        let raw = br#"{"architecture":"amd64","os":"linux","config":{"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000},"OnBuild":["RUN echo hi"],"Shell":["/bin/bash","-c"],"Hostname":"x"},"rootfs":{"type":"layers","diff_ids":[]},"moby.buildkit.buildinfo.v1":"abc"}"#;
        let digest = Digest::of(raw);
        let config = ImageConfig::parse(raw, &digest).unwrap();
        let hc = config.config.healthcheck.as_ref().unwrap();
        assert_eq!(hc.interval, Some(30_000_000_000));
        assert_eq!(config.config.other["Hostname"], "x");
        assert_eq!(config.other["moby.buildkit.buildinfo.v1"], "abc");
        let again = ImageConfig::parse(&config.to_bytes(), &digest).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn env_set_replaces_in_place() {
        let mut config = ImageConfig::default();
        config.set_env("PATH", "/bin");
        config.set_env("A", "1");
        config.set_env("PATH", "/usr/bin:/bin");
        assert_eq!(
            config.config.env.as_deref().unwrap(),
            ["PATH=/usr/bin:/bin", "A=1"]
        );
        assert_eq!(config.env_value("A"), Some("1"));
        assert_eq!(config.env_value("B"), None);
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
