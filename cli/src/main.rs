//! The `kiln` command line: argument parsing, one module per command, and the
//! single [`printer`] that writes to the terminal.
//!
//! Conventions: stdout carries data only (digests, JSON, tables asked for);
//! progress, logs and errors go to stderr. Exit codes: 0 success, 1 the
//! operation failed (bad input, a failed step), 2 usage error.

mod commands;
mod printer;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    let printer = printer::Printer::from_env();
    match commands::run(cli, &printer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            printer.error(&failure);
            ExitCode::from(failure.exit_code())
        }
    }
}
