//! `kiln lint [FILE]...`: Dockerfile rules and the compose audit
//! (`kiln_builder::lint`). Findings go to stdout as text, JSON or SARIF; the exit
//! code is 1 when a finding reaches `--fail-on` (or a file does not parse), 2 on
//! usage errors, 0 otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kiln_builder::frontend::compose::loader::COMPOSE_FILE_NAMES;
use kiln_builder::lint::{self, FailOn, LintOptions, RULES, output};

use super::Failure;
use crate::printer::Printer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Threshold {
    Error,
    Warning,
    Info,
    None,
}

impl From<Threshold> for FailOn {
    fn from(threshold: Threshold) -> FailOn {
        match threshold {
            Threshold::Error => FailOn::Error,
            Threshold::Warning => FailOn::Warning,
            Threshold::Info => FailOn::Info,
            Threshold::None => FailOn::None,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dockerfiles and compose files (`.yml`/`.yaml`); default: the Dockerfile
    /// and the compose file of the current directory
    pub files: Vec<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Do not report this rule (e.g. dockerfile/no-healthcheck); repeatable
    #[arg(long = "ignore", value_name = "RULE")]
    pub ignore: Vec<String>,
    /// Exit 1 when a finding has at least this severity
    #[arg(long = "fail-on", value_enum, default_value = "warning")]
    pub fail_on: Threshold,
    /// The build context of the Dockerfiles given (default: each one's directory),
    /// for the .dockerignore rules
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
}

/// The files linted when none are named: `Dockerfile` (or `Containerfile`) and
/// the first compose file name Compose looks for, in the current directory.
fn default_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(dockerfile) = ["Dockerfile", "Containerfile"]
        .iter()
        .find(|name| Path::new(name).is_file())
    {
        files.push(PathBuf::from(dockerfile));
    }
    if let Some(compose) = COMPOSE_FILE_NAMES
        .iter()
        .find(|name| Path::new(name).is_file())
    {
        files.push(PathBuf::from(compose));
    }
    files
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let known: BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
    for rule in &args.ignore {
        if !known.contains(rule.as_str()) {
            return Err(Failure::usage(format!("--ignore {rule}: no such rule"))
                .with_hint("rule ids are listed in the README's \"Lint rules\" section, e.g. dockerfile/base-digest, compose/restart-policy"));
        }
    }
    let files = if args.files.is_empty() {
        default_files()
    } else {
        args.files.clone()
    };
    if files.is_empty() {
        return Err(Failure::usage(
            "nothing to lint: no Dockerfile or compose file in the current directory",
        )
        .with_hint("name the files: kiln lint path/to/Dockerfile compose.yaml"));
    }
    let options = LintOptions {
        ignore: args.ignore.iter().cloned().collect(),
        context: args.context.clone(),
    };
    let mut findings = Vec::new();
    for file in &files {
        // `./Dockerfile` and `Dockerfile` (as a compose file names it) are one file.
        let display = file.strip_prefix(".").unwrap_or(file).display().to_string();
        match lint::lint_path(file, &display, &options) {
            Ok(found) => findings.extend(found),
            Err(error) => findings.push(error.to_finding(&display)),
        }
    }
    // A Dockerfile named on the command line and also built by a compose file
    // given with it is reported once.
    let mut seen = BTreeSet::new();
    findings.retain(|f| seen.insert((f.file.clone(), f.line, f.column, f.rule, f.message.clone())));

    match args.format {
        Format::Text => {
            let text = output::text(&findings);
            if !text.is_empty() {
                printer.data(text.trim_end());
            }
        }
        Format::Json => printer.data(&output::json(&findings).to_string()),
        Format::Sarif => printer.data(
            &serde_json::to_string(&output::sarif(&findings, env!("CARGO_PKG_VERSION")))
                .expect("SARIF serialises"),
        ),
    }

    let threshold = FailOn::from(args.fail_on);
    if lint::fails(&findings, threshold) {
        let failing = findings
            .iter()
            .filter(|f| f.rule == lint::PARSE_ERROR || threshold.reached_by(f.severity))
            .count();
        return Err(Failure::new(format!(
            "{failing} finding(s) at or above --fail-on {} in {} file(s)",
            match args.fail_on {
                Threshold::Error => "error",
                Threshold::Warning => "warning",
                Threshold::Info => "info",
                Threshold::None => "none",
            },
            files.len()
        )));
    }
    if findings.is_empty() {
        printer.info(&format!("{} file(s) checked: no findings", files.len()));
    }
    Ok(())
}
