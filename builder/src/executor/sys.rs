//! The raw system calls: the only module of kiln allowed `unsafe`.
//!
//! - [`RealSyscall`]: the [`Syscall`] implementation used in the sandbox child.
//! - [`spawn_sandbox`]: `clone3` with the new namespaces; the child runs a closure and
//!   `_exit`s, it never returns into the caller.
//! - [`spawn_in_new_userns`], [`forward_signals_to`], [`die_like`]: the rootless re-exec.
//!
//! Why raw `syscall(2)` for the id changes: glibc's `setuid`/`setgroups` wrappers
//! broadcast the change to every thread glibc believes exists (`SIGSETXID`); the child
//! of `clone3` has one thread but inherits the parent's thread list, so the wrappers
//! could wait forever. Every call here is async-signal-safe and allocation-free.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};

use super::syscall::{CStringArray, Errno, Fd, Syscall};

fn errno() -> Errno {
    Errno::from_raw_os_error(
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn check(ret: libc::c_int) -> Result<(), Errno> {
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

fn check_long(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `struct clone_args` of `clone3(2)` (version 2, 88 bytes).
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `struct ifreq` reduced to what `SIOC[GS]IFFLAGS` use (40 bytes on 64-bit).
#[repr(C)]
struct IfreqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Linux capability header/data for `capget`/`capset` (version 3: two 32-bit words).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// The real system calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RealSyscall;

impl Syscall for RealSyscall {
    fn set_parent_death_signal(&self) -> Result<(), Errno> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) })
    }

    fn umask(&self, mask: u32) {
        // SAFETY: umask has no pointer arguments and cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        // SAFETY: socket with integer arguments.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(errno());
        }
        let mut request = IfreqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        for (slot, byte) in request.name.iter_mut().zip(b"lo") {
            *slot = *byte as libc::c_char;
        }
        // SAFETY: `request` is a valid, initialised ifreq-sized buffer the kernel reads
        // and writes for SIOCGIFFLAGS/SIOCSIFFLAGS; `sock` is our socket.
        let result = unsafe {
            if libc::ioctl(
                sock,
                libc::SIOCGIFFLAGS as _,
                &mut request as *mut IfreqFlags,
            ) < 0
            {
                Err(errno())
            } else {
                request.flags |= libc::IFF_UP as libc::c_short;
                check(libc::ioctl(
                    sock,
                    libc::SIOCSIFFLAGS as _,
                    &request as *const IfreqFlags,
                ))
            }
        };
        self.close(sock);
        result
    }

    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: every pointer is NULL or a NUL-terminated string borrowed for the call.
        check(unsafe {
            libc::mount(
                ptr(source),
                target.as_ptr(),
                ptr(fstype),
                flags as libc::c_ulong,
                ptr(data).cast(),
            )
        })
    }

    fn mount_overlay_fsconfig(
        &self,
        target: &CStr,
        lowers: &[CString],
        upper: &CStr,
        work: &CStr,
    ) -> Result<(), Errno> {
        // SAFETY: fsopen with a NUL-terminated name.
        let fs = check_long(unsafe {
            libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), libc::FSOPEN_CLOEXEC)
        })? as Fd;
        let set = |cmd: libc::c_uint, key: Option<&CStr>, value: Option<&CStr>| {
            let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
            // SAFETY: `fs` is our fs context; key/value are NULL or NUL-terminated.
            check_long(unsafe {
                libc::syscall(libc::SYS_fsconfig, fs, cmd, ptr(key), ptr(value), 0)
            })
            .map(drop)
        };
        let result = (|| {
            for lower in lowers {
                set(FSCONFIG_SET_STRING, Some(c"lowerdir+"), Some(lower))?;
            }
            set(FSCONFIG_SET_STRING, Some(c"upperdir"), Some(upper))?;
            set(FSCONFIG_SET_STRING, Some(c"workdir"), Some(work))?;
            set(FSCONFIG_SET_FLAG, Some(c"userxattr"), None)?;
            set(FSCONFIG_SET_FLAG, Some(c"volatile"), None)?;
            set(FSCONFIG_SET_STRING, Some(c"index"), Some(c"off"))?;
            set(FSCONFIG_SET_STRING, Some(c"metacopy"), Some(c"off"))?;
            set(
                FSCONFIG_SET_STRING,
                Some(c"redirect_dir"),
                Some(c"nofollow"),
            )?;
            set(FSCONFIG_CMD_CREATE, None, None)?;
            // SAFETY: fsmount on our configured context, integer flags.
            let mnt = check_long(unsafe {
                libc::syscall(libc::SYS_fsmount, fs, libc::FSMOUNT_CLOEXEC, 0)
            })? as Fd;
            // SAFETY: move the detached mount `mnt` onto `target` (NUL-terminated).
            let moved = check_long(unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    mnt,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                )
            });
            self.close(mnt);
            moved.map(drop)
        })();
        self.close(fs);
        result
    }

    fn open(&self, path: &CStr, flags: i32, mode: u32) -> Result<Fd, Errno> {
        // SAFETY: NUL-terminated path, integer flags and mode.
        let fd = unsafe { libc::open(path.as_ptr(), flags, mode as libc::c_uint) };
        if fd < 0 { Err(errno()) } else { Ok(fd) }
    }

    fn open_in_root(&self, root: Fd, path: &CStr, flags: i32) -> Result<Fd, Errno> {
        let how = OpenHow {
            flags: flags as u64,
            mode: 0,
            resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: `how` is a valid open_how of the size passed; path is NUL-terminated.
        let fd = check_long(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        })?;
        Ok(fd as Fd)
    }

    fn openat(&self, dir: Fd, name: &CStr, flags: i32, mode: u32) -> Result<Fd, Errno> {
        // SAFETY: NUL-terminated name, integer arguments.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, mode as libc::c_uint) };
        if fd < 0 { Err(errno()) } else { Ok(fd) }
    }

    fn mkdirat(&self, dir: Fd, name: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: NUL-terminated name, integer arguments.
        check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode as libc::mode_t) })
    }

    fn symlinkat(&self, target: &CStr, dir: Fd, name: &CStr) -> Result<(), Errno> {
        // SAFETY: NUL-terminated strings, integer dirfd.
        check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) })
    }

    fn close(&self, fd: Fd) {
        // SAFETY: closing a descriptor this code opened and no longer uses.
        unsafe { libc::close(fd) };
    }

    fn readlink(&self, path: &CStr, buffer: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: NUL-terminated path; the kernel writes at most `buffer.len()` bytes.
        let len =
            unsafe { libc::readlink(path.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
        if len < 0 {
            Err(errno())
        } else {
            Ok(len as usize)
        }
    }

    fn write_all(&self, fd: Fd, mut bytes: &[u8]) -> Result<(), Errno> {
        while !bytes.is_empty() {
            // SAFETY: writing from a live slice of the given length.
            let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            if written < 0 {
                let error = errno();
                if error == Errno::INTR {
                    continue;
                }
                return Err(error);
            }
            bytes = bytes.get(written as usize..).unwrap_or(&[]);
        }
        Ok(())
    }

    fn copy_contents(&self, from: Fd, to: Fd) -> Result<(), Errno> {
        let mut buffer = [0u8; 8192];
        loop {
            // SAFETY: reading into a stack buffer of the given length.
            let read = unsafe { libc::read(from, buffer.as_mut_ptr().cast(), buffer.len()) };
            if read < 0 {
                let error = errno();
                if error == Errno::INTR {
                    continue;
                }
                return Err(error);
            }
            if read == 0 {
                return Ok(());
            }
            let mut chunk = buffer.get(..read as usize).unwrap_or(&[]);
            while !chunk.is_empty() {
                // SAFETY: writing from a live slice of the given length.
                let written = unsafe { libc::write(to, chunk.as_ptr().cast(), chunk.len()) };
                if written < 0 {
                    let error = errno();
                    if error == Errno::INTR {
                        continue;
                    }
                    return Err(error);
                }
                chunk = chunk.get(written as usize..).unwrap_or(&[]);
            }
        }
    }

    fn fchown(&self, fd: Fd, uid: u32, gid: u32) -> Result<(), Errno> {
        // SAFETY: integer arguments.
        check(unsafe { libc::fchown(fd, uid, gid) })
    }

    fn make_readonly(&self, fd: Fd, recursive: bool) -> Result<(), Errno> {
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
        // SAFETY: `attr` is a valid mount_attr of the size passed; "" is NUL-terminated.
        check_long(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                fd,
                c"".as_ptr(),
                flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        })
        .map(drop)
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::chdir(path.as_ptr()) })
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        // SAFETY: NUL-terminated paths.
        check_long(unsafe {
            libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr())
        })
        .map(drop)
    }

    fn umount(&self, target: &CStr, flags: i32) -> Result<(), Errno> {
        // SAFETY: NUL-terminated path, integer flags.
        check(unsafe { libc::umount2(target.as_ptr(), flags) })
    }

    fn chroot(&self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::chroot(path.as_ptr()) })
    }

    fn sethostname(&self, name: &[u8]) -> Result<(), Errno> {
        // SAFETY: pointer and length of a live slice.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::mkdir(path.as_ptr(), mode as libc::mode_t) })
    }

    fn dup2(&self, from: Fd, to: Fd) -> Result<(), Errno> {
        // SAFETY: integer descriptors.
        check(unsafe { libc::dup2(from, to) })
    }

    fn setsid(&self) -> Result<(), Errno> {
        // SAFETY: no arguments.
        check(unsafe { libc::setsid() })
    }

    fn drop_bounding_capability(&self, cap: u32) -> Result<(), Errno> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) })
    }

    fn clear_inheritable_and_ambient(&self) -> Result<(), Errno> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: header and a two-element data array, as capability version 3 requires.
        check_long(unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapHeader,
                data.as_mut_ptr(),
            )
        })?;
        for word in &mut data {
            word.inheritable = 0;
        }
        // SAFETY: same layout as above, read by the kernel.
        check_long(unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            )
        })?;
        // SAFETY: prctl with integer arguments; EINVAL means no ambient set (< 4.3).
        let ambient = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        match check(ambient) {
            Err(error) if error != Errno::INVAL => Err(error),
            _ => Ok(()),
        }
    }

    fn setgroups(&self, gids: &[u32]) -> Result<(), Errno> {
        // SAFETY: raw syscall (not glibc's setxid broadcast) with a live slice.
        check_long(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) })
            .map(drop)
    }

    fn setresgid(&self, gid: u32) -> Result<(), Errno> {
        // SAFETY: raw syscall with integer arguments.
        check_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
    }

    fn setresuid(&self, uid: u32) -> Result<(), Errno> {
        // SAFETY: raw syscall with integer arguments.
        check_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
    }

    fn cloexec_from(&self, lowest: Fd) -> Result<(), Errno> {
        // SAFETY: integer arguments.
        check_long(unsafe {
            libc::syscall(
                libc::SYS_close_range,
                lowest as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        })
        .map(drop)
    }

    fn execve(&self, path: &CStr, argv: &CStringArray, envp: &CStringArray) -> Errno {
        // SAFETY: both arrays are NULL-terminated arrays of NUL-terminated strings that
        // live as long as `argv`/`envp`.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        errno()
    }
}

/// Write all of `bytes` to `fd` from a forked child (no allocation); errors ignored:
/// there is nobody left to tell.
pub(crate) fn write_all_raw(fd: Fd, bytes: &[u8]) {
    let _ = RealSyscall.write_all(fd, bytes);
}

/// Start the sandbox process with `clone3(namespaces | CLONE_PIDFD)`.
///
/// The child runs `child` and `_exit`s with its return value (127 if it panicked); it
/// never returns from this function. `child` runs in a copy of a possibly
/// multi-threaded process: it must not allocate or take locks (see
/// [`super::syscall`]). Returns the child's pid and a pidfd for it.
pub(crate) fn spawn_sandbox<F: FnOnce() -> i32>(
    namespaces: u64,
    child: F,
) -> io::Result<(rustix::process::Pid, OwnedFd)> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: namespaces | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child
    // gets a copy-on-write copy of this address space and continues here with ret 0.
    // The child only runs `child` (documented to be async-signal-safe) and `_exit`s.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret == 0 {
        // Catch a panic so that unwinding never runs the parent's frames in the child.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(127);
        // SAFETY: _exit ends the child without running the parent's atexit handlers or
        // flushing its stdio buffers.
        unsafe { libc::_exit(code) }
    }
    let pid = rustix::process::Pid::from_raw(ret as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ECHILD))?;
    // SAFETY: CLONE_PIDFD stored a new descriptor we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((pid, pidfd))
}

/// Spawn `command` in new user and mount namespaces, with SIGKILL as its parent-death
/// signal (the parent being the calling thread). Before exec the child writes its
/// pid (4 bytes, native endian) to `ready` and blocks until one byte arrives on `go`:
/// 1 means "maps written, go on"; anything else makes the spawn fail. Both descriptors
/// are `O_CLOEXEC` copies inherited through fork.
pub(crate) fn spawn_in_new_userns(
    command: &mut Command,
    ready: RawFd,
    go: RawFd,
) -> io::Result<Child> {
    let hook = move || -> io::Result<()> {
        // SAFETY: prctl with integer arguments: the re-executed kiln dies with this one
        // (even by SIGKILL) instead of building on as an orphan.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: unshare with integer flags in the freshly forked, single-threaded child.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: getpid has no arguments.
        let pid = unsafe { libc::getpid() };
        write_all_raw(ready, &pid.to_ne_bytes());
        let mut byte = [0u8; 1];
        loop {
            // SAFETY: reading one byte into a stack buffer.
            let read = unsafe { libc::read(go, byte.as_mut_ptr().cast(), 1) };
            if read < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if read == 1 && byte[0] == 1 {
                return Ok(());
            }
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
    };
    // SAFETY: the hook only makes async-signal-safe calls (unshare, getpid, read, write)
    // and allocates nothing on its success path.
    unsafe { command.pre_exec(hook) };
    command.spawn()
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let code = unsafe { info.as_ref().map_or(0, |info| info.si_code) };
    // Signals the tty driver sends (SI_KERNEL, > 0) already reached the child, which is
    // in the same foreground process group; forward only signals sent with kill(2).
    if code <= 0 {
        let pid = FORWARD_TO.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

/// Forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 sent to this process to
/// `pid` (the re-executed kiln) for as long as this process lives.
pub(crate) fn forward_signals_to(pid: u32) -> io::Result<()> {
    FORWARD_TO.store(pid as i32, Ordering::SeqCst);
    for signal in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: a zeroed sigaction is valid; we set a handler with the SA_SIGINFO
        // signature and an empty mask before passing it to the kernel.
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// End this process the way the child ended: re-raise its signal with the default
/// disposition (so the shell sees the same), or exit with its code.
pub(crate) fn die_like(status: std::process::ExitStatus) -> ! {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        // SAFETY: restoring the default disposition, unblocking and raising the signal
        // only affect this process, which is about to end anyway.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(status.code().unwrap_or(1))
}
