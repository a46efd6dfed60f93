//! `kiln build --cache-to / --cache-from` with the real binary against Debian's
//! docker-registry started on loopback by the harness: a cache exported by one
//! store makes a build in a fresh store fully cached, `mode=min` leaves other
//! stages out, a missing cache is a warning, and a registry serving a wrong blob
//! is caught.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_builder::digest::Digest;
use kiln_builder::store::Store;
use kiln_testimages::registry::{Mode, TestRegistry};

/// A multi-stage build whose RUN steps write different bytes each time they run (a
/// random UUID from the kernel), so a step that ran cannot pass for a cached one.
const DOCKERFILE: &str = "FROM busybox AS builder\n\
     RUN echo built > /built && cat /proc/sys/kernel/random/uuid > /builder-stamp\n\
     FROM busybox\n\
     COPY --from=builder /built /built\n\
     RUN cat /proc/sys/kernel/random/uuid > /final-stamp\n";

struct Fixture {
    dir: tempfile::TempDir,
    context: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
        Fixture { dir, context }
    }

    /// A fresh store holding only the busybox base image.
    fn store(&self, name: &str) -> PathBuf {
        let home = self.dir.path().join(name);
        support::busybox_store(&home);
        home
    }

    fn build(&self, home: &Path, extra: &[&str]) -> Build {
        let mut args = vec!["build", "--progress", "json", "-t", "app:1"];
        args.extend_from_slice(extra);
        let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(&args)
            .arg(&self.context)
            .env("KILN_HOME", home)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("SOURCE_DATE_EPOCH")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        Build { output }
    }
}

struct Build {
    output: Output,
}

/// One step as the JSON progress reported it.
#[derive(Debug)]
struct StepReport {
    stage: String,
    instruction: String,
    cached: Option<bool>,
    printed: bool,
}

impl Build {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn digest(&self) -> String {
        assert!(self.output.status.success(), "{}", self.stderr());
        String::from_utf8(self.output.stdout.clone())
            .unwrap()
            .trim()
            .to_owned()
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn steps(&self) -> Vec<StepReport> {
        let mut steps: BTreeMap<u64, StepReport> = BTreeMap::new();
        for event in self.events() {
            let number = event["step"].as_u64();
            match (event["event"].as_str(), number) {
                (Some("step_started"), Some(n)) => {
                    steps.insert(
                        n,
                        StepReport {
                            stage: event["stage"].as_str().unwrap().to_owned(),
                            instruction: event["instruction"].as_str().unwrap().to_owned(),
                            cached: None,
                            printed: false,
                        },
                    );
                }
                (Some("step_finished"), Some(n)) => {
                    steps.get_mut(&n).unwrap().cached = event["cached"].as_bool();
                }
                (Some("step_output"), Some(n)) => steps.get_mut(&n).unwrap().printed = true,
                _ => {}
            }
        }
        steps.into_values().collect()
    }

    fn warnings(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "warning")
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn cached_by_instruction(build: &Build) -> BTreeMap<String, bool> {
    let steps = build.steps();
    assert_eq!(steps.len(), 3, "{steps:?}");
    steps
        .into_iter()
        .map(|s| {
            assert!(!s.printed || s.cached == Some(false), "{s:?}");
            (
                format!("{}: {}", s.stage, s.instruction),
                s.cached
                    .unwrap_or_else(|| panic!("step never finished: {s:?}")),
            )
        })
        .collect()
}

const BUILDER_RUN: &str =
    "builder: RUN echo built > /built && cat /proc/sys/kernel/random/uuid > /builder-stamp";
const FINAL_COPY: &str = "stage-1: COPY --from=builder /built /built";
const FINAL_RUN: &str = "stage-1: RUN cat /proc/sys/kernel/random/uuid > /final-stamp";

/// The blob digests of the image `name` in the store at `home`.
fn image_layers(home: &Path, name: &str) -> Vec<String> {
    let store = Store::open(home).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &store
            .read_blob(&store.resolve(name).unwrap().digest)
            .unwrap(),
    )
    .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Every blob in the store at `home` hashes to its name.
fn assert_store_consistent(home: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(home.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(Digest::of(&bytes).hex(), name, "blob {name} is corrupt");
        names.push(format!("sha256:{name}"));
    }
    names
}

#[test]
fn max_cache_makes_a_fresh_store_build_fully_cached() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let fixture = Fixture::new();
    let cache = format!("{}/cache/app:main", registry.host());

    let first_home = fixture.store("first");
    let first = fixture.build(
        &first_home,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    let built = first.digest();
    assert!(
        cached_by_instruction(&first).values().all(|c| !c),
        "{}",
        first.stderr()
    );

    // The cache is a real OCI artifact any client can read.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{cache}"))
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{inspect:?}");
    let manifest: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.kiln.cache.v1+json"
    );
    // The records blob and the two RUN layers and the COPY layer.
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        4,
        "{manifest}"
    );

    let fresh_home = fixture.store("fresh");
    let metadata = fixture.dir.path().join("metadata.json");
    let second = fixture.build(
        &fresh_home,
        &[
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    assert_eq!(second.digest(), built, "{}", second.stderr());
    let cached = cached_by_instruction(&second);
    assert!(
        cached.values().all(|c| *c),
        "{cached:?}\n{}",
        second.stderr()
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(metadata["kiln.steps.run"], 0);
    assert_eq!(metadata["kiln.steps.cached"], 3);
    // The fetched layers are in the fresh store, verified.
    let blobs = assert_store_consistent(&fresh_home);
    for layer in image_layers(&fresh_home, "app:1") {
        assert!(blobs.contains(&layer), "{layer} missing");
    }

    // Exporting the same cache again uploads nothing new; exporting it to another
    // repository of the registry mounts the layers from the one they came from.
    let other = format!("{}/cache/other:main", registry.host());
    let again = fixture.build(
        &fresh_home,
        &[
            "--cache-from",
            &cache,
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "--cache-to",
            &format!("type=registry,ref={other},mode=max"),
        ],
    );
    assert_eq!(again.digest(), built);
    let notices: Vec<String> = again
        .events()
        .iter()
        .filter(|e| e["event"] == "notice")
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.contains(&format!("exported to {cache} ")) && n.contains("0 blobs uploaded")),
        "{notices:?}"
    );
    assert!(
        notices
            .iter()
            // The three layers and the (unchanged) records blob; the empty config is
            // uploaded.
            .any(|n| n.contains(&format!("exported to {other} ")) && n.contains("4 mounted")),
        "{notices:?}"
    );
}

#[test]
fn caches_go_through_token_authentication() {
    let registry = TestRegistry::start(Mode::Token).unwrap();
    let (user, password) = registry.credentials().unwrap();
    let fixture = Fixture::new();
    let login = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["login", "-u", &user, "-p", &password, &registry.host()])
        .env("DOCKER_CONFIG", fixture.dir.path().join("docker-config"))
        .output()
        .unwrap();
    assert!(login.status.success(), "{login:?}");
    let cache = format!("{}/private/cache:main", registry.host());
    let built = fixture
        .build(
            &fixture.store("first"),
            &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
        )
        .digest();
    let second = fixture.build(&fixture.store("fresh"), &["--cache-from", &cache]);
    assert_eq!(second.digest(), built);
    assert!(cached_by_instruction(&second).values().all(|c| *c));
    assert!(!registry.token_requests().is_empty());
}

#[test]
fn min_mode_leaves_out_stages_the_image_is_not_built_from() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let fixture = Fixture::new();
    let min = format!("{}/cache/app:min", registry.host());
    let max = format!("{}/cache/app:max", registry.host());

    let home = fixture.store("exporter");
    let first = fixture.build(
        &home,
        &[
            "--cache-to",
            &format!("type=registry,ref={min},mode=min"),
            "--cache-to",
            &format!("type=registry,ref={max},mode=max"),
        ],
    );
    let built = first.digest();

    let from_min = fixture.build(&fixture.store("min"), &["--cache-from", &min]);
    let cached = cached_by_instruction(&from_min);
    assert!(!cached[BUILDER_RUN], "{cached:?}");
    // The builder's RUN ran again, but the file the final stage copies is the same,
    // so the final stage is still cached and the image identical.
    assert!(cached[FINAL_COPY], "{cached:?}");
    assert!(cached[FINAL_RUN], "{cached:?}");
    assert_eq!(from_min.digest(), built);

    let from_max = fixture.build(
        &fixture.store("max"),
        &["--cache-from", &format!("type=registry,ref={max}")],
    );
    let cached = cached_by_instruction(&from_max);
    assert!(cached.values().all(|c| *c), "{cached:?}");
    assert_eq!(from_max.digest(), built);
}

#[test]
fn a_missing_cache_is_a_warning() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let fixture = Fixture::new();
    let build = fixture.build(
        &fixture.store("store"),
        &[
            "--cache-from",
            &format!("type=registry,ref={}/cache/none:main", registry.host()),
        ],
    );
    assert!(build.output.status.success(), "{}", build.stderr());
    let warnings = build.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("not found")),
        "{warnings:?}"
    );
    assert!(cached_by_instruction(&build).values().all(|c| !c));
}

#[test]
fn a_blob_served_with_wrong_content_is_refused_and_the_step_runs() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let fixture = Fixture::new();
    let cache = format!("{}/cache/app:main", registry.host());
    let home = fixture.store("exporter");
    let built = fixture
        .build(
            &home,
            &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
        )
        .digest();

    // The registry now serves other bytes (same length) for the final RUN's layer.
    let final_layer = image_layers(&home, "app:1").pop().unwrap();
    let hex = final_layer.strip_prefix("sha256:").unwrap();
    let data = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    for b in bytes.iter_mut().skip(20) {
        *b ^= 0x5a;
    }
    let lie = Digest::of(&bytes).to_string();
    std::fs::write(&data, &bytes).unwrap();

    let fresh = fixture.store("fresh");
    let build = fixture.build(&fresh, &["--cache-from", &cache]);
    assert!(build.output.status.success(), "{}", build.stderr());
    let warnings = build.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&final_layer) && w.contains("runs instead")),
        "{warnings:?}"
    );
    let cached = cached_by_instruction(&build);
    assert!(cached[BUILDER_RUN], "{cached:?}");
    assert!(cached[FINAL_COPY], "{cached:?}");
    assert!(!cached[FINAL_RUN], "{cached:?}");
    // The step ran (a new timestamp), so the image differs; nothing the registry
    // lied with entered the store, and the step's record is the local one now.
    assert_ne!(build.digest(), built);
    let blobs = assert_store_consistent(&fresh);
    assert!(!blobs.contains(&lie));
    assert!(!blobs.contains(&final_layer));
    let rebuilt = fixture.build(&fresh, &[]);
    assert!(cached_by_instruction(&rebuilt).values().all(|c| *c));
    assert_eq!(rebuilt.digest(), build.digest());
}

#[test]
fn local_caches_round_trip_and_bad_specs_are_usage_errors() {
    let fixture = Fixture::new();
    let dir = fixture.dir.path().join("cache-dir");
    let built = fixture
        .build(
            &fixture.store("exporter"),
            &[
                "--cache-to",
                &format!("type=local,dest={},mode=max", dir.display()),
            ],
        )
        .digest();
    assert!(dir.join("index.json").is_file());
    let second = fixture.build(
        &fixture.store("fresh"),
        &["--cache-from", &format!("type=local,src={}", dir.display())],
    );
    assert_eq!(second.digest(), built);
    assert!(cached_by_instruction(&second).values().all(|c| *c));

    let bad = fixture.build(
        &fixture.store("bad"),
        &["--cache-to", "type=registry,ref=localhost:1/c:x,mdoe=max"],
    );
    assert_eq!(bad.output.status.code(), Some(2), "{}", bad.stderr());
    assert!(bad.stderr().contains("mdoe"), "{}", bad.stderr());
    let bad = fixture.build(&fixture.store("bad2"), &["--cache-from", "type=gha"]);
    assert_eq!(bad.output.status.code(), Some(2), "{}", bad.stderr());
}

#[test]
fn cache_mounts_travel_through_the_registry_with_mode_max() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let fixture = Fixture::new();
    // The step appends to a file in a cache mount and records what it saw; a
    // changed build arg reruns it.
    std::fs::write(
        fixture.context.join("Dockerfile"),
        "FROM busybox\n\
         ARG ROUND\n\
         RUN --mount=type=cache,id=pkgs,target=/var/cache/pkgs \
             echo \"$ROUND\" >> /var/cache/pkgs/rounds && cat /var/cache/pkgs/rounds > /seen\n",
    )
    .unwrap();
    let cache = format!("{}/cache/mounts:main", registry.host());
    let first_home = fixture.store("first");
    let first = fixture.build(
        &first_home,
        &[
            "--build-arg",
            "ROUND=one",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
        ],
    );
    first.digest();

    // A fresh store, as on a new CI runner: the mount's content comes back.
    let fresh_home = fixture.store("fresh");
    let second = fixture.build(
        &fresh_home,
        &[
            "--build-arg",
            "ROUND=two",
            "--cache-from",
            &format!("type=registry,ref={cache}"),
        ],
    );
    second.digest();
    let rootfs =
        kiln_testimages::umoci_unpack(&fresh_home, "app:1", &fixture.dir.path().join("bundle"))
            .unwrap();
    assert_eq!(
        std::fs::read_to_string(rootfs.join("seen")).unwrap(),
        "one\ntwo\n",
        "the second build saw what the first put in the cache mount"
    );
    assert!(
        !rootfs.join("var/cache/pkgs/rounds").exists(),
        "the cache mount is not in the image"
    );
}
