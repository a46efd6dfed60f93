//! CycloneDX 1.6 SBOMs and the package catalogers that fill them.
//!
//! `kiln-sbom` knows nothing of builds. It offers three layers:
//!
//! 1. **Catalogers** ([`Catalogers`]) that recognise package metadata by path
//!    and read only those files: Debian (`dpkg` status, `status.d`, DEP-5
//!    copyright), Alpine (`apk` installed database), Python (`dist-info`,
//!    `egg-info`), npm (`node_modules`, lock files), Go binaries (build info)
//!    and Rust binaries built with cargo-auditable (`.dep-v0`), plus the
//!    distribution from `os-release`.
//! 2. **Attribution** ([`Inventory`]): fed layers in order through a
//!    [`LayerView`] — a tar stream ([`TarLayer`]), a layer directory or a root
//!    filesystem ([`DirTree`]) — it knows after each layer which packages are
//!    present and which layer (and so which instruction) introduced each one,
//!    at a cost proportional to the layer's own entries.
//! 3. **Document** ([`bom::build`], [`bom::write()`]): a deterministic CycloneDX 1.6
//!    JSON document for an image ([`ImageDescription`]): serial number derived
//!    from the image digest, timestamp given by the caller, components sorted,
//!    layer and instruction of each component as properties, dependencies,
//!    evidence, and the build steps as a formulation.
//!
//! Nothing here prints: failures are [`Error`]s, per-file problems
//! [`Diagnostic`]s kept by the inventory.

pub mod bom;
mod catalog;
pub mod cyclonedx;
mod error;
mod inventory;
pub mod layer;
pub mod license;
pub mod package;
pub mod purl;

pub use bom::{BaseImage, BuildStep, ImageDescription};
pub use catalog::Catalogers;
pub use error::{CatalogError, Diagnostic, Error};
pub use inventory::{
    CatalogedPackage, Inventory, LayerDelta, LayerInfo, LayerSummary, catalog_tree,
};
pub use layer::{Content, DirTree, EntryKind, LayerEntry, LayerView, LayerVisitor, TarLayer};
pub use package::{ComponentKind, Dependency, Ecosystem, License, Package, SourcePackage};
pub use purl::Purl;
