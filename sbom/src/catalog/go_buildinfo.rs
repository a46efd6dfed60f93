//! Go modules compiled into a binary, from its build information block (the
//! `.go.buildinfo` section, found by the magic `\xff Go buildinf:` when the
//! section table is not available).
//!
//! Format (Go 1.18 and later, "inline strings"): a 32-byte header — the 14-byte
//! magic, the pointer size, a flags byte (bit 0 big-endian, bit 1 inline
//! strings) and padding — then two strings, each a uvarint length followed by
//! the bytes: the Go version (`go1.22.1`) and the module information, which is
//! wrapped in 16-byte sentinels and holds tab-separated lines: `path`, `mod`
//! (main module path, version, sum), `dep` (path, version, sum), `=>`
//! (replacement of the line before) and `build` (settings).
//!
//! Contract: [`decode`] returns [`Decoded::NeedMore`] while the data is too
//! short (so a stream can keep capturing), [`CatalogError::GoBuildInfo`] for the
//! pointer-based format of Go before 1.18 (not supported: it needs the binary's
//! virtual memory map) or inconsistent data. The main module is an
//! application depending on every `dep` and on the standard library (component
//! `stdlib` with the Go version); a dependency replaced by another module
//! takes the replacement's path and version, one replaced by a local directory
//! keeps its own and records the directory as `kiln:go:replaced-by`.

use crate::error::CatalogError;
use crate::package::{ComponentKind, Dependency, Ecosystem, Package};

/// The magic that opens the build information block.
pub(crate) const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const FLAG_INLINE_STRINGS: u8 = 0x2;
/// Build settings worth keeping as properties of the main module.
const KEPT_SETTINGS: [&str; 6] = [
    "GOOS",
    "GOARCH",
    "CGO_ENABLED",
    "vcs.revision",
    "vcs.time",
    "vcs.modified",
];

/// Result of decoding a possibly incomplete block.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// The data ends before the block does.
    NeedMore,
    /// The Go version and the module information text.
    Complete { go_version: String, modules: String },
}

/// Whether the 16-byte header start at `block` could open a build info block
/// (magic, plausible pointer size, inline-string flag).
pub(crate) fn plausible_header(block: &[u8]) -> bool {
    block.len() >= 16 && &block[..14] == MAGIC && matches!(block[14], 4 | 8)
}

/// Decodes the block at the start of `data`.
pub(crate) fn decode(data: &[u8]) -> Result<Decoded, CatalogError> {
    if data.len() < HEADER_LEN {
        return Ok(Decoded::NeedMore);
    }
    if &data[..14] != MAGIC {
        return Err(CatalogError::GoBuildInfo {
            reason: "missing magic",
        });
    }
    if data[15] & FLAG_INLINE_STRINGS == 0 {
        return Err(CatalogError::GoBuildInfo {
            reason: "pointer-based format (Go before 1.18) is not supported",
        });
    }
    let rest = &data[HEADER_LEN..];
    let Some((version, rest)) = read_string(rest)? else {
        return Ok(Decoded::NeedMore);
    };
    let Some((modules, _)) = read_string(rest)? else {
        return Ok(Decoded::NeedMore);
    };
    // Module info is wrapped in 16-byte sentinels around the text, which ends in '\n'.
    let modules = if modules.len() >= 33 && modules[modules.len() - 17] == b'\n' {
        &modules[16..modules.len() - 16]
    } else {
        modules
    };
    Ok(Decoded::Complete {
        go_version: String::from_utf8_lossy(version).into_owned(),
        modules: String::from_utf8_lossy(modules).into_owned(),
    })
}

/// A uvarint-prefixed string at the start of `data`, and what follows it;
/// `None` if `data` ends first.
#[allow(clippy::type_complexity)]
fn read_string(data: &[u8]) -> Result<Option<(&[u8], &[u8])>, CatalogError> {
    let mut length: u64 = 0;
    for (index, &byte) in data.iter().enumerate().take(10) {
        length |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let start = index + 1;
            let length = usize::try_from(length).map_err(|_| CatalogError::GoBuildInfo {
                reason: "string length overflows",
            })?;
            if length > 64 << 20 {
                return Err(CatalogError::GoBuildInfo {
                    reason: "string longer than 64 MiB",
                });
            }
            return Ok((data.len() - start >= length)
                .then(|| (&data[start..start + length], &data[start + length..])));
        }
    }
    if data.len() >= 10 {
        return Err(CatalogError::GoBuildInfo {
            reason: "malformed string length",
        });
    }
    Ok(None)
}

struct Module {
    path: String,
    version: String,
    replaced_by: Option<String>,
}

/// The packages of a complete build information block.
pub(crate) fn packages(go_version: &str, modules: &str) -> Vec<Package> {
    let mut program_path: Option<String> = None;
    let mut main: Option<Module> = None;
    let mut dependencies: Vec<Module> = Vec::new();
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut last_was_main = false;
    for line in modules.lines() {
        let mut fields = line.split('\t');
        let kind = fields.next().unwrap_or("");
        let path = fields.next().unwrap_or("").to_owned();
        let version = fields.next().unwrap_or("").to_owned();
        match kind {
            "path" => program_path = Some(path),
            "mod" => {
                main = Some(Module {
                    path,
                    version,
                    replaced_by: None,
                });
                last_was_main = true;
            }
            "dep" => {
                dependencies.push(Module {
                    path,
                    version,
                    replaced_by: None,
                });
                last_was_main = false;
            }
            "=>" => {
                let target = if last_was_main {
                    main.as_mut()
                } else {
                    dependencies.last_mut()
                };
                if let Some(module) = target {
                    // A directory replacement (`=> ./greet (devel)`) has no version of its own.
                    let local = path.starts_with('.') || path.starts_with('/');
                    if local || version.is_empty() || version == "(devel)" {
                        module.replaced_by = Some(path);
                    } else {
                        module.path = path;
                        module.version = version;
                    }
                }
            }
            "build" => {
                if let Some((key, value)) = path.split_once('=')
                    && KEPT_SETTINGS.contains(&key)
                {
                    settings.push((format!("kiln:go:build:{key}"), value.to_owned()));
                }
            }
            _ => {}
        }
    }
    let mut packages = Vec::with_capacity(dependencies.len() + 2);
    let stdlib = Package::new(
        Ecosystem::Golang,
        "stdlib",
        go_version,
        ComponentKind::Library,
    );
    let main = main.or_else(|| {
        program_path.map(|path| Module {
            path,
            version: String::new(),
            replaced_by: None,
        })
    });
    if let Some(main) = main {
        let mut program = Package::new(
            Ecosystem::Golang,
            &main.path,
            &main.version,
            ComponentKind::Application,
        );
        program
            .properties
            .push(("kiln:go:toolchain".to_owned(), go_version.to_owned()));
        program.properties.extend(settings);
        program.dependencies = dependencies
            .iter()
            .map(|module| Dependency::Exact {
                name: module.path.clone(),
                version: module.version.clone(),
            })
            .chain(std::iter::once(Dependency::Exact {
                name: stdlib.name.clone(),
                version: stdlib.version.clone(),
            }))
            .collect();
        packages.push(program);
    }
    for module in dependencies {
        let mut package = Package::new(
            Ecosystem::Golang,
            &module.path,
            &module.version,
            ComponentKind::Library,
        );
        if let Some(directory) = module.replaced_by {
            package
                .properties
                .push(("kiln:go:replaced-by".to_owned(), directory));
        }
        packages.push(package);
    }
    packages.push(stdlib);
    packages
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builds build-information blocks in the Go 1.18+ format.

    /// A complete `.go.buildinfo` block for `go_version` and module text `modules`.
    pub(crate) fn block(go_version: &str, modules: &str) -> Vec<u8> {
        let mut block = super::MAGIC.to_vec();
        block.push(8);
        block.push(super::FLAG_INLINE_STRINGS);
        block.resize(super::HEADER_LEN, 0);
        let mut wrapped = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
        wrapped.extend_from_slice(modules.as_bytes());
        wrapped.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
        for text in [go_version.as_bytes(), &wrapped[..]] {
            let mut length = text.len() as u64;
            loop {
                let byte = (length & 0x7f) as u8;
                length >>= 7;
                if length == 0 {
                    block.push(byte);
                    break;
                }
                block.push(byte | 0x80);
            }
            block.extend_from_slice(text);
        }
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULES: &str = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgithub.com/a/b\tv1.2.3\th1:abc=\ndep\tgolang.org/x/old\tv0.1.0\th1:x=\n=>\tgolang.org/x/new\tv0.2.0\th1:y=\ndep\texample.com/local\tv0.0.0\n=>\t./local\t(devel)\t\nbuild\tGOOS=linux\nbuild\t-ldflags=-s\n";

    #[test]
    fn decodes_a_block_and_lists_modules() {
        let block = testing::block("go1.22.1", MODULES);
        for cut in [0, 20, 33, block.len() - 1] {
            assert!(matches!(decode(&block[..cut]).unwrap(), Decoded::NeedMore));
        }
        let Decoded::Complete {
            go_version,
            modules,
        } = decode(&block).unwrap()
        else {
            panic!("complete block not decoded");
        };
        assert_eq!(go_version, "go1.22.1");
        assert_eq!(modules, MODULES);
        let packages = packages(&go_version, &modules);
        let ids: Vec<_> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.kind))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("example.com/app", "(devel)", ComponentKind::Application),
                ("github.com/a/b", "v1.2.3", ComponentKind::Library),
                ("golang.org/x/new", "v0.2.0", ComponentKind::Library),
                ("example.com/local", "v0.0.0", ComponentKind::Library),
                ("stdlib", "go1.22.1", ComponentKind::Library),
            ]
        );
        assert_eq!(packages[0].dependencies.len(), 4);
        assert!(
            packages[0]
                .properties
                .contains(&("kiln:go:build:GOOS".to_owned(), "linux".to_owned()))
        );
        assert_eq!(
            packages[3].properties,
            vec![("kiln:go:replaced-by".to_owned(), "./local".to_owned())]
        );
    }

    #[test]
    fn old_pointer_format_is_refused() {
        let mut block = testing::block("go1.17", "");
        block[15] = 0;
        assert!(matches!(
            decode(&block),
            Err(CatalogError::GoBuildInfo { .. })
        ));
    }
}
