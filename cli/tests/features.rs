//! End-to-end runs of the real `kiln` binary for the modern Dockerfile features:
//! heredocs, `RUN --mount` (cache, secret, bind, tmpfs, ssh), `--network`,
//! `--security`, COPY/ADD flags and the `# syntax=` directive. Images are built on
//! the busybox base (Debian's busybox-static) in a fresh store per test, flattened
//! with umoci and inspected; layer blobs are listed and decompressed with tar and
//! gzip.

mod support;
use support::stderr;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_builder::store::Store;

struct Env {
    dir: tempfile::TempDir,
    home: PathBuf,
    context: PathBuf,
}

fn setup(dockerfile: &str, files: &[(&str, &str)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    support::busybox_store(&home);
    let context = dir.path().join("ctx");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    for (path, content) in files {
        let path = context.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    Env { dir, home, context }
}

fn kiln_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env("KILN_HOME", &env.home)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn build_with(env: &Env, extra: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut args = vec!["build"];
    if !extra.contains(&"--progress") {
        args.extend(["--progress", "json"]);
    }
    args.extend_from_slice(extra);
    let ctx = env.context.to_str().unwrap().to_owned();
    args.push(&ctx);
    kiln_with(env, &args, vars)
}

fn build(env: &Env, extra: &[&str]) -> Output {
    build_with(env, extra, &[])
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "build failed:\n{}", stderr(out));
}

/// The image's files, flattened by umoci (a real tool; as root it keeps owners).
fn unpack(env: &Env, name: &str) -> PathBuf {
    let bundle = env
        .dir
        .path()
        .join(format!("bundle-{}", name.replace([':', '/'], "_")));
    kiln_testimages::umoci_unpack(&env.home, name, &bundle).unwrap()
}

fn read(rootfs: &Path, path: &str) -> String {
    std::fs::read_to_string(rootfs.join(path))
        .unwrap_or_else(|e| panic!("reading {path} in the image: {e}"))
}

fn json_blob(store: &Store, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&store.read_blob(&digest.parse().unwrap()).unwrap()).unwrap()
}

/// The manifest and config of `name` in the store.
fn manifest_and_config(env: &Env, name: &str) -> (serde_json::Value, serde_json::Value) {
    let store = Store::open(&env.home).unwrap();
    let manifest = json_blob(&store, &store.resolve(name).unwrap().digest.to_string());
    let config = json_blob(&store, manifest["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

fn layer_digests(env: &Env, name: &str) -> Vec<String> {
    let (manifest, _) = manifest_and_config(env, name);
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

fn blob_path(env: &Env, digest: &str) -> PathBuf {
    env.home
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// The entry names of a layer blob, as `tar -t` lists them.
fn layer_entries(env: &Env, digest: &str) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(blob_path(env, digest))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned())
        .collect()
}

/// Every regular file under `dir`, recursively (symlinks not followed).
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// The file's bytes, gunzipped (by gzip) when it is gzip data.
fn contents(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_default();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
        let mut all = bytes;
        all.extend(out.stdout);
        return all;
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut bytes,
    )
    .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    kiln_builder::digest::Digest::of(text.as_bytes())
        .hex()
        .to_owned()
}

#[test]
fn heredocs_run_and_create_files_as_buildkit_does() {
    let env = setup(
        "# syntax=docker/dockerfile:1.7\n\
         FROM busybox\n\
         ARG NAME=world\n\
         ENV GREETING=hello\n\
         RUN <<EOF\n\
         mkdir -p /out\n\
         echo \"$GREETING $NAME\" > /out/simple\n\
         EOF\n\
         RUN <<-EOT\n\
         \techo tabbed > /out/tabs\n\
         \tEOT\n\
         RUN cat <<A > /out/a && cat <<'B' > /out/b\n\
         a says $GREETING\n\
         A\n\
         b says $GREETING\n\
         B\n\
         RUN <<EOF\n\
         #!/bin/sh\n\
         echo \"script $0\" > /out/script\n\
         EOF\n\
         COPY <<EOF /etc/expanded.txt\n\
         $GREETING $NAME\n\
         EOF\n\
         COPY <<'EOF' /etc/literal.txt\n\
         $GREETING $NAME\n\
         EOF\n\
         ADD --chmod=0755 <<EOF /usr/local/bin/hi\n\
         #!/bin/sh\n\
         echo hi\n\
         EOF\n",
        &[],
    );
    let out = build(&env, &["-t", "heredoc:1", "--build-arg", "NAME=kiln"]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("kiln implements the Dockerfile syntax natively"),
        "{}",
        stderr(&out)
    );
    let rootfs = unpack(&env, "heredoc:1");
    assert_eq!(read(&rootfs, "out/simple"), "hello kiln\n");
    assert_eq!(read(&rootfs, "out/tabs"), "tabbed\n");
    assert_eq!(read(&rootfs, "out/a"), "a says hello\n");
    assert_eq!(read(&rootfs, "out/b"), "b says $GREETING\n");
    assert_eq!(read(&rootfs, "out/script"), "script /dev/pipes/EOF\n");
    assert_eq!(read(&rootfs, "etc/expanded.txt"), "hello kiln\n");
    assert_eq!(read(&rootfs, "etc/literal.txt"), "$GREETING $NAME\n");
    let meta = std::fs::metadata(rootfs.join("etc/expanded.txt")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
    let hi = std::fs::metadata(rootfs.join("usr/local/bin/hi")).unwrap();
    assert_eq!(hi.mode() & 0o7777, 0o755);
    assert_eq!(read(&rootfs, "usr/local/bin/hi"), "#!/bin/sh\necho hi\n");
    // The script's mountpoint is not in any layer.
    for digest in layer_digests(&env, "heredoc:1") {
        for entry in layer_entries(&env, &digest) {
            assert!(!entry.starts_with("dev/pipes"), "{entry} in {digest}");
        }
    }
}

#[test]
fn other_frontend_images_are_refused_at_the_directive() {
    let env = setup(
        "# syntax=example.com/my/frontend:2\nFROM busybox\nRUN true\n",
        &[],
    );
    let out = build(&env, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("Dockerfile:1:1"), "{text}");
    assert!(text.contains("example.com/my/frontend:2"), "{text}");
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    let token = random_token();
    let env_token = random_token();
    let env = setup(
        "FROM busybox\n\
         RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -d' ' -f1 > /token.sha \
             && stat -c '%a %u %g' /run/secrets/token > /token.stat\n\
         RUN --mount=type=secret,id=envtok,env=TOKEN_VAR,target=/tmp/tok2,mode=0440,uid=1,gid=2 \
             sh -c 'printf %s \"$TOKEN_VAR\" | sha256sum | cut -d\" \" -f1 > /env.sha; stat -c \"%a %u %g\" /tmp/tok2 > /tok2.stat'\n\
         RUN --mount=type=secret,id=absent echo not-required > /optional\n",
        &[],
    );
    let secret_file = env.dir.path().join("token.txt");
    std::fs::write(&secret_file, &token).unwrap();
    let secret_arg = format!("id=token,src={}", secret_file.display());
    let vars = [("KILN_TEST_SECRET", env_token.as_str())];
    let json = build_with(
        &env,
        &[
            "-t",
            "secret:1",
            "--secret",
            &secret_arg,
            "--secret",
            "id=envtok,env=KILN_TEST_SECRET",
        ],
        &vars,
    );
    assert_ok(&json);
    let plain = build_with(
        &env,
        &[
            "--progress",
            "plain",
            "--no-cache",
            "-t",
            "secret:2",
            "--secret",
            &secret_arg,
            "--secret",
            "id=envtok,env=KILN_TEST_SECRET",
        ],
        &vars,
    );
    assert_ok(&plain);

    let rootfs = unpack(&env, "secret:1");
    assert_eq!(read(&rootfs, "token.sha").trim(), sha256_hex(&token));
    assert_eq!(read(&rootfs, "token.stat").trim(), "400 0 0");
    assert_eq!(read(&rootfs, "env.sha").trim(), sha256_hex(&env_token));
    assert_eq!(read(&rootfs, "tok2.stat").trim(), "440 1 2");
    assert_eq!(read(&rootfs, "optional"), "not-required\n");
    assert!(!rootfs.join("run/secrets").exists());
    assert!(!rootfs.join("tmp/tok2").exists());

    // Nowhere else: progress (json and plain), every file of the store (layer blobs
    // gunzipped, configs with their history, manifests, the cache, snapshots) and the
    // exported layout.
    let layout = env.dir.path().join("layout");
    let export = kiln_with(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &format!("type=oci-dir,dest={}", layout.display()),
            "--secret",
            &secret_arg,
            "--secret",
            "id=envtok,env=KILN_TEST_SECRET",
            env.context.to_str().unwrap(),
        ],
        &vars,
    );
    assert_ok(&export);
    for secret in [&token, &env_token] {
        for out in [&json, &plain, &export] {
            assert!(!contains(&out.stderr, secret.as_bytes()));
            assert!(!contains(&out.stdout, secret.as_bytes()));
        }
        let files: Vec<PathBuf> = all_files(&env.home)
            .into_iter()
            .chain(all_files(&layout))
            .collect();
        assert!(files.len() > 10, "the store has files to search");
        for file in files {
            assert!(
                !contains(&contents(&file), secret.as_bytes()),
                "the secret is in {}",
                file.display()
            );
        }
    }
    let (_, config) = manifest_and_config(&env, "secret:1");
    assert!(!config.to_string().contains(&token));
    assert!(config["history"].as_array().unwrap().len() >= 3);

    // The secret's value is not part of the cache key: another value, same layers as
    // the last build that ran the steps (the --no-cache one).
    std::fs::write(&secret_file, "another value").unwrap();
    let again = build_with(
        &env,
        &[
            "-t",
            "secret:3",
            "--secret",
            &secret_arg,
            "--secret",
            "id=envtok,env=KILN_TEST_SECRET",
        ],
        &vars,
    );
    assert_ok(&again);
    assert_eq!(
        layer_digests(&env, "secret:3"),
        layer_digests(&env, "secret:2")
    );
}

#[test]
fn a_missing_required_secret_or_ssh_agent_is_a_located_error() {
    let env = setup(
        "FROM busybox\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n",
        &[],
    );
    let out = build(&env, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("Dockerfile:2"), "{text}");
    assert!(text.contains("\"nope\" is required"), "{text}");

    std::fs::write(
        env.context.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=ssh,required=true true\n",
    )
    .unwrap();
    let out = build(&env, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("Dockerfile:2"), "{text}");
    assert!(text.contains("ssh agent \"default\" is required"), "{text}");
}

#[test]
fn cache_mounts_persist_between_builds_and_stay_out_of_layers() {
    let env = setup(
        "FROM busybox\n\
         ARG RUN_ID\n\
         RUN --mount=type=cache,target=/var/cache/thing,id=thing \
             echo \"$RUN_ID\" >> /var/cache/thing/log && cp /var/cache/thing/log /seen\n\
         RUN --mount=type=cache,target=/c2,uid=123,gid=456,mode=0700 \
             stat -c '%u %g %a' /c2 > /c2.stat && touch /c2/x\n",
        &[],
    );
    assert_ok(&build(
        &env,
        &["-t", "cache:1", "--build-arg", "RUN_ID=one"],
    ));
    assert_ok(&build(
        &env,
        &["-t", "cache:2", "--build-arg", "RUN_ID=two"],
    ));
    let first = unpack(&env, "cache:1");
    let second = unpack(&env, "cache:2");
    assert_eq!(read(&first, "seen"), "one\n");
    assert_eq!(read(&second, "seen"), "one\ntwo\n");
    assert_eq!(read(&second, "c2.stat").trim(), "123 456 700");
    assert!(!second.join("var/cache/thing").exists());
    assert!(!second.join("c2").exists());
    for name in ["cache:1", "cache:2"] {
        for digest in layer_digests(&env, name) {
            for entry in layer_entries(&env, &digest) {
                assert!(
                    !entry.starts_with("var/cache/thing") && !entry.starts_with("c2/"),
                    "{entry} in {digest}"
                );
                assert_ne!(entry, "c2");
            }
        }
    }
    // Where the cache export expects it.
    let entry = env.home.join("cache-mounts").join(sha256_hex("thing"));
    assert_eq!(
        std::fs::read_to_string(entry.join("data/log")).unwrap(),
        "one\ntwo\n"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["id"], "thing");
    assert!(meta["created"].as_str().unwrap().ends_with('Z'));
    // The id defaults to the target.
    assert!(
        env.home
            .join("cache-mounts")
            .join(sha256_hex("/c2"))
            .join("data/x")
            .exists()
    );
}

/// The lines two stages wrote to one cache mount, each step sleeping between its
/// start and end lines.
fn concurrent_cache_log(sharing: &str) -> Vec<String> {
    let step = |who: &str| {
        format!(
            "RUN --mount=type=cache,target=/c,id=serial-{sharing},sharing={sharing} \
             sh -c 'echo start-{who} >> /c/log; sleep 3; echo end-{who} >> /c/log; cp /c/log /{who}.log'\n"
        )
    };
    let env = setup(
        &format!(
            "FROM busybox AS a\n{}FROM busybox AS b\n{}FROM busybox\n\
             COPY --from=a /a.log /a.log\nCOPY --from=b /b.log /b.log\n",
            step("a"),
            step("b")
        ),
        &[],
    );
    assert_ok(&build(&env, &["-t", "concurrent:1"]));
    std::fs::read_to_string(
        env.home
            .join("cache-mounts")
            .join(sha256_hex(&format!("serial-{sharing}")))
            .join("data/log"),
    )
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn locked_cache_mounts_serialise_concurrent_stages() {
    let locked = concurrent_cache_log("locked");
    assert!(
        locked == ["start-a", "end-a", "start-b", "end-b"]
            || locked == ["start-b", "end-b", "start-a", "end-a"],
        "steps overlapped: {locked:?}"
    );
    // The control: the same stages overlap with a shared cache (they run in parallel).
    let shared = concurrent_cache_log("shared");
    assert_eq!(shared.len(), 4);
    assert!(
        shared[0].starts_with("start-") && shared[1].starts_with("start-"),
        "{shared:?}"
    );
}

#[test]
fn bind_tmpfs_ssh_and_network_mounts() {
    let env = setup(
        "FROM busybox AS builder\n\
         RUN mkdir /stuff && echo from-stage > /stuff/f\n\
         FROM busybox\n\
         RUN --mount=type=bind,source=data,target=/ctx \
             sh -c 'cat /ctx/in.txt > /bound.txt; test ! -e /ctx/ignored.txt && echo ignored-ok >> /bound.txt'\n\
         RUN --mount=type=bind,from=builder,source=/stuff,target=/s,rw \
             sh -c 'cat /s/f > /from-stage.txt && echo scribble > /s/new'\n\
         RUN --mount=type=tmpfs,target=/scratch,size=1m \
             sh -c 'echo x > /scratch/x && grep -q \" /scratch tmpfs\" /proc/mounts && echo tmpfs-ok > /tmpfs.txt'\n\
         RUN --network=none sh -c 'ls /sys/class/net > /net.txt'\n\
         RUN --mount=type=cache,target=/seeded,from=builder,source=/stuff cat /seeded/f > /seeded.txt\n\
         RUN --mount=type=bind,from=busybox,source=/bin,target=/img sh -c 'test -x /img/busybox && echo image-ok > /img.txt'\n\
         RUN --mount=type=ssh sh -c 'test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /ssh.txt'\n",
        &[
            ("data/in.txt", "from the context\n"),
            ("data/ignored.txt", "dockerignored\n"),
            (".dockerignore", "data/ignored.txt\n"),
        ],
    );
    let socket = env.dir.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let ssh = format!("default={}", socket.display());
    assert_ok(&build(&env, &["-t", "mounts:1", "--ssh", &ssh]));
    let rootfs = unpack(&env, "mounts:1");
    assert_eq!(read(&rootfs, "bound.txt"), "from the context\nignored-ok\n");
    assert_eq!(read(&rootfs, "from-stage.txt"), "from-stage\n");
    assert_eq!(read(&rootfs, "tmpfs.txt"), "tmpfs-ok\n");
    assert_eq!(read(&rootfs, "net.txt"), "lo\n");
    assert_eq!(read(&rootfs, "seeded.txt"), "from-stage\n");
    assert_eq!(read(&rootfs, "img.txt"), "image-ok\n");
    assert_eq!(read(&rootfs, "ssh.txt"), "/run/buildkit/ssh_agent.0\n");
    for gone in ["ctx", "s", "scratch", "run/buildkit", "seeded", "img"] {
        assert!(!rootfs.join(gone).exists(), "/{gone} is in the image");
    }
    // rw bind writes are discarded: the builder stage's files are unchanged.
    std::fs::write(
        env.context.join("Dockerfile.check"),
        "FROM busybox AS builder\nRUN mkdir /stuff && echo from-stage > /stuff/f\n\
         FROM busybox\nCOPY --from=builder /stuff /stuff\n",
    )
    .unwrap();
    let dockerfile = env.context.join("Dockerfile.check");
    assert_ok(&build(
        &env,
        &["-t", "check:1", "-f", dockerfile.to_str().unwrap()],
    ));
    let check = unpack(&env, "check:1");
    assert_eq!(read(&check, "stuff/f"), "from-stage\n");
    assert!(!check.join("stuff/new").exists());
}

#[test]
fn insecure_steps_need_the_entitlement() {
    let env = setup(
        "FROM busybox\nRUN --security=insecure sh -c 'grep CapBnd /proc/self/status > /caps'\n",
        &[],
    );
    let refused = build(&env, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(text.contains("Dockerfile:2"), "{text}");
    assert!(text.contains("--allow security.insecure"), "{text}");

    assert_ok(&build(
        &env,
        &["-t", "insecure:1", "--allow", "security.insecure"],
    ));
    let rootfs = unpack(&env, "insecure:1");
    let caps = read(&rootfs, "caps");
    let mask = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap();
    // More than Docker's default 14 capabilities (CAP_SYS_ADMIN is bit 21).
    assert!(mask & (1 << 21) != 0, "{caps}");

    std::fs::write(
        env.context.join("Dockerfile"),
        "FROM busybox\nRUN sh -c 'grep CapBnd /proc/self/status > /caps'\n",
    )
    .unwrap();
    assert_ok(&build(&env, &["-t", "sandbox:1"]));
    let rootfs = unpack(&env, "sandbox:1");
    let caps = read(&rootfs, "caps");
    let mask = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(mask, 0xa80425fb, "{caps}");
}

#[test]
fn copy_link_layers_keep_their_digest_when_the_base_changes() {
    let env = setup(
        "ARG BASE=busybox\nFROM $BASE\nCOPY --link app/ /app/\n",
        &[("app/main.sh", "echo main\n"), ("app/lib/x.txt", "x\n")],
    );
    let base2 = env.context.join("Dockerfile.base");
    std::fs::write(&base2, "FROM busybox\nRUN echo extra > /extra\n").unwrap();
    assert_ok(&build(
        &env,
        &["-t", "base2:latest", "-f", base2.to_str().unwrap()],
    ));
    assert_ok(&build(&env, &["-t", "link:1"]));
    assert_ok(&build(&env, &["-t", "link:2", "--build-arg", "BASE=base2"]));
    let one = layer_digests(&env, "link:1");
    let two = layer_digests(&env, "link:2");
    assert_eq!(two.len(), one.len() + 1, "base2 has one more layer");
    assert_eq!(one.last(), two.last());
    let rootfs = unpack(&env, "link:2");
    assert_eq!(read(&rootfs, "app/lib/x.txt"), "x\n");
    assert_eq!(read(&rootfs, "extra"), "extra\n");
}

#[test]
fn copy_flags_exclude_parents_chmod_and_chown() {
    let env = setup(
        "FROM busybox\n\
         RUN echo 'app:x:4321:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'grp:x:1234:' >> /etc/group\n\
         COPY --exclude=*.log --exclude=tmp --exclude=**/*.tmp src/ /src/\n\
         COPY --parents a/b/c.txt a/d/e.txt /p/\n\
         COPY --chmod=u+x,go-w f.sh /f.sh\n\
         COPY --chmod=a+rX dir/ /d/\n\
         COPY --chmod=0640 f.sh /octal.sh\n\
         COPY --link --chown=app:grp f.sh /owned.sh\n\
         COPY --chown=5:6 f.sh /numeric.sh\n",
        &[
            ("src/keep.txt", "keep\n"),
            ("src/drop.log", "drop\n"),
            ("src/tmp/x", "x\n"),
            ("src/sub/deep.log", "kept\n"),
            ("src/sub/deep.tmp", "drop\n"),
            ("src/sub/deep.txt", "deep\n"),
            ("a/b/c.txt", "c\n"),
            ("a/d/e.txt", "e\n"),
            ("a/other.txt", "other\n"),
            ("f.sh", "echo f\n"),
            ("dir/file", "file\n"),
            ("dir/sub/inner", "inner\n"),
        ],
    );
    let ctx = &env.context;
    std::fs::set_permissions(ctx.join("f.sh"), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(ctx.join("dir/file"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(ctx.join("dir/sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_ok(&build(&env, &["-t", "flags:1"]));
    let rootfs = unpack(&env, "flags:1");
    let mode = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).unwrap().mode() & 0o7777;
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(rootfs.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(read(&rootfs, "src/keep.txt"), "keep\n");
    assert_eq!(read(&rootfs, "src/sub/deep.txt"), "deep\n");
    // Patterns are anchored at the source root, as in .dockerignore.
    assert_eq!(read(&rootfs, "src/sub/deep.log"), "kept\n");
    for gone in ["src/drop.log", "src/tmp", "src/sub/deep.tmp"] {
        assert!(!rootfs.join(gone).exists(), "{gone} was not excluded");
    }
    assert_eq!(read(&rootfs, "p/a/b/c.txt"), "c\n");
    assert_eq!(read(&rootfs, "p/a/d/e.txt"), "e\n");
    assert!(!rootfs.join("p/a/other.txt").exists());
    assert_eq!(mode("f.sh"), 0o744);
    assert_eq!(mode("d/file"), 0o644);
    assert_eq!(mode("d/sub"), 0o755);
    assert_eq!(mode("d/sub/inner") & 0o444, 0o444);
    assert_eq!(mode("octal.sh"), 0o640);
    assert_eq!(owner("owned.sh"), (4321, 1234));
    assert_eq!(owner("numeric.sh"), (5, 6));
    assert_eq!(owner("f.sh"), (0, 0));
}

#[test]
fn git_sources_and_keep_git_dir_are_refused_clearly() {
    let env = setup(
        "FROM busybox\nADD --keep-git-dir=true https://github.com/moby/buildkit.git /src\n",
        &[],
    );
    let out = build(&env, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("Dockerfile:2"), "{text}");
    assert!(text.contains("not supported"), "{text}");

    std::fs::write(
        env.context.join("Dockerfile"),
        "FROM busybox\nADD https://github.com/moby/buildkit.git#v0.12.0 /src\n",
    )
    .unwrap();
    let out = build(&env, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("git repository"), "{text}");
}

#[test]
fn add_host_and_shm_size_reach_run_steps_and_their_cache_keys() {
    let env = setup(
        "FROM busybox\n\
         RUN grep kiln- /etc/hosts > /hosts.txt; df -k /dev/shm | tail -n 1 | awk '{print $2}' > /shm.txt\n",
        &[],
    );
    assert_ok(&build(
        &env,
        &[
            "-t",
            "hosts:1",
            "--add-host",
            "kiln-db:10.0.0.2",
            "--add-host",
            "kiln-v6=[fd00::2]",
            "--add-host",
            "kiln-gw:host-gateway",
            "--shm-size",
            "128m",
        ],
    ));
    let rootfs = unpack(&env, "hosts:1");
    assert_eq!(
        read(&rootfs, "hosts.txt"),
        "10.0.0.2\tkiln-db\nfd00::2\tkiln-v6\n127.0.0.1\tkiln-gw\n"
    );
    assert_eq!(read(&rootfs, "shm.txt"), "131072\n");

    // Without them the step runs again (they are in its cache key) with Docker's
    // defaults.
    assert_ok(&build(&env, &["-t", "hosts:2"]));
    let rootfs = unpack(&env, "hosts:2");
    assert_eq!(read(&rootfs, "hosts.txt"), "");
    assert_eq!(read(&rootfs, "shm.txt"), "65536\n");

    for (flag, value) in [
        ("--add-host", "db"),
        ("--add-host", "db:10.0.0.256"),
        ("--shm-size", "lots"),
    ] {
        let out = build(&env, &[flag, value]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("invalid {flag}")),
            "{}",
            stderr(&out)
        );
    }
}
