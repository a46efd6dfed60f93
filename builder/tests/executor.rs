//! The executor against the real kernel: a busybox rootfs, overlayfs, namespaces.
//!
//! Needs root (as CI runs) — or runs rootless: every test first calls
//! `ensure_root_in_userns`, so `cargo test` as a plain user re-executes this binary in
//! a user namespace. The `rootless_*` tests (as root) run the key cases again as the
//! unprivileged users `kilntest` (with /etc/subuid ranges) and `kilntest-single`
//! (without), creating them when missing.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln_builder::executor::rootless::{self, UsernsMode};
use kiln_builder::executor::{
    self, CancelToken, Error, ExitStatus, Mount, Network, Rootfs, RunSpec, Stream, User,
};

const APPLETS: &[&str] = &[
    "sh", "ls", "id", "cat", "echo", "touch", "rm", "mkdir", "chown", "hostname", "ip", "mount",
    "env", "sleep", "kill", "ps", "stat", "pwd", "grep", "wc", "test", "true", "readlink",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    app:x:1000:1000:app:/home/app:/bin/sh\n\
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\naudio:x:29:app\napp:x:1000:\nnogroup:x:65534:\n";

/// Become root (of a user namespace when not root); returns the mode.
fn mode() -> &'static UsernsMode {
    static MODE: OnceLock<UsernsMode> = OnceLock::new();
    MODE.get_or_init(|| rootless::ensure_root_in_userns().expect("root in a user namespace"))
}

/// A busybox rootfs as one lower dir, with an empty upper and work dir.
struct Fixture {
    temp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        mode();
        let temp = tempfile::Builder::new()
            .prefix("kiln-exec-test-")
            .tempdir()
            .unwrap();
        let fixture = Fixture { temp };
        write_busybox_rootfs(&fixture.lower());
        std::fs::create_dir(fixture.upper()).unwrap();
        std::fs::create_dir(fixture.work()).unwrap();
        fixture
    }

    fn lower(&self) -> PathBuf {
        self.temp.path().join("lower")
    }
    fn upper(&self) -> PathBuf {
        self.temp.path().join("upper")
    }
    fn work(&self) -> PathBuf {
        self.temp.path().join("work")
    }

    fn overlay(&self) -> Rootfs {
        Rootfs::Overlay {
            lowers: vec![self.lower()],
            upper: self.upper(),
            work: self.work(),
        }
    }

    fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            rootfs: self.overlay(),
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/bin".into())],
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

    /// Every path in the upper dir, relative.
    fn upper_entries(&self) -> BTreeSet<String> {
        let mut entries = BTreeSet::new();
        let mut pending = vec![self.upper()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let path = entry.path();
                entries.insert(
                    path.strip_prefix(self.upper())
                        .unwrap()
                        .display()
                        .to_string(),
                );
                if entry.file_type().unwrap().is_dir() {
                    pending.push(path);
                }
            }
        }
        entries
    }
}

fn write_busybox_rootfs(root: &Path) {
    for dir in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(root.join("etc/group"), GROUP).unwrap();
    std::fs::write(root.join("etc/motd"), "hello\n").unwrap();
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn run(spec: &RunSpec) -> Result<Output, Error> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let outcome = executor::run(
        spec,
        &CancelToken::new(),
        &mut |stream, bytes| match stream {
            Stream::Stdout => stdout.extend_from_slice(bytes),
            Stream::Stderr => stderr.extend_from_slice(bytes),
        },
    )?;
    Ok(Output {
        status: outcome.status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

fn run_ok(spec: &RunSpec) -> Output {
    let output = run(spec).expect("the step runs");
    assert_eq!(
        output.status,
        ExitStatus::Code(0),
        "stdout: {}\nstderr: {}",
        output.stdout,
        output.stderr
    );
    output
}

// ---- key cases, also run rootless ----

fn case_run_mounts_leave_no_trace() {
    let fixture = Fixture::new();
    let host_dir = fixture.temp.path().join("cache");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("data"), "cached\n").unwrap();
    let secret = fixture.temp.path().join("secret.txt");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let mut spec = fixture.spec(
        "cat /mnt/cache/data; touch /mnt/cache/new 2>/dev/null || echo ro; \
         touch /scratch/x && stat -c '%a' /scratch; \
         cat /run/secrets/token; echo; stat -c '%a %u:%g' /run/secrets/token; \
         grep -c ' /run/secrets/token ' /proc/mounts",
    );
    spec.mounts = vec![
        Mount::Bind {
            source: host_dir.clone(),
            target: "/mnt/cache".into(),
            readonly: true,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
            mode: 0o1777,
        },
        Mount::SecretFile {
            source: secret,
            target: "/run/secrets/token".into(),
            mode: 0o400,
            uid: 1000,
            gid: 1000,
        },
    ];
    let output = run_ok(&spec);
    assert_eq!(
        output.stdout,
        "cached\nro\n1777\ns3cr3t\n400 1000:1000\n1\n"
    );
    assert!(!host_dir.join("new").exists());
    assert!(
        fixture.upper_entries().is_empty(),
        "{:?}",
        fixture.upper_entries()
    );
}

fn case_output_and_exit_code() {
    let fixture = Fixture::new();
    let output = run_ok(&fixture.spec("echo hi; echo oops >&2"));
    assert_eq!(output.stdout, "hi\n");
    assert_eq!(output.stderr, "oops\n");

    let output = run(&fixture.spec("echo failing; exit 3")).unwrap();
    assert_eq!(output.status, ExitStatus::Code(3));
    assert_eq!(output.stdout, "failing\n");

    // stdin is /dev/null, and no descriptor of the parent reached the step (3 is the
    // directory `ls` itself opens).
    let output = run_ok(&fixture.spec("cat; readlink /proc/self/fd/0; ls /proc/self/fd"));
    assert_eq!(output.stdout, "/dev/null\n0\n1\n2\n3\n");
}

fn case_environment_is_exact() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("env");
    spec.env.push(("FOO".into(), "bar baz".into()));
    let output = run_ok(&spec);
    let lines: BTreeSet<&str> = output.stdout.lines().collect();
    // busybox sh exports PWD and SHLVL itself; nothing else may appear.
    let allowed_extra = ["PWD=/", "SHLVL=1"];
    let expected: BTreeSet<&str> = ["PATH=/bin", "FOO=bar baz"].into_iter().collect();
    for line in &lines {
        assert!(
            expected.contains(line) || allowed_extra.contains(line),
            "unexpected variable in the step: {line}"
        );
    }
    assert!(expected.is_subset(&lines), "{lines:?}");
    assert!(!output.stdout.contains("PIP_FIND_LINKS"));
}

fn case_user_by_name_and_chown() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("id; touch /tmp/mine; stat -c '%u:%g' /tmp/mine");
    spec.user = executor::resolve_user(&fixture.overlay(), "app").unwrap();
    let output = run_ok(&spec);
    assert!(
        output.stdout.contains("uid=1000(app) gid=1000(app)"),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("29(audio)"), "{}", output.stdout);
    assert!(output.stdout.ends_with("1000:1000\n"), "{}", output.stdout);

    let output = run_ok(&fixture.spec(
        "touch /a /b && chown 1000:1000 /a && chown 65534:65534 /b && stat -c '%u:%g' /a /b",
    ));
    assert_eq!(output.stdout, "1000:1000\n65534:65534\n");
    // Inside the namespace the upper dir shows the same ids.
    let a = std::fs::metadata(fixture.upper().join("a")).unwrap();
    let b = std::fs::metadata(fixture.upper().join("b")).unwrap();
    assert_eq!(
        (a.uid(), a.gid(), b.uid(), b.gid()),
        (1000, 1000, 65534, 65534)
    );
}

fn case_overlay_diff_has_no_trace_of_the_sandbox() {
    let fixture = Fixture::new();
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let output = run_ok(&fixture.spec(
        "echo new > /newfile && rm /etc/motd && cat /etc/resolv.conf && test -e /etc/hosts \
         && echo x > /dev/null && test -e /proc/self/exe && test -d /sys/class && ls /dev",
    ));
    assert!(output.stdout.starts_with(&host_resolv), "{}", output.stdout);
    for device in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd",
    ] {
        assert!(
            output.stdout.lines().any(|line| line == device),
            "/dev/{device} missing: {}",
            output.stdout
        );
    }
    let entries = fixture.upper_entries();
    let expected: BTreeSet<String> = ["newfile", "etc", "etc/motd"].map(String::from).into();
    assert_eq!(
        entries, expected,
        "the upper dir holds exactly the step's changes"
    );
    let whiteout = std::fs::symlink_metadata(fixture.upper().join("etc/motd")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert_eq!(
        std::fs::read_to_string(fixture.upper().join("newfile")).unwrap(),
        "new\n"
    );
}

fn case_cancel_kills_and_leaves_no_mount() {
    let fixture = Fixture::new();
    let spec = fixture.spec("sleep 1000 & sleep 1000");
    let cancel = CancelToken::new();
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        let worker = scope.spawn(|| executor::run(&spec, &cancel, &mut |_, _| {}));
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
        worker.join().unwrap()
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    // The step sleeps 1000 s: returning at all shows it was killed. The bound is
    // loose on purpose (a loaded 2-core CI machine); speed lives in benches.
    assert!(started.elapsed() < Duration::from_secs(120));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let temp = fixture.temp.path().to_str().unwrap();
    assert!(
        !mountinfo.contains(temp),
        "a mount was left behind: {mountinfo}"
    );
    assert!(
        !mountinfo.contains("kiln-run-"),
        "a mount was left behind: {mountinfo}"
    );
}

fn case_network_none() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("ls /sys/class/net; ip link show lo");
    spec.network = Network::None;
    let output = run_ok(&spec);
    let mut lines = output.stdout.lines();
    assert_eq!(lines.next(), Some("lo"), "{}", output.stdout);
    let link = lines.next().unwrap_or_default();
    assert!(
        link.contains("lo:") && link.contains("UP"),
        "{}",
        output.stdout
    );
}

fn key_cases() {
    case_output_and_exit_code();
    case_run_mounts_leave_no_trace();
    case_network_none();
    case_environment_is_exact();
    case_user_by_name_and_chown();
    case_overlay_diff_has_no_trace_of_the_sandbox();
    case_cancel_kills_and_leaves_no_mount();
}

// ---- tests ----

#[test]
fn output_is_streamed_and_exit_code_propagated() {
    case_output_and_exit_code();
}

#[test]
fn environment_is_exactly_the_given_one() {
    case_environment_is_exact();
}

/// Runs this test binary again with a host variable set; the child's step must not
/// see it (`environment_child` does the check).
#[test]
fn host_environment_does_not_leak() {
    mode();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "environment_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PIP_FIND_LINKS", "/host/wheels")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("environment child saw PIP_FIND_LINKS on the host"),
        "{stdout}"
    );
}

#[test]
fn environment_child() {
    if std::env::var_os("PIP_FIND_LINKS").is_some() {
        println!("environment child saw PIP_FIND_LINKS on the host");
    }
    case_environment_is_exact();
}

#[test]
fn user_by_name_and_chown_to_other_ids() {
    case_user_by_name_and_chown();
}

#[test]
fn unknown_user_gives_dockers_error() {
    let fixture = Fixture::new();
    let error = executor::resolve_user(&fixture.overlay(), "ghost").unwrap_err();
    assert_eq!(
        error.to_string(),
        "unable to find user ghost: no matching entries in passwd file"
    );
}

#[test]
fn capabilities_are_dockers_defaults() {
    let fixture = Fixture::new();
    let output = run_ok(&fixture.spec("grep -E '^Cap(Inh|Eff|Bnd|Amb)' /proc/self/status"));
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
    // NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    let docker = "00000000a80425fb";
    assert!(
        output.stdout.contains(&format!("CapBnd:\t{docker}")),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains(&format!("CapEff:\t{docker}")),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("CapInh:\t0000000000000000"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("CapAmb:\t0000000000000000"),
        "{}",
        output.stdout
    );

    let mut spec = fixture.spec("grep -E '^CapEff' /proc/self/status");
    spec.user = executor::resolve_user(&fixture.overlay(), "app").unwrap();
    assert_eq!(run_ok(&spec).stdout, "CapEff:\t0000000000000000\n");
}

#[test]
fn working_directory_is_created() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("pwd; stat -c '%u %a' .");
    spec.cwd = PathBuf::from("/srv/app/../work/dir");
    let output = run_ok(&spec);
    assert_eq!(output.stdout, "/srv/work/dir\n0 755\n");
    assert!(fixture.upper().join("srv/work/dir").is_dir());
}

#[test]
fn network_none_has_only_loopback_up() {
    case_network_none();
}

#[test]
fn hostname_is_set() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("hostname");
    spec.hostname = "kiln-sandbox".into();
    assert_eq!(run_ok(&spec).stdout, "kiln-sandbox\n");
}

#[test]
fn step_is_pid_one_and_alone() {
    let fixture = Fixture::new();
    // `; true`: keep sh from exec'ing ps in its place.
    let output = run_ok(&fixture.spec("echo $$; ps -o pid,comm; true"));
    let mut lines = output.stdout.lines();
    assert_eq!(lines.next(), Some("1"));
    let processes: Vec<&str> = lines.skip(1).map(str::trim).collect();
    assert_eq!(processes.len(), 2, "only sh and ps: {processes:?}");
    assert!(processes[0].starts_with("1 "), "{processes:?}");
}

#[test]
fn overlay_upper_dir_is_the_diff() {
    case_overlay_diff_has_no_trace_of_the_sandbox();
}

#[test]
fn recreated_directory_is_opaque_with_the_documented_xattr() {
    let fixture = Fixture::new();
    std::fs::create_dir_all(fixture.lower().join("opt/old")).unwrap();
    std::fs::write(fixture.lower().join("opt/old/file"), "x").unwrap();
    run_ok(&fixture.spec("rm -rf /opt/old && mkdir /opt/old && touch /opt/old/new"));
    let mut value = [0u8; 8];
    let len = rustix::fs::lgetxattr(
        fixture.upper().join("opt/old"),
        executor::OVERLAY_OPAQUE_XATTR,
        &mut value,
    )
    .expect("opaque xattr on the recreated directory");
    assert_eq!(&value[..len], b"y");
    let expected: BTreeSet<String> = ["opt", "opt/old", "opt/old/new"].map(String::from).into();
    assert_eq!(fixture.upper_entries(), expected);
}

#[test]
fn image_with_its_own_resolv_conf_and_dirs_leaves_no_trace_either() {
    let fixture = Fixture::new();
    for dir in ["proc", "dev", "sys"] {
        std::fs::create_dir(fixture.lower().join(dir)).unwrap();
    }
    std::fs::write(
        fixture.lower().join("etc/resolv.conf"),
        "nameserver 192.0.2.1\n",
    )
    .unwrap();
    std::fs::write(fixture.lower().join("etc/hosts"), "192.0.2.2 image\n").unwrap();
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let output =
        run_ok(&fixture.spec("cat /etc/resolv.conf; echo > /etc/resolv.conf || echo refused"));
    assert_eq!(output.stdout, format!("{host_resolv}refused\n"));
    assert!(
        fixture.upper_entries().is_empty(),
        "{:?}",
        fixture.upper_entries()
    );
}

#[test]
fn extra_hosts_are_added() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("grep registry.test /etc/hosts");
    spec.extra_hosts = vec![("registry.test".into(), "192.0.2.9".parse().unwrap())];
    assert_eq!(run_ok(&spec).stdout, "192.0.2.9\tregistry.test\n");
}

#[test]
fn shm_size_is_the_size_of_dev_shm() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("grep ' /dev/shm ' /proc/mounts");
    let default = run_ok(&spec).stdout;
    assert!(default.contains(",size=65536k"), "{default}");
    spec.shm_size = Some(96 << 20);
    let sized = run_ok(&spec).stdout;
    assert!(sized.contains(",size=98304k"), "{sized}");
}

#[test]
fn run_mounts_bind_tmpfs_and_secret_leave_no_trace() {
    case_run_mounts_leave_no_trace();
}

/// The bottom stub lower cannot help where the image hides it: an opaque directory
/// or a whiteout on the way. The child creates those mountpoints in the merged tree;
/// they are gone from the upper dir afterwards, with the directories copied up for them.
#[test]
fn mountpoints_hidden_by_opaque_dirs_and_whiteouts_leave_no_trace() {
    let fixture = Fixture::new();
    let top = fixture.temp.path().join("top");
    std::fs::create_dir_all(top.join("root")).unwrap();
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::create_dir_all(fixture.lower().join("root/old")).unwrap();
    rustix::fs::setxattr(
        top.join("root"),
        executor::OVERLAY_OPAQUE_XATTR,
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // The image deleted /etc/hosts (as a whiteout) — and it lacks /etc/resolv.conf.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        top.join("etc/hosts"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let mut spec =
        fixture.spec("ls -A /root; test -d /root/.cache/pip && echo mounted; cat /etc/hosts");
    spec.rootfs = Rootfs::Overlay {
        lowers: vec![top.clone(), fixture.lower()],
        upper: fixture.upper(),
        work: fixture.work(),
    };
    spec.mounts = vec![Mount::Tmpfs {
        target: "/root/.cache/pip".into(),
        size: None,
        mode: 0o755,
    }];
    let output = run_ok(&spec);
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert_eq!(output.stdout, format!(".cache\nmounted\n{host_hosts}"));
    assert!(
        fixture.upper_entries().is_empty(),
        "{:?}",
        fixture.upper_entries()
    );
}

#[test]
fn dangling_resolv_conf_symlink_in_the_image_is_left_alone() {
    let fixture = Fixture::new();
    std::os::unix::fs::symlink(
        "/run/systemd/resolve/stub-resolv.conf",
        fixture.lower().join("etc/resolv.conf"),
    )
    .unwrap();
    let output = run_ok(
        &fixture.spec("readlink /etc/resolv.conf; test -e /etc/resolv.conf || echo dangling"),
    );
    assert_eq!(
        output.stdout,
        "/run/systemd/resolve/stub-resolv.conf\ndangling\n"
    );
    assert!(
        fixture.upper_entries().is_empty(),
        "{:?}",
        fixture.upper_entries()
    );
}

#[test]
fn mount_targets_cannot_escape_through_symlinks() {
    let fixture = Fixture::new();
    // The image points /mnt at an absolute path that also exists on the host; the
    // mount must land on the rootfs' own directory of that name.
    let host_dir = tempfile::tempdir_in("/tmp").unwrap();
    let inside = host_dir.path().strip_prefix("/").unwrap();
    std::os::unix::fs::symlink(host_dir.path(), fixture.lower().join("mnt")).unwrap();
    std::fs::create_dir_all(fixture.lower().join(inside)).unwrap();
    let mut spec = fixture.spec(&format!(
        "touch /mnt/x && grep -c ' {} .* - tmpfs ' /proc/self/mountinfo",
        host_dir.path().display()
    ));
    spec.mounts = vec![Mount::Tmpfs {
        target: "/mnt".into(),
        size: None,
        mode: 0o755,
    }];
    assert_eq!(run_ok(&spec).stdout, "1\n");
    assert!(!fixture.upper().join(inside).join("x").exists());
    assert!(!host_dir.path().join("x").exists());
}

#[test]
fn copy_mode_directory_rootfs_is_restored_around_mountpoints() {
    let fixture = Fixture::new();
    let root = fixture.lower();
    let etc_before = std::fs::metadata(root.join("etc")).unwrap();
    let root_before = std::fs::metadata(&root).unwrap();
    let mut spec =
        fixture.spec("cat /etc/motd; test -e /proc/self/exe && echo proc; echo made > /etc/made");
    spec.rootfs = Rootfs::Dir(root.clone());
    let output = run_ok(&spec);
    assert_eq!(output.stdout, "hello\nproc\n");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/made")).unwrap(),
        "made\n"
    );
    for stub in ["proc", "dev", "sys", "etc/resolv.conf", "etc/hosts"] {
        assert!(!root.join(stub).exists(), "{stub} left in the rootfs");
    }
    // The root's times are restored; /etc changed legitimately (etc/made) and keeps
    // its new time.
    let root_after = std::fs::metadata(&root).unwrap();
    assert_eq!(
        (root_after.mtime(), root_after.mtime_nsec()),
        (root_before.mtime(), root_before.mtime_nsec())
    );
    let etc_after = std::fs::metadata(root.join("etc")).unwrap();
    assert_ne!(
        (etc_after.mtime(), etc_after.mtime_nsec()),
        (etc_before.mtime(), etc_before.mtime_nsec())
    );

    // A step that touches nothing leaves /etc exactly as it was.
    let etc_before = std::fs::metadata(root.join("etc")).unwrap();
    run_ok(&RunSpec {
        argv: vec!["/bin/true".into()],
        ..spec
    });
    let etc_after = std::fs::metadata(root.join("etc")).unwrap();
    assert_eq!(
        (etc_after.mtime(), etc_after.mtime_nsec()),
        (etc_before.mtime(), etc_before.mtime_nsec())
    );
}

#[test]
fn missing_program_is_reported_like_runc() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("");
    spec.argv = vec!["no-such-tool".into()];
    let error = run(&spec).err().expect("exec fails");
    assert_eq!(
        error.to_string(),
        "exec: \"no-such-tool\": executable file not found in $PATH"
    );
    spec.argv = vec!["ls".into(), "/etc/motd".into()];
    assert_eq!(run_ok(&spec).stdout, "/etc/motd\n");
}

#[test]
fn cancel_kills_the_step_and_leaves_no_mount() {
    case_cancel_kills_and_leaves_no_mount();
}

/// Times `runs` runs of `/bin/true`; returns (fastest, median).
fn time_true(runs: usize) -> (Duration, Duration) {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("");
    spec.argv = vec!["/bin/true".into()];
    run_ok(&spec);
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            run_ok(&spec);
            started.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[runs / 2])
}

#[test]
fn setup_overhead_of_true() {
    let (fastest, median) = time_true(30);
    println!(
        "setup overhead ({:?}): `true` fastest {fastest:?}, median {median:?}",
        mode()
    );
    // A sanity bound against hangs only; the overhead itself is reported above.
    assert!(median < Duration::from_secs(10), "{median:?}");

    // For scale: util-linux `unshare` with the same namespaces and a fresh /proc, no
    // rootfs, no /dev, no pivot_root.
    let mut baseline: Vec<Duration> = (0..30)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new("unshare")
                .args([
                    "--mount",
                    "--pid",
                    "--ipc",
                    "--uts",
                    "--fork",
                    "--mount-proc",
                    "/bin/true",
                ])
                .status()
                .unwrap();
            assert!(status.success());
            started.elapsed()
        })
        .collect();
    baseline.sort();
    println!(
        "baseline `unshare -mpiuf --mount-proc true`: fastest {:?}, median {:?}",
        baseline[0], baseline[15]
    );
}

// ---- rootless ----

/// The key cases, as the re-executed child of an unprivileged user.
#[test]
fn rootless_child() {
    let expected = std::env::var("KILN_TEST_EXPECT_MODE").unwrap_or_default();
    let mode = mode();
    match expected.as_str() {
        "mapped" => {
            assert!(matches!(mode, UsernsMode::Mapped { .. }), "{mode:?}");
            key_cases();
        }
        "single" => {
            assert!(matches!(mode, UsernsMode::SingleId { .. }), "{mode:?}");
            assert!(mode.warning().unwrap().contains("single-id"));
            case_output_and_exit_code();
            case_network_none();
            case_environment_is_exact();
            case_overlay_diff_has_no_trace_of_the_sandbox();
            case_cancel_kills_and_leaves_no_mount();
            // Only root exists: chown to another id fails, and so does running as one.
            let fixture = Fixture::new();
            let output = run(&fixture.spec("touch /a && chown 1000 /a")).unwrap();
            assert_ne!(output.status, ExitStatus::Code(0));
            let mut spec = fixture.spec("id");
            spec.user = executor::resolve_user(&fixture.overlay(), "app").unwrap();
            let error = run(&spec).err().expect("uid 1000 is not mapped");
            assert!(error.to_string().contains("setgid"), "{error}");
        }
        _ => {
            // Run directly: whatever mode we are in, the key cases hold.
            key_cases();
        }
    }
    let (fastest, median) = time_true(30);
    println!(
        "rootless child ok: {expected} {mode:?}; `true` fastest {fastest:?}, median {median:?}"
    );
}

fn ensure_user(name: &str, with_ranges: bool) -> (u32, u32) {
    let exists = Command::new("id").arg("-u").arg(name).output().unwrap();
    if !exists.status.success() {
        let status = Command::new("useradd")
            .args(["-m", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {name}");
    }
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let has_ranges = subuid
        .lines()
        .any(|line| line.starts_with(&format!("{name}:")));
    if with_ranges && !has_ranges {
        let status = Command::new("usermod")
            .args([
                "--add-subuids",
                "100000-165535",
                "--add-subgids",
                "100000-165535",
                name,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "usermod --add-subuids {name}");
    }
    assert!(
        with_ranges || !has_ranges,
        "{name} must have no /etc/subuid entry for the single-id test"
    );
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(name).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

fn run_as(user: &str, with_ranges: bool, expect: &str) -> String {
    assert_eq!(
        rustix::process::getuid().as_raw(),
        0,
        "the rootless tests start as root to switch to {user}"
    );
    let (uid, gid) = ensure_user(user, with_ranges);
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(&exe)
        .args([
            "--exact",
            "rootless_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/tmp")
        .env("TMPDIR", "/tmp")
        .env("KILN_TEST_EXPECT_MODE", expect)
        .current_dir("/tmp")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "as {user}: {stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("rootless child ok: {expect}")),
        "{stdout}\n{stderr}"
    );
    println!(
        "{}",
        stdout
            .lines()
            .find(|l| l.contains("rootless child ok"))
            .unwrap_or_default()
    );
    stdout
}

use std::os::unix::process::CommandExt;

#[test]
fn rootless_with_subordinate_ids() {
    if !matches!(mode(), UsernsMode::Root) {
        println!("already rootless: the re-exec is covered by this very run");
        return;
    }
    run_as("kilntest", true, "mapped");
}

#[test]
fn rootless_single_id_without_subordinate_ids() {
    if !matches!(mode(), UsernsMode::Root) {
        println!("already rootless: the re-exec is covered by this very run");
        return;
    }
    run_as("kilntest-single", false, "single");
}

/// Helper of `rootless_exit_status_and_signals_are_forwarded`, run as `kilntest`.
#[test]
fn rootless_exit_child() {
    let mode = mode();
    assert_eq!(rustix::process::getuid().as_raw(), 0, "{mode:?}");
    if let Ok(code) = std::env::var("KILN_TEST_EXIT_CODE") {
        std::process::exit(code.parse().unwrap());
    }
    if std::env::var_os("KILN_TEST_WAIT_FOR_SIGNAL").is_some() {
        use std::io::Write;
        println!("waiting for a signal");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(60));
        panic!("no signal arrived");
    }
}

#[test]
fn rootless_exit_status_and_signals_are_forwarded() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    if !matches!(mode(), UsernsMode::Root) {
        println!("already rootless: covered by the root run");
        return;
    }
    let (uid, gid) = ensure_user("kilntest", true);
    let command = |env: (&str, &str)| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "rootless_exit_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env(env.0, env.1)
            .current_dir("/tmp")
            .uid(uid)
            .gid(gid);
        command
    };
    let status = command(("KILN_TEST_EXIT_CODE", "7")).status().unwrap();
    assert_eq!(status.code(), Some(7));

    let mut child = command(("KILN_TEST_WAIT_FOR_SIGNAL", "1"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("waiting for a signal") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
    }
    // SIGTERM to the original process reaches the re-executed one, whose death by
    // SIGTERM the original reproduces.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}
