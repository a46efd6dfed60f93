//! End-to-end `kiln compose` runs of the real binary: projects on the busybox base
//! made from Debian's busybox-static, a fresh store per test, and Debian's
//! docker-registry started on loopback by the harness for push and lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};

use kiln_builder::store::Store;
use kiln_testimages::registry::{Mode, TestRegistry};

struct Env {
    dir: tempfile::TempDir,
    home: PathBuf,
}

impl Env {
    fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }
}

/// A project directory with `files`, and a store holding `busybox:latest`.
fn setup(files: &[(&str, &str)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let store = Store::open(&home).unwrap();
    let busybox = kiln_testimages::images::busybox().unwrap();
    store
        .import_layout(&busybox.layout, &busybox.name, "busybox:latest")
        .unwrap();
    let env = Env { dir, home };
    write_files(&env, files);
    env
}

fn write_files(env: &Env, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = env.project().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

fn kiln_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .current_dir(env.project())
        .env("KILN_HOME", &env.home)
        .env("DOCKER_CONFIG", env.dir.path().join("docker-config"))
        .env("NO_COLOR", "1");
    for name in [
        "SOURCE_DATE_EPOCH",
        "APP_VERSION",
        "REGISTRY",
        "COMPOSE_FILE",
        "COMPOSE_PROFILES",
        "COMPOSE_PROJECT_NAME",
    ] {
        command.env_remove(name);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn kiln(env: &Env, args: &[&str]) -> Output {
    kiln_with(env, args, &[])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    stderr(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `service<TAB>image@digest` lines as service → (image, digest).
fn results(stdout: &str) -> BTreeMap<String, (String, String)> {
    stdout
        .lines()
        .map(|line| {
            let (service, pinned) = line.split_once('\t').expect("service<TAB>image@digest");
            let (image, digest) = pinned.split_once('@').expect("image@digest");
            assert!(digest.starts_with("sha256:"), "{line}");
            (service.to_owned(), (image.to_owned(), digest.to_owned()))
        })
        .collect()
}

/// Services a run built, from the JSON progress.
fn started_builds(out: &Output) -> BTreeSet<String> {
    events(out)
        .iter()
        .filter(|e| e["event"] == "build_started")
        .map(|e| e["build"].as_str().unwrap().to_owned())
        .collect()
}

/// (start, end) of each service's build in milliseconds, from the JSON progress.
fn build_times(out: &Output) -> BTreeMap<String, (u64, u64)> {
    let mut times: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for event in events(out) {
        let time = event["time_ms"].as_u64().unwrap();
        match event["event"].as_str().unwrap() {
            "build_started" => {
                times
                    .entry(event["build"].as_str().unwrap().to_owned())
                    .or_default()
                    .0 = time
            }
            "build_finished" => {
                times
                    .entry(event["build"].as_str().unwrap().to_owned())
                    .or_default()
                    .1 = time
            }
            _ => {}
        }
    }
    times
}

/// (service, step) → cached, for every finished step.
fn finished_steps(out: &Output) -> BTreeMap<(String, u64), bool> {
    events(out)
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| {
            (
                (
                    e["build"].as_str().unwrap().to_owned(),
                    e["step"].as_u64().unwrap(),
                ),
                e["cached"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The files of a store image, flattened with umoci (a real tool).
fn unpack(env: &Env, name: &str) -> PathBuf {
    let bundle = env
        .dir
        .path()
        .join(format!("bundle-{}", name.replace([':', '/'], "_")));
    kiln_testimages::umoci_unpack(&env.home, name, &bundle).unwrap()
}

/// The digest a registry gives for a reference, as skopeo (a real client) sees it.
fn registry_digest(reference: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--no-tags"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["Digest"].as_str().unwrap().to_owned()
}

const BOOKSHOP: &str = r#"name: bookshop
services:
  api:
    image: ${REGISTRY}/bookshop/api:${APP_VERSION:-dev}
    build:
      context: ./api
      target: runtime
      args:
        GREETING: hello
      tags:
        - ${REGISTRY}/bookshop/api:latest
  web:
    image: ${REGISTRY}/bookshop/web:${APP_VERSION:-dev}
    build:
      context: ./web
      args:
        API_IMAGE: ${REGISTRY}/bookshop/api:${APP_VERSION:-dev}
  worker:
    image: ${REGISTRY}/bookshop/worker:${APP_VERSION:-dev}
    build:
      context: ./worker
      additional_contexts:
        shared: service:api
  db:
    image: ${REGISTRY}/bookshop/postgres:16
"#;

const API_DOCKERFILE: &str = "FROM busybox AS build\n\
ARG GREETING\n\
RUN mkdir -p /out && echo \"$GREETING from api\" > /out/greeting\n\
FROM busybox AS runtime\n\
COPY --from=build /out/greeting /srv/greeting\n\
RUN sleep 0.3\n\
FROM busybox AS debug\n\
RUN echo never > /never\n";

const WEB_DOCKERFILE: &str = "ARG API_IMAGE\n\
FROM ${API_IMAGE}\n\
RUN sleep 1 && cat /srv/greeting > /srv/web-saw\n";

const WORKER_DOCKERFILE: &str = "FROM busybox\n\
RUN sleep 1\n\
COPY --from=shared /srv/greeting /worker/greeting\n";

#[test]
fn bookshop_builds_in_order_caches_pushes_and_locks() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let host = registry.host();
    let env = setup(&[
        ("compose.yaml", BOOKSHOP),
        ("api/Dockerfile", API_DOCKERFILE),
        ("web/Dockerfile", WEB_DOCKERFILE),
        ("worker/Dockerfile", WORKER_DOCKERFILE),
    ]);
    let vars = [("REGISTRY", host.as_str())];

    // db only has `image:`: put one on the registry for the lock to resolve.
    let db = format!("{host}/bookshop/postgres:16");
    ok(&kiln(&env, &["push", "busybox:latest", &db]));

    let first = kiln_with(&env, &["compose", "build", "--progress", "json"], &vars);
    let built = results(&ok(&first));
    let services: Vec<&str> = built.keys().map(String::as_str).collect();
    assert_eq!(services, ["api", "web", "worker"]);
    assert_eq!(built["api"].0, format!("{host}/bookshop/api:dev"));
    assert_eq!(built["web"].0, format!("{host}/bookshop/web:dev"));

    // web builds FROM api's image and worker takes it as a named context: both
    // start after api ends, and they build at the same time.
    let times = build_times(&first);
    for after in ["web", "worker"] {
        assert!(
            times[after].0 >= times["api"].1,
            "{after} before api: {times:?}"
        );
    }
    assert!(
        times["web"].0 < times["worker"].1 && times["worker"].0 < times["web"].1,
        "web and worker did not overlap: {times:?}"
    );
    let table = stderr(&first);
    assert!(
        table.contains("SERVICE") && table.contains("DIGEST"),
        "{table}"
    );

    // Every tag is in the store, with the digest printed.
    let store = Store::open(&env.home).unwrap();
    for (name, service) in [
        (format!("{host}/bookshop/api:dev"), "api"),
        (format!("{host}/bookshop/api:latest"), "api"),
        (format!("{host}/bookshop/web:dev"), "web"),
        (format!("{host}/bookshop/worker:dev"), "worker"),
    ] {
        assert_eq!(
            store.resolve(&name).unwrap().digest.to_string(),
            built[service].1,
            "{name}"
        );
    }
    let images = ok(&kiln(&env, &["images"]));
    assert!(
        images.contains(&format!("{host}/bookshop/worker")),
        "{images}"
    );

    // What the images hold: target stage only, FROM and named context fed in.
    let web = unpack(&env, &format!("{host}/bookshop/web:dev"));
    assert_eq!(
        std::fs::read_to_string(web.join("srv/web-saw")).unwrap(),
        "hello from api\n"
    );
    assert!(!web.join("never").exists(), "the debug stage was not built");
    let worker = unpack(&env, &format!("{host}/bookshop/worker:dev"));
    assert_eq!(
        std::fs::read_to_string(worker.join("worker/greeting")).unwrap(),
        "hello from api\n"
    );

    // A second run is all cached and gives the same digests.
    let second = kiln_with(&env, &["compose", "build", "--progress", "json"], &vars);
    assert_eq!(results(&ok(&second)), built);
    let steps = finished_steps(&second);
    assert!(!steps.is_empty());
    assert!(steps.values().all(|cached| *cached), "{steps:?}");

    // Selecting web builds web and what it builds on, nothing else.
    let only_web = kiln_with(
        &env,
        &["compose", "build", "--progress", "json", "web"],
        &vars,
    );
    let only_web_results = results(&ok(&only_web));
    assert_eq!(
        only_web_results
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["api", "web"]
    );
    assert_eq!(
        started_builds(&only_web),
        BTreeSet::from(["api".to_owned(), "web".to_owned()])
    );

    // --push: every tag reaches the registry; --lock pins all four services.
    let lock = env.project().join("compose.lock.yaml");
    let pushed = kiln_with(
        &env,
        &[
            "compose",
            "build",
            "--progress",
            "plain",
            "--push",
            "--lock",
            lock.to_str().unwrap(),
        ],
        &vars,
    );
    assert_eq!(results(&ok(&pushed)), built);
    for (reference, service) in [
        (format!("{host}/bookshop/api:dev"), "api"),
        (format!("{host}/bookshop/api:latest"), "api"),
        (format!("{host}/bookshop/web:dev"), "web"),
        (format!("{host}/bookshop/worker:dev"), "worker"),
    ] {
        assert_eq!(registry_digest(&reference), built[service].1, "{reference}");
    }
    let locked = std::fs::read_to_string(&lock).unwrap();
    let db_digest = registry_digest(&db);
    for pin in [
        format!("{host}/bookshop/api:dev@{}", built["api"].1),
        format!("{host}/bookshop/web:dev@{}", built["web"].1),
        format!("{host}/bookshop/worker:dev@{}", built["worker"].1),
        format!("{db}@{db_digest}"),
    ] {
        assert!(
            locked.contains(&format!("image: {pin}\n")),
            "{pin} in\n{locked}"
        );
    }

    // The lock is a compose file kiln reads back, and it is byte-identical when
    // nothing changed (this time without pushing).
    let again = env.project().join("again.lock.yaml");
    ok(&kiln_with(
        &env,
        &[
            "compose",
            "build",
            "--progress",
            "plain",
            "--lock",
            again.to_str().unwrap(),
        ],
        &vars,
    ));
    assert_eq!(std::fs::read(&again).unwrap(), locked.as_bytes());
    let config = ok(&kiln(
        &env,
        &[
            "compose",
            "-f",
            lock.to_str().unwrap(),
            "config",
            "--services",
        ],
    ));
    assert_eq!(config, "api\ndb\nweb\nworker\n");

    // APP_VERSION set: the interpolated tags reach the registry. api and web have
    // the same content, so the same digests; worker's history names the new tag.
    let versioned = kiln_with(
        &env,
        &["compose", "build", "--progress", "plain", "--push"],
        &[("REGISTRY", host.as_str()), ("APP_VERSION", "1.4.0")],
    );
    let versioned = results(&ok(&versioned));
    assert_eq!(versioned["api"].0, format!("{host}/bookshop/api:1.4.0"));
    for service in ["api", "web", "worker"] {
        let reference = format!("{host}/bookshop/{service}:1.4.0");
        assert_eq!(
            registry_digest(&reference),
            versioned[service].1,
            "{reference}"
        );
    }
    assert_eq!(versioned["api"].1, built["api"].1);
    assert_eq!(versioned["web"].1, built["web"].1);

    // `compose push` pushes what is in the store, every tag.
    let pushed_again = results(&ok(&kiln_with(&env, &["compose", "push", "api"], &vars)));
    assert_eq!(pushed_again.len(), 1);
    assert_eq!(pushed_again["api"], built["api"]);
}

#[test]
fn profiles_override_files_and_env_files_reach_the_image_names() {
    let env = setup(&[
        (
            "compose.yaml",
            "services:\n\
             \x20 app:\n\
             \x20   image: kiln-test/app:${APP_VERSION:-dev}\n\
             \x20   build: ./app\n\
             \x20 extra:\n\
             \x20   image: kiln-test/extra:${APP_VERSION:-dev}\n\
             \x20   profiles: [extras]\n\
             \x20   x-kiln:\n\
             \x20     outputs: [\"type=oci,dest=out/extra.tar\"]\n\
             \x20   build:\n\
             \x20     context: ./app\n\
             \x20     dockerfile_inline: |\n\
             \x20       FROM busybox\n\
             \x20       RUN echo extra > /extra\n",
        ),
        (
            "compose.ci.yaml",
            "services:\n  app:\n    build:\n      tags: [\"kiln-test/app:ci-${APP_VERSION:-none}\"]\n",
        ),
        ("ci.env", "# CI settings\nexport APP_VERSION='1.2.3'\n"),
        ("app/Dockerfile", "FROM busybox\nRUN echo app > /app\n"),
    ]);

    let plain = results(&ok(&kiln(
        &env,
        &["compose", "build", "--progress", "plain"],
    )));
    assert_eq!(plain.keys().collect::<Vec<_>>(), ["app"]);
    assert_eq!(plain["app"].0, "kiln-test/app:dev");

    let ci_args = [
        "compose",
        "-f",
        "compose.yaml",
        "-f",
        "compose.ci.yaml",
        "--env-file",
        "ci.env",
        "--profile",
        "extras",
        "build",
        "--progress",
        "plain",
    ];
    let ci = results(&ok(&kiln(&env, &ci_args)));
    assert_eq!(ci.keys().collect::<Vec<_>>(), ["app", "extra"]);
    assert_eq!(ci["app"].0, "kiln-test/app:1.2.3");
    assert_eq!(ci["extra"].0, "kiln-test/extra:1.2.3");
    assert_eq!(ci["app"].1, plain["app"].1, "same content, same image");
    let store = Store::open(&env.home).unwrap();
    for name in [
        "kiln-test/app:1.2.3",
        "kiln-test/app:ci-1.2.3",
        "kiln-test/extra:1.2.3",
    ] {
        assert!(store.resolve(name).is_ok(), "{name} is in the store");
    }

    // x-kiln outputs are written (relative to the project directory).
    let tar = env.project().join("out/extra.tar");
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", tar.display()))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], ci["extra"].1);

    // The shell's environment wins over the env file.
    let shell = results(&ok(&kiln_with(&env, &ci_args, &[("APP_VERSION", "2.0")])));
    assert_eq!(shell["app"].0, "kiln-test/app:2.0");
    assert!(store.resolve("kiln-test/app:ci-2.0").is_ok());
}

#[test]
fn a_failing_step_names_the_service_and_keeps_finished_steps_cached() {
    let env = setup(&[
        (
            "compose.yaml",
            "services:\n  good:\n    image: kiln-test/good\n    build: ./good\n  bad:\n    image: kiln-test/bad\n    build: ./bad\n",
        ),
        (
            "good/Dockerfile",
            "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n",
        ),
        (
            "bad/Dockerfile",
            "FROM busybox\nRUN echo before > /before\nRUN echo broken && exit 3\n",
        ),
    ]);
    let failed = kiln(&env, &["compose", "build", "--progress", "json"]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(failed.stdout.is_empty(), "no results on stdout");
    let err = stderr(&failed);
    let message = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(message.contains("service bad"), "{err}");
    assert!(message.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("broken"), "the step's output is shown: {err}");
    let done_before = finished_steps(&failed);
    assert!(!done_before.is_empty(), "{err}");

    write_files(
        &env,
        &[(
            "bad/Dockerfile",
            "FROM busybox\nRUN echo before > /before\nRUN echo fixed\n",
        )],
    );
    let fixed = kiln(&env, &["compose", "build", "--progress", "json"]);
    ok(&fixed);
    let done_after = finished_steps(&fixed);
    for (step, _) in done_before {
        assert_eq!(done_after.get(&step), Some(&true), "{step:?} was cached");
    }
}

#[test]
fn project_errors_are_located_and_exit_1() {
    // Services that build FROM each other.
    let env = setup(&[
        (
            "compose.yaml",
            "services:\n  a:\n    image: kiln-test/a\n    build: ./a\n  b:\n    image: kiln-test/b\n    build: ./b\n",
        ),
        ("a/Dockerfile", "FROM kiln-test/b\n"),
        ("b/Dockerfile", "FROM kiln-test/a:latest\n"),
    ]);
    let out = kiln(&env, &["compose", "build"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cycle: a -> b -> a"),
        "{}",
        stderr(&out)
    );

    // A key the engine cannot honour, at its line and column.
    write_files(
        &env,
        &[(
            "compose.yaml",
            "services:\n  a:\n    image: kiln-test/a\n    build:\n      context: ./b\n      shm_size: 2g\n",
        )],
    );
    let out = kiln(&env, &["compose", "build"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("compose.yaml:6:7: services.a.build.shm_size: not supported by kiln"),
        "{}",
        stderr(&out)
    );

    // A required variable that is unset: its message, file and line.
    write_files(
        &env,
        &[(
            "compose.yaml",
            "services:\n  a:\n    image: kiln-test/a:${TAG:?set TAG to the release}\n    build: ./b\n",
        )],
    );
    let out = kiln(&env, &["compose", "build"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("set TAG to the release"), "{err}");
    assert!(err.contains("compose.yaml:3:"), "{err}");

    // An unknown service is a usage error.
    write_files(
        &env,
        &[(
            "compose.yaml",
            "services:\n  a:\n    image: kiln-test/a\n    build: ./b\n",
        )],
    );
    let out = kiln(&env, &["compose", "build", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn pull_true_fetches_the_registrys_current_base() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let host = registry.host();
    let base = format!("{host}/base/os:1");
    let env = setup(&[
        (
            "compose.yaml",
            "services:\n  app:\n    image: kiln-test/pulled:1\n    build:\n      context: ./app\n      pull: true\n",
        ),
        (
            "app/Dockerfile",
            &format!("FROM {base}\nRUN cat /version > /seen 2>/dev/null || echo none > /seen\n"),
        ),
    ]);
    ok(&kiln(&env, &["push", "busybox:latest", &base]));
    let first = kiln(&env, &["compose", "build", "--progress", "plain"]);
    ok(&first);
    assert!(
        stderr(&first).contains(&format!("pulled {base}")),
        "{}",
        stderr(&first)
    );
    let rootfs = unpack(&env, "kiln-test/pulled:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("seen")).unwrap(),
        "none\n"
    );
    std::fs::remove_dir_all(rootfs.parent().unwrap()).unwrap();

    // Another machine pushes a new base under the same tag.
    let publisher = setup(&[("ctx/Dockerfile", "FROM busybox\nRUN echo v2 > /version\n")]);
    let ctx = publisher.project().join("ctx");
    ok(&kiln(
        &publisher,
        &["build", "-t", &base, "--push", ctx.to_str().unwrap()],
    ));

    // `pull: true` uses it, although the store still has the old one by that name.
    ok(&kiln(&env, &["compose", "build", "--progress", "plain"]));
    let rootfs = unpack(&env, "kiln-test/pulled:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("seen")).unwrap(),
        "v2\n"
    );
}
