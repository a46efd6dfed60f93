//! `--cache-from` and `--cache-to`: importing cache records (and cache mounts)
//! before a build, exporting them after it.
//!
//! # The cache artifact
//!
//! One OCI image manifest (`application/vnd.oci.image.manifest.v1+json`) with
//! `artifactType` [`ARTIFACT_TYPE`] and the empty config
//! (`application/vnd.oci.empty.v1+json`, `{}`). Its layers are:
//!
//! - one [`RECORDS_MEDIA_TYPE`] JSON blob: `{"version":1,"records":{key: record}}`,
//!   keys sorted, so the same build exports the same bytes;
//! - the step layers those records name, with their own media types (deduplicated);
//! - in `mode=max`, one tar ([`MOUNT_MEDIA_TYPE_GZIP`] or `…zstd`) per cache mount the
//!   build's `RUN --mount=type=cache` steps name and that exists in the store,
//!   annotated with the mount's id ([`MOUNT_ID_ANNOTATION`]). The tar holds the
//!   mount's `data/` directory, written by the deterministic layer writer, so an
//!   unchanged cache gives the same blob and is not uploaded again.
//!
//! An image manifest rather than an index (BuildKit's classic layout) because
//! distribution 2.8 (Debian's `docker-registry`), GHCR, ECR and Docker Hub all
//! accept an OCI image manifest with `artifactType`, any layer media types and the
//! empty config, while an index whose children are not manifests is refused by
//! several of them (BuildKit added `image-manifest=true` for that reason).
//!
//! # Export (`--cache-to`)
//!
//! After the image is written. `mode=min` exports the records the final image's
//! steps used (the target stage and the stages it is built `FROM`); `mode=max` every
//! record the build hit or wrote, in any stage, plus cache mounts. Blobs go through
//! [`RegistryClient::push`]: `HEAD` first and skipped when present, mounted from the
//! repository they were imported from when that is another repository of the same
//! registry. `type=local,dest=DIR` writes the same artifact into an OCI layout
//! directory (named `latest` in its `index.json`). A failed export fails the build
//! unless `ignore-error=true` (then a warning), as in buildx.
//!
//! # Import (`--cache-from`)
//!
//! Before the build (skipped with `--no-cache`). The manifest and the records blob
//! are fetched and verified; the records join the build's cache
//! ([`Cache::with_imported`]) and their layer blobs are fetched lazily, when a
//! step hits. Cache mounts are fetched now, verified, and unpacked into
//! `<store>/cache-mounts/<sha256 of id>/` when no local copy exists (a local copy
//! wins). A missing cache (404) or any other import failure is a warning event,
//! never a build failure: the build just runs without that cache.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::sync::Arc;

use kiln_registry::{BlobStore, PushOptions, RawManifest, Reference, RegistryClient, StoreError};

use super::*;
use crate::cache::remote::error_chain;
use crate::cache::{
    self, BlobSource, CacheCompression, CacheExport, CacheImport, CacheLocation, CacheMode,
    ImportedRecords, UsedRecord,
};
use crate::frontend::dockerfile::{Mount, ResolvedBuild};

/// `artifactType` of a kiln cache manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.cache.v1+json";
/// Media type of the records blob.
pub const RECORDS_MEDIA_TYPE: &str = "application/vnd.kiln.cache.records.v1+json";
/// Media type of a gzip cache-mount tarball.
pub const MOUNT_MEDIA_TYPE_GZIP: &str = "application/vnd.kiln.cache.mount.v1.tar+gzip";
/// Media type of a zstd cache-mount tarball.
pub const MOUNT_MEDIA_TYPE_ZSTD: &str = "application/vnd.kiln.cache.mount.v1.tar+zstd";
/// Annotation on a cache-mount tarball: the mount's id.
pub const MOUNT_ID_ANNOTATION: &str = "dev.kiln.cache.mount.id";
/// Annotation on a cache-mount tarball: when the mount was first created.
pub const MOUNT_CREATED_ANNOTATION: &str = "dev.kiln.cache.mount.created";

const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_CONFIG: &[u8] = b"{}";
/// The name of the cache manifest in a `type=local` layout's `index.json`.
const LOCAL_REF_NAME: &str = "latest";
/// Records blobs larger than this are refused before downloading.
const MAX_RECORDS_SIZE: u64 = 64 * 1024 * 1024;

/// The records blob.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RecordsFile {
    version: u32,
    records: BTreeMap<Digest, Record>,
}

/// The registry client and runtime, made on first use (shared with base pulls).
pub(super) type ClientFn<'a> =
    dyn Fn() -> Result<(RegistryClient, Arc<tokio::runtime::Runtime>), Error> + 'a;

/// What the import learnt that the export can use.
#[derive(Debug, Default)]
pub(super) struct Imports {
    /// Layer blob → (registry, repository) it was imported from.
    origins: HashMap<Digest, (String, String)>,
}

pub use crate::cache_mounts::cache_mount_dir;

// ---------------------------------------------------------------------------
// Import

/// Reads every `--cache-from` of `request` (see the [module docs](self)) and returns
/// the build's cache.
pub(super) fn import(
    store: &Store,
    request: &BuildRequest,
    reporter: &Reporter,
    client: &ClientFn<'_>,
) -> Result<(Cache, Imports), Error> {
    let cache = Cache::new(store);
    let specs: Vec<CacheImport> = request
        .cache_from
        .iter()
        .map(|spec| CacheImport::parse(spec))
        .collect::<Result<_, _>>()?;
    let mut imports = Imports::default();
    if request.no_cache || specs.is_empty() {
        return Ok((cache, imports));
    }
    let mut records = ImportedRecords::new();
    for spec in &specs {
        let outcome = match &spec.location {
            CacheLocation::Registry(reference) => import_registry(
                store,
                reference,
                reporter,
                client,
                &mut records,
                &mut imports,
            ),
            CacheLocation::Local(dir) => import_local(store, dir, reporter, &mut records),
        };
        if let Err(error) = outcome {
            reporter.warn(format!(
                "cache {}: not imported: {}",
                spec.location,
                error_chain(&error)
            ));
        }
    }
    Ok((cache.with_imported(records, reporter), imports))
}

/// A parsed cache manifest: its records and where each blob is described.
struct Artifact {
    records: Vec<(Digest, Record)>,
    layers: HashMap<Digest, image::Descriptor>,
    mounts: Vec<image::Descriptor>,
}

fn parse_manifest(name: &str, bytes: &[u8], digest: &Digest) -> Result<Manifest, Error> {
    let manifest = Manifest::parse(bytes, digest)?;
    let found = manifest.artifact_type.clone().unwrap_or_default();
    if found != ARTIFACT_TYPE {
        return Err(cache::Error::NotACache {
            reference: name.to_owned(),
            found,
        }
        .into());
    }
    Ok(manifest)
}

fn records_descriptor<'m>(
    name: &str,
    manifest: &'m Manifest,
) -> Result<&'m image::Descriptor, Error> {
    manifest
        .layers
        .iter()
        .find(|l| l.media_type == RECORDS_MEDIA_TYPE)
        .ok_or_else(|| {
            cache::Error::BadManifest {
                reference: name.to_owned(),
                problem: "no records blob",
            }
            .into()
        })
}

/// Pairs the records with the manifest's layer descriptors; records whose layer the
/// manifest does not list cannot be fetched and are dropped.
fn artifact(name: &str, manifest: &Manifest, records_bytes: &[u8]) -> Result<Artifact, Error> {
    let file: RecordsFile =
        serde_json::from_slice(records_bytes).map_err(|source| cache::Error::Json {
            reference: name.to_owned(),
            what: "the records blob",
            source,
        })?;
    let layers: HashMap<Digest, image::Descriptor> = manifest
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.clone()))
        .collect();
    let records = file
        .records
        .into_iter()
        .filter(|(_, record)| {
            record.layer.as_ref().is_none_or(|layer| {
                layers
                    .get(&layer.digest)
                    .is_some_and(|d| d.size == layer.size)
            })
        })
        .collect();
    let mounts = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == MOUNT_MEDIA_TYPE_GZIP || l.media_type == MOUNT_MEDIA_TYPE_ZSTD)
        .cloned()
        .collect();
    Ok(Artifact {
        records,
        layers,
        mounts,
    })
}

fn to_registry_digest(digest: &Digest) -> kiln_registry::Digest {
    kiln_registry::digest::parse_digest(&digest.to_string()).expect("kiln digests are valid")
}

fn to_oci_descriptor(descriptor: &image::Descriptor) -> oci_spec::image::Descriptor {
    oci_spec::image::Descriptor::new(
        descriptor.media_type.as_str().into(),
        descriptor.size,
        to_registry_digest(&descriptor.digest),
    )
}

fn registry_error<'a>(
    reference: &'a str,
    operation: &'static str,
) -> impl FnOnce(kiln_registry::Error) -> Error + 'a {
    move |source| {
        cache::Error::Registry {
            reference: reference.to_owned(),
            operation,
            source: Box::new(source),
        }
        .into()
    }
}

fn parse_reference(reference: &str) -> Result<Reference, Error> {
    Reference::parse(reference).map_err(|source| Error::Reference {
        reference: reference.to_owned(),
        source,
    })
}

/// Layer blobs of a registry cache, fetched on demand.
#[derive(Debug)]
struct RegistryBlobs {
    name: String,
    reference: Reference,
    client: RegistryClient,
    runtime: Arc<tokio::runtime::Runtime>,
    layers: HashMap<Digest, image::Descriptor>,
}

impl BlobSource for RegistryBlobs {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch(&self, layer: &cache::CachedLayer, store: &Store) -> Result<(), cache::Error> {
        let descriptor = self.layers.get(&layer.digest).map_or_else(
            || {
                oci_spec::image::Descriptor::new(
                    layer.media_type.as_str().into(),
                    layer.size,
                    to_registry_digest(&layer.digest),
                )
            },
            to_oci_descriptor,
        );
        self.runtime
            .block_on(self.client.fetch_blob(
                &self.reference,
                &descriptor,
                &StoreAdapter(store.clone()),
            ))
            .map(|_| ())
            .map_err(|source| cache::Error::Registry {
                reference: self.name.clone(),
                operation: "fetching a layer",
                source: Box::new(source),
            })
    }
}

fn import_registry(
    store: &Store,
    name: &str,
    reporter: &Reporter,
    client: &ClientFn<'_>,
    records: &mut ImportedRecords,
    imports: &mut Imports,
) -> Result<(), Error> {
    let reference = parse_reference(name)?;
    let (client, runtime) = client()?;
    let raw = match runtime.block_on(client.get_manifest(&reference)) {
        Ok(raw) => raw,
        Err(kiln_registry::Error::NotFound { .. }) => {
            reporter.warn(format!(
                "cache {name} not found; building without it (it is created by --cache-to)"
            ));
            return Ok(());
        }
        Err(e) => return Err(registry_error(name, "fetching the cache manifest")(e)),
    };
    let digest: Digest = raw
        .digest
        .to_string()
        .parse()
        .map_err(|_| cache::Error::BadManifest {
            reference: name.to_owned(),
            problem: "its digest is not sha256",
        })?;
    let manifest = parse_manifest(name, &raw.bytes, &digest)?;
    let records_blob = records_descriptor(name, &manifest)?;
    let records_bytes = runtime
        .block_on(client.fetch_blob_bytes(
            &reference,
            &to_oci_descriptor(records_blob),
            MAX_RECORDS_SIZE,
        ))
        .map_err(registry_error(name, "fetching the records"))?;
    let artifact = artifact(name, &manifest, &records_bytes)?;
    for layer in artifact.layers.keys() {
        imports.origins.insert(
            layer.clone(),
            (
                reference.registry().to_owned(),
                reference.repository().to_owned(),
            ),
        );
    }
    let mut unpacked = 0;
    for mount in &artifact.mounts {
        let fetched = |dir: &Path| -> Result<PathBuf, Error> {
            let layout =
                kiln_registry::OciDir::create(dir).map_err(|source| cache::Error::Layout {
                    location: dir.to_owned(),
                    source,
                })?;
            runtime
                .block_on(client.fetch_blob(&reference, &to_oci_descriptor(mount), &layout))
                .map_err(registry_error(name, "fetching a cache mount"))?;
            Ok(layout.blob_path(&to_registry_digest(&mount.digest)))
        };
        if import_mount(store, name, mount, fetched)? {
            unpacked += 1;
        }
    }
    let count = artifact.records.len();
    let source = Arc::new(RegistryBlobs {
        name: name.to_owned(),
        reference,
        client,
        runtime,
        layers: artifact.layers,
    });
    records.add(source, artifact.records);
    reporter.notice(format!(
        "cache {name}: {count} records imported, {unpacked} cache mounts restored"
    ));
    Ok(())
}

/// Layer blobs of a `type=local` cache, copied on demand.
#[derive(Debug)]
struct LocalBlobs {
    name: String,
    layout: kiln_registry::OciDir,
}

impl BlobSource for LocalBlobs {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch(&self, layer: &cache::CachedLayer, store: &Store) -> Result<(), cache::Error> {
        let path = self.layout.blob_path(&to_registry_digest(&layer.digest));
        let io_error = |source| cache::Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io_error)?;
        let store_error = |what: &str| {
            let what = format!("{what} {}", layer.digest);
            let reference = self.name.clone();
            move |source| cache::Error::Store {
                reference,
                what,
                source,
            }
        };
        let mut writer = store.blob_writer().map_err(store_error("storing"))?;
        io::copy(&mut file, &mut writer).map_err(io_error)?;
        writer
            .commit(Some(&layer.digest), Some(layer.size))
            .map_err(store_error("verifying"))?;
        Ok(())
    }
}

/// Reads a small blob of a local layout, verified against its digest.
fn read_local_blob(
    layout: &kiln_registry::OciDir,
    digest: &Digest,
    name: &str,
) -> Result<Vec<u8>, Error> {
    let path = layout.blob_path(&to_registry_digest(digest));
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    if Digest::of(&bytes) != *digest {
        return Err(cache::Error::BadManifest {
            reference: name.to_owned(),
            problem: "a blob does not match its digest",
        }
        .into());
    }
    Ok(bytes)
}

fn import_local(
    store: &Store,
    dir: &Path,
    reporter: &Reporter,
    records: &mut ImportedRecords,
) -> Result<(), Error> {
    let name = dir.display().to_string();
    let layout_error = |source| cache::Error::Layout {
        location: dir.to_owned(),
        source,
    };
    if !dir.join("index.json").is_file() {
        reporter.warn(format!(
            "cache {name} not found; building without it (it is created by --cache-to)"
        ));
        return Ok(());
    }
    let layout = kiln_registry::OciDir::open(dir).map_err(layout_error)?;
    let top = layout
        .resolve(Some(LOCAL_REF_NAME))
        .or_else(|_| layout.resolve(None))
        .map_err(layout_error)?;
    let digest: Digest =
        top.digest()
            .to_string()
            .parse()
            .map_err(|_| cache::Error::BadManifest {
                reference: name.clone(),
                problem: "its digest is not sha256",
            })?;
    let manifest_bytes = read_local_blob(&layout, &digest, &name)?;
    let manifest = parse_manifest(&name, &manifest_bytes, &digest)?;
    let records_bytes = read_local_blob(
        &layout,
        &records_descriptor(&name, &manifest)?.digest,
        &name,
    )?;
    let artifact = artifact(&name, &manifest, &records_bytes)?;
    let mut unpacked = 0;
    for mount in &artifact.mounts {
        let path = layout.blob_path(&to_registry_digest(&mount.digest));
        if import_mount(store, &name, mount, |_| Ok(path.clone()))? {
            unpacked += 1;
        }
    }
    let count = artifact.records.len();
    records.add(
        Arc::new(LocalBlobs {
            name: name.clone(),
            layout,
        }),
        artifact.records,
    );
    reporter.notice(format!(
        "cache {name}: {count} records imported, {unpacked} cache mounts restored"
    ));
    Ok(())
}

/// Restores one cache mount unless the store has it; `fetch` puts the tarball in
/// the given scratch dir (or names where it already is) and returns its path. The
/// tarball is verified against its digest while it is unpacked; returns whether the
/// mount was restored.
fn import_mount(
    store: &Store,
    name: &str,
    mount: &image::Descriptor,
    fetch: impl FnOnce(&Path) -> Result<PathBuf, Error>,
) -> Result<bool, Error> {
    let annotations = mount.annotations.clone().unwrap_or_default();
    let id = annotations
        .get(MOUNT_ID_ANNOTATION)
        .cloned()
        .ok_or_else(|| cache::Error::BadManifest {
            reference: name.to_owned(),
            problem: "a cache mount has no id annotation",
        })?;
    let dest = cache_mount_dir(store, &id);
    if dest.exists() {
        return Ok(false);
    }
    let parent = dest.parent().expect("cache mount dirs have a parent");
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let scratch = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    let download = scratch.path().join("download");
    fs::create_dir(&download).map_err(io_err(&download))?;
    let tarball = fetch(&download)?;
    // Verify the whole blob before unpacking anything from it.
    let mut file = File::open(&tarball).map_err(io_err(&tarball))?;
    let mut hashing = crate::digest::HashingWriter::new(io::sink());
    io::copy(&mut file, &mut hashing).map_err(io_err(&tarball))?;
    let (_, actual, size) = hashing.finish();
    if actual != mount.digest || size != mount.size {
        return Err(cache::Error::BadMount {
            reference: name.to_owned(),
            id,
            problem: "the tarball does not match its digest",
        }
        .into());
    }
    let staged = scratch.path().join("mount");
    let file = File::open(&tarball).map_err(io_err(&tarball))?;
    crate::layer::unpack_layer(
        io::BufReader::new(file),
        &staged,
        &crate::layer::ApplyOptions::flatten(None),
    )
    .map_err(|source| cache::Error::MountArchive {
        path: staged.clone(),
        source,
    })?;
    let now = rfc3339(now_secs());
    let created = annotations
        .get(MOUNT_CREATED_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| now.clone());
    let meta = serde_json::json!({ "id": id, "created": created, "last_used": now });
    let meta_path = staged.join("meta.json");
    fs::write(&meta_path, serde_json::to_vec(&meta).expect("json")).map_err(io_err(&meta_path))?;
    match fs::rename(&staged, &dest) {
        Ok(()) => Ok(true),
        // Another build restored or created it meanwhile: theirs stays.
        Err(_) if dest.exists() => Ok(false),
        Err(e) => Err(io_err(&dest)(e)),
    }
}

// ---------------------------------------------------------------------------
// Export

/// Writes every `--cache-to` of the build (see the [module docs](self)).
pub(super) fn export(
    shared: &Shared<'_>,
    resolved: &ResolvedBuild,
    target_index: usize,
    imports: &Imports,
    client: &ClientFn<'_>,
) -> Result<(), Error> {
    let specs: Vec<CacheExport> = shared
        .request
        .cache_to
        .iter()
        .map(|spec| CacheExport::parse(spec))
        .collect::<Result<_, _>>()?;
    if specs.is_empty() {
        return Ok(());
    }
    let used = shared.cache.used();
    for spec in &specs {
        match export_one(shared, resolved, target_index, imports, client, spec, &used) {
            Ok(message) => shared.reporter.notice(message),
            Err(error) if spec.ignore_error => shared.reporter.warn(format!(
                "cache {}: not exported: {}",
                spec.location,
                error_chain(&error)
            )),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The stages whose steps are in the final image: the target and its `FROM` chain.
fn image_stages(resolved: &ResolvedBuild, target_index: usize) -> BTreeSet<usize> {
    let mut stages = BTreeSet::new();
    let mut next = Some(target_index);
    while let Some(index) = next {
        if !stages.insert(index) {
            break;
        }
        next = match resolved.stage(index).map(|s| &s.base) {
            Some(Base::Stage(base)) => Some(*base),
            _ => None,
        };
    }
    stages
}

/// The records an export of `mode` covers, by key.
fn select_records(
    used: &[UsedRecord],
    mode: CacheMode,
    image_stages: &BTreeSet<usize>,
) -> BTreeMap<Digest, Record> {
    used.iter()
        .filter(|u| match mode {
            CacheMode::Max => true,
            CacheMode::Min => u.stage.is_some_and(|s| image_stages.contains(&s)),
        })
        .map(|u| (u.key.clone(), u.record.clone()))
        .collect()
}

/// The ids of the cache mounts the build's RUN steps use.
fn mount_ids(resolved: &ResolvedBuild) -> BTreeSet<String> {
    resolved
        .stages
        .iter()
        .flat_map(|stage| &stage.steps)
        .filter_map(|step| match &step.instruction {
            ResolvedInstruction::Run(run) => Some(&run.mounts),
            _ => None,
        })
        .flatten()
        .filter_map(|mount| match mount {
            Mount::Cache(cache) => Some(cache.id.clone()),
            _ => None,
        })
        .collect()
}

/// A blob the export made (not a store blob).
#[derive(Debug)]
enum ExtraBlob {
    Memory(Vec<u8>),
    File(PathBuf),
}

/// The blobs of a cache artifact: step layers from the store, the rest made here.
#[derive(Debug)]
struct ArtifactBlobs {
    store: StoreAdapter,
    extra: HashMap<String, ExtraBlob>,
}

impl BlobStore for ArtifactBlobs {
    fn has(&self, digest: &kiln_registry::Digest) -> Result<bool, StoreError> {
        Ok(self.extra.contains_key(&digest.to_string()) || self.store.has(digest)?)
    }

    fn begin_write(
        &self,
        digest: &kiln_registry::Digest,
        _size: u64,
    ) -> Result<Box<dyn kiln_registry::BlobWriter>, StoreError> {
        Err(StoreError::Io {
            operation: "writing into an export source",
            path: PathBuf::from(digest.to_string()),
            source: io::Error::from(io::ErrorKind::Unsupported),
        })
    }

    fn open(
        &self,
        digest: &kiln_registry::Digest,
    ) -> Result<Box<dyn kiln_registry::BlobReader>, StoreError> {
        match self.extra.get(&digest.to_string()) {
            Some(ExtraBlob::Memory(bytes)) => Ok(Box::new(io::Cursor::new(bytes.clone()))),
            Some(ExtraBlob::File(path)) => File::open(path)
                .map(|f| Box::new(f) as Box<dyn kiln_registry::BlobReader>)
                .map_err(|source| StoreError::Io {
                    operation: "opening",
                    path: path.clone(),
                    source,
                }),
            None => self.store.open(digest),
        }
    }
}

/// The artifact for one export: manifest bytes and where every blob is.
struct Built {
    manifest: Vec<u8>,
    blobs: ArtifactBlobs,
    records: usize,
    layers: usize,
    mounts: usize,
    // Holds the mount tarballs until the export is done.
    _scratch: Option<tempfile::TempDir>,
}

fn build_artifact(
    shared: &Shared<'_>,
    resolved: &ResolvedBuild,
    target_index: usize,
    spec: &CacheExport,
    used: &[UsedRecord],
) -> Result<Built, Error> {
    let store = shared.store;
    let records = select_records(used, spec.mode, &image_stages(resolved, target_index));
    // A record whose blob left the store cannot be served; leave it out.
    let records: BTreeMap<Digest, Record> = records
        .into_iter()
        .filter(|(_, r)| r.layer.as_ref().is_none_or(|l| store.has_blob(&l.digest)))
        .collect();
    let mut extra = HashMap::new();
    let records_bytes = serde_json::to_vec(&RecordsFile {
        version: 1,
        records: records.clone(),
    })
    .expect("records serialise");
    let records_descriptor = image::Descriptor {
        media_type: RECORDS_MEDIA_TYPE.into(),
        digest: Digest::of(&records_bytes),
        size: records_bytes.len() as u64,
        annotations: None,
        platform: None,
        artifact_type: None,
    };
    extra.insert(
        records_descriptor.digest.to_string(),
        ExtraBlob::Memory(records_bytes),
    );
    let config = image::Descriptor {
        media_type: EMPTY_MEDIA_TYPE.into(),
        digest: Digest::of(EMPTY_CONFIG),
        size: EMPTY_CONFIG.len() as u64,
        annotations: None,
        platform: None,
        artifact_type: None,
    };
    extra.insert(
        config.digest.to_string(),
        ExtraBlob::Memory(EMPTY_CONFIG.to_vec()),
    );

    let mut layers = vec![records_descriptor];
    let mut seen = BTreeSet::new();
    for layer in records.values().filter_map(|r| r.layer.as_ref()) {
        if seen.insert(layer.digest.clone()) {
            layers.push(image::Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size,
                annotations: None,
                platform: None,
                artifact_type: None,
            });
        }
    }
    let step_layers = seen.len();

    let mut scratch = None;
    let mut mounts = 0;
    if spec.mode == CacheMode::Max {
        for id in mount_ids(resolved) {
            let dir = cache_mount_dir(store, &id);
            if !dir.join(crate::cache_mounts::DATA_DIR).is_dir() {
                continue;
            }
            if scratch.is_none() {
                let tmp = store.root().join("tmp");
                scratch = Some(
                    tempfile::Builder::new()
                        .prefix("cache-export-")
                        .tempdir_in(&tmp)
                        .map_err(io_err(&tmp))?,
                );
            }
            let scratch_dir = scratch.as_ref().expect("made above").path();
            let (descriptor, path) = write_mount(&dir, &id, spec.compression, scratch_dir)?;
            extra.insert(descriptor.digest.to_string(), ExtraBlob::File(path));
            layers.push(descriptor);
            mounts += 1;
        }
    }

    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(store::OCI_MANIFEST.into()),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config,
        layers,
        subject: None,
        annotations: None,
    };
    Ok(Built {
        manifest: manifest.to_bytes(),
        blobs: ArtifactBlobs {
            store: StoreAdapter(store.clone()),
            extra,
        },
        records: records.len(),
        layers: step_layers,
        mounts,
        _scratch: scratch,
    })
}

/// Writes the tarball of the cache mount in `dir` (its `data/`, nothing else) into
/// `scratch`.
fn write_mount(
    dir: &Path,
    id: &str,
    compression: CacheCompression,
    scratch: &Path,
) -> Result<(image::Descriptor, PathBuf), Error> {
    // Everything beside `data/` (meta.json, locks) stays local.
    let mut exclude = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_name() != crate::cache_mounts::DATA_DIR {
            exclude.push(PathBuf::from(entry.file_name()));
        }
    }
    let (layer_compression, media_type) = match compression {
        CacheCompression::Gzip => (crate::layer::Compression::gzip(), MOUNT_MEDIA_TYPE_GZIP),
        CacheCompression::Zstd => (crate::layer::Compression::zstd(), MOUNT_MEDIA_TYPE_ZSTD),
    };
    let options = crate::layer::WriteOptions {
        compression: layer_compression,
        exclude,
        ..Default::default()
    };
    let mut file = tempfile::NamedTempFile::new_in(scratch).map_err(io_err(scratch))?;
    let temp_path = file.path().to_owned();
    let (info, mut sink) =
        crate::layer::write_layer(dir, &options, io::BufWriter::new(file.as_file_mut())).map_err(
            |source| cache::Error::MountArchive {
                path: dir.to_owned(),
                source,
            },
        )?;
    sink.flush().map_err(io_err(&temp_path))?;
    drop(sink);
    let (_, path) = file.keep().map_err(|e| io_err(scratch)(e.error))?;
    let mut annotations = BTreeMap::new();
    annotations.insert(MOUNT_ID_ANNOTATION.to_owned(), id.to_owned());
    if let Some(created) = fs::read(dir.join("meta.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("created").and_then(|c| c.as_str()).map(str::to_owned))
    {
        annotations.insert(MOUNT_CREATED_ANNOTATION.to_owned(), created);
    }
    Ok((
        image::Descriptor {
            media_type: media_type.into(),
            digest: info.digest,
            size: info.size,
            annotations: Some(annotations),
            platform: None,
            artifact_type: None,
        },
        path,
    ))
}

fn export_one(
    shared: &Shared<'_>,
    resolved: &ResolvedBuild,
    target_index: usize,
    imports: &Imports,
    client: &ClientFn<'_>,
    spec: &CacheExport,
    used: &[UsedRecord],
) -> Result<String, Error> {
    let built = build_artifact(shared, resolved, target_index, spec, used)?;
    let summary = format!(
        "{} records, {} layers, {} cache mounts",
        built.records, built.layers, built.mounts
    );
    match &spec.location {
        CacheLocation::Registry(name) => {
            let reference = parse_reference(name)?;
            let (client, runtime) = client()?;
            let manifest = RawManifest::new(built.manifest.clone(), Some(store::OCI_MANIFEST));
            let mut options = PushOptions::default();
            for (digest, (registry, repository)) in &imports.origins {
                if registry == reference.registry() && repository != reference.repository() {
                    options
                        .mount_from
                        .insert(to_registry_digest(digest), repository.clone());
                }
            }
            let report = runtime
                .block_on(client.push(&reference, &manifest, &built.blobs, &options))
                .map_err(registry_error(name, "pushing the cache"))?;
            Ok(format!(
                "cache exported to {name} ({summary}; {} blobs uploaded, {} already there, {} mounted)",
                report.stats.blobs_uploaded, report.stats.blobs_skipped, report.stats.blobs_mounted
            ))
        }
        CacheLocation::Local(dir) => {
            export_local(dir, &built)?;
            Ok(format!("cache exported to {} ({summary})", dir.display()))
        }
    }
}

fn export_local(dir: &Path, built: &Built) -> Result<(), Error> {
    let layout_error = |source| cache::Error::Layout {
        location: dir.to_owned(),
        source,
    };
    let layout = if dir.join("index.json").is_file() {
        kiln_registry::OciDir::open(dir)
    } else {
        kiln_registry::OciDir::create(dir)
    }
    .map_err(layout_error)?;
    let manifest: Manifest = serde_json::from_slice(&built.manifest).expect("our own manifest");
    for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let digest = to_registry_digest(&descriptor.digest);
        if layout.has(&digest).map_err(layout_error)? {
            continue;
        }
        let mut reader = built.blobs.open(&digest).map_err(layout_error)?;
        let mut writer = layout
            .begin_write(&digest, descriptor.size)
            .map_err(layout_error)?;
        io::copy(&mut reader, &mut writer).map_err(|source| {
            layout_error(StoreError::Io {
                operation: "copying",
                path: PathBuf::from(digest.to_string()),
                source,
            })
        })?;
        writer.flush().map_err(|source| {
            layout_error(StoreError::Io {
                operation: "copying",
                path: PathBuf::from(digest.to_string()),
                source,
            })
        })?;
        writer.commit().map_err(layout_error)?;
    }
    let digest = Digest::of(&built.manifest);
    layout
        .put(&to_registry_digest(&digest), &built.manifest)
        .map_err(layout_error)?;
    let descriptor = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::ImageManifest,
        built.manifest.len() as u64,
        to_registry_digest(&digest),
    );
    layout
        .set_ref(LOCAL_REF_NAME, &descriptor)
        .map_err(layout_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(layer: Option<&str>) -> Record {
        Record {
            layer: layer.map(|l| cache::CachedLayer {
                digest: Digest::of(l.as_bytes()),
                diff_id: Digest::of(l.as_bytes()),
                size: l.len() as u64,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }),
            created: "2024-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn min_keeps_only_the_image_stages_records() {
        let used = vec![
            UsedRecord {
                stage: Some(0),
                key: Digest::of(b"builder step"),
                record: record(Some("builder layer")),
            },
            UsedRecord {
                stage: Some(1),
                key: Digest::of(b"final step"),
                record: record(Some("final layer")),
            },
            UsedRecord {
                stage: Some(2),
                key: Digest::of(b"final's base step"),
                record: record(None),
            },
        ];
        let stages: BTreeSet<usize> = [1, 2].into();
        let min = select_records(&used, CacheMode::Min, &stages);
        assert_eq!(min.keys().cloned().collect::<Vec<_>>(), {
            let mut keys = vec![Digest::of(b"final step"), Digest::of(b"final's base step")];
            keys.sort();
            keys
        });
        assert_eq!(select_records(&used, CacheMode::Max, &stages).len(), 3);
    }

    #[test]
    fn records_of_layers_the_manifest_lacks_are_dropped() {
        let kept = record(Some("listed"));
        let dropped = record(Some("not listed"));
        let file = RecordsFile {
            version: 1,
            records: [
                (Digest::of(b"a"), kept.clone()),
                (Digest::of(b"b"), dropped),
                (Digest::of(b"c"), record(None)),
            ]
            .into(),
        };
        let listed = kept.layer.clone().unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(store::OCI_MANIFEST.into()),
            artifact_type: Some(ARTIFACT_TYPE.into()),
            config: image::Descriptor {
                media_type: EMPTY_MEDIA_TYPE.into(),
                digest: Digest::of(EMPTY_CONFIG),
                size: 2,
                annotations: None,
                platform: None,
                artifact_type: None,
            },
            layers: vec![image::Descriptor {
                media_type: listed.media_type.clone(),
                digest: listed.digest.clone(),
                size: listed.size,
                annotations: None,
                platform: None,
                artifact_type: None,
            }],
            subject: None,
            annotations: None,
        };
        let artifact = artifact("x", &manifest, &serde_json::to_vec(&file).unwrap()).unwrap();
        let keys: BTreeSet<Digest> = artifact.records.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, [Digest::of(b"a"), Digest::of(b"c")].into());
    }

    #[test]
    fn foreign_artifacts_are_not_caches() {
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
        let err = parse_manifest("r", bytes, &Digest::of(bytes)).unwrap_err();
        assert!(matches!(err, Error::Cache(cache::Error::NotACache { .. })));
    }

    #[test]
    fn cache_mounts_round_trip_and_tampered_tarballs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let from = Store::open(dir.path().join("from")).unwrap();
        let mount = cache_mount_dir(&from, "apt");
        std::fs::create_dir_all(mount.join("data/archives")).unwrap();
        std::fs::write(mount.join("data/archives/pkg.deb"), b"package bytes").unwrap();
        std::fs::write(
            mount.join("meta.json"),
            br#"{"id":"apt","created":"2024-05-01T00:00:00Z","last_used":"2024-06-01T00:00:00Z"}"#,
        )
        .unwrap();
        std::fs::write(mount.join("lock"), b"").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let (descriptor, tarball) =
            write_mount(&mount, "apt", CacheCompression::Gzip, scratch.path()).unwrap();
        // Deterministic: the same dir gives the same blob (so it is not re-uploaded).
        let (again, _) =
            write_mount(&mount, "apt", CacheCompression::Gzip, scratch.path()).unwrap();
        assert_eq!(again.digest, descriptor.digest);
        assert_eq!(descriptor.media_type, MOUNT_MEDIA_TYPE_GZIP);

        let to = Store::open(dir.path().join("to")).unwrap();
        assert!(import_mount(&to, "test", &descriptor, |_| Ok(tarball.clone())).unwrap());
        let restored = cache_mount_dir(&to, "apt");
        assert_eq!(
            std::fs::read(restored.join("data/archives/pkg.deb")).unwrap(),
            b"package bytes"
        );
        assert!(!restored.join("lock").exists());
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(restored.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["id"], "apt");
        assert_eq!(meta["created"], "2024-05-01T00:00:00Z");
        // A local copy wins over the imported one.
        assert!(!import_mount(&to, "test", &descriptor, |_| Ok(tarball.clone())).unwrap());

        // Other bytes under the same descriptor: refused, nothing restored.
        let mut bytes = std::fs::read(&tarball).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let tampered = scratch.path().join("tampered");
        std::fs::write(&tampered, &bytes).unwrap();
        let other = Store::open(dir.path().join("other")).unwrap();
        let err = import_mount(&other, "test", &descriptor, |_| Ok(tampered.clone())).unwrap_err();
        assert!(
            matches!(err, Error::Cache(cache::Error::BadMount { .. })),
            "{err:?}"
        );
        assert!(!cache_mount_dir(&other, "apt").exists());
        let leftovers: Vec<_> = std::fs::read_dir(other.root().join("cache-mounts"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
