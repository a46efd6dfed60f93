//! `kiln lint`: rules over Dockerfiles and the compose audit.
//!
//! Files are read with kiln's own frontends, so every finding is located
//! (`file:line:column`) and a file kiln cannot parse is reported with the
//! frontend's located error, as a [`PARSE_ERROR`] finding.
//!
//! - [`lint_dockerfile`] checks one Dockerfile: base images pinned to a tag and a
//!   digest, the final stage's user and healthcheck, ADD vs COPY, exec-form
//!   CMD/ENTRYPOINT, apt and pip hygiene, `cd` in RUN, secret-like ARG/ENV names,
//!   and — given the build context — the `.dockerignore` when the whole context
//!   is copied.
//! - [`lint_compose`] runs the compose audit over a loaded project (the seed's
//!   eight checks: image tag and digest pins, database healthcheck, dependents
//!   waiting for `service_healthy`, database ports, secrets in environment
//!   variables, database volumes, restart policies) and then the Dockerfile rules
//!   over every service built from a local Dockerfile.
//! - [`lint_path`] picks one of the two by file name.
//!
//! Every rule is in [`RULES`] with its severity and hint. Findings can be
//! silenced per run ([`LintOptions::ignore`]) or in the file: a comment
//! `# kiln-lint ignore=RULE[,RULE]` directly above a Dockerfile instruction, or
//! above a compose key (it then covers everything under that key) — see
//! [`ignore`].
//!
//! [`output`] renders findings as text, JSON or SARIF 2.1.0. Nothing here
//! prints.
//!
//! Errors: [`Error`] for files that cannot be read or parsed; it converts to a
//! located finding with [`Error::to_finding`].

mod compose;
mod dockerfile;
pub mod ignore;
pub mod names;
pub mod output;
mod rules;
mod script;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use compose::lint_compose;
pub use dockerfile::lint_dockerfile;
pub use rules::{FailOn, PARSE_ERROR, RULES, Rule, RuleScope, Severity, UnknownThreshold, rule};

use crate::frontend::compose as compose_frontend;
use crate::frontend::dockerfile as dockerfile_frontend;

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The file as shown to the user (as given on the command line, or relative
    /// to the compose project).
    pub file: String,
    /// 1-based; 0 when the finding concerns the whole file.
    pub line: usize,
    /// 1-based, in characters; 0 with line 0.
    pub column: usize,
    pub severity: Severity,
    pub rule: &'static str,
    pub message: String,
    pub hint: String,
}

impl Finding {
    /// A finding of `rule` (severity and hint from the catalogue).
    pub(crate) fn new(
        rule_id: &'static str,
        file: &str,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Finding {
        let rule = rule(rule_id).expect("rule ids used by the linter are in RULES");
        Finding {
            file: file.to_owned(),
            line,
            column,
            severity: rule.severity,
            rule: rule.id,
            message: message.into(),
            hint: rule.hint.to_owned(),
        }
    }
}

/// What to check and how.
#[derive(Debug, Clone, Default)]
pub struct LintOptions {
    /// Rule ids not to report (`--ignore`).
    pub ignore: BTreeSet<String>,
    /// The build context of a Dockerfile given alone (default: its directory).
    /// Used for the `.dockerignore` rules.
    pub context: Option<PathBuf>,
}

/// A file that could not be linted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Dockerfile(#[from] dockerfile_frontend::Error),
    #[error("{0}")]
    Compose(#[from] compose_frontend::Error),
}

impl Error {
    /// The error as a [`PARSE_ERROR`] finding, at the error's location when it
    /// has one.
    pub fn to_finding(&self, file: &str) -> Finding {
        let (file, line, column, message, hint) = match self {
            Error::Read { source, .. } => (file.to_owned(), 0, 0, source.to_string(), None),
            Error::Dockerfile(e) => (
                e.location.file.clone(),
                e.location.line,
                e.location.column,
                e.kind.to_string(),
                e.hint(),
            ),
            Error::Compose(e) => match e.diagnostics().first() {
                Some(d) => (
                    d.location.file.display_name().to_owned(),
                    d.location.line as usize,
                    d.location.column as usize,
                    e.diagnostics()
                        .iter()
                        .map(|d| format!("{}: {}", d.path, d.problem))
                        .collect::<Vec<_>>()
                        .join("; "),
                    None,
                ),
                None => (file.to_owned(), 0, 0, e.to_string(), None),
            },
        };
        let mut finding = Finding::new(PARSE_ERROR, &file, line, column, message);
        if let Some(hint) = hint {
            finding.hint = hint;
        }
        finding
    }
}

/// Which frontend reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dockerfile,
    Compose,
}

impl FileKind {
    /// Compose for `.yml`/`.yaml` files, Dockerfile for anything else
    /// (`Dockerfile`, `Containerfile`, `app.Dockerfile`, `Dockerfile.prod`).
    pub fn of(path: &Path) -> FileKind {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yml" | "yaml") => FileKind::Compose,
            _ => FileKind::Dockerfile,
        }
    }
}

/// Lints one file, Dockerfile or compose file by [`FileKind::of`]. `display`
/// names a Dockerfile in its findings; compose findings (and those of the
/// Dockerfiles a compose file builds) name files relative to the current
/// directory. A compose file is loaded alone (no override file), with the process
/// environment for interpolation.
pub fn lint_path(path: &Path, display: &str, options: &LintOptions) -> Result<Vec<Finding>, Error> {
    match FileKind::of(path) {
        FileKind::Dockerfile => {
            let text = read(path)?;
            let context = options
                .context
                .clone()
                .unwrap_or_else(|| match path.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                    _ => PathBuf::from("."),
                });
            lint_dockerfile(&text, display, Some(&context), Some(path), options)
        }
        FileKind::Compose => {
            // The loader resolves `-f` files against the working directory.
            let path = std::path::absolute(path).map_err(|source| Error::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let working_dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            let mut load = compose_frontend::LoadOptions::new(&working_dir);
            load.files = vec![path.clone()];
            let project = compose_frontend::Project::load(&load)?;
            lint_compose(&project, options)
        }
    }
}

pub(crate) fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether any finding reaches the threshold; a [`PARSE_ERROR`] always does.
pub fn fails(findings: &[Finding], threshold: FailOn) -> bool {
    findings
        .iter()
        .any(|f| f.rule == PARSE_ERROR || threshold.reached_by(f.severity))
}
