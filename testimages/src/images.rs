//! Base images made from Debian packages, written as OCI image layouts.
//!
//! Contract:
//! - [`busybox`] makes a one-layer image from Debian's `busybox-static`
//!   (`/bin/busybox`, a symlink per applet at the paths `busybox --list-full`
//!   gives, `/etc/passwd` and `/etc/group` with root and nobody, `/tmp` 1777,
//!   `/root`), fresh once per process; [`build_busybox`] writes one into any
//!   directory. Needs no root.
//! - [`debian`] runs `debootstrap --variant=minbase bookworm` against the apt
//!   mirror configured on the host, cleans it (see `rootfs::clean_debian_tree`)
//!   and caches the one-layer image on disk. [`python`] adds a second layer
//!   with `python3 python3-venv python3-pip ca-certificates` installed by
//!   `apt-get` in a chroot of the unpacked `debian` layer, so both share the
//!   base layer. Both need root the first time; a file lock keeps parallel test
//!   processes from building the same image twice.
//! - [`push`] copies an image to a [`TestRegistry`] with `skopeo copy
//!   --preserve-digests` and returns the pushed manifest digest; [`pull`] and
//!   [`inspect_digest`] read images back with skopeo.
//!
//! Every layout is deterministic: the same inputs give the same digests.
//! Layouts handed out are shared: treat them as read-only.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::layer::{self, Content, Entry, EntryKind, LayerBlob, SOURCE_DATE_EPOCH};
use crate::layout;
use crate::registry::{Mode, TestRegistry};
use crate::rootfs::{self, Mount, Snapshot, WorkDir};
use crate::{Error, cache_root, command};

/// Bumped whenever the way images are made changes, so caches are remade.
const FORMAT_VERSION: &str = "1";

/// The Debian release the `debian` and `python` images are made from.
pub const DEBIAN_SUITE: &str = "bookworm";

/// The packages the `python` image adds to `debian`.
pub const PYTHON_PACKAGES: [&str; 4] =
    ["python3", "python3-venv", "python3-pip", "ca-certificates"];

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image in an OCI image layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// The `org.opencontainers.image.ref.name` of the image in `layout`
    /// (`busybox`, `debian`, `python`): `oci:LAYOUT:NAME` for skopeo,
    /// `LAYOUT:NAME` for umoci.
    pub name: String,
    /// The layout directory (holding `oci-layout`, `index.json`, `blobs/`).
    pub layout: PathBuf,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the image config.
    pub config_digest: String,
    /// `sha256:<hex>` of each (gzip) layer blob, base first.
    pub layer_digests: Vec<String>,
}

impl OciImage {
    /// The path of a blob of this image's layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        layout::blob_path(&self.layout, digest)
    }

    /// `oci:LAYOUT:NAME`, the image's name for skopeo.
    pub fn skopeo_ref(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.name)
    }
}

/// What goes into an image's config besides its layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `config.Env`, e.g. `PATH=/usr/bin:/bin`.
    pub env: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// One `created_by` per layer, base first (written into `history`).
    pub history: Vec<String>,
}

/// Reads the image named `name` from an OCI layout.
pub fn open_layout(layout: &Path, name: &str) -> Result<OciImage, Error> {
    layout::open(layout, name)
}

/// The OCI architecture name of the host.
pub fn host_architecture() -> Result<&'static str, Error> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        "arm" => Ok("arm"),
        "x86" => Ok("386"),
        "powerpc64" => Ok("ppc64le"),
        "s390x" => Ok("s390x"),
        "riscv64" => Ok("riscv64"),
        arch => Err(Error::UnsupportedArchitecture { arch }),
    }
}

/// The busybox image, made once per process into a directory of its own
/// (`$TMPDIR/kiln-testimages-busybox-<pid>`; those of finished processes are
/// removed when a later process makes its own).
pub fn busybox() -> Result<OciImage, Error> {
    static BUSYBOX: Mutex<Option<OciImage>> = Mutex::new(None);
    let mut made = BUSYBOX.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = made.as_ref() {
        return Ok(image.clone());
    }
    let parent = std::env::temp_dir();
    remove_stale_busybox_dirs(&parent);
    let dir = parent.join(format!("kiln-testimages-busybox-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))?;
    }
    let image = build_busybox(&dir)?;
    *made = Some(image.clone());
    Ok(image)
}

fn remove_stale_busybox_dirs(parent: &Path) {
    let Ok(children) = fs::read_dir(parent) else {
        return;
    };
    for child in children.flatten() {
        let name = child.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("kiln-testimages-busybox-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(child.path());
        }
    }
}

/// Writes a fresh busybox image into the OCI layout `dir` (created if needed).
pub fn build_busybox(dir: &Path) -> Result<OciImage, Error> {
    let busybox = Path::new("/bin/busybox");
    let owner = command::stdout(Command::new("dpkg-query").arg("-S").arg(busybox))
        .unwrap_or_else(|e| e.to_string());
    if !owner.lines().any(|l| l.starts_with("busybox-static:")) {
        return Err(Error::BusyboxNotStatic {
            owner: owner.trim().to_string(),
        });
    }
    let version = command::stdout(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${Version}",
        "busybox-static",
    ]))?;
    let applets = command::stdout(Command::new(busybox).arg("--list-full"))?;
    let size = fs::metadata(busybox)
        .map_err(Error::io("stat", busybox))?
        .len();

    let node = |path: &str, kind: EntryKind, mode: u32| Entry {
        path: path.as_bytes().to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: SOURCE_DATE_EPOCH,
    };
    let text = |path: &str, body: &str| {
        node(
            path,
            EntryKind::File {
                content: Content::Bytes(body.as_bytes().to_vec()),
                size: body.len() as u64,
            },
            0o644,
        )
    };
    let mut dirs: Vec<(String, u32)> = [
        "bin", "dev", "etc", "home", "proc", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var",
    ]
    .iter()
    .map(|d| (d.to_string(), 0o755))
    .collect();
    dirs.extend([
        ("root".to_string(), 0o700),
        ("tmp".to_string(), 0o1777),
        ("var/tmp".to_string(), 0o1777),
    ]);
    let mut entries: Vec<Entry> = Vec::new();
    entries.push(node(
        "bin/busybox",
        EntryKind::File {
            content: Content::Path(busybox.to_path_buf()),
            size,
        },
        0o755,
    ));
    entries.push(text(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ));
    entries.push(text("etc/group", "root:x:0:\nnobody:x:65534:\n"));
    for applet in applets.lines().map(str::trim) {
        // `linuxrc` (at the root) is for initramfs use only.
        if applet.is_empty() || applet == "bin/busybox" || !applet.contains('/') {
            continue;
        }
        if let Some((parent, _)) = applet.rsplit_once('/')
            && !dirs.iter().any(|(d, _)| d == parent)
        {
            dirs.push((parent.to_string(), 0o755));
        }
        entries.push(node(
            applet,
            EntryKind::Symlink {
                target: b"/bin/busybox".to_vec(),
            },
            0o777,
        ));
    }
    entries.extend(
        dirs.iter()
            .map(|(d, mode)| node(d, EntryKind::Directory, *mode)),
    );
    entries.sort_by(|a, b| layer::walk_order(&a.path, &b.path));
    entries.dedup_by(|a, b| a.path == b.path);

    let blobs = layout::create(dir)?;
    let layer = layer::write_layer(&blobs, &entries)?;
    layout::write_image(
        dir,
        "busybox",
        host_architecture()?,
        &[layer],
        &ImageConfig {
            env: vec![PATH_ENV.to_string()],
            cmd: vec!["sh".to_string()],
            history: vec![format!(
                "busybox-static {} from Debian: /bin/busybox and applet links",
                version.trim()
            )],
        },
    )
}

/// A minimal Debian bookworm image (debootstrap minbase), cached on disk.
pub fn debian() -> Result<OciImage, Error> {
    static DEBIAN: Mutex<Option<OciImage>> = Mutex::new(None);
    let mirror = debian_mirror();
    let arch = host_architecture()?;
    let key = cache_key(&[FORMAT_VERSION, DEBIAN_SUITE, &mirror, arch]);
    cached(&DEBIAN, "debian", &key, |layout| {
        build_debian(layout, &mirror, arch)
    })
}

/// [`debian`] plus a layer with [`PYTHON_PACKAGES`], cached on disk.
pub fn python() -> Result<OciImage, Error> {
    static PYTHON: Mutex<Option<OciImage>> = Mutex::new(None);
    let base = debian()?;
    let key = cache_key(&[
        FORMAT_VERSION,
        &base.manifest_digest,
        &PYTHON_PACKAGES.join(" "),
    ]);
    cached(&PYTHON, "python", &key, |layout| {
        build_python(layout, &base)
    })
}

fn cache_key(parts: &[&str]) -> String {
    let digest = layer::sha256_digest(parts.join("\n").as_bytes());
    digest["sha256:".len().."sha256:".len() + 16].to_string()
}

/// Returns the image `name` from the per-process memo or the disk cache,
/// making it with `build` (into a temporary layout, renamed into place) under
/// an exclusive file lock if neither has it.
fn cached(
    memo: &Mutex<Option<OciImage>>,
    name: &'static str,
    key: &str,
    build: impl FnOnce(&Path) -> Result<OciImage, Error>,
) -> Result<OciImage, Error> {
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = memo.as_ref() {
        return Ok(image.clone());
    }
    let root = cache_root();
    let final_dir = root.join(format!("{name}-{key}"));
    let image = if final_dir.join("index.json").exists() {
        layout::open(&final_dir, name)?
    } else {
        fs::create_dir_all(&root).map_err(Error::io("create directory", &root))?;
        let lock_path = root.join(format!("{name}.lock"));
        let lock = File::create(&lock_path).map_err(Error::io("create lock file", &lock_path))?;
        lock.lock().map_err(Error::io("lock", &lock_path))?;
        if final_dir.join("index.json").exists() {
            layout::open(&final_dir, name)?
        } else {
            if !is_root() {
                return Err(Error::NeedsRoot {
                    image: name,
                    cache: final_dir,
                });
            }
            let partial = root.join(format!("{name}-{key}.partial"));
            if partial.exists() {
                fs::remove_dir_all(&partial).map_err(Error::io("remove", &partial))?;
            }
            build(&partial)?;
            fs::rename(&partial, &final_dir).map_err(Error::io("move into place", &partial))?;
            layout::open(&final_dir, name)?
        }
    };
    *memo = Some(image.clone());
    Ok(image)
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The Debian mirror configured in the host's apt sources (deb822 `URIs:` or
/// one-line `deb URI suite`), the first one serving `/debian`; Debian's
/// default mirror when none is configured.
pub fn debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter(|f| {
            f.extension().is_some_and(|e| e == "list" || e == "sources")
                || f.ends_with("sources.list")
        })
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| mirror_candidates(&text))
        .find(|uri| uri.trim_end_matches('/').ends_with("/debian"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

fn mirror_candidates(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(uris) = line.strip_prefix("URIs:") {
            out.extend(uris.split_whitespace().map(str::to_string));
        } else if let Some(rest) = line.strip_prefix("deb ") {
            // `deb [options] URI suite components`
            let rest = match rest.trim_start().strip_prefix('[') {
                Some(opts) => opts.split_once(']').map_or("", |(_, r)| r),
                None => rest,
            };
            out.extend(rest.split_whitespace().next().map(str::to_string));
        }
    }
    out.into_iter()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(|u| u.trim_end_matches('/').to_string())
        .collect()
}

fn build_debian(layout_dir: &Path, mirror: &str, arch: &str) -> Result<OciImage, Error> {
    let root = cache_root();
    let work = WorkDir::new_in(&root, "work-debian-")?;
    let rootfs = work.path().join("rootfs");
    // debootstrap keeps downloaded .debs here, so remaking the image does not
    // download them again.
    let debs = root.join(format!("debs-{DEBIAN_SUITE}-{arch}"));
    fs::create_dir_all(&debs).map_err(Error::io("create directory", &debs))?;
    command::run(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--arch={arch}"))
            .arg(format!("--cache-dir={}", debs.display()))
            .arg(DEBIAN_SUITE)
            .arg(&rootfs)
            .arg(mirror),
    )?;
    rootfs::unmount_below(&rootfs);
    rootfs::clean_debian_tree(&rootfs)?;
    image_from_rootfs(
        &rootfs,
        layout_dir,
        "debian",
        &ImageConfig {
            env: vec![PATH_ENV.to_string()],
            cmd: vec!["bash".to_string()],
            history: vec![format!(
                "debootstrap --variant=minbase {DEBIAN_SUITE} {mirror}"
            )],
        },
    )
}

/// Writes the directory tree `rootfs` as a one-layer image named `name`
/// into the OCI layout `layout_dir` (created if needed; its `index.json` then
/// names only this image), for the host architecture. The layer is written
/// the same deterministic way as the base images': walk order, numeric ids
/// as on disk, mtimes clamped to [`SOURCE_DATE_EPOCH`], hard links kept,
/// contents of `dev`, `proc` and `sys` left out.
pub fn image_from_rootfs(
    rootfs: &Path,
    layout_dir: &Path,
    name: &str,
    config: &ImageConfig,
) -> Result<OciImage, Error> {
    let entries = rootfs::entries(&rootfs::scan(rootfs)?)?;
    let blobs = layout::create(layout_dir)?;
    let layer = layer::write_layer(&blobs, &entries)?;
    layout::write_image(layout_dir, name, host_architecture()?, &[layer], config)
}

/// Unpacks the layers of `image` in order into `dest` (created if needed),
/// keeping modes, owners (as root) and mtimes. Whiteouts are not applied:
/// meant for images without deletions, like this crate's. (For a faithful
/// unpack use `umoci unpack`.)
pub fn unpack_layers(image: &OciImage, dest: &Path) -> Result<(), Error> {
    fs::create_dir_all(dest).map_err(Error::io("create directory", dest))?;
    for digest in &image.layer_digests {
        let blob = image.blob_path(digest);
        let file = File::open(&blob).map_err(Error::io("open", &blob))?;
        let mut archive =
            tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(is_root());
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        archive
            .unpack(dest)
            .map_err(Error::io("unpack layer", &blob))?;
    }
    Ok(())
}

fn build_python(layout_dir: &Path, base: &OciImage) -> Result<OciImage, Error> {
    let arch = host_architecture()?;
    let work = WorkDir::new_in(&cache_root(), "work-python-")?;
    let rootfs = work.path().join("rootfs");
    unpack_layers(base, &rootfs)?;
    let before = Snapshot::of(&rootfs::scan(&rootfs)?);

    let resolv = rootfs.join("etc/resolv.conf");
    fs::copy("/etc/resolv.conf", &resolv)
        .map_err(Error::io("copy /etc/resolv.conf to", &resolv))?;
    {
        let _proc = Mount::new(&["-t", "proc", "proc"], &rootfs.join("proc"))?;
        let _dev = Mount::new(&["--bind", "/dev"], &rootfs.join("dev"))?;
        let apt = |args: &[&str]| {
            command::run(
                Command::new("chroot")
                    .arg(&rootfs)
                    .arg("apt-get")
                    .args(args)
                    .env_clear()
                    .env("PATH", PATH_ENV.trim_start_matches("PATH="))
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .env("LC_ALL", "C")
                    .env("HOME", "/root"),
            )
        };
        apt(&["update"])?;
        let mut install = vec!["install", "-y", "--no-install-recommends"];
        install.extend(PYTHON_PACKAGES);
        apt(&install)?;
        apt(&["clean"])?;
    }
    rootfs::clean_debian_tree(&rootfs)?;

    let entries = rootfs::diff(&before, &rootfs::scan(&rootfs)?)?;
    let blobs = layout::create(layout_dir)?;
    let mut layers: Vec<LayerBlob> = layout::layers_of(base)?;
    for layer in &layers {
        layout::share_blob(&base.layout, layout_dir, &layer.blob.digest)?;
    }
    layers.push(layer::write_layer(&blobs, &entries)?);
    let base_history = format!(
        "debootstrap --variant=minbase {DEBIAN_SUITE} {}",
        debian_mirror()
    );
    layout::write_image(
        layout_dir,
        "python",
        arch,
        &layers,
        &ImageConfig {
            env: vec![PATH_ENV.to_string(), "LANG=C.UTF-8".to_string()],
            cmd: vec!["python3".to_string()],
            history: vec![
                base_history,
                format!(
                    "apt-get install --no-install-recommends {}",
                    PYTHON_PACKAGES.join(" ")
                ),
            ],
        },
    )
}

/// The skopeo options for talking to `registry` as `src` or `dest`.
fn skopeo_registry_args(registry: &TestRegistry, side: &str) -> Vec<String> {
    let mut args = Vec::new();
    match registry.mode() {
        Mode::Http | Mode::Token => args.push(format!("--{side}-tls-verify=false")),
        Mode::TlsBasic => {
            if let Some(dir) = registry.certs_dir() {
                args.push(format!(
                    "--{side}-cert-dir={}",
                    dir.join(registry.host()).display()
                ));
            }
        }
    }
    match registry.credentials() {
        Some((user, password)) => args.push(format!("--{side}-creds={user}:{password}")),
        None => args.push(format!("--{side}-no-creds")),
    }
    args
}

fn skopeo() -> Command {
    let mut command = Command::new("skopeo");
    // The harness's images and registries are trusted by construction; do
    // not depend on the host's /etc/containers/policy.json.
    command.arg("--insecure-policy");
    command
}

fn read_digest_file(path: &Path) -> Result<String, Error> {
    let content = fs::read_to_string(path).map_err(Error::io("read", path))?;
    let digest = content.trim();
    let valid = digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if valid {
        Ok(digest.to_string())
    } else {
        Err(Error::BadDigest {
            path: path.to_path_buf(),
            content: content.clone(),
        })
    }
}

/// Pushes `image` to `registry` as `repo_and_tag` (e.g. `library/busybox:1`)
/// with `skopeo copy --preserve-digests`; returns the pushed manifest digest
/// (equal to `image.manifest_digest`).
pub fn push(
    image: &OciImage,
    registry: &TestRegistry,
    repo_and_tag: &str,
) -> Result<String, Error> {
    let scratch = tempfile::tempdir().map_err(Error::io(
        "create a temporary directory in",
        std::env::temp_dir(),
    ))?;
    let digest_file = scratch.path().join("digest");
    command::run(
        skopeo()
            .args(["copy", "--quiet", "--preserve-digests"])
            .arg(format!("--digestfile={}", digest_file.display()))
            .args(skopeo_registry_args(registry, "dest"))
            .arg(image.skopeo_ref())
            .arg(format!("docker://{}/{repo_and_tag}", registry.host())),
    )?;
    read_digest_file(&digest_file)
}

/// Copies `repo_and_tag` from `registry` into the OCI layout `layout` (created
/// if needed) under the name `name`, with skopeo, and returns it.
pub fn pull(
    registry: &TestRegistry,
    repo_and_tag: &str,
    layout: &Path,
    name: &str,
) -> Result<OciImage, Error> {
    command::run(
        skopeo()
            .args(["copy", "--quiet", "--preserve-digests"])
            .args(skopeo_registry_args(registry, "src"))
            .arg(format!("docker://{}/{repo_and_tag}", registry.host()))
            .arg(format!("oci:{}:{name}", layout.display())),
    )?;
    layout::open(layout, name)
}

/// The manifest digest of `repo_and_tag` in `registry`, as `skopeo inspect`
/// reports it.
pub fn inspect_digest(registry: &TestRegistry, repo_and_tag: &str) -> Result<String, Error> {
    let args: Vec<String> = skopeo_registry_args(registry, "src")
        .into_iter()
        .map(|a| a.replacen("--src-", "--", 1))
        .collect();
    let reference = format!("docker://{}/{repo_and_tag}", registry.host());
    let output = command::stdout(skopeo().arg("inspect").args(&args).arg(&reference))?;
    let parsed: serde_json::Value =
        serde_json::from_str(&output).map_err(|source| Error::Json {
            path: PathBuf::from(&reference),
            source,
        })?;
    let digest = parsed["Digest"].as_str().unwrap_or_default();
    if digest.starts_with("sha256:") && digest.len() == 71 {
        Ok(digest.to_string())
    } else {
        Err(Error::BadDigest {
            path: PathBuf::from(reference),
            content: output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_read_from_both_source_formats() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/x\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(mirror_candidates(deb822), ["http://deb.debian.org/debian"]);
        let one_line = "deb [arch=amd64 signed-by=/k.gpg] http://ftp.de.debian.org/debian/ bookworm main\n# deb http://x/debian\n";
        assert_eq!(
            mirror_candidates(one_line),
            ["http://ftp.de.debian.org/debian"]
        );
    }

    #[test]
    fn cache_keys_differ_by_input() {
        assert_ne!(cache_key(&["1", "a"]), cache_key(&["1", "b"]));
        assert_eq!(cache_key(&["1", "a"]).len(), 16);
    }

    #[test]
    fn host_architecture_is_known() {
        let arch = host_architecture().unwrap();
        assert!(!arch.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arch, "amd64");
        }
    }
}
