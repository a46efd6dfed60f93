//! Building a whole compose project: the build graph, scheduling, and lock pins.
//!
//! The compose frontend ([`crate::frontend::compose`]) says what each service wants;
//! the solver ([`crate::build`]) builds one image. This module sits between them:
//!
//! 1. [`Plan::new`] turns the services to build into [`build::BuildRequest`]s
//!    ([`plan`]): context, Dockerfile, args, target, tags (`image:` first, then
//!    `build.tags`, then with `x-kiln.tag_scheme` each of them under the release
//!    tags), labels, secrets, additional contexts, cache specs, platform, network,
//!    `extra_hosts`, `shm_size`, `ssh`, `x-kiln` outputs and SBOM. A compose key the
//!    engine cannot honour is a located error (`compose.yaml:9:7:
//!    services.api.build.platforms: ...`), never silently dropped. It also reads every Dockerfile to find the graph's edges:
//!    `service:` additional contexts, and `FROM` (or `COPY --from`, `RUN --mount
//!    from=`) naming another service's image. Services the selection needs are added;
//!    a cycle is an [`Error::Cycle`] naming the services.
//! 2. [`build_plan`] ([`schedule`]) builds the plan in dependency order, independent
//!    services in parallel on threads, all in one [`Store`](crate::store::Store). A
//!    failure cancels the other builds (their finished steps stay cached) and comes
//!    back as [`Error::ServiceFailed`] naming the service.
//! 3. [`lock::pins`] gives every active service's `image:` pinned to its digest (built
//!    ones from the build or the store, pulled ones from their registry), for
//!    [`Project::to_yaml_with_pins`](crate::frontend::compose::Project::to_yaml_with_pins).
//! 4. [`rollback`] moves the tags of every built service back to the digests a lock
//!    file pins (manifests only), after checking every tag first.
//!
//! Named contexts (`additional_contexts`: directories, `docker-image://` and
//! `service:`) go to the solver as [`build::BuildRequest::extra_contexts`]; a
//! `service:` context names the other service's image in the store, which is why
//! that service builds first.

pub mod contexts;
pub mod lock;
pub mod plan;
pub mod rollback;
pub mod schedule;

use std::path::PathBuf;

pub use plan::{Plan, PlanOptions, ServicePlan};
pub use schedule::{ScheduleOptions, ServiceBuilt, build_plan};

use crate::build;
use crate::frontend::compose;
use crate::frontend::dockerfile;

/// Errors of building a project.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or validating the compose project, or located problems with its build
    /// keys (unsupported keys, bad values).
    #[error(transparent)]
    Compose(#[from] compose::Error),
    #[error("service {service}: {source}")]
    Dockerfile {
        service: String,
        #[source]
        source: Box<dockerfile::Error>,
    },
    #[error("service {service}: {}: {source}", path.display())]
    Io {
        service: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("services build on each other in a cycle: {}", chain.join(" -> "))]
    Cycle { chain: Vec<String> },
    /// One service's build failed; the others were cancelled.
    #[error("service {service}: {source}")]
    ServiceFailed {
        service: String,
        #[source]
        source: Box<build::Error>,
    },
    #[error("service {service}: writing output {}: {source}", dest.display())]
    Export {
        service: String,
        dest: PathBuf,
        #[source]
        source: Box<crate::export::Error>,
    },
    #[error("service {service}: {source}")]
    Store {
        service: String,
        #[source]
        source: Box<crate::store::Error>,
    },
    #[error(
        "service {service}: image {image} is not in the store; build it first (kiln compose build {service})"
    )]
    NotBuilt { service: String, image: String },
    #[error("service {service}: {reference}: {source}")]
    Reference {
        service: String,
        reference: String,
        #[source]
        source: Box<kiln_registry::ReferenceError>,
    },
    #[error("service {service}: resolving {reference} on its registry: {source}")]
    Resolve {
        service: String,
        reference: String,
        #[source]
        source: Box<kiln_registry::Error>,
    },
    #[error("SOURCE_DATE_EPOCH={value:?} is not a number of seconds")]
    SourceDateEpoch { value: String },
    /// `x-kiln.tag_scheme`: the commit of the service's context could not be read.
    #[error("service {service}: release tags: {source}")]
    Release {
        service: String,
        #[source]
        source: Box<crate::tags::Error>,
    },
    /// Rolling back to a lock file whose `image:` has no digest.
    #[error("service {service}: image {image} is not pinned to a digest")]
    NotPinned { service: String, image: String },
    #[error("service {service}: {source}")]
    Rollback {
        service: String,
        #[source]
        source: Box<crate::rollback::Error>,
    },
    /// Rolling back a service whose image the project does not build, and whose tag
    /// now points elsewhere than the lock file pins.
    #[error(
        "service {service}: {reference} now points to {current}, the lock file pins {pinned}; \
         kiln moves only the tags of images the project builds"
    )]
    PulledImageMoved {
        service: String,
        reference: String,
        current: String,
        pinned: String,
    },
}

impl Error {
    /// A line of advice for the user, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NotPinned { .. } => Some(
                "roll back to a lock file written by kiln compose build --lock FILE".to_owned(),
            ),
            Error::PulledImageMoved {
                reference, pinned, ..
            } => Some(format!(
                "deploy the pinned image by digest (image: {reference}@{pinned}); nothing was moved"
            )),
            Error::Rollback { source, .. } => source.hint().map(str::to_owned),
            _ => None,
        }
    }
}
