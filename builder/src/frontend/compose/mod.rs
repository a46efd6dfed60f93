//! The compose frontend: loading, merging, interpolation, validation and build requests.
//! It reads compose files; it never builds.
//!
//! ```no_run
//! use kiln_builder::frontend::compose::{LoadOptions, Project};
//!
//! let options = LoadOptions::new("/src/bookshop");
//! let project = Project::load(&options)?;
//! for request in project.build_requests(&[])? {
//!     // request.context_dir, request.dockerfile, request.tags, ...
//!     # let _ = request;
//! }
//! # Ok::<(), kiln_builder::frontend::compose::Error>(())
//! ```
//!
//! The pipeline, module by module:
//! - [`loader`]: finds `compose.yaml` (or `-f` files, `COMPOSE_FILE`) and the override
//!   file, reads `.env`/`--env-file` ([`dotenv`]), and per file parses the YAML with
//!   locations ([`yaml`]), interpolates values ([`interpolate`]), validates against the
//!   embedded compose-spec schema ([`schema`]), imports `include`s, resolves `extends`
//!   and makes paths absolute; then merges files ([`merge`]), applies profiles and picks
//!   the project name.
//! - [`model`]: the typed [`Project`] and [`Service`], with [`Build`] typed in full.
//! - [`build`]: [`Project::build_requests`], dependencies between services.
//!
//! Every error about file content is located: `compose.yaml:12:7: services.api.build:
//! additional property "dockerfil" is not allowed (did you mean "dockerfile"?)`
//! ([`Error`], [`Diagnostic`]). Non-fatal findings are in [`Project::warnings`].

pub mod build;
pub mod diag;
pub mod dotenv;
pub mod interpolate;
pub mod loader;
pub mod merge;
pub mod model;
pub mod schema;
pub mod yaml;

pub use build::{BuildRequest, BuildSecret, SecretSource, SecretValue};
pub use diag::{Diagnostic, Diagnostics, Error, KeyPath, Location, Problem};
pub use interpolate::{InterpolationError, interpolate, interpolate_with};
pub use loader::{LoadOptions, Warning, find_compose_files, normalize_project_name};
pub use model::{
    AdditionalContext, Build, BuildContext, Dependency, DependencyCondition, DockerfileSource,
    ExtraHost, Healthcheck, KilnExtension, Located, Mount, MountKind, Port, Project,
    SecretDefinition, SecretDefinitionSource, SecretMount, Service, SshSpec, TagScheme, TypedSpec,
};
