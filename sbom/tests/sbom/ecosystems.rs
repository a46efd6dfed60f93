//! npm, apk, and layer directories with whiteouts.

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_sbom::{
    CatalogedPackage, Catalogers, DirTree, Ecosystem, Inventory, LayerInfo, License, TarLayer,
};

use crate::attribution::{CURL_COPYRIGHT, metadata};
use crate::common::{LayerTar, image, valid_bom};

fn by_purl<'a>(packages: &'a [CatalogedPackage], purl: &str) -> &'a CatalogedPackage {
    packages
        .iter()
        .find(|p| p.purl.as_deref() == Some(purl))
        .unwrap_or_else(|| {
            panic!(
                "no {purl} in {:?}",
                packages.iter().map(|p| &p.bom_ref).collect::<Vec<_>>()
            )
        })
}

#[test]
fn npm_installed_and_locked_packages_merge_and_resolve_like_node() {
    let lock = r#"{"name":"app","lockfileVersion":3,"packages":{
        "":{"name":"app","version":"0.0.1","dependencies":{"a":"^1"}},
        "node_modules/a":{"version":"1.0.0","license":"MIT","dependencies":{"b":"^1"}},
        "node_modules/a/node_modules/b":{"version":"1.5.0"},
        "node_modules/b":{"version":"2.0.0","dependencies":{"@scope/c":"^3"}},
        "node_modules/@scope/c":{"version":"3.0.0"},
        "node_modules/jest":{"version":"29.0.0","dev":true}}}"#;
    let layer = LayerTar::new()
        .text("app/package.json", r#"{"name":"app","version":"0.0.1"}"#)
        .text("app/package-lock.json", lock)
        .text(
            "app/node_modules/a/package.json",
            r#"{"name":"a","version":"1.0.0","license":"MIT","dependencies":{"b":"^1"}}"#,
        )
        .text(
            "app/node_modules/a/node_modules/b/package.json",
            r#"{"name":"b","version":"1.5.0","license":{"type":"ISC"}}"#,
        )
        .text(
            "app/node_modules/b/package.json",
            r#"{"name":"b","version":"2.0.0","dependencies":{"@scope/c":"^3"}}"#,
        )
        .text(
            "app/node_modules/b/lib/package.json",
            r#"{"type":"module"}"#,
        )
        .text(
            "app/node_modules/@scope/c/package.json",
            r#"{"name":"@scope/c","version":"3.0.0","license":"Apache-2.0 OR MIT"}"#,
        )
        .finish();
    let mut inventory = Inventory::new(Catalogers::ALL);
    inventory
        .apply_layer(LayerInfo::default(), &mut TarLayer::new(&layer[..]))
        .unwrap();
    let packages = inventory.packages();
    let purls: Vec<_> = packages.iter().filter_map(|p| p.purl.as_deref()).collect();
    assert_eq!(
        purls,
        vec![
            "pkg:npm/%40scope/c@3.0.0",
            "pkg:npm/a@1.0.0",
            "pkg:npm/b@1.5.0",
            "pkg:npm/b@2.0.0"
        ]
    );
    let a = by_purl(&packages, "pkg:npm/a@1.0.0");
    assert_eq!(
        a.evidence,
        vec!["/app/node_modules/a/package.json", "/app/package-lock.json"]
    );
    assert_eq!(a.depends_on, vec!["pkg:npm/b@1.5.0"], "nested b is nearest");
    assert_eq!(
        by_purl(&packages, "pkg:npm/b@2.0.0").depends_on,
        vec!["pkg:npm/%40scope/c@3.0.0"]
    );
    assert_eq!(
        by_purl(&packages, "pkg:npm/%40scope/c@3.0.0")
            .package
            .licenses,
        vec![License::Expression("Apache-2.0 OR MIT".to_owned())]
    );
    assert_eq!(
        by_purl(&packages, "pkg:npm/b@1.5.0").package.licenses,
        vec![License::Spdx("ISC".to_owned())]
    );
    valid_bom(&inventory, &image('c'));
}

#[test]
fn alpine_database_with_distro_and_so_dependencies() {
    let installed = "P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\np:so:libc.musl-x86_64.so.1=1\n\n\
                     P:busybox\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\nD:so:libc.musl-x86_64.so.1\n\n\
                     P:ca-certificates-bundle\nV:20240226-r0\nA:x86_64\nL:MPL-2.0 AND MIT\no:ca-certificates\n";
    let layer = LayerTar::new()
        .text(
            "etc/os-release",
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n",
        )
        .text("lib/apk/db/installed", installed)
        .finish();
    let mut inventory = Inventory::new(Catalogers::ALL);
    inventory
        .apply_layer(LayerInfo::default(), &mut TarLayer::new(&layer[..]))
        .unwrap();
    let packages = inventory.packages();
    let musl = by_purl(
        &packages,
        "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1",
    );
    assert_eq!(musl.evidence, vec!["/lib/apk/db/installed"]);
    let busybox = by_purl(
        &packages,
        "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1",
    );
    assert_eq!(busybox.depends_on, vec![musl.bom_ref.clone()]);
    let bundle = by_purl(
        &packages,
        "pkg:apk/alpine/ca-certificates-bundle@20240226-r0?arch=x86_64&distro=alpine-3.19.1",
    );
    assert_eq!(
        bundle.package.licenses,
        vec![License::Expression("MPL-2.0 AND MIT".to_owned())]
    );
    assert_eq!(
        bundle
            .package
            .source_package
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("ca-certificates")
    );
    assert_eq!(inventory.operating_system().unwrap().version, "3.19.1");
    valid_bom(&inventory, &image('d'));
}

fn write(root: &Path, path: &str, contents: &str) {
    let full = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(full.parent().unwrap()).unwrap();
    fs::write(full, contents).unwrap();
}

#[test]
fn layer_directories_with_whiteouts_opaque_dirs_and_doc_links() {
    let temp = tempfile::tempdir().unwrap();
    let lower = temp.path().join("lower");
    let site = "/opt/venv/lib/python3.11/site-packages";
    write(
        &lower,
        &format!("{site}/demo-1.0.dist-info/METADATA"),
        &metadata("demo", "1.0", &[]),
    );
    write(
        &lower,
        &format!("{site}/keep-1.0.dist-info/METADATA"),
        &metadata("keep", "1.0", &[]),
    );
    write(
        &lower,
        "/srv/lib/old-3.0.dist-info/METADATA",
        &metadata("old", "3.0", &[]),
    );
    write(
        &lower,
        "/srv/lib/gone-1.0.dist-info/METADATA",
        &metadata("gone", "1.0", &[]),
    );
    write(
        &lower,
        "/var/lib/dpkg/status",
        "Package: libfoo1\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n\n\
         Package: libfoo-dev\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\nDepends: libfoo1 (= 1.0-1)\n",
    );
    write(&lower, "/usr/share/doc/libfoo1/copyright", CURL_COPYRIGHT);
    std::os::unix::fs::symlink("libfoo1", lower.join("usr/share/doc/libfoo-dev")).unwrap();

    let mut inventory = Inventory::new(Catalogers::ALL);
    inventory
        .apply_layer(LayerInfo::default(), &mut DirTree::rootfs(&lower))
        .unwrap();
    let packages = inventory.packages();
    let dev = packages
        .iter()
        .find(|p| p.package.name == "libfoo-dev")
        .unwrap();
    assert_eq!(
        dev.package.licenses[0],
        License::Spdx("curl".to_owned()),
        "licence through the doc symlink"
    );
    assert_eq!(dev.depends_on.len(), 1);

    let upper = temp.path().join("upper");
    write(&upper, &format!("{site}/.wh.demo-1.0.dist-info"), "");
    write(&upper, "/srv/lib/.wh..wh..opq", "");
    write(
        &upper,
        "/srv/lib/new-1.0.dist-info/METADATA",
        &metadata("new", "1.0", &[]),
    );
    let device_whiteout = Command::new("mknod")
        .arg(upper.join("srv/.wh-placeholder"))
        .args(["c", "0", "0"])
        .status()
        .is_ok_and(|status| status.success());
    if device_whiteout {
        // An overlayfs whiteout: a character device 0:0 named like the deleted entry.
        fs::create_dir_all(upper.join("opt/venv/lib/python3.11/site-packages")).unwrap();
        fs::rename(
            upper.join("srv/.wh-placeholder"),
            upper.join("opt/venv/lib/python3.11/site-packages/keep-1.0.dist-info"),
        )
        .unwrap();
    } else {
        eprintln!("mknod not permitted: overlay character-device whiteouts not exercised");
    }
    let summary = inventory
        .apply_layer(LayerInfo::default(), &mut DirTree::layer_dir(&upper))
        .unwrap();
    let mut python: Vec<String> = inventory
        .packages()
        .into_iter()
        .filter(|p| p.package.ecosystem == Ecosystem::Python)
        .map(|p| p.package.name)
        .collect();
    python.sort();
    if device_whiteout {
        assert_eq!(python, vec!["new"]);
        assert_eq!(summary.removed, 4);
    } else {
        assert_eq!(python, vec!["keep", "new"]);
        assert_eq!(summary.removed, 3);
    }
    assert_eq!(summary.added, 1);
}
