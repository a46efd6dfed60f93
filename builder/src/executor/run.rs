//! The parent side of a step: prepare, start the sandbox, stream its output, wait.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use super::child::{self, ChildFds, Failure};
use super::prepare::{self, HostInfo, RunPaths};
use super::stubs::{self, DirStubs};
use super::sys::{self, RealSyscall};
use super::{
    CancelToken, Error, ExitStatus, Network, Rootfs, RunOutcome, RunSpec, SetupStage, Stream,
};

/// How often a running step checks its [`CancelToken`].
const CANCEL_POLL_MS: i64 = 50;

/// After pid 1 exits the kernel kills the rest of the pid namespace; output still
/// buffered in the pipes is read for at most this long.
const DRAIN_AFTER_EXIT_MS: i64 = 2000;

fn prepare_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Prepare { what, path, source }
}

fn errno_error(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> Error {
    move |errno| Error::Io {
        what,
        source: errno.into(),
    }
}

/// Run one step (see the module docs of [`super`]). Blocks until the step ends;
/// `output` receives stdout and stderr chunks as they arrive.
///
/// The thread calling `run` must live until it returns: the step is killed (parent
/// death signal) when that thread exits.
pub fn run(
    spec: &RunSpec,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<RunOutcome, Error> {
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    prepare::validate(spec)?;
    let host = HostInfo::get();
    let scratch = scratch_base();
    let run_dir = tempfile::Builder::new()
        .prefix("kiln-run-")
        .tempdir_in(scratch)
        .map_err(prepare_error("creating run directory in", scratch))?;
    let mountpoint = run_dir.path().join("root");
    std::fs::create_dir(&mountpoint).map_err(prepare_error("creating", &mountpoint))?;

    let points = prepare::mountpoints(spec)?;
    let mut stub_lower = None;
    let mut dir_stubs: Option<DirStubs> = None;
    match &spec.rootfs {
        Rootfs::Overlay { work, .. } => {
            // A `volatile` mount leaves `work/incompat/volatile` in its work dir and overlayfs
            // refuses that dir again; a finished step's upper dir is complete (all its
            // processes are gone), so a caller reusing the pair gets the mark cleared.
            let mark = work.join("work").join("incompat");
            if mark.exists() {
                std::fs::remove_dir_all(&mark).map_err(prepare_error("clearing", &mark))?;
            }
            let stub = run_dir.path().join("stub");
            std::fs::create_dir(&stub).map_err(prepare_error("creating", &stub))?;
            stubs::create_stub_lower(&stub, &points)?;
            stub_lower = Some(stub);
        }
        Rootfs::Dir(dir) => dir_stubs = Some(DirStubs::create(dir, &points)?),
    }
    let secrets = run_dir.path().join("secrets");
    if spec
        .mounts
        .iter()
        .any(|mount| matches!(mount, super::Mount::SecretFile { .. }))
    {
        std::fs::create_dir(&secrets).map_err(prepare_error("creating", &secrets))?;
    }
    let hosts = hosts_file(spec, run_dir.path())?;
    let paths = RunPaths {
        mountpoint,
        stub_lower,
        secrets,
        hosts,
        resolv_conf: Some(PathBuf::from("/etc/resolv.conf")).filter(|path| path.exists()),
    };
    let plan = prepare::prepare(spec, &points, &paths, host)?;

    let mut reports = Vec::new();
    let result = start_and_wait(spec, &plan, cancel, output, &mut reports);
    stubs::remove_created(&spec.rootfs, &parse_reports(&reports));
    if let Some(stubs) = dir_stubs {
        stubs.remove();
    }
    drop(run_dir);
    result
}

/// The paths in the child's mountpoint reports (`u16` length + path records).
fn parse_reports(mut bytes: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut paths = Vec::new();
    while let Some((length, rest)) = bytes.split_first_chunk::<2>() {
        let length = usize::from(u16::from_ne_bytes(*length));
        let Some(path) = rest.get(..length) else {
            break;
        };
        paths.push(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
        bytes = &rest[length..];
    }
    paths
}

/// Where the per-run scratch directories go (a mountpoint, the stub lower dir, a
/// hosts file: a handful of empty entries, created and removed for every step): a
/// tmpfs when there is one, because on a disk filesystem (ext4 mounted with
/// `discard`, here) each create/remove costs milliseconds. `/dev/shm`, then
/// `$XDG_RUNTIME_DIR`, then the temporary directory.
fn scratch_base() -> &'static Path {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        // `f_type`'s integer type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let on_tmpfs = |path: &Path| {
            rustix::fs::statfs(path)
                .map(|fs| fs.f_type as i64 == libc::TMPFS_MAGIC as i64)
                .unwrap_or(false)
                && tempfile::Builder::new()
                    .prefix("kiln-probe-")
                    .tempdir_in(path)
                    .is_ok()
        };
        let candidates = [
            Some(PathBuf::from("/dev/shm")),
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|path| on_tmpfs(path))
            .unwrap_or_else(std::env::temp_dir)
    })
}

/// The host's `/etc/hosts` (if any), or — with extra hosts — a copy of it with them
/// appended.
fn hosts_file(spec: &RunSpec, run_dir: &Path) -> Result<Option<PathBuf>, Error> {
    let host_hosts = PathBuf::from("/etc/hosts");
    if spec.extra_hosts.is_empty() {
        return Ok(Some(host_hosts).filter(|path| path.exists()));
    }
    let mut contents = std::fs::read(&host_hosts).unwrap_or_default();
    if !contents.is_empty() && !contents.ends_with(b"\n") {
        contents.push(b'\n');
    }
    for (name, address) in &spec.extra_hosts {
        contents.extend(format!("{address}\t{name}\n").as_bytes());
    }
    let path = run_dir.join("hosts");
    let mut file = std::fs::File::create(&path).map_err(prepare_error("creating", &path))?;
    file.write_all(&contents)
        .map_err(prepare_error("writing", &path))?;
    Ok(Some(path))
}

/// A pipe whose child end is moved to a descriptor ≥ 3.
fn pipe_above_stdio() -> Result<(OwnedFd, OwnedFd), Error> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(errno_error("creating a pipe"))?;
    let write = rustix::io::fcntl_dupfd_cloexec(&write, 3).map_err(errno_error("moving a pipe"))?;
    Ok((read, write))
}

fn namespace_flags(network: Network) -> u64 {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    flags as u64
}

fn start_and_wait(
    spec: &RunSpec,
    plan: &child::Prepared,
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
    reports: &mut Vec<u8>,
) -> Result<RunOutcome, Error> {
    let (stdout_read, stdout_write) = pipe_above_stdio()?;
    let (report_read, report_write) = pipe_above_stdio()?;
    let (stderr_read, stderr_write) = pipe_above_stdio()?;
    let (error_read, error_write) = pipe_above_stdio()?;
    let dev_null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno_error("opening /dev/null"))?;
    let stdin =
        rustix::io::fcntl_dupfd_cloexec(&dev_null, 3).map_err(errno_error("moving /dev/null"))?;

    let fds = ChildFds {
        stdin: stdin.as_raw_fd(),
        stdout: stdout_write.as_raw_fd(),
        stderr: stderr_write.as_raw_fd(),
        report: report_write.as_raw_fd(),
    };
    let error_fd = error_write.as_raw_fd();
    let (pid, pidfd) = sys::spawn_sandbox(namespace_flags(spec.network), || {
        let failure = child::setup_and_exec(plan, fds, &RealSyscall);
        sys::write_all_raw(error_fd, &failure.encode());
        126
    })
    .map_err(|source| Error::Spawn { source })?;
    drop((
        stdout_write,
        stderr_write,
        report_write,
        error_write,
        stdin,
        dev_null,
    ));

    let sources = [
        (&stdout_read, Source::Output(Stream::Stdout)),
        (&stderr_read, Source::Output(Stream::Stderr)),
        (&report_read, Source::Reports),
    ];
    let waited = pump(pid, &pidfd, sources, cancel, output, reports);
    let status = match waited {
        Ok(status) => status,
        Err(error) => {
            // Make sure nothing outlives us, then report.
            let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
            return Err(error);
        }
    };

    let mut record = [0u8; Failure::ENCODED_LEN];
    let mut error_file = std::fs::File::from(error_read);
    if std::io::Read::read_exact(&mut error_file, &mut record).is_ok()
        && let Some(failure) = Failure::decode(&record)
    {
        return Err(setup_error(spec, plan, failure));
    }
    Ok(RunOutcome { status })
}

fn setup_error(spec: &RunSpec, plan: &child::Prepared, failure: Failure) -> Error {
    let source = std::io::Error::from(failure.errno);
    let program = spec.argv.first().cloned().unwrap_or_default();
    if failure.stage == SetupStage::Exec {
        if failure.errno == rustix::io::Errno::NOENT && !program.contains('/') {
            return Error::ExecNotFound { program };
        }
        return Error::Exec { program, source };
    }
    let target = match failure.stage {
        SetupStage::CreateMountpoint
        | SetupStage::ResolveMountTarget
        | SetupStage::Mount
        | SetupStage::MakeReadonly
        | SetupStage::Symlink => prepare::op_target(plan, failure.index),
        SetupStage::Workdir => Some(spec.cwd.clone()),
        SetupStage::Secret => spec
            .mounts
            .iter()
            .filter(|mount| matches!(mount, super::Mount::SecretFile { .. }))
            .nth(failure.index as usize)
            .map(|mount| mount.target().to_owned()),
        _ => None,
    };
    Error::Setup {
        stage: failure.stage,
        target,
        source,
    }
}

fn exit_status(status: rustix::process::WaitStatus) -> ExitStatus {
    if let Some(signal) = status.terminating_signal() {
        ExitStatus::Signal(signal)
    } else {
        ExitStatus::Code(status.exit_status().unwrap_or(-1))
    }
}

/// What a pipe from the child carries.
#[derive(Debug, Clone, Copy)]
enum Source {
    Output(Stream),
    /// Mountpoints the child created (see `child::create_target`).
    Reports,
}

/// Stream the output until the step has exited and its pipes are drained; kill it on
/// cancellation.
fn pump(
    pid: Pid,
    pidfd: &OwnedFd,
    sources: [(&OwnedFd, Source); 3],
    cancel: &CancelToken,
    output: &mut dyn FnMut(Stream, &[u8]),
    reports: &mut Vec<u8>,
) -> Result<ExitStatus, Error> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut open = [true; 3];
    let mut exited: Option<ExitStatus> = None;
    let mut killed = false;
    let mut drain_deadline: Option<std::time::Instant> = None;
    loop {
        if exited.is_some() && open == [false; 3] {
            break;
        }
        if let Some(deadline) = drain_deadline
            && std::time::Instant::now() >= deadline
        {
            break;
        }
        if cancel.is_cancelled() && !killed && exited.is_none() {
            rustix::process::pidfd_send_signal(pidfd, Signal::KILL).map_err(|errno| {
                Error::Wait {
                    what: "killing the cancelled step",
                    source: errno.into(),
                }
            })?;
            killed = true;
        }

        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
        let mut owners: Vec<Option<usize>> = Vec::with_capacity(4);
        for (i, (fd, _)) in sources.iter().enumerate() {
            if open[i] {
                fds.push(PollFd::new(*fd, PollFlags::IN));
                owners.push(Some(i));
            }
        }
        if exited.is_none() {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
            owners.push(None);
        }
        let timeout = if exited.is_some() {
            100
        } else {
            CANCEL_POLL_MS
        };
        let timeout = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: timeout * 1_000_000,
        };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => {
                return Err(Error::Wait {
                    what: "polling the step's output",
                    source: errno.into(),
                });
            }
        }
        let ready: Vec<(Option<usize>, PollFlags)> = fds
            .iter()
            .zip(&owners)
            .map(|(fd, owner)| (*owner, fd.revents()))
            .collect();
        drop(fds);
        for (owner, revents) in ready {
            if revents.is_empty() {
                continue;
            }
            match owner {
                Some(i) => {
                    let (fd, source) = sources[i];
                    match rustix::io::read(fd.as_fd(), &mut buffer) {
                        Ok(0) => open[i] = false,
                        Ok(n) => match source {
                            Source::Output(stream) => output(stream, &buffer[..n]),
                            Source::Reports => reports.extend_from_slice(&buffer[..n]),
                        },
                        Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                        Err(errno) => {
                            return Err(Error::Wait {
                                what: "reading the step's output",
                                source: errno.into(),
                            });
                        }
                    }
                }
                None => {
                    let waited = rustix::process::waitpid(Some(pid), WaitOptions::empty())
                        .map_err(|errno| Error::Wait {
                            what: "waiting for the step",
                            source: errno.into(),
                        })?;
                    if let Some((_, status)) = waited {
                        exited = Some(exit_status(status));
                        drain_deadline = Some(
                            std::time::Instant::now()
                                + std::time::Duration::from_millis(DRAIN_AFTER_EXIT_MS as u64),
                        );
                    }
                }
            }
        }
    }
    if killed {
        return Err(Error::Cancelled);
    }
    exited.ok_or(Error::Wait {
        what: "waiting for the step",
        source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
    })
}
