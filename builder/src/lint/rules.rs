//! The rule catalogue: every rule's id, severity, one-line summary and hint.
//!
//! Ids are `dockerfile/<name>` for rules over a Dockerfile (and its context's
//! `.dockerignore`) and `compose/<name>` for the compose audit. The README's
//! "Lint rules" section lists the same table; a unit test keeps them in step.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of file a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleScope {
    Dockerfile,
    Compose,
    /// Problems with the file itself (unreadable, does not parse).
    Any,
}

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub scope: RuleScope,
    /// What the rule checks, in one line.
    pub summary: &'static str,
    /// How to fix what it found, and why it matters.
    pub hint: &'static str,
}

/// The id of the finding made for a file that cannot be read or parsed. It is not
/// a rule one can ignore: nothing else could be checked in that file.
pub const PARSE_ERROR: &str = "parse-error";

macro_rules! rule {
    ($id:literal, $severity:ident, $scope:ident, $summary:literal, $hint:literal) => {
        Rule {
            id: $id,
            severity: Severity::$severity,
            scope: RuleScope::$scope,
            summary: $summary,
            hint: $hint,
        }
    };
}

/// Every rule, Dockerfile rules first, in the order the README lists them.
pub const RULES: &[Rule] = &[
    rule!(
        "parse-error",
        Error,
        Any,
        "the file cannot be read or does not parse",
        "fix the syntax error; nothing else in this file was checked"
    ),
    rule!(
        "dockerfile/base-digest",
        Warning,
        Dockerfile,
        "base image not pinned to a digest",
        "pin it: FROM image:tag@sha256:<digest> (kiln pull prints the digest); a tag can be moved to other content at any time"
    ),
    rule!(
        "dockerfile/base-tag",
        Warning,
        Dockerfile,
        "base image uses :latest or no tag",
        "name a version tag (e.g. debian:bookworm-20250101-slim); :latest changes under you and makes builds unrepeatable"
    ),
    rule!(
        "dockerfile/root-user",
        Warning,
        Dockerfile,
        "final stage runs as root (no USER, or USER root/0)",
        "create an unprivileged user and switch to it with USER before CMD/ENTRYPOINT"
    ),
    rule!(
        "dockerfile/no-healthcheck",
        Info,
        Dockerfile,
        "final stage has no HEALTHCHECK",
        "add HEALTHCHECK CMD <probe> so runtimes can tell a hung container from a healthy one (HEALTHCHECK NONE opts out explicitly)"
    ),
    rule!(
        "dockerfile/add-instead-of-copy",
        Warning,
        Dockerfile,
        "ADD used for local files where COPY does",
        "use COPY: ADD also fetches URLs and unpacks archives, which surprises readers; keep ADD for those"
    ),
    rule!(
        "dockerfile/shell-form-cmd",
        Warning,
        Dockerfile,
        "CMD or ENTRYPOINT in shell form",
        "use the exec form, e.g. CMD [\"app\", \"--flag\"]: in shell form /bin/sh is PID 1 and SIGTERM never reaches the program"
    ),
    rule!(
        "dockerfile/apt-install-recommends",
        Info,
        Dockerfile,
        "apt-get install without --no-install-recommends",
        "add --no-install-recommends: recommended packages bloat the image and widen its attack surface"
    ),
    rule!(
        "dockerfile/apt-lists",
        Info,
        Dockerfile,
        "apt-get install without removing /var/lib/apt/lists in the same RUN",
        "end the RUN with && rm -rf /var/lib/apt/lists/* (or use a cache mount on /var/lib/apt/lists): a later RUN cannot shrink this layer"
    ),
    rule!(
        "dockerfile/apt-upgrade",
        Warning,
        Dockerfile,
        "apt-get upgrade or dist-upgrade in a RUN",
        "rebuild on a newer base image instead: upgrading in place makes the image depend on the day it was built"
    ),
    rule!(
        "dockerfile/pip-unpinned",
        Warning,
        Dockerfile,
        "pip install of a package without an exact version",
        "pin it (name==1.2.3) or install from a requirements file with pinned versions (pip install -r requirements.txt)"
    ),
    rule!(
        "dockerfile/cd-in-run",
        Warning,
        Dockerfile,
        "cd used in RUN",
        "use WORKDIR: it is visible to later instructions and to readers, and cannot silently fail"
    ),
    rule!(
        "dockerfile/secret-in-env",
        Error,
        Dockerfile,
        "ENV with a secret-like name (PASSWORD, TOKEN, SECRET, KEY…)",
        "ENV values are stored in the image config for anyone who can pull it: pass secrets with RUN --mount=type=secret and at run time"
    ),
    rule!(
        "dockerfile/secret-in-arg",
        Warning,
        Dockerfile,
        "ARG with a secret-like name (PASSWORD, TOKEN, SECRET, KEY…)",
        "build args are recorded in the image history and provenance: use RUN --mount=type=secret,id=... and kiln build --secret"
    ),
    rule!(
        "dockerfile/copy-context-no-dockerignore",
        Warning,
        Dockerfile,
        "whole context copied (COPY . .) with no .dockerignore",
        "add a .dockerignore listing at least .git and .env: otherwise history, credentials and build output end up in the image"
    ),
    rule!(
        "dockerfile/dockerignore-incomplete",
        Warning,
        Dockerfile,
        "whole context copied and .dockerignore does not exclude .git or .env",
        "add the missing entries to .dockerignore: .git holds the whole history, .env usually holds credentials"
    ),
    rule!(
        "compose/image-tag",
        Warning,
        Compose,
        "service image not pinned to a tag (no tag, or :latest)",
        "name an explicit version tag: with :latest a restart or a new host can run different software than was tested"
    ),
    rule!(
        "compose/image-digest",
        Warning,
        Compose,
        "service image not pinned to a digest",
        "append @sha256:<digest> (kiln pull prints it): a tag can be re-pushed, a digest cannot"
    ),
    rule!(
        "compose/db-healthcheck",
        Warning,
        Compose,
        "database service without a healthcheck",
        "add a healthcheck (e.g. pg_isready, mysqladmin ping, redis-cli ping) so dependents can wait for it to accept connections"
    ),
    rule!(
        "compose/depends-on-healthy",
        Warning,
        Compose,
        "depends_on a database without condition: service_healthy",
        "write depends_on: {db: {condition: service_healthy}}: otherwise the dependent starts before the database accepts connections and crash-loops"
    ),
    rule!(
        "compose/db-port-published",
        Error,
        Compose,
        "database port published to the host",
        "remove the ports entry (services reach the database over the compose network by service name); publishing exposes it to every network the host is on"
    ),
    rule!(
        "compose/secret-in-environment",
        Error,
        Compose,
        "secret-like environment variable (PASSWORD, SECRET, TOKEN…) given a value",
        "use secrets: and the image's *_FILE variable (e.g. POSTGRES_PASSWORD_FILE=/run/secrets/db_password): environment values show in inspect output, logs and crash dumps"
    ),
    rule!(
        "compose/db-volume",
        Warning,
        Compose,
        "database state not in a named volume",
        "mount a named volume (declared under top-level volumes:) on the data directory: a bind mount ties it to one host's paths and permissions, an anonymous volume is lost on down/up"
    ),
    rule!(
        "compose/restart-policy",
        Warning,
        Compose,
        "service without a restart: policy",
        "set restart: unless-stopped (or on-failure, or \"no\" for one-shot jobs) so a crash or a host reboot does not leave it down"
    ),
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// A `--fail-on` threshold: the least severity that makes `kiln lint` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailOn {
    Info,
    /// Like hadolint's default threshold, which lets style-level findings pass:
    /// info findings are advice, warnings and errors fail.
    #[default]
    Warning,
    Error,
    /// Never fail on findings (parse errors still fail).
    None,
}

impl FailOn {
    /// Whether a finding of `severity` reaches this threshold.
    pub fn reached_by(self, severity: Severity) -> bool {
        match self {
            FailOn::Info => true,
            FailOn::Warning => severity >= Severity::Warning,
            FailOn::Error => severity >= Severity::Error,
            FailOn::None => false,
        }
    }
}

/// An unknown `--fail-on` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown threshold {0:?}: use error, warning, info or none")]
pub struct UnknownThreshold(pub String);

impl FromStr for FailOn {
    type Err = UnknownThreshold;

    fn from_str(s: &str) -> Result<FailOn, UnknownThreshold> {
        match s {
            "info" => Ok(FailOn::Info),
            "warning" => Ok(FailOn::Warning),
            "error" => Ok(FailOn::Error),
            "none" => Ok(FailOn::None),
            other => Err(UnknownThreshold(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_scoped() {
        let mut seen = std::collections::BTreeSet::new();
        for rule in RULES {
            assert!(seen.insert(rule.id), "duplicate rule id {}", rule.id);
            let prefix_ok = match rule.scope {
                RuleScope::Dockerfile => rule.id.starts_with("dockerfile/"),
                RuleScope::Compose => rule.id.starts_with("compose/"),
                RuleScope::Any => rule.id == PARSE_ERROR,
            };
            assert!(prefix_ok, "{}", rule.id);
        }
    }

    #[test]
    fn every_rule_is_documented_in_the_readme() {
        let readme = include_str!("../../../README.md");
        for rule in RULES {
            let row = format!("| `{}` | {} |", rule.id, rule.severity);
            assert!(readme.contains(&row), "README lacks the row {row:?}");
        }
    }

    #[test]
    fn thresholds() {
        assert!(FailOn::Warning.reached_by(Severity::Error));
        assert!(FailOn::Warning.reached_by(Severity::Warning));
        assert!(!FailOn::Warning.reached_by(Severity::Info));
        assert!(FailOn::Info.reached_by(Severity::Info));
        assert!(!FailOn::None.reached_by(Severity::Error));
        assert!(!FailOn::Error.reached_by(Severity::Warning));
        assert_eq!("none".parse::<FailOn>(), Ok(FailOn::None));
        assert!("fatal".parse::<FailOn>().is_err());
    }
}
