//! Where pulled blobs go and pushed blobs come from.
//!
//! [`BlobStore`] is the contract between the registry client and a content store:
//!
//! - [`BlobStore::has`] says whether a complete, verified blob is present (the client
//!   then neither downloads nor re-reads it);
//! - [`BlobStore::begin_write`] starts writing a blob whose digest and size are known
//!   in advance; the returned [`BlobWriter`] must verify both on
//!   [`commit`](BlobWriter::commit) and make the blob visible only then, atomically.
//!   Dropping a writer without committing discards everything written. Writers fail
//!   a `write` as soon as more bytes than declared arrive. [`VerifyingWriter`] does the
//!   counting and hashing for implementations;
//! - [`BlobStore::open`] reads a blob back (used as the source of a push).
//!
//! [`MemoryStore`] keeps blobs in memory (small content, tests).
//!
//! [`OciDir`] implements it over an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/<alg>/<hex>`), writing to a temporary file next to the final
//! path and renaming it into place, so readers never see partial blobs and two
//! processes may share a layout.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use oci_spec::image::{Descriptor, ImageIndex, MediaType};

use crate::digest::{Digest, DigestHasher, UnsupportedAlgorithm};

/// The annotation naming an image in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Errors from a blob store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done (`creating`, `reading`, ...).
        operation: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes written do not hash to the expected digest.
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the content was announced with.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// More or fewer bytes were written than announced.
    #[error("blob {digest} has the wrong size: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The announced size.
        expected: u64,
        /// The number of bytes written (so far, when too many).
        actual: u64,
    },
    /// The blob is not in the store.
    #[error("blob {digest} is not in the store")]
    NotFound {
        /// The missing blob.
        digest: Digest,
    },
    /// The digest's algorithm cannot be verified.
    #[error(transparent)]
    UnsupportedAlgorithm(#[from] UnsupportedAlgorithm),
    /// An OCI layout file is malformed or does not name what was asked for.
    #[error("OCI layout {path}: {reason}")]
    Layout {
        /// The layout file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A blob being written; see the [module docs](self) for the contract.
pub trait BlobWriter: Write + Send {
    /// Verifies digest and size and makes the blob visible; on error nothing is kept.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A blob being read.
pub trait BlobReader: Read + Seek + Send {}
impl<T: Read + Seek + Send> BlobReader for T {}

/// Content-addressed blob storage; see the [module docs](self) for the contract.
pub trait BlobStore: Send + Sync {
    /// Whether a complete blob with this digest is present.
    fn has(&self, digest: &Digest) -> Result<bool, StoreError>;

    /// Starts writing a blob of `size` bytes that must hash to `digest`.
    fn begin_write(&self, digest: &Digest, size: u64) -> Result<Box<dyn BlobWriter>, StoreError>;

    /// Opens a blob for reading.
    fn open(&self, digest: &Digest) -> Result<Box<dyn BlobReader>, StoreError>;

    /// Stores small content held in memory (manifests, configs), verified as any blob.
    fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if self.has(digest)? {
            return Ok(());
        }
        let mut writer = self.begin_write(digest, bytes.len() as u64)?;
        writer
            .write_all(bytes)
            .map_err(|source| write_error(digest, source))?;
        writer.commit()
    }

    /// Reads a whole blob into memory (for manifests and configs).
    fn read_all(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut reader = self.open(digest)?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::Io {
                operation: "reading blob",
                path: PathBuf::from(digest.to_string()),
                source,
            })?;
        Ok(bytes)
    }
}

/// Turns a writer's I/O error back into the [`StoreError`] it carries, if any.
fn write_error(digest: &Digest, source: io::Error) -> StoreError {
    match source.downcast::<StoreError>() {
        Ok(store_error) => store_error,
        Err(source) => StoreError::Io {
            operation: "writing blob",
            path: PathBuf::from(digest.to_string()),
            source,
        },
    }
}

/// Wraps a writer, hashing and counting what passes through, refusing bytes beyond the
/// announced size, and checking digest and size in [`finish`](VerifyingWriter::finish).
#[derive(Debug)]
pub struct VerifyingWriter<W> {
    inner: W,
    hasher: DigestHasher,
    expected: Digest,
    expected_size: u64,
    written: u64,
}

impl<W: Write> VerifyingWriter<W> {
    /// Starts verifying content that must be `expected_size` bytes hashing to `expected`.
    pub fn new(inner: W, expected: &Digest, expected_size: u64) -> Result<Self, StoreError> {
        Ok(VerifyingWriter {
            inner,
            hasher: DigestHasher::for_digest(expected)?,
            expected: expected.clone(),
            expected_size,
            written: 0,
        })
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and checks size and digest, giving the inner writer back when both match.
    pub fn finish(mut self) -> Result<W, StoreError> {
        if self.written != self.expected_size {
            return Err(StoreError::SizeMismatch {
                digest: self.expected,
                expected: self.expected_size,
                actual: self.written,
            });
        }
        let actual = self.hasher.finish();
        if actual != self.expected {
            return Err(StoreError::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        self.inner.flush().map_err(|source| StoreError::Io {
            operation: "flushing blob",
            path: PathBuf::from(self.expected.to_string()),
            source,
        })?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for VerifyingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let after = self.written + buf.len() as u64;
        if after > self.expected_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                StoreError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: self.expected_size,
                    actual: after,
                },
            ));
        }
        let count = self.inner.write(buf)?;
        self.hasher.update(&buf[..count]);
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An OCI image layout directory used as a blob store.
#[derive(Debug, Clone)]
pub struct OciDir {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
const TEMP_PREFIX: &str = ".tmp-";

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

impl OciDir {
    /// Opens the layout at `root`, creating the directory, `oci-layout` and an empty
    /// `index.json` when missing.
    pub fn create(root: impl Into<PathBuf>) -> Result<OciDir, StoreError> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs"))
            .map_err(io_error("creating directory", &root.join("blobs")))?;
        let dir = OciDir { root };
        let layout = dir.root.join("oci-layout");
        if !layout.exists() {
            dir.write_atomically(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = dir.root.join("index.json");
        if !index.exists() {
            dir.write_atomically(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        Ok(dir)
    }

    /// Opens an existing layout; fails when `oci-layout` is missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<OciDir, StoreError> {
        let root = root.into();
        let layout = root.join("oci-layout");
        if !layout.is_file() {
            return Err(StoreError::Layout {
                path: layout,
                reason: "not an OCI image layout (no oci-layout file)".to_owned(),
            });
        }
        Ok(OciDir { root })
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(digest.digest())
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_error("reading", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Layout {
            path,
            reason: e.to_string(),
        })
    }

    /// The manifest named `name` (`org.opencontainers.image.ref.name`) in `index.json`,
    /// or with `None` the only manifest there.
    pub fn resolve(&self, name: Option<&str>) -> Result<Descriptor, StoreError> {
        let index = self.index()?;
        let path = self.root.join("index.json");
        let manifests = index.manifests();
        match name {
            Some(name) => manifests
                .iter()
                .find(|d| ref_name(d) == Some(name))
                .cloned()
                .ok_or_else(|| StoreError::Layout {
                    path,
                    reason: format!("no manifest named {name:?}"),
                }),
            None => match manifests.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(StoreError::Layout {
                    path,
                    reason: format!(
                        "{} manifests and no name given; choose one of: {}",
                        manifests.len(),
                        manifests
                            .iter()
                            .filter_map(ref_name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            },
        }
    }

    /// Records `descriptor` in `index.json` under `name`, replacing an entry with the
    /// same name (read-modify-write, atomically replaced).
    pub fn set_ref(&self, name: &str, descriptor: &Descriptor) -> Result<(), StoreError> {
        let mut index = self.index()?;
        let mut entry = descriptor.clone();
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME_ANNOTATION.to_owned(), name.to_owned());
        entry.set_annotations(Some(annotations));
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        manifests.push(entry);
        index.set_manifests(manifests);
        if index.media_type().is_none() {
            index.set_media_type(Some(MediaType::ImageIndex));
        }
        let path = self.root.join("index.json");
        let bytes = serde_json::to_vec(&index).map_err(|e| StoreError::Layout {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.write_atomically(&path, &bytes)
    }

    fn temp_path(&self, directory: &Path) -> PathBuf {
        let count = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        directory.join(format!(
            "{TEMP_PREFIX}{}-{count}-{nanos}",
            std::process::id()
        ))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let directory = path.parent().unwrap_or(&self.root);
        let temp = self.temp_path(directory);
        fs::write(&temp, bytes).map_err(io_error("writing", &temp))?;
        fs::rename(&temp, path).map_err(|source| {
            let _ = fs::remove_file(&temp);
            StoreError::Io {
                operation: "renaming into",
                path: path.to_owned(),
                source,
            }
        })
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

impl BlobStore for OciDir {
    fn has(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.blob_path(digest).is_file())
    }

    fn begin_write(&self, digest: &Digest, size: u64) -> Result<Box<dyn BlobWriter>, StoreError> {
        let final_path = self.blob_path(digest);
        let directory = final_path
            .parent()
            .expect("a blob path always has a parent")
            .to_owned();
        fs::create_dir_all(&directory).map_err(io_error("creating directory", &directory))?;
        let temp_path = self.temp_path(&directory);
        let file = File::create(&temp_path).map_err(io_error("creating", &temp_path))?;
        let writer = VerifyingWriter::new(BufWriter::with_capacity(256 * 1024, file), digest, size);
        match writer {
            Ok(writer) => Ok(Box::new(OciDirWriter {
                writer: Some(writer),
                temp_path,
                final_path,
            })),
            Err(error) => {
                let _ = fs::remove_file(&temp_path);
                Err(error)
            }
        }
    }

    fn open(&self, digest: &Digest) -> Result<Box<dyn BlobReader>, StoreError> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound {
                digest: digest.clone(),
            }),
            Err(source) => Err(StoreError::Io {
                operation: "opening",
                path,
                source,
            }),
        }
    }
}

/// A blob being written into an [`OciDir`]: a temporary file removed unless committed.
struct OciDirWriter {
    writer: Option<VerifyingWriter<BufWriter<File>>>,
    temp_path: PathBuf,
    final_path: PathBuf,
}

impl Write for OciDirWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(writer) => writer.write(buf),
            None => Err(io::Error::other("blob writer already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter for OciDirWriter {
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let writer = self
            .writer
            .take()
            .expect("a blob writer is committed at most once");
        // On error `self` drops here and removes the temporary file.
        let buffered = writer.finish()?;
        let file = buffered.into_inner().map_err(|e| StoreError::Io {
            operation: "flushing",
            path: self.temp_path.clone(),
            source: e.into_error(),
        })?;
        drop(file);
        fs::rename(&self.temp_path, &self.final_path).map_err(|source| StoreError::Io {
            operation: "renaming into",
            path: self.final_path.clone(),
            source,
        })
    }
}

impl Drop for OciDirWriter {
    fn drop(&mut self) {
        // After a successful rename the temporary path no longer exists; otherwise this
        // discards unverified bytes.
        let _ = fs::remove_file(&self.temp_path);
    }
}

/// Blobs held in memory, verified like any store's.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    blobs: Arc<Mutex<HashMap<Digest, Bytes>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A blob's bytes, if present.
    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.blobs
            .lock()
            .expect("memory store lock poisoned")
            .get(digest)
            .cloned()
    }
}

struct MemoryWriter {
    writer: VerifyingWriter<Vec<u8>>,
    blobs: Arc<Mutex<HashMap<Digest, Bytes>>>,
    digest: Digest,
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for MemoryWriter {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let bytes = self.writer.finish()?;
        self.blobs
            .lock()
            .expect("memory store lock poisoned")
            .insert(self.digest, Bytes::from(bytes));
        Ok(())
    }
}

impl BlobStore for MemoryStore {
    fn has(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.get(digest).is_some())
    }

    fn begin_write(&self, digest: &Digest, size: u64) -> Result<Box<dyn BlobWriter>, StoreError> {
        Ok(Box::new(MemoryWriter {
            writer: VerifyingWriter::new(Vec::new(), digest, size)?,
            blobs: self.blobs.clone(),
            digest: digest.clone(),
        }))
    }

    fn open(&self, digest: &Digest) -> Result<Box<dyn BlobReader>, StoreError> {
        let bytes = self.get(digest).ok_or_else(|| StoreError::NotFound {
            digest: digest.clone(),
        })?;
        Ok(Box::new(io::Cursor::new(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            names.push(entry.unwrap().file_name().to_string_lossy().into_owned());
        }
        names
    }

    #[test]
    fn verified_blobs_are_kept_and_read_back() {
        let temp = tempfile::tempdir().unwrap();
        let store = OciDir::create(temp.path()).unwrap();
        let digest = sha256_digest(b"hello");
        store.put(&digest, b"hello").unwrap();
        assert!(store.has(&digest).unwrap());
        assert_eq!(store.read_all(&digest).unwrap(), b"hello");
        assert_eq!(
            entries(&temp.path().join("blobs/sha256")),
            vec![digest.digest().to_owned()]
        );
    }

    #[test]
    fn mismatched_content_leaves_nothing_behind() {
        let temp = tempfile::tempdir().unwrap();
        let store = OciDir::create(temp.path()).unwrap();
        let digest = sha256_digest(b"hello");
        let error = store.put(&digest, b"jello").unwrap_err();
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error}"
        );
        let mut writer = store.begin_write(&digest, 5).unwrap();
        let error = writer.write_all(b"hello!").unwrap_err();
        assert!(
            error.to_string().contains("expected 5 bytes, got 6"),
            "{error}"
        );
        drop(writer);
        let mut writer = store.begin_write(&digest, 5).unwrap();
        writer.write_all(b"hel").unwrap();
        assert!(matches!(
            writer.commit(),
            Err(StoreError::SizeMismatch { actual: 3, .. })
        ));
        let writer = store.begin_write(&digest, 5).unwrap();
        drop(writer);
        assert!(!store.has(&digest).unwrap());
        assert!(entries(&temp.path().join("blobs/sha256")).is_empty());
    }

    #[test]
    fn memory_store_verifies_too() {
        let store = MemoryStore::new();
        let digest = sha256_digest(b"hello");
        assert!(matches!(
            store.put(&digest, b"jello"),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!store.has(&digest).unwrap());
        store.put(&digest, b"hello").unwrap();
        assert_eq!(store.read_all(&digest).unwrap(), b"hello");
        assert!(matches!(
            store.open(&sha256_digest(b"x")),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn index_refs_are_set_and_resolved() {
        let temp = tempfile::tempdir().unwrap();
        let store = OciDir::create(temp.path()).unwrap();
        let digest = sha256_digest(b"{}");
        let descriptor = Descriptor::new(MediaType::ImageManifest, 2, digest.clone());
        store.set_ref("a", &descriptor).unwrap();
        store.set_ref("b", &descriptor).unwrap();
        store.set_ref("a", &descriptor).unwrap();
        assert_eq!(store.index().unwrap().manifests().len(), 2);
        assert_eq!(store.resolve(Some("a")).unwrap().digest(), &digest);
        assert!(store.resolve(None).is_err());
        assert!(store.resolve(Some("c")).is_err());
        assert!(OciDir::open(temp.path()).is_ok());
        assert!(OciDir::open(temp.path().join("blobs")).is_err());
    }
}
