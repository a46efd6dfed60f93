//! The Dockerfile frontend against BuildKit's own test data (parser dumps, negative
//! cases, shell expansion tables), kiln's fixture folders, and behaviour tests for
//! instructions, expansion, stages and error messages.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_builder::frontend::dockerfile::shell::Lex;
use kiln_builder::frontend::dockerfile::{
    self as df, Base, CacheSharing, Chmod, CommandLine, Dockerfile, Healthcheck, Instruction,
    Mount, NetworkMode, ResolveOptions, ResolvedBuild, ResolvedInstruction, SecurityMode,
    StageOrImage,
};

/// `/work/shared/conformance` (a sibling of the checkout), found by walking up.
fn conformance() -> Option<PathBuf> {
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let candidate = d.join("shared").join("conformance");
        if candidate.is_dir() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    eprintln!(
        "skipping: no shared/conformance directory above {}",
        env!("CARGO_MANIFEST_DIR")
    );
    None
}

fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .unwrap_or_else(|e| panic!("read {}: {e}", root.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Parses each `<case>/Dockerfile` and compares its dump with `<case>/result`.
/// Returns (passed, failures).
fn check_dump_cases(root: &Path) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failures = Vec::new();
    for dir in case_dirs(root) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read(dir.join("Dockerfile")).expect("Dockerfile");
        let text = String::from_utf8_lossy(&text);
        let result = dir.join("result");
        if !result.exists() && std::env::var_os("KILN_BLESS").is_some() {
            // Writing a new fixture: review the written dump by hand before committing.
            let ast = df::parse(&text, "Dockerfile").expect("new fixture parses");
            fs::write(&result, df::dump(&ast)).expect("write result");
        }
        let expected = fs::read_to_string(&result).expect("result");
        match df::parse(&text, "Dockerfile") {
            Ok(ast) => {
                let got = df::dump(&ast);
                if got == expected {
                    passed += 1;
                } else {
                    failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    (passed, failures)
}

#[test]
fn buildkit_parser_cases_dump_exactly() {
    let Some(root) = conformance() else { return };
    let (passed, failures) = check_dump_cases(&root.join("buildkit-dockerfile/parser/testfiles"));
    eprintln!(
        "buildkit parser cases: {passed} passed, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(passed, 33, "expected all 33 upstream cases");
}

#[test]
fn kiln_fixture_cases_dump_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dockerfile");
    let (passed, failures) = check_dump_cases(&root);
    eprintln!(
        "kiln fixture cases: {passed} passed, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 6, "fixtures missing: {passed}");
}

#[test]
fn buildkit_negative_cases_fail_with_a_location() {
    let Some(root) = conformance() else { return };
    let dirs = case_dirs(&root.join("buildkit-dockerfile/parser/testfiles-negative"));
    assert_eq!(dirs.len(), 4);
    for dir in dirs {
        let text = fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        let err =
            df::load(&text, "Dockerfile").expect_err(&format!("{} should fail", dir.display()));
        assert!(err.location.line >= 1, "{}: unlocated {err}", dir.display());
        assert!(
            err.to_string()
                .starts_with(&format!("Dockerfile:{}:", err.location.line)),
            "{err}"
        );
    }
}

#[test]
fn buildkit_env_var_table() {
    let Some(root) = conformance() else { return };
    let text = fs::read_to_string(root.join("buildkit-dockerfile/shell/envVarTest")).unwrap();
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lex = Lex::new('\\');
    let (mut passed, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "line {}: {line}", n + 1);
        let (platform, source, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform == "W" {
            skipped += 1;
            continue;
        }
        assert!(
            platform == "A" || platform == "U",
            "bad tag on line {}",
            n + 1
        );
        let got = lex.process_word(source, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(w), e) => e != "error" && w == e,
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!(
                "line {}: {source:?} → {got:?}, want {expected:?}",
                n + 1
            ));
        }
    }
    eprintln!(
        "envVarTest: {passed} passed, {skipped} Windows-only skipped, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed > 200);
}

#[test]
fn buildkit_words_table() {
    let Some(root) = conformance() else { return };
    let text = fs::read_to_string(root.join("buildkit-dockerfile/shell/wordsTest")).unwrap();
    let lex = Lex::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut passed = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.trim_start_matches(' ').split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}: {line}", n + 1);
        let source = parts[0].trim();
        let expected: Vec<String> = parts[1]
            .trim_start_matches(' ')
            .split(',')
            .map(str::to_string)
            .collect();
        let got = lex
            .process_words(source, &env)
            .unwrap_or_else(|_| vec!["error".to_string()]);
        if got == expected {
            passed += 1;
        } else {
            failures.push(format!(
                "line {}: {source:?} → {got:?}, want {expected:?}",
                n + 1
            ));
        }
    }
    eprintln!("wordsTest: {passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 20);
}

// ---------------------------------------------------------------------------
// Helpers

fn load(text: &str) -> Dockerfile {
    df::load(text, "Dockerfile").unwrap_or_else(|e| panic!("{e}"))
}

fn resolve_with(text: &str, options: &ResolveOptions) -> ResolvedBuild {
    load(text)
        .resolve(options)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn resolve(text: &str) -> ResolvedBuild {
    resolve_with(text, &ResolveOptions::default())
}

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The error message of loading and resolving `text`.
fn error(text: &str) -> String {
    error_with(text, &ResolveOptions::default())
}

fn error_with(text: &str, options: &ResolveOptions) -> String {
    match df::load(text, "Dockerfile").and_then(|d| d.resolve(options)) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn instruction(text: &str) -> Instruction {
    let dockerfile = load(text);
    let stage = dockerfile.stages.last().unwrap();
    stage.commands.last().unwrap().instruction.clone()
}

fn last_step(text: &str) -> ResolvedInstruction {
    resolve(text)
        .target()
        .steps
        .last()
        .unwrap()
        .instruction
        .clone()
}

// ---------------------------------------------------------------------------
// Instructions and their flags

#[test]
fn run_mounts_of_every_type() {
    let text = r#"FROM alpine AS deps
FROM alpine
ARG CACHE_ID=pip
RUN --mount=type=bind,from=deps,source=/wheels,target=/w,rw \
    --mount=type=cache,id=${CACHE_ID},target=/root/.cache,sharing=locked,mode=0700,uid=1000,gid=1001,from=deps,source=/seed,ro \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=type=secret,id=aws,target=/root/.aws/credentials,required=true,mode=0440,uid=1,gid=2 \
    --mount=type=ssh,id=github,required \
    --mount=type=ssh \
    --mount=type=bind,from=python:3.12,target=/py \
    --network=none --security=insecure \
    pip install -r /w/requirements.txt
"#;
    let ResolvedInstruction::Run(run) = last_step(text) else {
        panic!("RUN expected")
    };
    assert_eq!(run.network, NetworkMode::None);
    assert_eq!(run.security, SecurityMode::Insecure);
    assert_eq!(
        run.command,
        CommandLine::Shell("pip install -r /w/requirements.txt".into())
    );
    let [bind, cache, tmpfs, secret, ssh1, ssh2, image] = run.mounts.as_slice() else {
        panic!("7 mounts expected: {:?}", run.mounts)
    };
    let Mount::Bind(bind) = bind else { panic!() };
    assert_eq!(bind.from, Some(StageOrImage::Stage(0)));
    assert_eq!(
        (bind.source.as_str(), bind.target.as_str(), bind.read_write),
        ("/wheels", "/w", true)
    );
    let Mount::Cache(cache) = cache else { panic!() };
    assert_eq!(cache.id, "pip");
    assert_eq!(cache.target, "/root/.cache");
    assert_eq!(cache.sharing, CacheSharing::Locked);
    assert_eq!((cache.mode, cache.uid, cache.gid), (0o700, 1000, 1001));
    assert_eq!(cache.from, Some(StageOrImage::Stage(0)));
    assert_eq!(cache.source, "/seed");
    assert!(cache.read_only);
    let Mount::Tmpfs(tmpfs) = tmpfs else { panic!() };
    assert_eq!(
        (tmpfs.target.as_str(), tmpfs.size),
        ("/tmp", Some(64 << 20))
    );
    let Mount::Secret(secret) = secret else {
        panic!()
    };
    assert_eq!(secret.id, "aws");
    assert_eq!(secret.target.as_deref(), Some("/root/.aws/credentials"));
    assert!(secret.required);
    assert_eq!((secret.mode, secret.uid, secret.gid), (0o440, 1, 2));
    let (Mount::Ssh(ssh1), Mount::Ssh(ssh2)) = (ssh1, ssh2) else {
        panic!()
    };
    assert_eq!((ssh1.id.as_str(), ssh1.required), ("github", true));
    assert_eq!(ssh1.target, "/run/buildkit/ssh_agent.0");
    assert_eq!(
        (ssh2.id.as_str(), ssh2.target.as_str()),
        ("default", "/run/buildkit/ssh_agent.1")
    );
    assert_eq!((ssh2.mode, ssh2.required), (0o600, false));
    let Mount::Bind(image) = image else { panic!() };
    assert_eq!(image.from, Some(StageOrImage::Image("python:3.12".into())));
    assert!(!image.read_write);
    // The stage used by the mounts is a dependency.
    assert_eq!(resolve(text).target().dependencies, vec![0]);
}

#[test]
fn run_forms_and_defaults() {
    let ResolvedInstruction::Run(run) = last_step("FROM a\nRUN [\"echo\", \"$HOME\"]\n") else {
        panic!()
    };
    assert_eq!(
        run.command,
        CommandLine::Exec(vec!["echo".into(), "$HOME".into()])
    );
    assert_eq!(
        (run.network, run.security),
        (NetworkMode::Default, SecurityMode::Sandbox)
    );
    assert!(run.mounts.is_empty());
    // RUN is not expanded by the frontend; the shell does it.
    let ResolvedInstruction::Run(run) = last_step("FROM a\nENV X=1\nRUN echo $X ${X}\n") else {
        panic!()
    };
    assert_eq!(run.command, CommandLine::Shell("echo $X ${X}".into()));
}

#[test]
fn copy_flags() {
    let text = "FROM a AS build\nFROM b\nCOPY --from=build --chown=app:app --chmod=u+x,g-w,a+rX --link \\\n  --exclude=*.md --exclude=tmp/ --parents src/ docs/ /app/\n";
    let Instruction::Copy(copy) = instruction(text) else {
        panic!()
    };
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.chown.as_deref(), Some("app:app"));
    assert_eq!(copy.chmod.as_deref(), Some("u+x,g-w,a+rX"));
    assert!(copy.link && copy.parents);
    assert_eq!(copy.exclude, vec!["*.md", "tmp/"]);
    assert_eq!(copy.sources, vec!["src/", "docs/"]);
    assert_eq!(copy.dest, "/app/");
    let ResolvedInstruction::Copy(step) = last_step(text) else {
        panic!()
    };
    assert_eq!(step.from, Some(StageOrImage::Stage(0)));
    let Some(Chmod::Symbolic(clauses)) = &step.chmod else {
        panic!("symbolic chmod expected")
    };
    assert_eq!(clauses.len(), 3);
    let ResolvedInstruction::Copy(step) =
        last_step("FROM a\nARG M=0640\nCOPY --chmod=$M --from=nginx:1.27 --link=false x y\n")
    else {
        panic!()
    };
    assert_eq!(step.chmod, Some(Chmod::Octal(0o640)));
    assert_eq!(step.from, Some(StageOrImage::Image("nginx:1.27".into())));
    assert!(!step.link);
    // --from by index and JSON form with spaces.
    let ResolvedInstruction::Copy(step) =
        last_step("FROM a\nFROM b\nCOPY --from=0 [\"my file\", \"/dst dir/\"]\n")
    else {
        panic!()
    };
    assert_eq!(step.from, Some(StageOrImage::Stage(0)));
    assert_eq!(
        (step.sources, step.dest.as_str()),
        (vec!["my file".to_string()], "/dst dir/")
    );
}

#[test]
fn add_flags() {
    let sum = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let text = format!(
        "FROM a\nADD --keep-git-dir=true --checksum={sum} --chown=1:2 --chmod=0755 --link --unpack=false --exclude=.git \\\n  https://example.com/x.tar.gz /opt/\n"
    );
    let ResolvedInstruction::Add(add) = last_step(&text) else {
        panic!()
    };
    assert!(add.keep_git_dir && add.link);
    assert_eq!(add.checksum.as_deref(), Some(sum.as_str()));
    assert_eq!(add.chown.as_deref(), Some("1:2"));
    assert_eq!(add.chmod, Some(Chmod::Octal(0o755)));
    assert_eq!(add.unpack, Some(false));
    assert_eq!(add.exclude, vec![".git"]);
    assert_eq!(add.sources, vec!["https://example.com/x.tar.gz"]);
    assert_eq!(add.dest, "/opt/");
    // ADD has no --from, COPY has no --checksum.
    assert!(error("FROM a\nADD --from=b x y\n").contains("unknown flag --from for ADD"));
    assert!(error("FROM a\nCOPY --checksum=x y z\n").contains("unknown flag --checksum for COPY"));
}

#[test]
fn healthcheck_forms() {
    let Instruction::Healthcheck(Healthcheck::Check(check)) = instruction(
        "FROM a\nHEALTHCHECK --interval=5s --timeout=3s --start-period=1m --start-interval=500ms --retries=3 \\\n  CMD curl -f http://localhost/\n",
    ) else {
        panic!()
    };
    use std::time::Duration;
    assert_eq!(check.interval, Some(Duration::from_secs(5)));
    assert_eq!(check.timeout, Some(Duration::from_secs(3)));
    assert_eq!(check.start_period, Some(Duration::from_secs(60)));
    assert_eq!(check.start_interval, Some(Duration::from_millis(500)));
    assert_eq!(check.retries, Some(3));
    assert_eq!(
        check.command,
        CommandLine::Shell("curl -f http://localhost/".into())
    );
    let Instruction::Healthcheck(Healthcheck::Check(check)) =
        instruction("FROM a\nHEALTHCHECK --timeout=0s CMD [\"/bin/check\", \"-q\"]\n")
    else {
        panic!()
    };
    assert_eq!(
        check.command,
        CommandLine::Exec(vec!["/bin/check".into(), "-q".into()])
    );
    assert_eq!(check.timeout, None, "zero means inherit");
    assert_eq!(
        instruction("FROM a\nhealthcheck none\n"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    assert!(error("FROM a\nHEALTHCHECK NONE x\n").contains("HEALTHCHECK NONE takes no arguments"));
    assert!(error("FROM a\nHEALTHCHECK CMD\n").contains("Missing command after HEALTHCHECK CMD"));
    assert!(error("FROM a\nHEALTHCHECK CONNECT TCP 7000\n").contains("Unknown type \"CONNECT\""));
    assert!(
        error("FROM a\nHEALTHCHECK --retries=-1 CMD x\n")
            .contains("--retries cannot be negative (-1)")
    );
    assert!(
        error("FROM a\nHEALTHCHECK --interval=5 CMD x\n")
            .contains("invalid value \"5\" for --interval")
    );
}

#[test]
fn from_platform_and_names() {
    let text = "ARG BASE=golang:1.23\nFROM --platform=$BUILDPLATFORM ${BASE} AS Build\nFROM --platform=linux/arm64 build\nFROM scratch\n";
    let dockerfile = load(text);
    assert_eq!(dockerfile.stages[0].name.as_deref(), Some("build"));
    assert_eq!(dockerfile.stages[0].base, None, "uses a variable");
    assert_eq!(dockerfile.stages[1].base, Some(Base::Stage(0)));
    assert_eq!(dockerfile.stages[2].base, Some(Base::Scratch));
    let options = ResolveOptions {
        target: Some("BUILD".into()),
        build_platform: df::Platform::parse("linux/amd64").unwrap(),
        target_platform: df::Platform::parse("linux/arm/v7").unwrap(),
        ..ResolveOptions::default()
    };
    let build = dockerfile.resolve(&options).unwrap();
    let stage = build.target();
    assert_eq!(stage.base, Base::Image("golang:1.23".into()));
    assert_eq!(stage.platform.to_string(), "linux/amd64");
    let all = dockerfile
        .resolve(&ResolveOptions {
            target: Some("1".into()),
            ..options.clone()
        })
        .unwrap_err();
    assert!(
        all.to_string()
            .contains("target stage \"1\" could not be found")
    );
    let build = dockerfile
        .resolve(&ResolveOptions {
            target: None,
            ..options
        })
        .unwrap();
    assert_eq!(build.target().platform.to_string(), "linux/arm/v7");
    assert_eq!(build.stages.len(), 1, "scratch stage needs nothing else");
}

#[test]
fn onbuild_trigger_is_parsed() {
    let Instruction::Onbuild(onbuild) = instruction("FROM a\nONBUILD  COPY --chown=1 . /app\n")
    else {
        panic!()
    };
    assert_eq!(onbuild.expression, "COPY --chown=1 . /app");
    let Instruction::Copy(copy) = *onbuild.trigger else {
        panic!()
    };
    assert_eq!(copy.chown.as_deref(), Some("1"));
    let Instruction::Onbuild(onbuild) = instruction("FROM a\nonbuild run <<EOF\necho hi\nEOF\n")
    else {
        panic!()
    };
    assert_eq!(onbuild.expression, "run <<EOF\necho hi\nEOF");
    let Instruction::Run(run) = *onbuild.trigger else {
        panic!()
    };
    assert_eq!(run.heredocs[0].content, "echo hi\n");
    // Trigger errors are reported too, and the trigger is not expanded.
    assert!(error("FROM a\nONBUILD COPY --nope x y\n").contains("unknown flag --nope for COPY"));
    assert_eq!(
        last_step("FROM a\nENV X=1\nONBUILD RUN echo $X\n"),
        ResolvedInstruction::Onbuild("RUN echo $X".into())
    );
}

#[test]
fn other_instructions() {
    let text = r#"FROM a
MAINTAINER someone <me@example.com>
ENV A=1 B="two words" C=three\ words
ENV LEGACY value with  spaces
LABEL "com.example.vendor"="ACME Inc" version=1.0
ARG X Y=y Z="z z"
EXPOSE 80 443/tcp 53/udp
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp
USER app:app
WORKDIR /srv/$A
STOPSIGNAL SIGQUIT
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
CMD ["run", "--port", "80"]
ENTRYPOINT /entry.sh
"#;
    let dockerfile = load(text);
    assert!(
        dockerfile
            .warnings
            .iter()
            .any(|(l, m)| l.line == 2 && m.contains("MAINTAINER is deprecated"))
    );
    let steps: Vec<ResolvedInstruction> = resolve(text)
        .target()
        .steps
        .iter()
        .map(|s| s.instruction.clone())
        .collect();
    let expected = vec![
        ResolvedInstruction::Maintainer("someone <me@example.com>".into()),
        ResolvedInstruction::Env(pairs(&[
            ("A", "1"),
            ("B", "two words"),
            ("C", "three words"),
        ])),
        ResolvedInstruction::Env(pairs(&[("LEGACY", "value with  spaces")])),
        ResolvedInstruction::Label(pairs(&[
            ("com.example.vendor", "ACME Inc"),
            ("version", "1.0"),
        ])),
        ResolvedInstruction::Arg(vec![
            ("X".into(), None),
            ("Y".into(), Some("y".into())),
            ("Z".into(), Some("z z".into())),
        ]),
        ResolvedInstruction::Expose(vec!["443/tcp".into(), "53/udp".into(), "80/tcp".into()]),
        ResolvedInstruction::Volume(vec!["/data".into(), "/logs".into()]),
        ResolvedInstruction::Volume(vec!["/cache".into(), "/tmp".into()]),
        ResolvedInstruction::User("app:app".into()),
        ResolvedInstruction::Workdir("/srv/1".into()),
        ResolvedInstruction::StopSignal("SIGQUIT".into()),
        ResolvedInstruction::Shell(vec![
            "/bin/bash".into(),
            "-o".into(),
            "pipefail".into(),
            "-c".into(),
        ]),
        ResolvedInstruction::Cmd(CommandLine::Exec(vec![
            "run".into(),
            "--port".into(),
            "80".into(),
        ])),
        ResolvedInstruction::Entrypoint(CommandLine::Shell("/entry.sh".into())),
    ];
    assert_eq!(steps, expected);
}

#[test]
fn instructions_are_case_insensitive_and_keep_their_source() {
    let build = resolve("from alpine as Base\n  run  echo hi \\\n   there\nCoPy a b\n");
    let target = build.target();
    assert_eq!(target.name.as_deref(), Some("base"));
    assert_eq!(target.steps[0].source, "run  echo hi    there");
    assert_eq!(target.steps[0].location.line, 2);
    assert_eq!(target.steps[0].location.column, 3);
    assert_eq!(target.steps[1].location.line, 4);
}

#[test]
fn copy_heredoc_bodies_expand_unless_quoted() {
    let text = "FROM a\nARG NAME=world\nCOPY <<EOF <<'RAW' /dst/\nhello \"$NAME\"\nEOF\nraw $NAME\nRAW\nCOPY <<-EOT /x\n\t\tindented ${NAME}\n\tEOT\n";
    let build = resolve(text);
    let steps = &build.target().steps;
    let ResolvedInstruction::Copy(first) = &steps[1].instruction else {
        panic!()
    };
    assert_eq!(first.heredocs[0].name, "EOF");
    assert_eq!(
        first.heredocs[0].content, "hello \"world\"\n",
        "quotes kept, $ expanded"
    );
    assert_eq!(first.heredocs[1].content, "raw $NAME\n");
    assert!(first.sources.is_empty());
    let ResolvedInstruction::Copy(second) = &steps[2].instruction else {
        panic!()
    };
    assert_eq!(second.heredocs[0].content, "indented world\n");
}

// ---------------------------------------------------------------------------
// ARG and ENV scoping

#[test]
fn global_args_reach_from_lines_only_unless_redeclared() {
    let text = "ARG VERSION=3.19\nARG UNUSED_GLOBAL\nFROM alpine:$VERSION\nRUN echo\nWORKDIR /v${VERSION}\nARG VERSION\nWORKDIR /v${VERSION}\n";
    let build = resolve(text);
    let target = build.target();
    assert_eq!(target.base, Base::Image("alpine:3.19".into()));
    assert_eq!(
        target.steps[1].instruction,
        ResolvedInstruction::Workdir("/v".into())
    );
    assert_eq!(
        target.steps[2].instruction,
        ResolvedInstruction::Arg(vec![("VERSION".into(), Some("3.19".into()))])
    );
    assert_eq!(
        target.steps[3].instruction,
        ResolvedInstruction::Workdir("/v3.19".into())
    );
    assert!(target.steps[0].args.is_empty());
    assert_eq!(target.steps[3].args, pairs(&[("VERSION", "3.19")]));
    assert!(
        build
            .global_args
            .contains(&("VERSION".into(), "3.19".into()))
    );
}

#[test]
fn build_args_override_defaults_of_declared_args_only() {
    let text = "ARG TAG=latest\nFROM img:$TAG\nARG MODE=debug\nARG OTHER\nENV RESULT=$MODE-$OTHER-$NOT_DECLARED\n";
    let options = ResolveOptions {
        build_args: args(&[
            ("TAG", "1.0"),
            ("MODE", "release"),
            ("NOT_DECLARED", "x"),
            ("HTTP_PROXY", "http://proxy:3128"),
            ("no_proxy", "localhost"),
        ]),
        ..ResolveOptions::default()
    };
    let build = resolve_with(text, &options);
    let target = build.target();
    assert_eq!(target.base, Base::Image("img:1.0".into()));
    assert_eq!(
        target.steps[2].instruction,
        ResolvedInstruction::Env(pairs(&[("RESULT", "release--")]))
    );
    assert_eq!(build.unused_build_args, vec!["NOT_DECLARED".to_string()]);
    assert_eq!(
        build.proxy_args,
        args(&[
            ("HTTP_PROXY", "http://proxy:3128"),
            ("no_proxy", "localhost")
        ])
    );
    // Proxy args are not expanded into instructions without a declaration.
    assert!(!target.steps[2].env.iter().any(|(k, _)| k == "HTTP_PROXY"));
}

#[test]
fn env_shadows_arg_and_takes_effect_on_the_next_line() {
    let text = "FROM a\nARG V=arg\nENV V=env W=$V\nWORKDIR /$V/$W\nARG LATER=x\nENV E1=$LATER\n";
    let options = ResolveOptions {
        build_args: args(&[("V", "from-cli")]),
        ..ResolveOptions::default()
    };
    let build = resolve_with(text, &options);
    let steps = &build.target().steps;
    // ENV values are expanded before any of them is set: W sees the ARG value.
    assert_eq!(
        steps[1].instruction,
        ResolvedInstruction::Env(pairs(&[("V", "env"), ("W", "from-cli")]))
    );
    assert_eq!(
        steps[2].instruction,
        ResolvedInstruction::Workdir("/env/from-cli".into())
    );
    assert_eq!(
        steps[4].instruction,
        ResolvedInstruction::Env(pairs(&[("E1", "x")]))
    );
    // The ARG stays visible (cache key) even when ENV shadows it.
    assert_eq!(steps[2].args, pairs(&[("V", "from-cli")]));
    assert_eq!(
        steps[5 - 1].args,
        pairs(&[("LATER", "x"), ("V", "from-cli")])
    );
    // The image env holds ENV only; RUN's env has ARGs too.
    let env = &build.target().env;
    assert!(env.contains(&("V".into(), "env".into())));
    assert!(!env.iter().any(|(k, _)| k == "LATER"));
    assert!(steps[4].env.contains(&("LATER".into(), "x".into())));
    assert!(
        env.iter()
            .any(|(k, v)| k == "PATH" && v == df::DEFAULT_PATH)
    );
}

#[test]
fn arg_default_uses_earlier_values_and_platform_args() {
    let text = "FROM a\nARG TARGETARCH\nARG BUILDOS\nARG DIR=/opt/${TARGETARCH}\nWORKDIR $DIR/$BUILDOS/$TARGETOS\n";
    let options = ResolveOptions {
        build_platform: df::Platform::parse("linux/amd64").unwrap(),
        target_platform: df::Platform::parse("linux/arm64").unwrap(),
        ..ResolveOptions::default()
    };
    let build = resolve_with(text, &options);
    assert_eq!(
        build.target().steps[3].instruction,
        ResolvedInstruction::Workdir("/opt/arm64/linux/".into()),
        "TARGETOS was not re-declared in the stage"
    );
}

#[test]
fn stage_based_on_stage_inherits_env_not_args() {
    let text =
        "FROM a AS base\nARG SECRET=s\nENV GOPATH=/go\nFROM base\nWORKDIR $GOPATH/src/$SECRET\n";
    let build = resolve(text);
    assert_eq!(build.stages.len(), 2);
    assert_eq!(
        build.target().steps[0].instruction,
        ResolvedInstruction::Workdir("/go/src/".into())
    );
}

#[test]
fn base_image_env_is_used_when_given() {
    let dockerfile = load("FROM golang:1.23\nWORKDIR $GOPATH/app\nENV PATH=/x:$PATH\n");
    let build = dockerfile
        .resolve_with_base_env(&ResolveOptions::default(), &|reference| {
            assert_eq!(reference, "golang:1.23");
            pairs(&[("PATH", "/usr/local/go/bin:/usr/bin"), ("GOPATH", "/go")])
        })
        .unwrap();
    let target = build.target();
    assert_eq!(
        target.steps[0].instruction,
        ResolvedInstruction::Workdir("/go/app".into())
    );
    assert_eq!(
        target.env,
        pairs(&[("PATH", "/x:/usr/local/go/bin:/usr/bin"), ("GOPATH", "/go")])
    );
}

// ---------------------------------------------------------------------------
// Stages and --target

const MULTI_STAGE: &str = r#"FROM golang:1.23 AS deps
RUN go mod download

FROM deps AS build
RUN --mount=type=cache,target=/root/.cache go build -o /app

FROM alpine AS assets
RUN make assets

FROM build AS test
RUN go test ./...

FROM debian:bookworm-slim AS release
COPY --from=build /app /app
COPY --from=assets /assets /assets
COPY --from=busybox:stable /bin/busybox /bin/

FROM release AS unrelated-tail
RUN echo never needed by release
"#;

#[test]
fn target_prunes_unneeded_stages() {
    let names = |build: &ResolvedBuild| -> Vec<String> {
        build
            .stages
            .iter()
            .map(|s| s.name.clone().unwrap())
            .collect()
    };
    let release = resolve_with(
        MULTI_STAGE,
        &ResolveOptions {
            target: Some("release".into()),
            ..ResolveOptions::default()
        },
    );
    assert_eq!(names(&release), vec!["deps", "build", "assets", "release"]);
    assert_eq!(release.target().dependencies, vec![1, 2]);
    let ResolvedInstruction::Copy(copy) = &release.target().steps[2].instruction else {
        panic!()
    };
    assert_eq!(
        copy.from,
        Some(StageOrImage::Image("busybox:stable".into()))
    );
    let test = resolve_with(
        MULTI_STAGE,
        &ResolveOptions {
            target: Some("test".into()),
            ..ResolveOptions::default()
        },
    );
    assert_eq!(names(&test), vec!["deps", "build", "test"]);
    assert_eq!(test.target().base, Base::Stage(1));
    assert_eq!(
        resolve(MULTI_STAGE).stages.len(),
        5,
        "default target is the last stage"
    );
    let assets = resolve_with(
        MULTI_STAGE,
        &ResolveOptions {
            target: Some("assets".into()),
            ..ResolveOptions::default()
        },
    );
    assert_eq!(names(&assets), vec!["assets"]);
    let dockerfile = load(MULTI_STAGE);
    assert_eq!(dockerfile.stages[4].uses, vec![1, 2]);
}

#[test]
fn unneeded_stages_are_not_expanded() {
    // The broken stage is never resolved when the target does not need it.
    let text = "FROM a AS broken\nWORKDIR ${X:?unset}\nFROM b AS fine\nRUN true\n";
    let build = resolve_with(
        text,
        &ResolveOptions {
            target: Some("fine".into()),
            ..ResolveOptions::default()
        },
    );
    assert_eq!(build.stages.len(), 1);
    assert!(
        error(&text.replace(
            "FROM b AS fine\nRUN true\n",
            "FROM b AS fine\nCOPY --from=broken / /\n"
        ))
        .contains("X: unset")
    );
}

#[test]
fn from_names_a_stage_only_if_defined_earlier() {
    // A later stage's name in FROM is an image, as in BuildKit.
    let build = resolve("FROM later AS first\nFROM alpine AS later\nCOPY --from=first / /\n");
    assert_eq!(build.stages[0].base, Base::Image("later".into()));
    assert_eq!(build.target().dependencies, vec![0]);
}

// ---------------------------------------------------------------------------
// Error messages (file:line:col: message)

#[test]
fn error_messages() {
    insta::assert_snapshot!(error("FROM alpine\nCOPY --chwon=1000 a /b\n"), @"Dockerfile:2:6: unknown flag --chwon for COPY (did you mean --chown?)");
    insta::assert_snapshot!(error("FROM alpine\nRUNN echo\n"), @"Dockerfile:2:1: unknown instruction: RUNN (did you mean RUN?)");
    insta::assert_snapshot!(error("RUN echo\nFROM alpine\n"), @"Dockerfile:1:1: RUN is not allowed before the first FROM");
    insta::assert_snapshot!(error("FROM a\nCOPY --from=x --from=y a b\n"), @"Dockerfile:2:15: duplicate flag specified: --from");
    insta::assert_snapshot!(error("FROM a\nCOPY --chown a b\n"), @"Dockerfile:2:6: missing a value on flag: --chown");
    insta::assert_snapshot!(error("FROM a\nCOPY --link=maybe a b\n"), @"Dockerfile:2:6: expecting boolean value for flag --link, not: maybe");
    insta::assert_snapshot!(error("FROM a\nRUN --network=bridge true\n"), @r#"Dockerfile:2:5: invalid value "bridge" for --network of RUN: expected default, none or host"#);
    insta::assert_snapshot!(error("FROM a\nRUN --mount=type=cache,target=/c,sharing=sometimes true\n"), @"Dockerfile:2:5: invalid --mount=type=cache,target=/c,sharing=sometimes: unrecognized sharing mode sometimes");
    insta::assert_snapshot!(error("FROM a\nRUN <<EOF\necho hi\n"), @"Dockerfile:2:1: unterminated heredoc EOF");
    insta::assert_snapshot!(error("FROM a\nCMD [\"echo\", 1]\n"), @"Dockerfile:2:14: CMD: when using JSON array syntax, arrays must be comprised of strings only");
    insta::assert_snapshot!(error("FROM a\nENV PATH\n"), @"Dockerfile:2:5: ENV must have two arguments");
    insta::assert_snapshot!(error("FROM a\nLABEL a=b c\n"), @r#"Dockerfile:2:11: Syntax error - can't find = in "c". Must be of the form: name=value"#);
    insta::assert_snapshot!(error("FROM a\nSHELL /bin/bash -c\n"), @"Dockerfile:2:1: SHELL requires the arguments to be in JSON form");
    insta::assert_snapshot!(error("FROM a\nONBUILD ONBUILD RUN x\n"), @"Dockerfile:2:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    insta::assert_snapshot!(error("FROM a\nONBUILD FROM b\n"), @"Dockerfile:2:1: FROM isn't allowed as an ONBUILD trigger");
    insta::assert_snapshot!(error("FROM a\nonbuild maintainer me\n"), @"Dockerfile:2:1: MAINTAINER isn't allowed as an ONBUILD trigger");
    insta::assert_snapshot!(error("FROM a AS 1st\n"), @r#"Dockerfile:1:11: invalid name for build stage: "1st", name can't start with a number or contain symbols"#);
    insta::assert_snapshot!(error("FROM a AS x\nFROM b AS X\n"), @r#"Dockerfile:2:1: duplicate stage name "x" (first defined on line 1)"#);
    insta::assert_snapshot!(error("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\n"), @r#"Dockerfile:2:1: stage "two" is used before it is defined (on line 3)"#);
    insta::assert_snapshot!(error("FROM a AS self\nCOPY --from=self /x /x\n"), @"Dockerfile:2:1: circular dependency detected on stage: self");
    insta::assert_snapshot!(error("FROM a\nRUN --mount=from=0,target=/x true\n"), @"Dockerfile:2:1: circular dependency detected on stage: 0");
    insta::assert_snapshot!(error("FROM a\nFROM b\nCOPY --from=5 x y\n"), @"Dockerfile:3:1: invalid stage index 5: the Dockerfile has 2 stages");
    insta::assert_snapshot!(error("FROM a\nARG X\nWORKDIR ${X:?X must be set}\n"), @r#"Dockerfile:3:1: failed to process "${X:?X must be set}": X: X must be set"#);
    insta::assert_snapshot!(error("FROM a\nUSER ${NAME\n"), @r#"Dockerfile:2:1: failed to process "${NAME": syntax error: missing '}'"#);
    insta::assert_snapshot!(error("ARG BASE\nFROM ${BASE}\n"), @"Dockerfile:2:1: base name (${BASE}) should not be blank");
    insta::assert_snapshot!(error("FROM a\nCOPY --chmod=999 a b\n"), @"Dockerfile:2:6: invalid chmod parameter: '999'. it should be octal string and between 0 and 07777, or symbolic");
    insta::assert_snapshot!(error("FROM a\nHEALTHCHECK --interval=10us CMD true\n"), @"Dockerfile:2:13: Interval --interval cannot be less than 1ms");
    insta::assert_snapshot!(error("FROM a\nCOPY onlyone\n"), @"Dockerfile:2:1: COPY requires at least two arguments, but only one was provided. Destination could not be determined");
    insta::assert_snapshot!(error("FROM a\nCOPY a <<EOF\nx\nEOF\n"), @"Dockerfile:2:8: COPY cannot accept a heredoc as a destination");
    insta::assert_snapshot!(error("# just a comment\n"), @"Dockerfile:1:1: file with no instructions");
    insta::assert_snapshot!(error("ARG ONLY=1\n"), @"Dockerfile:1:1: the Dockerfile has no FROM instruction, so there is no build stage");
    insta::assert_snapshot!(error("FROM a\nCOPY --from=$X a b\n"), @"Dockerfile:2:6: '--from' doesn't support variable expansion, define alias stage instead");
    insta::assert_snapshot!(error("FROM a\nEXPOSE http\n"), @r#"Dockerfile:2:1: invalid port "http": expected PORT[-PORT][/tcp|udp|sctp]"#);
    insta::assert_snapshot!(error("FROM a\nSTOPSIGNAL SIGNOPE\n"), @r#"Dockerfile:2:1: invalid signal "SIGNOPE""#);
    insta::assert_snapshot!(error("FROM --platform=linux//amd64 a\n"), @r#"Dockerfile:1:1: invalid platform "linux//amd64": expected os/arch[/variant]"#);
    insta::assert_snapshot!(error("FROM a\nWORKDIR\n"), @"Dockerfile:2:1: WORKDIR requires exactly one argument");
    insta::assert_snapshot!(error("FROM a\nCMD --json [\"x\"]\n"), @"Dockerfile:2:5: unknown flag --json for CMD");
    insta::assert_snapshot!(error("# escape=x\nFROM a\n"), @"Dockerfile:1:1: invalid escape token 'x' does not match ` or \\");
    let missing = ResolveOptions {
        target: Some("tset".into()),
        ..ResolveOptions::default()
    };
    insta::assert_snapshot!(error_with("FROM a AS build\nFROM b AS test\n", &missing), @r#"Dockerfile: target stage "tset" could not be found (did you mean test?)"#);
}

#[test]
fn error_hints() {
    let hint = |text: &str| df::load(text, "Dockerfile").unwrap_err().hint();
    insta::assert_snapshot!(hint("FROM a\nCOPY --chwon=1 a b\n").unwrap(), @"COPY accepts: --chmod, --chown, --exclude, --from, --link, --parents");
    insta::assert_snapshot!(hint("FROM a\nENV --x=1 A=b\n").unwrap(), @"ENV takes no flags");
    insta::assert_snapshot!(hint("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\n").unwrap(), @r#"move the stage "two" above this instruction, or refer to an image instead"#);
    let missing = ResolveOptions {
        target: Some("nope".into()),
        ..ResolveOptions::default()
    };
    let err = load("FROM a AS build\nFROM b AS test\n")
        .resolve(&missing)
        .unwrap_err();
    insta::assert_snapshot!(err.hint().unwrap(), @"available stages: build, test");
    assert_eq!(hint("FROM a\nENV PATH\n"), None);
}
