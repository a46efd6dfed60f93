//! The solver: turns a Dockerfile's stages into steps, runs independent stages in
//! parallel, reuses cached steps, and assembles the image.
//!
//! For every needed stage a thread walks its steps in order. Each step gets a
//! cache key chained from its parent's ([`crate::cache`]); a hit reuses the
//! recorded layer without running anything, a miss runs the step — `RUN` in the
//! [`crate::executor`] over an overlay of the layers' snapshots, `COPY`/`ADD`
//! through [`crate::copy`] into a fresh layer directory — and writes the layer
//! with [`crate::layer`]. Metadata instructions only change the image config.
//! Base layers are unpacked only when a step below them must run.
//!
//! # Errors
//!
//! [`Error`] carries the Dockerfile location of the failing instruction where
//! there is one; a failed `RUN` carries its exit status and the store stays
//! consistent (the step's upper dir is discarded; finished steps stay cached).

mod base;
mod request;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

pub use base::{ImageInfo, LayerRef, StoreAdapter, store_name};
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
    #[error("{location}: {what} is not supported by kiln yet")]
    Unsupported { location: String, what: String },
    #[error("the build was cancelled")]
    Cancelled,
    #[error("stage {stage} could not be built because a stage it needs failed")]
    DependencyFailed { stage: String },
    #[error("starting the registry client: {reason}")]
    Runtime { reason: String },
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
    /// Names given to the image in the store.
    pub tags: Vec<String>,
    /// Steps that ran (not from the cache).
    pub steps_run: usize,
    pub steps_cached: usize,
}

/// The state of a stage after its last step.
#[derive(Debug, Clone)]
struct StageState {
    config: ImageConfig,
    layers: Vec<LayerRef>,
    key: Digest,
    /// Time of the latest step that produced history, for `created`.
    created: Option<String>,
}

struct Shared<'a> {
    store: &'a Store,
    snapshots: Snapshots,
    cache: Cache,
    request: &'a BuildRequest,
    reporter: &'a Reporter,
    cancel: &'a CancelToken,
    context: BuildContext,
    images: BTreeMap<String, ImageInfo>,
    results: Mutex<BTreeMap<usize, Option<Arc<StageState>>>>,
    done: Condvar,
    step_counter: Mutex<usize>,
    stats: Mutex<(usize, usize)>,
    now: String,
    /// Proxy build args: in RUN's environment, never in cache keys or the image.
    proxy_args: BTreeMap<String, String>,
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
            wanted.push((reference.clone(), platform.clone()));
        }
        for step in &stage.steps {
            if let ResolvedInstruction::Copy(copy) = &step.instruction
                && let Some(StageOrImage::Image(reference)) = &copy.from
            {
                wanted.push((reference.clone(), platform.clone()));
            }
        }
    }
    let client_cell: OnceLock<(kiln_registry::RegistryClient, Arc<tokio::runtime::Runtime>)> =
        OnceLock::new();
    let client = || -> Result<_, Error> {
        if let Some(c) = client_cell.get() {
            return Ok(c.clone());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime {
                reason: e.to_string(),
            })?;
        let config = kiln_registry::ClientConfig {
            insecure_registries: request.insecure_registries.clone(),
            ..Default::default()
        };
        let made = (
            kiln_registry::RegistryClient::new(config),
            Arc::new(runtime),
        );
        Ok(client_cell.get_or_init(|| made).clone())
    };
    let mut images = BTreeMap::new();
    for (reference, platform) in wanted {
        if images.contains_key(&reference) {
            continue;
        }
        let info = base::resolve(store, &reference, &platform, &client)?;
        images.insert(reference, info);
    }
    let resolved = dockerfile.resolve_with_base_env(&options, &|reference: &str| {
        images
            .get(reference)
            .and_then(|i| i.config.config.env.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv, String::new()),
            })
            .collect()
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
    let shared = Shared {
        store,
        snapshots: Snapshots::new(store)?,
        cache: Cache::new(store),
        request,
        reporter,
        cancel,
        context,
        images,
        results: Mutex::new(BTreeMap::new()),
        done: Condvar::new(),
        step_counter: Mutex::new(0),
        stats: Mutex::new((0, 0)),
        now,
        proxy_args: resolved.proxy_args.clone(),
    };

    let target_index = resolved.target().index;
    let outcome: Vec<Result<(), Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = resolved
            .stages
            .iter()
            .map(|stage| {
                let shared = &shared;
                scope.spawn(move || {
                    let result = run_stage(shared, stage);
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

    let output = write_image(&shared, &final_state)?;
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
                key: key.finish(),
                created: info.config.created.clone(),
            }
        }
        Base::Stage(index) => (*wait_for(shared, *index, &label)?).clone(),
    };
    // A stage's own build never inherits its base's ONBUILD list as triggers to keep.
    if !matches!(stage.base, Base::Stage(_))
        && let Some(triggers) = state.config.config.on_build.take()
        && !triggers.is_empty()
    {
        return Err(Error::Unsupported {
            location: stage.location.to_string(),
            what: "running ONBUILD triggers of a base image".into(),
        });
    }
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

fn healthcheck_config(hc: &Healthcheck) -> Option<image::Healthcheck> {
    let nanos = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
    match hc {
        Healthcheck::None => Some(image::Healthcheck {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        Healthcheck::Check(check) => {
            let test = match &check.command {
                CommandLine::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                CommandLine::Exec(v) => {
                    let mut t = vec!["CMD".to_owned()];
                    t.extend(v.iter().cloned());
                    t
                }
            };
            Some(image::Healthcheck {
                test: Some(test),
                interval: nanos(&check.interval),
                timeout: nanos(&check.timeout),
                start_period: nanos(&check.start_period),
                start_interval: nanos(&check.start_interval),
                retries: check.retries.map(i64::from),
            })
        }
    }
}

fn command_vec(config: &ImageConfig, command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut argv = config
                .config
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            argv.push(s.clone());
            argv
        }
    }
}

/// Applies a metadata instruction to the config; false if `instruction` is not one.
fn apply_meta(
    config: &mut ImageConfig,
    instruction: &ResolvedInstruction,
    workdir_base: &str,
) -> bool {
    let c = &mut config.config;
    match instruction {
        ResolvedInstruction::Env(vars) => {
            for (k, v) in vars {
                config.set_env(k, v);
            }
        }
        ResolvedInstruction::Arg(_) => {}
        ResolvedInstruction::Label(labels) => {
            let map = c.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in labels {
                map.insert(k.clone(), v.clone());
            }
        }
        ResolvedInstruction::Maintainer(m) => config.author = Some(m.clone()),
        ResolvedInstruction::Expose(ports) => {
            let map = c.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                map.insert(p.clone(), serde_json::json!({}));
            }
        }
        ResolvedInstruction::Volume(volumes) => {
            let map = c.volumes.get_or_insert_with(BTreeMap::new);
            for v in volumes {
                map.insert(v.clone(), serde_json::json!({}));
            }
        }
        ResolvedInstruction::User(user) => c.user = Some(user.clone()),
        ResolvedInstruction::StopSignal(signal) => c.stop_signal = Some(signal.clone()),
        ResolvedInstruction::Shell(shell) => c.shell = Some(shell.clone()),
        ResolvedInstruction::Onbuild(trigger) => c
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.clone()),
        ResolvedInstruction::Healthcheck(hc) => c.healthcheck = healthcheck_config(hc),
        ResolvedInstruction::Cmd(cmd) => {
            let argv = command_vec(config, cmd);
            config.config.cmd = Some(argv);
        }
        ResolvedInstruction::Entrypoint(ep) => {
            let argv = command_vec(config, ep);
            config.config.entrypoint = Some(argv);
            // Docker: ENTRYPOINT resets a CMD inherited from the base image or
            // set earlier in the stage.
            config.config.cmd = None;
        }
        ResolvedInstruction::Workdir(dir) => {
            c.working_dir = Some(join_path(workdir_base, dir));
        }
        ResolvedInstruction::Run(_)
        | ResolvedInstruction::Copy(_)
        | ResolvedInstruction::Add(_) => {
            return false;
        }
    }
    true
}

fn join_path(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!(
            "{}/{}",
            if base.is_empty() { "/" } else { base },
            path
        ))
    }
}

fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn run_step(
    shared: &Shared<'_>,
    label: &str,
    step: &Step,
    state: &mut StageState,
) -> Result<(), Error> {
    let location = step.location.to_string();
    let workdir = state.config.config.working_dir.clone().unwrap_or_default();
    let mut key = KeyBuilder::new("step");
    key.part(&state.key.to_string());
    key.part(&format!("{:?}", step.instruction));
    for (k, v) in &step.args {
        key.part(k).part(v);
    }
    key.part(&workdir);
    key.part(state.config.config.user.as_deref().unwrap_or(""));

    if apply_meta(&mut state.config, &step.instruction, &workdir) {
        state.key = key.finish();
        state.config.history.push(History {
            created: Some(shared.now.clone()),
            created_by: Some(step.source.clone()),
            comment: Some("kiln".into()),
            empty_layer: true,
            ..Default::default()
        });
        return Ok(());
    }

    let number = next_step_number(shared);
    let build = shared.request.name.clone();
    shared.reporter.send(Event::StepStarted {
        build: build.clone(),
        step: number,
        stage: label.to_owned(),
        instruction: step.source.lines().next().unwrap_or("").to_owned(),
        location: location.clone(),
    });
    let started = Instant::now();

    // Work out the step's inputs (and for COPY/ADD, its plan) before the cache.
    let mut copy_plan = None;
    match &step.instruction {
        ResolvedInstruction::Run(run) => {
            if !run.mounts.is_empty() {
                return Err(Error::Unsupported {
                    location,
                    what: "RUN --mount".into(),
                });
            }
            if !run.heredocs.is_empty() {
                return Err(Error::Unsupported {
                    location,
                    what: "RUN with a heredoc".into(),
                });
            }
            if matches!(run.security, dockerfile::SecurityMode::Insecure) {
                return Err(Error::Unsupported {
                    location,
                    what: "RUN --security=insecure".into(),
                });
            }
            for (k, v) in &step.env {
                key.part(k).part(v);
            }
            key.part(&format!("{:?}", run.network));
            key.part(&format!("{:?}", shared.request.network));
        }
        ResolvedInstruction::Copy(c) => {
            let op = copy::CopyOp {
                kind: copy::CopyKind::Copy,
                sources: c.sources.clone(),
                heredocs: copy_heredocs(&c.heredocs),
                dest: c.dest.clone(),
                workdir: copy_workdir(&workdir),
                chown: c.chown.clone(),
                chmod: chmod_of(&c.chmod, &location)?,
                exclude: c.exclude.clone(),
                parents: c.parents,
                link: c.link,
                checksum: None,
                keep_git_dir: false,
            };
            let from_view;
            let source = match &c.from {
                None => copy::Source::Context(&shared.context),
                Some(StageOrImage::Stage(index)) => {
                    let from = wait_for(shared, *index, label)?;
                    from_view = rootfs_view(shared, &from.layers, &location, &step.source)?;
                    key.part(&format!("from-stage {}", from.key));
                    copy::Source::Rootfs(&from_view)
                }
                Some(StageOrImage::Image(reference)) => {
                    let info = &shared.images[reference];
                    from_view = rootfs_view(shared, &info.layers, &location, &step.source)?;
                    key.part(&format!("from-image {}", info.manifest_digest));
                    copy::Source::Rootfs(&from_view)
                }
            };
            let plan = copy::plan(source, &op).map_err(|source| Error::Copy {
                location: location.clone(),
                instruction: step.source.clone(),
                source,
            })?;
            key.part(&copy::cache_digest(&plan).to_string());
            copy_plan = Some((plan, c.link));
        }
        ResolvedInstruction::Add(a) => {
            let checksum = match &a.checksum {
                None => None,
                Some(c) => Some(c.parse::<Digest>().map_err(|_| Error::Unsupported {
                    location: location.clone(),
                    what: format!("ADD --checksum={c} (only sha256 checksums)"),
                })?),
            };
            let op = copy::CopyOp {
                kind: copy::CopyKind::Add,
                sources: a.sources.clone(),
                heredocs: copy_heredocs(&a.heredocs),
                dest: a.dest.clone(),
                workdir: copy_workdir(&workdir),
                chown: a.chown.clone(),
                chmod: chmod_of(&a.chmod, &location)?,
                exclude: a.exclude.clone(),
                parents: false,
                link: a.link,
                checksum,
                keep_git_dir: a.keep_git_dir,
            };
            let plan =
                copy::plan(copy::Source::Context(&shared.context), &op).map_err(|source| {
                    Error::Copy {
                        location: location.clone(),
                        instruction: step.source.clone(),
                        source,
                    }
                })?;
            key.part(&copy::cache_digest(&plan).to_string());
            copy_plan = Some((plan, a.link));
        }
        _ => unreachable!("metadata instructions were handled above"),
    }
    let key = key.finish();

    if !shared.request.no_cache
        && let Some(record) = shared.cache.get(shared.store, &key)
    {
        {
            apply_record(state, &record, step);
            state.key = key;
            shared.stats.lock().expect("stats lock").1 += 1;
            shared.reporter.send(Event::StepCached {
                build: build.clone(),
                step: number,
            });
            shared.reporter.send(Event::StepFinished {
                build,
                step: number,
                cached: true,
                duration_ms: started.elapsed().as_millis() as u64,
                bytes_written: 0,
            });
            return Ok(());
        }
    }

    let result = match &step.instruction {
        ResolvedInstruction::Run(run) => {
            execute_run(shared, state, step, run, &location, &build, number)
        }
        _ => {
            let (plan, link) = copy_plan.expect("copy plan made above");
            execute_copy(shared, state, step, &plan, link, &location)
        }
    };
    let (layer_dir, layer) = match result {
        Ok(done) => done,
        Err(error) => {
            shared.reporter.send(Event::StepFailed {
                build: build.clone(),
                step: number,
                error: error.to_string(),
            });
            return Err(error);
        }
    };
    let bytes_written = layer.as_ref().map_or(0, |l| l.size);
    let record = Record {
        layer: layer.as_ref().map(|l| CachedLayer {
            digest: l.digest.clone(),
            diff_id: l.diff_id.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
        }),
        created: shared.now.clone(),
    };
    if let (Some(layer), Some(dir)) = (&layer, &layer_dir) {
        let mut diff_ids: Vec<Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
        diff_ids.push(layer.diff_id.clone());
        let chain = chain_ids(&diff_ids).pop().expect("at least one layer");
        shared.snapshots.commit(&chain, dir.path())?;
    }
    shared.cache.put(&key, &record)?;
    apply_record(state, &record, step);
    state.key = key;
    shared.stats.lock().expect("stats lock").0 += 1;
    shared.reporter.send(Event::StepFinished {
        build,
        step: number,
        cached: false,
        duration_ms: started.elapsed().as_millis() as u64,
        bytes_written,
    });
    Ok(())
}

fn copy_heredocs(heredocs: &[dockerfile::HeredocSource]) -> Vec<copy::Heredoc> {
    heredocs
        .iter()
        .map(|h| copy::Heredoc {
            name: h.name.clone(),
            body: h.content.clone(),
        })
        .collect()
}

fn copy_workdir(workdir: &str) -> String {
    if workdir.is_empty() {
        "/".into()
    } else {
        workdir.to_owned()
    }
}

/// The frontend's typed `--chmod`, as text the copier parses.
fn chmod_text(chmod: &dockerfile::Chmod) -> String {
    match chmod {
        dockerfile::Chmod::Octal(mode) => format!("{mode:04o}"),
        dockerfile::Chmod::Symbolic(clauses) => clauses
            .iter()
            .map(|c| {
                let mut who = String::new();
                for (bits, letter) in [(0o700, 'u'), (0o070, 'g'), (0o007, 'o')] {
                    if c.who & bits != 0 {
                        who.push(letter);
                    }
                }
                let op = match c.op {
                    dockerfile::ChmodOp::Add => '+',
                    dockerfile::ChmodOp::Remove => '-',
                    dockerfile::ChmodOp::Set => '=',
                };
                let p = &c.perms;
                let mut perms = String::new();
                for (on, letter) in [
                    (p.read, 'r'),
                    (p.write, 'w'),
                    (p.execute, 'x'),
                    (p.execute_if_any, 'X'),
                    (p.set_id, 's'),
                    (p.sticky, 't'),
                ] {
                    if on {
                        perms.push(letter);
                    }
                }
                format!("{who}{op}{perms}")
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn chmod_of(
    chmod: &Option<dockerfile::Chmod>,
    location: &str,
) -> Result<Option<copy::Chmod>, Error> {
    match chmod {
        None => Ok(None),
        Some(c) => {
            let text = chmod_text(c);
            text.parse::<copy::Chmod>()
                .map(Some)
                .map_err(|_| Error::Unsupported {
                    location: location.to_owned(),
                    what: format!("--chmod={text}"),
                })
        }
    }
}

fn apply_record(state: &mut StageState, record: &Record, step: &Step) {
    if let Some(layer) = &record.layer {
        state.layers.push(LayerRef {
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        });
        state.config.rootfs.diff_ids.push(layer.diff_id.clone());
    }
    state.config.history.push(History {
        created: Some(record.created.clone()),
        created_by: Some(step.source.clone()),
        comment: Some("kiln".into()),
        empty_layer: record.layer.is_none(),
        ..Default::default()
    });
    state.created = Some(record.created.clone());
}

/// Snapshot directories for `layers` (top-most first), unpacking any missing.
fn ensure_snapshots(
    shared: &Shared<'_>,
    layers: &[LayerRef],
    location: &str,
    instruction: &str,
) -> Result<Vec<PathBuf>, Error> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chains = chain_ids(&diff_ids);
    let mut dirs = Vec::with_capacity(layers.len());
    for (layer, chain) in layers.iter().zip(&chains) {
        let dir = shared
            .snapshots
            .ensure(chain, |dest: &Path| -> Result<(), Error> {
                let blob = shared.store.open_blob(&layer.digest)?;
                // The executor mounts overlayfs with `userxattr`, so opaque markers
                // of lower dirs live in the user namespace.
                let options = layer::ApplyOptions {
                    overlay_xattrs: layer::OverlayXattrNamespace::User,
                    ..layer::ApplyOptions::overlay_lower_dir(Some(layer.diff_id.clone()))
                };
                layer::unpack_layer(std::io::BufReader::new(blob), dest, &options).map_err(
                    |source| Error::Layer {
                        location: location.to_owned(),
                        instruction: instruction.to_owned(),
                        source,
                    },
                )?;
                Ok(())
            })?;
        dirs.push(dir);
    }
    dirs.reverse();
    Ok(dirs)
}

fn rootfs_view(
    shared: &Shared<'_>,
    layers: &[LayerRef],
    location: &str,
    instruction: &str,
) -> Result<RootfsView, Error> {
    Ok(RootfsView::new(ensure_snapshots(
        shared,
        layers,
        location,
        instruction,
    )?))
}

fn write_options(shared: &Shared<'_>) -> layer::WriteOptions {
    layer::WriteOptions {
        compression: match shared.request.compression {
            Compression::Gzip => layer::Compression::gzip(),
            Compression::Zstd => layer::Compression::zstd(),
        },
        format: match shared.request.format {
            Format::Oci => layer::ManifestFormat::Oci,
            Format::Docker => layer::ManifestFormat::Docker,
        },
        source_date_epoch: shared.request.source_date_epoch.map(layer::SourceDateEpoch),
        exclude: Vec::new(),
    }
}

/// Writes the layer of `dir` into the store; `None` when the step changed nothing.
fn store_layer(
    shared: &Shared<'_>,
    dir: &Path,
    location: &str,
    instruction: &str,
) -> Result<Option<LayerRef>, Error> {
    let writer = shared.store.blob_writer()?;
    let (info, writer) =
        layer::write_layer(dir, &write_options(shared), writer).map_err(|source| Error::Layer {
            location: location.to_owned(),
            instruction: instruction.to_owned(),
            source,
        })?;
    if info.is_empty() {
        return Ok(None);
    }
    let (digest, size) = writer.commit(Some(&info.digest), Some(info.size))?;
    Ok(Some(LayerRef {
        digest,
        diff_id: info.diff_id.clone(),
        size,
        media_type: info.media_type.to_string(),
    }))
}

type StepResult = (Option<tempfile::TempDir>, Option<LayerRef>);

fn execute_copy(
    shared: &Shared<'_>,
    state: &StageState,
    step: &Step,
    plan: &copy::CopyPlan,
    link: bool,
    location: &str,
) -> Result<StepResult, Error> {
    let scratch = shared.snapshots.scratch_dir("copy-")?;
    let dest = rootfs_view(shared, &state.layers, location, &step.source)?;
    let copy_err = |source| Error::Copy {
        location: location.to_owned(),
        instruction: step.source.clone(),
        source,
    };
    if link {
        copy::execute_linked(plan, &dest, scratch.path()).map_err(copy_err)?;
    } else {
        copy::execute(plan, &dest, scratch.path()).map_err(copy_err)?;
    }
    let layer = store_layer(shared, scratch.path(), location, &step.source)?;
    Ok((Some(scratch), layer))
}

fn execute_run(
    shared: &Shared<'_>,
    state: &StageState,
    step: &Step,
    run: &dockerfile::RunStep,
    location: &str,
    build: &str,
    number: usize,
) -> Result<StepResult, Error> {
    let exec_err = |source| Error::Executor {
        location: location.to_owned(),
        instruction: step.source.clone(),
        source,
    };
    let mut lowers = ensure_snapshots(shared, &state.layers, location, &step.source)?;
    let scratch = shared.snapshots.scratch_dir("run-")?;
    let upper = scratch.path().join("upper");
    let work = scratch.path().join("work");
    let empty = scratch.path().join("empty");
    for dir in [&upper, &work, &empty] {
        std::fs::create_dir(dir).map_err(io_err(dir))?;
    }
    if lowers.is_empty() {
        // overlayfs needs a lower dir; `FROM scratch` has none.
        lowers.push(empty.clone());
    }
    let rootfs = executor::Rootfs::Overlay {
        lowers,
        upper: upper.clone(),
        work,
    };
    let user = match state.config.config.user.as_deref() {
        None | Some("") => executor::User::root(),
        Some(spec) => executor::resolve_user(&rootfs, spec).map_err(exec_err)?,
    };
    let mut env: Vec<(String, String)> = step.env.clone();
    for (k, v) in &shared.proxy_args {
        if !env.iter().any(|(ek, _)| ek == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), user.home.clone()));
    }
    let network = match (run.network, shared.request.network) {
        (dockerfile::NetworkMode::None, _) | (_, NetworkMode::None) => executor::Network::None,
        _ => executor::Network::Host,
    };
    let cwd = state
        .config
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let spec = executor::RunSpec {
        rootfs,
        argv: command_vec(&state.config, &run.command),
        env,
        cwd: PathBuf::from(cwd),
        user,
        hostname: "kiln".into(),
        network,
        mounts: Vec::new(),
        extra_hosts: Vec::new(),
    };
    let mut tail: Vec<String> = Vec::new();
    let mut partial = Vec::new();
    let reporter = shared.reporter;
    let mut output = |_stream: executor::Stream, bytes: &[u8]| {
        partial.extend_from_slice(bytes);
        while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if tail.len() == 20 {
                tail.remove(0);
            }
            tail.push(line.clone());
            reporter.send(Event::StepOutput {
                build: build.to_owned(),
                step: number,
                line,
            });
        }
    };
    let outcome = executor::run(&spec, shared.cancel, &mut output).map_err(|e| match e {
        executor::Error::Cancelled => Error::Cancelled,
        other => exec_err(other),
    })?;
    if !partial.is_empty() {
        let line = String::from_utf8_lossy(&partial).into_owned();
        tail.push(line.clone());
        shared.reporter.send(Event::StepOutput {
            build: build.to_owned(),
            step: number,
            line,
        });
    }
    if !outcome.status.success() {
        return Err(Error::StepFailed {
            location: location.to_owned(),
            instruction: step.source.clone(),
            status: outcome.status.to_string(),
            output_tail: tail,
        });
    }
    let layer = store_layer(shared, &upper, location, &step.source)?;
    // The upper dir becomes the snapshot; keep it inside the scratch dir until
    // the caller commits it under its chain ID.
    let snapshot = shared.snapshots.scratch_dir("snap-")?;
    std::fs::remove_dir(snapshot.path()).map_err(io_err(snapshot.path()))?;
    std::fs::rename(&upper, snapshot.path()).map_err(io_err(&upper))?;
    Ok((Some(snapshot), layer))
}

fn write_image(shared: &Shared<'_>, state: &StageState) -> Result<BuildOutput, Error> {
    let request = shared.request;
    let mut config = state.config.clone();
    if !request.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &request.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    config.created = Some(
        state
            .created
            .clone()
            .or_else(|| config.created.clone())
            .unwrap_or_else(|| shared.now.clone()),
    );
    if let Some(epoch) = request.source_date_epoch {
        config.created = Some(rfc3339(epoch));
    }
    let config_bytes = config.to_bytes();
    let config_digest = shared.store.write_blob(&config_bytes)?;
    let format = request.format;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(format.manifest_media_type().into()),
        artifact_type: None,
        config: image::Descriptor {
            media_type: format.config_media_type().into(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        layers: state
            .layers
            .iter()
            .map(|l| image::Descriptor {
                media_type: format.layer_media_type(&l.media_type),
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
    let manifest_bytes = manifest.to_bytes();
    let digest = shared.store.write_blob(&manifest_bytes)?;
    let descriptor = Descriptor {
        media_type: format.manifest_media_type().into(),
        digest,
        size: manifest_bytes.len() as u64,
        annotations: Default::default(),
        platform: None,
        artifact_type: None,
    };
    let mut tags = Vec::new();
    for tag in &request.tags {
        let name = store_name(tag);
        shared.store.tag(&name, &descriptor)?;
        tags.push(name);
    }
    Ok(BuildOutput {
        descriptor,
        config_digest,
        layers: state.layers.clone(),
        tags,
        steps_run: 0,
        steps_cached: 0,
    })
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
