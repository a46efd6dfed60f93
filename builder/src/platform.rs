//! Platforms (`os/arch[/variant]`) as Docker names and normalises them.
//!
//! One type for the whole of kiln: the registry client's, which also selects
//! manifests from an index by it.

pub use kiln_registry::Platform;
pub use kiln_registry::platform::PlatformError;
