//! A real OCI registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on a free loopback port.
//!
//! Contract: [`TestRegistry::start`] writes a config into a fresh temporary
//! directory (storage, logs, certificates and password file live there too),
//! starts `docker-registry serve`, and returns once `GET /v2/` answers (200,
//! or 401 when auth is on). A port taken between choosing and binding is
//! retried on another port. Dropping the value kills and reaps the registry,
//! stops the token issuer and removes the directory.
//!
//! - [`Mode::Http`]: plain HTTP, no auth.
//! - [`Mode::TlsBasic`]: HTTPS with a certificate for `127.0.0.1`/`localhost`
//!   signed by a CA made by the harness ([`TestRegistry::ca_cert_path`],
//!   [`TestRegistry::certs_dir`]), and htpasswd (bcrypt) basic auth.
//! - [`Mode::Token`]: plain HTTP with bearer-token auth: the registry
//!   challenges with `Bearer realm="http://127.0.0.1:TPORT/token",
//!   service="kiln-test-registry"`, and a token issuer run by the harness
//!   hands out RS256 JWTs for the test user's basic credentials.
//!
//! [`TestRegistry::request_log`] parses the registry's access log (Apache
//! combined format, written by the registry after each response: a request
//! may show up a moment after its response arrived; see
//! [`TestRegistry::wait_for_requests`]).

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::RsaKeyPair;

use crate::pki::{self, libtrust_key_id};
pub use crate::token::TokenRequest;
use crate::token::{IssuerConfig, TokenIssuer};
use crate::{Error, command};

/// The `service` the registry and the token issuer agree on (token mode).
pub const TOKEN_SERVICE: &str = "kiln-test-registry";
/// The `iss` of the tokens (token mode).
pub const TOKEN_ISSUER: &str = "kiln-test-issuer";
/// The user name of the test credentials (TLS-basic and token modes).
pub const TEST_USER: &str = "kiln";

/// How long to wait for the registry to answer after starting it.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How many ports to try when the chosen one is taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Which transport and authentication the registry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Plain HTTP, anonymous.
    Http,
    /// HTTPS (harness CA) with htpasswd basic auth.
    TlsBasic,
    /// Plain HTTP with bearer tokens from the harness's token issuer.
    Token,
}

/// One request from the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, `HEAD`, `PUT`, …
    pub method: String,
    /// The request path without the query string (`/v2/x/blobs/uploads/`).
    pub path: String,
    /// The status the registry answered with.
    pub status: u16,
}

/// A running registry; stopped and removed on drop.
#[derive(Debug)]
pub struct TestRegistry {
    mode: Mode,
    port: u16,
    child: Child,
    credentials: Option<(String, String)>,
    issuer: Option<TokenIssuer>,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry in `mode` (see the module docs).
    pub fn start(mode: Mode) -> Result<TestRegistry, Error> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-test-registry-")
            .tempdir()
            .map_err(Error::io(
                "create a temporary directory in",
                std::env::temp_dir(),
            ))?;
        let d = dir.path();
        let storage = d.join("storage");
        fs::create_dir(&storage).map_err(Error::io("create directory", &storage))?;

        let credentials = match mode {
            Mode::Http => None,
            Mode::TlsBasic | Mode::Token => Some((TEST_USER.to_string(), random_password())),
        };
        let mut issuer = None;
        let (tls_section, auth_section) = match (mode, &credentials) {
            (Mode::TlsBasic, Some((user, password))) => {
                let pki = pki::pki()?;
                write(&d.join("ca.crt"), &pki.ca_cert_pem)?;
                write(&d.join("server.crt"), &pki.server_cert_pem)?;
                write(&d.join("server.key"), &pki.server_key_pem)?;
                let htpasswd =
                    command::stdout(Command::new("htpasswd").args(["-Bbn", user, password]))?;
                write(&d.join("htpasswd"), htpasswd.trim())?;
                (
                    format!(
                        "  tls:\n    certificate: {}\n    key: {}\n",
                        yaml_path(&d.join("server.crt")),
                        yaml_path(&d.join("server.key"))
                    ),
                    format!(
                        "auth:\n  htpasswd:\n    realm: {TOKEN_SERVICE}\n    path: {}\n",
                        yaml_path(&d.join("htpasswd"))
                    ),
                )
            }
            (Mode::Token, Some((user, password))) => {
                let pki = pki::pki()?;
                let bundle = d.join("token-signer.crt");
                write(&bundle, &pki.signer_cert_pem)?;
                let key = RsaKeyPair::from_pkcs8(&pki.signer_key_pkcs8).map_err(|rejected| {
                    Error::SigningKey {
                        path: bundle.clone(),
                        reason: rejected.to_string(),
                    }
                })?;
                let started = TokenIssuer::start(IssuerConfig {
                    user: user.clone(),
                    password: password.clone(),
                    service: TOKEN_SERVICE.to_string(),
                    issuer: TOKEN_ISSUER.to_string(),
                    key,
                    cert_der: pki.signer_cert_der.clone(),
                    key_id: libtrust_key_id(&pki.signer_public_key_der),
                })?;
                let auth = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    started.realm(),
                    yaml_path(&bundle)
                );
                issuer = Some(started);
                (String::new(), auth)
            }
            _ => (String::new(), String::new()),
        };

        let scheme = if mode == Mode::TlsBasic {
            "https"
        } else {
            "http"
        };
        let agent = http_agent(mode)?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let config = d.join("config.yml");
            write(
                &config,
                &format!(
                    "version: 0.1\n\
                     log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                     maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: kiln-testimages-secret\n\
                     {tls_section}\
                     {auth_section}",
                    yaml_path(&storage)
                ),
            )?;
            let mut child = spawn_registry(d, &config)?;
            let url = format!("{scheme}://127.0.0.1:{port}");
            match wait_ready(&mut child, &d.join("registry.log"), &agent, &url) {
                Ok(()) => {
                    let registry = TestRegistry {
                        mode,
                        port,
                        child,
                        credentials,
                        issuer,
                        dir,
                    };
                    registry.write_certs_dir()?;
                    return Ok(registry);
                }
                Err(Retry::OtherPort(error)) => last_error = Some(error),
                Err(Retry::No(error)) => {
                    stop(&mut child);
                    return Err(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT` (TLS mode).
    pub fn url(&self) -> String {
        let scheme = if self.mode == Mode::TlsBasic {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host())
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The PEM of the CA that signed the registry's certificate (TLS mode).
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        (self.mode == Mode::TlsBasic).then(|| self.dir.path().join("ca.crt"))
    }

    /// A directory laid out like `/etc/docker/certs.d`: it holds
    /// `<host>/ca.crt` for this registry's [`host`](Self::host) (TLS mode).
    pub fn certs_dir(&self) -> Option<PathBuf> {
        (self.mode == Mode::TlsBasic).then(|| self.dir.path().join("certs.d"))
    }

    /// User and password the registry accepts (TLS-basic and token modes).
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// The token endpoint (token mode): `http://127.0.0.1:TPORT/token`.
    pub fn token_realm(&self) -> Option<String> {
        self.issuer.as_ref().map(TokenIssuer::realm)
    }

    /// The requests the token issuer answered so far (token mode; else empty).
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.issuer
            .as_ref()
            .map(TokenIssuer::requests)
            .unwrap_or_default()
    }

    /// The registry's storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's own log (stderr), for diagnosing failures.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The access log (stdout, Apache combined format).
    pub fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// The requests the registry logged so far, oldest first.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        fs::read_to_string(self.access_log_path())
            .map(|text| text.lines().filter_map(parse_access_line).collect())
            .unwrap_or_default()
    }

    /// Waits until the access log holds at least `count` requests (or
    /// `timeout` passes) and returns it.
    pub fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<LoggedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.request_log();
            if log.len() >= count || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn write_certs_dir(&self) -> Result<(), Error> {
        if let (Some(certs), Some(ca)) = (self.certs_dir(), self.ca_cert_path()) {
            let host_dir = certs.join(self.host());
            fs::create_dir_all(&host_dir).map_err(Error::io("create directory", &host_dir))?;
            fs::copy(&ca, host_dir.join("ca.crt")).map_err(Error::io("copy", &ca))?;
        }
        Ok(())
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn stop(child: &mut Child) {
    // Already gone is fine; the registry must not outlive its directory.
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `GET {url}/v2/` until it answers 200 or 401, the process exits, or
/// [`READY_TIMEOUT`] passes.
fn wait_ready(child: &mut Child, log: &Path, agent: &ureq::Agent, url: &str) -> Result<(), Retry> {
    let started = Instant::now();
    let probe = format!("{url}/v2/");
    let log_tail = || command::tail(&fs::read_to_string(log).unwrap_or_default(), 2000);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log_tail = log_tail();
            let in_use = log_tail.contains("address already in use");
            let error = Error::RegistryExited {
                url: url.to_string(),
                status: status.to_string(),
                log_tail,
            };
            return Err(if in_use {
                Retry::OtherPort(error)
            } else {
                Retry::No(error)
            });
        }
        if let Ok(response) = agent.get(&probe).call()
            && matches!(response.status().as_u16(), 200 | 401)
        {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(Retry::No(Error::RegistryNotReady {
                url: url.to_string(),
                waited: READY_TIMEOUT,
                log_tail: log_tail(),
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

enum Retry {
    OtherPort(Error),
    No(Error),
}

fn spawn_registry(dir: &Path, config: &Path) -> Result<Child, Error> {
    let stdout_path = dir.join("access.log");
    let stderr_path = dir.join("registry.log");
    let stdout = File::create(&stdout_path).map_err(Error::io("create", &stdout_path))?;
    let stderr = File::create(&stderr_path).map_err(Error::io("create", &stderr_path))?;
    let mut command = Command::new("docker-registry");
    command
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // The registry reads REGISTRY_* variables as config overrides.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_") {
            command.env_remove(key);
        }
    }
    command.spawn().map_err(|source| Error::Spawn {
        program: "docker-registry".to_string(),
        source,
    })
}

fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(Error::io("listen on", "127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("listen on", "127.0.0.1:0"))?;
    Ok(addr.port())
}

fn random_password() -> String {
    let mut bytes = [0u8; 12];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return "kiln-test-password".to_string();
    }
    hex::encode(bytes)
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(Error::io("write", path))
}

/// A path as a double-quoted YAML scalar.
fn yaml_path(path: &Path) -> String {
    let text = path
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("\"{text}\"")
}

/// An HTTP client that trusts the harness CA and returns every status as a
/// response, for probing the registry.
fn http_agent(mode: Mode) -> Result<ureq::Agent, Error> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)));
    if mode == Mode::TlsBasic {
        let pki = pki::pki()?;
        let ca =
            ureq::tls::Certificate::from_pem(pki.ca_cert_pem.as_bytes()).map_err(|source| {
                Error::Http {
                    url: "harness CA".to_string(),
                    source: Box::new(source),
                }
            })?;
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
                .build(),
        );
    }
    Ok(config.build().into())
}

/// Parses one Apache combined log line:
/// `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "referer" "agent"`.
fn parse_access_line(line: &str) -> Option<LoggedRequest> {
    let (_, rest) = line.split_once('"')?;
    let (request, rest) = rest.split_once('"')?;
    let mut request_parts = request.split(' ');
    let method = request_parts.next()?.to_string();
    let target = request_parts.next()?;
    let status = rest.split_whitespace().next()?.parse().ok()?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    Some(LoggedRequest {
        method,
        path,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_parse() {
        let line = r#"127.0.0.1 - - [22/Nov/2025:16:14:00 +0000] "PATCH /v2/a/b/blobs/uploads/u?_state=x HTTP/1.1" 202 0 "" "skopeo/1.9.3""#;
        assert_eq!(
            parse_access_line(line),
            Some(LoggedRequest {
                method: "PATCH".into(),
                path: "/v2/a/b/blobs/uploads/u".into(),
                status: 202
            })
        );
        assert_eq!(
            parse_access_line("time=\"x\" level=info msg=\"listening\""),
            None
        );
    }

    #[test]
    fn yaml_paths_are_quoted() {
        assert_eq!(yaml_path(Path::new("/tmp/a b")), "\"/tmp/a b\"");
    }
}
