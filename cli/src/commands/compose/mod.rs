//! `kiln compose`: build, push and show compose projects.
//!
//! The global flags (`-f`, `--env-file`, `-p`, `--profile`, `--project-directory`)
//! come before the subcommand, as with `docker compose`, and decide what is loaded
//! ([`LoadOptions`]). One file per subcommand: [`build`], [`push`], [`config`],
//! [`rollback`] (which reads its lock file instead of the project).

mod build;
mod config;
mod push;
mod rollback;

use std::path::PathBuf;

use kiln_builder::frontend::compose::{LoadOptions, Project};
use kiln_builder::project;

use super::Failure;
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Compose configuration files (default: compose.yaml and compose.override.yaml)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Alternate environment files (default: the project directory's .env)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// A profile to enable; repeatable
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Alternate working directory (default: the directory of the first file)
    #[arg(long = "project-directory", value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build the images of the project's services
    Build(build::Args),
    /// Push the built images of the project's services, with all their tags
    Push(push::Args),
    /// Show the resolved project (merged, interpolated, canonical YAML)
    Config(config::Args),
    /// Move every service's tags on the registry back to the digests of a lock file
    Rollback(rollback::Args),
}

impl Args {
    /// Whether the subcommand runs build steps (and so needs root, of a user
    /// namespace at least).
    pub fn needs_root(&self) -> bool {
        matches!(self.command, Command::Build(_))
    }

    /// Loads the project the global flags describe; warnings go to stderr.
    fn load(&self, printer: &Printer) -> Result<Project, Failure> {
        let working_dir = std::env::current_dir()
            .map_err(|e| Failure::new(format!("reading the current directory: {e}")))?;
        let mut options = LoadOptions::new(working_dir);
        options.files = self.files.clone();
        options.env_files = self.env_files.clone();
        options.project_name = self.project_name.clone();
        options.profiles = self.profiles.clone();
        options.project_directory = self.project_directory.clone();
        let project = Project::load(&options).map_err(|e| compose_failure(&e))?;
        for warning in &project.warnings {
            printer.warn(&warning.to_string());
        }
        Ok(project)
    }
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    if let Command::Rollback(rollback) = args.command {
        return rollback::run(rollback, printer);
    }
    let project = args.load(printer)?;
    match args.command {
        Command::Build(build) => build::run(&project, build, printer),
        Command::Push(push) => push::run(&project, push, printer),
        Command::Config(config) => config::run(&project, config, printer),
        Command::Rollback(_) => unreachable!("handled before loading the project"),
    }
}

/// A compose loading error: located problems one per line.
fn compose_failure(error: &kiln_builder::frontend::compose::Error) -> Failure {
    Failure::from_error(error)
}

/// What the user sees for a project error: a failed service's build error is shown
/// as `kiln build` shows it (step output, hint), prefixed with the service.
fn project_failure(error: &project::Error) -> Failure {
    match error {
        project::Error::ServiceFailed { service, source } => {
            let mut failure = super::build::build_failure(source);
            failure.message = format!("service {service}: {}", failure.message);
            failure
        }
        other => {
            let failure = Failure::from_error(other);
            match other.hint() {
                Some(hint) => failure.with_hint(hint),
                None => failure,
            }
        }
    }
}

/// The service names given on the command line, checked against the project.
fn selected<'a>(project: &Project, services: &'a [String]) -> Result<Vec<&'a str>, Failure> {
    for name in services {
        if project.service(name).is_none() {
            let known: Vec<&str> = project
                .services
                .keys()
                .chain(project.disabled_services.keys())
                .map(String::as_str)
                .collect();
            return Err(Failure::usage(format!("no such service: {name}"))
                .with_hint(format!("the project's services: {}", known.join(", "))));
        }
    }
    Ok(services.iter().map(String::as_str).collect())
}

/// Bytes as people read them (`12.3 MB`).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Rows as left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1_234_567), "1.2 MB");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["SERVICE".to_owned(), "IMAGE".to_owned()],
            vec!["api".to_owned(), "shop-api:dev".to_owned()],
        ];
        assert_eq!(table(&rows), "SERVICE  IMAGE\napi      shop-api:dev\n");
    }
}
