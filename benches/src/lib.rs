//! Shared helpers for kiln's benchmarks (see `benches/`).
