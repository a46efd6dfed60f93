//! Package URLs (<https://github.com/package-url/purl-spec>) in canonical form.
//!
//! Contract: [`Purl::to_string`] gives the canonical text: the type lowercased,
//! namespace segments, name and version percent-encoded (everything except
//! ASCII letters, digits and `.-_~`, so `+` is `%2B`, `:` is `%3A` and `@` is
//! `%40`), qualifiers sorted by key with empty values left out, qualifier values
//! encoded the same way except that `/` stays literal (as in the spec's
//! `repository_url=docker.io/library/debian`). Type-specific name rules are
//! applied by the constructors of the ecosystems that have them: PyPI names are
//! normalised per PEP 503, `deb`, `apk` and `oci` names are lowercased.
//!
//! The `purl` crate was not used: a few dozen lines give exactly the encoding
//! above, with no extra dependency.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// A package URL, built field by field and printed canonically with `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    kind: String,
    namespace: Vec<String>,
    name: String,
    version: Option<String>,
    qualifiers: BTreeMap<String, String>,
}

impl Purl {
    /// A purl of `kind` (e.g. `deb`, `npm`) naming `name`, without namespace or version.
    pub fn new(kind: &str, name: &str) -> Self {
        Self {
            kind: kind.to_ascii_lowercase(),
            namespace: Vec::new(),
            name: name.to_owned(),
            version: None,
            qualifiers: BTreeMap::new(),
        }
    }

    /// `pkg:deb/<distro id>/<name>@<version>?arch=…&distro=…`.
    pub fn deb(distro_id: &str, name: &str, version: &str) -> Self {
        Self::new("deb", &name.to_ascii_lowercase())
            .with_namespace(&distro_id.to_ascii_lowercase())
            .with_version(version)
    }

    /// `pkg:apk/<distro id>/<name>@<version>?arch=…&distro=…`.
    pub fn apk(distro_id: &str, name: &str, version: &str) -> Self {
        Self::new("apk", &name.to_ascii_lowercase())
            .with_namespace(&distro_id.to_ascii_lowercase())
            .with_version(version)
    }

    /// `pkg:pypi/<PEP 503 normalised name>@<version>`.
    pub fn pypi(name: &str, version: &str) -> Self {
        Self::new("pypi", &pep503_normalise(name)).with_version(version)
    }

    /// `pkg:npm/<scope>/<name>@<version>`; a scoped name `@scope/name` puts `@scope`
    /// in the namespace (printed `%40scope`).
    pub fn npm(name: &str, version: &str) -> Self {
        match name.split_once('/') {
            Some((scope, bare)) if scope.starts_with('@') => Self::new("npm", bare)
                .with_namespace(scope)
                .with_version(version),
            _ => Self::new("npm", name).with_version(version),
        }
    }

    /// `pkg:golang/<module path>@<version>`: the last path element is the name,
    /// the rest the namespace. An empty version or Go's `(devel)` is left out.
    pub fn golang(module: &str, version: &str) -> Self {
        let purl = match module.rsplit_once('/') {
            Some((namespace, name)) => Self::new("golang", name).with_namespace(namespace),
            None => Self::new("golang", module),
        };
        if version.is_empty() || version == "(devel)" {
            purl
        } else {
            purl.with_version(version)
        }
    }

    /// `pkg:cargo/<name>@<version>`.
    pub fn cargo(name: &str, version: &str) -> Self {
        Self::new("cargo", name).with_version(version)
    }

    /// `pkg:oci/<name>@<digest>?repository_url=<repository>&tag=<tag>` where
    /// `name` is the last element of `repository`, lowercased.
    pub fn oci(repository: &str, digest: &str, tag: Option<&str>) -> Self {
        let name = repository.rsplit('/').next().unwrap_or(repository);
        let mut purl = Self::new("oci", &name.to_ascii_lowercase())
            .with_version(digest)
            .with_qualifier("repository_url", repository);
        if let Some(tag) = tag {
            purl = purl.with_qualifier("tag", tag);
        }
        purl
    }

    /// Sets the namespace; `/` separates its segments.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_owned)
            .collect();
        self
    }

    /// Sets the version (an empty version is left out).
    pub fn with_version(mut self, version: &str) -> Self {
        self.version = (!version.is_empty()).then(|| version.to_owned());
        self
    }

    /// Adds a qualifier (keys are lowercased; an empty value is left out).
    pub fn with_qualifier(mut self, key: &str, value: &str) -> Self {
        if !value.is_empty() {
            self.qualifiers
                .insert(key.to_ascii_lowercase(), value.to_owned());
        }
        self
    }
}

impl fmt::Display for Purl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(64);
        text.push_str("pkg:");
        text.push_str(&self.kind);
        text.push('/');
        for segment in &self.namespace {
            percent_encode(&mut text, segment, false);
            text.push('/');
        }
        percent_encode(&mut text, &self.name, false);
        if let Some(version) = &self.version {
            text.push('@');
            percent_encode(&mut text, version, false);
        }
        for (index, (key, value)) in self.qualifiers.iter().enumerate() {
            text.push(if index == 0 { '?' } else { '&' });
            text.push_str(key);
            text.push('=');
            percent_encode(&mut text, value, true);
        }
        f.write_str(&text)
    }
}

/// Appends `value` percent-encoded: ASCII letters, digits and `.-_~` stay, and `/`
/// when `keep_slash` is set; every other byte becomes `%XX` (uppercase hex).
fn percent_encode(out: &mut String, value: &str, keep_slash: bool) {
    for byte in value.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~');
        if unreserved || (keep_slash && byte == b'/') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// PEP 503 name normalisation: lowercase, and every run of `-`, `_` and `.` becomes one `-`.
pub fn pep503_normalise(name: &str) -> String {
    let mut normalised = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for character in name.trim().chars() {
        if matches!(character, '-' | '_' | '.') {
            if !in_separator_run {
                normalised.push('-');
            }
            in_separator_run = true;
        } else {
            normalised.push(character.to_ascii_lowercase());
            in_separator_run = false;
        }
    }
    normalised
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_version_plus_and_epoch_are_encoded() {
        let purl = Purl::deb("debian", "curl", "7.88.1-10+deb12u5")
            .with_qualifier("arch", "amd64")
            .with_qualifier("distro", "debian-12");
        assert_eq!(
            purl.to_string(),
            "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u5?arch=amd64&distro=debian-12"
        );
        let epoch = Purl::deb("debian", "libfoo", "1:2.3~rc1-4")
            .with_qualifier("distro", "debian-12")
            .with_qualifier("arch", "all");
        assert_eq!(
            epoch.to_string(),
            "pkg:deb/debian/libfoo@1%3A2.3~rc1-4?arch=all&distro=debian-12"
        );
    }

    #[test]
    fn pypi_names_are_normalised() {
        assert_eq!(
            Purl::pypi("FastAPI", "0.115.0").to_string(),
            "pkg:pypi/fastapi@0.115.0"
        );
        assert_eq!(
            Purl::pypi("zope.interface", "6.0").to_string(),
            "pkg:pypi/zope-interface@6.0"
        );
        assert_eq!(
            Purl::pypi("Typing__Extensions", "4.12.2").to_string(),
            "pkg:pypi/typing-extensions@4.12.2"
        );
        assert_eq!(pep503_normalise("a-_.b"), "a-b");
    }

    #[test]
    fn npm_scopes_go_to_the_namespace() {
        assert_eq!(
            Purl::npm("@scope/name", "1.0.0").to_string(),
            "pkg:npm/%40scope/name@1.0.0"
        );
        assert_eq!(
            Purl::npm("left-pad", "1.3.0").to_string(),
            "pkg:npm/left-pad@1.3.0"
        );
    }

    #[test]
    fn golang_cargo_apk_oci() {
        assert_eq!(
            Purl::golang("github.com/gorilla/mux", "v1.8.1").to_string(),
            "pkg:golang/github.com/gorilla/mux@v1.8.1"
        );
        assert_eq!(
            Purl::golang(
                "golang.org/x/sys",
                "v0.0.0-20220722155257-8c9f86f7a55f+incompatible"
            )
            .to_string(),
            "pkg:golang/golang.org/x/sys@v0.0.0-20220722155257-8c9f86f7a55f%2Bincompatible"
        );
        assert_eq!(
            Purl::golang("example.com/hello", "(devel)").to_string(),
            "pkg:golang/example.com/hello"
        );
        assert_eq!(
            Purl::cargo("serde_json", "1.0.128").to_string(),
            "pkg:cargo/serde_json@1.0.128"
        );
        assert_eq!(
            Purl::apk("alpine", "musl", "1.2.4-r2")
                .with_qualifier("distro", "alpine-3.19.1")
                .with_qualifier("arch", "x86_64")
                .to_string(),
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1"
        );
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            Purl::oci("ghcr.io/Acme/App", &digest, Some("v1.0")).to_string(),
            format!(
                "pkg:oci/app@sha256%3A{}?repository_url=ghcr.io/Acme/App&tag=v1.0",
                "ab".repeat(32)
            )
        );
        assert_eq!(
            Purl::oci("localhost:5000/app", &digest, None).to_string(),
            format!(
                "pkg:oci/app@sha256%3A{}?repository_url=localhost%3A5000/app",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn reserved_characters_in_names_are_encoded() {
        assert_eq!(
            Purl::new("generic", "a b/c?d").to_string(),
            "pkg:generic/a%20b%2Fc%3Fd"
        );
        assert_eq!(
            Purl::new("generic", "x")
                .with_qualifier("k", "")
                .to_string(),
            "pkg:generic/x"
        );
    }
}
