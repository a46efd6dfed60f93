//! Extended attributes of a path, never following a final symlink.
//!
//! File systems without xattr support (`ENOTSUP`) read as having none.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// Every xattr of `path` as (name, value), sorted by name.
pub fn list(path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(len) => break len,
            Err(rustix::io::Errno::RANGE) => {
                let needed = rustix::fs::llistxattr_query(path)?;
                names.resize(needed.max(names.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsString::from_vec(name.to_vec());
        if let Some(value) = get(path, &name)? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

/// One xattr's value, `None` when absent.
pub fn get(path: &Path, name: &std::ffi::OsStr) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(len) => {
                value.truncate(len);
                return Ok(Some(value));
            }
            Err(rustix::io::Errno::RANGE) => {
                let needed = rustix::fs::lgetxattr_query(path, name)?;
                value.resize(needed.max(value.len() * 2), 0);
            }
            Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets one xattr on `path` (not following a final symlink).
pub fn set(path: &Path, name: &std::ffi::OsStr, value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

/// Whether an xattr belongs to overlayfs's own bookkeeping (opaque markers,
/// redirects, origins) rather than to the file.
pub fn is_overlay_internal(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}
