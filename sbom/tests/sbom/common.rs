//! Helpers shared by the integration tests: locating `/work/shared`, schema
//! validation, building layer tar streams.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_sbom::bom;
use kiln_sbom::{ImageDescription, Inventory};

/// The `shared` directory beside the checkout (holding `conformance/`), if present.
pub fn shared_dir() -> Option<PathBuf> {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared");
        if candidate.join("conformance").is_dir() {
            return Some(candidate);
        }
        dir = dir.parent()?;
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let Some(shared) = shared_dir() else {
                eprintln!(
                    "skipping CycloneDX schema validation: no shared/conformance directory found"
                );
                return None;
            };
            let dir = shared.join("conformance/cyclonedx");
            let registry = jsonschema::Registry::new()
                .add(
                    "http://cyclonedx.org/schema/spdx.schema.json",
                    read_json(&dir.join("spdx.schema.json")),
                )
                .and_then(|builder| {
                    builder.add(
                        "http://cyclonedx.org/schema/jsf-0.82.schema.json",
                        read_json(&dir.join("jsf-0.82.schema.json")),
                    )
                })
                .and_then(|builder| builder.prepare())
                .expect("schema registry");
            let schema = read_json(&dir.join("bom-1.6.schema.json"));
            let validator = jsonschema::options()
                .with_registry(&registry)
                .should_validate_formats(true)
                .build(&schema)
                .expect("CycloneDX 1.6 schema compiles");
            Some(validator)
        })
        .as_ref()
}

/// Schema violations of `document` (at most 20), or `None` when the schema is absent.
pub fn schema_errors(document: &[u8]) -> Option<Vec<String>> {
    let validator = validator()?;
    let instance: serde_json::Value = serde_json::from_slice(document).expect("SBOM is JSON");
    Some(
        validator
            .iter_errors(&instance)
            .take(20)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect(),
    )
}

/// Asserts that `document` is valid CycloneDX 1.6 (skips when the schema is absent).
pub fn assert_valid_cyclonedx(document: &[u8]) {
    if let Some(errors) = schema_errors(document) {
        assert!(
            errors.is_empty(),
            "SBOM violates the CycloneDX 1.6 schema:\n{}",
            errors.join("\n")
        );
    }
}

/// The document for `inventory`, validated.
pub fn valid_bom(inventory: &Inventory, image: &ImageDescription) -> Vec<u8> {
    let document =
        bom::to_vec(&bom::build(inventory, image).expect("BOM builds")).expect("BOM writes");
    assert_valid_cyclonedx(&document);
    document
}

/// An image description with a given digest hex digit.
pub fn image(digest_digit: char) -> ImageDescription {
    ImageDescription {
        repository: "ghcr.io/acme/app".to_owned(),
        digest: format!("sha256:{}", digest_digit.to_string().repeat(64)),
        tags: vec!["1.0".to_owned(), "latest".to_owned()],
        created: 1_700_000_000,
        tool_version: "0.1.0".to_owned(),
        ..ImageDescription::default()
    }
}

/// Builds a layer tar stream.
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
}

impl LayerTar {
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub fn file(mut self, path: &str, contents: &[u8], mode: u32) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(contents.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        self.builder
            .append_data(&mut header, path.trim_start_matches('/'), contents)
            .expect("append file");
        self
    }

    pub fn text(self, path: &str, contents: &str) -> Self {
        self.file(path, contents.as_bytes(), 0o644)
    }

    pub fn directory(mut self, path: &str) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o755);
        self.builder
            .append_data(&mut header, path.trim_start_matches('/'), &[][..])
            .expect("append directory");
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        self.builder
            .append_link(&mut header, path.trim_start_matches('/'), target)
            .expect("append symlink");
        self
    }

    /// A whiteout deleting `path`.
    pub fn whiteout(self, path: &str) -> Self {
        let (directory, name) = path.rsplit_once('/').expect("path with a directory");
        self.text(&format!("{directory}/.wh.{name}"), "")
    }

    /// An opaque marker for directory `path`.
    pub fn opaque(self, path: &str) -> Self {
        self.text(&format!("{path}/.wh..wh..opq"), "")
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish tar")
    }
}
