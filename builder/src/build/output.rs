//! The image itself: config, manifest and names in the store.

use super::*;

pub(super) fn write_image(shared: &Shared<'_>, state: &StageState) -> Result<BuildOutput, Error> {
    let request = shared.request;
    let mut config = state.config.clone();
    if !request.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &request.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    config.created = Some(
        state
            .created
            .clone()
            .or_else(|| config.created.clone())
            .unwrap_or_else(|| shared.now.clone()),
    );
    if let Some(epoch) = request.source_date_epoch {
        config.created = Some(rfc3339(epoch));
    }
    let config_bytes = config.to_bytes();
    let config_digest = shared.store.write_blob(&config_bytes)?;
    let format = request.format;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(format.manifest_media_type().into()),
        artifact_type: None,
        config: image::Descriptor {
            media_type: format.config_media_type().into(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        layers: state
            .layers
            .iter()
            .map(|l| image::Descriptor {
                media_type: format.layer_media_type(&l.media_type),
                digest: l.digest.clone(),
                size: l.size,
                annotations: None,
                platform: None,
                artifact_type: None,
            })
            .collect(),
        subject: None,
        annotations: None,
    };
    let manifest_bytes = manifest.to_bytes();
    let digest = shared.store.write_blob(&manifest_bytes)?;
    let descriptor = Descriptor {
        media_type: format.manifest_media_type().into(),
        digest,
        size: manifest_bytes.len() as u64,
        annotations: Default::default(),
        platform: None,
        artifact_type: None,
    };
    let mut tags = Vec::new();
    for tag in &request.tags {
        let name = store_name(tag);
        shared.store.tag(&name, &descriptor)?;
        tags.push(name);
    }
    Ok(BuildOutput {
        descriptor,
        config_digest,
        layers: state.layers.clone(),
        origins: state.origins.clone(),
        tags,
        steps_run: 0,
        steps_cached: 0,
        sbom: None,
    })
}
