//! Exporters: write a built image out of the store as an OCI layout directory,
//! an OCI layout tar, or a tar that `docker load` accepts.
//!
//! The store keeps every image; exporters only copy. Tars are written
//! deterministically (sorted entries, zero mtimes, root ownership) to a temp
//! file beside the destination and renamed into place, so a failed export
//! leaves no half-written file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::image::Manifest;
use crate::store::{self, Descriptor, REF_NAME_ANNOTATION, Store};

/// Errors while exporting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the docker tar format holds single-platform images only; {digest} is an index")]
    IndexInDockerTar { digest: crate::digest::Digest },
}

/// Where and how to write an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout directory.
    OciDir(PathBuf),
    /// An OCI image layout in a tar file.
    OciTar(PathBuf),
    /// A tar that `docker load` reads (also an OCI layout inside, as Docker 25
    /// writes it).
    DockerTar(PathBuf),
}

impl Output {
    pub fn dest(&self) -> &Path {
        match self {
            Output::OciDir(p) | Output::OciTar(p) | Output::DockerTar(p) => p,
        }
    }
}

/// Exports `descriptor` from `store`; `names` are the image's references (the
/// first names it in an OCI layout, all of them are `RepoTags` in a docker tar).
pub fn export(
    store: &Store,
    descriptor: &Descriptor,
    names: &[String],
    output: &Output,
) -> Result<(), Error> {
    let first = names.first().map(String::as_str).unwrap_or("latest");
    match output {
        Output::OciDir(dir) => Ok(store.export_layout(descriptor, dir, first)?),
        Output::OciTar(path) => write_tar(path, |tar| {
            layout_entries(store, descriptor, &[first.to_owned()], tar)
        }),
        Output::DockerTar(path) => write_tar(path, |tar| {
            layout_entries(store, descriptor, names, tar)?;
            let manifest =
                Manifest::parse(&store.read_blob(&descriptor.digest)?, &descriptor.digest)
                    .map_err(|e| match e {
                        crate::image::Error::UnsupportedManifest { digest, .. } => {
                            Error::IndexInDockerTar { digest }
                        }
                        other => other.into(),
                    })?;
            let blob = |d: &crate::digest::Digest| format!("blobs/sha256/{}", d.hex());
            let docker_manifest = serde_json::json!([{
                "Config": blob(&manifest.config.digest),
                "RepoTags": names,
                "Layers": manifest.layers.iter().map(|l| blob(&l.digest)).collect::<Vec<_>>(),
            }]);
            let bytes = serde_json::to_vec(&docker_manifest).expect("json");
            append_bytes(tar, "manifest.json", &bytes)
        }),
    }
}

type TarBuilder = tar::Builder<io::BufWriter<tempfile::NamedTempFile>>;

fn write_tar(
    path: &Path,
    fill: impl FnOnce(&mut TarBuilder) -> Result<(), Error>,
) -> Result<(), Error> {
    let io_err = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-export-")
        .tempfile_in(dir)
        .map_err(io_err)?;
    let mut tar = tar::Builder::new(io::BufWriter::new(tmp));
    tar.mode(tar::HeaderMode::Deterministic);
    fill(&mut tar)?;
    let buffered = tar.into_inner().map_err(io_err)?;
    let tmp = buffered.into_inner().map_err(|e| io_err(e.into_error()))?;
    tmp.as_file().sync_data().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

fn header(path: &str, size: u64, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let _ = header.set_path(path);
    header.set_cksum();
    header
}

fn append_bytes(tar: &mut TarBuilder, path: &str, bytes: &[u8]) -> Result<(), Error> {
    let mut h = header(path, bytes.len() as u64, tar::EntryType::Regular);
    tar.append_data(&mut h, path, bytes)
        .map_err(|source| Error::Io {
            path: PathBuf::from(path),
            source,
        })
}

fn layout_entries(
    store: &Store,
    descriptor: &Descriptor,
    names: &[String],
    tar: &mut TarBuilder,
) -> Result<(), Error> {
    let mut root = descriptor.clone();
    root.annotations.remove(REF_NAME_ANNOTATION);
    let manifests: Vec<Descriptor> = names
        .iter()
        .map(|name| {
            let mut d = root.clone();
            d.annotations
                .insert(REF_NAME_ANNOTATION.to_owned(), name.clone());
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": store::OCI_INDEX,
        "manifests": manifests,
    });
    append_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_bytes(
        tar,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    )?;
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(dir, 0, tar::EntryType::Directory);
        tar.append_data(&mut h, dir, io::empty())
            .map_err(|source| Error::Io {
                path: PathBuf::from(dir),
                source,
            })?;
    }
    let blobs: BTreeMap<_, _> = store
        .image_blobs(descriptor)?
        .into_iter()
        .map(|d| (d.digest.clone(), d))
        .collect();
    for (digest, blob) in blobs {
        let path = format!("blobs/sha256/{}", digest.hex());
        let file: File = store.open_blob(&digest)?;
        let mut h = header(&path, blob.size, tar::EntryType::Regular);
        tar.append_data(&mut h, &path, file)
            .map_err(|source| Error::Io {
                path: store.blob_path(&digest),
                source,
            })?;
    }
    Ok(())
}
