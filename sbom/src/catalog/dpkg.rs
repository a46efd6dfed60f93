//! Debian packages: `/var/lib/dpkg/status`, the distroless-style
//! `/var/lib/dpkg/status.d/*`, and machine-readable copyright files.
//!
//! Contract: a status record becomes a package when it has `Package` and
//! `Version` and its `Status` says the package is installed (`… ok installed`,
//! which includes held packages); `status.d` records often have no `Status`
//! and are then taken as installed. `Source: x (ver)` gives the source package
//! and its own version. `Depends` and `Pre-Depends` become dependencies (each
//! `a | b` group one dependency on the first present alternative), `Provides`
//! virtual names. A record without `Package` or `Version` is a
//! [`CatalogError::MissingField`].

use std::io::BufRead;

use super::records::{FieldMode, RecordReader, field};
use crate::error::CatalogError;
use crate::license;
use crate::package::{ComponentKind, Dependency, Ecosystem, License, Package, SourcePackage};

const PACKAGE: usize = 0;
const STATUS: usize = 1;
const VERSION: usize = 2;
const ARCHITECTURE: usize = 3;
const SOURCE: usize = 4;
const DEPENDS: usize = 5;
const PRE_DEPENDS: usize = 6;
const PROVIDES: usize = 7;
const DESCRIPTION: usize = 8;

const STATUS_FIELDS: [super::records::FieldSpec; 9] = [
    field("Package", FieldMode::FirstLine),
    field("Status", FieldMode::FirstLine),
    field("Version", FieldMode::FirstLine),
    field("Architecture", FieldMode::FirstLine),
    field("Source", FieldMode::FirstLine),
    field("Depends", FieldMode::Full),
    field("Pre-Depends", FieldMode::Full),
    field("Provides", FieldMode::Full),
    field("Description", FieldMode::FirstLine),
];

/// Installed packages of a dpkg status file (or one `status.d` file).
pub(crate) fn parse_status(reader: impl BufRead) -> Result<Vec<Package>, CatalogError> {
    let mut records = RecordReader::new(reader, &STATUS_FIELDS, false);
    let mut packages = Vec::new();
    while let Some(record) = records.next_record()? {
        if let Some(status) = record.first(STATUS) {
            let mut words = status.split_whitespace();
            let (_want, flag, state) = (words.next(), words.next(), words.next());
            if flag != Some("ok") || state != Some("installed") {
                continue;
            }
        }
        let name = record.first(PACKAGE).ok_or(CatalogError::MissingField {
            field: "Package",
            line: record.line,
        })?;
        let version = record.first(VERSION).ok_or(CatalogError::MissingField {
            field: "Version",
            line: record.line,
        })?;
        let mut package = Package::new(Ecosystem::Deb, name, version, ComponentKind::Library);
        package.arch = record.first(ARCHITECTURE).map(str::to_owned);
        package.source_package = record.first(SOURCE).map(parse_source);
        package.dependencies = record
            .all(PRE_DEPENDS)
            .iter()
            .chain(record.all(DEPENDS))
            .flat_map(|field| parse_relations(field))
            .collect();
        package.provides = record
            .all(PROVIDES)
            .iter()
            .flat_map(|field| parse_relations(field))
            .filter_map(|alternatives| match alternatives {
                Dependency::AnyOf(mut names) if names.len() == 1 => names.pop(),
                _ => None,
            })
            .collect();
        package.description = record
            .first(DESCRIPTION)
            .filter(|text| !text.is_empty())
            .map(str::to_owned);
        packages.push(package);
    }
    Ok(packages)
}

/// `glibc (2.36-9)` → source `glibc` with version `2.36-9`; `glibc` → no version.
fn parse_source(field: &str) -> SourcePackage {
    match field.split_once('(') {
        Some((name, rest)) => SourcePackage {
            name: name.trim().to_owned(),
            version: Some(rest.trim_end_matches(')').trim().to_owned())
                .filter(|version| !version.is_empty()),
        },
        None => SourcePackage {
            name: field.trim().to_owned(),
            version: None,
        },
    }
}

/// A relationship field (`libc6 (>= 2.34), libssl3 | libssl1.1, perl:any`) as
/// dependencies: one per comma-separated group, alternatives in order, version
/// constraints and architecture qualifiers dropped.
pub(crate) fn parse_relations(field: &str) -> Vec<Dependency> {
    field
        .split(',')
        .filter_map(|group| {
            let names: Vec<String> = group
                .split('|')
                .filter_map(|alternative| {
                    let name = alternative
                        .trim()
                        .split(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '<')
                        .next()?;
                    let name = name.split(':').next().unwrap_or(name);
                    (!name.is_empty()).then(|| name.to_owned())
                })
                .collect();
            (!names.is_empty()).then_some(Dependency::AnyOf(names))
        })
        .collect()
}

const FORMAT: usize = 0;
const LICENSE: usize = 1;
const COPYRIGHT_FIELDS: [super::records::FieldSpec; 2] = [
    field("Format", FieldMode::FirstLine),
    field("License", FieldMode::FirstLine),
];

/// Licences of a machine-readable (DEP-5) copyright file: every `License:`
/// short name of every paragraph, mapped to SPDX where obvious. A file whose
/// first paragraph has no `Format:` field is not machine-readable: its licences
/// are unknown (an empty list), and reading stops after that paragraph.
pub(crate) fn parse_copyright(reader: impl BufRead) -> Result<Vec<License>, CatalogError> {
    let mut records = RecordReader::new(reader, &COPYRIGHT_FIELDS, false);
    let Some(header) = records.next_record()? else {
        return Ok(Vec::new());
    };
    if header.first(FORMAT).is_none() {
        return Ok(Vec::new());
    }
    let mut licenses: Vec<License> = Vec::new();
    let add = |field: &str, licenses: &mut Vec<License>| {
        for license in license::from_dep5_field(field) {
            if !licenses.contains(&license) {
                licenses.push(license);
            }
        }
    };
    for value in header.all(LICENSE) {
        add(value, &mut licenses);
    }
    while let Some(record) = records.next_record()? {
        for value in record.all(LICENSE) {
            add(value, &mut licenses);
        }
    }
    Ok(licenses)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_TEXT: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u7
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries.

Package: removed-pkg
Status: deinstall ok config-files
Version: 1.0

Package: curl
Status: hold ok installed
Architecture: amd64
Version: 7.88.1-10+deb12u5
Depends: libc6 (>= 2.34), libcurl4 (= 7.88.1-10+deb12u5),
 zlib1g (>= 1:1.1.4) | zlib-ng, perl:any
Provides: http-client
";

    #[test]
    fn installed_packages_with_source_and_relations() {
        let packages = parse_status(STATUS_TEXT.as_bytes()).unwrap();
        assert_eq!(packages.len(), 2);
        let libc = &packages[0];
        assert_eq!(libc.name, "libc6");
        assert_eq!(libc.version, "2.36-9+deb12u7");
        assert_eq!(libc.arch.as_deref(), Some("amd64"));
        assert_eq!(
            libc.source_package,
            Some(SourcePackage {
                name: "glibc".to_owned(),
                version: Some("2.36-9+deb12u4".to_owned())
            })
        );
        assert_eq!(
            libc.description.as_deref(),
            Some("GNU C Library: Shared libraries")
        );
        let curl = &packages[1];
        assert_eq!(
            curl.dependencies,
            vec![
                Dependency::AnyOf(vec!["libc6".to_owned()]),
                Dependency::AnyOf(vec!["libcurl4".to_owned()]),
                Dependency::AnyOf(vec!["zlib1g".to_owned(), "zlib-ng".to_owned()]),
                Dependency::AnyOf(vec!["perl".to_owned()]),
            ]
        );
        assert_eq!(curl.provides, vec!["http-client".to_owned()]);
        assert_eq!(curl.source_package, None);
    }

    #[test]
    fn missing_version_is_an_error() {
        let error =
            parse_status("Package: x\nStatus: install ok installed\n".as_bytes()).unwrap_err();
        assert!(matches!(
            error,
            CatalogError::MissingField {
                field: "Version",
                line: 1
            }
        ));
    }

    #[test]
    fn dep5_copyright_licences() {
        let text = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: curl

Files: *
Copyright: 1996 - 2023, Daniel Stenberg
License: curl

Files: debian/*
Copyright: 2020 Someone
License: GPL-2+
 This program is free software; you can redistribute it
 .
 License: not-a-field-because-continuation

License: curl
 All rights reserved.
";
        let licenses = parse_copyright(text.as_bytes()).unwrap();
        assert_eq!(
            licenses,
            vec![
                License::Spdx("curl".to_owned()),
                License::Spdx("GPL-2.0-or-later".to_owned())
            ]
        );
        let free_form = "This is Debian's prepackaged version of foo.\n\nIt is GPL.\n";
        assert!(parse_copyright(free_form.as_bytes()).unwrap().is_empty());
    }
}
