//! npm packages: `node_modules/**/package.json` (nested `node_modules` and
//! `@scope` directories included) and lock files (`package-lock.json` v2/v3
//! and npm's hidden `node_modules/.package-lock.json`).
//!
//! Contract: an installed `package.json` with a `name` and `version` is a
//! package located at its directory; one without either is not a package
//! (`None`, not an error). A lock file contributes each `packages` entry under
//! a `node_modules/` path that has a version and is neither a link nor
//! dev-only (`dev: true` entries are usually not installed in an image; when
//! they are, their `package.json` catalogs them). The same package found both
//! ways has the same purl and becomes one component with both files as
//! evidence. `dependencies` and `optionalDependencies` names become
//! dependencies, resolved later the way Node resolves them.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::error::CatalogError;
use crate::license;
use crate::package::{ComponentKind, Dependency, Ecosystem, License, Package};

#[derive(Deserialize)]
struct Manifest {
    name: Option<Value>,
    version: Option<Value>,
    license: Option<Value>,
    licenses: Option<Value>,
    description: Option<Value>,
    dependencies: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(rename = "optionalDependencies")]
    optional_dependencies: Option<BTreeMap<String, IgnoredAny>>,
}

#[derive(Deserialize)]
struct LockFile {
    packages: Option<BTreeMap<String, LockEntry>>,
}

#[derive(Deserialize)]
struct LockEntry {
    name: Option<Value>,
    version: Option<Value>,
    license: Option<Value>,
    #[serde(default)]
    dev: bool,
    #[serde(default)]
    link: bool,
    dependencies: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(rename = "optionalDependencies")]
    optional_dependencies: Option<BTreeMap<String, IgnoredAny>>,
}

/// The package an installed `package.json` describes; `package_dir` is its directory.
pub(crate) fn parse_package_json(
    reader: impl BufRead,
    package_dir: &str,
) -> Result<Option<Package>, CatalogError> {
    let manifest: Manifest = serde_json::from_reader(reader)?;
    let (Some(name), Some(version)) = (as_text(&manifest.name), as_text(&manifest.version)) else {
        return Ok(None);
    };
    let mut package = Package::new(Ecosystem::Npm, name, version, ComponentKind::Library);
    package.licenses = licenses(manifest.license.as_ref(), manifest.licenses.as_ref());
    package.dependencies = dependency_names(
        manifest.dependencies.as_ref(),
        manifest.optional_dependencies.as_ref(),
    );
    package.description = as_text(&manifest.description)
        .filter(|text| !text.is_empty())
        .map(str::to_owned);
    package.location = Some(package_dir.to_owned());
    Ok(Some(package))
}

/// The packages a v2/v3 lock file lists; `project_dir` is the directory its
/// `node_modules/…` keys are relative to.
pub(crate) fn parse_lock_file(
    reader: impl BufRead,
    project_dir: &str,
) -> Result<Vec<Package>, CatalogError> {
    let lock: LockFile = serde_json::from_reader(reader)?;
    let mut packages = Vec::new();
    for (key, entry) in lock.packages.unwrap_or_default() {
        let Some(index) = key.rfind("node_modules/") else {
            continue;
        };
        if entry.dev || entry.link {
            continue;
        }
        let Some(version) = as_text(&entry.version) else {
            continue;
        };
        let name = as_text(&entry.name).unwrap_or(&key[index + "node_modules/".len()..]);
        if name.is_empty() {
            continue;
        }
        let mut package = Package::new(Ecosystem::Npm, name, version, ComponentKind::Library);
        package.licenses = licenses(entry.license.as_ref(), None);
        package.dependencies = dependency_names(
            entry.dependencies.as_ref(),
            entry.optional_dependencies.as_ref(),
        );
        package.location = Some(if project_dir == "/" {
            format!("/{key}")
        } else {
            format!("{project_dir}/{key}")
        });
        packages.push(package);
    }
    Ok(packages)
}

fn as_text(value: &Option<Value>) -> Option<&str> {
    value.as_ref().and_then(Value::as_str)
}

/// `"license": "MIT"`, `"license": {"type": "MIT"}` or the old `"licenses": [{"type": …}]`.
fn licenses(license: Option<&Value>, licenses: Option<&Value>) -> Vec<License> {
    let declared = |value: &Value| -> Option<License> {
        match value {
            Value::String(text) => license::from_declared(text),
            Value::Object(map) => map
                .get("type")
                .and_then(Value::as_str)
                .and_then(license::from_declared),
            _ => None,
        }
    };
    let mut found: Vec<License> = license.and_then(declared).into_iter().collect();
    if let Some(Value::Array(items)) = licenses {
        for license in items.iter().filter_map(declared) {
            if !found.contains(&license) {
                found.push(license);
            }
        }
    }
    found
}

fn dependency_names(
    dependencies: Option<&BTreeMap<String, IgnoredAny>>,
    optional: Option<&BTreeMap<String, IgnoredAny>>,
) -> Vec<Dependency> {
    dependencies
        .into_iter()
        .chain(optional)
        .flat_map(BTreeMap::keys)
        .map(|name| Dependency::AnyOf(vec![name.clone()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_manifest() {
        let json = r#"{"name":"@scope/name","version":"1.0.0","license":"(MIT OR Apache-2.0)",
            "dependencies":{"left-pad":"^1.3.0"},"optionalDependencies":{"fsevents":"*"},
            "scripts":{"x":"y"}}"#;
        let package = parse_package_json(json.as_bytes(), "/app/node_modules/@scope/name")
            .unwrap()
            .unwrap();
        assert_eq!(package.name, "@scope/name");
        assert_eq!(
            package.licenses,
            vec![License::Expression("(MIT OR Apache-2.0)".to_owned())]
        );
        assert_eq!(package.dependencies.len(), 2);
        assert_eq!(
            package.location.as_deref(),
            Some("/app/node_modules/@scope/name")
        );
        let legacy = r#"{"name":"old","version":"0.1.0","licenses":[{"type":"MIT"},{"type":"BSD-2-Clause"}]}"#;
        let package = parse_package_json(legacy.as_bytes(), "/n/old")
            .unwrap()
            .unwrap();
        assert_eq!(
            package.licenses,
            vec![
                License::Spdx("MIT".to_owned()),
                License::Spdx("BSD-2-Clause".to_owned())
            ]
        );
        assert!(
            parse_package_json(r#"{"private":true}"#.as_bytes(), "/x")
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            parse_package_json("{not json".as_bytes(), "/x"),
            Err(CatalogError::Json(_))
        ));
    }

    #[test]
    fn lock_file_entries() {
        let json = r#"{"name":"app","lockfileVersion":3,"packages":{
            "":{"name":"app","version":"1.0.0"},
            "node_modules/a":{"version":"1.0.0","license":"MIT","dependencies":{"b":"^2"}},
            "node_modules/a/node_modules/b":{"version":"2.0.0"},
            "node_modules/dev-only":{"version":"3.0.0","dev":true},
            "node_modules/linked":{"resolved":"packages/linked","link":true},
            "packages/linked":{"version":"0.0.1"},
            "node_modules/alias":{"name":"real-name","version":"4.0.0"}}}"#;
        let packages = parse_lock_file(json.as_bytes(), "/app").unwrap();
        let names: Vec<_> = packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.location.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("a", "1.0.0", "/app/node_modules/a"),
                ("b", "2.0.0", "/app/node_modules/a/node_modules/b"),
                ("real-name", "4.0.0", "/app/node_modules/alias"),
            ]
        );
    }
}
