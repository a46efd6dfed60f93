//! `kiln verify` end to end with the real binary, on the busybox base made from
//! Debian's busybox-static, a fresh store per test, and Debian's
//! docker-registry on loopback for `--against`.
//!
//! `--twice` on fixtures whose RUN output is deterministic must say
//! reproducible (exit 0); on one whose RUN writes the time it must name the
//! layer, the instruction with its Dockerfile line, and the file (exit 1).
//! `--against` an image kiln pushed must find it equal, and after a one-byte
//! change in a context file name that file (content, both sizes and hashes),
//! its layer and instruction; a build arg that changes ENV and LABEL must show
//! as config fields. JSON reports are parsed and their fields asserted.

mod support;
use support::stderr;

use std::path::PathBuf;
use std::process::{Command, Output};

use kiln_builder::digest::Digest;
use kiln_builder::store::Store;
use kiln_testimages::registry::{Mode, TestRegistry};
use serde_json::Value;

const EPOCH: &str = "1704067200";
const ROOTLESS_USER: &str = "kilntest";

struct Env {
    dir: tempfile::TempDir,
    home: PathBuf,
    context: PathBuf,
    rootless: bool,
}

impl Env {
    fn new(dockerfile: &str, files: &[(&str, &str)]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("store");
        support::busybox_store(&home);
        let context = dir.path().join("ctx");
        std::fs::create_dir_all(&context).unwrap();
        let env = Env {
            dir,
            home,
            context,
            rootless: false,
        };
        env.write("Dockerfile", dockerfile);
        for (path, content) in files {
            env.write(path, content);
        }
        env
    }

    fn write(&self, path: &str, content: &str) {
        let path = self.context.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        if self.rootless {
            self.give_away();
        }
    }

    /// Makes everything in the test's directory the rootless user's.
    fn give_away(&self) {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{ROOTLESS_USER}:{ROOTLESS_USER}"))
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kiln(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let binary = env!("CARGO_BIN_EXE_kiln");
        let mut command = if self.rootless {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={ROOTLESS_USER}"),
                &format!("--regid={ROOTLESS_USER}"),
                "--init-groups",
                binary,
            ]);
            c.env("HOME", self.dir.path());
            c
        } else {
            Command::new(binary)
        };
        command
            .args(args)
            .env("KILN_HOME", &self.home)
            .env("DOCKER_CONFIG", self.home.join("docker-config"))
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("KILN_SNAPSHOTTER")
            .env("NO_COLOR", "1");
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().unwrap()
    }

    /// `kiln verify EXTRA… CONTEXT`.
    fn verify(&self, extra: &[&str]) -> Output {
        let mut args = vec!["verify", "--progress", "plain"];
        args.extend_from_slice(extra);
        let context = self.context.to_str().unwrap().to_owned();
        args.push(&context);
        self.kiln(&args, &[])
    }

    fn build(&self, extra: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(extra);
        let context = self.context.to_str().unwrap().to_owned();
        args.push(&context);
        self.kiln(&args, vars)
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn exit_code(out: &Output) -> i32 {
    out.status.code().expect("kiln exited, not killed")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

/// The layers the report lists as not equal.
fn differing(report: &Value) -> Vec<&Value> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|layer| layer["status"] != "equal")
        .collect()
}

fn input<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|input| input["name"] == name)
        .unwrap_or_else(|| panic!("no input {name} in {}", report["inputs"]))
}

// ------------------------------------------------------------------ --twice

/// A fixture: its name, Dockerfile and context files.
type Fixture = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Fixtures whose RUN steps write the same bytes every time.
const DETERMINISTIC: &[Fixture] = &[
    (
        "copy, run, metadata",
        "FROM busybox\n\
         COPY app/ /app/\n\
         RUN mkdir -p /data && cat /app/a.txt /app/b.txt > /data/joined && chmod 0600 /data/joined \
             && ln -s /data/joined /data/link && rm /bin/vi\n\
         ENV MODE=test\n\
         WORKDIR /app\n\
         LABEL org.example.role=fixture\n\
         CMD [\"cat\", \"/data/joined\"]\n",
        &[("app/a.txt", "alpha\n"), ("app/b.txt", "beta\n")],
    ),
    (
        "multi-stage with owners",
        "FROM busybox AS builder\n\
         RUN mkdir -p /out && echo built > /out/result && chown -R 1000:1000 /out\n\
         FROM busybox\n\
         COPY --from=builder /out/ /srv/\n\
         COPY --chown=123:456 notes.txt /srv/notes.txt\n\
         USER 1000\n\
         HEALTHCHECK --interval=5s CMD [\"cat\", \"/srv/result\"]\n",
        &[("notes.txt", "notes\n")],
    ),
    (
        "heredoc, args and a directory of files",
        "FROM busybox\n\
         ARG COUNT=40\n\
         RUN <<EOF\n\
         mkdir -p /gen\n\
         i=0\n\
         while [ $i -lt $COUNT ]; do echo \"file $i\" > /gen/f$i; i=$((i+1)); done\n\
         EOF\n\
         RUN touch /gen/.keep && mkdir /empty\n",
        &[],
    ),
];

#[test]
fn twice_reports_deterministic_fixtures_reproducible() {
    for (name, dockerfile, files) in DETERMINISTIC {
        let env = Env::new(dockerfile, files);
        let out = env.verify(&["--twice"]);
        assert_eq!(
            exit_code(&out),
            0,
            "{name}: stdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        let text = stdout(&out);
        assert!(
            text.starts_with("EQUAL: build 1 and build 2 are both sha256:"),
            "{name}: {text}"
        );
        // No SOURCE_DATE_EPOCH given and no git checkout: 0, and it says so.
        assert!(
            text.contains("SOURCE_DATE_EPOCH = 0  (default)"),
            "{name}: {text}"
        );
        // The fresh stores are gone.
        let leftovers: Vec<_> = std::fs::read_dir(env.home.join("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
    }
}

#[test]
fn twice_works_rootless() {
    if !running_as_root() {
        eprintln!("skipping: the tests do not run as root, so they cannot switch users");
        return;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !passwd
        .lines()
        .any(|l| l.starts_with(&format!("{ROOTLESS_USER}:")))
    {
        eprintln!("skipping: no user {ROOTLESS_USER} (scripts/setup.sh creates it)");
        return;
    }
    let (_, dockerfile, files) = DETERMINISTIC[1];
    let mut env = Env::new(dockerfile, files);
    env.rootless = true;
    env.give_away();
    let out = env.verify(&["--twice", "--source-date-epoch", EPOCH]);
    assert_eq!(exit_code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(&format!("SOURCE_DATE_EPOCH = {EPOCH}  (given)")));
}

/// Line 3 writes something that differs on every run. busybox `date` has
/// second resolution, so two quick builds could write the same date: the
/// kernel's random UUID and the uptime in hundredths surely differ.
const CLOCK_DOCKERFILE: &str = "FROM busybox\n\
     COPY app.txt /app.txt\n\
     RUN date > /stamp && cat /proc/sys/kernel/random/uuid /proc/uptime >> /stamp\n\
     RUN echo steady > /steady\n";

#[test]
fn twice_names_the_layer_instruction_and_file_of_a_run_that_writes_the_time() {
    let env = Env::new(CLOCK_DOCKERFILE, &[("app.txt", "app\n")]);
    let out = env.verify(&["--twice"]);
    assert_eq!(exit_code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("DIFFERENT: "), "{text}");
    // busybox has one layer, so the RUN's is layer 2.
    assert!(
        text.contains(
            "layer 2: DIFFERENT: RUN date > /stamp && cat /proc/sys/kernel/random/uuid \
             /proc/uptime >> /stamp  (Dockerfile:3, stage stage-0)"
        ),
        "{text}"
    );
    assert!(text.contains("~ stamp  content: "), "{text}");
    assert!(
        text.contains("layer 1: equal: COPY app.txt /app.txt"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("error: build 1 and build 2 differ"),
        "{}",
        stderr(&out)
    );

    // The same as JSON.
    let out = env.verify(&["--twice", "--format", "json"]);
    assert_eq!(exit_code(&out), 1, "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["equal"], false);
    assert_eq!(report["left"]["label"], "build 1");
    assert_eq!(report["right"]["label"], "build 2");
    assert_ne!(report["left"]["digest"], report["right"]["digest"]);
    assert_eq!(input(&report, "SOURCE_DATE_EPOCH")["value"], "0");
    assert_eq!(input(&report, "SOURCE_DATE_EPOCH")["from"], "default");
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    assert_eq!(layers[0]["status"], "equal");
    assert!(
        layers[0]["base_image"]
            .as_str()
            .unwrap()
            .contains("busybox")
    );
    assert_eq!(layers[1]["status"], "equal");
    let stamp_layer = &layers[2];
    assert_eq!(stamp_layer["status"], "different");
    assert_eq!(stamp_layer["source"], "Dockerfile:3");
    assert!(
        stamp_layer["instruction"]
            .as_str()
            .unwrap()
            .starts_with("RUN date > /stamp")
    );
    let files = stamp_layer["files"].as_array().unwrap();
    let stamp = files
        .iter()
        .find(|f| f["path"] == "stamp")
        .unwrap_or_else(|| panic!("{files:?}"));
    assert_eq!(stamp["change"], "changed");
    let attributes: Vec<&str> = stamp["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attribute"].as_str().unwrap())
        .collect();
    assert_eq!(attributes, vec!["content"], "{stamp}");
    assert_ne!(stamp["left"]["sha256"], stamp["right"]["sha256"]);
    assert_eq!(stamp["left"]["type"], "file");
    // SOURCE_DATE_EPOCH clamps the mtime, so only the content differs.
    assert_eq!(stamp["left"]["mtime"], 0);
    // The steady file of the last layer is equal; the layer's own tar is
    // the same, so only its position in the chain could differ — it does not.
    assert_eq!(layers[3]["status"], "equal", "{}", layers[3]);
    // The config differs only in the diff ID of the stamp layer.
    let config_paths: Vec<&str> = report["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(config_paths, vec!["rootfs.diff_ids[2]"]);
}

#[test]
fn twice_without_any_instruction_to_build_is_a_usage_error() {
    let env = Env::new("FROM busybox\n", &[]);
    let out = env.kiln(&["verify", env.context.to_str().unwrap()], &[]);
    assert_eq!(exit_code(&out), 2, "{}", stderr(&out));
    // A build that fails cannot be verified: exit 2, not 1.
    let env = Env::new("FROM busybox\nRUN exit 3\n", &[]);
    let out = env.verify(&["--twice"]);
    assert_eq!(exit_code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("Dockerfile:2"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

// ---------------------------------------------------------------- --against

const PUBLISHED_DOCKERFILE: &str = "FROM busybox\n\
     COPY app/ /app/\n\
     ARG MODE=plain\n\
     ENV MODE=$MODE\n\
     LABEL org.example.mode=$MODE\n\
     RUN cat /app/config.txt > /config.copy && echo \"$MODE\" > /mode\n\
     CMD [\"cat\", \"/config.copy\"]\n";

#[test]
fn against_a_pushed_image_is_equal_then_names_what_changed() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let env = Env::new(
        PUBLISHED_DOCKERFILE,
        &[
            ("app/config.txt", "colour=blue\n"),
            ("app/other.txt", "x\n"),
        ],
    );
    let reference = format!("{}/team/verified:1", registry.host());
    let out = env.build(
        &["-t", &reference, "--push", "--build-arg", "MODE=blue"],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let published = stdout(&out).trim().to_owned();
    // Something else in the store by that name must not be what is verified:
    // the registry is asked.
    let store = Store::open(&env.home).unwrap();
    let busybox = store.resolve("busybox:latest").unwrap();
    store.tag(&reference, &busybox).unwrap();

    // No flags: SOURCE_DATE_EPOCH, the build arg and the base come from the SBOM.
    let out = env.verify(&["--against", &reference, "--format", "json"]);
    assert_eq!(exit_code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let report = json(&out);
    assert_eq!(report["equal"], true);
    assert_eq!(report["left"]["digest"], published);
    assert_eq!(report["right"]["digest"], published);
    assert_eq!(input(&report, "SOURCE_DATE_EPOCH")["value"], EPOCH);
    assert_eq!(input(&report, "SOURCE_DATE_EPOCH")["from"], "sbom");
    assert_eq!(input(&report, "build-arg MODE")["value"], "blue");
    assert_eq!(input(&report, "build-arg MODE")["from"], "sbom");
    let base = input(&report, "base busybox");
    assert_eq!(base["from"], "sbom");
    assert!(
        base["value"].as_str().unwrap().contains("@sha256:"),
        "{base}"
    );
    assert!(differing(&report).is_empty());

    // The text report says so too.
    let out = env.verify(&["--against", &reference]);
    assert_eq!(exit_code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "EQUAL: published {reference} and rebuilt are both {published}"
        )),
        "{}",
        stdout(&out)
    );

    // One byte of a context file changes.
    env.write("app/config.txt", "colour=bluf\n");
    let out = env.verify(&["--against", &reference]);
    assert_eq!(exit_code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("layer 1: DIFFERENT: COPY app/ /app/  (Dockerfile:2, stage stage-0)"),
        "{text}"
    );
    let old = Digest::of(b"colour=blue\n");
    let new = Digest::of(b"colour=bluf\n");
    assert!(
        text.contains(&format!(
            "~ app/config.txt  content: 12 bytes {old} -> 12 bytes {new}"
        )),
        "{text}"
    );
    // The RUN that copies it differs in its own file.
    assert!(text.contains("~ config.copy  content: "), "{text}");

    let out = env.verify(&["--against", &reference, "--format", "json"]);
    assert_eq!(exit_code(&out), 1, "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["equal"], false);
    assert_eq!(report["left"]["label"], format!("published {reference}"));
    assert_eq!(report["left"]["digest"], published);
    let layers = differing(&report);
    assert_eq!(layers.len(), 2, "{layers:?}");
    assert_eq!(layers[0]["index"], 1);
    assert_eq!(layers[0]["source"], "Dockerfile:2");
    assert_eq!(layers[0]["instruction"], "COPY app/ /app/");
    let files = layers[0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "only the changed file: {files:?}");
    let file = &files[0];
    assert_eq!(file["path"], "app/config.txt");
    assert_eq!(file["change"], "changed");
    assert_eq!(file["attributes"][0]["attribute"], "content");
    assert_eq!(file["attributes"].as_array().unwrap().len(), 1);
    assert_eq!(file["left"]["size"], 12);
    assert_eq!(file["right"]["size"], 12);
    assert_eq!(file["left"]["sha256"], old.to_string());
    assert_eq!(file["right"]["sha256"], new.to_string());
    assert_eq!(layers[1]["index"], 2);
    assert_eq!(layers[1]["source"], "Dockerfile:6");
}

#[test]
fn against_with_another_build_arg_names_the_config_fields() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let env = Env::new(PUBLISHED_DOCKERFILE, &[("app/config.txt", "colour=blue\n")]);
    let reference = format!("{}/team/configured:1", registry.host());
    let out = env.build(
        &["-t", &reference, "--push", "--build-arg", "MODE=blue"],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // The flag wins over the recorded value.
    let out = env.verify(&[
        "--against",
        &reference,
        "--build-arg",
        "MODE=green",
        "--format",
        "json",
    ]);
    assert_eq!(exit_code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let report = json(&out);
    assert_eq!(input(&report, "build-arg MODE")["value"], "green");
    assert_eq!(input(&report, "build-arg MODE")["from"], "flag");
    let config: Vec<(&str, &Value, &Value)> = report["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), &c["left"], &c["right"]))
        .collect();
    let field = |path: &str| {
        config
            .iter()
            .find(|(p, _, _)| *p == path)
            .unwrap_or_else(|| panic!("no {path} in {config:?}"))
    };
    let env_mode = field("config.Env.MODE");
    assert_eq!(
        (env_mode.1, env_mode.2),
        (&Value::from("blue"), &Value::from("green"))
    );
    let label = field("config.Labels[\"org.example.mode\"]");
    assert_eq!(
        (label.1, label.2),
        (&Value::from("blue"), &Value::from("green"))
    );
    // The RUN that writes $MODE differs in /mode.
    let layers = differing(&report);
    let run_layer = layers
        .iter()
        .find(|l| l["source"] == "Dockerfile:6")
        .unwrap_or_else(|| panic!("{layers:?}"));
    assert!(
        run_layer["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "mode" && f["change"] == "changed")
    );

    // The text report shows both values of each field.
    let out = env.verify(&["--against", &reference, "--build-arg", "MODE=green"]);
    assert_eq!(exit_code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.contains("config.Env.MODE: \"blue\" | \"green\""),
        "{text}"
    );
    assert!(
        text.contains("config.Labels[\"org.example.mode\"]: \"blue\" | \"green\""),
        "{text}"
    );
}

#[test]
fn against_an_oci_layout_and_an_unknown_image() {
    let env = Env::new(
        "FROM busybox\nCOPY a.txt /a.txt\nRUN echo fixed > /fixed\n",
        &[("a.txt", "a\n")],
    );
    let layout = env.dir.path().join("layout");
    let out = env.build(
        &[
            "-t",
            "app:1",
            "--output",
            &format!("type=oci-dir,dest={}", layout.display()),
        ],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The store is a layout too, with the SBOM beside the image.
    let against = format!("oci:{}:app:1", env.home.display());
    let out = env.verify(&["--against", &against, "--format", "json"]);
    assert_eq!(exit_code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let report = json(&out);
    assert_eq!(input(&report, "SOURCE_DATE_EPOCH")["value"], EPOCH);
    assert_eq!(input(&report, "SOURCE_DATE_EPOCH")["from"], "sbom");

    // An exported layout carries no SBOM, and with the store's gone too,
    // `created` stands in for the epoch.
    std::fs::remove_dir_all(env.home.join("referrers")).unwrap();
    let against = format!("oci:{}", layout.display());
    let out = env.verify(&["--against", &against, "--format", "json"]);
    assert_eq!(exit_code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let report = json(&out);
    assert_eq!(input(&report, "SOURCE_DATE_EPOCH")["value"], EPOCH);
    assert_eq!(input(&report, "SOURCE_DATE_EPOCH")["from"], "config");
    assert!(
        stderr(&out).contains("no kiln SBOM found"),
        "{}",
        stderr(&out)
    );

    // A registry that does not answer: exit 2, with the reference named.
    let out = env.verify(&["--against", "127.0.0.1:9/none/such:1"]);
    assert_eq!(exit_code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("127.0.0.1:9/none/such:1"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}
