//! The solver: turns a Dockerfile's stages into ops, runs independent stages in
//! parallel, reuses cached steps, and assembles the image.

mod request;

pub use request::*;
