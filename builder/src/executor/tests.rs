//! Unit tests of the setup sequence with the recording `Syscall` double: the exact
//! calls for each kind of rootfs, network, mount and user, without privilege.

use std::path::PathBuf;

use super::child::DOCKER_DEFAULT_CAPABILITIES;
use super::child::{ChildFds, Failure, setup_and_exec};
use super::prepare::{HostInfo, RunPaths, mountpoints, prepare};
use super::syscall::Errno;
use super::syscall::recording::Recording;
use super::{Mount, Network, Rootfs, RunSpec, SetupStage, User};

fn spec(rootfs: Rootfs) -> RunSpec {
    RunSpec {
        rootfs,
        argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: PathBuf::from("/"),
        user: User::root(),
        hostname: String::new(),
        network: Network::Host,
        security: Default::default(),
        mounts: Vec::new(),
        extra_hosts: Vec::new(),
        shm_size: None,
    }
}

fn overlay() -> Rootfs {
    Rootfs::Overlay {
        lowers: vec!["/s/l2".into(), "/s/l1".into()],
        upper: "/s/up".into(),
        work: "/s/work".into(),
    }
}

fn paths() -> RunPaths {
    RunPaths {
        mountpoint: "/run/k/root".into(),
        stub_lower: Some("/run/k/stub".into()),
        secrets: "/run/k/secrets".into(),
        hosts: Some("/etc/hosts".into()),
        resolv_conf: Some("/etc/resolv.conf".into()),
    }
}

fn root_host() -> HostInfo {
    HostInfo {
        in_user_namespace: false,
        setgroups_allowed: true,
        tty_gid_mapped: true,
        cap_last_cap: 40,
    }
}

const FDS: ChildFds = ChildFds {
    stdin: 10,
    stdout: 11,
    stderr: 12,
    report: 13,
};

fn plan(
    spec: &RunSpec,
    paths: &RunPaths,
    host: &HostInfo,
) -> Result<super::child::Prepared, super::Error> {
    prepare(spec, &mountpoints(spec)?, paths, host)
}

fn record(spec: &RunSpec, paths: &RunPaths, host: &HostInfo, sys: &Recording) -> Failure {
    let plan = plan(spec, paths, host).expect("plan");
    setup_and_exec(&plan, FDS, sys)
}

fn calls_of(spec: &RunSpec, paths: &RunPaths, host: &HostInfo) -> Vec<String> {
    let sys = Recording::new();
    record(spec, paths, host, &sys);
    sys.calls()
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect()
}

/// `prctl(PR_CAPBSET_DROP, n)` for every capability up to `last` outside Docker's set.
fn capability_drops(last: u32) -> Vec<String> {
    (0..=last)
        .filter(|cap| !DOCKER_DEFAULT_CAPABILITIES.contains(cap))
        .map(|cap| format!("prctl(PR_CAPBSET_DROP, {cap})"))
        .collect()
}

/// The mounts every step gets, with the rootfs opened as fd 100.
const DEFAULT_MOUNTS: &str = r#"
    openat2(100, "proc", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 101
    mount("proc", "/proc/self/fd/101", "proc", NOSUID|NODEV|NOEXEC, NULL)
    close(101)
    openat2(100, "dev", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 102
    mount("tmpfs", "/proc/self/fd/102", "tmpfs", NOSUID|STRICTATIME, "mode=755,size=65536k")
    close(102)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 103
    mkdirat(103, "pts", 0o755)
    close(103)
    openat2(100, "dev/pts", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 104
    mount("devpts", "/proc/self/fd/104", "devpts", NOSUID|NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    close(104)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 105
    mkdirat(105, "shm", 0o755)
    close(105)
    openat2(100, "dev/shm", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 106
    mount("tmpfs", "/proc/self/fd/106", "tmpfs", NOSUID|NODEV|NOEXEC, "mode=1777,size=65536k")
    close(106)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 107
    mkdirat(107, "mqueue", 0o755)
    close(107)
    openat2(100, "dev/mqueue", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 108
    mount("mqueue", "/proc/self/fd/108", "mqueue", NOSUID|NODEV|NOEXEC, NULL)
    close(108)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 109
    openat(109, "null", WRONLY|CREAT|EXCL|CLOEXEC, 0o666) = 110
    close(110)
    close(109)
    openat2(100, "dev/null", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 111
    mount("/dev/null", "/proc/self/fd/111", NULL, BIND, NULL)
    close(111)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 112
    openat(112, "zero", WRONLY|CREAT|EXCL|CLOEXEC, 0o666) = 113
    close(113)
    close(112)
    openat2(100, "dev/zero", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 114
    mount("/dev/zero", "/proc/self/fd/114", NULL, BIND, NULL)
    close(114)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 115
    openat(115, "full", WRONLY|CREAT|EXCL|CLOEXEC, 0o666) = 116
    close(116)
    close(115)
    openat2(100, "dev/full", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 117
    mount("/dev/full", "/proc/self/fd/117", NULL, BIND, NULL)
    close(117)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 118
    openat(118, "random", WRONLY|CREAT|EXCL|CLOEXEC, 0o666) = 119
    close(119)
    close(118)
    openat2(100, "dev/random", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 120
    mount("/dev/random", "/proc/self/fd/120", NULL, BIND, NULL)
    close(120)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 121
    openat(121, "urandom", WRONLY|CREAT|EXCL|CLOEXEC, 0o666) = 122
    close(122)
    close(121)
    openat2(100, "dev/urandom", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 123
    mount("/dev/urandom", "/proc/self/fd/123", NULL, BIND, NULL)
    close(123)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 124
    openat(124, "tty", WRONLY|CREAT|EXCL|CLOEXEC, 0o666) = 125
    close(125)
    close(124)
    openat2(100, "dev/tty", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 126
    mount("/dev/tty", "/proc/self/fd/126", NULL, BIND, NULL)
    close(126)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 127
    symlinkat("/proc/self/fd", 127, "fd")
    close(127)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 128
    symlinkat("/proc/self/fd/0", 128, "stdin")
    close(128)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 129
    symlinkat("/proc/self/fd/1", 129, "stdout")
    close(129)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 130
    symlinkat("/proc/self/fd/2", 130, "stderr")
    close(130)
    openat2(100, "dev", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 131
    symlinkat("pts/ptmx", 131, "ptmx")
    close(131)
    openat2(100, "sys", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 132
    mount("sysfs", "/proc/self/fd/132", "sysfs", RDONLY|NOSUID|NODEV|NOEXEC, NULL)
    close(132)
    openat2(100, "etc/resolv.conf", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 133
    mount("/etc/resolv.conf", "/proc/self/fd/133", NULL, BIND, NULL)
    close(133)
    openat2(100, "etc/resolv.conf", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 134
    mount_setattr(134, AT_EMPTY_PATH, RDONLY)
    close(134)
    openat2(100, "etc/hosts", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 135
    mount("/etc/hosts", "/proc/self/fd/135", NULL, BIND, NULL)
    close(135)
    openat2(100, "etc/hosts", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 136
    mount_setattr(136, AT_EMPTY_PATH, RDONLY)
    close(136)
"#;

/// Everything from the pivot to exec for root in `/` with the test spec.
fn pivot_to_exec_as_root() -> Vec<String> {
    let mut expected = lines(
        r#"
        close(100)
        chdir("/run/k/root")
        pivot_root(".", ".")
        umount2(".", MNT_DETACH)
        chdir("/")
        chdir("/")
        dup2(10, 0)
        dup2(11, 1)
        dup2(12, 2)
        setsid()
        "#,
    );
    expected.extend(capability_drops(40));
    expected.extend(lines(
        r#"
        capset(inheritable=0); prctl(PR_CAP_AMBIENT_CLEAR_ALL)
        setgroups([])
        setresgid(0)
        setresuid(0)
        umask(0o22)
        close_range(3, ~0, CLOEXEC)
        execve("/bin/sh", ["/bin/sh", "-c", "true"], ["PATH=/usr/bin:/bin"])
        "#,
    ));
    expected
}

#[test]
fn overlay_rootfs_sequence() {
    let mut expected = lines(
        r#"
        prctl(PR_SET_PDEATHSIG, SIGKILL)
        umask(0o0)
        mount(NULL, "/", NULL, REC|PRIVATE, NULL)
        mount("overlay", "/run/k/root", "overlay", 0, "lowerdir=/s/l2:/s/l1:/run/k/stub,upperdir=/s/up,workdir=/s/work,userxattr,index=off,metacopy=off,redirect_dir=nofollow,volatile")
        open("/run/k/root", PATH|DIRECTORY|CLOEXEC, 0o0) = 100
        "#,
    );
    expected.extend(lines(DEFAULT_MOUNTS));
    expected.extend(pivot_to_exec_as_root());
    assert_eq!(calls_of(&spec(overlay()), &paths(), &root_host()), expected);
}

#[test]
fn overlay_with_long_lower_list_uses_fsconfig() {
    let lowers: Vec<PathBuf> = (0..60)
        .map(|i| PathBuf::from(format!("/store/snapshots/{i:064}/fs")))
        .collect();
    let rootfs = Rootfs::Overlay {
        lowers: lowers.clone(),
        upper: "/s/up".into(),
        work: "/s/work".into(),
    };
    let calls = calls_of(&spec(rootfs), &paths(), &root_host());
    let mut quoted: Vec<String> = lowers
        .iter()
        .map(|l| format!("{:?}", l.display().to_string()))
        .collect();
    quoted.push("\"/run/k/stub\"".into());
    assert_eq!(
        calls[3],
        format!(
            "fsconfig overlay lowerdir+=[{}] upperdir=\"/s/up\" workdir=\"/s/work\" -> \"/run/k/root\"",
            quoted.join(", ")
        )
    );
}

#[test]
fn dir_rootfs_is_bound_recursively() {
    let overlay_calls = calls_of(&spec(overlay()), &paths(), &root_host());
    let dir_paths = RunPaths {
        stub_lower: None,
        ..paths()
    };
    let calls = calls_of(
        &spec(Rootfs::Dir("/images/copy".into())),
        &dir_paths,
        &root_host(),
    );
    assert_eq!(
        calls[3],
        r#"mount("/images/copy", "/run/k/root", NULL, BIND|REC, NULL)"#
    );
    // Everything else is the same as for an overlay.
    assert_eq!(calls.len(), overlay_calls.len());
    for (i, (dir, overlay)) in calls.iter().zip(&overlay_calls).enumerate() {
        if i != 3 {
            assert_eq!(dir, overlay);
        }
    }
}

#[test]
fn network_none_brings_up_loopback_and_mounts_a_fresh_sysfs_even_rootless() {
    let mut spec = spec(overlay());
    spec.network = Network::None;
    let rootless = HostInfo {
        in_user_namespace: true,
        ..root_host()
    };
    let calls = calls_of(&spec, &paths(), &rootless);
    assert_eq!(
        calls[..4],
        lines(
            r#"
            prctl(PR_SET_PDEATHSIG, SIGKILL)
            umask(0o0)
            ioctl(SIOCSIFFLAGS, "lo", IFF_UP)
            mount(NULL, "/", NULL, REC|PRIVATE, NULL)
            "#
        )[..]
    );
    assert!(
        calls.contains(
            &r#"mount("sysfs", "/proc/self/fd/132", "sysfs", RDONLY|NOSUID|NODEV|NOEXEC, NULL)"#
                .to_owned()
        )
    );
}

#[test]
fn rootless_host_network_binds_the_hosts_sys_read_only() {
    let rootless = HostInfo {
        in_user_namespace: true,
        ..root_host()
    };
    let calls = calls_of(&spec(overlay()), &paths(), &rootless);
    let start = calls
        .iter()
        .position(|call| call.starts_with(r#"openat2(100, "sys""#))
        .unwrap();
    assert_eq!(
        calls[start..start + 6],
        lines(
            r#"
            openat2(100, "sys", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 132
            mount("/sys", "/proc/self/fd/132", NULL, BIND|REC, NULL)
            close(132)
            openat2(100, "sys", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 133
            mount_setattr(133, AT_EMPTY_PATH|AT_RECURSIVE, RDONLY)
            close(133)
            "#
        )[..]
    );
}

/// The calls between the default mounts and the pivot for one extra mount.
fn extra_mount_calls(mount: Mount) -> Vec<String> {
    let mut spec = spec(overlay());
    spec.mounts = vec![mount];
    let calls = calls_of(&spec, &paths(), &root_host());
    let after_hosts = calls
        .iter()
        .rposition(|call| call.starts_with("mount_setattr(136"))
        .unwrap()
        + 2;
    let pivot = calls.iter().position(|call| call == "close(100)").unwrap();
    calls[after_hosts..pivot].to_vec()
}

#[test]
fn bind_mount_sequence() {
    let source = std::env::temp_dir();
    let calls = extra_mount_calls(Mount::Bind {
        source: source.clone(),
        target: "/mnt/../mnt/cache/".into(),
        readonly: true,
    });
    assert_eq!(
        calls,
        lines(&format!(
            r#"
            openat2(100, "mnt/cache", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 137
            mount({:?}, "/proc/self/fd/137", NULL, BIND|REC, NULL)
            close(137)
            openat2(100, "mnt/cache", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 138
            mount_setattr(138, AT_EMPTY_PATH|AT_RECURSIVE, RDONLY)
            close(138)
            "#,
            source.display().to_string()
        ))
    );
    let writable = extra_mount_calls(Mount::Bind {
        source,
        target: "/cache".into(),
        readonly: false,
    });
    assert_eq!(writable.len(), 3, "no read-only step: {writable:?}");
}

#[test]
fn tmpfs_mount_sequence() {
    let calls = extra_mount_calls(Mount::Tmpfs {
        target: "/scratch".into(),
        size: Some(1 << 20),
        mode: 0o1777,
    });
    assert_eq!(
        calls,
        lines(
            r#"
            openat2(100, "scratch", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 137
            mount("tmpfs", "/proc/self/fd/137", "tmpfs", NOSUID|NODEV, "mode=1777,size=1048576")
            close(137)
            "#
        )
    );
}

#[test]
fn shm_size_sets_the_dev_shm_tmpfs_size_and_zero_means_the_default() {
    let shm_mount = |shm_size: Option<u64>| {
        let mut spec = spec(overlay());
        spec.shm_size = shm_size;
        let calls = calls_of(&spec, &paths(), &root_host());
        // The tmpfs mounted on the `dev/shm` handle, and nothing else differs.
        let opened = calls
            .iter()
            .position(|call| call.starts_with(r#"openat2(100, "dev/shm""#))
            .expect("dev/shm is opened");
        (calls[opened + 1].clone(), calls)
    };
    let (default, default_calls) = shm_mount(None);
    assert_eq!(
        default,
        r#"mount("tmpfs", "/proc/self/fd/106", "tmpfs", NOSUID|NODEV|NOEXEC, "mode=1777,size=65536k")"#
    );
    let (sized, sized_calls) = shm_mount(Some(96 << 20));
    assert_eq!(
        sized,
        r#"mount("tmpfs", "/proc/self/fd/106", "tmpfs", NOSUID|NODEV|NOEXEC, "mode=1777,size=100663296")"#
    );
    let differing: Vec<_> = default_calls
        .iter()
        .zip(&sized_calls)
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(differing.len(), 1, "{differing:?}");
    assert_eq!(shm_mount(Some(0)).0, default, "0 is Docker's default");
}

#[test]
fn secret_file_sequence() {
    let mut spec = spec(overlay());
    spec.mounts = vec![Mount::SecretFile {
        source: "/host/token".into(),
        target: "/run/secrets/token".into(),
        mode: 0o400,
        uid: 1000,
        gid: 1000,
    }];
    let calls = calls_of(&spec, &paths(), &root_host());
    // The copy onto a private tmpfs happens right after the rootfs is opened (fd 100).
    assert_eq!(
        calls[5..12],
        lines(
            r#"
            mount("tmpfs", "/run/k/secrets", "tmpfs", NOSUID|NODEV|NOEXEC, "mode=0700")
            open("/host/token", CLOEXEC, 0o0) = 101
            open("/run/k/secrets/0", WRONLY|CREAT|EXCL|CLOEXEC, 0o400) = 102
            copy(101 -> 102)
            fchown(102, 1000, 1000)
            close(101)
            close(102)
            "#
        )[..]
    );
    let bind = calls
        .iter()
        .position(|call| call.starts_with(r#"openat2(100, "run/secrets/token""#))
        .unwrap();
    assert_eq!(
        calls[bind..bind + 6],
        lines(
            r#"
            openat2(100, "run/secrets/token", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 139
            mount("/run/k/secrets/0", "/proc/self/fd/139", NULL, BIND, NULL)
            close(139)
            openat2(100, "run/secrets/token", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 140
            mount_setattr(140, AT_EMPTY_PATH, RDONLY)
            close(140)
            "#
        )[..]
    );
}

#[test]
fn user_switch_hostname_and_workdir_sequence() {
    let mut spec = spec(overlay());
    spec.user = User {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![29, 1000],
        home: "/home/app".into(),
    };
    spec.hostname = "box".into();
    spec.cwd = "/srv/app".into();
    let calls = calls_of(&spec, &paths(), &root_host());
    let pivot = calls.iter().position(|call| call == "close(100)").unwrap();
    let mut expected = lines(
        r#"
        close(100)
        chdir("/run/k/root")
        pivot_root(".", ".")
        umount2(".", MNT_DETACH)
        chdir("/")
        sethostname("box")
        mkdir("/srv", 0o755)
        mkdir("/srv/app", 0o755)
        chdir("/srv/app")
        dup2(10, 0)
        dup2(11, 1)
        dup2(12, 2)
        setsid()
        "#,
    );
    expected.extend(capability_drops(40));
    expected.extend(lines(
        r#"
        capset(inheritable=0); prctl(PR_CAP_AMBIENT_CLEAR_ALL)
        setgroups([29, 1000])
        setresgid(1000)
        setresuid(1000)
        umask(0o22)
        close_range(3, ~0, CLOEXEC)
        execve("/bin/sh", ["/bin/sh", "-c", "true"], ["PATH=/usr/bin:/bin"])
        "#,
    ));
    assert_eq!(calls[pivot..], expected[..]);

    // Where setgroups is denied (single-id user namespace) it is not called.
    let single = HostInfo {
        in_user_namespace: true,
        setgroups_allowed: false,
        tty_gid_mapped: false,
        cap_last_cap: 40,
    };
    let calls = calls_of(&spec, &paths(), &single);
    assert!(!calls.iter().any(|call| call.starts_with("setgroups")));
    assert!(calls.contains(
        &r#"mount("devpts", "/proc/self/fd/104", "devpts", NOSUID|NOEXEC, "newinstance,ptmxmode=0666,mode=0620")"#
            .to_owned()
    ));
}

#[test]
fn pivot_root_falls_back_to_move_and_chroot() {
    let sys = Recording::new().failing("pivot_root", Errno::INVAL);
    record(&spec(overlay()), &paths(), &root_host(), &sys);
    let calls = sys.calls();
    let pivot = calls
        .iter()
        .position(|call| call.starts_with("pivot_root"))
        .unwrap();
    assert_eq!(
        calls[pivot..pivot + 4],
        lines(
            r#"
            pivot_root(".", ".") -> errno 22
            mount(".", "/", NULL, MOVE, NULL)
            chroot(".")
            chdir("/")
            "#
        )[..]
    );
}

#[test]
fn exec_searches_path_like_execvp() {
    let mut spec = spec(overlay());
    spec.argv = vec!["tool".into(), "--flag".into()];
    spec.env = vec![("PATH".into(), "/usr/local/bin:/usr/bin".into())];
    let sys = Recording::new().failing(r#"execve("/usr/local/bin/tool""#, Errno::NOENT);
    let failure = record(&spec, &paths(), &root_host(), &sys);
    let execs: Vec<String> = sys
        .calls()
        .into_iter()
        .filter(|call| call.starts_with("execve"))
        .collect();
    assert_eq!(
        execs,
        lines(
            r#"
            execve("/usr/local/bin/tool", ["tool", "--flag"], ["PATH=/usr/local/bin:/usr/bin"]) -> errno 2
            execve("/usr/bin/tool", ["tool", "--flag"], ["PATH=/usr/local/bin:/usr/bin"])
            "#
        )
    );
    // The double's successful exec "returns" EPERM, which stops the search.
    assert_eq!(failure.stage, SetupStage::Exec);
    assert_eq!(failure.index, 1);

    // Not found anywhere: ENOENT for the whole search.
    let sys = Recording::new().failing("execve", Errno::NOENT);
    let failure = record(&spec, &paths(), &root_host(), &sys);
    assert_eq!(
        (failure.stage, failure.errno),
        (SetupStage::Exec, Errno::NOENT)
    );
    assert_eq!(failure.index, u32::MAX);
}

#[test]
fn missing_resolv_conf_target_is_skipped_but_a_run_mount_target_is_not() {
    let sys = Recording::new().failing(r#"openat2(100, "etc/resolv.conf""#, Errno::NOENT);
    record(&spec(overlay()), &paths(), &root_host(), &sys);
    let calls = sys.calls();
    assert!(
        !calls
            .iter()
            .any(|call| call.contains(r#"mount("/etc/resolv.conf""#))
    );
    assert!(
        calls
            .iter()
            .any(|call| call.contains(r#"mount("/etc/hosts""#))
    );
    assert!(calls.iter().any(|call| call.starts_with("execve")));

    let mut spec = spec(overlay());
    spec.mounts = vec![Mount::Tmpfs {
        target: "/scratch".into(),
        size: None,
        mode: 0o755,
    }];
    let sys = Recording::new().failing(r#"openat2(100, "scratch""#, Errno::NOENT);
    let failure = record(&spec, &paths(), &root_host(), &sys);
    // It is created (and reported), but still does not resolve: that is an error.
    assert_eq!(failure.stage, SetupStage::ResolveMountTarget);
    let plan = plan(&spec, &paths(), &root_host()).unwrap();
    assert_eq!(
        super::prepare::op_target(&plan, failure.index),
        Some(PathBuf::from("/scratch"))
    );
}

#[test]
fn a_host_without_resolv_conf_binds_nothing_there() {
    let no_resolv = RunPaths {
        resolv_conf: None,
        ..paths()
    };
    let calls = calls_of(&spec(overlay()), &no_resolv, &root_host());
    assert!(!calls.iter().any(|call| call.contains("resolv.conf")));
    assert!(
        calls
            .iter()
            .any(|call| call.contains(r#"mount("/etc/hosts""#))
    );
}

#[test]
fn a_failed_mount_stops_the_setup_with_its_stage() {
    let sys = Recording::new().failing(r#"mount("overlay""#, Errno::INVAL);
    let failure = record(&spec(overlay()), &paths(), &root_host(), &sys);
    assert_eq!(
        (failure.stage, failure.errno),
        (SetupStage::MountRootfs, Errno::INVAL)
    );
    assert_eq!(sys.calls().len(), 4, "nothing after the failed mount");
    assert_eq!(Failure::decode(&failure.encode()), Some(failure));
}

#[test]
fn invalid_specs_are_refused_before_anything_runs() {
    let mut bad = spec(overlay());
    bad.argv.clear();
    assert!(matches!(
        plan(&bad, &paths(), &root_host()),
        Err(super::Error::EmptyArgv)
    ));
    let mut bad = spec(overlay());
    bad.cwd = "relative".into();
    assert!(matches!(
        plan(&bad, &paths(), &root_host()),
        Err(super::Error::RelativePath { .. })
    ));
    let mut bad = spec(overlay());
    bad.env.push(("BAD".into(), "nul\0byte".into()));
    assert!(matches!(
        plan(&bad, &paths(), &root_host()),
        Err(super::Error::NulByte { .. })
    ));
    let mut bad = spec(overlay());
    bad.mounts = vec![Mount::Tmpfs {
        target: "scratch".into(),
        size: None,
        mode: 0o755,
    }];
    assert!(matches!(
        plan(&bad, &paths(), &root_host()),
        Err(super::Error::RelativePath { .. })
    ));
}

#[test]
fn hidden_mount_target_is_created_in_the_rootfs_and_reported() {
    let mut spec = spec(overlay());
    spec.mounts = vec![Mount::Tmpfs {
        target: "/root/.cache".into(),
        size: None,
        mode: 0o755,
    }];
    // The stub is hidden: the target and then its last component do not resolve.
    let sys = Recording::new().failing_times(r#"openat2(100, "root/.cache""#, Errno::NOENT, 2);
    record(&spec, &paths(), &root_host(), &sys);
    let calls = sys.calls();
    let start = calls
        .iter()
        .position(|call| call.starts_with(r#"openat2(100, "root/.cache""#))
        .unwrap();
    let report = format!(
        "write(13, {:?})",
        String::from_utf8_lossy(b"\x10\x00created/by/child")
    );
    let mut expected = lines(
        r#"
        openat2(100, "root/.cache", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) -> errno 2
        openat2(100, "root", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 137
        close(137)
        openat2(100, "root/.cache", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) -> errno 2
        openat2(100, "root", PATH|DIRECTORY|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 138
        mkdirat(138, ".cache", 0o755)
        openat(138, ".cache", PATH|NOFOLLOW|CLOEXEC, 0o0) = 139
        readlink("/proc/self/fd/139")
        close(139)
        "#,
    );
    expected.push(report);
    expected.extend(lines(
        r#"
        close(138)
        openat2(100, "root/.cache", PATH|CLOEXEC, IN_ROOT|NO_MAGICLINKS) = 140
        mount("tmpfs", "/proc/self/fd/140", "tmpfs", NOSUID|NODEV, "mode=755")
        close(140)
        "#,
    ));
    assert_eq!(calls[start..start + expected.len()], expected[..]);
}
