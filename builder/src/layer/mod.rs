//! Layers: deterministic tar writing and safe, whiteout-aware unpacking.
