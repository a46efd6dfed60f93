//! The typed compose model: a [`Project`] of [`Service`]s, built from the merged,
//! interpolated and validated document.
//!
//! Build keys are typed in full ([`Build`]); other service keys that later tools read
//! (image, depends_on, healthcheck, ports, volumes, environment, secrets, restart,
//! profiles, labels) are typed too, and every service keeps its whole located definition
//! ([`Service::definition`]) for anything else. Keys kiln cannot honour in a build are
//! recorded as located diagnostics in [`Build::unsupported`], and reported when that
//! service is built ([`Project::build_requests`](super::Project::build_requests)).
//!
//! Errors: [`Error::Invalid`] with located problems (a malformed `cache_from`, an unknown
//! `x-kiln` key, `dockerfile` with `dockerfile_inline`, a reference to an undefined
//! service or secret).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, Diagnostics, Error, KeyPath, Location, Problem};
use super::loader::{
    LoadOptions, LoadedDocument, Warning, clean_join, is_local_additional_context,
    is_remote_context, load_document, parse_bool,
};
use super::merge::{as_map, depends_on_map};
use super::yaml::{Mapping, Node, Value, to_yaml};

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub location: Location,
}

/// A loaded compose project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project name (`-p` > `COMPOSE_PROJECT_NAME` > `name:` > directory name).
    pub name: String,
    /// The project directory: relative paths were resolved against it.
    pub working_dir: PathBuf,
    /// The compose files read, in merge order (includes and extends not listed).
    pub compose_files: Vec<PathBuf>,
    /// The interpolation environment: env files, then the process environment on top.
    pub environment: BTreeMap<String, String>,
    /// Active profiles (`--profile` or `COMPOSE_PROFILES`).
    pub active_profiles: Vec<String>,
    /// Services enabled by the active profiles.
    pub services: BTreeMap<String, Service>,
    /// Services whose profiles are all inactive.
    pub disabled_services: BTreeMap<String, Service>,
    /// Top-level `secrets:` definitions.
    pub secrets: BTreeMap<String, SecretDefinition>,
    /// Names of top-level `volumes:`.
    pub volumes: Vec<String>,
    /// Names of top-level `networks:`.
    pub networks: Vec<String>,
    /// Things the user should be told about (unset variables, several compose files...).
    pub warnings: Vec<Warning>,
    pub(crate) document: Node,
}

/// One service.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// Where the service's name is written.
    pub location: Location,
    pub image: Option<Located<String>>,
    pub build: Option<Build>,
    pub profiles: Vec<String>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub ports: Vec<Located<Port>>,
    pub expose: Vec<String>,
    pub volumes: Vec<Located<Mount>>,
    /// `None` values are names without a value (taken from the environment at run time).
    pub environment: BTreeMap<String, Located<Option<String>>>,
    pub env_files: Vec<EnvFileRef>,
    pub secrets: Vec<Located<SecretMount>>,
    pub labels: BTreeMap<String, String>,
    pub restart: Option<Located<String>>,
    pub pull_policy: Option<String>,
    pub platform: Option<String>,
    /// The whole merged, interpolated definition, with locations.
    pub definition: Node,
}

/// `depends_on` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub condition: DependencyCondition,
    pub required: bool,
    pub restart: bool,
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyCondition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

/// `healthcheck`.
#[derive(Debug, Clone, PartialEq)]
pub struct Healthcheck {
    /// As written in list form; the string form becomes `["CMD-SHELL", text]`.
    pub test: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<u64>,
    pub disable: bool,
    pub location: Location,
}

/// A `ports` entry, short or long syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub host_ip: Option<String>,
    /// Host port or range; `None` when not published on a fixed port.
    pub published: Option<String>,
    /// Container port or range.
    pub target: String,
    pub protocol: Option<String>,
}

/// A `volumes` entry of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path (bind), volume name (volume) or nothing (anonymous volume, tmpfs).
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
    Other(String),
}

/// An `env_file` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileRef {
    pub path: PathBuf,
    pub required: bool,
}

/// A service or build `secrets` entry (short syntax fills only `source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

/// A top-level `secrets:` definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDefinition {
    pub name: String,
    pub location: Location,
    pub source: SecretDefinitionSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretDefinitionSource {
    File(PathBuf),
    /// The name of an environment variable.
    Environment(String),
    External,
    /// Neither `file`, `environment` nor `external`.
    Missing,
}

/// A service's `build` section, typed.
#[derive(Debug, Clone)]
pub struct Build {
    pub location: Location,
    pub context: BuildContext,
    pub dockerfile: DockerfileSource,
    /// Build args; one without a value took the environment's, or was left out.
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub secrets: Vec<Located<SecretMount>>,
    pub additional_contexts: BTreeMap<String, Located<AdditionalContext>>,
    pub cache_from: Vec<TypedSpec>,
    pub cache_to: Vec<TypedSpec>,
    pub platforms: Vec<String>,
    pub pull: bool,
    pub no_cache: bool,
    pub network: Option<String>,
    pub shm_size: Option<u64>,
    pub extra_hosts: Vec<ExtraHost>,
    pub ssh: Vec<SshSpec>,
    /// `build.sbom` / `x-kiln.sbom`; `None` leaves the choice to kiln's default.
    pub sbom: Option<bool>,
    pub kiln: KilnExtension,
    /// Keys kiln cannot honour; reported when this service is built.
    pub unsupported: Vec<Diagnostic>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildContext {
    Dir(PathBuf),
    Git(String),
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A path (relative names were joined to the context directory).
    Path(PathBuf),
    /// `dockerfile_inline` text.
    Inline(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdditionalContext {
    /// A local directory.
    Path(PathBuf),
    /// `docker-image://REF`.
    Image(String),
    /// `service:NAME`: the image built for another service.
    Service(String),
}

/// `type=NAME,key=value,...` as used by `cache_from`, `cache_to` and outputs. A bare
/// reference in `cache_from`/`cache_to` means `type=registry,ref=REFERENCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedSpec {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
}

impl TypedSpec {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

impl fmt::Display for TypedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type={}", self.kind)?;
        for (key, value) in &self.attrs {
            write!(f, ",{key}={value}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    pub host: String,
    pub ip: String,
}

/// An `ssh` entry: `default`, or `ID=path[,path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    pub id: String,
    pub paths: Vec<String>,
}

/// kiln's own keys, `x-kiln:` under a service or its `build` (the build's win).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KilnExtension {
    pub outputs: Vec<TypedSpec>,
    pub sbom: Option<bool>,
    pub tag_scheme: Option<TagScheme>,
    pub version: Option<String>,
}

/// How tags are derived from `x-kiln.version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagScheme {
    /// `1.2.3`, `1.2`, `1` and `1.2.3-sha.<commit>` ([`crate::tags::semver_sha`]).
    SemverSha,
}

impl Project {
    /// Loads, merges, interpolates and validates a compose project.
    pub fn load(options: &LoadOptions) -> Result<Project, Error> {
        let loaded = load_document(options)?;
        Project::from_document(loaded)
    }

    fn from_document(loaded: LoadedDocument) -> Result<Project, Error> {
        let LoadedDocument {
            name,
            project_dir,
            files,
            environment,
            active_profiles,
            document,
            warnings,
        } = loaded;
        let mut problems = Vec::new();
        let reader = Reader {
            environment: &environment,
            project_dir: &project_dir,
        };

        let mut services = BTreeMap::new();
        let mut disabled_services = BTreeMap::new();
        if let Some(mapping) = document.get("services").and_then(Node::as_mapping) {
            for entry in &mapping.entries {
                let service =
                    reader.service(&entry.key, &entry.key_location, &entry.value, &mut problems);
                let active = service.profiles.is_empty()
                    || active_profiles
                        .iter()
                        .any(|p| p == "*" || service.profiles.contains(p));
                if active {
                    services.insert(entry.key.clone(), service);
                } else {
                    disabled_services.insert(entry.key.clone(), service);
                }
            }
        }

        let mut secrets = BTreeMap::new();
        if let Some(mapping) = document.get("secrets").and_then(Node::as_mapping) {
            for entry in &mapping.entries {
                secrets.insert(
                    entry.key.clone(),
                    secret_definition(entry.key.as_str(), &entry.key_location, &entry.value),
                );
            }
        }
        let names_of = |key: &str| -> Vec<String> {
            document
                .get(key)
                .and_then(Node::as_mapping)
                .map(|m| m.entries.iter().map(|e| e.key.clone()).collect())
                .unwrap_or_default()
        };
        let volumes = names_of("volumes");
        let networks = names_of("networks");

        // References between resources.
        for service in services.values().chain(disabled_services.values()) {
            let path = KeyPath::from_keys(&["services", service.name.as_str()]);
            for (dependency, info) in &service.depends_on {
                // An optional dependency (`required: false`) may be absent, as in Compose.
                if info.required
                    && !services.contains_key(dependency)
                    && !disabled_services.contains_key(dependency)
                {
                    problems.push(Diagnostic::new(
                        &info.location,
                        &path.key("depends_on"),
                        Problem::UndefinedService {
                            name: dependency.clone(),
                        },
                    ));
                }
            }
            let build_secrets = service.build.iter().flat_map(|b| b.secrets.iter());
            for (key, mount) in service
                .secrets
                .iter()
                .map(|s| ("secrets", s))
                .chain(build_secrets.map(|s| ("build.secrets", s)))
            {
                if !secrets.contains_key(&mount.value.source) {
                    problems.push(Diagnostic::new(
                        &mount.location,
                        &path.key(key),
                        Problem::UndefinedSecret {
                            name: mount.value.source.clone(),
                        },
                    ));
                }
            }
        }

        if !problems.is_empty() {
            return Err(Error::Invalid(Diagnostics(problems)));
        }
        Ok(Project {
            name,
            working_dir: project_dir,
            compose_files: files,
            environment,
            active_profiles,
            services,
            disabled_services,
            secrets,
            volumes,
            networks,
            warnings,
            document,
        })
    }

    /// The merged, interpolated document with locations.
    pub fn document(&self) -> &Node {
        &self.document
    }

    /// An active or disabled service by name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .get(name)
            .or_else(|| self.disabled_services.get(name))
    }

    /// The resolved project as canonical YAML, as `docker compose config` prints it.
    pub fn to_yaml(&self) -> String {
        self.to_yaml_with_pins(&BTreeMap::new())
    }

    /// The resolved project as canonical YAML with the `image:` of each service in `pins`
    /// replaced by its pinned reference (`name:tag@sha256:...`). Only active services are
    /// written; `$` is written `$$` so the output interpolates to the same values.
    pub fn to_yaml_with_pins(&self, pins: &BTreeMap<String, String>) -> String {
        let location = self.document.location.clone();
        let mut root = Mapping::default();
        root.insert(
            "name".to_owned(),
            location.clone(),
            Node::string(self.name.clone(), location.clone()),
        );
        let mut services = Mapping::default();
        for (name, service) in &self.services {
            let mut definition = canonical_service(&service.definition);
            if let (Some(pin), Some(mapping)) = (pins.get(name), definition.as_mapping_mut()) {
                mapping.insert(
                    "image".to_owned(),
                    location.clone(),
                    Node::string(pin.clone(), location.clone()),
                );
            }
            sort_keys(&mut definition);
            services.insert(name.clone(), service.location.clone(), definition);
        }
        root.insert(
            "services".to_owned(),
            location.clone(),
            Node::new(Value::Mapping(services), location.clone()),
        );
        let order = ["networks", "volumes", "secrets", "configs", "models"];
        let mut rest: Vec<_> = self
            .document
            .as_mapping()
            .map(|m| {
                m.entries
                    .iter()
                    .filter(|e| !matches!(e.key.as_str(), "name" | "services" | "include"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        rest.sort_by_key(|e| {
            (
                order
                    .iter()
                    .position(|k| *k == e.key)
                    .unwrap_or(order.len()),
                e.key.clone(),
            )
        });
        for mut entry in rest {
            sort_keys(&mut entry.value);
            root.entries.push(entry);
        }
        to_yaml(&Node::new(Value::Mapping(root), location), true)
    }
}

/// A service definition in `docker compose config` form: `build` as a mapping with a
/// `dockerfile`, maps for environment/labels/args, long `depends_on`.
fn canonical_service(definition: &Node) -> Node {
    let mut service = definition.clone();
    let Some(mapping) = service.as_mapping_mut() else {
        return service;
    };
    for key in ["environment", "labels", "annotations", "sysctls"] {
        if let Some(node) = mapping.get_mut(key) {
            *node = as_map(node.clone());
        }
    }
    if let Some(node) = mapping.get_mut("depends_on") {
        *node = depends_on_map(node.clone());
    }
    if let Some(build) = mapping.get_mut("build") {
        if let Value::String(context) = &build.value {
            let mut m = Mapping::default();
            m.insert(
                "context".to_owned(),
                build.location.clone(),
                Node::string(context.clone(), build.location.clone()),
            );
            build.value = Value::Mapping(m);
        }
        let location = build.location.clone();
        if let Some(m) = build.as_mapping_mut() {
            if !m.contains_key("dockerfile") && !m.contains_key("dockerfile_inline") {
                m.insert(
                    "dockerfile".to_owned(),
                    location.clone(),
                    Node::string("Dockerfile", location),
                );
            }
            for key in ["args", "labels", "additional_contexts"] {
                if let Some(node) = m.get_mut(key) {
                    *node = as_map(node.clone());
                }
            }
        }
    }
    service
}

fn sort_keys(node: &mut Node) {
    match &mut node.value {
        Value::Mapping(m) => {
            m.entries.sort_by(|a, b| a.key.cmp(&b.key));
            for entry in &mut m.entries {
                sort_keys(&mut entry.value);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

fn secret_definition(name: &str, location: &Location, node: &Node) -> SecretDefinition {
    let external = node.get("external").is_some_and(|e| match &e.value {
        Value::Bool(b) => *b,
        Value::String(s) => parse_bool(s).unwrap_or(false),
        Value::Mapping(_) => true,
        _ => false,
    });
    let source = if external {
        SecretDefinitionSource::External
    } else if let Some(file) = node.get("file").and_then(Node::as_str) {
        SecretDefinitionSource::File(PathBuf::from(file))
    } else if let Some(variable) = node.get("environment").and_then(Node::as_str) {
        SecretDefinitionSource::Environment(variable.to_owned())
    } else {
        SecretDefinitionSource::Missing
    };
    SecretDefinition {
        name: name.to_owned(),
        location: location.clone(),
        source,
    }
}

/// Keys of the compose-spec `build` definition kiln honours.
pub const SUPPORTED_BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "args",
    "target",
    "tags",
    "labels",
    "secrets",
    "additional_contexts",
    "cache_from",
    "cache_to",
    "platforms",
    "pull",
    "no_cache",
    "network",
    "shm_size",
    "extra_hosts",
    "ssh",
    "sbom",
];

/// Keys of the compose-spec `build` definition kiln refuses with a located error when
/// they ask for something (`privileged: false` or `provenance: false` ask for nothing).
pub const REFUSED_BUILD_KEYS: &[&str] = &[
    "isolation",
    "privileged",
    "ulimits",
    "entitlements",
    "provenance",
];

/// Reads typed values out of located nodes, collecting problems.
struct Reader<'a> {
    environment: &'a BTreeMap<String, String>,
    project_dir: &'a Path,
}

fn text(node: Option<&Node>) -> Option<String> {
    node.and_then(Node::scalar_text)
}

fn strings(node: Option<&Node>) -> Vec<String> {
    match node.map(|n| &n.value) {
        Some(Value::Sequence(items)) => items.iter().filter_map(Node::scalar_text).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn truthy(node: &Node) -> Option<bool> {
    match &node.value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

/// A `list_or_dict` as (key, optional value, location) triples.
fn key_values(node: Option<&Node>) -> Vec<(String, Option<String>, Location)> {
    let Some(node) = node else {
        return Vec::new();
    };
    match &node.value {
        Value::Mapping(m) => m
            .entries
            .iter()
            .map(|e| {
                let value = if e.value.is_null() {
                    None
                } else {
                    e.value.scalar_text()
                };
                (e.key.clone(), value, e.key_location.clone())
            })
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(|item| {
                let text = item.scalar_text()?;
                Some(match text.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned()), item.location.clone()),
                    None => (text, None, item.location.clone()),
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Splits `a=b,c="d,e"` into pairs, honouring double quotes like buildx's CSV reader.
pub(crate) fn parse_csv_pairs(spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".to_owned());
    }
    fields.push(field);
    fields
        .into_iter()
        .filter(|f| !f.trim().is_empty())
        .map(|f| match f.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_lowercase(), v.to_owned())),
            None => Err(format!("{f:?} is not key=value")),
        })
        .collect()
}

/// Parses a cache or output spec. With `bare_is_registry`, a value without `=` is a
/// registry reference (`cache_from: [user/app:cache]`).
pub fn parse_typed_spec(spec: &str, bare_is_registry: bool) -> Result<TypedSpec, String> {
    if bare_is_registry && !spec.contains('=') {
        if spec.trim().is_empty() {
            return Err("empty".to_owned());
        }
        return Ok(TypedSpec {
            kind: "registry".to_owned(),
            attrs: BTreeMap::from([("ref".to_owned(), spec.trim().to_owned())]),
        });
    }
    let mut kind = None;
    let mut attrs = BTreeMap::new();
    for (key, value) in parse_csv_pairs(spec)? {
        if key == "type" {
            kind = Some(value);
        } else {
            attrs.insert(key, value);
        }
    }
    match kind {
        Some(kind) if !kind.is_empty() => Ok(TypedSpec { kind, attrs }),
        _ => Err("missing type=".to_owned()),
    }
}

/// Docker's `RAMInBytes`: a number with an optional b/k/m/g/t/p suffix (powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((number * multiplier as f64) as u64)
}

/// `[[host_ip:]published:]target[/protocol]`.
pub fn parse_port(spec: &str) -> Port {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((rest, protocol)) => (rest, Some(protocol.to_owned())),
        None => (spec, None),
    };
    let mut parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    parts.reverse();
    let (host_ip, published, target) = match parts.as_slice() {
        [target] => (None, None, *target),
        [published, target] => (None, Some(*published), *target),
        [host, published, target] => (
            Some(host.trim_start_matches('[').trim_end_matches(']')),
            Some(*published),
            *target,
        ),
        _ => (None, None, rest),
    };
    Port {
        host_ip: host_ip.filter(|h| !h.is_empty()).map(str::to_owned),
        published: published.filter(|p| !p.is_empty()).map(str::to_owned),
        target: target.to_owned(),
        protocol,
    }
}

/// `source:target[:mode]` or `target`.
pub fn parse_volume(spec: &str) -> Mount {
    let parts: Vec<&str> = spec.splitn(3, ':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [source, target] => (Some(*source), *target, ""),
        [source, target, mode] => (Some(*source), *target, *mode),
        _ => (None, spec, ""),
    };
    let kind = match source {
        Some(s) if s.starts_with(['/', '.', '~']) => MountKind::Bind,
        _ => MountKind::Volume,
    };
    Mount {
        kind,
        source: source.map(str::to_owned),
        target: target.to_owned(),
        read_only: mode.split(',').any(|m| m == "ro"),
    }
}

impl Reader<'_> {
    fn service(
        &self,
        name: &str,
        location: &Location,
        node: &Node,
        problems: &mut Vec<Diagnostic>,
    ) -> Service {
        let path = KeyPath::from_keys(&["services", name]);
        let mut service = Service {
            name: name.to_owned(),
            location: location.clone(),
            image: node.get("image").and_then(|n| {
                n.scalar_text().map(|value| Located {
                    value,
                    location: n.location.clone(),
                })
            }),
            build: None,
            profiles: strings(node.get("profiles")),
            depends_on: BTreeMap::new(),
            healthcheck: node.get("healthcheck").map(healthcheck),
            ports: Vec::new(),
            expose: strings(node.get("expose")),
            volumes: Vec::new(),
            environment: key_values(node.get("environment"))
                .into_iter()
                .map(|(k, v, location)| (k, Located { value: v, location }))
                .collect(),
            env_files: Vec::new(),
            secrets: secret_mounts(node.get("secrets")),
            labels: key_values(node.get("labels"))
                .into_iter()
                .map(|(k, v, _)| (k, v.unwrap_or_default()))
                .collect(),
            restart: node.get("restart").and_then(|n| {
                n.scalar_text().map(|value| Located {
                    value,
                    location: n.location.clone(),
                })
            }),
            pull_policy: text(node.get("pull_policy")),
            platform: text(node.get("platform")),
            definition: node.clone(),
        };
        if let Some(depends_on) = node.get("depends_on") {
            let map = depends_on_map(depends_on.clone());
            for entry in map
                .as_mapping()
                .map(|m| m.entries.as_slice())
                .unwrap_or_default()
            {
                let condition = match text(entry.value.get("condition")).as_deref() {
                    Some("service_healthy") => DependencyCondition::Healthy,
                    Some("service_completed_successfully") => {
                        DependencyCondition::CompletedSuccessfully
                    }
                    _ => DependencyCondition::Started,
                };
                service.depends_on.insert(
                    entry.key.clone(),
                    Dependency {
                        condition,
                        required: entry.value.get("required").and_then(truthy).unwrap_or(true),
                        restart: entry.value.get("restart").and_then(truthy).unwrap_or(false),
                        location: entry.key_location.clone(),
                    },
                );
            }
        }
        for item in node
            .get("ports")
            .and_then(Node::as_sequence)
            .unwrap_or_default()
        {
            let port = match &item.value {
                Value::Mapping(m) => Port {
                    host_ip: text(m.get("host_ip")),
                    published: text(m.get("published")).filter(|p| !p.is_empty()),
                    target: text(m.get("target")).unwrap_or_default(),
                    protocol: text(m.get("protocol")),
                },
                _ => parse_port(&item.scalar_text().unwrap_or_default()),
            };
            service.ports.push(Located {
                value: port,
                location: item.location.clone(),
            });
        }
        for item in node
            .get("volumes")
            .and_then(Node::as_sequence)
            .unwrap_or_default()
        {
            let mount = match &item.value {
                Value::Mapping(m) => Mount {
                    kind: match text(m.get("type")).as_deref() {
                        Some("bind") => MountKind::Bind,
                        Some("volume") => MountKind::Volume,
                        Some("tmpfs") => MountKind::Tmpfs,
                        other => MountKind::Other(other.unwrap_or_default().to_owned()),
                    },
                    source: text(m.get("source")),
                    target: text(m.get("target")).unwrap_or_default(),
                    read_only: m.get("read_only").and_then(truthy).unwrap_or(false),
                },
                _ => parse_volume(&item.scalar_text().unwrap_or_default()),
            };
            service.volumes.push(Located {
                value: mount,
                location: item.location.clone(),
            });
        }
        match node.get("env_file").map(|n| &n.value) {
            Some(Value::String(path)) => service.env_files.push(EnvFileRef {
                path: PathBuf::from(path),
                required: true,
            }),
            Some(Value::Sequence(items)) => {
                for item in items {
                    match &item.value {
                        Value::Mapping(m) => service.env_files.push(EnvFileRef {
                            path: PathBuf::from(text(m.get("path")).unwrap_or_default()),
                            required: m.get("required").and_then(truthy).unwrap_or(true),
                        }),
                        _ => service.env_files.push(EnvFileRef {
                            path: PathBuf::from(item.scalar_text().unwrap_or_default()),
                            required: true,
                        }),
                    }
                }
            }
            _ => {}
        }
        if let Some(build) = node.get("build") {
            let service_kiln = node.get("x-kiln");
            service.build = Some(self.build(build, service_kiln, &path.key("build"), problems));
        }
        service
    }

    fn build(
        &self,
        node: &Node,
        service_kiln: Option<&Node>,
        path: &KeyPath,
        problems: &mut Vec<Diagnostic>,
    ) -> Build {
        let empty = Mapping::default();
        let (context_text, mapping) = match &node.value {
            Value::String(context) => (context.clone(), &empty),
            Value::Mapping(m) => (text(m.get("context")).unwrap_or_else(|| ".".to_owned()), m),
            _ => (".".to_owned(), &empty),
        };
        let context_location = mapping
            .get("context")
            .map_or(&node.location, |c| &c.location)
            .clone();
        let mut unsupported = Vec::new();
        let context = if is_git_url(&context_text) {
            unsupported.push(Diagnostic::new(
                &context_location,
                path,
                Problem::GitContext {
                    url: context_text.clone(),
                },
            ));
            BuildContext::Git(context_text)
        } else if is_remote_context(&context_text) {
            unsupported.push(Diagnostic::new(
                &context_location,
                path,
                Problem::RemoteContext {
                    url: context_text.clone(),
                },
            ));
            BuildContext::Url(context_text)
        } else {
            BuildContext::Dir(clean_join(self.project_dir, Path::new(&context_text)))
        };

        let dockerfile = match (mapping.get("dockerfile"), mapping.get("dockerfile_inline")) {
            (Some(file), Some(_)) => {
                problems.push(Diagnostic::new(
                    &file.location,
                    path,
                    Problem::DockerfileConflict,
                ));
                DockerfileSource::Path(PathBuf::new())
            }
            (None, Some(inline)) => {
                DockerfileSource::Inline(inline.scalar_text().unwrap_or_default())
            }
            (file, None) => {
                let name = text(file).unwrap_or_else(|| "Dockerfile".to_owned());
                match &context {
                    BuildContext::Dir(dir) => {
                        DockerfileSource::Path(clean_join(dir, Path::new(&name)))
                    }
                    _ => DockerfileSource::Path(PathBuf::from(name)),
                }
            }
        };

        let args = key_values(mapping.get("args"))
            .into_iter()
            .filter_map(|(key, value, _)| {
                let value = value.or_else(|| self.environment.get(&key).cloned())?;
                Some((key, value))
            })
            .collect();

        let mut additional_contexts = BTreeMap::new();
        for (name, value, location) in key_values(mapping.get("additional_contexts")) {
            let value = value.unwrap_or_default();
            let context = if let Some(service) = value.strip_prefix("service:") {
                AdditionalContext::Service(service.to_owned())
            } else if let Some(image) = value.strip_prefix("docker-image://") {
                AdditionalContext::Image(image.to_owned())
            } else if is_local_additional_context(&value) {
                AdditionalContext::Path(clean_join(self.project_dir, Path::new(&value)))
            } else {
                unsupported.push(Diagnostic::new(
                    &location,
                    &path.key("additional_contexts"),
                    Problem::Unsupported {
                        feature: format!("additional context {name}={value} (only local paths, docker-image:// and service: are)"),
                    },
                ));
                continue;
            };
            additional_contexts.insert(
                name,
                Located {
                    value: context,
                    location,
                },
            );
        }

        let mut specs = |key: &str, bare_is_registry: bool| -> Vec<TypedSpec> {
            let mut out = Vec::new();
            for item in mapping
                .get(key)
                .and_then(Node::as_sequence)
                .unwrap_or_default()
            {
                let raw = item.scalar_text().unwrap_or_default();
                match parse_typed_spec(&raw, bare_is_registry) {
                    Ok(spec) => out.push(spec),
                    Err(reason) => problems.push(Diagnostic::new(
                        &item.location,
                        &path.key(key),
                        Problem::InvalidValue {
                            what: "cache spec",
                            value: raw,
                            reason,
                        },
                    )),
                }
            }
            out
        };
        let cache_from = specs("cache_from", true);
        let cache_to = specs("cache_to", true);

        let flag = |key: &str| mapping.get(key).and_then(truthy).unwrap_or(false);
        let shm_size = mapping.get("shm_size").and_then(|n| match &n.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::String(s) => {
                let size = parse_size(s);
                if size.is_none() {
                    problems.push(Diagnostic::new(
                        &n.location,
                        &path.key("shm_size"),
                        Problem::InvalidValue {
                            what: "size",
                            value: s.clone(),
                            reason: "expected a number with an optional b, k, m, g, t or p suffix"
                                .to_owned(),
                        },
                    ));
                }
                size
            }
            _ => None,
        });

        let extra_hosts = extra_hosts(mapping.get("extra_hosts"));
        let ssh = key_values(mapping.get("ssh"))
            .into_iter()
            .map(|(id, value, _)| SshSpec {
                id,
                paths: value
                    .map(|v| {
                        v.split(',')
                            .filter(|p| !p.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();

        // Keys kiln cannot honour: refuse them where they would change the result.
        // Located at the key: the key is what has to go.
        let mut refuse = |key: &str, feature: String| {
            let location = mapping
                .entry(key)
                .map_or(&node.location, |e| &e.key_location);
            unsupported.push(Diagnostic::new(
                location,
                &path.key(key),
                Problem::Unsupported { feature },
            ));
        };
        if let Some(n) = mapping.get("isolation") {
            refuse(
                "isolation",
                format!("build isolation {:?}", n.scalar_text().unwrap_or_default()),
            );
        }
        if let Some(n) = mapping.get("privileged")
            && truthy(n) != Some(false)
        {
            refuse("privileged", "privileged builds".to_owned());
        }
        if mapping.contains_key("ulimits") {
            refuse("ulimits", "build ulimits".to_owned());
        }
        if let Some(n) = mapping.get("entitlements")
            && n.as_sequence().is_some_and(|s| !s.is_empty())
        {
            refuse(
                "entitlements",
                format!("build entitlements {}", strings(Some(n)).join(", ")),
            );
        }
        if let Some(n) = mapping.get("provenance")
            && truthy(n) != Some(false)
        {
            refuse("provenance", "provenance attestations".to_owned());
        }
        let network = text(mapping.get("network"));
        if let Some(value) = &network
            && !matches!(value.as_str(), "default" | "host" | "none")
        {
            refuse(
                "network",
                format!("build network {value:?} (only default, host and none)"),
            );
        }
        let mut sbom = None;
        if let Some(n) = mapping.get("sbom") {
            match truthy(n) {
                Some(value) => sbom = Some(value),
                None => refuse(
                    "sbom",
                    format!(
                        "SBOM generator options {:?} (use true or false)",
                        n.scalar_text().unwrap_or_default()
                    ),
                ),
            }
        }

        unsupported.sort_by_key(|d| (d.location.line, d.location.column));

        let mut kiln = KilnExtension::default();
        for (extension, key_path) in [
            (service_kiln, path_parent(path).key("x-kiln")),
            (mapping.get("x-kiln"), path.key("x-kiln")),
        ] {
            if let Some(extension) = extension {
                self.kiln_extension(extension, &key_path, &mut kiln, problems);
            }
        }
        if kiln.sbom.is_some() {
            sbom = kiln.sbom;
        }

        Build {
            location: node.location.clone(),
            context,
            dockerfile,
            args,
            target: text(mapping.get("target")),
            tags: strings(mapping.get("tags")),
            labels: key_values(mapping.get("labels"))
                .into_iter()
                .map(|(k, v, _)| (k, v.unwrap_or_default()))
                .collect(),
            secrets: secret_mounts(mapping.get("secrets")),
            additional_contexts,
            cache_from,
            cache_to,
            platforms: strings(mapping.get("platforms")),
            pull: flag("pull"),
            no_cache: flag("no_cache"),
            network,
            shm_size,
            extra_hosts,
            ssh,
            sbom,
            kiln,
            unsupported,
        }
    }

    fn kiln_extension(
        &self,
        node: &Node,
        path: &KeyPath,
        kiln: &mut KilnExtension,
        problems: &mut Vec<Diagnostic>,
    ) {
        let Some(mapping) = node.as_mapping() else {
            problems.push(Diagnostic::new(
                &node.location,
                path,
                Problem::WrongType {
                    expected: "a mapping".to_owned(),
                    found: "another value",
                },
            ));
            return;
        };
        for entry in &mapping.entries {
            let value = &entry.value;
            let key_path = path.key(&entry.key);
            match entry.key.as_str() {
                "outputs" => {
                    kiln.outputs.clear();
                    for item in strings(Some(value)) {
                        match parse_typed_spec(&item, false) {
                            Ok(mut spec) => {
                                if let Some(dest) = spec.attrs.get_mut("dest") {
                                    *dest = clean_join(self.project_dir, Path::new(dest.as_str()))
                                        .to_string_lossy()
                                        .into_owned();
                                }
                                kiln.outputs.push(spec);
                            }
                            Err(reason) => problems.push(Diagnostic::new(
                                &value.location,
                                &key_path,
                                Problem::InvalidValue {
                                    what: "output",
                                    value: item,
                                    reason,
                                },
                            )),
                        }
                    }
                }
                "sbom" => match truthy(value) {
                    Some(b) => kiln.sbom = Some(b),
                    None => problems.push(Diagnostic::new(
                        &value.location,
                        &key_path,
                        Problem::InvalidValue {
                            what: "x-kiln.sbom",
                            value: value.scalar_text().unwrap_or_default(),
                            reason: "expected true or false".to_owned(),
                        },
                    )),
                },
                "tag_scheme" => match value.scalar_text().as_deref() {
                    Some("semver-sha") => kiln.tag_scheme = Some(TagScheme::SemverSha),
                    other => problems.push(Diagnostic::new(
                        &value.location,
                        &key_path,
                        Problem::InvalidValue {
                            what: "tag scheme",
                            value: other.unwrap_or_default().to_owned(),
                            reason: "known schemes: semver-sha".to_owned(),
                        },
                    )),
                },
                "version" => kiln.version = value.scalar_text(),
                other => problems.push(Diagnostic::new(
                    &entry.key_location,
                    path,
                    Problem::UnknownKilnKey {
                        key: other.to_owned(),
                    },
                )),
            }
        }
    }
}

fn path_parent(path: &KeyPath) -> KeyPath {
    let mut parent = path.clone();
    parent.0.pop();
    parent
}

/// Git URLs as buildx recognises them.
fn is_git_url(context: &str) -> bool {
    if context.starts_with("git@")
        || context.starts_with("git://")
        || context.starts_with("github.com/")
    {
        return true;
    }
    if context.starts_with("http://")
        || context.starts_with("https://")
        || context.starts_with("ssh://")
    {
        let without_fragment = context.split('#').next().unwrap_or(context);
        return without_fragment.ends_with(".git")
            || without_fragment.contains(".git/")
            || context.starts_with("ssh://");
    }
    false
}

fn healthcheck(node: &Node) -> Healthcheck {
    let test = node.get("test").map(|t| match &t.value {
        Value::String(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
        _ => strings(Some(t)),
    });
    Healthcheck {
        test,
        interval: text(node.get("interval")),
        timeout: text(node.get("timeout")),
        start_period: text(node.get("start_period")),
        start_interval: text(node.get("start_interval")),
        retries: node.get("retries").and_then(|r| match &r.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Float(f) if *f >= 0.0 => Some(*f as u64),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }),
        disable: node.get("disable").and_then(truthy).unwrap_or(false),
        location: node.location.clone(),
    }
}

fn secret_mounts(node: Option<&Node>) -> Vec<Located<SecretMount>> {
    node.and_then(Node::as_sequence)
        .unwrap_or_default()
        .iter()
        .map(|item| {
            let value = match &item.value {
                Value::Mapping(m) => SecretMount {
                    source: text(m.get("source")).unwrap_or_default(),
                    target: text(m.get("target")),
                    uid: text(m.get("uid")),
                    gid: text(m.get("gid")),
                    mode: m.get("mode").and_then(|n| match &n.value {
                        Value::Int(i) => u32::try_from(*i).ok(),
                        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
                        _ => None,
                    }),
                },
                _ => SecretMount {
                    source: item.scalar_text().unwrap_or_default(),
                    target: None,
                    uid: None,
                    gid: None,
                    mode: None,
                },
            };
            Located {
                value,
                location: item.location.clone(),
            }
        })
        .collect()
}

fn extra_hosts(node: Option<&Node>) -> Vec<ExtraHost> {
    let Some(node) = node else {
        return Vec::new();
    };
    match &node.value {
        Value::Mapping(m) => m
            .entries
            .iter()
            .flat_map(|e| {
                strings(Some(&e.value)).into_iter().map(|ip| ExtraHost {
                    host: e.key.clone(),
                    ip,
                })
            })
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(Node::scalar_text)
            .filter_map(|entry| {
                let (host, ip) = entry.split_once('=').or_else(|| entry.split_once(':'))?;
                Some(ExtraHost {
                    host: host.to_owned(),
                    ip: ip.trim_start_matches('[').trim_end_matches(']').to_owned(),
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_build_key_is_supported_or_refused() {
        let schema: serde_json::Value =
            serde_json::from_str(crate::frontend::compose::schema::SCHEMA_TEXT).unwrap();
        let keys = schema
            .pointer("/definitions/service/properties/build/oneOf/1/properties")
            .and_then(serde_json::Value::as_object)
            .unwrap();
        assert!(keys.len() > 20);
        for key in keys.keys() {
            assert!(
                SUPPORTED_BUILD_KEYS.contains(&key.as_str())
                    || REFUSED_BUILD_KEYS.contains(&key.as_str()),
                "build key {key:?} is neither supported nor refused"
            );
        }
    }

    #[test]
    fn typed_specs() {
        let spec = parse_typed_spec("type=registry,ref=ghcr.io/a/b:cache,mode=max", true).unwrap();
        assert_eq!(spec.kind, "registry");
        assert_eq!(spec.attr("ref"), Some("ghcr.io/a/b:cache"));
        assert_eq!(spec.attr("mode"), Some("max"));
        assert_eq!(
            spec.to_string(),
            "type=registry,mode=max,ref=ghcr.io/a/b:cache"
        );
        let bare = parse_typed_spec("user/app:cache", true).unwrap();
        assert_eq!(
            (bare.kind.as_str(), bare.attr("ref")),
            ("registry", Some("user/app:cache"))
        );
        let quoted = parse_typed_spec("type=local,dest=\"a,b\"", false).unwrap();
        assert_eq!(quoted.attr("dest"), Some("a,b"));
        assert!(parse_typed_spec("ref=x", true).is_err());
        assert!(parse_typed_spec("type=local,oops", false).is_err());
        assert!(parse_typed_spec("oci", false).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1kb"), Some(1024));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_port("127.0.0.1:8080:80/udp"),
            Port {
                host_ip: Some("127.0.0.1".into()),
                published: Some("8080".into()),
                target: "80".into(),
                protocol: Some("udp".into())
            }
        );
        assert_eq!(parse_port("3000").published, None);
        assert_eq!(
            parse_port("8000-8010:80").published.as_deref(),
            Some("8000-8010")
        );
        assert_eq!(parse_port("[::1]:53:53").host_ip.as_deref(), Some("::1"));
    }

    #[test]
    fn volumes() {
        assert_eq!(parse_volume("/data").kind, MountKind::Volume);
        assert_eq!(parse_volume("/data").source, None);
        let named = parse_volume("pgdata:/var/lib/postgresql/data");
        assert_eq!(
            (named.kind, named.source.as_deref()),
            (MountKind::Volume, Some("pgdata"))
        );
        let bind = parse_volume("/srv/app:/app:ro");
        assert_eq!((bind.kind, bind.read_only), (MountKind::Bind, true));
    }

    #[test]
    fn git_urls() {
        assert!(is_git_url("https://github.com/docker/app.git#main"));
        assert!(is_git_url("git@github.com:docker/app.git"));
        assert!(is_git_url("github.com/docker/app"));
        assert!(!is_git_url("https://example.com/context.tar.gz"));
        assert!(!is_git_url("./app"));
    }
}
