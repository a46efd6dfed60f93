//! CycloneDX 1.6 SBOMs and the package catalogers that fill them.
