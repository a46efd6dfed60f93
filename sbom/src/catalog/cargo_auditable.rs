//! Rust crates compiled into a binary built with `cargo auditable`: the
//! `.dep-v0` section holds zlib-compressed JSON
//! `{"packages":[{"name","version","source","kind","dependencies":[index…],"root"}]}`.
//!
//! Contract: build-time dependencies (`kind: "build"`) are left out — they
//! are not part of the binary; the root package is an application, the rest
//! libraries; `dependencies` indices become exact dependencies on the packages
//! they point at (indices out of range are ignored); a source other than
//! crates.io is kept as `kiln:cargo:source`. Data that does not decompress or
//! parse is a [`CatalogError`].

use std::io::Read;

use flate2::read::ZlibDecoder;
use serde::Deserialize;
use serde_json::Value;

use crate::error::CatalogError;
use crate::package::{ComponentKind, Dependency, Ecosystem, Package};

/// Largest decompressed document accepted.
pub(crate) const JSON_LIMIT: u64 = 64 << 20;

#[derive(Deserialize)]
struct VersionInfo {
    packages: Vec<AuditedPackage>,
}

#[derive(Deserialize)]
struct AuditedPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<Value>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    dependencies: Vec<usize>,
    #[serde(default)]
    root: bool,
}

/// Whether the start of decompressed data looks like cargo-auditable's JSON.
pub(crate) fn plausible_start(json: &[u8]) -> bool {
    json.starts_with(b"{\"packages\":") || json.starts_with(b"{\"format\":")
}

/// The JSON document of a `.dep-v0` section.
pub(crate) fn decompress(section: &[u8]) -> Result<Vec<u8>, CatalogError> {
    let mut json = Vec::new();
    ZlibDecoder::new(section)
        .take(JSON_LIMIT + 1)
        .read_to_end(&mut json)
        .map_err(|_| CatalogError::CargoAuditable {
            reason: "section is not valid zlib data",
        })?;
    if json.len() as u64 > JSON_LIMIT {
        return Err(CatalogError::TooLarge { limit: JSON_LIMIT });
    }
    Ok(json)
}

/// The crates listed in cargo-auditable JSON.
pub(crate) fn packages(json: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let info: VersionInfo = serde_json::from_slice(json)?;
    let is_runtime = |package: &AuditedPackage| package.kind.as_deref() != Some("build");
    let mut packages = Vec::with_capacity(info.packages.len());
    for audited in info.packages.iter().filter(|package| is_runtime(package)) {
        let kind = if audited.root {
            ComponentKind::Application
        } else {
            ComponentKind::Library
        };
        let mut package = Package::new(Ecosystem::Cargo, &audited.name, &audited.version, kind);
        package.dependencies = audited
            .dependencies
            .iter()
            .filter_map(|&index| info.packages.get(index))
            .filter(|dependency| is_runtime(dependency))
            .map(|dependency| Dependency::Exact {
                name: dependency.name.clone(),
                version: dependency.version.clone(),
            })
            .collect();
        let source = match &audited.source {
            Some(Value::String(source)) => source.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        if !source.is_empty() && source != "crates.io" {
            package
                .properties
                .push(("kiln:cargo:source".to_owned(), source));
        }
        packages.push(package);
    }
    Ok(packages)
}

#[cfg(test)]
pub(crate) mod testing {
    use flate2::Compression;
    use flate2::write::ZlibEncoder;
    use std::io::Write;

    /// `json` zlib-compressed, as cargo-auditable stores it.
    pub(crate) fn section(json: &str) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::new(7));
        encoder.write_all(json.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    pub(crate) const SAMPLE: &str = r#"{"packages":[{"name":"hello","version":"0.1.0","source":"local","dependencies":[1,2],"root":true},{"name":"serde","version":"1.0.210","source":"crates.io","dependencies":[3]},{"name":"cc","version":"1.1.0","source":"crates.io","kind":"build"},{"name":"serde_derive","version":"1.0.210","source":"crates.io"}]}"#;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompresses_and_lists_runtime_crates() {
        let json = decompress(&testing::section(testing::SAMPLE)).unwrap();
        assert!(plausible_start(&json));
        let packages = packages(&json).unwrap();
        let ids: Vec<_> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.kind))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("hello", "0.1.0", ComponentKind::Application),
                ("serde", "1.0.210", ComponentKind::Library),
                ("serde_derive", "1.0.210", ComponentKind::Library),
            ]
        );
        assert_eq!(
            packages[0].dependencies,
            vec![Dependency::Exact {
                name: "serde".to_owned(),
                version: "1.0.210".to_owned()
            }]
        );
        assert_eq!(
            packages[0].properties,
            vec![("kiln:cargo:source".to_owned(), "local".to_owned())]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            decompress(b"not zlib at all"),
            Err(CatalogError::CargoAuditable { .. })
        ));
        assert!(matches!(packages(b"{}"), Err(CatalogError::Json(_))));
    }
}
