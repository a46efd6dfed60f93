//! Rolling a whole project back to a lock file (`kiln compose rollback --lock FILE`).
//!
//! Contract: a lock file (written by `kiln compose build --lock`) pins every
//! service's `image:` as `name:tag@sha256:…`. [`plan`] reads the registries only:
//!
//! - a service the project **builds** (it has `build:`) gets every one of its tags
//!   moved back to the pinned digest with [`crate::rollback`]: the `image:` tag, the
//!   `build.tags`, and with `x-kiln.tag_scheme: semver-sha` the version tags
//!   (`1.2.0`, `1.2`, `1`; the `1.2.0-sha.<commit>` tag names one commit, so it never
//!   needs moving). Only manifests move, no layer;
//! - a service that only **uses** an image (`postgres:16`) is not kiln's to move: when
//!   its tag still points to the pinned digest it is reported as
//!   [`ServiceAction::Unchanged`]; when it has moved, the rollback is refused
//!   ([`Error::PulledImageMoved`]) — deploy with the digest instead.
//!
//! Every tag is checked before any is moved, so a refused service leaves the
//! registries untouched. [`apply`] then moves the tags.
//!
//! Errors: [`Error::NotPinned`] (a service whose `image:` has no digest: not a lock
//! file), [`Error::Reference`], [`Error::Rollback`] (a tag that cannot move, e.g. the
//! pinned manifest is not in that repository), [`Error::PulledImageMoved`],
//! [`Error::Resolve`].

use kiln_registry::{Digest, Reference, RegistryClient};

use super::Error;
use crate::frontend::compose::{Project, Service, TagScheme};
use crate::rollback::{self, Move};
use crate::tags;

/// What a rollback does for one service.
#[derive(Debug, Clone)]
pub enum ServiceAction {
    /// A built service: its tags, each moved to the pinned manifest (or already there).
    Move(Vec<Move>),
    /// An image the project uses but does not build; its tag points to the pinned
    /// digest already.
    Unchanged { reference: String, digest: Digest },
}

/// One service of the lock file and what rolling it back takes.
#[derive(Debug, Clone)]
pub struct ServiceRollback {
    pub service: String,
    /// The pinned `image:` as written in the lock file.
    pub pinned: String,
    pub action: ServiceAction,
}

/// Checks every service of the lock `project` against its registry (see the module
/// docs); writes nothing.
pub async fn plan(
    project: &Project,
    client: &RegistryClient,
) -> Result<Vec<ServiceRollback>, Error> {
    let mut out = Vec::new();
    for (name, service) in &project.services {
        let Some(image) = &service.image else {
            continue;
        };
        let pinned = image.value.clone();
        let reference = Reference::parse(&pinned).map_err(|source| Error::Reference {
            service: name.clone(),
            reference: pinned.clone(),
            source: Box::new(source),
        })?;
        let Some(digest) = reference.digest().cloned() else {
            return Err(Error::NotPinned {
                service: name.clone(),
                image: pinned,
            });
        };
        let action = if service.build.is_some() {
            let mut moves = Vec::new();
            for tag in service_tags(name, service, &reference)? {
                let planned = rollback::plan(client, &tag, digest.as_ref())
                    .await
                    .map_err(|source| Error::Rollback {
                        service: name.clone(),
                        source: Box::new(source),
                    })?;
                moves.push(planned);
            }
            ServiceAction::Move(moves)
        } else {
            let tag = tag_of(&reference);
            let current = client
                .head_manifest(&tag)
                .await
                .map_err(|source| Error::Resolve {
                    service: name.clone(),
                    reference: tag.to_string(),
                    source: Box::new(source),
                })?;
            if current.digest() != &digest {
                return Err(Error::PulledImageMoved {
                    service: name.clone(),
                    reference: tag.to_string(),
                    current: current.digest().to_string(),
                    pinned: digest.to_string(),
                });
            }
            ServiceAction::Unchanged {
                reference: tag.to_string(),
                digest,
            }
        };
        out.push(ServiceRollback {
            service: name.clone(),
            pinned,
            action,
        });
    }
    Ok(out)
}

/// Moves the tags [`plan`] found; returns how many were written (tags already on
/// their target are not).
pub async fn apply(client: &RegistryClient, planned: &[ServiceRollback]) -> Result<usize, Error> {
    let mut written = 0;
    for service in planned {
        let ServiceAction::Move(moves) = &service.action else {
            continue;
        };
        for planned_move in moves {
            if rollback::apply(client, planned_move)
                .await
                .map_err(|source| Error::Rollback {
                    service: service.service.clone(),
                    source: Box::new(source),
                })?
            {
                written += 1;
            }
        }
    }
    Ok(written)
}

/// The pinned reference without its digest (`:latest` when it has no tag).
fn tag_of(reference: &Reference) -> Reference {
    reference
        .with_tag(reference.tag().unwrap_or("latest"))
        .expect("a tag from a parsed reference is valid")
}

/// Every tag a build of `service` was pushed under: the `image:` tag, `build.tags`,
/// and the version tags of `x-kiln.tag_scheme`.
fn service_tags(name: &str, service: &Service, image: &Reference) -> Result<Vec<Reference>, Error> {
    let build = service.build.as_ref().expect("callers pass built services");
    let reference_error = |reference: &str| {
        let reference = reference.to_owned();
        move |source| Error::Reference {
            service: name.to_owned(),
            reference,
            source: Box::new(source),
        }
    };
    let mut names: Vec<String> = vec![tag_of(image).to_string()];
    names.extend(build.tags.iter().cloned());
    if let (Some(TagScheme::SemverSha), Some(version)) =
        (build.kiln.tag_scheme, &build.kiln.version)
    {
        let version_tags = tags::version_tags(version).map_err(|source| Error::Release {
            service: name.to_owned(),
            source: Box::new(source),
        })?;
        names = super::plan::with_release_tags(&names, &version_tags);
    }
    let mut references: Vec<Reference> = Vec::new();
    for name in &names {
        let reference = tag_of(&Reference::parse(name).map_err(reference_error(name))?);
        if !references.contains(&reference) {
            references.push(reference);
        }
    }
    Ok(references)
}
