//! The solver: turns a Dockerfile's stages into steps, runs independent stages in
//! parallel, reuses cached steps, and assembles the image.
//!
//! For every needed stage a thread walks its steps in order. Each step gets a
//! cache key chained from its parent's ([`crate::cache`]); a hit reuses the
//! recorded layer without running anything, a miss runs the step — `RUN` in the
//! [`crate::executor`] over an overlay of the layers' snapshots, `COPY`/`ADD`
//! through [`crate::copy`] into a fresh layer directory — and writes the layer
//! with [`crate::layer`]. `WORKDIR` (other than `/`) is BuildKit's `mkdir -p`
//! owned by the USER of that point, a layer only when it makes a directory.
//! Other metadata instructions only change the image config.
//! Base layers are unpacked only when a step below them must run.
//!
//! # Errors
//!
//! [`Error`] carries the Dockerfile location of the failing instruction where
//! there is one; a failed `RUN` carries its exit status and the store stays
//! consistent (the step's upper dir is discarded; finished steps stay cached).

mod base;
mod cache_io;
mod config;
mod heredoc;
mod layers;
mod mounts;
mod output;
mod request;
mod run;
pub mod sbom;
mod step;
mod stepfs;

use config::*;
use layers::*;
use output::*;
use run::*;
use step::*;
use stepfs::StepFs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

pub use base::{
    ImageInfo, LayerRef, StoreAdapter, from_store as image_from_store, pull as pull_image,
    registry_client, store_name,
};
pub use mounts::RunProblem;
pub use request::*;

use crate::cache::{Cache, CachedLayer, KeyBuilder, Record};
use crate::context::{BuildContext, ContextOptions};
use crate::copy;
use crate::digest::Digest;
use crate::executor::{self, CancelToken};
use crate::frontend::dockerfile::{
    self, Base, CommandLine, Healthcheck, ResolveOptions, ResolvedInstruction, ResolvedStage,
    StageOrImage, Step,
};
use crate::image::{self, Format, History, ImageConfig, Manifest, chain_ids};
use crate::layer;
use crate::platform::Platform;
use crate::progress::{Event, Reporter};
use crate::rootfs::RootfsView;
use crate::snapshot::Snapshots;
use crate::store::{self, Descriptor, Store};

/// Errors of a build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dockerfile(#[from] dockerfile::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::Error),
    #[error(transparent)]
    Context(#[from] crate::context::Error),
    #[error("{reference}: {source}")]
    Reference {
        reference: String,
        #[source]
        source: kiln_registry::ReferenceError,
    },
    #[error("pulling {reference}")]
    Pull {
        reference: String,
        #[source]
        source: Box<kiln_registry::Error>,
    },
    #[error("image {reference}: {reason}")]
    BadImage { reference: String, reason: String },
    #[error("{location}: {instruction}")]
    Copy {
        location: String,
        instruction: String,
        #[source]
        source: copy::Error,
    },
    #[error("{location}: {instruction}")]
    Layer {
        location: String,
        instruction: String,
        #[source]
        source: layer::Error,
    },
    #[error("{location}: {instruction}")]
    Executor {
        location: String,
        instruction: String,
        #[source]
        source: executor::Error,
    },
    #[error("{location}: {instruction}: the command exited with {status}")]
    StepFailed {
        location: String,
        instruction: String,
        status: String,
        /// The last lines the step printed.
        output_tail: Vec<String>,
    },
    /// A `RUN` step could not be set up (its mounts, secrets, entitlements).
    #[error("{location}: {problem}")]
    Run {
        location: String,
        problem: RunProblem,
    },
    #[error("{location}: {what} is not supported by kiln yet")]
    Unsupported { location: String, what: String },
    #[error(
        "{location}: FROM {name}: {name} is a local directory context ({}); a directory \
         serves COPY --from and RUN --mount from=, not as a base image",
        dir.display()
    )]
    DirectoryContextAsBase {
        location: String,
        name: String,
        dir: PathBuf,
    },
    #[error("KILN_SNAPSHOTTER={value:?}: use overlay, copy or auto")]
    InvalidSnapshotter { value: String },
    #[error("the build was cancelled")]
    Cancelled,
    #[error("stage {stage} could not be built because a stage it needs failed")]
    DependencyFailed { stage: String },
    #[error("starting the registry client: {reason}")]
    Runtime { reason: String },
    #[error("cataloging layer {layer} for the SBOM")]
    SbomLayer {
        layer: Digest,
        #[source]
        source: kiln_sbom::Error,
    },
    #[error("writing the SBOM of image {image}")]
    SbomDocument {
        image: Digest,
        #[source]
        source: kiln_sbom::Error,
    },
}

impl Error {
    /// A line of advice for the user, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Dockerfile(e) => e.hint(),
            Error::StepFailed { .. } => {
                Some("the output above is the step's; fix the command and build again (finished steps are cached)".into())
            }
            Error::Pull { .. } => Some(
                "check the reference and your credentials (kiln login); plain-HTTP registries need --insecure-registry"
                    .into(),
            ),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image manifest, in the store.
    pub descriptor: Descriptor,
    pub config_digest: Digest,
    pub layers: Vec<LayerRef>,
    /// Where each of `layers` came from: the base image, or the instruction
    /// (and `Dockerfile:N`) of the step that made it.
    pub origins: Vec<sbom::LayerOrigin>,
    /// Names given to the image in the store.
    pub tags: Vec<String>,
    /// Steps that ran (not from the cache).
    pub steps_run: usize,
    pub steps_cached: usize,
    /// The SBOM kept in the store as a referrer of the image (`BuildRequest::sbom`).
    pub sbom: Option<sbom::SbomOutput>,
}

/// The state of a stage after its last step.
#[derive(Debug, Clone)]
struct StageState {
    config: ImageConfig,
    layers: Vec<LayerRef>,
    /// Where each of `layers` came from, for the SBOM.
    origins: Vec<sbom::LayerOrigin>,
    /// The stage these steps belong to.
    stage: String,
    key: Digest,
    /// Time of the latest step that produced history, for `created`.
    created: Option<String>,
}

struct Shared<'a> {
    store: &'a Store,
    snapshots: Snapshots,
    /// With [`BuildRequest::base_store`]: that store's snapshots, and the chain
    /// IDs of the base images' layers, which are unpacked (once) there.
    base_snapshots: Option<(Snapshots, std::collections::BTreeSet<Digest>)>,
    cache: Cache,
    request: &'a BuildRequest,
    reporter: &'a Reporter,
    cancel: &'a CancelToken,
    context: BuildContext,
    /// Directory contexts by the name `COPY --from` / `RUN --mount from=` use.
    named_contexts: BTreeMap<String, BuildContext>,
    images: BTreeMap<String, ImageInfo>,
    results: Mutex<BTreeMap<usize, Option<Arc<StageState>>>>,
    done: Condvar,
    step_counter: Mutex<usize>,
    stats: Mutex<(usize, usize)>,
    now: String,
    /// Proxy build args: in RUN's environment, never in cache keys or the image.
    proxy_args: BTreeMap<String, String>,
    /// How RUN steps get their file system (`KILN_SNAPSHOTTER`).
    snapshotter: stepfs::Choice,
    /// Set once overlayfs failed to mount under `auto`: copy mode from then on.
    copy_fallback: std::sync::atomic::AtomicBool,
    /// Held while base layers are unpacked, so two stages on one base wait for
    /// each other instead of unpacking it twice.
    unpacking: Mutex<()>,
}

/// Builds the image `request` describes into `store`.
pub fn build(
    store: &Store,
    request: &BuildRequest,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<BuildOutput, Error> {
    let started = Instant::now();
    reporter.send(Event::BuildStarted {
        build: request.name.clone(),
    });
    let (name, text) = match &request.dockerfile {
        DockerfileSource::Path(path) => {
            let text = std::fs::read_to_string(path).map_err(io_err(path))?;
            let name = path
                .strip_prefix(&request.context)
                .unwrap_or(path)
                .display()
                .to_string();
            (name, text)
        }
        DockerfileSource::Inline { name, text } => (name.clone(), text.clone()),
    };
    let dockerfile = dockerfile::load(&text, &name)?;
    if let Some(notice) = &dockerfile.syntax_notice {
        reporter.notice(notice.clone());
    }
    let target_platform = request.platform.clone().unwrap_or_else(Platform::host);
    let to_frontend = |p: &Platform| dockerfile::Platform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: p.variant.clone(),
    };
    let options = ResolveOptions {
        build_args: request.build_args.clone(),
        target: request.target.clone(),
        build_platform: to_frontend(&Platform::host()),
        target_platform: to_frontend(&target_platform),
    };
    let first = dockerfile.resolve(&options)?;

    // Every image the needed stages name: bases and COPY --from sources.
    let mut wanted: Vec<(String, Platform)> = Vec::new();
    for stage in &first.stages {
        let platform = Platform {
            os: stage.platform.os.clone(),
            architecture: stage.platform.architecture.clone(),
            variant: stage.platform.variant.clone(),
        }
        .normalized();
        if let Base::Image(reference) = &stage.base {
            if let Some(ExtraContext::Dir(dir)) = request.extra_contexts.get(reference) {
                return Err(Error::DirectoryContextAsBase {
                    location: stage.location.to_string(),
                    name: reference.clone(),
                    dir: dir.clone(),
                });
            }
            wanted.push((reference.clone(), platform.clone()));
        }
        for step in &stage.steps {
            if let ResolvedInstruction::Copy(copy) = &step.instruction
                && let Some(StageOrImage::Image(reference)) = &copy.from
            {
                wanted.push((reference.clone(), platform.clone()));
            }
            if let ResolvedInstruction::Run(run) = &step.instruction {
                wanted.extend(mounts::images(run).map(|r| (r, platform.clone())));
            }
        }
    }
    let client_cell: OnceLock<(kiln_registry::RegistryClient, Arc<tokio::runtime::Runtime>)> =
        OnceLock::new();
    let client = || -> Result<_, Error> {
        if let Some(c) = client_cell.get() {
            return Ok(c.clone());
        }
        let made = base::registry_client(&request.insecure_registries)?;
        Ok(client_cell.get_or_init(|| made).clone())
    };
    // Named contexts (`--build-context`, compose `additional_contexts`): an image
    // context stands in for the reference it is named after; a directory one is
    // another build context for `COPY --from` and `RUN --mount from=`.
    let mut images = BTreeMap::new();
    let mut named_contexts = BTreeMap::new();
    for (reference, platform) in wanted {
        if images.contains_key(&reference) || named_contexts.contains_key(&reference) {
            continue;
        }
        let image = match request.extra_contexts.get(&reference) {
            Some(ExtraContext::Dir(dir)) => {
                let context = BuildContext::open(
                    dir,
                    ContextOptions {
                        dockerfile: None,
                        stat_cache: None,
                    },
                )?;
                named_contexts.insert(reference, context);
                continue;
            }
            Some(ExtraContext::Image(image)) => image
                .strip_prefix("docker-image://")
                .unwrap_or(image)
                .to_owned(),
            None => reference.clone(),
        };
        let info = match &request.base_store {
            Some(base_store) => {
                let info = base::resolve(base_store, &image, &platform, &client)?;
                base::copy_image(base_store, store, &info)?;
                info
            }
            None => base::resolve(store, &image, &platform, &client)?,
        };
        images.insert(reference, info);
    }
    let resolved = dockerfile.resolve_with_bases(&options, &|reference: &str| {
        let config = images.get(reference).map(|i| &i.config.config);
        dockerfile::BaseImage {
            env: config
                .and_then(|c| c.env.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (kv, String::new()),
                })
                .collect(),
            onbuild: config.and_then(|c| c.on_build.clone()).unwrap_or_default(),
        }
    })?;
    for arg in &resolved.unused_build_args {
        reporter.warn(format!(
            "build arg {arg} was given but no needed stage declares it"
        ));
    }

    // Content digests of context files are remembered between builds, keyed by
    // (path, size, mtime, inode, ctime), so a no-op rebuild hashes nothing.
    let context_key = Digest::of(
        request
            .context
            .canonicalize()
            .unwrap_or_else(|_| request.context.clone())
            .as_os_str()
            .as_encoded_bytes(),
    );
    let context = BuildContext::open(
        &request.context,
        ContextOptions {
            dockerfile: match &request.dockerfile {
                DockerfileSource::Path(path) => Some(path.clone()),
                DockerfileSource::Inline { .. } => None,
            },
            stat_cache: Some(
                store
                    .root()
                    .join("cache")
                    .join(format!("context-{}.stat", &context_key.hex()[..16])),
            ),
        },
    )?;
    let now = request
        .source_date_epoch
        .map(rfc3339)
        .unwrap_or_else(|| rfc3339(now_secs()));
    let (cache, cache_imports) = cache_io::import(store, request, reporter, &client)?;
    let base_snapshots = match &request.base_store {
        Some(base_store) => {
            let chains = images
                .values()
                .flat_map(|info| {
                    let diff_ids: Vec<Digest> =
                        info.layers.iter().map(|l| l.diff_id.clone()).collect();
                    chain_ids(&diff_ids)
                })
                .collect();
            Some((Snapshots::new(base_store)?, chains))
        }
        None => None,
    };
    let shared = Shared {
        store,
        snapshots: Snapshots::new(store)?,
        base_snapshots,
        cache,
        request,
        reporter,
        cancel,
        context,
        named_contexts,
        images,
        results: Mutex::new(BTreeMap::new()),
        done: Condvar::new(),
        step_counter: Mutex::new(0),
        stats: Mutex::new((0, 0)),
        now,
        proxy_args: resolved.proxy_args.clone(),
        snapshotter: stepfs::Choice::from_env()?,
        copy_fallback: std::sync::atomic::AtomicBool::new(false),
        unpacking: Mutex::new(()),
    };

    stepfs::announce(&shared);
    let target_index = resolved.target().index;
    let outcome: Vec<Result<(), Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = resolved
            .stages
            .iter()
            .map(|stage| {
                let shared = &shared;
                scope.spawn(move || {
                    let result = crate::cache::in_stage(stage.index, || run_stage(shared, stage));
                    let mut results = shared.results.lock().expect("results lock");
                    let ok = result.as_ref().ok().cloned().map(Arc::new);
                    results.insert(stage.index, ok);
                    shared.done.notify_all();
                    result.map(|_| ())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("stage thread panicked"))
            .collect()
    });
    // The first real error wins over the "a dependency failed" ones it caused.
    let mut errors: Vec<Error> = outcome.into_iter().filter_map(Result::err).collect();
    if !errors.is_empty() {
        let first_real = errors
            .iter()
            .position(|e| !matches!(e, Error::DependencyFailed { .. }))
            .unwrap_or(0);
        let error = errors.swap_remove(first_real);
        return Err(error);
    }
    let final_state = shared
        .results
        .lock()
        .expect("results lock")
        .get(&target_index)
        .cloned()
        .flatten()
        .expect("target stage finished");

    let mut output = write_image(&shared, &final_state)?;
    if request.sbom {
        output.sbom = Some(sbom::write_build_sbom(
            &shared,
            &resolved,
            &final_state,
            &output,
            &text,
        )?);
    }
    cache_io::export(&shared, &resolved, target_index, &cache_imports, &client)?;
    // Losing the stat cache only costs hashing next time.
    let _ = shared.context.save_stat_cache();
    let (run, cached) = *shared.stats.lock().expect("stats lock");
    reporter.send(Event::BuildFinished {
        build: request.name.clone(),
        digest: Some(output.descriptor.digest.to_string()),
        duration_ms: started.elapsed().as_millis() as u64,
    });
    Ok(BuildOutput {
        steps_run: run,
        steps_cached: cached,
        ..output
    })
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC with a `Z`, from Unix seconds.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn wait_for(shared: &Shared<'_>, index: usize, waiting: &str) -> Result<Arc<StageState>, Error> {
    let mut results = shared.results.lock().expect("results lock");
    loop {
        if let Some(result) = results.get(&index) {
            return result.clone().ok_or_else(|| Error::DependencyFailed {
                stage: waiting.to_owned(),
            });
        }
        if shared.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        results = shared.done.wait(results).expect("results lock");
    }
}

fn stage_label(stage: &ResolvedStage) -> String {
    stage
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", stage.index))
}

fn run_stage(shared: &Shared<'_>, stage: &ResolvedStage) -> Result<StageState, Error> {
    let label = stage_label(stage);
    let mut state = match &stage.base {
        Base::Scratch => {
            let platform = &stage.platform;
            let mut config = ImageConfig {
                architecture: platform.architecture.clone(),
                os: platform.os.clone(),
                variant: platform.variant.clone(),
                ..Default::default()
            };
            config.set_env("PATH", dockerfile::DEFAULT_PATH);
            let mut key = KeyBuilder::new("scratch");
            key.part(&Platform::host().to_string());
            StageState {
                config,
                layers: Vec::new(),
                origins: Vec::new(),
                stage: label.clone(),
                key: key.finish(),
                created: None,
            }
        }
        Base::Image(reference) => {
            let info = &shared.images[reference];
            let mut config = info.config.clone();
            if config.env_value("PATH").is_none() {
                config.set_env("PATH", dockerfile::DEFAULT_PATH);
            }
            let mut key = KeyBuilder::new("image");
            key.part(&info.manifest_digest.to_string());
            StageState {
                config,
                layers: info.layers.clone(),
                origins: sbom::base_origins(info),
                stage: label.clone(),
                key: key.finish(),
                created: info.config.created.clone(),
            }
        }
        Base::Stage(index) => StageState {
            stage: label.clone(),
            ..(*wait_for(shared, *index, &label)?).clone()
        },
    };
    // The base's ONBUILD triggers were put first among the steps by the
    // resolver; like Docker, the new image does not keep them.
    state.config.config.on_build = None;
    for step in &stage.steps {
        if shared.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        run_step(shared, &label, step, &mut state)?;
    }
    Ok(state)
}

fn next_step_number(shared: &Shared<'_>) -> usize {
    let mut counter = shared.step_counter.lock().expect("counter lock");
    *counter += 1;
    *counter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn workdir_joins_like_docker() {
        assert_eq!(join_path("", "app"), "/app");
        assert_eq!(join_path("/app", "src"), "/app/src");
        assert_eq!(join_path("/app", "/srv/../x"), "/x");
    }
}
