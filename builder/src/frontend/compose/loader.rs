//! Loading a compose project: finding files, reading `.env`, interpolating, validating,
//! `include`, `extends`, merging, relative paths, profiles and the project name.
//!
//! Per file, as compose-go does: parse (all YAML documents), drop the obsolete `version`
//! with a warning, interpolate every string value (keys are never interpolated), validate
//! against the compose-spec schema, import `include`d projects, resolve `extends`, and
//! make relative paths absolute. Then files are merged in order ([`super::merge`]) and
//! sequences de-duplicated. Paths in the main and override files are relative to the
//! project directory (Compose's rule: "relative to the first file"); paths in an included
//! project are relative to its project directory, and those of a service extended from
//! another file are relative to that file.
//!
//! Errors: [`Error::NoComposeFile`], [`Error::Io`], [`Error::EnvFile`],
//! [`Error::Interpolation`] (located), [`Error::Invalid`] for schema problems and for
//! `extends`/`include` problems (located), [`Error::ProjectName`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::diag::{Diagnostic, Diagnostics, Error, KeyPath, Location, Problem, SourceFile};
use super::dotenv::read_env_file;
use super::interpolate::interpolate_with;
use super::merge::{enforce_unicity, merge_documents, merge_service, strip_merge_tags};
use super::schema::validate;
use super::yaml::{Mapping, MergeTag, Node, Value, parse_documents};

/// Compose file names, in order of preference.
pub const COMPOSE_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Override file names loaded automatically next to the compose file, in order of preference.
pub const OVERRIDE_FILE_NAMES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The inputs of `kiln compose` that decide what is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where discovery starts and relative `-f`/`--env-file` paths are resolved.
    pub working_dir: PathBuf,
    /// `-f` files, in order. Empty: `COMPOSE_FILE`, else discovery plus override file.
    pub files: Vec<PathBuf>,
    /// `--project-directory`; default: the directory of the first compose file.
    pub project_directory: Option<PathBuf>,
    /// `--env-file` files (later wins). Empty: the project directory's `.env`, if any.
    pub env_files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--profile`. Empty: `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// The process environment; it wins over env files.
    pub environment: BTreeMap<String, String>,
}

impl LoadOptions {
    /// Options for `working_dir` with the current process environment.
    pub fn new(working_dir: impl Into<PathBuf>) -> LoadOptions {
        LoadOptions::with_environment(working_dir, std::env::vars().collect())
    }

    /// Options with an explicit environment (tests, embedding).
    pub fn with_environment(
        working_dir: impl Into<PathBuf>,
        environment: BTreeMap<String, String>,
    ) -> LoadOptions {
        LoadOptions {
            working_dir: working_dir.into(),
            files: Vec::new(),
            project_directory: None,
            env_files: Vec::new(),
            project_name: None,
            profiles: Vec::new(),
            environment,
        }
    }
}

/// Something the user should know that did not stop loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Several files with supported names in one directory; the first by preference is used.
    MultipleFiles {
        dir: PathBuf,
        found: Vec<String>,
        using: String,
    },
    /// A variable used without a value and without a default; it became empty.
    UnsetVariable { name: String },
    /// The top-level `version` key is obsolete and ignored.
    ObsoleteVersion { location: Location },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::MultipleFiles { dir, found, using } => write!(
                f,
                "found multiple config files with supported names in {}: {}; using {using}",
                dir.display(),
                found.join(", ")
            ),
            Warning::UnsetVariable { name } => write!(
                f,
                "the {name:?} variable is not set; defaulting to a blank string"
            ),
            Warning::ObsoleteVersion { location } => write!(
                f,
                "{location}: the attribute `version` is obsolete and ignored; please remove it"
            ),
        }
    }
}

/// The merged, interpolated and validated project document, before it is typed.
#[derive(Debug)]
pub(crate) struct LoadedDocument {
    pub name: String,
    pub project_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub environment: BTreeMap<String, String>,
    pub active_profiles: Vec<String>,
    pub document: Node,
    pub warnings: Vec<Warning>,
}

/// Finds the compose file (and override file) for `dir` as Compose does: in `dir`, then in
/// each parent; the first directory holding a supported name wins.
pub fn find_compose_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Warning>), Error> {
    let mut warnings = Vec::new();
    for candidate_dir in dir.ancestors() {
        let found: Vec<&str> = COMPOSE_FILE_NAMES
            .iter()
            .copied()
            .filter(|name| candidate_dir.join(name).is_file())
            .collect();
        let Some(first) = found.first() else {
            continue;
        };
        if found.len() > 1 {
            warnings.push(Warning::MultipleFiles {
                dir: candidate_dir.to_owned(),
                found: found.iter().map(|s| s.to_string()).collect(),
                using: first.to_string(),
            });
        }
        let mut files = vec![candidate_dir.join(first)];
        let overrides: Vec<&str> = OVERRIDE_FILE_NAMES
            .iter()
            .copied()
            .filter(|name| candidate_dir.join(name).is_file())
            .collect();
        if let Some(first_override) = overrides.first() {
            if overrides.len() > 1 {
                warnings.push(Warning::MultipleFiles {
                    dir: candidate_dir.to_owned(),
                    found: overrides.iter().map(|s| s.to_string()).collect(),
                    using: first_override.to_string(),
                });
            }
            files.push(candidate_dir.join(first_override));
        }
        return Ok((files, warnings));
    }
    Err(Error::NoComposeFile {
        dir: dir.to_owned(),
    })
}

/// Lowercases and drops characters outside `[a-z0-9_-]`, and leading `_`/`-`.
pub fn normalize_project_name(name: &str) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        .collect();
    kept.trim_start_matches(['_', '-']).to_owned()
}

fn is_valid_project_name(name: &str) -> bool {
    !name.is_empty() && normalize_project_name(name) == name
}

/// Joins `relative` onto `base` and removes `.` and `..` lexically.
pub fn clean_join(base: &Path, relative: &Path) -> PathBuf {
    let joined = base.join(relative);
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether a build context is remote (git or URL) rather than a local path.
pub fn is_remote_context(context: &str) -> bool {
    context.contains("://") || context.starts_with("git@") || context.starts_with("github.com/")
}

fn absolute(working_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        clean_join(Path::new("/"), path)
    } else {
        clean_join(working_dir, path)
    }
}

type Env = BTreeMap<String, String>;

struct Loader {
    project_dir: PathBuf,
    warnings: Vec<Warning>,
    unset: BTreeSet<String>,
    /// Files being loaded through `include`, to detect cycles.
    include_stack: Vec<PathBuf>,
    /// Files read for `extends`, parsed and interpolated once.
    extends_cache: HashMap<PathBuf, Node>,
}

pub(crate) fn load_document(options: &LoadOptions) -> Result<LoadedDocument, Error> {
    let working_dir = absolute(
        &std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        &options.working_dir,
    );
    let mut warnings = Vec::new();

    let files: Vec<PathBuf> = if !options.files.is_empty() {
        options
            .files
            .iter()
            .map(|f| absolute(&working_dir, f))
            .collect()
    } else if let Some(list) = options
        .environment
        .get("COMPOSE_FILE")
        .filter(|v| !v.is_empty())
    {
        let separator = options
            .environment
            .get("COMPOSE_PATH_SEPARATOR")
            .and_then(|s| s.chars().next())
            .unwrap_or(':');
        list.split(separator)
            .filter(|f| !f.is_empty())
            .map(|f| absolute(&working_dir, Path::new(f)))
            .collect()
    } else {
        let (found, found_warnings) = find_compose_files(&working_dir)?;
        warnings.extend(found_warnings);
        found
    };

    let project_dir = match &options.project_directory {
        Some(dir) => absolute(&working_dir, dir),
        None => files[0]
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| working_dir.clone()),
    };

    // Env files first, then the process environment on top (it wins).
    let env_files: Vec<PathBuf> = if options.env_files.is_empty() {
        let default = project_dir.join(".env");
        if default.is_file() {
            vec![default]
        } else {
            Vec::new()
        }
    } else {
        options
            .env_files
            .iter()
            .map(|f| absolute(&working_dir, f))
            .collect()
    };
    let mut environment = Env::new();
    for env_file in &env_files {
        let process = &options.environment;
        read_env_file(
            env_file,
            &|name| process.get(name).cloned(),
            &mut environment,
        )?;
    }
    environment.extend(options.environment.clone());
    if let Some(name) = &options.project_name {
        environment.insert("COMPOSE_PROJECT_NAME".to_owned(), name.clone());
    }

    let mut loader = Loader {
        project_dir: project_dir.clone(),
        warnings,
        unset: BTreeSet::new(),
        include_stack: Vec::new(),
        extends_cache: HashMap::new(),
    };
    let mut document: Option<Node> = None;
    for file in &files {
        let node = loader.load_file(file, &environment, &project_dir)?;
        document = Some(match document {
            None => {
                let mut first = node;
                strip_merge_tags(&mut first);
                first
            }
            Some(merged) => merge_documents(merged, node),
        });
    }
    let mut document = document.expect("at least one compose file");
    enforce_unicity(&mut document);

    let name = project_name(options, &environment, &document, &project_dir)?;
    let active_profiles: Vec<String> = if options.profiles.is_empty() {
        environment
            .get("COMPOSE_PROFILES")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        options.profiles.clone()
    };

    let mut warnings = loader.warnings;
    warnings.extend(
        loader
            .unset
            .into_iter()
            .map(|name| Warning::UnsetVariable { name }),
    );
    Ok(LoadedDocument {
        name,
        project_dir,
        files,
        environment,
        active_profiles,
        document,
        warnings,
    })
}

fn project_name(
    options: &LoadOptions,
    environment: &Env,
    document: &Node,
    project_dir: &Path,
) -> Result<String, Error> {
    if let Some(name) = &options.project_name {
        return checked_name(name, "-p");
    }
    if let Some(name) = options
        .environment
        .get("COMPOSE_PROJECT_NAME")
        .or_else(|| environment.get("COMPOSE_PROJECT_NAME"))
        .filter(|n| !n.is_empty())
    {
        return checked_name(name, "COMPOSE_PROJECT_NAME");
    }
    if let Some(name) = document
        .get("name")
        .and_then(Node::as_str)
        .filter(|n| !n.is_empty())
    {
        let normalized = normalize_project_name(name);
        if !normalized.is_empty() {
            return Ok(normalized);
        }
        return Err(Error::ProjectName {
            name: name.to_owned(),
            source_of_name: "the top-level `name:`",
        });
    }
    let dir_name = project_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let normalized = normalize_project_name(&dir_name);
    if normalized.is_empty() {
        return Err(Error::ProjectName {
            name: dir_name,
            source_of_name: "the project directory's name",
        });
    }
    Ok(normalized)
}

fn checked_name(name: &str, source_of_name: &'static str) -> Result<String, Error> {
    if is_valid_project_name(name) {
        Ok(name.to_owned())
    } else {
        Err(Error::ProjectName {
            name: name.to_owned(),
            source_of_name,
        })
    }
}

impl Loader {
    /// Reads, interpolates and validates one file (all its YAML documents merged).
    fn read_file(&mut self, path: &Path, env: &Env) -> Result<Node, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let file = SourceFile::new(path.to_owned(), &self.project_dir);
        let documents =
            parse_documents(&text, &file).map_err(|d| Error::Invalid(Diagnostics(vec![d])))?;
        let mut merged: Option<Node> = None;
        for mut document in documents {
            if document.is_null() {
                continue;
            }
            if let Some(mapping) = document.as_mapping_mut()
                && let Some(version) = mapping.remove("version")
            {
                self.warnings.push(Warning::ObsoleteVersion {
                    location: version.key_location,
                });
            }
            self.interpolate_tree(&mut document, env, &mut Vec::new())?;
            let problems = validate(&document);
            if !problems.is_empty() {
                return Err(Error::Invalid(Diagnostics(problems)));
            }
            merged = Some(match merged {
                None => document,
                Some(base) => merge_documents(base, document),
            });
        }
        Ok(merged.unwrap_or_else(|| {
            Node::new(
                Value::Mapping(Mapping::default()),
                Location::new(file, 1, 1),
            )
        }))
    }

    /// A whole compose file ready to merge: includes imported, extends resolved, relative
    /// paths made absolute against `base_dir`.
    fn load_file(&mut self, path: &Path, env: &Env, base_dir: &Path) -> Result<Node, Error> {
        let mut document = self.read_file(path, env)?;
        self.apply_includes(&mut document, env, base_dir)?;
        self.resolve_extends(&mut document, path, env)?;
        resolve_paths(&mut document, base_dir);
        Ok(document)
    }

    fn interpolate_tree(
        &mut self,
        node: &mut Node,
        env: &Env,
        path: &mut Vec<String>,
    ) -> Result<(), Error> {
        match &mut node.value {
            Value::String(text) => {
                if !text.contains('$') {
                    return Ok(());
                }
                let unset = &mut self.unset;
                let interpolated =
                    interpolate_with(text, &|name| env.get(name).cloned(), &mut |name| {
                        unset.insert(name.to_owned());
                    })
                    .map_err(|source| Error::Interpolation {
                        location: node.location.clone(),
                        path: key_path(path),
                        source,
                    })?;
                node.value = cast(path, interpolated);
                Ok(())
            }
            Value::Sequence(items) => {
                for item in items {
                    path.push("[]".to_owned());
                    let result = self.interpolate_tree(item, env, path);
                    path.pop();
                    result?;
                }
                Ok(())
            }
            Value::Mapping(mapping) => {
                for entry in &mut mapping.entries {
                    path.push(entry.key.clone());
                    let result = self.interpolate_tree(&mut entry.value, env, path);
                    path.pop();
                    result?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn apply_includes(
        &mut self,
        document: &mut Node,
        env: &Env,
        base_dir: &Path,
    ) -> Result<(), Error> {
        let Some(mapping) = document.as_mapping_mut() else {
            return Ok(());
        };
        let Some(include) = mapping.remove("include") else {
            return Ok(());
        };
        for item in include.value.as_sequence().unwrap_or_default() {
            let (paths, project_directory, env_files) = match &item.value {
                Value::String(path) => (vec![path.clone()], None, Vec::new()),
                Value::Mapping(m) => (
                    string_or_list(m.get("path")),
                    m.get("project_directory")
                        .and_then(Node::as_str)
                        .map(str::to_owned),
                    string_or_list(m.get("env_file")),
                ),
                _ => continue,
            };
            let paths: Vec<PathBuf> = paths
                .iter()
                .map(|p| clean_join(base_dir, Path::new(p)))
                .collect();
            let Some(first) = paths.first() else {
                continue;
            };
            let include_dir = match &project_directory {
                Some(dir) => clean_join(base_dir, Path::new(dir)),
                None => first.parent().map(Path::to_owned).unwrap_or_default(),
            };
            let mut env_files: Vec<PathBuf> = env_files
                .iter()
                .map(|f| clean_join(base_dir, Path::new(f)))
                .collect();
            if env_files.is_empty() {
                let default = include_dir.join(".env");
                if default.is_file() {
                    env_files.push(default);
                }
            }
            // As compose-go: the including project's environment, then the include's env files.
            let mut include_env = env.clone();
            let mut from_files = Env::new();
            for env_file in &env_files {
                read_env_file(env_file, &|name| env.get(name).cloned(), &mut from_files)?;
            }
            include_env.extend(from_files);

            let mut imported: Option<Node> = None;
            for path in &paths {
                if self.include_stack.contains(path) {
                    let mut chain: Vec<String> = self
                        .include_stack
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    chain.push(path.display().to_string());
                    return Err(Error::located(
                        &item.location,
                        &KeyPath::from_keys(&["include"]),
                        Problem::IncludeCycle { chain },
                    ));
                }
                self.include_stack.push(path.clone());
                let loaded = self.load_file(path, &include_env, &include_dir);
                self.include_stack.pop();
                let loaded = loaded?;
                imported = Some(match imported {
                    None => {
                        let mut first = loaded;
                        strip_merge_tags(&mut first);
                        first
                    }
                    Some(base) => merge_documents(base, loaded),
                });
            }
            if let Some(mut imported) = imported {
                enforce_unicity(&mut imported);
                import_resources(mapping, imported, first)?;
            }
        }
        Ok(())
    }

    fn resolve_extends(
        &mut self,
        document: &mut Node,
        path: &Path,
        env: &Env,
    ) -> Result<(), Error> {
        let Some(services) = document.get("services").and_then(Node::as_mapping) else {
            return Ok(());
        };
        if !services.iter().any(|(_, s)| s.get("extends").is_some()) {
            return Ok(());
        }
        let original = services.clone();
        let mut resolved = Vec::new();
        for (name, service) in original.iter() {
            if service.get("extends").is_some() {
                let node = self.extend(name, &original, path, env, &mut Vec::new())?;
                resolved.push((name.to_owned(), node));
            }
        }
        let services = document
            .as_mapping_mut()
            .and_then(|m| m.get_mut("services"))
            .and_then(Node::as_mapping_mut)
            .expect("services checked above");
        for (name, node) in resolved {
            if let Some(slot) = services.get_mut(&name) {
                *slot = node;
            }
        }
        Ok(())
    }

    /// The service `name` of `services` (from `file`) with its `extends` chain applied.
    fn extend(
        &mut self,
        name: &str,
        services: &Mapping,
        file: &Path,
        env: &Env,
        stack: &mut Vec<(PathBuf, String)>,
    ) -> Result<Node, Error> {
        let service = services
            .get(name)
            .expect("caller checked the service exists");
        let Some(extends) = service.get("extends") else {
            return Ok(service.clone());
        };
        let here = (file.to_owned(), name.to_owned());
        let extends_path = KeyPath::from_keys(&["services", name, "extends"]);
        if stack.contains(&here) {
            let start = stack.iter().position(|s| *s == here).unwrap_or(0);
            let chain = stack[start..]
                .iter()
                .chain(std::iter::once(&here))
                .map(|(f, s)| format!("{}:{s}", self.display(f)))
                .collect();
            return Err(Error::located(
                &extends.location,
                &extends_path,
                Problem::ExtendsCycle { chain },
            ));
        }
        let (base_name, base_file) = match &extends.value {
            Value::String(s) => (s.clone(), None),
            Value::Mapping(m) => (
                m.get("service")
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                m.get("file").and_then(Node::as_str).map(str::to_owned),
            ),
            _ => return Ok(service.clone()),
        };
        stack.push(here);
        let base = match base_file {
            None => {
                if !services.contains_key(&base_name) {
                    return Err(Error::located(
                        &extends.location,
                        &extends_path,
                        Problem::ExtendsNotFound {
                            service: base_name,
                            file: self.display(file),
                        },
                    ));
                }
                self.extend(&base_name, services, file, env, stack)?
            }
            Some(other) => {
                let dir = file.parent().unwrap_or(Path::new("/"));
                let other_path = clean_join(dir, Path::new(&other));
                let other_document = match self.extends_cache.get(&other_path) {
                    Some(document) => document.clone(),
                    None => {
                        let document = self.read_file(&other_path, env)?;
                        self.extends_cache
                            .insert(other_path.clone(), document.clone());
                        document
                    }
                };
                let other_services = other_document
                    .get("services")
                    .and_then(Node::as_mapping)
                    .cloned()
                    .unwrap_or_default();
                if !other_services.contains_key(&base_name) {
                    return Err(Error::located(
                        &extends.location,
                        &extends_path,
                        Problem::ExtendsNotFound {
                            service: base_name,
                            file: self.display(&other_path),
                        },
                    ));
                }
                let mut base = self.extend(&base_name, &other_services, &other_path, env, stack)?;
                resolve_service_paths(&mut base, other_path.parent().unwrap_or(Path::new("/")));
                base
            }
        };
        stack.pop();
        let mut base = base;
        strip_merge_tags(&mut base);
        let mut service = service.clone();
        if let Some(m) = service.as_mapping_mut() {
            m.remove("extends");
        }
        Ok(merge_service(base, service, name))
    }

    fn display(&self, path: &Path) -> String {
        SourceFile::new(path.to_owned(), &self.project_dir)
            .display_name()
            .to_owned()
    }
}

fn string_or_list(node: Option<&Node>) -> Vec<String> {
    match node.map(|n| &n.value) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items.iter().filter_map(Node::scalar_text).collect(),
        _ => Vec::new(),
    }
}

/// Adds an included project's resources; a name defined differently on both sides is an error.
fn import_resources(
    target: &mut Mapping,
    imported: Node,
    included_file: &Path,
) -> Result<(), Error> {
    let Value::Mapping(imported) = imported.value else {
        return Ok(());
    };
    let mut problems = Vec::new();
    for entry in imported.entries {
        let kind = entry.key.clone();
        if !matches!(
            kind.as_str(),
            "services" | "networks" | "volumes" | "secrets" | "configs" | "models"
        ) {
            continue;
        }
        let Value::Mapping(resources) = entry.value.value else {
            continue;
        };
        if !target.contains_key(&kind) {
            target.insert(
                kind.clone(),
                entry.key_location.clone(),
                Node::new(
                    Value::Mapping(Mapping::default()),
                    entry.key_location.clone(),
                ),
            );
        }
        let Some(existing) = target.get_mut(&kind).and_then(Node::as_mapping_mut) else {
            continue;
        };
        for resource in resources.entries {
            match existing.entry(&resource.key) {
                Some(own) if !own.value.same_value(&resource.value) => {
                    problems.push(Diagnostic::new(
                        &own.key_location,
                        &KeyPath::from_keys(&[kind.as_str()]),
                        Problem::IncludeConflict {
                            kind: kind.trim_end_matches('s').to_owned(),
                            name: resource.key.clone(),
                            file: included_file.display().to_string(),
                        },
                    ));
                }
                Some(_) => {}
                None => existing.insert(resource.key, resource.key_location, resource.value),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(Diagnostics(problems)))
    }
}

fn key_path(path: &[String]) -> KeyPath {
    let mut key_path = KeyPath::root();
    for segment in path {
        key_path = if segment == "[]" {
            // Interpolation errors name the sequence, not the index.
            key_path
        } else {
            key_path.key(segment)
        };
    }
    key_path
}

#[derive(Clone, Copy)]
enum CastTo {
    Int,
    Float,
    Bool,
}

/// Where compose-go turns interpolated strings into numbers or booleans.
const CASTS: &[(&[&str], CastTo)] = &[
    (&["services", "*", "configs", "[]", "mode"], CastTo::Int),
    (&["services", "*", "secrets", "[]", "mode"], CastTo::Int),
    (&["services", "*", "cpu_count"], CastTo::Int),
    (&["services", "*", "cpu_percent"], CastTo::Float),
    (&["services", "*", "cpu_period"], CastTo::Int),
    (&["services", "*", "cpu_quota"], CastTo::Int),
    (&["services", "*", "cpu_rt_period"], CastTo::Int),
    (&["services", "*", "cpu_rt_runtime"], CastTo::Int),
    (&["services", "*", "cpus"], CastTo::Float),
    (&["services", "*", "cpu_shares"], CastTo::Int),
    (&["services", "*", "init"], CastTo::Bool),
    (&["services", "*", "deploy", "replicas"], CastTo::Int),
    (&["services", "*", "healthcheck", "retries"], CastTo::Int),
    (&["services", "*", "healthcheck", "disable"], CastTo::Bool),
    (&["services", "*", "oom_kill_disable"], CastTo::Bool),
    (&["services", "*", "oom_score_adj"], CastTo::Int),
    (&["services", "*", "pids_limit"], CastTo::Int),
    (&["services", "*", "ports", "[]", "target"], CastTo::Int),
    (&["services", "*", "privileged"], CastTo::Bool),
    (&["services", "*", "read_only"], CastTo::Bool),
    (&["services", "*", "scale"], CastTo::Int),
    (&["services", "*", "stdin_open"], CastTo::Bool),
    (&["services", "*", "tty"], CastTo::Bool),
    (&["services", "*", "ulimits", "*"], CastTo::Int),
    (&["services", "*", "ulimits", "*", "hard"], CastTo::Int),
    (&["services", "*", "ulimits", "*", "soft"], CastTo::Int),
    (
        &["services", "*", "volumes", "[]", "read_only"],
        CastTo::Bool,
    ),
    (
        &["services", "*", "volumes", "[]", "volume", "nocopy"],
        CastTo::Bool,
    ),
    (&["services", "*", "build", "no_cache"], CastTo::Bool),
    (&["services", "*", "build", "pull"], CastTo::Bool),
    (&["services", "*", "build", "privileged"], CastTo::Bool),
    (&["networks", "*", "external"], CastTo::Bool),
    (&["networks", "*", "internal"], CastTo::Bool),
    (&["networks", "*", "attachable"], CastTo::Bool),
    (&["networks", "*", "enable_ipv6"], CastTo::Bool),
    (&["volumes", "*", "external"], CastTo::Bool),
    (&["secrets", "*", "external"], CastTo::Bool),
    (&["configs", "*", "external"], CastTo::Bool),
];

/// compose-go's boolean spellings.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(true),
        "n" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Turns an interpolated string into the type its path expects, when it parses.
fn cast(path: &[String], text: String) -> Value {
    let rule = CASTS.iter().find(|(pattern, _)| {
        pattern.len() == path.len()
            && pattern
                .iter()
                .zip(path)
                .all(|(p, s)| *p == "*" && s != "[]" || p == s)
    });
    match rule.map(|(_, to)| *to) {
        Some(CastTo::Int) => text
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or(Value::String(text)),
        Some(CastTo::Float) => text
            .parse::<f64>()
            .map(Value::Float)
            .unwrap_or(Value::String(text)),
        Some(CastTo::Bool) => parse_bool(&text)
            .map(Value::Bool)
            .unwrap_or(Value::String(text)),
        None => Value::String(text),
    }
}

fn resolve_text(node: &mut Node, base_dir: &Path) {
    if let Value::String(text) = &mut node.value
        && !text.is_empty()
    {
        *text = clean_join(base_dir, Path::new(text.as_str()))
            .to_string_lossy()
            .into_owned();
    }
}

/// Makes the relative paths of a document absolute against `base_dir`.
fn resolve_paths(document: &mut Node, base_dir: &Path) {
    let Some(root) = document.as_mapping_mut() else {
        return;
    };
    if let Some(services) = root.get_mut("services").and_then(Node::as_mapping_mut) {
        for entry in &mut services.entries {
            resolve_service_paths(&mut entry.value, base_dir);
        }
    }
    for kind in ["secrets", "configs"] {
        if let Some(resources) = root.get_mut(kind).and_then(Node::as_mapping_mut) {
            for entry in &mut resources.entries {
                if let Some(file) = entry.value.as_mapping_mut().and_then(|m| m.get_mut("file")) {
                    resolve_text(file, base_dir);
                }
            }
        }
    }
}

/// Makes a service's relative paths absolute: build context and local additional
/// contexts, `env_file`, `label_file`, and bind-mount sources starting with `.`.
fn resolve_service_paths(service: &mut Node, base_dir: &Path) {
    let Some(service) = service.as_mapping_mut() else {
        return;
    };
    if service
        .get("build")
        .is_some_and(|b| b.tag == Some(MergeTag::Reset))
    {
        return;
    }
    if let Some(build) = service.get_mut("build") {
        match &mut build.value {
            Value::String(context) if !is_remote_context(context) => {
                resolve_text(build, base_dir);
            }
            Value::Mapping(build) => {
                if let Some(context) = build.get_mut("context")
                    && context.as_str().is_some_and(|c| !is_remote_context(c))
                {
                    resolve_text(context, base_dir);
                }
                if let Some(contexts) = build.get_mut("additional_contexts") {
                    resolve_additional_contexts(contexts, base_dir);
                }
            }
            _ => {}
        }
    }
    for key in ["env_file", "label_file"] {
        if let Some(node) = service.get_mut(key) {
            match &mut node.value {
                Value::String(_) => resolve_text(node, base_dir),
                Value::Sequence(items) => {
                    for item in items {
                        match &mut item.value {
                            Value::String(_) => resolve_text(item, base_dir),
                            Value::Mapping(m) => {
                                if let Some(path) = m.get_mut("path") {
                                    resolve_text(path, base_dir);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(Value::Sequence(volumes)) = service.get_mut("volumes").map(|v| &mut v.value) {
        for volume in volumes {
            match &mut volume.value {
                Value::String(spec) => {
                    if spec.starts_with('.')
                        && let Some((source, rest)) = spec.split_once(':')
                    {
                        let source = clean_join(base_dir, Path::new(source));
                        *spec = format!("{}:{rest}", source.display());
                    }
                }
                Value::Mapping(m) => {
                    let is_bind = m.get("type").and_then(Node::as_str) == Some("bind");
                    if let Some(source) = m.get_mut("source")
                        && is_bind
                        && source.as_str().is_some_and(|s| !s.starts_with('/'))
                    {
                        resolve_text(source, base_dir);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A local additional context is anything that is not `service:`, `target:` or a URL.
pub(crate) fn is_local_additional_context(value: &str) -> bool {
    !(value.starts_with("service:") || value.starts_with("target:") || is_remote_context(value))
}

fn resolve_additional_contexts(contexts: &mut Node, base_dir: &Path) {
    match &mut contexts.value {
        Value::Mapping(m) => {
            for entry in &mut m.entries {
                if entry
                    .value
                    .as_str()
                    .is_some_and(is_local_additional_context)
                {
                    resolve_text(&mut entry.value, base_dir);
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                if let Value::String(text) = &mut item.value
                    && let Some((name, value)) = text.split_once('=')
                    && is_local_additional_context(value)
                {
                    *text = format!(
                        "{name}={}",
                        clean_join(base_dir, Path::new(value)).display()
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("__x-y"), "x-y");
        assert!(is_valid_project_name("shop_1-a"));
        assert!(!is_valid_project_name("Shop"));
        assert!(!is_valid_project_name("-shop"));
        assert!(!is_valid_project_name(""));
    }

    #[test]
    fn clean_joins() {
        assert_eq!(
            clean_join(Path::new("/a/b"), Path::new("./c")),
            Path::new("/a/b/c")
        );
        assert_eq!(
            clean_join(Path::new("/a/b"), Path::new("../c/./d")),
            Path::new("/a/c/d")
        );
        assert_eq!(
            clean_join(Path::new("/a/b"), Path::new("/x/../y")),
            Path::new("/y")
        );
        assert_eq!(
            clean_join(Path::new("/a/b"), Path::new(".")),
            Path::new("/a/b")
        );
    }

    #[test]
    fn remote_contexts() {
        assert!(is_remote_context("https://github.com/a/b.git#main"));
        assert!(is_remote_context("git@github.com:a/b.git"));
        assert!(!is_remote_context("./api"));
        assert!(!is_local_additional_context("service:base"));
        assert!(!is_local_additional_context("docker-image://alpine"));
        assert!(is_local_additional_context("../shared"));
    }

    #[test]
    fn casts_follow_paths() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(
            cast(
                &path(&["services", "a", "ports", "[]", "target"]),
                "80".into()
            ),
            Value::Int(80)
        ));
        assert!(matches!(
            cast(&path(&["services", "a", "privileged"]), "yes".into()),
            Value::Bool(true)
        ));
        assert!(matches!(
            cast(&path(&["services", "a", "image"]), "80".into()),
            Value::String(_)
        ));
        assert!(matches!(
            cast(
                &path(&["services", "a", "ports", "[]", "target"]),
                "http".into()
            ),
            Value::String(_)
        ));
    }
}
