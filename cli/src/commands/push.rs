//! `kiln push SOURCE REF...`: push an image from the store or an OCI layout.

use std::path::PathBuf;

use kiln_builder::build::{StoreAdapter, sbom, store_name};
use kiln_builder::store::Store;
use kiln_registry::{PushOptions, RawManifest, Reference};

use super::{Failure, registry_client, runtime};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A store image name, or `oci:PATH[:NAME]` for an OCI layout
    pub source: String,
    /// Where to push (`registry/repo:tag`); every REF gets the manifest
    #[arg(required = true)]
    pub references: Vec<String>,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

pub fn parse_reference(reference: &str) -> Result<Reference, Failure> {
    Reference::parse(reference).map_err(|e| {
        let failure = Failure::new(format!("{reference}: {e}"));
        if reference.contains('+') {
            failure.with_hint("`+` is not allowed in a tag; use `-` (e.g. 1.2.3-sha.abc)")
        } else {
            failure
        }
    })
}

/// Pushes the store image `source` to every reference; returns the manifest digest.
pub fn push_from_store(
    store: &Store,
    source: &str,
    references: &[String],
    insecure: &[String],
    printer: &Printer,
) -> Result<String, Failure> {
    let descriptor = store
        .resolve(source)
        .or_else(|_| store.resolve(&store_name(source)))?;
    push_descriptor(store, &descriptor, references, insecure, printer)
}

fn push_descriptor(
    store: &Store,
    descriptor: &kiln_builder::store::Descriptor,
    references: &[String],
    insecure: &[String],
    printer: &Printer,
) -> Result<String, Failure> {
    let bytes = store.read_blob(&descriptor.digest)?;
    let manifest = RawManifest::new(bytes, Some(&descriptor.media_type));
    let client = registry_client(insecure);
    let rt = runtime()?;
    let adapter = StoreAdapter(store.clone());
    let mut digest = String::new();
    for reference in references {
        let target = parse_reference(reference)?;
        let report = rt
            .block_on(client.push(&target, &manifest, &adapter, &PushOptions::default()))
            .map_err(|e| Failure::from_error(&e))?;
        printer.info(&format!(
            "pushed {} ({} blobs uploaded, {} already there, {} mounted)",
            report.references.join(", "),
            report.stats.blobs_uploaded,
            report.stats.blobs_skipped,
            report.stats.blobs_mounted
        ));
        digest = report.digest.to_string();
        push_referrers(store, descriptor, &target, &client, &rt, &adapter, printer)?;
    }
    Ok(digest)
}

/// Pushes the SBOMs the store keeps for the image as OCI 1.1 referrers of it
/// (the referrers API, or the `sha256-<hex>` tag where the registry lacks it).
fn push_referrers(
    store: &Store,
    descriptor: &kiln_builder::store::Descriptor,
    target: &Reference,
    client: &kiln_registry::RegistryClient,
    rt: &tokio::runtime::Runtime,
    adapter: &StoreAdapter,
    printer: &Printer,
) -> Result<(), Failure> {
    for referrer in sbom::referrers(store, &descriptor.digest)? {
        let bytes = store.read_blob(&referrer.digest)?;
        let manifest = RawManifest::new(bytes, Some(&referrer.media_type));
        let pushed = rt
            .block_on(client.push_referrer(target, &manifest, adapter))
            .map_err(|e| Failure::from_error(&e))?;
        let kind = referrer.artifact_type.as_deref().unwrap_or("artifact");
        match &pushed.fallback_tag {
            Some(tag) => printer.info(&format!(
                "pushed {kind} {} as a referrer (tag {tag}: the registry has no referrers API)",
                pushed.push.digest
            )),
            None => printer.info(&format!(
                "pushed {kind} {} as a referrer",
                pushed.push.digest
            )),
        }
    }
    Ok(())
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let digest = if let Some(rest) = args.source.strip_prefix("oci:") {
        let (path, name) = match rest.rsplit_once(':') {
            Some((p, n)) if !n.contains('/') => (PathBuf::from(p), Some(n.to_owned())),
            _ => (PathBuf::from(rest), None),
        };
        let layout = Store::open(&path)?;
        let descriptor = match name {
            Some(name) => layout.resolve(&name)?,
            None => {
                let all = layout.descriptors()?;
                match all.as_slice() {
                    [one] => one.clone(),
                    _ => {
                        return Err(Failure::usage(format!(
                            "{} holds {} images; name one as oci:PATH:NAME",
                            path.display(),
                            all.len()
                        )));
                    }
                }
            }
        };
        push_descriptor(
            &layout,
            &descriptor,
            &args.references,
            &args.insecure_registries,
            printer,
        )?
    } else {
        let store = Store::open_default()?;
        push_from_store(
            &store,
            &args.source,
            &args.references,
            &args.insecure_registries,
            printer,
        )?
    };
    printer.data(&digest);
    Ok(())
}
