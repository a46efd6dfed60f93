//! A real registry for the end-to-end tests: Debian's `docker-registry` (distribution
//! 2.8) on a free loopback port, in plain HTTP or in TLS with htpasswd basic auth (CA
//! and certificate made with `openssl`, password file with `htpasswd -Bbn`). Same shape
//! as `kiln_testimages::registry::TestRegistry`; stopped and removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Transport and authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP, anonymous.
    Http,
    /// HTTPS with a harness CA, htpasswd basic auth.
    TlsBasic,
}

/// One access-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
}

pub struct TestRegistry {
    port: u16,
    child: Child,
    credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestRegistry {
    /// Starts a registry, or `None` (after saying why) when `docker-registry` is not
    /// installed.
    pub fn start(mode: Mode) -> Option<TestRegistry> {
        if !Path::new("/usr/bin/docker-registry").exists() {
            eprintln!("skipping: /usr/bin/docker-registry is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let mut extra = String::new();
        let mut credentials = None;
        if mode == Mode::TlsBasic {
            std::fs::write(
                d.join("server.ext"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            run(Command::new("openssl").current_dir(d).args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=kiln test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]));
            run(Command::new("openssl").current_dir(d).args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ]));
            run(Command::new("openssl").current_dir(d).args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ]));
            let password = format!("pw-{port}-{}", std::process::id());
            let output = Command::new("htpasswd")
                .args(["-Bbn", "kiln", &password])
                .output()
                .unwrap();
            assert!(output.status.success());
            std::fs::write(
                d.join("htpasswd"),
                String::from_utf8(output.stdout).unwrap().trim(),
            )
            .unwrap();
            extra = format!(
                "  tls:\n    certificate: {dir}/server.crt\n    key: {dir}/server.key\n\
                 auth:\n  htpasswd:\n    realm: kiln-test\n    path: {dir}/htpasswd\n",
                dir = d.display()
            );
            credentials = Some(("kiln".to_owned(), password));
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {dir}/data\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n{extra}",
            dir = d.display()
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(std::fs::File::create(d.join("access.log")).unwrap())
            .stderr(std::fs::File::create(d.join("registry.log")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let registry = TestRegistry {
            port,
            child,
            credentials,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                std::fs::read_to_string(registry.dir.path().join("registry.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        let path = self.dir.path().join("ca.crt");
        path.exists().then_some(path)
    }

    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// The requests the registry logged so far (Apache combined format on stdout).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let request = line.split('"').nth(1)?;
                let mut parts = request.split(' ');
                let method = parts.next()?.to_owned();
                let target = parts.next()?;
                let status = line
                    .split('"')
                    .nth(2)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                Some(LoggedRequest {
                    method,
                    path: target.split('?').next()?.to_owned(),
                    status,
                })
            })
            .collect()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
