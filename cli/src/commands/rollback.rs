//! `kiln rollback REF --to DIGEST|TAG`: move a tag back to an earlier manifest on
//! its registry, without pulling or rebuilding (see [`kiln_builder::rollback`]).
//!
//! stdout: `REF: <previous digest> -> <new digest>` (`none` when the tag did not
//! exist); stderr: how to undo it.

use kiln_builder::rollback;
use kiln_registry::Reference;

use super::{Failure, registry_client, runtime};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tag to move (registry/repository:tag)
    pub reference: String,
    /// What it should point to: a digest (sha256:…) or another tag of the same repository
    #[arg(long, value_name = "DIGEST|TAG")]
    pub to: String,
    /// Check and print what would change, without writing to the registry
    #[arg(long)]
    pub dry_run: bool,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

/// What the user sees for a rollback error: a usage error (exit 2) when the request
/// was wrong, with the library's hint.
pub fn rollback_failure(error: &rollback::Error) -> Failure {
    let mut failure = Failure::from_error(error);
    if error.is_usage() {
        failure = Failure {
            causes: failure.causes,
            ..Failure::usage(failure.message)
        };
    }
    match error.hint() {
        Some(hint) => failure.with_hint(hint),
        None => failure,
    }
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let reference = Reference::parse(&args.reference)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.reference)))?;
    let client = registry_client(&args.insecure_registries);
    let rt = runtime()?;
    let planned = rt
        .block_on(rollback::plan(&client, &reference, &args.to))
        .map_err(|e| rollback_failure(&e))?;
    let moved = !args.dry_run
        && rt
            .block_on(rollback::apply(&client, &planned))
            .map_err(|e| rollback_failure(&e))?;
    let previous = planned
        .previous
        .as_ref()
        .map_or_else(|| "none".to_owned(), ToString::to_string);
    printer.data(&format!(
        "{}: {previous} -> {}",
        args.reference, planned.target.digest
    ));
    if args.dry_run {
        printer.info("dry run: the registry was not changed");
    } else if !moved {
        printer.info(&format!(
            "{} already points to {}",
            args.reference, planned.target.digest
        ));
    }
    match &planned.previous {
        Some(previous) if moved => printer.info(&format!(
            "undo with: kiln rollback {} --to {previous}",
            args.reference
        )),
        None if moved => printer.info(&format!(
            "{} did not exist before; there is nothing to undo to",
            args.reference
        )),
        _ => {}
    }
    Ok(())
}
