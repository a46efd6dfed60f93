//! The Dockerfile rules (`dockerfile/*` in [`RULES`](super::RULES)).
//!
//! Contract: [`lint_dockerfile`] parses the text with kiln's Dockerfile frontend
//! (a parse error is returned, located) and reports findings located at the
//! instruction, or at the word, that causes them. "The final stage" is the last
//! stage of the file; its user, healthcheck and CMD/ENTRYPOINT are looked up
//! through the stages it is built `FROM`, as the image inherits them. A base
//! written with variables is expanded with the global ARG defaults; one that
//! still has variables is not judged. Stage names and `scratch` are not images.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::names::{ImageName, is_secret_name};
use super::script::{self, program};
use super::{Error, Finding, LintOptions, ignore};
use crate::context::patterns::{PatternMatcher, parse_dockerignore};
use crate::frontend::dockerfile::{
    self as frontend, Arg, Ast, CommandLine, Dockerfile, Instruction, Node, Stage, shell::Lex,
};

/// Lints one Dockerfile. `display` names it in findings; `context` is the build
/// context (for the `.dockerignore` rules, skipped when `None`); `path` is the
/// Dockerfile's own path, for a `<Dockerfile>.dockerignore` beside it.
pub fn lint_dockerfile(
    text: &str,
    display: &str,
    context: Option<&Path>,
    path: Option<&Path>,
    options: &LintOptions,
) -> Result<Vec<Finding>, Error> {
    let ast = frontend::parse(text, display)?;
    let dockerfile = Dockerfile::from_ast(&ast)?;
    let mut linter = Linter {
        ast: &ast,
        dockerfile: &dockerfile,
        file: display,
        findings: Vec::new(),
    };
    linter.bases();
    linter.final_stage();
    linter.instructions();
    if let Some(context) = context {
        linter.context_copies(context, path)?;
    }
    let mut findings = linter.findings;
    let ignored = inline_ignores(&ast);
    findings.retain(|f| {
        !options.ignore.contains(f.rule)
            && !ignored.iter().any(|(first, last, ids)| {
                (*first..=*last).contains(&f.line) && ids.contains(f.rule)
            })
    });
    findings.sort();
    findings.dedup();
    Ok(findings)
}

/// (first line, last line, ids) of each instruction with an ignore comment.
fn inline_ignores(ast: &Ast) -> Vec<(usize, usize, BTreeSet<String>)> {
    ast.nodes
        .iter()
        .filter_map(|node| {
            let ids: BTreeSet<String> = node
                .comments
                .iter()
                .filter_map(|c| ignore::parse_comment(c))
                .flatten()
                .collect();
            (!ids.is_empty()).then(|| {
                (
                    node.span.start.line,
                    node.span.end.line.max(node.span.start.line),
                    ids,
                )
            })
        })
        .collect()
}

struct Linter<'a> {
    ast: &'a Ast,
    dockerfile: &'a Dockerfile,
    file: &'a str,
    findings: Vec<Finding>,
}

impl<'a> Linter<'a> {
    fn push(&mut self, rule: &'static str, line: usize, column: usize, message: String) {
        self.findings
            .push(Finding::new(rule, self.file, line, column, message));
    }

    /// The syntax node of the instruction starting on `line`.
    fn node_at(&self, line: usize) -> Option<&'a Node> {
        self.ast.nodes.iter().find(|n| n.span.start.line == line)
    }

    /// The global ARG defaults, for bases written with variables.
    fn global_defaults(&self) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        for command in &self.dockerfile.global_args {
            if let Instruction::Arg(definitions) = &command.instruction {
                for definition in definitions {
                    if let Some(default) = &definition.default {
                        let lex = Lex::new(self.dockerfile.escape);
                        let value = lex
                            .process_word(default, &vars)
                            .unwrap_or_else(|_| default.clone());
                        vars.insert(definition.name.clone(), value);
                    }
                }
            }
        }
        vars
    }

    /// `dockerfile/base-digest` and `dockerfile/base-tag`.
    fn bases(&mut self) {
        let vars = self.global_defaults();
        let mut lex = Lex::new(self.dockerfile.escape);
        lex.skip_unset_env = true;
        for stage in &self.dockerfile.stages {
            let Ok(base) = lex.process_word(&stage.base_name, &vars) else {
                continue;
            };
            if base.contains('$') || base.is_empty() || base == "scratch" {
                continue;
            }
            let lower = base.to_lowercase();
            let earlier = &self.dockerfile.stages[..stage.index];
            if earlier
                .iter()
                .any(|s| s.name.as_deref() == Some(lower.as_str()))
            {
                continue;
            }
            // Point at the image word of the FROM line.
            let (line, column) = self
                .node_at(stage.location.line)
                .and_then(|node| node.args.first())
                .and_then(|arg| match arg {
                    Arg::Word(w) => Some((w.start.line, w.start.column)),
                    Arg::Instruction(_) => None,
                })
                .unwrap_or((stage.location.line, stage.location.column));
            let name = ImageName::split(&base);
            if name.digest.is_none() {
                self.push(
                    "dockerfile/base-digest",
                    line,
                    column,
                    format!("base image {base} is not pinned to a digest"),
                );
                match name.tag {
                    None => self.push(
                        "dockerfile/base-tag",
                        line,
                        column,
                        format!("base image {base} has no tag (it means :latest)"),
                    ),
                    Some("latest") => self.push(
                        "dockerfile/base-tag",
                        line,
                        column,
                        format!("base image {base} uses the :latest tag"),
                    ),
                    Some(_) => {}
                }
            }
        }
    }

    /// The final stage and the earlier stages it is built on, last first.
    fn final_chain(&self) -> Vec<&'a Stage> {
        let mut chain = Vec::new();
        let stages: &'a [Stage] = &self.dockerfile.stages;
        let mut current = stages.last();
        let vars = self.global_defaults();
        let mut lex = Lex::new(self.dockerfile.escape);
        lex.skip_unset_env = true;
        while let Some(stage) = current {
            chain.push(stage);
            let base = lex
                .process_word(&stage.base_name, &vars)
                .unwrap_or_default()
                .to_lowercase();
            current = stages[..stage.index]
                .iter()
                .rev()
                .find(|s| s.name.as_deref() == Some(base.as_str()));
        }
        chain
    }

    /// `dockerfile/root-user`, `dockerfile/no-healthcheck`,
    /// `dockerfile/shell-form-cmd`: what the built image runs.
    fn final_stage(&mut self) {
        let chain = self.final_chain();
        let Some(last) = chain.first().copied() else {
            return;
        };
        let commands = || chain.iter().flat_map(|s| s.commands.iter().rev());

        let user = commands().find_map(|c| match &c.instruction {
            Instruction::User(user) => Some((user.clone(), c.location.clone())),
            _ => None,
        });
        let root_user = match user {
            None => Some((
                last.location.line,
                last.location.column,
                "the final stage sets no USER: the container runs as root".to_owned(),
            )),
            Some((user, location)) => {
                let name = user.split(':').next().unwrap_or("");
                (name == "root" || name == "0").then(|| {
                    (
                        location.line,
                        location.column,
                        format!("USER {user}: the container runs as root"),
                    )
                })
            }
        };

        let has_healthcheck =
            commands().any(|c| matches!(c.instruction, Instruction::Healthcheck(_)));

        let mut shell_forms = Vec::new();
        let mut seen = BTreeSet::new();
        for command in commands() {
            let (keyword, line) = match &command.instruction {
                Instruction::Cmd(line) => ("CMD", line),
                Instruction::Entrypoint(line) => ("ENTRYPOINT", line),
                _ => continue,
            };
            // Only the last CMD and the last ENTRYPOINT take effect.
            if !seen.insert(keyword) {
                continue;
            }
            if let CommandLine::Shell(text) = line {
                shell_forms.push((
                    command.location.clone(),
                    format!("{keyword} {text} is in shell form: /bin/sh -c becomes PID 1 and does not pass signals on"),
                ));
            }
        }

        if let Some((line, column, message)) = root_user {
            self.push("dockerfile/root-user", line, column, message);
        }
        if !has_healthcheck {
            self.push(
                "dockerfile/no-healthcheck",
                last.location.line,
                last.location.column,
                "the final stage has no HEALTHCHECK".to_owned(),
            );
        }
        for (location, message) in shell_forms {
            self.push(
                "dockerfile/shell-form-cmd",
                location.line,
                location.column,
                message,
            );
        }
    }

    /// Rules over single instructions in every stage.
    fn instructions(&mut self) {
        let dockerfile = self.dockerfile;
        let globals = dockerfile.global_args.iter();
        let commands = globals.chain(dockerfile.stages.iter().flat_map(|s| s.commands.iter()));
        for command in commands {
            let (line, column) = (command.location.line, command.location.column);
            match &command.instruction {
                Instruction::Add(add) => {
                    let needs_add = add.checksum.is_some()
                        || add.keep_git_dir
                        || add.unpack.is_some()
                        || add
                            .sources
                            .iter()
                            .any(|s| is_remote(s) || is_archive(s) || s.contains('$'));
                    if !needs_add {
                        let what = if add.sources.is_empty() {
                            "a here-document".to_owned()
                        } else {
                            add.sources.join(" ")
                        };
                        self.push(
                            "dockerfile/add-instead-of-copy",
                            line,
                            column,
                            format!("ADD of {what}: local files that are not archives, COPY does the same"),
                        );
                    }
                }
                Instruction::Run(run) => {
                    let mut scripts = Vec::new();
                    match &run.command {
                        CommandLine::Shell(text) => scripts.push(text.clone()),
                        CommandLine::Exec(argv) => scripts.push(exec_script(argv)),
                    }
                    for heredoc in &run.heredocs {
                        scripts.push(heredoc.body());
                    }
                    let commands: Vec<Vec<String>> =
                        scripts.iter().flat_map(|s| script::commands(s)).collect();
                    let flags: Vec<&str> = self
                        .node_at(line)
                        .map(|n| n.flags.iter().map(|f| f.value.as_str()).collect())
                        .unwrap_or_default();
                    self.run_rules(&commands, &flags, line, column);
                }
                Instruction::Arg(definitions) => {
                    for definition in definitions {
                        if is_secret_name(&definition.name) {
                            let (l, c) = self.word_position(line, column, &definition.name);
                            self.push(
                                "dockerfile/secret-in-arg",
                                l,
                                c,
                                format!("ARG {} looks like a secret", definition.name),
                            );
                        }
                    }
                }
                Instruction::Env(pairs) => {
                    for pair in pairs {
                        if is_secret_name(&pair.key) {
                            let (l, c) = self.word_position(line, column, &pair.key);
                            self.push(
                                "dockerfile/secret-in-env",
                                l,
                                c,
                                format!(
                                    "ENV {} looks like a secret and is stored in the image",
                                    pair.key
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Where the word defining `key` starts in the instruction at `line`.
    fn word_position(&self, line: usize, column: usize, key: &str) -> (usize, usize) {
        self.node_at(line)
            .and_then(|node| {
                node.args.iter().find_map(|arg| match arg {
                    Arg::Word(w)
                        if w.value == key
                            || w.value
                                .strip_prefix(key)
                                .is_some_and(|r| r.starts_with('=')) =>
                    {
                        Some((w.start.line, w.start.column))
                    }
                    _ => None,
                })
            })
            .unwrap_or((line, column))
    }

    fn run_rules(&mut self, commands: &[Vec<String>], flags: &[&str], line: usize, column: usize) {
        let mut installs = false;
        let mut lists_removed = flags
            .iter()
            .any(|f| f.starts_with("--mount") && f.contains("/var/lib/apt/lists"));
        for command in commands {
            let Some((name, args)) = program(command) else {
                continue;
            };
            match name.as_str() {
                "apt-get" | "apt" | "aptitude" => match apt_subcommand(args) {
                    Some("install") => {
                        installs = true;
                        let no_recommends = args.iter().any(|a| {
                            a == "--no-install-recommends"
                                || a.contains("Install-Recommends=false")
                                || a.contains("Install-Recommends=0")
                                || a.contains("Install-Recommends=\"false\"")
                        });
                        if !no_recommends {
                            self.push(
                                "dockerfile/apt-install-recommends",
                                line,
                                column,
                                format!("{name} install without --no-install-recommends"),
                            );
                        }
                    }
                    Some(sub @ ("upgrade" | "dist-upgrade" | "full-upgrade")) => {
                        self.push(
                            "dockerfile/apt-upgrade",
                            line,
                            column,
                            format!("{name} {sub} in a build"),
                        );
                    }
                    _ => {}
                },
                "rm" if args.iter().any(|a| a.starts_with("/var/lib/apt/lists")) => {
                    lists_removed = true;
                }
                "cd" => self.push(
                    "dockerfile/cd-in-run",
                    line,
                    column,
                    format!(
                        "cd {} in RUN",
                        args.first().map(String::as_str).unwrap_or("")
                    ),
                ),
                _ => {}
            }
            if let Some(packages) = pip_install_args(&name, args) {
                let unpinned = unpinned_requirements(packages);
                if !unpinned.is_empty() {
                    self.push(
                        "dockerfile/pip-unpinned",
                        line,
                        column,
                        format!("pip install of unpinned {}", unpinned.join(", ")),
                    );
                }
            }
        }
        if installs && !lists_removed {
            self.push(
                "dockerfile/apt-lists",
                line,
                column,
                "apt-get install leaves /var/lib/apt/lists in the layer".to_owned(),
            );
        }
    }

    /// `dockerfile/copy-context-no-dockerignore`, `dockerfile/dockerignore-incomplete`.
    fn context_copies(
        &mut self,
        context: &Path,
        dockerfile_path: Option<&Path>,
    ) -> Result<(), Error> {
        let whole_context: Vec<(usize, usize, String)> = self
            .dockerfile
            .stages
            .iter()
            .flat_map(|s| s.commands.iter())
            .filter_map(|c| {
                let (sources, keyword) = match &c.instruction {
                    Instruction::Copy(copy) if copy.from.is_none() => (&copy.sources, "COPY"),
                    Instruction::Add(add) => (&add.sources, "ADD"),
                    _ => return None,
                };
                let whole = sources
                    .iter()
                    .find(|s| matches!(s.as_str(), "." | "./" | "/" | "*" | "./*"))?;
                Some((
                    c.location.line,
                    c.location.column,
                    format!("{keyword} {whole}"),
                ))
            })
            .collect();
        if whole_context.is_empty() {
            return Ok(());
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(path) = dockerfile_path {
            let mut name = path.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(context.join(".dockerignore"));
        let mut found = None;
        for candidate in candidates {
            match std::fs::read_to_string(&candidate) {
                Ok(text) => {
                    found = Some((candidate, text));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(Error::Read {
                        path: candidate,
                        source,
                    });
                }
            }
        }
        match found {
            None => {
                for (line, column, what) in whole_context {
                    self.push(
                        "dockerfile/copy-context-no-dockerignore",
                        line,
                        column,
                        format!(
                            "{what} copies the whole context and {} has no .dockerignore",
                            context.display()
                        ),
                    );
                }
            }
            Some((path, text)) => {
                // A pattern kiln cannot parse matches nothing here; the build
                // reports it.
                let matcher = PatternMatcher::new(parse_dockerignore(&text)).unwrap_or_default();
                let missing: Vec<&str> = [".git", ".env"]
                    .into_iter()
                    .filter(|entry| !matcher.matches(entry))
                    .collect();
                if !missing.is_empty() {
                    let name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or(".dockerignore");
                    for (line, column, what) in whole_context {
                        self.push(
                            "dockerfile/dockerignore-incomplete",
                            line,
                            column,
                            format!(
                                "{what} copies the whole context and {name} does not exclude {}",
                                missing.join(" or ")
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// The script an exec-form RUN runs: the `-c` argument of a shell, or the words
/// themselves (quoted so they stay words).
fn exec_script(argv: &[String]) -> String {
    let shell = argv
        .first()
        .and_then(|p| p.rsplit('/').next())
        .is_some_and(|p| matches!(p, "sh" | "bash" | "dash" | "ash" | "zsh"));
    if shell && let Some(at) = argv.iter().position(|a| a == "-c") {
        return argv.get(at + 1).cloned().unwrap_or_default();
    }
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first word of an apt command that is neither an option nor an option's
/// value (`-o X=Y`, `-t bookworm-backports`).
fn apt_subcommand(args: &[String]) -> Option<&str> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if matches!(
            word.as_str(),
            "-o" | "-c" | "-t" | "--target-release" | "--option" | "--config-file"
        ) {
            words.next();
        } else if !word.starts_with('-') {
            return Some(word);
        }
    }
    None
}

fn is_remote(source: &str) -> bool {
    source.contains("://") || source.starts_with("git@")
}

/// Archives ADD unpacks (tar, optionally compressed).
fn is_archive(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    [
        ".tar",
        ".tar.gz",
        ".tgz",
        ".tar.bz2",
        ".tbz2",
        ".tbz",
        ".tar.xz",
        ".txz",
        ".tar.zst",
        ".tzst",
        ".tar.lz",
        ".tar.lzma",
    ]
    .iter()
    .any(|suffix| lower.ends_with(suffix))
}

/// The words after `install` when `name args` is a pip install
/// (`pip`, `pip3`, `pip3.12`, `python -m pip`, `uv pip`).
fn pip_install_args<'a>(name: &str, args: &'a [String]) -> Option<&'a [String]> {
    let is_pip = |n: &str| {
        n == "pip"
            || n.strip_prefix("pip")
                .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    let is_python = name.starts_with("python");
    let rest = if is_pip(name) {
        args
    } else if is_python {
        let at = args.iter().position(|a| a == "-m")?;
        let module = args.get(at + 1)?;
        if !is_pip(module) {
            return None;
        }
        &args[at + 2..]
    } else if name == "uv" && args.first().is_some_and(|a| a == "pip") {
        &args[1..]
    } else {
        return None;
    };
    let at = rest.iter().position(|a| !a.starts_with('-'))?;
    (rest[at] == "install").then(|| &rest[at + 1..])
}

/// pip options whose value is the next word.
const PIP_OPTIONS_WITH_VALUE: &[&str] = &[
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-e",
    "--editable",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--trusted-host",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--src",
    "--upgrade-strategy",
    "--progress-bar",
    "--cache-dir",
    "--log",
    "--proxy",
    "--retries",
    "--timeout",
    "--exists-action",
    "--cert",
    "--client-cert",
    "--global-option",
    "--config-settings",
    "-C",
    "--no-binary",
    "--only-binary",
    "--report",
    "--python",
    "--root-user-action",
];

/// The requirement words of a pip install that name a package without an exact
/// version. Files, directories, URLs, wheels and sdists, `-r`/`-e` values and
/// words with variables are not package names.
fn unpinned_requirements(args: &[String]) -> Vec<String> {
    let mut unpinned = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        if arg.starts_with('-') {
            skip_next = !arg.contains('=') && PIP_OPTIONS_WITH_VALUE.contains(&arg.as_str());
            continue;
        }
        let is_path = arg.starts_with('.')
            || arg.starts_with('/')
            || arg.starts_with('~')
            || arg.contains('/')
            || arg.contains('$')
            || [".whl", ".tar.gz", ".zip", ".tar.bz2"]
                .iter()
                .any(|s| arg.ends_with(s));
        let pinned = arg.contains("==") || arg.contains(" @ ") || arg.contains('@');
        if !is_path && !pinned && !arg.is_empty() {
            unpinned.push(arg.clone());
        }
    }
    unpinned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn pip_requirements() {
        let args = words(
            "install --no-cache-dir -r requirements.txt flask==3.0.0 requests 'uvicorn>=0.30' ./pkg dist/app-1.0-py3-none-any.whl -e . --index-url https://x/simple gunicorn",
        );
        let (name, rest) = ("pip", &args[..]);
        let packages = pip_install_args(name, rest).unwrap();
        assert_eq!(
            unpinned_requirements(packages),
            ["requests", "'uvicorn>=0.30'", "gunicorn"]
        );
        assert!(pip_install_args("python3", &words("-m pip install x")).is_some());
        assert!(pip_install_args("uv", &words("pip install x")).is_some());
        assert!(pip_install_args("pip", &words("download x")).is_none());
        assert!(pip_install_args("pipx", &words("install x")).is_none());
    }

    #[test]
    fn archives_and_remotes() {
        assert!(is_archive("rootfs.tar.xz"));
        assert!(!is_archive("app.py"));
        assert!(is_remote("https://example.com/a"));
        assert!(is_remote("git@github.com:o/r.git"));
    }
}
