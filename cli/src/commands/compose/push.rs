//! `kiln compose push [SERVICE]...`: push the images `kiln compose build` put in the
//! store, every tag of each (with `x-kiln.tag_scheme`, the release tags too), as
//! `kiln build --push` does. One
//! `service<TAB>image@sha256:…` line per pushed service on stdout.

use kiln_builder::build::store_name;
use kiln_builder::frontend::compose::Project;
use kiln_builder::project;
use kiln_builder::store::Store;

use super::{Failure, compose_failure, project_failure, selected};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to push (default: every active service with a `build` section)
    pub services: Vec<String>,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

pub fn run(project: &Project, args: Args, printer: &Printer) -> Result<(), Failure> {
    let selected = selected(project, &args.services)?;
    let requests = project
        .build_requests(&selected)
        .map_err(|e| compose_failure(&e))?;
    let store = Store::open_default()?;
    let mut pushed = Vec::new();
    for request in requests {
        // build_requests adds the services a selection builds on; push only those asked.
        if !selected.is_empty() && !selected.contains(&request.service.as_str()) {
            continue;
        }
        let image = &request.tags[0];
        if store.resolve(&store_name(image)).is_err() {
            return Err(Failure::new(format!(
                "service {}: image {image} is not in the store",
                request.service
            ))
            .with_hint(format!(
                "build it first: kiln compose build {}",
                request.service
            )));
        }
        let tags = project::plan::pushed_tags(&store, &request).map_err(|e| project_failure(&e))?;
        let digest = crate::commands::push::push_from_store(
            &store,
            image,
            &tags,
            &args.insecure_registries,
            printer,
        )?;
        pushed.push(format!("{}\t{image}@{digest}", request.service));
    }
    if pushed.is_empty() {
        printer.info("no service to push (none of them has a `build` section)");
    }
    for line in pushed {
        printer.data(&line);
    }
    Ok(())
}
