//! Moving a tag back to an earlier manifest on its registry: the logic behind
//! `kiln rollback` (and, per service, a compose rollback).
//!
//! Contract: [`rollback`] fetches the target manifest (by digest, or by another
//! tag of the same repository) with its exact bytes and media type, looks up what
//! the tag points to now (`HEAD`), and `PUT`s the target's bytes under the tag.
//! Nothing is pulled or rebuilt and no blob moves: the manifest's layers are in
//! the repository already, since the target is. With `dry_run` nothing is
//! written.
//!
//! Errors (as [`Failure`]s): a reference with a digest (only tags move), a target
//! in another repository, a target that does not exist, registry errors.

use kiln_registry::{Digest, RawManifest, Reference, RegistryClient};

use crate::commands::Failure;

/// What a rollback did (or, dry, would do).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What the tag pointed to before; `None` when it did not exist.
    pub previous: Option<Digest>,
    /// The manifest it points to now.
    pub target: RawManifest,
    /// Whether the registry was written to (false for a dry run or a tag already
    /// on the target).
    pub moved: bool,
}

/// Where `--to` points: a digest (`sha256:…`), a tag of the same repository
/// (`1.0.0`), or a full reference in the same repository.
pub fn target_reference(reference: &Reference, to: &str) -> Result<Reference, Failure> {
    let target = if to.contains('/') || to.contains('@') {
        Reference::parse(to).map_err(|e| Failure::usage(format!("--to {to}: {e}")))?
    } else if to.contains(':') {
        let digest = kiln_registry::digest::parse_digest(to)
            .map_err(|e| Failure::usage(format!("--to {to}: {e}")))?;
        reference.with_digest(digest)
    } else {
        reference.with_tag(to).map_err(|e| {
            Failure::usage(format!("--to {to}: {e}"))
                .with_hint("give a tag of the same repository (1.0.0) or a digest (sha256:…)")
        })?
    };
    if target.registry() != reference.registry() || target.repository() != reference.repository() {
        return Err(Failure::usage(format!(
            "--to {to} is in {}, not in {}",
            target.full_name(),
            reference.full_name()
        ))
        .with_hint("rollback moves a tag within one repository; to copy across repositories use kiln tag SOURCE NEW_REF"));
    }
    Ok(target)
}

/// Points `reference`'s tag at `to` (see the module docs).
pub async fn rollback(
    client: &RegistryClient,
    reference: &Reference,
    to: &str,
    dry_run: bool,
) -> Result<Outcome, Failure> {
    if reference.digest().is_some() {
        return Err(Failure::usage(format!(
            "{reference}: a reference with a digest cannot be moved"
        ))
        .with_hint("name the tag to move, e.g. registry/app:stable"));
    }
    let Some(tag) = reference.tag() else {
        return Err(Failure::usage(format!("{reference}: no tag to move")));
    };
    let target_ref = target_reference(reference, to)?;
    let target = match client.get_manifest(&target_ref).await {
        Ok(manifest) => manifest,
        Err(kiln_registry::Error::NotFound { .. }) => {
            return Err(Failure::new(format!(
                "{to} does not exist in {}: nothing to roll back to",
                reference.full_name()
            ))
            .with_hint("check the tag or digest (kiln inspect REF shows what a tag points to)"));
        }
        Err(error) => return Err(Failure::from_error(&error)),
    };
    let previous = match client.head_manifest(reference).await {
        Ok(descriptor) => Some(descriptor.digest().clone()),
        Err(kiln_registry::Error::NotFound { .. }) => None,
        Err(error) => return Err(Failure::from_error(&error)),
    };
    let moved = !dry_run && previous.as_ref() != Some(&target.digest);
    if moved {
        client
            .push_manifest(reference, &target, &[tag.to_owned()])
            .await
            .map_err(|e| Failure::from_error(&e))?;
    }
    Ok(Outcome {
        previous,
        target,
        moved,
    })
}
