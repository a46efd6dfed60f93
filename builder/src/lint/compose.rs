//! The compose audit (`compose/*` in [`RULES`](super::RULES)): the eight checks
//! of the seed's release-engineering checklist, over a loaded [`Project`].
//!
//! Contract:
//! - A service with `build:` is exempt from the image pin rules: its `image:`
//!   names what kiln builds and pushes, which has no digest before it exists.
//!   Its Dockerfile (a local one) is linted instead, so its base images are held
//!   to the same pins (`dockerfile/base-*`).
//! - A database service is one whose image (see
//!   [`is_database_image`](super::names::is_database_image)) is postgres, mysql,
//!   mariadb, mongo, redis and their kin. Only those get the healthcheck, port,
//!   volume rules, and only dependencies on them need `service_healthy`.
//! - An environment variable is reported when its name looks secret and it has a
//!   value in the file (written or interpolated; a bare name passed through from
//!   the shell is not); `*_FILE` names pointing at secrets are fine.
//! - Services disabled by profiles are audited too.
//!
//! Findings are located at the key (or list item) at fault, or at the service
//! name when something is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::ignore::YamlIgnores;
use super::names::{ImageName, is_database_image, is_secret_name};
use super::{Error, Finding, LintOptions, lint_dockerfile, read};
use crate::frontend::compose::{
    BuildContext, DependencyCondition, DockerfileSource, Location, MountKind, Project, Service,
};

/// Runs the compose audit over `project`, then the Dockerfile rules over each
/// local Dockerfile its services build from. A Dockerfile that cannot be read or
/// parsed becomes a `parse-error` finding; the audit goes on.
pub fn lint_compose(project: &Project, options: &LintOptions) -> Result<Vec<Finding>, Error> {
    let services: Vec<&Service> = project
        .services
        .values()
        .chain(project.disabled_services.values())
        .collect();
    let databases: BTreeSet<&str> = services
        .iter()
        .filter(|s| {
            s.image
                .as_ref()
                .is_some_and(|i| is_database_image(&i.value))
        })
        .map(|s| s.name.as_str())
        .collect();

    let mut audit = Audit::default();
    for service in &services {
        audit.service(
            service,
            databases.contains(service.name.as_str()),
            &databases,
        );
    }

    // Inline ignores, per compose file.
    let mut ignores: BTreeMap<PathBuf, YamlIgnores> = BTreeMap::new();
    let mut findings = Vec::new();
    for (location, rule, message) in audit.found {
        let path = location.file.path().to_path_buf();
        let scopes = match ignores.get(&path) {
            Some(scopes) => scopes,
            None => {
                let text = read(&path)?;
                ignores
                    .entry(path.clone())
                    .or_insert(YamlIgnores::scan(&text))
            }
        };
        if scopes.covers(location.line as usize, rule) || options.ignore.contains(rule) {
            continue;
        }
        findings.push(Finding::new(
            rule,
            &display_path(&path),
            location.line as usize,
            location.column as usize,
            message,
        ));
    }

    // The Dockerfiles built by the project, each once.
    let mut dockerfiles = BTreeSet::new();
    for service in &services {
        let Some(build) = &service.build else {
            continue;
        };
        let (BuildContext::Dir(context), DockerfileSource::Path(dockerfile)) =
            (&build.context, &build.dockerfile)
        else {
            continue;
        };
        if !dockerfiles.insert(dockerfile.clone()) {
            continue;
        }
        let display = display_path(dockerfile);
        let result = read(dockerfile).and_then(|text| {
            lint_dockerfile(&text, &display, Some(context), Some(dockerfile), options)
        });
        match result {
            Ok(more) => findings.extend(more),
            Err(error) => findings.push(error.to_finding(&display)),
        }
    }
    findings.sort();
    findings.dedup();
    Ok(findings)
}

/// A path as shown in findings: relative to the current directory when under it.
pub(crate) fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

#[derive(Default)]
struct Audit {
    found: Vec<(Location, &'static str, String)>,
}

impl Audit {
    fn push(&mut self, location: &Location, rule: &'static str, message: String) {
        self.found.push((location.clone(), rule, message));
    }

    fn service(&mut self, service: &Service, is_database: bool, databases: &BTreeSet<&str>) {
        let name = &service.name;

        // 1, 2: images pinned to a tag and a digest.
        if service.build.is_none()
            && let Some(image) = &service.image
        {
            let reference = ImageName::split(&image.value);
            match reference.tag {
                _ if reference.digest.is_some() => {}
                None => self.push(
                    &image.location,
                    "compose/image-tag",
                    format!(
                        "service {name}: image {} has no tag (it means :latest)",
                        image.value
                    ),
                ),
                Some("latest") => self.push(
                    &image.location,
                    "compose/image-tag",
                    format!("service {name}: image {} uses the :latest tag", image.value),
                ),
                Some(_) => {}
            }
            if reference.digest.is_none() {
                self.push(
                    &image.location,
                    "compose/image-digest",
                    format!(
                        "service {name}: image {} is not pinned to a digest",
                        image.value
                    ),
                );
            }
        }

        if is_database {
            // 3: a healthcheck.
            match &service.healthcheck {
                None => self.push(
                    &service.location,
                    "compose/db-healthcheck",
                    format!("database service {name} has no healthcheck"),
                ),
                Some(check) if check.disable => self.push(
                    &check.location,
                    "compose/db-healthcheck",
                    format!("database service {name} has its healthcheck disabled"),
                ),
                Some(_) => {}
            }
            // 5: no published ports.
            for port in &service.ports {
                let host = match &port.value.published {
                    Some(published) => format!("host port {published}"),
                    None => "a random host port".to_owned(),
                };
                self.push(
                    &port.location,
                    "compose/db-port-published",
                    format!(
                        "database service {name} publishes port {} on {host}",
                        port.value.target
                    ),
                );
            }
            // 7: state in a named volume.
            let named = service.volumes.iter().any(|v| {
                v.value.kind == MountKind::Volume
                    && v.value.source.as_deref().is_some_and(|s| !s.is_empty())
            });
            if !named {
                let bind = service
                    .volumes
                    .iter()
                    .find(|v| v.value.kind == MountKind::Bind);
                let anonymous = service
                    .volumes
                    .iter()
                    .find(|v| v.value.kind == MountKind::Volume);
                match (bind, anonymous) {
                    (Some(mount), _) => self.push(
                        &mount.location,
                        "compose/db-volume",
                        format!(
                            "database service {name} keeps {} on a bind mount of {}",
                            mount.value.target,
                            mount.value.source.as_deref().unwrap_or("?")
                        ),
                    ),
                    (None, Some(mount)) => self.push(
                        &mount.location,
                        "compose/db-volume",
                        format!(
                            "database service {name} keeps {} on an anonymous volume",
                            mount.value.target
                        ),
                    ),
                    (None, None) => self.push(
                        &service.location,
                        "compose/db-volume",
                        format!("database service {name} has no volume: its data is lost with the container"),
                    ),
                }
            }
        }

        // 4: dependents wait for databases to be healthy.
        for (dependency, info) in &service.depends_on {
            if databases.contains(dependency.as_str())
                && info.condition != DependencyCondition::Healthy
            {
                self.push(
                    &info.location,
                    "compose/depends-on-healthy",
                    format!(
                        "service {name} depends on database {dependency} without condition: service_healthy"
                    ),
                );
            }
        }

        // 6: secrets not in environment variables.
        for (variable, value) in &service.environment {
            if value.value.is_some() && is_secret_name(variable) {
                self.push(
                    &value.location,
                    "compose/secret-in-environment",
                    format!("service {name}: {variable} is set in the environment"),
                );
            }
        }

        // 8: a restart policy (or a swarm deploy.restart_policy).
        let deploy_policy = service
            .definition
            .get("deploy")
            .and_then(|d| d.get("restart_policy"))
            .is_some();
        if service.restart.is_none() && !deploy_policy {
            self.push(
                &service.location,
                "compose/restart-policy",
                format!("service {name} has no restart policy"),
            );
        }
    }
}
