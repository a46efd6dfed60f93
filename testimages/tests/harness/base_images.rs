//! The Debian-based images: slow the first time (debootstrap, apt), cached on
//! disk afterwards.

use std::fs;
use std::process::Command;

use kiln_testimages::images::{self, ImageConfig};

use crate::{is_root, read_json, run, umoci_unpack, validate_layout};

#[test]
fn debian_is_cached_and_its_layer_rewrites_to_the_same_digest() {
    let image = images::debian().unwrap();
    assert_eq!(image.name, "debian");
    assert_eq!(image.layer_digests.len(), 1);
    validate_layout(&image.layout);
    // From the cache (this process's memo, then the disk) the same image.
    assert_eq!(images::debian().unwrap(), image);
    assert_eq!(images::open_layout(&image.layout, "debian").unwrap(), image);

    // Unpacking the layer and writing the tree again gives the same layer:
    // the writer is deterministic and loses nothing an unpack restores.
    if !is_root() {
        eprintln!("skipping the debian round trip: restoring owners needs root");
        return;
    }
    let work = tempfile::tempdir_in(kiln_testimages::cache_root()).unwrap();
    let rootfs = work.path().join("rootfs");
    images::unpack_layers(&image, &rootfs).unwrap();
    assert!(!rootfs.join("etc/hostname").exists());
    assert!(!rootfs.join("etc/resolv.conf").exists());
    assert!(!rootfs.join("var/log/dpkg.log").exists());
    assert_eq!(
        fs::read_dir(rootfs.join("var/lib/apt/lists"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count(),
        0
    );
    let status = fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Package: dpkg\n"));
    assert!(status.contains("Package: apt\n"));
    let config = read_json(&image.blob_path(&image.config_digest));
    let again = images::image_from_rootfs(
        &rootfs,
        &work.path().join("layout"),
        "debian",
        &ImageConfig {
            env: vec![config["config"]["Env"][0].as_str().unwrap().to_string()],
            cmd: vec!["bash".into()],
            history: vec![
                config["history"][0]["created_by"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ],
        },
    )
    .unwrap();
    assert_eq!(again.layer_digests, image.layer_digests);
    assert_eq!(again.manifest_digest, image.manifest_digest);
}

#[test]
fn python_runs_python3_on_top_of_the_debian_layer() {
    let image = images::python().unwrap();
    let debian = images::debian().unwrap();
    assert_eq!(image.layer_digests.len(), 2);
    assert_eq!(image.layer_digests[0], debian.layer_digests[0]);
    assert_eq!(images::python().unwrap(), image);
    validate_layout(&image.layout);

    let bundle = tempfile::tempdir().unwrap();
    let rootfs = umoci_unpack(&image, &bundle.path().join("bundle"));
    let status = fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap();
    for package in ["python3", "python3-venv", "python3-pip", "ca-certificates"] {
        let stanza = status
            .split("\n\n")
            .find(|s| s.starts_with(&format!("Package: {package}\n")))
            .unwrap_or_else(|| panic!("{package} not in dpkg status"));
        assert!(stanza.contains("Status: install ok installed"), "{stanza}");
    }
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    assert!(!rootfs.join("etc/resolv.conf").exists());
    if !is_root() {
        eprintln!("skipping the chroot run: needs root");
        return;
    }
    let version = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["python3", "--version"]));
    assert!(version.starts_with("Python 3."), "{version}");
    let venv = run(Command::new("chroot").arg(&rootfs).args([
        "sh",
        "-c",
        "python3 -m venv --without-pip /tmp/venv && /tmp/venv/bin/python -c 'import sys; print(sys.prefix)'",
    ]));
    assert_eq!(venv.trim(), "/tmp/venv");
    let pip = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["python3", "-m", "pip", "--version"]));
    assert!(pip.starts_with("pip "), "{pip}");
}
