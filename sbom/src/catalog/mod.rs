//! The catalogers: which paths each one reads, and how.
//!
//! Matching is by path first — only files a cataloger claims are opened:
//!
//! | cataloger | files |
//! | --- | --- |
//! | `deb` | `/var/lib/dpkg/status`, `/var/lib/dpkg/status.d/*` (not `*.md5sums`), presence of `/var/lib/dpkg/info/*.list`, `/usr/share/doc/*/copyright` (and `/usr/share/doc/*` symlinks) |
//! | `apk` | `/lib/apk/db/installed`, `/usr/lib/apk/db/installed` |
//! | `python` | `**/*.dist-info/METADATA`, `**/*.egg-info/PKG-INFO`, `**/*.egg-info` files |
//! | `npm` | `**/node_modules/{name,@scope/name}/package.json`, `**/package-lock.json`, `**/node_modules/.package-lock.json` |
//! | `go`, `rust` | regular files with an execute bit that start with the ELF magic |
//! | always | `/etc/os-release`, `/usr/lib/os-release` |
//!
//! When only `deb` and `apk` are enabled, directory walks are pruned to the
//! directories those paths live in.

pub(crate) mod apk;
pub(crate) mod binary;
pub(crate) mod cargo_auditable;
pub(crate) mod dpkg;
pub(crate) mod elf;
pub(crate) mod go_buildinfo;
pub(crate) mod npm;
pub(crate) mod os_release;
pub(crate) mod python;
pub(crate) mod records;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use crate::error::CatalogError;
use crate::layer::Content;
use crate::package::{License, Package};

/// Text metadata files larger than this are read only up to it.
const TEXT_LIMIT: u64 = 256 << 20;

/// Directories that hold every file the path-anchored catalogers read.
const ANCHORS: [&str; 7] = [
    "/var/lib/dpkg/status.d",
    "/var/lib/dpkg/info",
    "/usr/share/doc",
    "/lib/apk/db",
    "/usr/lib/apk/db",
    "/etc",
    "/usr/lib",
];

/// Which catalogers run. `Default` enables all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Catalogers {
    /// Debian packages.
    pub deb: bool,
    /// Alpine packages.
    pub apk: bool,
    /// Python distributions.
    pub python: bool,
    /// npm packages.
    pub npm: bool,
    /// Go binaries.
    pub go: bool,
    /// Rust binaries built with cargo-auditable.
    pub rust: bool,
}

impl Default for Catalogers {
    fn default() -> Self {
        Self::ALL
    }
}

impl Catalogers {
    /// Every cataloger.
    pub const ALL: Self = Self {
        deb: true,
        apk: true,
        python: true,
        npm: true,
        go: true,
        rust: true,
    };
    /// No cataloger (only the operating system is identified); enable fields as needed.
    pub const NONE: Self = Self {
        deb: false,
        apk: false,
        python: false,
        npm: false,
        go: false,
        rust: false,
    };

    /// Whether some cataloger may match a file anywhere in the tree.
    fn needs_full_walk(self) -> bool {
        self.python || self.npm || self.go || self.rust
    }

    /// Whether executables must be recognised (their mode read).
    pub(crate) fn wants_executables(self) -> bool {
        self.go || self.rust
    }

    /// Whether anything under directory `dir` can matter.
    pub(crate) fn wants_dir(self, dir: &str) -> bool {
        if self.needs_full_walk() || dir == "/" {
            return true;
        }
        let with_slash = format!("{dir}/");
        ANCHORS
            .iter()
            .any(|anchor| *anchor == dir || anchor.starts_with(&with_slash))
            || parent(dir) == "/usr/share/doc"
    }

    /// What a regular file at `path` is to the catalogers, if anything.
    pub(crate) fn classify_file(self, path: &str, executable: bool) -> Option<Target> {
        if path == "/etc/os-release" || path == "/usr/lib/os-release" {
            return Some(Target::OsRelease);
        }
        if self.deb
            && let Some(target) = classify_deb(path)
        {
            return Some(target);
        }
        if self.apk && (path == "/lib/apk/db/installed" || path == "/usr/lib/apk/db/installed") {
            return Some(Target::ApkInstalled);
        }
        let name = file_name(path);
        if self.python {
            let directory = file_name(parent(path));
            if (name == "METADATA" && directory.ends_with(".dist-info"))
                || (name == "PKG-INFO" && directory.ends_with(".egg-info"))
                || name.ends_with(".egg-info")
            {
                return Some(Target::PythonMetadata);
            }
        }
        if self.npm {
            if name == "package.json" {
                let package_dir = parent(path);
                let above = parent(package_dir);
                if file_name(above) == "node_modules"
                    || (file_name(above).starts_with('@')
                        && file_name(parent(above)) == "node_modules")
                {
                    return Some(Target::NpmManifest);
                }
            }
            if name == "package-lock.json"
                || (name == ".package-lock.json" && file_name(parent(path)) == "node_modules")
            {
                return Some(Target::NpmLock);
            }
        }
        if executable && self.wants_executables() {
            return Some(Target::Executable);
        }
        None
    }

    /// What a symbolic link at `path` is to the catalogers, if anything.
    pub(crate) fn classify_symlink(self, path: &str) -> Option<Target> {
        (self.deb && parent(path) == "/usr/share/doc").then_some(Target::DebDocLink)
    }

    pub(crate) fn binaries(self) -> binary::Wanted {
        binary::Wanted {
            go: self.go,
            rust: self.rust,
        }
    }
}

fn classify_deb(path: &str) -> Option<Target> {
    if path == "/var/lib/dpkg/status" {
        return Some(Target::DpkgStatus);
    }
    if let Some(name) = path.strip_prefix("/var/lib/dpkg/status.d/") {
        let plain = !name.contains('/') && !name.starts_with('.') && !name.ends_with(".md5sums");
        return plain.then_some(Target::DpkgStatus);
    }
    if let Some(name) = path.strip_prefix("/var/lib/dpkg/info/") {
        return (!name.contains('/') && name.ends_with(".list")).then_some(Target::DpkgFileList);
    }
    let package = path
        .strip_prefix("/usr/share/doc/")?
        .strip_suffix("/copyright")?;
    (!package.contains('/')).then_some(Target::DebCopyright)
}

/// The last element of `path`.
pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The directory containing `path` (`/` for top-level entries).
pub(crate) fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((parent, _)) => parent,
    }
}

/// What a matched file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/var/lib/dpkg/status` or a `status.d` file.
    DpkgStatus,
    /// `/var/lib/dpkg/info/<pkg>[:arch].list`: only its presence matters.
    DpkgFileList,
    /// `/usr/share/doc/<pkg>/copyright`.
    DebCopyright,
    /// `/usr/share/doc/<pkg>` as a symlink to another package's doc directory.
    DebDocLink,
    /// `os-release`.
    OsRelease,
    /// apk's installed database.
    ApkInstalled,
    /// Python core metadata.
    PythonMetadata,
    /// An installed npm `package.json`.
    NpmManifest,
    /// An npm lock file.
    NpmLock,
    /// An executable that may be a Go or Rust binary.
    Executable,
}

/// What reading a matched file gave.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Packages declared by the file.
    Packages(Vec<Package>),
    /// Licences of a copyright file.
    Copyright(Vec<License>),
    /// A file whose presence is the fact (dpkg `.list`).
    Present,
}

/// Reads and parses the file at `path` (matched as `target`) from `content`.
pub(crate) fn read(
    target: Target,
    path: &str,
    content: Content<'_>,
    catalogers: Catalogers,
) -> Result<Parsed, CatalogError> {
    match target {
        Target::DpkgFileList => Ok(Parsed::Present),
        Target::Executable => {
            let packages = match content {
                Content::Disk(host_path) => {
                    let mut file = File::open(host_path)?;
                    binary::scan_file(&mut file, catalogers.binaries())?
                }
                Content::Stream(reader) => binary::scan_stream(reader, catalogers.binaries())?,
            };
            Ok(Parsed::Packages(packages))
        }
        Target::DebDocLink => Ok(Parsed::Present),
        _ => {
            let reader: Box<dyn BufRead + '_> = match content {
                Content::Disk(host_path) => Box::new(BufReader::with_capacity(
                    64 * 1024,
                    File::open(host_path)?.take(TEXT_LIMIT),
                )),
                Content::Stream(reader) => {
                    Box::new(BufReader::with_capacity(64 * 1024, reader.take(TEXT_LIMIT)))
                }
            };
            read_text(target, path, reader)
        }
    }
}

fn read_text(
    target: Target,
    path: &str,
    reader: Box<dyn BufRead + '_>,
) -> Result<Parsed, CatalogError> {
    let packages = match target {
        Target::DpkgStatus => dpkg::parse_status(reader)?,
        Target::DebCopyright => return Ok(Parsed::Copyright(dpkg::parse_copyright(reader)?)),
        Target::OsRelease => os_release::parse(reader)?.into_iter().collect(),
        Target::ApkInstalled => apk::parse_installed(reader)?,
        Target::PythonMetadata => vec![python::parse_metadata(reader)?],
        Target::NpmManifest => npm::parse_package_json(reader, parent(path))?
            .into_iter()
            .collect(),
        Target::NpmLock => {
            let lock_dir = parent(path);
            let project_dir = if file_name(lock_dir) == "node_modules" {
                parent(lock_dir)
            } else {
                lock_dir
            };
            npm::parse_lock_file(reader, project_dir)?
        }
        Target::DpkgFileList | Target::DebDocLink | Target::Executable => Vec::new(),
    };
    Ok(Parsed::Packages(packages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_path() {
        let all = Catalogers::ALL;
        let cases = [
            ("/var/lib/dpkg/status", Some(Target::DpkgStatus)),
            (
                "/var/lib/dpkg/status.d/base-files",
                Some(Target::DpkgStatus),
            ),
            ("/var/lib/dpkg/status.d/base-files.md5sums", None),
            (
                "/var/lib/dpkg/info/libc6:amd64.list",
                Some(Target::DpkgFileList),
            ),
            ("/var/lib/dpkg/info/libc6:amd64.md5sums", None),
            ("/usr/share/doc/curl/copyright", Some(Target::DebCopyright)),
            ("/usr/share/doc/curl/examples/copyright", None),
            ("/etc/os-release", Some(Target::OsRelease)),
            ("/lib/apk/db/installed", Some(Target::ApkInstalled)),
            (
                "/venv/lib/python3.11/site-packages/pip-23.2.1.dist-info/METADATA",
                Some(Target::PythonMetadata),
            ),
            (
                "/usr/lib/python3/dist-packages/foo.egg-info",
                Some(Target::PythonMetadata),
            ),
            ("/x/foo.egg-info/PKG-INFO", Some(Target::PythonMetadata)),
            ("/x/foo.dist-info/RECORD", None),
            (
                "/app/node_modules/a/package.json",
                Some(Target::NpmManifest),
            ),
            (
                "/app/node_modules/@s/a/package.json",
                Some(Target::NpmManifest),
            ),
            ("/app/node_modules/a/lib/package.json", None),
            ("/app/package.json", None),
            ("/app/package-lock.json", Some(Target::NpmLock)),
            (
                "/app/node_modules/.package-lock.json",
                Some(Target::NpmLock),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(all.classify_file(path, false), expected, "{path}");
        }
        assert_eq!(
            all.classify_file("/usr/bin/app", true),
            Some(Target::Executable)
        );
        assert_eq!(Catalogers::NONE.classify_file("/usr/bin/app", true), None);
        assert_eq!(
            Catalogers::NONE.classify_file("/var/lib/dpkg/status", false),
            None
        );
        assert_eq!(
            all.classify_symlink("/usr/share/doc/libfoo-dev"),
            Some(Target::DebDocLink)
        );
    }

    #[test]
    fn anchored_walks_are_pruned() {
        let deb_only = Catalogers {
            deb: true,
            ..Catalogers::NONE
        };
        for wanted in [
            "/",
            "/var",
            "/var/lib",
            "/var/lib/dpkg",
            "/usr/share/doc/curl",
            "/etc",
        ] {
            assert!(deb_only.wants_dir(wanted), "{wanted}");
        }
        for unwanted in [
            "/proc",
            "/usr/bin",
            "/usr/share/doc/curl/examples",
            "/var/cache",
            "/etc/apt",
        ] {
            assert!(!deb_only.wants_dir(unwanted), "{unwanted}");
        }
        assert!(Catalogers::ALL.wants_dir("/usr/bin"));
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(file_name("/a/b"), "b");
    }
}
