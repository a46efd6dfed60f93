//! Command-line definitions and dispatch; each command lives in its own file.

mod images;

use clap::{Parser, Subcommand};

use crate::printer::Printer;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build OCI images from Dockerfiles and compose projects, without a daemon"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the images in kiln's store (name, digest, size, created)
    Images(images::Args),
}

/// A failed command: what to tell the user, and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
    exit_code: u8,
}

impl Failure {
    /// The operation failed (exit code 1).
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            causes: Vec::new(),
            hint: None,
            exit_code: 1,
        }
    }

    /// The command was used wrongly (exit code 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            exit_code: 2,
            ..Failure::new(message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    pub fn exit_code(&self) -> u8 {
        self.exit_code
    }

    /// A failure from any error, with its chain of sources as causes.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Failure {
        let mut failure = Failure::new(error.to_string());
        let mut source = error.source();
        while let Some(cause) = source {
            failure.causes.push(cause.to_string());
            source = cause.source();
        }
        failure
    }
}

impl From<kiln_builder::store::Error> for Failure {
    fn from(error: kiln_builder::store::Error) -> Failure {
        Failure::from_error(&error)
    }
}

pub fn run(cli: Cli, printer: &Printer) -> Result<(), Failure> {
    match cli.command {
        Command::Images(args) => images::run(args, printer),
    }
}
