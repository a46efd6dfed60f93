//! Frontends: turn a Dockerfile or a compose project into a typed build description.
//!
//! Frontends only read and validate; nothing here runs a step.

pub mod compose;
pub mod dockerfile;
