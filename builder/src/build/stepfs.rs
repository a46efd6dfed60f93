//! A `RUN` step's root file system, in one of two modes.
//!
//! - **overlay** (the fast path): the stage's layer snapshots are overlayfs lower
//!   dirs and the step writes into a fresh upper dir, which *is* the layer diff and
//!   becomes the new layer's snapshot.
//! - **copy** (the fallback, where overlayfs cannot be mounted: no user namespaces
//!   that allow it, or a file system that refuses to be an upper dir): the layers
//!   are flattened into a base tree, the step runs in a copy of it, and the layer is
//!   the metadata-walk diff of the two ([`layer::write_diff_layer`], which writes
//!   the same bytes the overlay path would).
//!
//! `KILN_SNAPSHOTTER=overlay|copy|auto` chooses; `auto` (the default) starts with
//! overlay and falls back to copy for the rest of the build the first time the
//! overlay cannot be mounted, saying so in a warning event.

use std::sync::atomic::Ordering;

use super::*;

/// How a step's root file system is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Overlay,
    Copy,
}

/// What the user asked for with `KILN_SNAPSHOTTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Choice {
    Auto,
    Forced(Mode),
}

impl Choice {
    pub(super) fn from_env() -> Result<Choice, Error> {
        match std::env::var("KILN_SNAPSHOTTER").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(Choice::Auto),
            Ok("overlay") => Ok(Choice::Forced(Mode::Overlay)),
            Ok("copy") => Ok(Choice::Forced(Mode::Copy)),
            Ok(other) => Err(Error::InvalidSnapshotter {
                value: other.to_owned(),
            }),
        }
    }
}

/// Says which mode RUN steps use when the user forced one (under `auto` the
/// fallback warns when it happens).
pub(super) fn announce(shared: &Shared<'_>) {
    if let Choice::Forced(mode) = shared.snapshotter {
        let name = match mode {
            Mode::Overlay => "overlay",
            Mode::Copy => "copy",
        };
        shared.reporter.send(Event::Notice {
            message: format!("RUN steps use {name} mode (KILN_SNAPSHOTTER={name})"),
        });
    }
}

/// The mode the next step uses.
pub(super) fn current_mode(shared: &Shared<'_>) -> Mode {
    match shared.snapshotter {
        Choice::Forced(mode) => mode,
        Choice::Auto if shared.copy_fallback.load(Ordering::Relaxed) => Mode::Copy,
        Choice::Auto => Mode::Overlay,
    }
}

/// Whether `error` says the overlay could not be mounted, and copy mode may
/// work where overlay did not.
pub(super) fn overlay_refused(shared: &Shared<'_>, error: &executor::Error) -> bool {
    shared.snapshotter == Choice::Auto
        && matches!(
            error,
            executor::Error::Setup {
                stage: executor::SetupStage::MountRootfs,
                ..
            }
        )
}

/// Switches the rest of the build to copy mode, once, with a warning.
pub(super) fn fall_back_to_copy(shared: &Shared<'_>, error: &executor::Error) {
    if !shared.copy_fallback.swap(true, Ordering::Relaxed) {
        shared.reporter.warn(format!(
            "overlayfs could not be mounted ({error}); using copy mode for RUN steps \
             (slower: each step copies its base tree)"
        ));
    }
}

/// A step's file system while the step runs.
pub(super) struct StepFs {
    scratch: tempfile::TempDir,
    kind: Kind,
}

enum Kind {
    Overlay {
        upper: PathBuf,
    },
    Copy {
        base: PathBuf,
        root: PathBuf,
        copied_at: Option<layer::FsTimestamp>,
    },
}

impl StepFs {
    /// Makes the root file system for a step over `layers`.
    pub(super) fn prepare(
        shared: &Shared<'_>,
        layers: &[LayerRef],
        mode: Mode,
        location: &str,
        instruction: &str,
    ) -> Result<(StepFs, executor::Rootfs), Error> {
        let scratch = shared.snapshots.scratch_dir("run-")?;
        match mode {
            Mode::Overlay => {
                let mut lowers = ensure_snapshots(shared, layers, location, instruction)?;
                let upper = scratch.path().join("upper");
                let work = scratch.path().join("work");
                let empty = scratch.path().join("empty");
                for dir in [&upper, &work, &empty] {
                    std::fs::create_dir(dir).map_err(io_err(dir))?;
                }
                if lowers.is_empty() {
                    // overlayfs needs a lower dir; `FROM scratch` has none.
                    lowers.push(empty);
                }
                let rootfs = executor::Rootfs::Overlay {
                    lowers,
                    upper: upper.clone(),
                    work,
                };
                Ok((
                    StepFs {
                        scratch,
                        kind: Kind::Overlay { upper },
                    },
                    rootfs,
                ))
            }
            Mode::Copy => {
                let base = scratch.path().join("base");
                let root = scratch.path().join("root");
                std::fs::create_dir(&base).map_err(io_err(&base))?;
                for layer in layers {
                    let blob = shared.store.open_blob(&layer.digest)?;
                    layer::apply_layer(
                        std::io::BufReader::new(blob),
                        &base,
                        &layer::ApplyOptions::flatten(Some(layer.diff_id.clone())),
                    )
                    .map_err(|source| Error::Layer {
                        location: location.to_owned(),
                        instruction: instruction.to_owned(),
                        source,
                    })?;
                }
                let report = layer::copy_tree(&base, &root).map_err(|source| Error::Layer {
                    location: location.to_owned(),
                    instruction: instruction.to_owned(),
                    source,
                })?;
                let rootfs = executor::Rootfs::Dir(root.clone());
                Ok((
                    StepFs {
                        scratch,
                        kind: Kind::Copy {
                            base,
                            root,
                            copied_at: report.finished_at,
                        },
                    },
                    rootfs,
                ))
            }
        }
    }

    /// Writes the step's layer; returns it with the snapshot dir to commit under
    /// its chain ID (overlay mode only: in copy mode the snapshot is unpacked from
    /// the layer if a later overlay step ever needs it).
    pub(super) fn finish(
        self,
        shared: &Shared<'_>,
        location: &str,
        instruction: &str,
    ) -> Result<StepResult, Error> {
        match &self.kind {
            Kind::Overlay { upper } => {
                let layer = store_layer(shared, upper, location, instruction)?;
                // The upper dir becomes the snapshot; keep it inside a scratch dir
                // until the caller commits it under its chain ID.
                let snapshot = shared.snapshots.scratch_dir("snap-")?;
                std::fs::remove_dir(snapshot.path()).map_err(io_err(snapshot.path()))?;
                std::fs::rename(upper, snapshot.path()).map_err(io_err(upper))?;
                Ok((Some(snapshot), layer))
            }
            Kind::Copy {
                base,
                root,
                copied_at,
            } => {
                let writer = shared.store.blob_writer()?;
                let (info, writer) = layer::write_diff_layer(
                    base,
                    root,
                    &write_options(shared),
                    &layer::DiffOptions {
                        replaced_after: *copied_at,
                    },
                    writer,
                )
                .map_err(|source| Error::Layer {
                    location: location.to_owned(),
                    instruction: instruction.to_owned(),
                    source,
                })?;
                let layer = if info.is_empty() {
                    None
                } else {
                    let (digest, size) = writer.commit(Some(&info.digest), Some(info.size))?;
                    Some(LayerRef {
                        digest,
                        diff_id: info.diff_id.clone(),
                        size,
                        media_type: info.media_type.to_string(),
                    })
                };
                drop(self.scratch);
                Ok((None, layer))
            }
        }
    }
}
