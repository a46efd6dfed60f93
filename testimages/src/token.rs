//! A small bearer-token issuer in the style of Docker Hub's and GHCR's auth
//! servers, served on a loopback port by a thread of the harness.
//!
//! Contract: `GET /token?service=S&scope=repository:NAME:pull,push&scope=…`
//! with the right HTTP basic credentials answers 200 and
//! `{"token", "access_token", "expires_in": 300, "issued_at"}`, where the
//! token is an RS256 JWT whose header carries the signing certificate (`x5c`)
//! and its libtrust key ID (`kid`), and whose claims grant every action asked
//! for (`access`). The OAuth2 form (`POST /token`, `grant_type=password`) is
//! accepted too. Missing or wrong credentials give 401 with a `Basic`
//! challenge; other paths 404. Every request is recorded ([`TokenRequest`]).
//! The server stops when the [`TokenIssuer`] is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

use crate::Error;

/// Token lifetime in seconds.
const EXPIRES_IN: u64 = 300;

/// One request the token issuer answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The user named by the credentials (basic auth or OAuth2 form), if any.
    pub account: Option<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// The `scope` parameters, as sent (`repository:NAME:pull,push`).
    pub scopes: Vec<String>,
    /// The status the issuer answered with.
    pub status: u16,
}

/// What the issuer signs with and whom it accepts.
#[derive(Debug)]
pub(crate) struct IssuerConfig {
    pub user: String,
    pub password: String,
    pub service: String,
    pub issuer: String,
    pub key: RsaKeyPair,
    pub cert_der: Vec<u8>,
    pub key_id: String,
}

#[derive(Debug)]
pub(crate) struct TokenIssuer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenIssuer {
    pub(crate) fn start(config: IssuerConfig) -> Result<TokenIssuer, Error> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(Error::io("listen on", "127.0.0.1:0"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("listen on", "127.0.0.1:0"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let config = Arc::new(config);
        let thread = {
            let stop = Arc::clone(&stop);
            let log = Arc::clone(&log);
            std::thread::Builder::new()
                .name("kiln-token-issuer".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let config = Arc::clone(&config);
                        let log = Arc::clone(&log);
                        std::thread::spawn(move || {
                            // A broken client connection only affects that client.
                            let _ = serve(stream, &config, &log);
                        });
                    }
                })
                .map_err(Error::io(
                    "start the token issuer thread on",
                    addr.to_string(),
                ))?
        };
        Ok(TokenIssuer {
            addr,
            stop,
            thread: Some(thread),
            log,
        })
    }

    /// `http://127.0.0.1:PORT/token`.
    pub(crate) fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    params: Vec<(String, String)>,
    basic: Option<(String, String)>,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream.take(1 << 20));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut content_length = 0usize;
    let mut basic = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("authorization")
            && let Some(encoded) = value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
            && let Ok(decoded) = STANDARD.decode(encoded.trim())
            && let Some((user, password)) = String::from_utf8_lossy(&decoded).split_once(':')
        {
            basic = Some((user.to_string(), password.to_string()));
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut params = parse_form(query);
    if method == "POST" {
        let mut body = vec![0; content_length.min(1 << 16)];
        reader.read_exact(&mut body)?;
        params.extend(parse_form(&String::from_utf8_lossy(&body)));
    }
    Ok(Request {
        method,
        path: path.to_string(),
        params,
        basic,
    })
}

fn serve(
    stream: TcpStream,
    config: &IssuerConfig,
    log: &Mutex<Vec<TokenRequest>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = read_request(&stream)?;
    let param = |key: &str| {
        request
            .params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let mut scopes: Vec<String> = request
        .params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let credentials = if request.method == "POST" {
        // OAuth2 password grant: credentials and space-separated scopes in the form.
        scopes = scopes
            .iter()
            .flat_map(|s| s.split(' ').map(str::to_string))
            .collect();
        match (
            param("grant_type").as_deref(),
            param("username"),
            param("password"),
        ) {
            (Some("password"), Some(user), Some(password)) => Some((user, password)),
            _ => None,
        }
    } else {
        request.basic.clone()
    };
    let account = credentials.as_ref().map(|(user, _)| user.clone());
    let authorized = credentials
        .as_ref()
        .is_some_and(|(user, password)| *user == config.user && *password == config.password);

    let (status, body, challenge) = if request.path != "/token" {
        (
            404,
            json!({"errors": [{"code": "NOT_FOUND", "message": "unknown path"}]}),
            false,
        )
    } else if !authorized {
        (
            401,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "credentials required"}]}),
            true,
        )
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let user = account.clone().unwrap_or_default();
        let token = sign_token(config, &user, &scopes, now);
        (
            200,
            json!({
                "token": token,
                "access_token": token,
                "expires_in": EXPIRES_IN,
                "issued_at": rfc3339(now),
            }),
            false,
        )
    };
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(TokenRequest {
            method: request.method.clone(),
            account,
            service: param("service"),
            scopes,
            status,
        });
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let challenge = if challenge {
        format!("WWW-Authenticate: Basic realm=\"{}\"\r\n", config.issuer)
    } else {
        String::new()
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Parses `a=b&c=d` with percent-decoding (and `+` as space).
fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `access` claim for the asked-for scopes (`type:name:actions`; the
/// name may itself contain colons).
fn access_claim(scopes: &[String]) -> Vec<Value> {
    scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            Some(json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect()
}

/// An RS256 JWT for `user` granting `scopes`, as distribution 2.8 verifies
/// it: `x5c` chaining to its `rootcertbundle`, `iss`, `aud`, `exp`, `nbf`.
fn sign_token(config: &IssuerConfig, user: &str, scopes: &[String], now: u64) -> String {
    let rng = SystemRandom::new();
    let mut jti = [0u8; 16];
    // An all-zero jti on the (never seen) failure of the system RNG still
    // gives a valid token.
    let _ = rng.fill(&mut jti);
    let header = json!({
        "typ": "JWT",
        "alg": "RS256",
        "kid": config.key_id,
        "x5c": [STANDARD.encode(&config.cert_der)],
    });
    let claims = json!({
        "iss": config.issuer,
        "sub": user,
        "aud": config.service,
        "exp": now + EXPIRES_IN,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": hex::encode(jti),
        "access": access_claim(scopes),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; config.key.public().modulus_len()];
    config
        .key
        .sign(
            &RSA_PKCS1_SHA256,
            &rng,
            signing_input.as_bytes(),
            &mut signature,
        )
        .expect("RSA signing with a valid key into a modulus-sized buffer cannot fail");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(crate::SOURCE_DATE_EPOCH),
            crate::SOURCE_DATE_RFC3339
        );
        assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn forms_are_percent_decoded() {
        let form = parse_form("scope=repository%3Alib%2Fx%3Apull%2Cpush&service=a+b&empty=");
        assert_eq!(
            form[0],
            ("scope".into(), "repository:lib/x:pull,push".into())
        );
        assert_eq!(form[1], ("service".into(), "a b".into()));
        assert_eq!(form[2], ("empty".into(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn access_claim_keeps_names_with_colons() {
        let claim = access_claim(&[
            "repository:lib/x:pull,push".into(),
            "registry:catalog:*".into(),
            "bad".into(),
        ]);
        assert_eq!(
            claim,
            [
                json!({"type": "repository", "name": "lib/x", "actions": ["pull", "push"]}),
                json!({"type": "registry", "name": "catalog", "actions": ["*"]}),
            ]
        );
    }
}
