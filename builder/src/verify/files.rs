//! File-level diff of two layers, read from their tar streams.
//!
//! Contract: [`index_layer`] reads one layer tar (gzip, zstd or plain, found by
//! magic) front to back and keeps, per path, the entry's type, mode, owner,
//! size, mtime, link target, xattrs and the SHA-256 of its content, hashed
//! while streaming: memory grows with the number of entries, never with their
//! size, and nothing is extracted. [`diff_layers`] pairs two such indexes by
//! path: added, removed, and changed entries with the attributes that differ.
//! Whiteouts (`.wh.NAME`) are entries like any other, so a deletion that
//! differs shows as an added or removed whiteout.
//!
//! Errors: [`Error::LayerRead`] names the layer whose stream could not be read.

use std::collections::BTreeMap;
use std::io::Read;

use super::{AttributeChange, Error, FileChange, FileChangeKind, FileKind, FileMeta};
use crate::digest::{Digest, Hasher};
use crate::store::Store;

/// One layer's entries, by normalised path (no leading `/` or `./`, no trailing `/`).
#[derive(Debug, Default)]
pub(super) struct LayerIndex {
    pub entries: BTreeMap<String, FileMeta>,
    /// Paths in the order the tar holds them.
    pub order: Vec<String>,
}

fn normalise(path: &str) -> String {
    let trimmed = path.trim_start_matches("./").trim_start_matches('/');
    let trimmed = trimmed.trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        ".".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Reads the layer blob `digest` of `blobs` into an index (see the module contract).
pub(super) fn index_layer(blobs: &Store, digest: &Digest) -> Result<LayerIndex, Error> {
    let read_error = |source: std::io::Error| Error::LayerRead {
        layer: digest.clone(),
        source,
    };
    let blob = blobs.open_blob(digest)?;
    let reader = crate::build::sbom::decompressed(blob, &blobs.blob_path(digest))?;
    index_tar(reader).map_err(read_error)
}

/// Indexes a tar stream.
pub(super) fn index_tar(reader: impl Read) -> std::io::Result<LayerIndex> {
    let mut archive = tar::Archive::new(reader);
    let mut index = LayerIndex::default();
    let mut buffer = vec![0u8; 64 * 1024];
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => FileKind::File,
            tar::EntryType::Directory => FileKind::Directory,
            tar::EntryType::Symlink => FileKind::Symlink,
            tar::EntryType::Link => FileKind::Hardlink,
            tar::EntryType::Char => FileKind::CharDevice,
            tar::EntryType::Block => FileKind::BlockDevice,
            tar::EntryType::Fifo => FileKind::Fifo,
            _ => FileKind::Other,
        };
        let link = entry
            .link_name_bytes()
            .map(|target| String::from_utf8_lossy(&target).into_owned());
        let mut mtime = header.mtime().unwrap_or(0) as i64;
        let mut xattrs = BTreeMap::new();
        if let Some(extensions) = entry.pax_extensions()? {
            for extension in extensions {
                let extension = extension?;
                let key = extension.key().unwrap_or("");
                if key == "mtime" {
                    let value = String::from_utf8_lossy(extension.value_bytes()).into_owned();
                    if let Some(seconds) = value.split('.').next().and_then(|s| s.parse().ok()) {
                        mtime = seconds;
                    }
                } else if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_owned(), xattr_value(extension.value_bytes()));
                }
            }
        }
        let device = match kind {
            FileKind::CharDevice | FileKind::BlockDevice => Some(format!(
                "{}:{}",
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0)
            )),
            _ => None,
        };
        let (size, sha256) = if kind == FileKind::File {
            let mut hasher = Hasher::new();
            loop {
                let read = entry.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
            }
            (hasher.len(), Some(hasher.finish().to_string()))
        } else {
            (0, None)
        };
        let meta = FileMeta {
            kind,
            mode: format!("{:04o}", header.mode().unwrap_or(0) & 0o7777),
            uid: header.uid().unwrap_or(0),
            gid: header.gid().unwrap_or(0),
            size,
            mtime,
            sha256,
            link,
            device,
            xattrs,
        };
        index.order.push(path.clone());
        index.entries.insert(path, meta);
    }
    Ok(index)
}

/// An xattr value as text when it is printable, else as hex.
fn xattr_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => text.to_owned(),
        _ => format!("0x{}", hex::encode(bytes)),
    }
}

/// The attributes of `left` and `right` that differ, named as the report names them.
fn changed_attributes(left: &FileMeta, right: &FileMeta) -> Vec<AttributeChange> {
    let mut changes = Vec::new();
    let mut compare = |name: &str, a: String, b: String| {
        if a != b {
            changes.push(AttributeChange {
                attribute: name.to_owned(),
                left: a,
                right: b,
            });
        }
    };
    compare("type", left.kind.to_string(), right.kind.to_string());
    if left.sha256 != right.sha256 || left.size != right.size {
        let describe = |meta: &FileMeta| match &meta.sha256 {
            Some(sha) => format!("{} bytes {sha}", meta.size),
            None => "none".to_owned(),
        };
        compare("content", describe(left), describe(right));
    }
    compare("mode", left.mode.clone(), right.mode.clone());
    compare("uid", left.uid.to_string(), right.uid.to_string());
    compare("gid", left.gid.to_string(), right.gid.to_string());
    compare("mtime", left.mtime.to_string(), right.mtime.to_string());
    compare(
        "link",
        left.link.clone().unwrap_or_default(),
        right.link.clone().unwrap_or_default(),
    );
    compare(
        "device",
        left.device.clone().unwrap_or_default(),
        right.device.clone().unwrap_or_default(),
    );
    if left.xattrs != right.xattrs {
        let describe = |meta: &FileMeta| {
            meta.xattrs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        compare("xattrs", describe(left), describe(right));
    }
    changes
}

/// What differs between two layers' entries, sorted by path; and whether the
/// entries common to both come in a different order.
pub(super) fn diff_layers(left: &LayerIndex, right: &LayerIndex) -> (Vec<FileChange>, bool) {
    let mut changes = Vec::new();
    for (path, meta) in &left.entries {
        match right.entries.get(path) {
            None => changes.push(FileChange {
                path: path.clone(),
                change: FileChangeKind::Removed,
                attributes: Vec::new(),
                left: Some(meta.clone()),
                right: None,
            }),
            Some(other) => {
                let attributes = changed_attributes(meta, other);
                if !attributes.is_empty() {
                    changes.push(FileChange {
                        path: path.clone(),
                        change: FileChangeKind::Changed,
                        attributes,
                        left: Some(meta.clone()),
                        right: Some(other.clone()),
                    });
                }
            }
        }
    }
    for (path, meta) in &right.entries {
        if !left.entries.contains_key(path) {
            changes.push(FileChange {
                path: path.clone(),
                change: FileChangeKind::Added,
                attributes: Vec::new(),
                left: None,
                right: Some(meta.clone()),
            });
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let common = |index: &LayerIndex, other: &LayerIndex| -> Vec<String> {
        index
            .order
            .iter()
            .filter(|path| other.entries.contains_key(*path))
            .cloned()
            .collect()
    };
    let order_differs = common(left, right) != common(right, left);
    (changes, order_differs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(entries: &[(&str, &[u8], u32, u64)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content, mode, mtime) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(content.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(*mtime);
            header.set_uid(0);
            header.set_gid(0);
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn entries_are_indexed_with_their_content_hash() {
        let index = index_tar(&tar(&[("./app/a.txt", b"hello", 0o644, 7)])[..]).unwrap();
        let meta = &index.entries["app/a.txt"];
        assert_eq!(meta.kind, FileKind::File);
        assert_eq!(meta.mode, "0644");
        assert_eq!(meta.size, 5);
        assert_eq!(meta.mtime, 7);
        assert_eq!(meta.sha256, Some(Digest::of(b"hello").to_string()));
    }

    #[test]
    fn diff_names_added_removed_and_changed_attributes() {
        let left = index_tar(
            &tar(&[
                ("same", b"x", 0o644, 1),
                ("content", b"aaaa", 0o644, 1),
                ("mode", b"m", 0o644, 1),
                ("time", b"t", 0o644, 1),
                ("gone", b"g", 0o644, 1),
            ])[..],
        )
        .unwrap();
        let right = index_tar(
            &tar(&[
                ("same", b"x", 0o644, 1),
                ("content", b"aaab", 0o644, 1),
                ("mode", b"m", 0o755, 1),
                ("time", b"t", 0o644, 2),
                ("new", b"n", 0o644, 1),
            ])[..],
        )
        .unwrap();
        let (changes, order_differs) = diff_layers(&left, &right);
        assert!(!order_differs);
        let summary: Vec<(String, FileChangeKind, Vec<String>)> = changes
            .iter()
            .map(|c| {
                (
                    c.path.clone(),
                    c.change,
                    c.attributes.iter().map(|a| a.attribute.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "content".to_owned(),
                    FileChangeKind::Changed,
                    vec!["content".to_owned()]
                ),
                ("gone".to_owned(), FileChangeKind::Removed, vec![]),
                (
                    "mode".to_owned(),
                    FileChangeKind::Changed,
                    vec!["mode".to_owned()]
                ),
                ("new".to_owned(), FileChangeKind::Added, vec![]),
                (
                    "time".to_owned(),
                    FileChangeKind::Changed,
                    vec!["mtime".to_owned()]
                ),
            ]
        );
        let content = &changes[0].attributes[0];
        assert_eq!(
            content.left,
            format!("4 bytes {}", Digest::of(b"aaaa")),
            "both sizes and hashes"
        );
        assert_eq!(content.right, format!("4 bytes {}", Digest::of(b"aaab")));
    }

    #[test]
    fn the_same_files_in_another_order_are_noticed() {
        let left = index_tar(&tar(&[("a", b"1", 0o644, 1), ("b", b"2", 0o644, 1)])[..]).unwrap();
        let right = index_tar(&tar(&[("b", b"2", 0o644, 1), ("a", b"1", 0o644, 1)])[..]).unwrap();
        let (changes, order_differs) = diff_layers(&left, &right);
        assert!(changes.is_empty());
        assert!(order_differs);
    }
}
