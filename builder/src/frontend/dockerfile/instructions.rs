//! Typed instructions: one [`Node`] in, one [`Instruction`] (or a stage header for
//! FROM) out, with flags checked as BuildKit's `instructions` package does.
//!
//! Contract: words stay as written (quotes, `$VAR`) where BuildKit expands them
//! later (ADD, COPY, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG
//! defaults, `--mount` values, `--chown`/`--chmod`/`--checksum`); flags BuildKit
//! does not expand are typed here (`--network`, `--security`, HEALTHCHECK times).
//!
//! Errors: unknown instructions and flags (with a suggestion), duplicate flags,
//! flags without or with bad values, wrong argument counts, SHELL not in JSON form,
//! heredocs where they cannot go, forbidden ONBUILD triggers, bad stage names and
//! bad `--mount` values; each located at the instruction or the offending word.

use std::time::Duration;

use super::ast::{Arg, Heredoc, Node, Position, Word};
use super::error::{Error, ErrorKind, Location};
use super::mount::{self, MountSpec};
use super::parser::parse_heredoc;
use super::suggest;

/// An instruction other than FROM (which starts a [`Stage`](super::Stage)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Add(AddInstruction),
    Arg(Vec<ArgDefinition>),
    Cmd(CommandLine),
    Copy(CopyInstruction),
    Entrypoint(CommandLine),
    Env(Vec<KeyValue>),
    /// Port specifications as written (expanded and split later).
    Expose(Vec<String>),
    Healthcheck(Healthcheck),
    Label(Vec<KeyValue>),
    /// Deprecated; sets the image author.
    Maintainer(String),
    Onbuild(Onbuild),
    Run(RunInstruction),
    /// The shell for shell-form commands (JSON form only).
    Shell(Vec<String>),
    StopSignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
}

impl Instruction {
    /// The upper-case keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Add(_) => "ADD",
            Instruction::Arg(_) => "ARG",
            Instruction::Cmd(_) => "CMD",
            Instruction::Copy(_) => "COPY",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Env(_) => "ENV",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Run(_) => "RUN",
            Instruction::Shell(_) => "SHELL",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::User(_) => "USER",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Workdir(_) => "WORKDIR",
        }
    }
}

/// A command in shell form (run by the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

/// `ARG name[=default]`; the default is as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDefinition {
    pub name: String,
    pub default: Option<String>,
}

/// `KEY=value` of ENV or LABEL, as written; `legacy` for the `KEY value` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub legacy: bool,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    pub command: CommandLine,
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<MountSpec>,
    pub network: NetworkMode,
    pub security: SecurityMode,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NetworkMode {
    #[default]
    Default,
    None,
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

/// A heredoc given as a COPY/ADD source: a file named `name` with `content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeredocSource {
    pub name: String,
    /// The body, leading tabs already removed for `<<-`.
    pub content: String,
    /// Whether `$VAR` in the body is expanded (unquoted delimiter).
    pub expand: bool,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstruction {
    /// `--from`: a stage name or index, or an image, as written.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub sources: Vec<String>,
    pub heredocs: Vec<HeredocSource>,
    pub dest: String,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddInstruction {
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    /// `--unpack`: None leaves BuildKit's default (unpack local archives).
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
    pub sources: Vec<String>,
    pub heredocs: Vec<HeredocSource>,
    pub dest: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Check(HealthcheckCommand),
}

/// `HEALTHCHECK [flags] CMD …`; unset or zero times mean "inherit the default".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckCommand {
    pub command: CommandLine,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// `ONBUILD`: the trigger as stored in the image, and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The text after `ONBUILD`, heredoc bodies appended (the image's `OnBuild`).
    pub expression: String,
    pub trigger: Box<Instruction>,
}

/// A FROM line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FromLine {
    pub base: String,
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// What a node turned into.
#[derive(Debug)]
pub(crate) enum Parsed {
    From(FromLine),
    Instruction(Instruction),
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

/// Flags given to one instruction, checked against what it accepts.
struct Flags {
    specs: &'static [(&'static str, FlagKind)],
    values: Vec<Vec<(String, Position)>>,
}

impl Flags {
    fn string(&self, name: &str) -> Option<String> {
        self.values_of(name).last().map(|(v, _)| v.clone())
    }

    fn position(&self, name: &str) -> Option<Position> {
        self.values_of(name).last().map(|(_, p)| *p)
    }

    fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }

    fn strings(&self, name: &str) -> Vec<String> {
        self.values_of(name)
            .iter()
            .map(|(v, _)| v.clone())
            .collect()
    }

    fn values_of(&self, name: &str) -> &[(String, Position)] {
        self.specs
            .iter()
            .position(|(n, _)| *n == name)
            .map_or(&[], |i| self.values[i].as_slice())
    }
}

/// Checks the instruction's flags (BuildKit's `BFlags.Parse`).
fn parse_flags(
    ctx: &Context,
    instruction: &str,
    words: &[Word],
    specs: &'static [(&'static str, FlagKind)],
) -> Result<Flags, Error> {
    let mut values: Vec<Vec<(String, Position)>> = vec![Vec::new(); specs.len()];
    for word in words {
        let text = word.value.strip_prefix("--").unwrap_or(&word.value);
        let (name, value) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let Some(i) = specs.iter().position(|(n, _)| *n == name) else {
            return Err(ctx.error(
                word.start,
                ErrorKind::UnknownFlag {
                    instruction: instruction.to_string(),
                    flag: name.to_string(),
                    suggestion: suggest::closest(name, specs.iter().map(|(n, _)| *n)),
                    known: specs.iter().map(|(n, _)| *n).collect(),
                },
            ));
        };
        let kind = specs[i].1;
        if kind != FlagKind::Strings && !values[i].is_empty() {
            return Err(ctx.error(
                word.start,
                ErrorKind::DuplicateFlag {
                    instruction: instruction.to_string(),
                    flag: name.to_string(),
                },
            ));
        }
        let missing = || {
            ctx.error(
                word.start,
                ErrorKind::FlagMissingValue {
                    instruction: instruction.to_string(),
                    flag: name.to_string(),
                },
            )
        };
        let value = match kind {
            FlagKind::Bool => match value {
                Some("") => return Err(missing()),
                None => "true".to_string(),
                Some(v) => match v.to_lowercase().as_str() {
                    "true" => "true".to_string(),
                    "false" => "false".to_string(),
                    _ => {
                        return Err(ctx.error(
                            word.start,
                            ErrorKind::FlagNotBoolean {
                                instruction: instruction.to_string(),
                                flag: name.to_string(),
                                value: v.to_string(),
                            },
                        ));
                    }
                },
            },
            FlagKind::String | FlagKind::Strings => match value {
                None => return Err(missing()),
                Some(v) => v.to_string(),
            },
        };
        values[i].push((value, word.start));
    }
    Ok(Flags { specs, values })
}

/// File name and escape character for located errors.
pub(crate) struct Context<'a> {
    pub file: &'a str,
}

impl Context<'_> {
    pub(crate) fn error(&self, at: Position, kind: ErrorKind) -> Error {
        Error::new(self.location(at), kind)
    }

    pub(crate) fn location(&self, at: Position) -> Location {
        Location {
            file: self.file.to_string(),
            line: at.line,
            column: at.column,
        }
    }
}

const NO_FLAGS: &[(&str, FlagKind)] = &[];
const FROM_FLAGS: &[(&str, FlagKind)] = &[("platform", FlagKind::String)];
const RUN_FLAGS: &[(&str, FlagKind)] = &[
    ("mount", FlagKind::Strings),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
];
const COPY_FLAGS: &[(&str, FlagKind)] = &[
    ("chmod", FlagKind::String),
    ("chown", FlagKind::String),
    ("exclude", FlagKind::Strings),
    ("from", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
];
const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("checksum", FlagKind::String),
    ("chmod", FlagKind::String),
    ("chown", FlagKind::String),
    ("exclude", FlagKind::Strings),
    ("keep-git-dir", FlagKind::Bool),
    ("link", FlagKind::Bool),
    ("unpack", FlagKind::Bool),
];
const HEALTHCHECK_FLAGS: &[(&str, FlagKind)] = &[
    ("interval", FlagKind::String),
    ("retries", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("start-period", FlagKind::String),
    ("timeout", FlagKind::String),
];

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn words(node: &Node) -> Vec<&Word> {
    node.args
        .iter()
        .filter_map(|a| match a {
            Arg::Word(w) => Some(w),
            Arg::Instruction(_) => None,
        })
        .collect()
}

fn command_line(node: &Node, args: &[&Word]) -> CommandLine {
    if node.json {
        CommandLine::Exec(args.iter().map(|w| w.value.clone()).collect())
    } else {
        CommandLine::Shell(
            args.iter()
                .map(|w| w.value.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

/// Parses one node. `heredocs` are the node's (or, for an ONBUILD trigger, its
/// parent's) here-documents.
pub(crate) fn parse_node(
    ctx: &Context,
    node: &Node,
    heredocs: &[Heredoc],
) -> Result<Parsed, Error> {
    let upper = node.name.to_uppercase();
    let at = node.span.start;
    let err = |kind: ErrorKind| ctx.error(at, kind);
    let instruction = upper.clone();
    let args = words(node);
    let no_flags = || parse_flags(ctx, &instruction, &node.flags, NO_FLAGS).map(|_| ());
    let one_arg = |args: &[&Word]| -> Result<String, Error> {
        if args.len() != 1 {
            return Err(err(ErrorKind::ExactlyOneArgument {
                instruction: instruction.clone(),
            }));
        }
        Ok(args[0].value.clone())
    };
    let parsed = match upper.as_str() {
        "FROM" => {
            let flags = parse_flags(ctx, &instruction, &node.flags, FROM_FLAGS)?;
            let name = match args.len() {
                1 => None,
                3 if args[1].value.eq_ignore_ascii_case("as") => {
                    let name = args[2].value.to_lowercase();
                    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && name.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return Err(ctx.error(
                            args[2].start,
                            ErrorKind::InvalidStageName {
                                name: args[2].value.clone(),
                            },
                        ));
                    }
                    Some(name)
                }
                _ => return Err(err(ErrorKind::FromArguments)),
            };
            return Ok(Parsed::From(FromLine {
                base: args[0].value.clone(),
                name,
                platform: flags.string("platform"),
            }));
        }
        "ENV" | "LABEL" => {
            no_flags()?;
            if args.is_empty() {
                return Err(err(ErrorKind::AtLeastOneArgument { instruction }));
            }
            let mut pairs = Vec::with_capacity(args.len() / 3);
            for triple in args.chunks(3) {
                let [key, value, sep] = triple else {
                    return Err(err(ErrorKind::TwoArguments { instruction }));
                };
                if key.value.is_empty() {
                    return Err(ctx.error(key.start, ErrorKind::BlankName { instruction }));
                }
                pairs.push(KeyValue {
                    key: key.value.clone(),
                    value: value.value.clone(),
                    legacy: sep.value.is_empty(),
                });
            }
            if upper == "ENV" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "MAINTAINER" => {
            let value = one_arg(&args)?;
            no_flags()?;
            Instruction::Maintainer(value)
        }
        "ADD" | "COPY" => return parse_copy(ctx, node, &instruction, &args, heredocs),
        "ONBUILD" => {
            no_flags()?;
            let Some(Arg::Instruction(trigger)) = node.args.first() else {
                return Err(err(ErrorKind::AtLeastOneArgument { instruction }));
            };
            let trigger_name = trigger.name.trim().to_uppercase();
            match trigger_name.as_str() {
                "ONBUILD" => return Err(err(ErrorKind::OnbuildChain)),
                "MAINTAINER" | "FROM" => {
                    return Err(err(ErrorKind::OnbuildTrigger {
                        trigger: trigger_name,
                    }));
                }
                _ => {}
            }
            let Parsed::Instruction(inner) = parse_node(ctx, trigger, heredocs)? else {
                return Err(err(ErrorKind::OnbuildTrigger {
                    trigger: trigger_name,
                }));
            };
            let mut expression = node.original.trim_start()[node.name.len()..]
                .trim_start()
                .to_string();
            for heredoc in heredocs {
                expression.push('\n');
                expression.push_str(&heredoc.content);
                expression.push_str(&heredoc.name);
            }
            Instruction::Onbuild(Onbuild {
                expression,
                trigger: Box::new(inner),
            })
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" => {
            let value = one_arg(&args)?;
            no_flags()?;
            match upper.as_str() {
                "WORKDIR" => Instruction::Workdir(value),
                "USER" => Instruction::User(value),
                _ => Instruction::StopSignal(value),
            }
        }
        "RUN" => {
            let flags = parse_flags(ctx, &instruction, &node.flags, RUN_FLAGS)?;
            let mut mounts = Vec::new();
            for (text, position) in &flags.values_of("mount").to_vec() {
                mounts.push(mount::check(text).map_err(|kind| ctx.error(*position, kind))?);
            }
            let network = match flags.string("network").as_deref() {
                None | Some("default") => NetworkMode::Default,
                Some("none") => NetworkMode::None,
                Some("host") => NetworkMode::Host,
                Some(other) => {
                    return Err(ctx.error(
                        flags.position("network").unwrap_or(at),
                        ErrorKind::InvalidFlagValue {
                            instruction,
                            flag: "network".into(),
                            value: other.into(),
                            expected: "default, none or host",
                        },
                    ));
                }
            };
            let security = match flags.string("security").as_deref() {
                None | Some("sandbox") => SecurityMode::Sandbox,
                Some("insecure") => SecurityMode::Insecure,
                Some(other) => {
                    return Err(ctx.error(
                        flags.position("security").unwrap_or(at),
                        ErrorKind::InvalidFlagValue {
                            instruction,
                            flag: "security".into(),
                            value: other.into(),
                            expected: "sandbox or insecure",
                        },
                    ));
                }
            };
            Instruction::Run(RunInstruction {
                command: command_line(node, &args),
                heredocs: heredocs.to_vec(),
                mounts,
                network,
                security,
            })
        }
        "CMD" => {
            no_flags()?;
            Instruction::Cmd(command_line(node, &args))
        }
        "ENTRYPOINT" => {
            no_flags()?;
            Instruction::Entrypoint(command_line(node, &args))
        }
        "HEALTHCHECK" => Instruction::Healthcheck(parse_healthcheck(ctx, node, &args)?),
        "EXPOSE" => {
            if args.is_empty() {
                return Err(err(ErrorKind::AtLeastOneArgument { instruction }));
            }
            no_flags()?;
            // Sorted as BuildKit does; the image's exposed ports are a set anyway.
            let mut ports: Vec<String> = args.iter().map(|w| w.value.clone()).collect();
            ports.sort();
            Instruction::Expose(ports)
        }
        "VOLUME" => {
            no_flags()?;
            if args.is_empty() {
                return Err(err(ErrorKind::AtLeastOneArgument { instruction }));
            }
            let mut volumes = Vec::with_capacity(args.len());
            for word in &args {
                let v = word.value.trim();
                if v.is_empty() {
                    return Err(ctx.error(word.start, ErrorKind::EmptyVolume));
                }
                volumes.push(v.to_string());
            }
            Instruction::Volume(volumes)
        }
        "ARG" => {
            if args.is_empty() {
                return Err(err(ErrorKind::AtLeastOneArgument { instruction }));
            }
            let mut defs = Vec::with_capacity(args.len());
            for word in &args {
                let def = match word.value.split_once('=') {
                    Some(("", _)) => {
                        return Err(ctx.error(word.start, ErrorKind::BlankName { instruction }));
                    }
                    Some((name, value)) => ArgDefinition {
                        name: name.to_string(),
                        default: Some(value.to_string()),
                    },
                    None => ArgDefinition {
                        name: word.value.clone(),
                        default: None,
                    },
                };
                defs.push(def);
            }
            no_flags()?;
            Instruction::Arg(defs)
        }
        "SHELL" => {
            no_flags()?;
            if args.is_empty() {
                return Err(err(ErrorKind::AtLeastOneArgument { instruction }));
            }
            if !node.json {
                return Err(err(ErrorKind::NotJsonForm { instruction }));
            }
            Instruction::Shell(args.iter().map(|w| w.value.clone()).collect())
        }
        _ => {
            return Err(err(ErrorKind::UnknownInstruction {
                name: node.name.clone(),
                suggestion: suggest::closest(&node.name, INSTRUCTIONS.iter().copied())
                    .filter(|_| !node.name.is_empty()),
            }));
        }
    };
    Ok(Parsed::Instruction(parsed))
}

fn parse_copy(
    ctx: &Context,
    node: &Node,
    instruction: &str,
    args: &[&Word],
    heredocs: &[Heredoc],
) -> Result<Parsed, Error> {
    let at = node.span.start;
    let is_copy = instruction == "COPY";
    let specs = if is_copy { COPY_FLAGS } else { ADD_FLAGS };
    if args.len() < 2 {
        return Err(ctx.error(
            at,
            ErrorKind::NoDestination {
                instruction: instruction.to_string(),
            },
        ));
    }
    let flags = parse_flags(ctx, instruction, &node.flags, specs)?;
    let (dest, sources) = (args[args.len() - 1], &args[..args.len() - 1]);
    if parse_heredoc(&dest.value).ok().flatten().is_some() {
        return Err(ctx.error(
            dest.start,
            ErrorKind::HeredocNotAllowed {
                instruction: instruction.to_string(),
                position: "a destination",
            },
        ));
    }
    let mut paths = Vec::new();
    let mut inline = Vec::new();
    for source in sources {
        match parse_heredoc(&source.value).ok().flatten() {
            Some(doc) => {
                let body = heredocs
                    .iter()
                    .find(|h| h.name == doc.name)
                    .map(Heredoc::body)
                    .unwrap_or_default();
                inline.push(HeredocSource {
                    name: doc.name,
                    content: body,
                    expand: doc.expand,
                });
            }
            None => paths.push(source.value.clone()),
        }
    }
    let chmod = flags.string("chmod");
    if let Some(value) = &chmod
        && !value.contains('$')
        && Chmod::parse(value).is_none()
    {
        return Err(ctx.error(
            flags.position("chmod").unwrap_or(at),
            ErrorKind::InvalidChmod {
                value: value.clone(),
            },
        ));
    }
    if is_copy {
        let from = flags.string("from");
        if let Some(f) = &from
            && f.find('$').is_some_and(|i| i != f.len() - 1)
        {
            return Err(ctx.error(
                flags.position("from").unwrap_or(at),
                ErrorKind::FromWithVariable { flag: "--from" },
            ));
        }
        return Ok(Parsed::Instruction(Instruction::Copy(CopyInstruction {
            from,
            chown: flags.string("chown"),
            chmod,
            link: flags.bool("link"),
            parents: flags.bool("parents"),
            exclude: flags.strings("exclude"),
            sources: paths,
            heredocs: inline,
            dest: dest.value.clone(),
        })));
    }
    let checksum = flags.string("checksum");
    if let Some(value) = &checksum
        && !value.contains('$')
        && !valid_checksum(value)
    {
        return Err(ctx.error(
            flags.position("checksum").unwrap_or(at),
            ErrorKind::InvalidChecksum {
                value: value.clone(),
            },
        ));
    }
    Ok(Parsed::Instruction(Instruction::Add(AddInstruction {
        chown: flags.string("chown"),
        chmod,
        link: flags.bool("link"),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum,
        unpack: flags.string("unpack").map(|v| v == "true"),
        exclude: flags.strings("exclude"),
        sources: paths,
        heredocs: inline,
        dest: dest.value.clone(),
    })))
}

/// `sha256:`/`sha384:`/`sha512:` followed by the right number of lower-case hex digits.
pub(crate) fn valid_checksum(value: &str) -> bool {
    let Some((algorithm, hex)) = value.split_once(':') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == length && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_healthcheck(ctx: &Context, node: &Node, args: &[&Word]) -> Result<Healthcheck, Error> {
    let at = node.span.start;
    let instruction = "HEALTHCHECK";
    let Some(kind) = args.first() else {
        return Err(ctx.error(
            at,
            ErrorKind::AtLeastOneArgument {
                instruction: instruction.into(),
            },
        ));
    };
    let kind_upper = kind.value.to_uppercase();
    let rest = &args[1..];
    if kind_upper == "NONE" {
        if !rest.is_empty() {
            return Err(ctx.error(rest[0].start, ErrorKind::HealthcheckNoneArguments));
        }
        return Ok(Healthcheck::None);
    }
    let flags = parse_flags(ctx, instruction, &node.flags, HEALTHCHECK_FLAGS)?;
    if kind_upper != "CMD" {
        return Err(ctx.error(
            kind.start,
            ErrorKind::HealthcheckUnknownType {
                kind: kind_upper.clone(),
            },
        ));
    }
    let command = command_line(node, rest);
    let empty = match &command {
        CommandLine::Exec(v) => v.is_empty(),
        CommandLine::Shell(s) => s.is_empty(),
    };
    if empty {
        return Err(ctx.error(at, ErrorKind::HealthcheckMissingCommand));
    }
    let duration = |name: &'static str| -> Result<Option<Duration>, Error> {
        let Some(value) = flags.string(name) else {
            return Ok(None);
        };
        let position = flags.position(name).unwrap_or(at);
        match parse_go_duration(&value) {
            None => Err(ctx.error(
                position,
                ErrorKind::InvalidFlagValue {
                    instruction: instruction.into(),
                    flag: name.into(),
                    value,
                    expected: "a duration such as 30s, 1m30s or 500ms",
                },
            )),
            Some(0) => Ok(None),
            Some(nanos) if nanos < 1_000_000 => {
                Err(ctx.error(position, ErrorKind::DurationTooShort { flag: name.into() }))
            }
            Some(nanos) => Ok(Some(Duration::from_nanos(nanos as u64))),
        }
    };
    let retries = match flags.string("retries") {
        None => None,
        Some(value) => {
            let position = flags.position("retries").unwrap_or(at);
            let n: i64 = value.parse().map_err(|_| {
                ctx.error(
                    position,
                    ErrorKind::InvalidFlagValue {
                        instruction: instruction.into(),
                        flag: "retries".into(),
                        value: value.clone(),
                        expected: "a whole number",
                    },
                )
            })?;
            if n < 0 {
                return Err(ctx.error(position, ErrorKind::NegativeRetries { value: n }));
            }
            Some(u32::try_from(n).map_err(|_| {
                ctx.error(
                    position,
                    ErrorKind::InvalidFlagValue {
                        instruction: instruction.into(),
                        flag: "retries".into(),
                        value: value.clone(),
                        expected: "a whole number below 2^31",
                    },
                )
            })?)
        }
    };
    Ok(Healthcheck::Check(HealthcheckCommand {
        command,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration`, in nanoseconds (negative allowed): `1h30m`, `1.5s`,
/// `500ms`, `0`.
pub(crate) fn parse_go_duration(s: &str) -> Option<i128> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale: f64 = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i128;
    Some(if negative { -nanos } else { nanos })
}

/// A `--chmod` mode: octal, or symbolic like `u+x,g-w,a+rX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<ChmodClause>),
}

/// One `who op perms` step of a symbolic mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChmodClause {
    /// Bits of `ugo` the clause applies to (0o700 user, 0o070 group, 0o007 other);
    /// no `who` letters means all.
    pub who: u32,
    pub op: ChmodOp,
    /// Any of `rwxXst`.
    pub perms: ChmodPerms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChmodOp {
    Add,
    Remove,
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChmodPerms {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
    /// `X`: execute only for directories or files already executable by someone.
    pub execute_if_any: bool,
    pub set_id: bool,
    pub sticky: bool,
}

impl Chmod {
    /// Parses an octal (at most 07777) or symbolic mode.
    pub fn parse(s: &str) -> Option<Chmod> {
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let mode = u32::from_str_radix(s, 8).ok()?;
            return (mode <= 0o7777).then_some(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let who_end = part.find(|c| !"ugoa".contains(c)).unwrap_or(part.len());
            let mut who = 0;
            for c in part[..who_end].chars() {
                who |= match c {
                    'u' => 0o700,
                    'g' => 0o070,
                    'o' => 0o007,
                    _ => 0o777,
                };
            }
            if who == 0 {
                who = 0o777;
            }
            let mut rest = &part[who_end..];
            if rest.is_empty() {
                return None;
            }
            while !rest.is_empty() {
                let op = match rest.as_bytes()[0] {
                    b'+' => ChmodOp::Add,
                    b'-' => ChmodOp::Remove,
                    b'=' => ChmodOp::Set,
                    _ => return None,
                };
                rest = &rest[1..];
                let end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
                let mut perms = ChmodPerms::default();
                for c in rest[..end].chars() {
                    match c {
                        'r' => perms.read = true,
                        'w' => perms.write = true,
                        'x' => perms.execute = true,
                        'X' => perms.execute_if_any = true,
                        's' => perms.set_id = true,
                        't' => perms.sticky = true,
                        _ => return None,
                    }
                }
                clauses.push(ChmodClause { who, op, perms });
                rest = &rest[end..];
            }
        }
        Some(Chmod::Symbolic(clauses))
    }

    /// The new permission bits of a file whose mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return (mode & !0o7777) | m,
            Chmod::Symbolic(c) => c,
        };
        let mut mode = mode;
        for clause in clauses {
            let p = clause.perms;
            let any_execute = is_dir || mode & 0o111 != 0;
            let mut bits = 0;
            if p.read {
                bits |= 0o444;
            }
            if p.write {
                bits |= 0o222;
            }
            if p.execute || (p.execute_if_any && any_execute) {
                bits |= 0o111;
            }
            bits &= clause.who;
            if p.set_id {
                if clause.who & 0o700 != 0 {
                    bits |= 0o4000;
                }
                if clause.who & 0o070 != 0 {
                    bits |= 0o2000;
                }
            }
            if p.sticky && clause.who & 0o007 != 0 {
                bits |= 0o1000;
            }
            mode = match clause.op {
                ChmodOp::Add => mode | bits,
                ChmodOp::Remove => mode & !bits,
                ChmodOp::Set => {
                    let mut clear = clause.who;
                    if clause.who & 0o700 != 0 {
                        clear |= 0o4000;
                    }
                    if clause.who & 0o070 != 0 {
                        clear |= 0o2000;
                    }
                    (mode & !clear) | bits
                }
            };
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_go_duration("-2us"), Some(-2_000));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn chmod_modes() {
        assert_eq!(Chmod::parse("0755"), Some(Chmod::Octal(0o755)));
        assert_eq!(Chmod::parse("7777"), Some(Chmod::Octal(0o7777)));
        assert_eq!(Chmod::parse("17777"), None);
        assert_eq!(Chmod::parse("u+q"), None);
        assert_eq!(Chmod::parse(""), None);
        let m = Chmod::parse("g-w,a+rX").unwrap();
        assert_eq!(m.apply(0o664, false), 0o644);
        assert_eq!(m.apply(0o600, true), 0o755);
        assert_eq!(m.apply(0o700, false), 0o755);
        // X looks at the mode left by the clauses before it.
        assert_eq!(Chmod::parse("u+x,a+X").unwrap().apply(0o644, false), 0o755);
        assert_eq!(Chmod::parse("go=").unwrap().apply(0o777, false), 0o700);
        assert_eq!(Chmod::parse("u=rw,+t").unwrap().apply(0o751, true), 0o1651);
        assert_eq!(Chmod::parse("u+s").unwrap().apply(0o755, false), 0o4755);
        assert_eq!(Chmod::Octal(0o640).apply(0o100755, false), 0o100640);
    }

    #[test]
    fn checksums() {
        assert!(valid_checksum(&format!("sha256:{}", "a".repeat(64))));
        assert!(!valid_checksum(&format!("sha256:{}", "A".repeat(64))));
        assert!(!valid_checksum("md5:abc"));
    }
}
