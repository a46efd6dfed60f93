//! Validation against the compose-spec JSON schema, embedded in the binary
//! (`compose-spec.json`, Apache-2.0, see `compose-spec.NOTICE`).
//!
//! A small draft-07 interpreter for exactly the keywords that schema uses (`type`, `enum`,
//! `properties`, `patternProperties`, `additionalProperties`, `required`, `items`,
//! `uniqueItems`, `oneOf`, `minimum`, `maximum`, `pattern`, `$ref`), working on the
//! located YAML tree so that every problem names its file, line, column and key path.
//! When no `oneOf` branch matches, the problems of the branch whose type fits the value
//! are reported (so a misspelt `build` key reads "additional property" rather than "does
//! not match any form"). Nodes tagged `!reset` are skipped: they are removed by merging.
//! The test suite checks this validator against the `jsonschema` crate on every fixture.

use std::sync::OnceLock;

use serde_json::Value as J;

use super::diag::{Diagnostic, KeyPath, Problem, suggest};
use super::yaml::{MergeTag, Node, Value};

/// The embedded compose-spec schema, as text.
pub const SCHEMA_TEXT: &str = include_str!("compose-spec.json");

fn schema() -> &'static J {
    static SCHEMA: OnceLock<J> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(SCHEMA_TEXT).expect("the embedded compose-spec.json is valid JSON")
    })
}

/// Validates a whole compose document; returns every problem found (empty when valid).
pub fn validate(document: &Node) -> Vec<Diagnostic> {
    let root = schema();
    let validator = Validator { root };
    let mut problems = Vec::new();
    validator.check(root, document, &KeyPath::root(), &mut problems);
    problems
}

/// Whether `text` matches one of the regular expressions the schema uses. `None` for a
/// pattern this validator does not know (a test keeps that list complete).
pub fn pattern_matches(pattern: &str, text: &str) -> Option<bool> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    Some(match pattern {
        "^x-" => text.starts_with("x-"),
        "^[a-zA-Z0-9._-]+$" => !text.is_empty() && text.chars().all(name_char),
        "^.+$" => !text.is_empty() && !text.contains('\n'),
        ".+" => text.chars().any(|c| c != '\n'),
        "^[a-z]+$" => !text.is_empty() && text.chars().all(|c| c.is_ascii_lowercase()),
        "[a-zA-Z0-9][a-zA-Z0-9_.-]+" => {
            let chars: Vec<char> = text.chars().collect();
            chars
                .windows(2)
                .any(|w| w[0].is_ascii_alphanumeric() && name_char(w[1]))
        }
        "always|never|build|if_not_present|missing|refresh|daily|weekly|every_([0-9]+[wdhms])+" => {
            [
                "always",
                "never",
                "build",
                "if_not_present",
                "missing",
                "refresh",
                "daily",
                "weekly",
            ]
            .iter()
            .any(|word| text.contains(word))
                || text.match_indices("every_").any(|(i, _)| {
                    let rest = &text.as_bytes()[i + "every_".len()..];
                    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    digits > 0 && matches!(rest.get(digits), Some(b'w' | b'd' | b'h' | b'm' | b's'))
                })
        }
        _ => return None,
    })
}

struct Validator<'s> {
    root: &'s J,
}

fn describe_type(name: &str) -> &'static str {
    match name {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        "null" => "null",
        _ => "a value",
    }
}

fn describe_found(node: &Node) -> &'static str {
    describe_type(node.type_name())
}

fn type_names(types: &J) -> Vec<&str> {
    match types {
        J::String(t) => vec![t.as_str()],
        J::Array(ts) => ts.iter().filter_map(J::as_str).collect(),
        _ => Vec::new(),
    }
}

fn type_accepts(name: &str, node: &Node) -> bool {
    match (name, &node.value) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("string", Value::String(_))
        | ("array", Value::Sequence(_))
        | ("object", Value::Mapping(_))
        | ("integer" | "number", Value::Int(_))
        | ("number", Value::Float(_)) => true,
        ("integer", Value::Float(f)) => f.is_finite() && f.fract() == 0.0,
        _ => false,
    }
}

fn json_equals(schema_value: &J, node: &Node) -> bool {
    match (schema_value, &node.value) {
        (J::Null, Value::Null) => true,
        (J::Bool(a), Value::Bool(b)) => a == b,
        (J::String(a), Value::String(b)) => a == b,
        (J::Number(a), Value::Int(b)) => a.as_f64() == Some(*b as f64),
        (J::Number(a), Value::Float(b)) => a.as_f64() == Some(*b),
        (J::Array(a), Value::Sequence(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equals(x, y))
        }
        (J::Object(a), Value::Mapping(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|node| json_equals(v, node)))
        }
        _ => false,
    }
}

fn number_of(node: &Node) -> Option<f64> {
    match node.value {
        Value::Int(i) => Some(i as f64),
        Value::Float(f) => Some(f),
        _ => None,
    }
}

fn is_reset(node: &Node) -> bool {
    node.tag == Some(MergeTag::Reset)
}

impl<'s> Validator<'s> {
    /// Follows `$ref` (only local `#/definitions/...` references occur).
    fn resolve(&self, mut schema: &'s J) -> &'s J {
        while let Some(reference) = schema.get("$ref").and_then(J::as_str) {
            let target = reference
                .strip_prefix("#/")
                .map(|pointer| format!("/{pointer}"))
                .and_then(|pointer| self.root.pointer(&pointer));
            match target {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    /// The type names a (resolved) schema accepts, looking through a `oneOf`.
    fn accepted_types(&self, schema: &'s J) -> Vec<&'s str> {
        let schema = self.resolve(schema);
        if let Some(types) = schema.get("type") {
            return type_names(types);
        }
        if let Some(J::Array(branches)) = schema.get("oneOf") {
            return branches
                .iter()
                .flat_map(|b| self.accepted_types(b))
                .collect();
        }
        Vec::new()
    }

    fn check(&self, schema: &'s J, node: &Node, path: &KeyPath, out: &mut Vec<Diagnostic>) {
        let schema = self.resolve(schema);
        let schema = match schema {
            J::Bool(true) => return,
            J::Bool(false) => {
                out.push(Diagnostic::new(
                    &node.location,
                    path,
                    Problem::NoMatchingForm {
                        forms: "nothing is allowed here".to_owned(),
                    },
                ));
                return;
            }
            J::Object(map) => map,
            _ => return,
        };

        if let Some(types) = schema.get("type") {
            let names = type_names(types);
            if !names.iter().any(|t| type_accepts(t, node)) {
                out.push(Diagnostic::new(
                    &node.location,
                    path,
                    Problem::WrongType {
                        expected: join_or(names.iter().map(|t| describe_type(t))),
                        found: describe_found(node),
                    },
                ));
                return;
            }
        }

        if let Some(J::Array(allowed)) = schema.get("enum")
            && !allowed.iter().any(|v| json_equals(v, node))
        {
            out.push(Diagnostic::new(
                &node.location,
                path,
                Problem::NotInEnum {
                    allowed: allowed.iter().map(|v| v.to_string()).collect(),
                },
            ));
        }

        match &node.value {
            Value::Mapping(mapping) => {
                let properties = schema.get("properties").and_then(J::as_object);
                let patterns = schema.get("patternProperties").and_then(J::as_object);
                let additional = schema.get("additionalProperties");
                for entry in &mapping.entries {
                    if is_reset(&entry.value) {
                        continue;
                    }
                    let child = path.key(&entry.key);
                    let mut matched = false;
                    if let Some(sub) = properties.and_then(|p| p.get(&entry.key)) {
                        matched = true;
                        self.check(sub, &entry.value, &child, out);
                    }
                    for (pattern, sub) in patterns.into_iter().flatten() {
                        if pattern_matches(pattern, &entry.key).unwrap_or(true) {
                            matched = true;
                            self.check(sub, &entry.value, &child, out);
                        }
                    }
                    if matched {
                        continue;
                    }
                    match additional {
                        Some(J::Bool(false)) => {
                            let problem = if properties.is_none() && patterns.is_some() {
                                // Only name patterns are allowed here (e.g. service names).
                                let pattern = patterns
                                    .and_then(|p| p.keys().find(|k| k.as_str() != "^x-"))
                                    .cloned()
                                    .unwrap_or_default();
                                Problem::KeyPatternMismatch {
                                    key: entry.key.clone(),
                                    pattern,
                                }
                            } else {
                                Problem::UnknownProperty {
                                    name: entry.key.clone(),
                                    suggestion: properties.and_then(|p| {
                                        suggest(&entry.key, p.keys().map(String::as_str))
                                    }),
                                }
                            };
                            out.push(Diagnostic::new(&entry.key_location, path, problem));
                        }
                        Some(sub @ J::Object(_)) => self.check(sub, &entry.value, &child, out),
                        _ => {}
                    }
                }
                if let Some(J::Array(required)) = schema.get("required") {
                    for name in required.iter().filter_map(J::as_str) {
                        let present = mapping.get(name).is_some_and(|v| !is_reset(v));
                        if !present {
                            out.push(Diagnostic::new(
                                &node.location,
                                path,
                                Problem::MissingProperty {
                                    name: name.to_owned(),
                                },
                            ));
                        }
                    }
                }
            }
            Value::Sequence(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &path.index(i), out);
                    }
                }
                if schema.get("uniqueItems") == Some(&J::Bool(true)) {
                    'outer: for (j, item) in items.iter().enumerate() {
                        for (i, earlier) in items[..j].iter().enumerate() {
                            if earlier.same_value(item) {
                                out.push(Diagnostic::new(
                                    &item.location,
                                    path,
                                    Problem::DuplicateItem {
                                        first: i,
                                        duplicate: j,
                                    },
                                ));
                                continue 'outer;
                            }
                        }
                    }
                }
            }
            Value::String(text) => {
                if let Some(pattern) = schema.get("pattern").and_then(J::as_str)
                    && !pattern_matches(pattern, text).unwrap_or(true)
                {
                    out.push(Diagnostic::new(
                        &node.location,
                        path,
                        Problem::PatternMismatch {
                            value: text.clone(),
                            pattern: pattern.to_owned(),
                        },
                    ));
                }
            }
            Value::Int(_) | Value::Float(_) => {
                let number = number_of(node).unwrap_or_default();
                if let Some(minimum) = schema.get("minimum").and_then(J::as_f64)
                    && number < minimum
                {
                    out.push(Diagnostic::new(
                        &node.location,
                        path,
                        Problem::BelowMinimum {
                            minimum: schema["minimum"].to_string(),
                        },
                    ));
                }
                if let Some(maximum) = schema.get("maximum").and_then(J::as_f64)
                    && number > maximum
                {
                    out.push(Diagnostic::new(
                        &node.location,
                        path,
                        Problem::AboveMaximum {
                            maximum: schema["maximum"].to_string(),
                        },
                    ));
                }
            }
            Value::Null | Value::Bool(_) => {}
        }

        if let Some(J::Array(branches)) = schema.get("oneOf") {
            self.check_one_of(branches, node, path, out);
        }
    }

    fn check_one_of(
        &self,
        branches: &'s [J],
        node: &Node,
        path: &KeyPath,
        out: &mut Vec<Diagnostic>,
    ) {
        let results: Vec<Vec<Diagnostic>> = branches
            .iter()
            .map(|branch| {
                let mut problems = Vec::new();
                self.check(branch, node, path, &mut problems);
                problems
            })
            .collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid == 1 {
            return;
        }
        if valid > 1 {
            out.push(Diagnostic::new(
                &node.location,
                path,
                Problem::AmbiguousForm,
            ));
            return;
        }
        // Report the branch meant for this kind of value, with the fewest problems.
        let fitting = branches
            .iter()
            .zip(&results)
            .filter(|(branch, _)| {
                let types = self.accepted_types(branch);
                types.is_empty() || types.iter().any(|t| type_accepts(t, node))
            })
            .min_by_key(|(_, problems)| problems.len());
        match fitting {
            Some((_, problems)) => out.extend(problems.iter().cloned()),
            None => {
                let forms: Vec<&str> = branches
                    .iter()
                    .flat_map(|b| self.accepted_types(b))
                    .map(describe_type)
                    .collect();
                out.push(Diagnostic::new(
                    &node.location,
                    path,
                    Problem::WrongType {
                        expected: join_or(dedup(forms).into_iter()),
                        found: describe_found(node),
                    },
                ));
            }
        }
    }
}

fn dedup(mut items: Vec<&str>) -> Vec<&str> {
    let mut seen = Vec::new();
    items.retain(|item| {
        if seen.contains(item) {
            false
        } else {
            seen.push(*item);
            true
        }
    });
    items
}

fn join_or<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    match items.as_slice() {
        [] => "a value".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::compose::diag::SourceFile;
    use crate::frontend::compose::yaml::parse_documents;
    use std::path::{Path, PathBuf};

    fn problems(text: &str) -> Vec<String> {
        let file = SourceFile::new(PathBuf::from("/p/compose.yaml"), Path::new("/p"));
        let doc = parse_documents(text, &file).unwrap().remove(0);
        validate(&doc).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_schema_pattern_is_known() {
        fn walk(value: &J, found: &mut Vec<String>) {
            match value {
                J::Object(map) => {
                    for (key, child) in map {
                        if key == "pattern"
                            && let J::String(p) = child
                        {
                            found.push(p.clone());
                        }
                        if key == "patternProperties"
                            && let J::Object(patterns) = child
                        {
                            found.extend(patterns.keys().cloned());
                        }
                        walk(child, found);
                    }
                }
                J::Array(items) => items.iter().for_each(|i| walk(i, found)),
                _ => {}
            }
        }
        let mut patterns = Vec::new();
        walk(schema(), &mut patterns);
        assert!(patterns.len() > 10);
        for pattern in patterns {
            assert!(
                pattern_matches(&pattern, "x").is_some(),
                "pattern {pattern:?} has no matcher"
            );
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(pattern_matches("^x-", "x-kiln"), Some(true));
        assert_eq!(pattern_matches("^x-", "kiln"), Some(false));
        assert_eq!(
            pattern_matches("^[a-zA-Z0-9._-]+$", "api_1.b-c"),
            Some(true)
        );
        assert_eq!(pattern_matches("^[a-zA-Z0-9._-]+$", "api/1"), Some(false));
        let pull =
            "always|never|build|if_not_present|missing|refresh|daily|weekly|every_([0-9]+[wdhms])+";
        assert_eq!(pattern_matches(pull, "every_12h"), Some(true));
        assert_eq!(pattern_matches(pull, "every_h"), Some(false));
        assert_eq!(pattern_matches(pull, "sometimes"), Some(false));
        assert_eq!(
            pattern_matches("[a-zA-Z0-9][a-zA-Z0-9_.-]+", "a"),
            Some(false)
        );
        assert_eq!(
            pattern_matches("[a-zA-Z0-9][a-zA-Z0-9_.-]+", "/ab"),
            Some(true)
        );
    }

    #[test]
    fn valid_document() {
        let text = "services:\n  api:\n    build:\n      context: .\n      args: [A=1]\n    ports: ['80:80', 443]\n";
        assert!(problems(text).is_empty(), "{:?}", problems(text));
    }

    #[test]
    fn located_messages() {
        assert_eq!(
            problems("services:\n  api:\n    build:\n      dockerfil: x\n"),
            [
                "compose.yaml:4:7: services.api.build: additional property \"dockerfil\" is not allowed (did you mean \"dockerfile\"?)"
            ]
        );
        assert_eq!(
            problems("services:\n  api:\n    ports: {a: 1}\n"),
            ["compose.yaml:3:12: services.api.ports: must be a list, found a mapping"]
        );
        assert_eq!(
            problems("services:\n  api:\n    depends_on:\n      db: {}\n"),
            [
                "compose.yaml:4:11: services.api.depends_on.db: missing required property \"condition\""
            ]
        );
        assert_eq!(
            problems("services:\n  api:\n    environment: [A, A]\n"),
            [
                "compose.yaml:3:22: services.api.environment: item 1 duplicates item 0; items must be unique"
            ]
        );
        assert_eq!(
            problems("services:\n  bad/name:\n    image: x\n"),
            [
                "compose.yaml:2:3: services: key \"bad/name\" is not allowed here (must match \"^[a-zA-Z0-9._-]+$\")"
            ]
        );
        assert_eq!(
            problems("services:\n  api:\n    build: [a]\n"),
            ["compose.yaml:3:12: services.api.build: must be a string or a mapping, found a list"]
        );
    }

    #[test]
    fn reset_nodes_are_skipped() {
        assert!(problems("services:\n  api:\n    build: !reset null\n").is_empty());
    }
}
