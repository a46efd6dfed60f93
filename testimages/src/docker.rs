//! A real Docker engine for tests and benches: Debian's `dockerd` (20.10)
//! started by hand with a data root, exec root and socket of its own.
//!
//! Contract:
//! - [`DockerDaemon::start`] makes a fresh temporary directory, starts
//!   `dockerd` there (no iptables, no bridge, no IP forwarding, an empty
//!   `daemon.json`, so nothing on the host is touched and nothing of the
//!   host's configuration is read), and returns once `docker info` answers.
//!   When it cannot run here — not root, or no `dockerd` — it returns
//!   [`DockerError::Unavailable`] with the reason: callers skip on that.
//! - Dropping the value stops the daemon (SIGTERM, then SIGKILL after a
//!   grace period), kills whatever it left running under its directory (its
//!   `containerd` child and shims), unmounts what is still mounted below the
//!   directory and removes it.
//! - [`DockerDaemon::command`] is a `docker` client talking to this daemon
//!   only: `DOCKER_HOST` set to its socket and `DOCKER_CONFIG` to a private
//!   directory, so the host's `~/.docker/config.json` (credential helpers,
//!   contexts) plays no part. The client is `$KILN_DOCKER_CLI`, else Debian's
//!   `/usr/bin/docker` when present (the client that matches the daemon and
//!   can drive its built-in BuildKit without `buildx`), else `docker`.
//! - [`DockerDaemon::load_image`] loads an OCI layout image into the daemon
//!   under a reference (via a `docker-archive` made by skopeo, so the image
//!   ID is the layout's config digest); [`DockerDaemon::pull`] pulls from a
//!   loopback [`TestRegistry`](crate::registry::TestRegistry), which dockerd
//!   accepts over plain HTTP.
//!
//! Errors: [`DockerError`], whose variants carry the daemon's log tail or
//! wrap the harness's [`crate::Error`] (which names the command that failed).
//!
//! Nothing here reaches Docker Hub: images come from this crate's layouts or
//! from a harness registry.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::images::OciImage;
use crate::rootfs::WorkDir;
use crate::{Error, command};

/// How long to wait for `docker info` to answer after starting the daemon.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the daemon gets to shut down after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// The daemon binary Debian's `docker.io` installs.
const DOCKERD: &str = "/usr/sbin/dockerd";
/// The client of the same package (see the module docs).
const DEBIAN_DOCKER_CLI: &str = "/usr/bin/docker";

/// What can go wrong starting or using the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// Docker cannot run here (not root, no `dockerd`): skip, do not fail.
    #[error("no Docker engine here: {reason}")]
    Unavailable { reason: String },

    /// `dockerd` exited before it answered.
    #[error("dockerd exited ({status}) before answering; log: {log_tail}")]
    Exited { status: String, log_tail: String },

    /// `docker info` did not answer in time.
    #[error("dockerd did not answer `docker info` within {waited:?}; log: {log_tail}")]
    NotReady { waited: Duration, log_tail: String },

    /// A file operation or a command (skopeo, docker) failed.
    #[error(transparent)]
    Harness(#[from] Error),
}

/// Which builder a `docker build` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builder {
    /// The daemon's built-in BuildKit (`DOCKER_BUILDKIT=1`).
    BuildKit,
    /// The classic builder (`DOCKER_BUILDKIT=0`).
    Legacy,
}

impl Builder {
    fn env_value(self) -> &'static str {
        match self {
            Builder::BuildKit => "1",
            Builder::Legacy => "0",
        }
    }
}

/// A running `dockerd`; stopped and cleaned up on drop.
#[derive(Debug)]
pub struct DockerDaemon {
    child: Child,
    client: PathBuf,
    // Last: removed (after unmounting) once the processes are gone.
    dir: WorkDir,
}

impl DockerDaemon {
    /// Starts a daemon of its own (see the module docs).
    pub fn start() -> Result<DockerDaemon, DockerError> {
        if !is_root() {
            return Err(DockerError::Unavailable {
                reason: "dockerd needs root".to_string(),
            });
        }
        if !Path::new(DOCKERD).exists() {
            return Err(DockerError::Unavailable {
                reason: format!("{DOCKERD} is missing (Debian package docker.io)"),
            });
        }
        let client = client_program();
        // Short paths: the daemon's and containerd's unix sockets live below
        // this directory, and socket paths are limited to 108 bytes.
        let dir = WorkDir::new_in(Path::new("/tmp"), "kiln-dockerd-")?;
        let d = dir.path().to_path_buf();
        for sub in ["data", "exec", "client-config"] {
            let path = d.join(sub);
            fs::create_dir(&path).map_err(Error::io("create directory", &path))?;
        }
        let config = d.join("daemon.json");
        fs::write(&config, "{}\n").map_err(Error::io("write", &config))?;
        let log_path = d.join("dockerd.log");
        let log = fs::File::create(&log_path).map_err(Error::io("create", &log_path))?;
        let log_err = log.try_clone().map_err(Error::io("reopen", &log_path))?;
        let mut daemon = Command::new(DOCKERD);
        daemon
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = daemon.spawn().map_err(|source| Error::Spawn {
            program: DOCKERD.to_string(),
            source,
        })?;
        let mut docker = DockerDaemon { child, client, dir };
        docker.wait_ready()?;
        Ok(docker)
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// `unix:///…/docker.sock`, the value of `DOCKER_HOST` for this daemon.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The daemon's log (stdout and stderr), for diagnosing failures.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dockerd.log")
    }

    /// A `docker` client command for this daemon, with no arguments yet.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.client);
        command
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("client-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .stdin(Stdio::null());
        command
    }

    /// Runs `docker ARGS...` against this daemon and returns its output,
    /// whatever its exit status (fails only when the client cannot start).
    pub fn docker<I, S>(&self, args: I) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command();
        command.args(args);
        command.output().map_err(|source| Error::Spawn {
            program: self.client.display().to_string(),
            source,
        })
    }

    /// Runs `docker ARGS...`; fails unless it exits 0. Returns its stdout.
    pub fn docker_ok<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command();
        command.args(args);
        command::stdout(&mut command)
    }

    /// `docker build` of `context` with `builder`, tagged `tag`, with extra
    /// arguments (`-f`, `--no-cache`, `--build-arg`, …) before the context.
    /// Returns the client's output whatever its status.
    pub fn build(
        &self,
        builder: Builder,
        context: &Path,
        tag: &str,
        extra: &[&str],
    ) -> Result<Output, Error> {
        let mut command = self.command();
        command
            .env("DOCKER_BUILDKIT", builder.env_value())
            .env("BUILDKIT_PROGRESS", "plain")
            .args(["build", "-t", tag])
            .args(extra)
            .arg(context);
        command.output().map_err(|source| Error::Spawn {
            program: self.client.display().to_string(),
            source,
        })
    }

    /// Loads `image` into the daemon as `reference` (e.g. `busybox:latest`):
    /// skopeo writes it as a `docker-archive`, `docker load` reads that.
    /// Returns the image ID (`sha256:` + the config digest's hex).
    pub fn load_image(&self, image: &OciImage, reference: &str) -> Result<String, Error> {
        let scratch = WorkDir::new_in(self.dir.path(), "load-")?;
        let archive = scratch.path().join("image.tar");
        command::run(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--quiet"])
                .arg(image.skopeo_ref())
                .arg(format!("docker-archive:{}:{reference}", archive.display())),
        )?;
        self.docker_ok(
            [OsStr::new("load"), OsStr::new("-q"), OsStr::new("-i")]
                .into_iter()
                .chain([archive.as_os_str()]),
        )?;
        self.image_id(reference)
    }

    /// Pulls `reference` (e.g. `127.0.0.1:PORT/team/app:1`) into the daemon
    /// and returns its image ID.
    pub fn pull(&self, reference: &str) -> Result<String, Error> {
        self.docker_ok(["pull", "-q", reference])?;
        self.image_id(reference)
    }

    /// The image ID of a local image.
    pub fn image_id(&self, reference: &str) -> Result<String, Error> {
        let id = self.docker_ok(["image", "inspect", "--format", "{{.Id}}", reference])?;
        Ok(id.trim().to_string())
    }

    /// Polls `docker info` until it answers, the daemon exits, or
    /// [`READY_TIMEOUT`] passes.
    fn wait_ready(&mut self) -> Result<(), DockerError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DockerError::Exited {
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                });
            }
            // The socket appears before the API answers; `info` needs both.
            if self.socket().exists()
                && self
                    .docker(["info", "--format", "{{.ServerVersion}}"])
                    .is_ok_and(|out| out.status.success())
            {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(DockerError::NotReady {
                    waited: READY_TIMEOUT,
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        command::tail(
            &fs::read_to_string(self.log_path()).unwrap_or_default(),
            3000,
        )
    }

    /// Stops the daemon, then anything else still running from its directory.
    fn stop(&mut self) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // SIGTERM lets dockerd stop containerd and unmount its layers.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Already gone is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // containerd and shims started by this daemon name its exec root on
        // their command lines; after a SIGKILL they would outlive it.
        for pid in processes_mentioning(self.dir.path()) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for DockerDaemon {
    fn drop(&mut self) {
        self.stop();
        // `dir` (a WorkDir) then unmounts what is left below it and removes it.
    }
}

/// The processes whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<rustix::process::Pid> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .windows(needle.len())
                .any(|w| w == needle)
                .then(|| rustix::process::Pid::from_raw(pid))
                .flatten()
        })
        .filter(|pid| pid.as_raw_nonzero().get() != std::process::id() as i32)
        .collect()
}

fn client_program() -> PathBuf {
    if let Some(cli) = std::env::var_os("KILN_DOCKER_CLI") {
        return PathBuf::from(cli);
    }
    if Path::new(DEBIAN_DOCKER_CLI).exists() {
        PathBuf::from(DEBIAN_DOCKER_CLI)
    } else {
        PathBuf::from("docker")
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The kind of a file in a flattened image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
}

/// One path of a flattened image: what a container would see, minus times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatFile {
    pub kind: FileKind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of content (regular files; 0 otherwise).
    pub size: u64,
    /// The target of a symlink.
    pub link_target: Option<String>,
    /// `sha256:<hex>` of a regular file's content.
    pub sha256: Option<String>,
    /// The other paths that are hard links to the same file, sorted.
    pub hard_links: Vec<String>,
    /// Extended attributes (PAX `SCHILY.xattr.*`), e.g. `security.capability`.
    pub xattrs: std::collections::BTreeMap<String, Vec<u8>>,
}

/// An image read from a `docker save` / `docker-archive` tar: its config and
/// its layers applied in order (whiteouts and opaque directories honoured).
#[derive(Debug, Clone)]
pub struct FlatImage {
    /// The image config JSON.
    pub config: serde_json::Value,
    /// Every path below the root (no leading `/`), sorted.
    pub files: std::collections::BTreeMap<String, FlatFile>,
    /// How many layers the archive holds.
    pub layer_count: usize,
}

/// Reads a docker-archive (as `docker save` and `skopeo copy
/// docker-archive:` write it; gzip or plain layers) and flattens it. The
/// archive is unpacked into a scratch directory below `scratch_parent`.
pub fn flatten_docker_archive(archive: &Path, scratch_parent: &Path) -> Result<FlatImage, Error> {
    let scratch = WorkDir::new_in(scratch_parent, "flatten-")?;
    let outer = fs::File::open(archive).map_err(Error::io("open", archive))?;
    tar::Archive::new(std::io::BufReader::new(outer))
        .unpack(scratch.path())
        .map_err(Error::io("unpack", archive))?;
    let manifest_path = scratch.path().join("manifest.json");
    let manifest: serde_json::Value = read_json(&manifest_path)?;
    let malformed = |field| Error::MalformedLayout {
        layout: archive.to_path_buf(),
        blob: "manifest.json".to_string(),
        field,
    };
    let image = manifest
        .as_array()
        .and_then(|images| images.first())
        .ok_or_else(|| malformed("first image"))?;
    let config_name = image["Config"]
        .as_str()
        .ok_or_else(|| malformed("Config"))?;
    let config = read_json(&scratch.path().join(config_name))?;
    let layers: Vec<&str> = image["Layers"]
        .as_array()
        .ok_or_else(|| malformed("Layers"))?
        .iter()
        .map(|layer| layer.as_str().ok_or_else(|| malformed("Layers")))
        .collect::<Result<_, _>>()?;
    let mut tree = Tree::default();
    for layer in &layers {
        let path = scratch.path().join(layer);
        tree.apply_layer(&path)
            .map_err(Error::io("apply layer", &path))?;
    }
    Ok(FlatImage {
        config,
        files: tree.finish(),
        layer_count: layers.len(),
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, Error> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A file tree being flattened; hard links share an inode number.
#[derive(Default)]
struct Tree {
    files: std::collections::BTreeMap<String, (u64, FlatFile)>,
    next_inode: u64,
}

impl Tree {
    fn apply_layer(&mut self, path: &Path) -> std::io::Result<()> {
        use std::io::{BufRead, BufReader, Read};
        let mut reader = BufReader::new(fs::File::open(path)?);
        let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::GzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        let mut archive = tar::Archive::new(reader);
        // Whiteouts apply to the layers below only: collect them first, so
        // an opaque marker after its directory's new entries removes nothing
        // this layer adds.
        let mut added: Vec<(String, (u64, FlatFile))> = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        let mut emptied: Vec<String> = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            if path.is_empty() {
                continue;
            }
            let (parent, name) = match path.rsplit_once('/') {
                Some((parent, name)) => (parent.to_string(), name),
                None => (String::new(), path.as_str()),
            };
            if name == ".wh..wh..opq" {
                emptied.push(parent);
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                removed.push(join(&parent, hidden));
                continue;
            }
            let header = entry.header();
            let mode = header.mode()? & 0o7777;
            let uid = header.uid()?;
            let gid = header.gid()?;
            let entry_type = header.entry_type();
            let mut xattrs = std::collections::BTreeMap::new();
            if let Some(extensions) = entry.pax_extensions()? {
                for extension in extensions {
                    let extension = extension?;
                    if let Some(name) = extension
                        .key()
                        .ok()
                        .and_then(|k| k.strip_prefix("SCHILY.xattr."))
                    {
                        xattrs.insert(name.to_string(), extension.value_bytes().to_vec());
                    }
                }
            }
            let kind_of = |kind: FileKind| FlatFile {
                kind,
                mode,
                uid,
                gid,
                size: 0,
                link_target: None,
                sha256: None,
                hard_links: Vec::new(),
                xattrs: xattrs.clone(),
            };
            let file = match entry_type {
                tar::EntryType::Link => {
                    let target = normalize(&String::from_utf8_lossy(
                        &entry.link_name_bytes().unwrap_or_default(),
                    ));
                    let found = added
                        .iter()
                        .rev()
                        .find(|(p, _)| *p == target)
                        .map(|(_, f)| f.clone())
                        .or_else(|| self.files.get(&target).cloned());
                    match found {
                        Some(linked) => {
                            added.push((path, linked));
                            continue;
                        }
                        None => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("hard link {path} to missing {target}"),
                            ));
                        }
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
                    let mut buffer = vec![0u8; 64 * 1024];
                    let mut size = 0u64;
                    loop {
                        let n = entry.read(&mut buffer)?;
                        if n == 0 {
                            break;
                        }
                        context.update(&buffer[..n]);
                        size += n as u64;
                    }
                    FlatFile {
                        size,
                        sha256: Some(format!("sha256:{}", hex::encode(context.finish()))),
                        ..kind_of(FileKind::File)
                    }
                }
                tar::EntryType::Directory => kind_of(FileKind::Directory),
                tar::EntryType::Symlink => FlatFile {
                    link_target: Some(
                        String::from_utf8_lossy(&entry.link_name_bytes().unwrap_or_default())
                            .into_owned(),
                    ),
                    ..kind_of(FileKind::Symlink)
                },
                tar::EntryType::Fifo => kind_of(FileKind::Fifo),
                tar::EntryType::Char => kind_of(FileKind::CharDevice),
                tar::EntryType::Block => kind_of(FileKind::BlockDevice),
                other => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{path}: unexpected tar entry type {other:?}"),
                    ));
                }
            };
            self.next_inode += 1;
            added.push((path, (self.next_inode, file)));
        }
        for dir in emptied {
            let prefix = format!("{dir}/");
            self.files
                .retain(|p, _| !(p.starts_with(&prefix) || (dir.is_empty() && !p.is_empty())));
        }
        for gone in removed {
            let prefix = format!("{gone}/");
            self.files
                .retain(|p, _| p != &gone && !p.starts_with(&prefix));
        }
        for (path, file) in added {
            // A non-directory replacing a directory replaces its contents too.
            if file.1.kind != FileKind::Directory
                && self
                    .files
                    .get(&path)
                    .is_some_and(|(_, old)| old.kind == FileKind::Directory)
            {
                let prefix = format!("{path}/");
                self.files.retain(|p, _| !p.starts_with(&prefix));
            }
            self.files.insert(path, file);
        }
        Ok(())
    }

    fn finish(self) -> std::collections::BTreeMap<String, FlatFile> {
        let mut by_inode: std::collections::HashMap<u64, Vec<String>> =
            std::collections::HashMap::new();
        for (path, (inode, file)) in &self.files {
            if file.kind == FileKind::File {
                by_inode.entry(*inode).or_default().push(path.clone());
            }
        }
        self.files
            .into_iter()
            .map(|(path, (inode, mut file))| {
                if let Some(group) = by_inode.get(&inode) {
                    file.hard_links = group.iter().filter(|p| **p != path).cloned().collect();
                }
                (path, file)
            })
            .collect()
    }
}

fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    parts.join("/")
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, content, link) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(*kind);
            header.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o4750
            });
            header.set_uid(7);
            header.set_gid(8);
            header.set_size(content.len() as u64);
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn archive(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
        let path = dir.join("image.tar");
        let mut builder = tar::Builder::new(fs::File::create(&path).unwrap());
        let names: Vec<String> = (0..layers.len())
            .map(|i| format!("{i}/layer.tar"))
            .collect();
        let manifest = serde_json::json!([{"Config": "config.json", "Layers": names}]);
        let mut put = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, bytes).unwrap();
        };
        put("manifest.json", manifest.to_string().as_bytes());
        put("config.json", br#"{"config":{"Cmd":["sh"]}}"#);
        for (name, bytes) in names.iter().zip(layers) {
            put(name, bytes);
        }
        builder.finish().unwrap();
        path
    }

    #[test]
    fn layers_flatten_with_whiteouts_opaque_dirs_and_hard_links() {
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        let lower = layer(&[
            ("etc/", Directory, b"", ""),
            ("etc/a", Regular, b"a", ""),
            ("etc/b", Regular, b"b", ""),
            ("opt/", Directory, b"", ""),
            ("opt/old", Regular, b"old", ""),
            ("opt/sub/", Directory, b"", ""),
            ("opt/sub/deep", Regular, b"deep", ""),
        ]);
        let upper = layer(&[
            ("etc/.wh.a", Regular, b"", ""),
            ("etc/c", Regular, b"cc", ""),
            ("etc/d", Link, b"", "etc/c"),
            ("etc/l", Symlink, b"", "../etc/c"),
            ("opt/new", Regular, b"new", ""),
            ("opt/.wh..wh..opq", Regular, b"", ""),
        ]);
        let path = archive(dir.path(), &[lower, upper]);
        let flat = flatten_docker_archive(&path, dir.path()).unwrap();
        assert_eq!(flat.layer_count, 2);
        assert_eq!(flat.config["config"]["Cmd"][0], "sh");
        let paths: Vec<&str> = flat.files.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            ["etc", "etc/b", "etc/c", "etc/d", "etc/l", "opt", "opt/new"]
        );
        let c = &flat.files["etc/c"];
        assert_eq!(
            (c.kind, c.mode, c.uid, c.gid, c.size),
            (FileKind::File, 0o4750, 7, 8, 2)
        );
        assert_eq!(c.hard_links, ["etc/d"]);
        assert_eq!(flat.files["etc/d"].hard_links, ["etc/c"]);
        assert_eq!(flat.files["etc/d"].sha256, c.sha256);
        assert_eq!(
            c.sha256.as_deref(),
            Some("sha256:355b1bbfc96725cdce8f4a2708fda310a80e6d13315aec4e5eed2a75fe8032ce")
        );
        assert_eq!(flat.files["etc/l"].link_target.as_deref(), Some("../etc/c"));
        assert!(flat.files["etc/b"].hard_links.is_empty());
    }

    #[test]
    fn daemon_starts_answers_and_leaves_nothing_behind() {
        let daemon = match DockerDaemon::start() {
            Ok(daemon) => daemon,
            Err(DockerError::Unavailable { reason }) => {
                eprintln!("skipping: {reason}");
                return;
            }
            Err(error) => panic!("{error}"),
        };
        let dir = daemon.dir.path().to_path_buf();
        let version = daemon
            .docker_ok(["version", "--format", "{{.Server.Version}}"])
            .unwrap();
        assert!(
            version.trim().starts_with(|c: char| c.is_ascii_digit()),
            "{version}"
        );
        assert!(!processes_mentioning(&dir).is_empty(), "containerd runs");
        drop(daemon);
        assert!(processes_mentioning(&dir).is_empty());
        assert!(!dir.exists(), "{} removed", dir.display());
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize("./etc/x/"), "etc/x");
        assert_eq!(normalize("/a/./.wh.b"), "a/.wh.b");
        assert_eq!(normalize("."), "");
    }
}
