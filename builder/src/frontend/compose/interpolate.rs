//! Compose variable interpolation, as the compose-spec `interpolation.md` defines it.
//!
//! Forms: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` / `${VAR?message}` (required), `${VAR:+replacement}` /
//! `${VAR+replacement}` (replacement when set [and non-empty]), nested words
//! (`${A:-${B:-x}}`, `${A?$B}`), and `$$` for a literal `$`. A name is
//! `[_a-zA-Z][_a-zA-Z0-9]*`; a `$` not followed by a name, `{` or `$` is kept as is.
//! Default, message and replacement words are interpolated only when they are used.
//!
//! Errors: [`InterpolationError::Required`] when a required variable is missing,
//! [`InterpolationError::InvalidFormat`] for `${` forms Compose does not accept
//! (`${}`, `${VAR/x/y}`, an unclosed `${`).

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    #[error(
        "required variable {variable} is missing a value{}",
        reason_suffix(reason)
    )]
    Required { variable: String, reason: String },
    #[error("invalid interpolation format for {template:?}: {reason}")]
    InvalidFormat {
        template: String,
        reason: &'static str,
    },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// Interpolates `input`, looking variables up with `lookup`. Unset variables without a
/// default become empty strings (see [`interpolate_with`] to be told about them).
pub fn interpolate<F>(input: &str, lookup: F) -> Result<String, InterpolationError>
where
    F: Fn(&str) -> Option<String>,
{
    interpolate_with(input, &lookup, &mut |_| {})
}

/// Like [`interpolate`], calling `on_unset` with the name of each variable that was used
/// without a value and without a default (Compose warns about those).
pub fn interpolate_with(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    on_unset: &mut dyn FnMut(&str),
) -> Result<String, InterpolationError> {
    // Fast path: most compose values contain no `$` at all.
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut engine = Engine {
        template: input,
        lookup,
        on_unset,
    };
    engine.substitute(input)
}

struct Engine<'a> {
    /// The whole top-level string, for error messages.
    template: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    on_unset: &'a mut dyn FnMut(&str),
}

fn is_name_start(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphabetic()
}

fn is_name_char(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// Index of the `}` closing the `${` whose `{` is at `open`, counting nested braces.
fn closing_brace(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

impl Engine<'_> {
    fn invalid(&self, reason: &'static str) -> InterpolationError {
        InterpolationError::InvalidFormat {
            template: self.template.to_owned(),
            reason,
        }
    }

    fn substitute(&mut self, text: &str) -> Result<String, InterpolationError> {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        // Copy runs of literal text in one go; only `$` needs attention.
        while i < bytes.len() {
            let Some(offset) = text[i..].find('$') else {
                out.push_str(&text[i..]);
                break;
            };
            out.push_str(&text[i..i + offset]);
            i += offset;
            match bytes.get(i + 1) {
                Some(b'$') => {
                    out.push('$');
                    i += 2;
                }
                Some(b'{') => {
                    let close = closing_brace(bytes, i + 1)
                        .ok_or_else(|| self.invalid("unclosed \"${\""))?;
                    let inner = &text[i + 2..close];
                    out.push_str(&self.braced(inner)?);
                    i = close + 1;
                }
                Some(&b) if is_name_start(b) => {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len() && is_name_char(bytes[end]) {
                        end += 1;
                    }
                    out.push_str(&self.plain(&text[start..end]));
                    i = end;
                }
                _ => {
                    // Not a variable: Compose keeps the `$` as written.
                    out.push('$');
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    fn plain(&mut self, name: &str) -> String {
        match (self.lookup)(name) {
            Some(value) => value,
            None => {
                (self.on_unset)(name);
                String::new()
            }
        }
    }

    /// Handles the inside of `${...}`.
    fn braced(&mut self, inner: &str) -> Result<String, InterpolationError> {
        let bytes = inner.as_bytes();
        if bytes.is_empty() || !is_name_start(bytes[0]) {
            return Err(self.invalid("a variable name must start with a letter or '_'"));
        }
        let mut name_end = 1;
        while name_end < bytes.len() && is_name_char(bytes[name_end]) {
            name_end += 1;
        }
        let name = &inner[..name_end];
        let rest = &inner[name_end..];
        if rest.is_empty() {
            return Ok(self.plain(name));
        }
        let (colon, operator, word) = match rest.as_bytes() {
            [b':', op @ (b'-' | b'?' | b'+'), ..] => (true, *op, &rest[2..]),
            [op @ (b'-' | b'?' | b'+'), ..] => (false, *op, &rest[1..]),
            _ => {
                return Err(self.invalid(
                    "only ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt} and ${VAR+alt} are supported",
                ));
            }
        };
        let value = (self.lookup)(name);
        // With a colon, an empty value counts as unset.
        let is_set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        match operator {
            b'-' => {
                if is_set {
                    Ok(value.unwrap_or_default())
                } else {
                    self.substitute(word)
                }
            }
            b'?' => {
                if is_set {
                    Ok(value.unwrap_or_default())
                } else {
                    Err(InterpolationError::Required {
                        variable: name.to_owned(),
                        reason: self.substitute(word)?,
                    })
                }
            }
            _ => {
                if is_set {
                    self.substitute(word)
                } else {
                    Ok(String::new())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([("SET", "value"), ("EMPTY", ""), ("B", "bee"), ("N", "3")])
    }

    fn run(input: &str) -> Result<String, InterpolationError> {
        let env = env();
        interpolate(input, |name| env.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(run("$SET").unwrap(), "value");
        assert_eq!(run("${SET}").unwrap(), "value");
        assert_eq!(run("a-$SET-b").unwrap(), "a-value-b");
        assert_eq!(run("x${SET}y").unwrap(), "xvaluey");
        assert_eq!(run("$SET_suffix").unwrap(), "", "name is greedy");
        assert_eq!(run("$UNSET").unwrap(), "");
        assert_eq!(run("no dollars").unwrap(), "no dollars");
    }

    #[test]
    fn defaults_distinguish_unset_and_empty() {
        assert_eq!(run("${UNSET:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("${SET:-d}").unwrap(), "value");
        assert_eq!(run("${UNSET-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY-d}").unwrap(), "");
        assert_eq!(run("${SET-d}").unwrap(), "value");
        assert_eq!(run("${UNSET:-}").unwrap(), "");
    }

    #[test]
    fn replacements() {
        assert_eq!(run("${SET:+r}").unwrap(), "r");
        assert_eq!(run("${EMPTY:+r}").unwrap(), "");
        assert_eq!(run("${UNSET:+r}").unwrap(), "");
        assert_eq!(run("${SET+r}").unwrap(), "r");
        assert_eq!(run("${EMPTY+r}").unwrap(), "r");
        assert_eq!(run("${UNSET+r}").unwrap(), "");
    }

    #[test]
    fn required() {
        assert_eq!(run("${SET:?boom}").unwrap(), "value");
        assert_eq!(run("${EMPTY?boom}").unwrap(), "");
        let err = run("${EMPTY:?boom}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "required variable EMPTY is missing a value: boom"
        );
        let err = run("${UNSET?}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "required variable UNSET is missing a value"
        );
        let err = run("${UNSET:?need $B here}").unwrap_err();
        assert_eq!(
            err,
            InterpolationError::Required {
                variable: "UNSET".into(),
                reason: "need bee here".into()
            }
        );
    }

    #[test]
    fn nesting() {
        assert_eq!(run("${UNSET:-${B}}").unwrap(), "bee");
        assert_eq!(run("${UNSET:-${ALSO_UNSET:-deep}}").unwrap(), "deep");
        assert_eq!(run("${UNSET:-${SET:-deep}}").unwrap(), "value");
        assert_eq!(run("${UNSET:-a-$B-c}").unwrap(), "a-bee-c");
        assert_eq!(run("${UNSET:-{x}}").unwrap(), "{x}");
        // An unused default is not evaluated, so its required variable does not fail.
        assert_eq!(run("${SET:-${UNSET:?x}}").unwrap(), "value");
        assert_eq!(run("${N:+${B}${B}}").unwrap(), "beebee");
    }

    #[test]
    fn escapes_and_literals() {
        assert_eq!(run("$$SET").unwrap(), "$SET");
        assert_eq!(run("$${SET}").unwrap(), "${SET}");
        assert_eq!(run("$$$SET").unwrap(), "$value");
        assert_eq!(run("cost: 5$").unwrap(), "cost: 5$");
        assert_eq!(run("$1 and $-").unwrap(), "$1 and $-");
        assert_eq!(run("a $ b").unwrap(), "a $ b");
    }

    #[test]
    fn invalid_formats() {
        for bad in [
            "${}",
            "${SET/a/b}",
            "${1X}",
            "${SET",
            "${ SET }",
            "${SET:=x}",
        ] {
            let err = run(bad).unwrap_err();
            assert!(
                matches!(err, InterpolationError::InvalidFormat { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn unset_variables_are_reported() {
        let mut unset = Vec::new();
        let out = interpolate_with(
            "$X1 ${X2} ${X3:-x} ${SET}",
            &|n| env().get(n).map(|v| v.to_string()),
            &mut |n| unset.push(n.to_owned()),
        )
        .unwrap();
        assert_eq!(out, "  x value");
        assert_eq!(unset, ["X1", "X2"]);
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(run("é$SET→${B}ü").unwrap(), "évalue→beeü");
    }
}
