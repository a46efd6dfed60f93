//! Docker's path patterns: `.dockerignore` files, `COPY --exclude`, and the
//! `filepath.Match` wildcards of `COPY` sources.
//!
//! This is a port of moby's `patternmatcher` (not gitignore):
//!
//! - patterns are cleaned like Go's `filepath.Clean` and are always relative to
//!   the root they apply to: `foo` matches only `foo`, never `a/foo`;
//! - `*` is any run of characters but `/`, `?` one character but `/`, `[...]` a
//!   character class (`[^...]` negated), `\` escapes the next character;
//! - `**` matches any number of directories (`**/` may match none), and a
//!   trailing `**` matches everything below;
//! - a path is matched when a pattern matches it **or any of its parent
//!   directories**; the last matching pattern wins and `!pattern` re-includes.
//!
//! moby classifies patterns into exact, prefix (`foo/**`), suffix (`**/foo`,
//! `**foo`) and general matches, and the prefix/suffix shortcuts have their own
//! quirks (`**foo` also matches `barfoo`); they are reproduced here because
//! users' ignore files were written against them.
//!
//! # Errors
//!
//! [`PatternError`] names the pattern that is malformed (an unclosed `[`, an empty
//! class, a lone `!`).

use std::fmt;

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// Parses the text of a `.dockerignore` file into patterns, as moby's
/// `ignorefile.ReadAll` does: a UTF-8 BOM is dropped, lines starting with `#`
/// are comments, lines are trimmed, empty lines skipped, each pattern is
/// cleaned and a leading `/` removed (keeping a leading `!`).
pub fn parse_dockerignore(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut patterns = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        if invert {
            cleaned.insert(0, '!');
        }
        patterns.push(cleaned);
    }
    patterns
}

/// Go's `path.Clean` for `/`-separated paths: removes `.` and empty components,
/// resolves `..` lexically; the empty path becomes `.`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// One compiled pattern.
#[derive(Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: MatchKind,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bang = if self.exclusion { "!" } else { "" };
        write!(f, "Pattern({bang}{})", self.cleaned)
    }
}

#[derive(Clone, Debug)]
enum MatchKind {
    Exact,
    /// `foo/**`: the path starts with the pattern minus its trailing `**`.
    Prefix(String),
    /// `**/foo`, `**foo`: the path ends with the pattern minus its leading `**`.
    Suffix(String),
    General(Nfa),
}

impl Pattern {
    /// Compiles one pattern; a leading `!` makes it an exclusion (re-include).
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let mut text = clean(pattern.trim());
        let mut exclusion = false;
        if let Some(rest) = text.strip_prefix('!') {
            if rest.is_empty() {
                return Err(PatternError {
                    pattern: pattern.to_owned(),
                    reason: "illegal exclusion pattern \"!\"",
                });
            }
            exclusion = true;
            text = rest.to_owned();
        }
        let kind = compile(&text).map_err(|reason| PatternError {
            pattern: pattern.to_owned(),
            reason,
        })?;
        Ok(Pattern {
            cleaned: text,
            exclusion,
            kind,
        })
    }

    /// Whether this is a `!` (re-include) pattern.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// The cleaned pattern text, without the `!`.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether the pattern matches exactly this `/`-separated relative path
    /// (parents are not considered here).
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix
                        .strip_prefix('/')
                        .is_some_and(|rest| !rest.is_empty() && path == rest)
            }
            MatchKind::General(nfa) => nfa.matches(path),
        }
    }

    /// Whether the pattern could match some path strictly below `dir`.
    pub fn could_match_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        match &self.kind {
            MatchKind::Exact => self.cleaned.starts_with(&dir_slash),
            MatchKind::Prefix(prefix) => {
                dir_slash.starts_with(prefix.as_str()) || prefix.starts_with(&dir_slash)
            }
            MatchKind::Suffix(_) => true,
            MatchKind::General(nfa) => nfa.alive_after(&dir_slash),
        }
    }
}

/// moby's `Pattern.compile`, producing the same classification.
fn compile(pattern: &str) -> Result<MatchKind, &'static str> {
    #[derive(PartialEq, Clone, Copy)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut nodes = Vec::new();
    let mut kind = Kind::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        kind = Kind::Regexp;
                    }
                    nodes.push(Node::StarAny);
                } else {
                    kind = Kind::Regexp;
                    nodes.push(Node::OptDirsEntry);
                    nodes.push(Node::AnyUntilSlash);
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                kind = Kind::Regexp;
                nodes.push(Node::StarNonSlash);
            }
            '?' => {
                kind = Kind::Regexp;
                nodes.push(Node::OneNonSlash);
            }
            '\\' => {
                if let Some(&next) = chars.get(i) {
                    i += 1;
                    kind = Kind::Regexp;
                    nodes.push(Node::Lit(next));
                } else {
                    nodes.push(Node::Lit('\\'));
                }
            }
            '[' => {
                kind = Kind::Regexp;
                let (class, used) = parse_class(&chars[i..])?;
                i += used;
                nodes.push(Node::Class(class));
            }
            ']' => return Err("unmatched ']'"),
            other => nodes.push(Node::Lit(other)),
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => MatchKind::Exact,
        Kind::Prefix => MatchKind::Prefix(pattern[..pattern.len() - 2].to_owned()),
        Kind::Suffix => MatchKind::Suffix(pattern[2..].to_owned()),
        Kind::Regexp => MatchKind::General(Nfa { nodes }),
    })
}

/// Parses a class body after `[`; returns the class and the characters used
/// (including the closing `]`).
fn parse_class(chars: &[char]) -> Result<(Class, usize), &'static str> {
    let mut i = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("unclosed character class");
        };
        if c == ']' && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, i + 1));
        }
        let mut lo = c;
        i += 1;
        if lo == '\\' {
            lo = *chars.get(i).ok_or("unclosed character class")?;
            i += 1;
        }
        let mut hi = lo;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i).ok_or("unclosed character class")?;
                i += 1;
            }
            if hi < lo {
                return Err("bad character range");
            }
        }
        ranges.push((lo, hi));
    }
}

#[derive(Clone, Debug)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != self.negated
    }
}

/// A small NFA over characters: the regular expression moby builds, evaluated
/// without a regex engine. Node `i` leads to `i + 1`; `nodes.len()` accepts.
#[derive(Clone, Debug)]
struct Nfa {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
enum Node {
    Lit(char),
    OneNonSlash,
    Class(Class),
    /// `*`: skip, or consume a non-`/` and stay.
    StarNonSlash,
    /// trailing `**`: skip, or consume anything and stay.
    StarAny,
    /// `**/` (regex `(.*/)?`): skip both this and the next node, or enter it.
    OptDirsEntry,
    /// inside `(.*/)?`: consume anything and stay; a `/` may also leave.
    AnyUntilSlash,
}

impl Nfa {
    fn closure(&self, states: &mut [bool]) {
        // Epsilon edges only go forward, so one ordered pass suffices.
        for i in 0..self.nodes.len() {
            if !states[i] {
                continue;
            }
            match self.nodes[i] {
                Node::StarNonSlash | Node::StarAny => states[i + 1] = true,
                Node::OptDirsEntry => {
                    states[i + 1] = true;
                    states[i + 2] = true;
                }
                _ => {}
            }
        }
    }

    fn step(&self, states: &[bool], c: char, next: &mut [bool]) {
        next.iter_mut().for_each(|s| *s = false);
        for (i, node) in self.nodes.iter().enumerate() {
            if !states[i] {
                continue;
            }
            match node {
                Node::Lit(l) if *l == c => next[i + 1] = true,
                Node::OneNonSlash if c != '/' => next[i + 1] = true,
                Node::Class(class) if class.contains(c) => next[i + 1] = true,
                Node::StarNonSlash if c != '/' => next[i] = true,
                Node::StarAny => next[i] = true,
                Node::AnyUntilSlash => {
                    next[i] = true;
                    if c == '/' {
                        next[i + 1] = true;
                    }
                }
                _ => {}
            }
        }
        self.closure(next);
    }

    fn run(&self, input: &str) -> Vec<bool> {
        let mut states = vec![false; self.nodes.len() + 1];
        let mut next = states.clone();
        states[0] = true;
        self.closure(&mut states);
        for c in input.chars() {
            self.step(&states, c, &mut next);
            std::mem::swap(&mut states, &mut next);
            if !states.iter().any(|s| *s) {
                break;
            }
        }
        states
    }

    fn matches(&self, input: &str) -> bool {
        self.run(input)[self.nodes.len()]
    }

    fn alive_after(&self, prefix: &str) -> bool {
        self.run(prefix).iter().any(|s| *s)
    }
}

/// Go's `filepath.Match` for one path component (no `/` in name): `*`, `?`,
/// `[...]`, `\` escapes. Used for `COPY` source wildcards.
pub fn match_component(pattern: &str, name: &str) -> Result<bool, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' => nodes.push(Node::StarNonSlash),
            '?' => nodes.push(Node::OneNonSlash),
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    nodes.push(Node::Lit(next));
                }
                None => {
                    return Err(PatternError {
                        pattern: pattern.to_owned(),
                        reason: "trailing backslash",
                    });
                }
            },
            '[' => {
                let (class, used) = parse_class(&chars[i..]).map_err(|reason| PatternError {
                    pattern: pattern.to_owned(),
                    reason,
                })?;
                i += used;
                nodes.push(Node::Class(class));
            }
            other => nodes.push(Node::Lit(other)),
        }
    }
    Ok(Nfa { nodes }.matches(name))
}

/// Whether a `COPY` source contains `filepath.Match` meta characters.
pub fn has_wildcards(source: &str) -> bool {
    source.contains(['*', '?', '['])
}

/// An ordered list of patterns, evaluated as moby's `PatternMatcher`.
#[derive(Clone, Debug, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    has_exclusions: bool,
}

/// Per-pattern results for a directory, so its children need not re-match
/// every parent prefix (moby's `MatchesUsingParentResults`).
#[derive(Clone, Debug, Default)]
pub struct MatchInfo {
    /// `matched[i]`: pattern `i` matched this path or one of its parents.
    matched: Vec<bool>,
}

impl PatternMatcher {
    /// Compiles `patterns` in order; blank ones are skipped.
    pub fn new<I, S>(patterns: I) -> Result<PatternMatcher, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut compiled = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref().trim();
            if pattern.is_empty() {
                continue;
            }
            compiled.push(Pattern::new(pattern)?);
        }
        let has_exclusions = compiled.iter().any(Pattern::is_exclusion);
        Ok(PatternMatcher {
            patterns: compiled,
            has_exclusions,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any `!` pattern exists (a walker must then look inside
    /// excluded directories).
    pub fn has_exclusions(&self) -> bool {
        self.has_exclusions
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether `path` (relative, `/`-separated) is matched: some pattern matches
    /// it or one of its parents, and no later `!` pattern does.
    pub fn matches(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.match_indices('/').map(|(at, _)| &path[..at]).collect();
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(path) || parents.iter().any(|p| pattern.matches(p));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Like [`matches`](Self::matches), reusing the parent directory's
    /// [`MatchInfo`] (pass `MatchInfo::default()` for top-level paths). Returns
    /// the result and this path's own info for its children.
    pub fn matches_with_parent(&self, path: &str, parent: &MatchInfo) -> (bool, MatchInfo) {
        let mut info = MatchInfo {
            matched: Vec::with_capacity(self.patterns.len()),
        };
        let mut matched = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            let hit = parent.matched.get(i).copied().unwrap_or(false) || pattern.matches(path);
            info.matched.push(hit);
            if pattern.exclusion == matched && hit {
                matched = !pattern.exclusion;
            }
        }
        (matched, info)
    }

    /// For a matched (excluded) directory: whether a `!` pattern could still
    /// re-include it or something below it, so a walker must descend.
    pub fn must_descend(&self, dir: &str, info: &MatchInfo) -> bool {
        self.has_exclusions
            && self.patterns.iter().enumerate().any(|(i, p)| {
                p.exclusion
                    && (info.matched.get(i).copied().unwrap_or(false) || p.could_match_below(dir))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_is_go_clean() {
        assert_eq!(clean(""), ".");
        assert_eq!(clean("a//b/./c/"), "a/b/c");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a/../../b"), "../../b");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("a/.."), ".");
    }

    #[test]
    fn dockerignore_lines() {
        let text = "\u{feff}# comment\n  foo  \n\n/abs\n! /keep \n #not comment\n./x/../y\n";
        assert_eq!(
            parse_dockerignore(text),
            vec!["foo", "abs", "!keep", "#not comment", "y"]
        );
    }

    #[test]
    fn classes_and_escapes() {
        let p = Pattern::new("[a-c]x").unwrap();
        assert!(p.matches("bx"));
        assert!(!p.matches("dx"));
        let p = Pattern::new("[^a]x").unwrap();
        assert!(p.matches("bx"));
        assert!(!p.matches("ax"));
        let p = Pattern::new("\\*").unwrap();
        assert!(p.matches("*"));
        assert!(!p.matches("a"));
        assert!(Pattern::new("[abc").is_err());
        assert!(Pattern::new("!").is_err());
    }

    #[test]
    fn component_match_is_go_filepath_match() {
        assert!(match_component("*.txt", "a.txt").unwrap());
        assert!(!match_component("*.txt", "a.txt.bak").unwrap());
        assert!(match_component("f?o", "foo").unwrap());
        assert!(match_component("[!x]", "!").unwrap());
        assert!(match_component("a\\*", "a*").unwrap());
        assert!(match_component("a[", "a").is_err());
    }

    #[test]
    fn descend_decisions() {
        let m = PatternMatcher::new(["docs", "!docs/keep.md", "build", "!**/*.keep"]).unwrap();
        let (excluded, info) = m.matches_with_parent("docs", &MatchInfo::default());
        assert!(excluded);
        assert!(m.must_descend("docs", &info));
        let m = PatternMatcher::new(["docs", "!other/keep.md"]).unwrap();
        let (excluded, info) = m.matches_with_parent("docs", &MatchInfo::default());
        assert!(excluded);
        assert!(!m.must_descend("docs", &info));
        let m = PatternMatcher::new(["docs", "!docs"]).unwrap();
        let (excluded, info) = m.matches_with_parent("docs", &MatchInfo::default());
        assert!(!excluded);
        let (excluded, _) = m.matches_with_parent("docs/a", &info);
        assert!(!excluded);
    }
}
