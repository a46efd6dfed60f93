//! Snapshots of a stage's layers, and writing a step's changes as a layer.

use super::*;

/// Snapshot directories for `layers` (top-most first), unpacking any missing.
/// A base image's layers go to the base store's snapshots when the request
/// has one: they are inputs, unpacked from verified blobs, so a build into a
/// fresh store (`kiln verify`) need not unpack (and delete) them again.
pub(super) fn ensure_snapshots(
    shared: &Shared<'_>,
    layers: &[LayerRef],
    location: &str,
    instruction: &str,
) -> Result<Vec<PathBuf>, Error> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chains = chain_ids(&diff_ids);
    let mut dirs = Vec::with_capacity(layers.len());
    for (layer, chain) in layers.iter().zip(&chains) {
        let snapshots = match &shared.base_snapshots {
            Some((base, chains)) if chains.contains(chain) => base,
            _ => &shared.snapshots,
        };
        let dir = snapshots.ensure(chain, |dest: &Path| -> Result<(), Error> {
            let blob = shared.store.open_blob(&layer.digest)?;
            // The executor mounts overlayfs with `userxattr`, so opaque markers
            // of lower dirs live in the user namespace.
            let options = layer::ApplyOptions {
                overlay_xattrs: layer::OverlayXattrNamespace::User,
                ..layer::ApplyOptions::overlay_lower_dir(Some(layer.diff_id.clone()))
            };
            layer::unpack_layer(std::io::BufReader::new(blob), dest, &options).map_err(
                |source| Error::Layer {
                    location: location.to_owned(),
                    instruction: instruction.to_owned(),
                    source,
                },
            )?;
            Ok(())
        })?;
        dirs.push(dir);
    }
    dirs.reverse();
    Ok(dirs)
}

pub(super) fn rootfs_view(
    shared: &Shared<'_>,
    layers: &[LayerRef],
    location: &str,
    instruction: &str,
) -> Result<RootfsView, Error> {
    Ok(RootfsView::new(ensure_snapshots(
        shared,
        layers,
        location,
        instruction,
    )?))
}

pub(super) fn write_options(shared: &Shared<'_>) -> layer::WriteOptions {
    layer::WriteOptions {
        compression: match shared.request.compression {
            Compression::Gzip => layer::Compression::gzip(),
            Compression::Zstd => layer::Compression::zstd(),
        },
        format: match shared.request.format {
            Format::Oci => layer::ManifestFormat::Oci,
            Format::Docker => layer::ManifestFormat::Docker,
        },
        source_date_epoch: shared.request.source_date_epoch.map(layer::SourceDateEpoch),
        exclude: Vec::new(),
    }
}

/// Writes the layer of `dir` into the store; `None` when the step changed nothing.
pub(super) fn store_layer(
    shared: &Shared<'_>,
    dir: &Path,
    location: &str,
    instruction: &str,
) -> Result<Option<LayerRef>, Error> {
    let writer = shared.store.blob_writer()?;
    let (info, writer) =
        layer::write_layer(dir, &write_options(shared), writer).map_err(|source| Error::Layer {
            location: location.to_owned(),
            instruction: instruction.to_owned(),
            source,
        })?;
    if info.is_empty() {
        return Ok(None);
    }
    let (digest, size) = writer.commit(Some(&info.digest), Some(info.size))?;
    Ok(Some(LayerRef {
        digest,
        diff_id: info.diff_id.clone(),
        size,
        media_type: info.media_type.to_string(),
    }))
}
