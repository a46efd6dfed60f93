//! What the CLI test binaries share. Each `tests/*.rs` is a crate of its own
//! that takes this module with `mod support;` and uses what it needs, so the
//! rest is dead code there.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use kiln_builder::store::Store;

/// Opens (creating) the store at `home` with the harness's busybox image in it
/// as `busybox:latest`, the base most fixtures build on.
pub fn busybox_store(home: &Path) -> Store {
    let store = Store::open(home).unwrap();
    let busybox = kiln_testimages::images::busybox().unwrap();
    store
        .import_layout(&busybox.layout, &busybox.name, "busybox:latest")
        .unwrap();
    store
}

/// Runs git in `dir` with a committer set (no configuration needed) and
/// returns its trimmed stdout; a failure fails the test.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=kiln test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is needed for the release tag tests (apt-get install git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs the kiln under test with its store at `home`: no colour, its own
/// docker config, and no SOURCE_DATE_EPOCH from the test's environment.
pub fn kiln(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_HOME", home)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", home.join("docker-config"))
        .output()
        .unwrap()
}

/// stdout, trimmed, of a command that must have succeeded (else its stderr
/// fails the test).
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "kiln failed:\n{}", stderr(out));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
