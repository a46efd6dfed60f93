//! Command-line definitions and dispatch; each command lives in its own file.

mod build;
mod compose;
mod debug;
mod images;
mod inspect;
mod lint;
mod login;
mod pull;
mod push;
mod rollback;
mod sbom;
mod tag;
mod verify;

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
    /// Build an image from a Dockerfile and a context
    Build(Box<build::Args>),
    /// Build and push the images of a compose project
    Compose(Box<compose::Args>),
    /// List the images in kiln's store (name, digest, size, created)
    Images(images::Args),
    /// Pull an image into the store, verifying every blob
    Pull(pull::Args),
    /// Push an image from the store or an OCI layout to a registry
    Push(push::Args),
    /// Give an image on a registry more tags, without pulling its layers
    Tag(tag::Args),
    /// Check Dockerfiles and compose files for common problems (rules in the README)
    Lint(lint::Args),
    /// Move a tag on a registry back to an earlier manifest, without pulling
    Rollback(rollback::Args),
    /// Show an image's manifest, config and platforms (JSON)
    Inspect(inspect::Args),
    /// Catalog an image's packages (CycloneDX SBOM), each attributed to its layer
    Sbom(sbom::Args),
    /// Save credentials for a registry in the docker config file
    Login(login::LoginArgs),
    /// Remove saved credentials for a registry
    Logout(login::LogoutArgs),
    /// Check that an image is reproducible: rebuild and compare with a
    /// published image (--against REF), or build twice (--twice)
    Verify(Box<verify::Args>),
    /// Tools for looking inside kiln
    #[command(subcommand)]
    Debug(debug::Args),
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

    /// The same failure with another exit code (`kiln verify`: 2 when it
    /// could not verify, as 1 means "different").
    pub fn with_exit_code(mut self, exit_code: u8) -> Failure {
        self.exit_code = exit_code;
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
        Command::Build(args) => build::run(*args, printer),
        Command::Compose(args) => compose::run(*args, printer),
        Command::Images(args) => images::run(args, printer),
        Command::Pull(args) => pull::run(args, printer),
        Command::Push(args) => push::run(args, printer),
        Command::Tag(args) => tag::run(args, printer),
        Command::Inspect(args) => inspect::run(args, printer),
        Command::Lint(args) => lint::run(args, printer),
        Command::Rollback(args) => rollback::run(args, printer),
        Command::Sbom(args) => sbom::run(args, printer),
        Command::Login(args) => login::login(args, printer),
        Command::Logout(args) => login::logout(args, printer),
        Command::Verify(args) => verify::run(*args, printer),
        Command::Debug(args) => debug::run(args, printer),
    }
}

/// A registry client for the CLI: credentials from the environment (docker
/// config, `REGISTRY_AUTH_FILE`, `GITHUB_TOKEN` for ghcr.io).
pub fn registry_client(insecure: &[String]) -> kiln_registry::RegistryClient {
    kiln_registry::RegistryClient::new(kiln_registry::ClientConfig {
        insecure_registries: insecure.to_vec(),
        ..Default::default()
    })
}

/// The async runtime registry commands run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("starting the async runtime: {e}")))
}

impl Cli {
    /// Whether the command runs build steps or unpacks layers, and so must run as
    /// root (of a user namespace, when kiln is started by a plain user).
    pub fn needs_root(&self) -> bool {
        match &self.command {
            Command::Build(_) | Command::Verify(_) => true,
            Command::Compose(compose) => compose.needs_root(),
            _ => false,
        }
    }
}
