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
    let snapshots_of = |chain: &Digest| match &shared.base_snapshots {
        Some((base, chains)) if chains.contains(chain) => base,
        _ => &shared.snapshots,
    };
    let missing = || -> Vec<(&LayerRef, &Digest)> {
        layers
            .iter()
            .zip(&chains)
            .filter(|(_, chain)| !snapshots_of(chain).exists(chain))
            .collect()
    };
    if !missing().is_empty() {
        let _one_at_a_time = shared.unpacking.lock().expect("unpack lock");
        // Another stage may have unpacked some while this one waited.
        let missing = missing();
        // Each layer has a directory of its own: unpack them side by side (file
        // creation and inflating, both per layer, keep a core each busy).
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(missing.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let unpack_from_queue = || -> Result<(), Error> {
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((layer, chain)) = missing.get(index) else {
                    return Ok(());
                };
                unpack_snapshot(
                    shared,
                    snapshots_of(chain),
                    layer,
                    chain,
                    location,
                    instruction,
                )?;
            }
        };
        let outcomes: Vec<Result<(), Error>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| scope.spawn(unpack_from_queue))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("unpack thread panicked"))
                .collect()
        });
        outcomes.into_iter().collect::<Result<(), Error>>()?;
    }
    Ok(chains
        .iter()
        .rev()
        .map(|chain| snapshots_of(chain).path(chain))
        .collect())
}

/// Unpacks `layer` as the snapshot of `chain` (a no-op if it is there).
fn unpack_snapshot(
    shared: &Shared<'_>,
    snapshots: &Snapshots,
    layer: &LayerRef,
    chain: &Digest,
    location: &str,
    instruction: &str,
) -> Result<PathBuf, Error> {
    snapshots.ensure(chain, |dest: &Path| -> Result<(), Error> {
        let blob = shared.store.open_blob(&layer.digest)?;
        // The executor mounts overlayfs with `userxattr`, so opaque markers
        // of lower dirs live in the user namespace.
        let options = layer::ApplyOptions {
            overlay_xattrs: layer::OverlayXattrNamespace::User,
            ..layer::ApplyOptions::overlay_lower_dir(Some(layer.diff_id.clone()))
        };
        layer::unpack_layer(std::io::BufReader::new(blob), dest, &options).map_err(|source| {
            Error::Layer {
                location: location.to_owned(),
                instruction: instruction.to_owned(),
                source,
            }
        })?;
        Ok(())
    })
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
