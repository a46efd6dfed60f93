//! Building a [`Plan`]: dependency order, independent services in parallel.
//!
//! The calling thread is the scheduler: it starts every service whose needs are built
//! (up to [`ScheduleOptions::parallel`] at a time), each on its own thread with the
//! shared [`Store`], and waits for one to end before starting more. Progress events
//! carry the service name (the request's `name`).
//!
//! The first failure cancels the [`CancelToken`] shared by all builds: running steps
//! are killed, nothing new starts, finished steps stay cached. The error returned is
//! that first failure ([`Error::ServiceFailed`] names the service), not the
//! cancellations it caused.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Error;
use super::plan::{Plan, ServicePlan};
use crate::build::{self, BuildOutput};
use crate::executor::CancelToken;
use crate::export;
use crate::platform::Platform;
use crate::progress::Reporter;
use crate::store::Store;

/// How to run the plan.
#[derive(Debug, Clone, Default)]
pub struct ScheduleOptions {
    /// At most this many services build at once; `None`: no limit (as Compose).
    pub parallel: Option<usize>,
}

/// A service that was built.
#[derive(Debug, Clone)]
pub struct ServiceBuilt {
    pub service: String,
    /// The first tag as written in the compose file.
    pub image: String,
    pub output: BuildOutput,
    /// Manifest, config and layers (compressed).
    pub size: u64,
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Running,
    Built,
    Failed,
}

/// Builds every service of `plan` into `store`; results in plan order.
pub fn build_plan(
    store: &Store,
    plan: &Plan,
    reporter: &Reporter,
    cancel: &CancelToken,
    options: &ScheduleOptions,
) -> Result<Vec<ServiceBuilt>, Error> {
    let services = &plan.services;
    let index_of = |name: &str| services.iter().position(|s| s.service == name);
    let needs: Vec<Vec<usize>> = services
        .iter()
        .map(|s| s.needs.iter().filter_map(|n| index_of(n)).collect())
        .collect();
    let limit = options.parallel.unwrap_or(usize::MAX).max(1);
    let mut status = vec![Status::Waiting; services.len()];
    let mut results: Vec<Option<ServiceBuilt>> = vec![None; services.len()];
    let mut failure: Option<Error> = None;

    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel::<(usize, Result<ServiceBuilt, Error>)>();
        let mut running = 0usize;
        loop {
            if failure.is_none() && !cancel.is_cancelled() {
                for index in 0..services.len() {
                    if running >= limit {
                        break;
                    }
                    let ready = status[index] == Status::Waiting
                        && needs[index].iter().all(|n| status[*n] == Status::Built);
                    if !ready {
                        continue;
                    }
                    status[index] = Status::Running;
                    running += 1;
                    let sender = sender.clone();
                    let service = &services[index];
                    scope.spawn(move || {
                        let result = build_service(store, service, reporter, cancel);
                        // The scheduler outlives every builder thread.
                        let _ = sender.send((index, result));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let (index, result) = receiver
                .recv()
                .expect("builder threads send before they end");
            running -= 1;
            match result {
                Ok(built) => {
                    status[index] = Status::Built;
                    results[index] = Some(built);
                }
                Err(error) => {
                    status[index] = Status::Failed;
                    cancel.cancel();
                    let replaces = match &failure {
                        None => true,
                        Some(first) => is_cancellation(first) && !is_cancellation(&error),
                    };
                    if replaces {
                        failure = Some(error);
                    }
                }
            }
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }
    if cancel.is_cancelled() {
        let service = services
            .iter()
            .zip(&status)
            .find(|(_, s)| **s != Status::Built)
            .map(|(s, _)| s.service.clone())
            .unwrap_or_default();
        return Err(Error::ServiceFailed {
            service,
            source: Box::new(build::Error::Cancelled),
        });
    }
    Ok(results.into_iter().flatten().collect())
}

/// A build that stopped because another one failed (or the user interrupted).
fn is_cancellation(error: &Error) -> bool {
    matches!(error, Error::ServiceFailed { source, .. } if matches!(**source, build::Error::Cancelled))
}

/// Pulls fresh bases when asked, builds, writes the extra outputs.
fn build_service(
    store: &Store,
    plan: &ServicePlan,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<ServiceBuilt, Error> {
    let started = Instant::now();
    if !plan.pull.is_empty() {
        pull_bases(store, plan, reporter)?;
    }
    let output = build::build(store, &plan.request, reporter, cancel).map_err(|source| {
        Error::ServiceFailed {
            service: plan.service.clone(),
            source: Box::new(source),
        }
    })?;
    let store_error = |source| Error::Store {
        service: plan.service.clone(),
        source: Box::new(source),
    };
    for out in &plan.outputs {
        export::export(store, &output.descriptor, &output.tags, out).map_err(|source| {
            Error::Export {
                service: plan.service.clone(),
                dest: out.dest().to_owned(),
                source: Box::new(source),
            }
        })?;
    }
    let size = output.descriptor.size
        + store
            .blob_size(&output.config_digest)
            .map_err(store_error)?
        + output.layers.iter().map(|l| l.size).sum::<u64>();
    Ok(ServiceBuilt {
        service: plan.service.clone(),
        image: plan.image.clone(),
        output,
        size,
        duration: started.elapsed(),
    })
}

/// `pull: true`: fetch each base image again and point its store name at it, so the
/// build uses the registry's current image instead of the store's copy.
fn pull_bases(store: &Store, plan: &ServicePlan, reporter: &Reporter) -> Result<(), Error> {
    let failed = |source| Error::ServiceFailed {
        service: plan.service.clone(),
        source: Box::new(source),
    };
    let (client, runtime) =
        build::registry_client(&plan.request.insecure_registries).map_err(failed)?;
    let client = || Ok((client.clone(), runtime.clone()));
    let platform = plan.request.platform.clone().unwrap_or_else(Platform::host);
    for image in &plan.pull {
        let descriptor = build::pull_image(store, image, &platform, &client).map_err(failed)?;
        reporter.notice(format!(
            "[{}] pulled {image} ({})",
            plan.service, descriptor.digest
        ));
    }
    Ok(())
}
