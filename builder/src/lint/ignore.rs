//! Inline ignore comments: `# kiln-lint ignore=RULE[,RULE]`.
//!
//! - Dockerfile: in the comment lines directly above an instruction; it covers
//!   the findings located on that instruction (all its lines).
//! - Compose: a YAML comment line directly above a key (blank lines and other
//!   comments may come between); it covers that key and everything nested under
//!   it, so a comment above a service silences a rule for the whole service.
//!
//! Rule ids are matched exactly; unknown ids are kept (and simply match
//! nothing), so a comment written for a newer kiln does not break an older one.

use std::collections::BTreeSet;

const MARKER: &str = "kiln-lint";

/// The rule ids of an ignore comment; `comment` is the text after `#`.
pub fn parse_comment(comment: &str) -> Option<BTreeSet<String>> {
    let rest = comment.trim().strip_prefix(MARKER)?;
    let rest = rest.trim_start().strip_prefix("ignore")?;
    let rest = rest.trim_start().strip_prefix('=')?;
    // The list ends at whitespace: what follows may be a reason.
    let list = rest.split_whitespace().next().unwrap_or("");
    let ids: BTreeSet<String> = list
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// Line ranges of a YAML file covered by ignore comments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlIgnores {
    /// (first line, last line, rule ids), 1-based, inclusive.
    scopes: Vec<(usize, usize, BTreeSet<String>)>,
}

impl YamlIgnores {
    /// Finds the ignore comments of a YAML text and the lines each one covers:
    /// the next content line and the lines after it that are indented deeper
    /// (or are blank or comments), i.e. that key's block.
    pub fn scan(text: &str) -> YamlIgnores {
        let lines: Vec<&str> = text.lines().collect();
        let mut scopes = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let Some(comment) = trimmed.strip_prefix('#') else {
                continue;
            };
            let Some(ids) = parse_comment(comment) else {
                continue;
            };
            let Some(target) = (i + 1..lines.len()).find(|&j| !is_blank_or_comment(lines[j]))
            else {
                continue;
            };
            let indent = indentation(lines[target]);
            let mut last = target;
            for (j, line) in lines.iter().enumerate().skip(target + 1) {
                if is_blank_or_comment(line) {
                    continue;
                }
                // A sequence item at the key's own indentation still belongs to it
                // (`key:\n- item` is valid YAML).
                let deeper = indentation(line) > indent
                    || (indentation(line) == indent
                        && line.trim_start().starts_with("- ")
                        && !lines[target].trim_start().starts_with("- "));
                if !deeper {
                    break;
                }
                last = j;
            }
            scopes.push((target + 1, last + 1, ids));
        }
        YamlIgnores { scopes }
    }

    /// Whether `rule` is ignored on `line`.
    pub fn covers(&self, line: usize, rule: &str) -> bool {
        self.scopes
            .iter()
            .any(|(first, last, ids)| (*first..=*last).contains(&line) && ids.contains(rule))
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.is_empty() || trimmed.starts_with('#')
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments() {
        let ids = parse_comment(
            " kiln-lint ignore=dockerfile/base-digest,dockerfile/base-tag  reason: vendored",
        )
        .unwrap();
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["dockerfile/base-digest", "dockerfile/base-tag"]
        );
        assert_eq!(parse_comment("kiln-lint ignore="), None);
        assert_eq!(parse_comment("hadolint ignore=DL3008"), None);
    }

    #[test]
    fn yaml_scopes_cover_the_key_block() {
        let text = "services:\n  # kiln-lint ignore=compose/restart-policy\n  db:\n    image: postgres\n\n    ports:\n    - 5432:5432\n  web:\n    image: nginx\n";
        let ignores = YamlIgnores::scan(text);
        assert!(ignores.covers(3, "compose/restart-policy"));
        assert!(ignores.covers(7, "compose/restart-policy"));
        assert!(!ignores.covers(8, "compose/restart-policy"));
        assert!(!ignores.covers(4, "compose/image-tag"));
    }
}
