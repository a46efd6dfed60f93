//! Image references, parsed and normalised exactly as Docker does.
//!
//! Grammar (Docker's `distribution/reference`):
//!
//! ```text
//! reference   := name [ ":" tag ] [ "@" digest ]
//! name        := [ domain "/" ] path-component ( "/" path-component )*
//! domain      := host [ ":" port ] ; host is a DNS name or "[" IPv6 "]"
//! path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```
//!
//! Normalisation: a first component is a registry only when it contains `.` or `:`,
//! is `localhost`, or has an uppercase letter; otherwise the registry is `docker.io`,
//! and a single-component Docker Hub name gets the `library/` prefix. `index.docker.io`
//! is the same registry as `docker.io`. A reference with neither tag nor digest gets
//! the tag `latest`. A reference with both keeps both; the digest is what is fetched
//! ([`Reference::manifest_reference`]) and the tag is informational.
//!
//! [`Display`](fmt::Display) prints the familiar form (`python:latest`,
//! `ghcr.io/o/i:1`); [`Reference::full_name`] and [`Reference::canonical`] give the
//! fully-qualified one. Errors are [`ReferenceError`], each naming the input and what
//! is wrong with it.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestAlgorithm};

/// Docker Hub's canonical registry name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LENGTH: usize = 255;
const MAX_TAG_LENGTH: usize = 128;

/// Why a reference string was rejected. Every variant names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input was empty.
    #[error("invalid reference format: empty reference")]
    Empty,
    /// The repository path had uppercase letters.
    #[error("invalid reference format {input:?}: repository name ({repository}) must be lowercase")]
    UppercaseRepository {
        /// The whole input.
        input: String,
        /// The repository path as written.
        repository: String,
    },
    /// The name was a 64-character hex string, which Docker reserves for image IDs.
    #[error("invalid repository name ({input}): cannot specify 64-byte hexadecimal strings")]
    HexName {
        /// The whole input.
        input: String,
    },
    /// The registry part was not a valid host[:port].
    #[error("invalid reference format {input:?}: invalid registry host {registry:?}")]
    InvalidRegistry {
        /// The whole input.
        input: String,
        /// The registry part.
        registry: String,
    },
    /// A path component broke the repository grammar.
    #[error(
        "invalid reference format {input:?}: invalid repository path component {component:?} \
         (allowed: lowercase letters and digits, separated by '.', '_', '__' or '-')"
    )]
    InvalidPathComponent {
        /// The whole input.
        input: String,
        /// The offending component (may be empty for `a//b`).
        component: String,
    },
    /// The fully qualified name was longer than 255 characters.
    #[error(
        "invalid reference format {input:?}: repository name must not be longer than 255 characters (it has {length})"
    )]
    NameTooLong {
        /// The whole input.
        input: String,
        /// The length of the qualified name.
        length: usize,
    },
    /// The tag contained `+`, which is common in SemVer build metadata but not allowed.
    #[error(
        "invalid tag {tag:?} in {input:?}: '+' is not allowed in a tag (allowed: letters, digits, '_', '.', '-'); use '-' instead, e.g. {suggestion:?}"
    )]
    PlusInTag {
        /// The whole input.
        input: String,
        /// The tag as written.
        tag: String,
        /// The tag with `+` replaced by `-`.
        suggestion: String,
    },
    /// The tag was longer than 128 characters.
    #[error(
        "invalid tag in {input:?}: a tag must not be longer than 128 characters (it has {length})"
    )]
    TagTooLong {
        /// The whole input.
        input: String,
        /// The tag's length.
        length: usize,
    },
    /// The tag had a character outside `[A-Za-z0-9_.-]` or started with `.` or `-`.
    #[error(
        "invalid tag {tag:?} in {input:?}: a tag starts with a letter, digit or '_' and continues with letters, digits, '_', '.' or '-'"
    )]
    InvalidTag {
        /// The whole input.
        input: String,
        /// The tag as written.
        tag: String,
    },
    /// The digest part was malformed or used an unknown algorithm.
    #[error("invalid digest {digest:?} in {input:?}: {reason}")]
    InvalidDigest {
        /// The whole input.
        input: String,
        /// The digest part.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// A tag or digest was given where only a repository name is allowed.
    #[error("invalid repository name {input:?}: a tag or digest is not allowed here")]
    UnexpectedTagOrDigest {
        /// The whole input.
        input: String,
    },
}

/// A normalised image reference: registry, repository path, optional tag and digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference as `docker pull` does; with neither tag nor
    /// digest, the tag is `latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let mut reference = parse_any(input)?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(reference)
    }

    /// Parses a repository name alone (no tag, no digest), e.g. a mount source.
    pub fn parse_repository(input: &str) -> Result<Reference, ReferenceError> {
        let reference = parse_any(input)?;
        if reference.tag.is_some() || reference.digest.is_some() {
            return Err(ReferenceError::UnexpectedTagOrDigest {
                input: input.to_owned(),
            });
        }
        Ok(reference)
    }

    /// A reference from already-validated parts (validated again here).
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        let mut text = format!("{registry}/{repository}");
        if let Some(tag) = tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &digest {
            text.push('@');
            text.push_str(digest.as_ref());
        }
        parse_any(&text)
    }

    /// The registry as written in references (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) the registry API is served from: `registry-1.docker.io`
    /// for Docker Hub, the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The repository path (`library/python`, `owner/img`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest pin, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put in `/v2/<name>/manifests/<reference>`: the digest when pinned, else
    /// the tag (`latest` when neither is known).
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// `registry/repository` (`docker.io/library/python`).
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The fully qualified form with tag and digest (`docker.io/library/python:latest`).
    pub fn canonical(&self) -> String {
        let mut text = self.full_name();
        self.push_suffix(&mut text);
        text
    }

    /// The familiar name without tag or digest (`python`, `ghcr.io/o/i`).
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            self.full_name()
        }
    }

    /// The same repository with this tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        let mut reference = self.clone();
        validate_tag(&format!("{}:{tag}", self.full_name()), tag)?;
        reference.tag = Some(tag.to_owned());
        reference.digest = None;
        Ok(reference)
    }

    /// The same repository pinned to this digest (the tag is dropped).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository with no tag and no digest.
    pub fn repository_only(&self) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: None,
        }
    }

    /// True when `other` names a repository on the same registry.
    pub fn same_registry(&self, other: &Reference) -> bool {
        self.registry == other.registry
    }

    fn push_suffix(&self, text: &mut String) {
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest.as_ref());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.familiar_name();
        self.push_suffix(&mut text);
        f.write_str(&text)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Reference::parse(input)
    }
}

/// The API host for a registry name: Docker Hub's names map to `registry-1.docker.io`.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB || registry == LEGACY_DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

/// Normalises a registry name as written by users (`https://index.docker.io/v1/`,
/// `docker.io`, `ghcr.io/`) to the form used in references (`docker.io`, `ghcr.io`).
pub fn normalize_registry(server: &str) -> String {
    let without_scheme = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        LEGACY_DOCKER_HUB | DOCKER_HUB_API_HOST | DOCKER_HUB => DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

fn parse_any(input: &str) -> Result<Reference, ReferenceError> {
    if input.is_empty() {
        return Err(ReferenceError::Empty);
    }
    let (name_and_tag, digest_text) = match input.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (input, None),
    };
    let digest = digest_text
        .map(|text| parse_reference_digest(input, text))
        .transpose()?;

    let last_slash = name_and_tag.rfind('/');
    let (name, tag) = match name_and_tag.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
        }
        _ => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        validate_tag(input, tag)?;
    }
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReferenceError::HexName {
            input: input.to_owned(),
        });
    }

    let (registry, repository) = split_registry(name);
    if repository.to_lowercase() != repository {
        return Err(ReferenceError::UppercaseRepository {
            input: input.to_owned(),
            repository: repository.clone(),
        });
    }
    if !is_valid_domain(&registry) {
        return Err(ReferenceError::InvalidRegistry {
            input: input.to_owned(),
            registry,
        });
    }
    for component in repository.split('/') {
        if !is_valid_path_component(component) {
            return Err(ReferenceError::InvalidPathComponent {
                input: input.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    let length = registry.len() + 1 + repository.len();
    if length > MAX_NAME_LENGTH {
        return Err(ReferenceError::NameTooLong {
            input: input.to_owned(),
            length,
        });
    }
    Ok(Reference {
        registry,
        repository,
        tag: tag.map(str::to_owned),
        digest,
    })
}

/// Docker's `splitDockerDomain`.
fn split_registry(name: &str) -> (String, String) {
    let (mut registry, mut repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    if registry == LEGACY_DOCKER_HUB {
        registry = DOCKER_HUB.to_owned();
    }
    if registry == DOCKER_HUB && !repository.contains('/') {
        repository = format!("{OFFICIAL_REPO_PREFIX}{repository}");
    }
    (registry, repository)
}

fn parse_reference_digest(input: &str, text: &str) -> Result<Digest, ReferenceError> {
    let invalid = |reason: String| ReferenceError::InvalidDigest {
        input: input.to_owned(),
        digest: text.to_owned(),
        reason,
    };
    let digest: Digest = text.parse().map_err(|e: oci_spec::OciSpecError| {
        invalid(format!(
            "{e} (expected e.g. sha256:<64 lowercase hex digits>)"
        ))
    })?;
    match digest.algorithm() {
        DigestAlgorithm::Sha256 | DigestAlgorithm::Sha384 | DigestAlgorithm::Sha512 => Ok(digest),
        other => Err(invalid(format!(
            "unsupported digest algorithm {other} (supported: sha256, sha384, sha512)"
        ))),
    }
}

fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    if tag.len() > MAX_TAG_LENGTH {
        return Err(ReferenceError::TagTooLong {
            input: input.to_owned(),
            length: tag.len(),
        });
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let valid = !bytes.is_empty()
        && is_word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| is_word(b) || b == b'.' || b == b'-');
    if valid {
        return Ok(());
    }
    if tag.contains('+') {
        let suggestion = tag.replace('+', "-");
        if validate_tag(input, &suggestion).is_ok() {
            return Err(ReferenceError::PlusInTag {
                input: input.to_owned(),
                tag: tag.to_owned(),
                suggestion,
            });
        }
    }
    Err(ReferenceError::InvalidTag {
        input: input.to_owned(),
        tag: tag.to_owned(),
    })
}

fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // [IPv6]:port
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if domain.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut index = 0;
    while index < bytes.len() {
        if alnum(bytes[index]) {
            index += 1;
            continue;
        }
        // A separator: '.', '_', '__', or a run of '-'.
        let start = index;
        match bytes[index] {
            b'.' => index += 1,
            b'_' => {
                index += 1;
                if index < bytes.len() && bytes[index] == b'_' {
                    index += 1;
                }
            }
            b'-' => {
                while index < bytes.len() && bytes[index] == b'-' {
                    index += 1;
                }
            }
            _ => return false,
        }
        if index == start || index >= bytes.len() || !alnum(bytes[index]) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    fn canonical(input: &str) -> String {
        Reference::parse(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .canonical()
    }

    #[test]
    fn docker_hub_names_normalise() {
        assert_eq!(canonical("python"), "docker.io/library/python:latest");
        assert_eq!(canonical("python:3.12"), "docker.io/library/python:3.12");
        assert_eq!(canonical("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            canonical("index.docker.io/python"),
            "docker.io/library/python:latest"
        );
        assert_eq!(
            canonical("docker.io/library/python:3"),
            "docker.io/library/python:3"
        );
        assert_eq!(canonical("test_com"), "docker.io/library/test_com:latest");
        assert_eq!(canonical("test.com:tag"), "docker.io/library/test.com:tag");
        assert_eq!(
            canonical("test.com:5000"),
            "docker.io/library/test.com:5000"
        );
        assert_eq!(
            canonical("foo_bar.com:8080"),
            "docker.io/library/foo_bar.com:8080"
        );
    }

    #[test]
    fn registries_are_recognised() {
        let reference = Reference::parse(&format!("localhost:5000/a/b@sha256:{HEX}")).unwrap();
        assert_eq!(reference.registry(), "localhost:5000");
        assert_eq!(reference.repository(), "a/b");
        assert_eq!(reference.tag(), None);
        assert_eq!(reference.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(canonical("localhost/x"), "localhost/x:latest");
        assert_eq!(canonical("test:5000/repo:tag"), "test:5000/repo:tag");
        assert_eq!(
            canonical("[fc00::1]:5000/repo"),
            "[fc00::1]:5000/repo:latest"
        );
        assert_eq!(canonical("Foo/bar"), "Foo/bar:latest");
        assert_eq!(
            canonical("sub-dom1.foo.com/bar/baz/quux"),
            "sub-dom1.foo.com/bar/baz/quux:latest"
        );
        assert_eq!(
            canonical("xn--n3h.com/myimage:xn--n3h.com"),
            "xn--n3h.com/myimage:xn--n3h.com"
        );
        assert_eq!(
            canonical("lowercase:Uppercase"),
            "docker.io/library/lowercase:Uppercase"
        );
    }

    #[test]
    fn tag_and_digest_together_fetch_the_digest() {
        let reference = Reference::parse(&format!("ghcr.io/o/i:1.0@sha256:{HEX}")).unwrap();
        assert_eq!(reference.tag(), Some("1.0"));
        assert_eq!(reference.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(
            reference.to_string(),
            format!("ghcr.io/o/i:1.0@sha256:{HEX}")
        );
    }

    #[test]
    fn display_is_the_familiar_form() {
        assert_eq!(
            Reference::parse("python").unwrap().to_string(),
            "python:latest"
        );
        assert_eq!(
            Reference::parse("docker.io/user/app:1")
                .unwrap()
                .to_string(),
            "user/app:1"
        );
        assert_eq!(
            Reference::parse("docker.io/library/a/b")
                .unwrap()
                .to_string(),
            "library/a/b:latest"
        );
        assert_eq!(
            Reference::parse("ghcr.io/owner/img:1.2.3")
                .unwrap()
                .to_string(),
            "ghcr.io/owner/img:1.2.3"
        );
        assert_eq!(
            Reference::parse("python").unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn plus_in_tag_is_rejected_with_a_suggestion() {
        let error = Reference::parse("ghcr.io/owner/img:1.2.3+sha.abc").unwrap_err();
        assert!(
            matches!(error, ReferenceError::PlusInTag { ref suggestion, .. } if suggestion == "1.2.3-sha.abc")
        );
        let message = error.to_string();
        assert!(message.contains("'+' is not allowed"), "{message}");
        assert!(message.contains("1.2.3-sha.abc"), "{message}");
    }

    #[test]
    fn bad_references_give_clear_errors() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("Uppercase:tag"),
            Err(ReferenceError::UppercaseRepository { .. })
        ));
        assert!(matches!(
            Reference::parse("test:5000/Uppercase/lowercase:tag"),
            Err(ReferenceError::UppercaseRepository { .. })
        ));
        assert!(matches!(
            Reference::parse("docker.io/Python"),
            Err(ReferenceError::UppercaseRepository { .. })
        ));
        let long_tag = format!("repo:{}", "a".repeat(129));
        assert!(matches!(
            Reference::parse(&long_tag),
            Err(ReferenceError::TagTooLong { length: 129, .. })
        ));
        assert!(Reference::parse(&format!("repo:{}", "a".repeat(128))).is_ok());
        assert!(matches!(
            Reference::parse("repo@sha256:abc"),
            Err(ReferenceError::InvalidDigest { .. })
        ));
        assert!(matches!(
            Reference::parse(&format!("repo@md5:{HEX}")),
            Err(ReferenceError::InvalidDigest { .. })
        ));
        assert!(matches!(
            Reference::parse(HEX),
            Err(ReferenceError::HexName { .. })
        ));
        assert!(matches!(
            Reference::parse("aa/asdf$$^/aa"),
            Err(ReferenceError::InvalidPathComponent { .. })
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::InvalidPathComponent { .. })
        ));
        assert!(matches!(
            Reference::parse(":justtag"),
            Err(ReferenceError::InvalidPathComponent { .. })
        ));
        assert!(Reference::parse(&format!("@sha256:{HEX}")).is_err());
        assert!(matches!(
            Reference::parse("repo:-bad"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        assert!(matches!(
            Reference::parse(&format!("example.com/{}", "a".repeat(250))),
            Err(ReferenceError::NameTooLong { .. })
        ));
        assert!(matches!(
            Reference::parse("bad_host.com:x/repo"),
            Err(ReferenceError::InvalidRegistry { .. })
        ));
    }

    #[test]
    fn path_component_separators_follow_the_grammar() {
        for good in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "a1.b2_c3__d4-e5"] {
            assert!(is_valid_path_component(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a___b", "a..b", "a._b", "A", "a b"] {
            assert!(!is_valid_path_component(bad), "{bad}");
        }
    }

    #[test]
    fn repository_only_names_refuse_tags() {
        assert_eq!(
            Reference::parse_repository("ghcr.io/o/base")
                .unwrap()
                .full_name(),
            "ghcr.io/o/base"
        );
        assert!(Reference::parse_repository("ghcr.io/o/base:1").is_err());
    }

    #[test]
    fn registry_names_from_config_files_normalise() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("ghcr.io"), "ghcr.io");
        assert_eq!(normalize_registry("https://ghcr.io/"), "ghcr.io");
        assert_eq!(
            normalize_registry("http://127.0.0.1:5000"),
            "127.0.0.1:5000"
        );
    }
}
