//! The `# syntax=` directive: kiln implements the Dockerfile syntax itself and runs no
//! frontend images.
//!
//! Contract: [`check`] accepts the official Dockerfile frontend at major version 1 —
//! `docker/dockerfile:1`, `:1.7`, `:1.7.1`, `:1-labs`, `:1.7-labs`, `:labs`,
//! `:latest`, `:experimental`, no tag, the `dockerfile-upstream` repository, with
//! `docker.io/` or `index.docker.io/` in front and/or an `@sha256:` pin — and returns a
//! notice saying kiln builds it natively. Any other image is refused with an
//! [`ErrorKind::UnsupportedSyntax`] located at the directive (`Dockerfile:1:1`) and a
//! hint to drop or change the directive.

use super::ast::Ast;
use super::error::{Error, ErrorKind, Location};

/// Whether `value` names BuildKit's Dockerfile frontend at a version kiln implements.
fn is_dockerfile_frontend(value: &str) -> bool {
    let without_digest = match value.split_once('@') {
        Some((name, digest)) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return false;
            }
            name
        }
        None => value,
    };
    let (repository, tag) = match without_digest.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (without_digest, ""),
    };
    let repository = repository
        .strip_prefix("docker.io/")
        .or_else(|| repository.strip_prefix("index.docker.io/"))
        .unwrap_or(repository);
    if !matches!(
        repository,
        "docker/dockerfile" | "docker/dockerfile-upstream"
    ) {
        return false;
    }
    let version = tag.strip_suffix("-labs").unwrap_or(tag);
    match version {
        "" | "latest" | "labs" | "experimental" | "master" | "1" => true,
        v => v.strip_prefix("1.").is_some_and(|rest| {
            rest.split(['.', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_alphabetic())
            })
        }),
    }
}

/// Checks the `# syntax=` directive of `ast`; `Some(notice)` when there is an accepted one.
pub fn check(ast: &Ast) -> Result<Option<String>, Error> {
    let Some(directive) = ast.directives.iter().find(|d| d.name == "syntax") else {
        return Ok(None);
    };
    let value = directive.value.trim();
    if is_dockerfile_frontend(value) {
        return Ok(Some(format!(
            "# syntax={value}: kiln implements the Dockerfile syntax natively (no frontend image is pulled)"
        )));
    }
    Err(Error::new(
        Location {
            file: ast.file.clone(),
            line: directive.line.max(1),
            column: 1,
        },
        ErrorKind::UnsupportedSyntax {
            value: value.to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_frontends_are_accepted() {
        for value in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7",
            "docker/dockerfile:1.7.1",
            "docker/dockerfile:1-labs",
            "docker.io/docker/dockerfile:1.7-labs",
            "docker/dockerfile",
            "docker/dockerfile-upstream:master",
            "docker/dockerfile:1@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021",
            "docker.io/docker/dockerfile@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021",
        ] {
            assert!(is_dockerfile_frontend(value), "{value}");
        }
    }

    #[test]
    fn other_frontends_are_refused_at_the_directive() {
        for value in [
            "tonistiigi/dockerfile:runmount",
            "docker/dockerfile:0.9",
            "ghcr.io/example/frontend:1",
            "docker/dockerfile:1@sha256:short",
        ] {
            assert!(!is_dockerfile_frontend(value), "{value}");
        }
        let ast = super::super::parse(
            "# syntax=example.com/frontend:2\nFROM scratch\n",
            "Dockerfile",
        )
        .unwrap();
        let error = check(&ast).unwrap_err();
        assert!(error.to_string().starts_with("Dockerfile:1:1: "), "{error}");
        assert!(error.hint().unwrap().contains("syntax"));
    }
}
