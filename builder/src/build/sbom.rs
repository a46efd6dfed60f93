//! The build's SBOM: catalogs the layers of an image, writes its CycloneDX 1.6
//! document and keeps it in the store as an OCI 1.1 referrer of the image.
//!
//! # Contract
//!
//! - **Which layers.** Only the target stage's layer chain: the base image's
//!   layers (attributed to the base image reference and manifest digest, their
//!   instruction taken from the base config's history) and the layers its steps
//!   made or took from the cache (attributed to the step: instruction as written,
//!   `file:line`, stage). A `COPY --from` of another stage is attributed to that
//!   `COPY`; the other stage's own packages appear only if their metadata was
//!   copied.
//! - **Once, then never again.** Each layer is cataloged at most once per store:
//!   what a layer changes ([`kiln_sbom::LayerDelta`]) is kept at
//!   `<store>/cache/sbom-<chain-id-hex>.json`. The key is the layer's *chain ID*,
//!   not its diff ID, because a delta is computed against the packages of the
//!   layers below it. A rebuild, cached or not, reads no layer it cataloged
//!   before, and the SBOM is the same whether a step ran or came from the cache.
//!   A layer not yet cataloged is read from its snapshot directory when there is
//!   one (no decompression; a new `RUN` layer always has one), else from its
//!   blob through a streaming decompressor.
//! - **Deterministic.** The document depends only on the image (manifest digest,
//!   config `created`), the request (tags, build args, target,
//!   `SOURCE_DATE_EPOCH`, Dockerfile, the digests of the images it names) and
//!   kiln's version: the timestamp is `SOURCE_DATE_EPOCH` when set, else the image's
//!   `created` (the build time of its last step, which a cached rebuild keeps).
//! - **Stored as a referrer.** The document blob, the empty config blob
//!   (`{}`, `application/vnd.oci.empty.v1+json`) and an artifact manifest
//!   (`artifactType: application/vnd.cyclonedx+json`, `subject` = the image
//!   manifest) go into the store's blobs. The manifest is listed in
//!   `<store>/referrers/sha256/<subject-hex>.json`, an OCI image index like the
//!   one the referrers API answers, replacing an earlier SBOM of the same image.
//!   It is not in `index.json`, so `kiln images` does not show it.
//! - **No-op rebuilds do nothing.** The finished [`SbomOutput`] is remembered at
//!   `<store>/cache/sbom-document-<hash>.json`, keyed by everything the document
//!   depends on (the image digest, the description of the build, the delta
//!   format): a rebuild that would write the same document reads one small file.
//!
//! # Errors
//!
//! [`Error::SbomLayer`] names the layer that could not be cataloged,
//! [`Error::SbomDocument`] the image whose document could not be made;
//! store and file failures name their path.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_sbom::cyclonedx::Bom;
use kiln_sbom::{
    BaseImage, BuildStep, Catalogers, DirTree, ImageDescription, Inventory, LayerDelta, LayerInfo,
    TarLayer, bom,
};

use super::base::{self, ImageInfo, LayerRef};
use super::{BuildOutput, Error, Shared, StageState, now_secs};
use crate::digest::Digest;
use crate::frontend::dockerfile::{Base, ResolvedBuild, Step};
use crate::image::{self, History, ImageConfig, Manifest, chain_ids};
use crate::platform::Platform;
use crate::snapshot::Snapshots;
use crate::store::{self, Descriptor, Store};

/// The artifact type (and document media type) of a CycloneDX JSON SBOM.
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";
/// The OCI 1.1 empty descriptor's media type, used as the artifact's config.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The content of the empty config blob.
pub const EMPTY_JSON: &[u8] = b"{}";
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// File name given to the document inside the artifact.
pub const SBOM_FILE_NAME: &str = "sbom.cdx.json";

/// Where a layer of a stage came from, kept beside the stage's layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerOrigin {
    /// The instruction that made it (as written in the Dockerfile, or the
    /// base config's history `created_by`).
    pub created_by: Option<String>,
    /// `Dockerfile:12`.
    pub source: Option<String>,
    /// The stage whose step made it.
    pub stage: Option<String>,
    /// For base image layers: `reference@sha256:…`.
    pub base_image: Option<String>,
}

impl LayerOrigin {
    /// The origin of a layer a step of `stage` made (or took from the cache).
    pub(super) fn of_step(stage: &str, step: &Step) -> LayerOrigin {
        LayerOrigin {
            created_by: Some(step.source.clone()),
            source: Some(format!("{}:{}", step.location.file, step.location.line)),
            stage: Some(stage.to_owned()),
            base_image: None,
        }
    }

    fn layer_info(&self, layer: &LayerRef) -> LayerInfo {
        LayerInfo {
            digest: Some(layer.digest.to_string()),
            diff_id: Some(layer.diff_id.to_string()),
            created_by: self.created_by.clone(),
            source: self.source.clone(),
            stage: self.stage.clone(),
            base_image: self.base_image.clone(),
        }
    }
}

/// The origins of a base image's layers: the image, and each layer's history entry.
pub(super) fn base_origins(info: &ImageInfo) -> Vec<LayerOrigin> {
    let image = pinned_reference(&info.reference, &info.manifest_digest);
    layer_history(&info.config.history, info.layers.len())
        .into_iter()
        .map(|created_by| LayerOrigin {
            created_by,
            source: None,
            stage: None,
            base_image: Some(image.clone()),
        })
        .collect()
}

/// The `created_by` of each layer: history entries that are not `empty_layer`
/// belong to the layers in order (as `docker history` pairs them). Layers past
/// the end of the history get `None`.
pub fn layer_history(history: &[History], layers: usize) -> Vec<Option<String>> {
    let mut created_by: Vec<Option<String>> = history
        .iter()
        .filter(|entry| !entry.empty_layer)
        .map(|entry| entry.created_by.clone())
        .collect();
    created_by.resize(layers, None);
    created_by
}

/// `reference@digest`, normalised (`python` → `docker.io/library/python:latest@sha256:…`).
fn pinned_reference(reference: &str, digest: &Digest) -> String {
    match kiln_registry::Reference::parse(reference) {
        Ok(parsed) if parsed.digest().is_some() => parsed.to_string(),
        Ok(parsed) => format!(
            "{}:{}@{digest}",
            parsed.full_name(),
            parsed.tag().unwrap_or("latest")
        ),
        Err(_) => format!("{reference}@{digest}"),
    }
}

/// What cataloging the layers of an image cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CatalogStats {
    /// Layers in the image.
    pub layers: usize,
    /// Layers whose kept delta was reused (nothing read).
    pub from_cache: usize,
    /// Layers read from their snapshot directory.
    pub from_snapshot: usize,
    /// Layers read from their (decompressed) blob.
    pub from_blob: usize,
}

/// Catalogs `layers` in order (see the module contract): `origins` describes
/// each (same length), blobs come from `blobs`, kept deltas and snapshots from
/// `store`.
pub fn catalog_layers(
    store: &Store,
    blobs: &Store,
    layers: &[LayerRef],
    origins: &[LayerOrigin],
) -> Result<(Inventory, CatalogStats), Error> {
    let cache_dir = store.root().join("cache");
    fs::create_dir_all(&cache_dir).map_err(|source| Error::Io {
        path: cache_dir.clone(),
        source,
    })?;
    let snapshots = Snapshots::new(store)?;
    let diff_ids: Vec<Digest> = layers.iter().map(|layer| layer.diff_id.clone()).collect();
    let mut inventory = Inventory::new(Catalogers::ALL);
    let mut stats = CatalogStats {
        layers: layers.len(),
        ..CatalogStats::default()
    };
    for ((layer, chain), origin) in layers.iter().zip(chain_ids(&diff_ids)).zip(origins) {
        let kept_path = cache_dir.join(format!("sbom-{}.json", chain.hex()));
        let kept = fs::read(&kept_path)
            .ok()
            .and_then(|bytes| LayerDelta::from_json(&bytes).ok());
        let delta = match kept {
            Some(delta) => {
                stats.from_cache += 1;
                delta
            }
            None => {
                let delta = read_layer(&inventory, blobs, &snapshots, layer, &chain, &mut stats)?;
                keep_delta(store, &kept_path, &delta)?;
                delta
            }
        };
        inventory.apply_delta(origin.layer_info(layer), delta);
    }
    Ok((inventory, stats))
}

/// Catalogs one layer against `inventory`: from its snapshot when that can be
/// read (a rootless `kiln sbom` may not read every snapshot file), else its blob.
fn read_layer(
    inventory: &Inventory,
    blobs: &Store,
    snapshots: &Snapshots,
    layer: &LayerRef,
    chain: &Digest,
    stats: &mut CatalogStats,
) -> Result<LayerDelta, Error> {
    let snapshot = snapshots.path(chain);
    if snapshot.is_dir()
        && let Ok(delta) = inventory.layer_delta(&mut DirTree::layer_dir(&snapshot))
    {
        stats.from_snapshot += 1;
        return Ok(delta);
    }
    let blob = blobs.open_blob(&layer.digest)?;
    let path = blobs.blob_path(&layer.digest);
    let reader = decompressed(blob, &path)?;
    stats.from_blob += 1;
    inventory
        .layer_delta(&mut TarLayer::new(reader))
        .map_err(|source| Error::SbomLayer {
            layer: layer.digest.clone(),
            source,
        })
}

/// The tar inside a layer blob, whatever its compression (gzip, zstd or none).
pub(crate) fn decompressed(blob: fs::File, path: &Path) -> Result<Box<dyn Read>, Error> {
    let io_error = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::with_capacity(256 * 1024, blob);
    let head = reader.fill_buf().map_err(io_error)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        #[cfg(feature = "zstd")]
        return Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(reader).map_err(io_error)?,
        ));
        #[cfg(not(feature = "zstd"))]
        return Err(io_error(io::Error::other(
            "a zstd layer, and this kiln was built without zstd support",
        )));
    }
    Ok(Box::new(reader))
}

/// Writes a delta atomically (temp file + rename), so readers see all or nothing.
fn keep_delta(store: &Store, path: &Path, delta: &LayerDelta) -> Result<(), Error> {
    write_atomic(store, path, &delta.to_json()).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_atomic(store: &Store, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(store.root().join("tmp"))?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The SBOM a build (or [`store_sbom`]) put in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SbomOutput {
    /// The artifact manifest (its `subject` is the image manifest).
    pub manifest: Descriptor,
    /// The CycloneDX JSON document blob.
    pub document: Descriptor,
    /// Packages the document lists (components other than the image and its base).
    pub packages: usize,
    /// What cataloging cost.
    pub stats: CatalogStats,
}

/// The solver's hook: catalogs the target stage's layers, writes the document
/// and keeps it as a referrer of the image `output` names.
pub(super) fn write_build_sbom(
    shared: &Shared<'_>,
    resolved: &ResolvedBuild,
    state: &StageState,
    output: &BuildOutput,
    dockerfile: &str,
) -> Result<SbomOutput, Error> {
    let started = Instant::now();
    let request = shared.request;
    let (repository, tags) = repository_and_tags(&request.tags);
    let base_images = root_base(resolved)
        .and_then(|reference| shared.images.get(reference))
        .map(|info| BaseImage {
            reference: pinned_reference(&info.reference, &info.manifest_digest),
            digest: info.manifest_digest.to_string(),
        })
        .into_iter()
        .collect();
    let build_args = request
        .build_args
        .iter()
        .filter(|(name, _)| {
            !resolved.unused_build_args.contains(name) && !shared.proxy_args.contains_key(*name)
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let config = image_config(shared.store, &output.config_digest)?;
    let image = ImageDescription {
        repository,
        digest: output.descriptor.digest.to_string(),
        tags,
        base_images,
        build_args,
        dockerfile_digest: Some(Digest::of(dockerfile.as_bytes()).to_string()),
        source_date_epoch: request.source_date_epoch,
        target: request.target.clone(),
        pinned_images: shared
            .images
            .iter()
            .map(|(name, info)| {
                (
                    name.clone(),
                    pinned_reference(&info.reference, &info.manifest_digest),
                )
            })
            .collect(),
        steps: build_steps(shared, resolved),
        created: created(request.source_date_epoch, &config),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    // The document is a function of the image (which fixes its layers) and of
    // this description (which fixes every attribution): a no-op rebuild finds
    // it made already and neither catalogs nor writes anything.
    let memo_path = shared.store.root().join("cache").join(format!(
        "sbom-document-{}.json",
        Digest::of(format!("{}\n{image:?}", LayerDelta::FORMAT).as_bytes()).hex()
    ));
    let remembered = fs::read(&memo_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<SbomOutput>(&bytes).ok())
        .filter(|kept| {
            shared.store.has_blob(&kept.manifest.digest)
                && shared.store.has_blob(&kept.document.digest)
        });
    let sbom = match remembered {
        Some(kept) => {
            let listed = referrers(shared.store, &output.descriptor.digest)?;
            if !listed.contains(&kept.manifest) {
                add_referrer(shared.store, &output.descriptor.digest, &kept.manifest)?;
            }
            SbomOutput {
                stats: CatalogStats {
                    layers: state.layers.len(),
                    from_cache: state.layers.len(),
                    ..CatalogStats::default()
                },
                ..kept
            }
        }
        None => {
            let (inventory, stats) =
                catalog_layers(shared.store, shared.store, &state.layers, &state.origins)?;
            let sbom = store_sbom(shared.store, &output.descriptor, &inventory, &image, stats)?;
            let bytes = serde_json::to_vec(&sbom).expect("an SBOM output serialises");
            write_atomic(shared.store, &memo_path, &bytes).map_err(|source| Error::Io {
                path: memo_path.clone(),
                source,
            })?;
            sbom
        }
    };
    let stats = sbom.stats;
    shared.reporter.notice(format!(
        "SBOM: {} packages from {} layers ({} cataloged, {} known) in {} ms",
        sbom.packages,
        stats.layers,
        stats.from_snapshot + stats.from_blob,
        stats.from_cache,
        started.elapsed().as_millis()
    ));
    Ok(sbom)
}

/// Writes the document for `inventory` and `image`, and keeps it in `store` as
/// the SBOM referrer of `subject` (the image manifest).
pub fn store_sbom(
    store: &Store,
    subject: &Descriptor,
    inventory: &Inventory,
    image: &ImageDescription,
    stats: CatalogStats,
) -> Result<SbomOutput, Error> {
    let (bom, document) = document(inventory, image, &subject.digest)?;
    let document_digest = store.write_blob(&document)?;
    let empty_digest = store.write_blob(EMPTY_JSON)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(store::OCI_MANIFEST.to_owned()),
        artifact_type: Some(SBOM_ARTIFACT_TYPE.to_owned()),
        config: image::Descriptor {
            media_type: EMPTY_MEDIA_TYPE.to_owned(),
            digest: empty_digest,
            size: EMPTY_JSON.len() as u64,
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        layers: vec![image::Descriptor {
            media_type: SBOM_ARTIFACT_TYPE.to_owned(),
            digest: document_digest.clone(),
            size: document.len() as u64,
            annotations: Some(BTreeMap::from([(
                TITLE_ANNOTATION.to_owned(),
                SBOM_FILE_NAME.to_owned(),
            )])),
            platform: None,
            artifact_type: None,
        }],
        subject: Some(image::Descriptor {
            media_type: subject.media_type.clone(),
            digest: subject.digest.clone(),
            size: subject.size,
            annotations: None,
            platform: None,
            artifact_type: None,
        }),
        annotations: Some(BTreeMap::from([(
            CREATED_ANNOTATION.to_owned(),
            bom.metadata.timestamp.clone(),
        )])),
    };
    let manifest_bytes = manifest.to_bytes();
    let manifest_digest = store.write_blob(&manifest_bytes)?;
    let manifest_descriptor = Descriptor {
        media_type: store::OCI_MANIFEST.to_owned(),
        digest: manifest_digest,
        size: manifest_bytes.len() as u64,
        annotations: manifest.annotations.clone().unwrap_or_default(),
        platform: None,
        artifact_type: Some(SBOM_ARTIFACT_TYPE.to_owned()),
    };
    add_referrer(store, &subject.digest, &manifest_descriptor)?;
    Ok(SbomOutput {
        manifest: manifest_descriptor,
        document: Descriptor {
            media_type: SBOM_ARTIFACT_TYPE.to_owned(),
            digest: document_digest,
            size: document.len() as u64,
            annotations: Default::default(),
            platform: None,
            artifact_type: None,
        },
        packages: package_count(&bom),
        stats,
    })
}

/// The document and its bytes.
fn document(
    inventory: &Inventory,
    image: &ImageDescription,
    digest: &Digest,
) -> Result<(Bom, Vec<u8>), Error> {
    let document_error = |source| Error::SbomDocument {
        image: digest.clone(),
        source,
    };
    let bom = bom::build(inventory, image).map_err(document_error)?;
    let bytes = bom::to_vec(&bom).map_err(document_error)?;
    Ok((bom, bytes))
}

/// Components that are packages: not the image's base images.
pub fn package_count(bom: &Bom) -> usize {
    bom.components
        .iter()
        .filter(|component| {
            !component
                .properties
                .iter()
                .any(|p| p.name == "kiln:role" && p.value == "base-image")
        })
        .count()
}

/// The repository the image is named by (the first tag's) and the tags of
/// that repository; `localhost/kiln-image` when the build has no tag.
fn repository_and_tags(references: &[String]) -> (String, Vec<String>) {
    let parsed: Vec<kiln_registry::Reference> = references
        .iter()
        .filter_map(|reference| kiln_registry::Reference::parse(reference).ok())
        .collect();
    let Some(first) = parsed.first() else {
        return ("localhost/kiln-image".to_owned(), Vec::new());
    };
    let repository = first.full_name();
    let mut tags: Vec<String> = Vec::new();
    for reference in &parsed {
        if reference.full_name() == repository {
            let tag = reference.tag().unwrap_or("latest").to_owned();
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    (repository, tags)
}

/// The image the target stage's chain starts from, if not `scratch`.
fn root_base(resolved: &ResolvedBuild) -> Option<&str> {
    let mut stage = resolved.target();
    loop {
        match &stage.base {
            Base::Image(reference) => return Some(reference),
            Base::Scratch => return None,
            Base::Stage(index) => {
                stage = resolved.stages.iter().find(|s| s.index == *index)?;
            }
        }
    }
}

/// Every instruction of the needed stages in order, `FROM` first, with the
/// digest of the layer each step left in its stage.
fn build_steps(shared: &Shared<'_>, resolved: &ResolvedBuild) -> Vec<BuildStep> {
    let results = shared.results.lock().expect("results lock");
    let mut steps = Vec::new();
    for stage in &resolved.stages {
        let label = super::stage_label(stage);
        let state: Option<&Arc<StageState>> = results.get(&stage.index).and_then(Option::as_ref);
        steps.push(BuildStep {
            stage: label.clone(),
            instruction: stage.source.clone(),
            source: Some(format!("{}:{}", stage.location.file, stage.location.line)),
            layer_digest: None,
        });
        for step in &stage.steps {
            let origin = LayerOrigin::of_step(&label, step);
            let layer_digest = state.and_then(|state| {
                state
                    .origins
                    .iter()
                    .zip(&state.layers)
                    .find(|(made_by, _)| **made_by == origin)
                    .map(|(_, layer)| layer.digest.to_string())
            });
            steps.push(BuildStep {
                stage: label.clone(),
                instruction: step.source.clone(),
                source: origin.source,
                layer_digest,
            });
        }
    }
    steps
}

fn image_config(store: &Store, digest: &Digest) -> Result<ImageConfig, Error> {
    Ok(ImageConfig::parse(&store.read_blob(digest)?, digest)?)
}

/// The document's time: `SOURCE_DATE_EPOCH`, else the image's `created`, else now.
fn created(source_date_epoch: Option<i64>, config: &ImageConfig) -> i64 {
    source_date_epoch
        .or_else(|| config.created.as_deref().and_then(parse_rfc3339))
        .unwrap_or_else(now_secs)
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn referrers_dir(store: &Store) -> PathBuf {
    store.root().join("referrers").join("sha256")
}

fn referrers_path(store: &Store, subject: &Digest) -> PathBuf {
    referrers_dir(store).join(format!("{}.json", subject.hex()))
}

/// The manifests in `store` whose subject is `subject` (SBOMs kiln wrote), as
/// the referrers API would list them.
pub fn referrers(store: &Store, subject: &Digest) -> Result<Vec<Descriptor>, store::Error> {
    let path = referrers_path(store, subject);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(store::Error::Io { path, source }),
    };
    let index: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| store::Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let manifests = index
        .get("manifests")
        .cloned()
        .unwrap_or(serde_json::Value::Array(Vec::new()));
    serde_json::from_value(manifests).map_err(|e| store::Error::Corrupt {
        path,
        reason: e.to_string(),
    })
}

/// Lists `referrer` as a referrer of `subject`, replacing referrers of the same
/// artifact type (a rebuild's SBOM replaces the previous one). Serialised by a
/// file lock against concurrent kiln processes; written atomically.
pub fn add_referrer(
    store: &Store,
    subject: &Digest,
    referrer: &Descriptor,
) -> Result<(), store::Error> {
    let dir = referrers_dir(store);
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| store::Error::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let lock_path = dir.join(".lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_error(&lock_path)(e.into()))?;
    let mut manifests = referrers(store, subject)?;
    manifests.retain(|existing| {
        existing.digest != referrer.digest && existing.artifact_type != referrer.artifact_type
    });
    manifests.push(referrer.clone());
    manifests.sort_by(|a, b| a.digest.cmp(&b.digest));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": store::OCI_INDEX,
        "manifests": manifests,
    });
    let mut bytes = serde_json::to_vec_pretty(&index).expect("an index serialises");
    bytes.push(b'\n');
    let path = referrers_path(store, subject);
    write_atomic(store, &path, &bytes).map_err(io_error(&path))
}

/// The CycloneDX document of the SBOM referrer `manifest` (a manifest [`referrers`] listed).
pub fn read_document(store: &Store, manifest: &Descriptor) -> Result<Vec<u8>, Error> {
    let parsed = Manifest::parse(&store.read_blob(&manifest.digest)?, &manifest.digest)?;
    let layer = parsed
        .layers
        .iter()
        .find(|layer| layer.media_type == SBOM_ARTIFACT_TYPE)
        .ok_or_else(|| Error::BadImage {
            reference: manifest.digest.to_string(),
            reason: "the SBOM artifact holds no CycloneDX document".to_owned(),
        })?;
    Ok(store.read_blob(&layer.digest)?)
}

/// Where `kiln sbom` finds the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SbomSource {
    /// A name in the store, else a registry reference pulled into the store.
    Reference(String),
    /// An OCI image layout directory, and the image's name in it (needed when
    /// it holds several).
    Layout { path: PathBuf, name: Option<String> },
}

/// Options of [`image_sbom`].
#[derive(Debug, Clone, Default)]
pub struct SbomOptions {
    /// The platform to choose from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Registries allowed over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// The document's time; default the image's `created`.
    pub source_date_epoch: Option<i64>,
}

/// The image named `name` in the OCI layout at `path` (the only one when
/// `name` is `None`), for `platform`: its description, the layout (which holds
/// its blobs), and the name it has there (empty when it has none).
pub fn layout_image(
    path: &Path,
    name: Option<&str>,
    platform: &Platform,
) -> Result<(ImageInfo, Store, String), Error> {
    let layout = Store::open(path)?;
    let descriptor = match name {
        Some(name) => layout.resolve(name)?,
        None => {
            let all = layout.descriptors()?;
            match <[Descriptor; 1]>::try_from(all) {
                Ok([one]) => one,
                Err(all) => {
                    return Err(Error::BadImage {
                        reference: path.display().to_string(),
                        reason: format!(
                            "the layout holds {} images; name one as oci:PATH:NAME",
                            all.len()
                        ),
                    });
                }
            }
        }
    };
    let label = descriptor
        .annotations
        .get(store::REF_NAME_ANNOTATION)
        .cloned()
        .or_else(|| name.map(str::to_owned))
        .unwrap_or_default();
    let info = base::from_store(&layout, &label, &descriptor, platform)?;
    Ok((info, layout, label))
}

/// An existing image's SBOM.
#[derive(Debug)]
pub struct ImageSbom {
    /// The image that was cataloged.
    pub image: ImageInfo,
    /// The document.
    pub bom: Bom,
    /// The document as written (`bom::write`).
    pub document: Vec<u8>,
    /// What cataloging cost.
    pub stats: CatalogStats,
}

/// Catalogs an existing image: attribution by layer, the instruction of each
/// taken from the config's history (entries that are not `empty_layer`, in order).
/// Kept deltas and snapshots of `store` are used and new deltas kept there.
pub fn image_sbom(
    store: &Store,
    source: &SbomSource,
    options: &SbomOptions,
) -> Result<ImageSbom, Error> {
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let (info, blobs, repository, tags) = match source {
        SbomSource::Reference(reference) => {
            let client = || base::registry_client(&options.insecure_registries);
            let info = base::resolve(store, reference, &platform, &client)?;
            let (repository, tags) = repository_and_tags(std::slice::from_ref(reference));
            (info, store.clone(), repository, tags)
        }
        SbomSource::Layout { path, name } => {
            let (info, layout, label) = layout_image(path, name.as_deref(), &platform)?;
            let (repository, tags) = match kiln_registry::Reference::parse(&label) {
                Ok(reference) if label.contains('/') || label.contains(':') => {
                    repository_and_tags(&[reference.to_string()])
                }
                _ => {
                    let directory = path
                        .canonicalize()
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_lowercase()))
                        .unwrap_or_else(|| "oci-layout".to_owned());
                    let tags = if label.is_empty() {
                        Vec::new()
                    } else {
                        vec![label.clone()]
                    };
                    (format!("localhost/{directory}"), tags)
                }
            };
            (info, layout, repository, tags)
        }
    };
    let origins: Vec<LayerOrigin> = layer_history(&info.config.history, info.layers.len())
        .into_iter()
        .map(|created_by| LayerOrigin {
            created_by,
            ..LayerOrigin::default()
        })
        .collect();
    let (inventory, stats) = catalog_layers(store, &blobs, &info.layers, &origins)?;
    let description = ImageDescription {
        repository,
        digest: info.manifest_digest.to_string(),
        tags,
        created: created(options.source_date_epoch, &info.config),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..ImageDescription::default()
    };
    let (bom, document) = document(&inventory, &description, &info.manifest_digest)?;
    Ok(ImageSbom {
        image: info,
        bom,
        document,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_images_carry() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("yesterday"), None);
        // Round trip with the writer.
        for secs in [0, 951_782_400, 1_704_067_200, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&super::super::rfc3339(secs)), Some(secs));
        }
    }

    #[test]
    fn history_pairs_with_layers_skipping_empty_entries() {
        let entry = |created_by: &str, empty_layer: bool| History {
            created_by: Some(created_by.to_owned()),
            empty_layer,
            ..History::default()
        };
        let history = [
            entry("ADD rootfs.tar /", false),
            entry("ENV A=1", true),
            entry("RUN pip install x", false),
            entry("CMD [\"sh\"]", true),
        ];
        assert_eq!(
            layer_history(&history, 2),
            vec![
                Some("ADD rootfs.tar /".to_owned()),
                Some("RUN pip install x".to_owned())
            ]
        );
        assert_eq!(
            layer_history(&history, 3),
            vec![
                Some("ADD rootfs.tar /".to_owned()),
                Some("RUN pip install x".to_owned()),
                None
            ]
        );
        assert_eq!(layer_history(&history, 1).len(), 1);
    }

    #[test]
    fn references_name_repository_and_tags() {
        assert_eq!(
            repository_and_tags(&[
                "localhost:5000/app:1.0".to_owned(),
                "localhost:5000/app:latest".to_owned(),
                "ghcr.io/acme/other:2".to_owned(),
            ]),
            (
                "localhost:5000/app".to_owned(),
                vec!["1.0".to_owned(), "latest".to_owned()]
            )
        );
        assert_eq!(
            repository_and_tags(&["python".to_owned()]),
            (
                "docker.io/library/python".to_owned(),
                vec!["latest".to_owned()]
            )
        );
        assert_eq!(
            pinned_reference("python:3", &Digest::of(b"x")),
            format!("docker.io/library/python:3@{}", Digest::of(b"x"))
        );
    }

    #[test]
    fn referrers_are_listed_and_replaced_by_artifact_type() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let subject = store.write_blob(b"{\"schemaVersion\":2}").unwrap();
        assert!(referrers(&store, &subject).unwrap().is_empty());
        let sbom = |content: &[u8]| Descriptor {
            media_type: store::OCI_MANIFEST.to_owned(),
            digest: Digest::of(content),
            size: content.len() as u64,
            annotations: Default::default(),
            platform: None,
            artifact_type: Some(SBOM_ARTIFACT_TYPE.to_owned()),
        };
        let signature = Descriptor {
            artifact_type: Some("application/vnd.dev.sigstore.bundle+json".to_owned()),
            ..sbom(b"signature")
        };
        add_referrer(&store, &subject, &sbom(b"first")).unwrap();
        add_referrer(&store, &subject, &signature).unwrap();
        add_referrer(&store, &subject, &sbom(b"second")).unwrap();
        add_referrer(&store, &subject, &sbom(b"second")).unwrap();
        let mut listed = referrers(&store, &subject).unwrap();
        listed.sort_by(|a, b| a.artifact_type.cmp(&b.artifact_type));
        assert_eq!(listed, vec![sbom(b"second"), signature]);
        // Nothing of it is an image of the store.
        assert!(store.images().unwrap().is_empty());
        assert!(referrers(&store, &Digest::of(b"other")).unwrap().is_empty());
    }
}
