//! The HTTP side of the client: per-registry connection state, scheme selection,
//! TLS roots, authentication and retries. Pull, push and referrers are built on
//! [`RegistryClient::send`].
//!
//! Contract:
//!
//! - **Scheme.** HTTPS always. Loopback registries (`localhost`, `127.0.0.0/8`, `::1`)
//!   and those listed in [`ClientConfig::insecure_registries`] may fall back to plain
//!   HTTP when HTTPS fails to connect or handshake; the choice is made once per
//!   registry (at the first request, with a `GET /v2/` ping) and remembered. Insecure
//!   registries also accept any certificate, as Docker's `--insecure-registry` does.
//! - **TLS roots.** The platform's roots, plus every `*.crt` in
//!   `<certs_dir>/<host[:port]>/` (Docker's `/etc/docker/certs.d` layout, where
//!   `X.cert` + `X.key` also give a client certificate), plus
//!   [`ClientConfig::extra_ca_pems`].
//! - **Proxies.** From the environment, except for loopback registries.
//! - **Authentication.** The ping learns the registry's challenge. `Bearer`: a token
//!   for the exact scope set of the operation (several `scope=` parameters in one
//!   request) is fetched from the realm, with Basic credentials (GET) or an identity
//!   token (OAuth2 POST, `grant_type=refresh_token`), cached until `expires_in`
//!   (default 60 s) runs out. `Basic`: the credentials are sent. A 401 is answered
//!   once by re-reading the challenge and fetching a fresh token; a second 401 is
//!   returned to the caller, which reports [`Error::Unauthorized`].
//! - **Retries.** Connection failures, timeouts, 5xx (but 501) and 429 are retried
//!   with exponential backoff ([`RetryPolicy`]); a 429's or 503's `Retry-After`
//!   (seconds or HTTP-date) is honoured. Other 4xx are never retried.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::auth::challenge::{Challenge, parse_challenges};
use crate::auth::{Credential, CredentialOrigin, CredentialSources};
use crate::error::{Error, Result};
use crate::progress::{self, ProgressEvent, ProgressSink};
use crate::reference::{Reference, api_host};

/// How failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub initial_delay: Duration,
    /// Upper bound on any delay, including one asked for by `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// Client settings. [`Default`] reads credentials from the environment.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where credentials come from.
    pub credentials: CredentialSources,
    /// Registries (`host` or `host:port`) that may use plain HTTP and unverified TLS.
    pub insecure_registries: Vec<String>,
    /// Docker's per-registry certificate directory (`/etc/docker/certs.d`).
    pub certs_dir: PathBuf,
    /// Extra CA certificates (PEM) trusted for every registry.
    pub extra_ca_pems: Vec<Vec<u8>>,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
    /// Blobs uploaded at once.
    pub max_concurrent_uploads: usize,
    /// Blobs up to this size are uploaded in a single `PUT`.
    pub monolithic_upload_max: u64,
    /// How larger blobs are sent: `None` streams the rest of the blob in one `PATCH`
    /// (as Docker and skopeo do; fastest); `Some(n)` sends `PATCH` requests of `n`
    /// bytes with `Content-Range`, for registries or proxies that limit request sizes.
    pub chunk_size: Option<u64>,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// Time allowed to connect (including the TLS handshake).
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response.
    pub read_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            credentials: CredentialSources::from_env(),
            insecure_registries: Vec::new(),
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            extra_ca_pems: Vec::new(),
            max_concurrent_downloads: 4,
            max_concurrent_uploads: 4,
            monolithic_upload_max: 8 * 1024 * 1024,
            chunk_size: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            user_agent: format!("kiln/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl ClientConfig {
    /// Defaults, but with no credentials from the environment (anonymous unless
    /// credentials are added to [`credentials`](Self::credentials)).
    pub fn anonymous() -> ClientConfig {
        ClientConfig {
            credentials: CredentialSources::anonymous(),
            ..ClientConfig::default()
        }
    }
}

/// A client for OCI registries. Cheap to clone; clones share connections, tokens and
/// the per-registry scheme choice.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
    progress: Option<ProgressSink>,
}

struct Inner {
    config: ClientConfig,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Connection and authentication state for one registry.
pub(crate) struct Host {
    /// The registry as in references (`docker.io`).
    pub(crate) registry: String,
    /// The API host (`registry-1.docker.io`).
    name: String,
    http: reqwest::Client,
    allow_http: bool,
    base: tokio::sync::OnceCell<Url>,
    credential: tokio::sync::OnceCell<(Credential, CredentialOrigin)>,
    auth: Mutex<AuthState>,
    token_fetch: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, CachedToken>,
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// The token scopes an operation needs (`repository:<name>:pull[,push]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scopes(Vec<String>);

impl Scopes {
    pub(crate) fn pull(repository: &str) -> Scopes {
        Scopes(vec![format!("repository:{repository}:pull")])
    }

    pub(crate) fn push(repository: &str) -> Scopes {
        Scopes(vec![format!("repository:{repository}:pull,push")])
    }

    /// Adds pull access to another repository (for cross-repository mounts).
    pub(crate) fn and_pull(mut self, repository: &str) -> Scopes {
        // Any scope on the repository already includes pull.
        let prefix = format!("repository:{repository}:");
        if !self.0.iter().any(|scope| scope.starts_with(&prefix)) {
            self.0.push(format!("{prefix}pull"));
        }
        self
    }

    fn key(&self) -> String {
        let mut scopes = self.0.clone();
        scopes.sort();
        scopes.join(" ")
    }
}

/// A request that can be sent more than once (retries, re-authentication).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
}

impl Request {
    pub(crate) fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &str) -> Request {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    pub(crate) fn body(mut self, body: Bytes) -> Request {
        self.body = Some(body);
        self
    }
}

fn is_loopback(host_and_port: &str) -> bool {
    if let Ok(ip) = host_and_port.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let host = if let Some(rest) = host_and_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host_and_port
            .rsplit_once(':')
            .map_or(host_and_port, |(host, _)| host)
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn flatten_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a failed request might succeed if sent again.
fn is_transient(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// The `Content-Length` header (not the body's size hint, which is 0 for `HEAD`).
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `Retry-After` in seconds or as an HTTP-date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = parse_http_date(value)?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let mut clock = time.split(':').map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if year < 1970 || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second),
    )
}

/// The registry's error document (`{"errors":[{"code","message","detail"}]}`) as
/// `: CODE: message; …`, or the start of the body when it is not one.
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(errors) = serde_json::from_slice::<Errors>(body)
        && !errors.errors.is_empty()
    {
        let joined: Vec<String> = errors
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect();
        return format!(": {}", joined.join("; "));
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn load_certificates(registry: &str, path: &Path, pem: &[u8]) -> Result<Vec<reqwest::Certificate>> {
    reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Certificate {
        registry: registry.to_owned(),
        path: path.to_owned(),
        reason: flatten_error(&e),
    })
}

impl RegistryClient {
    /// A client with these settings.
    pub fn new(config: ClientConfig) -> RegistryClient {
        RegistryClient {
            inner: Arc::new(Inner {
                config,
                hosts: Mutex::new(HashMap::new()),
            }),
            progress: None,
        }
    }

    /// A client sharing this one's connections and tokens that reports progress to
    /// `sink`.
    pub fn with_progress(&self, sink: ProgressSink) -> RegistryClient {
        RegistryClient {
            inner: self.inner.clone(),
            progress: Some(sink),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn emit(&self, event: impl FnOnce() -> ProgressEvent) {
        progress::emit(&self.progress, event);
    }

    pub(crate) fn has_progress(&self) -> bool {
        self.progress.is_some()
    }

    /// The connection state for a reference's registry.
    pub(crate) fn host(&self, reference: &Reference) -> Result<Arc<Host>> {
        self.host_for_registry(reference.registry())
    }

    pub(crate) fn host_for_registry(&self, registry: &str) -> Result<Arc<Host>> {
        let name = api_host(registry).to_owned();
        let mut hosts = self.inner.hosts.lock().expect("hosts lock poisoned");
        if let Some(host) = hosts.get(&name) {
            return Ok(host.clone());
        }
        let host = Arc::new(self.build_host(registry, &name)?);
        hosts.insert(name, host.clone());
        Ok(host)
    }

    fn build_host(&self, registry: &str, name: &str) -> Result<Host> {
        let config = &self.inner.config;
        let loopback = is_loopback(name);
        let insecure = config.insecure_registries.iter().any(|listed| {
            listed == name || listed == registry || name.split(':').next() == Some(listed.as_str())
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(&config.user_agent)
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::limited(10));
        let mut roots = Vec::new();
        for pem in &config.extra_ca_pems {
            roots.extend(load_certificates(registry, Path::new("<inline PEM>"), pem)?);
        }
        let cert_dir = config.certs_dir.join(name);
        if let Ok(entries) = std::fs::read_dir(&cert_dir) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in &paths {
                let read = |path: &Path| {
                    std::fs::read(path).map_err(|e| Error::Certificate {
                        registry: registry.to_owned(),
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })
                };
                match path.extension().and_then(|e| e.to_str()) {
                    Some("crt") => roots.extend(load_certificates(registry, path, &read(path)?)?),
                    Some("cert") => {
                        let key_path = path.with_extension("key");
                        let mut pem = read(path)?;
                        pem.push(b'\n');
                        pem.extend(read(&key_path)?);
                        let identity =
                            reqwest::Identity::from_pem(&pem).map_err(|e| Error::Certificate {
                                registry: registry.to_owned(),
                                path: path.clone(),
                                reason: flatten_error(&e),
                            })?;
                        builder = builder.identity(identity);
                    }
                    _ => {}
                }
            }
        }
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        if insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if loopback {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|source| Error::ClientSetup {
            registry: registry.to_owned(),
            source,
        })?;
        Ok(Host {
            registry: registry.to_owned(),
            name: name.to_owned(),
            http,
            allow_http: loopback || insecure,
            base: tokio::sync::OnceCell::new(),
            credential: tokio::sync::OnceCell::new(),
            auth: Mutex::new(AuthState::default()),
            token_fetch: tokio::sync::Mutex::new(()),
        })
    }

    /// `<scheme>://<host>/v2/<path>` for this registry, pinging it first if needed.
    pub(crate) async fn url(&self, host: &Host, path: &str) -> Result<Url> {
        let base = self.base(host).await?;
        let text = format!("{base}v2/{path}");
        Url::parse(&text).map_err(|_| Error::InvalidHeader {
            method: "GET".to_owned(),
            url: text.clone(),
            header: "URL",
            value: text,
        })
    }

    async fn base(&self, host: &Host) -> Result<Url> {
        host.base.get_or_try_init(|| self.ping(host)).await.cloned()
    }

    /// Finds the scheme and the authentication challenge with `GET /v2/`.
    async fn ping(&self, host: &Host) -> Result<Url> {
        let https =
            Url::parse(&format!("https://{}/", host.name)).map_err(|_| Error::InvalidHeader {
                method: "GET".to_owned(),
                url: host.name.clone(),
                header: "host",
                value: host.name.clone(),
            })?;
        let https_error = match self.ping_once(host, &https, !host.allow_http).await {
            Ok(()) => return Ok(https),
            Err(error) if host.allow_http => error,
            Err(error) => return Err(error),
        };
        let http = Url::parse(&format!("http://{}/", host.name))
            .expect("an https URL stays valid as http");
        match self.ping_once(host, &http, true).await {
            Ok(()) => Ok(http),
            // An HTTPS-only server answers plain HTTP with 400: the HTTPS error says more.
            Err(Error::Status { status: 400, .. }) => Err(https_error),
            Err(error) => Err(error),
        }
    }

    async fn ping_once(&self, host: &Host, base: &Url, retry: bool) -> Result<()> {
        let url = base.join("v2/").expect("v2/ is a valid relative URL");
        let request = Request::new(Method::GET, url);
        let response = self.send_inner(host, None, &request, retry).await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = challenges_of(response.headers())
                .into_iter()
                .find(|c| c.is_bearer() || c.is_basic());
            host.auth.lock().expect("auth lock poisoned").challenge = challenge;
            return Ok(());
        }
        if status.is_success() || status == StatusCode::NOT_FOUND {
            // Some registries answer 404 at /v2/ and serve the API anyway.
            return Ok(());
        }
        Err(self.status_error(host, &request, response, None).await)
    }

    /// Sends a request with authentication for `scopes` and retries.
    pub(crate) async fn send(
        &self,
        host: &Host,
        scopes: &Scopes,
        request: &Request,
    ) -> Result<reqwest::Response> {
        self.send_inner(host, Some(scopes), request, true).await
    }

    /// Sends a request with a streamed body once (it cannot be replayed). A 401 updates
    /// the challenge and drops the cached token so that the caller's retry succeeds.
    pub(crate) async fn send_streaming(
        &self,
        host: &Host,
        scopes: &Scopes,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response> {
        let authorization = self.authorization(host, scopes).await?;
        let mut builder = host
            .http
            .request(method.clone(), url.clone())
            .headers(headers)
            .body(body);
        if let Some(authorization) = &authorization {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        let response = builder.send().await.map_err(|error| Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            attempts: 1,
            detail: flatten_error(&error),
        })?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.learn_challenge(host, Some(scopes), &response).await?;
        }
        Ok(response)
    }

    /// Like [`send`](Self::send) but without retrying (for requests whose retry needs
    /// a resume decision, like upload chunks). Re-authentication still happens.
    pub(crate) async fn send_once(
        &self,
        host: &Host,
        scopes: &Scopes,
        request: &Request,
    ) -> Result<reqwest::Response> {
        self.send_inner(host, Some(scopes), request, false).await
    }

    async fn send_inner(
        &self,
        host: &Host,
        scopes: Option<&Scopes>,
        request: &Request,
        retry: bool,
    ) -> Result<reqwest::Response> {
        let policy = &self.inner.config.retry;
        let max_attempts = if retry { policy.max_attempts.max(1) } else { 1 };
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let authorization = match scopes {
                Some(scopes) => self.authorization(host, scopes).await?,
                None => None,
            };
            let mut builder = host
                .http
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone());
            if let Some(authorization) = &authorization {
                builder = builder.header(header::AUTHORIZATION, authorization);
            }
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let reason = match builder.send().await {
                Err(error) if is_transient(&error) && attempt < max_attempts => {
                    flatten_error(&error)
                }
                Err(error) => {
                    return Err(Error::Transport {
                        method: request.method.to_string(),
                        url: request.url.to_string(),
                        attempts: attempt,
                        detail: flatten_error(&error),
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && scopes.is_some() && !reauthenticated {
                        reauthenticated = true;
                        if self.learn_challenge(host, scopes, &response).await? {
                            // A new challenge or a stale token: one more try, not counted.
                            attempt -= 1;
                            continue;
                        }
                        return Ok(response);
                    }
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
                    if !retryable || attempt >= max_attempts {
                        return Ok(response);
                    }
                    if let Some(wait) = retry_after(response.headers()) {
                        let delay = wait.min(policy.max_delay);
                        self.retry_pause(request, attempt, delay, format!("HTTP {status}"))
                            .await;
                        continue;
                    }
                    format!("HTTP {status}")
                }
            };
            self.retry_pause(request, attempt, policy.backoff(attempt), reason)
                .await;
        }
    }

    async fn retry_pause(&self, request: &Request, attempt: u32, delay: Duration, reason: String) {
        tracing::debug!(method = %request.method, url = %request.url, attempt, ?delay, %reason, "retrying");
        self.emit(|| ProgressEvent::Retrying {
            method: request.method.to_string(),
            url: request.url.to_string(),
            attempt,
            delay,
            reason,
        });
        tokio::time::sleep(delay).await;
    }

    /// After a 401: records the challenge and drops the cached token. Whether trying
    /// again can help.
    async fn learn_challenge(
        &self,
        host: &Host,
        scopes: Option<&Scopes>,
        response: &reqwest::Response,
    ) -> Result<bool> {
        let challenge = challenges_of(response.headers())
            .into_iter()
            .find(|c| c.is_bearer() || c.is_basic());
        let Some(challenge) = challenge else {
            return Ok(false);
        };
        let (credential, _) = self.credential(host).await?;
        let mut auth = host.auth.lock().expect("auth lock poisoned");
        if let Some(scopes) = scopes {
            auth.tokens.remove(&scopes.key());
        }
        let useful = challenge.is_bearer() || matches!(credential, Credential::Basic { .. });
        auth.challenge = Some(challenge);
        Ok(useful)
    }

    pub(crate) async fn credential(&self, host: &Host) -> Result<(Credential, CredentialOrigin)> {
        let found = host
            .credential
            .get_or_try_init(|| async {
                let sources = self.inner.config.credentials.clone();
                let registry = host.registry.clone();
                // Credential helpers are external programs: keep them off the runtime.
                tokio::task::spawn_blocking(move || sources.lookup(&registry))
                    .await
                    .expect("credential lookup does not panic")
            })
            .await?;
        Ok(found.clone())
    }

    /// The `Authorization` header for `scopes`, fetching a token if needed.
    async fn authorization(&self, host: &Host, scopes: &Scopes) -> Result<Option<String>> {
        let challenge = host
            .auth
            .lock()
            .expect("auth lock poisoned")
            .challenge
            .clone();
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        let (credential, _) = self.credential(host).await?;
        if challenge.is_basic() {
            return Ok(match credential {
                Credential::Basic { username, password } => Some(format!(
                    "Basic {}",
                    BASE64.encode(format!("{username}:{password}"))
                )),
                _ => None,
            });
        }
        if !challenge.is_bearer() {
            return Ok(None);
        }
        if let Credential::RegistryToken(token) = &credential {
            return Ok(Some(format!("Bearer {token}")));
        }
        let key = scopes.key();
        if let Some(token) = cached_token(host, &key) {
            return Ok(Some(format!("Bearer {token}")));
        }
        // One fetch at a time per registry; whoever waited finds the token cached.
        let _guard = host.token_fetch.lock().await;
        if let Some(token) = cached_token(host, &key) {
            return Ok(Some(format!("Bearer {token}")));
        }
        let fetched = self
            .fetch_token(host, &challenge, scopes, &credential)
            .await?;
        let token = fetched.token.clone();
        host.auth
            .lock()
            .expect("auth lock poisoned")
            .tokens
            .insert(key, fetched);
        Ok(Some(format!("Bearer {token}")))
    }

    async fn fetch_token(
        &self,
        host: &Host,
        challenge: &Challenge,
        scopes: &Scopes,
        credential: &Credential,
    ) -> Result<CachedToken> {
        let realm = challenge.param("realm").unwrap_or_default().to_owned();
        let service = challenge.param("service").unwrap_or_default().to_owned();
        let mut scope_list = scopes.0.clone();
        if scope_list.is_empty()
            && let Some(scope) = challenge.param("scope")
        {
            scope_list.extend(
                scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        let token_error = |reason: String| Error::TokenRequest {
            realm: realm.clone(),
            service: service.clone(),
            scopes: scope_list.clone(),
            reason,
        };
        let mut url = Url::parse(&realm).map_err(|e| Error::BadChallenge {
            registry: host.registry.clone(),
            header: format!("Bearer realm={realm:?}"),
            reason: format!("the realm is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::BadChallenge {
                registry: host.registry.clone(),
                header: format!("Bearer realm={realm:?}"),
                reason: "the realm is not an http(s) URL".to_owned(),
            });
        }
        let request = match credential {
            Credential::IdentityToken { token, .. } => {
                let mut form = reqwest::Url::parse("http://form/").expect("static URL");
                form.query_pairs_mut()
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", token)
                    .append_pair("service", &service)
                    .append_pair("client_id", "kiln")
                    .append_pair("access_type", "offline")
                    .append_pair("scope", &scope_list.join(" "));
                let body = form.query().unwrap_or_default().to_owned();
                Request::new(Method::POST, url)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Bytes::from(body))
            }
            _ => {
                {
                    let mut query = url.query_pairs_mut();
                    if !service.is_empty() {
                        query.append_pair("service", &service);
                    }
                    for scope in &scope_list {
                        query.append_pair("scope", scope);
                    }
                    if let Some(username) = credential.username() {
                        query.append_pair("account", username);
                    }
                }
                let mut request = Request::new(Method::GET, url);
                if let Credential::Basic { username, password } = credential {
                    let value =
                        format!("Basic {}", BASE64.encode(format!("{username}:{password}")));
                    request = request.header(header::AUTHORIZATION, &value);
                }
                request
            }
        };
        // Boxed: sending may itself need a token (recursion through `authorization`).
        let response = Box::pin(self.send_inner(host, None, &request, true))
            .await
            .map_err(|e| token_error(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| token_error(format!("reading the answer: {}", flatten_error(&e))))?;
        if !status.is_success() {
            let hint = match (status.as_u16(), credential) {
                (401 | 403, Credential::Anonymous) => {
                    "; anonymous access was refused, log in first"
                }
                (401 | 403, _) => "; the credentials were refused",
                _ => "",
            };
            return Err(token_error(format!(
                "HTTP {status}{}{hint}",
                error_detail(&body)
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| token_error(format!("the answer is not token JSON: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_error("the answer has no token".to_owned()))?;
        // Docker's rule: less than 60 s means 60 s. Renew a little early.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(60));
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        Ok(CachedToken {
            token,
            expires: Instant::now() + lifetime - margin,
        })
    }

    /// Turns an unexpected response into an error, reading the registry's message.
    /// `what` names the object for 404s (`manifest …`, `blob …`).
    pub(crate) async fn status_error(
        &self,
        host: &Host,
        request: &Request,
        response: reqwest::Response,
        what: Option<String>,
    ) -> Error {
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        let detail = error_detail(&body);
        let method = request.method.to_string();
        let url = request.url.to_string();
        match status.as_u16() {
            404 if what.is_some() => Error::NotFound {
                what: what.unwrap_or_default(),
                method,
                url,
                detail,
            },
            401 | 403 => {
                let origin = self
                    .credential(host)
                    .await
                    .map(|(_, origin)| origin)
                    .unwrap_or(CredentialOrigin::None);
                let hint = match (&origin, status.as_u16()) {
                    (CredentialOrigin::None, _) => format!(
                        "no credentials are configured for {registry}: run `kiln login {registry}`{github}",
                        registry = host.registry,
                        github = if host.registry == "ghcr.io" {
                            " or set GITHUB_TOKEN"
                        } else {
                            ""
                        }
                    ),
                    (origin, 403) => format!("{origin} lack permission for this repository"),
                    (origin, _) => format!(
                        "{origin} were refused; check them with `kiln login {}`",
                        host.registry
                    ),
                };
                Error::Unauthorized {
                    registry: host.registry.clone(),
                    url,
                    status: status.as_u16(),
                    detail,
                    hint,
                }
            }
            status => Error::Status {
                method,
                url,
                status,
                detail,
            },
        }
    }

    /// Checks that the configured credentials are accepted by `registry` (`GET /v2/`
    /// with authentication), as `docker login` does.
    pub async fn check_credentials(&self, registry: &str) -> Result<()> {
        let registry = crate::reference::normalize_registry(registry);
        let host = self.host_for_registry(&registry)?;
        let url = self.url(&host, "").await?;
        let request = Request::new(Method::GET, url);
        let (credential, _) = self.credential(&host).await?;
        let response = self.send(&host, &Scopes::default(), &request).await?;
        if response.status().is_success() {
            // A registry may let anonymous users in at /v2/; a token request with the
            // credentials still proves they are accepted.
            let challenge = host
                .auth
                .lock()
                .expect("auth lock poisoned")
                .challenge
                .clone();
            if let Some(challenge) = challenge
                && challenge.is_bearer()
                && !matches!(credential, Credential::Anonymous)
                && cached_token(&host, &Scopes::default().key()).is_none()
            {
                self.fetch_token(&host, &challenge, &Scopes::default(), &credential)
                    .await?;
            }
            return Ok(());
        }
        Err(self.status_error(&host, &request, response, None).await)
    }
}

fn cached_token(host: &Host, key: &str) -> Option<String> {
    let auth = host.auth.lock().expect("auth lock poisoned");
    auth.tokens
        .get(key)
        .filter(|token| token.expires > Instant::now())
        .map(|token| token.token.clone())
}

fn challenges_of(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "[fc00::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(4), Duration::from_millis(800));
        assert_eq!(policy.backoff(5), Duration::from_secs(1));
        assert_eq!(policy.backoff(40), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn registry_error_documents_become_messages() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_detail(body), ": MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_detail(b"  plain text \n"), ": plain text");
        assert_eq!(error_detail(b""), "");
    }

    #[test]
    fn scope_sets_are_keyed_independently_of_order() {
        let a = Scopes::push("app").and_pull("base");
        let b = Scopes(vec![
            "repository:base:pull".to_owned(),
            "repository:app:pull,push".to_owned(),
        ]);
        assert_eq!(a.key(), b.key());
        assert_eq!(Scopes::push("app").and_pull("app").0.len(), 1);
    }
}
