//! Catalogers checked against the tools that own the data: dpkg-query on this
//! Debian host, pip in a virtual environment made here, the Go toolchain.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_sbom::purl::pep503_normalise;
use kiln_sbom::{Catalogers, DirTree, Ecosystem, Inventory, LayerInfo, TarLayer, catalog_tree};

use crate::common::{LayerTar, image, valid_bom};

fn tool_output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    if !output.status.success() {
        panic!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Some(String::from_utf8(output.stdout).expect("UTF-8 tool output"))
}

#[test]
fn debian_cataloger_matches_dpkg_query_on_this_host() {
    if !Path::new("/var/lib/dpkg/status").is_file() {
        eprintln!("skipping: this host has no dpkg database");
        return;
    }
    let Some(listing) = tool_output(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${db:Status-Status} ${binary:Package} ${Version} ${Architecture}\n",
    ])) else {
        eprintln!("skipping: dpkg-query not available");
        return;
    };
    let expected: BTreeSet<(String, String, String)> = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let status = fields.next()?;
            let package = fields.next()?;
            let version = fields.next()?;
            let arch = fields.next()?;
            (status == "installed").then(|| {
                let name = package.split(':').next().unwrap_or(package);
                (name.to_owned(), version.to_owned(), arch.to_owned())
            })
        })
        .collect();
    assert!(
        expected.len() > 50,
        "dpkg-query listed {} packages",
        expected.len()
    );

    let inventory = catalog_tree(
        Path::new("/"),
        Catalogers {
            deb: true,
            ..Catalogers::NONE
        },
    )
    .expect("catalog /");
    let packages = inventory.packages();
    let found: BTreeSet<(String, String, String)> = packages
        .iter()
        .filter(|p| p.package.ecosystem == Ecosystem::Deb)
        .map(|p| {
            (
                p.package.name.clone(),
                p.package.version.clone(),
                p.package.arch.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        found.symmetric_difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "cataloged vs dpkg-query"
    );
    assert!(
        inventory.diagnostics().is_empty(),
        "{:?}",
        inventory.diagnostics()
    );

    let os = inventory.operating_system().expect("os-release");
    let base_files = packages
        .iter()
        .find(|p| p.package.name == "base-files")
        .expect("base-files");
    assert!(
        base_files
            .purl
            .as_deref()
            .unwrap()
            .contains(&format!("distro={}-{}", os.name, os.version)),
        "{:?}",
        base_files.purl
    );
    assert!(
        base_files
            .evidence
            .contains(&"/var/lib/dpkg/status".to_owned())
    );
    assert!(
        base_files
            .evidence
            .iter()
            .any(|path| path.ends_with(".list")),
        "{:?}",
        base_files.evidence
    );
    let licensed = packages
        .iter()
        .filter(|p| !p.package.licenses.is_empty())
        .count();
    assert!(
        licensed > 10,
        "only {licensed} packages with licences from copyright files"
    );
    let with_dependencies = packages.iter().filter(|p| !p.depends_on.is_empty()).count();
    assert!(with_dependencies > 10);
    // Every licence id of a real system must be one the schema accepts.
    valid_bom(&inventory, &image('1'));
}

const WHEEL_SCRIPT: &str = r#"
import base64, hashlib, sys, zipfile

def wheel(outdir, dist, version, files, metadata):
    dist_info = f"{dist}-{version}.dist-info"
    entries = dict(files)
    entries[f"{dist_info}/METADATA"] = metadata
    entries[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, content in entries.items():
        data = content.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    entries[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(f"{outdir}/{dist}-{version}-py3-none-any.whl", "w") as archive:
        for path, content in entries.items():
            archive.writestr(path, content)

out = sys.argv[1]
wheel(out, "kiln_demo", "1.2.3", {"kiln_demo/__init__.py": "VALUE = 1\n"},
      "Metadata-Version: 2.1\nName: kiln_demo\nVersion: 1.2.3\nLicense: MIT\nSummary: demo\n")
wheel(out, "Kiln.Helper", "0.4.0", {"kiln_helper/__init__.py": "import kiln_demo\n"},
      "Metadata-Version: 2.1\nName: Kiln.Helper\nVersion: 0.4.0\n"
      "Classifier: License :: OSI Approved :: Apache Software License 2.0\n"
      "Requires-Dist: kiln-demo (>=1.0)\nRequires-Dist: absent-package ; extra == 'x'\n")
"#;

#[test]
fn python_cataloger_matches_pip_list_in_a_venv() {
    let temp = tempfile::tempdir().unwrap();
    let venv = temp.path().join("venv");
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    if !created.is_ok_and(|status| status.success()) {
        eprintln!("skipping: python3 -m venv is not available");
        return;
    }
    let wheels = temp.path().join("wheels");
    fs::create_dir(&wheels).unwrap();
    tool_output(
        Command::new("python3")
            .args(["-c", WHEEL_SCRIPT])
            .arg(&wheels),
    );
    let python = venv.join("bin/python");
    let mut install = Command::new(&python);
    install.args([
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--quiet",
    ]);
    for wheel in fs::read_dir(&wheels).unwrap() {
        install.arg(wheel.unwrap().path());
    }
    tool_output(&mut install);
    let listing = tool_output(Command::new(&python).args([
        "-m",
        "pip",
        "list",
        "--format",
        "json",
        "--disable-pip-version-check",
    ]))
    .unwrap();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    let expected: BTreeSet<(String, String)> = listed
        .iter()
        .map(|entry| {
            (
                pep503_normalise(entry["name"].as_str().unwrap()),
                entry["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(expected.contains(&("kiln-helper".to_owned(), "0.4.0".to_owned())));

    let inventory = catalog_tree(
        &venv,
        Catalogers {
            python: true,
            ..Catalogers::NONE
        },
    )
    .unwrap();
    let packages = inventory.packages();
    let found: BTreeSet<(String, String)> = packages
        .iter()
        .map(|p| (pep503_normalise(&p.package.name), p.package.version.clone()))
        .collect();
    assert_eq!(found, expected);
    let helper = packages
        .iter()
        .find(|p| p.package.name == "Kiln.Helper")
        .unwrap();
    assert_eq!(helper.purl.as_deref(), Some("pkg:pypi/kiln-helper@0.4.0"));
    assert_eq!(helper.depends_on, vec!["pkg:pypi/kiln-demo@1.2.3"]);
    assert_eq!(
        helper.package.licenses,
        vec![kiln_sbom::License::Spdx("Apache-2.0".to_owned())]
    );
    assert!(helper.evidence[0].ends_with(".dist-info/METADATA"));
    valid_bom(&inventory, &image('2'));
}

#[test]
fn go_binary_from_the_real_toolchain_in_a_directory_and_a_tar_stream() {
    let Ok(goversion) = Command::new("go").args(["env", "GOVERSION"]).output() else {
        eprintln!("skipping: no Go toolchain (apt-get install golang-go)");
        return;
    };
    let go_version = String::from_utf8(goversion.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let temp = tempfile::tempdir().unwrap();
    let source = temp.path().join("src");
    let files = [
        (
            "go.mod",
            "module example.com/hello\n\ngo 1.18\n\nrequire example.com/greet v0.0.0\n\nreplace example.com/greet => ./greet\n",
        ),
        (
            "main.go",
            "package main\n\nimport \"example.com/greet\"\n\nfunc main() { greet.Hello() }\n",
        ),
        ("greet/go.mod", "module example.com/greet\n\ngo 1.18\n"),
        (
            "greet/greet.go",
            "package greet\n\nimport \"fmt\"\n\nfunc Hello() { fmt.Println(\"hello\") }\n",
        ),
    ];
    for (path, contents) in files {
        let full = source.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, contents).unwrap();
    }
    let root = temp.path().join("root");
    fs::create_dir_all(root.join("app")).unwrap();
    let binary = root.join("app/hello");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
    tool_output(
        Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(&source)
            .env("GOCACHE", &cache)
            .env("GOPATH", temp.path().join("gopath"))
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0"),
    );
    let reported = tool_output(Command::new("go").args(["version", "-m"]).arg(&binary)).unwrap();
    assert!(
        reported.contains("\tdep\texample.com/greet\tv0.0.0"),
        "{reported}"
    );

    let go_only = Catalogers {
        go: true,
        ..Catalogers::NONE
    };
    let from_directory = catalog_tree(&root, go_only).unwrap().packages();
    let ids: BTreeSet<(String, String)> = from_directory
        .iter()
        .map(|p| (p.package.name.clone(), p.package.version.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("example.com/hello", "(devel)"),
        ("example.com/greet", "v0.0.0"),
        ("stdlib", go_version.as_str()),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(ids, expected);
    let main = from_directory
        .iter()
        .find(|p| p.package.name == "example.com/hello")
        .unwrap();
    assert_eq!(main.purl.as_deref(), Some("pkg:golang/example.com/hello"));
    assert_eq!(main.evidence, vec!["/app/hello"]);
    assert_eq!(main.depends_on.len(), 2);
    let greet = from_directory
        .iter()
        .find(|p| p.package.name == "example.com/greet")
        .unwrap();
    assert_eq!(
        greet.package.properties,
        vec![("kiln:go:replaced-by".to_owned(), "./greet".to_owned())]
    );

    let layer = LayerTar::new()
        .file("app/hello", &fs::read(&binary).unwrap(), 0o755)
        .finish();
    let mut inventory = Inventory::new(go_only);
    inventory
        .apply_layer(LayerInfo::default(), &mut TarLayer::new(&layer[..]))
        .unwrap();
    assert_eq!(
        inventory.packages(),
        from_directory,
        "stream scan equals section read"
    );
    let mut from_dir_view = Inventory::new(go_only);
    from_dir_view
        .apply_layer(LayerInfo::default(), &mut DirTree::layer_dir(&root))
        .unwrap();
    assert_eq!(from_dir_view.packages(), from_directory);
    valid_bom(&inventory, &image('3'));
}
