//! Attribution over synthetic layer tar streams.

use kiln_sbom::{Catalogers, Ecosystem, Inventory, LayerDelta, LayerInfo, LayerSummary, TarLayer};

use crate::common::LayerTar;

pub const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";

pub fn status(curl_version: &str) -> String {
    format!(
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nSource: glibc\nVersion: 2.36-9+deb12u7\n\n\
         Package: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: {curl_version}\nDepends: libc6 (>= 2.34), libcurl4 (= {curl_version})\nDescription: command line tool for transferring data with URL syntax\n"
    )
}

pub const CURL_COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: curl\n\nFiles: *\nCopyright: Daniel Stenberg\nLicense: curl\n\nFiles: debian/*\nLicense: GPL-2+ or MIT\n";

pub const SITE: &str = "/usr/local/lib/python3.11/site-packages";

pub fn metadata(name: &str, version: &str, requires: &[&str]) -> String {
    let mut text =
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: MIT\n");
    for requirement in requires {
        text.push_str(&format!("Requires-Dist: {requirement}\n"));
    }
    text.push_str("\nLong description.\n");
    text
}

pub fn base_layer() -> Vec<u8> {
    LayerTar::new()
        .directory("etc")
        .symlink("etc/os-release", "../usr/lib/os-release")
        .text("usr/lib/os-release", OS_RELEASE)
        .text("var/lib/dpkg/status", &status("7.88.1-10+deb12u5"))
        .text("var/lib/dpkg/info/curl.list", "/usr/bin/curl\n")
        .text(
            "var/lib/dpkg/info/libc6:amd64.list",
            "/lib/x86_64-linux-gnu/libc.so.6\n",
        )
        .text("usr/share/doc/curl/copyright", CURL_COPYRIGHT)
        .file("usr/bin/curl", b"#!not really curl\n", 0o755)
        .finish()
}

pub fn pip_layer() -> Vec<u8> {
    LayerTar::new()
        .directory(&format!("{SITE}/demo"))
        .text(&format!("{SITE}/demo/__init__.py"), "")
        .text(
            &format!("{SITE}/demo-1.0.dist-info/METADATA"),
            &metadata("demo", "1.0", &["requests>=2"]),
        )
        .text(
            &format!("{SITE}/requests-2.32.3.dist-info/METADATA"),
            &metadata("requests", "2.32.3", &[]),
        )
        .finish()
}

pub fn base_info() -> LayerInfo {
    LayerInfo {
        digest: Some(format!("sha256:{}", "1".repeat(64))),
        diff_id: Some(format!("sha256:{}", "2".repeat(64))),
        base_image: Some("docker.io/library/debian:bookworm".to_owned()),
        ..LayerInfo::default()
    }
}

pub fn step_info(line: u32, instruction: &str, digit: char) -> LayerInfo {
    LayerInfo {
        digest: Some(format!("sha256:{}", digit.to_string().repeat(64))),
        diff_id: Some(format!("sha256:{}", "f".repeat(63) + &digit.to_string())),
        created_by: Some(instruction.to_owned()),
        source: Some(format!("Dockerfile:{line}")),
        stage: Some("final".to_owned()),
        base_image: None,
    }
}

pub fn apply(inventory: &mut Inventory, info: LayerInfo, tar: Vec<u8>) -> LayerSummary {
    inventory
        .apply_layer(info, &mut TarLayer::new(&tar[..]))
        .expect("layer applies")
}

/// (name, version, layer index) of every package.
fn state(inventory: &Inventory) -> Vec<(String, String, usize)> {
    inventory
        .packages()
        .into_iter()
        .map(|p| (p.package.name, p.package.version, p.layer))
        .collect()
}

fn owned(items: &[(&str, &str, usize)]) -> Vec<(String, String, usize)> {
    let mut items: Vec<_> = items
        .iter()
        .map(|(n, v, l)| (n.to_string(), v.to_string(), *l))
        .collect();
    items.sort();
    items
}

fn sorted(mut items: Vec<(String, String, usize)>) -> Vec<(String, String, usize)> {
    items.sort();
    items
}

/// Three layers as the brief describes, the inventory state checked after each.
pub fn three_layer_inventory() -> Inventory {
    let mut inventory = Inventory::new(Catalogers::ALL);
    let base = apply(&mut inventory, base_info(), base_layer());
    assert_eq!((base.added, base.changed, base.removed), (3, 0, 0));
    let pip = apply(
        &mut inventory,
        step_info(3, "RUN pip install demo", '3'),
        pip_layer(),
    );
    assert_eq!(
        (pip.added, pip.changed, pip.removed, pip.files_read),
        (2, 0, 0, 2)
    );
    let upgrade = LayerTar::new()
        .text("var/lib/dpkg/status", &status("7.88.1-10+deb12u8"))
        .whiteout(&format!("{SITE}/demo-1.0.dist-info"))
        .whiteout(&format!("{SITE}/demo"))
        .finish();
    let upgraded = apply(
        &mut inventory,
        step_info(
            5,
            "RUN apt-get install --only-upgrade curl && pip uninstall -y demo",
            '5',
        ),
        upgrade,
    );
    assert_eq!(
        (upgraded.added, upgraded.changed, upgraded.removed),
        (0, 1, 1),
        "{upgraded:?}"
    );
    inventory
}

#[test]
fn layers_attribute_add_upgrade_and_removal() {
    let inventory = three_layer_inventory();
    assert_eq!(
        sorted(state(&inventory)),
        owned(&[
            ("debian", "12", 0),
            ("libc6", "2.36-9+deb12u7", 0),
            ("curl", "7.88.1-10+deb12u8", 2),
            ("requests", "2.32.3", 1),
        ])
    );
    let curl = inventory
        .packages()
        .into_iter()
        .find(|p| p.package.name == "curl")
        .unwrap();
    assert_eq!(
        curl.purl.as_deref(),
        Some("pkg:deb/debian/curl@7.88.1-10%2Bdeb12u8?arch=amd64&distro=debian-12")
    );
    assert_eq!(
        curl.evidence,
        vec!["/var/lib/dpkg/info/curl.list", "/var/lib/dpkg/status"]
    );
    // Licences from the copyright file of layer 0, though layer 2 rewrote the status.
    assert_eq!(
        curl.package.licenses,
        vec![
            kiln_sbom::License::Spdx("curl".to_owned()),
            kiln_sbom::License::Spdx("GPL-2.0-or-later".to_owned()),
            kiln_sbom::License::Spdx("MIT".to_owned()),
        ]
    );
    // libcurl4 is not present: only libc6 resolves.
    assert_eq!(
        curl.depends_on,
        vec!["pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=debian-12"]
    );
    let libc = inventory
        .packages()
        .into_iter()
        .find(|p| p.package.name == "libc6")
        .unwrap();
    assert_eq!(
        libc.evidence,
        vec![
            "/var/lib/dpkg/info/libc6:amd64.list",
            "/var/lib/dpkg/status"
        ]
    );
    assert_eq!(inventory.layers().len(), 3);
    assert!(inventory.diagnostics().is_empty());
}

#[test]
fn opaque_directory_drops_lower_packages_but_keeps_its_own() {
    let mut inventory = Inventory::new(Catalogers::ALL);
    apply(&mut inventory, base_info(), base_layer());
    apply(
        &mut inventory,
        step_info(3, "RUN pip install demo", '3'),
        pip_layer(),
    );
    // The opaque marker comes after the new entry in the stream: order must not matter.
    let reinstall = LayerTar::new()
        .text(
            &format!("{SITE}/other-2.0.dist-info/METADATA"),
            &metadata("other", "2.0", &[]),
        )
        .text(
            &format!("{SITE}/requests-2.32.3.dist-info/METADATA"),
            &metadata("requests", "2.32.3", &[]),
        )
        .opaque(SITE)
        .finish();
    let summary = apply(
        &mut inventory,
        step_info(7, "RUN rebuild venv", '7'),
        reinstall,
    );
    assert_eq!((summary.added, summary.changed, summary.removed), (1, 0, 1));
    let python: Vec<_> = sorted(
        inventory
            .packages()
            .into_iter()
            .filter(|p| p.package.ecosystem == Ecosystem::Python)
            .map(|p| (p.package.name, p.package.version, p.layer))
            .collect(),
    );
    // requests was rewritten with the same version: it keeps layer 1.
    assert_eq!(
        python,
        owned(&[("other", "2.0", 2), ("requests", "2.32.3", 1)])
    );
}

#[test]
fn layers_that_do_not_touch_the_status_keep_deb_packages_and_read_little() {
    let mut inventory = Inventory::new(Catalogers::ALL);
    apply(&mut inventory, base_info(), base_layer());
    let unrelated = LayerTar::new()
        .text("app/main.py", "print('hi')\n")
        .text("app/README", "x")
        .text("var/lib/dpkg/info/libc6.list", "/x\n")
        .finish();
    let summary = apply(&mut inventory, step_info(4, "COPY . /app", '4'), unrelated);
    assert_eq!(summary.files_read, 1, "only the .list file is read");
    assert_eq!((summary.added, summary.changed, summary.removed), (0, 0, 0));
    let libc = inventory
        .packages()
        .into_iter()
        .find(|p| p.package.name == "libc6")
        .unwrap();
    assert_eq!(libc.layer, 0);
    assert!(
        libc.evidence
            .contains(&"/var/lib/dpkg/info/libc6.list".to_owned())
    );
    // Deleting the whole dpkg directory drops every Debian package.
    let wipe = LayerTar::new().whiteout("var/lib/dpkg").finish();
    let summary = apply(
        &mut inventory,
        step_info(6, "RUN rm -rf /var/lib/dpkg", '6'),
        wipe,
    );
    assert_eq!(summary.removed, 2);
    assert!(
        inventory
            .packages()
            .iter()
            .all(|p| p.package.ecosystem != Ecosystem::Deb)
    );
}

#[test]
fn malformed_metadata_is_a_diagnostic_not_an_error() {
    let mut inventory = Inventory::new(Catalogers::ALL);
    let layer = LayerTar::new()
        .text(
            &format!("{SITE}/broken-1.0.dist-info/METADATA"),
            "Name: broken\n",
        )
        .text("app/node_modules/bad/package.json", "{ not json")
        .text(
            &format!("{SITE}/fine-1.0.dist-info/METADATA"),
            &metadata("fine", "1.0", &[]),
        )
        .finish();
    let summary = apply(&mut inventory, LayerInfo::default(), layer);
    assert_eq!(summary.diagnostics, 2);
    let paths: Vec<_> = inventory
        .diagnostics()
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(
        paths,
        vec![
            "/usr/local/lib/python3.11/site-packages/broken-1.0.dist-info/METADATA",
            "/app/node_modules/bad/package.json"
        ]
    );
    assert_eq!(inventory.packages().len(), 1);
}

#[test]
fn a_broken_stream_leaves_the_inventory_unchanged() {
    let mut inventory = Inventory::new(Catalogers::ALL);
    apply(&mut inventory, base_info(), base_layer());
    let before = inventory.packages();
    let mut truncated = pip_layer();
    truncated.truncate(700);
    let result = inventory.apply_layer(LayerInfo::default(), &mut TarLayer::new(&truncated[..]));
    assert!(
        matches!(result, Err(kiln_sbom::Error::TarStream { .. })),
        "{result:?}"
    );
    assert_eq!(inventory.packages(), before);
    assert_eq!(inventory.layers().len(), 1);
}

#[test]
fn deltas_kept_as_json_replay_to_the_same_inventory() {
    let upgrade = LayerTar::new()
        .text("var/lib/dpkg/status", &status("7.88.1-10+deb12u8"))
        .whiteout(&format!("{SITE}/demo-1.0.dist-info"))
        .finish();
    let layers = [
        (base_info(), base_layer()),
        (step_info(3, "RUN pip install demo", '3'), pip_layer()),
        (step_info(5, "RUN upgrade", '5'), upgrade),
    ];
    let mut direct = Inventory::new(Catalogers::ALL);
    let mut replayed = Inventory::new(Catalogers::ALL);
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for (info, tar) in &layers {
        let delta = replayed
            .layer_delta(&mut TarLayer::new(&tar[..]))
            .expect("delta");
        kept.push(delta.to_json());
        let read_back = LayerDelta::from_json(kept.last().unwrap()).expect("delta reads back");
        let replayed_summary = replayed.apply_delta(info.clone(), read_back);
        let direct_summary = apply(&mut direct, info.clone(), tar.clone());
        assert_eq!(replayed_summary, direct_summary);
    }
    assert_eq!(direct.packages(), replayed.packages());
    assert!(
        !state(&replayed).iter().any(|(name, _, _)| name == "demo"),
        "the whiteout in the last delta removed demo"
    );
    // Replaying the kept bytes on a fresh inventory gives the same state again.
    let mut again = Inventory::new(Catalogers::ALL);
    for ((info, _), bytes) in layers.iter().zip(&kept) {
        again.apply_delta(info.clone(), LayerDelta::from_json(bytes).unwrap());
    }
    assert_eq!(again.packages(), direct.packages());

    let mut foreign: serde_json::Value = serde_json::from_slice(&kept[0]).unwrap();
    foreign["format"] = serde_json::json!("kiln-sbom-delta/0/0.0.0");
    assert!(matches!(
        LayerDelta::from_json(&serde_json::to_vec(&foreign).unwrap()),
        Err(kiln_sbom::Error::ReadDelta { .. })
    ));
    assert!(LayerDelta::from_json(b"{not json").is_err());
}
