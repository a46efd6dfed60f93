//! `kiln compose config`: the resolved project (files merged, variables
//! interpolated, paths made absolute, profiles applied) as canonical YAML on stdout,
//! as `docker compose config` prints it.

use kiln_builder::frontend::compose::Project;

use super::Failure;
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print only the names of the active services, one per line
    #[arg(long)]
    pub services: bool,
}

pub fn run(project: &Project, args: Args, printer: &Printer) -> Result<(), Failure> {
    if args.services {
        for name in project.services.keys() {
            printer.data(name);
        }
    } else {
        printer.data(project.to_yaml().trim_end());
    }
    Ok(())
}
