//! Alpine packages: `/lib/apk/db/installed`.
//!
//! Contract: each record with `P:` (name) and `V:` (version) is an installed
//! package; `A:` gives the architecture, `L:` the licence (SPDX-style, mapped
//! as declared), `o:` the origin (source) package, `T:` the description, `D:`
//! dependencies (conflicts `!x` dropped, version constraints stripped, `so:`
//! and `cmd:` names kept so they resolve through `p:` provides). A record
//! without `P:` or `V:` is a [`CatalogError::MissingField`].

use std::io::BufRead;

use super::records::{FieldMode, FieldSpec, RecordReader, field};
use crate::error::CatalogError;
use crate::license;
use crate::package::{ComponentKind, Dependency, Ecosystem, Package, SourcePackage};

const NAME: usize = 0;
const VERSION: usize = 1;
const ARCH: usize = 2;
const LICENSE: usize = 3;
const ORIGIN: usize = 4;
const DEPENDS: usize = 5;
const PROVIDES: usize = 6;
const DESCRIPTION: usize = 7;

const FIELDS: [FieldSpec; 8] = [
    field("P", FieldMode::FirstLine),
    field("V", FieldMode::FirstLine),
    field("A", FieldMode::FirstLine),
    field("L", FieldMode::FirstLine),
    field("o", FieldMode::FirstLine),
    field("D", FieldMode::FirstLine),
    field("p", FieldMode::FirstLine),
    field("T", FieldMode::FirstLine),
];

/// Installed packages of an apk database.
pub(crate) fn parse_installed(reader: impl BufRead) -> Result<Vec<Package>, CatalogError> {
    let mut records = RecordReader::new(reader, &FIELDS, true);
    let mut packages = Vec::new();
    while let Some(record) = records.next_record()? {
        let name = record.first(NAME).ok_or(CatalogError::MissingField {
            field: "P",
            line: record.line,
        })?;
        let version = record.first(VERSION).ok_or(CatalogError::MissingField {
            field: "V",
            line: record.line,
        })?;
        let mut package = Package::new(Ecosystem::Apk, name, version, ComponentKind::Library);
        package.arch = record.first(ARCH).map(str::to_owned);
        package.licenses = record
            .first(LICENSE)
            .and_then(license::from_declared)
            .into_iter()
            .collect();
        package.source_package =
            record
                .first(ORIGIN)
                .filter(|origin| *origin != name)
                .map(|origin| SourcePackage {
                    name: origin.to_owned(),
                    version: None,
                });
        package.dependencies = record
            .first(DEPENDS)
            .into_iter()
            .flat_map(str::split_whitespace)
            .filter(|token| !token.starts_with('!'))
            .map(|token| Dependency::AnyOf(vec![strip_constraint(token).to_owned()]))
            .collect();
        package.provides = record
            .first(PROVIDES)
            .into_iter()
            .flat_map(str::split_whitespace)
            .map(|token| strip_constraint(token).to_owned())
            .collect();
        package.description = record.first(DESCRIPTION).map(str::to_owned);
        packages.push(package);
    }
    Ok(packages)
}

/// `so:libc.musl-x86_64.so.1=1` → `so:libc.musl-x86_64.so.1`; `busybox>=1.36` → `busybox`.
fn strip_constraint(token: &str) -> &str {
    token
        .find(['=', '<', '>', '~'])
        .map_or(token, |index| &token[..index])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::License;

    #[test]
    fn parses_installed_database() {
        let text = "\
C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
L:MIT
o:musl
T:the musl c library (libc) implementation
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1

P:busybox
V:1.36.1-r15
A:x86_64
L:GPL-2.0-only
o:busybox
D:so:libc.musl-x86_64.so.1 !busybox-extras>=1.0
";
        let packages = parse_installed(text.as_bytes()).unwrap();
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "musl");
        assert_eq!(packages[0].version, "1.2.4-r2");
        assert_eq!(packages[0].arch.as_deref(), Some("x86_64"));
        assert_eq!(packages[0].licenses, vec![License::Spdx("MIT".to_owned())]);
        assert_eq!(
            packages[0].provides,
            vec!["so:libc.musl-x86_64.so.1".to_owned()]
        );
        assert_eq!(packages[0].source_package, None);
        assert_eq!(
            packages[1].dependencies,
            vec![Dependency::AnyOf(vec![
                "so:libc.musl-x86_64.so.1".to_owned()
            ])]
        );
    }
}
