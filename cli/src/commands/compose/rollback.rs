//! `kiln compose rollback --lock FILE`: move every service's tags back to the
//! digests a lock file pins, on the registry, without pulling, rebuilding or
//! transferring a layer (see [`kiln_builder::project::rollback`]).
//!
//! stdout: one `service<TAB>REF: <previous digest> -> <pinned digest>` line per tag
//! (`none` when the tag did not exist); images the project does not build are
//! checked, not moved, and get a line too. stderr: what was moved.

use std::path::PathBuf;

use kiln_builder::frontend::compose::{LoadOptions, Project};
use kiln_builder::project::rollback::{self, ServiceAction};

use super::{Failure, compose_failure, project_failure};
use crate::commands::{registry_client, runtime};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lock file to roll back to (written by kiln compose build --lock)
    #[arg(long, value_name = "FILE")]
    pub lock: PathBuf,
    /// Check and print what would change, without writing to the registry
    #[arg(long)]
    pub dry_run: bool,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let working_dir = std::env::current_dir()
        .map_err(|e| Failure::new(format!("reading the current directory: {e}")))?;
    let mut options = LoadOptions::new(working_dir);
    options.files = vec![args.lock.clone()];
    let lock = Project::load(&options).map_err(|e| compose_failure(&e))?;
    let client = registry_client(&args.insecure_registries);
    let rt = runtime()?;
    let planned = rt
        .block_on(rollback::plan(&lock, &client))
        .map_err(|e| project_failure(&e))?;
    let written = if args.dry_run {
        0
    } else {
        rt.block_on(rollback::apply(&client, &planned))
            .map_err(|e| project_failure(&e))?
    };
    let mut moved_services = 0;
    for service in &planned {
        match &service.action {
            ServiceAction::Move(moves) => {
                if moves.iter().any(|m| !m.is_noop()) {
                    moved_services += 1;
                }
                for planned_move in moves {
                    let previous = planned_move
                        .previous
                        .as_ref()
                        .map_or_else(|| "none".to_owned(), ToString::to_string);
                    printer.data(&format!(
                        "{}\t{}: {previous} -> {}",
                        service.service, planned_move.reference, planned_move.target.digest
                    ));
                }
            }
            ServiceAction::Unchanged { reference, digest } => {
                printer.data(&format!(
                    "{}\t{reference}: {digest} -> {digest}",
                    service.service
                ));
                printer.info(&format!(
                    "{}: {reference} is not built by the project and still points to the pinned digest; left as is",
                    service.service
                ));
            }
        }
    }
    if args.dry_run {
        printer.info("dry run: the registry was not changed");
    } else if written == 0 {
        printer.info(&format!(
            "every tag already points to what {} pins",
            args.lock.display()
        ));
    } else {
        printer.info(&format!(
            "moved {written} tag(s) of {moved_services} service(s) back to {} (manifests only, no layer transferred)",
            args.lock.display()
        ));
    }
    Ok(())
}
