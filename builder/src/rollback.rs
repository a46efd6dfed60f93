//! Moving a tag back to an earlier manifest on its registry: the logic behind
//! `kiln rollback` and, for every service of a lock file, `kiln compose rollback`
//! ([`crate::project::rollback`]).
//!
//! Contract: [`plan`] only reads: it fetches the target manifest (by digest, or by
//! another tag of the same repository) with its exact bytes and media type, and
//! looks up what the tag points to now (`HEAD`). [`apply`] then `PUT`s the target's
//! bytes under the tag, unless it is there already. Nothing is pulled or rebuilt and
//! no blob moves: the manifest's layers are in the repository already, since the
//! target is. Planning every tag before moving any lets a caller refuse the whole
//! rollback when one tag cannot move.
//!
//! Errors ([`Error`]): a reference with a digest (only tags move) or without a tag,
//! a `--to` that is neither a digest nor a tag, a target in another repository, a
//! target that does not exist, registry errors.

use kiln_registry::{Digest, RawManifest, Reference, RegistryClient};

/// Errors of a rollback.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{reference}: a reference with a digest cannot be moved")]
    DigestReference { reference: String },
    #[error("{reference}: no tag to move")]
    NoTag { reference: String },
    #[error("--to {to}: {reason}")]
    InvalidTarget { to: String, reason: String },
    #[error("--to {to} is in {target_repository}, not in {repository}")]
    OtherRepository {
        to: String,
        target_repository: String,
        repository: String,
    },
    #[error("{to} does not exist in {repository}: nothing to roll back to")]
    TargetMissing { to: String, repository: String },
    #[error("{reference}")]
    Registry {
        reference: String,
        #[source]
        source: Box<kiln_registry::Error>,
    },
}

impl Error {
    /// Whether the request itself was wrong (a usage error), not the registry's state.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::DigestReference { .. }
                | Error::NoTag { .. }
                | Error::InvalidTarget { .. }
                | Error::OtherRepository { .. }
        )
    }

    /// A line of advice for the user, where one helps.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::DigestReference { .. } | Error::NoTag { .. } => {
                Some("name the tag to move, e.g. registry/app:stable")
            }
            Error::InvalidTarget { .. } => {
                Some("give a tag of the same repository (1.0.0) or a digest (sha256:…)")
            }
            Error::OtherRepository { .. } => Some(
                "rollback moves a tag within one repository; to copy across repositories use kiln tag SOURCE NEW_REF",
            ),
            Error::TargetMissing { .. } => {
                Some("check the tag or digest (kiln inspect REF shows what a tag points to)")
            }
            Error::Registry { .. } => None,
        }
    }
}

/// One tag to move, as [`plan`] found it.
#[derive(Debug, Clone)]
pub struct Move {
    /// The tag to move.
    pub reference: Reference,
    /// What the tag points to now; `None` when it does not exist.
    pub previous: Option<Digest>,
    /// The manifest it is to point to, with its exact bytes.
    pub target: RawManifest,
}

impl Move {
    /// Whether the tag points to the target already.
    pub fn is_noop(&self) -> bool {
        self.previous.as_ref() == Some(&self.target.digest)
    }
}

/// Where `to` points: a digest (`sha256:…`), a tag of the same repository
/// (`1.0.0`), or a full reference in the same repository.
pub fn target_reference(reference: &Reference, to: &str) -> Result<Reference, Error> {
    let invalid = |reason: String| Error::InvalidTarget {
        to: to.to_owned(),
        reason,
    };
    let target = if to.contains('/') || to.contains('@') {
        Reference::parse(to).map_err(|e| invalid(e.to_string()))?
    } else if to.contains(':') {
        let digest = kiln_registry::digest::parse_digest(to).map_err(|e| invalid(e.to_string()))?;
        reference.with_digest(digest)
    } else {
        reference.with_tag(to).map_err(|e| invalid(e.to_string()))?
    };
    if target.registry() != reference.registry() || target.repository() != reference.repository() {
        return Err(Error::OtherRepository {
            to: to.to_owned(),
            target_repository: target.full_name(),
            repository: reference.full_name(),
        });
    }
    Ok(target)
}

/// Finds what moving `reference`'s tag to `to` takes, without writing anything.
pub async fn plan(client: &RegistryClient, reference: &Reference, to: &str) -> Result<Move, Error> {
    if reference.digest().is_some() {
        return Err(Error::DigestReference {
            reference: reference.to_string(),
        });
    }
    if reference.tag().is_none() {
        return Err(Error::NoTag {
            reference: reference.to_string(),
        });
    }
    let target_ref = target_reference(reference, to)?;
    let registry_error = |reference: &Reference| {
        let reference = reference.to_string();
        move |source| Error::Registry {
            reference,
            source: Box::new(source),
        }
    };
    let target = match client.get_manifest(&target_ref).await {
        Ok(manifest) => manifest,
        Err(kiln_registry::Error::NotFound { .. }) => {
            return Err(Error::TargetMissing {
                to: to.to_owned(),
                repository: reference.full_name(),
            });
        }
        Err(error) => return Err(registry_error(&target_ref)(error)),
    };
    let previous = match client.head_manifest(reference).await {
        Ok(descriptor) => Some(descriptor.digest().clone()),
        Err(kiln_registry::Error::NotFound { .. }) => None,
        Err(error) => return Err(registry_error(reference)(error)),
    };
    Ok(Move {
        reference: reference.clone(),
        previous,
        target,
    })
}

/// Points the tag at the target (one manifest `PUT`); returns whether the registry
/// was written to (not when the tag is there already).
pub async fn apply(client: &RegistryClient, planned: &Move) -> Result<bool, Error> {
    if planned.is_noop() {
        return Ok(false);
    }
    let tag = planned
        .reference
        .tag()
        .expect("plan accepts only references with a tag");
    client
        .push_manifest(&planned.reference, &planned.target, &[tag.to_owned()])
        .await
        .map_err(|source| Error::Registry {
            reference: planned.reference.to_string(),
            source: Box::new(source),
        })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_stay_in_the_repository() {
        let reference = Reference::parse("localhost:5000/app:stable").unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            target_reference(&reference, "1.0.0").unwrap().to_string(),
            "localhost:5000/app:1.0.0"
        );
        assert_eq!(
            target_reference(&reference, &digest)
                .unwrap()
                .digest()
                .unwrap()
                .to_string(),
            digest
        );
        let other = target_reference(&reference, "localhost:5000/other:1").unwrap_err();
        assert!(matches!(other, Error::OtherRepository { .. }), "{other}");
        assert!(other.is_usage());
        let bad = target_reference(&reference, "sha256:xyz").unwrap_err();
        assert!(matches!(bad, Error::InvalidTarget { .. }), "{bad}");
    }
}
