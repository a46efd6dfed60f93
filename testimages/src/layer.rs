//! Deterministic layer tarballs.
//!
//! Contract: [`write_layer`] turns a list of [`Entry`]s, already in walk order
//! (see [`walk_order`]), into a gzip layer blob under an OCI layout's
//! `blobs/sha256/`, in one streaming pass that also computes the diffID
//! (sha256 of the uncompressed tar) and the blob digest. The bytes depend only
//! on the entries: ustar headers with numeric uid/gid and no user or group
//! names, PAX extended headers for paths and link targets longer than 100
//! bytes, and a gzip header without file name or time. Errors: a source file
//! that cannot be read or that changes size while it is read, or a blob that
//! cannot be written, is an [`Error::Io`].

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use ring::digest::{Context, SHA256};

use crate::Error;

/// The fixed time every image made here is dated at: mtimes newer than it are
/// clamped to it, and image configs use it as `created`
/// (2024-01-01T00:00:00Z).
pub const SOURCE_DATE_EPOCH: u64 = 1_704_067_200;

/// [`SOURCE_DATE_EPOCH`] in RFC 3339, as written into image configs.
pub const SOURCE_DATE_RFC3339: &str = "2024-01-01T00:00:00Z";

/// gzip level of the layers. Part of the digests: changing it changes them.
const GZIP_LEVEL: u32 = 6;

/// One entry of a layer, with the metadata that goes into its tar header.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Relative path, `/`-separated, without leading `/` or `./`, nor a
    /// trailing `/` (directories get theirs when written).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch, already clamped by the caller.
    pub mtime: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum EntryKind {
    Directory,
    File {
        content: Content,
        size: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// A hard link to an earlier entry of the same layer.
    Hardlink {
        target: Vec<u8>,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// A blob written into a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
}

/// A layer blob and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerBlob {
    pub blob: Blob,
    pub diff_id: String,
}

/// Orders paths as a depth-first walk with sorted children does: component
/// by component, bytewise. A directory therefore precedes its contents.
pub(crate) fn walk_order(a: &[u8], b: &[u8]) -> Ordering {
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

/// Writes `entries` (in walk order) as a gzip layer blob into `blobs_dir`
/// (an OCI layout's `blobs/sha256`).
pub(crate) fn write_layer(blobs_dir: &Path, entries: &[Entry]) -> Result<LayerBlob, Error> {
    let temp = tempfile::NamedTempFile::new_in(blobs_dir)
        .map_err(Error::io("create a temporary blob in", blobs_dir))?;
    let temp_path = temp.path().to_path_buf();
    let write_err = Error::io("write layer blob", &temp_path);

    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, temp));
    let gzip = GzBuilder::new()
        .mtime(0)
        .write(compressed, Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));
    for entry in entries {
        append_entry(&mut tar, entry)?;
    }
    let (gzip, diff_id, _) = tar.into_inner().map_err(write_err)?.finish();
    let write_err = Error::io("write layer blob", &temp_path);
    let compressed = gzip.finish().map_err(write_err)?;
    let (buffered, digest, size) = compressed.finish();
    let temp = buffered
        .into_inner()
        .map_err(|e| Error::io("write layer blob", &temp_path)(e.into_error()))?;
    let hex = digest.trim_start_matches("sha256:");
    let dest = blobs_dir.join(hex);
    temp.persist(&dest)
        .map_err(|e| Error::io("store layer blob", &dest)(e.error))?;
    Ok(LayerBlob {
        blob: Blob { digest, size },
        diff_id,
    })
}

fn append_entry<W: Write>(tar: &mut tar::Builder<W>, entry: &Entry) -> Result<(), Error> {
    let mut name = entry.path.clone();
    if matches!(entry.kind, EntryKind::Directory) {
        name.push(b'/');
    }
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut header = tar::Header::new_ustar();
    header.set_mode(entry.mode & 0o7777);
    header.set_mtime(entry.mtime);
    for (key, id, set) in [
        (
            "uid",
            entry.uid,
            tar::Header::set_uid as fn(&mut tar::Header, u64),
        ),
        ("gid", entry.gid, tar::Header::set_gid),
    ] {
        // ustar numeric fields hold 7 octal digits; beyond that PAX says it.
        if id > 0o7_777_777 {
            pax.push((key, id.to_string().into_bytes()));
            set(&mut header, 0);
        } else {
            set(&mut header, id);
        }
    }
    let mut size = 0;
    let mut link: Option<&[u8]> = None;
    match &entry.kind {
        EntryKind::Directory => header.set_entry_type(tar::EntryType::Directory),
        EntryKind::File { size: s, .. } => {
            header.set_entry_type(tar::EntryType::Regular);
            size = *s;
        }
        EntryKind::Symlink { target } => {
            header.set_entry_type(tar::EntryType::Symlink);
            link = Some(target);
        }
        EntryKind::Hardlink { target } => {
            header.set_entry_type(tar::EntryType::Link);
            link = Some(target);
        }
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            header.set_entry_type(if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let path = || PathBuf::from(String::from_utf8_lossy(&entry.path).into_owned());
            header
                .set_device_major(*major)
                .map_err(Error::io("set device numbers of", path()))?;
            header
                .set_device_minor(*minor)
                .map_err(Error::io("set device numbers of", path()))?;
        }
        EntryKind::Fifo => header.set_entry_type(tar::EntryType::Fifo),
    }
    if size > 0o77_777_777_777 {
        pax.push(("size", size.to_string().into_bytes()));
    }
    header.set_size(size);
    let ustar = header
        .as_ustar_mut()
        .expect("Header::new_ustar makes a ustar header");
    if name.len() > ustar.name.len() {
        pax.push(("path", name.clone()));
    }
    copy_truncated(&mut ustar.name, &name);
    if let Some(target) = link {
        if target.len() > ustar.linkname.len() {
            pax.push(("linkpath", target.to_vec()));
        }
        copy_truncated(&mut ustar.linkname, target);
    }
    header.set_cksum();

    let display_path = || PathBuf::from(String::from_utf8_lossy(&entry.path).into_owned());
    if !pax.is_empty() {
        append_pax(tar, &name, entry.mtime, &pax)
            .map_err(Error::io("write PAX header of", display_path()))?;
    }
    match &entry.kind {
        EntryKind::File {
            content: Content::Path(source),
            size,
        } => {
            let file = File::open(source).map_err(Error::io("open", source))?;
            let reader = ExactReader {
                inner: file,
                remaining: *size,
            };
            tar.append(&header, reader)
                .map_err(Error::io("add to layer", source))
        }
        EntryKind::File {
            content: Content::Bytes(bytes),
            ..
        } => tar
            .append(&header, bytes.as_slice())
            .map_err(Error::io("add to layer", display_path())),
        _ => tar
            .append(&header, io::empty())
            .map_err(Error::io("add to layer", display_path())),
    }
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Writes a PAX extended header (typeflag `x`) carrying `records`.
fn append_pax<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &[u8],
    mtime: u64,
    records: &[(&str, Vec<u8>)],
) -> io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        data.extend_from_slice(&pax_record(key, value));
    }
    let base = name
        .rsplit(|&c| c == b'/')
        .find(|part| !part.is_empty())
        .unwrap_or(b"entry");
    let mut pax_name = b"PaxHeaders.0/".to_vec();
    pax_name.extend_from_slice(base);
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_size(data.len() as u64);
    let ustar = header
        .as_ustar_mut()
        .expect("Header::new_ustar makes a ustar header");
    copy_truncated(&mut ustar.name, &pax_name);
    header.set_cksum();
    tar.append(&header, data.as_slice())
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + rest.to_string().len();
    if len.to_string().len() != rest.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    debug_assert_eq!(record.len(), len);
    record
}

/// Reads exactly `remaining` bytes, failing if the file got shorter, so a
/// file changing under us cannot corrupt the archive.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Passes bytes through while computing their sha256 and count.
pub(crate) struct HashingWriter<W> {
    inner: W,
    context: Context,
    count: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            context: Context::new(&SHA256),
            count: 0,
        }
    }

    /// Returns the inner writer, `sha256:<hex>` of what passed, and its length.
    pub(crate) fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.context.finish().as_ref()));
        (self.inner, digest, self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.context.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&SHA256, bytes).as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: SOURCE_DATE_EPOCH,
        }
    }

    fn file(path: &str, bytes: &[u8]) -> Entry {
        entry(
            path,
            EntryKind::File {
                content: Content::Bytes(bytes.to_vec()),
                size: bytes.len() as u64,
            },
        )
    }

    fn unpack_listing(blob: &Path) -> Vec<(String, String, u64, String)> {
        let gz = flate2::read::GzDecoder::new(File::open(blob).unwrap());
        let mut archive = tar::Archive::new(gz);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                (
                    e.path().unwrap().display().to_string(),
                    format!("{:?}", e.header().entry_type()),
                    e.header().size().unwrap(),
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n".to_vec());
        // 4 + 90 + 3 = 97 bytes plus two digits is 99.
        assert_eq!(pax_record("path", &[b'x'; 90]).len(), 99);
        // 4 + 91 + 3 = 98 bytes plus two digits would be 100, which has three.
        let record = pax_record("path", &[b'x'; 91]);
        assert_eq!(record.len(), 101);
        assert!(record.starts_with(b"101 path="));
    }

    #[test]
    fn walk_order_puts_directories_before_their_contents() {
        let mut paths = vec!["a-b", "a/b", "a", "a/b/c", "B", "a.txt"];
        paths.sort_by(|a, b| walk_order(a.as_bytes(), b.as_bytes()));
        assert_eq!(paths, ["B", "a", "a/b", "a/b/c", "a-b", "a.txt"]);
    }

    #[test]
    fn layer_is_deterministic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let long_dir = "d".repeat(120);
        let long_file = format!("{long_dir}/{}", "f".repeat(150));
        let entries = vec![
            entry("bin", EntryKind::Directory),
            file("bin/hello", b"hello\n"),
            entry(
                "bin/link",
                EntryKind::Hardlink {
                    target: b"bin/hello".to_vec(),
                },
            ),
            entry(
                "bin/sym",
                EntryKind::Symlink {
                    target: format!("/{long_file}").into_bytes(),
                },
            ),
            entry(&long_dir, EntryKind::Directory),
            file(&long_file, b"long"),
        ];
        let first = write_layer(dir.path(), &entries).unwrap();
        let second = write_layer(dir.path(), &entries).unwrap();
        assert_eq!(first, second);
        let blob = dir
            .path()
            .join(first.blob.digest.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&blob).unwrap();
        assert_eq!(sha256_digest(&bytes), first.blob.digest);
        assert_eq!(bytes.len() as u64, first.blob.size);
        // gzip header: no mtime, no file name flag.
        assert_eq!(&bytes[3..8], &[0, 0, 0, 0, 0]);

        let listing = unpack_listing(&blob);
        let names: Vec<&str> = listing.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin/",
                "bin/hello",
                "bin/link",
                "bin/sym",
                format!("{long_dir}/").as_str(),
                long_file.as_str()
            ]
        );
        assert_eq!(listing[2].1, "Link");
        assert_eq!(listing[2].3, "bin/hello");
        assert_eq!(listing[3].3, format!("/{long_file}"));
        assert_eq!(listing[5].2, 4);

        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(sha256_digest(&decoded), first.diff_id);
        // Long names go through PAX headers, not GNU long-name entries.
        assert!(decoded.windows(9).any(|w| w == b"PaxHeader"));
        assert!(!decoded.windows(13).any(|w| w == b"././@LongLink"));
        // No user or group names anywhere: the uname field of the first header.
        assert!(decoded[265..265 + 32].iter().all(|&b| b == 0));
    }

    #[test]
    fn file_shrinking_while_archived_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::write(&source, b"abc").unwrap();
        let entries = vec![entry(
            "f",
            EntryKind::File {
                content: Content::Path(source),
                size: 10,
            },
        )];
        let err = write_layer(dir.path(), &entries).unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
    }
}
