//! Where credentials for a registry come from.
//!
//! [`CredentialSources::lookup`] tries, in order, and stops at the first hit:
//!
//! 1. credentials given programmatically ([`CredentialSources::with_credential`]);
//! 2. `$REGISTRY_AUTH_FILE` (containers `auth.json` format);
//! 3. Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): a `credHelpers` entry for the registry, else the
//!    `credsStore` helper, then the `auths` entry (`auth` = base64 `user:password`,
//!    or `username`/`password`, or `identitytoken`, or `registrytoken`);
//! 4. containers `auth.json` (`$XDG_RUNTIME_DIR/containers/auth.json`, then
//!    `~/.config/containers/auth.json`);
//! 5. for `ghcr.io` only, `$GITHUB_TOKEN` (user `$GITHUB_ACTOR`, else
//!    `x-access-token`);
//! 6. anonymous.
//!
//! Keys in `auths`/`credHelpers` match after normalisation (`https://ghcr.io/` ≡
//! `ghcr.io`; `https://index.docker.io/v1/` ≡ `docker.io`). A credential helper is
//! `docker-credential-<name> get` with the server URL on stdin and JSON on stdout; a
//! helper answering "credentials not found" means no credential. Missing files are
//! not errors; unreadable or malformed ones are ([`CredentialError`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::reference::{DOCKER_HUB, normalize_registry};

/// The key Docker uses for Docker Hub in `config.json` and with credential helpers.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";
const GHCR: &str = "ghcr.io";
const GITHUB_TOKEN_DEFAULT_USER: &str = "x-access-token";
const HELPER_TOKEN_USERNAME: &str = "<token>";

/// A credential for one registry. `Debug` never shows secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credential: anonymous access.
    Anonymous,
    /// User name and password (or personal access token).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`), exchanged at the token
    /// endpoint with `grant_type=refresh_token`.
    IdentityToken {
        /// The user name, when known.
        username: Option<String>,
        /// The refresh token.
        token: String,
    },
    /// A bearer token to send as is (Docker's `registrytoken`).
    RegistryToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"<redacted>")
                .finish(),
            Credential::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// The user name, if the credential has one.
    pub fn username(&self) -> Option<&str> {
        match self {
            Credential::Basic { username, .. } => Some(username),
            Credential::IdentityToken { username, .. } => username.as_deref(),
            _ => None,
        }
    }
}

/// Where a credential was found (for messages such as "credentials from … were refused").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialOrigin {
    /// Given by the caller.
    Explicit,
    /// A file's `auths` entry.
    File(PathBuf),
    /// A credential helper program.
    Helper(String),
    /// The `GITHUB_TOKEN` environment variable.
    GithubToken,
    /// Nothing configured.
    None,
}

impl fmt::Display for CredentialOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialOrigin::Explicit => f.write_str("the credentials given"),
            CredentialOrigin::File(path) => write!(f, "credentials from {}", path.display()),
            CredentialOrigin::Helper(name) => {
                write!(f, "credentials from docker-credential-{name}")
            }
            CredentialOrigin::GithubToken => f.write_str("GITHUB_TOKEN"),
            CredentialOrigin::None => f.write_str("anonymous access"),
        }
    }
}

/// Errors reading or writing credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A credentials file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A credentials file is not valid JSON of the expected shape.
    #[error("cannot parse {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// An `auth` field is not base64 of `user:password`.
    #[error("{path}: the auth entry for {server} is invalid: {reason}")]
    BadAuthField {
        /// The file.
        path: PathBuf,
        /// The `auths` key.
        server: String,
        /// What is wrong.
        reason: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} {action} for {server} failed: {reason}")]
    Helper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// The server asked about.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// A credentials file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Docker config directory could not be determined.
    #[error("cannot locate Docker's config.json: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigDir,
}

/// The places credentials are read from; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// Directory holding Docker's `config.json`.
    pub docker_config_dir: Option<PathBuf>,
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// Containers `auth.json` files, in order.
    pub containers_auth_files: Vec<PathBuf>,
    /// `$GITHUB_TOKEN`, used for `ghcr.io` when nothing else is configured.
    pub github_token: Option<String>,
    /// `$GITHUB_ACTOR`, the user name to go with `github_token`.
    pub github_actor: Option<String>,
    /// Directory with `docker-credential-*` helpers; `None` searches `PATH`.
    pub helper_dir: Option<PathBuf>,
    explicit: BTreeMap<String, Credential>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

impl CredentialSources {
    /// The standard locations, from the environment.
    pub fn from_env() -> CredentialSources {
        let home = env_path("HOME");
        let docker_config_dir =
            env_path("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker")));
        let mut containers_auth_files = Vec::new();
        if let Some(runtime) = env_path("XDG_RUNTIME_DIR") {
            containers_auth_files.push(runtime.join("containers/auth.json"));
        }
        if let Some(config) =
            env_path("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")))
        {
            containers_auth_files.push(config.join("containers/auth.json"));
        }
        CredentialSources {
            docker_config_dir,
            registry_auth_file: env_path("REGISTRY_AUTH_FILE"),
            containers_auth_files,
            github_token: env_string("GITHUB_TOKEN"),
            github_actor: env_string("GITHUB_ACTOR"),
            helper_dir: None,
            explicit: BTreeMap::new(),
        }
    }

    /// No sources at all: every registry is accessed anonymously unless a credential is
    /// added with [`with_credential`](Self::with_credential).
    pub fn anonymous() -> CredentialSources {
        CredentialSources::default()
    }

    /// Uses `credential` for `registry` (any spelling: `docker.io`, `https://ghcr.io`),
    /// ahead of every file.
    pub fn with_credential(mut self, registry: &str, credential: Credential) -> CredentialSources {
        self.explicit
            .insert(normalize_registry(registry), credential);
        self
    }

    /// Docker's `config.json` path.
    pub fn docker_config_path(&self) -> Result<PathBuf, CredentialError> {
        self.docker_config_dir
            .as_ref()
            .map(|dir| dir.join("config.json"))
            .ok_or(CredentialError::NoConfigDir)
    }

    /// The credential to use for `registry` (as in references: `docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`) and where it came from.
    pub fn lookup(
        &self,
        registry: &str,
    ) -> Result<(Credential, CredentialOrigin), CredentialError> {
        let registry = normalize_registry(registry);
        if let Some(credential) = self.explicit.get(&registry) {
            return Ok((credential.clone(), CredentialOrigin::Explicit));
        }
        if let Some(path) = &self.registry_auth_file
            && let Some(found) = lookup_in_file(path, &registry, self.helper_dir.as_deref())?
        {
            return Ok(found);
        }
        if let Some(dir) = &self.docker_config_dir
            && let Some(found) = lookup_in_file(
                &dir.join("config.json"),
                &registry,
                self.helper_dir.as_deref(),
            )?
        {
            return Ok(found);
        }
        for path in &self.containers_auth_files {
            if let Some(found) = lookup_in_file(path, &registry, self.helper_dir.as_deref())? {
                return Ok(found);
            }
        }
        if registry == GHCR
            && let Some(token) = &self.github_token
        {
            let username = self
                .github_actor
                .clone()
                .unwrap_or_else(|| GITHUB_TOKEN_DEFAULT_USER.to_owned());
            return Ok((
                Credential::Basic {
                    username,
                    password: token.clone(),
                },
                CredentialOrigin::GithubToken,
            ));
        }
        Ok((Credential::Anonymous, CredentialOrigin::None))
    }
}

/// The server name Docker passes to credential helpers and uses as `auths` key.
pub(crate) fn config_key(registry: &str) -> String {
    let registry = normalize_registry(registry);
    if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.to_owned()
    } else {
        registry
    }
}

/// Reads a JSON config file; `None` when it does not exist.
pub(crate) fn read_json_file(path: &Path) -> Result<Option<serde_json::Value>, CredentialError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(serde_json::json!({})));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CredentialError::Parse {
            path: path.to_owned(),
            source,
        })
}

/// The key of a `{key: …}` map that names `registry` (any spelling), preferring a key
/// spelled exactly as `registry`.
pub(crate) fn find_entry_key<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    registry: &str,
) -> Option<&'a str> {
    let normalized = normalize_registry(registry);
    map.keys()
        .find(|key| key.as_str() == registry)
        .or_else(|| map.keys().find(|key| normalize_registry(key) == normalized))
        .map(String::as_str)
}

fn find_entry<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    registry: &str,
) -> Option<(&'a String, &'a serde_json::Value)> {
    let key = find_entry_key(map, registry)?;
    map.get_key_value(key)
}

fn lookup_in_file(
    path: &Path,
    registry: &str,
    helper_dir: Option<&Path>,
) -> Result<Option<(Credential, CredentialOrigin)>, CredentialError> {
    let Some(config) = read_json_file(path)? else {
        return Ok(None);
    };
    let helper = config
        .get("credHelpers")
        .and_then(|helpers| helpers.as_object())
        .and_then(|helpers| find_entry(helpers, registry))
        .and_then(|(_, name)| name.as_str())
        .or_else(|| config.get("credsStore").and_then(|store| store.as_str()))
        .filter(|name| !name.is_empty());
    if let Some(helper) = helper
        && let Some(credential) = helper_get(helper, &config_key(registry), helper_dir)?
    {
        return Ok(Some((
            credential,
            CredentialOrigin::Helper(helper.to_owned()),
        )));
    }
    let Some((key, entry)) = config
        .get("auths")
        .and_then(|auths| auths.as_object())
        .and_then(|auths| find_entry(auths, registry))
    else {
        return Ok(None);
    };
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(|value| value.as_str())
            .filter(|value| !value.is_empty())
    };
    let bad = |reason: String| CredentialError::BadAuthField {
        path: path.to_owned(),
        server: key.clone(),
        reason,
    };
    let mut username = field("username").map(str::to_owned);
    let mut password = field("password").map(str::to_owned);
    if let Some(auth) = field("auth") {
        let decoded = BASE64
            .decode(auth.trim())
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| bad("not UTF-8 once decoded".to_owned()))?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| bad("expected base64 of user:password".to_owned()))?;
        username = Some(user.to_owned());
        password = Some(pass.to_owned());
    }
    let origin = CredentialOrigin::File(path.to_owned());
    if let Some(token) = field("identitytoken") {
        return Ok(Some((
            Credential::IdentityToken {
                username,
                token: token.to_owned(),
            },
            origin,
        )));
    }
    if let Some(token) = field("registrytoken") {
        return Ok(Some((Credential::RegistryToken(token.to_owned()), origin)));
    }
    match (username, password) {
        (Some(username), Some(password)) => {
            Ok(Some((Credential::Basic { username, password }, origin)))
        }
        _ => Ok(None),
    }
}

pub(crate) fn helper_command(helper: &str, helper_dir: Option<&Path>) -> Command {
    let program = format!("docker-credential-{helper}");
    match helper_dir {
        Some(dir) => Command::new(dir.join(program)),
        None => Command::new(program),
    }
}

/// Runs a helper action with `input` on stdin, returning stdout, or `Err(stdout+stderr)`.
pub(crate) fn run_helper(
    helper: &str,
    action: &'static str,
    server: &str,
    input: &[u8],
    helper_dir: Option<&Path>,
) -> Result<Result<Vec<u8>, String>, CredentialError> {
    let failed = |reason: String| CredentialError::Helper {
        helper: helper.to_owned(),
        action,
        server: server.to_owned(),
        reason,
    };
    let mut child = helper_command(helper, helper_dir)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(input) {
            // A helper may exit without reading its input; its answer still counts.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(failed(format!("cannot write to it: {e}"))),
            Ok(()) => {}
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
    if output.status.success() {
        Ok(Ok(output.stdout))
    } else {
        let mut message = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(stderr.trim());
        }
        Ok(Err(message))
    }
}

fn helper_get(
    helper: &str,
    server: &str,
    helper_dir: Option<&Path>,
) -> Result<Option<Credential>, CredentialError> {
    let failed = |reason: String| CredentialError::Helper {
        helper: helper.to_owned(),
        action: "get",
        server: server.to_owned(),
        reason,
    };
    let stdout = match run_helper(helper, "get", server, server.as_bytes(), helper_dir)? {
        Ok(stdout) => stdout,
        Err(message) if message.to_lowercase().contains("credentials not found") => {
            return Ok(None);
        }
        Err(message) => return Err(failed(message)),
    };
    #[derive(serde::Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&stdout).map_err(|e| failed(format!("invalid JSON answer: {e}")))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == HELPER_TOKEN_USERNAME {
        Credential::IdentityToken {
            username: None,
            token: answer.secret,
        }
    } else {
        Credential::Basic {
            username: answer.username,
            password: answer.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sources_with(config: &serde_json::Value) -> (tempfile::TempDir, CredentialSources) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let sources = CredentialSources {
            docker_config_dir: Some(dir.path().to_owned()),
            helper_dir: Some(dir.path().to_owned()),
            ..CredentialSources::default()
        };
        (dir, sources)
    }

    fn basic(user: &str, pass: &str) -> Credential {
        Credential::Basic {
            username: user.to_owned(),
            password: pass.to_owned(),
        }
    }

    #[test]
    fn auths_entries_in_their_various_spellings() {
        let (_dir, sources) = sources_with(&serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": BASE64.encode("hub:pw:with:colons")},
                "https://ghcr.io": {"username": "gh", "password": "tok"},
                "quay.io": {"auth": BASE64.encode("q:1"), "identitytoken": "refresh"},
                "empty.example": {},
            }
        }));
        assert_eq!(
            sources.lookup("docker.io").unwrap().0,
            basic("hub", "pw:with:colons")
        );
        assert_eq!(sources.lookup("ghcr.io").unwrap().0, basic("gh", "tok"));
        assert_eq!(
            sources.lookup("quay.io").unwrap().0,
            Credential::IdentityToken {
                username: Some("q".to_owned()),
                token: "refresh".to_owned()
            }
        );
        assert_eq!(
            sources.lookup("empty.example").unwrap().0,
            Credential::Anonymous
        );
        assert_eq!(
            sources.lookup("other.example").unwrap().1,
            CredentialOrigin::None
        );
    }

    #[test]
    fn bad_auth_field_names_the_file_and_server() {
        let (dir, sources) = sources_with(&serde_json::json!({"auths": {"x.io": {"auth": "!!!"}}}));
        let message = sources.lookup("x.io").unwrap_err().to_string();
        assert!(message.contains("x.io"), "{message}");
        assert!(
            message.contains(&dir.path().join("config.json").display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn credential_helpers_are_run_with_the_server_on_stdin() {
        let (dir, sources) = sources_with(&serde_json::json!({
            "credHelpers": {"ghcr.io": "fake"},
            "credsStore": "store",
            "auths": {"ghcr.io": {"auth": BASE64.encode("file:ignored")}}
        }));
        let script = |name: &str, body: &str| {
            // Written under another name and renamed, so no open write handle can make
            // exec fail with "text file busy".
            let path = dir.path().join(format!("docker-credential-{name}"));
            let temp = dir.path().join(format!("tmp-{name}"));
            std::fs::write(&temp, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&temp, &path).unwrap();
        };
        script(
            "fake",
            r#"read server; echo "{\"ServerURL\":\"$server\",\"Username\":\"user-for-$server\",\"Secret\":\"s3cret\"}""#,
        );
        script(
            "store",
            r#"read server; if [ "$server" = "https://index.docker.io/v1/" ]; then echo '{"Username":"<token>","Secret":"idtok"}'; else echo "credentials not found in native keychain"; exit 1; fi"#,
        );
        let (credential, origin) = sources.lookup("ghcr.io").unwrap();
        assert_eq!(credential, basic("user-for-ghcr.io", "s3cret"));
        assert_eq!(origin, CredentialOrigin::Helper("fake".to_owned()));
        assert_eq!(
            sources.lookup("docker.io").unwrap().0,
            Credential::IdentityToken {
                username: None,
                token: "idtok".to_owned()
            }
        );
        assert_eq!(
            sources.lookup("nothing.example").unwrap().0,
            Credential::Anonymous
        );
        script("store", "echo 'keychain locked' >&2; exit 3");
        let message = sources.lookup("nothing.example").unwrap_err().to_string();
        assert!(
            message.contains("keychain locked") && message.contains("docker-credential-store"),
            "{message}"
        );
    }

    #[test]
    fn precedence_and_github_token() {
        let auth_file_dir = tempfile::tempdir().unwrap();
        let auth_file = auth_file_dir.path().join("auth.json");
        std::fs::write(
            &auth_file,
            serde_json::json!({"auths": {"ghcr.io": {"auth": BASE64.encode("podman:p")}}})
                .to_string(),
        )
        .unwrap();
        let (_dir, mut sources) = sources_with(&serde_json::json!({
            "auths": {"ghcr.io": {"auth": BASE64.encode("docker:d")}}
        }));
        sources.github_token = Some("ghp_x".to_owned());
        assert_eq!(sources.lookup("ghcr.io").unwrap().0, basic("docker", "d"));
        sources.registry_auth_file = Some(auth_file.clone());
        assert_eq!(sources.lookup("ghcr.io").unwrap().0, basic("podman", "p"));
        let explicit = sources
            .clone()
            .with_credential("https://ghcr.io/", basic("me", "x"));
        assert_eq!(explicit.lookup("ghcr.io").unwrap().0, basic("me", "x"));

        let mut only_token = CredentialSources {
            github_token: Some("ghp_x".to_owned()),
            ..CredentialSources::default()
        };
        assert_eq!(
            only_token.lookup("ghcr.io").unwrap().0,
            basic("x-access-token", "ghp_x")
        );
        only_token.github_actor = Some("octocat".to_owned());
        assert_eq!(
            only_token.lookup("ghcr.io").unwrap().0,
            basic("octocat", "ghp_x")
        );
        assert_eq!(
            only_token.lookup("docker.io").unwrap().0,
            Credential::Anonymous
        );

        let containers = CredentialSources {
            containers_auth_files: vec![auth_file],
            ..CredentialSources::default()
        };
        assert_eq!(
            containers.lookup("ghcr.io").unwrap().0,
            basic("podman", "p")
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", basic("user", "hunter2"));
        assert!(text.contains("user") && !text.contains("hunter2"), "{text}");
    }
}
