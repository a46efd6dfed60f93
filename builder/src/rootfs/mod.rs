//! A read-only merged view of a root file system stored as a stack of layer
//! directories in overlay format, without mounting anything.
//!
//! # Contract
//!
//! - Layers are given top-most first. A plain directory is a one-layer stack.
//! - A path is looked up layer by layer from the top: a character device 0/0
//!   (an overlay whiteout) hides the name in every lower layer; a directory is
//!   merged with the directories of the same name below it until one carries
//!   `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`, rootless overlay),
//!   or a lower layer has a whiteout or a non-directory there.
//! - Paths are absolute inside the rootfs. Symlinks are resolved *within the
//!   root*, as a chroot would: absolute targets restart at the rootfs root and
//!   `..` never climbs above it. [`RootfsView::lookup`] does not follow a final
//!   symlink; [`RootfsView::lookup_follow`] and [`RootfsView::open`] do.
//!
//! # Errors
//!
//! [`Error::Io`] names the host path that failed; [`Error::NotFound`],
//! [`Error::NotADirectory`] and [`Error::SymlinkLoop`] name the rootfs path.

pub mod xattr;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::context::{FileKind, FileMeta};

/// Linux's limit on symlinks followed while resolving one path.
const MAX_SYMLINKS: usize = 40;

/// Errors from reading a rootfs view.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no such file or directory in the rootfs")]
    NotFound { path: PathBuf },
    #[error("{path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: PathBuf },
}

/// A merged, read-only view of layer directories (top-most first).
#[derive(Debug, Clone, Default)]
pub struct RootfsView {
    layers: Vec<PathBuf>,
}

/// One object visible in the view.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The path inside the rootfs, with symlinks in its parents resolved.
    pub path: PathBuf,
    /// Where the visible (top-most) copy lives on the host.
    pub real_path: PathBuf,
    /// Index of the layer providing it (0 = top-most).
    pub layer: usize,
    pub meta: FileMeta,
    /// For directories: the host directories merged into it, top-most first.
    merged: Vec<(usize, PathBuf)>,
}

/// One name in a merged directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: OsString,
    pub entry: Entry,
}

enum Walk {
    Found(Entry),
    /// `parent` exists; `rest` (first the missing name) does not.
    Missing {
        parent: PathBuf,
        rest: Vec<OsString>,
    },
    NotDir {
        path: PathBuf,
    },
}

impl RootfsView {
    /// A view over `layers`, top-most first.
    pub fn new(layers: Vec<PathBuf>) -> RootfsView {
        RootfsView { layers }
    }

    /// A view with nothing in it (used for `COPY --link`).
    pub fn empty() -> RootfsView {
        RootfsView { layers: Vec::new() }
    }

    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// This view with `upper` stacked on top.
    pub fn with_upper(&self, upper: PathBuf) -> RootfsView {
        let mut layers = Vec::with_capacity(self.layers.len() + 1);
        layers.push(upper);
        layers.extend(self.layers.iter().cloned());
        RootfsView { layers }
    }

    /// The entry at `path`, not following a final symlink. `None` when the path
    /// (or one of its parents) does not exist or a parent is not a directory.
    pub fn lookup(&self, path: impl AsRef<Path>) -> Result<Option<Entry>, Error> {
        Ok(match self.walk(path.as_ref(), false)? {
            Walk::Found(e) => Some(e),
            _ => None,
        })
    }

    /// Like [`lookup`](Self::lookup) but following a final symlink.
    pub fn lookup_follow(&self, path: impl AsRef<Path>) -> Result<Option<Entry>, Error> {
        Ok(match self.walk(path.as_ref(), true)? {
            Walk::Found(e) => Some(e),
            _ => None,
        })
    }

    /// The path with every symlink resolved within the root; the components
    /// from the first missing one on are appended unchanged.
    pub fn resolve(&self, path: impl AsRef<Path>) -> Result<PathBuf, Error> {
        match self.walk(path.as_ref(), true)? {
            Walk::Found(e) => Ok(e.path),
            Walk::Missing { parent, rest } => {
                let mut out = parent;
                for part in rest {
                    if part == ".." {
                        if out.parent().is_some() {
                            out.pop();
                        }
                    } else {
                        out.push(part);
                    }
                }
                Ok(out)
            }
            Walk::NotDir { path } => Err(Error::NotADirectory { path }),
        }
    }

    /// The merged listing of a directory (following symlinks), sorted by name.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> Result<Vec<DirEntry>, Error> {
        let path = path.as_ref();
        let dir = self.lookup_follow(path)?.ok_or_else(|| Error::NotFound {
            path: path.to_owned(),
        })?;
        if !dir.meta.is_dir() {
            return Err(Error::NotADirectory { path: dir.path });
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for k in 0..dir.merged.len() {
            let host = &dir.merged[k].1;
            let listing = fs::read_dir(host).map_err(|source| Error::Io {
                path: host.clone(),
                source,
            })?;
            for dirent in listing {
                let dirent = dirent.map_err(|source| Error::Io {
                    path: host.clone(),
                    source,
                })?;
                let name = dirent.file_name();
                if !seen.insert(name.clone()) {
                    continue;
                }
                if let Some(entry) = self.child_in(&dir.merged[k..], &dir.path, &name)? {
                    out.push(DirEntry { name, entry });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens a regular file (following symlinks) for reading.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<File, Error> {
        let path = path.as_ref();
        let entry = self.lookup_follow(path)?.ok_or_else(|| Error::NotFound {
            path: path.to_owned(),
        })?;
        File::open(&entry.real_path).map_err(|source| Error::Io {
            path: entry.real_path.clone(),
            source,
        })
    }

    /// Reads a whole (small) file, following symlinks.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>, Error> {
        let path = path.as_ref();
        let entry = self.lookup_follow(path)?.ok_or_else(|| Error::NotFound {
            path: path.to_owned(),
        })?;
        fs::read(&entry.real_path).map_err(|source| Error::Io {
            path: entry.real_path.clone(),
            source,
        })
    }

    /// The target of the symlink at `path`.
    pub fn read_link(&self, path: impl AsRef<Path>) -> Result<PathBuf, Error> {
        let path = path.as_ref();
        let entry = self.lookup(path)?.ok_or_else(|| Error::NotFound {
            path: path.to_owned(),
        })?;
        entry.meta.link_target.ok_or_else(|| Error::Io {
            path: entry.real_path,
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })
    }

    fn root(&self) -> Result<Option<Entry>, Error> {
        let Some(top) = self.layers.first() else {
            return Ok(None);
        };
        let meta = FileMeta::read(top).map_err(|source| Error::Io {
            path: top.clone(),
            source,
        })?;
        Ok(Some(Entry {
            path: PathBuf::from("/"),
            real_path: top.clone(),
            layer: 0,
            meta,
            merged: self.layers.iter().cloned().enumerate().collect(),
        }))
    }

    fn walk(&self, path: &Path, follow_final: bool) -> Result<Walk, Error> {
        let mut todo: Vec<OsString> = Vec::new();
        push_components(&mut todo, path);
        let Some(root) = self.root()? else {
            todo.reverse();
            return Ok(Walk::Missing {
                parent: PathBuf::from("/"),
                rest: todo,
            });
        };
        let mut stack = vec![root];
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let parent = stack.last().expect("root stays on the stack");
            if !parent.meta.is_dir() {
                return Ok(Walk::NotDir {
                    path: parent.path.clone(),
                });
            }
            let Some(child) = self.child_in(&parent.merged, &parent.path, &name)? else {
                todo.push(name);
                todo.reverse();
                return Ok(Walk::Missing {
                    parent: parent.path.clone(),
                    rest: todo,
                });
            };
            let last = todo.is_empty();
            if child.meta.kind == FileKind::Symlink && (!last || follow_final) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::SymlinkLoop {
                        path: path.to_owned(),
                    });
                }
                let target = child.meta.link_target.clone().unwrap_or_default();
                if target.has_root() {
                    stack.truncate(1);
                }
                push_components(&mut todo, &target);
                continue;
            }
            stack.push(child);
        }
        Ok(Walk::Found(stack.pop().expect("root stays on the stack")))
    }

    /// Looks `name` up in a merged directory (`dirs` top-most first).
    fn child_in(
        &self,
        dirs: &[(usize, PathBuf)],
        logical_parent: &Path,
        name: &OsStr,
    ) -> Result<Option<Entry>, Error> {
        for (k, (layer, dir)) in dirs.iter().enumerate() {
            let host = dir.join(name);
            let md = match fs::symlink_metadata(&host) {
                Ok(md) => md,
                Err(e) if is_absent(&e) => continue,
                Err(source) => return Err(Error::Io { path: host, source }),
            };
            if is_whiteout(&md) {
                return Ok(None);
            }
            let link_target = if md.file_type().is_symlink() {
                Some(fs::read_link(&host).map_err(|source| Error::Io {
                    path: host.clone(),
                    source,
                })?)
            } else {
                None
            };
            let mut merged = Vec::new();
            if md.is_dir() {
                merged.push((*layer, host.clone()));
                if !is_opaque(&host)? {
                    for (lower_layer, lower_dir) in &dirs[k + 1..] {
                        let lower = lower_dir.join(name);
                        match fs::symlink_metadata(&lower) {
                            Ok(lmd) if lmd.is_dir() => {
                                let opaque = is_opaque(&lower)?;
                                merged.push((*lower_layer, lower));
                                if opaque {
                                    break;
                                }
                            }
                            Ok(_) => break,
                            Err(e) if is_absent(&e) => continue,
                            Err(source) => {
                                return Err(Error::Io {
                                    path: lower,
                                    source,
                                });
                            }
                        }
                    }
                }
            }
            return Ok(Some(Entry {
                path: logical_parent.join(name),
                real_path: host,
                layer: *layer,
                meta: FileMeta::from_std(&md, link_target),
                merged,
            }));
        }
        Ok(None)
    }
}

/// Pushes the components of `path` so that popping yields them in order.
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// An overlay whiteout: a character device with device number 0/0.
pub fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Whether a directory is marked opaque for overlay.
pub fn is_opaque(dir: &Path) -> Result<bool, Error> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        match xattr::get(dir, OsStr::new(name)) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(source) => {
                return Err(Error::Io {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_within_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::write(root.join("usr/lib/f"), "f").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("/../../usr/lib/f", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let view = RootfsView::new(vec![root.to_owned()]);
        let f = view.lookup("/lib/f").unwrap().unwrap();
        assert_eq!(f.path, Path::new("/usr/lib/f"));
        assert_eq!(view.read("/abs").unwrap(), b"f");
        assert_eq!(
            view.lookup("/abs").unwrap().unwrap().meta.kind,
            FileKind::Symlink
        );
        assert_eq!(
            view.resolve("/lib/new/x").unwrap(),
            Path::new("/usr/lib/new/x")
        );
        assert!(matches!(
            view.lookup_follow("/loop"),
            Err(Error::SymlinkLoop { .. })
        ));
        assert!(view.lookup("/usr/lib/f/x").unwrap().is_none());
        assert_eq!(
            view.lookup("/../../usr").unwrap().unwrap().path,
            Path::new("/usr")
        );
    }
}
