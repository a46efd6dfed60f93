//! The executor's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong preparing, running or resolving a step (a non-zero exit
/// of the step itself is not an error: see [`super::RunOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Docker's message for a user name missing from the image's `/etc/passwd`.
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },
    /// Docker's message for a group name missing from the image's `/etc/group`.
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },
    #[error("invalid user {spec:?}: {reason}")]
    InvalidUser { spec: String, reason: &'static str },
    #[error("reading {path}: {source}")]
    ReadRootfsFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the step has an empty argv")]
    EmptyArgv,
    #[error("{what} must be an absolute path, got {path:?}")]
    RelativePath { what: &'static str, path: PathBuf },
    #[error("{what} contains a NUL byte: {value:?}")]
    NulByte { what: &'static str, value: String },
    #[error("{what} {path}: {source}")]
    Prepare {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("starting the sandbox: {source}")]
    Spawn {
        #[source]
        source: io::Error,
    },
    /// A step of the sandbox setup failed in the child, before the command started.
    #[error("sandbox setup failed: {stage}{}: {source}", target.as_ref().map(|t| format!(" {}", t.display())).unwrap_or_default())]
    Setup {
        stage: SetupStage,
        target: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
    /// `argv[0]` has no `/` and is in none of the `PATH` directories (runc's wording).
    #[error("exec: {program:?}: executable file not found in $PATH")]
    ExecNotFound { program: String },
    #[error("exec {program:?}: {source}")]
    Exec {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Wait {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The [`super::CancelToken`] was cancelled; the step's processes were killed.
    #[error("the step was cancelled")]
    Cancelled,
    #[error("rootless: {what}: {source}")]
    Userns {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "rootless: user namespace re-exec did not give uid 0 (uid {uid}); is /proc/self/exe kiln?"
    )]
    UsernsNotRoot { uid: u32 },
    #[error("rootless: {program} failed ({status}); check /etc/subuid and /etc/subgid for {user}")]
    IdMapHelper {
        program: &'static str,
        user: String,
        status: std::process::ExitStatus,
    },
}

/// Where the in-child setup stopped (see [`Error::Setup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SetupStage {
    ParentDeathSignal = 1,
    Loopback,
    MakeMountsPrivate,
    MountRootfs,
    OpenRootfs,
    Secret,
    CreateMountpoint,
    ResolveMountTarget,
    Mount,
    MakeReadonly,
    Symlink,
    PivotRoot,
    Hostname,
    Workdir,
    Stdio,
    NewSession,
    Capabilities,
    Groups,
    Gid,
    Uid,
    Exec,
}

impl SetupStage {
    pub(crate) fn from_u32(value: u32) -> Option<SetupStage> {
        use SetupStage::*;
        const ALL: [SetupStage; 21] = [
            ParentDeathSignal,
            Loopback,
            MakeMountsPrivate,
            MountRootfs,
            OpenRootfs,
            Secret,
            CreateMountpoint,
            ResolveMountTarget,
            Mount,
            MakeReadonly,
            Symlink,
            PivotRoot,
            Hostname,
            Workdir,
            Stdio,
            NewSession,
            Capabilities,
            Groups,
            Gid,
            Uid,
            Exec,
        ];
        ALL.into_iter().find(|stage| *stage as u32 == value)
    }
}

impl std::fmt::Display for SetupStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            SetupStage::ParentDeathSignal => "setting the parent-death signal",
            SetupStage::Loopback => "bringing up lo",
            SetupStage::MakeMountsPrivate => "making mounts private",
            SetupStage::MountRootfs => "mounting the rootfs",
            SetupStage::OpenRootfs => "opening the rootfs",
            SetupStage::Secret => "copying a secret",
            SetupStage::CreateMountpoint => "creating mountpoint",
            SetupStage::ResolveMountTarget => "resolving mount target",
            SetupStage::Mount => "mounting",
            SetupStage::MakeReadonly => "making read-only",
            SetupStage::Symlink => "creating symlink",
            SetupStage::PivotRoot => "pivot_root",
            SetupStage::Hostname => "setting the hostname",
            SetupStage::Workdir => "creating the working directory",
            SetupStage::Stdio => "connecting stdio",
            SetupStage::NewSession => "setsid",
            SetupStage::Capabilities => "dropping capabilities",
            SetupStage::Groups => "setgroups",
            SetupStage::Gid => "setgid",
            SetupStage::Uid => "setuid",
            SetupStage::Exec => "exec",
        };
        f.write_str(text)
    }
}
