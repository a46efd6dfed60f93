//! `kiln push`, `inspect`, `tag` and `pull` against Debian's docker-registry
//! started on loopback by the harness.

mod support;
use support::{kiln, ok};

use std::process::Command;

use kiln_testimages::registry::{Mode, TestRegistry};

#[test]
fn build_push_inspect_retag_and_pull_back() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    support::busybox_store(&home);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo pushed > /pushed\n",
    )
    .unwrap();

    let host = registry.host();
    let first = format!("{host}/team/app:1.0.0");
    let built = ok(&kiln(
        &home,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            &first,
            "--push",
            ctx.to_str().unwrap(),
        ],
    ));
    assert!(built.starts_with("sha256:"));

    let inspect = ok(&kiln(
        &home,
        &["inspect", "--insecure-registry", &host, &first],
    ));
    let json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(json["digest"], built);
    assert_eq!(json["source"], "store");

    // Retag on the registry: no layer moves.
    let before = registry.request_log().len();
    let second = format!("{host}/team/app:1.0");
    let tagged = ok(&kiln(&home, &["tag", &first, &second]));
    assert_eq!(tagged, built);
    let after = registry.wait_for_requests(before + 1, std::time::Duration::from_secs(5));
    assert!(
        after[before..]
            .iter()
            .all(|r| !r.path.contains("/blobs/uploads")),
        "{:?}",
        &after[before..]
    );

    // Pull it back into a fresh store: same digest, every blob verified.
    let fresh = dir.path().join("fresh");
    let pulled = ok(&kiln(&fresh, &["pull", &second]));
    assert_eq!(pulled, built);
    let remote = ok(&kiln(&fresh, &["inspect", &format!("{host}/team/app:1.0")]));
    let remote: serde_json::Value = serde_json::from_str(&remote).unwrap();
    assert_eq!(remote["digest"], built);

    // skopeo, a real third-party client, reads what kiln pushed.
    let skopeo = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{second}"),
        ])
        .output()
        .unwrap();
    assert!(
        skopeo.status.success(),
        "{}",
        String::from_utf8_lossy(&skopeo.stderr)
    );
    let skopeo: serde_json::Value = serde_json::from_slice(&skopeo.stdout).unwrap();
    assert_eq!(skopeo["Digest"], built);
}

#[test]
fn a_tag_with_plus_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let out = kiln(dir.path(), &["pull", "ghcr.io/owner/img:1.2.3+sha.abc"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hint:") && err.contains('-'), "{err}");
}
