//! Test fixtures and harness for kiln: base images made from Debian packages and a
//! real registry started on loopback.
//!
//! No public registry is reachable from the test machines, so the base images the
//! tests build on are made here, from Debian's own packages:
//!
//! - [`images::busybox`]: `/bin/busybox` from Debian's `busybox-static` plus one
//!   symlink per applet; tiny and cheap, made once per test process.
//! - [`images::debian`]: `debootstrap --variant=minbase bookworm`, cleaned of
//!   logs and caches; slow the first time, then cached on disk.
//! - [`images::python`]: the `debian` layer plus a second layer with `python3`,
//!   `python3-venv`, `python3-pip` and `ca-certificates`; cached on disk.
//!
//! Each image is an OCI image layout written deterministically (sorted tar
//! entries, numeric ids, mtimes clamped to [`SOURCE_DATE_EPOCH`], gzip without
//! name or time), so the same inputs give the same digests.
//!
//! [`registry::TestRegistry`] runs Debian's `docker-registry` (distribution 2.8)
//! on a free loopback port in one of three [`registry::Mode`]s: plain HTTP, TLS
//! with basic auth, or bearer tokens from an issuer served by the harness.
//! [`images::push`] copies an image there with the real `skopeo`.
//!
//! [`docker::DockerDaemon`] starts a real `dockerd` (as root) with a data
//! root, exec root and socket of its own, for tests that pull, run and build
//! with a real Docker engine.
//!
//! Caches live under `$KILN_TESTIMAGES_CACHE`, else
//! `$XDG_CACHE_HOME/kiln-testimages`, else `$HOME/.cache/kiln-testimages`.
//! Images handed out by this crate are shared between tests: treat their layout
//! directories as read-only (copy one if a test must modify it).
//!
//! Errors: every fallible function returns [`Error`], whose variants name the
//! file, command, URL or image concerned.

pub mod docker;
pub mod images;
pub mod registry;
pub mod schema;

mod command;
mod error;
mod layer;
mod layout;
mod pki;
mod rootfs;
mod token;

use std::path::{Path, PathBuf};

pub use error::Error;
pub use layer::{SOURCE_DATE_EPOCH, SOURCE_DATE_RFC3339};

/// Finds the project's shared directory (the one holding `conformance/`).
///
/// Walks up from this crate's manifest directory (as compiled, then as given
/// by `CARGO_MANIFEST_DIR` at run time) and from the current directory, and
/// returns the first `A/shared` for which `A/shared/conformance` is a
/// directory. `$KILN_SHARED_DIR`, when set to such a directory, wins.
/// Returns `None` when there is none: tests should then skip, not fail.
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KILN_SHARED_DIR").map(PathBuf::from)
        && dir.join("conformance").is_dir()
    {
        return Some(dir);
    }
    let mut starts: Vec<PathBuf> = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        starts.push(PathBuf::from(dir));
    }
    if let Ok(dir) = std::env::current_dir() {
        starts.push(dir);
    }
    starts
        .iter()
        .find_map(|start| start.ancestors().find_map(shared_under))
}

fn shared_under(ancestor: &Path) -> Option<PathBuf> {
    let shared = ancestor.join("shared");
    shared.join("conformance").is_dir().then_some(shared)
}

/// The root of the on-disk caches (see the crate docs for how it is chosen).
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_TESTIMAGES_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("kiln-testimages");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/kiln-testimages"),
        None => std::env::temp_dir().join("kiln-testimages-cache"),
    }
}

/// Flattens image `name` of the OCI layout `layout` into the bundle directory
/// `bundle` with `umoci unpack` (a real tool; as root it keeps owners) and returns
/// the bundle's `rootfs`.
pub fn umoci_unpack(layout: &Path, name: &str, bundle: &Path) -> Result<PathBuf, Error> {
    command::run(
        std::process::Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{name}", layout.display()))
            .arg(bundle),
    )?;
    Ok(bundle.join("rootfs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_dir_is_found_from_the_checkout() {
        // The checkout lives beside `shared/` on the project machines; elsewhere
        // there is nothing to find and `None` is the right answer.
        let beside = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .any(|a| a.join("shared/conformance").is_dir());
        let found = shared_dir();
        assert_eq!(found.is_some(), beside);
        if let Some(dir) = found {
            assert!(dir.join("conformance").is_dir());
            assert!(dir.ends_with("shared"));
        }
    }
}
