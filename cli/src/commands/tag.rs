//! `kiln tag SOURCE_REF NEW_REF...`: retag on the registry by manifest copy,
//! without pulling layers.

use kiln_builder::build::StoreAdapter;
use kiln_builder::store::Store;

use super::{Failure, push::parse_reference, registry_client, runtime};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The existing image on a registry
    pub source: String,
    /// New references for it
    #[arg(required = true)]
    pub references: Vec<String>,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let source = parse_reference(&args.source)?;
    let client = registry_client(&args.insecure_registries);
    let rt = runtime()?;
    let store = Store::open_default()?;
    let staging = StoreAdapter(store);
    let mut digest = String::new();
    for reference in &args.references {
        let target = parse_reference(reference)?;
        let report = rt
            .block_on(client.copy_manifest(&source, &target, &staging))
            .map_err(|e| Failure::from_error(&e))?;
        printer.info(&format!(
            "tagged {} ({} blobs uploaded)",
            report.references.join(", "),
            report.stats.blobs_uploaded
        ));
        digest = report.digest.to_string();
    }
    printer.data(&digest);
    Ok(())
}
