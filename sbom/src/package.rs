//! What a cataloger finds: a [`Package`] with the facts its metadata states.
//!
//! A package knows nothing of the file it came from or the layer that added it;
//! the [`Inventory`](crate::Inventory) keeps those beside it. Dependencies are
//! recorded as the metadata states them (names, or exact name and version) and
//! resolved to present packages only when the inventory is read.

use serde::{Deserialize, Serialize};

use crate::purl::{Purl, pep503_normalise};

/// The packaging system a package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ecosystem {
    /// Debian packages (`dpkg`).
    Deb,
    /// Alpine packages (`apk`).
    Apk,
    /// Python distributions (`*.dist-info`, `*.egg-info`).
    Python,
    /// npm packages (`node_modules`, `package-lock.json`).
    Npm,
    /// Go modules compiled into a binary.
    Golang,
    /// Rust crates compiled into a binary built with cargo-auditable.
    Cargo,
    /// The distribution itself, from `os-release`.
    OperatingSystem,
}

impl Ecosystem {
    /// Canonical form of a package name for matching dependencies by name.
    pub(crate) fn match_name(self, name: &str) -> String {
        match self {
            Self::Python => pep503_normalise(name),
            Self::Deb | Self::Apk => name.to_ascii_lowercase(),
            _ => name.to_owned(),
        }
    }
}

/// The CycloneDX component type of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ComponentKind {
    /// A library or other reusable package.
    Library,
    /// A program (the main module of a Go binary, the root crate of a Rust binary).
    Application,
    /// A distribution, from `os-release`.
    OperatingSystem,
}

/// One licence statement of a package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum License {
    /// An SPDX licence identifier from the SPDX list, in its canonical spelling.
    Spdx(String),
    /// A licence that has no SPDX identifier (or could not be mapped to one).
    Named(String),
    /// An SPDX licence expression (`MIT OR Apache-2.0`).
    Expression(String),
}

/// A dependency as the metadata states it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dependency {
    /// Any one of these names (in preference order), matched against the names
    /// and provided names of present packages of the same ecosystem.
    AnyOf(Vec<String>),
    /// Exactly this name and version of the same ecosystem.
    Exact {
        /// Package name.
        name: String,
        /// Package version.
        version: String,
    },
}

/// The source package a binary package was built from (Debian `Source:`, Alpine origin).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourcePackage {
    /// Source package name.
    pub name: String,
    /// Its version when it differs from the binary package's (`Source: x (ver)`).
    pub version: Option<String>,
}

/// A package found by a cataloger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The packaging system.
    pub ecosystem: Ecosystem,
    /// Name as the metadata spells it.
    pub name: String,
    /// Version as the metadata spells it (may be empty when unknown).
    pub version: String,
    /// CycloneDX component type.
    pub kind: ComponentKind,
    /// Architecture (`amd64`, `all`, `x86_64`), where the ecosystem has one.
    pub arch: Option<String>,
    /// The source package, where the metadata names one.
    pub source_package: Option<SourcePackage>,
    /// Licences the metadata states (the dpkg cataloger adds the copyright file's
    /// when the inventory is read).
    pub licenses: Vec<License>,
    /// Dependencies as stated, resolved later against present packages.
    pub dependencies: Vec<Dependency>,
    /// Other names this package satisfies dependencies on (Debian `Provides:`,
    /// Alpine `p:` including `so:` names).
    pub provides: Vec<String>,
    /// Directory of an npm package (`/app/node_modules/a`), used to resolve its
    /// dependencies the way Node does (nearest `node_modules` first).
    pub location: Option<String>,
    /// One-line description, where the metadata has one.
    pub description: Option<String>,
    /// Further facts as CycloneDX properties (`kiln:go:toolchain`, …).
    pub properties: Vec<(String, String)>,
}

impl Package {
    /// A package with only the identifying fields set.
    pub fn new(ecosystem: Ecosystem, name: &str, version: &str, kind: ComponentKind) -> Self {
        Self {
            ecosystem,
            name: name.to_owned(),
            version: version.to_owned(),
            kind,
            arch: None,
            source_package: None,
            licenses: Vec::new(),
            dependencies: Vec::new(),
            provides: Vec::new(),
            location: None,
            description: None,
            properties: Vec::new(),
        }
    }

    /// The package URL; `distro` is the `(ID, VERSION_ID)` of the image's
    /// `os-release`, used by `deb` and `apk`. `None` for the operating system itself.
    pub fn purl(&self, distro: Option<(&str, Option<&str>)>) -> Option<Purl> {
        let distro_qualifier = distro.map(|(id, version)| match version {
            Some(version) => format!("{id}-{version}"),
            None => id.to_owned(),
        });
        let arch = self.arch.as_deref().unwrap_or("");
        let purl = match self.ecosystem {
            Ecosystem::Deb => {
                let id = distro.map_or("debian", |(id, _)| id);
                Purl::deb(id, &self.name, &self.version)
                    .with_qualifier("arch", arch)
                    .with_qualifier("distro", distro_qualifier.as_deref().unwrap_or(""))
            }
            Ecosystem::Apk => {
                let id = distro.map_or("alpine", |(id, _)| id);
                Purl::apk(id, &self.name, &self.version)
                    .with_qualifier("arch", arch)
                    .with_qualifier("distro", distro_qualifier.as_deref().unwrap_or(""))
            }
            Ecosystem::Python => Purl::pypi(&self.name, &self.version),
            Ecosystem::Npm => Purl::npm(&self.name, &self.version),
            Ecosystem::Golang => Purl::golang(&self.name, &self.version),
            Ecosystem::Cargo => Purl::cargo(&self.name, &self.version),
            Ecosystem::OperatingSystem => return None,
        };
        Some(purl)
    }
}
