//! The compose frontend: loading, merging, interpolation and build requests.
