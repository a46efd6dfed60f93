//! Findings rendered for people and machines.
//!
//! - [`text`]: `file:line:col: severity rule-id message`, then an indented
//!   `hint:` line, per finding.
//! - [`json`]: `{"findings": [{file, line, column, severity, rule, message,
//!   hint}…]}`.
//! - [`sarif`]: a SARIF 2.1.0 log with one run whose driver lists every rule of
//!   [`RULES`]; what GitHub code scanning reads (`ruleId`, `level`,
//!   `locations[].physicalLocation.artifactLocation.uri` and
//!   `region.startLine`/`startColumn`).

use std::fmt::Write as _;

use serde::Serialize;

use super::{Finding, RULES, Severity};

/// The text report (empty when there are no findings).
pub fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        if f.line == 0 {
            let _ = writeln!(out, "{}: {} {} {}", f.file, f.severity, f.rule, f.message);
        } else {
            let _ = writeln!(
                out,
                "{}:{}:{}: {} {} {}",
                f.file, f.line, f.column, f.severity, f.rule, f.message
            );
        }
        let _ = writeln!(out, "  hint: {}", f.hint);
    }
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    findings: &'a [Finding],
}

/// The JSON report.
pub fn json(findings: &[Finding]) -> serde_json::Value {
    serde_json::to_value(JsonReport { findings }).expect("findings serialise")
}

/// The SARIF schema URI written in `$schema`.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifLog {
    #[serde(rename = "$schema")]
    pub schema: &'static str,
    pub version: &'static str,
    pub runs: Vec<SarifRun>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifRun {
    pub tool: SarifTool,
    pub results: Vec<SarifResult>,
}

#[derive(Debug, Serialize)]
pub struct SarifTool {
    pub driver: SarifDriver,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifDriver {
    pub name: &'static str,
    pub version: String,
    pub information_uri: &'static str,
    pub rules: Vec<SarifRule>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifRule {
    pub id: &'static str,
    pub name: String,
    pub short_description: SarifText,
    pub help: SarifText,
    pub default_configuration: SarifConfiguration,
}

#[derive(Debug, Serialize)]
pub struct SarifText {
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct SarifConfiguration {
    pub level: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifResult {
    pub rule_id: &'static str,
    pub rule_index: usize,
    pub level: &'static str,
    pub message: SarifText,
    pub locations: Vec<SarifLocation>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifLocation {
    pub physical_location: SarifPhysicalLocation,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifPhysicalLocation {
    pub artifact_location: SarifArtifactLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<SarifRegion>,
}

#[derive(Debug, Serialize)]
pub struct SarifArtifactLocation {
    pub uri: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifRegion {
    pub start_line: usize,
    pub start_column: usize,
}

/// SARIF's `level` for a severity (`info` is SARIF's `note`).
pub fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// A file name as a relative URI reference: `/` separators, and characters
/// outside RFC 3986's unreserved and path set percent-encoded.
fn uri(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for byte in file.replace('\\', "/").bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The SARIF log for `findings`; `version` is kiln's.
pub fn sarif(findings: &[Finding], version: &str) -> SarifLog {
    let rules = RULES
        .iter()
        .map(|rule| SarifRule {
            id: rule.id,
            name: rule
                .id
                .rsplit('/')
                .next()
                .unwrap_or(rule.id)
                .split('-')
                .map(|w| {
                    let mut chars = w.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect(),
            short_description: SarifText {
                text: rule.summary.to_owned(),
            },
            help: SarifText {
                text: rule.hint.to_owned(),
            },
            default_configuration: SarifConfiguration {
                level: sarif_level(rule.severity),
            },
        })
        .collect();
    let results = findings
        .iter()
        .map(|f| SarifResult {
            rule_id: f.rule,
            rule_index: RULES.iter().position(|r| r.id == f.rule).unwrap_or(0),
            level: sarif_level(f.severity),
            message: SarifText {
                text: format!("{} (hint: {})", f.message, f.hint),
            },
            locations: vec![SarifLocation {
                physical_location: SarifPhysicalLocation {
                    artifact_location: SarifArtifactLocation { uri: uri(&f.file) },
                    // Whole-file findings have no region; GitHub then marks line 1.
                    region: (f.line > 0).then_some(SarifRegion {
                        start_line: f.line,
                        start_column: f.column.max(1),
                    }),
                },
            }],
        })
        .collect();
    SarifLog {
        schema: SARIF_SCHEMA,
        version: "2.1.0",
        runs: vec![SarifRun {
            tool: SarifTool {
                driver: SarifDriver {
                    name: "kiln",
                    version: version.to_owned(),
                    information_uri: env!("CARGO_PKG_REPOSITORY"),
                    rules,
                },
            },
            results,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_encoded() {
        assert_eq!(uri("web/Dockerfile"), "web/Dockerfile");
        assert_eq!(uri("my app/compose.yaml"), "my%20app/compose.yaml");
    }

    #[test]
    fn text_has_a_hint_line() {
        let f = Finding::new(
            "compose/restart-policy",
            "compose.yaml",
            3,
            3,
            "service db has no restart policy",
        );
        assert_eq!(
            text(&[f]),
            "compose.yaml:3:3: warning compose/restart-policy service db has no restart policy\n  hint: set restart: unless-stopped (or on-failure, or \"no\" for one-shot jobs) so a crash or a host reboot does not leave it down\n"
        );
    }
}
