//! `kiln sbom IMAGE|oci:PATH[:NAME]`: catalog an existing image's packages.
//!
//! The image comes from the store, else from its registry (pulled into the
//! store, every blob verified), or from an OCI layout. Each package is
//! attributed to the layer that introduced it, the instruction taken from the
//! image config's history. Output: the CycloneDX 1.6 JSON document (stdout or
//! `-o PATH`), or a table.

use std::path::PathBuf;

use kiln_builder::build::sbom::{self, SbomOptions, SbomSource};
use kiln_builder::platform::Platform;
use kiln_builder::store::Store;
use kiln_sbom::cyclonedx::Component;

use super::Failure;
use crate::printer::Printer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The CycloneDX 1.6 JSON document
    CyclonedxJson,
    /// One package a line: name, version, type, layer, instruction
    Table,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A store image name, a registry reference, or `oci:PATH[:NAME]` for an OCI layout
    pub image: String,
    /// Write the output to PATH instead of stdout
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "cyclonedx-json")]
    pub format: Format,
    /// The platform to catalog from a multi-platform image (os/arch[/variant]); default the host's
    #[arg(long)]
    pub platform: Option<String>,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// The document's timestamp as a Unix time (default: $SOURCE_DATE_EPOCH, else the image's `created`)
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<i64>,
}

/// `oci:PATH[:NAME]` → a layout source; anything else names an image. NAME may
/// itself hold `:` (`oci:/var/store:app:1`): PATH is the shortest prefix that is
/// an OCI layout on disk, else everything before the last `:`.
pub fn source_of(image: &str) -> SbomSource {
    let Some(rest) = image.strip_prefix("oci:") else {
        return SbomSource::Reference(image.to_owned());
    };
    let is_layout = |path: &str| std::path::Path::new(path).join("oci-layout").is_file();
    if is_layout(rest) {
        return SbomSource::Layout {
            path: PathBuf::from(rest),
            name: None,
        };
    }
    for (at, _) in rest.match_indices(':') {
        let (path, name) = (&rest[..at], &rest[at + 1..]);
        if !name.is_empty() && is_layout(path) {
            return SbomSource::Layout {
                path: PathBuf::from(path),
                name: Some(name.to_owned()),
            };
        }
    }
    let (path, name) = match rest.rsplit_once(':') {
        Some((path, name)) if !name.contains('/') && !path.is_empty() => {
            (PathBuf::from(path), Some(name.to_owned()))
        }
        _ => (PathBuf::from(rest), None),
    };
    SbomSource::Layout { path, name }
}

fn property<'c>(component: &'c Component, name: &str) -> Option<&'c str> {
    component
        .properties
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.value.as_str())
}

/// The packages as a table, one a line, sorted as in the document.
fn table(components: &[Component]) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "NAME".into(),
        "VERSION".into(),
        "TYPE".into(),
        "LAYER".into(),
        "INSTRUCTION".into(),
    ]];
    for component in components {
        if property(component, "kiln:role") == Some("base-image") {
            continue;
        }
        let kind = component
            .purl
            .as_deref()
            .and_then(|purl| purl.strip_prefix("pkg:"))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("os");
        let layer = property(component, "kiln:layer:digest")
            .map(|digest| {
                let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                hex[..hex.len().min(12)].to_owned()
            })
            .unwrap_or_default();
        let instruction = property(component, "kiln:instruction")
            .map(|text| {
                let line = text.lines().next().unwrap_or("");
                if line.chars().count() > 60 {
                    format!("{}…", line.chars().take(59).collect::<String>())
                } else {
                    line.to_owned()
                }
            })
            .unwrap_or_default();
        let instruction = match property(component, "kiln:source") {
            Some(source) => format!("{source} {instruction}"),
            None => instruction,
        };
        rows.push([
            component.name.clone(),
            component.version.clone().unwrap_or_default(),
            kind.to_owned(),
            layer,
            instruction,
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            line.push_str(cell);
            line.push_str(&" ".repeat(width - cell.chars().count() + 2));
        }
        line.push_str(&row[4]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let platform = args
        .platform
        .as_deref()
        .map(|p| {
            p.parse::<Platform>()
                .map_err(|e| Failure::usage(e.to_string()).with_hint("e.g. --platform linux/amd64"))
        })
        .transpose()?;
    let store = Store::open_default()?;
    let options = SbomOptions {
        platform,
        insecure_registries: args.insecure_registries.clone(),
        source_date_epoch: args.source_date_epoch,
    };
    let result = sbom::image_sbom(&store, &source_of(&args.image), &options).map_err(|e| {
        let failure = super::build::build_failure(&e);
        if failure.hint.is_none() && matches!(source_of(&args.image), SbomSource::Layout { .. }) {
            failure.with_hint("name the image in a layout as oci:PATH:NAME")
        } else {
            failure
        }
    })?;
    let packages = sbom::package_count(&result.bom);
    printer.info(&format!(
        "{}: {packages} packages in {} layers ({} cataloged, {} known)",
        result.image.manifest_digest,
        result.stats.layers,
        result.stats.from_snapshot + result.stats.from_blob,
        result.stats.from_cache
    ));
    let bytes = match args.format {
        Format::CyclonedxJson => result.document,
        Format::Table => table(&result.bom.components).into_bytes(),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .map_err(|e| Failure::new(format!("writing {}: {e}", path.display())))?;
            printer.info(&format!("wrote {}", path.display()));
        }
        None => printer.data(String::from_utf8_lossy(&bytes).trim_end_matches('\n')),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_sbom::cyclonedx::{ComponentType, Property};

    #[test]
    fn sources_are_layouts_or_references() {
        assert_eq!(
            source_of("oci:/tmp/layout:app"),
            SbomSource::Layout {
                path: "/tmp/layout".into(),
                name: Some("app".into())
            }
        );
        assert_eq!(
            source_of("oci:/tmp/layout"),
            SbomSource::Layout {
                path: "/tmp/layout".into(),
                name: None
            }
        );
        assert_eq!(
            source_of("localhost:5000/app:1"),
            SbomSource::Reference("localhost:5000/app:1".into())
        );
        // A layout on disk whose image name holds a colon.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oci-layout"), "{}").unwrap();
        assert_eq!(
            source_of(&format!("oci:{}:app:1", dir.path().display())),
            SbomSource::Layout {
                path: dir.path().to_owned(),
                name: Some("app:1".into())
            }
        );
    }

    #[test]
    fn table_lists_packages_with_their_layer_and_instruction() {
        let component = |name: &str, purl: Option<&str>, properties: Vec<Property>| Component {
            kind: ComponentType::Library,
            bom_ref: Some(name.to_owned()),
            name: name.to_owned(),
            version: Some("1.0".to_owned()),
            description: None,
            hashes: Vec::new(),
            licenses: Vec::new(),
            purl: purl.map(str::to_owned),
            evidence: None,
            properties,
        };
        let text = table(&[
            component(
                "demo",
                Some("pkg:pypi/demo@1.0"),
                vec![
                    Property::new("kiln:layer:digest", format!("sha256:{}", "a".repeat(64))),
                    Property::new("kiln:instruction", "RUN pip install demo"),
                    Property::new("kiln:source", "Dockerfile:3"),
                ],
            ),
            component(
                "python",
                Some("pkg:oci/python@sha256%3A00"),
                vec![Property::new("kiln:role", "base-image")],
            ),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("NAME"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            &cells[..6],
            &["demo", "1.0", "pypi", "aaaaaaaaaaaa", "Dockerfile:3", "RUN"]
        );
    }
}
