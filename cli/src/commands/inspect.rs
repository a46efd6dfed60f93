//! `kiln inspect REF`: the manifest, config and platform list of an image on a
//! registry (or, for a name in the store, from the store), as JSON on stdout.

use kiln_builder::build::store_name;
use kiln_builder::store::Store;
use kiln_registry::ManifestKind;

use super::{Failure, push::parse_reference, registry_client, runtime};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (`name[:tag][@digest]`)
    pub reference: String,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

fn json(bytes: &[u8]) -> Result<serde_json::Value, Failure> {
    serde_json::from_slice(bytes).map_err(|e| Failure::new(format!("not JSON: {e}")))
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    // A name kiln built or pulled is answered from the store.
    let store = Store::open_default()?;
    if let Ok(descriptor) = store
        .resolve(&args.reference)
        .or_else(|_| store.resolve(&store_name(&args.reference)))
    {
        let manifest = json(&store.read_blob(&descriptor.digest)?)?;
        let config = match manifest["config"]["digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
        {
            Some(digest) => json(&store.read_blob(&digest)?)?,
            None => serde_json::Value::Null,
        };
        let out = serde_json::json!({
            "source": "store",
            "name": args.reference,
            "digest": descriptor.digest.to_string(),
            "mediaType": descriptor.media_type,
            "manifest": manifest,
            "config": config,
        });
        printer.data(&serde_json::to_string_pretty(&out).expect("json"));
        return Ok(());
    }
    let reference = parse_reference(&args.reference)?;
    let client = registry_client(&args.insecure_registries);
    let rt = runtime()?;
    let top = rt
        .block_on(client.get_manifest(&reference))
        .map_err(|e| Failure::from_error(&e))?;
    let name = reference.to_string();
    let kind = top.kind(&name).map_err(|e| Failure::from_error(&e))?;
    let mut platforms = Vec::new();
    if kind == ManifestKind::Index {
        let index = json(&top.bytes)?;
        for m in index["manifests"].as_array().cloned().unwrap_or_default() {
            let p = &m["platform"];
            let mut text = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            );
            if let Some(v) = p["variant"].as_str() {
                text.push('/');
                text.push_str(v);
            }
            platforms.push(serde_json::json!({"platform": text, "digest": m["digest"]}));
        }
    }
    let (_, manifest, _) = rt
        .block_on(client.resolve_image(&reference, None))
        .map_err(|e| Failure::from_error(&e))?;
    let manifest_json = json(&manifest.bytes)?;
    let image = manifest
        .image_manifest(&name)
        .map_err(|e| Failure::from_error(&e))?;
    let config_bytes = rt
        .block_on(client.fetch_blob_bytes(&reference, image.config(), 4 << 20))
        .map_err(|e| Failure::from_error(&e))?;
    let config = json(&config_bytes)?;
    let out = serde_json::json!({
        "source": "registry",
        "name": name,
        "digest": top.digest.to_string(),
        "mediaType": top.media_type,
        "platforms": platforms,
        "manifest": manifest_json,
        "config": config,
    });
    printer.data(&serde_json::to_string_pretty(&out).expect("json"));
    Ok(())
}
