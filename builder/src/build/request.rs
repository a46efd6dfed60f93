//! What to build: everything `kiln build` (or one compose service) asks for.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::image::Format;
use crate::platform::Platform;
use crate::store::Store;

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A file (default `<context>/Dockerfile`).
    Path(PathBuf),
    /// Text given inline (compose `dockerfile_inline`), with a display name for errors.
    Inline { name: String, text: String },
}

/// A build secret (`--secret id=ID,src=PATH|env=VAR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    pub id: String,
    pub source: SecretValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    File(PathBuf),
    Env(String),
}

/// An SSH agent socket or key for `RUN --mount=type=ssh` (`--ssh id=PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSource {
    /// The id mounts name (`default` when the flag gives none).
    pub id: String,
    /// An agent socket (`$SSH_AUTH_SOCK`), or key files kiln cannot serve as an
    /// agent (refused when a step mounts them, with a hint).
    pub paths: Vec<PathBuf>,
}

/// A privilege a build must be granted explicitly (`--allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entitlement {
    /// `RUN --security=insecure`: the step keeps every capability.
    SecurityInsecure,
    /// `RUN --network=host` (accepted without it: kiln's default network is the host's).
    NetworkHost,
}

impl std::str::FromStr for Entitlement {
    type Err = String;

    fn from_str(s: &str) -> Result<Entitlement, String> {
        match s {
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            "network.host" => Ok(Entitlement::NetworkHost),
            other => Err(format!(
                "unknown entitlement {other:?} (expected security.insecure or network.host)"
            )),
        }
    }
}

/// A named extra build context (`--build-context name=…`, compose
/// `additional_contexts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraContext {
    Dir(PathBuf),
    Image(String),
}

/// An extra `/etc/hosts` entry for RUN steps (`--add-host`, compose `extra_hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    pub name: String,
    pub address: HostAddress,
}

/// The address of an [`ExtraHost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAddress {
    Ip(std::net::IpAddr),
    /// Docker's `host-gateway`: the host as seen from the step. RUN steps share the
    /// host's network namespace, so that is the loopback address `127.0.0.1` (with
    /// `--network=none` the step's own loopback: there is no way to the host).
    HostGateway,
}

impl HostAddress {
    /// The address written into the step's `/etc/hosts`.
    pub fn ip(self) -> std::net::IpAddr {
        match self {
            HostAddress::Ip(ip) => ip,
            HostAddress::HostGateway => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }
}

impl ExtraHost {
    /// An entry from a name and an address as written (`192.0.2.1`, `::1`, `[::1]`
    /// or `host-gateway`).
    pub fn new(name: &str, address: &str) -> Result<ExtraHost, String> {
        if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
            return Err(format!("{name:?} is not a host name"));
        }
        let address = if address == "host-gateway" {
            HostAddress::HostGateway
        } else {
            let bare = address
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(address);
            HostAddress::Ip(
                bare.parse()
                    .map_err(|_| format!("{address:?} is not an IP address or host-gateway"))?,
            )
        };
        Ok(ExtraHost {
            name: name.to_owned(),
            address,
        })
    }
}

impl std::str::FromStr for ExtraHost {
    type Err = String;

    /// `NAME:IP` or `NAME=IP`, as `docker build --add-host` takes them: split at the
    /// first `=`, else at the first `:` (so `host:::1` is IPv6 `::1`).
    fn from_str(s: &str) -> Result<ExtraHost, String> {
        let (name, address) = s
            .split_once('=')
            .or_else(|| s.split_once(':'))
            .ok_or_else(|| format!("{s:?} is not NAME:IP"))?;
        ExtraHost::new(name, address)
    }
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

/// Network for RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    #[default]
    Host,
    None,
}

/// One image build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// A name for progress events (the compose service, or empty).
    pub name: String,
    pub context: PathBuf,
    pub dockerfile: DockerfileSource,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    /// References to name the result by, in the store (and when pushing).
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub platform: Option<Platform>,
    pub no_cache: bool,
    /// Clamp new files' mtimes and set `created` (SOURCE_DATE_EPOCH).
    pub source_date_epoch: Option<i64>,
    pub format: Format,
    pub compression: Compression,
    pub network: NetworkMode,
    pub secrets: Vec<SecretSource>,
    /// SSH agents for `RUN --mount=type=ssh` (`--ssh`).
    pub ssh: Vec<SshSource>,
    /// Privileges granted to the build (`--allow`).
    pub allow: Vec<Entitlement>,
    pub extra_contexts: BTreeMap<String, ExtraContext>,
    /// Hosts allowed over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// Write a CycloneDX SBOM while building.
    pub sbom: bool,
    /// Where to import cache from: buildx-style specs (`type=registry,ref=…`).
    pub cache_from: Vec<String>,
    /// Where to export cache to: buildx-style specs (`type=registry,ref=…,mode=max`).
    pub cache_to: Vec<String>,
    /// Extra `/etc/hosts` entries of RUN steps (`--add-host`).
    pub extra_hosts: Vec<ExtraHost>,
    /// Size of RUN steps' `/dev/shm` in bytes (`--shm-size`); `None` is Docker's 64 MiB.
    pub shm_size: Option<u64>,
    /// Where base images are found (or pulled into) when that is not the
    /// build's own store: a build into a fresh, empty store (`kiln verify`)
    /// takes them from the user's store; their blobs are linked (or copied,
    /// verified) into the build's store, and their layers are unpacked into
    /// (or found among) the base store's snapshots. `None`: the build's store.
    pub base_store: Option<Store>,
}

impl BuildRequest {
    /// A request with Docker's defaults for a context directory.
    pub fn new(context: impl Into<PathBuf>) -> BuildRequest {
        let context = context.into();
        BuildRequest {
            name: String::new(),
            dockerfile: DockerfileSource::Path(context.join("Dockerfile")),
            context,
            target: None,
            build_args: BTreeMap::new(),
            tags: Vec::new(),
            labels: BTreeMap::new(),
            platform: None,
            no_cache: false,
            source_date_epoch: None,
            format: Format::Oci,
            compression: Compression::Gzip,
            network: NetworkMode::Host,
            secrets: Vec::new(),
            ssh: Vec::new(),
            allow: Vec::new(),
            extra_contexts: BTreeMap::new(),
            insecure_registries: Vec::new(),
            sbom: true,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            extra_hosts: Vec::new(),
            shm_size: None,
            base_store: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_hosts_parse_like_docker_add_host() {
        let parse = |s: &str| s.parse::<ExtraHost>();
        let host = parse("db:10.0.0.2").unwrap();
        assert_eq!(host.name, "db");
        assert_eq!(host.address.ip().to_string(), "10.0.0.2");
        assert_eq!(parse("db=10.0.0.2").unwrap(), host);
        assert_eq!(parse("v6:::1").unwrap().address.ip().to_string(), "::1");
        assert_eq!(
            parse("v6=[2001:db8::1]").unwrap().address.ip().to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            parse("gw:host-gateway").unwrap().address,
            HostAddress::HostGateway
        );
        assert_eq!(
            HostAddress::HostGateway.ip().to_string(),
            "127.0.0.1",
            "steps share the host's network"
        );
        assert!(parse("db").is_err());
        assert!(parse(":10.0.0.2").is_err());
        assert!(parse("db:not-an-ip").is_err());
    }
}
