//! Lock pins: every active service's `image:` as `name:tag@sha256:…`.
//!
//! Built services are pinned to the digest the caller knows (from the build or the
//! push), else to what their image name points to in the store; services with only
//! `image:` are resolved on their registry with a manifest `HEAD` (falling back to a
//! verified `GET`). For a multi-platform image the index digest is pinned, so the
//! lock stays valid on every platform. An `image:` that already carries a digest is
//! kept as written. A reference without a tag is pinned as `:latest`, which is what
//! was resolved.
//!
//! Errors: [`Error::NotBuilt`] for a built service missing from the store,
//! [`Error::Reference`] / [`Error::Resolve`] for a pulled image that cannot be
//! resolved.

use std::collections::BTreeMap;

use kiln_registry::{Reference, RegistryClient};

use super::Error;
use crate::build::store_name;
use crate::frontend::compose::Project;
use crate::store::Store;

/// `name:tag` with `:latest` added when the last path component has no tag.
fn with_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Pins for [`Project::to_yaml_with_pins`]: service name → pinned reference.
/// `built` maps built services to their manifest digest (`sha256:…`).
pub fn pins(
    project: &Project,
    built: &BTreeMap<String, String>,
    store: &Store,
    client: &RegistryClient,
    runtime: &tokio::runtime::Runtime,
) -> Result<BTreeMap<String, String>, Error> {
    let mut pins = BTreeMap::new();
    for (name, service) in &project.services {
        if service.build.is_some() {
            let image = project.image_name(service);
            let digest = match built.get(name) {
                Some(digest) => digest.clone(),
                None => store
                    .resolve(&store_name(&image))
                    .map_err(|_| Error::NotBuilt {
                        service: name.clone(),
                        image: image.clone(),
                    })?
                    .digest
                    .to_string(),
            };
            pins.insert(name.clone(), format!("{}@{digest}", with_tag(&image)));
            continue;
        }
        let Some(image) = &service.image else {
            continue;
        };
        let image = &image.value;
        if image.contains('@') {
            pins.insert(name.clone(), image.clone());
            continue;
        }
        let reference = Reference::parse(image).map_err(|source| Error::Reference {
            service: name.clone(),
            reference: image.clone(),
            source: Box::new(source),
        })?;
        let descriptor = runtime
            .block_on(client.head_manifest(&reference))
            .map_err(|source| Error::Resolve {
                service: name.clone(),
                reference: image.clone(),
                source: Box::new(source),
            })?;
        pins.insert(
            name.clone(),
            format!("{}@{}", with_tag(image), descriptor.digest()),
        );
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_made_explicit() {
        assert_eq!(with_tag("postgres"), "postgres:latest");
        assert_eq!(with_tag("postgres:16"), "postgres:16");
        assert_eq!(
            with_tag("localhost:5000/shop/api"),
            "localhost:5000/shop/api:latest"
        );
        assert_eq!(
            with_tag("localhost:5000/shop/api:1.0"),
            "localhost:5000/shop/api:1.0"
        );
    }
}
