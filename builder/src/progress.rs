//! Progress events: how the build engine reports what it does without printing.
//!
//! The CLI turns events into tty, plain or JSON progress. Libraries only send;
//! a [`Reporter`] is cheap to clone and safe to share between threads. Every
//! event carries the time it happened (milliseconds since the Unix epoch), so
//! JSON progress shows which steps ran at the same time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// One thing that happened during a build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A notice the user should see (e.g. which snapshot mode is used).
    Notice { message: String },
    /// A warning the user should see.
    Warning { message: String },
    /// A build (of one image, or one compose service) started.
    BuildStarted { build: String },
    /// A build ended.
    BuildFinished {
        build: String,
        digest: Option<String>,
        duration_ms: u64,
    },
    /// A step started (or was found in the cache, then `StepCached` follows).
    StepStarted {
        build: String,
        step: usize,
        stage: String,
        instruction: String,
        location: String,
    },
    /// A step's result came from the cache; nothing ran.
    StepCached { build: String, step: usize },
    /// A line of a step's output (stdout and stderr interleaved).
    StepOutput {
        build: String,
        step: usize,
        line: String,
    },
    /// A step ended successfully.
    StepFinished {
        build: String,
        step: usize,
        cached: bool,
        duration_ms: u64,
        bytes_written: u64,
    },
    /// A step failed.
    StepFailed {
        build: String,
        step: usize,
        error: String,
    },
    /// A blob transfer (pull or push) progressed.
    Transfer {
        reference: String,
        digest: String,
        action: String,
        bytes: u64,
        total: Option<u64>,
    },
}

/// An event and when it happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Timed {
    pub time_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Where events go.
#[derive(Clone)]
pub struct Reporter {
    sink: Arc<dyn Fn(Timed) + Send + Sync>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

impl Reporter {
    pub fn new(sink: impl Fn(Timed) + Send + Sync + 'static) -> Reporter {
        Reporter {
            sink: Arc::new(sink),
        }
    }

    /// A reporter that drops every event.
    pub fn silent() -> Reporter {
        Reporter::new(|_| {})
    }

    pub fn send(&self, event: Event) {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (self.sink)(Timed { time_ms, event })
    }

    pub fn notice(&self, message: impl Into<String>) {
        self.send(Event::Notice {
            message: message.into(),
        })
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.send(Event::Warning {
            message: message.into(),
        })
    }
}
