//! The one error type of the Dockerfile frontend.
//!
//! Every error carries a [`Location`] (`file:line:column`, 1-based) and displays as
//! `Dockerfile:12:5: message`. Errors that concern the whole file (no instructions,
//! an unknown `--target`) use line 0 and display as `Dockerfile: message`.
//! [`Error::hint`] gives an extra line of advice where one helps.

use std::fmt;

use super::shell::ShellError;

/// Where in which Dockerfile something is: 1-based line and column (in characters).
///
/// Line 0 means "the file as a whole".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// A location for problems that concern the whole file.
    pub fn file(file: &str) -> Location {
        Location {
            file: file.to_string(),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// A located frontend error: `Display` gives `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub location: Location,
    /// Boxed to keep `Result<_, Error>` small.
    pub kind: Box<ErrorKind>,
}

impl Error {
    pub(crate) fn new(location: Location, kind: ErrorKind) -> Error {
        Error {
            location,
            kind: Box::new(kind),
        }
    }

    /// One more line of advice for the person fixing the Dockerfile, if there is one.
    pub fn hint(&self) -> Option<String> {
        match &*self.kind {
            ErrorKind::UnknownFlag {
                instruction, known, ..
            } => Some(if known.is_empty() {
                format!("{instruction} takes no flags")
            } else {
                format!(
                    "{instruction} accepts: {}",
                    known
                        .iter()
                        .map(|f| format!("--{f}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
            ErrorKind::UnknownInstruction { .. } => Some(
                "instructions are ADD, ARG, CMD, COPY, ENTRYPOINT, ENV, EXPOSE, FROM, HEALTHCHECK, \
                 LABEL, MAINTAINER, ONBUILD, RUN, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR"
                    .to_string(),
            ),
            ErrorKind::InstructionBeforeFrom { .. } => {
                Some("start a build stage with FROM; only ARG may come before it".to_string())
            }
            ErrorKind::TargetNotFound { .. } => Some(
                "--target takes a stage name given with `FROM image AS name`".to_string(),
            ),
            ErrorKind::ForwardStageReference { name, .. } => Some(format!(
                "move the stage {name:?} above this instruction, or refer to an image instead"
            )),
            ErrorKind::FromWithVariable { .. } => Some(
                "declare `FROM ${VAR} AS alias` and use --from=alias (or from=alias)".to_string(),
            ),
            ErrorKind::NotStringArray { .. } => Some(
                "write the exec form as a JSON array of strings, e.g. [\"echo\", \"hi\"]"
                    .to_string(),
            ),
            ErrorKind::InvalidChmod { .. } => Some(
                "use octal (0755) or symbolic modes (u+x,g-w,a+rX)".to_string(),
            ),
            ErrorKind::Expansion { .. } => Some(
                "quote a literal $ as \\$ (or with the escape character set by `# escape=`)"
                    .to_string(),
            ),
            ErrorKind::UnsupportedSyntax { .. } => Some(
                "remove the `# syntax=` line, or use `# syntax=docker/dockerfile:1` (kiln builds that syntax natively)"
                    .to_string(),
            ),
            ErrorKind::UnterminatedHeredoc { name } => Some(format!(
                "end the here-document with a line containing only {name}"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ErrorKind::Expansion { source, .. } | ErrorKind::HeredocWord { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

fn did_you_mean(suggestion: &Option<String>, prefix: &str) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {prefix}{s}?)"),
        None => String::new(),
    }
}

fn stage_list(names: &[String]) -> String {
    if names.is_empty() {
        "no stage has a name".to_string()
    } else {
        format!("available stages: {}", names.join(", "))
    }
}

/// What went wrong. The `Display` of each kind is the message without location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    // --- syntax ---
    #[error("file with no instructions")]
    NoInstructions,
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective { name: String },
    #[error("invalid escape token '{value}' does not match ` or \\")]
    InvalidEscapeToken { value: String },
    #[error("unterminated heredoc {name}")]
    UnterminatedHeredoc { name: String },
    #[error("invalid heredoc {word}: {source}")]
    HeredocWord { word: String, source: ShellError },
    #[error(
        "{instruction}: when using JSON array syntax, arrays must be comprised of strings only"
    )]
    NotStringArray { instruction: String },
    #[error("{instruction} must have two arguments")]
    TwoArguments { instruction: String },
    #[error("Syntax error - can't find = in {word:?}. Must be of the form: name=value")]
    MissingEquals { instruction: String, word: String },

    // --- instructions ---
    #[error("unknown instruction: {name}{}", did_you_mean(suggestion, ""))]
    UnknownInstruction {
        name: String,
        suggestion: Option<String>,
    },
    #[error(
        "unknown flag --{flag} for {instruction}{}",
        did_you_mean(suggestion, "--")
    )]
    UnknownFlag {
        instruction: String,
        flag: String,
        suggestion: Option<String>,
        known: Vec<&'static str>,
    },
    #[error("duplicate flag specified: --{flag}")]
    DuplicateFlag { instruction: String, flag: String },
    #[error("missing a value on flag: --{flag}")]
    FlagMissingValue { instruction: String, flag: String },
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    FlagNotBoolean {
        instruction: String,
        flag: String,
        value: String,
    },
    #[error(
        "unsupported frontend image {value:?}: kiln implements the Dockerfile syntax itself and runs no frontend images"
    )]
    UnsupportedSyntax { value: String },
    #[error("invalid value {value:?} for --{flag} of {instruction}: expected {expected}")]
    InvalidFlagValue {
        instruction: String,
        flag: String,
        value: String,
        expected: &'static str,
    },
    #[error("{instruction} requires at least one argument")]
    AtLeastOneArgument { instruction: String },
    #[error("{instruction} requires exactly one argument")]
    ExactlyOneArgument { instruction: String },
    #[error(
        "{instruction} requires at least two arguments, but only one was provided. Destination could not be determined"
    )]
    NoDestination { instruction: String },
    #[error("{instruction} names can not be blank")]
    BlankName { instruction: String },
    #[error("{instruction} requires the arguments to be in JSON form")]
    NotJsonForm { instruction: String },
    #[error("{instruction} cannot accept a heredoc as {position}")]
    HeredocNotAllowed {
        instruction: String,
        position: &'static str,
    },
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    #[error("Unknown type {kind:?} in HEALTHCHECK (try CMD)")]
    HealthcheckUnknownType { kind: String },
    #[error("Interval --{flag} cannot be less than 1ms")]
    DurationTooShort { flag: String },
    #[error("--retries cannot be negative ({value})")]
    NegativeRetries { value: i64 },
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{trigger} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger { trigger: String },
    #[error("ONBUILD trigger {trigger:?} of base {base}: {reason}")]
    BaseTrigger {
        base: String,
        trigger: String,
        reason: String,
    },
    #[error(
        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName { name: String },
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error("{instruction} is not allowed before the first FROM")]
    InstructionBeforeFrom { instruction: String },
    #[error("the Dockerfile has no FROM instruction, so there is no build stage")]
    NoStages,
    #[error("duplicate stage name {name:?} (first defined on line {first_line})")]
    DuplicateStageName { name: String, first_line: usize },
    #[error("invalid --mount={spec}: {problem}")]
    InvalidMount { spec: String, problem: MountProblem },
    #[error("'{flag}' doesn't support variable expansion, define alias stage instead")]
    FromWithVariable { flag: &'static str },
    #[error(
        "invalid chmod parameter: '{value}'. it should be octal string and between 0 and 07777, or symbolic"
    )]
    InvalidChmod { value: String },
    #[error("invalid checksum {value:?}: expected sha256:, sha384: or sha512: and hex digits")]
    InvalidChecksum { value: String },
    #[error("invalid port {value:?}: expected PORT[-PORT][/tcp|udp|sctp]")]
    InvalidPort { value: String },
    #[error("invalid signal {value:?}")]
    InvalidSignal { value: String },
    #[error("invalid platform {value:?}: expected os/arch[/variant]")]
    InvalidPlatform { value: String },

    // --- stages and expansion ---
    #[error("stage {name:?} is used before it is defined (on line {defined_line})")]
    ForwardStageReference { name: String, defined_line: usize },
    #[error("circular dependency detected on stage: {stage}")]
    CircularDependency { stage: String },
    #[error("invalid stage index {index}: the Dockerfile has {count} stages")]
    InvalidStageIndex { index: i64, count: usize },
    #[error(
        "target stage {target:?} could not be found{}; {}",
        did_you_mean(suggestion, ""),
        stage_list(available)
    )]
    TargetNotFound {
        target: String,
        available: Vec<String>,
        suggestion: Option<String>,
    },
    #[error("base name ({original}) should not be blank")]
    EmptyBaseName { original: String },
    #[error("failed to process {word:?}: {source}")]
    Expansion { word: String, source: ShellError },
}

/// Why a `RUN --mount=` value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountProblem {
    #[error("failed to parse csv mounts: {0}")]
    Csv(&'static str),
    #[error("unsupported mount type {value:?}{}", did_you_mean(suggestion, ""))]
    UnsupportedType {
        value: String,
        suggestion: Option<String>,
    },
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("unexpected key '{key}' for mount type '{mount_type}'")]
    KeyNotForType { key: String, mount_type: String },
    #[error("unexpected key '{key}' in '{field}'{}", did_you_mean(suggestion, ""))]
    UnknownKey {
        key: String,
        field: String,
        suggestion: Option<String>,
    },
    #[error("invalid value for {key}: {value}")]
    InvalidValue { key: String, value: String },
    #[error("unrecognized sharing mode {0}")]
    Sharing(String),
    #[error("{0} not allowed for {1:?} type mounts")]
    FileInfoNotAllowed(&'static str, String),
    #[error("secret mount should not have a from")]
    SecretWithFrom,
    #[error("invalid secret mount. one of source, target required")]
    SecretWithoutId,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("mount type {0} requires a target")]
    MissingTarget(String),
}
