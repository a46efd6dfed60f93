//! The build plan of a compose project: one [`build::BuildRequest`] per service, and
//! the order to build them in.
//!
//! [`Plan::new`] starts from [`Project::build_requests`] (the selected services and
//! their `service:` contexts), converts each request, reads its Dockerfile to find the
//! images it uses, and adds the services that build those images — until nothing new
//! is needed. The services come back in a topological order (a service after those it
//! needs; otherwise by name).
//!
//! Errors: [`Error::Compose`] with every located problem of the services to build
//! (keys kiln cannot honour, several platforms, bad outputs, extra hosts, ssh agents
//! or `x-kiln` release settings) at once; [`Error::Release`] when `x-kiln.tag_scheme`
//! cannot read the commit of the service's context;
//! [`Error::Dockerfile`] / [`Error::Io`] for a Dockerfile that cannot be read or
//! parsed; [`Error::Cycle`] when services build on each other;
//! [`Error::SourceDateEpoch`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::Error;
use super::contexts::image_references;
use crate::build::{self, store_name};
use crate::export::Output;
use crate::frontend::compose::{
    self, AdditionalContext, Diagnostic, Diagnostics, KeyPath, Location, Problem, Project,
    SecretSource, Service, TagScheme, TypedSpec,
};
use crate::frontend::dockerfile::{self, ResolveOptions};
use crate::platform::Platform;
use crate::store::Store;
use crate::tags;

/// Settings of the whole run that apply to every service.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--no-cache`: no service uses the cache.
    pub no_cache: bool,
    /// Hosts allowed over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
}

/// One service to build.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub service: String,
    /// The image name as written (`image:`, or `<project>-<service>`): the first tag.
    pub image: String,
    pub request: build::BuildRequest,
    /// Services whose images this one uses; they are built first.
    pub needs: Vec<String>,
    /// Base images to pull again before building (`pull: true`).
    pub pull: Vec<String>,
    /// `x-kiln.outputs`: where to write the image besides the store.
    pub outputs: Vec<Output>,
}

/// The services to build, in an order where each comes after those it needs.
#[derive(Debug)]
pub struct Plan {
    pub services: Vec<ServicePlan>,
    /// Environment-sourced secrets whose variable is not in kiln's own environment
    /// (it came from an env file) are handed to the solver as files in here (on a
    /// tmpfs when there is one); removed when the plan is dropped.
    secrets_dir: Option<tempfile::TempDir>,
}

impl Plan {
    /// Plans the build of `selected` services (every active service with `build` when
    /// empty) and of every service they need.
    pub fn new(project: &Project, selected: &[&str], options: &PlanOptions) -> Result<Plan, Error> {
        let mut planner = Planner {
            project,
            options,
            problems: Vec::new(),
            secrets_dir: None,
        };
        let mut planned: BTreeMap<String, ServicePlan> = BTreeMap::new();
        let mut requests = project.build_requests(selected)?;
        loop {
            let mut missing: BTreeSet<String> = BTreeSet::new();
            for request in requests {
                if planned.contains_key(&request.service) {
                    continue;
                }
                let service_plan = planner.service(&request)?;
                missing.extend(service_plan.needs.iter().cloned());
                planned.insert(request.service.clone(), service_plan);
            }
            missing.retain(|name| !planned.contains_key(name));
            if missing.is_empty() {
                break;
            }
            let names: Vec<&str> = missing.iter().map(String::as_str).collect();
            requests = project.build_requests(&names)?;
        }
        if !planner.problems.is_empty() {
            let mut problems = planner.problems;
            problems.sort_by(|a, b| {
                (
                    a.location.file.display_name(),
                    a.location.line,
                    a.location.column,
                )
                    .cmp(&(
                        b.location.file.display_name(),
                        b.location.line,
                        b.location.column,
                    ))
            });
            return Err(compose::Error::Invalid(Diagnostics(problems)).into());
        }
        let order = topological_order(&planned)?;
        let mut services = Vec::with_capacity(order.len());
        for name in order {
            services.push(planned.remove(&name).expect("ordered names are planned"));
        }
        Ok(Plan {
            services,
            secrets_dir: planner.secrets_dir,
        })
    }

    /// The planned service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.service == name)
    }

    /// Where environment secrets were written as files, if any were.
    pub fn secrets_dir(&self) -> Option<&Path> {
        self.secrets_dir.as_ref().map(tempfile::TempDir::path)
    }
}

/// Depth-first, by name: a deterministic order, and the cycle when there is one.
fn topological_order(planned: &BTreeMap<String, ServicePlan>) -> Result<Vec<String>, Error> {
    fn visit(
        name: &str,
        planned: &BTreeMap<String, ServicePlan>,
        order: &mut Vec<String>,
        visiting: &mut Vec<String>,
    ) -> Result<(), Error> {
        if order.iter().any(|n| n == name) {
            return Ok(());
        }
        if let Some(start) = visiting.iter().position(|v| v == name) {
            let mut chain = visiting[start..].to_vec();
            chain.push(name.to_owned());
            return Err(Error::Cycle { chain });
        }
        visiting.push(name.to_owned());
        let mut needs = planned[name].needs.clone();
        needs.sort();
        for need in &needs {
            visit(need, planned, order, visiting)?;
        }
        visiting.pop();
        order.push(name.to_owned());
        Ok(())
    }
    let mut order = Vec::new();
    for name in planned.keys() {
        visit(name, planned, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

struct Planner<'a> {
    project: &'a Project,
    options: &'a PlanOptions,
    problems: Vec<Diagnostic>,
    secrets_dir: Option<tempfile::TempDir>,
}

/// Where a key of a service's `build` section is, for messages: the key itself when
/// written, else the `build` section, else the service.
fn build_key_location(service: &Service, key: &str) -> Location {
    let build = service.definition.get("build");
    build
        .and_then(|b| b.as_mapping())
        .and_then(|m| m.entry(key))
        .map(|e| e.key_location.clone())
        .or_else(|| build.map(|b| b.location.clone()))
        .unwrap_or_else(|| service.location.clone())
}

/// Where an `x-kiln` key is: under `build` (which wins) or under the service.
fn kiln_key_location(service: &Service, key: &str) -> (Location, KeyPath) {
    let base = KeyPath::from_keys(&["services", service.name.as_str()]);
    let in_build = service
        .definition
        .get("build")
        .and_then(|b| b.get("x-kiln"))
        .and_then(|k| k.as_mapping())
        .and_then(|m| m.entry(key));
    if let Some(entry) = in_build {
        return (
            entry.key_location.clone(),
            base.key("build").key("x-kiln").key(key),
        );
    }
    let in_service = service
        .definition
        .get("x-kiln")
        .and_then(|k| k.as_mapping())
        .and_then(|m| m.entry(key));
    match in_service {
        Some(entry) => (entry.key_location.clone(), base.key("x-kiln").key(key)),
        None => (service.location.clone(), base.key("x-kiln").key(key)),
    }
}

/// An `x-kiln.outputs` spec as an exporter output (the same types as `kiln build
/// --output`).
pub fn output_from_spec(spec: &TypedSpec) -> Result<Output, String> {
    let unknown: Vec<&str> = spec
        .attrs
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "dest")
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown field(s) {} (outputs take type= and dest=)",
            unknown.join(", ")
        ));
    }
    let dest = PathBuf::from(spec.attr("dest").ok_or("dest=PATH is required")?);
    match spec.kind.as_str() {
        "oci" => Ok(Output::OciTar(dest)),
        "oci-dir" | "local" => Ok(Output::OciDir(dest)),
        "docker" => Ok(Output::DockerTar(dest)),
        other => Err(format!(
            "unknown output type {other:?} (kiln writes oci, oci-dir and docker)"
        )),
    }
}

/// A service's tags followed by each of them under every release tag (`app:dev`
/// with `1.2.0` gives `app:dev`, `app:1.2.0`), without repeats. The service's own
/// tags stay, so `image:` still names the build.
pub fn with_release_tags(tags: &[String], release: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags
        .iter()
        .cloned()
        .chain(tags::tagged_references(tags, release))
    {
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// The tags `kiln compose push` pushes a built service under: the service's tags and,
/// with `x-kiln.tag_scheme`, the release tags of the commit the stored image was built
/// from (its `org.opencontainers.image.revision` label; the context's `HEAD` when the
/// image has none), so a push after a new commit still names the image's own commit.
pub fn pushed_tags(store: &Store, request: &compose::BuildRequest) -> Result<Vec<String>, Error> {
    let (Some(TagScheme::SemverSha), Some(version)) = (request.tag_scheme, &request.version) else {
        return Ok(request.tags.clone());
    };
    let release_error = |source| Error::Release {
        service: request.service.clone(),
        source: Box::new(source),
    };
    let revision = match stored_label(store, &request.tags[0], "org.opencontainers.image.revision")
    {
        Some(commit) => Some(tags::given_revision(&commit, None).map_err(release_error)?),
        None => None,
    };
    let release = tags::semver_sha(&tags::ReleaseOptions {
        version,
        revision,
        context: &request.context_dir,
        created: 0,
    })
    .map_err(release_error)?;
    Ok(with_release_tags(&request.tags, &release.tags))
}

/// A label of the image stored under `image`'s name, if it is there and has it.
fn stored_label(store: &Store, image: &str, label: &str) -> Option<String> {
    let descriptor = store.resolve(&store_name(image)).ok()?;
    let manifest = crate::image::Manifest::parse(
        &store.read_blob(&descriptor.digest).ok()?,
        &descriptor.digest,
    )
    .ok()?;
    let config_digest = &manifest.config.digest;
    let config =
        crate::image::ImageConfig::parse(&store.read_blob(config_digest).ok()?, config_digest)
            .ok()?;
    config.config.labels?.remove(label)
}

/// A path from the compose file: `~/` is the home directory, relative paths are
/// relative to the project directory.
fn expand_path(project_dir: &Path, path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => project_dir.join(path),
    }
}

impl Planner<'_> {
    fn problem(&mut self, service: &Service, key: &str, problem: Problem) {
        let location = build_key_location(service, key);
        let path = KeyPath::from_keys(&["services", service.name.as_str(), "build", key]);
        self.problems
            .push(Diagnostic::new(&location, &path, problem));
    }

    fn unsupported(&mut self, service: &Service, key: &str, feature: &str) {
        self.problem(
            service,
            key,
            Problem::Unsupported {
                feature: feature.to_owned(),
            },
        );
    }

    fn service(&mut self, request: &compose::BuildRequest) -> Result<ServicePlan, Error> {
        let project = self.project;
        let name = request.service.as_str();
        let service = project
            .service(name)
            .expect("build requests name known services");
        let mut out = build::BuildRequest::new(&request.context_dir);
        out.name = name.to_owned();
        out.target = request.target.clone();
        out.build_args = request.args.clone();
        out.tags = request.tags.clone();
        out.labels = request.labels.clone();
        out.no_cache = request.no_cache || self.options.no_cache;
        out.insecure_registries = self.options.insecure_registries.clone();
        out.sbom = request.sbom.unwrap_or(true);
        out.cache_from = request
            .cache_from
            .iter()
            .map(TypedSpec::to_string)
            .collect();
        out.cache_to = request.cache_to.iter().map(TypedSpec::to_string).collect();
        out.network = match request.network.as_deref() {
            Some("none") => build::NetworkMode::None,
            // `default` is the host's network for kiln; other values were refused
            // when the project was loaded.
            _ => build::NetworkMode::Host,
        };
        if let Some(value) = project.environment.get("SOURCE_DATE_EPOCH")
            && !value.is_empty()
        {
            out.source_date_epoch =
                Some(value.trim().parse().map_err(|_| Error::SourceDateEpoch {
                    value: value.clone(),
                })?);
        }
        self.platform(service, request, &mut out);
        self.secrets(service, request, &mut out);
        self.extra_hosts(service, request, &mut out);
        out.shm_size = request.shm_size;
        self.ssh(service, request, &mut out);
        self.release(service, request, &mut out)?;
        let outputs = self.outputs(service, request);

        // Named contexts, and the services they make this one need.
        let mut needs: BTreeSet<String> = BTreeSet::new();
        let mut context_images: BTreeMap<String, String> = BTreeMap::new();
        for (context_name, context) in &request.additional_contexts {
            let extra = match context {
                AdditionalContext::Path(dir) => build::ExtraContext::Dir(dir.clone()),
                AdditionalContext::Image(image) => {
                    context_images.insert(context_name.clone(), image.clone());
                    build::ExtraContext::Image(image.clone())
                }
                AdditionalContext::Service(other) => {
                    let other_service = project
                        .service(other)
                        .expect("build_requests checked service contexts");
                    let image = store_name(&project.image_name(other_service));
                    needs.insert(other.clone());
                    context_images.insert(context_name.clone(), image.clone());
                    build::ExtraContext::Image(image)
                }
            };
            out.extra_contexts.insert(context_name.clone(), extra);
        }

        // The Dockerfile: what it uses from outside decides the graph's edges.
        let (display_name, text) = match &request.dockerfile {
            compose::DockerfileSource::Path(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                    service: name.to_owned(),
                    path: path.clone(),
                    source,
                })?;
                let display = path
                    .strip_prefix(&request.context_dir)
                    .unwrap_or(path)
                    .display()
                    .to_string();
                out.dockerfile = build::DockerfileSource::Path(path.clone());
                (display, text)
            }
            compose::DockerfileSource::Inline(text) => {
                let display = format!("services.{name}.build.dockerfile_inline");
                out.dockerfile = build::DockerfileSource::Inline {
                    name: display.clone(),
                    text: text.clone(),
                };
                (display, text.clone())
            }
        };
        let dockerfile_error = |source| Error::Dockerfile {
            service: name.to_owned(),
            source: Box::new(source),
        };
        let parsed = dockerfile::load(&text, &display_name).map_err(dockerfile_error)?;
        let to_frontend = |p: &Platform| dockerfile::Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone(),
        };
        let resolve_options = ResolveOptions {
            build_args: out.build_args.clone(),
            target: out.target.clone(),
            build_platform: to_frontend(&Platform::host()),
            target_platform: to_frontend(&out.platform.clone().unwrap_or_else(Platform::host)),
        };
        let resolved = parsed.resolve(&resolve_options).map_err(dockerfile_error)?;
        let references = image_references(&resolved);

        let used_contexts: BTreeMap<String, String> = context_images
            .iter()
            .filter(|(context_name, _)| references.contains(*context_name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut pull = Vec::new();
        for reference in &references {
            let image = used_contexts.get(reference).unwrap_or(reference);
            match project.service_by_image(image) {
                Some(other) if other != name => {
                    needs.insert(other.to_owned());
                }
                Some(_) => {}
                None => {
                    if request.pull && !out.extra_contexts.contains_key(reference) {
                        pull.push(image.clone());
                    }
                }
            }
        }

        Ok(ServicePlan {
            service: name.to_owned(),
            image: request.tags[0].clone(),
            request: out,
            needs: needs.into_iter().collect(),
            pull,
            outputs,
        })
    }

    /// `platforms` (or the service's `platform`): one is the build's platform.
    fn platform(
        &mut self,
        service: &Service,
        request: &compose::BuildRequest,
        out: &mut build::BuildRequest,
    ) {
        let (key, value) = match request.platforms.as_slice() {
            [] => match &service.platform {
                Some(platform) => ("platform", platform.clone()),
                None => return,
            },
            [one] => ("platforms", one.clone()),
            _ => {
                self.unsupported(
                    service,
                    "platforms",
                    &format!(
                        "multi-platform builds ({}): kiln runs RUN steps natively, with no \
                         emulation, so it builds one platform at a time; give one platform \
                         here and build each other one on a machine of that architecture",
                        request.platforms.join(", ")
                    ),
                );
                return;
            }
        };
        match value.parse::<Platform>() {
            Ok(platform) => out.platform = Some(platform),
            Err(error) => {
                let problem = Problem::InvalidValue {
                    what: "platform",
                    value,
                    reason: error.to_string(),
                };
                if key == "platform" {
                    let path = KeyPath::from_keys(&["services", service.name.as_str(), key]);
                    let location = service
                        .definition
                        .as_mapping()
                        .and_then(|m| m.entry(key))
                        .map_or_else(|| service.location.clone(), |e| e.key_location.clone());
                    self.problems
                        .push(Diagnostic::new(&location, &path, problem));
                } else {
                    self.problem(service, key, problem);
                }
            }
        }
    }

    fn secrets(
        &mut self,
        service: &Service,
        request: &compose::BuildRequest,
        out: &mut build::BuildRequest,
    ) {
        for secret in &request.secrets {
            if secret.uid.is_some() || secret.gid.is_some() || secret.mode.is_some() {
                self.unsupported(
                    service,
                    "secrets",
                    &format!(
                        "uid, gid or mode on build secret {:?} (set them on RUN --mount=type=secret)",
                        secret.id
                    ),
                );
                continue;
            }
            // As Compose: `target` renames the secret for the build.
            let id = secret.target.clone().unwrap_or_else(|| secret.id.clone());
            let source = match &secret.source {
                SecretSource::File(path) => build::SecretValue::File(path.clone()),
                SecretSource::Environment { variable, value } => {
                    if std::env::var(variable).ok().as_deref() == Some(value.expose()) {
                        build::SecretValue::Env(variable.clone())
                    } else {
                        match self.secret_file(&id, value.expose()) {
                            Ok(path) => build::SecretValue::File(path),
                            Err(error) => {
                                self.problem(
                                    service,
                                    "secrets",
                                    Problem::InvalidValue {
                                        what: "secret",
                                        value: id.clone(),
                                        reason: format!(
                                            "could not hand its value to the build: {error}"
                                        ),
                                    },
                                );
                                continue;
                            }
                        }
                    }
                }
            };
            out.secrets.push(build::SecretSource { id, source });
        }
    }

    /// Writes a secret value (from an env file) where only this user can read it.
    fn secret_file(&mut self, id: &str, value: &str) -> std::io::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if self.secrets_dir.is_none() {
            let on_tmpfs = tempfile::Builder::new()
                .prefix("kiln-secrets-")
                .tempdir_in("/dev/shm");
            self.secrets_dir = Some(match on_tmpfs {
                Ok(dir) => dir,
                Err(_) => tempfile::Builder::new().prefix("kiln-secrets-").tempdir()?,
            });
        }
        let dir = self.secrets_dir.as_ref().expect("created above").path();
        let path = dir.join(format!("{}-{id}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(value.as_bytes())?;
        Ok(path)
    }

    /// `extra_hosts`: `host: ip` (or several) and `"host:ip"`/`"host=ip"` entries,
    /// IPv6 and `host-gateway` included, as `kiln build --add-host` takes them.
    fn extra_hosts(
        &mut self,
        service: &Service,
        request: &compose::BuildRequest,
        out: &mut build::BuildRequest,
    ) {
        for host in &request.extra_hosts {
            match build::ExtraHost::new(&host.host, &host.ip) {
                Ok(entry) => out.extra_hosts.push(entry),
                Err(reason) => self.problem(
                    service,
                    "extra_hosts",
                    Problem::InvalidValue {
                        what: "extra host",
                        value: format!("{}:{}", host.host, host.ip),
                        reason,
                    },
                ),
            }
        }
    }

    /// `ssh`: `default` (the agent at `$SSH_AUTH_SOCK`), or `ID=PATH` / `ID: PATH`
    /// with the path relative to the project directory, as `kiln build --ssh`.
    fn ssh(
        &mut self,
        service: &Service,
        request: &compose::BuildRequest,
        out: &mut build::BuildRequest,
    ) {
        for spec in &request.ssh {
            let paths: Vec<PathBuf> = if spec.paths.is_empty() {
                match self.project.environment.get("SSH_AUTH_SOCK") {
                    Some(socket) if !socket.is_empty() => vec![PathBuf::from(socket)],
                    _ => {
                        self.problem(
                            service,
                            "ssh",
                            Problem::InvalidValue {
                                what: "ssh agent",
                                value: spec.id.clone(),
                                reason: "SSH_AUTH_SOCK is not set; start an agent or give \
                                         its socket as ID=PATH"
                                    .to_owned(),
                            },
                        );
                        continue;
                    }
                }
            } else {
                spec.paths
                    .iter()
                    .map(|path| expand_path(&self.project.working_dir, path))
                    .collect()
            };
            out.ssh.push(build::SshSource {
                id: spec.id.clone(),
                paths,
            });
        }
    }

    /// `x-kiln.tag_scheme: semver-sha` with `x-kiln.version`: every tag of the service
    /// also under the release tags, and the OCI release labels (the service's own
    /// `labels` win), as `kiln build --tag-scheme semver-sha --version`.
    fn release(
        &mut self,
        service: &Service,
        request: &compose::BuildRequest,
        out: &mut build::BuildRequest,
    ) -> Result<(), Error> {
        let version = match (request.tag_scheme, &request.version) {
            (None, None) => return Ok(()),
            (Some(TagScheme::SemverSha), Some(version)) => version,
            (Some(_), None) => {
                self.kiln_problem(
                    service,
                    "tag_scheme",
                    Problem::InvalidValue {
                        what: "x-kiln.tag_scheme",
                        value: "semver-sha".to_owned(),
                        reason: "needs x-kiln.version (e.g. version: ${APP_VERSION})".to_owned(),
                    },
                );
                return Ok(());
            }
            (None, Some(version)) => {
                self.kiln_problem(
                    service,
                    "version",
                    Problem::InvalidValue {
                        what: "x-kiln.version",
                        value: version.clone(),
                        reason: "has no effect without x-kiln.tag_scheme: semver-sha".to_owned(),
                    },
                );
                return Ok(());
            }
        };
        if let Err(error) = tags::parse_version(version) {
            self.kiln_problem(
                service,
                "version",
                Problem::InvalidValue {
                    what: "x-kiln.version",
                    value: version.clone(),
                    reason: error.to_string(),
                },
            );
            return Ok(());
        }
        let created = out.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        let release = tags::semver_sha(&tags::ReleaseOptions {
            version,
            revision: None,
            context: &request.context_dir,
            created,
        })
        .map_err(|source| Error::Release {
            service: service.name.clone(),
            source: Box::new(source),
        })?;
        out.tags = with_release_tags(&out.tags, &release.tags);
        for (key, value) in release.labels {
            out.labels.entry(key).or_insert(value);
        }
        Ok(())
    }

    fn kiln_problem(&mut self, service: &Service, key: &str, problem: Problem) {
        let (location, path) = kiln_key_location(service, key);
        self.problems
            .push(Diagnostic::new(&location, &path, problem));
    }

    fn outputs(&mut self, service: &Service, request: &compose::BuildRequest) -> Vec<Output> {
        let mut outputs = Vec::new();
        for spec in &request.outputs {
            match output_from_spec(spec) {
                Ok(output) => outputs.push(output),
                Err(reason) => {
                    let (location, path) = kiln_key_location(service, "outputs");
                    self.problems.push(Diagnostic::new(
                        &location,
                        &path,
                        Problem::InvalidValue {
                            what: "output",
                            value: spec.to_string(),
                            reason,
                        },
                    ));
                }
            }
        }
        outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::compose::LoadOptions;

    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let options = LoadOptions::with_environment(dir.path(), BTreeMap::new());
        let project = Project::load(&options).unwrap();
        (dir, project)
    }

    const SHOP: &str = r#"name: shop
services:
  api:
    image: shop-api:${APP_VERSION:-dev}
    build:
      context: api
      target: runtime
      args: {PYVER: '3'}
      tags: [registry.local/shop-api:x]
      labels: {team: books}
  web:
    build: web
  worker:
    image: shop-worker
    build:
      context: worker
      additional_contexts:
        shared: service:api
  db:
    image: postgres:16
"#;

    fn shop() -> (tempfile::TempDir, Project) {
        project(&[
            ("compose.yaml", SHOP),
            (
                "api/Dockerfile",
                "FROM busybox AS build\nARG PYVER\nRUN echo $PYVER\nFROM busybox AS runtime\nCOPY --from=build /etc /etc\n",
            ),
            ("web/Dockerfile", "FROM shop-api:dev\nRUN true\n"),
            (
                "worker/Dockerfile",
                "FROM busybox\nCOPY --from=shared /etc/hostname /x\n",
            ),
        ])
    }

    #[test]
    fn requests_carry_compose_settings_and_order_follows_the_graph() {
        let (_dir, project) = shop();
        let plan = Plan::new(&project, &[], &PlanOptions::default()).unwrap();
        let order: Vec<&str> = plan.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(order, ["api", "web", "worker"]);
        let api = plan.service("api").unwrap();
        assert_eq!(
            api.request.tags,
            ["shop-api:dev", "registry.local/shop-api:x"]
        );
        assert_eq!(api.request.target.as_deref(), Some("runtime"));
        assert_eq!(api.request.build_args["PYVER"], "3");
        assert_eq!(api.request.labels["team"], "books");
        assert_eq!(api.request.name, "api");
        let web = plan.service("web").unwrap();
        assert_eq!(web.image, "shop-web");
        assert_eq!(web.needs, ["api"]);
        let worker = plan.service("worker").unwrap();
        assert_eq!(worker.needs, ["api"]);
        assert_eq!(
            worker.request.extra_contexts["shared"],
            build::ExtraContext::Image("shop-api:dev".into())
        );
        assert!(
            matches!(&worker.request.dockerfile, build::DockerfileSource::Path(p) if p.ends_with("Dockerfile")),
            "the Dockerfile is handed over as it is: {:?}",
            worker.request.dockerfile
        );
    }

    #[test]
    fn selecting_a_service_adds_what_it_builds_on() {
        let (_dir, project) = shop();
        let plan = Plan::new(&project, &["web"], &PlanOptions::default()).unwrap();
        let order: Vec<&str> = plan.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(order, ["api", "web"]);
    }

    #[test]
    fn from_cycles_name_the_services() {
        let (_dir, project) = project(&[
            (
                "compose.yaml",
                "services:\n  a:\n    image: img-a\n    build: a\n  b:\n    image: img-b\n    build: b\n",
            ),
            ("a/Dockerfile", "FROM img-b\n"),
            ("b/Dockerfile", "FROM busybox AS x\nFROM img-a\n"),
        ]);
        let error = Plan::new(&project, &[], &PlanOptions::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "services build on each other in a cycle: a -> b -> a"
        );
    }

    #[test]
    fn keys_without_effect_or_with_bad_values_are_located_errors() {
        let (_dir, project) = project(&[
            (
                "compose.yaml",
                "services:\n  a:\n    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n      extra_hosts: [\"h:1.2.3.4\", \"bad:not-an-ip\"]\n      x-kiln:\n        tag_scheme: semver-sha\n  b:\n    build: .\n    x-kiln:\n      tag_scheme: semver-sha\n      version: 1.0.0+sha.abc\n",
            ),
            ("Dockerfile", "FROM busybox\n"),
        ]);
        let error = Plan::new(&project, &[], &PlanOptions::default()).unwrap_err();
        let text = error.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("compose.yaml:5:7: services.a.build.platforms: "),
            "{text}"
        );
        assert!(
            lines[0].contains("multi-platform builds (linux/amd64, linux/arm64)")
                && lines[0].contains("no emulation")
                && lines[0].contains("give one platform"),
            "says why and what to do: {text}"
        );
        assert!(
            lines[1].starts_with("compose.yaml:6:7: services.a.build.extra_hosts: ")
                && lines[1].contains("\"not-an-ip\" is not an IP address"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("compose.yaml:8:9: services.a.build.x-kiln.tag_scheme: ")
                && lines[2].contains("needs x-kiln.version"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("compose.yaml:13:7: services.b.x-kiln.version: ")
                && lines[3].contains("`+` is not allowed"),
            "{text}"
        );
    }

    #[test]
    fn hosts_shm_and_ssh_reach_the_build_request() {
        let (dir, project) = project(&[
            (
                "compose.yaml",
                "services:\n  a:\n    build:\n      context: .\n      shm_size: 96m\n      extra_hosts:\n        db: 10.0.0.2\n        v6: \"::1\"\n        gw: host-gateway\n      ssh: [\"work=keys/agent.sock\"]\n  b:\n    build:\n      context: .\n      extra_hosts: [\"cache=10.0.0.9\", \"old:10.0.0.8\"]\n      ssh: {deploy: /run/agent.sock}\n",
            ),
            ("Dockerfile", "FROM busybox\n"),
        ]);
        let plan = Plan::new(&project, &[], &PlanOptions::default()).unwrap();
        let a = &plan.service("a").unwrap().request;
        assert_eq!(a.shm_size, Some(96 << 20));
        let hosts: Vec<String> = a
            .extra_hosts
            .iter()
            .map(|h| format!("{} {}", h.name, h.address.ip()))
            .collect();
        assert_eq!(hosts, ["db 10.0.0.2", "v6 ::1", "gw 127.0.0.1"]);
        assert_eq!(a.ssh.len(), 1);
        assert_eq!(a.ssh[0].id, "work");
        assert_eq!(a.ssh[0].paths, [dir.path().join("keys/agent.sock")]);
        let b = &plan.service("b").unwrap().request;
        assert_eq!(b.shm_size, None);
        let hosts: Vec<&str> = b.extra_hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["cache", "old"]);
        assert_eq!(b.ssh.len(), 1);
        assert_eq!(
            (b.ssh[0].id.as_str(), b.ssh[0].paths.as_slice()),
            ("deploy", [PathBuf::from("/run/agent.sock")].as_slice())
        );

        // `ssh: [default]` takes the agent of the environment, and says so when there is none.
        let (_dir, no_agent) = super::tests::project(&[
            (
                "compose.yaml",
                "services:\n  a:\n    build:\n      context: .\n      ssh: [default]\n",
            ),
            ("Dockerfile", "FROM busybox\n"),
        ]);
        let text = Plan::new(&no_agent, &[], &PlanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with("compose.yaml:5:7: services.a.build.ssh: ")
                && text.contains("SSH_AUTH_SOCK is not set"),
            "{text}"
        );
    }

    #[test]
    fn release_tags_come_from_the_context_repository() {
        let (dir, project) = project(&[
            (
                "compose.yaml",
                "services:\n  api:\n    image: reg.test/api:dev\n    build:\n      context: api\n      tags: [reg.test/mirror/api]\n      labels: {org.opencontainers.image.version: mine}\n      x-kiln:\n        tag_scheme: semver-sha\n        version: v1.4.2\n",
            ),
            ("api/Dockerfile", "FROM busybox\n"),
        ]);
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("git");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "one"]);
        let short = &git(&["rev-parse", "HEAD"])[..7];
        let plan = Plan::new(&project, &[], &PlanOptions::default()).unwrap();
        let api = plan.service("api").unwrap();
        assert_eq!(api.image, "reg.test/api:dev");
        let expected: Vec<String> = [
            "reg.test/api:dev".to_owned(),
            "reg.test/mirror/api".to_owned(),
        ]
        .into_iter()
        .chain(
            ["reg.test/api", "reg.test/mirror/api"]
                .iter()
                .flat_map(|repo| {
                    ["1.4.2", "1.4", "1"]
                        .iter()
                        .map(move |tag| format!("{repo}:{tag}"))
                        .chain([format!("{repo}:1.4.2-sha.{short}")])
                }),
        )
        .collect();
        assert_eq!(api.request.tags, expected);
        assert_eq!(
            api.request.labels["org.opencontainers.image.version"], "mine",
            "the service's own labels win"
        );
        assert!(api.request.labels["org.opencontainers.image.revision"].starts_with(short));
    }

    #[test]
    fn outputs_parse_like_kiln_build() {
        let spec = |s: &str| compose::model::parse_typed_spec(s, false).unwrap();
        assert_eq!(
            output_from_spec(&spec("type=oci,dest=/o.tar")).unwrap(),
            Output::OciTar("/o.tar".into())
        );
        assert_eq!(
            output_from_spec(&spec("type=docker,dest=/d.tar")).unwrap(),
            Output::DockerTar("/d.tar".into())
        );
        assert!(output_from_spec(&spec("type=oci")).is_err());
        assert!(output_from_spec(&spec("type=registry,dest=/x")).is_err());
        assert!(output_from_spec(&spec("type=oci,dest=/x,compression=zstd")).is_err());
    }
}
