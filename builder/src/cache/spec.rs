//! `--cache-from` / `--cache-to` specs, written as buildx writes them.
//!
//! - `type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd][,ignore-error=true]`
//! - `type=local,dest=DIR[,mode=…][,compression=…][,ignore-error=…]` (export) and
//!   `type=local,src=DIR` (import): an OCI image layout directory.
//! - A bare `REF` (no `=`) means `type=registry,ref=REF`; a spec with `ref=` and no
//!   `type=` is a registry spec, as in buildx.
//!
//! buildx's `oci-mediatypes=true` and `image-manifest=true` are accepted because
//! they describe what kiln always writes (an OCI image manifest); `false` is refused.
//! Any other type or key is an error naming it: a typo must not silently turn the
//! cache off.

use std::path::PathBuf;

use super::Error;

/// Which steps an export covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps whose results are in the final image: the target stage and the
    /// stages it is built `FROM`.
    #[default]
    Min,
    /// Every step of every stage built, and the cache mounts the build uses.
    Max,
}

/// How cache-mount tarballs are compressed (step layers are exported as built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheCompression {
    #[default]
    Gzip,
    Zstd,
}

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// A registry reference (`host/repo:tag`).
    Registry(String),
    /// An OCI image layout directory.
    Local(PathBuf),
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(reference) => f.write_str(reference),
            CacheLocation::Local(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// A parsed `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub location: CacheLocation,
    pub mode: CacheMode,
    pub compression: CacheCompression,
    /// A failed export is a warning instead of a build failure.
    pub ignore_error: bool,
}

/// A parsed `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImport {
    pub location: CacheLocation,
}

/// The `key=value` fields of a spec, with `type` resolved.
struct Fields<'a> {
    spec: &'a str,
    kind: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

fn fields(spec: &str) -> Result<Fields<'_>, Error> {
    let spec_trimmed = spec.trim();
    if spec_trimmed.is_empty() {
        return Err(Error::MissingCacheKey {
            spec: spec.to_owned(),
            key: "ref",
        });
    }
    if !spec_trimmed.contains('=') {
        return Ok(Fields {
            spec,
            kind: "registry",
            pairs: vec![("ref", spec_trimmed)],
        });
    }
    let mut kind = None;
    let mut pairs = Vec::new();
    for field in spec_trimmed.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(Error::InvalidCacheValue {
                spec: spec.to_owned(),
                key: field.to_owned(),
                value: String::new(),
                expected: "key=value",
            });
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "type" {
            kind = Some(value);
        } else {
            pairs.push((key, value));
        }
    }
    let kind = match kind {
        Some(kind) => kind,
        None if pairs.iter().any(|(k, _)| *k == "ref") => "registry",
        None => {
            return Err(Error::MissingCacheKey {
                spec: spec.to_owned(),
                key: "type",
            });
        }
    };
    Ok(Fields { spec, kind, pairs })
}

fn boolean(spec: &str, key: &str, value: &str) -> Result<bool, Error> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::InvalidCacheValue {
            spec: spec.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            expected: "true or false",
        }),
    }
}

impl Fields<'_> {
    fn unknown_key(&self, key: &str) -> Error {
        Error::UnknownCacheKey {
            spec: self.spec.to_owned(),
            kind: self.kind.to_owned(),
            key: key.to_owned(),
        }
    }

    fn location(&self, value: Option<&str>, key: &'static str) -> Result<CacheLocation, Error> {
        let value = value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::MissingCacheKey {
                spec: self.spec.to_owned(),
                key,
            })?;
        Ok(match self.kind {
            "registry" => CacheLocation::Registry(value.to_owned()),
            _ => CacheLocation::Local(PathBuf::from(value)),
        })
    }

    fn check_kind(&self) -> Result<(), Error> {
        match self.kind {
            "registry" | "local" => Ok(()),
            other => Err(Error::UnknownCacheType {
                spec: self.spec.to_owned(),
                kind: other.to_owned(),
            }),
        }
    }

    /// buildx options that describe what kiln always does.
    fn always_true(&self, key: &str, value: &str) -> Result<bool, Error> {
        if !matches!(key, "oci-mediatypes" | "image-manifest") {
            return Ok(false);
        }
        if boolean(self.spec, key, value)? {
            Ok(true)
        } else {
            Err(Error::InvalidCacheValue {
                spec: self.spec.to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
                expected: "true (kiln always writes an OCI image manifest)",
            })
        }
    }
}

impl CacheExport {
    /// Parses a `--cache-to` spec; see the [module docs](self).
    pub fn parse(spec: &str) -> Result<CacheExport, Error> {
        let fields = fields(spec)?;
        fields.check_kind()?;
        let location_key = if fields.kind == "registry" {
            "ref"
        } else {
            "dest"
        };
        let mut location = None;
        let mut export = CacheExport {
            location: CacheLocation::Local(PathBuf::new()),
            mode: CacheMode::Min,
            compression: CacheCompression::Gzip,
            ignore_error: false,
        };
        for &(key, value) in &fields.pairs {
            match key {
                k if k == location_key => location = Some(value),
                "mode" => {
                    export.mode = match value {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => {
                            return Err(Error::InvalidCacheValue {
                                spec: spec.to_owned(),
                                key: key.to_owned(),
                                value: value.to_owned(),
                                expected: "min or max",
                            });
                        }
                    }
                }
                "compression" => {
                    export.compression = match value {
                        "gzip" => CacheCompression::Gzip,
                        "zstd" => CacheCompression::Zstd,
                        _ => {
                            return Err(Error::InvalidCacheValue {
                                spec: spec.to_owned(),
                                key: key.to_owned(),
                                value: value.to_owned(),
                                expected: "gzip or zstd",
                            });
                        }
                    }
                }
                "ignore-error" => export.ignore_error = boolean(spec, key, value)?,
                _ if fields.always_true(key, value)? => {}
                _ => return Err(fields.unknown_key(key)),
            }
        }
        export.location = fields.location(location, location_key)?;
        Ok(export)
    }
}

impl CacheImport {
    /// Parses a `--cache-from` spec; see the [module docs](self).
    pub fn parse(spec: &str) -> Result<CacheImport, Error> {
        let fields = fields(spec)?;
        fields.check_kind()?;
        let location_key = if fields.kind == "registry" {
            "ref"
        } else {
            "src"
        };
        let mut location = None;
        for &(key, value) in &fields.pairs {
            match key {
                k if k == location_key => location = Some(value),
                _ if fields.always_true(key, value)? => {}
                _ => return Err(fields.unknown_key(key)),
            }
        }
        Ok(CacheImport {
            location: fields.location(location, location_key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_exports_parse_with_their_options() {
        let e = CacheExport::parse(
            "type=registry,ref=localhost:5000/cache:main,mode=max,compression=zstd,ignore-error=true",
        )
        .unwrap();
        assert_eq!(
            e.location,
            CacheLocation::Registry("localhost:5000/cache:main".into())
        );
        assert_eq!(e.mode, CacheMode::Max);
        assert_eq!(e.compression, CacheCompression::Zstd);
        assert!(e.ignore_error);

        let e = CacheExport::parse("ref=ghcr.io/o/c:x,oci-mediatypes=true").unwrap();
        assert_eq!(e.location, CacheLocation::Registry("ghcr.io/o/c:x".into()));
        assert_eq!(e.mode, CacheMode::Min);
        assert!(!e.ignore_error);

        let e = CacheExport::parse("type=local,dest=/tmp/c").unwrap();
        assert_eq!(e.location, CacheLocation::Local("/tmp/c".into()));
    }

    #[test]
    fn imports_parse_bare_references_and_local_dirs() {
        assert_eq!(
            CacheImport::parse("ghcr.io/o/c:main").unwrap().location,
            CacheLocation::Registry("ghcr.io/o/c:main".into())
        );
        assert_eq!(
            CacheImport::parse("type=local,src=/c").unwrap().location,
            CacheLocation::Local("/c".into())
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = CacheExport::parse("type=gha,ref=x").unwrap_err();
        assert!(matches!(err, Error::UnknownCacheType { ref kind, .. } if kind == "gha"));
        let err = CacheExport::parse("type=registry,ref=x,mdoe=max").unwrap_err();
        assert!(matches!(err, Error::UnknownCacheKey { ref key, .. } if key == "mdoe"));
        assert!(err.to_string().contains("mdoe"));
        let err = CacheExport::parse("type=registry,mode=max").unwrap_err();
        assert!(matches!(err, Error::MissingCacheKey { key: "ref", .. }));
        let err = CacheExport::parse("type=registry,ref=x,mode=all").unwrap_err();
        assert!(matches!(err, Error::InvalidCacheValue { ref key, .. } if key == "mode"));
        let err = CacheExport::parse("type=local,src=/x").unwrap_err();
        assert!(matches!(err, Error::UnknownCacheKey { ref key, .. } if key == "src"));
        let err = CacheImport::parse("type=registry,ref=x,mode=max").unwrap_err();
        assert!(matches!(err, Error::UnknownCacheKey { ref key, .. } if key == "mode"));
        let err = CacheImport::parse("type=registry,ref=x,image-manifest=false").unwrap_err();
        assert!(matches!(err, Error::InvalidCacheValue { .. }));
        assert!(CacheImport::parse("").is_err());
        assert!(CacheImport::parse("mode=max").is_err());
    }
}
