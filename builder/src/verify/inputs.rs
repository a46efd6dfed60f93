//! The images and inputs of a verification: the published image and what its
//! build recorded, the merged inputs of the rebuild, and builds into fresh stores.
//!
//! Recorded inputs come from the published image's SBOM (the CycloneDX
//! referrer kiln pushes; the referrers API or its `sha256-<hex>` tag fallback
//! on a registry, `referrers/` in a kiln store or layout): `metadata.properties`
//! `kiln:build-arg:NAME`, `kiln:source-date-epoch`, `kiln:target`,
//! `kiln:base:NAME` and `kiln:dockerfile:digest`. Without an SBOM (or without
//! `kiln:source-date-epoch` in it) the config's `created` stands in for
//! `SOURCE_DATE_EPOCH`. The manifest gives the media types (`oci`/`docker`), the
//! layers' media types the compression, the config the platform.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Error, Input};
use crate::build::sbom::{self, SBOM_ARTIFACT_TYPE, SbomSource};
use crate::build::{
    self, BuildOutput, BuildRequest, Compression, DockerfileSource, ExtraContext, ImageInfo,
};
use crate::digest::Digest;
use crate::executor::CancelToken;
use crate::image::{self, Format, Manifest};
use crate::platform::Platform;
use crate::progress::Reporter;
use crate::store::Store;

/// Where the published image is, as `kiln verify --against` names it.
pub type PublishedSource = SbomSource;

/// The image to verify against.
#[derive(Debug, Clone)]
pub struct Published {
    /// How the user named it.
    pub label: String,
    pub info: ImageInfo,
    /// The store (or layout) holding its blobs.
    pub blobs: Store,
    /// Its manifest's media type.
    pub media_type: String,
    pub recorded: Recorded,
}

/// What the published image says about its build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Digest of the SBOM document found, if any.
    pub sbom: Option<Digest>,
    pub source_date_epoch: Option<i64>,
    /// The config's `created`, in Unix seconds.
    pub created: Option<i64>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// Images the Dockerfile names → `reference@sha256:…` used.
    pub pinned_images: BTreeMap<String, String>,
    pub dockerfile_digest: Option<String>,
}

impl Recorded {
    /// Reads the inputs from a CycloneDX document's `metadata.properties`.
    fn from_document(document: &serde_json::Value, digest: Digest) -> Recorded {
        let mut recorded = Recorded {
            sbom: Some(digest),
            ..Recorded::default()
        };
        let properties = document["metadata"]["properties"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for property in properties {
            let (Some(name), Some(value)) = (property["name"].as_str(), property["value"].as_str())
            else {
                continue;
            };
            let value = value.to_owned();
            if let Some(arg) = name.strip_prefix("kiln:build-arg:") {
                recorded.build_args.insert(arg.to_owned(), value);
            } else if let Some(image) = name.strip_prefix("kiln:base:") {
                recorded.pinned_images.insert(image.to_owned(), value);
            } else {
                match name {
                    "kiln:source-date-epoch" => recorded.source_date_epoch = value.parse().ok(),
                    "kiln:target" => recorded.target = Some(value),
                    "kiln:dockerfile:digest" => recorded.dockerfile_digest = Some(value),
                    _ => {}
                }
            }
        }
        recorded
    }
}

/// Fetches the image `source` names for `platform` (see the module docs):
/// a registry reference is always asked of its registry (pulled into `store`,
/// every blob verified; blobs already there are not fetched again), so a stale
/// local copy is never what is verified.
pub fn published(
    store: &Store,
    source: &PublishedSource,
    platform: &Platform,
    insecure_registries: &[String],
) -> Result<Published, Error> {
    match source {
        SbomSource::Reference(reference) => {
            let made = build::registry_client(insecure_registries)?;
            let client = || -> Result<_, build::Error> { Ok(made.clone()) };
            let descriptor = build::pull_image(store, reference, platform, &client)?;
            let info = build::image_from_store(store, reference, &descriptor, platform)?;
            let (registry, runtime) = made;
            let mut document =
                registry_sbom(&registry, &runtime, reference, &info.manifest_digest)?;
            if document.is_none() {
                document = store_sbom(store, &info.manifest_digest)?;
            }
            finish(reference.clone(), info, store.clone(), document)
        }
        SbomSource::Layout { path, name } => {
            let (info, layout, _) = sbom::layout_image(path, name.as_deref(), platform)?;
            let mut document = store_sbom(&layout, &info.manifest_digest)?;
            if document.is_none() {
                document = store_sbom(store, &info.manifest_digest)?;
            }
            let label = match name {
                Some(name) => format!("oci:{}:{name}", path.display()),
                None => format!("oci:{}", path.display()),
            };
            finish(label, info, layout, document)
        }
    }
}

fn finish(
    label: String,
    info: ImageInfo,
    blobs: Store,
    document: Option<(Digest, Vec<u8>)>,
) -> Result<Published, Error> {
    let manifest = Manifest::parse(
        &blobs.read_blob(&info.manifest_digest)?,
        &info.manifest_digest,
    )?;
    let mut recorded = match document {
        Some((digest, bytes)) => {
            let parsed: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|source| Error::BadSbom {
                    reference: label.clone(),
                    document: digest.to_string(),
                    source,
                })?;
            Recorded::from_document(&parsed, digest)
        }
        None => Recorded::default(),
    };
    recorded.created = info.config.created.as_deref().and_then(sbom::parse_rfc3339);
    Ok(Published {
        label,
        media_type: manifest
            .media_type
            .unwrap_or_else(|| image::OCI_MANIFEST.to_owned()),
        info,
        blobs,
        recorded,
    })
}

/// The SBOM document kept in `store` as a referrer of `subject`, if any.
fn store_sbom(store: &Store, subject: &Digest) -> Result<Option<(Digest, Vec<u8>)>, Error> {
    let found = sbom::referrers(store, subject)?
        .into_iter()
        .find(|referrer| referrer.artifact_type.as_deref() == Some(SBOM_ARTIFACT_TYPE));
    match found {
        Some(manifest) => {
            let document = sbom::read_document(store, &manifest)?;
            Ok(Some((Digest::of(&document), document)))
        }
        None => Ok(None),
    }
}

/// The SBOM document the registry lists as a referrer of `subject`, if any.
fn registry_sbom(
    client: &kiln_registry::RegistryClient,
    runtime: &Arc<tokio::runtime::Runtime>,
    reference: &str,
    subject: &Digest,
) -> Result<Option<(Digest, Vec<u8>)>, Error> {
    let referrer_error = |source: kiln_registry::Error| Error::Referrer {
        reference: reference.to_owned(),
        subject: subject.clone(),
        source: Box::new(source),
    };
    let repository = kiln_registry::Reference::parse(reference).map_err(|source| {
        Error::from(build::Error::Reference {
            reference: reference.to_owned(),
            source,
        })
    })?;
    let registry_subject: kiln_registry::Digest = subject
        .to_string()
        .parse()
        .expect("a sha256 digest is a registry digest");
    let listed = runtime
        .block_on(client.referrers(&repository, &registry_subject, Some(SBOM_ARTIFACT_TYPE)))
        .map_err(referrer_error)?;
    let Some(first) = listed.first() else {
        return Ok(None);
    };
    let artifact = runtime
        .block_on(client.get_manifest(&repository.with_digest(first.digest().clone())))
        .map_err(referrer_error)?;
    let artifact = artifact
        .image_manifest(&format!("the SBOM referrer of {subject}"))
        .map_err(referrer_error)?;
    let Some(layer) = artifact
        .layers()
        .iter()
        .find(|layer| layer.media_type().to_string() == SBOM_ARTIFACT_TYPE)
    else {
        return Ok(None);
    };
    let bytes = runtime
        .block_on(client.fetch_blob_bytes(&repository, layer, 64 << 20))
        .map_err(referrer_error)?;
    Ok(Some((Digest::of(&bytes), bytes.to_vec())))
}

/// Which of the rebuild's inputs the user gave explicitly (they win over
/// recorded values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    pub source_date_epoch: bool,
    pub target: bool,
    pub format: bool,
    pub compression: bool,
    pub platform: bool,
}

/// Completes `request` for a rebuild of `published`: what the user gave wins,
/// then what the published image recorded; returns every input with its
/// origin. Bases are pinned by naming each recorded image as a
/// `docker-image://` build context, unless the user named that context.
pub fn rebuild_inputs(
    request: &mut BuildRequest,
    given: Given,
    published: &Published,
) -> Vec<Input> {
    let recorded = &published.recorded;
    let mut inputs = Vec::new();
    let input = |name: &str, value: String, from: &str| Input {
        name: name.to_owned(),
        value,
        from: from.to_owned(),
    };
    // SOURCE_DATE_EPOCH
    let (epoch, from) = match (request.source_date_epoch, given.source_date_epoch) {
        (Some(epoch), true) => (Some(epoch), "flag"),
        _ => match (recorded.source_date_epoch, recorded.created) {
            (Some(epoch), _) => (Some(epoch), "sbom"),
            (None, Some(created)) => (Some(created), "config"),
            (None, None) => (None, "default"),
        },
    };
    request.source_date_epoch = epoch;
    inputs.push(input(
        "SOURCE_DATE_EPOCH",
        epoch.map_or_else(|| "unset".to_owned(), |e| e.to_string()),
        from,
    ));
    // Build args: the recorded ones, each replaced by the user's.
    let user_args = request.build_args.clone();
    for (name, value) in &recorded.build_args {
        request
            .build_args
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
    for (name, value) in &request.build_args {
        let from = if user_args.contains_key(name) {
            "flag"
        } else {
            "sbom"
        };
        inputs.push(input(&format!("build-arg {name}"), value.clone(), from));
    }
    // Target.
    if !given.target && request.target.is_none() {
        request.target = recorded.target.clone();
    }
    if let Some(target) = &request.target {
        let from = if given.target { "flag" } else { "sbom" };
        inputs.push(input("target", target.clone(), from));
    }
    // Bases, pinned to the recorded digests.
    for (name, pinned) in &recorded.pinned_images {
        if let Some(ExtraContext::Image(chosen)) = request.extra_contexts.get(name) {
            inputs.push(input(&format!("base {name}"), chosen.clone(), "flag"));
            continue;
        }
        if request.extra_contexts.contains_key(name) {
            continue;
        }
        request
            .extra_contexts
            .insert(name.clone(), ExtraContext::Image(pinned.clone()));
        inputs.push(input(&format!("base {name}"), pinned.clone(), "sbom"));
    }
    // Media types, compression and platform, as published.
    if !given.format {
        request.format = if published.media_type == image::DOCKER_MANIFEST {
            Format::Docker
        } else {
            Format::Oci
        };
    }
    inputs.push(input(
        "format",
        match request.format {
            Format::Oci => "oci",
            Format::Docker => "docker",
        }
        .to_owned(),
        if given.format { "flag" } else { "manifest" },
    ));
    if !given.compression {
        let zstd = published
            .info
            .layers
            .iter()
            .any(|layer| layer.media_type.ends_with("zstd"));
        request.compression = if zstd {
            Compression::Zstd
        } else {
            Compression::Gzip
        };
    }
    inputs.push(input(
        "compression",
        match request.compression {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
        .to_owned(),
        if given.compression {
            "flag"
        } else {
            "manifest"
        },
    ));
    if !given.platform {
        let config = &published.info.config;
        request.platform = Some(
            Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
            }
            .normalized(),
        );
    }
    if let Some(platform) = &request.platform {
        let from = if given.platform { "flag" } else { "config" };
        inputs.push(input("platform", platform.to_string(), from));
    }
    inputs
}

/// `SOURCE_DATE_EPOCH` for `kiln verify --twice` when the user gave none: the
/// context's last git commit time, else 0. Returns the value and its origin.
pub fn default_source_date_epoch(request: &BuildRequest) -> (i64, &'static str) {
    match crate::tags::git_commit_time(&request.context) {
        Some(time) => (time, "git"),
        None => (0, "default"),
    }
}

/// The digest of the Dockerfile `request` builds (to compare with a recorded one).
pub fn dockerfile_digest(request: &BuildRequest) -> Result<Digest, Error> {
    match &request.dockerfile {
        DockerfileSource::Path(path) => std::fs::read(path)
            .map(|bytes| Digest::of(&bytes))
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            }),
        DockerfileSource::Inline { text, .. } => Ok(Digest::of(text.as_bytes())),
    }
}

/// A build made by [`isolated_build`]; its store is removed on drop.
#[derive(Debug)]
pub struct IsolatedBuild {
    pub output: BuildOutput,
    pub store: Store,
    dir: PathBuf,
    /// Removing the build's snapshots, which nothing reads after the build
    /// (the comparison reads blobs): it overlaps the next build and the diff.
    removing_snapshots: Option<std::thread::JoinHandle<()>>,
}

impl Drop for IsolatedBuild {
    fn drop(&mut self) {
        if let Some(removing) = self.removing_snapshots.take() {
            let _ = removing.join();
        }
        crate::snapshot::remove_tree(&self.dir);
    }
}

/// Builds `request` into a fresh, empty store (a directory under `main`'s
/// `tmp/`, so blobs hard-link), with no cache, no tags and no SBOM; base images
/// are found in (or pulled into) `main` and linked in, their layers unpacked
/// in `main`'s snapshots. The fresh store's own snapshots are removed in the
/// background as soon as the build is done; the rest when the result drops.
pub fn isolated_build(
    main: &Store,
    request: &BuildRequest,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<IsolatedBuild, Error> {
    let tmp = main.root().join("tmp");
    let dir = tempfile::Builder::new()
        .prefix("verify-")
        .tempdir_in(&tmp)
        .map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?
        .keep();
    let guard = RemoveOnError(Some(dir.clone()));
    let store = Store::open(&dir)?;
    let mut request = request.clone();
    request.no_cache = true;
    request.sbom = false;
    request.tags.clear();
    request.cache_from.clear();
    request.cache_to.clear();
    request.base_store = Some(main.clone());
    let output = build::build(&store, &request, reporter, cancel)?;
    guard.disarm();
    let snapshots = dir.join("snapshots");
    let removing_snapshots = std::thread::Builder::new()
        .name("verify-cleanup".to_owned())
        .spawn(move || crate::snapshot::remove_tree(&snapshots))
        .ok();
    Ok(IsolatedBuild {
        output,
        store,
        dir,
        removing_snapshots,
    })
}

/// Removes the fresh store of a build that failed.
struct RemoveOnError(Option<PathBuf>);

impl RemoveOnError {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnError {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            crate::snapshot::remove_tree(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;

    fn published(recorded: Recorded, media_type: &str) -> Published {
        Published {
            label: "localhost:5000/app:1".to_owned(),
            info: ImageInfo {
                reference: "localhost:5000/app:1".to_owned(),
                manifest_digest: Digest::of(b"m"),
                config: ImageConfig {
                    os: "linux".to_owned(),
                    architecture: "amd64".to_owned(),
                    ..ImageConfig::default()
                },
                layers: Vec::new(),
            },
            blobs: Store::open(tempfile::tempdir().unwrap().keep()).unwrap(),
            media_type: media_type.to_owned(),
            recorded,
        }
    }

    #[test]
    fn recorded_inputs_are_read_from_the_sbom_properties() {
        let document = serde_json::json!({"metadata": {"properties": [
            {"name": "kiln:build-arg:V", "value": "1"},
            {"name": "kiln:source-date-epoch", "value": "1704067200"},
            {"name": "kiln:target", "value": "final"},
            {"name": "kiln:base:busybox", "value": "docker.io/library/busybox:latest@sha256:00"},
            {"name": "kiln:dockerfile:digest", "value": "sha256:ff"},
        ]}});
        let recorded = Recorded::from_document(&document, Digest::of(b"doc"));
        assert_eq!(recorded.build_args["V"], "1");
        assert_eq!(recorded.source_date_epoch, Some(1_704_067_200));
        assert_eq!(recorded.target.as_deref(), Some("final"));
        assert_eq!(
            recorded.pinned_images["busybox"],
            "docker.io/library/busybox:latest@sha256:00"
        );
        assert_eq!(recorded.dockerfile_digest.as_deref(), Some("sha256:ff"));
    }

    #[test]
    fn flags_win_over_recorded_inputs() {
        let recorded = Recorded {
            source_date_epoch: Some(100),
            created: Some(200),
            build_args: BTreeMap::from([
                ("A".to_owned(), "recorded".to_owned()),
                ("B".to_owned(), "recorded".to_owned()),
            ]),
            target: Some("final".to_owned()),
            pinned_images: BTreeMap::from([("busybox".to_owned(), "busybox@sha256:00".to_owned())]),
            ..Recorded::default()
        };
        let published = published(recorded, image::DOCKER_MANIFEST);
        let mut request = BuildRequest::new("/ctx");
        request.build_args.insert("A".to_owned(), "flag".to_owned());
        request.source_date_epoch = Some(5);
        let inputs = rebuild_inputs(
            &mut request,
            Given {
                source_date_epoch: true,
                ..Given::default()
            },
            &published,
        );
        assert_eq!(request.source_date_epoch, Some(5));
        assert_eq!(request.build_args["A"], "flag");
        assert_eq!(request.build_args["B"], "recorded");
        assert_eq!(request.target.as_deref(), Some("final"));
        assert_eq!(request.format, Format::Docker);
        assert_eq!(
            request.extra_contexts["busybox"],
            ExtraContext::Image("busybox@sha256:00".to_owned())
        );
        let from: BTreeMap<&str, (&str, &str)> = inputs
            .iter()
            .map(|i| (i.name.as_str(), (i.value.as_str(), i.from.as_str())))
            .collect();
        assert_eq!(from["SOURCE_DATE_EPOCH"], ("5", "flag"));
        assert_eq!(from["build-arg A"], ("flag", "flag"));
        assert_eq!(from["build-arg B"], ("recorded", "sbom"));
        assert_eq!(from["format"], ("docker", "manifest"));
        assert_eq!(from["platform"], ("linux/amd64", "config"));
    }

    #[test]
    fn created_stands_in_for_a_missing_epoch() {
        let published = published(
            Recorded {
                created: Some(200),
                ..Recorded::default()
            },
            image::OCI_MANIFEST,
        );
        let mut request = BuildRequest::new("/ctx");
        let inputs = rebuild_inputs(&mut request, Given::default(), &published);
        assert_eq!(request.source_date_epoch, Some(200));
        assert_eq!(inputs[0].from, "config");
    }
}
