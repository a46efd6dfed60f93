//! The syntax parser: Dockerfile text in, [`Ast`] out, as BuildKit's `parser` package.
//!
//! Contract: handles parser directives (`# syntax=`, `# escape=`, `# check=`, only
//! before anything else), comments, line continuations with the escape character
//! (continuation lines that are blank or comments are skipped), JSON (exec) and
//! shell forms, `--flags` before arguments, heredocs on RUN/COPY/ADD (also under
//! ONBUILD), a UTF-8 byte-order mark, and CRLF line ends. Instruction keywords are
//! case-insensitive; unknown keywords are kept (the instruction layer rejects them).
//!
//! Errors: a file without instructions, a repeated or invalid directive, a JSON
//! array with non-string elements, ENV/LABEL without a value or `=`, and an
//! unterminated heredoc; each located at `file:line:column`.

use super::ast::{Arg, Ast, Directive, Heredoc, Node, Position, Span, Warning, Word};
use super::error::{Error, ErrorKind, Location};
use super::shell::{Lex, NoVars};

/// Parses Dockerfile `text`; `file` names it in error locations.
pub fn parse(text: &str, file: &str) -> Result<Ast, Error> {
    Parser {
        file,
        lines: Lines::new(text),
        directives: DirectiveState::default(),
        escape: '\\',
    }
    .run()
}

/// Physical lines, each with its line ending.
struct Lines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        Lines {
            rest: text.strip_prefix('\u{feff}').unwrap_or(text),
            number: 0,
        }
    }

    fn next_line(&mut self) -> Option<(usize, &'a str)> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.number += 1;
        Some((self.number, line))
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// Go's `regexp` `\s` (no vertical tab).
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_split_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let first = rest.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let (name, rest) = rest.split_at(name_end);
    let rest = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    let value = rest
        .trim_start_matches(is_re_space)
        .trim_end_matches(is_re_space);
    if !value.is_empty() {
        return Some((name, value));
    }
    // Only whitespace after `=`: the lazy `(.+?)` takes one whitespace character.
    let last = rest.chars().last()?;
    Some((name, &rest[rest.len() - last.len_utf8()..]))
}

#[derive(Default)]
struct DirectiveState {
    done: bool,
    found: Vec<Directive>,
}

/// A logical line (continuations joined) and where each piece came from.
struct Logical {
    text: String,
    /// (offset in `text`, physical line, column of that offset)
    pieces: Vec<(usize, usize, usize)>,
}

impl Logical {
    fn push(&mut self, s: &str, line: usize, column: usize) {
        self.pieces.push((self.text.len(), line, column));
        self.text.push_str(s);
    }

    fn position(&self, offset: usize) -> Position {
        let i = self
            .pieces
            .partition_point(|p| p.0 <= offset)
            .saturating_sub(1);
        let (start, line, column) = self.pieces[i];
        Position {
            line,
            column: column + self.text[start..offset].chars().count(),
        }
    }

    fn word(&self, value: &str, offset: usize) -> Arg {
        Arg::Word(Word {
            value: value.to_string(),
            start: self.position(offset),
        })
    }
}

/// Removes a trailing escape character (and blanks after it) that continues the
/// line. An even run of escape characters is escaped text, not a continuation.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let run = trimmed.chars().rev().take_while(|&c| c == escape).count();
    if run % 2 == 1 {
        (&trimmed[..trimmed.len() - escape.len_utf8()], false)
    } else {
        (line, true)
    }
}

struct Parser<'a> {
    file: &'a str,
    lines: Lines<'a>,
    directives: DirectiveState,
    escape: char,
}

type Located = (Position, ErrorKind);

impl Parser<'_> {
    fn error(&self, position: Position, kind: ErrorKind) -> Error {
        Error::new(
            Location {
                file: self.file.to_string(),
                line: position.line,
                column: position.column,
            },
            kind,
        )
    }

    fn directive(&mut self, line: &str, number: usize) -> Result<(), Error> {
        if self.directives.done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.directives.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.directives.done = true;
            return Ok(());
        }
        let at = Position {
            line: number,
            column: 1,
        };
        if self.directives.found.iter().any(|d| d.name == name) {
            return Err(self.error(at, ErrorKind::DuplicateDirective { name }));
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(self.error(
                        at,
                        ErrorKind::InvalidEscapeToken {
                            value: value.to_string(),
                        },
                    ));
                }
            };
        }
        self.directives.found.push(Directive {
            name,
            value: value.to_string(),
            line: number,
        });
        Ok(())
    }

    fn run(mut self) -> Result<Ast, Error> {
        let mut nodes = Vec::new();
        let mut warnings = Vec::new();
        let mut comments: Vec<String> = Vec::new();
        let mut last_line = 0;

        while let Some((number, raw)) = self.lines.next_line() {
            last_line = number;
            let line = trim_newline(raw);
            let stripped = line.trim_start();
            if let Some(comment) = stripped.strip_prefix('#') {
                let comment = comment.trim();
                if comment.is_empty() {
                    comments.clear();
                } else {
                    comments.push(comment.to_string());
                }
            }
            self.directive(stripped, number)?;
            let content = if stripped.starts_with('#') {
                ""
            } else {
                stripped
            };
            let (first, mut end_of_line) = trim_continuation(content, self.escape);
            if end_of_line && first.is_empty() {
                continue;
            }
            let mut logical = Logical {
                text: String::with_capacity(line.len()),
                pieces: Vec::with_capacity(1),
            };
            let lead = line[..line.len() - stripped.len()].chars().count();
            logical.push(first, number, 1 + lead);
            let mut end = Position {
                line: number,
                column: line.chars().count() + 1,
            };
            let mut empty_continuation = false;
            while !end_of_line {
                let Some((number, raw)) = self.lines.next_line() else {
                    break;
                };
                last_line = number;
                let line = trim_newline(raw);
                self.directive(line, number)?;
                end = Position {
                    line: number,
                    column: line.chars().count() + 1,
                };
                if is_comment(line) {
                    continue;
                }
                if line.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (piece, eol) = trim_continuation(line, self.escape);
                end_of_line = eol;
                logical.push(piece, number, 1);
            }

            let mut node = self
                .node(&logical, 0, logical.text.len())
                .map_err(|(pos, kind)| self.error(pos, kind))?;
            if empty_continuation {
                warnings.push(Warning {
                    message: format!("Empty continuation line found in: {}", logical.text.trim()),
                    position: node.span.start,
                });
            }

            if can_contain_heredoc(&node) && logical.text.contains("<<") {
                let heredocs = heredocs_from_line(&logical.text)
                    .map_err(|kind| self.error(node.span.start, kind))?;
                for mut heredoc in heredocs {
                    let mut terminated = false;
                    while let Some((number, raw)) = self.lines.next_line() {
                        last_line = number;
                        let line = trim_newline(raw);
                        end = Position {
                            line: number,
                            column: line.chars().count() + 1,
                        };
                        let candidate = if heredoc.chomp {
                            line.trim_start_matches('\t')
                        } else {
                            line
                        };
                        if candidate == heredoc.name {
                            terminated = true;
                            break;
                        }
                        heredoc.content.push_str(raw);
                    }
                    if !terminated {
                        return Err(self.error(
                            node.span.start,
                            ErrorKind::UnterminatedHeredoc { name: heredoc.name },
                        ));
                    }
                    node.heredocs.push(heredoc);
                }
            }
            node.span.end = end;
            node.comments = std::mem::take(&mut comments);
            nodes.push(node);
        }

        if nodes.is_empty() {
            return Err(self.error(
                Position {
                    line: last_line.max(1),
                    column: 1,
                },
                ErrorKind::NoInstructions,
            ));
        }
        Ok(Ast {
            file: self.file.to_string(),
            directives: self.directives.found,
            escape: self.escape,
            nodes,
            warnings,
        })
    }

    /// Builds the node for `logical.text[start..end]` (BuildKit's `newNodeFromLine`).
    fn node(&self, logical: &Logical, start: usize, end: usize) -> Result<Node, Located> {
        let text = &logical.text[start..end];
        let lead = text.len() - text.trim_start().len();
        let trimmed = text.trim();
        let cmd_start = start + lead;
        let (name, rest_offset) = match trimmed.find(is_split_space) {
            Some(i) => {
                let after = &trimmed[i..];
                let skip = after.len() - after.trim_start_matches(is_split_space).len();
                (&trimmed[..i], Some(cmd_start + i + skip))
            }
            None => (trimmed, None),
        };
        let mut flags = Vec::new();
        let mut rest = "";
        let mut rest_start = cmd_start + trimmed.len();
        if let Some(offset) = rest_offset {
            let args = &logical.text[offset..cmd_start + trimmed.len()];
            let (rest_at, found) = extract_builder_flags(args);
            for (flag, at) in found {
                flags.push(Word {
                    value: flag,
                    start: logical.position(offset + at),
                });
            }
            rest = &args[rest_at..];
            rest_start = offset + rest_at;
        }

        let keyword = name.to_lowercase();
        let at = |offset: usize| logical.position(offset);
        let (args, json) = match keyword.as_str() {
            "add" | "copy" | "volume" => {
                self.maybe_json_to_list(logical, rest, rest_start, name)?
            }
            "cmd" | "entrypoint" | "run" | "shell" => {
                self.maybe_json(logical, rest, rest_start, name)?
            }
            "arg" => (
                parse_words(rest, self.escape)
                    .into_iter()
                    .map(|(w, o)| logical.word(&w, rest_start + o))
                    .collect(),
                false,
            ),
            "env" | "label" => (
                parse_name_val(logical, rest, rest_start, &name.to_uppercase(), self.escape)?,
                false,
            ),
            "expose" | "from" => (whitespace_delimited(logical, rest, rest_start), false),
            "healthcheck" => self.health_config(logical, rest, rest_start, name)?,
            "maintainer" | "stopsignal" | "user" | "workdir" => {
                if rest.is_empty() {
                    (Vec::new(), false)
                } else {
                    (vec![logical.word(rest, rest_start)], false)
                }
            }
            "onbuild" => {
                if rest.is_empty() {
                    (Vec::new(), false)
                } else {
                    let child = self.node(logical, rest_start, rest_start + rest.len())?;
                    (vec![Arg::Instruction(Box::new(child))], false)
                }
            }
            // Unknown instructions are kept with one empty argument, as BuildKit does;
            // the instruction layer reports them.
            _ => (vec![logical.word("", rest_start)], false),
        };
        Ok(Node {
            name: name.to_string(),
            flags,
            args,
            json,
            heredocs: Vec::new(),
            original: trimmed.to_string(),
            span: Span {
                start: at(cmd_start),
                end: at(cmd_start + trimmed.len()),
            },
            comments: Vec::new(),
        })
    }

    fn maybe_json(
        &self,
        logical: &Logical,
        rest: &str,
        offset: usize,
        instruction: &str,
    ) -> Result<(Vec<Arg>, bool), Located> {
        if rest.is_empty() {
            return Ok((Vec::new(), false));
        }
        match parse_json(logical, rest, offset, instruction)? {
            Some(args) => Ok((args, true)),
            None => Ok((vec![logical.word(rest, offset)], false)),
        }
    }

    fn maybe_json_to_list(
        &self,
        logical: &Logical,
        rest: &str,
        offset: usize,
        instruction: &str,
    ) -> Result<(Vec<Arg>, bool), Located> {
        match parse_json(logical, rest, offset, instruction)? {
            Some(args) => Ok((args, true)),
            None => Ok((whitespace_delimited(logical, rest, offset), false)),
        }
    }

    fn health_config(
        &self,
        logical: &Logical,
        rest: &str,
        offset: usize,
        instruction: &str,
    ) -> Result<(Vec<Arg>, bool), Located> {
        let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if sep == 0 {
            return Ok((Vec::new(), false));
        }
        let next = rest[sep..]
            .find(|c: char| !c.is_whitespace())
            .map_or(rest.len(), |i| sep + i);
        let mut args = vec![logical.word(&rest[..sep], offset)];
        let (cmd, json) = self.maybe_json(logical, &rest[next..], offset + next, instruction)?;
        args.extend(cmd);
        Ok((args, json))
    }
}

fn can_contain_heredoc(node: &Node) -> bool {
    let mut node = node;
    if node.keyword() == "onbuild"
        && let Some(Arg::Instruction(child)) = node.args.first()
    {
        node = child;
    }
    matches!(node.keyword().as_str(), "add" | "copy" | "run") && !node.json
}

/// Splits leading `--flag` words off `line` (BuildKit's `extractBuilderFlags`).
/// Returns where the rest starts and each flag (quotes removed) with its offset.
fn extract_builder_flags(line: &str) -> (usize, Vec<(String, usize)>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();
    loop {
        let current = chars.next();
        if phase == Phase::Spaces {
            let Some((pos, ch)) = current else { break };
            if ch.is_whitespace() {
                continue;
            }
            // Only keep going while the next word starts with `--`.
            if ch != '-' || chars.peek().map(|&(_, c)| c) != Some('-') {
                return (pos, words);
            }
            phase = Phase::Word;
            word_start = pos;
        }
        let Some((pos, ch)) = current else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push((word, word_start));
            }
            break;
        };
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    let after = &line[pos..];
                    return (line.len() - after.trim_start().len(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), word_start));
                }
                word.clear();
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                continue;
            }
            if ch == '\\' {
                if let Some((_, escaped)) = chars.next() {
                    word.push(escaped);
                }
                continue;
            }
            word.push(ch);
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
            continue;
        }
        if ch == '\\' {
            match chars.next() {
                Some((_, escaped)) => word.push(escaped),
                None => phase = Phase::Word,
            }
            continue;
        }
        word.push(ch);
    }
    (line.len(), words)
}

/// Splits on blanks and quotes, keeping quotes and escapes in the words
/// (BuildKit's `parseWords`). Returns each word with its offset.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<(String, usize)> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut chars = rest.char_indices().peekable();
    loop {
        let current = chars.next();
        if phase == Phase::Spaces {
            let Some((pos, ch)) = current else { break };
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
            word_start = pos;
        }
        let Some((_, mut ch)) = current else {
            if blank_ok || !word.is_empty() {
                words.push((word, word_start));
            }
            break;
        };
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), word_start));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                let Some((_, escaped)) = chars.next() else {
                    // An escape character at the end of the line is dropped.
                    continue;
                };
                // Unquoted, the escape and the next character stay, even a quote.
                word.push(ch);
                ch = escaped;
            }
            word.push(ch);
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        // The escape character works in double quotes only.
        if ch == escape && quote != '\'' {
            let Some((_, escaped)) = chars.next() else {
                phase = Phase::Word;
                continue;
            };
            word.push(ch);
            ch = escaped;
        }
        word.push(ch);
    }
    words
}

/// ENV and LABEL: `KEY value` (legacy) or `KEY=value ...`, as key/value/separator
/// triples (the separator is `=` or empty for the legacy form).
fn parse_name_val(
    logical: &Logical,
    rest: &str,
    offset: usize,
    instruction: &str,
    escape: char,
) -> Result<Vec<Arg>, Located> {
    let words = parse_words(rest, escape);
    let Some((first, _)) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_split_space) else {
            return Err((
                logical.position(offset),
                ErrorKind::TwoArguments {
                    instruction: instruction.to_string(),
                },
            ));
        };
        let after = &rest[i..];
        let value_at = i + after.len() - after.trim_start_matches(is_split_space).len();
        return Ok(vec![
            logical.word(&rest[..i], offset),
            logical.word(&rest[value_at..], offset + value_at),
            logical.word("", offset + value_at),
        ]);
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for (word, at) in words {
        let Some(eq) = word.find('=') else {
            return Err((
                logical.position(offset + at),
                ErrorKind::MissingEquals {
                    instruction: instruction.to_string(),
                    word,
                },
            ));
        };
        // parse_words keeps every character of a word, so offsets inside it are exact.
        args.push(logical.word(&word[..eq], offset + at));
        args.push(logical.word(&word[eq + 1..], offset + at + eq + 1));
        args.push(logical.word("=", offset + at + eq));
    }
    Ok(args)
}

/// Splits on `[\t\v\f\r ]+`, keeping empty pieces (BuildKit's
/// `parseStringsWhitespaceDelimited`).
fn whitespace_delimited(logical: &Logical, rest: &str, offset: usize) -> Vec<Arg> {
    if rest.is_empty() {
        return Vec::new();
    }
    let mut args = Vec::new();
    let mut start = 0;
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_split_space(c) {
            args.push(logical.word(&rest[start..i], offset + start));
            let mut next = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !is_split_space(d) {
                    break;
                }
                next = j + d.len_utf8();
                chars.next();
            }
            start = next;
        }
    }
    args.push(logical.word(&rest[start..], offset + start));
    args
}

/// Parses a JSON array of strings. `Ok(None)`: not JSON (use the shell form);
/// an error: valid JSON with a non-string element.
fn parse_json(
    logical: &Logical,
    rest: &str,
    offset: usize,
    instruction: &str,
) -> Result<Option<Vec<Arg>>, Located> {
    let trimmed = rest.trim_start();
    let lead = rest.len() - trimmed.len();
    if !trimmed.starts_with('[') {
        return Ok(None);
    }
    let Ok(elements) = json::array(trimmed) else {
        return Ok(None);
    };
    let mut args = Vec::with_capacity(elements.len());
    for (value, at) in elements {
        match value {
            Some(s) => args.push(logical.word(&s, offset + lead + at)),
            None => {
                return Err((
                    logical.position(offset + lead + at),
                    ErrorKind::NotStringArray {
                        instruction: instruction.to_uppercase(),
                    },
                ));
            }
        }
    }
    Ok(Some(args))
}

/// Finds the heredocs opened on a line (BuildKit's `heredocsFromLine`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ErrorKind> {
    let lex = Lex {
        raw_quotes: true,
        raw_escapes: true,
        ..Lex::new('\\')
    };
    let words = lex.process_words(line, &NoVars).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Recognises `[n]<<[-]WORD` (BuildKit's `ParseHeredoc`). A delimiter with any
/// quoted part disables expansion of the body.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, ErrorKind> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = word[..digits].parse::<u32>().unwrap_or(0);
    let lex = Lex {
        skip_unset_env: true,
        ..Lex::new('\\')
    };
    let to_error = |source| ErrorKind::HeredocWord {
        word: word.to_string(),
        source,
    };
    let words = lex.process_words(rest, &NoVars).map_err(to_error)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw_lex = Lex {
        raw_quotes: true,
        ..lex
    };
    let raw = raw_lex.process_words(rest, &NoVars).map_err(to_error)?;
    if raw.len() != 1 {
        return Ok(None);
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand,
        chomp,
        fd,
    }))
}

/// Just enough JSON to read an exec-form array as Go's `encoding/json` would:
/// the first value is read, anything after it is ignored.
mod json {
    /// Not valid JSON.
    #[derive(Debug)]
    pub struct Invalid;

    type Elements = Vec<(Option<String>, usize)>;

    /// Parses the array at the start of `s`: each element's string value (None for
    /// other JSON values) and byte offset.
    pub fn array(s: &str) -> Result<Elements, Invalid> {
        let b = s.as_bytes();
        let mut i = 1;
        let mut out = Vec::new();
        skip_ws(b, &mut i);
        if b.get(i) == Some(&b']') {
            return Ok(out);
        }
        loop {
            skip_ws(b, &mut i);
            let start = i;
            if b.get(i) == Some(&b'"') {
                let (value, next) = string(s, i)?;
                out.push((Some(value), start));
                i = next;
            } else {
                i = skip_value(s, i)?;
                out.push((None, start));
            }
            skip_ws(b, &mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b']') => return Ok(out),
                _ => return Err(Invalid),
            }
        }
    }

    fn skip_ws(b: &[u8], i: &mut usize) {
        while matches!(b.get(*i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            *i += 1;
        }
    }

    /// Skips one value of any kind without recursion (nesting can be deep).
    fn skip_value(s: &str, mut i: usize) -> Result<usize, Invalid> {
        let b = s.as_bytes();
        let mut stack: Vec<u8> = Vec::new();
        loop {
            skip_ws(b, &mut i);
            match b.get(i) {
                Some(b'"') => i = string(s, i)?.1,
                Some(b'[') => {
                    i += 1;
                    skip_ws(b, &mut i);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        stack.push(b'[');
                        continue;
                    }
                }
                Some(b'{') => {
                    i += 1;
                    skip_ws(b, &mut i);
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                    } else {
                        stack.push(b'{');
                        i = key(s, i)?;
                        continue;
                    }
                }
                Some(b't') => i = literal(b, i, b"true")?,
                Some(b'f') => i = literal(b, i, b"false")?,
                Some(b'n') => i = literal(b, i, b"null")?,
                Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
                _ => return Err(Invalid),
            }
            loop {
                let Some(&top) = stack.last() else {
                    return Ok(i);
                };
                skip_ws(b, &mut i);
                match b.get(i) {
                    Some(b',') => {
                        i += 1;
                        if top == b'{' {
                            skip_ws(b, &mut i);
                            i = key(s, i)?;
                        }
                        break;
                    }
                    Some(b']') if top == b'[' => {
                        i += 1;
                        stack.pop();
                    }
                    Some(b'}') if top == b'{' => {
                        i += 1;
                        stack.pop();
                    }
                    _ => return Err(Invalid),
                }
            }
        }
    }

    fn key(s: &str, i: usize) -> Result<usize, Invalid> {
        let b = s.as_bytes();
        if b.get(i) != Some(&b'"') {
            return Err(Invalid);
        }
        let mut i = string(s, i)?.1;
        skip_ws(b, &mut i);
        if b.get(i) != Some(&b':') {
            return Err(Invalid);
        }
        Ok(i + 1)
    }

    fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Invalid> {
        if b.get(i..i + word.len()) == Some(word) {
            Ok(i + word.len())
        } else {
            Err(Invalid)
        }
    }

    fn number(b: &[u8], mut i: usize) -> Result<usize, Invalid> {
        let digits = |i: &mut usize| {
            let start = *i;
            while matches!(b.get(*i), Some(b'0'..=b'9')) {
                *i += 1;
            }
            *i > start
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(Invalid),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return Err(Invalid);
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return Err(Invalid);
            }
        }
        Ok(i)
    }

    fn hex4(b: &[u8], i: usize) -> Option<u32> {
        let digits = std::str::from_utf8(b.get(i..i + 4)?).ok()?;
        if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    }

    /// Decodes the string starting at the quote `s[i]`; returns it and the offset
    /// after the closing quote.
    fn string(s: &str, i: usize) -> Result<(String, usize), Invalid> {
        let b = s.as_bytes();
        let mut out = String::new();
        let mut j = i + 1;
        loop {
            let c = s[j..].chars().next().ok_or(Invalid)?;
            match c {
                '"' => return Ok((out, j + 1)),
                '\\' => {
                    let e = *b.get(j + 1).ok_or(Invalid)?;
                    j += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let high = hex4(b, j).ok_or(Invalid)?;
                            j += 4;
                            if (0xd800..0xdc00).contains(&high)
                                && b.get(j..j + 2) == Some(b"\\u")
                                && let Some(low) = hex4(b, j + 2)
                                && (0xdc00..0xe000).contains(&low)
                            {
                                let code = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
                                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                j += 6;
                            } else {
                                // Lone surrogates become U+FFFD, as in Go.
                                out.push(char::from_u32(high).unwrap_or('\u{fffd}'));
                            }
                        }
                        _ => return Err(Invalid),
                    }
                }
                c if (c as u32) < 0x20 => return Err(Invalid),
                c => {
                    out.push(c);
                    j += c.len_utf8();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(ast: &Ast) -> Vec<(usize, usize)> {
        ast.nodes
            .iter()
            .map(|n| (n.span.start.line, n.span.start.column))
            .collect()
    }

    #[test]
    fn records_exact_positions() {
        let text = "# syntax=docker/dockerfile:1\n\nFROM alpine AS base\n  RUN --mount=type=cache,target=/c \\\n    echo hi \\\n  there\nCOPY [\"a\", \"b\"] \n";
        let ast = parse(text, "Dockerfile").unwrap();
        assert_eq!(positions(&ast), vec![(3, 1), (4, 3), (7, 1)]);
        let run = &ast.nodes[1];
        assert_eq!(run.flags[0].start, Position { line: 4, column: 7 });
        let Arg::Word(cmd) = &run.args[0] else {
            panic!("word expected")
        };
        assert_eq!(cmd.value, "echo hi   there");
        assert_eq!(cmd.start, Position { line: 5, column: 5 });
        assert_eq!(run.span.end, Position { line: 6, column: 8 });
        let Arg::Word(b) = &ast.nodes[2].args[1] else {
            panic!("word expected")
        };
        assert_eq!(
            b.start,
            Position {
                line: 7,
                column: 12
            }
        );
        assert_eq!(ast.directive("syntax"), Some("docker/dockerfile:1"));
    }

    #[test]
    fn parses_heredocs() {
        let text = "FROM a\nRUN <<EOF bash\necho $HOME\nEOF\nCOPY <<-'ONE' 3<<\"TWO\" /dst/\n\t\tfirst\n\tONE\nsecond\nTWO\n";
        let ast = parse(text, "Dockerfile").unwrap();
        let run = &ast.nodes[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].content, "echo $HOME\n");
        assert!(run.heredocs[0].expand);
        let copy = &ast.nodes[2];
        assert_eq!(copy.heredocs.len(), 2);
        assert_eq!(copy.heredocs[0].name, "ONE");
        assert!(copy.heredocs[0].chomp && !copy.heredocs[0].expand);
        assert_eq!(copy.heredocs[0].body(), "first\n");
        assert_eq!(copy.heredocs[1].fd, 3);
        assert_eq!(copy.heredocs[1].content, "second\n");
        assert_eq!(copy.span.end.line, 9);
    }

    #[test]
    fn json_form_never_opens_heredocs() {
        let ast = parse("FROM a\nRUN [\"cat\", \"<<EOF\"]\nEOF\n", "Dockerfile");
        // `EOF` is then an (unknown) instruction of its own.
        assert_eq!(ast.unwrap().nodes.len(), 3);
    }

    #[test]
    fn refuses_unterminated_heredoc() {
        let err = parse("FROM a\nRUN <<EOF\necho\n", "Dockerfile").unwrap_err();
        assert_eq!(err.to_string(), "Dockerfile:2:1: unterminated heredoc EOF");
    }

    #[test]
    fn directives_only_at_the_top() {
        let ast = parse("# escape=`\n# check=skip=all\nFROM a\n# escape=\\\n", "D").unwrap();
        assert_eq!(ast.escape, '`');
        assert_eq!(ast.directive("check"), Some("skip=all"));
        let err = parse("# escape=`\n# escape=\\\nFROM a\n", "D").unwrap_err();
        assert_eq!(
            err.to_string(),
            "D:2:1: only one escape parser directive can be used"
        );
        let err = parse("# escape=x\nFROM a\n", "D").unwrap_err();
        assert!(err.to_string().contains("invalid escape token 'x'"));
    }

    #[test]
    fn json_quirks() {
        let ast = parse("CMD [\"a\"] trailing\nCMD [\"\\ud83d\\ude00\", \"\\ud800\"]\nCMD [\"a\", {\"k\": [1, [true]]}, 2", "D").unwrap();
        assert_eq!(
            ast.nodes[0].args.len(),
            1,
            "text after the array is ignored"
        );
        let Arg::Word(w) = &ast.nodes[1].args[0] else {
            panic!()
        };
        assert_eq!(w.value, "😀");
        // Unterminated JSON is the shell form.
        assert!(!ast.nodes[2].json);
        let err = parse("CMD [\"a\", {\"k\": [1, [true]]}]", "D").unwrap_err();
        assert_eq!(err.location.column, 11);
    }

    #[test]
    fn crlf_and_bom() {
        let ast = parse("\u{feff}FROM a\r\nRUN echo \\\r\n  b\r\n", "D").unwrap();
        let Arg::Word(w) = &ast.nodes[1].args[0] else {
            panic!()
        };
        assert_eq!(w.value, "echo   b");
    }
}
