//! Platforms (`os/arch[/variant]`) as Docker names them.

use std::fmt;
use std::str::FromStr;

/// A target or build platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// A platform string kiln cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid platform {input:?}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
)]
pub struct ParsePlatformError {
    pub input: String,
}

impl Platform {
    /// The platform kiln itself runs on.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        let variant = match architecture {
            "arm" => Some("v7".to_owned()),
            _ => None,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant,
        }
    }

    /// Docker's normalisation: `arm64/v8` is `arm64`, `arm` without a variant is `arm/v7`,
    /// `x86_64`/`x86-64` is `amd64`, `aarch64` is `arm64`.
    pub fn normalized(mut self) -> Platform {
        self.os = self.os.to_ascii_lowercase();
        self.architecture = match self.architecture.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => "amd64".into(),
            "aarch64" => "arm64".into(),
            "armhf" => "arm".into(),
            "i386" => "386".into(),
            other => other.into(),
        };
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", Some("v8")) => self.variant = None,
            ("arm", None) => self.variant = Some("v7".into()),
            _ => {}
        }
        self
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
    type Err = ParsePlatformError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParsePlatformError {
            input: input.to_owned(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err());
        }
        let platform = match parts.as_slice() {
            [os, arch] => Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: None,
            },
            [os, arch, variant] => Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: Some((*variant).into()),
            },
            _ => return Err(err()),
        };
        Ok(platform.normalized())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        let p: Platform = "linux/arm".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        let p: Platform = "linux/x86_64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//".parse::<Platform>().is_err());
    }
}
