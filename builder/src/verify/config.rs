//! Field-by-field diff of two JSON documents (image configs, manifests).
//!
//! Contract: objects are compared key by key; `Env` lists are compared as maps
//! by variable name (`config.Env.PATH`); lists of objects (`history`) and
//! `rootfs.diff_ids` element by element (`history[3].created`); any other list
//! as a whole. Each difference is a path with both values, absent on the side
//! that lacks it. Paths are sorted as found (keys in order, elements by index).

use std::collections::BTreeMap;

use serde_json::Value;

use super::FieldChange;

/// `parent.key`, or `parent["key"]` for keys that are not plain words.
fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// `NAME=value` entries as a map (a later entry wins, as for a process).
fn env_map(list: &[Value]) -> Option<BTreeMap<String, Value>> {
    let mut map = BTreeMap::new();
    for item in list {
        let text = item.as_str()?;
        let (name, value) = text.split_once('=').unwrap_or((text, ""));
        map.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    Some(map)
}

/// Appends the differences between `left` and `right` below `path` to `out`.
pub(super) fn diff_json(path: &str, left: &Value, right: &Value, out: &mut Vec<FieldChange>) {
    if left == right {
        return;
    }
    match (left, right) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().collect();
            keys.extend(b.keys().filter(|key| !a.contains_key(*key)));
            for key in keys {
                let child = child_path(path, key);
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_json(&child, x, y, out),
                    (x, y) => out.push(FieldChange {
                        path: child,
                        left: x.cloned(),
                        right: y.cloned(),
                    }),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if path.ends_with("Env") => {
            match (env_map(a), env_map(b)) {
                (Some(a), Some(b)) => {
                    let a = Value::Object(a.into_iter().collect());
                    let b = Value::Object(b.into_iter().collect());
                    diff_json(path, &a, &b, out);
                }
                _ => whole(path, left, right, out),
            }
        }
        (Value::Array(a), Value::Array(b))
            if path == "rootfs.diff_ids" || a.iter().chain(b).any(Value::is_object) =>
        {
            for index in 0..a.len().max(b.len()) {
                let child = format!("{path}[{index}]");
                match (a.get(index), b.get(index)) {
                    (Some(x), Some(y)) => diff_json(&child, x, y, out),
                    (x, y) => out.push(FieldChange {
                        path: child,
                        left: x.cloned(),
                        right: y.cloned(),
                    }),
                }
            }
        }
        _ => whole(path, left, right, out),
    }
}

fn whole(path: &str, left: &Value, right: &Value, out: &mut Vec<FieldChange>) {
    out.push(FieldChange {
        path: path.to_owned(),
        left: Some(left.clone()),
        right: Some(right.clone()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(left: Value, right: Value) -> Vec<(String, Option<Value>, Option<Value>)> {
        let mut out = Vec::new();
        diff_json("", &left, &right, &mut out);
        out.into_iter().map(|c| (c.path, c.left, c.right)).collect()
    }

    #[test]
    fn fields_env_labels_and_history_are_named() {
        let left = json!({
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/bin", "MODE=a"],
                "Cmd": ["sh"],
                "Labels": {"org.example.version": "1"}
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:a", "sha256:b"]},
            "history": [{"created_by": "FROM"}, {"created_by": "RUN x"}]
        });
        let right = json!({
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/bin", "MODE=b", "NEW=1"],
                "Cmd": ["sh", "-c"],
                "Labels": {"org.example.version": "2"},
                "User": "app"
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:a", "sha256:c"]},
            "history": [{"created_by": "FROM"}, {"created_by": "RUN y"}]
        });
        assert_eq!(
            paths(left, right),
            vec![
                ("config.Env.MODE".into(), Some(json!("a")), Some(json!("b"))),
                ("config.Env.NEW".into(), None, Some(json!("1"))),
                (
                    "config.Cmd".into(),
                    Some(json!(["sh"])),
                    Some(json!(["sh", "-c"]))
                ),
                (
                    "config.Labels[\"org.example.version\"]".into(),
                    Some(json!("1")),
                    Some(json!("2"))
                ),
                ("config.User".into(), None, Some(json!("app"))),
                (
                    "rootfs.diff_ids[1]".into(),
                    Some(json!("sha256:b")),
                    Some(json!("sha256:c"))
                ),
                (
                    "history[1].created_by".into(),
                    Some(json!("RUN x")),
                    Some(json!("RUN y"))
                ),
            ]
        );
    }

    #[test]
    fn equal_documents_have_no_differences() {
        let doc = json!({"config": {"Env": ["A=1"]}, "history": []});
        assert!(paths(doc.clone(), doc).is_empty());
    }
}
