//! What a `RUN` step needs: the rootfs, the command, its environment and its mounts.
//!
//! Everything here is plain data the caller fills in; [`super::run`] validates it
//! (absolute paths, no NUL bytes, a non-empty argv) before starting anything.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One `RUN` step to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The filesystem the step sees as `/`.
    pub rootfs: Rootfs,
    /// The final argv; shell form is already `[shell..., "-c", cmd]`. `argv[0]` without a
    /// `/` is looked up in the `PATH` of [`RunSpec::env`] (inside the rootfs).
    pub argv: Vec<String>,
    /// The step's environment, exactly: nothing of the host's environment is added.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the rootfs; created (as root, mode 0755) when
    /// missing, as Docker does.
    pub cwd: PathBuf,
    /// Who the step runs as.
    pub user: User,
    /// The UTS hostname of the step (`buildkitsandbox` in BuildKit); empty keeps the host's.
    pub hostname: String,
    pub network: Network,
    /// Docker's default confinement, or `RUN --security=insecure`.
    pub security: Security,
    /// Extra mounts (`RUN --mount`), applied in order after the default ones.
    pub mounts: Vec<Mount>,
    /// Extra `/etc/hosts` entries (`--add-host NAME:IP`).
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Size limit of the `/dev/shm` tmpfs in bytes (`--shm-size`); `None` (or 0, as
    /// in Docker) is [`DEFAULT_SHM_SIZE`].
    pub shm_size: Option<u64>,
}

/// Docker's default size of `/dev/shm` in a container or build step: 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// The root filesystem of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// Stack `lowers` (top-most first) under a fresh `upper` with overlayfs. After the step
    /// `upper` is the layer diff: whiteouts are `0:0` character devices, opaque
    /// directories carry the [`super::OVERLAY_OPAQUE_XATTR`] xattr. `work` is overlayfs'
    /// scratch directory, on the same filesystem as `upper`, empty.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// Fallback copy mode: a full copy the step may modify in place.
    Dir(PathBuf),
}

/// A numeric identity, as `runc` applies it: `setgroups(additional_gids)`, then gid,
/// then uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Home directory from the image's `/etc/passwd` (`/` when not found). The executor
    /// does not add `HOME` itself (the environment is exactly [`RunSpec::env`]); callers
    /// set `HOME` from this when the image's environment lacks it, as runc does.
    pub home: String,
}

impl User {
    /// uid 0, gid 0, no supplementary groups, home `/root`.
    pub fn root() -> User {
        User {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/root".to_owned(),
        }
    }
}

/// Network of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace (Docker's default for builds).
    #[default]
    Host,
    /// A new, empty network namespace with only `lo`, up.
    None,
}

/// How confined a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Docker's default capability set, read-only `/sys`.
    #[default]
    Sandbox,
    /// `RUN --security=insecure` (granted with `--allow security.insecure`): the step
    /// keeps every capability kiln itself has (so it may mount, load BPF, …) and `/sys`
    /// is writable. Namespaces stay as in [`Security::Sandbox`]; kiln applies no
    /// seccomp filter in either mode.
    Insecure,
}

/// An extra mount for `RUN --mount`. Targets are absolute paths inside the rootfs,
/// resolved inside it (symlinks cannot lead out). Missing targets are created for the
/// duration of the step only: they never appear in the layer diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// Bind `source` (host path, file or directory, recursively) at `target`.
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        target: PathBuf,
        size: Option<u64>,
        mode: u32,
    },
    /// A read-only file whose contents are copied from the host file `source` onto a
    /// private tmpfs (never onto disk in the rootfs), owned by `uid:gid` with `mode`.
    SecretFile {
        source: PathBuf,
        target: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl Mount {
    pub fn target(&self) -> &std::path::Path {
        match self {
            Mount::Bind { target, .. }
            | Mount::Tmpfs { target, .. }
            | Mount::SecretFile { target, .. } => target,
        }
    }
}

/// Which output stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the step's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code: {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// The result of a step that ran (whatever its exit status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: ExitStatus,
}

/// Cancels running steps from another thread (Ctrl-C, SIGTERM, a failed sibling).
///
/// Cheap to clone; all clones share one flag. Once cancelled it stays cancelled: a
/// [`super::run`] given a cancelled token kills its step within ~50 ms and returns
/// [`super::Error::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    cancelled: Arc<AtomicBool>,
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}
