//! `kiln lint` as a user runs it: the real binary over the builder's lint
//! fixtures — output formats, exit codes, default files, ignore options.

mod support;
use support::stderr;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../builder/tests/fixtures/lint")
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn findings_print_as_file_line_col_severity_rule_message_and_hint() {
    let out = kiln(&fixtures(), &["lint", "apt/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "apt/Dockerfile:2:1: info dockerfile/apt-install-recommends apt-get install without --no-install-recommends"
    );
    assert!(
        lines[1].starts_with("  hint: add --no-install-recommends"),
        "{text}"
    );
    assert_eq!(lines.len(), 8, "{text}");
    assert!(
        stderr(&out).contains("2 finding(s) at or above --fail-on warning"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fail_on_sets_the_exit_code() {
    // Only info findings: below the default threshold.
    let out = kiln(&fixtures(), &["lint", "no-healthcheck/Dockerfile"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("dockerfile/no-healthcheck"));
    let out = kiln(
        &fixtures(),
        &["lint", "--fail-on", "info", "no-healthcheck/Dockerfile"],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = kiln(
        &fixtures(),
        &["lint", "--fail-on", "none", "secrets/Dockerfile"],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = kiln(
        &fixtures(),
        &["lint", "--fail-on", "error", "pip/Dockerfile"],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = kiln(
        &fixtures(),
        &["lint", "--fail-on", "error", "secrets/Dockerfile"],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn clean_files_pass_quietly() {
    let out = kiln(
        &fixtures(),
        &[
            "lint",
            "--fail-on",
            "info",
            "clean/Dockerfile",
            "compose/fixed/compose.yaml",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("2 file(s) checked: no findings"));
}

#[test]
fn default_files_are_the_dockerfile_and_compose_file_here() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("cd-in-run/Dockerfile"),
        dir.path().join("Dockerfile"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("compose/agent/agent-compose.yaml"),
        dir.path().join("compose.yaml"),
    )
    .unwrap();
    let out = kiln(dir.path(), &["lint", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files: std::collections::BTreeSet<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        ["Dockerfile", "compose.yaml"]
    );

    let empty = tempfile::tempdir().unwrap();
    let out = kiln(empty.path(), &["lint"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nothing to lint"));
}

#[test]
fn ignore_options_and_usage_errors() {
    let out = kiln(
        &fixtures(),
        &[
            "lint",
            "--ignore",
            "dockerfile/pip-unpinned",
            "pip/Dockerfile",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
    let out = kiln(
        &fixtures(),
        &["lint", "--ignore", "DL3008", "pip/Dockerfile"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no such rule"));
    let out = kiln(
        &fixtures(),
        &["lint", "--fail-on", "fatal", "pip/Dockerfile"],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = kiln(&fixtures(), &["lint", "--format", "xml", "pip/Dockerfile"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_file_that_does_not_parse_is_a_located_error() {
    let out = kiln(
        &fixtures(),
        &[
            "lint",
            "--fail-on",
            "none",
            "broken/Dockerfile",
            "clean/Dockerfile",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with("broken/Dockerfile:2:6: error parse-error unknown flag --frm for COPY"),
        "{text}"
    );
    let out = kiln(&fixtures(), &["lint", "missing/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("missing/Dockerfile: error parse-error"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn sarif_for_code_scanning() {
    let out = kiln(
        &fixtures(),
        &[
            "lint",
            "--format",
            "sarif",
            "compose/agent/agent-compose.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "kiln");
    assert_eq!(run["tool"]["driver"]["version"], env!("CARGO_PKG_VERSION"));
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 14);
    let first = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(
        first["artifactLocation"]["uri"],
        "compose/agent/agent-compose.yaml"
    );
    assert_eq!(first["region"]["startLine"], 5);
    assert_eq!(first["region"]["startColumn"], 3);
}
