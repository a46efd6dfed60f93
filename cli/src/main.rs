//! The `kiln` command line: argument parsing, one module per command, and the
//! single [`printer`] that writes to the terminal.
//!
//! Conventions: stdout carries data only (digests, JSON, tables asked for);
//! progress, logs and errors go to stderr. Exit codes: 0 success, 1 the
//! operation failed (bad input, a failed step), 2 usage error.

mod commands;
mod printer;
mod progress;
mod signals;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    let printer = printer::Printer::from_env();
    // Before any thread exists: as a plain user, become root of a user
    // namespace (mapped through /etc/subuid) so that unpacking, overlay mounts
    // and RUN steps all share one id map.
    if cli.needs_root() {
        match kiln_builder::executor::rootless::ensure_root_in_userns() {
            Ok(mode) => {
                if let Some(warning) = mode.warning() {
                    printer.warn(&warning);
                }
            }
            Err(error) => {
                printer.error(&commands::Failure::from_error(&error));
                return ExitCode::from(1);
            }
        }
    }
    match commands::run(cli, &printer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            printer.error(&failure);
            ExitCode::from(failure.exit_code())
        }
    }
}
