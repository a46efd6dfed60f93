//! The build's SBOM end to end, with the real `kiln` binary on the `python`
//! base (Debian bookworm + python3 + pip) from kiln-testimages: attribution of
//! pip, dpkg and base packages to their layers, agreement with `dpkg-query`
//! and `pip list` run in the image, schema validity, determinism, the store
//! referrer, the push as an OCI referrer (docker-registry 2.8 lacks the
//! referrers API, so the `sha256-<hex>` tag fallback), and `kiln sbom` over a
//! registry and an OCI layout.

mod support;
use support::{kiln, ok, stderr};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use kiln_builder::build::sbom::{self, EMPTY_MEDIA_TYPE, SBOM_ARTIFACT_TYPE};
use kiln_builder::digest::Digest;
use kiln_builder::store::Store;
use kiln_testimages::registry::{Mode, TestRegistry};
use serde_json::Value;

const EPOCH: &str = "1704067200";
const SITE: &str = "/usr/local/lib/python3.11/dist-packages";
const PIP_INSTALL: &str = "pip install --no-index --no-cache-dir --no-compile \
     --disable-pip-version-check --break-system-packages --root-user-action=ignore";

/// `Dockerfile` of the test image; line numbers matter.
fn dockerfile() -> String {
    format!(
        "FROM python\n\
         COPY wheels/ /tmp/wheels/\n\
         RUN {PIP_INSTALL} /tmp/wheels/demo-1.0-py3-none-any.whl /tmp/wheels/helper-1.0-py3-none-any.whl\n\
         RUN dpkg --purge --force-depends util-linux-extra && rm -f /var/log/dpkg.log\n\
         RUN {PIP_INSTALL} --upgrade /tmp/wheels/demo-2.0-py3-none-any.whl\n\
         ENV APP=demo\n"
    )
}

// ---------------------------------------------------------------- wheels

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A zip archive of stored (uncompressed) entries dated 1980-01-01.
fn zip(entries: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, content) in entries {
        let offset = out.len() as u32;
        let crc = crc32(content.as_bytes());
        let size = content.len() as u32;
        let common = |buf: &mut Vec<u8>| {
            buf.extend_from_slice(&20u16.to_le_bytes()); // version needed
            buf.extend_from_slice(&0u16.to_le_bytes()); // flags
            buf.extend_from_slice(&0u16.to_le_bytes()); // stored
            buf.extend_from_slice(&0u16.to_le_bytes()); // time
            buf.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(content.as_bytes());
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0u8; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // disk numbers
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A pure-Python wheel `name-version-py3-none-any.whl`, written by hand.
fn wheel(name: &str, version: &str) -> Vec<u8> {
    let info = format!("{name}-{version}.dist-info");
    let files = vec![
        (
            format!("{name}/__init__.py"),
            format!("VERSION = \"{version}\"\n"),
        ),
        (
            format!("{info}/METADATA"),
            format!(
                "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: kiln test package\nLicense: MIT\n"
            ),
        ),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_owned(),
        ),
    ];
    let mut record: String = files
        .iter()
        .map(|(path, _)| format!("{path},,\n"))
        .collect();
    record.push_str(&format!("{info}/RECORD,,\n"));
    let mut entries = files;
    entries.push((format!("{info}/RECORD"), record));
    zip(&entries)
}

// ---------------------------------------------------------------- helpers

/// CycloneDX 1.6 schema validation, `None` when `shared/` is absent.
fn schema_errors(document: &[u8]) -> Option<Vec<String>> {
    static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let validator = VALIDATOR
        .get_or_init(|| {
            let Some(shared) = kiln_testimages::shared_dir() else {
                eprintln!("skipping CycloneDX schema validation: no shared/conformance found");
                return None;
            };
            let dir = shared.join("conformance/cyclonedx");
            let read = |name: &str| -> Value {
                serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
            };
            let registry = jsonschema::Registry::new()
                .add(
                    "http://cyclonedx.org/schema/spdx.schema.json",
                    read("spdx.schema.json"),
                )
                .and_then(|b| {
                    b.add(
                        "http://cyclonedx.org/schema/jsf-0.82.schema.json",
                        read("jsf-0.82.schema.json"),
                    )
                })
                .and_then(|b| b.prepare())
                .expect("schema registry");
            Some(
                jsonschema::options()
                    .with_registry(&registry)
                    .should_validate_formats(true)
                    .build(&read("bom-1.6.schema.json"))
                    .expect("CycloneDX 1.6 schema compiles"),
            )
        })
        .as_ref()?;
    let instance: Value = serde_json::from_slice(document).expect("SBOM is JSON");
    Some(
        validator
            .iter_errors(&instance)
            .take(20)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect(),
    )
}

fn assert_valid(document: &[u8]) {
    if let Some(errors) = schema_errors(document) {
        assert!(
            errors.is_empty(),
            "schema violations:\n{}",
            errors.join("\n")
        );
    }
}

fn property<'v>(component: &'v Value, name: &str) -> Option<&'v str> {
    component["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["value"].as_str())
}

fn components(bom: &Value) -> &Vec<Value> {
    bom["components"].as_array().expect("components")
}

/// The single component named `name` whose purl starts with `kind`.
fn component<'v>(bom: &'v Value, kind: &str, name: &str) -> &'v Value {
    let found: Vec<&Value> = components(bom)
        .iter()
        .filter(|c| {
            c["name"] == name
                && c["purl"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&format!("pkg:{kind}/")))
        })
        .collect();
    assert_eq!(found.len(), 1, "{kind} package {name}: {found:?}");
    found[0]
}

/// (purl) of every package component (not base images).
fn package_purls(bom: &Value) -> BTreeSet<String> {
    components(bom)
        .iter()
        .filter(|c| property(c, "kiln:role") != Some("base-image"))
        .map(|c| {
            c["purl"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("os:{}", c["name"]))
        })
        .collect()
}

/// (name, version) of the components of one purl type.
fn name_versions(bom: &Value, kind: &str) -> BTreeSet<(String, String)> {
    components(bom)
        .iter()
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("pkg:{kind}/")))
        })
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_lowercase().replace('_', "-"),
                c["version"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn layer_digests(store: &Store, image: &Digest) -> Vec<String> {
    let manifest: Value = serde_json::from_slice(&store.read_blob(image).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The files of an image, flattened with umoci (a real tool).
fn unpack(home: &Path, name: &str, bundle: &Path) -> PathBuf {
    kiln_testimages::umoci_unpack(home, name, bundle).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    home: PathBuf,
    context: PathBuf,
    python_digest: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let store = Store::open(&home).unwrap();
    let python = kiln_testimages::images::python().unwrap();
    store
        .import_layout(&python.layout, &python.name, "python:latest")
        .unwrap();
    let context = dir.path().join("ctx");
    std::fs::create_dir_all(context.join("wheels")).unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile()).unwrap();
    for (name, version) in [("demo", "1.0"), ("helper", "1.0"), ("demo", "2.0")] {
        std::fs::write(
            context
                .join("wheels")
                .join(format!("{name}-{version}-py3-none-any.whl")),
            wheel(name, version),
        )
        .unwrap();
    }
    Fixture {
        dir,
        home,
        context,
        python_digest: python.manifest_digest.clone(),
    }
}

fn build(fixture: &Fixture, extra: &[&str]) -> Output {
    let mut args = vec!["build", "--progress", "json", "--source-date-epoch", EPOCH];
    args.extend_from_slice(extra);
    let context = fixture.context.to_str().unwrap().to_owned();
    args.push(&context);
    kiln(&fixture.home, &args)
}

// ---------------------------------------------------------------- the test

#[test]
fn python_build_sbom_attributes_pushes_and_catalogs() {
    let fx = fixture();
    let store = Store::open(&fx.home).unwrap();
    let first_path = fx.dir.path().join("first.cdx.json");
    let out = build(
        &fx,
        &["-t", "sbomtest:1", "--sbom", first_path.to_str().unwrap()],
    );
    let image = ok(&out);
    let image_digest: Digest = image.parse().unwrap();
    let document = std::fs::read(&first_path).unwrap();
    assert_valid(&document);
    let bom: Value = serde_json::from_slice(&document).unwrap();
    assert!(
        stderr(&out).contains("SBOM: ") && stderr(&out).contains(" packages from 6 layers"),
        "progress says how many packages: {}",
        stderr(&out)
    );

    check_attribution(&fx, &store, &bom, &image_digest);
    check_store_referrer(&store, &image_digest, &document);
    check_against_tools_in_the_image(&fx, &store, &bom);

    // A cached rebuild gives the same image and the same SBOM, read no layer.
    let again_path = fx.dir.path().join("again.cdx.json");
    let out = build(
        &fx,
        &["-t", "sbomtest:1", "--sbom", again_path.to_str().unwrap()],
    );
    assert_eq!(ok(&out), image);
    assert!(
        stderr(&out).contains("(0 cataloged, 6 known)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&again_path).unwrap(), document);

    // A clean build with the same SOURCE_DATE_EPOCH: same bytes.
    let clean_path = fx.dir.path().join("clean.cdx.json");
    let out = build(
        &fx,
        &[
            "--no-cache",
            "-t",
            "sbomtest:1",
            "--sbom",
            clean_path.to_str().unwrap(),
        ],
    );
    assert_eq!(ok(&out), image, "the clean build reproduces the image");
    assert_eq!(std::fs::read(&clean_path).unwrap(), document);

    check_push_and_catalog(&fx, &store, &image, &document);
}

fn check_attribution(fx: &Fixture, store: &Store, bom: &Value, image: &Digest) {
    let layers = layer_digests(store, image);
    assert_eq!(layers.len(), 6, "2 base layers, COPY and three RUNs");

    // The pip package stays with the RUN that installed it.
    let helper = component(bom, "pypi", "helper");
    assert_eq!(helper["version"], "1.0");
    assert_eq!(property(helper, "kiln:source"), Some("Dockerfile:3"));
    assert_eq!(
        property(helper, "kiln:layer:digest"),
        Some(layers[3].as_str())
    );
    assert_eq!(property(helper, "kiln:stage"), Some("stage-0"));
    assert!(
        property(helper, "kiln:instruction")
            .unwrap()
            .contains("helper-1.0-py3-none-any.whl")
    );
    let evidence = helper["evidence"]["occurrences"][0]["location"]
        .as_str()
        .unwrap();
    assert_eq!(evidence, format!("{SITE}/helper-1.0.dist-info/METADATA"));

    // The upgraded one shows the new version and the layer that changed it.
    let demo = component(bom, "pypi", "demo");
    assert_eq!(demo["version"], "2.0");
    assert_eq!(property(demo, "kiln:source"), Some("Dockerfile:5"));
    assert_eq!(
        property(demo, "kiln:layer:digest"),
        Some(layers[5].as_str())
    );

    // The purged Debian package is gone; the rest of the base stays with it.
    assert!(
        !components(bom)
            .iter()
            .any(|c| c["name"] == "util-linux-extra"),
        "a package purged in a later layer is not in the SBOM"
    );
    let bash = component(bom, "deb", "bash");
    assert_eq!(
        property(bash, "kiln:layer:digest"),
        Some(layers[0].as_str())
    );
    let base_image = property(bash, "kiln:base-image").unwrap();
    assert!(
        base_image.ends_with(&format!("@{}", fx.python_digest)),
        "{base_image}"
    );
    let pip = component(bom, "pypi", "pip");
    assert_eq!(property(pip, "kiln:layer:digest"), Some(layers[1].as_str()));
    assert!(property(pip, "kiln:source").is_none());
    assert!(
        bash["purl"].as_str().unwrap().contains("distro=debian-12"),
        "{}",
        bash["purl"]
    );

    // The document: image, base image, tools, properties, formulation.
    let metadata = &bom["metadata"];
    assert_eq!(metadata["timestamp"], "2024-01-01T00:00:00Z");
    let subject = &metadata["component"];
    assert_eq!(subject["type"], "container");
    assert_eq!(subject["name"], "docker.io/library/sbomtest");
    assert_eq!(
        subject["purl"].as_str().unwrap(),
        format!(
            "pkg:oci/sbomtest@sha256%3A{}?repository_url=docker.io/library/sbomtest&tag=1",
            image.hex()
        )
    );
    assert_eq!(metadata["tools"]["components"][0]["name"], "kiln");
    let base = components(bom)
        .iter()
        .find(|c| property(c, "kiln:role") == Some("base-image"))
        .expect("base image component");
    assert_eq!(base["version"], fx.python_digest.as_str());
    let dockerfile_digest = Digest::of(dockerfile().as_bytes()).to_string();
    assert!(
        metadata["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "kiln:dockerfile:digest" && p["value"] == dockerfile_digest)
    );
    let steps = bom["formulation"][0]["workflows"][0]["tasks"][0]["steps"]
        .as_array()
        .unwrap();
    assert_eq!(steps.len(), 6, "FROM and five instructions");
    assert_eq!(steps[2]["name"], "Dockerfile:3");
    assert!(
        steps[2]["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "kiln:layer:digest" && p["value"] == layers[3])
    );
    let serial = bom["serialNumber"].as_str().unwrap();
    assert_eq!(serial, kiln_sbom::bom::serial_number(&image.to_string()));
}

fn check_store_referrer(store: &Store, image: &Digest, document: &[u8]) {
    let referrers = sbom::referrers(store, image).unwrap();
    assert_eq!(referrers.len(), 1);
    let referrer = &referrers[0];
    assert_eq!(referrer.artifact_type.as_deref(), Some(SBOM_ARTIFACT_TYPE));
    let manifest: Value = serde_json::from_slice(&store.read_blob(&referrer.digest).unwrap())
        .expect("artifact manifest");
    assert_eq!(manifest["artifactType"], SBOM_ARTIFACT_TYPE);
    assert_eq!(manifest["subject"]["digest"], image.to_string());
    assert_eq!(manifest["config"]["mediaType"], EMPTY_MEDIA_TYPE);
    assert_eq!(manifest["config"]["digest"], Digest::of(b"{}").to_string());
    assert_eq!(sbom::read_document(store, referrer).unwrap(), document);
    // Not an image of the store.
    let names: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["python:latest", "sbomtest:1"]);
}

/// `dpkg-query -W` and `pip list` run in the image list exactly the SBOM's packages.
fn check_against_tools_in_the_image(fx: &Fixture, store: &Store, bom: &Value) {
    let context = fx.dir.path().join("query");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM sbomtest:1\n\
         RUN dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\\n' > /dpkg.txt \
         && pip list --format=freeze --disable-pip-version-check > /pip.txt\n",
    )
    .unwrap();
    let out = kiln(
        &fx.home,
        &[
            "build",
            "--progress",
            "plain",
            "--sbom=false",
            "-t",
            "query:1",
            context.to_str().unwrap(),
        ],
    );
    let query_digest: Digest = ok(&out).parse().unwrap();
    assert!(
        sbom::referrers(store, &query_digest).unwrap().is_empty(),
        "--sbom=false keeps no SBOM"
    );
    let rootfs = unpack(&fx.home, "query:1", &fx.dir.path().join("query-bundle"));
    let dpkg: BTreeSet<(String, String)> = std::fs::read_to_string(rootfs.join("dpkg.txt"))
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("ii "))
        .map(|rest| {
            let (name, version) = rest.trim().split_once(' ').unwrap();
            (name.to_owned(), version.to_owned())
        })
        .collect();
    assert!(dpkg.len() > 50, "{dpkg:?}");
    assert_eq!(name_versions(bom, "deb"), dpkg, "dpkg-query -W vs the SBOM");
    let pip: BTreeSet<(String, String)> = std::fs::read_to_string(rootfs.join("pip.txt"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once("=="))
        .map(|(name, version)| (name.to_lowercase().replace('_', "-"), version.to_owned()))
        .collect();
    assert!(
        pip.contains(&("demo".to_owned(), "2.0".to_owned())),
        "{pip:?}"
    );
    assert_eq!(name_versions(bom, "pypi"), pip, "pip list vs the SBOM");
}

fn check_push_and_catalog(fx: &Fixture, store: &Store, image: &str, local_document: &[u8]) {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    let host = registry.host();
    let pushed_ref = format!("{host}/team/sbomtest:1");
    let out = build(fx, &["-t", &pushed_ref, "--push"]);
    assert_eq!(ok(&out), image);
    assert!(
        stderr(&out).contains(&format!("tag sha256-{}", &image[7..])),
        "the fallback tag was used: {}",
        stderr(&out)
    );
    // The store now keeps the SBOM naming the pushed reference.
    let image_digest: Digest = image.parse().unwrap();
    let stored = sbom::referrers(store, &image_digest).unwrap();
    assert_eq!(
        stored.len(),
        1,
        "a rebuild's SBOM replaces the previous one"
    );
    let stored_document = sbom::read_document(store, &stored[0]).unwrap();
    assert_valid(&stored_document);
    let stored_bom: Value = serde_json::from_slice(&stored_document).unwrap();
    let local_bom: Value = serde_json::from_slice(local_document).unwrap();
    assert_eq!(package_purls(&stored_bom), package_purls(&local_bom));

    // Find it on the registry as a referrer of the image digest, and check it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = kiln_registry::RegistryClient::new(kiln_registry::ClientConfig::anonymous());
    let repository = kiln_registry::Reference::parse(&pushed_ref).unwrap();
    let subject: kiln_registry::Digest = image.parse().unwrap();
    let referrers = runtime
        .block_on(client.referrers(&repository, &subject, Some(SBOM_ARTIFACT_TYPE)))
        .unwrap();
    assert_eq!(referrers.len(), 1, "{referrers:?}");
    assert_eq!(
        referrers[0].digest().to_string(),
        stored[0].digest.to_string()
    );
    let tags = runtime.block_on(client.list_tags(&repository)).unwrap();
    assert!(
        tags.contains(&format!("sha256-{}", &image[7..])),
        "{tags:?}"
    );
    let top = runtime.block_on(client.get_manifest(&repository)).unwrap();
    assert_eq!(
        top.media_type, "application/vnd.oci.image.manifest.v1+json",
        "the image stays a plain manifest, no index with unknown/unknown entries"
    );
    let artifact = runtime
        .block_on(client.get_manifest(&repository.with_digest(referrers[0].digest().clone())))
        .unwrap();
    let parsed: Value = serde_json::from_slice(&artifact.bytes).unwrap();
    assert_eq!(parsed["subject"]["digest"], image);
    assert_eq!(parsed["artifactType"], SBOM_ARTIFACT_TYPE);
    let artifact = artifact.image_manifest("the SBOM artifact").unwrap();
    let document_descriptor = &artifact.layers()[0];
    // Fetched blobs are verified against their digest by the client.
    let fetched = runtime
        .block_on(client.fetch_blob_bytes(&repository, document_descriptor, 1 << 24))
        .unwrap();
    assert_eq!(
        Digest::of(&fetched).to_string(),
        document_descriptor.digest().to_string()
    );
    assert_eq!(&fetched[..], &stored_document[..]);

    // `kiln push` of the store image carries its SBOM along.
    let copy_ref = format!("{host}/team/copy:1");
    let out = kiln(&fx.home, &["push", &pushed_ref, &copy_ref]);
    ok(&out);
    let copy = kiln_registry::Reference::parse(&copy_ref).unwrap();
    let copied = runtime
        .block_on(client.referrers(&copy, &subject, Some(SBOM_ARTIFACT_TYPE)))
        .unwrap();
    assert_eq!(copied.len(), 1);

    // `kiln sbom` from the registry, in a fresh store: the same packages, the
    // instructions from the image history.
    let fresh = fx.dir.path().join("fresh-store");
    let from_registry = ok(&kiln(&fresh, &["sbom", &pushed_ref]));
    assert_valid(from_registry.as_bytes());
    let registry_bom: Value = serde_json::from_str(&from_registry).unwrap();
    assert_eq!(package_purls(&registry_bom), package_purls(&local_bom));
    let demo = component(&registry_bom, "pypi", "demo");
    let layers = layer_digests(store, &image_digest);
    assert_eq!(
        property(demo, "kiln:layer:digest"),
        Some(layers[5].as_str())
    );
    assert!(
        property(demo, "kiln:instruction")
            .unwrap()
            .contains("demo-2.0-py3-none-any.whl")
    );

    // `kiln sbom oci:DIR` on an exported layout, JSON and table.
    let layout = fx.dir.path().join("layout");
    let out = build(
        fx,
        &[
            "-t",
            "sbomtest:1",
            "--output",
            &format!("type=oci-dir,dest={}", layout.display()),
        ],
    );
    ok(&out);
    let from_layout = ok(&kiln(
        &fx.home,
        &["sbom", &format!("oci:{}", layout.display())],
    ));
    assert_valid(from_layout.as_bytes());
    let layout_bom: Value = serde_json::from_str(&from_layout).unwrap();
    assert_eq!(package_purls(&layout_bom), package_purls(&local_bom));
    let table_path = fx.dir.path().join("table.txt");
    ok(&kiln(
        &fx.home,
        &[
            "sbom",
            &format!("oci:{}", layout.display()),
            "--format",
            "table",
            "-o",
            table_path.to_str().unwrap(),
        ],
    ));
    let table = std::fs::read_to_string(&table_path).unwrap();
    let demo_line = table
        .lines()
        .find(|line| line.starts_with("demo "))
        .expect("demo in the table");
    assert!(
        demo_line.contains("2.0") && demo_line.contains(&layers[5][7..19]),
        "{demo_line}"
    );
    assert_eq!(table.lines().count(), package_purls(&local_bom).len() + 1);
}

/// Only the target stage's chain is cataloged: a package installed in a
/// builder stage appears only if its metadata was copied, and then attributed
/// to that `COPY --from`.
#[test]
fn multi_stage_sbom_reports_only_what_reaches_the_final_stage() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let store = support::busybox_store(&home);
    let context = dir.path().join("ctx");
    std::fs::create_dir_all(&context).unwrap();
    let site = "/usr/lib/python3/dist-packages";
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM busybox AS builder\n\
             RUN mkdir -p {site}/kept-1.0.dist-info {site}/left-2.0.dist-info /out \
             && printf 'Metadata-Version: 2.1\\nName: kept\\nVersion: 1.0\\n' > {site}/kept-1.0.dist-info/METADATA \
             && printf 'Metadata-Version: 2.1\\nName: left\\nVersion: 2.0\\n' > {site}/left-2.0.dist-info/METADATA \
             && echo built > /out/artifact\n\
             FROM busybox\n\
             COPY --from=builder /out/artifact /app/artifact\n\
             COPY --from=builder {site}/kept-1.0.dist-info {site}/kept-1.0.dist-info\n"
        ),
    )
    .unwrap();
    let path = dir.path().join("sbom.json");
    let out = kiln(
        &home,
        &[
            "build",
            "--progress",
            "plain",
            "--source-date-epoch",
            EPOCH,
            "-t",
            "multi:1",
            "--sbom",
            path.to_str().unwrap(),
            context.to_str().unwrap(),
        ],
    );
    let image: Digest = ok(&out).parse().unwrap();
    let document = std::fs::read(&path).unwrap();
    assert_valid(&document);
    let bom: Value = serde_json::from_slice(&document).unwrap();
    assert_eq!(
        name_versions(&bom, "pypi"),
        BTreeSet::from([("kept".to_owned(), "1.0".to_owned())]),
        "the builder's other package stays in the builder"
    );
    let kept = component(&bom, "pypi", "kept");
    let layers = layer_digests(&store, &image);
    assert_eq!(property(kept, "kiln:source"), Some("Dockerfile:5"));
    assert_eq!(property(kept, "kiln:stage"), Some("stage-1"));
    assert_eq!(
        property(kept, "kiln:layer:digest"),
        layers.last().map(String::as_str)
    );
    // Both stages are in the formulation, each a task.
    let tasks = bom["formulation"][0]["workflows"][0]["tasks"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["builder", "stage-1"]);
}
