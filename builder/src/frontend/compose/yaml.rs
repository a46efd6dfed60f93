//! Located YAML: documents as trees whose every node and mapping key knows its file,
//! line and column, read with `saphyr-parser` and written back canonically.
//!
//! Reading resolves plain scalars the way Compose's YAML library (go-yaml v3) does:
//! `null`/`~`/empty, `true`/`false` (three spellings each), integers in Go's base-0
//! syntax (`0x1F`, `0o17`, `017`, `1_000`), floats, `.inf`/`.nan`; everything else is a
//! string. Anchors and aliases are expanded, `<<` merge keys merge mappings (explicit keys
//! win), the tags `!reset` and `!override` are kept on the node for the merge step, and
//! core tags (`!!str`, `!!int`, ...) force a type. Duplicate keys are errors.
//!
//! Errors are [`Diagnostic`]s located at the offending token.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

use super::diag::{Diagnostic, KeyPath, Location, Problem, SourceFile};

/// A Compose merge directive attached to a node with a YAML tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeTag {
    /// `!reset`: remove the attribute from what is being overridden.
    Reset,
    /// `!override`: replace the attribute instead of merging it.
    Override,
}

/// A YAML node with its location.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub location: Location,
    pub tag: Option<MergeTag>,
}

/// The value of a [`Node`].
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Sequence(Vec<Node>),
    Mapping(Mapping),
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_location: Location,
    pub value: Node,
}

/// An ordered mapping with string keys.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub entries: Vec<Entry>,
}

impl Mapping {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.value)
    }

    /// Sets `key`, replacing an existing value in place or appending.
    pub fn insert(&mut self, key: String, key_location: Location, value: Node) {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(entry) => entry.value = value,
            None => self.entries.push(Entry {
                key,
                key_location,
                value,
            }),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let index = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(index))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|e| (e.key.as_str(), &e.value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Node {
    pub fn new(value: Value, location: Location) -> Node {
        Node {
            value,
            location,
            tag: None,
        }
    }

    pub fn string(text: impl Into<String>, location: Location) -> Node {
        Node::new(Value::String(text.into()), location)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_mapping(&self) -> Option<&Mapping> {
        match &self.value {
            Value::Mapping(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_mapping_mut(&mut self) -> Option<&mut Mapping> {
        match &mut self.value {
            Value::Mapping(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_sequence(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Sequence(items) => Some(items),
            _ => None,
        }
    }

    /// Looks up a mapping key (None when this is not a mapping).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_mapping().and_then(|m| m.get(key))
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The JSON-schema type name of this value.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Sequence(_) => "array",
            Value::Mapping(_) => "object",
        }
    }

    /// A scalar as text the way Compose prints it (`%v` in Go); None for collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::String(s) => Some(s.clone()),
            Value::Sequence(_) | Value::Mapping(_) => None,
        }
    }

    /// Converts to JSON. Non-finite floats become strings (JSON has none).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(format_float(*f))),
            Value::String(s) => J::String(s.clone()),
            Value::Sequence(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Mapping(m) => J::Object(
                m.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// Structural equality ignoring locations and tags; numbers compare by value.
    pub fn same_value(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => *a as f64 == *b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Sequence(a), Value::Sequence(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (Value::Mapping(a), Value::Mapping(b)) => {
                a.len() == b.len()
                    && a.entries
                        .iter()
                        .all(|e| b.get(&e.key).is_some_and(|other| e.value.same_value(other)))
            }
            _ => false,
        }
    }
}

fn format_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

/// Parses every document of a YAML text. An empty text gives no documents.
pub fn parse_documents(text: &str, file: &Arc<SourceFile>) -> Result<Vec<Node>, Diagnostic> {
    let mut builder = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        documents: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| builder.scan_error(&e))?;
        builder.event(event, span)?;
    }
    Ok(builder.documents)
}

enum Key {
    /// A plain `<<`.
    Merge,
    Named(String, Location),
}

enum Frame {
    Sequence {
        items: Vec<Node>,
        location: Location,
        anchor: usize,
        tag: Option<MergeTag>,
    },
    Mapping {
        mapping: Mapping,
        merges: Vec<Node>,
        key: Option<Key>,
        location: Location,
        anchor: usize,
        tag: Option<MergeTag>,
    },
}

struct Builder {
    file: Arc<SourceFile>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    documents: Vec<Node>,
}

impl Builder {
    fn location(&self, span: &Span) -> Location {
        Location::new(
            self.file.clone(),
            u32::try_from(span.start.line()).unwrap_or(u32::MAX),
            u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
        )
    }

    fn scan_error(&self, error: &ScanError) -> Diagnostic {
        let marker = error.marker();
        let location = Location::new(
            self.file.clone(),
            u32::try_from(marker.line()).unwrap_or(u32::MAX),
            u32::try_from(marker.col() + 1).unwrap_or(u32::MAX),
        );
        Diagnostic::new(
            &location,
            &KeyPath::root(),
            Problem::Syntax {
                message: error.info().to_owned(),
            },
        )
    }

    fn error(&self, location: &Location, problem: Problem) -> Diagnostic {
        Diagnostic::new(location, &KeyPath::root(), problem)
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let location = self.location(&span);
                let is_merge_key = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                let (value, merge_tag) = resolve_scalar(&text, style, tag.as_deref());
                let node = Node {
                    value,
                    location,
                    tag: merge_tag,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.finish(node, is_merge_key)
            }
            Event::Alias(anchor) => {
                let location = self.location(&span);
                let node = self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| self.error(&location, Problem::UnknownAlias))?;
                self.finish(node, false)
            }
            Event::SequenceStart(anchor, tag) => {
                let location = self.location(&span);
                self.stack.push(Frame::Sequence {
                    items: Vec::new(),
                    location,
                    anchor,
                    tag: merge_tag(tag.as_deref()),
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                let location = self.location(&span);
                self.stack.push(Frame::Mapping {
                    mapping: Mapping::default(),
                    merges: Vec::new(),
                    key: None,
                    location,
                    anchor,
                    tag: merge_tag(tag.as_deref()),
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Sequence {
                    items,
                    location,
                    anchor,
                    tag,
                }) => {
                    let node = Node {
                        value: Value::Sequence(items),
                        location,
                        tag,
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.finish(node, false)
                }
                _ => unreachable!("the parser balances sequence events"),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Mapping {
                    mut mapping,
                    merges,
                    location,
                    anchor,
                    tag,
                    ..
                }) => {
                    for source in merges {
                        merge_into(&mut mapping, source, self)?;
                    }
                    let node = Node {
                        value: Value::Mapping(mapping),
                        location,
                        tag,
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.finish(node, false)
                }
                _ => unreachable!("the parser balances mapping events"),
            },
            Event::DocumentStart(_) => {
                // Anchors do not cross documents.
                self.anchors.clear();
                Ok(())
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
        }
    }

    /// Hands a finished node to its parent (or makes it a document).
    fn finish(&mut self, node: Node, is_merge_key: bool) -> Result<(), Diagnostic> {
        let file = self.file.clone();
        match self.stack.last_mut() {
            None => {
                self.documents.push(node);
                Ok(())
            }
            Some(Frame::Sequence { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Mapping {
                mapping,
                merges,
                key,
                ..
            }) => match key.take() {
                None => {
                    if is_merge_key {
                        *key = Some(Key::Merge);
                        return Ok(());
                    }
                    let text = match &node.value {
                        Value::Sequence(_) | Value::Mapping(_) => {
                            return Err(Diagnostic::new(
                                &node.location,
                                &KeyPath::root(),
                                Problem::ComplexKey,
                            ));
                        }
                        _ => node.scalar_text().unwrap_or_default(),
                    };
                    if let Some(first) = mapping.entry(&text) {
                        return Err(Diagnostic::new(
                            &node.location,
                            &KeyPath::root(),
                            Problem::DuplicateKey {
                                key: text,
                                first_line: first.key_location.line,
                            },
                        ));
                    }
                    *key = Some(Key::Named(text, node.location));
                    Ok(())
                }
                Some(Key::Merge) => {
                    merges.push(node);
                    Ok(())
                }
                Some(Key::Named(name, key_location)) => {
                    debug_assert_eq!(key_location.file, file);
                    mapping.entries.push(Entry {
                        key: name,
                        key_location,
                        value: node,
                    });
                    Ok(())
                }
            },
        }
    }
}

/// Applies one `<<` source: keys already present (explicit or from an earlier source) win.
fn merge_into(target: &mut Mapping, source: Node, builder: &Builder) -> Result<(), Diagnostic> {
    match source.value {
        Value::Mapping(m) => {
            for entry in m.entries {
                if !target.contains_key(&entry.key) {
                    target.entries.push(entry);
                }
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for item in items {
                if item.as_mapping().is_none() {
                    return Err(builder.error(&item.location, Problem::BadMergeKey));
                }
                merge_into(target, item, builder)?;
            }
            Ok(())
        }
        _ => Err(builder.error(&source.location, Problem::BadMergeKey)),
    }
}

fn merge_tag(tag: Option<&Tag>) -> Option<MergeTag> {
    let tag = tag?;
    if tag.handle != "!" {
        return None;
    }
    match tag.suffix.as_str() {
        "reset" => Some(MergeTag::Reset),
        "override" => Some(MergeTag::Override),
        _ => None,
    }
}

fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> (Value, Option<MergeTag>) {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema() {
            let value = match tag.suffix.as_str() {
                "str" => Value::String(text.to_owned()),
                "null" => Value::Null,
                "bool" | "int" | "float" => resolve_plain(text),
                _ => Value::String(text.to_owned()),
            };
            return (value, None);
        }
        let merge = merge_tag(Some(tag));
        let value = if style == ScalarStyle::Plain {
            resolve_plain(text)
        } else {
            Value::String(text.to_owned())
        };
        return (value, merge);
    }
    if style == ScalarStyle::Plain {
        (resolve_plain(text), None)
    } else {
        (Value::String(text.to_owned()), None)
    }
}

/// Resolves a plain scalar like go-yaml v3.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Value::String(text.to_owned());
    }
    let plain = text.replace('_', "");
    if let Some(i) = parse_go_int(&plain) {
        return Value::Int(i);
    }
    if is_yaml_float(&plain)
        && let Ok(f) = plain.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::String(text.to_owned())
}

/// `strconv.ParseInt(s, 0, 64)`: sign, then `0x`/`0o`/`0b` prefixes or a leading `0` for
/// octal, else decimal.
fn parse_go_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(d) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, d)
    } else if let Some(d) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, d)
    } else if let Some(d) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, d)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

// ---------------------------------------------------------------------------------------
// Writing

/// Writes a node as block-style YAML, keys in the order given, two-space indentation.
/// Strings are quoted whenever a plain scalar would read back differently; when
/// `escape_dollars` is set, `$` in string values is written `$$` so that the output,
/// read again as a compose file, interpolates to the same values.
pub fn to_yaml(node: &Node, escape_dollars: bool) -> String {
    let mut out = String::new();
    let writer = Writer { escape_dollars };
    match &node.value {
        Value::Mapping(m) if !m.is_empty() => writer.mapping(m, 0, &mut out),
        Value::Sequence(items) if !items.is_empty() => writer.sequence(items, 0, &mut out),
        _ => {
            out.push_str(&writer.scalar(node));
            out.push('\n');
        }
    }
    out
}

struct Writer {
    escape_dollars: bool,
}

impl Writer {
    fn mapping(&self, m: &Mapping, indent: usize, out: &mut String) {
        for entry in &m.entries {
            push_indent(out, indent);
            out.push_str(&quote_if_needed(&entry.key));
            out.push(':');
            self.child(&entry.value, indent, out);
        }
    }

    fn sequence(&self, items: &[Node], indent: usize, out: &mut String) {
        for item in items {
            push_indent(out, indent);
            out.push('-');
            match &item.value {
                Value::Mapping(m) if !m.is_empty() => {
                    // The first key goes on the dash line, the rest align under it.
                    let mut nested = String::new();
                    self.mapping(m, indent + 2, &mut nested);
                    out.push(' ');
                    out.push_str(&nested[indent + 2..]);
                }
                Value::Sequence(inner) if !inner.is_empty() => {
                    out.push('\n');
                    self.sequence(inner, indent + 2, out);
                }
                _ => {
                    out.push(' ');
                    out.push_str(&self.scalar(item));
                    out.push('\n');
                }
            }
        }
    }

    fn child(&self, node: &Node, indent: usize, out: &mut String) {
        match &node.value {
            Value::Mapping(m) if !m.is_empty() => {
                out.push('\n');
                self.mapping(m, indent + 2, out);
            }
            Value::Sequence(items) if !items.is_empty() => {
                out.push('\n');
                self.sequence(items, indent + 2, out);
            }
            _ => {
                out.push(' ');
                out.push_str(&self.scalar(node));
                out.push('\n');
            }
        }
    }

    fn scalar(&self, node: &Node) -> String {
        match &node.value {
            Value::Null => "null".to_owned(),
            Value::Mapping(_) => "{}".to_owned(),
            Value::Sequence(_) => "[]".to_owned(),
            Value::String(s) if self.escape_dollars && s.contains('$') => {
                quote_if_needed(&s.replace('$', "$$"))
            }
            Value::String(s) => quote_if_needed(s),
            _ => node.scalar_text().unwrap_or_default(),
        }
    }
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A string as a plain scalar when that reads back as the same string, else double-quoted.
fn quote_if_needed(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && matches!(resolve_plain(s), Value::String(_))
        && !s.starts_with(|c: char| {
            c.is_whitespace()
                || matches!(
                    c,
                    '-' | '?'
                        | ':'
                        | ','
                        | '['
                        | ']'
                        | '{'
                        | '}'
                        | '#'
                        | '&'
                        | '*'
                        | '!'
                        | '|'
                        | '>'
                        | '\''
                        | '"'
                        | '%'
                        | '@'
                        | '`'
                )
        })
        && !s.ends_with(|c: char| c.is_whitespace() || c == ':')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.chars().any(|c| c.is_control())
        && s != "<<";
    if plain_ok {
        return s.to_owned();
    }
    let mut quoted = String::with_capacity(s.len() + 2);
    quoted.push('"');
    for c in s.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn parse(text: &str) -> Node {
        let file = SourceFile::new(PathBuf::from("/t/compose.yaml"), Path::new("/t"));
        let mut docs = parse_documents(text, &file).unwrap();
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    fn parse_err(text: &str) -> String {
        let file = SourceFile::new(PathBuf::from("/t/compose.yaml"), Path::new("/t"));
        parse_documents(text, &file).unwrap_err().to_string()
    }

    #[test]
    fn locations_are_one_based() {
        let root = parse("services:\n  api:\n    image: x\n");
        let api = root.get("services").unwrap().get("api").unwrap();
        let entry = api.as_mapping().unwrap().entry("image").unwrap();
        assert_eq!((entry.key_location.line, entry.key_location.column), (3, 5));
        assert_eq!(
            (entry.value.location.line, entry.value.location.column),
            (3, 12)
        );
        assert_eq!(entry.value.location.to_string(), "compose.yaml:3:12");
    }

    #[test]
    fn scalars_resolve_like_go_yaml() {
        let root = parse(
            "a: 12\nb: 0x1F\nc: 0755\nd: 1_000\ne: 1.5\nf: true\ng: ~\nh: '12'\ni: yes\nj: 08\nk: 1e3\nl: -3\nm: 0o17\nn: !!str 5\no: 1.2.3\np:\n",
        );
        let value = |k: &str| root.get(k).unwrap().to_json();
        assert_eq!(value("a"), serde_json::json!(12));
        assert_eq!(value("b"), serde_json::json!(31));
        assert_eq!(value("c"), serde_json::json!(493));
        assert_eq!(value("d"), serde_json::json!(1000));
        assert_eq!(value("e"), serde_json::json!(1.5));
        assert_eq!(value("f"), serde_json::json!(true));
        assert_eq!(value("g"), serde_json::json!(null));
        assert_eq!(value("h"), serde_json::json!("12"));
        assert_eq!(value("i"), serde_json::json!("yes"));
        assert_eq!(value("j"), serde_json::json!(8.0));
        assert_eq!(value("k"), serde_json::json!(1000.0));
        assert_eq!(value("l"), serde_json::json!(-3));
        assert_eq!(value("m"), serde_json::json!(15));
        assert_eq!(value("n"), serde_json::json!("5"));
        assert_eq!(value("o"), serde_json::json!("1.2.3"));
        assert_eq!(value("p"), serde_json::json!(null));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let root = parse(concat!(
            "x-base: &base\n  image: base\n  restart: always\n",
            "x-more: &more\n  restart: never\n  user: me\n",
            "services:\n",
            "  a:\n    <<: *base\n    image: mine\n",
            "  b:\n    <<: [*more, *base]\n",
            "  c: *base\n",
        ));
        let services = root.get("services").unwrap();
        let a = services.get("a").unwrap();
        assert_eq!(a.get("image").unwrap().as_str(), Some("mine"));
        assert_eq!(a.get("restart").unwrap().as_str(), Some("always"));
        let b = services.get("b").unwrap();
        assert_eq!(b.get("restart").unwrap().as_str(), Some("never"));
        assert_eq!(b.get("image").unwrap().as_str(), Some("base"));
        assert_eq!(b.get("user").unwrap().as_str(), Some("me"));
        assert_eq!(
            services.get("c").unwrap().get("image").unwrap().as_str(),
            Some("base")
        );
    }

    #[test]
    fn merge_tags_are_kept() {
        let root = parse("ports: !reset []\ncommand: !override [a]\nother: !custom x\n");
        assert_eq!(root.get("ports").unwrap().tag, Some(MergeTag::Reset));
        assert_eq!(root.get("command").unwrap().tag, Some(MergeTag::Override));
        assert_eq!(root.get("other").unwrap().tag, None);
        assert_eq!(root.get("other").unwrap().as_str(), Some("x"));
    }

    #[test]
    fn errors_are_located() {
        assert_eq!(
            parse_err("a: 1\nb: 2\na: 3\n"),
            "compose.yaml:3:1: key \"a\" is defined twice (first at line 1)"
        );
        assert!(parse_err("a: [1, 2\nb: 3\n").starts_with("compose.yaml:"));
        assert_eq!(
            parse_err("a: *nothing\n"),
            "compose.yaml:1:4: invalid YAML: while parsing node, found unknown anchor"
        );
    }

    #[test]
    fn several_documents() {
        let file = SourceFile::new(PathBuf::from("/t/c.yaml"), Path::new("/t"));
        let docs = parse_documents("a: 1\n---\nb: 2\n", &file).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(parse_documents("", &file).unwrap().is_empty());
    }

    #[test]
    fn writing_round_trips() {
        let text = concat!(
            "name: demo\n",
            "services:\n",
            "  api:\n",
            "    command:\n      - sh\n      - -c\n      - \"echo $$HOME: done\"\n",
            "    environment:\n      EMPTY: \"\"\n      NUM: \"12\"\n      BOOL: \"true\"\n      NL: \"a\\nb\"\n      N: null\n",
            "    ports:\n      - target: 80\n        published: \"8080\"\n      - \"9000:9000\"\n",
            "    x-list:\n      -\n        - nested\n",
            "    labels: {}\n",
        );
        let node = parse(text);
        let written = to_yaml(&node, false);
        let again = parse(&written);
        assert!(node.same_value(&again), "{written}");
        assert!(written.contains("- \"echo $$HOME: done\""), "{written}");
        let escaped = to_yaml(&node, true);
        assert!(escaped.contains("$$$$HOME"), "{escaped}");
    }

    #[test]
    fn quoting() {
        for s in [
            "", "true", "12", "0x10", "null", "- a", "a: b", "a #b", " lead", "trail ", "*x",
            "1.5", "~", "<<", "a\tb", "é",
        ] {
            let written = quote_if_needed(s);
            let node = parse(&format!("k: {written}\n"));
            assert_eq!(
                node.get("k").unwrap().as_str(),
                Some(s),
                "{s:?} -> {written}"
            );
        }
        assert_eq!(quote_if_needed("plain/text:1.0"), "plain/text:1.0");
    }
}
