//! The `RUN` executor: a namespace sandbox for one build step.
//!
//! Modelled on buildah's chroot isolation, with youki's `Syscall` trait for testing.
//!
//! # Contract
//!
//! [`run`] executes a [`RunSpec`] and returns its [`RunOutcome`] (exit code or signal;
//! a non-zero exit is not an [`Error`]). While it runs, `output` receives stdout and
//! stderr as they are written. The step:
//!
//! - runs in new mount, pid, ipc and uts namespaces (and a new, empty network
//!   namespace with `lo` up for [`Network::None`]); its command is pid 1, so when it
//!   exits the kernel kills everything it left behind;
//! - sees the rootfs as `/` (`pivot_root`): an overlay of the given lower dirs and a
//!   fresh upper dir, which afterwards holds exactly the step's changes, or a
//!   directory (copy mode); plus `/proc`, a tmpfs `/dev` (`null zero full random
//!   urandom tty` bound from the host, `pts`, `shm`, `mqueue`, the `fd`/`std*`/`ptmx`
//!   links), a read-only `/sys` where the kernel allows it, and the host's
//!   `/etc/resolv.conf` and `/etc/hosts` bound read-only. None of these leave a trace
//!   in the upper dir or the directory, even when the image lacks the files (see
//!   `stubs`);
//! - has exactly [`RunSpec::env`] as its environment (nothing from the host), stdin on
//!   `/dev/null`, the capabilities of a Docker container (bounding set reduced to
//!   Docker's default 14, empty inheritable and ambient sets; with
//!   [`Security::Insecure`] the bounding set is left whole and `/sys` writable), and the user's
//!   `setgroups`/gid/uid;
//! - never receives a descriptor of the parent: everything is `O_CLOEXEC`, and the
//!   child marks all descriptors above 2 close-on-exec before `execve`.
//!
//! Cancelling the [`CancelToken`] kills the step (SIGKILL to its pid 1, which takes
//! the whole pid namespace with it) and returns [`Error::Cancelled`]; all mounts lived
//! in the step's own mount namespace and vanish with it, so the host is left clean.
//! The caller discards the upper dir of a cancelled or failed step.
//!
//! # Process model
//!
//! The parent prepares every string and path first (module `prepare`), then `clone3`s the
//! child straight into the new namespaces (so it is pid 1 without a double fork) and
//! the child performs the setup with raw system calls only (module `child`, through
//! the `Syscall` trait of module `syscall`): no allocation between fork and exec, which is what
//! makes this safe in kiln's multi-threaded process. Setup errors come back through a
//! close-on-exec pipe as (stage, index, errno). No helper binary or re-exec is needed
//! for a step.
//!
//! `run` blocks its thread until the step ends (async callers use `spawn_blocking`).
//! Per-step scratch entries (a mountpoint, the stub lower dir, a hosts file) live on a
//! tmpfs (`/dev/shm`) because on a disk filesystem each create/remove costs
//! milliseconds.
//!
//! # Requirements
//!
//! Linux ≥ 5.12 (`clone3`, `openat2`, `close_range(CLOSE_RANGE_CLOEXEC)`,
//! `mount_setattr`, overlayfs in user namespaces); lower-dir lists longer than a page
//! of mount options need ≥ 6.8 (`fsconfig("lowerdir+")`).
//!
//! # Rootless
//!
//! As a plain user, kiln first becomes root of a user namespace
//! ([`rootless::ensure_root_in_userns`], called first thing in `main`); everything
//! afterwards, including this executor, runs as that root.
//!
//! # Errors
//!
//! [`Error`] says which part failed: an invalid spec (relative paths, NUL bytes, an
//! empty argv), preparing host-side directories, a stage of the in-child setup with
//! the mount target involved, the command not found (runc's wording), cancellation,
//! and for [`resolve_user`] Docker's messages for unknown users and groups.

mod child;
mod error;
mod prepare;
pub mod rootless;
mod run;
mod spec;
mod stubs;
mod sys;
mod syscall;
mod user;

pub use error::{Error, SetupStage};
pub use run::run;
pub use spec::{
    CancelToken, DEFAULT_SHM_SIZE, ExitStatus, Mount, Network, Rootfs, RunOutcome, RunSpec,
    Security, Stream, User,
};
pub use user::resolve_user;

/// The xattr marking an opaque directory in overlay dirs. kiln mounts overlayfs with
/// `userxattr` in every mode (as root and rootless), so this is where opaque markers
/// of the upper dir are, and where unpacked lower dirs must put theirs; the layer
/// writer turns it into a `.wh..wh..opq` entry and never copies `user.overlay.*`
/// xattrs into a tar.
pub const OVERLAY_OPAQUE_XATTR: &str = "user.overlay.opaque";

#[cfg(test)]
mod tests;
