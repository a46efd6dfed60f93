//! `RUN --mount=…` values, parsed as BuildKit's `parseMount` does.
//!
//! Contract: a mount value is a CSV list of `key=value` fields (`type=` one of bind,
//! cache, tmpfs, secret, ssh; default bind). [`check`] validates a value as written
//! (values containing `$` are checked after expansion) and extracts its `from=`
//! stage or image, which may not use variables; [`parse`] expands every value and
//! gives a typed [`Mount`] with BuildKit's defaults (cache id = target, secret
//! target `/run/secrets/<id>`, ssh id `default`, read-only binds, …).
//!
//! Errors: [`MountProblem`]s (bad CSV, unknown type or key, key not valid for the
//! type, bad number or boolean, secret without id) and expansion errors.

use super::error::{ErrorKind, MountProblem};
use super::shell::ShellError;
use super::suggest;

/// The kinds of `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }

    fn parse(s: &str) -> Option<MountType> {
        Some(match s {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }
}

/// A `--mount` value as written, checked, with its static `from=` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub text: String,
    pub mount_type: MountType,
    /// The `from=` stage name, index or image, as written.
    pub from: Option<String>,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// Where a mount's or a copy's files come from when not the build context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StageOrImage {
    /// Another stage, by index in the Dockerfile.
    Stage(usize),
    /// An image reference (anything that names no stage).
    Image(String),
}

/// A typed, expanded `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Bind(BindMount),
    Cache(CacheMount),
    Tmpfs(TmpfsMount),
    Secret(SecretMount),
    Ssh(SshMount),
}

/// `type=bind`: files from the context, a stage or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// None: the build context.
    pub from: Option<StageOrImage>,
    /// Path inside `from`; empty means its root.
    pub source: String,
    pub target: String,
    pub read_write: bool,
}

/// `type=cache`: a persistent directory shared between builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    pub id: String,
    pub target: String,
    pub sharing: CacheSharing,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seed the cache from a stage or image.
    pub from: Option<StageOrImage>,
    pub source: String,
    pub read_only: bool,
}

/// `type=tmpfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    pub target: String,
    /// Size limit in bytes.
    pub size: Option<u64>,
}

/// `type=secret`: a build secret as a file and/or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    pub id: String,
    /// None when only exposed as `env`.
    pub target: Option<String>,
    pub env: Option<String>,
    pub required: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// `type=ssh`: an SSH agent socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshMount {
    pub id: String,
    pub target: String,
    pub required: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "size",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "env",
];

#[derive(Debug, Default)]
struct Fields {
    mount_type: Option<MountType>,
    from: Option<String>,
    source: Option<String>,
    target: Option<String>,
    read_only: Option<bool>,
    required: bool,
    size: Option<u64>,
    id: Option<String>,
    sharing: Option<CacheSharing>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    env: Option<String>,
}

/// Expands one value.
type Expander<'a> = &'a dyn Fn(&str) -> Result<String, ShellError>;

fn problem(spec: &str, problem: MountProblem) -> ErrorKind {
    ErrorKind::InvalidMount {
        spec: spec.to_string(),
        problem,
    }
}

/// Splits one CSV record as Go's `encoding/csv` (quotes with `""` inside).
fn csv_fields(s: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut rest = s;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut r = quoted;
            loop {
                let Some(end) = r.find('"') else {
                    return Err("extraneous or missing \" in quoted-field");
                };
                field.push_str(&r[..end]);
                r = &r[end + 1..];
                if let Some(after) = r.strip_prefix('"') {
                    field.push('"');
                    r = after;
                } else if let Some(after) = r.strip_prefix(',') {
                    fields.push(field);
                    rest = after;
                    break;
                } else if r.is_empty() {
                    fields.push(field);
                    return Ok(fields);
                } else {
                    return Err("extraneous or missing \" in quoted-field");
                }
            }
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let field = &rest[..end];
            if field.contains('"') {
                return Err("bare \" in non-quoted-field");
            }
            fields.push(field.to_string());
            if end == rest.len() {
                return Ok(fields);
            }
            rest = &rest[end + 1..];
        }
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1.5GiB`, `512` (binary multiples).
fn ram_in_bytes(s: &str) -> Option<u64> {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut u = unit.as_str();
    let mut multiplier: f64 = 1.0;
    if let Some(c) = u.chars().next()
        && let Some(power) = "kmgtp".find(c)
    {
        multiplier = 1024f64.powi(power as i32 + 1);
        u = &u[1..];
    }
    let u = u.strip_prefix('i').unwrap_or(u);
    let u = u.strip_prefix('b').unwrap_or(u);
    if !u.is_empty() {
        return None;
    }
    let bytes = value * multiplier;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn parse_u32(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || s.starts_with('+') {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

/// Checks a `--mount` value as written. Values that use variables are checked
/// after expansion; `from=` may not use them.
pub(crate) fn check(spec: &str) -> Result<MountSpec, ErrorKind> {
    let fields = parse_fields(spec, None)?;
    Ok(MountSpec {
        text: spec.to_string(),
        mount_type: fields.mount_type.unwrap_or(MountType::Bind),
        from: fields.from,
    })
}

/// Parses a `--mount` value, expanding each value with `expand`. `resolve_from`
/// turns a `from=` value into a stage or image; `ssh_index` numbers the default
/// ssh socket path.
pub(crate) fn parse(
    spec: &str,
    expand: Expander,
    resolve_from: &dyn Fn(&str) -> StageOrImage,
    ssh_index: usize,
) -> Result<Mount, ErrorKind> {
    let f = parse_fields(spec, Some(expand))?;
    let mount_type = f.mount_type.unwrap_or(MountType::Bind);
    let need_target = |target: Option<String>| {
        target.filter(|t| !t.is_empty()).ok_or_else(|| {
            problem(
                spec,
                MountProblem::MissingTarget(mount_type.as_str().into()),
            )
        })
    };
    Ok(match mount_type {
        MountType::Bind => Mount::Bind(BindMount {
            from: f.from.as_deref().map(resolve_from),
            source: f.source.unwrap_or_default(),
            target: need_target(f.target)?,
            read_write: !f.read_only.unwrap_or(true),
        }),
        MountType::Cache => {
            let target = need_target(f.target)?;
            Mount::Cache(CacheMount {
                id: f
                    .id
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| target.clone()),
                target,
                sharing: f.sharing.unwrap_or_default(),
                mode: f.mode.unwrap_or(0o755),
                uid: f.uid.unwrap_or(0),
                gid: f.gid.unwrap_or(0),
                from: f.from.as_deref().map(resolve_from),
                source: f.source.unwrap_or_default(),
                read_only: f.read_only.unwrap_or(false),
            })
        }
        MountType::Tmpfs => Mount::Tmpfs(TmpfsMount {
            target: need_target(f.target)?,
            size: f.size,
        }),
        MountType::Secret => {
            let target = f.target.filter(|t| !t.is_empty());
            let id = match (
                f.source.filter(|s| !s.is_empty()),
                f.id.filter(|i| !i.is_empty()),
            ) {
                (Some(source), _) => source,
                (None, Some(id)) => id,
                (None, None) => match &target {
                    Some(t) => base_name(t).to_string(),
                    None => return Err(problem(spec, MountProblem::SecretWithoutId)),
                },
            };
            let target = match (target, &f.env) {
                (Some(t), _) => Some(t),
                (None, None) => Some(format!("/run/secrets/{}", base_name(&id))),
                (None, Some(_)) => None,
            };
            Mount::Secret(SecretMount {
                id,
                target,
                env: f.env,
                required: f.required,
                mode: f.mode.unwrap_or(0o400),
                uid: f.uid.unwrap_or(0),
                gid: f.gid.unwrap_or(0),
            })
        }
        MountType::Ssh => Mount::Ssh(SshMount {
            id: f
                .id
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "default".to_string()),
            target: f
                .target
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}")),
            required: f.required,
            mode: f.mode.unwrap_or(0o600),
            uid: f.uid.unwrap_or(0),
            gid: f.gid.unwrap_or(0),
        }),
    })
}

/// Go's `path.Base`.
fn base_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "." } else { "/" };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

fn parse_fields(spec: &str, expand: Option<Expander>) -> Result<Fields, ErrorKind> {
    let fields = csv_fields(spec).map_err(|e| problem(spec, MountProblem::Csv(e)))?;
    let mut f = Fields::default();
    for field in &fields {
        if let Some((key, value)) = field.split_once('=')
            && key.eq_ignore_ascii_case("type")
        {
            let lower = value.to_ascii_lowercase();
            let Some(t) = MountType::parse(&lower) else {
                let suggestion = suggest::closest(
                    &lower,
                    ["bind", "cache", "tmpfs", "secret", "ssh"].into_iter(),
                );
                return Err(problem(
                    spec,
                    MountProblem::UnsupportedType {
                        value: value.to_string(),
                        suggestion,
                    },
                ));
            };
            f.mount_type = Some(t);
        }
    }
    let mount_type = f.mount_type.unwrap_or(MountType::Bind);
    let type_name = mount_type.as_str();
    let not_for_type = |key: &str| {
        problem(
            spec,
            MountProblem::KeyNotForType {
                key: key.to_string(),
                mount_type: type_name.to_string(),
            },
        )
    };
    let secret_or_ssh = matches!(mount_type, MountType::Secret | MountType::Ssh);

    for field in &fields {
        let Some((key, raw)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => f.read_only = Some(true),
                "readwrite" | "rw" => f.read_only = Some(false),
                "required" if secret_or_ssh => f.required = true,
                "required" => return Err(not_for_type("required")),
                _ => return Err(problem(spec, MountProblem::NotKeyValue(field.clone()))),
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        // Without an expander (checking as written), a value using variables is
        // only known later: keep strings as written, skip checks of the rest.
        let (value, deferred) = match expand {
            Some(expand) => (
                expand(raw).map_err(|source| ErrorKind::Expansion {
                    word: raw.to_string(),
                    source,
                })?,
                false,
            ),
            None => {
                if key == "from" && raw.find('$').is_some_and(|i| i != raw.len() - 1) {
                    return Err(ErrorKind::FromWithVariable { flag: "from" });
                }
                (raw.to_string(), raw.contains('$'))
            }
        };
        let invalid = |key: &str, value: &str| {
            problem(
                spec,
                MountProblem::InvalidValue {
                    key: key.to_string(),
                    value: value.to_string(),
                },
            )
        };
        match key.as_str() {
            "type" => {}
            "from" => f.from = Some(value),
            "source" | "src" => f.source = Some(value),
            "target" | "dst" | "destination" => f.target = Some(value),
            "readonly" | "ro" | "readwrite" | "rw" => {
                if !deferred {
                    let b = parse_bool(&value).ok_or_else(|| invalid(&key, &value))?;
                    let read_write_key = matches!(key.as_str(), "readwrite" | "rw");
                    f.read_only = Some(b != read_write_key);
                }
            }
            "required" => {
                if !secret_or_ssh {
                    return Err(not_for_type(&key));
                }
                if !deferred {
                    f.required = parse_bool(&value).ok_or_else(|| invalid(&key, &value))?;
                }
            }
            "size" => {
                if mount_type != MountType::Tmpfs {
                    return Err(not_for_type(&key));
                }
                if !deferred {
                    f.size = Some(ram_in_bytes(&value).ok_or_else(|| invalid(&key, &value))?);
                }
            }
            "id" => f.id = Some(value),
            "sharing" => {
                if mount_type != MountType::Cache {
                    return Err(not_for_type(&key));
                }
                if !deferred {
                    f.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => return Err(problem(spec, MountProblem::Sharing(value))),
                    });
                }
            }
            "mode" => {
                if !deferred {
                    f.mode = Some(parse_u32(&value, 8).ok_or_else(|| invalid(&key, &value))?);
                }
            }
            "uid" | "gid" => {
                if !deferred {
                    let id = parse_u32(&value, 10).ok_or_else(|| invalid(&key, &value))?;
                    if key == "uid" {
                        f.uid = Some(id);
                    } else {
                        f.gid = Some(id);
                    }
                }
            }
            "env" => {
                if mount_type != MountType::Secret {
                    return Err(not_for_type(&key));
                }
                f.env = Some(value);
            }
            _ => {
                return Err(problem(
                    spec,
                    MountProblem::UnknownKey {
                        suggestion: suggest::closest(&key, KEYS.iter().copied()),
                        key,
                        field: field.clone(),
                    },
                ));
            }
        }
    }

    if !matches!(
        mount_type,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        for (name, set) in [
            ("mode", f.mode.is_some()),
            ("uid", f.uid.is_some()),
            ("gid", f.gid.is_some()),
        ] {
            if set {
                return Err(problem(
                    spec,
                    MountProblem::FileInfoNotAllowed(name, type_name.to_string()),
                ));
            }
        }
    }
    if mount_type == MountType::Secret {
        if f.from.is_some() {
            return Err(problem(spec, MountProblem::SecretWithFrom));
        }
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if !present(&f.source) && !present(&f.target) && !present(&f.id) {
            return Err(problem(spec, MountProblem::SecretWithoutId));
        }
        if present(&f.source) && present(&f.id) {
            return Err(problem(spec, MountProblem::SecretSourceAndId));
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_expand(s: &str) -> Result<String, ShellError> {
        Ok(s.to_string())
    }

    fn image(s: &str) -> StageOrImage {
        StageOrImage::Image(s.to_string())
    }

    fn mount(spec: &str) -> Result<Mount, ErrorKind> {
        parse(spec, &no_expand, &image, 0)
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            csv_fields(r#"type=bind,"target=/a,b","x=""y""""#).unwrap(),
            vec!["type=bind", "target=/a,b", "x=\"y\""]
        );
        assert!(csv_fields(r#"a"b"#).is_err());
        assert!(csv_fields(r#""ab"c"#).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("512"), Some(512));
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(ram_in_bytes("1 kb"), Some(1024));
        assert_eq!(ram_in_bytes("12x"), None);
    }

    #[test]
    fn defaults_per_type() {
        assert_eq!(
            mount("target=/src").unwrap(),
            Mount::Bind(BindMount {
                from: None,
                source: String::new(),
                target: "/src".into(),
                read_write: false
            })
        );
        let Mount::Cache(c) = mount("type=cache,target=/root/.cache").unwrap() else {
            panic!("cache expected")
        };
        assert_eq!(
            (c.id.as_str(), c.mode, c.sharing, c.read_only),
            ("/root/.cache", 0o755, CacheSharing::Shared, false)
        );
        let Mount::Secret(s) = mount("type=secret,id=aws").unwrap() else {
            panic!("secret expected")
        };
        assert_eq!(s.target.as_deref(), Some("/run/secrets/aws"));
        assert_eq!(s.mode, 0o400);
        let Mount::Secret(s) = mount("type=secret,id=tok,env=TOKEN").unwrap() else {
            panic!("secret expected")
        };
        assert_eq!((s.target, s.env.as_deref()), (None, Some("TOKEN")));
        let Mount::Ssh(s) = parse("type=ssh,required", &no_expand, &image, 2).unwrap() else {
            panic!("ssh expected")
        };
        assert_eq!(s.id, "default");
        assert_eq!(s.target, "/run/buildkit/ssh_agent.2");
        assert!(s.required);
    }

    #[test]
    fn refusals() {
        let msg = |s: &str| mount(s).unwrap_err().to_string();
        assert_eq!(
            msg("type=cache,target=/c,sharing=sometimes"),
            "invalid --mount=type=cache,target=/c,sharing=sometimes: unrecognized sharing mode sometimes"
        );
        assert!(msg("type=bind,target=/a,size=1m").contains("unexpected key 'size'"));
        assert!(msg("type=bind,target=/a,uid=1").contains("uid not allowed"));
        assert!(msg("type=secret").contains("one of source, target required"));
        assert!(msg("type=tmpfs").contains("requires a target"));
        assert!(msg("type=cache,target=/a,mode=9").contains("invalid value for mode: 9"));
        assert!(msg("type=cache,targt=/a").contains("did you mean target?"));
        assert!(msg("type=volume").contains("unsupported mount type"));
        assert_eq!(
            check("type=bind,from=$STAGE,target=/x").unwrap_err(),
            ErrorKind::FromWithVariable { flag: "from" }
        );
        // Values using variables are only checked once expanded.
        assert!(check("type=cache,target=/a,uid=$UID").is_ok());
    }
}
