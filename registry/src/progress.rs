//! Progress events. The library never prints: callers pass a [`ProgressSink`] (a
//! callback; to use a channel, send from the callback) and render events as they like.
//! Callbacks run on the transfer's task, so they should be quick.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::digest::Digest;

/// Something that happened during a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// A blob transfer (download or upload) started.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// More bytes of a blob were transferred (emitted about every MiB).
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes transferred so far.
        transferred: u64,
        /// Its size.
        size: u64,
    },
    /// The blob was already present (locally for a pull, remotely for a push).
    BlobSkipped {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// The blob was mounted from another repository of the same registry.
    BlobMounted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The repository it was mounted from.
        from: String,
    },
    /// The blob was transferred and verified.
    BlobDone {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A manifest was stored under a tag or digest.
    ManifestPushed {
        /// The reference it was pushed as (`registry/repo:tag` or `@digest`).
        reference: String,
        /// Its digest.
        digest: Digest,
    },
    /// A request failed transiently and will be retried.
    Retrying {
        /// HTTP method.
        method: String,
        /// URL.
        url: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// How long until the next attempt.
        delay: Duration,
        /// Why (status or error).
        reason: String,
    },
}

/// Receives progress events.
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(ProgressEvent) + Send + Sync>);

impl ProgressSink {
    /// A sink calling `callback` for every event.
    pub fn new(callback: impl Fn(ProgressEvent) + Send + Sync + 'static) -> Self {
        ProgressSink(Arc::new(callback))
    }

    pub(crate) fn emit(&self, event: ProgressEvent) {
        (self.0)(event);
    }
}

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressSink(..)")
    }
}

/// Emits to an optional sink.
pub(crate) fn emit(sink: &Option<ProgressSink>, event: impl FnOnce() -> ProgressEvent) {
    if let Some(sink) = sink {
        sink.emit(event());
    }
}
