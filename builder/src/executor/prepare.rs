//! Turning a [`RunSpec`] into the child's [`Prepared`] plan (in the parent, before the
//! fork: this is where every string is allocated).
//!
//! Also: which mountpoints a step needs ([`mountpoints`]), and the facts about the
//! host process that shape the plan ([`HostInfo`]).

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use super::child::{
    Create, DOCKER_DEFAULT_CAPABILITIES, MountOp, Op, Optional, Prepared, Readonly, RootfsMount,
    SecretCopy, Secrets,
};
use super::syscall::CStringArray;
use super::{DEFAULT_SHM_SIZE, Error, Mount, Network, Rootfs, RunSpec, Security};

/// Overlay options every step uses. `userxattr` (overlay metadata in `user.overlay.*`)
/// works both as real root and as root in a user namespace, so the upper dir looks the
/// same in both modes; it requires `redirect_dir=nofollow` (no redirects are written:
/// renaming a lower directory copies it up, and the upper dir stays a plain diff).
/// `volatile`: unmounting does not `syncfs` the upper file system. That sync flushes
/// every dirty page of the whole disk (other jobs' too) and cost 0.1–0.3 s per RUN on a
/// busy machine; the step's layer blob is fsynced when written, and a step cut short
/// by a crash is thrown away with its scratch dir (and its `incompat/volatile` mark).
pub(crate) const OVERLAY_FLAGS: &str =
    "userxattr,index=off,metacopy=off,redirect_dir=nofollow,volatile";

/// `mount(2)` copies at most one page of options.
const MOUNT_DATA_MAX: usize = 4095;

/// Where `PATH` lookup looks when the step's environment has no `PATH` (runc's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host devices bound into the step's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Facts about the kiln process that shape the plan; read once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostInfo {
    /// Running as root of a user namespace (rootless), not the initial one.
    pub in_user_namespace: bool,
    /// `/proc/self/setgroups` says `allow` (it says `deny` in a single-id namespace).
    pub setgroups_allowed: bool,
    /// gid 5 (`tty`, devpts' `gid=` option) exists in this namespace.
    pub tty_gid_mapped: bool,
    /// `/proc/sys/kernel/cap_last_cap`.
    pub cap_last_cap: u32,
}

impl HostInfo {
    pub(crate) fn get() -> &'static HostInfo {
        static INFO: OnceLock<HostInfo> = OnceLock::new();
        INFO.get_or_init(HostInfo::detect)
    }

    fn detect() -> HostInfo {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let uid_map = super::rootless::parse_id_map(&read("/proc/self/uid_map"));
        let gid_map = super::rootless::parse_id_map(&read("/proc/self/gid_map"));
        let identity = uid_map.len() == 1
            && uid_map[0].inside == 0
            && uid_map[0].outside == 0
            && uid_map[0].count == u32::MAX;
        HostInfo {
            in_user_namespace: !identity,
            setgroups_allowed: read("/proc/self/setgroups").trim() != "deny",
            tty_gid_mapped: gid_map
                .iter()
                .any(|range| range.inside <= 5 && 5 - range.inside < range.count),
            cap_last_cap: read("/proc/sys/kernel/cap_last_cap")
                .trim()
                .parse()
                .unwrap_or(40),
        }
    }
}

/// Host-side paths of one run, made by [`super::run`].
#[derive(Debug, Clone)]
pub(crate) struct RunPaths {
    /// Empty directory the rootfs is mounted on in the child.
    pub mountpoint: PathBuf,
    /// Overlay mode: the bottom lower holding every mountpoint (see [`super::stubs`]).
    pub stub_lower: Option<PathBuf>,
    /// Directory for the secrets tmpfs (must exist and be empty when there are secrets).
    pub secrets: PathBuf,
    /// File bound at `/etc/hosts` (the host's or a generated one); `None` when the
    /// host has none.
    pub hosts: Option<PathBuf>,
    /// File bound at `/etc/resolv.conf`; `None` when the host has none.
    pub resolv_conf: Option<PathBuf>,
}

/// A mountpoint a step needs in its rootfs, relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mountpoint {
    pub path: PathBuf,
    pub directory: bool,
}

/// Every mountpoint of `spec`: the default ones, then the `RUN --mount` targets.
pub(crate) fn mountpoints(spec: &RunSpec) -> Result<Vec<Mountpoint>, Error> {
    let mut points: Vec<Mountpoint> = ["proc", "dev", "sys"]
        .into_iter()
        .map(|dir| Mountpoint {
            path: PathBuf::from(dir),
            directory: true,
        })
        .chain(
            ["etc/resolv.conf", "etc/hosts"]
                .into_iter()
                .map(|file| Mountpoint {
                    path: PathBuf::from(file),
                    directory: false,
                }),
        )
        .collect();
    for mount in &spec.mounts {
        let directory = match mount {
            Mount::Bind { source, .. } => std::fs::metadata(source)
                .map_err(|source_error| Error::Prepare {
                    what: "bind mount source",
                    path: source.clone(),
                    source: source_error,
                })?
                .is_dir(),
            Mount::Tmpfs { .. } => true,
            Mount::SecretFile { .. } => false,
        };
        points.push(Mountpoint {
            path: relative_target(mount.target())?,
            directory,
        });
    }
    Ok(points)
}

/// `target` cleaned lexically (as Docker's `filepath.Clean`) and made relative to `/`.
pub(crate) fn relative_target(target: &Path) -> Result<PathBuf, Error> {
    if !target.is_absolute() {
        return Err(Error::RelativePath {
            what: "mount target",
            path: target.to_owned(),
        });
    }
    Ok(clean_relative(target))
}

/// `path` (absolute) cleaned lexically, `..` clamped at the root, without the leading `/`.
fn clean_relative(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                clean.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    clean
}

fn cstring(what: &'static str, bytes: &[u8]) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::NulByte {
        what,
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

fn path_cstring(what: &'static str, path: &Path) -> Result<CString, Error> {
    cstring(what, path.as_os_str().as_bytes())
}

/// Escape `\`, `:` and `,` in an overlay option value.
fn overlay_escape(path: &Path) -> Vec<u8> {
    let mut escaped = Vec::with_capacity(path.as_os_str().len());
    for &byte in path.as_os_str().as_bytes() {
        if matches!(byte, b'\\' | b':' | b',') {
            escaped.push(b'\\');
        }
        escaped.push(byte);
    }
    escaped
}

fn fs_mount(target: &str, fstype: &str, flags: u64, data: Option<&str>) -> Result<Op, Error> {
    Ok(Op::Mount(MountOp {
        target: cstring("mount target", target.as_bytes())?,
        create: None,
        source: Some(cstring("mount source", fstype.as_bytes())?),
        fstype: Some(cstring("filesystem type", fstype.as_bytes())?),
        flags,
        data: data
            .map(|data| cstring("mount options", data.as_bytes()))
            .transpose()?,
        readonly: Readonly::No,
        optional: Optional::No,
        create_missing: None,
    }))
}

fn in_dev(name: &str, directory: bool, mode: u32) -> Result<Option<Create>, Error> {
    Ok(Some(Create {
        parent: cstring("mount target", b"dev")?,
        name: cstring("mount target", name.as_bytes())?,
        directory,
        mode,
    }))
}

/// Refuse a spec that cannot run, before anything is created: an empty argv, or a
/// relative working directory, rootfs or overlay directory.
pub(crate) fn validate(spec: &RunSpec) -> Result<(), Error> {
    if spec.argv.is_empty() {
        return Err(Error::EmptyArgv);
    }
    let relative = |what: &'static str, path: &Path| {
        if path.is_absolute() {
            Ok(())
        } else {
            Err(Error::RelativePath {
                what,
                path: path.to_owned(),
            })
        }
    };
    relative("working directory", &spec.cwd)?;
    match &spec.rootfs {
        Rootfs::Overlay {
            lowers,
            upper,
            work,
        } => {
            for lower in lowers {
                relative("overlay lower dir", lower)?;
            }
            relative("overlay upper dir", upper)?;
            relative("overlay work dir", work)
        }
        Rootfs::Dir(dir) => relative("rootfs directory", dir),
    }
}

/// Build the child's plan; `points` is [`mountpoints`] of `spec`.
pub(crate) fn prepare(
    spec: &RunSpec,
    points: &[Mountpoint],
    paths: &RunPaths,
    host: &HostInfo,
) -> Result<Prepared, Error> {
    validate(spec)?;
    let program = spec.argv.first().ok_or(Error::EmptyArgv)?;

    let rootfs = match &spec.rootfs {
        Rootfs::Overlay {
            lowers,
            upper,
            work,
        } => {
            let mut all_lowers: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
            all_lowers.extend(paths.stub_lower.as_deref());
            for path in all_lowers.iter().chain([&upper.as_path(), &work.as_path()]) {
                if !path.is_absolute() {
                    return Err(Error::RelativePath {
                        what: "overlay directory",
                        path: path.to_path_buf(),
                    });
                }
            }
            let mut options = b"lowerdir=".to_vec();
            for (i, lower) in all_lowers.iter().enumerate() {
                if i > 0 {
                    options.push(b':');
                }
                options.extend(overlay_escape(lower));
            }
            options.extend(b",upperdir=");
            options.extend(overlay_escape(upper));
            options.extend(b",workdir=");
            options.extend(overlay_escape(work));
            options.push(b',');
            options.extend(OVERLAY_FLAGS.as_bytes());
            if options.len() <= MOUNT_DATA_MAX {
                RootfsMount::Overlay {
                    options: cstring("overlay options", &options)?,
                }
            } else {
                RootfsMount::OverlayFsconfig {
                    lowers: all_lowers
                        .iter()
                        .map(|lower| path_cstring("overlay lower dir", lower))
                        .collect::<Result<_, _>>()?,
                    upper: path_cstring("overlay upper dir", upper)?,
                    work: path_cstring("overlay work dir", work)?,
                }
            }
        }
        Rootfs::Dir(dir) => {
            if !dir.is_absolute() {
                return Err(Error::RelativePath {
                    what: "rootfs directory",
                    path: dir.clone(),
                });
            }
            RootfsMount::Bind {
                source: path_cstring("rootfs directory", dir)?,
            }
        }
    };

    let mut ops = vec![
        fs_mount(
            "proc",
            "proc",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )?,
        fs_mount(
            "dev",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        )?,
    ];
    let devpts_options = if host.tty_gid_mapped {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        "newinstance,ptmxmode=0666,mode=0620"
    };
    let shm_options = match spec.shm_size {
        // A tmpfs `size=0` would mean unlimited; Docker reads 0 as its default.
        None | Some(0) => format!("mode=1777,size={}k", DEFAULT_SHM_SIZE >> 10),
        Some(bytes) => format!("mode=1777,size={bytes}"),
    };
    for (name, fstype, flags, data) in [
        (
            "pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(devpts_options),
        ),
        (
            "shm",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(shm_options.as_str()),
        ),
        (
            "mqueue",
            "mqueue",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        ),
    ] {
        let Op::Mount(mut op) = fs_mount(&format!("dev/{name}"), fstype, flags, data)? else {
            unreachable!("fs_mount makes a mount op")
        };
        op.create = in_dev(name, true, 0o755)?;
        ops.push(Op::Mount(op));
    }
    for device in DEVICES {
        ops.push(Op::Mount(MountOp {
            target: cstring("mount target", format!("dev/{device}").as_bytes())?,
            create: in_dev(device, false, 0o666)?,
            source: Some(cstring("device", format!("/dev/{device}").as_bytes())?),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            readonly: Readonly::No,
            optional: Optional::No,
            create_missing: None,
        }));
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        ops.push(Op::Symlink {
            dir: cstring("symlink", b"dev")?,
            name: cstring("symlink", name.as_bytes())?,
            target: cstring("symlink", target.as_bytes())?,
        });
    }
    // A fresh sysfs shows the network namespace of its mounter, and the kernel only
    // allows it to a user namespace that owns that network namespace: rootless with the
    // host network gets a recursive read-only bind of the host's /sys instead.
    let sys_op = if spec.network == Network::None || !host.in_user_namespace {
        let read_only = if spec.security == Security::Insecure {
            0
        } else {
            libc::MS_RDONLY
        };
        let Op::Mount(mut op) = fs_mount(
            "sys",
            "sysfs",
            read_only | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )?
        else {
            unreachable!("fs_mount makes a mount op")
        };
        op.optional = Optional::Always;
        op
    } else {
        MountOp {
            target: cstring("mount target", b"sys")?,
            create: None,
            source: Some(cstring("mount source", b"/sys")?),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            readonly: if spec.security == Security::Insecure {
                Readonly::No
            } else {
                Readonly::Recursive
            },
            optional: Optional::Always,
            create_missing: None,
        }
    };
    ops.push(Op::Mount(sys_op));
    for (target, source) in [
        ("etc/resolv.conf", &paths.resolv_conf),
        ("etc/hosts", &paths.hosts),
    ] {
        let Some(source) = source else {
            continue;
        };
        ops.push(Op::Mount(MountOp {
            target: cstring("mount target", target.as_bytes())?,
            create: None,
            source: Some(path_cstring("bind source", source)?),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            readonly: Readonly::Mount,
            optional: Optional::IfTargetMissing,
            create_missing: Some(false),
        }));
    }

    let mut secret_files = Vec::new();
    // `mountpoints` lists the `RUN --mount` targets last, in order.
    let mount_points = &points[points.len().saturating_sub(spec.mounts.len())..];
    for (mount, point) in spec.mounts.iter().zip(mount_points) {
        let target = path_cstring("mount target", &relative_target(mount.target())?)?;
        let op = match mount {
            Mount::Bind {
                source, readonly, ..
            } => MountOp {
                target,
                create: None,
                source: Some(path_cstring("bind source", source)?),
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
                readonly: if *readonly {
                    Readonly::Recursive
                } else {
                    Readonly::No
                },
                optional: Optional::No,
                create_missing: None,
            },
            Mount::Tmpfs { size, mode, .. } => {
                let mut data = format!("mode={mode:o}");
                if let Some(size) = size {
                    data.push_str(&format!(",size={size}"));
                }
                let Op::Mount(mut op) =
                    fs_mount("-", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, Some(&data))?
                else {
                    unreachable!("fs_mount makes a mount op")
                };
                op.target = target;
                op
            }
            Mount::SecretFile {
                source,
                mode,
                uid,
                gid,
                ..
            } => {
                let dest = paths.secrets.join(secret_files.len().to_string());
                secret_files.push(SecretCopy {
                    source: path_cstring("secret source", source)?,
                    dest: path_cstring("secret file", &dest)?,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                });
                MountOp {
                    target,
                    create: None,
                    source: Some(path_cstring("secret file", &dest)?),
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                    readonly: Readonly::Mount,
                    optional: Optional::No,
                    create_missing: None,
                }
            }
        };
        ops.push(Op::Mount(MountOp {
            create_missing: Some(point.directory),
            ..op
        }));
    }
    let secrets = if secret_files.is_empty() {
        None
    } else {
        Some(Secrets {
            tmpfs: path_cstring("secrets directory", &paths.secrets)?,
            files: secret_files,
        })
    };

    let workdir_relative = clean_relative(&spec.cwd);
    let mut workdir_prefixes = Vec::new();
    let mut prefix = PathBuf::from("/");
    for component in workdir_relative.components() {
        prefix.push(component);
        workdir_prefixes.push(path_cstring("working directory", &prefix)?);
    }

    let path_var = spec
        .env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map_or(DEFAULT_PATH, |(_, value)| value.as_str());
    let exec_candidates = if program.contains('/') {
        vec![cstring("argv[0]", program.as_bytes())?]
    } else {
        path_var
            .split(':')
            .map(|dir| if dir.is_empty() { "." } else { dir })
            .map(|dir| cstring("PATH entry", format!("{dir}/{program}").as_bytes()))
            .collect::<Result<_, _>>()?
    };
    let argv = spec
        .argv
        .iter()
        .map(|arg| cstring("argument", arg.as_bytes()))
        .collect::<Result<_, _>>()?;
    let envp = spec
        .env
        .iter()
        .map(|(key, value)| {
            if key.is_empty() || key.contains('=') {
                return Err(Error::InvalidEnvName { name: key.clone() });
            }
            cstring("environment variable", format!("{key}={value}").as_bytes())
        })
        .collect::<Result<_, _>>()?;

    let mut groups = spec.user.additional_gids.clone();
    groups.dedup();
    Ok(Prepared {
        new_network: spec.network == Network::None,
        mountpoint: path_cstring("mountpoint", &paths.mountpoint)?,
        rootfs,
        secrets,
        ops,
        hostname: (!spec.hostname.is_empty())
            .then(|| cstring("hostname", spec.hostname.as_bytes()))
            .transpose()?,
        workdir_prefixes,
        workdir: path_cstring("working directory", &Path::new("/").join(&workdir_relative))?,
        drop_capabilities: match spec.security {
            Security::Sandbox => (0..=host.cap_last_cap)
                .filter(|cap| !DOCKER_DEFAULT_CAPABILITIES.contains(cap))
                .collect(),
            Security::Insecure => Vec::new(),
        },
        groups: host.setgroups_allowed.then_some(groups),
        uid: spec.user.uid,
        gid: spec.user.gid,
        exec_candidates,
        argv: CStringArray::new(argv),
        envp: CStringArray::new(envp),
    })
}

/// The absolute in-rootfs path of op `index`, for error messages.
pub(crate) fn op_target(plan: &Prepared, index: u32) -> Option<PathBuf> {
    let op = plan.ops.get(index as usize)?;
    let relative = match op {
        Op::Mount(mount) => mount.target.as_bytes(),
        Op::Symlink { dir, .. } => dir.as_bytes(),
    };
    Some(Path::new("/").join(OsStr::from_bytes(relative)))
}
