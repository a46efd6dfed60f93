//! Serde types for the parts of CycloneDX 1.6 JSON that kiln writes.
//!
//! Written by hand because the `cyclonedx-bom` crate (0.8) writes only spec
//! versions 1.3–1.5 and pulls in some 45 crates. Field names and shapes follow
//! `bom-1.6.schema.json`; the tests validate every document against it. Empty
//! lists and absent values are left out, so the output has no `null`s.

use serde::Serialize;

/// The BOM document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    /// The JSON schema of the document.
    #[serde(rename = "$schema")]
    pub schema: String,
    /// Always `CycloneDX`.
    pub bom_format: String,
    /// Always `1.6`.
    pub spec_version: String,
    /// `urn:uuid:…`.
    pub serial_number: String,
    /// Revision of this BOM (1).
    pub version: u32,
    /// About the BOM and its subject.
    pub metadata: Metadata,
    /// The packages and base images.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    /// Who depends on whom, by `bom-ref`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<DependencyEntry>,
    /// How the subject was built.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub formulation: Vec<Formula>,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metadata {
    /// RFC 3339 creation time.
    pub timestamp: String,
    /// Lifecycle phases the data was captured in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lifecycles: Vec<Lifecycle>,
    /// Tools that made the BOM.
    pub tools: Tools,
    /// The subject: the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<Component>,
    /// Build arguments, Dockerfile digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

/// A pre-defined lifecycle phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// `build`, `post-build`, …
    pub phase: String,
}

/// `metadata.tools` in the 1.5+ object form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tools {
    /// The tools as components.
    pub components: Vec<Component>,
}

/// The CycloneDX component types kiln uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentType {
    /// A program.
    Application,
    /// A library or package.
    Library,
    /// A container image.
    Container,
    /// A distribution.
    OperatingSystem,
}

/// A component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ComponentType,
    /// Unique reference within the BOM.
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    /// Name.
    pub name: String,
    /// Version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// One-line description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Digests (images).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    /// Licences: several `license` entries, or exactly one `expression`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseChoice>,
    /// Package URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// Where it was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Name/value facts (`kiln:layer:digest`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

/// A digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hash {
    /// Algorithm name (`SHA-256`).
    pub alg: String,
    /// Hex digest.
    pub content: String,
}

/// One item of a licence choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LicenseChoice {
    /// A single licence by SPDX id or name.
    License {
        /// The licence.
        license: LicenseEntry,
    },
    /// An SPDX expression (must be the only item).
    Expression {
        /// The expression.
        expression: String,
    },
}

/// A licence by SPDX id or by name (exactly one is set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenseEntry {
    /// SPDX licence id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free-form licence name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `evidence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Files that prove the component.
    pub occurrences: Vec<Occurrence>,
}

/// One place a component was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// Path inside the image.
    pub location: String,
}

/// A name/value property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Property {
    /// Name (`kiln:…`).
    pub name: String,
    /// Value.
    pub value: String,
}

impl Property {
    /// A property.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// One node of the dependency graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyEntry {
    /// The dependent's `bom-ref`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `bom-ref`s it depends on.
    #[serde(rename = "dependsOn", skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// `formulation[]`: how the subject was formed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Formula {
    /// Unique reference.
    #[serde(rename = "bom-ref")]
    pub bom_ref: String,
    /// The build.
    pub workflows: Vec<Workflow>,
}

/// A workflow: the whole build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    /// Unique reference.
    #[serde(rename = "bom-ref")]
    pub bom_ref: String,
    /// Identifier of this build.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Always `build`.
    pub task_types: Vec<TaskType>,
    /// One task per build stage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
}

/// A task: one build stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Unique reference.
    #[serde(rename = "bom-ref")]
    pub bom_ref: String,
    /// Identifier within the workflow.
    pub uid: String,
    /// Stage name.
    pub name: String,
    /// Always `build`.
    pub task_types: Vec<TaskType>,
    /// The stage's instructions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

/// A step: one instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Where the instruction is, or the instruction's keyword.
    pub name: String,
    /// The instruction.
    pub commands: Vec<Command>,
    /// Step index, source, layer digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

/// A command of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    /// The instruction text.
    pub executed: String,
}

/// CycloneDX task types kiln uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskType {
    /// Building.
    Build,
}
