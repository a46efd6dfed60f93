//! The compose frontend: loading, merging, interpolation and build requests.

pub mod diag;
pub mod dotenv;
pub mod interpolate;
pub mod schema;
pub mod yaml;
