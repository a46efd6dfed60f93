//! Views of a layer (or a whole tree) as a sequence of changes.
//!
//! A [`LayerView`] walks what a layer changed and hands each entry to a
//! [`LayerVisitor`] (the [`Inventory`](crate::Inventory)), which decides per
//! entry whether to read it. Paths are absolute inside the image (`/usr/bin/x`),
//! whatever the source spelled (`./usr/bin/x`, `usr/bin/x/`).
//!
//! Two views are provided:
//!
//! - [`TarLayer`]: a layer tar stream (uncompressed; wrap a decoder around a
//!   compressed blob). Entries are read in order, once; `.wh.NAME` entries become
//!   [`EntryKind::Whiteout`] of `NAME`, `.wh..wh..opq` an [`EntryKind::Opaque`]
//!   directory. An entry the visitor does not read is skipped by the tar reader
//!   without being buffered.
//! - [`DirTree`]: a directory on disk, either a merged root filesystem
//!   ([`DirTree::rootfs`]) or a layer diff such as an overlayfs upper directory
//!   ([`DirTree::layer_dir`]), where `.wh.` files, overlay whiteouts (character
//!   devices 0:0) and opaque directories (`.wh..wh..opq`, or the
//!   `trusted.overlay.opaque` / `user.overlay.opaque` xattr set to `y`) are
//!   understood. Symbolic links are never followed; subdirectories the visitor
//!   does not want and, by default, other filesystems are not entered.
//!
//! The engine may implement `LayerView` itself for other sources.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where a regular file's bytes come from.
pub enum Content<'a> {
    /// The bytes, readable once, in order (a tar entry).
    Stream(&'a mut dyn Read),
    /// A file on the host, opened by the reader if it wants it.
    Disk(&'a Path),
}

impl std::fmt::Debug for Content<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stream(_) => f.write_str("Stream(..)"),
            Self::Disk(path) => f.debug_tuple("Disk").field(path).finish(),
        }
    }
}

/// What a layer entry is.
#[derive(Debug)]
pub enum EntryKind<'a> {
    /// A regular file added or replaced by the layer.
    File {
        /// Any execute permission bit is set.
        executable: bool,
        /// Its bytes.
        content: Content<'a>,
    },
    /// A hard link to `target` (an absolute image path).
    Hardlink {
        /// The linked file.
        target: &'a str,
    },
    /// A symbolic link.
    Symlink {
        /// The link text, as stored.
        target: &'a str,
    },
    /// A directory (its contents in lower layers stay visible).
    Directory,
    /// A device, FIFO or socket.
    Other,
    /// The path (and everything under it) is deleted.
    Whiteout,
    /// The directory's contents from lower layers are hidden.
    Opaque,
}

/// One entry of a layer.
#[derive(Debug)]
pub struct LayerEntry<'a> {
    /// Absolute path inside the image.
    pub path: &'a str,
    /// What the entry is.
    pub kind: EntryKind<'a>,
}

/// Receives the entries of a layer.
pub trait LayerVisitor {
    /// Whether anything under directory `path` can matter (views may skip the
    /// subtree when not).
    fn wants_dir(&self, path: &str) -> bool;
    /// Whether [`EntryKind::File::executable`] must be accurate (costs a `stat`
    /// per file in a directory walk).
    fn wants_executables(&self) -> bool;
    /// Handles one entry.
    fn visit(&mut self, entry: LayerEntry<'_>) -> Result<(), Error>;
}

/// A layer's changes, walked once.
pub trait LayerView {
    /// Hands every entry to `visitor`, in the layer's order.
    fn walk(&mut self, visitor: &mut dyn LayerVisitor) -> Result<(), Error>;
}

/// `./usr/bin/` → `/usr/bin`; `` and `.` → `/`.
pub(crate) fn normalise_path(raw: &str) -> String {
    let mut path = String::with_capacity(raw.len() + 1);
    for element in raw.split('/') {
        if element.is_empty() || element == "." {
            continue;
        }
        path.push('/');
        path.push_str(element);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// Splits whiteout names: `/a/.wh.b` → (`/a/b`, false), `/a/.wh..wh..opq` → (`/a`, true).
fn whiteout_target(path: &str) -> Option<(String, bool)> {
    let (directory, name) = path.rsplit_once('/')?;
    let hidden = name.strip_prefix(".wh.")?;
    let directory = if directory.is_empty() { "/" } else { directory };
    if hidden == ".wh..opq" {
        return Some((directory.to_owned(), true));
    }
    let joined = if directory == "/" {
        format!("/{hidden}")
    } else {
        format!("{directory}/{hidden}")
    };
    Some((joined, false))
}

/// A layer as an uncompressed tar stream.
#[derive(Debug)]
pub struct TarLayer<R: Read> {
    reader: Option<R>,
}

impl<R: Read> TarLayer<R> {
    /// A view of the tar stream `reader` (consumed by the first walk).
    pub fn new(reader: R) -> Self {
        Self {
            reader: Some(reader),
        }
    }
}

impl<R: Read> LayerView for TarLayer<R> {
    fn walk(&mut self, visitor: &mut dyn LayerVisitor) -> Result<(), Error> {
        let Some(reader) = self.reader.take() else {
            return Ok(());
        };
        let mut archive = tar::Archive::new(reader);
        let mut last: Option<String> = None;
        let stream_error = |last: &Option<String>, source: io::Error| Error::TarStream {
            after: last.clone(),
            source,
        };
        let entries = archive.entries().map_err(|e| stream_error(&last, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| stream_error(&last, e))?;
            let path = normalise_path(&String::from_utf8_lossy(&entry.path_bytes()));
            let header = entry.header();
            let entry_type = header.entry_type();
            let mode = header.mode().unwrap_or(0);
            let link = entry
                .link_name_bytes()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            if let Some((target, opaque)) = whiteout_target(&path) {
                let kind = if opaque {
                    EntryKind::Opaque
                } else {
                    EntryKind::Whiteout
                };
                visitor.visit(LayerEntry {
                    path: &target,
                    kind,
                })?;
            } else if entry_type.is_file() {
                visitor.visit(LayerEntry {
                    path: &path,
                    kind: EntryKind::File {
                        executable: mode & 0o111 != 0,
                        content: Content::Stream(&mut entry),
                    },
                })?;
            } else if entry_type.is_hard_link() {
                let target = normalise_path(link.as_deref().unwrap_or(""));
                visitor.visit(LayerEntry {
                    path: &path,
                    kind: EntryKind::Hardlink { target: &target },
                })?;
            } else if entry_type.is_symlink() {
                visitor.visit(LayerEntry {
                    path: &path,
                    kind: EntryKind::Symlink {
                        target: link.as_deref().unwrap_or(""),
                    },
                })?;
            } else if entry_type.is_dir() {
                visitor.visit(LayerEntry {
                    path: &path,
                    kind: EntryKind::Directory,
                })?;
            } else if entry_type.is_pax_global_extensions()
                || entry_type.is_pax_local_extensions()
                || entry_type.is_gnu_longname()
                || entry_type.is_gnu_longlink()
            {
                // Metadata records; the tar reader applies them to the next entry.
            } else {
                visitor.visit(LayerEntry {
                    path: &path,
                    kind: EntryKind::Other,
                })?;
            }
            last = Some(path);
        }
        Ok(())
    }
}

/// A directory tree on disk: a root filesystem or a layer diff directory.
#[derive(Debug, Clone)]
pub struct DirTree {
    root: PathBuf,
    layer_dir: bool,
    only_under: Vec<String>,
    one_file_system: bool,
}

impl DirTree {
    /// A merged root filesystem (or any directory cataloged as one): every
    /// entry is content, nothing is a whiteout.
    pub fn rootfs(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            layer_dir: false,
            only_under: Vec::new(),
            one_file_system: true,
        }
    }

    /// A layer diff directory (e.g. an overlayfs upper directory): whiteouts and
    /// opaque markers are understood.
    pub fn layer_dir(root: impl Into<PathBuf>) -> Self {
        Self {
            layer_dir: true,
            ..Self::rootfs(root)
        }
    }

    /// Restricts the walk to these image paths (e.g. `/usr`, `/var/lib/dpkg`)
    /// and the directories leading to them.
    pub fn only_under<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.only_under = paths
            .into_iter()
            .map(|path| normalise_path(path.as_ref()))
            .collect();
        self
    }

    /// Whether to enter directories on other filesystems than the root's
    /// (default: no, so `/proc` and `/sys` of a live system are skipped).
    pub fn cross_file_systems(mut self, cross: bool) -> Self {
        self.one_file_system = !cross;
        self
    }

    /// Whether `path` is inside the scope (`Some(true)`), leads to it
    /// (`Some(false)`), or is outside (`None`).
    fn scope(&self, path: &str) -> Option<bool> {
        if self.only_under.is_empty() {
            return Some(true);
        }
        let mut leads = false;
        for prefix in &self.only_under {
            if prefix == "/"
                || path == prefix
                || (path.starts_with(prefix.as_str()) && path.as_bytes()[prefix.len()] == b'/')
            {
                return Some(true);
            }
            if path == "/" || (prefix.starts_with(path) && prefix.as_bytes()[path.len()] == b'/') {
                leads = true;
            }
        }
        leads.then_some(false)
    }

    fn is_opaque_dir(host: &Path) -> bool {
        ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|name| {
                let mut value = [0u8; 4];
                matches!(
                    rustix::fs::lgetxattr(host, *name, &mut value),
                    Ok(1) if value[0] == b'y'
                )
            })
    }
}

impl LayerView for DirTree {
    fn walk(&mut self, visitor: &mut dyn LayerVisitor) -> Result<(), Error> {
        let root_metadata = fs::symlink_metadata(&self.root).map_err(|source| Error::Metadata {
            path: self.root.clone(),
            source,
        })?;
        let root_device = root_metadata.dev();
        let mut pending: Vec<(PathBuf, String)> = vec![(self.root.clone(), "/".to_owned())];
        while let Some((host_dir, image_dir)) = pending.pop() {
            if self.layer_dir && image_dir != "/" && Self::is_opaque_dir(&host_dir) {
                visitor.visit(LayerEntry {
                    path: &image_dir,
                    kind: EntryKind::Opaque,
                })?;
            }
            let listing = fs::read_dir(&host_dir).map_err(|source| Error::ReadDir {
                path: host_dir.clone(),
                source,
            })?;
            for dir_entry in listing {
                let dir_entry = dir_entry.map_err(|source| Error::ReadDir {
                    path: host_dir.clone(),
                    source,
                })?;
                let name = dir_entry.file_name();
                let name = name.to_string_lossy();
                let image_path = if image_dir == "/" {
                    format!("/{name}")
                } else {
                    format!("{image_dir}/{name}")
                };
                let Some(inside) = self.scope(&image_path) else {
                    continue;
                };
                let host_path = dir_entry.path();
                let metadata_error = |source| Error::Metadata {
                    path: host_path.clone(),
                    source,
                };
                let file_type = dir_entry.file_type().map_err(metadata_error)?;
                if file_type.is_dir() {
                    if !visitor.wants_dir(&image_path) {
                        continue;
                    }
                    if inside {
                        visitor.visit(LayerEntry {
                            path: &image_path,
                            kind: EntryKind::Directory,
                        })?;
                    }
                    if self.one_file_system {
                        let metadata = dir_entry.metadata().map_err(metadata_error)?;
                        if metadata.dev() != root_device {
                            continue;
                        }
                    }
                    pending.push((host_path, image_path));
                    continue;
                }
                if !inside {
                    continue;
                }
                if self.layer_dir
                    && let Some((target, opaque)) = whiteout_target(&image_path)
                {
                    let kind = if opaque {
                        EntryKind::Opaque
                    } else {
                        EntryKind::Whiteout
                    };
                    visitor.visit(LayerEntry {
                        path: &target,
                        kind,
                    })?;
                    continue;
                }
                if file_type.is_file() {
                    let executable = visitor.wants_executables()
                        && dir_entry
                            .metadata()
                            .map_err(metadata_error)?
                            .permissions()
                            .mode()
                            & 0o111
                            != 0;
                    visitor.visit(LayerEntry {
                        path: &image_path,
                        kind: EntryKind::File {
                            executable,
                            content: Content::Disk(&host_path),
                        },
                    })?;
                } else if file_type.is_symlink() {
                    let target = fs::read_link(&host_path).map_err(metadata_error)?;
                    visitor.visit(LayerEntry {
                        path: &image_path,
                        kind: EntryKind::Symlink {
                            target: &target.to_string_lossy(),
                        },
                    })?;
                } else if self.layer_dir
                    && file_type.is_char_device()
                    && dir_entry.metadata().map_err(metadata_error)?.rdev() == 0
                {
                    visitor.visit(LayerEntry {
                        path: &image_path,
                        kind: EntryKind::Whiteout,
                    })?;
                } else {
                    visitor.visit(LayerEntry {
                        path: &image_path,
                        kind: EntryKind::Other,
                    })?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalise_path("./usr/bin/"), "/usr/bin");
        assert_eq!(normalise_path("usr//lib/./x"), "/usr/lib/x");
        assert_eq!(normalise_path("./"), "/");
        assert_eq!(normalise_path(""), "/");
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(
            whiteout_target("/a/.wh.b"),
            Some(("/a/b".to_owned(), false))
        );
        assert_eq!(whiteout_target("/.wh.b"), Some(("/b".to_owned(), false)));
        assert_eq!(
            whiteout_target("/a/.wh..wh..opq"),
            Some(("/a".to_owned(), true))
        );
        assert_eq!(whiteout_target("/a/b"), None);
    }

    #[test]
    fn scope_of_only_under() {
        let tree = DirTree::rootfs("/").only_under(["/usr", "/var/lib/dpkg"]);
        assert_eq!(tree.scope("/usr"), Some(true));
        assert_eq!(tree.scope("/usr/bin/x"), Some(true));
        assert_eq!(tree.scope("/var"), Some(false));
        assert_eq!(tree.scope("/var/lib"), Some(false));
        assert_eq!(tree.scope("/var/lib/dpkg/status"), Some(true));
        assert_eq!(tree.scope("/usrx"), None);
        assert_eq!(tree.scope("/etc"), None);
    }
}
