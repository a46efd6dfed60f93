//! Source locations, key paths and the compose frontend's error type.
//!
//! Every problem found in a compose file is reported as
//! `file:line:column: key.path: what is wrong`, e.g.
//! `compose.yaml:12:7: services.api.build: additional property "dockerfil" is not allowed`.
//! Lines and columns are 1-based; the file is shown relative to the project directory
//! when it lies inside it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::interpolate::InterpolationError;

/// A file that YAML was read from: its real path and the name shown in messages.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SourceFile {
    path: PathBuf,
    display: String,
}

impl SourceFile {
    /// A source file shown relative to `base` when it lies under it, else in full.
    pub fn new(path: PathBuf, base: &Path) -> Arc<SourceFile> {
        let display = path
            .strip_prefix(base)
            .ok()
            .filter(|relative| !relative.as_os_str().is_empty())
            .unwrap_or(&path)
            .display()
            .to_string();
        Arc::new(SourceFile { path, display })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name used in messages.
    pub fn display_name(&self) -> &str {
        &self.display
    }
}

/// A position in a source file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: Arc<SourceFile>,
    pub line: u32,
    pub column: u32,
}

impl Location {
    pub fn new(file: Arc<SourceFile>, line: u32, column: u32) -> Location {
        Location { file, line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.display_name(),
            self.line,
            self.column
        )
    }
}

/// One step of a [`KeyPath`]: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// Where a value sits in the compose model, e.g. `services.api.ports[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(pub Vec<PathSegment>);

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// A path made of mapping keys only.
    pub fn from_keys<S: AsRef<str>>(keys: &[S]) -> KeyPath {
        KeyPath(
            keys.iter()
                .map(|k| PathSegment::Key(k.as_ref().to_owned()))
                .collect(),
        )
    }

    pub fn key(&self, key: &str) -> KeyPath {
        let mut next = self.clone();
        next.0.push(PathSegment::Key(key.to_owned()));
        next
    }

    pub fn index(&self, index: usize) -> KeyPath {
        let mut next = self.clone();
        next.0.push(PathSegment::Index(index));
        next
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(key) if i == 0 => write!(f, "{key}")?,
                PathSegment::Key(key) => write!(f, ".{key}")?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// What is wrong at a location. Displayed after `file:line:col: key.path: `.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error(
        "additional property {name:?} is not allowed{}",
        did_you_mean(suggestion)
    )]
    UnknownProperty {
        name: String,
        suggestion: Option<String>,
    },
    #[error("must be {expected}, found {found}")]
    WrongType {
        expected: String,
        found: &'static str,
    },
    #[error("does not match any allowed form ({forms})")]
    NoMatchingForm { forms: String },
    #[error("matches more than one allowed form")]
    AmbiguousForm,
    #[error("missing required property {name:?}")]
    MissingProperty { name: String },
    #[error("must be one of {}", allowed.join(", "))]
    NotInEnum { allowed: Vec<String> },
    #[error("{value:?} does not match the pattern {pattern:?}")]
    PatternMismatch { value: String, pattern: String },
    #[error("key {key:?} is not allowed here (must match {pattern:?})")]
    KeyPatternMismatch { key: String, pattern: String },
    #[error("must be at least {minimum}")]
    BelowMinimum { minimum: String },
    #[error("must be at most {maximum}")]
    AboveMaximum { maximum: String },
    #[error("item {duplicate} duplicates item {first}; items must be unique")]
    DuplicateItem { first: usize, duplicate: usize },
    #[error("cannot convert {value:?} to {target}")]
    Cast { value: String, target: &'static str },
    #[error("invalid YAML: {message}")]
    Syntax { message: String },
    #[error("key {key:?} is defined twice (first at line {first_line})")]
    DuplicateKey { key: String, first_line: u32 },
    #[error("unknown anchor for alias")]
    UnknownAlias,
    #[error("mapping keys must be scalars")]
    ComplexKey,
    #[error("merge key `<<` must refer to a mapping or a list of mappings")]
    BadMergeKey,
    #[error("not supported by kiln: {feature}")]
    Unsupported { feature: String },
    #[error("git build contexts are not supported yet: {url}")]
    GitContext { url: String },
    #[error("remote (URL) build contexts are not supported yet: {url}")]
    RemoteContext { url: String },
    #[error(
        "secret {name:?} is external; kiln can only use secrets with a `file` or `environment` source"
    )]
    ExternalSecret { name: String },
    #[error("secret {name:?} has neither a `file` nor an `environment` source")]
    SecretWithoutSource { name: String },
    #[error("environment variable {variable} for secret {name:?} is not set")]
    SecretVariableUnset { name: String, variable: String },
    #[error("refers to undefined secret {name:?}")]
    UndefinedSecret { name: String },
    #[error("depends on undefined service {name:?}")]
    UndefinedService { name: String },
    #[error("cannot extend service {service:?}: not found in {file}")]
    ExtendsNotFound { service: String, file: String },
    #[error("circular `extends`: {}", chain.join(" -> "))]
    ExtendsCycle { chain: Vec<String> },
    #[error("circular `include`: {}", chain.join(" -> "))]
    IncludeCycle { chain: Vec<String> },
    #[error(
        "included file {file} defines {kind} {name:?}, which conflicts with this file's definition"
    )]
    IncludeConflict {
        kind: String,
        name: String,
        file: String,
    },
    #[error("`dockerfile` and `dockerfile_inline` cannot both be set")]
    DockerfileConflict,
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("unknown x-kiln key {key:?} (known: outputs, sbom, tag_scheme, version)")]
    UnknownKilnKey { key: String },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    }
}

/// A located problem: `file:line:col: key.path: problem`.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub location: Location,
    pub path: KeyPath,
    pub problem: Problem,
}

impl Diagnostic {
    pub fn new(location: &Location, path: &KeyPath, problem: Problem) -> Diagnostic {
        Diagnostic {
            location: location.clone(),
            path: path.clone(),
            problem,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.location, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.location, self.path, self.problem)
        }
    }
}

/// One or more located problems, shown one per line.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// A problem in a `.env` file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvFileProblem {
    #[error("unexpected character {character:?} in variable name {name:?}")]
    BadName { character: char, name: String },
    #[error("unterminated quoted value")]
    Unterminated,
    #[error("{0}")]
    Interpolation(#[from] InterpolationError),
}

/// Errors from loading a compose project.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Problems located in compose files (schema, model, unsupported keys).
    #[error("{0}")]
    Invalid(Diagnostics),
    /// A variable could not be interpolated.
    #[error("{location}: {source}")]
    Interpolation {
        location: Location,
        path: KeyPath,
        #[source]
        source: InterpolationError,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no compose file found in {} or its parents (looked for compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml)",
        dir.display()
    )]
    NoComposeFile { dir: PathBuf },
    #[error("{}:{line}: {problem}", path.display())]
    EnvFile {
        path: PathBuf,
        line: usize,
        problem: EnvFileProblem,
    },
    #[error(
        "invalid project name {name:?} (from {source_of_name}): it must contain only lowercase letters, digits, dashes and underscores, and begin with a letter or digit"
    )]
    ProjectName {
        name: String,
        source_of_name: &'static str,
    },
    #[error("no such service: {name}")]
    UnknownService { name: String },
    #[error("services depend on each other in a cycle: {}", chain.join(" -> "))]
    DependencyCycle { chain: Vec<String> },
}

impl Error {
    pub(crate) fn located(location: &Location, path: &KeyPath, problem: Problem) -> Error {
        Error::Invalid(Diagnostics(vec![Diagnostic::new(location, path, problem)]))
    }

    /// The located problems, when this error is made of them.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Invalid(diagnostics) => &diagnostics.0,
            _ => &[],
        }
    }
}

/// Levenshtein distance, to suggest a close property name.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The closest candidate within a small edit distance, if any.
pub(crate) fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let limit = if name.len() <= 4 { 1 } else { 2 };
    candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_display() {
        let path = KeyPath::from_keys(&["services", "api"])
            .key("ports")
            .index(2);
        assert_eq!(path.to_string(), "services.api.ports[2]");
    }

    #[test]
    fn suggestions() {
        let names = ["dockerfile", "dockerfile_inline", "context"];
        assert_eq!(
            suggest("dockerfil", names.iter().copied()).as_deref(),
            Some("dockerfile")
        );
        assert_eq!(suggest("zzz", names.iter().copied()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn source_file_display_is_relative_to_base() {
        let file = SourceFile::new(PathBuf::from("/p/sub/compose.yaml"), Path::new("/p"));
        assert_eq!(file.display_name(), "sub/compose.yaml");
        let outside = SourceFile::new(PathBuf::from("/q/compose.yaml"), Path::new("/p"));
        assert_eq!(outside.display_name(), "/q/compose.yaml");
    }
}
