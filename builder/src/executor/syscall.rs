//! The system calls the sandbox setup makes, as a trait (after youki's `Syscall`).
//!
//! [`super::child`] performs the whole setup through `&dyn Syscall`: the real
//! implementation ([`super::sys::RealSyscall`]) makes the raw calls in the forked
//! child; [`Recording`] (tests only) records each call as a line of text, so the exact
//! setup sequence is unit-tested without privilege.
//!
//! Contract for implementations used in the child: no allocation, no locks, no
//! panics: the child of a multi-threaded parent may only make async-signal-safe calls.
//! All arguments are prepared by the parent before the fork.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

pub(crate) use rustix::io::Errno;

/// A raw file descriptor number in the child (closed by `close` or at exec).
pub(crate) type Fd = i32;

/// A NULL-terminated array of C strings for `execve`, built before the fork.
#[derive(Debug)]
pub(crate) struct CStringArray {
    /// Owns what `pointers` point into.
    #[cfg_attr(not(test), allow(dead_code))]
    strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

impl CStringArray {
    pub(crate) fn new(strings: Vec<CString>) -> CStringArray {
        let mut pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        CStringArray { strings, pointers }
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn strings(&self) -> &[CString] {
        &self.strings
    }

    /// Pointer to the NULL-terminated array; valid as long as `self` lives.
    pub(crate) fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

/// The calls of the sandbox setup. Each returns the kernel's errno on failure.
pub(crate) trait Syscall {
    /// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the step dies with the thread that ran it.
    fn set_parent_death_signal(&self) -> Result<(), Errno>;
    fn umask(&self, mask: u32);
    /// Set `IFF_UP` on `lo` (in a fresh network namespace).
    fn loopback_up(&self) -> Result<(), Errno>;
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    /// overlayfs through `fsopen`/`fsconfig("lowerdir+")`/`fsmount`/`move_mount`, for
    /// lower-dir lists too long for `mount(2)`'s one-page option string (Linux ≥ 6.8).
    fn mount_overlay_fsconfig(
        &self,
        target: &CStr,
        lowers: &[CString],
        upper: &CStr,
        work: &CStr,
    ) -> Result<(), Errno>;
    fn open(&self, path: &CStr, flags: i32, mode: u32) -> Result<Fd, Errno>;
    /// `openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: symlinks and
    /// `..` are resolved as if `root` were `/`, so an image cannot point a mount outside.
    fn open_in_root(&self, root: Fd, path: &CStr, flags: i32) -> Result<Fd, Errno>;
    fn openat(&self, dir: Fd, name: &CStr, flags: i32, mode: u32) -> Result<Fd, Errno>;
    fn mkdirat(&self, dir: Fd, name: &CStr, mode: u32) -> Result<(), Errno>;
    fn symlinkat(&self, target: &CStr, dir: Fd, name: &CStr) -> Result<(), Errno>;
    fn close(&self, fd: Fd);
    /// Copy all bytes of `from` into `to` (a small stack buffer, no allocation).
    fn copy_contents(&self, from: Fd, to: Fd) -> Result<(), Errno>;
    fn fchown(&self, fd: Fd, uid: u32, gid: u32) -> Result<(), Errno>;
    /// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], MOUNT_ATTR_RDONLY)`: keeps
    /// whatever flags are locked on the mount (nosuid, nodev…), unlike a remount.
    fn make_readonly(&self, fd: Fd, recursive: bool) -> Result<(), Errno>;
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    fn umount(&self, target: &CStr, flags: i32) -> Result<(), Errno>;
    fn chroot(&self, path: &CStr) -> Result<(), Errno>;
    fn sethostname(&self, name: &[u8]) -> Result<(), Errno>;
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    fn dup2(&self, from: Fd, to: Fd) -> Result<(), Errno>;
    fn setsid(&self) -> Result<(), Errno>;
    /// `prctl(PR_CAPBSET_DROP, cap)`.
    fn drop_bounding_capability(&self, cap: u32) -> Result<(), Errno>;
    /// Empty inheritable set (`capset`) and ambient set (`PR_CAP_AMBIENT_CLEAR_ALL`).
    fn clear_inheritable_and_ambient(&self) -> Result<(), Errno>;
    fn setgroups(&self, gids: &[u32]) -> Result<(), Errno>;
    fn setresgid(&self, gid: u32) -> Result<(), Errno>;
    fn setresuid(&self, uid: u32) -> Result<(), Errno>;
    /// `close_range(lowest, ~0, CLOSE_RANGE_CLOEXEC)`: nothing the parent opened without
    /// `O_CLOEXEC` (another thread, a library) reaches the step.
    fn cloexec_from(&self, lowest: Fd) -> Result<(), Errno>;
    /// Only returns on failure.
    fn execve(&self, path: &CStr, argv: &CStringArray, envp: &CStringArray) -> Errno;
}

#[cfg(test)]
pub(crate) mod recording {
    //! The recording test double.

    use super::*;
    use std::cell::{Cell, RefCell};

    /// Records every call as one line; fails the calls whose line starts with a
    /// configured prefix.
    #[derive(Debug, Default)]
    pub(crate) struct Recording {
        calls: RefCell<Vec<String>>,
        failures: Vec<(String, Errno)>,
        next_fd: Cell<Fd>,
    }

    impl Recording {
        pub(crate) fn new() -> Recording {
            Recording {
                next_fd: Cell::new(100),
                ..Recording::default()
            }
        }

        /// Make every call whose recorded line starts with `prefix` fail with `errno`.
        pub(crate) fn failing(mut self, prefix: &str, errno: Errno) -> Recording {
            self.failures.push((prefix.to_owned(), errno));
            self
        }

        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }

        fn record(&self, line: String) -> Result<(), Errno> {
            let failure = self
                .failures
                .iter()
                .find(|(prefix, _)| line.starts_with(prefix.as_str()))
                .map(|(_, errno)| *errno);
            self.calls.borrow_mut().push(line);
            match failure {
                Some(errno) => Err(errno),
                None => Ok(()),
            }
        }

        fn record_fd(&self, line: String) -> Result<Fd, Errno> {
            let fd = self.next_fd.get();
            self.record(format!("{line} = {fd}"))?;
            self.next_fd.set(fd + 1);
            Ok(fd)
        }
    }

    fn show(s: &CStr) -> String {
        format!("{:?}", s.to_string_lossy())
    }

    fn show_opt(s: Option<&CStr>) -> String {
        s.map(show).unwrap_or_else(|| "NULL".to_owned())
    }

    fn names(value: u64, table: &[(u64, &str)]) -> String {
        let mut parts: Vec<String> = table
            .iter()
            .filter(|(bit, _)| value & bit != 0)
            .map(|(_, name)| (*name).to_owned())
            .collect();
        let known = table.iter().fold(0, |acc, (bit, _)| acc | bit);
        if value & !known != 0 {
            parts.push(format!("{:#x}", value & !known));
        }
        if parts.is_empty() {
            "0".to_owned()
        } else {
            parts.join("|")
        }
    }

    pub(crate) fn mount_flags(flags: u64) -> String {
        names(
            flags,
            &[
                (libc::MS_RDONLY, "RDONLY"),
                (libc::MS_NOSUID, "NOSUID"),
                (libc::MS_NODEV, "NODEV"),
                (libc::MS_NOEXEC, "NOEXEC"),
                (libc::MS_REMOUNT, "REMOUNT"),
                (libc::MS_BIND, "BIND"),
                (libc::MS_MOVE, "MOVE"),
                (libc::MS_REC, "REC"),
                (libc::MS_PRIVATE, "PRIVATE"),
                (libc::MS_STRICTATIME, "STRICTATIME"),
            ],
        )
    }

    fn open_flags(flags: i32) -> String {
        let access = match flags & libc::O_ACCMODE {
            libc::O_WRONLY => "WRONLY",
            libc::O_RDWR => "RDWR",
            _ => "RDONLY",
        };
        let rest = names(
            (flags & !libc::O_ACCMODE) as u64,
            &[
                (libc::O_PATH as u64, "PATH"),
                (libc::O_DIRECTORY as u64, "DIRECTORY"),
                (libc::O_CREAT as u64, "CREAT"),
                (libc::O_EXCL as u64, "EXCL"),
                (libc::O_NOFOLLOW as u64, "NOFOLLOW"),
                (libc::O_CLOEXEC as u64, "CLOEXEC"),
            ],
        );
        match (access, rest.as_str()) {
            (access, "0") => access.to_owned(),
            ("RDONLY", rest) => rest.to_owned(),
            (access, rest) => format!("{access}|{rest}"),
        }
    }

    impl Syscall for Recording {
        fn set_parent_death_signal(&self) -> Result<(), Errno> {
            self.record("prctl(PR_SET_PDEATHSIG, SIGKILL)".into())
        }
        fn umask(&self, mask: u32) {
            let _ = self.record(format!("umask({mask:#o})"));
        }
        fn loopback_up(&self) -> Result<(), Errno> {
            self.record("ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)".into())
        }
        fn mount(
            &self,
            source: Option<&CStr>,
            target: &CStr,
            fstype: Option<&CStr>,
            flags: u64,
            data: Option<&CStr>,
        ) -> Result<(), Errno> {
            self.record(format!(
                "mount({}, {}, {}, {}, {})",
                show_opt(source),
                show(target),
                show_opt(fstype),
                mount_flags(flags),
                show_opt(data)
            ))
        }
        fn mount_overlay_fsconfig(
            &self,
            target: &CStr,
            lowers: &[CString],
            upper: &CStr,
            work: &CStr,
        ) -> Result<(), Errno> {
            let lowers: Vec<String> = lowers.iter().map(|l| show(l)).collect();
            self.record(format!(
                "fsconfig overlay lowerdir+=[{}] upperdir={} workdir={} -> {}",
                lowers.join(", "),
                show(upper),
                show(work),
                show(target)
            ))
        }
        fn open(&self, path: &CStr, flags: i32, mode: u32) -> Result<Fd, Errno> {
            self.record_fd(format!(
                "open({}, {}, {mode:#o})",
                show(path),
                open_flags(flags)
            ))
        }
        fn open_in_root(&self, root: Fd, path: &CStr, flags: i32) -> Result<Fd, Errno> {
            self.record_fd(format!(
                "openat2({root}, {}, {}, IN_ROOT|NO_MAGICLINKS)",
                show(path),
                open_flags(flags)
            ))
        }
        fn openat(&self, dir: Fd, name: &CStr, flags: i32, mode: u32) -> Result<Fd, Errno> {
            self.record_fd(format!(
                "openat({dir}, {}, {}, {mode:#o})",
                show(name),
                open_flags(flags)
            ))
        }
        fn mkdirat(&self, dir: Fd, name: &CStr, mode: u32) -> Result<(), Errno> {
            self.record(format!("mkdirat({dir}, {}, {mode:#o})", show(name)))
        }
        fn symlinkat(&self, target: &CStr, dir: Fd, name: &CStr) -> Result<(), Errno> {
            self.record(format!(
                "symlinkat({}, {dir}, {})",
                show(target),
                show(name)
            ))
        }
        fn close(&self, fd: Fd) {
            let _ = self.record(format!("close({fd})"));
        }
        fn copy_contents(&self, from: Fd, to: Fd) -> Result<(), Errno> {
            self.record(format!("copy({from} -> {to})"))
        }
        fn fchown(&self, fd: Fd, uid: u32, gid: u32) -> Result<(), Errno> {
            self.record(format!("fchown({fd}, {uid}, {gid})"))
        }
        fn make_readonly(&self, fd: Fd, recursive: bool) -> Result<(), Errno> {
            let flags = if recursive {
                "AT_EMPTY_PATH|AT_RECURSIVE"
            } else {
                "AT_EMPTY_PATH"
            };
            self.record(format!("mount_setattr({fd}, {flags}, RDONLY)"))
        }
        fn chdir(&self, path: &CStr) -> Result<(), Errno> {
            self.record(format!("chdir({})", show(path)))
        }
        fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
            self.record(format!("pivot_root({}, {})", show(new_root), show(put_old)))
        }
        fn umount(&self, target: &CStr, flags: i32) -> Result<(), Errno> {
            let flags = if flags == libc::MNT_DETACH {
                "MNT_DETACH".to_owned()
            } else {
                flags.to_string()
            };
            self.record(format!("umount2({}, {flags})", show(target)))
        }
        fn chroot(&self, path: &CStr) -> Result<(), Errno> {
            self.record(format!("chroot({})", show(path)))
        }
        fn sethostname(&self, name: &[u8]) -> Result<(), Errno> {
            self.record(format!("sethostname({:?})", String::from_utf8_lossy(name)))
        }
        fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
            self.record(format!("mkdir({}, {mode:#o})", show(path)))
        }
        fn dup2(&self, from: Fd, to: Fd) -> Result<(), Errno> {
            self.record(format!("dup2({from}, {to})"))
        }
        fn setsid(&self) -> Result<(), Errno> {
            self.record("setsid()".into())
        }
        fn drop_bounding_capability(&self, cap: u32) -> Result<(), Errno> {
            self.record(format!("prctl(PR_CAPBSET_DROP, {cap})"))
        }
        fn clear_inheritable_and_ambient(&self) -> Result<(), Errno> {
            self.record("capset(inheritable=0); prctl(PR_CAP_AMBIENT_CLEAR_ALL)".into())
        }
        fn setgroups(&self, gids: &[u32]) -> Result<(), Errno> {
            self.record(format!("setgroups({gids:?})"))
        }
        fn setresgid(&self, gid: u32) -> Result<(), Errno> {
            self.record(format!("setresgid({gid})"))
        }
        fn setresuid(&self, uid: u32) -> Result<(), Errno> {
            self.record(format!("setresuid({uid})"))
        }
        fn cloexec_from(&self, lowest: Fd) -> Result<(), Errno> {
            self.record(format!("close_range({lowest}, ~0, CLOEXEC)"))
        }
        fn execve(&self, path: &CStr, argv: &CStringArray, envp: &CStringArray) -> Errno {
            let argv: Vec<String> = argv.strings().iter().map(|s| show(s)).collect();
            let envp: Vec<String> = envp.strings().iter().map(|s| show(s)).collect();
            match self.record(format!(
                "execve({}, [{}], [{}])",
                show(path),
                argv.join(", "),
                envp.join(", ")
            )) {
                Err(errno) => errno,
                // A real execve does not return on success; the double reports EPERM
                // so the sequence ends here.
                Ok(()) => Errno::PERM,
            }
        }
    }
}
