//! `WWW-Authenticate` challenges (RFC 7235): `Bearer realm="…",service="…",scope="…"`
//! and `Basic realm="…"`.
//!
//! Parsing is tolerant: scheme names and parameter names are case-insensitive, values
//! may be tokens or quoted strings containing commas and `\"` escapes, several
//! challenges may share one header, and malformed trailing parts are ignored rather
//! than failing the whole header.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// Parameters by lowercased name.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Whether this is a `Bearer` challenge.
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    /// Whether this is a `Basic` challenge.
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }

    /// A parameter by (lowercase) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge in a header value.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut parser = Parser {
        bytes: header.as_bytes(),
        position: 0,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        parser.skip_separators();
        if parser.peek().is_none() {
            break;
        }
        let Some(word) = parser.token() else {
            // Not a token (stray quote or '='): skip the character.
            parser.position += 1;
            continue;
        };
        parser.skip_spaces();
        if parser.peek() == Some(b'=') {
            // A parameter of the current challenge.
            parser.position += 1;
            parser.skip_spaces();
            let value = if parser.peek() == Some(b'"') {
                parser.quoted()
            } else {
                parser.token().unwrap_or_default()
            };
            if let Some(current) = challenges.last_mut() {
                current.params.insert(word.to_ascii_lowercase(), value);
            }
            // Skip anything unparseable up to the next separator (e.g. token68 padding).
            while let Some(byte) = parser.peek() {
                if byte == b',' || byte == b' ' || byte == b'\t' {
                    break;
                }
                parser.position += 1;
            }
        } else {
            challenges.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    challenges
}

struct Parser<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.position += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.position += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.position;
        while let Some(byte) = self.peek() {
            if byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&byte) {
                self.position += 1;
            } else {
                break;
            }
        }
        (self.position > start)
            .then(|| String::from_utf8_lossy(&self.bytes[start..self.position]).into_owned())
    }

    fn quoted(&mut self) -> String {
        // Positioned on the opening quote.
        self.position += 1;
        let mut value = Vec::new();
        while let Some(byte) = self.peek() {
            self.position += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.position += 1;
                    }
                }
                other => value.push(other),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge() {
        let challenges = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(challenges.len(), 1);
        let bearer = &challenges[0];
        assert!(bearer.is_bearer());
        assert_eq!(bearer.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(bearer.param("service"), Some("registry.docker.io"));
        assert_eq!(
            bearer.param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn several_challenges_spaces_escapes_and_case() {
        let challenges = parse_challenges(
            r#"Basic realm="Registry \"Realm\"", BEARER Realm=https://x/token , Service = "a,b""#,
        );
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].is_basic());
        assert_eq!(challenges[0].param("realm"), Some(r#"Registry "Realm""#));
        assert!(challenges[1].is_bearer());
        assert_eq!(challenges[1].param("realm"), Some("https://x/token"));
        assert_eq!(challenges[1].param("service"), Some("a,b"));
    }

    #[test]
    fn junk_does_not_panic() {
        for header in [
            "",
            ",,,",
            "=",
            "Bearer realm=\"unterminated",
            "Bearer ===",
            "\"x\"",
        ] {
            let _ = parse_challenges(header);
        }
        assert_eq!(
            parse_challenges("Bearer realm=\"unterminated")[0].param("realm"),
            Some("unterminated")
        );
    }
}
