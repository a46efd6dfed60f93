//! Progress events: how the build engine reports what it does without printing.
//!
//! The CLI turns events into tty, plain or JSON progress. Libraries only send.

use std::sync::Arc;

/// One thing that happened during a build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A free-form notice the user should see (e.g. which snapshot mode is used).
    Notice { message: String },
    /// A warning the user should see.
    Warning { message: String },
}

/// Where events go. Cloneable and cheap to share between threads.
#[derive(Clone)]
pub struct Reporter {
    sink: Arc<dyn Fn(Event) + Send + Sync>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

impl Reporter {
    pub fn new(sink: impl Fn(Event) + Send + Sync + 'static) -> Reporter {
        Reporter {
            sink: Arc::new(sink),
        }
    }

    /// A reporter that drops every event.
    pub fn silent() -> Reporter {
        Reporter::new(|_| {})
    }

    pub fn send(&self, event: Event) {
        (self.sink)(event)
    }
}
