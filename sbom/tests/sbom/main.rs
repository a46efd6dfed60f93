//! Integration tests of `kiln-sbom`: catalogers against real tools (dpkg-query,
//! pip, the Go toolchain), attribution over synthetic layers, and documents
//! validated against the CycloneDX 1.6 schema.

mod attribution;
mod common;
mod document;
mod ecosystems;
mod real_tools;
