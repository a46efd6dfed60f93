//! The busybox image: deterministic, valid OCI, readable by skopeo and umoci,
//! and runnable.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use kiln_testimages::images::{self, build_busybox};

use crate::{is_root, oci_schema_errors, read_json, run, umoci_unpack, validate_layout};

#[test]
fn busybox_made_twice_has_the_same_digests() {
    let dir = tempfile::tempdir().unwrap();
    let first = build_busybox(&dir.path().join("one")).unwrap();
    let second = build_busybox(&dir.path().join("two")).unwrap();
    assert_eq!(first.manifest_digest, second.manifest_digest);
    assert_eq!(first.config_digest, second.config_digest);
    assert_eq!(first.layer_digests, second.layer_digests);
    assert_eq!(first.layer_digests.len(), 1);
    // The per-process image is the same one.
    let shared = images::busybox().unwrap();
    assert_eq!(shared.manifest_digest, first.manifest_digest);
    assert_eq!(images::busybox().unwrap().layout, shared.layout);
    assert_eq!(
        images::open_layout(&shared.layout, "busybox").unwrap(),
        shared
    );
}

#[test]
fn busybox_layout_is_valid_oci() {
    let image = images::busybox().unwrap();
    validate_layout(&image.layout);
    let index = read_json(&image.layout.join("index.json"));
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "busybox"
    );
    let config = read_json(&image.blob_path(&image.config_digest));
    assert_eq!(config["created"], kiln_testimages::SOURCE_DATE_RFC3339);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], images::host_architecture().unwrap());
    assert_eq!(config["config"]["Cmd"][0], "sh");
}

#[test]
fn schema_validation_catches_broken_documents() {
    let image = images::busybox().unwrap();
    let mut manifest = read_json(&image.blob_path(&image.manifest_digest));
    manifest["config"]["digest"] = "no-algorithm".into();
    let Some(errors) = oci_schema_errors("image-manifest-schema.json", &manifest) else {
        return;
    };
    assert!(
        errors.iter().any(|e| e.contains("no-algorithm")),
        "{errors:?}"
    );
    manifest = read_json(&image.blob_path(&image.manifest_digest));
    manifest["layers"] = serde_json::json!([]);
    assert!(
        !oci_schema_errors("image-manifest-schema.json", &manifest)
            .unwrap()
            .is_empty()
    );
    let mut config = read_json(&image.blob_path(&image.config_digest));
    config["rootfs"]["type"] = "tarball".into();
    assert!(
        !oci_schema_errors("config-schema.json", &config)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn busybox_is_read_by_umoci_and_skopeo() {
    let image = images::busybox().unwrap();
    let listing = run(Command::new("umoci")
        .arg("ls")
        .arg("--layout")
        .arg(&image.layout));
    assert_eq!(listing.trim(), "busybox");
    let inspected = run(Command::new("skopeo")
        .arg("inspect")
        .arg(image.skopeo_ref()));
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], image.manifest_digest);
    assert_eq!(inspected["Layers"][0], image.layer_digests[0]);
}

#[test]
fn busybox_unpacks_and_runs() {
    let image = images::busybox().unwrap();
    let bundle = tempfile::tempdir().unwrap();
    let rootfs = umoci_unpack(&image, &bundle.path().join("bundle"));
    let tmp_mode = fs::metadata(rootfs.join("tmp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(tmp_mode & 0o7777, 0o1777);
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        std::path::Path::new("/bin/busybox")
    );
    assert!(fs::read_link(rootfs.join("usr/bin/env")).is_ok());
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"));
    assert!(passwd.contains(":65534:65534:"));
    if !is_root() {
        eprintln!("skipping the chroot run: needs root");
        return;
    }
    let hi = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/busybox", "echo", "hi"]));
    assert_eq!(hi, "hi\n");
    // Through an applet symlink and the shell.
    let sum = run(Command::new("chroot").arg(&rootfs).args([
        "/bin/sh",
        "-c",
        "echo $((40 + 2)); id -un",
    ]));
    assert_eq!(sum, "42\nroot\n");
}
