//! Compose's merge rules, used for several `-f` files, override files and `extends`.
//!
//! As in compose-go: mappings merge recursively, later values win for scalars, and
//! sequences are appended, except where a rule says otherwise:
//! - `build` given as a string is read as `{context: ...}` before merging;
//! - `environment`, `labels`, `annotations`, `sysctls`, `extra_hosts`, `build.args`,
//!   `build.labels`, `build.additional_contexts`, `build.extra_hosts` and resource `labels`
//!   merge as maps by key, whether written as lists (`K=V`) or maps;
//! - `command`, `entrypoint` and `healthcheck.test` are replaced;
//! - `depends_on` and a service's `networks` merge as maps (lists are read as maps);
//! - `logging` is replaced when the driver changes; a `ulimits` entry is replaced when
//!   either side is a single number;
//! - `dns`, `dns_opt`, `dns_search`, `env_file`, `label_file` and `tmpfs` accept a string or
//!   a list and are appended;
//! - `x-*` extension keys are replaced, not merged;
//! - a value tagged `!reset` removes the key; `!override` replaces without merging.
//!
//! After merging, [`enforce_unicity`] removes duplicates from the sequences Compose keys:
//! `ports` by host ip, published port, target and protocol; `volumes`, `devices`,
//! `secrets` and `configs` by target; `expose`, `dns`, `cap_add`, `profiles`, tags and
//! `K=V` lists by key. A later duplicate replaces the earlier one in place.
//!
//! Nothing here fails: the schema has checked shapes before merging.

use super::yaml::{Entry, Mapping, MergeTag, Node, Value};

/// Merges `over` into `base` at the document root.
pub fn merge_documents(base: Node, over: Node) -> Node {
    merge(base, over, &mut Vec::new())
}

/// Merges a service definition `over` (the extending one) onto `base` (its `extends`
/// target), applying the same rules as between files.
pub fn merge_service(base: Node, over: Node, name: &str) -> Node {
    merge(
        base,
        over,
        &mut vec!["services".to_owned(), name.to_owned()],
    )
}

/// Removes `!reset` entries and clears merge tags in a tree that is not merged onto
/// anything (the first file, a new service), so tags never leak into the model.
pub fn strip_merge_tags(node: &mut Node) {
    node.tag = None;
    match &mut node.value {
        Value::Mapping(mapping) => {
            mapping
                .entries
                .retain(|e| e.value.tag != Some(MergeTag::Reset));
            for entry in &mut mapping.entries {
                strip_merge_tags(&mut entry.value);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(strip_merge_tags),
        _ => {}
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rule {
    Build,
    AsMap,
    Replace,
    DependsOn,
    Networks,
    Logging,
    Ulimit,
    StringOrList,
}

const RULES: &[(&[&str], Rule)] = &[
    (&["services", "*", "build"], Rule::Build),
    (&["services", "*", "build", "args"], Rule::AsMap),
    (&["services", "*", "build", "labels"], Rule::AsMap),
    (
        &["services", "*", "build", "additional_contexts"],
        Rule::AsMap,
    ),
    (&["services", "*", "build", "extra_hosts"], Rule::AsMap),
    (&["services", "*", "environment"], Rule::AsMap),
    (&["services", "*", "labels"], Rule::AsMap),
    (&["services", "*", "annotations"], Rule::AsMap),
    (&["services", "*", "sysctls"], Rule::AsMap),
    (&["services", "*", "extra_hosts"], Rule::AsMap),
    (&["services", "*", "deploy", "labels"], Rule::AsMap),
    (&["networks", "*", "labels"], Rule::AsMap),
    (&["volumes", "*", "labels"], Rule::AsMap),
    (&["secrets", "*", "labels"], Rule::AsMap),
    (&["configs", "*", "labels"], Rule::AsMap),
    (&["services", "*", "command"], Rule::Replace),
    (&["services", "*", "entrypoint"], Rule::Replace),
    (&["services", "*", "healthcheck", "test"], Rule::Replace),
    (&["services", "*", "depends_on"], Rule::DependsOn),
    (&["services", "*", "networks"], Rule::Networks),
    (&["services", "*", "logging"], Rule::Logging),
    (&["services", "*", "ulimits", "*"], Rule::Ulimit),
    (&["services", "*", "dns"], Rule::StringOrList),
    (&["services", "*", "dns_opt"], Rule::StringOrList),
    (&["services", "*", "dns_search"], Rule::StringOrList),
    (&["services", "*", "env_file"], Rule::StringOrList),
    (&["services", "*", "label_file"], Rule::StringOrList),
    (&["services", "*", "tmpfs"], Rule::StringOrList),
];

fn path_matches(pattern: &[&str], path: &[String]) -> bool {
    pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, s)| *p == "*" || p == s)
}

fn rule_for(path: &[String]) -> Option<Rule> {
    RULES
        .iter()
        .find(|(pattern, _)| path_matches(pattern, path))
        .map(|(_, rule)| *rule)
}

fn merge(base: Node, mut over: Node, path: &mut Vec<String>) -> Node {
    if over.tag == Some(MergeTag::Override) {
        strip_merge_tags(&mut over);
        return over;
    }
    match rule_for(path) {
        Some(Rule::Replace) => {
            strip_merge_tags(&mut over);
            over
        }
        Some(Rule::Build) => merge_default(string_as_context(base), string_as_context(over), path),
        Some(Rule::AsMap) => {
            let mut merged = as_map(base);
            let over = as_map(over);
            if let (Value::Mapping(target), Value::Mapping(source)) =
                (&mut merged.value, over.value)
            {
                for entry in source.entries {
                    if entry.value.tag == Some(MergeTag::Reset) {
                        target.remove(&entry.key);
                    } else {
                        target.insert(entry.key, entry.key_location, entry.value);
                    }
                }
            }
            strip_merge_tags(&mut merged);
            merged
        }
        Some(Rule::DependsOn) => merge_default(depends_on_map(base), depends_on_map(over), path),
        Some(Rule::Networks) => merge_default(list_as_null_map(base), list_as_null_map(over), path),
        Some(Rule::Logging) => {
            let driver = |n: &Node| n.get("driver").and_then(|d| d.scalar_text());
            match (driver(&base), driver(&over)) {
                (Some(a), Some(b)) if a != b => {
                    strip_merge_tags(&mut over);
                    over
                }
                _ => merge_default(base, over, path),
            }
        }
        Some(Rule::Ulimit) => {
            if base.as_mapping().is_none() || over.as_mapping().is_none() {
                strip_merge_tags(&mut over);
                over
            } else {
                merge_default(base, over, path)
            }
        }
        Some(Rule::StringOrList) => merge_default(string_as_list(base), string_as_list(over), path),
        None => merge_default(base, over, path),
    }
}

fn merge_default(base: Node, mut over: Node, path: &mut Vec<String>) -> Node {
    match (base.value, over.value) {
        (Value::Mapping(mut target), Value::Mapping(source)) => {
            for entry in source.entries {
                merge_entry(&mut target, entry, path);
            }
            Node {
                value: Value::Mapping(target),
                location: base.location,
                tag: None,
            }
        }
        (Value::Sequence(mut items), Value::Sequence(more)) => {
            for mut item in more {
                strip_merge_tags(&mut item);
                items.push(item);
            }
            Node {
                value: Value::Sequence(items),
                location: base.location,
                tag: None,
            }
        }
        (_, value) => {
            over.value = value;
            strip_merge_tags(&mut over);
            over
        }
    }
}

fn merge_entry(target: &mut Mapping, mut entry: Entry, path: &mut Vec<String>) {
    if entry.value.tag == Some(MergeTag::Reset) {
        target.remove(&entry.key);
        return;
    }
    let existing = if entry.key.starts_with("x-") {
        None
    } else {
        target.entries.iter().position(|e| e.key == entry.key)
    };
    match existing {
        Some(index) => {
            let base = std::mem::replace(
                &mut target.entries[index].value,
                Node::new(Value::Null, entry.key_location.clone()),
            );
            path.push(entry.key.clone());
            let merged = merge(base, entry.value, path);
            path.pop();
            target.entries[index].value = merged;
        }
        None => {
            strip_merge_tags(&mut entry.value);
            target.insert(entry.key, entry.key_location, entry.value);
        }
    }
}

fn string_as_context(node: Node) -> Node {
    match node.value {
        Value::String(_) => {
            let location = node.location.clone();
            let tag = node.tag;
            let mut mapping = Mapping::default();
            mapping.insert(
                "context".to_owned(),
                location.clone(),
                Node { tag: None, ..node },
            );
            Node {
                value: Value::Mapping(mapping),
                location,
                tag,
            }
        }
        _ => node,
    }
}

fn string_as_list(node: Node) -> Node {
    match node.value {
        Value::String(_) => {
            let location = node.location.clone();
            let tag = node.tag;
            Node {
                value: Value::Sequence(vec![Node { tag: None, ..node }]),
                location,
                tag,
            }
        }
        _ => node,
    }
}

/// Splits `K=V` (or, for `extra_hosts`, `host:ip`) into key and value.
fn split_key_value(text: &str) -> (&str, Option<&str>) {
    match text.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (text, None),
    }
}

/// A `K=V` list as a mapping (`K` alone gives a null value); mappings stay as they are.
pub fn as_map(node: Node) -> Node {
    let Value::Sequence(items) = node.value else {
        return node;
    };
    let mut mapping = Mapping::default();
    for item in items {
        let Some(text) = item.scalar_text() else {
            continue;
        };
        let (key, value) = split_key_value(&text);
        let value = match value {
            Some(v) => Node::string(v, item.location.clone()),
            None => Node::new(Value::Null, item.location.clone()),
        };
        mapping.insert(key.to_owned(), item.location, value);
    }
    Node {
        value: Value::Mapping(mapping),
        location: node.location,
        tag: node.tag,
    }
}

fn list_as_null_map(node: Node) -> Node {
    let Value::Sequence(items) = node.value else {
        return node;
    };
    let mut mapping = Mapping::default();
    for item in items {
        if let Some(name) = item.scalar_text() {
            mapping.insert(
                name,
                item.location.clone(),
                Node::new(Value::Null, item.location),
            );
        }
    }
    Node {
        value: Value::Mapping(mapping),
        location: node.location,
        tag: node.tag,
    }
}

/// `depends_on: [a]` as `{a: {condition: service_started, required: true}}`.
pub fn depends_on_map(node: Node) -> Node {
    let Value::Sequence(items) = node.value else {
        return node;
    };
    let mut mapping = Mapping::default();
    for item in items {
        if let Some(name) = item.scalar_text() {
            let location = item.location.clone();
            let mut condition = Mapping::default();
            condition.insert(
                "condition".to_owned(),
                location.clone(),
                Node::string("service_started", location.clone()),
            );
            condition.insert(
                "required".to_owned(),
                location.clone(),
                Node::new(Value::Bool(true), location.clone()),
            );
            mapping.insert(
                name,
                location.clone(),
                Node::new(Value::Mapping(condition), location),
            );
        }
    }
    Node {
        value: Value::Mapping(mapping),
        location: node.location,
        tag: node.tag,
    }
}

// ---------------------------------------------------------------------------------------
// Unicity

#[derive(Clone, Copy)]
enum Indexer {
    KeyValue,
    Whole,
    Port,
    VolumeTarget,
    Mount(&'static str),
    EnvFile,
}

const UNIQUE: &[(&[&str], Indexer)] = &[
    (&["services", "*", "annotations"], Indexer::KeyValue),
    (&["services", "*", "build", "args"], Indexer::KeyValue),
    (
        &["services", "*", "build", "additional_contexts"],
        Indexer::KeyValue,
    ),
    (&["services", "*", "build", "labels"], Indexer::KeyValue),
    (&["services", "*", "build", "tags"], Indexer::Whole),
    (&["services", "*", "build", "platforms"], Indexer::Whole),
    (
        &["services", "*", "build", "secrets"],
        Indexer::Mount("/run/secrets"),
    ),
    (&["services", "*", "cap_add"], Indexer::Whole),
    (&["services", "*", "cap_drop"], Indexer::Whole),
    (&["services", "*", "configs"], Indexer::Mount("")),
    (&["services", "*", "deploy", "labels"], Indexer::KeyValue),
    (&["services", "*", "devices"], Indexer::VolumeTarget),
    (&["services", "*", "dns"], Indexer::Whole),
    (&["services", "*", "dns_opt"], Indexer::Whole),
    (&["services", "*", "dns_search"], Indexer::Whole),
    (&["services", "*", "environment"], Indexer::KeyValue),
    (&["services", "*", "env_file"], Indexer::EnvFile),
    (&["services", "*", "expose"], Indexer::Whole),
    (&["services", "*", "labels"], Indexer::KeyValue),
    (&["services", "*", "links"], Indexer::Whole),
    (
        &["services", "*", "networks", "*", "aliases"],
        Indexer::Whole,
    ),
    (
        &["services", "*", "networks", "*", "link_local_ips"],
        Indexer::Whole,
    ),
    (&["services", "*", "ports"], Indexer::Port),
    (&["services", "*", "profiles"], Indexer::Whole),
    (
        &["services", "*", "secrets"],
        Indexer::Mount("/run/secrets"),
    ),
    (&["services", "*", "sysctls"], Indexer::KeyValue),
    (&["services", "*", "tmpfs"], Indexer::Whole),
    (&["services", "*", "volumes"], Indexer::VolumeTarget),
    (&["networks", "*", "labels"], Indexer::KeyValue),
];

fn index_key(indexer: Indexer, item: &Node) -> String {
    let text = item.scalar_text();
    match indexer {
        Indexer::Whole => text.unwrap_or_else(|| item.to_json().to_string()),
        Indexer::KeyValue => match text {
            Some(text) => split_key_value(&text).0.to_owned(),
            None => item.to_json().to_string(),
        },
        Indexer::EnvFile => match text {
            Some(text) => text,
            None => item
                .get("path")
                .and_then(Node::scalar_text)
                .unwrap_or_default(),
        },
        Indexer::VolumeTarget => match text {
            Some(text) => {
                let mut parts = text.split(':');
                let first = parts.next().unwrap_or_default();
                parts.next().unwrap_or(first).to_owned()
            }
            None => item
                .get("target")
                .and_then(Node::scalar_text)
                .unwrap_or_default(),
        },
        Indexer::Mount(default_dir) => {
            let join = |name: &str| format!("{default_dir}/{name}");
            match text {
                Some(source) => join(&source),
                None => match item.get("target").and_then(Node::scalar_text) {
                    Some(target) if target.starts_with('/') => target,
                    Some(target) => join(&target),
                    None => join(
                        &item
                            .get("source")
                            .and_then(Node::scalar_text)
                            .unwrap_or_default(),
                    ),
                },
            }
        }
        Indexer::Port => match text {
            Some(text) => text,
            None => {
                let field = |name: &str, default: &str| {
                    item.get(name)
                        .and_then(Node::scalar_text)
                        .unwrap_or_else(|| default.to_owned())
                };
                format!(
                    "{}:{}:{}/{}",
                    field("host_ip", "0.0.0.0"),
                    field("published", ""),
                    field("target", ""),
                    field("protocol", "tcp")
                )
            }
        },
    }
}

/// Removes duplicates from the sequences Compose keys (see the module docs).
pub fn enforce_unicity(root: &mut Node) {
    unicity(root, &mut Vec::new());
}

fn unicity(node: &mut Node, path: &mut Vec<String>) {
    match &mut node.value {
        Value::Mapping(mapping) => {
            for entry in &mut mapping.entries {
                path.push(entry.key.clone());
                unicity(&mut entry.value, path);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            let Some(indexer) = UNIQUE
                .iter()
                .find(|(pattern, _)| path_matches(pattern, path))
                .map(|(_, indexer)| *indexer)
            else {
                return;
            };
            let mut kept: Vec<(String, Node)> = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                let key = index_key(indexer, &item);
                match kept.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = item,
                    None => kept.push((key, item)),
                }
            }
            items.extend(kept.into_iter().map(|(_, item)| item));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::compose::diag::SourceFile;
    use crate::frontend::compose::yaml::{parse_documents, to_yaml};
    use std::path::{Path, PathBuf};

    fn doc(name: &str, text: &str) -> Node {
        let file = SourceFile::new(PathBuf::from(format!("/p/{name}")), Path::new("/p"));
        parse_documents(text, &file).unwrap().remove(0)
    }

    fn merged(base: &str, over: &str) -> Node {
        let mut first = doc("a.yaml", base);
        strip_merge_tags(&mut first);
        let mut result = merge_documents(first, doc("b.yaml", over));
        enforce_unicity(&mut result);
        result
    }

    fn json(node: &Node, pointer: &str) -> serde_json::Value {
        node.to_json().pointer(pointer).cloned().unwrap_or_default()
    }

    #[test]
    fn maps_merge_by_key_whatever_their_form() {
        let m = merged(
            "services:\n  s:\n    environment: [A=1, B=2, C]\n    build:\n      context: .\n      args: {X: 1}\n",
            "services:\n  s:\n    environment: {B: 3, D: 4}\n    build:\n      args: [Y=2, X=9]\n",
        );
        assert_eq!(
            json(&m, "/services/s/environment"),
            serde_json::json!({"A": "1", "B": 3, "C": null, "D": 4})
        );
        assert_eq!(
            json(&m, "/services/s/build/args"),
            serde_json::json!({"X": "9", "Y": "2"})
        );
        assert_eq!(
            json(&m, "/services/s/build/context"),
            serde_json::json!(".")
        );
    }

    #[test]
    fn build_string_merges_as_context() {
        let m = merged(
            "services:\n  s:\n    build: ./app\n",
            "services:\n  s:\n    build:\n      target: prod\n",
        );
        assert_eq!(
            json(&m, "/services/s/build"),
            serde_json::json!({"context": "./app", "target": "prod"})
        );
    }

    #[test]
    fn command_is_replaced_and_sequences_keyed() {
        let m = merged(
            "services:\n  s:\n    command: [a, b]\n    entrypoint: x\n    ports: ['80:80', '443:443']\n    expose: [1]\n    volumes: ['./a:/data', 'v:/cache']\n    secrets: [s1, {source: s2, target: t}]\n    healthcheck:\n      test: [CMD, a]\n      retries: 3\n",
            "services:\n  s:\n    command: [c]\n    ports: ['80:80', '8080:80']\n    expose: [1, 2]\n    volumes: ['./b:/data']\n    secrets: [{source: s3, target: /run/secrets/t}]\n    healthcheck:\n      test: [CMD, b]\n",
        );
        assert_eq!(json(&m, "/services/s/command"), serde_json::json!(["c"]));
        assert_eq!(json(&m, "/services/s/entrypoint"), serde_json::json!("x"));
        assert_eq!(
            json(&m, "/services/s/ports"),
            serde_json::json!(["80:80", "443:443", "8080:80"])
        );
        assert_eq!(json(&m, "/services/s/expose"), serde_json::json!([1, 2]));
        assert_eq!(
            json(&m, "/services/s/volumes"),
            serde_json::json!(["./b:/data", "v:/cache"])
        );
        assert_eq!(
            json(&m, "/services/s/secrets"),
            serde_json::json!(["s1", {"source": "s3", "target": "/run/secrets/t"}])
        );
        assert_eq!(
            json(&m, "/services/s/healthcheck"),
            serde_json::json!({"test": ["CMD", "b"], "retries": 3})
        );
    }

    #[test]
    fn reset_and_override() {
        let m = merged(
            "services:\n  s:\n    ports: ['80:80']\n    labels: {a: 1, b: 2}\n    environment: {A: 1}\n    build:\n      context: .\n      args: {X: 1}\n",
            "services:\n  s:\n    ports: !reset []\n    labels: !override {c: 3}\n    environment:\n      A: !reset\n    build:\n      args: !reset {}\n",
        );
        let service = m.get("services").unwrap().get("s").unwrap();
        assert!(service.get("ports").is_none());
        assert_eq!(json(&m, "/services/s/labels"), serde_json::json!({"c": 3}));
        assert_eq!(json(&m, "/services/s/environment"), serde_json::json!({}));
        assert!(service.get("build").unwrap().get("args").is_none());
        // Tags never survive a merge.
        assert!(!to_yaml(&m, false).contains('!'));
    }

    #[test]
    fn depends_on_networks_and_extensions() {
        let m = merged(
            "services:\n  s:\n    depends_on: [db]\n    networks: [front]\n    x-kiln: {sbom: true, version: '1'}\n",
            "services:\n  s:\n    depends_on:\n      cache: {condition: service_healthy}\n    networks:\n      back: {}\n    x-kiln: {version: '2'}\n",
        );
        assert_eq!(
            json(&m, "/services/s/depends_on"),
            serde_json::json!({
                "db": {"condition": "service_started", "required": true},
                "cache": {"condition": "service_healthy"}
            })
        );
        assert_eq!(
            json(&m, "/services/s/networks"),
            serde_json::json!({"front": null, "back": {}})
        );
        assert_eq!(
            json(&m, "/services/s/x-kiln"),
            serde_json::json!({"version": "2"})
        );
    }

    #[test]
    fn logging_and_ulimits() {
        let m = merged(
            "services:\n  s:\n    logging: {driver: json-file, options: {a: 1}}\n    ulimits: {nofile: {soft: 1, hard: 2}, nproc: 5}\n",
            "services:\n  s:\n    logging: {driver: syslog}\n    ulimits: {nofile: 10, nproc: {soft: 1, hard: 1}}\n",
        );
        assert_eq!(
            json(&m, "/services/s/logging"),
            serde_json::json!({"driver": "syslog"})
        );
        assert_eq!(
            json(&m, "/services/s/ulimits"),
            serde_json::json!({"nofile": 10, "nproc": {"soft": 1, "hard": 1}})
        );
    }

    #[test]
    fn single_file_unicity() {
        let m = merged(
            "services:\n  s:\n    environment: [A=1, A=2]\n    dns: 8.8.8.8\n",
            "services:\n  s:\n    dns: [1.1.1.1, 8.8.8.8]\n",
        );
        assert_eq!(
            json(&m, "/services/s/environment"),
            serde_json::json!(["A=2"])
        );
        assert_eq!(
            json(&m, "/services/s/dns"),
            serde_json::json!(["8.8.8.8", "1.1.1.1"])
        );
    }
}
