//! End-to-end `kiln build` runs of the real binary, on the busybox base made
//! from Debian's busybox-static, with a fresh store per test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_builder::store::Store;

struct Env {
    _dir: tempfile::TempDir,
    home: PathBuf,
    context: PathBuf,
}

fn setup(dockerfile: &str, files: &[(&str, &str)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let store = Store::open(&home).unwrap();
    let busybox = kiln_testimages::images::busybox().unwrap();
    store
        .import_layout(&busybox.layout, &busybox.name, "busybox:latest")
        .unwrap();
    let context = dir.path().join("ctx");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    for (path, content) in files {
        let path = context.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    Env {
        _dir: dir,
        home,
        context,
    }
}

fn kiln(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_HOME", &env.home)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn build(env: &Env, extra: &[&str]) -> Output {
    let mut args = vec!["build", "--progress", "json"];
    args.extend_from_slice(extra);
    let ctx = env.context.to_str().unwrap().to_owned();
    args.push(&ctx);
    kiln(env, &args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    stderr(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The files of the image's layers, flattened with umoci (a real tool).
fn unpack(env: &Env, name: &str) -> PathBuf {
    let bundle = env
        .home
        .parent()
        .unwrap()
        .join(format!("bundle-{}", name.replace([':', '/'], "_")));
    let status = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{name}", env.home.display()))
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(status.success(), "umoci unpack failed");
    bundle.join("rootfs")
}

fn config_of(env: &Env, name: &str) -> serde_json::Value {
    let store = Store::open(&env.home).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &store
            .read_blob(&store.resolve(name).unwrap().digest)
            .unwrap(),
    )
    .unwrap();
    let digest = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    serde_json::from_slice(&store.read_blob(&digest).unwrap()).unwrap()
}

#[test]
fn multi_stage_build_runs_copies_and_configures() {
    let env = setup(
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

#[test]
fn a_no_op_rebuild_runs_nothing_and_gives_the_same_digest() {
    let env = setup(
        "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\nCOPY c.txt /c.txt\nRUN cat /c.txt > /d.txt\n",
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
    std::fs::write(env.context.join("c.txt"), "changed\n").unwrap();
    let third = build(&env, &["-t", "x"]);
    assert!(third.status.success(), "{}", stderr(&third));
    let cached: Vec<bool> = events(&third)
        .into_iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| e["cached"].as_bool().unwrap())
        .collect();
    assert_eq!(cached, vec![true, true, false, false]);
}

#[test]
fn a_failing_run_reports_status_and_location_and_keeps_the_store_consistent() {
    let env = setup(
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
    std::fs::write(
        env.context.join("Dockerfile"),
        "FROM busybox\nRUN echo first > /first\nRUN echo fixed\n",
    )
    .unwrap();
    let again = build(&env, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    let cached: Vec<bool> = events(&again)
        .into_iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| e["cached"].as_bool().unwrap())
        .collect();
    assert_eq!(cached, vec![true, false]);
}

#[test]
fn source_date_epoch_gives_reproducible_digests() {
    let make = || {
        let env = setup(
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

#[test]
fn bad_dockerfile_is_a_located_error_with_exit_1() {
    let env = setup("FROM busybox\nCOPY --chwon=1 a /a\n", &[]);
    let out = build(&env, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2:"), "{err}");
    assert!(err.contains("--chown"), "suggests the right flag: {err}");
}

#[test]
fn outputs_are_read_by_real_tools() {
    let env = setup("FROM busybox\nRUN echo x > /x\n", &[]);
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

#[test]
fn the_store_is_a_valid_oci_layout_after_a_build() {
    let env = setup(
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
