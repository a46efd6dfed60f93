//! Dockerfile shell-word processing: quote removal, escapes, `$VAR` expansion and
//! word splitting, as BuildKit's `shell.Lex` does it.
//!
//! Contract: [`Lex::process_word`] expands one word (spaces kept) and
//! [`Lex::process_words`] expands then splits on unquoted whitespace. Supported forms:
//! `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`,
//! `${VAR%%pat}`, `${VAR/pat/rep}`, `${VAR//pat/rep}`; positional and special
//! parameters (`$1`, `$@`, …) are never set. Errors ([`ShellError`]): unterminated
//! quotes, bad or unterminated substitutions, unsupported modifiers, `?` on an unset
//! variable, invalid patterns.

/// Looks variables up while expanding.
pub trait Vars {
    fn get_var(&self, name: &str) -> Option<&str>;
}

impl Vars for [(String, String)] {
    fn get_var(&self, name: &str) -> Option<&str> {
        // Later entries win, like environment lists.
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<T: Vars + ?Sized> Vars for &T {
    fn get_var(&self, name: &str) -> Option<&str> {
        (**self).get_var(name)
    }
}

impl Vars for Vec<(String, String)> {
    fn get_var(&self, name: &str) -> Option<&str> {
        self.as_slice().get_var(name)
    }
}

impl Vars for std::collections::BTreeMap<String, String> {
    fn get_var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Vars for std::collections::HashMap<String, String> {
    fn get_var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVars;

impl Vars for NoVars {
    fn get_var(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Why a word could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidPattern { pattern: String, escaped: String },
    #[error("substitutions nested more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// Nested `${a:-${b:-…}}` deeper than this is refused instead of exhausting the stack.
const MAX_DEPTH: usize = 100;

/// A configured word processor (BuildKit's `shell.Lex`).
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    /// The escape character: `\` by default, `` ` `` with `# escape=``.
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

impl Lex {
    pub fn new(escape: char) -> Lex {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` into one string; whitespace is kept.
    pub fn process_word(&self, word: &str, vars: &dyn Vars) -> Result<String, ShellError> {
        self.process(word, vars).map(|(w, _)| w)
    }

    /// Expands `word` and splits the result into words on unquoted whitespace.
    pub fn process_words(&self, word: &str, vars: &dyn Vars) -> Result<Vec<String>, ShellError> {
        self.process(word, vars).map(|(_, ws)| ws)
    }

    fn process(&self, word: &str, vars: &dyn Vars) -> Result<(String, Vec<String>), ShellError> {
        let mut sw = ShellWord {
            src: word,
            pos: 0,
            lex: self,
            vars,
            depth: 0,
        };
        let (w, words) = sw.process_stop_on(None, self.raw_escapes)?;
        Ok((w, words.finish()))
    }
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct ShellWord<'a> {
    src: &'a str,
    pos: usize,
    lex: &'a Lex,
    vars: &'a dyn Vars,
    depth: usize,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Words), ShellError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ShellError::TooDeep);
        }
        let result = self.stop_on_inner(stop, raw_escapes);
        self.depth -= 1;
        result
    }

    fn stop_on_inner(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Words), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words));
            }
            let special = match ch {
                '\'' | '"' if !self.lex.skip_process_quotes => true,
                '$' => true,
                _ => false,
            };
            if special {
                let tmp = match ch {
                    '\'' => self.process_single_quote()?,
                    '"' => self.process_double_quote()?,
                    _ => self.process_dollar()?,
                };
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            let mut ch = self.next().unwrap_or(ch);
            if ch == self.lex.escape {
                if raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                // The escape character escapes the next one, except at the end.
                match self.next() {
                    None => break,
                    Some(c) => {
                        ch = c;
                        words.add_raw_char(ch);
                    }
                }
            } else {
                words.add_char(ch);
            }
            result.push(ch);
        }
        if let Some(stop) = stop {
            return Err(ShellError::Unterminated(stop));
        }
        Ok((result, words))
    }

    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        // Everything up to the next ' is literal; ' cannot be escaped inside.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ShellError> {
        // Literal except $ and the escape character, which escapes only " $ and itself.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.lex.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, ShellError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.vars.get_var(&name) {
                Some(v) => v.to_string(),
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            _ => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(ShellError::MissingBrace);
        };
        let mut modifier = ch.to_string();
        match ch {
            '}' => Ok(match self.vars.get_var(&name) {
                Some(v) => v.to_string(),
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    match self.next() {
                        Some(c) => {
                            ch = c;
                            modifier.push(c);
                        }
                        None => return Err(ShellError::MissingBrace),
                    }
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(ShellError::UnsupportedModifier(modifier));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() && e != ShellError::TooDeep {
                            return Err(ShellError::MissingBrace);
                        }
                        return Err(e);
                    }
                };
                let value = self.vars.get_var(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty_or_unset = match value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match ch {
                    '-' => Ok(if empty_or_unset {
                        word
                    } else {
                        value.unwrap_or_default().to_string()
                    }),
                    '+' => Ok(if empty_or_unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(ShellError::Required {
                            name,
                            message: if word.is_empty() {
                                "is not allowed to be unset".to_string()
                            } else {
                                word
                            },
                        }),
                        Some("") if null_is_unset => Err(ShellError::Required {
                            name,
                            message: if word.is_empty() {
                                "is not allowed to be empty".to_string()
                            } else {
                                word
                            },
                        }),
                        Some(v) => Ok(v.to_string()),
                    },
                    '#' | '%' => {
                        // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                        let (greedy, pattern) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let value = value.unwrap_or_default();
                        let tokens = compile_pattern(pattern)?;
                        Ok(if ch == '%' {
                            trim_suffix(&tokens, value, greedy)
                        } else {
                            trim_prefix(&tokens, value, greedy)
                        })
                    }
                    _ => Err(ShellError::UnsupportedModifier(modifier)),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() && e != ShellError::TooDeep {
                            return Err(ShellError::MissingSlash);
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() && e != ShellError::TooDeep {
                            return Err(ShellError::MissingBrace);
                        }
                        return Err(e);
                    }
                };
                let value = self.vars.get_var(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let tokens = compile_pattern(&pattern)?;
                Ok(replace(
                    &tokens,
                    value.unwrap_or_default(),
                    &replacement,
                    replace_all,
                ))
            }
            _ => Err(ShellError::UnsupportedModifier(modifier)),
        }
    }

    fn process_name(&mut self) -> String {
        // A name is letters, digits and _; a leading digit reads all digits
        // (positional parameter); a special parameter is one character.
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(c) = self.peek() {
                    if !c.is_numeric() {
                        break;
                    }
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !ch.is_numeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// One element of a shell pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

fn compile_pattern(pattern: &str) -> Result<Vec<Tok>, ShellError> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => {
                // `\}` and `\/` only protect the ${} syntax; the escape is not part
                // of the pattern.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(e @ ('*' | '?' | '\\')) => out.push(Tok::Lit(e)),
                    other => {
                        return Err(ShellError::InvalidPattern {
                            pattern: pattern.to_string(),
                            escaped: other.map(String::from).unwrap_or_default(),
                        });
                    }
                }
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    Ok(out)
}

/// Adds pattern position `i` and everything reachable by skipping stars.
fn add_state(tokens: &[Tok], states: &mut [bool], mut i: usize) {
    loop {
        if states[i] {
            return;
        }
        states[i] = true;
        if i < tokens.len() && tokens[i] == Tok::Star {
            i += 1;
        } else {
            return;
        }
    }
}

/// For text `s`, which lengths `k` make `s[..k]` match the whole pattern.
fn matching_prefix_lengths(tokens: &[Tok], s: &[char]) -> Vec<bool> {
    let mut ends = vec![false; s.len() + 1];
    let mut states = vec![false; tokens.len() + 1];
    add_state(tokens, &mut states, 0);
    ends[0] = states[tokens.len()];
    let mut next = vec![false; tokens.len() + 1];
    for (k, &c) in s.iter().enumerate() {
        next.iter_mut().for_each(|b| *b = false);
        let mut any = false;
        for i in 0..tokens.len() {
            if !states[i] {
                continue;
            }
            match tokens[i] {
                Tok::Star => add_state(tokens, &mut next, i),
                Tok::Any => add_state(tokens, &mut next, i + 1),
                Tok::Lit(l) if l == c => add_state(tokens, &mut next, i + 1),
                Tok::Lit(_) => {}
            }
        }
        std::mem::swap(&mut states, &mut next);
        for &b in states.iter() {
            any |= b;
        }
        ends[k + 1] = states[tokens.len()];
        if !any {
            break;
        }
    }
    ends
}

fn trim_prefix(tokens: &[Tok], value: &str, greedy: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let ends = matching_prefix_lengths(tokens, &chars);
    let pick = if greedy {
        ends.iter().rposition(|&b| b)
    } else {
        ends.iter().position(|&b| b)
    };
    match pick {
        Some(k) => chars[k..].iter().collect(),
        None => value.to_string(),
    }
}

fn full_match(tokens: &[Tok], s: &[char]) -> bool {
    matching_prefix_lengths(tokens, s)[s.len()]
}

fn trim_suffix(tokens: &[Tok], value: &str, greedy: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let start = if greedy {
        (0..=n).find(|&st| full_match(tokens, &chars[st..]))
    } else {
        (0..=n).rev().find(|&st| full_match(tokens, &chars[st..]))
    };
    match start {
        Some(st) => chars[..st].iter().collect(),
        None => value.to_string(),
    }
}

/// The leftmost, then longest match at or after `from`: (start, end) in chars.
fn find_match(tokens: &[Tok], chars: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=chars.len()).find_map(|start| {
        let ends = matching_prefix_lengths(tokens, &chars[start..]);
        ends.iter()
            .rposition(|&b| b)
            .map(|len| (start, start + len))
    })
}

fn replace(tokens: &[Tok], value: &str, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    if !all {
        return match find_match(tokens, &chars, 0) {
            Some((s, e)) => {
                let mut out: String = chars[..s].iter().collect();
                out.push_str(replacement);
                out.extend(&chars[e..]);
                out
            }
            None => value.to_string(),
        };
    }
    // Go's ReplaceAllString: no empty match right after a previous match, always
    // advance, and `$0`/`${name}` in the replacement are template references.
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    let mut first = true;
    while search <= chars.len() {
        let Some((s, e)) = find_match(tokens, &chars, search) else {
            break;
        };
        out.extend(&chars[last_end..s]);
        if e > last_end || s == 0 && first {
            let matched: String = chars[s..e].iter().collect();
            out.push_str(&expand_template(replacement, &matched));
        }
        first = false;
        last_end = e;
        search = if search + 1 > e { search + 1 } else { e };
    }
    out.extend(&chars[last_end.min(chars.len())..]);
    out
}

/// Expands Go regexp replacement templates: `$$`, `$0`/`${0}` (the match); other
/// group references are empty because shell patterns have no groups.
fn expand_template(template: &str, matched: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(end) if end > 0 && r[..end].chars().all(is_name) => (&r[..end], &r[end + 1..]),
                _ => {
                    out.push('$');
                    continue;
                }
            }
        } else {
            let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            if end == 0 {
                out.push('$');
                continue;
            }
            (&rest[..end], &rest[end..])
        };
        if name.chars().all(|c| c.is_ascii_digit()) && name.trim_start_matches('0').is_empty() {
            out.push_str(matched);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("A".into(), "path/to/file.tar.gz".into()),
            ("E".into(), String::new()),
        ]
    }

    fn word(s: &str) -> Result<String, ShellError> {
        Lex::new('\\').process_word(s, &env())
    }

    #[test]
    fn trims_prefixes_and_suffixes() {
        assert_eq!(word("${A#*/}").unwrap(), "to/file.tar.gz");
        assert_eq!(word("${A##*/}").unwrap(), "file.tar.gz");
        assert_eq!(word("${A%.*}").unwrap(), "path/to/file.tar");
        assert_eq!(word("${A%%.*}").unwrap(), "path/to/file");
        assert_eq!(word("${A#nomatch}").unwrap(), "path/to/file.tar.gz");
        assert_eq!(word("${A%?z}").unwrap(), "path/to/file.tar.");
    }

    #[test]
    fn replaces_first_and_all() {
        assert_eq!(word("${A/\\//_}").unwrap(), "path_to/file.tar.gz");
        assert_eq!(word("${A//\\//_}").unwrap(), "path_to_file.tar.gz");
        assert_eq!(word("${A//t/T}").unwrap(), "paTh/To/file.Tar.gz");
        assert_eq!(word("${A/*/x}").unwrap(), "x");
        // `$$` is the (unset) PID parameter, so the replacement is empty.
        assert_eq!(word("${A//a/$$}").unwrap(), "pth/to/file.tr.gz");
        // Go's replacement templates: `$0` is the match (the escape stays).
        assert_eq!(word("${A//a/\\$0}").unwrap(), "p\\ath/to/file.t\\ar.gz");
        assert_eq!(word("${UNSET/a/b}").unwrap(), "");
    }

    #[test]
    fn required_and_alternatives() {
        assert_eq!(word("${E-x}").unwrap(), "");
        assert_eq!(word("${E:-x}").unwrap(), "x");
        assert_eq!(word("${E+x}").unwrap(), "x");
        assert_eq!(word("${E:+x}").unwrap(), "");
        assert_eq!(
            word("${NOPE:?give it}").unwrap_err().to_string(),
            "NOPE: give it"
        );
        assert_eq!(
            word("${E:?}").unwrap_err().to_string(),
            "E: is not allowed to be empty"
        );
    }

    #[test]
    fn refuses_bad_patterns_and_deep_nesting() {
        assert!(matches!(
            word("${A#\\x}"),
            Err(ShellError::InvalidPattern { .. })
        ));
        let deep = "${X:-".repeat(500) + &"}".repeat(500);
        assert_eq!(word(&deep), Err(ShellError::TooDeep));
    }

    #[test]
    fn backtick_escape() {
        let lex = Lex::new('`');
        assert_eq!(lex.process_word("a`$A b\\c", &env()).unwrap(), "a$A b\\c");
        assert_eq!(
            lex.process_words("x` y z", &NoVars).unwrap(),
            vec!["x y".to_string(), "z".to_string()]
        );
    }
}
