//! kiln's OCI distribution client: references, auth, verified pull, push, mount and
//! referrers.
//!
//! - [`Reference`] parses and normalises image names as Docker does.
//! - [`RegistryClient`] talks to registries: [`pull`](RegistryClient::pull) streams
//!   verified blobs into a [`BlobStore`]; [`push`](RegistryClient::push) uploads from
//!   one (skipping blobs already there, mounting across repositories, chunked and
//!   resumable uploads); [`copy_manifest`](RegistryClient::copy_manifest) retags
//!   without moving layers; [`referrers`](RegistryClient::referrers) and
//!   [`push_referrer`](RegistryClient::push_referrer) implement OCI 1.1 referrers with
//!   the tag-schema fallback.
//! - [`auth`] finds credentials (Docker and containers config files, credential
//!   helpers, `GITHUB_TOKEN`) and writes logins.
//! - [`OciDir`] is a [`BlobStore`] over an OCI image layout directory.
//!
//! Nothing here prints; progress goes to an optional [`ProgressSink`].

pub mod auth;
mod client;
pub mod digest;
mod error;
pub mod manifest;
pub mod platform;
mod progress;
mod pull;
mod push;
pub mod reference;
pub mod referrers;
pub mod store;

pub use client::{ClientConfig, RegistryClient, RetryPolicy};
pub use digest::Digest;
pub use error::{Error, Result};
pub use manifest::{ManifestKind, RawManifest};
pub use platform::Platform;
pub use progress::{ProgressEvent, ProgressSink};
pub use pull::{FetchOutcome, PullOptions, PullStats, PulledImage};
pub use push::{PushOptions, PushReport, PushStats};
pub use reference::{Reference, ReferenceError};
pub use referrers::ReferrerPush;
pub use store::{
    BlobReader, BlobStore, BlobWriter, MemoryStore, OciDir, StoreError, VerifyingWriter,
};
