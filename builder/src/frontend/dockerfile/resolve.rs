//! Resolution: build args, a target and platforms in; the stages the target needs,
//! fully expanded, out.
//!
//! Contract (BuildKit's semantics):
//! - Global ARGs (before the first FROM) and the automatic platform ARGs
//!   (`BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`, `BUILDVARIANT`, `TARGETPLATFORM`,
//!   `TARGETOS`, `TARGETARCH`, `TARGETVARIANT`) are visible to FROM lines only. A
//!   stage sees one after re-declaring it (`ARG NAME` inherits its value).
//! - A build arg overrides the default of a declared ARG; undeclared build args are
//!   reported in [`ResolvedBuild::unused_build_args`]. The predefined proxy args
//!   (`HTTP_PROXY`, … and lower case) need no declaration and are returned in
//!   [`ResolvedBuild::proxy_args`] for RUN, outside expansion and cache keys.
//! - ARG and ENV take effect from the next instruction, in order: a later ENV
//!   shadows an ARG of the same name and vice versa. ENV values are all expanded
//!   before any is set (`ENV A=1 B=$A` uses the old A).
//! - Expanded: ADD, COPY, ENV, EXPOSE, FROM (with global ARGs), LABEL, STOPSIGNAL,
//!   USER, VOLUME, WORKDIR, ARG defaults, `RUN --mount` values, `--chown`,
//!   `--chmod`, `--checksum`, `--exclude`, COPY/ADD heredoc bodies with unquoted
//!   delimiters. Not expanded: RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD,
//!   MAINTAINER (the shell or a later build expands them).
//! - Only the target (default: the last stage) and the stages it needs (bases,
//!   `COPY --from`, `RUN --mount from=`) are returned, dependencies first.
//!
//! Errors: an unknown target (listing the stages), expansion errors, an empty base
//! name, invalid platforms, `--chmod`/`--checksum`/ports/signals/mounts that are
//! invalid once expanded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::ast::Heredoc;
use super::error::{Error, ErrorKind, Location};
use super::instructions::{
    Chmod, CommandLine, Healthcheck, HeredocSource, Instruction, NetworkMode, SecurityMode,
    valid_checksum,
};
use super::mount::{self, Mount, MountType, StageOrImage};
use super::shell::{Lex, ShellError};
use super::stages::{Base, Dockerfile, Stage, base_of, stage_reference};
use super::suggest;

/// The names of the proxy build args usable without an ARG instruction.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The `PATH` an image gets when its base sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An OCI platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform kiln runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = normalize_arch(std::env::consts::ARCH);
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture,
            variant,
        }
    }

    /// Parses `linux/amd64`, `linux/arm/v7`, `linux` (host architecture) or `arm64`
    /// (Linux), normalising architecture aliases (`x86_64` → `amd64`, …).
    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        };
        if parts.len() > 3 || !parts.iter().all(|p| valid(p)) {
            return None;
        }
        let os_names = ["linux", "windows", "darwin", "freebsd", "netbsd", "openbsd"];
        let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
        let (os, arch, variant) = match lower.as_slice() {
            [one] if os_names.contains(&one.as_str()) => {
                let host = Platform::host();
                return Some(Platform {
                    os: one.clone(),
                    architecture: host.architecture,
                    variant: host.variant,
                });
            }
            [arch] => ("linux".to_string(), arch.clone(), None),
            [os, arch] => (os.clone(), arch.clone(), None),
            [os, arch, variant] => (os.clone(), arch.clone(), Some(variant.clone())),
            _ => return None,
        };
        let (architecture, default_variant) = normalize_arch(&arch);
        Some(Platform {
            os,
            architecture,
            variant: variant.or(default_variant),
        })
    }
}

fn normalize_arch(arch: &str) -> (String, Option<String>) {
    let (a, v) = match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64", None),
        "aarch64" | "arm64" => ("arm64", None),
        "arm" | "armhf" | "armv7l" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v6")),
        "x86" | "i386" | "i686" | "386" => ("386", None),
        "powerpc64" | "ppc64le" => ("ppc64le", None),
        "loongarch64" | "loong64" => ("loong64", None),
        other => (other, None),
    };
    (a.to_string(), v.map(str::to_string))
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What the resolver needs to know of a base image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseImage {
    /// The image config's `Env`, in order.
    pub env: Vec<(String, String)>,
    /// The image config's `OnBuild` triggers, as stored (`RUN echo hi`).
    pub onbuild: Vec<String>,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: a stage name; None builds the last stage.
    pub target: Option<String>,
    pub build_platform: Platform,
    pub target_platform: Platform,
}

impl Default for ResolveOptions {
    fn default() -> ResolveOptions {
        ResolveOptions {
            build_args: BTreeMap::new(),
            target: None,
            build_platform: Platform::host(),
            target_platform: Platform::host(),
        }
    }
}

/// The stages a target needs, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBuild {
    /// Needed stages in Dockerfile order (dependencies first); the target is last.
    pub stages: Vec<ResolvedStage>,
    /// Global ARGs and platform ARGs with their values (what FROM lines saw).
    pub global_args: Vec<(String, String)>,
    /// Proxy build args given, for RUN's environment (not in cache keys).
    pub proxy_args: BTreeMap<String, String>,
    /// Build args no needed stage declared.
    pub unused_build_args: Vec<String>,
}

impl ResolvedBuild {
    /// The stage being built.
    pub fn target(&self) -> &ResolvedStage {
        // `resolve` always returns at least the target.
        &self.stages[self.stages.len() - 1]
    }

    /// A needed stage by its Dockerfile index.
    pub fn stage(&self, index: usize) -> Option<&ResolvedStage> {
        self.stages.iter().find(|s| s.index == index)
    }
}

/// One expanded stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedStage {
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    /// `--platform`, or the target platform.
    pub platform: Platform,
    pub location: Location,
    pub source: String,
    pub steps: Vec<Step>,
    /// The image config's environment at the end of the stage (base env + ENV).
    pub env: Vec<(String, String)>,
    /// Stages this one needs (base stage and stages it copies or mounts from).
    pub dependencies: Vec<usize>,
}

/// One expanded instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub instruction: ResolvedInstruction,
    pub location: Location,
    /// The instruction as written, for history and SBOM attribution.
    pub source: String,
    /// The ARGs this instruction sees (declared before it in the stage, with a
    /// value), sorted by name: part of its cache key.
    pub args: Vec<(String, String)>,
    /// The environment in effect (image env, ENV and ARG values, in order), e.g.
    /// for RUN.
    pub env: Vec<(String, String)>,
}

/// An instruction with its words expanded and values typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedInstruction {
    Add(AddStep),
    /// Each ARG with the value it got (None: declared without value).
    Arg(Vec<(String, Option<String>)>),
    Cmd(CommandLine),
    Copy(CopyStep),
    Entrypoint(CommandLine),
    Env(Vec<(String, String)>),
    /// Normalised `port/protocol` entries, ranges expanded.
    Expose(Vec<String>),
    Healthcheck(Healthcheck),
    Label(Vec<(String, String)>),
    Maintainer(String),
    /// The trigger expression, stored in the image for later builds.
    Onbuild(String),
    Run(RunStep),
    Shell(Vec<String>),
    StopSignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
}

/// An expanded RUN: the command itself is left for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    pub command: CommandLine,
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: NetworkMode,
    pub security: SecurityMode,
}

/// An expanded COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStep {
    /// None: the build context.
    pub from: Option<StageOrImage>,
    pub sources: Vec<String>,
    pub heredocs: Vec<HeredocSource>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<Chmod>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
}

/// An expanded ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddStep {
    pub sources: Vec<String>,
    pub heredocs: Vec<HeredocSource>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<Chmod>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
}

/// An ordered environment: later duplicates never occur ([`set_var`] replaces).
type Env = Vec<(String, String)>;

fn set_var(vars: &mut Env, key: &str, value: &str) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => vars.push((key.to_string(), value.to_string())),
    }
}

/// Normalises an EXPOSE entry (`80`, `80/udp`, `8000-8002/tcp`,
/// `127.0.0.1:8080:80`) into `port/protocol` strings.
fn expose_ports(spec: &str) -> Option<Vec<String>> {
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    // With ip:host:container forms only the container port is exposed.
    let container = ports.rsplit(':').next().unwrap_or(ports);
    let number = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|&p| p <= 65535)
    };
    let (start, end) = match container.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let p = number(container)?;
            (p, p)
        }
    };
    if end < start {
        return None;
    }
    Some((start..=end).map(|p| format!("{p}/{protocol}")).collect())
}

/// Linux signal names (without `SIG`) accepted by STOPSIGNAL.
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN",
    "RTMAX",
];

fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<i64>() {
        return (1..=64).contains(&n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) {
        return true;
    }
    let offset = |rest: &str| rest.parse::<u32>().is_ok_and(|n| (1..=15).contains(&n));
    name.strip_prefix("RTMIN+").is_some_and(offset)
        || name.strip_prefix("RTMAX-").is_some_and(offset)
}

impl Dockerfile {
    /// Resolves the build with no knowledge of base images' environments (their
    /// `ENV` is taken as empty, with the default `PATH`).
    pub fn resolve(&self, options: &ResolveOptions) -> Result<ResolvedBuild, Error> {
        self.resolve_with_base_env(options, &|_| Vec::new())
    }

    /// Resolves the build; `image_env` gives the environment of a base image
    /// reference (as written after expansion, see [`Base::Image`]), so that
    /// `WORKDIR $GOPATH` sees the image's `GOPATH`. Call [`Dockerfile::resolve`]
    /// first to learn which images are needed.
    pub fn resolve_with_base_env(
        &self,
        options: &ResolveOptions,
        image_env: &dyn Fn(&str) -> Vec<(String, String)>,
    ) -> Result<ResolvedBuild, Error> {
        self.resolve_with_bases(options, &|reference: &str| BaseImage {
            env: image_env(reference),
            onbuild: Vec::new(),
        })
    }

    /// Resolves the build knowing each base image's environment and `ONBUILD`
    /// triggers. Triggers run first in a stage built on that base, as if written
    /// right after its `FROM` (a stage based on another stage runs that stage's
    /// own `ONBUILD` instructions, as Docker does). A trigger that does not parse,
    /// or copies from a stage this build does not otherwise need, is an error at
    /// the `FROM` line.
    pub fn resolve_with_bases(
        &self,
        options: &ResolveOptions,
        base_image: &dyn Fn(&str) -> BaseImage,
    ) -> Result<ResolvedBuild, Error> {
        let lex = Lex::new(self.escape);
        let mut declared: BTreeSet<&str> = BTreeSet::new();

        // Global scope: platform ARGs, then global ARGs in order.
        let build = &options.build_platform;
        let target = &options.target_platform;
        let mut global: Vec<(String, String)> = vec![
            ("BUILDPLATFORM".into(), build.to_string()),
            ("BUILDOS".into(), build.os.clone()),
            ("BUILDARCH".into(), build.architecture.clone()),
            (
                "BUILDVARIANT".into(),
                build.variant.clone().unwrap_or_default(),
            ),
            ("TARGETPLATFORM".into(), target.to_string()),
            ("TARGETOS".into(), target.os.clone()),
            ("TARGETARCH".into(), target.architecture.clone()),
            (
                "TARGETVARIANT".into(),
                target.variant.clone().unwrap_or_default(),
            ),
        ];
        for command in &self.global_args {
            let Instruction::Arg(definitions) = &command.instruction else {
                continue;
            };
            for definition in definitions {
                declared.insert(&definition.name);
                let value = match (
                    options.build_args.get(&definition.name),
                    &definition.default,
                ) {
                    (Some(v), _) => v.clone(),
                    (None, Some(default)) => lex
                        .process_word(default, &global)
                        .map_err(|source| expansion(&command.location, default, source))?,
                    // Declared without a value: set, but empty (as BuildKit).
                    (None, None) => String::new(),
                };
                set_var(&mut global, &definition.name, &value);
            }
        }

        // Bases and platforms of all stages (BuildKit checks every FROM).
        let mut bases = Vec::with_capacity(self.stages.len());
        let mut platforms = Vec::with_capacity(self.stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            let name = lex
                .process_word(&stage.base_name, &global)
                .map_err(|source| expansion(&stage.location, &stage.base_name, source))?;
            if name.is_empty() {
                return Err(Error::new(
                    stage.location.clone(),
                    ErrorKind::EmptyBaseName {
                        original: stage.base_name.clone(),
                    },
                ));
            }
            bases.push(base_of(&self.stages[..i], &name));
            let platform = match &stage.platform {
                None => options.target_platform.clone(),
                Some(raw) => {
                    let value = lex
                        .process_word(raw, &global)
                        .map_err(|source| expansion(&stage.location, raw, source))?;
                    Platform::parse(&value).ok_or_else(|| {
                        Error::new(stage.location.clone(), ErrorKind::InvalidPlatform { value })
                    })?
                }
            };
            platforms.push(platform);
        }

        let target_index = match &options.target {
            None => self.stages.len() - 1,
            Some(name) => self.stage(name).map(|s| s.index).ok_or_else(|| {
                let available: Vec<String> =
                    self.stages.iter().filter_map(|s| s.name.clone()).collect();
                Error::new(
                    Location::file(&self.file),
                    ErrorKind::TargetNotFound {
                        target: name.clone(),
                        suggestion: suggest::closest(name, available.iter().map(String::as_str)),
                        available,
                    },
                )
            })?,
        };

        // The target and what it needs; dependencies are always earlier stages.
        let mut needed = vec![false; self.stages.len()];
        let mut pending = vec![target_index];
        while let Some(i) = pending.pop() {
            if std::mem::replace(&mut needed[i], true) {
                continue;
            }
            if let Base::Stage(j) = bases[i] {
                pending.push(j);
            }
            pending.extend(&self.stages[i].uses);
        }

        let mut resolved: Vec<ResolvedStage> = Vec::new();
        for (i, stage) in self.stages.iter().enumerate() {
            if !needed[i] {
                continue;
            }
            for command in &stage.commands {
                if let Instruction::Arg(definitions) = &command.instruction {
                    declared.extend(definitions.iter().map(|d| d.name.as_str()));
                }
            }
            let (base_env, triggers, base_label) = match &bases[i] {
                Base::Stage(j) => {
                    let env = resolved
                        .iter()
                        .find(|s| s.index == *j)
                        .map(|s| s.env.clone())
                        .unwrap_or_default();
                    let triggers = self.stages[*j]
                        .commands
                        .iter()
                        .filter_map(|c| match &c.instruction {
                            Instruction::Onbuild(o) => Some(o.expression.clone()),
                            _ => None,
                        })
                        .collect();
                    (
                        env,
                        triggers,
                        format!("stage {}", self.stages[*j].display_name()),
                    )
                }
                Base::Image(reference) => {
                    let base = base_image(reference);
                    (base.env, base.onbuild, reference.clone())
                }
                Base::Scratch => (Vec::new(), Vec::new(), String::new()),
            };
            let with_triggers;
            let stage = if triggers.is_empty() {
                stage
            } else {
                with_triggers = self.stage_with_triggers(stage, &base_label, &triggers)?;
                &with_triggers
            };
            let resolver = StageResolver {
                dockerfile: self,
                stage,
                lex,
                global: &global,
                build_args: &options.build_args,
            };
            let (steps, env) = resolver.steps(base_env)?;
            let mut dependencies = Vec::new();
            if let Base::Stage(j) = bases[i] {
                dependencies.push(j);
            }
            for &u in &stage.uses {
                if !dependencies.contains(&u) {
                    dependencies.push(u);
                }
            }
            for step in steps.iter().take(triggers.len()) {
                let from = match &step.instruction {
                    ResolvedInstruction::Copy(CopyStep {
                        from: Some(StageOrImage::Stage(k)),
                        ..
                    }) => Some(*k),
                    _ => None,
                };
                if let Some(k) = from {
                    if !resolved.iter().any(|s| s.index == k) {
                        return Err(Error::new(
                            stage.location.clone(),
                            ErrorKind::BaseTrigger {
                                base: base_label.clone(),
                                trigger: step.source.clone(),
                                reason: "copies from a stage this build does not otherwise need"
                                    .into(),
                            },
                        ));
                    }
                    if !dependencies.contains(&k) {
                        dependencies.push(k);
                    }
                }
            }
            resolved.push(ResolvedStage {
                index: i,
                name: stage.name.clone(),
                base: bases[i].clone(),
                platform: platforms[i].clone(),
                location: stage.location.clone(),
                source: stage.source.clone(),
                steps,
                env,
                dependencies,
            });
        }

        let proxy_args = options
            .build_args
            .iter()
            .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let unused_build_args = options
            .build_args
            .keys()
            .filter(|k| {
                !declared.contains(k.as_str())
                    && !PROXY_ARGS.contains(&k.as_str())
                    && k.as_str() != "SOURCE_DATE_EPOCH"
                    && !k.starts_with("BUILDKIT_")
            })
            .cloned()
            .collect();
        Ok(ResolvedBuild {
            stages: resolved,
            global_args: global,
            proxy_args,
            unused_build_args,
        })
    }
}

impl Dockerfile {
    /// `stage` with its base's `ONBUILD` triggers parsed and put first. The
    /// triggers take the `FROM` line's location: that is where they come in.
    fn stage_with_triggers(
        &self,
        stage: &Stage,
        base: &str,
        triggers: &[String],
    ) -> Result<Stage, Error> {
        let mut commands = Vec::with_capacity(triggers.len() + stage.commands.len());
        for trigger in triggers {
            let escape = if self.escape == '`' {
                "# escape=`\n"
            } else {
                ""
            };
            let text = format!("{escape}FROM scratch\n{trigger}\n");
            let parsed = super::load(&text, &self.file).map_err(|e| {
                Error::new(
                    stage.location.clone(),
                    ErrorKind::BaseTrigger {
                        base: base.to_string(),
                        trigger: trigger.clone(),
                        reason: e.kind.to_string(),
                    },
                )
            })?;
            for mut command in parsed.stages.into_iter().flat_map(|s| s.commands) {
                command.location = stage.location.clone();
                commands.push(command);
            }
        }
        commands.extend(stage.commands.iter().cloned());
        Ok(Stage {
            commands,
            ..stage.clone()
        })
    }
}

fn expansion(location: &Location, word: &str, source: ShellError) -> Error {
    Error::new(
        location.clone(),
        ErrorKind::Expansion {
            word: word.to_string(),
            source,
        },
    )
}

struct StageResolver<'a> {
    dockerfile: &'a Dockerfile,
    stage: &'a Stage,
    lex: Lex,
    global: &'a [(String, String)],
    build_args: &'a BTreeMap<String, String>,
}

impl StageResolver<'_> {
    /// Expands every instruction; returns the steps and the final image env.
    fn steps(&self, base_env: Vec<(String, String)>) -> Result<(Vec<Step>, Env), Error> {
        let mut config_env = base_env;
        if !config_env.iter().any(|(k, _)| k == "PATH") {
            config_env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        // `vars`: what expansion and RUN see (image env, then ENV and ARG in order).
        let mut vars = config_env.clone();
        let mut args: Vec<(String, String)> = Vec::new();
        let mut steps = Vec::with_capacity(self.stage.commands.len());

        for command in &self.stage.commands {
            let location = &command.location;
            let word = |w: &str| -> Result<String, Error> {
                self.lex
                    .process_word(w, &vars)
                    .map_err(|source| expansion(location, w, source))
            };
            let optional = |w: &Option<String>| w.as_deref().map(word).transpose();
            let invalid = |kind: ErrorKind| Error::new(location.clone(), kind);
            let mut visible = args.clone();
            visible.sort();

            let instruction = match &command.instruction {
                Instruction::Arg(definitions) => {
                    let mut out = Vec::with_capacity(definitions.len());
                    for definition in definitions {
                        let value =
                            match (self.build_args.get(&definition.name), &definition.default) {
                                (Some(v), _) => Some(v.clone()),
                                (None, Some(default)) => Some(
                                    self.lex
                                        .process_word(default, &vars)
                                        .map_err(|source| expansion(location, default, source))?,
                                ),
                                (None, None) => self
                                    .global
                                    .iter()
                                    .find(|(k, _)| *k == definition.name)
                                    .map(|(_, v)| v.clone()),
                            };
                        if let Some(v) = &value {
                            set_var(&mut vars, &definition.name, v);
                            set_var(&mut args, &definition.name, v);
                        }
                        out.push((definition.name.clone(), value));
                    }
                    ResolvedInstruction::Arg(out)
                }
                Instruction::Env(pairs) | Instruction::Label(pairs) => {
                    let mut expanded = Vec::with_capacity(pairs.len());
                    for pair in pairs {
                        expanded.push((word(&pair.key)?, word(&pair.value)?));
                    }
                    if matches!(command.instruction, Instruction::Env(_)) {
                        for (k, v) in &expanded {
                            set_var(&mut vars, k, v);
                            set_var(&mut config_env, k, v);
                        }
                        ResolvedInstruction::Env(expanded)
                    } else {
                        ResolvedInstruction::Label(expanded)
                    }
                }
                Instruction::Run(run) => {
                    let expand = |w: &str| self.lex.process_word(w, &vars);
                    let resolve_from = |v: &str| self.stage_or_image(v);
                    let mut mounts = Vec::with_capacity(run.mounts.len());
                    let mut ssh_index = 0;
                    for spec in &run.mounts {
                        mounts.push(
                            mount::parse(&spec.text, &expand, &resolve_from, ssh_index)
                                .map_err(invalid)?,
                        );
                        if spec.mount_type == MountType::Ssh {
                            ssh_index += 1;
                        }
                    }
                    ResolvedInstruction::Run(RunStep {
                        command: run.command.clone(),
                        heredocs: run.heredocs.clone(),
                        mounts,
                        network: run.network,
                        security: run.security,
                    })
                }
                Instruction::Copy(copy) => ResolvedInstruction::Copy(CopyStep {
                    from: copy.from.as_deref().map(|v| self.stage_or_image(v)),
                    sources: copy
                        .sources
                        .iter()
                        .map(|s| word(s))
                        .collect::<Result<_, _>>()?,
                    heredocs: self.heredoc_sources(&copy.heredocs, &vars, location)?,
                    dest: word(&copy.dest)?,
                    chown: optional(&copy.chown)?,
                    chmod: self.chmod(optional(&copy.chmod)?, location)?,
                    link: copy.link,
                    parents: copy.parents,
                    exclude: copy
                        .exclude
                        .iter()
                        .map(|s| word(s))
                        .collect::<Result<_, _>>()?,
                }),
                Instruction::Add(add) => {
                    let checksum = optional(&add.checksum)?;
                    if let Some(value) = &checksum
                        && !valid_checksum(value)
                    {
                        return Err(invalid(ErrorKind::InvalidChecksum {
                            value: value.clone(),
                        }));
                    }
                    ResolvedInstruction::Add(AddStep {
                        sources: add
                            .sources
                            .iter()
                            .map(|s| word(s))
                            .collect::<Result<_, _>>()?,
                        heredocs: self.heredoc_sources(&add.heredocs, &vars, location)?,
                        dest: word(&add.dest)?,
                        chown: optional(&add.chown)?,
                        chmod: self.chmod(optional(&add.chmod)?, location)?,
                        link: add.link,
                        keep_git_dir: add.keep_git_dir,
                        checksum,
                        unpack: add.unpack,
                        exclude: add
                            .exclude
                            .iter()
                            .map(|s| word(s))
                            .collect::<Result<_, _>>()?,
                    })
                }
                Instruction::Expose(specs) => {
                    let mut ports = Vec::new();
                    for spec in specs {
                        let split = self
                            .lex
                            .process_words(spec, &vars)
                            .map_err(|source| expansion(location, spec, source))?;
                        for port in split {
                            let normalized = expose_ports(&port).ok_or_else(|| {
                                invalid(ErrorKind::InvalidPort {
                                    value: port.clone(),
                                })
                            })?;
                            ports.extend(normalized);
                        }
                    }
                    ResolvedInstruction::Expose(ports)
                }
                Instruction::Volume(volumes) => {
                    let mut out = Vec::with_capacity(volumes.len());
                    for v in volumes {
                        let expanded = word(v)?;
                        if expanded.is_empty() {
                            return Err(invalid(ErrorKind::EmptyVolume));
                        }
                        out.push(expanded);
                    }
                    ResolvedInstruction::Volume(out)
                }
                Instruction::User(user) => ResolvedInstruction::User(word(user)?),
                Instruction::Workdir(dir) => ResolvedInstruction::Workdir(word(dir)?),
                Instruction::StopSignal(signal) => {
                    let value = word(signal)?;
                    if !valid_signal(&value) {
                        return Err(invalid(ErrorKind::InvalidSignal { value }));
                    }
                    ResolvedInstruction::StopSignal(value)
                }
                Instruction::Cmd(c) => ResolvedInstruction::Cmd(c.clone()),
                Instruction::Entrypoint(c) => ResolvedInstruction::Entrypoint(c.clone()),
                Instruction::Shell(s) => ResolvedInstruction::Shell(s.clone()),
                Instruction::Healthcheck(h) => ResolvedInstruction::Healthcheck(h.clone()),
                Instruction::Maintainer(m) => ResolvedInstruction::Maintainer(m.clone()),
                Instruction::Onbuild(o) => ResolvedInstruction::Onbuild(o.expression.clone()),
            };
            steps.push(Step {
                instruction,
                location: location.clone(),
                source: command.source.clone(),
                args: visible,
                env: vars.clone(),
            });
        }
        Ok((steps, config_env))
    }

    /// A `--from`/`from=` value: a stage (checked when typing) or an image.
    fn stage_or_image(&self, value: &str) -> StageOrImage {
        match stage_reference(&self.dockerfile.stages, self.stage.index, value) {
            Ok(Some(index)) => StageOrImage::Stage(index),
            _ => StageOrImage::Image(value.to_string()),
        }
    }

    fn chmod(&self, value: Option<String>, location: &Location) -> Result<Option<Chmod>, Error> {
        value
            .map(|v| {
                Chmod::parse(&v).ok_or_else(|| {
                    Error::new(
                        location.clone(),
                        ErrorKind::InvalidChmod { value: v.clone() },
                    )
                })
            })
            .transpose()
    }

    fn heredoc_sources(
        &self,
        sources: &[HeredocSource],
        vars: &[(String, String)],
        location: &Location,
    ) -> Result<Vec<HeredocSource>, Error> {
        // Bodies keep their quotes; only `$` references are expanded.
        let lex = Lex {
            skip_process_quotes: true,
            ..Lex::new('\\')
        };
        sources
            .iter()
            .map(|source| {
                let content = if source.expand {
                    lex.process_word(&source.content, &vars)
                        .map_err(|e| expansion(location, &source.content, e))?
                } else {
                    source.content.clone()
                };
                Ok(HeredocSource {
                    content,
                    ..source.clone()
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64");
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(Platform::parse("linux//amd64").is_none());
        assert!(Platform::parse("a/b/c/d").is_none());
        assert!(Platform::parse("").is_none());
    }

    #[test]
    fn ports_and_signals() {
        assert_eq!(expose_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            expose_ports("8000-8002/tcp").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(expose_ports("127.0.0.1:8080:80").unwrap(), vec!["80/tcp"]);
        assert!(expose_ports("80/icmp").is_none());
        assert!(expose_ports("http").is_none());
        assert!(expose_ports("70000").is_none());
        assert!(valid_signal("SIGTERM") && valid_signal("term") && valid_signal("9"));
        assert!(valid_signal("SIGRTMIN+3"));
        assert!(!valid_signal("SIGFOO") && !valid_signal("0"));
    }

    fn sources(stage: &ResolvedStage) -> Vec<&str> {
        stage.steps.iter().map(|s| s.source.as_str()).collect()
    }

    #[test]
    fn onbuild_triggers_come_first_in_the_child_stage() {
        let file = super::super::load(
            "FROM base AS parent\nONBUILD RUN echo from-parent\nRUN echo own\n\
             FROM parent\nRUN echo child\n",
            "Dockerfile",
        )
        .unwrap();
        let build = file
            .resolve_with_bases(&ResolveOptions::default(), &|reference| {
                assert_eq!(reference, "base");
                BaseImage {
                    env: vec![("GREETING".into(), "hi".into())],
                    onbuild: vec!["ENV FROM_IMAGE=$GREETING".into()],
                }
            })
            .unwrap();
        let parent = build.stage(0).unwrap();
        assert_eq!(
            sources(parent),
            [
                "ENV FROM_IMAGE=$GREETING",
                "ONBUILD RUN echo from-parent",
                "RUN echo own"
            ]
        );
        assert!(matches!(
            &parent.steps[0].instruction,
            ResolvedInstruction::Env(vars) if vars == &[("FROM_IMAGE".to_string(), "hi".to_string())]
        ));
        // Triggers sit at the FROM line.
        assert_eq!(parent.steps[0].location.line, 1);
        let child = build.stage(1).unwrap();
        assert_eq!(sources(child), ["RUN echo from-parent", "RUN echo child"]);
        assert_eq!(child.steps[0].location.line, 4);
    }

    #[test]
    fn a_broken_trigger_is_an_error_at_the_from_line() {
        let file = super::super::load("FROM base\nRUN true\n", "Dockerfile").unwrap();
        let error = file
            .resolve_with_bases(&ResolveOptions::default(), &|_| BaseImage {
                env: Vec::new(),
                onbuild: vec!["COPY".into()],
            })
            .unwrap_err();
        assert_eq!(error.location.line, 1);
        let message = error.to_string();
        assert!(
            message.contains("ONBUILD trigger \"COPY\" of base base"),
            "{message}"
        );
    }
}
