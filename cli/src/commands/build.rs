//! `kiln build`: build an image from a Dockerfile and a context.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_builder::build::{
    BuildRequest, Compression, DockerfileSource, Entitlement, ExtraContext, ExtraHost, NetworkMode,
    SecretSource, SecretValue, SshSource,
};
use kiln_builder::frontend::compose::model::parse_size;
use kiln_builder::image::Format;
use kiln_builder::platform::Platform;

use kiln_builder::build;
use kiln_builder::cache::{CacheExport, CacheImport};
use kiln_builder::executor::CancelToken;
use kiln_builder::export::{self, Output};
use kiln_builder::store::Store;
use kiln_builder::tags;

use super::Failure;
use crate::printer::Printer;
use crate::progress;

/// The flags that say what to build, shared by `kiln build` and `kiln verify`.
#[derive(Debug, clap::Args)]
pub struct BuildInputs {
    /// The build context directory
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` reads stdin)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Set a build-time variable (`K=V`, or `K` to take it from the environment)
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Set a label on the image (`K=V`)
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// A secret for RUN --mount=type=secret: `id=ID,src=PATH` or `id=ID,env=VAR`
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// An SSH agent for RUN --mount=type=ssh: `default`, `ID`, `ID=SOCKET` (`default`
    /// and bare ids take $SSH_AUTH_SOCK)
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// A named context for `COPY --from=NAME`, `RUN --mount from=NAME` or `FROM NAME`:
    /// `NAME=DIR` or `NAME=docker-image://REF`; repeatable
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Grant a privilege: `security.insecure` (for RUN --security=insecure) or `network.host`
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Target platform (os/arch[/variant]); default the host's
    #[arg(long)]
    pub platform: Option<String>,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: progress::Mode,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Network for RUN steps: default (host) or none
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Add a line to RUN steps' /etc/hosts: NAME:IP or NAME=IP (IPv6 too;
    /// `host-gateway` is 127.0.0.1, as steps share the host's network); repeatable
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// Size of RUN steps' /dev/shm: bytes, or a number with b, k, m or g (default 64m)
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Layer compression: gzip (the default) or zstd
    #[arg(long)]
    pub compression: Option<String>,
    /// Clamp file times and set `created` to this Unix time (default: $SOURCE_DATE_EPOCH)
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<i64>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub inputs: BuildInputs,
    /// Name and optionally a tag (`name:tag`); repeatable
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Do not use the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Push every tag after building; the manifest digest goes to stdout
    #[arg(long)]
    pub push: bool,
    /// Also write the image out: type=oci|oci-dir|docker,dest=PATH
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// The SBOM (CycloneDX JSON, on by default, kept in the store and pushed
    /// as a referrer): `--sbom PATH` also writes it to PATH, `--sbom=false` turns it off
    #[arg(long, value_name = "PATH|false")]
    pub sbom: Option<String>,
    /// Image media types: oci or docker
    #[arg(long, default_value = "oci")]
    pub format: String,
    /// Write the image digest to this file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write build result metadata (JSON) to this file
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// Import build cache: type=registry,ref=REF | type=local,src=DIR | REF; repeatable
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Export build cache after the build:
    /// type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd][,ignore-error=true]
    /// or type=local,dest=DIR[,…]; mode=max also exports RUN --mount=type=cache dirs
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Derive more tags for each -t name: semver-sha gives VERSION, MAJOR.MINOR,
    /// MAJOR and VERSION-sha.COMMIT, plus OCI version/revision/source/created labels
    #[arg(long, value_enum, value_name = "SCHEME", requires = "release_version")]
    pub tag_scheme: Option<TagScheme>,
    /// The release version for --tag-scheme (SemVer, e.g. 1.2.0 or 1.3.0-rc.1)
    #[arg(long = "version", value_name = "VERSION", requires = "tag_scheme")]
    pub release_version: Option<String>,
    /// The commit for --tag-scheme when the context is not a git checkout
    #[arg(long, value_name = "SHA", requires = "tag_scheme")]
    pub revision: Option<String>,
}

/// `--tag-scheme` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TagScheme {
    SemverSha,
}

/// `K=V` pairs; a bare `K` takes the environment's value (skipped when unset).
pub fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_owned(), v.to_owned());
            }
            Some(_) => {
                return Err(
                    Failure::usage(format!("invalid {what} {item:?}: empty name"))
                        .with_hint(format!("write {what}s as NAME=VALUE")),
                );
            }
            None => {
                if let Ok(value) = std::env::var(item) {
                    out.insert(item.clone(), value);
                }
            }
        }
    }
    Ok(out)
}

fn parse_secret(spec: &str) -> Result<SecretSource, Failure> {
    let mut id = None;
    let mut source = None;
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "id" => id = Some(v.to_owned()),
            "src" | "source" => source = Some(SecretValue::File(PathBuf::from(v))),
            "env" => source = Some(SecretValue::Env(v.to_owned())),
            "type" if v == "file" || v == "env" => {}
            _ => {
                return Err(Failure::usage(format!(
                    "invalid --secret {spec:?}: unknown field {k:?}"
                ))
                .with_hint("use --secret id=ID,src=PATH or --secret id=ID,env=VAR"));
            }
        }
    }
    let id = id.ok_or_else(|| {
        Failure::usage(format!("invalid --secret {spec:?}: missing id="))
            .with_hint("use --secret id=ID,src=PATH or --secret id=ID,env=VAR")
    })?;
    // Docker's shorthand: `--secret id=X` reads the environment variable X.
    let source = source.unwrap_or_else(|| SecretValue::Env(id.clone()));
    Ok(SecretSource { id, source })
}

/// `--build-context NAME=DIR|docker-image://REF`.
fn parse_build_context(spec: &str) -> Result<(String, ExtraContext), Failure> {
    let hint = "use --build-context NAME=./dir or --build-context NAME=docker-image://REF";
    let Some((name, value)) = spec
        .split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
    else {
        return Err(Failure::usage(format!(
            "invalid --build-context {spec:?}: expected NAME=VALUE"
        ))
        .with_hint(hint));
    };
    let context = if let Some(reference) = value.strip_prefix("docker-image://") {
        ExtraContext::Image(reference.to_owned())
    } else if value.contains("://") || value.starts_with("git@") {
        return Err(Failure::usage(format!(
            "--build-context {name}={value}: only local directories and docker-image:// \
             references are supported (no git or URL contexts yet)"
        ))
        .with_hint(hint));
    } else {
        let dir = PathBuf::from(value);
        if !dir.is_dir() {
            return Err(
                Failure::usage(format!("--build-context {name}={value}: not a directory"))
                    .with_hint(hint),
            );
        }
        ExtraContext::Dir(dir)
    };
    Ok((name.to_owned(), context))
}

/// `--ssh default`, `--ssh id=/path/to/agent.sock`, `--ssh id=key1,key2`.
fn parse_ssh(spec: &str) -> Result<SshSource, Failure> {
    let hint = "use --ssh default (forwards $SSH_AUTH_SOCK) or --ssh ID=/path/to/agent.sock";
    let (id, paths) = match spec.split_once('=') {
        Some((id, paths)) => (
            id,
            paths
                .split(',')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect::<Vec<_>>(),
        ),
        None => (spec, Vec::new()),
    };
    if id.is_empty() {
        return Err(Failure::usage(format!("invalid --ssh {spec:?}: empty id")).with_hint(hint));
    }
    let paths = if paths.is_empty() {
        match std::env::var_os("SSH_AUTH_SOCK") {
            Some(socket) if !socket.is_empty() => vec![PathBuf::from(socket)],
            _ => {
                return Err(
                    Failure::usage(format!("--ssh {spec}: SSH_AUTH_SOCK is not set"))
                        .with_hint(hint),
                );
            }
        }
    } else {
        paths
    };
    Ok(SshSource {
        id: id.to_owned(),
        paths,
    })
}

/// What `--sbom` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SbomSetting {
    /// No SBOM at all.
    Off,
    /// In the store (and pushed as a referrer): the default, or `--sbom=true`.
    Store,
    /// Also written to this file.
    File(PathBuf),
}

/// `--format oci|docker` (`kiln verify --image-format`).
pub fn parse_format(value: &str, flag: &str) -> Result<Format, Failure> {
    match value {
        "oci" => Ok(Format::Oci),
        "docker" => Ok(Format::Docker),
        other => Err(Failure::usage(format!("unknown {flag} {other:?}"))
            .with_hint(format!("use {flag} oci or {flag} docker"))),
    }
}

impl BuildInputs {
    /// The build request these flags describe (no tags, cache or outputs).
    pub fn request(&self) -> Result<BuildRequest, Failure> {
        let mut request = BuildRequest::new(&self.context);
        if let Some(file) = &self.file {
            request.dockerfile = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| Failure::new(format!("reading the Dockerfile from stdin: {e}")))?;
                DockerfileSource::Inline {
                    name: "Dockerfile".into(),
                    text,
                }
            } else {
                DockerfileSource::Path(file.clone())
            };
        }
        request.target = self.target.clone();
        request.build_args = key_values(&self.build_args, "build arg")?;
        request.labels = key_values(&self.labels, "label")?;
        request.secrets = self
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<Result<_, _>>()?;
        for spec in &self.build_contexts {
            let (name, context) = parse_build_context(spec)?;
            request.extra_contexts.insert(name, context);
        }
        request.ssh = self
            .ssh
            .iter()
            .map(|s| parse_ssh(s))
            .collect::<Result<_, _>>()?;
        request.allow = self
            .allow
            .iter()
            .map(|a| {
                a.parse::<Entitlement>().map_err(|e| {
                    Failure::usage(format!("invalid --allow: {e}"))
                        .with_hint("kiln knows --allow security.insecure and --allow network.host")
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(platform) = &self.platform {
            request.platform = Some(platform.parse::<Platform>().map_err(|e| {
                Failure::usage(e.to_string()).with_hint("e.g. --platform linux/amd64")
            })?);
        }
        request.insecure_registries = self.insecure_registries.clone();
        request.network = match self.network.as_str() {
            "default" | "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            other => {
                return Err(Failure::usage(format!("unknown --network {other:?}"))
                    .with_hint("kiln supports --network=default (host) and --network=none"));
            }
        };
        request.extra_hosts = self
            .add_hosts
            .iter()
            .map(|spec| {
                spec.parse::<ExtraHost>().map_err(|reason| {
                    Failure::usage(format!("invalid --add-host {spec:?}: {reason}"))
                        .with_hint("use --add-host NAME:IP, e.g. --add-host db:10.0.0.2")
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(size) = &self.shm_size {
            request.shm_size = Some(parse_size(size).ok_or_else(|| {
                Failure::usage(format!("invalid --shm-size {size:?}"))
                    .with_hint("give bytes or a number with b, k, m or g, e.g. --shm-size 256m")
            })?);
        }
        request.compression = match self.compression.as_deref().unwrap_or("gzip") {
            "gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            other => {
                return Err(Failure::usage(format!("unknown --compression {other:?}"))
                    .with_hint("use --compression gzip or --compression zstd"));
            }
        };
        request.source_date_epoch = self.source_date_epoch;
        Ok(request)
    }
}

impl Args {
    /// What `--sbom` asks for.
    pub fn sbom_setting(&self) -> SbomSetting {
        match self.sbom.as_deref() {
            None | Some("true") => SbomSetting::Store,
            Some("false") => SbomSetting::Off,
            Some(path) => SbomSetting::File(PathBuf::from(path)),
        }
    }

    /// The build request these flags describe.
    pub fn request(&self) -> Result<BuildRequest, Failure> {
        let mut request = self.inputs.request()?;
        request.tags = self.tags.clone();
        request.no_cache = self.no_cache;
        request.sbom = !matches!(self.sbom_setting(), SbomSetting::Off);
        request.format = parse_format(&self.format, "--format")?;
        // Checked here so a typo is a usage error before anything is built.
        let cache_hint = "e.g. --cache-to type=registry,ref=ghcr.io/OWNER/cache:main,mode=max \
                          and --cache-from type=registry,ref=ghcr.io/OWNER/cache:main";
        for spec in &self.cache_from {
            CacheImport::parse(spec)
                .map_err(|e| Failure::usage(e.to_string()).with_hint(cache_hint))?;
        }
        for spec in &self.cache_to {
            CacheExport::parse(spec)
                .map_err(|e| Failure::usage(e.to_string()).with_hint(cache_hint))?;
        }
        request.cache_from = self.cache_from.clone();
        request.cache_to = self.cache_to.clone();
        self.apply_tag_scheme(&mut request)?;
        Ok(request)
    }

    /// `--tag-scheme semver-sha --version V`: every `-t` name gets the release
    /// tags, and the image the OCI release labels (an explicit --label wins).
    fn apply_tag_scheme(&self, request: &mut BuildRequest) -> Result<(), Failure> {
        let (Some(TagScheme::SemverSha), Some(version)) = (self.tag_scheme, &self.release_version)
        else {
            return Ok(());
        };
        if self.tags.is_empty() {
            return Err(Failure::usage("--tag-scheme needs at least one -t/--tag name")
                .with_hint("e.g. kiln build --tag-scheme semver-sha --version 1.2.0 -t ghcr.io/owner/app ."));
        }
        let failure = |e: tags::Error| match e {
            tags::Error::InvalidVersion { .. }
            | tags::Error::BuildMetadata { .. }
            | tags::Error::InvalidRevision { .. } => Failure::usage(e.to_string()),
            other => Failure::new(other.to_string()),
        };
        let revision = match &self.revision {
            Some(revision) => Some(tags::given_revision(revision, None).map_err(failure)?),
            None => None,
        };
        let created = self.inputs.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        let release = tags::semver_sha(&tags::ReleaseOptions {
            version,
            revision,
            context: &self.inputs.context,
            created,
        })
        .map_err(failure)?;
        request.tags = tags::tagged_references(&self.tags, &release.tags);
        for (key, value) in release.labels {
            request.labels.entry(key).or_insert(value);
        }
        Ok(())
    }
}

/// `--output type=…,dest=…`.
fn parse_output(spec: &str) -> Result<Output, Failure> {
    let mut kind = None;
    let mut dest = None;
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_owned()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => {
                return Err(Failure::usage(format!("invalid --output {spec:?}"))
                    .with_hint("use --output type=oci|oci-dir|docker,dest=PATH"));
            }
        }
    }
    let dest = dest.ok_or_else(|| {
        Failure::usage(format!("--output {spec:?} needs dest=PATH"))
            .with_hint("use --output type=oci|oci-dir|docker,dest=PATH")
    })?;
    match kind.as_deref() {
        Some("oci") => Ok(Output::OciTar(dest)),
        Some("oci-dir") | Some("local") => Ok(Output::OciDir(dest)),
        Some("docker") => Ok(Output::DockerTar(dest)),
        other => Err(
            Failure::usage(format!("unknown --output type {:?}", other.unwrap_or("")))
                .with_hint("kiln writes type=oci (tar), type=oci-dir and type=docker (tar)"),
        ),
    }
}

/// Turns a build error into what the user sees.
pub fn build_failure(error: &build::Error) -> Failure {
    let mut failure = Failure::from_error(error);
    if let build::Error::StepFailed { output_tail, .. } = error {
        for line in output_tail {
            failure.causes.push(format!("| {line}"));
        }
    }
    if let Some(hint) = error.hint() {
        failure = failure.with_hint(hint);
    }
    failure
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let request = args.request()?;
    let outputs: Vec<Output> = args
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<Result<_, _>>()?;
    if args.push && args.tags.is_empty() {
        return Err(Failure::usage("--push needs at least one -t/--tag")
            .with_hint("name the image to push with -t REGISTRY/REPO:TAG"));
    }
    let store = Store::open_default()?;
    let reporter = progress::reporter(args.inputs.progress);
    let cancel = CancelToken::new();
    crate::signals::cancel_on_interrupt(&cancel);
    let output =
        build::build(&store, &request, &reporter, &cancel).map_err(|e| build_failure(&e))?;
    for out in &outputs {
        export::export(&store, &output.descriptor, &output.tags, out)
            .map_err(|e| Failure::from_error(&e))?;
        printer.info(&format!("wrote {}", out.dest().display()));
    }
    let digest = output.descriptor.digest.to_string();
    if let (SbomSetting::File(path), Some(sbom)) = (args.sbom_setting(), &output.sbom) {
        let document = store.read_blob(&sbom.document.digest)?;
        std::fs::write(&path, document)
            .map_err(|e| Failure::new(format!("writing {}: {e}", path.display())))?;
        printer.info(&format!("wrote the SBOM to {}", path.display()));
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &digest)
            .map_err(|e| Failure::new(format!("writing {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.metadata_file {
        let metadata = serde_json::json!({
            "containerimage.digest": digest,
            "containerimage.config.digest": output.config_digest.to_string(),
            "image.name": output.tags.join(","),
            "kiln.steps.run": output.steps_run,
            "kiln.steps.cached": output.steps_cached,
            "kiln.sbom.digest": output.sbom.as_ref().map(|s| s.manifest.digest.to_string()),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&metadata).expect("json"))
            .map_err(|e| Failure::new(format!("writing {}: {e}", path.display())))?;
    }
    if args.push {
        for tag in &output.tags {
            super::push::push_from_store(
                &store,
                tag,
                std::slice::from_ref(tag),
                &args.inputs.insecure_registries,
                printer,
            )?;
        }
    }
    printer.data(&digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_like_docker() {
        let s = parse_secret("id=token,src=/run/t").unwrap();
        assert_eq!(s.id, "token");
        assert_eq!(s.source, SecretValue::File("/run/t".into()));
        let s = parse_secret("id=token,env=TOKEN").unwrap();
        assert_eq!(s.source, SecretValue::Env("TOKEN".into()));
        let s = parse_secret("id=TOKEN").unwrap();
        assert_eq!(s.source, SecretValue::Env("TOKEN".into()));
        assert!(parse_secret("src=/x").is_err());
        assert!(parse_secret("id=a,bogus=1").is_err());
    }

    #[test]
    fn ssh_and_allow_parse_like_docker() {
        let s = parse_ssh("work=/tmp/agent.sock").unwrap();
        assert_eq!(s.id, "work");
        assert_eq!(s.paths, vec![PathBuf::from("/tmp/agent.sock")]);
        let s = parse_ssh("keys=/a,/b").unwrap();
        assert_eq!(s.paths.len(), 2);
        assert!(parse_ssh("=/x").is_err());
        assert_eq!(
            "security.insecure".parse::<Entitlement>().unwrap(),
            Entitlement::SecurityInsecure
        );
        assert!("device".parse::<Entitlement>().is_err());
    }

    #[test]
    fn key_values_take_bare_names_from_the_environment() {
        let kv = key_values(&["A=1".into(), "B=".into(), "PATH".into()], "build arg").unwrap();
        assert_eq!(kv["A"], "1");
        assert_eq!(kv["B"], "");
        assert!(kv.contains_key("PATH"));
        assert!(key_values(&["=x".into()], "build arg").is_err());
    }
}
