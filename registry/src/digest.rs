//! Content digests: parsing (re-using `oci-spec`'s validated [`Digest`]) and streaming
//! computation.
//!
//! Contract: [`DigestHasher`] computes a digest of the bytes fed to it with the
//! algorithm of an expected digest, so content pinned with `sha512:` is verified with
//! SHA-512. Only `sha256`, `sha384` and `sha512` can be computed; any other algorithm
//! is refused with [`UnsupportedAlgorithm`] before a byte is fetched.

use std::fmt;

pub use oci_spec::image::{Digest, DigestAlgorithm};

/// A digest algorithm this crate cannot compute (anything but sha256/sha384/sha512).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "digest {digest} uses the unsupported algorithm {algorithm:?} (supported: sha256, sha384, sha512)"
)]
pub struct UnsupportedAlgorithm {
    /// The digest that names the algorithm.
    pub digest: String,
    /// The algorithm name.
    pub algorithm: String,
}

/// Parses a digest string (`sha256:<64 hex>`), with a message naming the input.
pub fn parse_digest(value: &str) -> Result<Digest, InvalidDigest> {
    value.parse::<Digest>().map_err(|source| InvalidDigest {
        value: value.to_owned(),
        reason: source.to_string(),
    })
}

/// A string that is not a valid OCI digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {value:?}: {reason}")]
pub struct InvalidDigest {
    /// The rejected input.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Incremental digest computation with the algorithm of an expected digest.
pub struct DigestHasher {
    algorithm: DigestAlgorithm,
    context: ring::digest::Context,
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestHasher")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl DigestHasher {
    /// A SHA-256 hasher.
    pub fn sha256() -> Self {
        DigestHasher {
            algorithm: DigestAlgorithm::Sha256,
            context: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    /// A hasher using the same algorithm as `expected`.
    pub fn for_digest(expected: &Digest) -> Result<Self, UnsupportedAlgorithm> {
        let ring_algorithm = match expected.algorithm() {
            DigestAlgorithm::Sha256 => &ring::digest::SHA256,
            DigestAlgorithm::Sha384 => &ring::digest::SHA384,
            DigestAlgorithm::Sha512 => &ring::digest::SHA512,
            other => {
                return Err(UnsupportedAlgorithm {
                    digest: expected.to_string(),
                    algorithm: other.to_string(),
                });
            }
        };
        Ok(DigestHasher {
            algorithm: expected.algorithm().clone(),
            context: ring::digest::Context::new(ring_algorithm),
        })
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.context.update(bytes);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let value = format!(
            "{}:{}",
            self.algorithm,
            hex::encode(self.context.finish().as_ref())
        );
        // The value is built from a known algorithm and lowercase hex: always valid.
        value
            .parse()
            .expect("a computed digest is always a valid digest")
    }
}

/// The SHA-256 digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    let mut hasher = DigestHasher::sha256();
    hasher.update(bytes);
    hasher.finish()
}

/// The digest of `bytes` computed with the algorithm of `expected` (to compare with it).
pub fn digest_like(expected: &Digest, bytes: &[u8]) -> Result<Digest, UnsupportedAlgorithm> {
    let mut hasher = DigestHasher::for_digest(expected)?;
    hasher.update(bytes);
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input_is_the_well_known_value() {
        assert_eq!(
            sha256_digest(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn digest_like_uses_the_pinned_algorithm() {
        let pin = parse_digest(&format!("sha512:{}", "0".repeat(128))).unwrap();
        let computed = digest_like(&pin, b"abc").unwrap();
        assert_eq!(computed.algorithm(), &DigestAlgorithm::Sha512);
        assert!(computed.digest().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn bad_digests_are_rejected_with_the_input_named() {
        let error = parse_digest("sha256:abc").unwrap_err();
        assert!(error.to_string().contains("sha256:abc"), "{error}");
        assert!(parse_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        let odd = parse_digest("blake3:abcd").unwrap();
        assert!(DigestHasher::for_digest(&odd).is_err());
    }
}
