//! End-to-end `kiln compose` runs of the real binary: projects on the busybox base
//! made from Debian's busybox-static (and the seed-style bookshop on the `python`
//! base, Debian bookworm + python3), a fresh store per test, and Debian's
//! docker-registry started on loopback by the harness for push, lock and rollback.

mod support;
use support::git;
use support::stderr;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};

use std::time::Duration;

use kiln_builder::store::Store;
use kiln_testimages::registry::{LoggedRequest, Mode, TestRegistry};

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
    support::busybox_store(&home);
    let env = Env { dir, home };
    write_files(&env, files);
    env
}

/// [`setup`] plus `python:latest`, the harness's python base (built once, cached).
fn setup_python(files: &[(&str, &str)]) -> Env {
    let env = setup(files);
    let store = Store::open(&env.home).unwrap();
    let python = kiln_testimages::images::python().unwrap();
    store
        .import_layout(&python.layout, &python.name, "python:latest")
        .unwrap();
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

/// The tags of a repository, as skopeo (a real client) lists them.
fn registry_tags(repository: &str) -> BTreeSet<String> {
    let out = Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{repository}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo list-tags {repository}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .filter(|t| !t.starts_with("sha256-"))
        .collect()
}

/// The registry requests since the log had `before` entries, up to a marker request
/// made now (the registry logs a request after answering it, so once the marker is
/// logged, everything the command under test asked for is).
fn requests_since(registry: &TestRegistry, before: usize) -> Vec<LoggedRequest> {
    use std::io::{Read, Write};
    let marker = format!("/v2/kiln-test-marker/manifests/m{before}");
    let mut stream = std::net::TcpStream::connect(registry.host()).unwrap();
    write!(
        stream,
        "GET {marker} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        registry.host()
    )
    .unwrap();
    stream.read_to_end(&mut Vec::new()).unwrap();
    let log = registry.wait_for_request(Duration::from_secs(10), |r| r.path == marker);
    let end = log
        .iter()
        .position(|r| r.path == marker)
        .expect("the marker request is logged");
    log[before..end].to_vec()
}

const GRAPH: &str = r#"name: bookshop
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

/// The build graph on busybox: `FROM` another service's image, a `service:` named
/// context, concurrency, caching, selection, push of every tag, and the lock file.
#[test]
fn services_build_in_order_concurrently_cached_pushed_and_locked() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let host = registry.host();
    let env = setup(&[
        ("compose.yaml", GRAPH),
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

    // A key the engine cannot honour, at its line and column, with the reason.
    write_files(
        &env,
        &[(
            "compose.yaml",
            "services:\n  a:\n    image: kiln-test/a\n    build:\n      context: ./b\n      platforms: [linux/amd64, linux/arm64]\n",
        )],
    );
    let out = kiln(&env, &["compose", "build"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("compose.yaml:6:7: services.a.build.platforms: not supported by kiln: multi-platform builds"),
        "{err}"
    );
    assert!(err.contains("no emulation"), "{err}");

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

// ------------------------------------------------ the seed-style bookshop

const BOOKSHOP: &str = r#"name: bookshop
services:
  api:
    image: ${REGISTRY}/bookshop-api:${APP_VERSION:-dev}
    build:
      context: ./api
      args:
        APP_VERSION: ${APP_VERSION:-dev}
  web:
    image: ${REGISTRY}/bookshop-web:${APP_VERSION:-dev}
    build: ./web
    ports: ["8080:8080"]
    depends_on: [api]
  db:
    image: ${REGISTRY}/bookshop-db:16
"#;

/// Multi-stage Python: a builder stage makes a venv and pip-installs the local
/// package `bookshop-lib` offline (`--no-index`; its PEP 517 backend is in-tree and
/// standard library only); the runtime stage copies the venv and the app.
const BOOKSHOP_API: &str = "FROM python AS builder\n\
RUN python3 -m venv /opt/venv\n\
COPY bookshop-lib/ /src/bookshop-lib/\n\
RUN /opt/venv/bin/pip install --no-index --no-build-isolation --no-cache-dir \
--disable-pip-version-check /src/bookshop-lib\n\
FROM python AS runtime\n\
COPY --from=builder /opt/venv /opt/venv\n\
ENV PATH=/opt/venv/bin:$PATH\n\
COPY app.py /app/app.py\n\
ARG APP_VERSION\n\
RUN echo \"$APP_VERSION\" > /app/VERSION && python3 /app/app.py > /app/selftest\n\
USER nobody\n\
CMD [\"python3\", \"/app/app.py\"]\n";

const BOOKSHOP_APP: &str = "import bookshop_lib\n\
print(bookshop_lib.greeting(open('/app/VERSION').read().strip()))\n";

const BOOKSHOP_LIB_INIT: &str = "def greeting(version):\n    \
return f'bookshop api {version}'\n";

const BOOKSHOP_LIB_PYPROJECT: &str = "[build-system]\n\
requires = []\n\
build-backend = \"backend\"\n\
backend-path = [\".\"]\n";

/// A PEP 517 backend that packs `bookshop_lib` into a pure-Python wheel with the
/// standard library only, so pip needs neither setuptools nor the network.
const BOOKSHOP_LIB_BACKEND: &str = r#"import base64, hashlib, os, zipfile

NAME, VERSION = "bookshop_lib", "1.0"


def _record(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    here = os.path.dirname(os.path.abspath(__file__))
    info = f"{NAME}-{VERSION}.dist-info"
    with open(os.path.join(here, NAME, "__init__.py"), "rb") as f:
        files = [(f"{NAME}/__init__.py", f.read())]
    files.append((f"{info}/METADATA", f"Metadata-Version: 2.1\nName: bookshop-lib\nVersion: {VERSION}\n".encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    record = "\n".join(_record(p, d) for p, d in files) + f"\n{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files:
            z.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data)
    return name
"#;

/// The web front on busybox httpd.
const BOOKSHOP_WEB: &str = "FROM busybox\n\
COPY site/ /www/\n\
EXPOSE 8080\n\
CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// Issue #6's "done when": the bookshop with a multi-stage Python `api`, a busybox
/// httpd `web` and an image-only `db`, built and pushed with `APP_VERSION` unset and
/// set; both sets of interpolated tags are in the registry, and `--lock` pins all
/// three services.
#[test]
fn bookshop_python_api_busybox_web_and_db_push_with_interpolated_tags_and_lock() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let host = registry.host();
    let env = setup_python(&[
        ("compose.yaml", BOOKSHOP),
        ("api/Dockerfile", BOOKSHOP_API),
        ("api/app.py", BOOKSHOP_APP),
        ("api/bookshop-lib/pyproject.toml", BOOKSHOP_LIB_PYPROJECT),
        ("api/bookshop-lib/backend.py", BOOKSHOP_LIB_BACKEND),
        (
            "api/bookshop-lib/bookshop_lib/__init__.py",
            BOOKSHOP_LIB_INIT,
        ),
        ("web/Dockerfile", BOOKSHOP_WEB),
        ("web/site/index.html", "<h1>bookshop</h1>\n"),
    ]);
    // db only has `image:`: it is on the registry before the project is built.
    let db = format!("{host}/bookshop-db:16");
    ok(&kiln(&env, &["push", "busybox:latest", &db]));

    // APP_VERSION unset: `dev` tags, pushed, and a lock pinning all three.
    let lock = env.project().join("compose.lock.yaml");
    let dev = kiln_with(
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
        &[("REGISTRY", host.as_str())],
    );
    let dev = results(&ok(&dev));
    assert_eq!(dev.keys().collect::<Vec<_>>(), ["api", "web"]);
    assert_eq!(dev["api"].0, format!("{host}/bookshop-api:dev"));
    assert_eq!(dev["web"].0, format!("{host}/bookshop-web:dev"));
    for service in ["api", "web"] {
        assert_eq!(
            registry_digest(&dev[service].0),
            dev[service].1,
            "{service}"
        );
    }
    let locked = std::fs::read_to_string(&lock).unwrap();
    for pin in [
        format!("{host}/bookshop-api:dev@{}", dev["api"].1),
        format!("{host}/bookshop-web:dev@{}", dev["web"].1),
        format!("{db}@{}", registry_digest(&db)),
    ] {
        assert!(
            locked.contains(&format!("image: {pin}\n")),
            "{pin} in\n{locked}"
        );
    }

    // APP_VERSION set: the version's tags, next to the dev ones.
    let versioned = kiln_with(
        &env,
        &["compose", "build", "--progress", "plain", "--push"],
        &[("REGISTRY", host.as_str()), ("APP_VERSION", "1.4.2")],
    );
    let versioned = results(&ok(&versioned));
    assert_eq!(versioned["api"].0, format!("{host}/bookshop-api:1.4.2"));
    assert_eq!(versioned["web"].0, format!("{host}/bookshop-web:1.4.2"));
    assert_ne!(
        versioned["api"].1, dev["api"].1,
        "the version is in the api"
    );
    assert_eq!(versioned["web"].1, dev["web"].1, "web does not use it");
    assert_eq!(
        registry_tags(&format!("{host}/bookshop-api")),
        BTreeSet::from(["1.4.2".to_owned(), "dev".to_owned()])
    );
    assert_eq!(
        registry_tags(&format!("{host}/bookshop-web")),
        BTreeSet::from(["1.4.2".to_owned(), "dev".to_owned()])
    );
    for service in ["api", "web"] {
        assert_eq!(
            registry_digest(&versioned[service].0),
            versioned[service].1,
            "{service}"
        );
        assert_eq!(
            registry_digest(&dev[service].0),
            dev[service].1,
            "{service}"
        );
    }

    // The api image: the venv from the builder stage works in the runtime stage,
    // and nothing else of the builder stage came along.
    let api = unpack(&env, &format!("{host}/bookshop-api:1.4.2"));
    assert_eq!(
        std::fs::read_to_string(api.join("app/selftest")).unwrap(),
        "bookshop api 1.4.2\n"
    );
    assert!(
        api.join("opt/venv/lib/python3.11/site-packages/bookshop_lib/__init__.py")
            .exists()
    );
    assert!(
        !api.join("src").exists(),
        "the builder stage's sources stay behind"
    );
    let web = unpack(&env, &format!("{host}/bookshop-web:dev"));
    assert_eq!(
        std::fs::read_to_string(web.join("www/index.html")).unwrap(),
        "<h1>bookshop</h1>\n"
    );
    assert!(web.join("bin/httpd").exists() || web.join("bin/busybox").exists());
}

// ------------------------------------------------ build keys the engine honours

/// `extra_hosts`, `shm_size`, `ssh` and `x-kiln` release tags reach the build.
#[test]
fn extra_hosts_shm_size_ssh_and_release_tags() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let host = registry.host();
    let env = setup(&[
        (
            "compose.yaml",
            "services:\n\
             \x20 tools:\n\
             \x20   image: ${REGISTRY}/kiln-test/tools\n\
             \x20   build:\n\
             \x20     context: ./tools\n\
             \x20     extra_hosts:\n\
             \x20       kiln-myhost: 10.1.2.3\n\
             \x20       kiln-v6host: \"fd00::7\"\n\
             \x20       kiln-gateway: host-gateway\n\
             \x20     shm_size: 96m\n\
             \x20     ssh: [default]\n\
             \x20   x-kiln:\n\
             \x20     tag_scheme: semver-sha\n\
             \x20     version: ${RELEASE}\n",
        ),
        (
            "tools/Dockerfile",
            "FROM busybox\n\
             RUN grep kiln- /etc/hosts > /hosts.txt\n\
             RUN df -k /dev/shm | tail -n 1 | awk '{print $2}' > /shm.txt\n\
             RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo agent > /ssh.txt\n",
        ),
    ]);
    let socket = env.dir.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    git(&env.project(), &["init", "-q"]);
    git(&env.project(), &["add", "."]);
    git(&env.project(), &["commit", "-q", "-m", "tools 1.2.0"]);
    let commit = git(&env.project(), &["rev-parse", "HEAD"]);
    let short = &commit[..7];
    let vars = [
        ("REGISTRY", host.as_str()),
        ("RELEASE", "1.2.0"),
        ("SSH_AUTH_SOCK", socket.to_str().unwrap()),
    ];

    let built = kiln_with(
        &env,
        &["compose", "build", "--progress", "plain", "--push"],
        &vars,
    );
    let built = results(&ok(&built));
    let image = format!("{host}/kiln-test/tools");
    assert_eq!(built["tools"].0, image);

    let rootfs = unpack(&env, &format!("{image}:1.2.0"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hosts.txt")).unwrap(),
        "10.1.2.3\tkiln-myhost\nfd00::7\tkiln-v6host\n127.0.0.1\tkiln-gateway\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("shm.txt")).unwrap(),
        "98304\n",
        "96 MiB in 1k blocks"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("ssh.txt")).unwrap(),
        "agent\n"
    );
    let hosts = std::fs::read_to_string(rootfs.join("etc/hosts")).unwrap_or_default();
    assert!(
        !hosts.contains("kiln-myhost"),
        "the hosts file is not in a layer"
    );

    // The release tags, on the registry, all on the one image, and the labels.
    let tags = registry_tags(&image);
    let expected: BTreeSet<String> = [
        "latest".to_owned(),
        "1.2.0".to_owned(),
        "1.2".to_owned(),
        "1".to_owned(),
        format!("1.2.0-sha.{short}"),
    ]
    .into();
    assert_eq!(tags, expected);
    for tag in &expected {
        assert_eq!(registry_digest(&format!("{image}:{tag}")), built["tools"].1);
    }
    let inspect = ok(&kiln(&env, &["inspect", &format!("{image}:1.2")]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let labels = &inspect["config"]["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], "1.2.0");
    assert_eq!(labels["org.opencontainers.image.revision"], commit.as_str());

    // The default shm size is Docker's, and a changed extra host runs the step again.
    write_files(
        &env,
        &[(
            "compose.yaml",
            "services:\n\
             \x20 tools:\n\
             \x20   image: kiln-test/tools:plain\n\
             \x20   build:\n\
             \x20     context: ./tools\n\
             \x20     extra_hosts: [\"kiln-myhost=10.9.9.9\", \"kiln-v6host:[fd00::8]\", \"kiln-gateway:10.0.0.1\"]\n\
             \x20     ssh: [\"default=${SSH_AUTH_SOCK}\"]\n",
        )],
    );
    ok(&kiln_with(
        &env,
        &["compose", "build", "--progress", "plain"],
        &vars,
    ));
    let plain = unpack(&env, "kiln-test/tools:plain");
    assert_eq!(
        std::fs::read_to_string(plain.join("hosts.txt")).unwrap(),
        "10.9.9.9\tkiln-myhost\nfd00::8\tkiln-v6host\n10.0.0.1\tkiln-gateway\n"
    );
    assert_eq!(
        std::fs::read_to_string(plain.join("shm.txt")).unwrap(),
        "65536\n"
    );

    // A later commit does not rename what `compose push` pushes: the release tags
    // follow the commit the stored image was built from.
    std::fs::write(env.project().join("NOTES"), "later\n").unwrap();
    git(&env.project(), &["add", "."]);
    git(&env.project(), &["commit", "-q", "-m", "later"]);
    write_files(
        &env,
        &[(
            "compose.yaml",
            "services:\n\
             \x20 tools:\n\
             \x20   image: ${REGISTRY}/kiln-test/tools\n\
             \x20   build: ./tools\n\
             \x20   x-kiln: {tag_scheme: semver-sha, version: \"${RELEASE}\"}\n",
        )],
    );
    ok(&kiln_with(&env, &["compose", "push"], &vars));
    assert_eq!(registry_tags(&image), expected);
}

// ------------------------------------------------ rollback to a lock file

const SHOP: &str = r#"name: shop
services:
  api:
    image: ${REGISTRY}/shop/api:stable
    build:
      context: ./api
      tags: ["${REGISTRY}/shop/api:edge"]
      x-kiln:
        tag_scheme: semver-sha
        version: ${APP_VERSION}
  web:
    image: ${REGISTRY}/shop/web:stable
    build: ./web
  db:
    image: ${REGISTRY}/shop/db:16
"#;

/// Issue #9's drill for a project: ship 1.0.0 (lock A), ship a broken 1.1.0 (lock
/// B), `kiln compose rollback --lock A` moves every tag of every built service back,
/// with manifests only.
#[test]
fn compose_rollback_moves_every_tag_back_to_the_lock_without_blobs() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let host = registry.host();
    let env = setup(&[
        ("compose.yaml", SHOP),
        ("api/Dockerfile", "FROM busybox\nCOPY app.txt /app.txt\n"),
        ("api/app.txt", "api 1.0.0\n"),
        ("web/Dockerfile", "FROM busybox\nRUN echo web > /web.txt\n"),
    ]);
    let db = format!("{host}/shop/db:16");
    ok(&kiln(&env, &["push", "busybox:latest", &db]));
    let db_digest = registry_digest(&db);
    git(&env.project(), &["init", "-q"]);
    let ship = |version: &str, lock: &str| {
        git(&env.project(), &["add", "."]);
        git(&env.project(), &["commit", "-q", "-m", version]);
        let out = kiln_with(
            &env,
            &[
                "compose",
                "build",
                "--progress",
                "plain",
                "--push",
                "--lock",
                lock,
            ],
            &[("REGISTRY", host.as_str()), ("APP_VERSION", version)],
        );
        results(&ok(&out))
    };
    let good = ship("1.0.0", "a.lock.yaml");
    write_files(&env, &[("api/app.txt", "api 1.1.0 (broken)\n")]);
    let broken = ship("1.1.0", "b.lock.yaml");
    assert_ne!(good["api"].1, broken["api"].1);
    assert_eq!(good["web"].1, broken["web"].1, "web did not change");
    let api = |tag: &str| registry_digest(&format!("{host}/shop/api:{tag}"));
    for tag in ["stable", "edge", "1", "1.1", "1.1.0"] {
        assert_eq!(api(tag), broken["api"].1, "{tag} is on 1.1.0");
    }
    assert_eq!(api("1.0"), good["api"].1);

    // A dry run says what would move and moves nothing.
    let dry = ok(&kiln(
        &env,
        &["compose", "rollback", "--lock", "a.lock.yaml", "--dry-run"],
    ));
    assert!(
        dry.contains(&format!(
            "api\t{host}/shop/api:stable: {} -> {}\n",
            broken["api"].1, good["api"].1
        )),
        "{dry}"
    );
    assert_eq!(api("stable"), broken["api"].1);

    // The rollback: every tag of api back on 1.0.0; web and db stay; manifests only.
    let before = registry.request_log().len();
    let started = std::time::Instant::now();
    let out = kiln(&env, &["compose", "rollback", "--lock", "a.lock.yaml"]);
    eprintln!("compose rollback took {:?}", started.elapsed());
    let stdout = ok(&out);
    let during = requests_since(&registry, before);
    let lines: Vec<&str> = stdout.lines().collect();
    let (b, g) = (&broken["api"].1, &good["api"].1);
    let w = &good["web"].1;
    let expected = [
        format!("api\t{host}/shop/api:stable: {b} -> {g}"),
        format!("api\t{host}/shop/api:edge: {b} -> {g}"),
        format!("api\t{host}/shop/api:1.0.0: {g} -> {g}"),
        format!("api\t{host}/shop/api:1.0: {g} -> {g}"),
        format!("api\t{host}/shop/api:1: {b} -> {g}"),
        format!("db\t{db}: {db_digest} -> {db_digest}"),
        format!("web\t{host}/shop/web:stable: {w} -> {w}"),
    ];
    assert_eq!(lines, expected, "{}", stderr(&out));
    for tag in ["stable", "edge", "1", "1.0", "1.0.0"] {
        assert_eq!(api(tag), good["api"].1, "{tag} is back on 1.0.0");
    }
    assert_eq!(api("1.1.0"), broken["api"].1, "1.1.0 still names 1.1.0");
    assert!(
        during.iter().all(|r| !r.path.contains("/blobs/")),
        "the rollback touched blobs: {during:?}"
    );
    let puts: Vec<&LoggedRequest> = during.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 3, "one manifest PUT per moved tag: {during:?}");
    assert!(
        stderr(&out).contains("moved 3 tag(s) of 1 service(s)"),
        "{}",
        stderr(&out)
    );

    // Rolling forward to B and back again works the same way; when db's tag has moved
    // on since lock A, the rollback is refused and nothing moves.
    ok(&kiln(
        &env,
        &["compose", "rollback", "--lock", "b.lock.yaml"],
    ));
    assert_eq!(api("stable"), broken["api"].1);
    ok(&kiln(
        &env,
        &["push", &format!("{host}/shop/web:stable"), &db],
    ));
    let refused = kiln(&env, &["compose", "rollback", "--lock", "a.lock.yaml"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(
        err.contains(&format!("service db: {db} now points to"))
            && err.contains(&format!("the lock file pins {db_digest}")),
        "{err}"
    );
    assert!(err.contains(&format!("image: {db}@{db_digest}")), "{err}");
    assert_eq!(api("stable"), broken["api"].1, "nothing moved");

    // A compose file that pins nothing is not a lock file.
    let unpinned = kiln_with(
        &env,
        &["compose", "rollback", "--lock", "compose.yaml"],
        &[("REGISTRY", host.as_str()), ("APP_VERSION", "1.0.0")],
    );
    assert_eq!(unpinned.status.code(), Some(1));
    assert!(
        stderr(&unpinned).contains("is not pinned to a digest"),
        "{}",
        stderr(&unpinned)
    );
}
