//! `kiln pull REF`: pull an image (verified) into the store.

use kiln_builder::build::{StoreAdapter, store_name};
use kiln_builder::store::{Descriptor, Store};
use kiln_registry::PullOptions;

use super::{Failure, push::parse_reference, registry_client, runtime};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to pull (`name[:tag][@digest]`)
    pub reference: String,
    /// The platform to pick from a multi-platform image (default: the host's)
    #[arg(long)]
    pub platform: Option<String>,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let reference = parse_reference(&args.reference)?;
    let platform = match &args.platform {
        None => None,
        Some(p) => Some(
            p.parse::<kiln_registry::Platform>()
                .map_err(|e| Failure::usage(e.to_string()))?,
        ),
    };
    let store = Store::open_default()?;
    let client = registry_client(&args.insecure_registries);
    let pulled = runtime()?
        .block_on(client.pull(
            &reference,
            &PullOptions { platform },
            &StoreAdapter(store.clone()),
        ))
        .map_err(|e| Failure::from_error(&e))?;
    let top = pulled
        .index
        .as_ref()
        .unwrap_or(&pulled.manifest)
        .descriptor();
    let descriptor = Descriptor {
        media_type: top.media_type().to_string(),
        digest: top
            .digest()
            .to_string()
            .parse()
            .map_err(|e: kiln_builder::digest::ParseDigestError| Failure::new(e.to_string()))?,
        size: top.size(),
        annotations: Default::default(),
        platform: None,
        artifact_type: None,
    };
    let name = store_name(&args.reference);
    store.tag(&name, &descriptor)?;
    printer.info(&format!(
        "pulled {name}: {} blobs fetched, {} already in the store",
        pulled.stats.blobs_fetched, pulled.stats.blobs_present
    ));
    printer.data(pulled.digest().as_ref());
    Ok(())
}
