//! `kiln compose build [SERVICE]...`: build the project's images, in dependency
//! order and in parallel, then optionally push them and write a lock file.
//!
//! Progress goes to stderr as with `kiln build`, each line prefixed with its
//! service; then a table (service, image, digest, steps, size, time) on stderr, and
//! one `service<TAB>image@sha256:…` line per built service on stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_builder::executor::CancelToken;
use kiln_builder::frontend::compose::Project;
use kiln_builder::project::{self, Plan, PlanOptions, ScheduleOptions, ServiceBuilt};
use kiln_builder::store::Store;

use super::{Failure, human_size, project_failure, selected, table};
use crate::commands::{registry_client, runtime};
use crate::printer::Printer;
use crate::progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to build (default: every active service with a `build` section);
    /// the services they build on are built too
    pub services: Vec<String>,
    /// Push every tag of every built image
    #[arg(long)]
    pub push: bool,
    /// Write the resolved project with every `image:` pinned to its digest to FILE
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Do not use the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: progress::Mode,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Build at most N services at once (default: no limit)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: Option<u32>,
}

pub fn run(project: &Project, args: Args, printer: &Printer) -> Result<(), Failure> {
    let selected = selected(project, &args.services)?;
    let plan = Plan::new(
        project,
        &selected,
        &PlanOptions {
            no_cache: args.no_cache,
            insecure_registries: args.insecure_registries.clone(),
        },
    )
    .map_err(|e| project_failure(&e))?;
    let store = Store::open_default()?;
    let built = if plan.services.is_empty() {
        printer.info("no service to build (none of them has a `build` section)");
        Vec::new()
    } else {
        let reporter = progress::reporter(args.progress);
        let cancel = CancelToken::new();
        crate::signals::cancel_on_interrupt(&cancel);
        project::build_plan(
            &store,
            &plan,
            &reporter,
            &cancel,
            &ScheduleOptions {
                parallel: args.parallel.map(|n| n as usize),
            },
        )
        .map_err(|e| project_failure(&e))?
    };

    // Service → manifest digest; after a push, the registry's (the same bytes).
    let mut digests: BTreeMap<String, String> = built
        .iter()
        .map(|b| (b.service.clone(), b.output.descriptor.digest.to_string()))
        .collect();
    if args.push {
        for service in &built {
            let tags = &plan
                .service(&service.service)
                .expect("built services are planned")
                .request
                .tags;
            let digest = crate::commands::push::push_from_store(
                &store,
                &tags[0],
                tags,
                &args.insecure_registries,
                printer,
            )?;
            digests.insert(service.service.clone(), digest);
        }
    }

    if !built.is_empty() {
        printer.info(summary(&built).trim_end());
    }
    for service in &built {
        printer.data(&format!(
            "{}\t{}@{}",
            service.service, service.image, digests[&service.service]
        ));
    }

    if let Some(path) = &args.lock {
        let client = registry_client(&args.insecure_registries);
        let rt = runtime()?;
        let pins = project::lock::pins(project, &digests, &store, &client, &rt)
            .map_err(|e| project_failure(&e))?;
        write_atomically(path, project.to_yaml_with_pins(&pins).as_bytes())?;
        printer.info(&format!("wrote {}", path.display()));
    }
    Ok(())
}

fn summary(built: &[ServiceBuilt]) -> String {
    let mut rows = vec![
        ["SERVICE", "IMAGE", "DIGEST", "STEPS", "SIZE", "TIME"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for service in built {
        let digest = service.output.descriptor.digest.to_string();
        rows.push(vec![
            service.service.clone(),
            service.image.clone(),
            digest.chars().take(19).collect(),
            format!(
                "{} ran, {} cached",
                service.output.steps_run, service.output.steps_cached
            ),
            human_size(service.size),
            format!("{:.1}s", service.duration.as_secs_f64()),
        ]);
    }
    table(&rows)
}

/// Writes `bytes` to `path` through a temp file beside it and a rename, so a reader
/// never sees half a lock file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(format!("writing {}: {e}", path.display()));
    let mut temp_name = path.file_name().unwrap_or_default().to_owned();
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    std::fs::write(&temp, bytes).map_err(fail)?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        fail(e)
    })
}
