//! The sandbox setup, run in the child between `clone3` and `execve`.
//!
//! The child was created in new mount, pid (it is pid 1), ipc, uts and — for
//! `Network::None` — net namespaces. It works through a [`Prepared`] plan built by the
//! parent, making every call through [`Syscall`]:
//!
//! 1. parent-death signal, `umask(0)`, `lo` up (new net ns), `/` made `MS_REC|MS_PRIVATE`
//!    so nothing propagates back to the host;
//! 2. the rootfs mounted at the host mountpoint (overlayfs, or a recursive bind of the
//!    directory), secrets copied onto a private tmpfs;
//! 3. the mount plan (proc, a tmpfs `/dev` with bound host devices, devpts, shm,
//!    mqueue, sys, resolv.conf, hosts, `RUN --mount`s), each target resolved inside
//!    the rootfs with `openat2(RESOLVE_IN_ROOT)` and mounted through
//!    `/proc/self/fd/N`, so an image's symlinks cannot redirect a mount to the host;
//! 4. `pivot_root(".", ".")` + lazy unmount of the old root (or, where pivot_root is
//!    impossible — a rootfs on the initramfs — `MS_MOVE` + `chroot`);
//! 5. hostname, working directory (created), stdio, `setsid`;
//! 6. capabilities: the bounding set is reduced to Docker's default set, the
//!    inheritable and ambient sets are emptied; `execve` then gives uid 0 exactly the
//!    bounding set and any other uid none, as in Docker;
//! 7. `setgroups`, `setresgid`, `setresuid`, `umask(022)`, every inherited descriptor
//!    marked close-on-exec, and `execve` over the `PATH` candidates.
//!
//! Nothing here allocates: all strings were built before the fork. On failure the
//! child returns a [`Failure`] that the caller sends to the parent.

use std::convert::Infallible;
use std::ffi::{CStr, CString};

use super::SetupStage;
use super::syscall::{CStringArray, Errno, Fd, Syscall};

/// The parent-built plan for one step.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// A fresh network namespace was requested: bring `lo` up.
    pub new_network: bool,
    /// Host directory where the rootfs is mounted before `pivot_root`.
    pub mountpoint: CString,
    pub rootfs: RootfsMount,
    pub secrets: Option<Secrets>,
    pub ops: Vec<Op>,
    pub hostname: Option<CString>,
    /// `/a`, `/a/b`, … of the working directory, created in order (EEXIST is fine).
    pub workdir_prefixes: Vec<CString>,
    pub workdir: CString,
    /// Capabilities removed from the bounding set.
    pub drop_capabilities: Vec<u32>,
    /// `None` where `setgroups` is denied (single-id user namespace).
    pub groups: Option<Vec<u32>>,
    pub uid: u32,
    pub gid: u32,
    /// Paths tried with `execve` in order (one, or `PATH` lookup candidates).
    pub exec_candidates: Vec<CString>,
    pub argv: CStringArray,
    pub envp: CStringArray,
}

#[derive(Debug)]
pub(crate) enum RootfsMount {
    /// `mount("overlay", mountpoint, "overlay", 0, options)`.
    Overlay { options: CString },
    /// Option string longer than a page: the new mount API with `lowerdir+`.
    OverlayFsconfig {
        lowers: Vec<CString>,
        upper: CString,
        work: CString,
    },
    /// Recursive bind of a directory (copy mode).
    Bind { source: CString },
}

/// Secret files copied onto a tmpfs mounted (privately) on a host directory.
#[derive(Debug)]
pub(crate) struct Secrets {
    pub tmpfs: CString,
    pub files: Vec<SecretCopy>,
}

#[derive(Debug)]
pub(crate) struct SecretCopy {
    pub source: CString,
    pub dest: CString,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug)]
pub(crate) enum Op {
    Mount(MountOp),
    /// `symlinkat(target, <dir resolved in root>, name)`.
    Symlink {
        dir: CString,
        name: CString,
        target: CString,
    },
}

#[derive(Debug)]
pub(crate) struct MountOp {
    /// Target relative to the rootfs root (`proc`, `dev/pts`, `etc/resolv.conf`).
    pub target: CString,
    /// Create the target in its parent first (only inside kiln's own tmpfs `/dev`).
    pub create: Option<Create>,
    pub source: Option<CString>,
    pub fstype: Option<CString>,
    pub flags: u64,
    pub data: Option<CString>,
    pub readonly: Readonly,
    /// What a failure of this op means.
    pub optional: Optional,
}

#[derive(Debug)]
pub(crate) struct Create {
    pub parent: CString,
    pub name: CString,
    pub directory: bool,
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readonly {
    No,
    /// `mount_setattr(RDONLY)` on the new mount.
    Mount,
    /// … on the new mount and everything below it.
    Recursive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Optional {
    /// Any failure fails the step.
    No,
    /// Skip when the target does not resolve (e.g. a dangling `/etc/resolv.conf`
    /// symlink in the image).
    IfTargetMissing,
    /// Skip on any failure (`/sys` where the kernel refuses it).
    Always,
}

/// Where and why the setup failed; sent to the parent as 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub stage: SetupStage,
    /// Index into [`Prepared::ops`] / secrets / exec candidates, or `u32::MAX`.
    pub index: u32,
    pub errno: Errno,
}

impl Failure {
    pub(crate) const ENCODED_LEN: usize = 12;

    fn new(stage: SetupStage, index: usize, errno: Errno) -> Failure {
        Failure {
            stage,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            errno,
        }
    }

    fn at(stage: SetupStage) -> impl Fn(Errno) -> Failure {
        move |errno| Failure::new(stage, usize::MAX, errno)
    }

    pub(crate) fn encode(&self) -> [u8; Failure::ENCODED_LEN] {
        let mut bytes = [0u8; Failure::ENCODED_LEN];
        let fields = [
            self.stage as u32,
            self.index,
            self.errno.raw_os_error() as u32,
        ];
        for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&field.to_ne_bytes());
        }
        bytes
    }

    pub(crate) fn decode(bytes: &[u8; Failure::ENCODED_LEN]) -> Option<Failure> {
        let field = |i: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[i * 4..i * 4 + 4]);
            u32::from_ne_bytes(word)
        };
        Some(Failure {
            stage: SetupStage::from_u32(field(0))?,
            index: field(1),
            errno: Errno::from_raw_os_error(field(2) as i32),
        })
    }
}

/// The descriptors the step gets as 0, 1, 2 (all ≥ 3 in the child, so `dup2` order
/// cannot clobber one with another).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildFds {
    pub stdin: Fd,
    pub stdout: Fd,
    pub stderr: Fd,
}

/// Default Docker capabilities (moby `oci/caps/defaults.go`).
pub(crate) const DOCKER_DEFAULT_CAPABILITIES: [u32; 14] = [
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// Run the whole setup and `execve`; returns only on failure.
pub(crate) fn setup_and_exec(plan: &Prepared, fds: ChildFds, sys: &dyn Syscall) -> Failure {
    match setup(plan, fds, sys) {
        Ok(never) => match never {},
        Err(failure) => failure,
    }
}

/// `/proc/self/fd/N` for a descriptor, formatted on the stack.
struct FdPath {
    bytes: [u8; 32],
}

impl FdPath {
    fn new(fd: Fd) -> FdPath {
        let prefix = b"/proc/self/fd/";
        let mut bytes = [0u8; 32];
        bytes[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 10];
        let mut value = fd.unsigned_abs();
        let mut count = 0;
        loop {
            digits[count] = b'0' + (value % 10) as u8;
            count += 1;
            value /= 10;
            if value == 0 || count == digits.len() {
                break;
            }
        }
        for i in 0..count {
            bytes[prefix.len() + i] = digits[count - 1 - i];
        }
        FdPath { bytes }
    }

    fn as_cstr(&self) -> &CStr {
        // The buffer always holds a NUL after at most 24 bytes of text.
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"/proc/self/fd/")
    }
}

fn ignore_exists(result: Result<(), Errno>) -> Result<(), Errno> {
    match result {
        Err(errno) if errno == Errno::EXIST => Ok(()),
        other => other,
    }
}

const O_PATH_DIR: i32 = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;

fn setup(plan: &Prepared, fds: ChildFds, sys: &dyn Syscall) -> Result<Infallible, Failure> {
    use SetupStage as S;

    sys.set_parent_death_signal()
        .map_err(Failure::at(S::ParentDeathSignal))?;
    sys.umask(0);
    if plan.new_network {
        sys.loopback_up().map_err(Failure::at(S::Loopback))?;
    }
    sys.mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(Failure::at(S::MakeMountsPrivate))?;

    match &plan.rootfs {
        RootfsMount::Overlay { options } => sys.mount(
            Some(c"overlay"),
            &plan.mountpoint,
            Some(c"overlay"),
            0,
            Some(options),
        ),
        RootfsMount::OverlayFsconfig {
            lowers,
            upper,
            work,
        } => sys.mount_overlay_fsconfig(&plan.mountpoint, lowers, upper, work),
        RootfsMount::Bind { source } => sys.mount(
            Some(source),
            &plan.mountpoint,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        ),
    }
    .map_err(Failure::at(S::MountRootfs))?;
    let root = sys
        .open(&plan.mountpoint, O_PATH_DIR, 0)
        .map_err(Failure::at(S::OpenRootfs))?;

    if let Some(secrets) = &plan.secrets {
        copy_secrets(secrets, sys)?;
    }
    for (index, op) in plan.ops.iter().enumerate() {
        match op {
            Op::Mount(mount) => apply_mount(root, index, mount, sys)?,
            Op::Symlink { dir, name, target } => {
                let dir_fd = sys
                    .open_in_root(root, dir, O_PATH_DIR)
                    .map_err(|e| Failure::new(S::Symlink, index, e))?;
                let linked = ignore_exists(sys.symlinkat(target, dir_fd, name));
                sys.close(dir_fd);
                linked.map_err(|e| Failure::new(S::Symlink, index, e))?;
            }
        }
    }
    sys.close(root);

    sys.chdir(&plan.mountpoint)
        .map_err(Failure::at(S::PivotRoot))?;
    match sys.pivot_root(c".", c".") {
        Ok(()) => sys
            .umount(c".", libc::MNT_DETACH)
            .map_err(Failure::at(S::PivotRoot))?,
        // The rootfs cannot be pivoted away from (the host runs from the initramfs):
        // move the mount over `/` and chroot, as runc's no_pivot does.
        Err(errno) if errno == Errno::INVAL => {
            sys.mount(Some(c"."), c"/", None, libc::MS_MOVE, None)
                .map_err(Failure::at(S::PivotRoot))?;
            sys.chroot(c".").map_err(Failure::at(S::PivotRoot))?;
        }
        Err(errno) => return Err(Failure::new(S::PivotRoot, usize::MAX, errno)),
    }
    sys.chdir(c"/").map_err(Failure::at(S::PivotRoot))?;

    if let Some(hostname) = &plan.hostname {
        sys.sethostname(hostname.to_bytes())
            .map_err(Failure::at(S::Hostname))?;
    }
    for prefix in &plan.workdir_prefixes {
        ignore_exists(sys.mkdir(prefix, 0o755)).map_err(Failure::at(S::Workdir))?;
    }
    sys.chdir(&plan.workdir).map_err(Failure::at(S::Workdir))?;

    sys.dup2(fds.stdin, 0).map_err(Failure::at(S::Stdio))?;
    sys.dup2(fds.stdout, 1).map_err(Failure::at(S::Stdio))?;
    sys.dup2(fds.stderr, 2).map_err(Failure::at(S::Stdio))?;
    sys.setsid().map_err(Failure::at(S::NewSession))?;

    for &capability in &plan.drop_capabilities {
        match sys.drop_bounding_capability(capability) {
            // A capability this kernel does not know.
            Err(errno) if errno == Errno::INVAL => {}
            other => other.map_err(Failure::at(S::Capabilities))?,
        }
    }
    sys.clear_inheritable_and_ambient()
        .map_err(Failure::at(S::Capabilities))?;
    if let Some(groups) = &plan.groups {
        sys.setgroups(groups).map_err(Failure::at(S::Groups))?;
    }
    sys.setresgid(plan.gid).map_err(Failure::at(S::Gid))?;
    sys.setresuid(plan.uid).map_err(Failure::at(S::Uid))?;
    sys.umask(0o022);
    sys.cloexec_from(3).map_err(Failure::at(S::Stdio))?;

    // execvp's rules: keep looking past ENOENT/ENOTDIR/EACCES, report EACCES if seen.
    let mut denied = false;
    for (index, candidate) in plan.exec_candidates.iter().enumerate() {
        let errno = sys.execve(candidate, &plan.argv, &plan.envp);
        if errno == Errno::NOENT || errno == Errno::NOTDIR {
            continue;
        }
        if errno == Errno::ACCESS {
            denied = true;
            continue;
        }
        return Err(Failure::new(S::Exec, index, errno));
    }
    Err(Failure::new(
        S::Exec,
        usize::MAX,
        if denied { Errno::ACCESS } else { Errno::NOENT },
    ))
}

fn copy_secrets(secrets: &Secrets, sys: &dyn Syscall) -> Result<(), Failure> {
    use SetupStage as S;
    sys.mount(
        Some(c"tmpfs"),
        &secrets.tmpfs,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"mode=0700"),
    )
    .map_err(Failure::at(S::Secret))?;
    for (index, file) in secrets.files.iter().enumerate() {
        let fail = |errno| Failure::new(S::Secret, index, errno);
        let source = sys
            .open(&file.source, libc::O_RDONLY | libc::O_CLOEXEC, 0)
            .map_err(fail)?;
        let dest = match sys.open(
            &file.dest,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            file.mode,
        ) {
            Ok(fd) => fd,
            Err(errno) => {
                sys.close(source);
                return Err(fail(errno));
            }
        };
        let copied = sys
            .copy_contents(source, dest)
            .and_then(|()| sys.fchown(dest, file.uid, file.gid));
        sys.close(source);
        sys.close(dest);
        copied.map_err(fail)?;
    }
    Ok(())
}

fn apply_mount(root: Fd, index: usize, op: &MountOp, sys: &dyn Syscall) -> Result<(), Failure> {
    use SetupStage as S;
    let fail = |stage| move |errno| Failure::new(stage, index, errno);

    if let Some(create) = &op.create {
        let parent = sys
            .open_in_root(root, &create.parent, O_PATH_DIR)
            .map_err(fail(S::CreateMountpoint))?;
        let created = if create.directory {
            ignore_exists(sys.mkdirat(parent, &create.name, create.mode))
        } else {
            ignore_exists(
                sys.openat(
                    parent,
                    &create.name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                    create.mode,
                )
                .map(|fd| sys.close(fd)),
            )
        };
        sys.close(parent);
        created.map_err(fail(S::CreateMountpoint))?;
    }

    let target = match sys.open_in_root(root, &op.target, libc::O_PATH | libc::O_CLOEXEC) {
        Ok(fd) => fd,
        Err(errno)
            if op.optional != Optional::No
                && (errno == Errno::NOENT || errno == Errno::NOTDIR || errno == Errno::LOOP) =>
        {
            return Ok(());
        }
        Err(errno) => return Err(fail(S::ResolveMountTarget)(errno)),
    };
    let path = FdPath::new(target);
    let mounted = sys.mount(
        op.source.as_deref(),
        path.as_cstr(),
        op.fstype.as_deref(),
        op.flags,
        op.data.as_deref(),
    );
    sys.close(target);
    match mounted {
        Ok(()) => {}
        Err(_) if op.optional == Optional::Always => return Ok(()),
        Err(errno) => return Err(fail(S::Mount)(errno)),
    }

    if op.readonly != Readonly::No {
        // Reopen: the descriptor taken before the mount names the covered directory.
        let mounted = sys
            .open_in_root(root, &op.target, libc::O_PATH | libc::O_CLOEXEC)
            .map_err(fail(S::MakeReadonly))?;
        let result = sys.make_readonly(mounted, op.readonly == Readonly::Recursive);
        sys.close(mounted);
        match result {
            Ok(()) => {}
            Err(_) if op.optional == Optional::Always => {}
            Err(errno) => return Err(fail(S::MakeReadonly)(errno)),
        }
    }
    Ok(())
}
