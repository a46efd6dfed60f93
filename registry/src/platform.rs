//! Platforms (`os/arch[/variant]`) and choosing one manifest from an index.
//!
//! Normalisation follows containerd (which Docker uses): `x86_64` ≡ `amd64`,
//! `aarch64` ≡ `arm64`, `arm64/v8` ≡ `arm64`, `amd64/v1` ≡ `amd64`, `arm` without a
//! variant is `arm/v7`, `armhf` is `arm/v7`, `armel` is `arm/v6`, `i386` is `386`.
//!
//! [`select_manifest`] picks an exact (normalised) match first; failing that, an
//! older variant the wanted platform can run (`arm/v7` runs `arm/v6` and `arm/v5`,
//! `amd64/v3` runs `amd64/v2` and `amd64`). Entries without a platform, or with
//! `unknown/unknown` (BuildKit attestations), never match.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex};

/// A target platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture in GOARCH terms (`amd64`, `arm64`, `arm`).
    pub architecture: String,
    /// CPU variant (`v7`), `None` for the architecture's baseline.
    pub variant: Option<String>,
}

/// A platform string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: expected os/arch[/variant], e.g. linux/arm64 or linux/arm/v7")]
pub struct PlatformError {
    /// The rejected input.
    pub input: String,
}

const KNOWN_OSES: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
];

impl Platform {
    /// A platform from its parts (normalised).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
        .normalized()
    }

    /// The platform of the running machine (always `linux`, as images run on Linux).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            "mips64" => ("mips64", None),
            other => (other, None),
        };
        Platform::new("linux", architecture, variant)
    }

    /// This platform in containerd's normal form.
    pub fn normalized(&self) -> Platform {
        let mut os = self.os.to_lowercase();
        if os == "macos" {
            os = "darwin".to_owned();
        }
        let variant = self
            .variant
            .as_deref()
            .map(str::to_lowercase)
            .filter(|v| !v.is_empty());
        let (architecture, variant) = match (self.architecture.to_lowercase().as_str(), variant) {
            ("i386", variant) => ("386".to_owned(), variant),
            ("x86_64" | "x86-64" | "amd64", variant) => (
                "amd64".to_owned(),
                variant.filter(|v| v != "v1" && v != "1"),
            ),
            ("aarch64" | "arm64", variant) => (
                "arm64".to_owned(),
                variant.filter(|v| v != "v8" && v != "8"),
            ),
            ("armhf", _) => ("arm".to_owned(), Some("v7".to_owned())),
            ("armel", _) => ("arm".to_owned(), Some("v6".to_owned())),
            ("arm", None) => ("arm".to_owned(), Some("v7".to_owned())),
            ("arm", Some(v)) if v.bytes().all(|b| b.is_ascii_digit()) => {
                ("arm".to_owned(), Some(format!("v{v}")))
            }
            (architecture, variant) => (architecture.to_owned(), variant),
        };
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// The platform of an index entry, normalised.
    pub fn from_oci(platform: &oci_spec::image::Platform) -> Platform {
        Platform {
            os: platform.os().to_string(),
            architecture: platform.architecture().to_string(),
            variant: platform.variant().clone(),
        }
        .normalized()
    }

    /// Platforms this one can run, best first (itself, then older variants).
    fn compatible(&self) -> Vec<Platform> {
        let wanted = self.normalized();
        let mut list = vec![wanted.clone()];
        let older_variants: &[&str] =
            match (wanted.architecture.as_str(), wanted.variant.as_deref()) {
                ("arm", Some("v8")) => &["v7", "v6", "v5"],
                ("arm", Some("v7")) => &["v6", "v5"],
                ("arm", Some("v6")) => &["v5"],
                ("amd64", Some("v4")) => &["v3", "v2", ""],
                ("amd64", Some("v3")) => &["v2", ""],
                ("amd64", Some("v2")) => &[""],
                _ => &[],
            };
        for variant in older_variants {
            list.push(Platform {
                os: wanted.os.clone(),
                architecture: wanted.architecture.clone(),
                variant: (!variant.is_empty()).then(|| (*variant).to_owned()),
            });
        }
        list
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    /// `os/arch[/variant]`; a single word is an OS (with the host's architecture) when
    /// it names one, otherwise an architecture on Linux.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || PlatformError {
            input: input.to_owned(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        if parts.iter().any(|part| part.is_empty()) {
            return Err(error());
        }
        let platform = match parts.as_slice() {
            [single] if KNOWN_OSES.contains(&single.to_lowercase().as_str()) => {
                let host = Platform::host();
                Platform::new(single, &host.architecture, host.variant.as_deref())
            }
            [architecture] => Platform::new("linux", architecture, None),
            [os, architecture] => Platform::new(os, architecture, None),
            [os, architecture, variant] => Platform::new(os, architecture, Some(variant)),
            _ => return Err(error()),
        };
        Ok(platform)
    }
}

/// The index entry to use for `wanted`, or `None` when no entry can run there.
pub fn select_manifest<'a>(index: &'a ImageIndex, wanted: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<(&Descriptor, Platform)> = index
        .manifests()
        .iter()
        .filter_map(|descriptor| {
            let platform = descriptor.platform().as_ref()?;
            Some((descriptor, Platform::from_oci(platform)))
        })
        .collect();
    wanted.compatible().iter().find_map(|acceptable| {
        candidates
            .iter()
            .find(|(_, platform)| platform == acceptable)
            .map(|(descriptor, _)| *descriptor)
    })
}

/// The platforms an index offers, for error messages (`linux/amd64, linux/arm64`).
pub fn available_platforms(index: &ImageIndex) -> Vec<String> {
    index
        .manifests()
        .iter()
        .filter_map(|descriptor| descriptor.platform().as_ref())
        .map(|platform| Platform::from_oci(platform).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[&str]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let parts: Vec<&str> = p.split('/').collect();
                let mut platform = serde_json::json!({"os": parts[0], "architecture": parts[1]});
                if let Some(variant) = parts.get(2) {
                    platform["variant"] = serde_json::json!(variant);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{:064x}", i),
                    "size": 1,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    fn pick(platforms: &[&str], wanted: &str) -> Option<usize> {
        let index = index(platforms);
        let chosen = select_manifest(&index, &wanted.parse().unwrap())?;
        index.manifests().iter().position(|d| d == chosen)
    }

    #[test]
    fn variants_normalise_as_containerd_does() {
        assert_eq!(
            "linux/arm64/v8".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            "linux/arm".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            "linux/aarch64".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            "linux/x86_64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            "arm64".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            "linux/armhf".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!("linux//amd64".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn selection_prefers_exact_then_compatible_variants() {
        let platforms = [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v6",
            "linux/arm/v7",
        ];
        assert_eq!(pick(&platforms, "linux/arm64"), Some(1));
        assert_eq!(pick(&platforms, "linux/arm64/v8"), Some(1));
        assert_eq!(pick(&platforms, "linux/arm"), Some(3));
        assert_eq!(pick(&platforms, "linux/arm/v6"), Some(2));
        assert_eq!(pick(&["linux/arm/v6"], "linux/arm/v7"), Some(0));
        assert_eq!(pick(&["linux/arm/v7"], "linux/arm/v6"), None);
        assert_eq!(pick(&platforms, "linux/s390x"), None);
        assert_eq!(
            pick(&["unknown/unknown", "linux/amd64"], "linux/amd64"),
            Some(1)
        );
        assert_eq!(pick(&["linux/amd64"], "linux/amd64/v3"), Some(0));
    }

    #[test]
    fn available_platforms_are_listed() {
        assert_eq!(
            available_platforms(&index(&["linux/amd64", "linux/arm/v7"])),
            vec!["linux/amd64", "linux/arm/v7"]
        );
    }
}
