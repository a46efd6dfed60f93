//! OCI image layouts: writing one image (config, manifest, `index.json`) and
//! reading an image back by its `org.opencontainers.image.ref.name`.
//!
//! Contract: [`write_image`] writes canonical JSON (fixed key order, compact)
//! so the same layers and settings give the same config and manifest digests;
//! `index.json` names exactly that one image. Blobs and `index.json` are
//! written to a temporary file and renamed. Errors: [`Error::Io`] and
//! [`Error::Json`] naming the file; [`open`] gives [`Error::NoSuchImage`] or
//! [`Error::MalformedLayout`].

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::Error;
use crate::images::{ImageConfig, OciImage};
use crate::layer::{Blob, LayerBlob, SOURCE_DATE_RFC3339, sha256_digest};

pub(crate) const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Creates `dir` as an empty layout (`oci-layout`, `blobs/sha256/`).
pub(crate) fn create(dir: &Path) -> Result<PathBuf, Error> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(Error::io("create directory", &blobs))?;
    write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(blobs)
}

/// `blobs/sha256/<hex>` of `digest` in `layout`.
pub(crate) fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Makes `digest` (a blob of `from`) available in `to`, by hard link where
/// possible.
pub(crate) fn share_blob(from: &Path, to: &Path, digest: &str) -> Result<(), Error> {
    let source = blob_path(from, digest);
    let dest = blob_path(to, digest);
    if dest.exists() {
        return Ok(());
    }
    if fs::hard_link(&source, &dest).is_err() {
        fs::copy(&source, &dest).map_err(Error::io("copy blob", &source))?;
    }
    Ok(())
}

fn write_json_blob(layout: &Path, value: &Value) -> Result<Blob, Error> {
    let bytes = serde_json::to_vec(value).map_err(|source| Error::Json {
        path: layout.to_path_buf(),
        source,
    })?;
    let digest = sha256_digest(&bytes);
    write_atomic(&blob_path(layout, &digest), &bytes)?;
    Ok(Blob {
        digest,
        size: bytes.len() as u64,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(Error::io("create a temporary file in", dir))?;
    std::io::Write::write_all(&mut temp, bytes)
        .map_err(Error::io("write", temp.path().to_path_buf()))?;
    temp.persist(path)
        .map_err(|e| Error::io("write", path)(e.error))?;
    Ok(())
}

/// Writes config, manifest and `index.json` for an image of `layers` into
/// `layout` (whose blobs must already hold the layers).
pub(crate) fn write_image(
    layout: &Path,
    name: &str,
    architecture: &str,
    layers: &[LayerBlob],
    settings: &ImageConfig,
) -> Result<OciImage, Error> {
    let history: Vec<Value> = settings
        .history
        .iter()
        .map(|created_by| {
            json!({
                "created": SOURCE_DATE_RFC3339,
                "created_by": created_by,
                "comment": "kiln-testimages",
            })
        })
        .collect();
    let config = json!({
        "created": SOURCE_DATE_RFC3339,
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": settings.env,
            "Cmd": settings.cmd,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": history,
    });
    let config_blob = write_json_blob(layout, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CONFIG,
            "digest": config_blob.digest,
            "size": config_blob.size,
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": MEDIA_LAYER_GZIP,
            "digest": l.blob.digest,
            "size": l.blob.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_blob = write_json_blob(layout, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_blob.digest,
            "size": manifest_blob.size,
            "platform": { "architecture": architecture, "os": "linux" },
            "annotations": { REF_NAME: name },
        }],
    });
    let index_bytes = serde_json::to_vec(&index).map_err(|source| Error::Json {
        path: layout.join("index.json"),
        source,
    })?;
    write_atomic(&layout.join("index.json"), &index_bytes)?;
    Ok(OciImage {
        name: name.to_string(),
        layout: layout.to_path_buf(),
        manifest_digest: manifest_blob.digest,
        config_digest: config_blob.digest,
        layer_digests: layers.iter().map(|l| l.blob.digest.clone()).collect(),
    })
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the image named `name` from the layout at `layout`.
pub(crate) fn open(layout: &Path, name: &str) -> Result<OciImage, Error> {
    let malformed = |blob: &str, field| Error::MalformedLayout {
        layout: layout.to_path_buf(),
        blob: blob.to_string(),
        field,
    };
    let index = read_json(&layout.join("index.json"))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| malformed("index.json", "manifests"))?;
    let manifest_digest = manifests
        .iter()
        .find(|m| m["annotations"][REF_NAME].as_str() == Some(name))
        .ok_or_else(|| Error::NoSuchImage {
            layout: layout.to_path_buf(),
            name: name.to_string(),
        })?["digest"]
        .as_str()
        .ok_or_else(|| malformed("index.json", "digest"))?
        .to_string();
    let manifest = read_json(&blob_path(layout, &manifest_digest))?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| malformed(&manifest_digest, "config.digest"))?
        .to_string();
    let layer_digests = manifest["layers"]
        .as_array()
        .ok_or_else(|| malformed(&manifest_digest, "layers"))?
        .iter()
        .map(|l| {
            l["digest"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| malformed(&manifest_digest, "layers[].digest"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OciImage {
        name: name.to_string(),
        layout: layout.to_path_buf(),
        manifest_digest,
        config_digest,
        layer_digests,
    })
}

/// The layers of `image` with their sizes and diffIDs, read from its manifest
/// and config.
pub(crate) fn layers_of(image: &OciImage) -> Result<Vec<LayerBlob>, Error> {
    let malformed = |blob: &str, field| Error::MalformedLayout {
        layout: image.layout.clone(),
        blob: blob.to_string(),
        field,
    };
    let manifest = read_json(&blob_path(&image.layout, &image.manifest_digest))?;
    let config = read_json(&blob_path(&image.layout, &image.config_digest))?;
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| malformed(&image.manifest_digest, "layers"))?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .filter(|ids| ids.len() == layers.len())
        .ok_or_else(|| malformed(&image.config_digest, "rootfs.diff_ids"))?;
    layers
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| {
            Ok(LayerBlob {
                blob: Blob {
                    digest: layer["digest"]
                        .as_str()
                        .ok_or_else(|| malformed(&image.manifest_digest, "layers[].digest"))?
                        .to_string(),
                    size: layer["size"]
                        .as_u64()
                        .ok_or_else(|| malformed(&image.manifest_digest, "layers[].size"))?,
                },
                diff_id: diff_id
                    .as_str()
                    .ok_or_else(|| malformed(&image.config_digest, "rootfs.diff_ids[]"))?
                    .to_string(),
            })
        })
        .collect()
}
