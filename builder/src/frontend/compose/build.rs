//! Build requests: what the build engine needs for each service to build, in an order
//! where every service comes after the services it builds on.
//!
//! Build-time dependencies are the `service:NAME` additional contexts. (A Dockerfile
//! `FROM` naming another service's image is a dependency too; the caller finds those with
//! the Dockerfile parser and [`Project::service_by_image`].)
//!
//! Errors: [`Error::UnknownService`] for a selected name that does not exist,
//! [`Error::DependencyCycle`], and [`Error::Invalid`] listing every unsupported key, git
//! or remote context, undefined service reference, and unusable secret of the services to
//! build.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::diag::{Diagnostic, Diagnostics, Error, KeyPath, Problem};
use super::model::{
    AdditionalContext, BuildContext, DockerfileSource, ExtraHost, Project, SecretDefinitionSource,
    Service, SshSpec, TagScheme, TypedSpec,
};

/// Everything needed to build one service's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    pub service: String,
    pub context_dir: PathBuf,
    pub dockerfile: DockerfileSource,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// `image:` first (or `<project>-<service>` when there is none), then `build.tags`.
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub secrets: Vec<BuildSecret>,
    /// `service:` contexts stay [`AdditionalContext::Service`] when that service builds,
    /// and become [`AdditionalContext::Image`] of its `image:` when it does not.
    pub additional_contexts: BTreeMap<String, AdditionalContext>,
    pub cache_from: Vec<TypedSpec>,
    pub cache_to: Vec<TypedSpec>,
    pub platforms: Vec<String>,
    pub pull: bool,
    pub no_cache: bool,
    pub network: Option<String>,
    pub extra_hosts: Vec<ExtraHost>,
    pub shm_size: Option<u64>,
    pub ssh: Vec<SshSpec>,
    /// `x-kiln.outputs` (relative `dest` made absolute against the project directory).
    pub outputs: Vec<TypedSpec>,
    /// Whether to write an SBOM; `None` leaves it to kiln's default.
    pub sbom: Option<bool>,
    pub tag_scheme: Option<TagScheme>,
    pub version: Option<String>,
}

/// A build secret with its source resolved from the top-level `secrets:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSecret {
    /// The secret id (`RUN --mount=type=secret,id=...`).
    pub id: String,
    pub source: SecretSource,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// The value of a variable of the project environment (shell, then env files).
    Environment {
        variable: String,
        value: SecretValue,
    },
}

/// A secret value that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Docker-style normalisation for comparing references: `docker.io/library/` and
/// `docker.io/` dropped, `:latest` added when there is neither tag nor digest.
fn normalize_reference(reference: &str) -> String {
    let mut name = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("index.docker.io/library/"))
        .or_else(|| reference.strip_prefix("docker.io/"))
        .or_else(|| reference.strip_prefix("index.docker.io/"))
        .unwrap_or(reference)
        .to_owned();
    if let Some(rest) = name.strip_prefix("library/") {
        name = rest.to_owned();
    }
    let last = name.rsplit('/').next().unwrap_or(&name);
    if !last.contains(':') && !name.contains('@') {
        name.push_str(":latest");
    }
    name
}

impl Project {
    /// The image name a service's build is stored under: its `image:`, else
    /// `<project>-<service>` as Compose names it.
    pub fn image_name(&self, service: &Service) -> String {
        match &service.image {
            Some(image) => image.value.clone(),
            None => format!("{}-{}", self.name, service.name),
        }
    }

    /// The service that builds `reference` (by `image:`, `build.tags` or the default
    /// name), comparing names as Docker normalises them.
    pub fn service_by_image(&self, reference: &str) -> Option<&str> {
        let wanted = normalize_reference(reference);
        self.services
            .values()
            .chain(self.disabled_services.values())
            .filter(|s| s.build.is_some())
            .find(|s| {
                std::iter::once(self.image_name(s))
                    .chain(s.build.iter().flat_map(|b| b.tags.iter().cloned()))
                    .any(|tag| normalize_reference(&tag) == wanted)
            })
            .map(|s| s.name.as_str())
    }

    /// Services whose images `service` builds on (`service:` additional contexts).
    pub fn build_dependencies(&self, service: &str) -> Vec<&str> {
        let Some(build) = self.service(service).and_then(|s| s.build.as_ref()) else {
            return Vec::new();
        };
        build
            .additional_contexts
            .values()
            .filter_map(|c| match &c.value {
                AdditionalContext::Service(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Build requests for `selected` services (all active services with a `build` when
    /// empty) plus the services they build on, dependencies first. Selected services
    /// without `build` are skipped; a selected service disabled by profiles is built.
    pub fn build_requests(&self, selected: &[&str]) -> Result<Vec<BuildRequest>, Error> {
        let roots: Vec<&str> = if selected.is_empty() {
            self.services
                .values()
                .filter(|s| s.build.is_some())
                .map(|s| s.name.as_str())
                .collect()
        } else {
            for name in selected {
                if self.service(name).is_none() {
                    return Err(Error::UnknownService {
                        name: (*name).to_owned(),
                    });
                }
            }
            selected.to_vec()
        };

        let mut problems = Vec::new();
        let mut order: Vec<&str> = Vec::new();
        let mut visiting: Vec<&str> = Vec::new();
        for root in roots {
            self.visit(root, &mut order, &mut visiting, &mut problems)?;
        }
        let mut requests = Vec::new();
        for name in order {
            let service = self.service(name).expect("visited services exist");
            if let Some(request) = self.request(service, &mut problems) {
                requests.push(request);
            }
        }
        if problems.is_empty() {
            Ok(requests)
        } else {
            Err(Error::Invalid(Diagnostics(problems)))
        }
    }

    fn visit<'p>(
        &'p self,
        name: &'p str,
        order: &mut Vec<&'p str>,
        visiting: &mut Vec<&'p str>,
        problems: &mut Vec<Diagnostic>,
    ) -> Result<(), Error> {
        if order.contains(&name) {
            return Ok(());
        }
        if let Some(start) = visiting.iter().position(|v| *v == name) {
            let mut chain: Vec<String> = visiting[start..].iter().map(|s| s.to_string()).collect();
            chain.push(name.to_owned());
            return Err(Error::DependencyCycle { chain });
        }
        let service = self.service(name).expect("callers pass known services");
        visiting.push(name);
        if let Some(build) = &service.build {
            for (context_name, context) in &build.additional_contexts {
                if let AdditionalContext::Service(dependency) = &context.value {
                    if self.service(dependency).is_none() {
                        problems.push(Diagnostic::new(
                            &context.location,
                            &KeyPath::from_keys(&[
                                "services",
                                name,
                                "build",
                                "additional_contexts",
                            ])
                            .key(context_name),
                            Problem::UndefinedService {
                                name: dependency.clone(),
                            },
                        ));
                        continue;
                    }
                    self.visit(dependency, order, visiting, problems)?;
                }
            }
        }
        visiting.pop();
        order.push(name);
        Ok(())
    }

    fn request(&self, service: &Service, problems: &mut Vec<Diagnostic>) -> Option<BuildRequest> {
        let build = service.build.as_ref()?;
        problems.extend(build.unsupported.iter().cloned());
        let context_dir = match &build.context {
            BuildContext::Dir(dir) => dir.clone(),
            BuildContext::Git(_) | BuildContext::Url(_) => return None,
        };
        let path = KeyPath::from_keys(&["services", service.name.as_str(), "build", "secrets"]);

        let mut secrets = Vec::new();
        for mount in &build.secrets {
            let Some(definition) = self.secrets.get(&mount.value.source) else {
                continue; // reported at load time
            };
            let source = match &definition.source {
                SecretDefinitionSource::File(file) => SecretSource::File(file.clone()),
                SecretDefinitionSource::Environment(variable) => {
                    match self.environment.get(variable) {
                        Some(value) => SecretSource::Environment {
                            variable: variable.clone(),
                            value: SecretValue(value.clone()),
                        },
                        None => {
                            problems.push(Diagnostic::new(
                                &mount.location,
                                &path,
                                Problem::SecretVariableUnset {
                                    name: definition.name.clone(),
                                    variable: variable.clone(),
                                },
                            ));
                            continue;
                        }
                    }
                }
                SecretDefinitionSource::External => {
                    problems.push(Diagnostic::new(
                        &mount.location,
                        &path,
                        Problem::ExternalSecret {
                            name: definition.name.clone(),
                        },
                    ));
                    continue;
                }
                SecretDefinitionSource::Missing => {
                    problems.push(Diagnostic::new(
                        &definition.location,
                        &KeyPath::from_keys(&["secrets", definition.name.as_str()]),
                        Problem::SecretWithoutSource {
                            name: definition.name.clone(),
                        },
                    ));
                    continue;
                }
            };
            secrets.push(BuildSecret {
                id: mount.value.source.clone(),
                source,
                target: mount.value.target.clone(),
                uid: mount.value.uid.clone(),
                gid: mount.value.gid.clone(),
                mode: mount.value.mode,
            });
        }

        let additional_contexts = build
            .additional_contexts
            .iter()
            .map(|(name, context)| {
                let context = match &context.value {
                    AdditionalContext::Service(other) => match self.service(other) {
                        Some(s) if s.build.is_none() => match &s.image {
                            Some(image) => AdditionalContext::Image(image.value.clone()),
                            None => context.value.clone(),
                        },
                        _ => context.value.clone(),
                    },
                    other => other.clone(),
                };
                (name.clone(), context)
            })
            .collect();

        let mut tags = vec![self.image_name(service)];
        for tag in &build.tags {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }

        Some(BuildRequest {
            service: service.name.clone(),
            context_dir,
            dockerfile: build.dockerfile.clone(),
            args: build.args.clone(),
            target: build.target.clone(),
            tags,
            labels: build.labels.clone(),
            secrets,
            additional_contexts,
            cache_from: build.cache_from.clone(),
            cache_to: build.cache_to.clone(),
            platforms: build.platforms.clone(),
            pull: build.pull,
            no_cache: build.no_cache,
            network: build.network.clone(),
            extra_hosts: build.extra_hosts.clone(),
            shm_size: build.shm_size,
            ssh: build.ssh.clone(),
            outputs: build.kiln.outputs.clone(),
            sbom: build.sbom,
            tag_scheme: build.kiln.tag_scheme,
            version: build.kiln.version.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        assert_eq!(normalize_reference("postgres"), "postgres:latest");
        assert_eq!(
            normalize_reference("docker.io/library/postgres:16"),
            "postgres:16"
        );
        assert_eq!(
            normalize_reference("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            normalize_reference("ghcr.io/o/app@sha256:ab"),
            "ghcr.io/o/app@sha256:ab"
        );
    }

    #[test]
    fn secret_values_are_redacted() {
        let value = SecretValue("hunter2".into());
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted>)");
        assert_eq!(value.expose(), "hunter2");
    }
}
