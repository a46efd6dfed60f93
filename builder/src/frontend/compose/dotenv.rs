//! `.env` files, read the way Compose reads them.
//!
//! Accepted lines: `KEY=VALUE`, `KEY: VALUE`, `export KEY=VALUE`, blank lines and `#`
//! comments. Unquoted values end at the line end, lose an inline ` #` comment and trailing
//! blanks, and are interpolated. Single-quoted values are literal. Double-quoted values
//! understand `\n`, `\t`, `\r`, `\"`, `\\` and `\$` (a literal `$`), are interpolated, and
//! like single-quoted ones may span several lines. `KEY` alone takes the value of `KEY`
//! from the environment lookup and is left out when that is unset. CRLF line ends are
//! accepted. Interpolation sees the lookup first, then the variables defined earlier.
//!
//! Errors: a bad character in a name, an unterminated quoted value, or a failed
//! interpolation, each with its 1-based line ([`Error::EnvFile`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::diag::{EnvFileProblem, Error};
use super::interpolate::interpolate_with;

/// Parses `.env` text. On error, returns the 1-based line and the problem.
pub fn parse_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, (usize, EnvFileProblem)> {
    let mut vars = BTreeMap::new();
    parse_into(text, lookup, &mut vars)?;
    Ok(vars)
}

/// Reads one `.env` file, adding its variables to `vars` (later definitions win).
/// Interpolation looks in `lookup` first, then in `vars`.
pub fn read_env_file(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    vars: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_into(&text, lookup, vars).map_err(|(line, problem)| Error::EnvFile {
        path: path.to_owned(),
        line,
        problem,
    })
}

fn is_blank(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\u{b}' | '\u{c}' | '\r' | '\u{85}' | '\u{a0}'
    )
}

fn parse_into(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    vars: &mut BTreeMap<String, String>,
) -> Result<(), (usize, EnvFileProblem)> {
    let normalized;
    let text = if text.contains("\r\n") {
        normalized = text.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        text
    };
    let line_of = |rest: &str| text[..text.len() - rest.len()].matches('\n').count() + 1;
    let mut rest = text;
    loop {
        rest = statement_start(rest);
        if rest.is_empty() {
            return Ok(());
        }
        let line = line_of(rest);
        let (key, after_key, inherited) = key_name(rest).map_err(|problem| (line, problem))?;
        if inherited {
            if let Some(value) = lookup(&key) {
                vars.insert(key, value);
            }
            rest = after_key;
            continue;
        }
        let (value, after_value) =
            value(after_key, lookup, vars).map_err(|problem| (line, problem))?;
        vars.insert(key, value);
        rest = after_value;
    }
}

/// Skips blank space, empty lines and comment lines.
fn statement_start(mut rest: &str) -> &str {
    loop {
        rest = rest.trim_start_matches(|c: char| is_blank(c) || c == '\n');
        if !rest.starts_with('#') {
            return rest;
        }
        rest = match rest.find('\n') {
            Some(end) => &rest[end..],
            None => "",
        };
    }
}

/// Reads `[export ]NAME` up to `=`, `:` or a line end. Returns the name, the text after
/// the separator (leading blanks removed) and whether the name stood alone.
fn key_name(statement: &str) -> Result<(String, &str, bool), EnvFileProblem> {
    let mut src = statement;
    if let Some(after) = src.strip_prefix("export")
        && after.starts_with(is_blank)
    {
        src = after.trim_start_matches(is_blank);
    }
    for (i, c) in src.char_indices() {
        match c {
            '=' | ':' | '\n' => {
                let key = src[..i].trim_end_matches(is_blank).to_owned();
                let after = src[i + 1..].trim_start_matches(is_blank);
                return Ok((key, after, c == '\n'));
            }
            '_' | '.' | '-' | '[' | ']' => {}
            c if is_blank(c) || c.is_alphanumeric() => {}
            other => {
                return Err(EnvFileProblem::BadName {
                    character: other,
                    name: src.lines().next().unwrap_or_default().to_owned(),
                });
            }
        }
    }
    // The last line holds a name alone, without a line end.
    Ok((src.trim_end_matches(is_blank).to_owned(), "", true))
}

fn value<'t>(
    src: &'t str,
    lookup: &dyn Fn(&str) -> Option<String>,
    earlier: &BTreeMap<String, String>,
) -> Result<(String, &'t str), EnvFileProblem> {
    let expand = |raw: &str| -> Result<String, EnvFileProblem> {
        let resolve = |name: &str| lookup(name).or_else(|| earlier.get(name).cloned());
        Ok(interpolate_with(raw, &resolve, &mut |_| {})?)
    };
    let quote = match src.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => {
            let (line, rest) = src.split_once('\n').unwrap_or((src, ""));
            let line = line
                .split_once(" #")
                .map_or(line, |(value, _comment)| value);
            let line = line.trim_end_matches(|c: char| c.is_whitespace());
            return Ok((expand(line)?, rest));
        }
    };
    // Inside quotes, a backslash before the quote character keeps the quote; any other
    // backslash pair is kept for the escape pass (double quotes) or literally (single).
    let mut raw = String::new();
    let mut escaped = false;
    for (i, c) in src.char_indices().skip(1) {
        if c != quote {
            if !escaped && c == '\\' {
                escaped = true;
                continue;
            }
            if escaped {
                escaped = false;
                raw.push('\\');
            }
            raw.push(c);
            continue;
        }
        if escaped {
            escaped = false;
            raw.push(c);
            continue;
        }
        let rest = &src[i + c.len_utf8()..];
        if quote == '\'' {
            return Ok((raw, rest));
        }
        return Ok((expand(&expand_escapes(&raw))?, rest));
    }
    Err(EnvFileProblem::Unterminated)
}

/// Shell-style escapes in double-quoted values. `\$` becomes `$$` so interpolation turns
/// it into a literal `$`; an unknown escape drops its backslash.
fn expand_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('$') => out.push_str("$$"),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BTreeMap<String, String> {
        parse_env(text, &|name| {
            (name == "FROM_SHELL").then(|| "shell".to_owned())
        })
        .unwrap()
    }

    fn get(vars: &BTreeMap<String, String>, key: &str) -> Option<String> {
        vars.get(key).cloned()
    }

    #[test]
    fn basic_forms() {
        let vars = parse("# a comment\n\nA=1\nexport B=two\nC: three\n  D = spaced  \nE=\nF= \n");
        assert_eq!(get(&vars, "A").as_deref(), Some("1"));
        assert_eq!(get(&vars, "B").as_deref(), Some("two"));
        assert_eq!(get(&vars, "C").as_deref(), Some("three"));
        assert_eq!(get(&vars, "D").as_deref(), Some("spaced"));
        assert_eq!(get(&vars, "E").as_deref(), Some(""));
        assert_eq!(get(&vars, "F").as_deref(), Some(""));
        assert_eq!(vars.len(), 6);
    }

    #[test]
    fn comments() {
        let vars = parse("A=value # comment\nB=val#ue\nC=\"quoted # kept\" # dropped\nD='x' #c\n");
        assert_eq!(get(&vars, "A").as_deref(), Some("value"));
        assert_eq!(get(&vars, "B").as_deref(), Some("val#ue"));
        assert_eq!(get(&vars, "C").as_deref(), Some("quoted # kept"));
        assert_eq!(get(&vars, "D").as_deref(), Some("x"));
    }

    #[test]
    fn quotes_and_escapes() {
        let vars = parse(concat!(
            "S='literal $A \\n \\' end'\n",
            "A=one\n",
            "D=\"tab\\there\\nnew \\\"q\\\" back\\\\slash \\$A $A\"\n",
            "M=\"line1\nline2\"\n",
            "N='l1\nl2'\n",
            "AFTER=ok\n",
        ));
        assert_eq!(get(&vars, "S").as_deref(), Some("literal $A \\n ' end"));
        assert_eq!(
            get(&vars, "D").as_deref(),
            Some("tab\there\nnew \"q\" back\\slash $A one")
        );
        assert_eq!(get(&vars, "M").as_deref(), Some("line1\nline2"));
        assert_eq!(get(&vars, "N").as_deref(), Some("l1\nl2"));
        assert_eq!(get(&vars, "AFTER").as_deref(), Some("ok"));
    }

    #[test]
    fn interpolation_prefers_lookup_then_earlier_lines() {
        let vars = parse("FROM_SHELL=file\nX=${FROM_SHELL}\nY=$X-${MISSING:-dflt}\nZ='$X'\n");
        assert_eq!(get(&vars, "X").as_deref(), Some("shell"));
        assert_eq!(get(&vars, "Y").as_deref(), Some("shell-dflt"));
        assert_eq!(get(&vars, "Z").as_deref(), Some("$X"));
    }

    #[test]
    fn name_alone_takes_the_environment() {
        let vars = parse("FROM_SHELL\nNOT_IN_SHELL\nLAST=1\nFROM_SHELL");
        assert_eq!(get(&vars, "FROM_SHELL").as_deref(), Some("shell"));
        assert!(!vars.contains_key("NOT_IN_SHELL"));
        assert_eq!(get(&vars, "LAST").as_deref(), Some("1"));
    }

    #[test]
    fn crlf_line_ends() {
        let vars = parse("A=1\r\nB=\"two\"\r\nC=three # c\r\n");
        assert_eq!(get(&vars, "A").as_deref(), Some("1"));
        assert_eq!(get(&vars, "B").as_deref(), Some("two"));
        assert_eq!(get(&vars, "C").as_deref(), Some("three"));
    }

    #[test]
    fn later_definitions_win() {
        let vars = parse("A=1\nA=2\n");
        assert_eq!(get(&vars, "A").as_deref(), Some("2"));
    }

    #[test]
    fn errors_name_the_line() {
        let (line, problem) = parse_env("A=1\n\nB=\"open\nC=2\n", &|_| None).unwrap_err();
        assert_eq!((line, problem), (3, EnvFileProblem::Unterminated));
        let (line, problem) = parse_env("A=1\nB$=2\n", &|_| None).unwrap_err();
        assert_eq!(line, 2);
        assert!(matches!(
            problem,
            EnvFileProblem::BadName { character: '$', .. }
        ));
        let (line, problem) = parse_env("A=${X:?needed}\n", &|_| None).unwrap_err();
        assert_eq!(line, 1);
        assert_eq!(
            problem.to_string(),
            "required variable X is missing a value: needed"
        );
    }
}
