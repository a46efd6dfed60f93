//! Licence normalisation: turning what metadata says into SPDX identifiers where
//! the mapping is obvious, and keeping the text as a named licence where it is not.
//!
//! Contract: a [`License::Spdx`] always holds an identifier from the SPDX list
//! CycloneDX 1.6 accepts (so the document validates), in its canonical spelling;
//! a [`License::Expression`] holds only SPDX identifiers, `LicenseRef-…`
//! references, exceptions after `WITH`, and the operators `AND`/`OR`/`WITH`.
//! Ambiguous names (`BSD License`, `Apache Software License`, `GPL` without a
//! version) stay [`License::Named`].

mod spdx_ids;

use crate::package::License;
use spdx_ids::SPDX_IDS;

/// The canonical spelling of an SPDX licence identifier, looked up case-insensitively.
pub fn spdx_id(candidate: &str) -> Option<&'static str> {
    let wanted = candidate.to_ascii_lowercase();
    SPDX_IDS
        .binary_search_by(|id| {
            id.bytes()
                .map(|byte| byte.to_ascii_lowercase())
                .cmp(wanted.bytes())
        })
        .ok()
        .map(|index| SPDX_IDS[index])
}

/// A licence as declared by package metadata that is meant to be SPDX (npm
/// `license`, Alpine `L:`, Python `License-Expression` and `License`).
/// Returns `None` for empty or placeholder values (`UNKNOWN`, `NOASSERTION`).
pub fn from_declared(text: &str) -> Option<License> {
    let text = text.trim();
    if text.is_empty()
        || text.eq_ignore_ascii_case("unknown")
        || text.eq_ignore_ascii_case("noassertion")
        || text.eq_ignore_ascii_case("none")
    {
        return None;
    }
    let unwrapped = text.trim_start_matches('(').trim_end_matches(')').trim();
    if let Some(id) = spdx_id(unwrapped).or_else(|| known_alias(unwrapped)) {
        return Some(License::Spdx(id.to_owned()));
    }
    if let Some(gnu) = gnu_family(unwrapped) {
        return Some(License::Spdx(gnu.to_owned()));
    }
    if let Some(expression) = spdx_expression(text) {
        return Some(License::Expression(expression));
    }
    Some(License::Named(text.to_owned()))
}

/// The licences named by a DEP-5 `License:` short name field (`GPL-2+ or Artistic`,
/// `BSD-3-clause, and Expat`): one entry per alternative, mapped to SPDX where obvious.
pub fn from_dep5_field(field: &str) -> Vec<License> {
    let mut licenses = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let flush = |current: &mut Vec<&str>, licenses: &mut Vec<License>| {
        if !current.is_empty() {
            let name = current.join(" ");
            current.clear();
            let license = dep5_short_name(&name);
            if !licenses.contains(&license) {
                licenses.push(license);
            }
        }
    };
    for token in field.split_whitespace() {
        let (word, ends_with_comma) = match token.strip_suffix(',') {
            Some(word) => (word, true),
            None => (token, false),
        };
        if word.eq_ignore_ascii_case("or") || word.eq_ignore_ascii_case("and") {
            flush(&mut current, &mut licenses);
        } else if !word.is_empty() {
            current.push(word);
        }
        if ends_with_comma {
            flush(&mut current, &mut licenses);
        }
    }
    flush(&mut current, &mut licenses);
    licenses
}

/// One DEP-5 short name (`GPL-2+`, `Expat`, `BSD-3-clause`) mapped to SPDX where obvious.
pub fn dep5_short_name(name: &str) -> License {
    let name = name.trim();
    if name.contains(' ') {
        // "GPL-2+ with OpenSSL exception" and the like: no single identifier.
        return License::Named(name.to_owned());
    }
    if let Some(gnu) = gnu_family(name) {
        return License::Spdx(gnu.to_owned());
    }
    if name.eq_ignore_ascii_case("expat") {
        return License::Spdx("MIT".to_owned());
    }
    if let Some(id) = spdx_id(name) {
        return License::Spdx(id.to_owned());
    }
    // "Apache-2" → "Apache-2.0", "MPL-2" → "MPL-2.0".
    if name
        .bytes()
        .last()
        .is_some_and(|byte| byte.is_ascii_digit())
        && let Some(id) = spdx_id(&format!("{name}.0"))
    {
        return License::Spdx(id.to_owned());
    }
    License::Named(name.to_owned())
}

/// A Python trove classifier (`License :: OSI Approved :: MIT License`) mapped to a licence.
pub fn from_classifier(classifier: &str) -> Option<License> {
    let mut parts = classifier.split("::").map(str::trim);
    if parts.next() != Some("License") {
        return None;
    }
    let last = parts.filter(|part| !part.is_empty()).last()?;
    if last == "OSI Approved" || last == "DFSG approved" {
        return None;
    }
    let id = match last {
        "MIT License" => "MIT",
        "MIT No Attribution License (MIT-0)" => "MIT-0",
        "ISC License (ISCL)" => "ISC",
        "GNU General Public License v2 (GPLv2)" => "GPL-2.0-only",
        "GNU General Public License v2 or later (GPLv2+)" => "GPL-2.0-or-later",
        "GNU General Public License v3 (GPLv3)" => "GPL-3.0-only",
        "GNU General Public License v3 or later (GPLv3+)" => "GPL-3.0-or-later",
        "GNU Lesser General Public License v2 (LGPLv2)" => "LGPL-2.0-only",
        "GNU Lesser General Public License v2 or later (LGPLv2+)" => "LGPL-2.0-or-later",
        "GNU Lesser General Public License v3 (LGPLv3)" => "LGPL-3.0-only",
        "GNU Lesser General Public License v3 or later (LGPLv3+)" => "LGPL-3.0-or-later",
        "GNU Affero General Public License v3" => "AGPL-3.0-only",
        "GNU Affero General Public License v3 or later (AGPLv3+)" => "AGPL-3.0-or-later",
        "Mozilla Public License 1.1 (MPL 1.1)" => "MPL-1.1",
        "Mozilla Public License 2.0 (MPL 2.0)" => "MPL-2.0",
        "Python Software Foundation License" => "PSF-2.0",
        "The Unlicense (Unlicense)" => "Unlicense",
        "zlib/libpng License" => "Zlib",
        "Boost Software License 1.0 (BSL-1.0)" => "BSL-1.0",
        "Eclipse Public License 1.0 (EPL-1.0)" => "EPL-1.0",
        "Eclipse Public License 2.0 (EPL-2.0)" => "EPL-2.0",
        "Universal Permissive License (UPL)" => "UPL-1.0",
        "European Union Public Licence 1.2 (EUPL 1.2)" => "EUPL-1.2",
        "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication" => "CC0-1.0",
        "Apache Software License 2.0" => "Apache-2.0",
        other => return Some(License::Named(other.to_owned())),
    };
    Some(License::Spdx(id.to_owned()))
}

/// GNU licences written the DEP-5 way (`GPL-2`, `GPL-2+`, `LGPL-2.1+`, `GFDL-1.3`,
/// `AGPL-3.0+`) as their SPDX `-only` / `-or-later` identifiers.
fn gnu_family(name: &str) -> Option<&'static str> {
    let (family, rest) = name.split_once('-')?;
    let family = match family.to_ascii_uppercase().as_str() {
        "GPL" => "GPL",
        "LGPL" => "LGPL",
        "AGPL" => "AGPL",
        "GFDL" => "GFDL",
        _ => return None,
    };
    let (version, or_later) = match rest.strip_suffix('+') {
        Some(version) => (version, true),
        None => (
            rest.strip_suffix("-only")
                .or_else(|| rest.strip_suffix("-or-later"))
                .unwrap_or(rest),
            rest.ends_with("-or-later"),
        ),
    };
    if version.is_empty()
        || !version
            .bytes()
            .all(|byte| byte.is_ascii_digit() || byte == b'.')
    {
        return None;
    }
    let version = if version.contains('.') {
        version.to_owned()
    } else {
        format!("{version}.0")
    };
    let suffix = if or_later { "or-later" } else { "only" };
    spdx_id(&format!("{family}-{version}-{suffix}"))
}

/// Free-text spellings that unambiguously name one SPDX licence.
fn known_alias(text: &str) -> Option<&'static str> {
    let id = match text.to_ascii_lowercase().as_str() {
        "mit license" | "the mit license" | "mit/x11" | "expat" => "MIT",
        "apache 2.0"
        | "apache-2"
        | "apache 2"
        | "apache license 2.0"
        | "apache2"
        | "apache license, version 2.0"
        | "apache license version 2.0"
        | "apache software license 2.0"
        | "asl 2.0" => "Apache-2.0",
        "bsd 3-clause"
        | "3-clause bsd"
        | "bsd-3"
        | "new bsd"
        | "new bsd license"
        | "modified bsd"
        | "bsd 3-clause license" => "BSD-3-Clause",
        "bsd 2-clause" | "2-clause bsd" | "simplified bsd" | "bsd-2" | "bsd 2-clause license" => {
            "BSD-2-Clause"
        }
        "gplv2" => "GPL-2.0-only",
        "gplv2+" => "GPL-2.0-or-later",
        "gplv3" => "GPL-3.0-only",
        "gplv3+" => "GPL-3.0-or-later",
        "lgplv2.1" => "LGPL-2.1-only",
        "lgplv2.1+" => "LGPL-2.1-or-later",
        "lgplv3" => "LGPL-3.0-only",
        "lgplv3+" => "LGPL-3.0-or-later",
        "isc license" => "ISC",
        "psf" | "psf license" | "python software foundation license" => "PSF-2.0",
        "mpl 2.0" | "mpl-2" | "mozilla public license 2.0" => "MPL-2.0",
        "zpl 2.1" => "ZPL-2.1",
        _ => return None,
    };
    Some(id)
}

/// `text` as an SPDX expression with canonical identifiers and uppercase
/// operators, if it is one (at least one operator, every operand an SPDX id,
/// optionally with `+`, or a `LicenseRef-`).
fn spdx_expression(text: &str) -> Option<String> {
    let spaced = text.replace('(', " ( ").replace(')', " ) ");
    let mut out: Vec<String> = Vec::new();
    let mut operators = 0;
    let mut after_with = false;
    for token in spaced.split_whitespace() {
        let upper = token.to_ascii_uppercase();
        if matches!(upper.as_str(), "AND" | "OR" | "WITH") {
            operators += 1;
            after_with = upper == "WITH";
            out.push(upper);
            continue;
        }
        if token == "(" || token == ")" {
            out.push(token.to_owned());
            continue;
        }
        if after_with {
            // Exception identifiers (`Classpath-exception-2.0`) are not in the licence list.
            after_with = false;
            if !token
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.'))
            {
                return None;
            }
            out.push(token.to_owned());
            continue;
        }
        if token.starts_with("LicenseRef-") || token.starts_with("DocumentRef-") {
            out.push(token.to_owned());
            continue;
        }
        let (bare, plus) = match token.strip_suffix('+') {
            Some(bare) => (bare, "+"),
            None => (token, ""),
        };
        let id = spdx_id(bare)?;
        out.push(format!("{id}{plus}"));
    }
    if operators == 0 {
        return None;
    }
    let joined = out.join(" ").replace("( ", "(").replace(" )", ")");
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spdx(id: &str) -> License {
        License::Spdx(id.to_owned())
    }

    #[test]
    fn spdx_lookup_is_case_insensitive_and_canonical() {
        assert_eq!(spdx_id("mit"), Some("MIT"));
        assert_eq!(spdx_id("bsd-3-clause"), Some("BSD-3-Clause"));
        assert_eq!(spdx_id("Apache-2.0"), Some("Apache-2.0"));
        assert_eq!(spdx_id("0bsd"), Some("0BSD"));
        assert_eq!(spdx_id("not-a-licence"), None);
    }

    #[test]
    fn dep5_short_names_map_to_spdx() {
        assert_eq!(dep5_short_name("GPL-2+"), spdx("GPL-2.0-or-later"));
        assert_eq!(dep5_short_name("GPL-2"), spdx("GPL-2.0-only"));
        assert_eq!(dep5_short_name("LGPL-2.1+"), spdx("LGPL-2.1-or-later"));
        assert_eq!(dep5_short_name("GFDL-1.3+"), spdx("GFDL-1.3-or-later"));
        assert_eq!(dep5_short_name("Expat"), spdx("MIT"));
        assert_eq!(dep5_short_name("BSD-3-clause"), spdx("BSD-3-Clause"));
        assert_eq!(dep5_short_name("Apache-2"), spdx("Apache-2.0"));
        assert_eq!(
            dep5_short_name("public-domain"),
            License::Named("public-domain".to_owned())
        );
        assert_eq!(dep5_short_name("GPL"), License::Named("GPL".to_owned()));
        assert_eq!(
            from_dep5_field("GPL-2+ or Artistic-2.0, and BSD-3-clause"),
            vec![
                spdx("GPL-2.0-or-later"),
                spdx("Artistic-2.0"),
                spdx("BSD-3-Clause")
            ]
        );
        assert_eq!(
            from_dep5_field("GPL-2+ with OpenSSL exception"),
            vec![License::Named("GPL-2+ with OpenSSL exception".to_owned())]
        );
    }

    #[test]
    fn declared_licences() {
        assert_eq!(from_declared("MIT"), Some(spdx("MIT")));
        assert_eq!(from_declared("(MIT)"), Some(spdx("MIT")));
        assert_eq!(
            from_declared("Apache License 2.0"),
            Some(spdx("Apache-2.0"))
        );
        assert_eq!(
            from_declared("GPL-2.0-or-later"),
            Some(spdx("GPL-2.0-or-later"))
        );
        assert_eq!(
            from_declared("(mit or apache-2.0)"),
            Some(License::Expression("(MIT OR Apache-2.0)".to_owned()))
        );
        assert_eq!(
            from_declared("GPL-2.0-only WITH Classpath-exception-2.0"),
            Some(License::Expression(
                "GPL-2.0-only WITH Classpath-exception-2.0".to_owned()
            ))
        );
        assert_eq!(
            from_declared("Some Custom Licence"),
            Some(License::Named("Some Custom Licence".to_owned()))
        );
        assert_eq!(from_declared("UNKNOWN"), None);
        assert_eq!(from_declared("  "), None);
    }

    #[test]
    fn classifiers() {
        assert_eq!(
            from_classifier("License :: OSI Approved :: MIT License"),
            Some(spdx("MIT"))
        );
        assert_eq!(
            from_classifier("License :: OSI Approved :: BSD License"),
            Some(License::Named("BSD License".to_owned()))
        );
        assert_eq!(from_classifier("License :: OSI Approved"), None);
        assert_eq!(from_classifier("Programming Language :: Python"), None);
    }
}
