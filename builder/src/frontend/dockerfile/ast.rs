//! The syntax tree of a Dockerfile, and its dump in BuildKit's format.
//!
//! The tree mirrors BuildKit's `parser.Node`: one [`Node`] per instruction with its
//! flags, its arguments as the parser split them (quotes and escapes still in place
//! except in JSON form), heredocs, the original logical line and exact positions.
//! [`dump`] prints it as BuildKit's `Node.Dump()` does (the `result` files of its
//! parser tests); heredocs, which BuildKit's dump omits, are appended to their
//! instruction as `(heredoc [attributes] "NAME" "content")`.

use std::fmt::Write as _;

/// A 1-based line and column (column counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// From the first character to just past the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// The file name given to the parser, used in error locations.
    pub file: String,
    /// Parser directives (`# syntax=`, `# escape=`, `# check=`) in file order.
    pub directives: Vec<Directive>,
    /// The escape character in effect (`\` or `` ` ``).
    pub escape: char,
    /// The instructions, in file order.
    pub nodes: Vec<Node>,
    /// Things that parse but deserve a warning (e.g. empty continuation lines).
    pub warnings: Vec<Warning>,
}

impl Ast {
    /// The value of a directive (`syntax`, `escape`, `check`), if present.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}

/// A parser directive such as `# syntax=docker/dockerfile:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A non-fatal finding of the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
    pub position: Position,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword as written (`RUN`, `run`, …).
    pub name: String,
    /// The `--flag[=value]` words before the arguments, as written.
    pub flags: Vec<Word>,
    /// The arguments as split by the instruction's syntax.
    pub args: Vec<Arg>,
    /// Whether the arguments were given as a JSON array (exec form).
    pub json: bool,
    /// Here-documents attached to this instruction, in order.
    pub heredocs: Vec<Heredoc>,
    /// The logical line (continuations joined, without heredoc bodies).
    pub original: String,
    /// From the keyword to the end of the last line of the instruction (heredoc
    /// bodies included).
    pub span: Span,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
}

impl Node {
    /// The instruction keyword in lower case.
    pub fn keyword(&self) -> String {
        self.name.to_lowercase()
    }
}

/// An argument: a word, or (for ONBUILD) a nested instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Word(Word),
    Instruction(Box<Node>),
}

/// A piece of text and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub value: String,
    pub start: Position,
}

/// A here-document (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed.
    pub name: String,
    /// The body, each line with its newline, as written (tabs not yet removed).
    pub content: String,
    /// False when any part of the delimiter was quoted: no variable expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are removed from body lines and the delimiter line.
    pub chomp: bool,
    /// The file descriptor written before `<<` (e.g. `3<<EOF`), 0 when absent.
    pub fd: u32,
}

impl Heredoc {
    /// The body with leading tabs removed from each line when `chomp` is set.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// Prints the tree in BuildKit's dump format: one `(instruction "arg" …)` line per
/// instruction, ending with a newline.
pub fn dump(ast: &Ast) -> String {
    let mut out = String::new();
    for node in &ast.nodes {
        out.push('(');
        dump_node(node, &mut out);
        out.push_str(")\n");
    }
    out
}

fn dump_node(node: &Node, out: &mut String) {
    let start = out.len();
    out.push_str(&node.name.to_lowercase());
    if !node.flags.is_empty() {
        out.push(' ');
        push_quoted_list(node.flags.iter().map(|f| f.value.as_str()), out);
    }
    for arg in &node.args {
        out.push(' ');
        match arg {
            Arg::Word(w) => push_go_quoted(&w.value, out),
            Arg::Instruction(child) => {
                out.push('(');
                dump_node(child, out);
                out.push(')');
            }
        }
    }
    for heredoc in &node.heredocs {
        out.push_str(" (heredoc ");
        let mut attributes = Vec::new();
        if heredoc.chomp {
            attributes.push("chomp".to_string());
        }
        if !heredoc.expand {
            attributes.push("noexpand".to_string());
        }
        if heredoc.fd != 0 {
            attributes.push(format!("fd={}", heredoc.fd));
        }
        if !attributes.is_empty() {
            push_quoted_list(attributes.iter().map(String::as_str), out);
            out.push(' ');
        }
        push_go_quoted(&heredoc.name, out);
        out.push(' ');
        push_go_quoted(&heredoc.content, out);
        out.push(')');
    }
    // Go's dump trims surrounding whitespace (a keyword can be empty).
    let trimmed = out[start..].trim().to_string();
    out.truncate(start);
    out.push_str(&trimmed);
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn push_quoted_list<'a>(items: impl Iterator<Item = &'a str>, out: &mut String) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_go_quoted(item, out);
    }
    out.push(']');
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_go_quoted(s, &mut out);
    out
}

fn push_go_quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers, punctuation,
/// symbols and the ASCII space) without the Unicode category tables: controls,
/// non-ASCII spaces, common format characters, private use and non-characters are
/// not printable.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if c.is_ascii() {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f
        | 0xd800..=0xdfff | 0xe000..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
        | 0xfffe | 0xffff | 0xf0000..=0x10ffff)
        && (u & 0xfffe) != 0xfffe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\u{1b}\u{7f}"), r#""\x00\x1b\x7f""#);
        assert_eq!(go_quote("♥ ☃ 안녕"), "\"♥ ☃ 안녕\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
    }

    #[test]
    fn chomps_heredoc_bodies() {
        let h = Heredoc {
            name: "EOF".into(),
            content: "\t\tone\n\ttwo\n  three\n".into(),
            expand: true,
            chomp: true,
            fd: 0,
        };
        assert_eq!(h.body(), "one\ntwo\n  three\n");
    }
}
