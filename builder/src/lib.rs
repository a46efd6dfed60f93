//! kiln's build engine.
//!
//! A build flows through these modules, in order:
//!
//! - [`frontend`]: Dockerfiles and compose files in, typed build descriptions out
//!   (no execution).
//! - graph and solver: ops (base image, context, exec, copy, meta) with cache keys,
//!   run in parallel where independent.
//! - [`executor`]: runs `RUN` steps in a namespace sandbox (the one module allowed
//!   `unsafe`).
//! - [`layer`]: deterministic layer tars, compressed and hashed in one streaming pass;
//!   safe, whiteout-aware unpacking.
//! - [`store`]: the content store, itself a valid OCI image layout.
//! - [`project`]: a whole compose project: build graph, parallel scheduling, lock pins.
//! - [`verify`]: rebuild an image (or build twice) and explain layer by layer,
//!   file by file and field by field how the results differ.
//!
//! Libraries never print: progress is reported as [`progress::Event`]s.
//!
//! ```no_run
//! use kiln_builder::store::Store;
//!
//! let store = Store::open_default()?;
//! for image in store.images()? {
//!     println!("{} {}", image.name, image.digest);
//! }
//! # Ok::<(), kiln_builder::store::Error>(())
//! ```

pub mod build;
pub mod cache;
pub mod cache_mounts;
pub mod context;
pub mod copy;
pub mod digest;
pub mod executor;
pub mod export;
pub mod frontend;
pub mod image;
pub mod layer;
pub mod lint;
pub mod platform;
pub mod progress;
pub mod project;
pub mod rollback;
pub mod rootfs;
pub mod snapshot;
pub mod store;
pub mod tags;
pub mod verify;
