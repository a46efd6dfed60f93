//! End-to-end `kiln build` runs of the real binary, on the busybox base made
//! from Debian's busybox-static, with a fresh store per test.
//!
//! Every case runs twice: as root (`as_root::…`) and as the unprivileged
//! `kilntest` user that `scripts/setup.sh` creates with subuid/subgid ranges
//! (`rootless::…`), where kiln maps ids with newuidmap/newgidmap itself.

mod support;
use support::stderr;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_builder::store::Store;

/// Who runs kiln.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum User {
    Root,
    /// The `kilntest` user, without privilege.
    Rootless,
}

const ROOTLESS_USER: &str = "kilntest";

/// Why the rootless variant cannot run here, if it cannot.
fn rootless_unavailable() -> Option<String> {
    if !running_as_root() {
        return Some("the tests do not run as root, so they cannot switch users".into());
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !passwd
        .lines()
        .any(|l| l.starts_with(&format!("{ROOTLESS_USER}:")))
    {
        return Some(format!(
            "no user {ROOTLESS_USER} (scripts/setup.sh creates it)"
        ));
    }
    None
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

struct Env {
    dir: tempfile::TempDir,
    home: PathBuf,
    context: PathBuf,
    user: User,
}

impl Env {
    /// Writes a file into the context (the rootless user can read it).
    fn write(&self, path: &str, content: &str) {
        let path = self.context.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        self.give_away();
    }

    /// Makes everything in the test's directory the rootless user's.
    fn give_away(&self) {
        if self.user == User::Rootless {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{ROOTLESS_USER}:{ROOTLESS_USER}"))
                .arg(self.dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
}

fn setup_as(user: User, dockerfile: &str, files: &[(&str, &str)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    support::busybox_store(&home);
    let context = dir.path().join("ctx");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    for (path, content) in files {
        let path = context.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let env = Env {
        dir,
        home,
        context,
        user,
    };
    env.give_away();
    env
}

fn kiln_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let binary = env!("CARGO_BIN_EXE_kiln");
    let mut command = match env.user {
        User::Root => Command::new(binary),
        User::Rootless => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={ROOTLESS_USER}"),
                &format!("--regid={ROOTLESS_USER}"),
                "--init-groups",
                binary,
            ]);
            c.env("HOME", env.dir.path());
            c
        }
    };
    command
        .args(args)
        .env("KILN_HOME", &env.home)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_SNAPSHOTTER")
        .env("NO_COLOR", "1");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn build(env: &Env, extra: &[&str]) -> Output {
    build_with(env, extra, &[])
}

fn build_with(env: &Env, extra: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut args = vec!["build", "--progress", "json"];
    args.extend_from_slice(extra);
    let ctx = env.context.to_str().unwrap().to_owned();
    args.push(&ctx);
    kiln_with(env, &args, vars)
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    stderr(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn cached_flags(out: &Output) -> Vec<bool> {
    events(out)
        .into_iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| e["cached"].as_bool().unwrap())
        .collect()
}

/// The files of the image's layers, flattened with umoci (a real tool).
fn unpack(env: &Env, name: &str) -> PathBuf {
    let bundle = env
        .home
        .parent()
        .unwrap()
        .join(format!("bundle-{}", name.replace([':', '/'], "_")));
    kiln_testimages::umoci_unpack(&env.home, name, &bundle).unwrap()
}

fn manifest_of(env: &Env, name: &str) -> serde_json::Value {
    let store = Store::open(&env.home).unwrap();
    serde_json::from_slice(
        &store
            .read_blob(&store.resolve(name).unwrap().digest)
            .unwrap(),
    )
    .unwrap()
}

fn config_of(env: &Env, name: &str) -> serde_json::Value {
    let store = Store::open(&env.home).unwrap();
    let manifest = manifest_of(env, name);
    let digest = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    serde_json::from_slice(&store.read_blob(&digest).unwrap()).unwrap()
}

/// The entries of the image's layer `index` as `tar -tvzf` lists them (a real tool).
fn layer_listing(env: &Env, name: &str, index: usize) -> Vec<String> {
    let manifest = manifest_of(env, name);
    let digest = manifest["layers"][index]["digest"].as_str().unwrap();
    let blob = env
        .home
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&blob)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Declares each case as a test as root and as a test as the rootless user.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod as_root {
            $(#[test]
            fn $name() {
                super::$name(super::User::Root);
            })*
        }
        mod rootless {
            $(#[test]
            fn $name() {
                if let Some(why) = super::rootless_unavailable() {
                    eprintln!("skipping the rootless run: {why}");
                    return;
                }
                super::$name(super::User::Rootless);
            })*
        }
    };
}

cases!(
    multi_stage_build_runs_copies_and_configures,
    a_no_op_rebuild_runs_nothing_and_gives_the_same_digest,
    a_failing_run_reports_status_and_location_and_keeps_the_store_consistent,
    source_date_epoch_gives_reproducible_digests,
    bad_dockerfile_is_a_located_error_with_exit_1,
    outputs_are_read_by_real_tools,
    the_store_is_a_valid_oci_layout_after_a_build,
    run_changes_become_whiteouts_opaque_dirs_links_and_owners,
    overlay_and_copy_modes_give_the_same_image,
    target_dockerignore_chown_and_add_of_a_tar,
    onbuild_triggers_of_a_base_run_in_the_child,
    config_records_shell_volume_entrypoint_and_expansion,
    named_contexts_stand_in_for_images_and_add_directories,
);

fn multi_stage_build_runs_copies_and_configures(user: User) {
    let env = setup_as(
        user,
        "ARG GREETING=hello\n\
         FROM busybox AS builder\n\
         ARG GREETING\n\
         RUN mkdir -p /out && echo \"$GREETING from builder\" > /out/greeting && rm /bin/vi\n\
         FROM busybox\n\
         COPY --from=builder /out/greeting /app/greeting\n\
         COPY data.txt /app/\n\
         ENV APP_MODE=prod\n\
         WORKDIR /app\n\
         USER nobody\n\
         EXPOSE 8080\n\
         LABEL org.example.role=test\n\
         STOPSIGNAL SIGINT\n\
         HEALTHCHECK --interval=5s CMD [\"cat\", \"/app/greeting\"]\n\
         CMD [\"cat\", \"/app/greeting\"]\n",
        &[("data.txt", "some data\n")],
    );
    let out = build(&env, &["-t", "hello:1", "--build-arg", "GREETING=hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(digest.trim().starts_with("sha256:"), "stdout: {digest}");

    let rootfs = unpack(&env, "hello:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/greeting")).unwrap(),
        "hi from builder\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/data.txt")).unwrap(),
        "some data\n"
    );
    // The builder stage's deletion is not in the final stage.
    assert!(rootfs.join("bin/vi").symlink_metadata().is_ok());

    let config = config_of(&env, "hello:1");
    let c = &config["config"];
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Labels"]["org.example.role"], "test");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object());
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(c["Cmd"], serde_json::json!(["cat", "/app/greeting"]));
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "APP_MODE=prod")
    );
}

fn a_no_op_rebuild_runs_nothing_and_gives_the_same_digest(user: User) {
    let env = setup_as(
        user,
        "FROM busybox\nENV MODE=test\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n\
         LABEL stage=one\nCOPY c.txt /c.txt\nRUN cat /c.txt > /d.txt\nCMD [\"cat\", \"/d.txt\"]\n",
        &[("a.txt", "a\n"), ("c.txt", "c\n")],
    );
    let first = build(&env, &["-t", "x"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = build(&env, &["-t", "x"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(first.stdout, second.stdout, "same image digest");
    let finished: Vec<_> = events(&second)
        .into_iter()
        .filter(|e| e["event"] == "step_finished")
        .collect();
    assert_eq!(finished.len(), 4);
    assert!(finished.iter().all(|e| e["cached"] == true), "{finished:?}");

    // Changing one file reruns only the steps after it.
    env.write("c.txt", "changed\n");
    let third = build(&env, &["-t", "x"]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_eq!(cached_flags(&third), vec![true, true, false, false]);
}

fn a_failing_run_reports_status_and_location_and_keeps_the_store_consistent(user: User) {
    let env = setup_as(
        user,
        "FROM busybox\nRUN echo first > /first\nRUN echo oops && exit 3\n",
        &[],
    );
    let out = build(&env, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("exit") && err.contains('3'), "{err}");
    assert!(err.contains("oops"), "the step's output is shown: {err}");
    let store = Store::open(&env.home).unwrap();
    assert!(store.images().is_ok());
    assert_eq!(std::fs::read_dir(env.home.join("tmp")).unwrap().count(), 0);
    // The step before the failure is reused by the next build.
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN echo first > /first\nRUN echo fixed\n",
    );
    let again = build(&env, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(cached_flags(&again), vec![true, false]);
}

fn source_date_epoch_gives_reproducible_digests(user: User) {
    let make = || {
        let env = setup_as(
            user,
            "FROM busybox\nCOPY f.txt /f.txt\nRUN echo hi > /hi && chown 1000:65534 /hi\n",
            &[("f.txt", "f\n")],
        );
        let out = build(&env, &["--source-date-epoch", "1700000000", "-t", "r"]);
        assert!(out.status.success(), "{}", stderr(&out));
        (env, String::from_utf8(out.stdout).unwrap())
    };
    let (env, a) = make();
    let (_env2, b) = make();
    assert_eq!(a, b);
    assert_eq!(
        config_of(&env, "r:latest")["created"],
        "2023-11-14T22:13:20Z"
    );
    let rootfs = unpack(&env, "r:latest");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(rootfs.join("hi")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 65534));
}

fn bad_dockerfile_is_a_located_error_with_exit_1(user: User) {
    let env = setup_as(user, "FROM busybox\nCOPY --chwon=1 a /a\n", &[]);
    let out = build(&env, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2:"), "{err}");
    assert!(err.contains("--chown"), "suggests the right flag: {err}");
}

fn outputs_are_read_by_real_tools(user: User) {
    let env = setup_as(user, "FROM busybox\nRUN echo x > /x\n", &[]);
    let dir = env.home.parent().unwrap().to_path_buf();
    let oci_dir = dir.join("layout");
    let oci_tar = dir.join("image.tar");
    let docker_tar = dir.join("docker.tar");
    let out = build(
        &env,
        &[
            "-t",
            "out:1",
            "--output",
            &format!("type=oci-dir,dest={}", oci_dir.display()),
            "--output",
            &format!("type=oci,dest={}", oci_tar.display()),
            "--output",
            &format!("type=docker,dest={}", docker_tar.display()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:out:1", oci_dir.display()))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    for (transport, path) in [("oci-archive", &oci_tar), ("docker-archive", &docker_tar)] {
        let inspect = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("{transport}:{}", path.display()))
            .output()
            .unwrap();
        assert!(
            inspect.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&inspect.stderr)
        );
    }
    let _ = Path::new(&oci_dir);
}

fn the_store_is_a_valid_oci_layout_after_a_build(user: User) {
    let env = setup_as(
        user,
        "FROM busybox\nRUN echo x > /x\nCMD [\"cat\", \"/x\"]\n",
        &[],
    );
    let out = build(&env, &["-t", "valid:1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    match kiln_testimages::schema::layout_errors(&env.home) {
        Some(errors) => assert!(errors.is_empty(), "{errors:#?}"),
        None => eprintln!("skipping: no shared/conformance for the OCI schemas"),
    }
    let ls = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(&env.home)
        .output()
        .unwrap();
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(String::from_utf8_lossy(&ls.stdout).contains("valid:1"));
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:valid:1", env.home.display()))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
}

fn run_changes_become_whiteouts_opaque_dirs_links_and_owners(user: User) {
    let env = setup_as(
        user,
        "FROM busybox\n\
         RUN mkdir -p /data/old && echo x > /data/old/f && echo keep > /data/keep\n\
         RUN rm /bin/vi && rm -rf /data/old && mkdir /data/old && echo new > /data/old/g \
             && echo x > /h1 && ln /h1 /h2 && ln -s /h1 /sym && chmod 4755 /h1 \
             && chown 1000:65534 /data/old/g && chown 65534:65534 /data/keep\n",
        &[],
    );
    let out = build(&env, &["-t", "diff:1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Layers: busybox, first RUN, second RUN.
    let listing = layer_listing(&env, "diff:1", 2);
    let has = |suffix: &str| listing.iter().any(|l| l.ends_with(suffix));
    assert!(
        has("bin/.wh.vi"),
        "deleted file as a whiteout: {listing:#?}"
    );
    assert!(
        has("data/old/.wh..wh..opq"),
        "replaced dir is opaque: {listing:#?}"
    );
    assert!(
        !has("data/old/f"),
        "the old content is not repeated: {listing:#?}"
    );
    assert!(
        listing
            .iter()
            .any(|l| l.starts_with("hrw") || l.contains("h2 link to h1")),
        "a hardlink entry: {listing:#?}"
    );
    assert!(
        listing.iter().any(|l| l.contains("sym -> /h1")),
        "{listing:#?}"
    );
    assert!(
        listing
            .iter()
            .any(|l| l.starts_with("-rwsr-xr-x") && l.ends_with(" h1")),
        "setuid kept: {listing:#?}"
    );
    assert!(
        listing
            .iter()
            .any(|l| l.contains(" 1000/65534 ") && l.ends_with("data/old/g")),
        "owners as numeric ids: {listing:#?}"
    );

    let rootfs = unpack(&env, "diff:1");
    use std::os::unix::fs::MetadataExt;
    assert!(rootfs.join("bin/vi").symlink_metadata().is_err());
    assert!(!rootfs.join("data/old/f").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("data/old/g")).unwrap(),
        "new\n"
    );
    let h1 = std::fs::metadata(rootfs.join("h1")).unwrap();
    let h2 = std::fs::metadata(rootfs.join("h2")).unwrap();
    assert_eq!(h1.ino(), h2.ino(), "h1 and h2 are one file");
    assert_eq!(h1.mode() & 0o7777, 0o4755);
    assert_eq!(
        std::fs::read_link(rootfs.join("sym")).unwrap(),
        Path::new("/h1")
    );
    let keep = std::fs::metadata(rootfs.join("data/keep")).unwrap();
    assert_eq!((keep.uid(), keep.gid()), (65534, 65534));
}

fn overlay_and_copy_modes_give_the_same_image(user: User) {
    let dockerfile = "FROM busybox\n\
         RUN mkdir -p /a/b && echo x > /a/b/f && rm /bin/vi && ln /a/b/f /a/hard \
             && ln -s /a/b/f /a/soft && chmod u+s /a/b/f\n\
         RUN rm -rf /a/b && mkdir /a/b && echo z > /a/b/g && chown 1000:65534 /a/b/g\n";
    let mut digests = Vec::new();
    for mode in ["overlay", "copy"] {
        let env = setup_as(user, dockerfile, &[]);
        let out = build_with(
            &env,
            &["--source-date-epoch", "1700000000"],
            &[("KILN_SNAPSHOTTER", mode)],
        );
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("RUN steps use {mode} mode")),
            "the mode is said: {}",
            stderr(&out)
        );
        digests.push(String::from_utf8(out.stdout).unwrap());
    }
    assert_eq!(digests[0], digests[1], "overlay and copy mode: one image");

    let env = setup_as(user, dockerfile, &[]);
    let out = build_with(&env, &[], &[("KILN_SNAPSHOTTER", "zfs")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("KILN_SNAPSHOTTER=\"zfs\": use overlay, copy or auto"),
        "{}",
        stderr(&out)
    );
}

fn target_dockerignore_chown_and_add_of_a_tar(user: User) {
    let env = setup_as(
        user,
        "ARG BASE=busybox\n\
         FROM ${BASE} AS deps\n\
         RUN echo deps > /deps\n\
         FROM deps AS app\n\
         COPY --chown=nobody:nobody . /app/\n\
         ADD bundle.tar.gz /opt/\n\
         FROM app AS never\n\
         RUN exit 1\n",
        &[
            ("keep.txt", "keep\n"),
            ("logs/a.log", "a\n"),
            ("logs/important.log", "important\n"),
            ("secret.env", "TOKEN=x\n"),
            (".dockerignore", "logs/*.log\n!logs/important.log\n*.env\n"),
        ],
    );
    // A gzipped tar in the context, made by the real tar.
    let payload = env.dir.path().join("payload");
    std::fs::create_dir_all(payload.join("tool/bin")).unwrap();
    std::fs::write(payload.join("tool/bin/run"), "#!/bin/sh\necho run\n").unwrap();
    let status = Command::new("tar")
        .arg("-czf")
        .arg(env.context.join("bundle.tar.gz"))
        .arg("-C")
        .arg(&payload)
        .arg("tool")
        .status()
        .unwrap();
    assert!(status.success());
    env.give_away();

    let out = build(&env, &["--target", "app", "-t", "app:1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rootfs = unpack(&env, "app:1");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::read_to_string(rootfs.join("deps")).unwrap(),
        "deps\n"
    );
    let keep = std::fs::metadata(rootfs.join("app/keep.txt")).unwrap();
    assert_eq!((keep.uid(), keep.gid()), (65534, 65534), "--chown by name");
    assert!(
        rootfs.join("app/logs/important.log").exists(),
        "! exception"
    );
    assert!(!rootfs.join("app/logs/a.log").exists(), "ignored");
    assert!(!rootfs.join("app/secret.env").exists(), "ignored");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("opt/tool/bin/run")).unwrap(),
        "#!/bin/sh\necho run\n",
        "ADD extracts a local tar"
    );
    assert!(!rootfs.join("opt/bundle.tar.gz").exists());
}

fn onbuild_triggers_of_a_base_run_in_the_child(user: User) {
    let env = setup_as(
        user,
        "FROM busybox\n\
         ONBUILD ARG GREETING=hello\n\
         ONBUILD RUN echo \"$GREETING\" > /triggered\n\
         ONBUILD COPY app.txt /app.txt\n\
         CMD [\"sh\"]\n",
        &[("app.txt", "from the child's context\n")],
    );
    let out = build(&env, &["-t", "onbuild-base:1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let base_config = config_of(&env, "onbuild-base:1");
    assert_eq!(
        base_config["config"]["OnBuild"].as_array().unwrap().len(),
        3
    );

    env.write(
        "Dockerfile",
        "FROM onbuild-base:1\nRUN cat /triggered /app.txt > /both\n",
    );
    let out = build(&env, &["-t", "child:1", "--build-arg", "GREETING=hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rootfs = unpack(&env, "child:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("both")).unwrap(),
        "hi\nfrom the child's context\n"
    );
    let config = config_of(&env, "child:1");
    assert!(
        config["config"]["OnBuild"].is_null(),
        "triggers are not inherited: {config}"
    );
}

fn config_records_shell_volume_entrypoint_and_expansion(user: User) {
    let env = setup_as(
        user,
        "FROM busybox\n\
         ARG VERSION=1.0\n\
         ENV APP_HOME=/srv/app APP_VERSION=${VERSION}\n\
         WORKDIR $APP_HOME\n\
         SHELL [\"/bin/sh\", \"-ec\"]\n\
         RUN echo \"$APP_VERSION at $(pwd)\" > version\n\
         VOLUME /data\n\
         ENTRYPOINT [\"cat\"]\n\
         CMD [\"version\"]\n",
        &[],
    );
    let out = build(&env, &["-t", "cfg:1", "--build-arg", "VERSION=2.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rootfs = unpack(&env, "cfg:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("srv/app/version")).unwrap(),
        "2.5 at /srv/app\n"
    );
    let config = config_of(&env, "cfg:1");
    let c = &config["config"];
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["Entrypoint"], serde_json::json!(["cat"]));
    assert_eq!(c["Cmd"], serde_json::json!(["version"]));
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "APP_VERSION=2.5")
    );
    let history = config["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["created_by"]
            .as_str()
            .unwrap_or("")
            .contains("VOLUME /data")
            && h["empty_layer"] == true),
        "{history:#?}"
    );
}

fn named_contexts_stand_in_for_images_and_add_directories(user: User) {
    let env = setup_as(
        user,
        "FROM base\n\
         COPY --from=assets logo.txt /srv/logo.txt\n\
         RUN --mount=type=bind,from=assets,target=/mnt/assets cat /mnt/assets/logo.txt > /srv/seen\n",
        &[],
    );
    let assets = env.dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("logo.txt"), "logo v1\n").unwrap();
    env.give_away();
    let assets_arg = format!("assets={}", assets.display());
    let args = [
        "-t",
        "named:1",
        "--build-context",
        "base=docker-image://busybox:latest",
        "--build-context",
        &assets_arg,
    ];
    let out = build(&env, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let rootfs = unpack(&env, "named:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("srv/logo.txt")).unwrap(),
        "logo v1\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("srv/seen")).unwrap(),
        "logo v1\n"
    );
    assert!(rootfs.join("bin/busybox").exists(), "FROM base is busybox");

    // A change in the named directory reruns what reads it.
    env.write("../assets/logo.txt", "logo v2\n");
    let again = build(&env, &args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(cached_flags(&again), vec![false, false]);

    // FROM a directory context is refused clearly.
    env.write("Dockerfile", "FROM assets\n");
    let refused = build(&env, &[args[4], args[5]]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("Dockerfile:1")
            && stderr(&refused).contains("local directory context"),
        "{}",
        stderr(&refused)
    );
}
