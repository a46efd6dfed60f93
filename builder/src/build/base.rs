//! Base images: found in the store by name, or pulled (verified) into it.

use std::io::Write;
use std::sync::Arc;

use kiln_registry::{BlobStore, Reference, RegistryClient, StoreError};

use super::Error;
use crate::digest::Digest;
use crate::image::{self, ImageConfig, Manifest};
use crate::platform::Platform;
use crate::store::{self, Descriptor, Store};

/// A layer of an image, as the solver tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

/// A resolved image: its manifest digest, config and layers.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The reference as written in the Dockerfile.
    pub reference: String,
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerRef>,
}

/// The name an image reference is kept under in the store: Docker's familiar
/// form with a tag (`busybox:latest`, `localhost:5000/app:1.0`), or the
/// reference as given when it does not parse.
pub fn store_name(reference: &str) -> String {
    match Reference::parse(reference) {
        Ok(r) if r.digest().is_none() => {
            format!("{}:{}", r.familiar_name(), r.tag().unwrap_or("latest"))
        }
        Ok(r) => r.to_string(),
        Err(_) => reference.to_owned(),
    }
}

fn conv_digest(d: &kiln_registry::Digest) -> Digest {
    d.to_string().parse().expect("registry digests are sha256")
}

/// Reads the image `descriptor` names from the store, choosing `platform`
/// from an index.
pub fn from_store(
    store: &Store,
    reference: &str,
    descriptor: &Descriptor,
    platform: &Platform,
) -> Result<ImageInfo, Error> {
    let mut digest = descriptor.digest.clone();
    let mut bytes = store.read_blob(&digest)?;
    let probe: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::BadImage {
        reference: reference.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(manifests) = probe.get("manifests").and_then(|m| m.as_array()) {
        let chosen = manifests
            .iter()
            .filter_map(|m| serde_json::from_value::<image::Descriptor>(m.clone()).ok())
            .find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    let p = Platform {
                        os: p.os.clone(),
                        architecture: p.architecture.clone(),
                        variant: p.variant.clone(),
                    }
                    .normalized();
                    p == *platform
                })
            })
            .ok_or_else(|| Error::BadImage {
                reference: reference.to_owned(),
                reason: format!("no manifest for platform {platform} in its index"),
            })?;
        digest = chosen.digest;
        bytes = store.read_blob(&digest)?;
    }
    let manifest = Manifest::parse(&bytes, &digest)?;
    let config_bytes = store.read_blob(&manifest.config.digest)?;
    let config = ImageConfig::parse(&config_bytes, &manifest.config.digest)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::BadImage {
            reference: reference.to_owned(),
            reason: format!(
                "config lists {} diff IDs for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    let layers = manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(l, diff_id)| LayerRef {
            digest: l.digest.clone(),
            diff_id: diff_id.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
        })
        .collect();
    Ok(ImageInfo {
        reference: reference.to_owned(),
        manifest_digest: digest,
        config,
        layers,
    })
}

/// Puts the blobs of `info` (manifest, config, layers) from `from` into `to`:
/// hard links where both stores are on one file system, else verified copies.
pub fn copy_image(from: &Store, to: &Store, info: &ImageInfo) -> Result<(), Error> {
    let manifest_size = from.blob_size(&info.manifest_digest)?;
    to.link_blob_from(from, &info.manifest_digest, manifest_size)?;
    let manifest = Manifest::parse(
        &from.read_blob(&info.manifest_digest)?,
        &info.manifest_digest,
    )?;
    to.link_blob_from(from, &manifest.config.digest, manifest.config.size)?;
    for layer in &info.layers {
        to.link_blob_from(from, &layer.digest, layer.size)?;
    }
    Ok(())
}

/// Finds `reference` in the store, or pulls it from its registry into the
/// store (named by [`store_name`]).
pub fn resolve(
    store: &Store,
    reference: &str,
    platform: &Platform,
    client: &dyn Fn() -> Result<(RegistryClient, Arc<tokio::runtime::Runtime>), Error>,
) -> Result<ImageInfo, Error> {
    for name in [reference.to_owned(), store_name(reference)] {
        if let Ok(descriptor) = store.resolve(&name) {
            return from_store(store, reference, &descriptor, platform);
        }
    }
    let parsed = Reference::parse(reference).map_err(|source| Error::Reference {
        reference: reference.to_owned(),
        source,
    })?;
    if let Some(pinned) = parsed.digest() {
        let pinned = conv_digest(pinned);
        if store.has_blob(&pinned) {
            let descriptor = Descriptor {
                media_type: store::OCI_MANIFEST.into(),
                size: store.blob_size(&pinned)?,
                digest: pinned,
                annotations: Default::default(),
                platform: None,
                artifact_type: None,
            };
            return from_store(store, reference, &descriptor, platform);
        }
    }
    let descriptor = pull(store, reference, platform, client)?;
    from_store(store, reference, &descriptor, platform)
}

/// Pulls `reference` from its registry into the store, every blob verified, and
/// names it there by [`store_name`]; returns the manifest (or index) descriptor.
pub fn pull(
    store: &Store,
    reference: &str,
    platform: &Platform,
    client: &dyn Fn() -> Result<(RegistryClient, Arc<tokio::runtime::Runtime>), Error>,
) -> Result<Descriptor, Error> {
    let parsed = Reference::parse(reference).map_err(|source| Error::Reference {
        reference: reference.to_owned(),
        source,
    })?;
    let (client, runtime) = client()?;
    let adapter = StoreAdapter(store.clone());
    let pulled = runtime
        .block_on(client.pull(
            &parsed,
            &kiln_registry::PullOptions {
                platform: Some(platform.clone()),
            },
            &adapter,
        ))
        .map_err(|source| Error::Pull {
            reference: reference.to_owned(),
            source: Box::new(source),
        })?;
    let top = pulled
        .index
        .as_ref()
        .unwrap_or(&pulled.manifest)
        .descriptor();
    let descriptor = Descriptor {
        media_type: top.media_type().to_string(),
        digest: conv_digest(top.digest()),
        size: top.size(),
        annotations: Default::default(),
        platform: None,
        artifact_type: None,
    };
    store.tag(&store_name(reference), &descriptor)?;
    Ok(descriptor)
}

/// The content store as the registry client's blob store.
#[derive(Debug, Clone)]
pub struct StoreAdapter(pub Store);

struct AdapterWriter {
    writer: store::BlobWriter,
    expected: Digest,
    size: u64,
}

impl Write for AdapterWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl kiln_registry::BlobWriter for AdapterWriter {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let expected = self.expected.clone();
        self.writer
            .commit(Some(&self.expected), Some(self.size))
            .map(|_| ())
            .map_err(|e| store_error(&expected, e))
    }
}

fn store_error(digest: &Digest, error: store::Error) -> StoreError {
    StoreError::Io {
        operation: "storing blob",
        path: std::path::PathBuf::from(digest.to_string()),
        source: std::io::Error::other(error),
    }
}

fn to_local(d: &kiln_registry::Digest) -> Result<Digest, StoreError> {
    d.to_string()
        .parse()
        .map_err(|e: crate::digest::ParseDigestError| StoreError::Io {
            operation: "reading digest",
            path: std::path::PathBuf::from(d.to_string()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })
}

impl BlobStore for StoreAdapter {
    fn has(&self, digest: &kiln_registry::Digest) -> Result<bool, StoreError> {
        Ok(self.0.has_blob(&to_local(digest)?))
    }

    fn begin_write(
        &self,
        digest: &kiln_registry::Digest,
        size: u64,
    ) -> Result<Box<dyn kiln_registry::BlobWriter>, StoreError> {
        let expected = to_local(digest)?;
        let writer = self
            .0
            .blob_writer()
            .map_err(|e| store_error(&expected, e))?;
        Ok(Box::new(AdapterWriter {
            writer,
            expected,
            size,
        }))
    }

    fn open(
        &self,
        digest: &kiln_registry::Digest,
    ) -> Result<Box<dyn kiln_registry::BlobReader>, StoreError> {
        let local = to_local(digest)?;
        let file = self
            .0
            .open_blob(&local)
            .map_err(|e| store_error(&local, e))?;
        Ok(Box::new(file) as Box<dyn kiln_registry::BlobReader>)
    }
}

/// A registry client and the runtime it runs on, for base images and SBOM sources.
pub fn registry_client(
    insecure_registries: &[String],
) -> Result<
    (
        kiln_registry::RegistryClient,
        std::sync::Arc<tokio::runtime::Runtime>,
    ),
    Error,
> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime {
            reason: e.to_string(),
        })?;
    let config = kiln_registry::ClientConfig {
        insecure_registries: insecure_registries.to_vec(),
        ..Default::default()
    };
    Ok((
        kiln_registry::RegistryClient::new(config),
        std::sync::Arc::new(runtime),
    ))
}
