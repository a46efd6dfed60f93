//! The layer writer: a directory (overlay upper dir or plain tree) in, a deterministic
//! tar out.
//!
//! Contract of [`write_tar`] / [`write_layer`]:
//! - entries in depth-first order, each directory's children sorted by their tar name's
//!   bytes (a whiteout sorts as `.wh.<name>`); the opaque marker `<dir>/.wh..wh..opq` is
//!   written right after its directory entry, before the children, as Docker does; the
//!   root itself is not an entry;
//! - numeric uid/gid, no user or group names; mode keeps setuid/setgid/sticky;
//! - mtimes in whole seconds, clamped to the [`SourceDateEpoch`] when one is given;
//! - xattrs as `SCHILY.xattr.*` PAX records, except overlay's own (`trusted.overlay.*`,
//!   `user.overlay.*`);
//! - a second path to an inode already written becomes a hardlink entry;
//! - overlay conversions (always on: a plain tree has neither): a 0/0 character device
//!   becomes an empty regular file `.wh.<name>` (mode 0644, owner 0:0, its own mtime
//!   clamped), a directory with `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`)
//!   gets a `.wh..wh..opq` entry (same metadata, the directory's mtime clamped);
//! - sockets are skipped (Docker does the same); symlinks are never followed.
//!
//! Errors: [`Error::ReadSource`] names the path that could not be read,
//! [`Error::SourceChanged`] a file that shrank while it was read, [`Error::Sink`] a
//! failed write of the output.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use super::fsutil::{self, Meta, XattrSource};
use super::tarfmt::{self, EntryHeader, EntryKind};
use super::{Compression, Error, LayerInfo, LayerMediaType, ManifestFormat, SourceDateEpoch};

/// How to write a layer.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub compression: Compression,
    /// Which manifest flavour the returned media type is spelled for.
    pub format: ManifestFormat,
    /// Clamp newer mtimes to this time.
    pub source_date_epoch: Option<SourceDateEpoch>,
    /// Paths relative to the source root (e.g. `etc/resolv.conf`, mount points the
    /// executor created) left out of the layer together with everything below them.
    pub exclude: Vec<PathBuf>,
}

/// What [`write_tar`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarStats {
    /// Entries, not counting PAX headers.
    pub entries: u64,
    /// Bytes of tar written, including the end-of-archive blocks.
    pub bytes: u64,
}

/// Writes the layer of `source` (an overlay upper dir or a plain directory) through
/// `options.compression` into `sink`, computing diffID and blob digest in the same pass.
/// Returns the sink so the caller can commit it (the content store renames its temp
/// file). An empty source gives a layer with [`LayerInfo::is_empty`] true.
pub fn write_layer<W: Write + Send>(
    source: &Path,
    options: &WriteOptions,
    sink: W,
) -> Result<(LayerInfo, W), Error> {
    let media_type = LayerMediaType::for_compression(options.compression, options.format)?;
    let (out, sink) = super::compress::run(options.compression, sink, |tar| {
        write_tar(source, options, tar).map(|stats| stats.entries)
    })?;
    Ok((out.into_info(media_type), sink))
}

/// Writes the uncompressed tar of `source` into `out` (single-threaded, no hashing).
pub fn write_tar(
    source: &Path,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<TarStats, Error> {
    let root = fsutil::open_dir(source).map_err(|e| Error::ReadSource {
        path: source.to_path_buf(),
        source: e,
    })?;
    let exclude: HashSet<Vec<u8>> = options
        .exclude
        .iter()
        .map(|p| normalize_rel(p.as_os_str().as_encoded_bytes()))
        .collect();
    let mut emitter = Emitter::new(out, options.source_date_epoch);
    let mut walk = UpperWalk {
        root: source,
        exclude: &exclude,
        emitter: &mut emitter,
    };
    walk.dir(root.as_fd(), b"")?;
    emitter.finish()
}

pub(crate) fn normalize_rel(bytes: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = bytes
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    parts.join(&b'/')
}

struct UpperWalk<'a, 'o> {
    root: &'a Path,
    exclude: &'a HashSet<Vec<u8>>,
    emitter: &'a mut Emitter<'o>,
}

impl UpperWalk<'_, '_> {
    fn dir(&mut self, dir: BorrowedFd<'_>, rel: &[u8]) -> Result<(), Error> {
        let read_err = |e: io::Error| Error::ReadSource {
            path: fsutil::rel_to_path(self.root, rel),
            source: e,
        };
        let names = fsutil::sorted_names(dir).map_err(read_err)?;
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let child_rel = fsutil::join_rel(rel, name.as_bytes());
            if self.exclude.contains(&child_rel) {
                continue;
            }
            let meta = fsutil::stat_at(dir, &name).map_err(|e| Error::ReadSource {
                path: fsutil::rel_to_path(self.root, &child_rel),
                source: e,
            })?;
            let tar_name = if meta.is_whiteout_device() {
                whiteout_name(name.as_bytes())
            } else {
                name.as_bytes().to_vec()
            };
            children.push((tar_name, name, child_rel, meta));
        }
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (_, name, child_rel, meta) in children {
            if meta.is_whiteout_device() {
                self.emitter.whiteout(&child_rel, meta.mtime)?;
                continue;
            }
            let emitted = self
                .emitter
                .node(self.root, dir, &name, &child_rel, &meta, true)?;
            if let Emitted::Directory(fd) = emitted {
                self.dir(fd.as_fd(), &child_rel)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn whiteout_name(name: &[u8]) -> Vec<u8> {
    let mut out = b".wh.".to_vec();
    out.extend_from_slice(name);
    out
}

/// What [`Emitter::node`] did.
#[derive(Debug)]
pub(crate) enum Emitted {
    /// A directory entry was written; its fd, for descending.
    Directory(OwnedFd),
    Other,
    /// Nothing written (a socket).
    Skipped,
}

/// Turns file-system objects into tar entries on an output stream. Shared by the
/// upper-dir writer and the metadata-walk diff so both produce identical bytes.
pub(crate) struct Emitter<'o> {
    out: &'o mut dyn Write,
    epoch: Option<SourceDateEpoch>,
    /// (dev, ino) of multiply-linked files already written → their tar path.
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    entries: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl<'o> Emitter<'o> {
    pub(crate) fn new(out: &'o mut dyn Write, epoch: Option<SourceDateEpoch>) -> Emitter<'o> {
        Emitter {
            out,
            epoch,
            hardlinks: HashMap::new(),
            entries: 0,
            bytes: 0,
            buf: vec![0u8; 256 * 1024],
        }
    }

    fn header(&mut self, header: &EntryHeader<'_>) -> Result<(), Error> {
        self.bytes += tarfmt::write_entry_header(self.out, header).map_err(sink)?;
        self.entries += 1;
        Ok(())
    }

    /// `<parent>/.wh.<name>` for the deleted `rel`.
    pub(crate) fn whiteout(&mut self, rel: &[u8], mtime: i64) -> Result<(), Error> {
        let (parent, name) = split_rel(rel);
        let path = fsutil::join_rel(parent, &whiteout_name(name));
        self.marker(&path, mtime)
    }

    /// `<dir>/.wh..wh..opq`.
    pub(crate) fn opaque(&mut self, dir_rel: &[u8], mtime: i64) -> Result<(), Error> {
        let path = fsutil::join_rel(dir_rel, b".wh..wh..opq");
        self.marker(&path, mtime)
    }

    fn marker(&mut self, path: &[u8], mtime: i64) -> Result<(), Error> {
        let mtime = SourceDateEpoch::clamp(self.epoch, mtime);
        self.header(&EntryHeader {
            path,
            kind: EntryKind::Regular { size: 0 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: &[],
        })
    }

    /// Writes the object `name` of `dir` (at `rel` in the layer, already `lstat`ed as
    /// `meta`). `root` is the tree's path, for messages and for reading xattrs of
    /// objects that cannot be opened. With `overlay`, an opaque directory also gets its
    /// marker entry.
    pub(crate) fn node(
        &mut self,
        root: &Path,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &[u8],
        meta: &Meta,
        overlay: bool,
    ) -> Result<Emitted, Error> {
        let read_err = |e: io::Error| Error::ReadSource {
            path: fsutil::rel_to_path(root, rel),
            source: e,
        };
        let mtime = SourceDateEpoch::clamp(self.epoch, meta.mtime);
        let base = |kind, xattrs| EntryHeader {
            path: rel,
            kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            mtime,
            xattrs,
        };

        if meta.file_type != FileType::Directory && meta.nlink > 1 {
            if let Some(first) = self.hardlinks.get(&(meta.dev, meta.ino)) {
                let first = first.clone();
                self.header(&base(EntryKind::Hardlink { target: &first }, &[]))?;
                return Ok(Emitted::Other);
            }
            self.hardlinks.insert((meta.dev, meta.ino), rel.to_vec());
        }

        match meta.file_type {
            FileType::Directory => {
                let fd = fsutil::open_dir_at(dir, name).map_err(read_err)?;
                let all = fsutil::read_xattrs(XattrSource::Fd(fd.as_fd())).map_err(read_err)?;
                let opaque = overlay && is_opaque(&all);
                let xattrs = content_xattrs(all);
                self.header(&base(EntryKind::Directory, &xattrs))?;
                if opaque {
                    self.opaque(rel, meta.mtime)?;
                }
                Ok(Emitted::Directory(fd))
            }
            FileType::RegularFile => {
                let fd = fsutil::open_file_at(dir, name).map_err(read_err)?;
                let xattrs = content_xattrs(
                    fsutil::read_xattrs(XattrSource::Fd(fd.as_fd())).map_err(read_err)?,
                );
                let size = meta.size;
                self.header(&base(EntryKind::Regular { size }, &xattrs))?;
                let mut file = File::from(fd);
                let copied = self.copy_exact(&mut file, size).map_err(|e| match e {
                    CopyError::Read(e) => read_err(e),
                    CopyError::Write(e) => sink(e),
                })?;
                if copied < size {
                    return Err(Error::SourceChanged {
                        path: fsutil::rel_to_path(root, rel),
                        expected: size,
                        actual: copied,
                    });
                }
                self.bytes += size;
                self.bytes += tarfmt::write_padding(self.out, size).map_err(sink)?;
                Ok(Emitted::Other)
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| read_err(e.into()))?;
                let xattrs = self.path_xattrs(root, rel).map_err(read_err)?;
                self.header(&base(
                    EntryKind::Symlink {
                        target: target.as_bytes(),
                    },
                    &xattrs,
                ))?;
                Ok(Emitted::Other)
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match meta.file_type {
                    FileType::CharacterDevice => EntryKind::CharDevice {
                        major: meta.rdev_major,
                        minor: meta.rdev_minor,
                    },
                    FileType::BlockDevice => EntryKind::BlockDevice {
                        major: meta.rdev_major,
                        minor: meta.rdev_minor,
                    },
                    _ => EntryKind::Fifo,
                };
                let xattrs = self.path_xattrs(root, rel).map_err(read_err)?;
                self.header(&base(kind, &xattrs))?;
                Ok(Emitted::Other)
            }
            _ => Ok(Emitted::Skipped),
        }
    }

    fn path_xattrs(&self, root: &Path, rel: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let path = fsutil::rel_to_path(root, rel);
        Ok(content_xattrs(fsutil::read_xattrs(XattrSource::Path(
            &path,
        ))?))
    }

    /// Copies up to `size` bytes; returns how many there were.
    fn copy_exact(&mut self, file: &mut File, size: u64) -> Result<u64, CopyError> {
        let mut done = 0u64;
        while done < size {
            let want = (size - done).min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(CopyError::Write)?;
            done += n as u64;
        }
        Ok(done)
    }

    pub(crate) fn finish(self) -> Result<TarStats, Error> {
        let end = tarfmt::write_end(self.out).map_err(sink)?;
        Ok(TarStats {
            entries: self.entries,
            bytes: self.bytes + end,
        })
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn sink(source: io::Error) -> Error {
    Error::Sink { source }
}

/// (parent, last component) of a relative path.
pub(crate) fn split_rel(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    }
}

fn is_opaque(xattrs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    xattrs.iter().any(|(name, value)| {
        (name == b"trusted.overlay.opaque" || name == b"user.overlay.opaque") && value == b"y"
    })
}

/// The xattrs that belong in the layer: all but overlay's own.
pub(crate) fn content_xattrs(all: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    all.into_iter()
        .filter(|(name, _)| !fsutil::is_overlay_xattr(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn entries_of(tar: &[u8]) -> Vec<(String, char, u64, u64, u64, u32)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    h.entry_type().as_byte() as char,
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn whiteouts_and_opaque_dirs_of_a_hand_made_upper_dir() {
        let upper = tempfile::tempdir().unwrap();
        let p = upper.path();
        std::fs::create_dir(p.join("etc")).unwrap();
        std::fs::write(p.join("etc/new"), b"new").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.join("etc/gone"),
            FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .unwrap();
        std::fs::create_dir(p.join("var")).unwrap();
        std::fs::write(p.join("var/+first"), b"").unwrap();
        rustix::fs::setxattr(
            p.join("var"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::setxattr(
            p.join("etc"),
            "trusted.overlay.origin",
            b"\x00\xfb",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        for path in ["etc", "etc/new", "etc/gone", "var", "var/+first"] {
            rustix::fs::utimensat(
                rustix::fs::CWD,
                p.join(path),
                &rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: 2_000_000_000,
                        tv_nsec: 0,
                    },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: 2_000_000_000,
                        tv_nsec: 0,
                    },
                },
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
        let options = WriteOptions {
            source_date_epoch: Some(SourceDateEpoch(1_000)),
            ..Default::default()
        };
        let mut tar = Vec::new();
        let stats = write_tar(p, &options, &mut tar).unwrap();
        let entries = entries_of(&tar);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/.wh.gone",
                "etc/new",
                "var/",
                "var/.wh..wh..opq",
                "var/+first"
            ]
        );
        assert_eq!(stats.entries, 6);
        assert_eq!(stats.bytes as usize, tar.len());
        // Whiteout: empty regular file, 0644, root, clamped mtime.
        assert_eq!(entries[1], ("etc/.wh.gone".into(), '0', 0, 0, 1_000, 0o644));
        assert_eq!(entries[4].1, '0');
        assert!(entries.iter().all(|e| e.4 == 1_000));
        // No overlay xattrs leak into the layer.
        let mut archive = tar::Archive::new(&tar[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if let Some(pax) = entry.pax_extensions().unwrap() {
                for ext in pax {
                    assert!(!ext.unwrap().key().unwrap().contains("overlay"));
                }
            }
        }
    }

    #[test]
    fn hardlinks_symlinks_and_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("etc")).unwrap();
        std::fs::write(p.join("a"), b"content").unwrap();
        std::fs::hard_link(p.join("a"), p.join("b")).unwrap();
        symlink("a", p.join("c")).unwrap();
        std::fs::write(p.join("etc/resolv.conf"), b"nameserver 1.1.1.1").unwrap();
        std::fs::set_permissions(p.join("a"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        let options = WriteOptions {
            exclude: vec![PathBuf::from("etc/resolv.conf")],
            ..Default::default()
        };
        let mut tar = Vec::new();
        write_tar(p, &options, &mut tar).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let got: Vec<(String, char, Option<String>, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type().as_byte() as char,
                    e.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), '0', None, 0o4755),
                ("b".into(), '1', Some("a".into()), 0o4755),
                ("c".into(), '2', Some("a".into()), 0o777),
                ("etc/".into(), '5', None, 0o755),
            ]
        );
    }

    #[test]
    fn empty_dir_gives_the_empty_layer_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let (info, blob) = write_layer(
            dir.path(),
            &WriteOptions {
                compression: Compression::Uncompressed,
                ..Default::default()
            },
            Vec::new(),
        )
        .unwrap();
        assert!(info.is_empty());
        assert_eq!(info.diff_id.to_string(), super::super::EMPTY_LAYER_DIFF_ID);
        assert_eq!(blob, vec![0u8; 1024]);
    }
}
