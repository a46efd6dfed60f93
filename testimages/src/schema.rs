//! Validation against the OCI image-spec JSON schemas in
//! `shared/conformance/oci-image-spec`, resolving their `$ref`s offline.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Resolves the OCI schemas' `$ref`s (`defs.json`, `content-descriptor.json`,
/// …, under whatever base URI their `id`s give) to the files beside them.
struct SchemaFiles {
    dir: PathBuf,
}

impl jsonschema::Retrieve for SchemaFiles {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.path().as_str().rsplit('/').next().unwrap_or_default();
        let path = self.dir.join(name);
        Ok(serde_json::from_slice(
            &fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        )?)
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The errors of `instance` against the OCI schema file `schema` (e.g.
/// `image-manifest-schema.json`), or `None` (after saying so on stderr) when
/// the shared conformance files are not there.
pub fn oci_schema_errors(schema: &str, instance: &Value) -> Option<Vec<String>> {
    let Some(shared) = crate::shared_dir() else {
        eprintln!("skipping schema validation: no shared/conformance directory found");
        return None;
    };
    let dir = shared.join("conformance/oci-image-spec");
    let schema_value = match read_json(&dir.join(schema)) {
        Ok(v) => v,
        Err(e) => return Some(vec![e]),
    };
    let validator = match jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_retriever(SchemaFiles { dir })
        .build(&schema_value)
    {
        Ok(v) => v,
        Err(e) => return Some(vec![format!("schema {schema}: {e}")]),
    };
    Some(
        validator
            .iter_errors(instance)
            .map(|e| format!("{schema}: {e} at {}", e.instance_path()))
            .collect(),
    )
}

/// Every problem of an OCI layout: `oci-layout` and `index.json` against their
/// schemas, each named image's manifest and config against theirs, and every
/// blob they name present with its digest and size. `None` when the schemas
/// cannot be found (said on stderr).
pub fn layout_errors(layout: &Path) -> Option<Vec<String>> {
    let mut errors = Vec::new();
    let mut check = |schema: &str, value: &Value| -> Option<()> {
        errors.extend(oci_schema_errors(schema, value)?);
        Some(())
    };
    let load = |p: PathBuf| read_json(&p);
    let oci_layout = load(layout.join("oci-layout")).ok()?;
    check("image-layout-schema.json", &oci_layout)?;
    let index = match load(layout.join("index.json")) {
        Ok(i) => i,
        Err(e) => return Some(vec![e]),
    };
    check("image-index-schema.json", &index)?;
    let mut blob_errors = Vec::new();
    let blob = |descriptor: &Value, blob_errors: &mut Vec<String>| -> Option<Value> {
        let digest = descriptor["digest"].as_str()?;
        let hex = digest.strip_prefix("sha256:")?;
        let path = layout.join("blobs/sha256").join(hex);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                blob_errors.push(format!("{}: {e}", path.display()));
                return None;
            }
        };
        let actual = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
        if actual != hex {
            blob_errors.push(format!("{digest}: content hashes to sha256:{actual}"));
        }
        if descriptor["size"].as_u64() != Some(bytes.len() as u64) {
            blob_errors.push(format!(
                "{digest}: size {} != descriptor size {}",
                bytes.len(),
                descriptor["size"]
            ));
        }
        serde_json::from_slice(&bytes).ok()
    };
    for descriptor in index["manifests"].as_array().cloned().unwrap_or_default() {
        let Some(manifest) = blob(&descriptor, &mut blob_errors) else {
            continue;
        };
        check("image-manifest-schema.json", &manifest)?;
        if let Some(config) = blob(&manifest["config"], &mut blob_errors) {
            check("config-schema.json", &config)?;
        }
        for layer in manifest["layers"].as_array().cloned().unwrap_or_default() {
            // Layers are not JSON; only presence, digest and size are checked.
            let _ = blob(&layer, &mut blob_errors);
        }
    }
    errors.extend(blob_errors);
    Some(errors)
}
