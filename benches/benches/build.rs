//! Whole-build comparison: `kiln build` vs `docker build` vs `buildah bud
//! --isolation chroot`, side by side in one run, on a realistic multi-stage
//! Python image.
//!
//! The image: the `python` base from kiln-testimages (Debian bookworm +
//! python3, venv, pip), a builder stage that makes a venv and `pip install`s
//! four small pure-Python wheels from the context (made in the set-up with
//! `python3 -m pip wheel` of generated packages; no network anywhere), and a
//! final stage that copies the venv and the app source and byte-compiles the
//! app. The base is loaded into the bench's own dockerd (harness, own data
//! root) and into buildah's own storage root, under the name kiln uses.
//!
//! Scenarios, each run `KILN_BENCH_RUNS` times (default 3), medians reported:
//! - cold: no build cache. kiln: a fresh store holding only the base (its
//!   layers still packed, so kiln's time includes unpacking them), and also
//!   `--no-cache` on a store whose base is unpacked (what docker's and
//!   buildah's cold runs have); docker: `docker builder prune -af`, image
//!   removed, `--no-cache`; buildah: image removed, `--no-cache`.
//! - no-op rebuild: the same build again.
//! - one-file change: one app source file edited, rebuilt (its COPY and the
//!   `compileall` RUN after it run again; that RUN's own python work, ~0.13 s,
//!   is the same for every tool).
//! - one-file change, no RUN after: `settings.toml`, copied after the last
//!   RUN, edited: only its COPY and the image are redone, so the time is the
//!   engine's own.
//!
//! docker is driven through Debian's 20.10 client with `DOCKER_BUILDKIT=1`
//! (the daemon's built-in BuildKit; `buildx` is not installed). buildah uses
//! `--layers` so it caches steps as docker and kiln do. All three use the
//! host network (kiln's default).
//!
//! Output: a table on stdout and `target/bench-results/build.json`.
//! Skips with a message when not root, or when dockerd is missing; buildah
//! is left out (with a message) when not installed. kiln is the release
//! binary next to this bench (`cargo build --release -p kiln-cli` first) or
//! `$KILN_BIN`.
//!
//! Run: `cargo build --release -p kiln-cli && cargo bench -p kiln-benches --bench build`
//! (`KILN_BENCH_RUNS=N` runs each scenario N times; `KILN_BENCH_KEEP=1` keeps the
//! context and the stores under `/tmp` for profiling).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_builder::store::Store;
use kiln_testimages::docker::{Builder, DockerDaemon, DockerError};

const IMAGE: &str = "kiln-bench/pyapp:latest";
const BASE: &str = "python:latest";

const DOCKERFILE: &str = r#"FROM python AS builder
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
COPY wheels/ /wheels/
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels -r /tmp/requirements.txt

FROM python
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY app/ /app/app/
RUN python3 -m compileall -q /app/app
COPY settings.toml /app/settings.toml
USER nobody
CMD ["python3", "-m", "app"]
"#;

/// The generated packages: (distribution, module, requirements).
const PACKAGES: &[(&str, &str, &[&str])] = &[
    ("kbench-core", "kbench_core", &[]),
    ("kbench-text", "kbench_text", &["kbench-core"]),
    ("kbench-http", "kbench_http", &["kbench-core"]),
    ("kbench-cli", "kbench_cli", &["kbench-text", "kbench-http"]),
];

/// A PEP 517 backend that packs the package into a pure-Python wheel with
/// nothing but the standard library, so `pip wheel` needs no setuptools or
/// wheel download. `@DIST@`, `@MODULE@`, `@REQUIRES@` are filled in.
const BACKEND: &str = r#""""Packs @MODULE@ into a pure-Python wheel (standard library only)."""
import base64, hashlib, os, zipfile

DIST, MODULE, VERSION = "@DIST@", "@MODULE@", "1.0"
REQUIRES = [@REQUIRES@]


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    here = os.path.dirname(os.path.abspath(__file__))
    tag = DIST.replace("-", "_")
    dist_info = f"{tag}-{VERSION}.dist-info"
    files = []
    for root, _, names in sorted(os.walk(os.path.join(here, MODULE))):
        for name in sorted(names):
            if name.endswith(".py"):
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    files.append((os.path.relpath(full, here), f.read()))
    metadata = f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in REQUIRES)
    files.append((f"{dist_info}/METADATA", metadata.encode()))
    files.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: kiln-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    record = "\n".join(_record_line(p, d) for p, d in files) + f"\n{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode()))
    wheel_name = f"{tag}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w") as z:
        for path, data in files:
            z.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data)
    return wheel_name
"#;

fn main() {
    // `cargo bench` passes `--bench`; a `cargo test --benches` run passes
    // nothing of the sort and must not start daemons.
    if !std::env::args().any(|a| a == "--bench") {
        println!("build bench: run with `cargo bench` (skipped)");
        return;
    }
    if let Err(message) = run() {
        println!("build bench skipped: {message}");
    }
}

fn run() -> Result<(), String> {
    let runs: usize = std::env::var("KILN_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3);
    let kiln_bin = kiln_binary()?;
    let docker = match DockerDaemon::start() {
        Ok(docker) => docker,
        Err(DockerError::Unavailable { reason }) => return Err(reason),
        Err(error) => panic!("starting dockerd: {error}"),
    };
    let buildah_present = Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());

    let scratch = tempfile::Builder::new()
        .prefix("kiln-bench-build-")
        .tempdir_in("/tmp")
        .expect("scratch dir");
    let context = scratch.path().join("ctx");
    make_context(&context);
    // `KILN_BENCH_KEEP=1`: leave the context and stores behind for profiling.
    let scratch = if std::env::var_os("KILN_BENCH_KEEP").is_some() {
        let kept = scratch.keep();
        eprintln!("keeping {}", kept.display());
        Scratch::Kept(kept)
    } else {
        Scratch::Temp(scratch)
    };

    let python = kiln_testimages::images::python().expect("python base image");
    let base_id = docker
        .load_image(&python, BASE)
        .expect("load base into dockerd");
    eprintln!("base {BASE} loaded into dockerd as {base_id}");

    let mut tools: Vec<Box<dyn Tool>> = vec![
        Box::new(Kiln::new(kiln_bin, scratch.path(), &python)),
        Box::new(Docker { daemon: &docker }),
    ];
    if buildah_present {
        tools.push(Box::new(Buildah::new(scratch.path(), &python)));
    } else {
        println!("buildah not installed: left out");
    }

    let mut samples: BTreeMap<(String, Scenario), Vec<Duration>> = BTreeMap::new();
    let version_file = context.join("app/app/version.py");
    let settings_file = context.join("settings.toml");
    for run in 0..runs {
        for tool in &mut tools {
            let name = tool.name();
            let mut record = |scenario: Scenario, time: Duration| {
                eprintln!(
                    "run {run} {name:<8} {:<28} {:>8.3} s",
                    scenario.label(),
                    time.as_secs_f64()
                );
                samples
                    .entry((name.to_string(), scenario))
                    .or_default()
                    .push(time);
            };
            if let Some(time) = tool.cold_fresh(&context) {
                record(Scenario::ColdFresh, time);
            }
            record(Scenario::Cold, tool.cold(&context));
            record(Scenario::Noop, tool.build(&context));
            fs::write(
                &version_file,
                format!("VERSION = \"1.0.{run}\"\nBUILD = \"{name}\"\n"),
            )
            .expect("edit version.py");
            record(Scenario::OneFile, tool.build(&context));
            fs::write(
                &settings_file,
                format!("[app]\nlevel = \"debug\"\nrun = {run}\nbuild = \"{name}\"\n"),
            )
            .expect("edit settings.toml");
            record(Scenario::OneFileLate, tool.build(&context));
        }
    }
    report(&samples, runs);
    Ok(())
}

/// The bench's scratch directory: removed at the end unless kept.
enum Scratch {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Scratch {
    fn path(&self) -> &Path {
        match self {
            Scratch::Temp(dir) => dir.path(),
            Scratch::Kept(path) => path,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    /// kiln only: a fresh store (base layers packed).
    ColdFresh,
    Cold,
    Noop,
    /// A source file the last RUN compiles.
    OneFile,
    /// A file copied after the last RUN: what is left is the engine's own work.
    OneFileLate,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::ColdFresh => "cold (fresh store)",
            Scenario::Cold => "cold (no cache, base ready)",
            Scenario::Noop => "no-op rebuild",
            Scenario::OneFile => "one-file change",
            Scenario::OneFileLate => "one-file change, no RUN after",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Scenario::ColdFresh => "cold_fresh_store",
            Scenario::Cold => "cold",
            Scenario::Noop => "noop",
            Scenario::OneFile => "one_file_change",
            Scenario::OneFileLate => "one_file_change_no_run_after",
        }
    }
}

trait Tool {
    fn name(&self) -> &'static str;
    /// A build with no cache at all, base still to unpack (kiln only).
    fn cold_fresh(&mut self, _context: &Path) -> Option<Duration> {
        None
    }
    /// A build with no build cache (the base ready to use).
    fn cold(&mut self, context: &Path) -> Duration;
    /// A build that may use the cache.
    fn build(&mut self, context: &Path) -> Duration;
}

/// Flushes what earlier runs (any tool's) left dirty, so that a timed build
/// does not pay for another's writes and deletions on this shared disk.
fn settle() {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    assert!(synced, "sync failed");
}

fn timed(command: &mut Command, what: &str) -> Duration {
    settle();
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let elapsed = started.elapsed();
    check(&output, what);
    elapsed
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        tail(&String::from_utf8_lossy(&output.stderr), 4000)
    );
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

// --- kiln -----------------------------------------------------------------

struct Kiln {
    bin: PathBuf,
    dir: PathBuf,
    base: kiln_testimages::images::OciImage,
    /// The store the cached scenarios use (base unpacked by the first build).
    home: PathBuf,
    fresh_count: usize,
}

impl Kiln {
    fn new(bin: PathBuf, dir: &Path, base: &kiln_testimages::images::OciImage) -> Kiln {
        let home = dir.join("kiln-store");
        import_base(&home, base);
        Kiln {
            bin,
            dir: dir.to_path_buf(),
            base: base.clone(),
            home,
            fresh_count: 0,
        }
    }

    fn command(&self, home: &Path, context: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(["build", "--progress", "plain", "-t", IMAGE])
            .args(extra)
            .arg(context)
            .env("KILN_HOME", home)
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }
}

fn import_base(home: &Path, base: &kiln_testimages::images::OciImage) {
    let store = Store::open(home).expect("open kiln store");
    store
        .import_layout(&base.layout, &base.name, BASE)
        .expect("import the base into the kiln store");
}

impl Tool for Kiln {
    fn name(&self) -> &'static str {
        "kiln"
    }

    fn cold_fresh(&mut self, context: &Path) -> Option<Duration> {
        self.fresh_count += 1;
        let home = self.dir.join(format!("kiln-fresh-{}", self.fresh_count));
        import_base(&home, &self.base);
        let time = timed(
            &mut self.command(&home, context, &[]),
            "kiln build (fresh store)",
        );
        // Left until the scratch dir goes at the end: deleting ~10k files on a
        // disk mounted with `discard` slows the next runs of every tool.
        Some(time)
    }

    fn cold(&mut self, context: &Path) -> Duration {
        timed(
            &mut self.command(&self.home, context, &["--no-cache"]),
            "kiln build --no-cache",
        )
    }

    fn build(&mut self, context: &Path) -> Duration {
        timed(&mut self.command(&self.home, context, &[]), "kiln build")
    }
}

/// `$KILN_BIN`, else the release `kiln` beside this bench's executable.
fn kiln_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("KILN_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/release/deps/build-HASH → target/release/kiln
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("kiln"))
        .filter(|bin| bin.is_file());
    candidate.ok_or_else(|| {
        "no kiln binary: run `cargo build --release -p kiln-cli` first, or set KILN_BIN".to_string()
    })
}

// --- docker ---------------------------------------------------------------

struct Docker<'a> {
    daemon: &'a DockerDaemon,
}

impl Docker<'_> {
    fn clean(&self) {
        // Errors are fine here: the image may not exist yet.
        let _ = self.daemon.docker(["image", "rm", "-f", IMAGE]);
        let out = self
            .daemon
            .docker(["builder", "prune", "-af"])
            .expect("docker builder prune");
        check(&out, "docker builder prune -af");
    }

    fn build_with(&self, context: &Path, extra: &[&str]) -> Duration {
        let mut args = vec!["--network", "host"];
        args.extend_from_slice(extra);
        settle();
        let started = Instant::now();
        let output = self
            .daemon
            .build(Builder::BuildKit, context, IMAGE, &args)
            .expect("docker build");
        let elapsed = started.elapsed();
        check(&output, "docker build");
        elapsed
    }
}

impl Tool for Docker<'_> {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn cold(&mut self, context: &Path) -> Duration {
        self.clean();
        self.build_with(context, &["--no-cache"])
    }

    fn build(&mut self, context: &Path) -> Duration {
        self.build_with(context, &[])
    }
}

// --- buildah --------------------------------------------------------------

struct Buildah {
    root: PathBuf,
    runroot: PathBuf,
}

impl Buildah {
    fn new(dir: &Path, base: &kiln_testimages::images::OciImage) -> Buildah {
        let buildah = Buildah {
            root: dir.join("buildah-root"),
            runroot: dir.join("buildah-runroot"),
        };
        // `buildah pull oci:PATH` derives a name from the path, which a
        // path like `~/.cache/…` makes invalid: let skopeo name it.
        let destination = format!(
            "containers-storage:[overlay@{}+{}]docker.io/library/{BASE}",
            buildah.root.display(),
            buildah.runroot.display()
        );
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet"])
            .arg(base.skopeo_ref())
            .arg(&destination)
            .output()
            .expect("skopeo copy");
        check(&out, "skopeo copy of the base into buildah's storage");
        buildah
    }

    fn command(&self) -> Command {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", "overlay"])
            .stdin(Stdio::null());
        command
    }

    fn build_with(&self, context: &Path, extra: &[&str]) -> Duration {
        let mut command = self.command();
        command
            .args([
                "bud",
                "--isolation",
                "chroot",
                "--layers",
                "--pull=never",
                "--network",
                "host",
                "-t",
                IMAGE,
            ])
            .args(extra)
            .arg(context);
        timed(&mut command, "buildah bud")
    }
}

impl Tool for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }

    fn cold(&mut self, context: &Path) -> Duration {
        let _ = self.command().args(["rmi", "-f", IMAGE]).output();
        // Drops the cached intermediate layers (the base stays: it is tagged).
        let _ = self.command().args(["rmi", "--prune"]).output();
        self.build_with(context, &["--no-cache"])
    }

    fn build(&mut self, context: &Path) -> Duration {
        self.build_with(context, &[])
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // buildah leaves overlay mounts below its root; unmount before the
        // scratch directory goes.
        let _ = self.command().args(["rm", "--all"]).output();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.root.join("overlay"))
            .output();
    }
}

// --- fixture --------------------------------------------------------------

/// Writes the Dockerfile, the wheels (built with `pip wheel`), the
/// requirements and the app source into `context`.
fn make_context(context: &Path) {
    let packages = context.parent().unwrap().join("packages");
    let wheels = context.join("wheels");
    fs::create_dir_all(&wheels).unwrap();
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-index",
        "-w",
    ])
    .arg(&wheels);
    for (dist, module, requires) in PACKAGES {
        let dir = packages.join(dist);
        let src = dir.join(module);
        fs::create_dir_all(&src).unwrap();
        for i in 0..8 {
            fs::write(
                src.join(format!("part{i}.py")),
                format!(
                    "\"\"\"{dist} part {i}.\"\"\"\n\n\ndef value_{i}(x):\n    return [x * {i} + n for n in range(10)]\n"
                ),
            )
            .unwrap();
        }
        let imports: String = (0..8)
            .map(|i| format!("from .part{i} import value_{i}\n"))
            .collect();
        fs::write(
            src.join("__init__.py"),
            format!("{imports}NAME = \"{dist}\"\n"),
        )
        .unwrap();
        let requires_list: Vec<String> = requires.iter().map(|r| format!("{r:?}")).collect();
        fs::write(
            dir.join("kbench_backend.py"),
            BACKEND
                .replace("@DIST@", dist)
                .replace("@MODULE@", module)
                .replace("@REQUIRES@", &requires_list.join(", ")),
        )
        .unwrap();
        fs::write(
            dir.join("pyproject.toml"),
            "[build-system]\nrequires = []\nbuild-backend = \"kbench_backend\"\nbackend-path = [\".\"]\n",
        )
        .unwrap();
        pip.arg(&dir);
    }
    let out = pip
        .env("PIP_NO_INPUT", "1")
        .output()
        .expect("python3 -m pip wheel");
    check(&out, "python3 -m pip wheel");
    let made = fs::read_dir(&wheels).unwrap().count();
    assert_eq!(made, PACKAGES.len(), "one wheel per package");

    fs::write(context.join("requirements.txt"), "kbench-cli==1.0\n").unwrap();
    fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
    let app = context.join("app/app");
    fs::create_dir_all(&app).unwrap();
    for i in 0..40 {
        fs::write(
            app.join(format!("module{i}.py")),
            format!(
                "import kbench_cli\n\n\ndef handler_{i}(request):\n    return {{\"module\": {i}, \"lib\": kbench_cli.NAME}}\n"
            ),
        )
        .unwrap();
    }
    fs::write(app.join("__init__.py"), "").unwrap();
    fs::write(app.join("version.py"), "VERSION = \"1.0.0\"\n").unwrap();
    fs::write(context.join("settings.toml"), "[app]\nlevel = \"info\"\n").unwrap();
    fs::write(
        app.join("__main__.py"),
        "from .version import VERSION\nimport kbench_cli, kbench_core\nprint(\"app\", VERSION, kbench_cli.NAME, kbench_core.value_3(1)[0])\n",
    )
    .unwrap();
}

// --- report ---------------------------------------------------------------

fn median(times: &[Duration]) -> f64 {
    let mut secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let mid = secs.len() / 2;
    if secs.len() % 2 == 1 {
        secs[mid]
    } else {
        (secs[mid - 1] + secs[mid]) / 2.0
    }
}

fn report(samples: &BTreeMap<(String, Scenario), Vec<Duration>>, runs: usize) {
    let get = |tool: &str, scenario: Scenario| {
        samples
            .get(&(tool.to_string(), scenario))
            .map(|times| median(times))
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
        _ => "-".to_string(),
    };
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!();
    println!("whole build, multi-stage python image, median of {runs} run(s), seconds");
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>13} {:>14}",
        "scenario", "kiln", "docker", "buildah", "kiln/docker", "kiln/buildah"
    );
    let mut json_rows = serde_json::Map::new();
    for scenario in [
        Scenario::ColdFresh,
        Scenario::Cold,
        Scenario::Noop,
        Scenario::OneFile,
        Scenario::OneFileLate,
    ] {
        let kiln = get("kiln", scenario);
        // kiln's fresh-store cold run compares with the others' cold runs.
        let other = if scenario == Scenario::ColdFresh {
            Scenario::Cold
        } else {
            scenario
        };
        let docker = get("docker", other);
        let buildah = get("buildah", other);
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>13} {:>14}",
            scenario.label(),
            cell(kiln),
            cell(docker),
            cell(buildah),
            ratio(kiln, docker),
            ratio(kiln, buildah)
        );
        let secs = |tool: &str| {
            samples
                .get(&(tool.to_string(), scenario))
                .map(|t| t.iter().map(Duration::as_secs_f64).collect::<Vec<_>>())
        };
        json_rows.insert(
            scenario.key().to_string(),
            serde_json::json!({
                "median_seconds": {"kiln": kiln, "docker": docker, "buildah": buildah},
                "samples_seconds": {"kiln": secs("kiln"), "docker": secs("docker"), "buildah": secs("buildah")},
                "kiln_over_docker": kiln.zip(docker).map(|(k, d)| k / d),
                "kiln_over_buildah": kiln.zip(buildah).map(|(k, b)| k / b),
            }),
        );
    }
    let json = serde_json::json!({
        "bench": "build",
        "image": "multi-stage python: venv + pip install of 4 local wheels, app copied late",
        "runs": runs,
        "docker_builder": "BuildKit (dockerd 20.10 built-in, DOCKER_BUILDKIT=1)",
        "buildah_flags": "bud --isolation chroot --layers",
        "scenarios": json_rows,
    });
    let out_dir = results_dir();
    fs::create_dir_all(&out_dir).expect("create bench-results");
    let path = out_dir.join("build.json");
    fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write build.json");
    println!("\nwritten: {}", path.display());
}

/// `target/bench-results` of the target directory this bench runs from.
fn results_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/release/deps/build-HASH → target
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("bench-results"))
        .unwrap_or_else(|| PathBuf::from("target/bench-results"))
}
