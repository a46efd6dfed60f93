//! The content store: one directory that is itself a valid OCI image layout.
//!
//! ```text
//! $KILN_HOME (default $XDG_CACHE_HOME/kiln, else ~/.cache/kiln)
//! ├── oci-layout            {"imageLayoutVersion": "1.0.0"}
//! ├── index.json            named images: manifests annotated with
//! │                         org.opencontainers.image.ref.name
//! ├── blobs/sha256/<hex>    content-addressed blobs, immutable once present
//! └── tmp/                  partial writes; never read by anyone else
//! ```
//!
//! Any OCI tool can read the store (`skopeo inspect oci:$KILN_HOME:NAME`,
//! `umoci ls --layout $KILN_HOME`).
//!
//! # Contract
//!
//! - A blob write streams into a temp file under `tmp/` while hashing, and is
//!   renamed into `blobs/sha256/` only when the digest (and size, when known)
//!   match what the caller expected. Readers therefore never see partial or
//!   unverified blobs. A refused write leaves nothing behind.
//! - Two processes writing the same blob at once both succeed: each renames its
//!   own complete, verified temp file over the same name, and the bytes are
//!   identical by construction.
//! - `index.json` is rewritten whole (temp file + rename) under an exclusive
//!   `flock` on `index.lock`, so concurrent taggers never lose each other's
//!   entries and readers never see a torn file.
//!
//! # Errors
//!
//! [`Error::Io`] names the path that failed; [`Error::DigestMismatch`] and
//! [`Error::SizeMismatch`] name the expected and actual values;
//! [`Error::Corrupt`] names a store file that is not what the layout requires.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};

/// The annotation OCI layouts use to name a manifest.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Errors from the content store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is not in the store at {root}")]
    BlobNotFound { root: PathBuf, digest: Digest },
    #[error("no image named {name:?} in the store at {root}")]
    ImageNotFound { root: PathBuf, name: String },
    #[error("{path}: not a valid store file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot find a home for the store: set KILN_HOME, XDG_CACHE_HOME or HOME")]
    NoHome,
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// An OCI content descriptor, as stored in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// The layout's `index.json`. Unknown fields are kept so that other tools'
/// additions survive a rewrite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

impl IndexFile {
    fn empty() -> IndexFile {
        IndexFile {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            other: BTreeMap::new(),
        }
    }
}

/// A named image in the store, as `kiln images` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageEntry {
    /// The `org.opencontainers.image.ref.name` of the entry.
    pub name: String,
    /// Digest of the manifest (or index).
    pub digest: Digest,
    pub media_type: String,
    /// Manifest size plus the config and every layer, compressed.
    pub size: u64,
    /// The image config's `created`, when it has one.
    pub created: Option<String>,
}

/// The content store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Where the store lives when nothing says otherwise: `KILN_HOME`, else
    /// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
    pub fn default_root() -> Result<PathBuf, Error> {
        let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(home) = non_empty("KILN_HOME") {
            return Ok(PathBuf::from(home));
        }
        if let Some(cache) = non_empty("XDG_CACHE_HOME") {
            return Ok(PathBuf::from(cache).join("kiln"));
        }
        let home = non_empty("HOME").ok_or(Error::NoHome)?;
        Ok(PathBuf::from(home).join(".cache").join("kiln"))
    }

    /// Opens (creating if needed) the store at [`Store::default_root`].
    pub fn open_default() -> Result<Store, Error> {
        Store::open(Store::default_root()?)
    }

    /// Opens the store at `root`, creating the layout files when missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, Error> {
        let root = root.into();
        let store = Store { root };
        for dir in [store.blob_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.index_path();
        if !index.exists() {
            let _lock = store.lock_index()?;
            if !index.exists() {
                store.write_index(&IndexFile::empty())?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Path of a blob, whether or not it is present.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size of a present blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, Error> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound {
                root: self.root.clone(),
                digest: digest.clone(),
            }),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, Error> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::BlobNotFound {
                    root: self.root.clone(),
                    digest: digest.clone(),
                }
            } else {
                Error::Io { path, source: e }
            }
        })
    }

    /// Reads a whole (small) blob, such as a manifest or config.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(io_err(self.blob_path(digest)))?;
        Ok(bytes)
    }

    /// Starts a streaming blob write. Nothing is visible until
    /// [`BlobWriter::commit`] succeeds.
    pub fn blob_writer(&self) -> Result<BlobWriter, Error> {
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.tmp_dir())
            .map_err(io_err(self.tmp_dir()))?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, tmp)),
        })
    }

    /// Writes `bytes` as a blob and returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest, Error> {
        let mut writer = self.blob_writer()?;
        writer.write_all(bytes).map_err(io_err(self.tmp_dir()))?;
        Ok(writer.commit(None, None)?.0)
    }

    /// Copies `reader` into the store, refusing it unless it hashes to `expected`.
    pub fn write_blob_verified(
        &self,
        reader: &mut dyn Read,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<u64, Error> {
        let mut writer = self.blob_writer()?;
        io::copy(reader, &mut writer).map_err(io_err(self.tmp_dir()))?;
        Ok(writer.commit(Some(expected), expected_size)?.1)
    }

    /// Puts the blob `digest` of `source` into this store: a hard link when both
    /// are on one file system (blobs are never modified in place), else a
    /// verified copy. A blob already here is left alone.
    pub fn link_blob_from(&self, source: &Store, digest: &Digest, size: u64) -> Result<(), Error> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let target = self.blob_path(digest);
        match fs::hard_link(source.blob_path(digest), &target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => {
                let mut file = source.open_blob(digest)?;
                self.write_blob_verified(&mut file, digest, Some(size))?;
                Ok(())
            }
        }
    }

    /// Names `descriptor` as `name` in `index.json`, replacing any entry of the
    /// same name. The manifest blob must already be in the store.
    pub fn tag(&self, name: &str, descriptor: &Descriptor) -> Result<(), Error> {
        if !self.has_blob(&descriptor.digest) {
            return Err(Error::BlobNotFound {
                root: self.root.clone(),
                digest: descriptor.digest.clone(),
            });
        }
        let mut entry = descriptor.clone();
        entry
            .annotations
            .insert(REF_NAME_ANNOTATION.to_owned(), name.to_owned());
        self.update_index(|index| {
            index.manifests.retain(|d| ref_name(d) != Some(name));
            index.manifests.push(entry);
            index
                .manifests
                .sort_by(|a, b| ref_name(a).cmp(&ref_name(b)).then(a.digest.cmp(&b.digest)));
        })
    }

    /// Removes the entry named `name`; blobs stay (they may be shared).
    pub fn untag(&self, name: &str) -> Result<bool, Error> {
        let mut removed = false;
        self.update_index(|index| {
            let before = index.manifests.len();
            index.manifests.retain(|d| ref_name(d) != Some(name));
            removed = index.manifests.len() != before;
        })?;
        Ok(removed)
    }

    /// The descriptor named `name`.
    pub fn resolve(&self, name: &str) -> Result<Descriptor, Error> {
        self.read_index()?
            .manifests
            .into_iter()
            .find(|d| ref_name(d) == Some(name))
            .ok_or_else(|| Error::ImageNotFound {
                root: self.root.clone(),
                name: name.to_owned(),
            })
    }

    /// Every named entry of `index.json`, as descriptors.
    pub fn descriptors(&self) -> Result<Vec<Descriptor>, Error> {
        Ok(self.read_index()?.manifests)
    }

    /// Named images with their total size and creation time.
    pub fn images(&self) -> Result<Vec<ImageEntry>, Error> {
        let mut images = Vec::new();
        for descriptor in self.read_index()?.manifests {
            let Some(name) = ref_name(&descriptor).map(str::to_owned) else {
                continue;
            };
            let (size, created) = self.image_size_and_created(&descriptor)?;
            images.push(ImageEntry {
                name,
                digest: descriptor.digest,
                media_type: descriptor.media_type,
                size,
                created,
            });
        }
        Ok(images)
    }

    fn image_size_and_created(
        &self,
        descriptor: &Descriptor,
    ) -> Result<(u64, Option<String>), Error> {
        let path = self.blob_path(&descriptor.digest);
        let manifest: serde_json::Value =
            serde_json::from_slice(&self.read_blob(&descriptor.digest)?).map_err(|e| {
                Error::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
        let mut size = descriptor.size;
        let descriptor_size = |v: &serde_json::Value| v.get("size").and_then(|s| s.as_u64());
        if let Some(layers) = manifest.get("layers").and_then(|l| l.as_array()) {
            size += layers.iter().filter_map(descriptor_size).sum::<u64>();
        }
        let mut created = None;
        if let Some(config) = manifest.get("config") {
            size += descriptor_size(config).unwrap_or(0);
            let digest = config
                .get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| d.parse::<Digest>().ok());
            if let Some(digest) = digest.filter(|d| self.has_blob(d)) {
                let config: serde_json::Value = serde_json::from_slice(&self.read_blob(&digest)?)
                    .map_err(|e| Error::Corrupt {
                    path: self.blob_path(&digest),
                    reason: e.to_string(),
                })?;
                created = config
                    .get("created")
                    .and_then(|c| c.as_str())
                    .map(str::to_owned);
            }
        }
        Ok((size, created))
    }

    fn read_index(&self) -> Result<IndexFile, Error> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    fn write_index(&self, index: &IndexFile) -> Result<(), Error> {
        let mut bytes = serde_json::to_vec_pretty(index).map_err(|e| Error::Corrupt {
            path: self.index_path(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        self.write_atomic(&self.index_path(), &bytes)
    }

    fn update_index(&self, change: impl FnOnce(&mut IndexFile)) -> Result<(), Error> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        change(&mut index);
        self.write_index(&index)
    }

    fn lock_index(&self) -> Result<IndexLock, Error> {
        let path = self.root.join("index.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            Error::Io {
                path,
                source: e.into(),
            }
        })?;
        Ok(IndexLock { _file: file })
    }

    /// Writes a small file by temp file + fsync + rename.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let mut tmp = tempfile::Builder::new()
            .prefix("meta-")
            .tempfile_in(self.tmp_dir())
            .map_err(io_err(self.tmp_dir()))?;
        tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
        tmp.as_file().sync_data().map_err(io_err(tmp.path()))?;
        tmp.persist(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e.error,
        })?;
        Ok(())
    }
}

impl Store {
    /// The blobs an image needs: its manifest (or index, recursively), configs
    /// and layers. Blobs missing from the store are listed all the same; the
    /// caller decides whether that is an error.
    pub fn image_blobs(&self, root: &Descriptor) -> Result<Vec<Descriptor>, Error> {
        let mut out = vec![root.clone()];
        let mut pending = vec![root.clone()];
        while let Some(descriptor) = pending.pop() {
            let bytes = self.read_blob(&descriptor.digest)?;
            let doc: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    path: self.blob_path(&descriptor.digest),
                    reason: e.to_string(),
                })?;
            let parse = |v: &serde_json::Value| -> Result<Descriptor, Error> {
                serde_json::from_value(v.clone()).map_err(|e| Error::Corrupt {
                    path: self.blob_path(&descriptor.digest),
                    reason: format!("bad descriptor: {e}"),
                })
            };
            if let Some(manifests) = doc.get("manifests").and_then(|m| m.as_array()) {
                for m in manifests {
                    let child = parse(m)?;
                    if self.has_blob(&child.digest) {
                        pending.push(child.clone());
                        out.push(child);
                    }
                }
            }
            if let Some(config) = doc.get("config") {
                out.push(parse(config)?);
            }
            if let Some(layers) = doc.get("layers").and_then(|l| l.as_array()) {
                for layer in layers {
                    out.push(parse(layer)?);
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|d| seen.insert(d.digest.clone()));
        Ok(out)
    }

    /// Copies the image named `name` in the OCI layout at `layout` into the
    /// store (each blob verified) and names it `as_name` here.
    pub fn import_layout(
        &self,
        layout: &Path,
        name: &str,
        as_name: &str,
    ) -> Result<Descriptor, Error> {
        let source = Store {
            root: layout.to_owned(),
        };
        let root = source.resolve(name)?;
        for blob in source.image_blobs(&root)? {
            if self.has_blob(&blob.digest) {
                continue;
            }
            let mut file = source.open_blob(&blob.digest)?;
            self.write_blob_verified(&mut file, &blob.digest, Some(blob.size))?;
        }
        let mut descriptor = root.clone();
        descriptor.annotations.remove(REF_NAME_ANNOTATION);
        self.tag(as_name, &descriptor)?;
        Ok(descriptor)
    }

    /// Writes the image `descriptor` (with every blob it needs) into a new or
    /// existing OCI layout at `layout`, named `name` there.
    pub fn export_layout(
        &self,
        descriptor: &Descriptor,
        layout: &Path,
        name: &str,
    ) -> Result<(), Error> {
        let target = Store::open(layout)?;
        for blob in self.image_blobs(descriptor)? {
            if target.has_blob(&blob.digest) {
                continue;
            }
            let mut file = self.open_blob(&blob.digest)?;
            target.write_blob_verified(&mut file, &blob.digest, Some(blob.size))?;
        }
        let mut clean = descriptor.clone();
        clean.annotations.remove(REF_NAME_ANNOTATION);
        target.tag(name, &clean)?;
        // A layout handed to other tools carries no kiln scratch directory.
        let _ = fs::remove_dir(target.tmp_dir());
        let _ = fs::remove_file(target.root.join("index.lock"));
        Ok(())
    }
}

/// Held while `index.json` is being rewritten; the lock is released on drop.
struct IndexLock {
    _file: File,
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

/// A blob being written. Dropped without [`BlobWriter::commit`], it leaves
/// nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    store: Store,
    inner: HashingWriter<io::BufWriter<tempfile::NamedTempFile>>,
}

impl BlobWriter {
    /// Verifies and publishes the blob. With `expected`, a different digest is
    /// refused and the temp file removed; likewise a different `expected_size`.
    pub fn commit(
        self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), Error> {
        let (buffered, digest, size) = self.inner.finish();
        let tmp_dir = self.store.tmp_dir();
        let tmp = buffered.into_inner().map_err(|e| Error::Io {
            path: tmp_dir.clone(),
            source: e.into_error(),
        })?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        if let Some(expected_size) = expected_size
            && expected_size != size
        {
            return Err(Error::SizeMismatch {
                digest,
                expected: expected_size,
                actual: size,
            });
        }
        let target = self.store.blob_path(&digest);
        if target.is_file() {
            // Content-addressed: an existing blob of this digest is these bytes.
            return Ok((digest, size));
        }
        tmp.as_file().sync_data().map_err(io_err(tmp.path()))?;
        tmp.persist(&target).map_err(|e| Error::Io {
            path: target.clone(),
            source: e.error,
        })?;
        Ok((digest, size))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        (dir, store)
    }

    fn tmp_entries(store: &Store) -> usize {
        fs::read_dir(store.tmp_dir()).unwrap().count()
    }

    #[test]
    fn open_creates_a_layout() {
        let (_dir, store) = temp_store();
        let layout = fs::read_to_string(store.root().join("oci-layout")).unwrap();
        assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(store.index_path()).unwrap()).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["manifests"], serde_json::json!([]));
    }

    #[test]
    fn verified_write_refuses_wrong_digest_and_leaves_nothing() {
        let (_dir, store) = temp_store();
        let wrong = Digest::of(b"something else");
        let err = store
            .write_blob_verified(&mut &b"hello"[..], &wrong, None)
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!store.has_blob(&wrong));
        assert!(!store.has_blob(&Digest::of(b"hello")));
        assert_eq!(tmp_entries(&store), 0);
        assert_eq!(fs::read_dir(store.blob_dir()).unwrap().count(), 0);
    }

    #[test]
    fn verified_write_refuses_wrong_size() {
        let (_dir, store) = temp_store();
        let digest = Digest::of(b"hello");
        let err = store
            .write_blob_verified(&mut &b"hello"[..], &digest, Some(4))
            .unwrap_err();
        assert!(
            matches!(err, Error::SizeMismatch { actual: 5, .. }),
            "{err}"
        );
        assert!(!store.has_blob(&digest));
        assert_eq!(tmp_entries(&store), 0);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let (_dir, store) = temp_store();
        let mut writer = store.blob_writer().unwrap();
        writer.write_all(b"partial").unwrap();
        assert_eq!(writer.len(), 7);
        drop(writer);
        assert_eq!(tmp_entries(&store), 0);
        assert!(!store.has_blob(&Digest::of(b"partial")));
    }

    #[test]
    fn blob_round_trip() {
        let (_dir, store) = temp_store();
        let digest = store.write_blob(b"content").unwrap();
        assert_eq!(digest, Digest::of(b"content"));
        assert_eq!(store.read_blob(&digest).unwrap(), b"content");
        assert_eq!(store.blob_size(&digest).unwrap(), 7);
        // Writing it again is a no-op that succeeds.
        assert_eq!(store.write_blob(b"content").unwrap(), digest);
    }

    #[test]
    fn tag_requires_the_blob_and_replaces_same_name() {
        let (_dir, store) = temp_store();
        let missing = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of(b"{}"),
            size: 2,
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        };
        assert!(matches!(
            store.tag("a", &missing),
            Err(Error::BlobNotFound { .. })
        ));
        let first = store.write_blob(br#"{"schemaVersion":2}"#).unwrap();
        let second = store.write_blob(br#"{"schemaVersion":2 }"#).unwrap();
        let desc = |digest: &Digest| Descriptor {
            digest: digest.clone(),
            ..missing.clone()
        };
        store.tag("app:1", &desc(&first)).unwrap();
        store.tag("app:1", &desc(&second)).unwrap();
        store.tag("app:2", &desc(&first)).unwrap();
        let names: Vec<_> = store
            .images()
            .unwrap()
            .into_iter()
            .map(|i| (i.name, i.digest))
            .collect();
        assert_eq!(
            names,
            vec![("app:1".into(), second), ("app:2".into(), first.clone())]
        );
        assert!(store.untag("app:1").unwrap());
        assert!(!store.untag("app:1").unwrap());
        assert_eq!(store.resolve("app:2").unwrap().digest, first);
        assert!(matches!(
            store.resolve("app:1"),
            Err(Error::ImageNotFound { .. })
        ));
    }
}
