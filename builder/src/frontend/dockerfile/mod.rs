//! The Dockerfile frontend: parser, instructions, word expansion and stages.
//!
//! Text in, a typed and validated build description out; nothing runs here. The
//! behaviour follows BuildKit's `dockerfile` frontend and is checked against its
//! parser cases and shell tests.
//!
//! 1. [`parse`]: syntax only. Directives, comments, continuations, JSON and shell
//!    forms, flags, heredocs → an [`Ast`] with exact positions; [`dump`] prints it
//!    in BuildKit's dump format.
//! 2. [`Dockerfile::from_ast`]: typed [`Instruction`]s grouped into [`Stage`]s,
//!    flags and arguments checked, stage references (`COPY --from`, `RUN --mount
//!    from=`) found.
//! 3. [`Dockerfile::resolve`]: build args, `--target` and platforms applied; the
//!    needed stages come back expanded ([`ResolvedBuild`]), each [`Step`] with the
//!    ARGs it sees (for its cache key) and its source text and location.
//!
//! Every failure is an [`Error`] that displays as `file:line:col: message`, with an
//! optional [`Error::hint`].
//!
//! ```
//! use kiln_builder::frontend::dockerfile::{self, Dockerfile, ResolveOptions};
//!
//! let ast = dockerfile::parse("FROM alpine AS base\nARG GREETING=hi\nRUN echo $GREETING\n", "Dockerfile")?;
//! let build = Dockerfile::from_ast(&ast)?.resolve(&ResolveOptions::default())?;
//! let run = &build.target().steps[1];
//! assert_eq!(run.source, "RUN echo $GREETING");
//! assert_eq!(run.args, vec![("GREETING".to_string(), "hi".to_string())]);
//! # Ok::<(), dockerfile::Error>(())
//! ```

mod ast;
mod error;
mod instructions;
mod mount;
mod parser;
mod resolve;
pub mod shell;
mod stages;
mod suggest;
mod syntax;

pub use ast::{Arg, Ast, Directive, Heredoc, Node, Position, Span, Warning, Word, dump, go_quote};
pub use error::{Error, ErrorKind, Location, MountProblem};
pub use instructions::{
    AddInstruction, ArgDefinition, Chmod, ChmodClause, ChmodOp, ChmodPerms, CommandLine,
    CopyInstruction, Healthcheck, HealthcheckCommand, HeredocSource, Instruction, KeyValue,
    NetworkMode, Onbuild, RunInstruction, SecurityMode,
};
pub use mount::{
    BindMount, CacheMount, CacheSharing, Mount, MountSpec, MountType, SecretMount, SshMount,
    StageOrImage, TmpfsMount,
};
pub use parser::parse;
pub use resolve::{
    AddStep, BaseImage, CopyStep, DEFAULT_PATH, PROXY_ARGS, Platform, ResolveOptions,
    ResolvedBuild, ResolvedInstruction, ResolvedStage, RunStep, Step,
};
pub use stages::{Base, Command, Dockerfile, Stage};

/// Parses and types a Dockerfile in one call.
pub fn load(text: &str, file: &str) -> Result<Dockerfile, Error> {
    Dockerfile::from_ast(&parse(text, file)?)
}
