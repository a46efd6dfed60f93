//! OCI 1.1 referrers: listing the artifacts that refer to a manifest (SBOMs,
//! signatures) and pushing one.
//!
//! Contract:
//!
//! - [`RegistryClient::referrers`] asks `GET /v2/<name>/referrers/<digest>` (with the
//!   `artifactType` filter, following `Link` pagination, filtering locally when the
//!   registry does not say `OCI-Filters-Applied: artifactType`). When the API answers
//!   404, it reads the tag-schema fallback: the index tagged `<alg>-<hex>` of the
//!   subject digest (none → no referrers).
//! - [`RegistryClient::push_referrer`] pushes the artifact manifest (which must have a
//!   `subject`) by digest; when the registry's answer lacks `OCI-Subject`, it adds the
//!   artifact's descriptor to the fallback tag's index (read-modify-write, creating
//!   it when absent) unless it is already listed.

use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use reqwest::header;
use reqwest::{Method, StatusCode};

use crate::RegistryClient;
use crate::client::{Request, Scopes};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{ManifestKind, RawManifest, media_types};
use crate::pull::{next_link, read_limited};
use crate::push::{PushOptions, PushReport};
use crate::reference::Reference;
use crate::store::BlobStore;

/// The tag the OCI 1.1 fallback uses for a subject's referrers index (`sha256-<hex>`).
pub fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.digest())
}

/// What [`RegistryClient::push_referrer`] did.
#[derive(Debug, Clone)]
pub struct ReferrerPush {
    /// The artifact manifest's push.
    pub push: PushReport,
    /// The fallback tag updated, when the registry lacks the referrers API.
    pub fallback_tag: Option<String>,
}

fn matches_type(descriptor: &Descriptor, artifact_type: Option<&str>) -> bool {
    match artifact_type {
        None => true,
        Some(wanted) => descriptor
            .artifact_type()
            .as_ref()
            .is_some_and(|actual| actual.to_string() == wanted),
    }
}

impl RegistryClient {
    /// The descriptors of manifests whose `subject` is `subject` in `repository`'s
    /// repository, optionally only those of `artifact_type`.
    pub async fn referrers(
        &self,
        repository: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let host = self.host(repository)?;
        let scopes = Scopes::pull(repository.repository());
        let mut url = self
            .url(
                &host,
                &format!("{}/referrers/{subject}", repository.repository()),
            )
            .await?;
        if let Some(artifact_type) = artifact_type {
            url.query_pairs_mut()
                .append_pair("artifactType", artifact_type);
        }
        let mut found = Vec::new();
        let mut first_page = true;
        loop {
            let request = Request::new(Method::GET, url.clone())
                .header(header::ACCEPT, media_types::OCI_INDEX);
            let response = self.send(&host, &scopes, &request).await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND && first_page {
                return self
                    .fallback_referrers(repository, subject, artifact_type)
                    .await;
            }
            if !status.is_success() {
                return Err(self.status_error(&host, &request, response, None).await);
            }
            first_page = false;
            let filtered = response
                .headers()
                .get("oci-filters-applied")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|f| f.trim() == "artifactType"));
            let next = next_link(response.headers(), &url);
            let body = read_limited(response, crate::manifest::MAX_MANIFEST_SIZE)
                .await
                .map_err(|detail| Error::Transport {
                    method: "GET".to_owned(),
                    url: url.to_string(),
                    attempts: 1,
                    detail,
                })?
                .ok_or_else(|| Error::ManifestTooLarge {
                    reference: format!("referrers of {subject}"),
                    limit: crate::manifest::MAX_MANIFEST_SIZE,
                })?;
            let index: ImageIndex =
                serde_json::from_slice(&body).map_err(|source| Error::InvalidManifest {
                    reference: format!("referrers of {}@{subject}", repository.full_name()),
                    kind: "image index",
                    source,
                })?;
            found.extend(
                index
                    .manifests()
                    .iter()
                    .filter(|d| filtered || matches_type(d, artifact_type))
                    .cloned(),
            );
            match next {
                Some(next) => url = next,
                None => return Ok(found),
            }
        }
    }

    async fn fallback_referrers(
        &self,
        repository: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let Some(index) = self.fallback_index(repository, subject).await? else {
            return Ok(Vec::new());
        };
        Ok(index
            .manifests()
            .iter()
            .filter(|d| matches_type(d, artifact_type))
            .cloned()
            .collect())
    }

    /// The fallback tag's index, `None` when the tag does not exist.
    async fn fallback_index(
        &self,
        repository: &Reference,
        subject: &Digest,
    ) -> Result<Option<ImageIndex>> {
        let tag_reference = repository.with_tag(&fallback_tag(subject))?;
        match self.get_manifest(&tag_reference).await {
            Ok(raw) => {
                if raw.kind(&tag_reference.to_string())? != ManifestKind::Index {
                    return Err(crate::manifest::unsupported(
                        &tag_reference.to_string(),
                        &format!(
                            "{} (a referrers fallback tag must hold an index)",
                            raw.media_type
                        ),
                    ));
                }
                Ok(Some(raw.index(&tag_reference.to_string())?))
            }
            Err(Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Pushes an artifact manifest that has a `subject` (with its blobs from `source`)
    /// to `repository`'s repository; see the [module docs](self).
    pub async fn push_referrer(
        &self,
        repository: &Reference,
        manifest: &RawManifest,
        source: &dyn BlobStore,
    ) -> Result<ReferrerPush> {
        let name = format!("{}@{}", repository.full_name(), manifest.digest);
        let (subject, artifact_type, annotations) = match manifest.kind(&name)? {
            ManifestKind::Image => {
                let image = manifest.image_manifest(&name)?;
                let artifact_type = image
                    .artifact_type()
                    .clone()
                    .unwrap_or_else(|| image.config().media_type().clone());
                (
                    image.subject().clone(),
                    artifact_type,
                    image.annotations().clone(),
                )
            }
            ManifestKind::Index => {
                let index = manifest.index(&name)?;
                let artifact_type = index
                    .artifact_type()
                    .clone()
                    .unwrap_or(MediaType::ImageIndex);
                (
                    index.subject().clone(),
                    artifact_type,
                    index.annotations().clone(),
                )
            }
        };
        let subject = subject.ok_or_else(|| Error::UnsupportedManifest {
            reference: name.clone(),
            media_type: manifest.media_type.clone(),
            hint: ": a referrer must have a subject".to_owned(),
        })?;
        let target = repository.repository_only();
        let push = self
            .push(&target, manifest, source, &PushOptions::default())
            .await?;
        if push.oci_subject.is_some() {
            return Ok(ReferrerPush {
                push,
                fallback_tag: None,
            });
        }

        let tag = fallback_tag(subject.digest());
        let mut index = match self.fallback_index(&target, subject.digest()).await? {
            Some(index) => index,
            None => serde_json::from_value(serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_types::OCI_INDEX,
                "manifests": [],
            }))
            .expect("a static empty index parses"),
        };
        if !index
            .manifests()
            .iter()
            .any(|d| d.digest() == &manifest.digest)
        {
            let mut descriptor = manifest.descriptor();
            descriptor.set_artifact_type(Some(artifact_type));
            descriptor.set_annotations(annotations.filter(|a| !a.is_empty()));
            let mut manifests = index.manifests().clone();
            manifests.push(descriptor);
            index.set_manifests(manifests);
            if index.media_type().is_none() {
                index.set_media_type(Some(MediaType::ImageIndex));
            }
            let bytes = serde_json::to_vec(&index).expect("an index always serialises");
            let raw = RawManifest::new(bytes, Some(media_types::OCI_INDEX));
            // Only the index: the manifests it lists are already in the repository.
            self.push_manifest(&target, &raw, std::slice::from_ref(&tag))
                .await?;
        }
        Ok(ReferrerPush {
            push,
            fallback_tag: Some(tag),
        })
    }
}
