//! Release tags: the `semver-sha` tag scheme and the OCI release labels.
//!
//! Contract: [`semver_sha`] turns a SemVer version and a git commit into tags
//! the way docker/metadata-action's `type=semver` does, with the commit added:
//!
//! - `1.2.0` → `1.2.0`, `1.2`, `1`, `1.2.0-sha.<7 hex>`;
//! - a pre-release (`1.2.0-rc.1`) → only `1.2.0-rc.1` and `1.2.0-rc.1-sha.<7 hex>`
//!   (floating tags must never point at a pre-release);
//! - a leading `v` (`v1.2.0`, a git tag name) is dropped.
//!
//! and the labels `org.opencontainers.image.version`, `.revision` (the full
//! commit), `.source` (the `origin` remote as an https URL, credentials removed;
//! omitted for local paths or when there is no `origin`) and `.created`.
//!
//! The commit comes from the build context's git repository ([`git_revision`],
//! which runs `git rev-parse HEAD`) unless given. kiln shells out to `git`
//! rather than link a git library: reading HEAD needs the repository format
//! (worktrees, packed refs, reftable, `safe.directory`) exactly as the user's
//! git sees it, and the only crates that do that (`gix`, `git2`) add around a
//! hundred crates or a C library for two lookups.
//!
//! Errors ([`Error`]): a version that is not SemVer; SemVer build metadata
//! (`1.0.0+sha.abc`: `+` is not allowed in an image tag, so kiln writes the
//! commit as `-sha.`); a context outside any git repository (or no `git`) with
//! no revision given; a given revision that is not a hex commit id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors of the tag scheme.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "version {version:?} is not a SemVer version (MAJOR.MINOR.PATCH[-PRERELEASE]): {reason}"
    )]
    InvalidVersion { version: String, reason: String },
    #[error(
        "version {version:?} has SemVer build metadata (+{metadata}): `+` is not allowed in an image tag; give the plain version, kiln adds the commit as {plain}-sha.<commit>"
    )]
    BuildMetadata {
        version: String,
        metadata: String,
        plain: String,
    },
    #[error(
        "{}: not in a git repository ({detail}); the semver-sha tag scheme takes the commit from the build context's repository — build from a git checkout or give the commit with --revision",
        dir.display()
    )]
    NotAGitRepository { dir: PathBuf, detail: String },
    #[error("cannot run git to read the commit of {}: {source}; install git or give the commit with --revision", dir.display())]
    GitUnavailable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("revision {revision:?} is not a git commit id (7 to 64 hex digits)")]
    InvalidRevision { revision: String },
}

/// A commit and where its repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRevision {
    /// The full commit id (lower-case hex).
    pub commit: String,
    /// The `origin` remote as a browsable https URL, when there is one.
    pub source: Option<String>,
}

/// The tags and labels of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseTags {
    /// Tag parts (`1.2.0`, `1.2`, …), to put after each image name.
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// What a release is made of.
#[derive(Debug, Clone)]
pub struct ReleaseOptions<'a> {
    /// The SemVer version (`1.2.0`, `v1.2.0`, `1.3.0-rc.1`).
    pub version: &'a str,
    /// The commit; found with [`git_revision`] on the context when `None`.
    pub revision: Option<GitRevision>,
    /// The build context (its git repository gives the commit).
    pub context: &'a Path,
    /// `created` as Unix seconds (`SOURCE_DATE_EPOCH`, else the build time).
    pub created: i64,
}

/// Tags and labels for the `semver-sha` scheme (see the module docs).
pub fn semver_sha(options: &ReleaseOptions<'_>) -> Result<ReleaseTags, Error> {
    let version = parse_version(options.version)?;
    let revision = match &options.revision {
        Some(revision) => revision.clone(),
        None => git_revision(options.context)?,
    };
    let short = &revision.commit[..7];
    let full = version.to_string();
    let mut tags = floating_tags(&version);
    tags.push(format!("{full}-sha.{short}"));

    let mut labels = BTreeMap::new();
    labels.insert("org.opencontainers.image.version".to_owned(), full);
    labels.insert(
        "org.opencontainers.image.revision".to_owned(),
        revision.commit.clone(),
    );
    if let Some(source) = &revision.source {
        labels.insert("org.opencontainers.image.source".to_owned(), source.clone());
    }
    labels.insert(
        "org.opencontainers.image.created".to_owned(),
        crate::build::rfc3339(options.created),
    );
    Ok(ReleaseTags { tags, labels })
}

/// The tags of a release that need no commit: `1.2.0`, `1.2`, `1` (only `1.2.0-rc.1`
/// for a pre-release). These are the tags a rollback moves back.
pub fn version_tags(version: &str) -> Result<Vec<String>, Error> {
    Ok(floating_tags(&parse_version(version)?))
}

fn floating_tags(version: &semver::Version) -> Vec<String> {
    let mut tags = vec![version.to_string()];
    if version.pre.is_empty() {
        tags.push(format!("{}.{}", version.major, version.minor));
        tags.push(version.major.to_string());
    }
    tags
}

/// Parses a release version: SemVer 2.0 with an optional leading `v`, without
/// build metadata.
pub fn parse_version(text: &str) -> Result<semver::Version, Error> {
    let trimmed = text.strip_prefix('v').unwrap_or(text);
    if let Some((plain, metadata)) = trimmed.split_once('+') {
        return Err(Error::BuildMetadata {
            version: text.to_owned(),
            metadata: metadata.to_owned(),
            plain: plain.to_owned(),
        });
    }
    semver::Version::parse(trimmed).map_err(|e| Error::InvalidVersion {
        version: text.to_owned(),
        reason: e.to_string(),
    })
}

/// A commit given by the user (`--revision`): 7 to 64 hex digits, lower-cased.
/// A short id gives a short `revision` label; the tag uses its first 7 digits.
pub fn given_revision(revision: &str, source: Option<String>) -> Result<GitRevision, Error> {
    let ok = (7..=64).contains(&revision.len()) && revision.chars().all(|c| c.is_ascii_hexdigit());
    if !ok {
        return Err(Error::InvalidRevision {
            revision: revision.to_owned(),
        });
    }
    Ok(GitRevision {
        commit: revision.to_ascii_lowercase(),
        source,
    })
}

/// The commit checked out in the git repository that contains `dir`, and its
/// `origin` remote, read with the `git` command.
pub fn git_revision(dir: &Path) -> Result<GitRevision, Error> {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD^{commit}"])?.ok_or_else(|| {
        Error::NotAGitRepository {
            dir: dir.to_path_buf(),
            detail: "git rev-parse HEAD failed".to_owned(),
        }
    });
    let commit = match commit {
        Ok(commit) => commit,
        Err(error) => {
            // Say why: not a repository at all, or one without commits.
            let detail =
                git_stderr(dir, &["rev-parse", "--verify", "HEAD^{commit}"]).unwrap_or_default();
            return Err(match error {
                Error::NotAGitRepository { dir, .. } if !detail.is_empty() => {
                    Error::NotAGitRepository { dir, detail }
                }
                other => other,
            });
        }
    };
    let source =
        git(dir, &["config", "--get", "remote.origin.url"])?.and_then(|url| browsable_url(&url));
    given_revision(&commit, source).map_err(|_| Error::NotAGitRepository {
        dir: dir.to_path_buf(),
        detail: format!("git printed {commit:?} for HEAD"),
    })
}

/// The committer time (Unix seconds) of the commit checked out in the git
/// repository that contains `dir`; `None` outside a repository, in one without
/// commits, or without a `git` command (a default, not a requirement).
pub fn git_commit_time(dir: &Path) -> Option<i64> {
    git(dir, &["log", "-1", "--format=%ct", "HEAD"])
        .ok()
        .flatten()
        .and_then(|time| time.parse().ok())
}

fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    // Reading only: a checkout owned by another user (CI containers) is fine.
    command
        .arg("-c")
        .arg("safe.directory=*")
        .arg("-C")
        .arg(dir)
        .args(args);
    command
}

/// stdout of a successful git command, trimmed; `None` when git failed.
fn git(dir: &Path, args: &[&str]) -> Result<Option<String>, Error> {
    let output = git_command(dir, args)
        .output()
        .map_err(|source| Error::GitUnavailable {
            dir: dir.to_path_buf(),
            source,
        })?;
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()))
}

fn git_stderr(dir: &Path, args: &[&str]) -> Option<String> {
    let output = git_command(dir, args).output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr);
    text.lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("fatal: ").to_owned())
}

/// A remote URL as https for `org.opencontainers.image.source`: scp-like
/// `git@host:owner/repo.git` and `ssh://`/`git://` become `https://host/owner/repo`,
/// user names and passwords are dropped, `.git` is removed. Local paths give
/// `None`.
pub fn browsable_url(remote: &str) -> Option<String> {
    let remote = remote.trim();
    let (host, path) = if let Some((scheme, rest)) = remote.split_once("://") {
        if !matches!(
            scheme,
            "https" | "http" | "ssh" | "git" | "git+ssh" | "ssh+git"
        ) {
            return None;
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or(authority);
        // An ssh port is not the web server's.
        let host = if scheme == "https" || scheme == "http" {
            host
        } else {
            host.split(':').next().unwrap_or(host)
        };
        (host.to_owned(), path.to_owned())
    } else {
        // scp-like: [user@]host:path (a `/` before the `:` makes it a local path).
        let (authority, path) = remote.split_once(':')?;
        if authority.contains('/') || authority.is_empty() {
            return None;
        }
        let host = authority.rsplit('@').next().unwrap_or(authority);
        (host.to_owned(), path.trim_start_matches('/').to_owned())
    };
    if host.is_empty() {
        return None;
    }
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    Some(format!("https://{host}/{path}"))
}

/// Every image name with every tag: `-t registry/app` and tags `1.2.0`, `1` give
/// `registry/app:1.2.0`, `registry/app:1`. A name that has a tag keeps it too
/// (`-t app:edge` also gives `app:edge`); a digest on a name is dropped.
pub fn tagged_references(names: &[String], tags: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let without_digest = name.split('@').next().unwrap_or(name);
        let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
        let repository = match without_digest[last_slash..].rfind(':') {
            Some(i) => {
                out.push(without_digest.to_owned());
                &without_digest[..last_slash + i]
            }
            None => without_digest,
        };
        for tag in tags {
            out.push(format!("{repository}:{tag}"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|r| seen.insert(r.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str) -> Result<ReleaseTags, Error> {
        semver_sha(&ReleaseOptions {
            version,
            revision: Some(GitRevision {
                commit: "abc1234def5678abc1234def5678abc1234def56".into(),
                source: Some("https://github.com/o/r".into()),
            }),
            context: Path::new("/nonexistent"),
            created: 0,
        })
    }

    #[test]
    fn stable_versions_get_floating_tags() {
        let r = release("1.2.0").unwrap();
        assert_eq!(r.tags, ["1.2.0", "1.2", "1", "1.2.0-sha.abc1234"]);
        assert_eq!(r.labels["org.opencontainers.image.version"], "1.2.0");
        assert_eq!(
            r.labels["org.opencontainers.image.revision"],
            "abc1234def5678abc1234def5678abc1234def56"
        );
        assert_eq!(
            r.labels["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(release("v2.0.1").unwrap().tags[0], "2.0.1");
    }

    #[test]
    fn prereleases_get_no_floating_tags() {
        let r = release("1.2.0-rc.1").unwrap();
        assert_eq!(r.tags, ["1.2.0-rc.1", "1.2.0-rc.1-sha.abc1234"]);
    }

    #[test]
    fn version_tags_are_the_release_tags_without_the_commit() {
        assert_eq!(version_tags("v1.2.0").unwrap(), ["1.2.0", "1.2", "1"]);
        assert_eq!(version_tags("1.2.0-rc.1").unwrap(), ["1.2.0-rc.1"]);
        assert!(version_tags("1.2").is_err());
    }

    #[test]
    fn bad_versions_are_explained() {
        let e = release("1.0.0+sha.abc1234").unwrap_err();
        assert!(matches!(e, Error::BuildMetadata { .. }));
        let text = e.to_string();
        assert!(
            text.contains("`+` is not allowed") && text.contains("1.0.0-sha."),
            "{text}"
        );
        assert!(matches!(
            release("1.2").unwrap_err(),
            Error::InvalidVersion { .. }
        ));
        assert!(matches!(
            release("01.2.3").unwrap_err(),
            Error::InvalidVersion { .. }
        ));
    }

    #[test]
    fn remote_urls_become_https() {
        assert_eq!(
            browsable_url("git@github.com:o/r.git").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            browsable_url("https://user:ghp_secret@github.com/o/r.git").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            browsable_url("ssh://git@gitlab.example.com:2222/g/s/r.git").as_deref(),
            Some("https://gitlab.example.com/g/s/r")
        );
        assert_eq!(browsable_url("/srv/git/r.git"), None);
        assert_eq!(browsable_url("./r"), None);
        assert_eq!(browsable_url("file:///srv/r.git"), None);
    }

    #[test]
    fn references_get_every_tag() {
        let tags = vec!["1.2.0".to_owned(), "1".to_owned()];
        assert_eq!(
            tagged_references(
                &["localhost:5000/app".into(), "ghcr.io/o/app:edge".into()],
                &tags
            ),
            [
                "localhost:5000/app:1.2.0",
                "localhost:5000/app:1",
                "ghcr.io/o/app:edge",
                "ghcr.io/o/app:1.2.0",
                "ghcr.io/o/app:1"
            ]
        );
    }

    #[test]
    fn revisions_are_checked() {
        assert!(given_revision("abc1234", None).is_ok());
        assert!(given_revision("abc12", None).is_err());
        assert!(given_revision("main", None).is_err());
    }
}
