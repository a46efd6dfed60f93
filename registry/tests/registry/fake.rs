//! An in-process OCI registry on 127.0.0.1 that serves the distribution API from memory
//! and misbehaves on demand (wrong bytes, truncated bodies, error statuses, dropped
//! connections, refused mounts, bearer tokens with a broken or working token endpoint).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kiln_registry::Digest;
use kiln_registry::digest::sha256_digest;

type Body = BoxBody<Bytes, std::io::Error>;

/// What to do instead of answering normally.
#[derive(Debug, Clone)]
pub enum Misbehave {
    /// Answer with this status (and headers), empty body.
    Status(u16, Vec<(&'static str, String)>),
    /// Announce the full length, send only this many bytes, then break the connection.
    Truncate(usize),
    /// Serve these bytes as the body (with their length).
    Body(Bytes),
    /// Close the connection without answering.
    Close,
}

#[derive(Debug, Clone)]
struct Rule {
    method: String,
    path_contains: String,
    skip: usize,
    remaining: usize,
    action: Misbehave,
}

/// One request as seen by the server.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    blobs: HashMap<String, Bytes>,
    blob_repos: HashSet<(String, String)>,
    manifests: HashMap<(String, String), (String, Bytes)>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_upload: u64,
    rules: Vec<Rule>,
    log: Vec<Logged>,
    token_mode: Option<TokenMode>,
    refuse_mounts: bool,
}

struct TokenMode {
    /// Status the token endpoint answers with (200 = working).
    endpoint_status: u16,
    valid: HashSet<String>,
    issued: u64,
    requests: Vec<String>,
}

/// The fake registry; stops when dropped (its task ends with the test runtime).
#[derive(Clone)]
pub struct FakeRegistry {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeRegistry {
    pub async fn start() -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = FakeRegistry {
            addr,
            state: Arc::new(Mutex::new(State::default())),
        };
        let server = registry.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let server = server.clone();
                        async move { server.handle(request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        registry
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Stores a blob in `repository`; returns its digest.
    pub fn put_blob(&self, repository: &str, bytes: impl Into<Bytes>) -> Digest {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        let mut state = self.state();
        state.blobs.insert(digest.to_string(), bytes);
        state
            .blob_repos
            .insert((repository.to_owned(), digest.to_string()));
        digest
    }

    /// Stores manifest bytes under a tag or digest.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: impl Into<Bytes>,
    ) {
        self.state().manifests.insert(
            (repository.to_owned(), reference.to_owned()),
            (media_type.to_owned(), bytes.into()),
        );
    }

    /// The next `times` requests with this method whose path contains `path_contains`
    /// get `action` instead of a normal answer.
    pub fn misbehave(&self, method: &str, path_contains: &str, times: usize, action: Misbehave) {
        self.misbehave_after(method, path_contains, 0, times, action);
    }

    /// Like [`misbehave`](Self::misbehave), after letting `skip` matching requests through.
    pub fn misbehave_after(
        &self,
        method: &str,
        path_contains: &str,
        skip: usize,
        times: usize,
        action: Misbehave,
    ) {
        self.state().rules.push(Rule {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            skip,
            remaining: times,
            action,
        });
    }

    /// Requires bearer tokens; the token endpoint (`/token`) answers `endpoint_status`.
    pub fn require_tokens(&self, endpoint_status: u16) {
        self.state().token_mode = Some(TokenMode {
            endpoint_status,
            valid: HashSet::new(),
            issued: 0,
            requests: Vec::new(),
        });
    }

    /// Invalidates every token issued so far (as if they expired server-side).
    pub fn revoke_tokens(&self) {
        if let Some(mode) = &mut self.state().token_mode {
            mode.valid.clear();
        }
    }

    /// Query strings of the token requests received.
    pub fn token_requests(&self) -> Vec<String> {
        self.state()
            .token_mode
            .as_ref()
            .map(|m| m.requests.clone())
            .unwrap_or_default()
    }

    pub fn refuse_mounts(&self) {
        self.state().refuse_mounts = true;
    }

    pub fn has_blob(&self, repository: &str, digest: &Digest) -> bool {
        self.state()
            .blob_repos
            .contains(&(repository.to_owned(), digest.to_string()))
    }

    pub fn manifest(&self, repository: &str, reference: &str) -> Option<(String, Bytes)> {
        self.state()
            .manifests
            .get(&(repository.to_owned(), reference.to_owned()))
            .cloned()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// Requests with this method whose path contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.log()
            .iter()
            .filter(|l| l.method == method && l.path.contains(path_contains))
            .count()
    }

    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let range = header("range");
        let authorization = header("authorization");
        let content_range = header("content-range");
        let content_type = header("content-type");
        let body = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();

        let rule = {
            let mut state = self.state();
            let found = state
                .rules
                .iter_mut()
                .find(|r| r.remaining > 0 && r.method == method && path.contains(&r.path_contains));
            found.and_then(|rule| {
                if rule.skip > 0 {
                    rule.skip -= 1;
                    return None;
                }
                rule.remaining -= 1;
                Some(rule.action.clone())
            })
        };
        let log = |status: u16| {
            self.state().log.push(Logged {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                status,
                range: range.clone(),
                authorization: authorization.clone(),
            });
        };
        let normal = self
            .answer(
                &method,
                &path,
                &query,
                range.as_deref(),
                authorization.as_deref(),
                content_range.as_deref(),
                content_type.as_deref(),
                body,
            )
            .await;
        match rule {
            None => {
                log(normal.status().as_u16());
                Ok(normal)
            }
            Some(Misbehave::Close) => {
                log(0);
                Err(std::io::Error::other("dropping the connection on purpose"))
            }
            Some(Misbehave::Status(status, headers)) => {
                log(status);
                let mut response = Response::builder().status(status);
                for (name, value) in headers {
                    response = response.header(name, value);
                }
                Ok(response.body(full(Bytes::new())).unwrap())
            }
            Some(Misbehave::Body(bytes)) => {
                log(normal.status().as_u16());
                let mut response = Response::builder().status(normal.status());
                for (name, value) in normal.headers() {
                    if name != "content-length" {
                        response = response.header(name, value);
                    }
                }
                Ok(response
                    .header("content-length", bytes.len())
                    .body(full(bytes))
                    .unwrap())
            }
            Some(Misbehave::Truncate(keep)) => {
                let status = normal.status();
                log(status.as_u16());
                let headers = normal.headers().clone();
                let full_body = normal.into_body().collect().await.unwrap().to_bytes();
                let partial = full_body.slice(..keep.min(full_body.len()));
                // Send the part, give it time to reach the client, then break off.
                let stream =
                    futures_util::stream::iter([Ok::<_, std::io::Error>(Frame::data(partial))])
                        .chain(futures_util::stream::once(async {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            Err(std::io::Error::other("connection cut on purpose"))
                        }));
                let mut response = Response::builder().status(status);
                for (name, value) in &headers {
                    response = response.header(name, value);
                }
                let stream = StreamBody::new(stream);
                Ok(response.body(BodyExt::boxed(stream)).unwrap())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        method: &str,
        path: &str,
        query: &str,
        range: Option<&str>,
        authorization: Option<&str>,
        content_range: Option<&str>,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Response<Body> {
        if path == "/token" {
            return self.token(method, query, &body);
        }
        if let Some(denied) = self.check_token(authorization) {
            return denied;
        }
        if path == "/v2/" || path == "/v2" {
            return status(200);
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return status(404);
        };
        let params: HashMap<String, String> = url_params(query);
        if let Some((repository, upload)) = rest.split_once("/blobs/uploads/") {
            return self.upload(method, repository, upload, &params, content_range, body);
        }
        if let Some((repository, digest)) = rest.split_once("/blobs/") {
            let state = self.state();
            if !state
                .blob_repos
                .contains(&(repository.to_owned(), digest.to_owned()))
            {
                return error(404, "BLOB_UNKNOWN");
            }
            let bytes = state.blobs[digest].clone();
            if method == "HEAD" {
                return Response::builder()
                    .status(200)
                    .header("content-length", bytes.len())
                    .header("docker-content-digest", digest)
                    .body(full(Bytes::new()))
                    .unwrap();
            }
            if let Some(start) = range
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|s| *s < bytes.len())
            {
                return Response::builder()
                    .status(206)
                    .header(
                        "content-range",
                        format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
                    )
                    .body(full(bytes.slice(start..)))
                    .unwrap();
            }
            return Response::builder().status(200).body(full(bytes)).unwrap();
        }
        if let Some((repository, reference)) = rest.split_once("/manifests/") {
            let key = (repository.to_owned(), reference.to_owned());
            match method {
                "GET" | "HEAD" => {
                    let Some((media_type, bytes)) = self.state().manifests.get(&key).cloned()
                    else {
                        return error(404, "MANIFEST_UNKNOWN");
                    };
                    let response = Response::builder()
                        .status(200)
                        .header("content-type", media_type)
                        .header("docker-content-digest", sha256_digest(&bytes).to_string());
                    return if method == "HEAD" {
                        response
                            .header("content-length", bytes.len())
                            .body(full(Bytes::new()))
                            .unwrap()
                    } else {
                        response.body(full(bytes)).unwrap()
                    };
                }
                "PUT" => {
                    let digest = sha256_digest(&body);
                    let media_type = content_type
                        .unwrap_or("application/octet-stream")
                        .to_owned();
                    let mut state = self.state();
                    state
                        .manifests
                        .insert(key, (media_type.clone(), body.clone()));
                    state.manifests.insert(
                        (repository.to_owned(), digest.to_string()),
                        (media_type, body),
                    );
                    return Response::builder()
                        .status(201)
                        .header("docker-content-digest", digest.to_string())
                        .body(full(Bytes::new()))
                        .unwrap();
                }
                _ => return status(405),
            }
        }
        if let Some(_repository) = rest.strip_suffix("/tags/list") {
            return status(404);
        }
        status(404)
    }

    fn upload(
        &self,
        method: &str,
        repository: &str,
        upload: &str,
        params: &HashMap<String, String>,
        content_range: Option<&str>,
        body: Bytes,
    ) -> Response<Body> {
        let mut state = self.state();
        let location = |id: &str| format!("/v2/{repository}/blobs/uploads/{id}");
        match (method, upload) {
            ("POST", "") => {
                if let (Some(digest), Some(from)) = (params.get("mount"), params.get("from"))
                    && !state.refuse_mounts
                    && state.blob_repos.contains(&(from.clone(), digest.clone()))
                {
                    state
                        .blob_repos
                        .insert((repository.to_owned(), digest.clone()));
                    return Response::builder()
                        .status(201)
                        .header("location", format!("/v2/{repository}/blobs/{digest}"))
                        .body(full(Bytes::new()))
                        .unwrap();
                }
                state.next_upload += 1;
                let id = format!("u{}", state.next_upload);
                state
                    .uploads
                    .insert(id.clone(), (repository.to_owned(), Vec::new()));
                Response::builder()
                    .status(202)
                    .header("location", location(&id))
                    .header("range", "0-0")
                    .body(full(Bytes::new()))
                    .unwrap()
            }
            ("PATCH", id) => {
                let Some((_, data)) = state.uploads.get_mut(id) else {
                    return error(404, "BLOB_UPLOAD_UNKNOWN");
                };
                if let Some(start) = content_range
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<usize>().ok())
                    && start != data.len()
                {
                    return error(416, "BLOB_UPLOAD_INVALID");
                }
                data.extend_from_slice(&body);
                let end = data.len().saturating_sub(1);
                Response::builder()
                    .status(202)
                    .header("location", location(id))
                    .header("range", format!("0-{end}"))
                    .body(full(Bytes::new()))
                    .unwrap()
            }
            ("GET", id) => {
                let Some((_, data)) = state.uploads.get(id) else {
                    return error(404, "BLOB_UPLOAD_UNKNOWN");
                };
                let end = data.len().saturating_sub(1);
                Response::builder()
                    .status(204)
                    .header("location", location(id))
                    .header("range", format!("0-{end}"))
                    .body(full(Bytes::new()))
                    .unwrap()
            }
            ("PUT", id) => {
                let Some((_, mut data)) = state.uploads.remove(id) else {
                    return error(404, "BLOB_UPLOAD_UNKNOWN");
                };
                data.extend_from_slice(&body);
                let actual = sha256_digest(&data).to_string();
                if params.get("digest") != Some(&actual) {
                    return error(400, "DIGEST_INVALID");
                }
                state.blobs.insert(actual.clone(), Bytes::from(data));
                state
                    .blob_repos
                    .insert((repository.to_owned(), actual.clone()));
                Response::builder()
                    .status(201)
                    .header("docker-content-digest", actual)
                    .body(full(Bytes::new()))
                    .unwrap()
            }
            _ => status(405),
        }
    }

    /// `GET /token?service=…&scope=…` or the OAuth2 `POST /token` form; logged as
    /// `METHOD query-or-form`.
    fn token(&self, method: &str, query: &str, body: &[u8]) -> Response<Body> {
        let mut state = self.state();
        let Some(mode) = &mut state.token_mode else {
            return status(404);
        };
        let parameters = if method == "POST" {
            String::from_utf8_lossy(body).into_owned()
        } else {
            query.to_owned()
        };
        mode.requests.push(format!("{method} {parameters}"));
        if mode.endpoint_status != 200 {
            return error(mode.endpoint_status, "TOKEN_ENDPOINT_BROKEN");
        }
        mode.issued += 1;
        let token = format!("token-{}", mode.issued);
        mode.valid.insert(token.clone());
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(full(Bytes::from(format!(
                r#"{{"token":"{token}","expires_in":300}}"#
            ))))
            .unwrap()
    }

    fn check_token(&self, authorization: Option<&str>) -> Option<Response<Body>> {
        let state = self.state();
        let mode = state.token_mode.as_ref()?;
        let presented = authorization.and_then(|a| a.strip_prefix("Bearer "));
        if presented.is_some_and(|token| mode.valid.contains(token)) {
            return None;
        }
        Some(
            Response::builder()
                .status(401)
                .header(
                    "www-authenticate",
                    format!(
                        r#"Bearer realm="http://{}/token",service="fake registry""#,
                        self.addr
                    ),
                )
                .body(full(Bytes::from_static(
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                )))
                .unwrap(),
        )
    }
}

fn url_params(query: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn status(code: u16) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .body(full(Bytes::new()))
        .unwrap()
}

fn error(code: u16, name: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(full(Bytes::from(format!(
            r#"{{"errors":[{{"code":"{name}","message":"{}"}}]}}"#,
            name.to_lowercase().replace('_', " ")
        ))))
        .unwrap()
}
