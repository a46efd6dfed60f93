//! The CycloneDX 1.6 document for an image: [`build`] assembles it from an
//! [`Inventory`] and an [`ImageDescription`], [`write()`] serialises it.
//!
//! Contract:
//!
//! - Identical input gives byte-identical output: components are sorted by
//!   purl then `bom-ref`, dependencies by `ref`, every list built from sorted
//!   data; no clock, no randomness, no hash-map order.
//! - `serialNumber` is `urn:uuid:` + a UUID (version 5 and RFC 4122 variant
//!   bits set) taken from SHA-256 of the image digest, so it changes exactly
//!   when the image digest does.
//! - `metadata.timestamp` is [`ImageDescription::created`] (the caller passes
//!   `SOURCE_DATE_EPOCH` when set); `metadata.component` is the image (type
//!   `container`, purl `pkg:oci/<name>@sha256%3A…?repository_url=…&tag=…`, tags
//!   as `kiln:image:tag` properties); the build's inputs are
//!   `metadata.properties`, so that `kiln verify` can rebuild with them:
//!   `kiln:build-arg:NAME` (each build argument used), `kiln:dockerfile:digest`,
//!   `kiln:source-date-epoch`, `kiln:target` and `kiln:base:NAME` (each image a
//!   needed stage names, as the Dockerfile names it, = `reference@sha256:…` of
//!   the manifest used). None of them changes the image digest.
//! - Each package records the layer that introduced it (`kiln:layer:digest`,
//!   `kiln:layer:diff_id`, `kiln:instruction`, `kiln:source`, `kiln:stage`,
//!   `kiln:base-image`), the files that prove it (`evidence.occurrences`) and
//!   its resolved dependencies; base images are `container` components with
//!   their digest as a SHA-256 hash.
//! - Build steps become one formula with one workflow: a task per stage, a step
//!   per instruction.
//! - A digest that is not `sha256:<64 lowercase hex>` is an [`Error::InvalidDigest`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::cyclonedx::{
    Bom, Command, Component, ComponentType, DependencyEntry, Evidence, Formula, Hash,
    LicenseChoice, LicenseEntry, Lifecycle, Metadata, Occurrence, Property, Step, Task, TaskType,
    Tools, Workflow,
};
use crate::error::Error;
use crate::inventory::{CatalogedPackage, Inventory, LayerInfo};
use crate::package::{ComponentKind, License};
use crate::purl::Purl;

/// The image an SBOM describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDescription {
    /// Repository the image is named by (`ghcr.io/acme/app`); for a build
    /// without `-t`, a local name.
    pub repository: String,
    /// Manifest digest (`sha256:…`).
    pub digest: String,
    /// Tags it is published under (`1.0`, `latest`); the first goes into the purl.
    pub tags: Vec<String>,
    /// Base images (`FROM`), in order.
    pub base_images: Vec<BaseImage>,
    /// Build arguments and their values.
    pub build_args: BTreeMap<String, String>,
    /// Digest of the Dockerfile (`sha256:…`).
    pub dockerfile_digest: Option<String>,
    /// `SOURCE_DATE_EPOCH` the build was given, if any.
    pub source_date_epoch: Option<i64>,
    /// The `--target` stage the build was given, if any.
    pub target: Option<String>,
    /// Every image the needed stages name (`FROM`, `COPY --from`, `RUN --mount
    /// from=`), keyed as the Dockerfile names it, valued `reference@sha256:…` of
    /// the manifest the build used.
    pub pinned_images: BTreeMap<String, String>,
    /// Instructions executed, in order.
    pub steps: Vec<BuildStep>,
    /// Creation time, seconds since the Unix epoch (`SOURCE_DATE_EPOCH`).
    pub created: i64,
    /// Version of kiln writing the document.
    pub tool_version: String,
}

/// A base image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BaseImage {
    /// As named, normalised (`docker.io/library/debian:bookworm`); may carry `@digest`.
    pub reference: String,
    /// The manifest digest used (`sha256:…`).
    pub digest: String,
}

/// One instruction of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStep {
    /// Stage name (or index) the instruction belongs to.
    pub stage: String,
    /// The instruction, after expansion.
    pub instruction: String,
    /// Where it is (`Dockerfile:12`).
    pub source: Option<String>,
    /// Digest of the layer it produced, if any.
    pub layer_digest: Option<String>,
}

const SCHEMA: &str = "http://cyclonedx.org/schema/bom-1.6.schema.json";

/// Assembles the document.
pub fn build(inventory: &Inventory, image: &ImageDescription) -> Result<Bom, Error> {
    let image_hex = sha256_hex(&image.digest, "image")?;
    let image_purl = Purl::oci(
        &image.repository,
        &image.digest,
        image.tags.first().map(String::as_str),
    )
    .to_string();
    let image_component = Component {
        kind: ComponentType::Container,
        bom_ref: Some(image_purl.clone()),
        name: image.repository.clone(),
        version: Some(image.digest.clone()),
        description: None,
        hashes: vec![sha256_hash(image_hex)],
        licenses: Vec::new(),
        purl: Some(image_purl.clone()),
        evidence: None,
        properties: image
            .tags
            .iter()
            .map(|tag| Property::new("kiln:image:tag", tag.as_str()))
            .collect(),
    };

    let mut components: Vec<Component> = Vec::new();
    let mut dependencies: Vec<DependencyEntry> = Vec::new();
    let mut base_refs: BTreeSet<String> = BTreeSet::new();
    let mut seen_bases: BTreeSet<&BaseImage> = BTreeSet::new();
    for base in &image.base_images {
        if !seen_bases.insert(base) {
            continue;
        }
        let hex = sha256_hex(&base.digest, &format!("base image {}", base.reference))?;
        let (repository, tag) = split_reference(&base.reference);
        let purl = Purl::oci(repository, &base.digest, tag).to_string();
        let bom_ref = if purl == image_purl {
            format!("{purl}#base")
        } else {
            purl.clone()
        };
        base_refs.insert(bom_ref.clone());
        components.push(Component {
            kind: ComponentType::Container,
            bom_ref: Some(bom_ref.clone()),
            name: repository.to_owned(),
            version: Some(base.digest.clone()),
            description: None,
            hashes: vec![sha256_hash(hex)],
            licenses: Vec::new(),
            purl: Some(purl),
            evidence: None,
            properties: vec![
                Property::new("kiln:role", "base-image"),
                Property::new("kiln:image:reference", base.reference.as_str()),
            ],
        });
        dependencies.push(DependencyEntry {
            reference: bom_ref,
            depends_on: Vec::new(),
        });
    }
    dependencies.push(DependencyEntry {
        reference: image_purl.clone(),
        depends_on: base_refs.into_iter().collect(),
    });

    for cataloged in inventory.packages() {
        let layer = inventory.layers().get(cataloged.layer);
        if cataloged.purl.is_some() {
            dependencies.push(DependencyEntry {
                reference: cataloged.bom_ref.clone(),
                depends_on: cataloged.depends_on.clone(),
            });
        }
        components.push(package_component(cataloged, layer));
    }
    components.sort_by(|a, b| {
        (a.purl.as_deref().unwrap_or(""), a.bom_ref.as_deref())
            .cmp(&(b.purl.as_deref().unwrap_or(""), b.bom_ref.as_deref()))
    });
    dependencies.sort_by(|a, b| a.reference.cmp(&b.reference));

    let mut properties: Vec<Property> = image
        .build_args
        .iter()
        .map(|(name, value)| Property::new(format!("kiln:build-arg:{name}"), value.as_str()))
        .collect();
    if let Some(digest) = &image.dockerfile_digest {
        properties.push(Property::new("kiln:dockerfile:digest", digest.as_str()));
    }
    if let Some(epoch) = image.source_date_epoch {
        properties.push(Property::new("kiln:source-date-epoch", epoch.to_string()));
    }
    if let Some(target) = &image.target {
        properties.push(Property::new("kiln:target", target.as_str()));
    }
    for (name, pinned) in &image.pinned_images {
        properties.push(Property::new(format!("kiln:base:{name}"), pinned.as_str()));
    }

    Ok(Bom {
        schema: SCHEMA.to_owned(),
        bom_format: "CycloneDX".to_owned(),
        spec_version: "1.6".to_owned(),
        serial_number: serial_number(&image.digest),
        version: 1,
        metadata: Metadata {
            timestamp: rfc3339(image.created),
            lifecycles: vec![Lifecycle {
                phase: "build".to_owned(),
            }],
            tools: Tools {
                components: vec![Component {
                    kind: ComponentType::Application,
                    bom_ref: Some("kiln".to_owned()),
                    name: "kiln".to_owned(),
                    version: Some(image.tool_version.clone()).filter(|v| !v.is_empty()),
                    description: Some("daemonless, rootless container image builder".to_owned()),
                    hashes: Vec::new(),
                    licenses: Vec::new(),
                    purl: None,
                    evidence: None,
                    properties: Vec::new(),
                }],
            },
            component: Some(image_component),
            properties,
        },
        components,
        dependencies,
        formulation: formulation(image),
    })
}

/// Writes `bom` as pretty-printed JSON followed by a newline.
pub fn write(bom: &Bom, mut out: impl Write) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut out, bom).map_err(|source| Error::WriteBom { source })?;
    out.write_all(b"\n").map_err(|source| Error::WriteBom {
        source: serde_json::Error::io(source),
    })
}

/// [`write()`] into a byte vector.
pub fn to_vec(bom: &Bom) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(64 * 1024);
    write(bom, &mut bytes)?;
    Ok(bytes)
}

fn package_component(cataloged: CatalogedPackage, layer: Option<&LayerInfo>) -> Component {
    let CatalogedPackage {
        package,
        purl,
        bom_ref,
        evidence,
        ..
    } = cataloged;
    let mut properties = Vec::new();
    if let Some(layer) = layer {
        let fields = [
            ("kiln:layer:digest", &layer.digest),
            ("kiln:layer:diff_id", &layer.diff_id),
            ("kiln:instruction", &layer.created_by),
            ("kiln:source", &layer.source),
            ("kiln:stage", &layer.stage),
            ("kiln:base-image", &layer.base_image),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                properties.push(Property::new(name, value.as_str()));
            }
        }
    }
    if let Some(source) = &package.source_package {
        properties.push(Property::new("kiln:source-package", source.name.as_str()));
        if let Some(version) = &source.version {
            properties.push(Property::new(
                "kiln:source-package:version",
                version.as_str(),
            ));
        }
    }
    for (name, value) in &package.properties {
        properties.push(Property::new(name.as_str(), value.as_str()));
    }
    Component {
        kind: match package.kind {
            ComponentKind::Library => ComponentType::Library,
            ComponentKind::Application => ComponentType::Application,
            ComponentKind::OperatingSystem => ComponentType::OperatingSystem,
        },
        bom_ref: Some(bom_ref),
        name: package.name,
        version: Some(package.version).filter(|version| !version.is_empty()),
        description: package.description,
        hashes: Vec::new(),
        licenses: license_choices(&package.licenses),
        purl,
        evidence: (!evidence.is_empty()).then(|| Evidence {
            occurrences: evidence
                .into_iter()
                .map(|location| Occurrence { location })
                .collect(),
        }),
        properties,
    }
}

/// One expression alone, or a list of licences (expressions mixed with others
/// are kept by name, as the schema allows an expression only on its own).
fn license_choices(licenses: &[License]) -> Vec<LicenseChoice> {
    if let [License::Expression(expression)] = licenses {
        return vec![LicenseChoice::Expression {
            expression: expression.clone(),
        }];
    }
    licenses
        .iter()
        .map(|license| LicenseChoice::License {
            license: match license {
                License::Spdx(id) => LicenseEntry {
                    id: Some(id.clone()),
                    name: None,
                },
                License::Named(name) | License::Expression(name) => LicenseEntry {
                    id: None,
                    name: Some(name.clone()),
                },
            },
        })
        .collect()
}

fn formulation(image: &ImageDescription) -> Vec<Formula> {
    if image.steps.is_empty() {
        return Vec::new();
    }
    let mut tasks: Vec<Task> = Vec::new();
    for (index, step) in image.steps.iter().enumerate() {
        let task_index = match tasks.iter().position(|task| task.name == step.stage) {
            Some(existing) => existing,
            None => {
                tasks.push(Task {
                    bom_ref: format!("kiln:stage:{}", tasks.len()),
                    uid: format!("stage-{}", tasks.len()),
                    name: step.stage.clone(),
                    task_types: vec![TaskType::Build],
                    steps: Vec::new(),
                });
                tasks.len() - 1
            }
        };
        let mut properties = vec![Property::new("kiln:step:index", index.to_string())];
        if let Some(source) = &step.source {
            properties.push(Property::new("kiln:source", source.as_str()));
        }
        if let Some(digest) = &step.layer_digest {
            properties.push(Property::new("kiln:layer:digest", digest.as_str()));
        }
        let keyword = step
            .instruction
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        tasks[task_index].steps.push(Step {
            name: step.source.clone().unwrap_or(keyword),
            commands: vec![Command {
                executed: step.instruction.clone(),
            }],
            properties,
        });
    }
    vec![Formula {
        bom_ref: "kiln:formula".to_owned(),
        workflows: vec![Workflow {
            bom_ref: "kiln:workflow".to_owned(),
            uid: format!("kiln-build:{}", image.digest),
            name: "kiln build".to_owned(),
            task_types: vec![TaskType::Build],
            tasks,
        }],
    }]
}

/// `docker.io/library/debian:bookworm@sha256:…` → (`docker.io/library/debian`, `Some("bookworm")`).
fn split_reference(reference: &str) -> (&str, Option<&str>) {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let last_slash = without_digest.rfind('/').map_or(0, |index| index + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(colon) => (
            &without_digest[..last_slash + colon],
            Some(&without_digest[last_slash + colon + 1..]),
        ),
        None => (without_digest, None),
    }
}

fn sha256_hex<'d>(digest: &'d str, what: &str) -> Result<&'d str, Error> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| Error::InvalidDigest {
            what: what.to_owned(),
            digest: digest.to_owned(),
        })
}

fn sha256_hash(hex: &str) -> Hash {
    Hash {
        alg: "SHA-256".to_owned(),
        content: hex.to_owned(),
    }
}

/// `urn:uuid:` + a version-5-style UUID from SHA-256 of the image digest.
pub fn serial_number(image_digest: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("kiln-sbom\0{image_digest}").as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `seconds` since the Unix epoch as RFC 3339 UTC (`2024-02-29T12:00:00Z`).
pub fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn serial_numbers_are_uuid_shaped_and_digest_bound() {
        let a = serial_number(&format!("sha256:{}", "a".repeat(64)));
        let b = serial_number(&format!("sha256:{}", "b".repeat(64)));
        assert_ne!(a, b);
        assert_eq!(a, serial_number(&format!("sha256:{}", "a".repeat(64))));
        let uuid = a.strip_prefix("urn:uuid:").unwrap();
        let groups: Vec<_> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12]);
        assert_eq!(&uuid[14..15], "5");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(
            split_reference("docker.io/library/debian:bookworm"),
            ("docker.io/library/debian", Some("bookworm"))
        );
        assert_eq!(
            split_reference("localhost:5000/app@sha256:abc"),
            ("localhost:5000/app", None)
        );
        assert_eq!(
            split_reference("localhost:5000/app:1.0@sha256:abc"),
            ("localhost:5000/app", Some("1.0"))
        );
    }

    #[test]
    fn digests_are_checked() {
        let image = ImageDescription {
            repository: "x".to_owned(),
            digest: "sha256:XYZ".to_owned(),
            ..ImageDescription::default()
        };
        assert!(matches!(
            build(&Inventory::default(), &image),
            Err(Error::InvalidDigest { .. })
        ));
    }
}
