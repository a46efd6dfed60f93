//! Integration tests of the harness against the real tools: skopeo, umoci,
//! chroot, Debian's docker-registry, debootstrap and apt.

mod base_images;
mod busybox;
mod registry;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Runs a command and returns its stdout; panics with its stderr on failure.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Validates `instance` against the OCI image-spec schema file `schema`
/// (e.g. `image-manifest-schema.json`); returns false (after saying why) when
/// the shared conformance files are not there.
pub fn validate_oci(schema: &str, instance: &Value) -> bool {
    match oci_schema_errors(schema, instance) {
        Some(errors) => {
            assert!(errors.is_empty(), "{schema}: {errors:#?}\n{instance:#}");
            true
        }
        None => false,
    }
}

pub use kiln_testimages::schema::oci_schema_errors;

/// Validates a whole layout: `oci-layout`, `index.json`, and each image's
/// manifest and config; checks every blob against its digest and size.
pub fn validate_layout(layout: &Path) {
    validate_oci(
        "image-layout-schema.json",
        &read_json(&layout.join("oci-layout")),
    );
    let index = read_json(&layout.join("index.json"));
    validate_oci("image-index-schema.json", &index);
    for descriptor in index["manifests"].as_array().expect("manifests") {
        let manifest_path = check_blob(layout, descriptor);
        let manifest = read_json(&manifest_path);
        validate_oci("image-manifest-schema.json", &manifest);
        let config = read_json(&check_blob(layout, &manifest["config"]));
        validate_oci("config-schema.json", &config);
        let layers = manifest["layers"].as_array().expect("layers");
        assert_eq!(
            layers.len(),
            config["rootfs"]["diff_ids"]
                .as_array()
                .expect("diff_ids")
                .len()
        );
        assert_eq!(
            layers.len(),
            config["history"].as_array().expect("history").len()
        );
        for layer in layers {
            check_blob(layout, layer);
        }
    }
}

/// Checks that the blob a descriptor names exists with that digest and size.
pub fn check_blob(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().expect("digest");
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "{digest}"
    );
    let actual = ring::digest::digest(&ring::digest::SHA256, &bytes);
    assert_eq!(digest, format!("sha256:{}", hex::encode(actual.as_ref())));
    path
}

/// `umoci unpack` of `image` into `bundle`; returns the rootfs.
pub fn umoci_unpack(image: &kiln_testimages::images::OciImage, bundle: &Path) -> PathBuf {
    let mut command = Command::new("umoci");
    command.arg("unpack");
    if !is_root() {
        command.arg("--rootless");
    }
    run(command
        .arg("--image")
        .arg(format!("{}:{}", image.layout.display(), image.name))
        .arg(bundle));
    bundle.join("rootfs")
}
