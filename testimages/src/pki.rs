//! The harness's certificates and keys, made with the `openssl` CLI once per
//! process: a CA and a server certificate for `127.0.0.1`/`localhost` (TLS
//! mode), and a self-signed RSA certificate whose key signs bearer tokens
//! (token mode). Errors: [`Error::Spawn`]/[`Error::Command`] when openssl
//! fails, [`Error::Pem`] when its output lacks the expected block.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{Error, command};

/// PEM and DER material; all certificates are valid for ten years.
#[derive(Debug)]
pub(crate) struct Pki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub signer_cert_pem: String,
    pub signer_cert_der: Vec<u8>,
    pub signer_key_pkcs8: Vec<u8>,
    pub signer_public_key_der: Vec<u8>,
}

const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[signer_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyCertSign
subjectKeyIdentifier = hash
";

/// The process's certificates, made on first use.
pub(crate) fn pki() -> Result<&'static Pki, Error> {
    static PKI: OnceLock<Pki> = OnceLock::new();
    if let Some(pki) = PKI.get() {
        return Ok(pki);
    }
    let made = make()?;
    Ok(PKI.get_or_init(|| made))
}

fn make() -> Result<Pki, Error> {
    let dir = tempfile::tempdir().map_err(Error::io(
        "create a temporary directory in",
        std::env::temp_dir(),
    ))?;
    let d = dir.path();
    let config = d.join("openssl.cnf");
    fs::write(&config, OPENSSL_CONFIG).map_err(Error::io("write", &config))?;
    let openssl = |args: &[&str]| {
        command::run(
            Command::new("openssl")
                .args(args)
                .current_dir(d)
                .env("OPENSSL_CONF", &config),
        )
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let config_arg = config.to_string_lossy().into_owned();
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-config",
                &config_arg,
                "-extensions",
                "ca_ext",
            ][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "3650",
                "-subj",
                "/CN=kiln-testimages CA",
            ],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req", "-new", "-config", &config_arg][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "3650",
        "-extfile",
        &config_arg,
        "-extensions",
        "server_ext",
        "-out",
        "server.crt",
    ])?;
    openssl(&[
        "req",
        "-x509",
        "-config",
        &config_arg,
        "-extensions",
        "signer_ext",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "signer.key",
        "-out",
        "signer.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=kiln-testimages token signer",
    ])?;
    openssl(&["pkey", "-in", "signer.key", "-pubout", "-out", "signer.pub"])?;

    let read = |name: &str| {
        let path = d.join(name);
        fs::read_to_string(&path).map_err(Error::io("read", path))
    };
    let signer_cert_pem = read("signer.crt")?;
    Ok(Pki {
        ca_cert_pem: read("ca.crt")?,
        server_cert_pem: read("server.crt")?,
        server_key_pem: read("server.key")?,
        signer_cert_der: pem_block(&signer_cert_pem, "CERTIFICATE", &d.join("signer.crt"))?,
        signer_key_pkcs8: pem_block(&read("signer.key")?, "PRIVATE KEY", &d.join("signer.key"))?,
        signer_public_key_der: pem_block(
            &read("signer.pub")?,
            "PUBLIC KEY",
            &d.join("signer.pub"),
        )?,
        signer_cert_pem,
    })
}

/// The bytes of the first PEM block labelled `label` in `text`.
pub(crate) fn pem_block(text: &str, label: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    let missing = || Error::Pem {
        path: path.to_path_buf(),
        label,
    };
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(missing)? + begin.len();
    let stop = start + text[start..].find(&end).ok_or_else(missing)?;
    let body: String = text[start..stop].split_whitespace().collect();
    STANDARD.decode(body).map_err(|_| missing())
}

/// The key ID docker/libtrust gives a public key: the first 240 bits of the
/// sha256 of its DER SubjectPublicKeyInfo, base32, in twelve groups of four.
pub(crate) fn libtrust_key_id(public_key_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key_der);
    let encoded = base32(&digest.as_ref()[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn key_id_has_twelve_groups() {
        let id = libtrust_key_id(b"any key bytes");
        assert_eq!(id.len(), 48 + 11);
        assert_eq!(id.split(':').count(), 12);
    }

    #[test]
    fn pki_is_made_and_parsed() {
        let pki = pki().unwrap();
        assert!(pki.ca_cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(pki.server_key_pem.contains("PRIVATE KEY"));
        assert!(ring::signature::RsaKeyPair::from_pkcs8(&pki.signer_key_pkcs8).is_ok());
        // The server certificate chains to the CA and names 127.0.0.1.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ca.crt"), &pki.ca_cert_pem).unwrap();
        fs::write(dir.path().join("server.crt"), &pki.server_cert_pem).unwrap();
        let out = command::stdout(
            Command::new("openssl")
                .args([
                    "verify",
                    "-CAfile",
                    "ca.crt",
                    "-verify_ip",
                    "127.0.0.1",
                    "server.crt",
                ])
                .current_dir(dir.path()),
        )
        .unwrap();
        assert!(out.contains("OK"), "{out}");
    }

    #[test]
    fn missing_pem_block_is_an_error() {
        let err = pem_block("nothing", "CERTIFICATE", Path::new("x.pem")).unwrap_err();
        assert!(matches!(err, Error::Pem { .. }));
    }
}
