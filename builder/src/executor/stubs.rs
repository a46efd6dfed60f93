//! Mountpoints that leave no trace in the layer.
//!
//! A bind mount needs an existing file or directory to cover. When the image lacks
//! `/etc/resolv.conf` (or `/proc`, or a `RUN --mount` target), creating it in the
//! rootfs would put it in the layer. Two strategies, one per rootfs kind:
//!
//! - **Overlay**: every mountpoint is created in a small extra lower directory stacked
//!   *below* the image's layers ([`create_stub_lower`]). The merged view shows the
//!   image's own files where they exist and the stub otherwise; directory metadata
//!   comes from the top-most layer that has the directory, i.e. from the image. The
//!   upper dir never sees the stubs. (A stub hidden by a whiteout, an opaque
//!   directory or a symlinked parent in the image stays hidden: the mount of
//!   `resolv.conf`/`hosts` is then skipped, a `RUN --mount` fails with the target.)
//! - **Directory** (copy mode): missing mountpoints are created in the directory,
//!   resolved inside it (`openat2(RESOLVE_IN_ROOT)`), and removed after the step by
//!   [`DirStubs`], which also restores the access and modification times of the
//!   directory they were created in — unless the step modified that directory too —
//!   so a metadata walk sees no change (the ctime of that directory does change; a
//!   step that modifies it within the same timestamp tick as the stub creation is
//!   taken as not having modified it).

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timestamps};

use super::Error;
use super::prepare::Mountpoint;

const STUB_DIR_MODE: u32 = 0o755;
const STUB_FILE_MODE: u32 = 0o644;

fn prepare_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Prepare { what, path, source }
}

/// Fill the empty directory `dir` with every mountpoint (parents included).
pub(crate) fn create_stub_lower(dir: &Path, points: &[Mountpoint]) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(STUB_DIR_MODE);
    for point in points {
        let path = dir.join(&point.path);
        let parent_dir = if point.directory {
            path.as_path()
        } else {
            path.parent().unwrap_or(dir)
        };
        builder
            .create(parent_dir)
            .map_err(prepare_error("creating stub directory", parent_dir))?;
        if !point.directory {
            std::fs::File::create(&path).map_err(prepare_error("creating stub file", &path))?;
        }
    }
    // Exact modes whatever the umask: the directories are seen by every user in the step.
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(prepare_error("reading stub directory", &current))?;
        for entry in entries {
            let entry = entry.map_err(prepare_error("reading stub directory", &current))?;
            let path = entry.path();
            let is_dir = entry
                .file_type()
                .map_err(prepare_error("reading stub directory", &path))?
                .is_dir();
            let mode = if is_dir {
                STUB_DIR_MODE
            } else {
                STUB_FILE_MODE
            };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(prepare_error("setting stub permissions", &path))?;
            if is_dir {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// One entry created in the rootfs directory.
#[derive(Debug)]
struct Created {
    parent: OwnedFd,
    name: OsString,
    directory: bool,
}

/// The entries created for one mountpoint, and the times of the pre-existing directory
/// they were created in.
#[derive(Debug)]
struct TargetStubs {
    created: Vec<Created>,
    ancestor: OwnedFd,
    /// The ancestor's times before the stubs were created.
    times: Timestamps,
    /// Its modification time right after: if it still has it, the step did not
    /// modify it and the original times are restored.
    modified_after_creation: rustix::fs::Timespec,
}

/// Mountpoints created in a rootfs directory; removed (and the times of their
/// parents restored) on [`DirStubs::remove`] or drop.
#[derive(Debug, Default)]
pub(crate) struct DirStubs {
    targets: Vec<TargetStubs>,
}

fn modification_time(stat: &rustix::fs::Stat) -> rustix::fs::Timespec {
    rustix::fs::Timespec {
        tv_sec: stat.st_mtime as _,
        tv_nsec: stat.st_mtime_nsec as _,
    }
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl DirStubs {
    /// Create every missing mountpoint of `points` inside `root`.
    pub(crate) fn create(root: &Path, points: &[Mountpoint]) -> Result<DirStubs, Error> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| prepare_error("opening rootfs", root)(e.into()))?;
        let mut stubs = DirStubs::default();
        for point in points {
            if let Some(target) = create_one(&root_fd, root, point)? {
                stubs.targets.push(target);
            }
        }
        Ok(stubs)
    }

    /// Remove what [`DirStubs::create`] made. Entries the step filled (a directory that
    /// is no longer empty) stay: they belong to the layer now.
    pub(crate) fn remove(mut self) {
        self.remove_all();
    }

    fn remove_all(&mut self) {
        while let Some(target) = self.targets.pop() {
            let untouched = rustix::fs::fstat(&target.ancestor)
                .map(|stat| modification_time(&stat) == target.modified_after_creation)
                .unwrap_or(false);
            let mut all_removed = true;
            for created in target.created.iter().rev() {
                let flags = if created.directory {
                    AtFlags::REMOVEDIR
                } else {
                    AtFlags::empty()
                };
                if rustix::fs::unlinkat(&created.parent, created.name.as_os_str(), flags).is_err() {
                    all_removed = false;
                    break;
                }
            }
            if all_removed && untouched {
                // Best effort: the step's result does not depend on a directory's times.
                let _ = rustix::fs::futimens(&target.ancestor, &target.times);
            }
        }
    }
}

impl Drop for DirStubs {
    fn drop(&mut self) {
        self.remove_all();
    }
}

fn create_one(
    root_fd: &OwnedFd,
    root: &Path,
    point: &Mountpoint,
) -> Result<Option<TargetStubs>, Error> {
    let components: Vec<&std::ffi::OsStr> = point.path.iter().collect();
    let full = root.join(&point.path);
    let io_error = |what: &'static str| prepare_error(what, &full);

    // The longest prefix that exists (following symlinks inside the root).
    let mut existing = components.len();
    for depth in 1..=components.len() {
        let prefix: PathBuf = components[..depth].iter().collect();
        match rustix::fs::openat2(
            root_fd,
            &prefix,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            resolve_flags(),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                existing = depth - 1;
                break;
            }
            Err(errno) => return Err(io_error("resolving mountpoint")(errno.into())),
        }
    }
    if existing == components.len() {
        return Ok(None);
    }

    let ancestor_path: PathBuf = if existing == 0 {
        PathBuf::from(".")
    } else {
        components[..existing].iter().collect()
    };
    let ancestor = rustix::fs::openat2(
        root_fd,
        &ancestor_path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve_flags(),
    )
    .map_err(|e| io_error("opening mountpoint parent")(e.into()))?;
    let stat = rustix::fs::fstat(&ancestor)
        .map_err(|e| io_error("stat of mountpoint parent")(e.into()))?;
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: stat.st_atime as _,
            tv_nsec: stat.st_atime_nsec as _,
        },
        last_modification: modification_time(&stat),
    };

    let mut target = TargetStubs {
        created: Vec::new(),
        ancestor,
        times,
        modified_after_creation: modification_time(&stat),
    };
    match create_missing(&mut target, &components[existing..], point.directory)
        .and_then(|()| rustix::fs::fstat(&target.ancestor))
    {
        Ok(stat) => {
            target.modified_after_creation = modification_time(&stat);
            Ok(Some(target))
        }
        Err(errno) => {
            let mut partial = DirStubs {
                targets: vec![target],
            };
            partial.remove_all();
            Err(io_error("creating mountpoint")(errno.into()))
        }
    }
}

/// Create `names` (each inside the previous) below `target.ancestor`; the last one is a
/// file unless `directory`.
fn create_missing(
    target: &mut TargetStubs,
    names: &[&std::ffi::OsStr],
    directory: bool,
) -> Result<(), rustix::io::Errno> {
    let mut parent = rustix::io::fcntl_dupfd_cloexec(&target.ancestor, 3)?;
    for (i, name) in names.iter().enumerate() {
        let name_owned = OsString::from_vec(name.as_encoded_bytes().to_vec());
        if i + 1 == names.len() && !directory {
            drop(rustix::fs::openat(
                parent.as_fd(),
                *name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(STUB_FILE_MODE),
            )?);
            target.created.push(Created {
                parent: rustix::io::fcntl_dupfd_cloexec(&parent, 3)?,
                name: name_owned,
                directory: false,
            });
            // Exact mode whatever the umask.
            rustix::fs::chmodat(
                parent.as_fd(),
                *name,
                Mode::from_raw_mode(STUB_FILE_MODE),
                AtFlags::empty(),
            )?;
            return Ok(());
        }
        rustix::fs::mkdirat(parent.as_fd(), *name, Mode::from_raw_mode(STUB_DIR_MODE))?;
        target.created.push(Created {
            parent: rustix::io::fcntl_dupfd_cloexec(&parent, 3)?,
            name: name_owned,
            directory: true,
        });
        rustix::fs::chmodat(
            parent.as_fd(),
            *name,
            Mode::from_raw_mode(STUB_DIR_MODE),
            AtFlags::empty(),
        )?;
        parent = rustix::fs::openat(
            parent.as_fd(),
            *name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(())
}
