//! The distribution, from `/etc/os-release` (or `/usr/lib/os-release`).
//!
//! Contract: `KEY=value` lines, values optionally in single or double quotes
//! with backslash escapes inside double quotes; comments and blank lines
//! ignored. A file without `ID` describes no distribution: `None`.

use std::io::BufRead;

use crate::error::CatalogError;
use crate::package::{ComponentKind, Ecosystem, Package};

/// The operating-system package described by an os-release file: name `ID`,
/// version `VERSION_ID` (empty when absent, as on Debian sid), description
/// `PRETTY_NAME`, `VERSION_CODENAME` as a property.
pub(crate) fn parse(reader: impl BufRead) -> Result<Option<Package>, CatalogError> {
    let mut id = None;
    let mut version_id = None;
    let mut pretty_name = None;
    let mut codename = None;
    for line in reader.split(b'\n') {
        let line = line?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "ID" => id = Some(value),
            "VERSION_ID" => version_id = Some(value),
            "PRETTY_NAME" => pretty_name = Some(value),
            "VERSION_CODENAME" => codename = Some(value),
            _ => {}
        }
    }
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    let mut package = Package::new(
        Ecosystem::OperatingSystem,
        &id.to_ascii_lowercase(),
        version_id.as_deref().unwrap_or(""),
        ComponentKind::OperatingSystem,
    );
    package.description = pretty_name;
    if let Some(codename) = codename.filter(|codename| !codename.is_empty()) {
        package
            .properties
            .push(("kiln:os:codename".to_owned(), codename));
    }
    Ok(Some(package))
}

fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(character) = chars.next() {
            if character == '\\' {
                if let Some(escaped) = chars.next() {
                    out.push(escaped);
                }
            } else {
                out.push(character);
            }
        }
        out
    } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_alpine() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        let os = parse(debian.as_bytes()).unwrap().unwrap();
        assert_eq!(os.name, "debian");
        assert_eq!(os.version, "12");
        assert_eq!(
            os.description.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let alpine = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n# comment\n";
        let os = parse(alpine.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (os.name.as_str(), os.version.as_str()),
            ("alpine", "3.19.1")
        );
        assert!(parse("NAME=x\n".as_bytes()).unwrap().is_none());
    }
}
