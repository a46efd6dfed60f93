//! Release engineering against Debian's docker-registry started by the harness:
//! `kiln build --tag-scheme semver-sha` from a real git repository, and the
//! seeds' rollback drill — ship 1.0.0, ship a broken 1.1.0 as `stable`, roll
//! `stable` back to 1.0.0 with `kiln rollback`, no layer transferred.

mod support;
use support::git;
use support::{kiln, ok};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_testimages::registry::{Mode, TestRegistry};

/// One plain HTTP/1.1 request to the registry; (status line, headers, body).
fn http(host: &str, method: &str, path: &str) -> (String, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The digest the registry serves for `repo:reference`.
fn registry_digest(host: &str, repo: &str, reference: &str) -> String {
    let (status, headers, _) = http(host, "HEAD", &format!("/v2/{repo}/manifests/{reference}"));
    assert!(status.contains(" 200 "), "{repo}:{reference}: {status}");
    headers
        .into_iter()
        .find(|(k, _)| k == "docker-content-digest")
        .map(|(_, v)| v)
        .unwrap()
}

fn registry_tags(host: &str, repo: &str) -> Vec<String> {
    let (status, _, body) = http(host, "GET", &format!("/v2/{repo}/tags/list"));
    assert!(status.contains(" 200 "), "{status}");
    // The body may be chunked; the JSON object is the part between braces.
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    let json: serde_json::Value = serde_json::from_str(&body[start..=end]).unwrap();
    let mut tags: Vec<String> = json["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

/// A git repository with a FROM-scratch Dockerfile whose file says `version`.
fn commit_release(repo: &Path, version: &str) -> String {
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\n",
    )
    .unwrap();
    std::fs::write(repo.join("app.txt"), format!("app {version}\n")).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", &format!("release {version}")]);
    git(repo, &["rev-parse", "HEAD"])
}

#[test]
fn semver_sha_tags_and_the_rollback_drill() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let repo = dir.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    git(
        &repo,
        &["remote", "add", "origin", "git@github.com:example/app.git"],
    );

    // 1.0.0: the good release, also `stable`.
    let good_commit = commit_release(&repo, "1.0.0 (good)");
    let app = format!("{host}/app");
    let stable = format!("{host}/app:stable");
    let good = ok(&kiln(
        &home,
        &[
            "build",
            "--progress",
            "plain",
            "--tag-scheme",
            "semver-sha",
            "--version",
            "1.0.0",
            "-t",
            &app,
            "-t",
            &stable,
            "--push",
            repo.to_str().unwrap(),
        ],
    ));
    assert!(good.starts_with("sha256:"), "{good}");
    let short = &good_commit[..7];
    // Besides the release tags, one `sha256-<hex>` tag: the SBOM referrer
    // (the fallback for registries without the referrers API).
    let tags = registry_tags(&host, "app");
    let (referrer_tags, release_tags): (Vec<String>, Vec<String>) =
        tags.into_iter().partition(|t| t.starts_with("sha256-"));
    assert_eq!(
        release_tags,
        ["1", "1.0", "1.0.0", &format!("1.0.0-sha.{short}"), "stable"]
    );
    assert_eq!(
        referrer_tags,
        [good.trim().replace(':', "-")],
        "the SBOM referrer of the image"
    );
    for tag in ["1", "1.0", "1.0.0", "stable"] {
        assert_eq!(registry_digest(&host, "app", tag), good);
    }

    // The release labels, read back from the registry.
    let inspect = ok(&kiln(&home, &["inspect", &format!("{host}/app:1.0.0")]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let labels = &inspect["config"]["config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"], "1.0.0",
        "{inspect:#}"
    );
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        good_commit.as_str()
    );
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/example/app"
    );
    assert!(
        labels["org.opencontainers.image.created"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // 1.1.0: broken, shipped as stable too.
    let broken_commit = commit_release(&repo, "1.1.0 (broken)");
    let broken = ok(&kiln(
        &home,
        &[
            "build",
            "--progress",
            "plain",
            "--tag-scheme",
            "semver-sha",
            "--version",
            "1.1.0",
            "-t",
            &app,
            "-t",
            &stable,
            "--push",
            repo.to_str().unwrap(),
        ],
    ));
    assert_ne!(broken, good);
    assert_eq!(registry_digest(&host, "app", "stable"), broken);
    assert_eq!(registry_digest(&host, "app", "1"), broken);
    assert!(registry_tags(&host, "app").contains(&format!("1.1.0-sha.{}", &broken_commit[..7])));

    // A dry run changes nothing.
    let dry = ok(&kiln(
        &home,
        &["rollback", &stable, "--to", "1.0.0", "--dry-run"],
    ));
    assert_eq!(dry, format!("{stable}: {broken} -> {good}"));
    assert_eq!(registry_digest(&host, "app", "stable"), broken);

    // Roll back: one command, only manifests move.
    let before = registry.request_log().len();
    let started = Instant::now();
    let out = kiln(&home, &["rollback", &stable, "--to", "1.0.0"]);
    let took = started.elapsed();
    assert_eq!(ok(&out), format!("{stable}: {broken} -> {good}"));
    let undo = String::from_utf8_lossy(&out.stderr);
    assert!(
        undo.contains(&format!("kiln rollback {stable} --to {broken}")),
        "{undo}"
    );
    eprintln!("rollback took {took:?}");
    assert_eq!(registry_digest(&host, "app", "stable"), good);
    assert_eq!(
        registry_digest(&host, "app", "1.1.0"),
        broken,
        "other tags stay"
    );
    let log = registry.wait_for_requests(before + 3, Duration::from_secs(5));
    let during: Vec<_> = log[before..]
        .iter()
        .filter(|r| !r.path.ends_with("/tags/list"))
        .collect();
    assert!(
        during.iter().all(|r| !r.path.contains("/blobs/")),
        "rollback touched blobs: {during:?}"
    );
    assert_eq!(
        during.iter().filter(|r| r.method == "PUT").count(),
        1,
        "{during:?}"
    );

    // By digest, forward again; and again is a no-op.
    let out = ok(&kiln(&home, &["rollback", &stable, "--to", &broken]));
    assert_eq!(out, format!("{stable}: {good} -> {broken}"));
    assert_eq!(registry_digest(&host, "app", "stable"), broken);
    let again = kiln(&home, &["rollback", &stable, "--to", &broken]);
    assert_eq!(ok(&again), format!("{stable}: {broken} -> {broken}"));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already points"));

    // A target that does not exist is refused, and nothing moves.
    let missing = kiln(&home, &["rollback", &stable, "--to", "9.9.9"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("9.9.9 does not exist"), "{err}");
    assert_eq!(registry_digest(&host, "app", "stable"), broken);
    let other_repo = kiln(
        &home,
        &["rollback", &stable, "--to", &format!("{host}/other:1.0.0")],
    );
    assert_eq!(other_repo.status.code(), Some(2));
}

#[test]
fn prereleases_get_no_floating_tags_and_a_revision_can_be_given() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY a /a\n").unwrap();
    std::fs::write(ctx.join("a"), "a\n").unwrap();

    // Not a git checkout: explained, with the way out.
    let out = kiln(
        &home,
        &[
            "build",
            "--tag-scheme",
            "semver-sha",
            "--version",
            "2.0.0-rc.1",
            "-t",
            "example.invalid/app",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not in a git repository") && err.contains("--revision"),
        "{err}"
    );

    let out = ok(&kiln(
        &home,
        &[
            "build",
            "--progress",
            "plain",
            "--tag-scheme",
            "semver-sha",
            "--version",
            "2.0.0-rc.1",
            "--revision",
            "0123456789abcdef0123456789abcdef01234567",
            "-t",
            "example.invalid/app",
            ctx.to_str().unwrap(),
        ],
    ));
    let images = ok(&kiln(&home, &["images"]));
    assert!(
        images.contains("example.invalid/app:2.0.0-rc.1"),
        "{images}"
    );
    assert!(
        images.contains("example.invalid/app:2.0.0-rc.1-sha.0123456"),
        "{images}"
    );
    assert!(
        !images.contains("example.invalid/app:2.0 ") && !images.contains("example.invalid/app:2 "),
        "{images}"
    );
    assert!(out.starts_with("sha256:"));

    // SemVer build metadata is not a tag: a usage error that says why.
    let out = kiln(
        &home,
        &[
            "build",
            "--tag-scheme",
            "semver-sha",
            "--version",
            "1.0.0+sha.abc1234",
            "--revision",
            "abc1234",
            "-t",
            "example.invalid/app",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`+` is not allowed in an image tag") && err.contains("1.0.0-sha."),
        "{err}"
    );

    // --version without --tag-scheme is a usage error.
    let out = kiln(
        &home,
        &["build", "--version", "1.0.0", ctx.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
}
