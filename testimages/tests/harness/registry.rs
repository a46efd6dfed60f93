//! The registry harness in its three modes, and pushing to it with skopeo.

use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use kiln_testimages::images;
use kiln_testimages::registry::{LoggedRequest, Mode, TOKEN_ISSUER, TOKEN_SERVICE, TestRegistry};

fn agent(registry: &TestRegistry) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)));
    if let Some(ca) = registry.ca_cert_path() {
        let pem = std::fs::read(ca).unwrap();
        let cert = ureq::tls::Certificate::from_pem(&pem).unwrap();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build(),
        );
    }
    config.build().into()
}

/// GET `url` with an optional Authorization header; (status, WWW-Authenticate, body).
fn get(agent: &ureq::Agent, url: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut request = agent.get(url);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), challenge, body)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// `key="value"` from a `WWW-Authenticate` challenge.
fn challenge_param(challenge: &str, key: &str) -> String {
    let start = challenge
        .find(&format!("{key}=\""))
        .unwrap_or_else(|| panic!("{key} in {challenge}"))
        + key.len()
        + 2;
    let end = start + challenge[start..].find('"').unwrap();
    challenge[start..end].to_string()
}

#[test]
fn http_mode_answers_200_and_logs_requests() {
    let registry = TestRegistry::start(Mode::Http).unwrap();
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert_eq!(registry.credentials(), None);
    assert_eq!(registry.ca_cert_path(), None);
    let agent = agent(&registry);
    let (status, _, _) = get(&agent, &format!("{}/v2/", registry.url()), None);
    assert_eq!(status, 200);
    let (status, _, _) = get(
        &agent,
        &format!("{}/v2/nothing/here/manifests/latest?x=1", registry.url()),
        None,
    );
    assert_eq!(status, 404);
    // The readiness probes came first; ours are the last two.
    let log = registry.wait_for_requests(2, Duration::from_secs(5));
    let last_two = &log[log.len() - 2..];
    assert_eq!(
        last_two,
        [
            LoggedRequest {
                method: "GET".into(),
                path: "/v2/".into(),
                status: 200
            },
            LoggedRequest {
                method: "GET".into(),
                path: "/v2/nothing/here/manifests/latest".into(),
                status: 404
            },
        ]
    );
}

#[test]
fn tls_basic_mode_needs_credentials() {
    let registry = TestRegistry::start(Mode::TlsBasic).unwrap();
    assert!(registry.url().starts_with("https://127.0.0.1:"));
    let ca = registry.ca_cert_path().unwrap();
    let certs = registry.certs_dir().unwrap();
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        std::fs::read(certs.join(registry.host()).join("ca.crt")).unwrap()
    );
    let (user, password) = registry.credentials().unwrap();
    let agent = agent(&registry);
    let v2 = format!("{}/v2/", registry.url());

    let (status, challenge, _) = get(&agent, &v2, None);
    assert_eq!(status, 401);
    assert!(challenge.starts_with("Basic "), "{challenge}");
    assert_eq!(get(&agent, &v2, Some(&basic(&user, "wrong"))).0, 401);
    assert_eq!(get(&agent, &v2, Some(&basic(&user, &password))).0, 200);

    // Without the harness CA the certificate is not trusted.
    let untrusting: ureq::Agent = ureq::Agent::config_builder().build().into();
    assert!(untrusting.get(&v2).call().is_err());
}

#[test]
fn token_mode_hands_out_tokens_the_registry_accepts() {
    let registry = TestRegistry::start(Mode::Token).unwrap();
    assert!(registry.url().starts_with("http://"));
    let (user, password) = registry.credentials().unwrap();
    let agent = agent(&registry);
    let v2 = format!("{}/v2/", registry.url());

    let (status, challenge, _) = get(&agent, &v2, None);
    assert_eq!(status, 401);
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let realm = challenge_param(&challenge, "realm");
    assert_eq!(Some(realm.clone()), registry.token_realm());
    assert_eq!(challenge_param(&challenge, "service"), TOKEN_SERVICE);

    // Anonymous and wrong credentials get no token.
    let scope = "repository:team/app:pull,push";
    let token_url = format!(
        "{realm}?service={TOKEN_SERVICE}&scope={}",
        scope.replace(':', "%3A").replace(',', "%2C")
    );
    assert_eq!(get(&agent, &token_url, None).0, 401);
    assert_eq!(get(&agent, &token_url, Some(&basic(&user, "wrong"))).0, 401);

    let (status, _, body) = get(&agent, &token_url, Some(&basic(&user, &password)));
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = answer["token"].as_str().unwrap().to_string();
    assert_eq!(answer["access_token"], answer["token"]);
    assert_eq!(answer["expires_in"], 300);
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], TOKEN_ISSUER);
    assert_eq!(claims["aud"], TOKEN_SERVICE);
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["access"][0]["name"], "team/app");

    let bearer = format!("Bearer {token}");
    assert_eq!(get(&agent, &v2, Some(&bearer)).0, 200);
    // The granted repository: unknown (404), not forbidden.
    let tags = format!("{}/v2/team/app/tags/list", registry.url());
    assert_eq!(get(&agent, &tags, Some(&bearer)).0, 404);
    // Another repository is outside the token's access.
    let other = format!("{}/v2/team/other/tags/list", registry.url());
    assert_eq!(get(&agent, &other, Some(&bearer)).0, 401);
    // A token with a tampered signature is refused.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(get(&agent, &v2, Some(&format!("Bearer {forged}"))).0, 401);

    let requests = registry.token_requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 401, 200]
    );
    assert_eq!(requests[2].scopes, [scope]);
    assert_eq!(requests[2].account.as_deref(), Some(user.as_str()));
    assert_eq!(requests[2].service.as_deref(), Some(TOKEN_SERVICE));
}

#[test]
fn push_busybox_to_every_mode_and_read_it_back() {
    let image = images::busybox().unwrap();
    for mode in [Mode::Http, Mode::TlsBasic, Mode::Token] {
        let registry = TestRegistry::start(mode).unwrap();
        let pushed = images::push(&image, &registry, "library/busybox:1").unwrap();
        assert_eq!(pushed, image.manifest_digest, "{mode:?}");
        assert_eq!(
            images::inspect_digest(&registry, "library/busybox:1").unwrap(),
            pushed,
            "{mode:?}"
        );
        let back = tempfile::tempdir().unwrap();
        let pulled = images::pull(&registry, "library/busybox:1", back.path(), "busybox").unwrap();
        assert_eq!(pulled.manifest_digest, image.manifest_digest, "{mode:?}");
        assert_eq!(pulled.layer_digests, image.layer_digests, "{mode:?}");
        let log = registry.request_log();
        assert!(
            log.iter().any(|r| r.method == "PUT"
                && r.path == "/v2/library/busybox/manifests/1"
                && r.status == 201),
            "{mode:?}: {log:?}"
        );
        let blob = registry
            .storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&image.layer_digests[0]["sha256:".len().."sha256:".len() + 2])
            .join(image.layer_digests[0].trim_start_matches("sha256:"))
            .join("data");
        assert!(blob.is_file(), "{mode:?}: {}", blob.display());
        if mode == Mode::Token {
            assert!(registry.token_requests().iter().any(|r| {
                r.status == 200
                    && r.scopes
                        .iter()
                        .any(|s| s.starts_with("repository:library/busybox:") && s.contains("push"))
            }));
        }
    }
}

#[test]
fn dropping_the_registry_stops_it_and_removes_its_files() {
    let registry = TestRegistry::start(Mode::Token).unwrap();
    let host = registry.host();
    let storage = registry.storage_dir();
    let realm = registry.token_realm().unwrap();
    let issuer_host = realm
        .trim_start_matches("http://")
        .trim_end_matches("/token")
        .to_string();
    assert!(storage.is_dir());
    drop(registry);
    assert!(!storage.exists());
    assert!(
        TcpStream::connect(&host).is_err(),
        "registry still listening on {host}"
    );
    assert!(
        TcpStream::connect(&issuer_host).is_err(),
        "issuer still listening on {issuer_host}"
    );
}
