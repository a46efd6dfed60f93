//! kiln's images in a real Docker engine (Debian's `dockerd`, started by the
//! harness with a data root of its own), and a differential test against
//! `docker build`.
//!
//! - Images kiln pushes (OCI and Docker media types) are pulled by dockerd
//!   from the harness registry and run; an image exported with
//!   `--output type=docker` is `docker load`ed and run; the OCI layout export
//!   is unpacked by `umoci`. Each run prints what the image was built to
//!   print.
//! - Differential: a handful of Dockerfiles are built by `docker build`
//!   (the daemon's BuildKit) and by kiln on the same busybox base (loaded
//!   into dockerd under the name kiln uses, with the same config digest);
//!   both images are flattened (layers applied in order, whiteouts honoured)
//!   and their file trees (path, type, mode, owner, size, link target,
//!   content hash, hard links, xattrs; not times) and configs compared.
//!
//! Everything skips with a message when dockerd cannot run here (not root,
//! docker.io not installed).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_testimages::docker::{
    Builder, DockerDaemon, DockerError, FlatFile, FlatImage, flatten_docker_archive,
};
use kiln_testimages::registry::{Mode, TestRegistry};

fn daemon() -> Option<DockerDaemon> {
    match DockerDaemon::start() {
        Ok(daemon) => Some(daemon),
        Err(DockerError::Unavailable { reason }) => {
            eprintln!("skipping: {reason}");
            None
        }
        Err(error) => panic!("{error}"),
    }
}

struct Env {
    dir: tempfile::TempDir,
    home: PathBuf,
    context: PathBuf,
}

/// A fresh store holding the busybox base as `busybox:latest`, and a context
/// with `files` (path, content, mode).
fn setup(dockerfile: &str, files: &[(&str, &str, u32)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    support::busybox_store(&home);
    let context = dir.path().join("ctx");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    for (path, content, mode) in files {
        let path = context.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        set_mode(&path, *mode);
    }
    Env { dir, home, context }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn kiln(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_HOME", &env.home)
        .env("DOCKER_CONFIG", env.dir.path().join("docker-config"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn kiln_build(env: &Env, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    let context = env.context.to_str().unwrap().to_owned();
    args.push(&context);
    let out = kiln(env, &args);
    assert!(
        out.status.success(),
        "kiln build {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What the run image prints: its entrypoint and command run as built.
const RUN_DOCKERFILE: &str = r#"FROM busybox AS build
RUN mkdir -p /out/bin && printf 'built by kiln\n' > /out/message \
 && cp /bin/busybox /out/bin/tool && chmod 4755 /out/bin/tool \
 && ln -s message /out/link
FROM busybox
COPY --from=build /out/ /app/
ENV GREETING=hello
WORKDIR /app/work
USER nobody
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat ../link; echo \"$GREETING from $(pwd) as $(id -u):$(id -g)\"; stat -c '%a %U' ../bin/tool; readlink ../link"]
"#;

const RUN_EXPECTED: &str =
    "built by kiln\nhello from /app/work as 65534:65534\n4755 root\nmessage\n";

fn docker_run(docker: &DockerDaemon, image: &str) -> String {
    ok(
        docker
            .docker(["run", "--rm", "--network", "none", image])
            .unwrap(),
        &format!("docker run {image}"),
    )
}

#[test]
fn images_kiln_pushes_or_exports_run_in_docker() {
    let Some(docker) = daemon() else { return };
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let env = setup(RUN_DOCKERFILE, &[]);
    let host = registry.host();

    // Pushed with OCI media types (the default), then with Docker's.
    for format in ["oci", "docker"] {
        let reference = format!("{host}/kiln/hello:{format}");
        let digest = kiln_build(&env, &["-t", &reference, "--format", format, "--push"]);
        assert!(digest.starts_with("sha256:"), "{digest}");
        docker.pull(&reference).unwrap();
        let repo_digests = ok(
            docker
                .docker([
                    "image",
                    "inspect",
                    "--format",
                    "{{json .RepoDigests}}",
                    &reference,
                ])
                .unwrap(),
            "inspect",
        );
        assert!(
            repo_digests.contains(&digest),
            "docker pulled {repo_digests}, kiln pushed {digest}"
        );
        assert_eq!(docker_run(&docker, &reference), RUN_EXPECTED, "{format}");
    }

    // Exported as a docker-archive and as an OCI layout.
    let docker_tar = env.dir.path().join("hello-docker.tar");
    let layout = env.dir.path().join("hello-layout");
    kiln_build(
        &env,
        &[
            "-t",
            "kiln-export/hello:1",
            "--output",
            &format!("type=docker,dest={}", docker_tar.display()),
            "--output",
            &format!("type=oci-dir,dest={}", layout.display()),
        ],
    );
    let loaded = ok(
        docker
            .docker(["load", "-i", docker_tar.to_str().unwrap()])
            .unwrap(),
        "docker load",
    );
    assert!(loaded.contains("kiln-export/hello:1"), "{loaded}");
    assert_eq!(docker_run(&docker, "kiln-export/hello:1"), RUN_EXPECTED);

    // umoci unpacks the OCI layout export; the tree is what was built.
    let bundle = env.dir.path().join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:kiln-export/hello:1", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    ok(unpack, "umoci unpack");
    let rootfs = bundle.join("rootfs");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/message")).unwrap(),
        "built by kiln\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("app/link")).unwrap(),
        Path::new("message")
    );
    let tool = std::fs::metadata(rootfs.join("app/bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((tool.uid(), tool.gid()), (0, 0));
    // WORKDIR makes its directory (BuildKit's `mkdir -p`), owned by the USER
    // of that point (root here: USER comes after).
    let workdir = std::fs::metadata(rootfs.join("app/work")).unwrap();
    assert!(workdir.is_dir());
    assert_eq!(workdir.permissions().mode() & 0o7777, 0o755);
    assert_eq!((workdir.uid(), workdir.gid()), (0, 0));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["cwd"], "/app/work");
    assert_eq!(config["process"]["user"]["uid"], 65534);
}

// ---------------------------------------------------------------------------
// Differential: docker build vs kiln build.

/// One Dockerfile and its context for the differential test.
struct Case {
    name: &'static str,
    dockerfile: &'static str,
    files: &'static [(&'static str, &'static str, u32)],
    build_args: &'static [&'static str],
    /// Extra context set-up (tars, symlinks, hard links).
    prepare: fn(&Path),
}

fn nothing(_: &Path) {}

const CASES: &[Case] = &[
    Case {
        name: "run-changes-base-files",
        dockerfile: "FROM busybox\n\
            RUN echo new > /etc/new-file && echo 'extra:x:1000:1000::/home/extra:/bin/sh' >> /etc/passwd \
             && rm /bin/vi && rm -r /var/tmp && mkdir -p /opt/data/sub && echo x > /opt/data/sub/x \
             && chown 1000:1000 /etc/new-file && chmod 600 /etc/group\n\
            RUN rm -r /opt/data && mkdir -p /opt/data && echo y > /opt/data/y && rm /etc/new-file \
             && echo again > /etc/new-file && mkfifo /opt/fifo\n\
            RUN ln -s /etc/passwd /passwd-link && ln -s ../bin/busybox /usr/bb && ln /opt/data/y /opt/y-hard \
             && cp /bin/busybox /usr/bin/su-tool && chmod 4755 /usr/bin/su-tool && chmod 2755 /opt/data \
             && mkdir -m 1777 /scratch && rm /bin/ls && ln -s busybox /bin/ls\n",
        files: &[],
        build_args: &[],
        prepare: nothing,
    },
    Case {
        name: "copy-dirs-wildcards-dockerignore",
        dockerfile: "FROM busybox\n\
            COPY src/ /app/src/\n\
            COPY *.txt /app/\n\
            COPY docs /app/docs\n\
            COPY conf/a.conf conf/b.conf /etc/app/\n\
            COPY conf/a.conf /etc/renamed.conf\n\
            COPY src/lib /app/lib-contents\n",
        files: &[
            (
                ".dockerignore",
                "**/*.tmp\n!src/keep.tmp\ndocs/private\n*.log\n",
                0o644,
            ),
            ("src/main.sh", "#!/bin/sh\necho main\n", 0o755),
            ("src/secret.tmp", "ignored\n", 0o644),
            ("src/keep.tmp", "kept\n", 0o600),
            ("src/lib/util.sh", "util\n", 0o640),
            ("src/lib/deeper/more.txt", "more\n", 0o444),
            ("src/lib/deeper/x.tmp", "ignored\n", 0o644),
            ("one.txt", "one\n", 0o644),
            ("two.txt", "two\n", 0o664),
            ("debug.log", "ignored\n", 0o644),
            ("docs/index.md", "# docs\n", 0o644),
            ("docs/private/key", "ignored\n", 0o600),
            ("conf/a.conf", "a=1\n", 0o644),
            ("conf/b.conf", "b=2\n", 0o600),
        ],
        build_args: &[],
        prepare: context_links,
    },
    Case {
        name: "chown-and-add-tar",
        dockerfile: "FROM busybox\n\
            RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:2345:' >> /etc/group\n\
            COPY --chown=app:app files/ /home/app/files/\n\
            COPY --chown=1001:1002 one.txt /srv/\n\
            COPY --chown=nobody one.txt /srv/two.txt\n\
            COPY --chown=app one.txt /srv/three.txt\n\
            ADD archive.tar /opt/\n\
            ADD archive.tar.gz /opt/gz/\n\
            ADD one.txt /opt/plain/\n",
        files: &[
            ("files/a", "a\n", 0o644),
            ("files/sub/b", "b\n", 0o755),
            ("one.txt", "one\n", 0o640),
        ],
        build_args: &[],
        prepare: context_tars,
    },
    Case {
        name: "workdir-env-arg-config",
        dockerfile: "ARG BASE=busybox\n\
            FROM ${BASE}\n\
            ARG VERSION=1.0\n\
            ARG UNUSED\n\
            ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH\n\
            ENV NAME=\"my app\" VERSION_LABEL=v${VERSION}\n\
            WORKDIR $APP_HOME/work\n\
            WORKDIR sub\n\
            RUN pwd > /where && echo \"$VERSION $APP_HOME ${NAME} ${UNUSED:-none}\" > /vars\n\
            COPY one.txt ${APP_HOME}/${VERSION}/\n\
            COPY one.txt relative.txt\n\
            LABEL version=$VERSION description=\"a \\\"quoted\\\" label\"\n\
            EXPOSE 80 443/udp\n\
            VOLUME [\"/data\", \"/logs\"]\n\
            STOPSIGNAL SIGQUIT\n\
            HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q -O- http://localhost/ || exit 1\n\
            SHELL [\"/bin/sh\", \"-ec\"]\n\
            RUN echo shell-form > /shell\n\
            USER 1000:1000\n\
            ENTRYPOINT [\"/bin/echo\"]\n\
            CMD [\"hello\"]\n",
        files: &[("one.txt", "one\n", 0o644)],
        build_args: &["VERSION=2.5"],
        prepare: nothing,
    },
    Case {
        name: "workdir-without-run",
        dockerfile: "FROM busybox\n\
            WORKDIR /made/by/workdir\n\
            WORKDIR /tmp\n\
            USER nobody\n\
            WORKDIR /home/owned/by-nobody\n\
            WORKDIR ../../made/by\n\
            COPY --chown=nobody one.txt /srv/one.txt\n\
            CMD [\"pwd\"]\n",
        files: &[("one.txt", "one\n", 0o644)],
        build_args: &[],
        prepare: nothing,
    },
    Case {
        name: "multi-stage-links",
        dockerfile: "FROM busybox AS build\n\
            RUN mkdir -p /out/bin /out/lib && echo data > /out/lib/data && ln /out/lib/data /out/lib/data-hard \
             && ln -s ../lib/data /out/bin/data-link && cp /bin/busybox /out/bin/tool && chmod 4755 /out/bin/tool \
             && chown -R 1000:1000 /out/lib && mkdir -m 1777 /out/tmp\n\
            FROM busybox AS other\n\
            RUN echo other > /other\n\
            FROM busybox\n\
            COPY --from=build /out /usr/local\n\
            COPY --from=build --chown=2000:2000 /out/lib/data /data\n\
            COPY --from=1 /other /\n\
            RUN rm /usr/local/lib/data-hard && ln -sf /usr/local/bin/tool /usr/bin/tool2\n\
            CMD [\"/usr/local/bin/tool\", \"echo\", \"hi\"]\n",
        files: &[],
        build_args: &[],
        prepare: nothing,
    },
];

/// Symlinks and a hard link inside the context (COPY keeps both kinds).
fn context_links(context: &Path) {
    std::os::unix::fs::symlink("main.sh", context.join("src/main-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", context.join("src/lib/abs-link")).unwrap();
    std::fs::hard_link(context.join("src/main.sh"), context.join("src/main-hard")).unwrap();
}

/// `archive.tar` and `archive.tar.gz` with dirs, files, a symlink, a hard
/// link, owners and modes of their own.
fn context_tars(context: &Path) {
    let tar_bytes = {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add =
            |path: &str, kind: tar::EntryType, mode: u32, ids: u64, body: &[u8], link: &str| {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(kind);
                header.set_mode(mode);
                header.set_uid(ids);
                header.set_gid(ids + 1);
                header.set_mtime(1_600_000_000);
                header.set_size(body.len() as u64);
                if !link.is_empty() {
                    header.set_link_name(link).unwrap();
                }
                builder.append_data(&mut header, path, body).unwrap();
            };
        add("pkg/", tar::EntryType::Directory, 0o750, 42, b"", "");
        add("pkg/bin/", tar::EntryType::Directory, 0o755, 0, b"", "");
        add(
            "pkg/bin/run",
            tar::EntryType::Regular,
            0o4755,
            0,
            b"#!/bin/sh\necho run\n",
            "",
        );
        add(
            "pkg/data.txt",
            tar::EntryType::Regular,
            0o600,
            42,
            b"data\n",
            "",
        );
        add(
            "pkg/data-link",
            tar::EntryType::Symlink,
            0o777,
            42,
            b"",
            "data.txt",
        );
        add(
            "pkg/data-hard",
            tar::EntryType::Link,
            0o600,
            42,
            b"",
            "pkg/data.txt",
        );
        builder.into_inner().unwrap()
    };
    std::fs::write(context.join("archive.tar"), &tar_bytes).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar_bytes).unwrap();
    std::fs::write(context.join("archive.tar.gz"), gz.finish().unwrap()).unwrap();
}

/// The config fields `docker build` and kiln must agree on.
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
];

fn config_fields(image: &FlatImage) -> BTreeMap<&'static str, serde_json::Value> {
    CONFIG_FIELDS
        .iter()
        .map(|field| {
            let value = image.config["config"]
                .get(*field)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            // An empty map or list is what an absent one means.
            let value = match &value {
                serde_json::Value::Object(map) if map.is_empty() => serde_json::Value::Null,
                serde_json::Value::Array(list) if list.is_empty() => serde_json::Value::Null,
                serde_json::Value::String(s) if s.is_empty() => serde_json::Value::Null,
                _ => value,
            };
            (*field, value)
        })
        .collect()
}

/// The diffID of a tar with nothing in it (1024 zero bytes).
const EMPTY_TAR_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Layers that add nothing: an empty tar.
fn empty_tar_layers(image: &FlatImage) -> usize {
    image.config["rootfs"]["diff_ids"]
        .as_array()
        .map_or(0, |ids| {
            ids.iter().filter(|id| *id == EMPTY_TAR_DIFF_ID).count()
        })
}

/// History entries that made a layer.
fn non_empty_history(image: &FlatImage) -> usize {
    image.config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|entry| entry["empty_layer"] != true)
                .count()
        })
        .unwrap_or(0)
}

/// A line per path, for readable diffs.
fn describe(path: &str, file: &FlatFile) -> String {
    format!(
        "{path} {:?} {:o} {}:{} size={} link={:?} {:?} hard={:?} xattrs={:?}",
        file.kind,
        file.mode,
        file.uid,
        file.gid,
        file.size,
        file.link_target,
        file.sha256,
        file.hard_links,
        file.xattrs.keys().collect::<Vec<_>>()
    )
}

fn tree_differences(docker: &FlatImage, kiln: &FlatImage) -> Vec<String> {
    let mut out = Vec::new();
    let paths: std::collections::BTreeSet<&String> =
        docker.files.keys().chain(kiln.files.keys()).collect();
    for path in paths {
        match (docker.files.get(path), kiln.files.get(path)) {
            (Some(d), Some(k)) if d == k => {}
            (Some(d), Some(k)) => out.push(format!(
                "differs:\n  docker {}\n  kiln   {}",
                describe(path, d),
                describe(path, k)
            )),
            (Some(d), None) => out.push(format!("only docker: {}", describe(path, d))),
            (None, Some(k)) => out.push(format!("only kiln:   {}", describe(path, k))),
            (None, None) => unreachable!(),
        }
    }
    out
}

#[test]
fn docker_build_and_kiln_build_make_the_same_images() {
    let Some(docker) = daemon() else { return };
    let busybox = kiln_testimages::images::busybox().unwrap();
    let base_id = docker.load_image(&busybox, "busybox:latest").unwrap();
    assert_eq!(base_id, busybox.config_digest, "same base in both builders");

    let mut failures = Vec::new();
    for case in CASES {
        let env = setup(case.dockerfile, case.files);
        (case.prepare)(&env.context);
        let tag = format!("kiln-diff/{}:1", case.name);

        let mut docker_args = vec!["--network", "none"];
        for arg in case.build_args {
            docker_args.extend(["--build-arg", arg]);
        }
        ok(
            docker
                .build(Builder::BuildKit, &env.context, &tag, &docker_args)
                .unwrap(),
            &format!("docker build {}", case.name),
        );
        let docker_tar = env.dir.path().join("docker-built.tar");
        ok(
            docker
                .docker(["save", "-o", docker_tar.to_str().unwrap(), &tag])
                .unwrap(),
            "docker save",
        );
        let from_docker = flatten_docker_archive(&docker_tar, env.dir.path()).unwrap();

        let kiln_tar = env.dir.path().join("kiln-built.tar");
        let output = format!("type=docker,dest={}", kiln_tar.display());
        let mut kiln_args = vec!["-t", &tag, "--network", "none", "--output", &output];
        for arg in case.build_args {
            kiln_args.extend(["--build-arg", arg]);
        }
        kiln_build(&env, &kiln_args);
        let from_kiln = flatten_docker_archive(&kiln_tar, env.dir.path()).unwrap();

        // Sanity: the flattening saw the base and what the case added.
        assert!(
            from_docker.files.contains_key("bin/busybox"),
            "{}: {} paths, from {:?}",
            case.name,
            from_docker.files.len(),
            from_docker.files.keys().take(20).collect::<Vec<_>>()
        );
        assert!(from_docker.files.len() > 100, "{}", case.name);

        let trees = tree_differences(&from_docker, &from_kiln);
        if !trees.is_empty() {
            failures.push(format!(
                "{}: file trees differ:\n{}",
                case.name,
                trees.join("\n")
            ));
        }
        let (docker_config, kiln_config) = (config_fields(&from_docker), config_fields(&from_kiln));
        if docker_config != kiln_config {
            failures.push(format!(
                "{}: configs differ:\n  docker {}\n  kiln   {}",
                case.name,
                serde_json::to_string(&docker_config).unwrap(),
                serde_json::to_string(&kiln_config).unwrap()
            ));
        }
        // BuildKit keeps the empty layer of a WORKDIR whose directory exists
        // (its `mkdir -p` changes nothing); kiln writes no layer that is an
        // empty tar. Every other layer pairs up.
        let docker_empty = empty_tar_layers(&from_docker);
        let layers = (
            from_docker.layer_count - docker_empty,
            from_kiln.layer_count,
            non_empty_history(&from_docker) - docker_empty,
            non_empty_history(&from_kiln),
        );
        if layers.0 != layers.1
            || layers.2 != layers.3
            || layers.1 != layers.3
            || empty_tar_layers(&from_kiln) != 0
        {
            failures.push(format!(
                "{}: layers docker {} (+{docker_empty} empty) kiln {}, non-empty history \
                 docker {} kiln {}; diff_ids docker {} kiln {}",
                case.name,
                layers.0,
                layers.1,
                layers.2,
                layers.3,
                from_docker.config["rootfs"]["diff_ids"],
                from_kiln.config["rootfs"]["diff_ids"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
