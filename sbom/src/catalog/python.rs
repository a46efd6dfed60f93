//! Python distributions: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and
//! `*.egg-info` files, wherever they are (system site-packages, dist-packages,
//! virtual environments).
//!
//! Contract: the header block of the core metadata gives `Name` and `Version`
//! (both required: else [`CatalogError::MissingField`]), the licence from
//! `License-Expression`, else a one-line `License` (multi-line `License`
//! fields hold a whole licence text and are ignored), else the licence
//! classifiers; `Requires-Dist` names become dependencies (resolved later to
//! present distributions, PEP 503 names), `Summary` the description.

use std::io::BufRead;

use super::records::{FieldMode, FieldSpec, RecordReader, field};
use crate::error::CatalogError;
use crate::license;
use crate::package::{ComponentKind, Dependency, Ecosystem, License, Package};

const NAME: usize = 0;
const VERSION: usize = 1;
const LICENSE: usize = 2;
const LICENSE_EXPRESSION: usize = 3;
const CLASSIFIER: usize = 4;
const REQUIRES_DIST: usize = 5;
const SUMMARY: usize = 6;

const FIELDS: [FieldSpec; 7] = [
    field("Name", FieldMode::FirstLine),
    field("Version", FieldMode::FirstLine),
    field("License", FieldMode::Full),
    field("License-Expression", FieldMode::FirstLine),
    field("Classifier", FieldMode::FirstLine),
    field("Requires-Dist", FieldMode::FirstLine),
    field("Summary", FieldMode::FirstLine),
];

/// The distribution described by a core metadata file.
pub(crate) fn parse_metadata(reader: impl BufRead) -> Result<Package, CatalogError> {
    let mut records = RecordReader::new(reader, &FIELDS, false);
    let header = records.next_record()?.ok_or(CatalogError::MissingField {
        field: "Name",
        line: 1,
    })?;
    let name = header.first(NAME).ok_or(CatalogError::MissingField {
        field: "Name",
        line: header.line,
    })?;
    let version = header.first(VERSION).ok_or(CatalogError::MissingField {
        field: "Version",
        line: header.line,
    })?;
    let mut package = Package::new(Ecosystem::Python, name, version, ComponentKind::Library);
    package.licenses = licenses(
        header.first(LICENSE_EXPRESSION),
        header.first(LICENSE),
        header.all(CLASSIFIER),
    );
    package.dependencies = header
        .all(REQUIRES_DIST)
        .iter()
        .filter_map(|requirement| requirement_name(requirement))
        .map(|name| Dependency::AnyOf(vec![name.to_owned()]))
        .collect();
    package.description = header
        .first(SUMMARY)
        .filter(|summary| !summary.is_empty() && *summary != "UNKNOWN")
        .map(str::to_owned);
    Ok(package)
}

fn licenses(expression: Option<&str>, text: Option<&str>, classifiers: &[String]) -> Vec<License> {
    if let Some(license) = expression.and_then(license::from_declared) {
        return vec![license];
    }
    if let Some(text) = text
        && !text.contains('\n')
        && text.len() <= 100
        && let Some(license) = license::from_declared(text)
    {
        return vec![license];
    }
    let mut found = Vec::new();
    for license in classifiers
        .iter()
        .filter_map(|c| license::from_classifier(c))
    {
        if !found.contains(&license) {
            found.push(license);
        }
    }
    found
}

/// The distribution name at the start of a PEP 508 requirement
/// (`requests[socks] (>=2.0) ; extra == "x"` → `requests`).
fn requirement_name(requirement: &str) -> Option<&str> {
    let requirement = requirement.trim_start();
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .unwrap_or(requirement.len());
    (end > 0).then(|| &requirement[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metadata_header_only() {
        let text = "\
Metadata-Version: 2.1
Name: FastAPI
Version: 0.115.0
Summary: FastAPI framework
License: MIT
Classifier: License :: OSI Approved :: BSD License
Requires-Dist: starlette (<0.39.0,>=0.37.2)
Requires-Dist: pydantic!=1.8,>=1.7.4
Requires-Dist: email-validator>=2.0.0; extra == \"all\"

Name: not-a-header
Requires-Dist: ignored-from-body
";
        let package = parse_metadata(text.as_bytes()).unwrap();
        assert_eq!(package.name, "FastAPI");
        assert_eq!(package.version, "0.115.0");
        assert_eq!(package.licenses, vec![License::Spdx("MIT".to_owned())]);
        assert_eq!(
            package.dependencies,
            vec![
                Dependency::AnyOf(vec!["starlette".to_owned()]),
                Dependency::AnyOf(vec!["pydantic".to_owned()]),
                Dependency::AnyOf(vec!["email-validator".to_owned()]),
            ]
        );
        assert_eq!(package.description.as_deref(), Some("FastAPI framework"));
    }

    #[test]
    fn licence_precedence() {
        let expression =
            "Name: a\nVersion: 1\nLicense-Expression: MIT OR Apache-2.0\nLicense: BSD\n";
        assert_eq!(
            parse_metadata(expression.as_bytes()).unwrap().licenses,
            vec![License::Expression("MIT OR Apache-2.0".to_owned())]
        );
        let full_text = "Name: a\nVersion: 1\nLicense: Copyright (c) someone\n        Permission is hereby granted\nClassifier: License :: OSI Approved :: MIT License\n";
        assert_eq!(
            parse_metadata(full_text.as_bytes()).unwrap().licenses,
            vec![License::Spdx("MIT".to_owned())]
        );
    }

    #[test]
    fn missing_version_is_reported() {
        let error = parse_metadata("Name: a\n".as_bytes()).unwrap_err();
        assert!(matches!(
            error,
            CatalogError::MissingField {
                field: "Version",
                ..
            }
        ));
    }
}
