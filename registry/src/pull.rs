//! Pulling: manifests by tag or digest, platform selection, and verified, streamed,
//! concurrent blob downloads into a [`BlobStore`].
//!
//! Contract:
//!
//! - A digest-pinned reference's manifest must hash to the pin (computed with the
//!   pin's algorithm) or it is refused ([`Error::ManifestDigestMismatch`]); with a tag,
//!   a `Docker-Content-Digest` answer header must match the bytes too. Manifests over
//!   [`MAX_MANIFEST_SIZE`] are refused.
//! - An index (OCI index or Docker manifest list) resolves to the manifest for the
//!   requested platform (default: the host's), see [`crate::platform`].
//! - Blobs are streamed into [`BlobStore::begin_write`] writers, which verify digest
//!   and size before anything is kept; more bytes than the descriptor's size abort the
//!   download at once. A download that breaks off is resumed with a `Range` request
//!   (or restarted if the registry ignores it), within the retry policy. Blobs the
//!   store already has are not fetched. Layers download concurrently
//!   ([`ClientConfig::max_concurrent_downloads`](crate::ClientConfig)).
//! - The index (if any), manifest and config are stored in the store as blobs too,
//!   as their raw bytes.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt, stream};
use oci_spec::image::Descriptor;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};

use crate::client::{Host, Request, Scopes, content_length};
use crate::digest::{Digest, DigestHasher, digest_like, parse_digest};
use crate::error::{Error, Result};
use crate::manifest::{MAX_MANIFEST_SIZE, ManifestKind, RawManifest, media_types};
use crate::platform::{Platform, available_platforms, select_manifest};
use crate::progress::ProgressEvent;
use crate::reference::Reference;
use crate::store::{BlobStore, BlobWriter, MemoryStore, StoreError};
use crate::{RegistryClient, manifest};

/// How often (in bytes) a [`ProgressEvent::BlobProgress`] is emitted.
const PROGRESS_STEP: u64 = 1024 * 1024;

/// Options for [`RegistryClient::pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pick from an index; `None` means the host's.
    pub platform: Option<Platform>,
}

/// Counts of what a pull transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Blobs downloaded.
    pub blobs_fetched: usize,
    /// Blobs the store already had.
    pub blobs_present: usize,
    /// Bytes of blobs downloaded.
    pub bytes_fetched: u64,
}

/// What a pull produced. Every blob it names is in the store, verified.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference pulled.
    pub reference: Reference,
    /// The index the reference named, if it named one.
    pub index: Option<RawManifest>,
    /// The image manifest (for the chosen platform).
    pub manifest: RawManifest,
    /// The platform chosen from the index.
    pub platform: Option<Platform>,
    /// The config's descriptor.
    pub config: Descriptor,
    /// The config's raw bytes.
    pub config_bytes: Bytes,
    /// The layers' descriptors, base first.
    pub layers: Vec<Descriptor>,
    /// Transfer counts.
    pub stats: PullStats,
}

impl PulledImage {
    /// The digest the image is known by: the index's when the reference named an
    /// index, else the manifest's.
    pub fn digest(&self) -> &Digest {
        self.index
            .as_ref()
            .map_or(&self.manifest.digest, |index| &index.digest)
    }
}

/// Whether a blob had to be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The store already had it.
    Present,
    /// It was downloaded (this many bytes) and verified.
    Fetched(u64),
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The `rel="next"` target of a `Link` header, resolved against `base`.
pub(crate) fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    for value in headers.get_all(header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let is_next = parts.any(|param| {
                let param = param.trim().to_ascii_lowercase();
                param == "rel=\"next\"" || param == "rel=next"
            });
            if is_next {
                let target = target.trim_start_matches('<').trim_end_matches('>');
                return base.join(target).ok();
            }
        }
    }
    None
}

impl RegistryClient {
    /// Fetches a manifest (or index) by tag or digest, verified as described in the
    /// [module docs](self).
    pub async fn get_manifest(&self, reference: &Reference) -> Result<RawManifest> {
        let host = self.host(reference)?;
        self.get_manifest_on(&host, reference).await
    }

    pub(crate) async fn get_manifest_on(
        &self,
        host: &Host,
        reference: &Reference,
    ) -> Result<RawManifest> {
        let path = format!(
            "{}/manifests/{}",
            reference.repository(),
            reference.manifest_reference()
        );
        let url = self.url(host, &path).await?;
        let request = Request::new(Method::GET, url)
            .header(header::ACCEPT, &media_types::ACCEPTED.join(", "));
        let scopes = Scopes::pull(reference.repository());
        let policy = self.config().retry.clone();
        let mut attempt = 0;
        let (bytes, content_type, announced) = loop {
            attempt += 1;
            let response = self.send(host, &scopes, &request).await?;
            if !response.status().is_success() {
                return Err(self
                    .status_error(
                        host,
                        &request,
                        response,
                        Some(format!("manifest {reference}")),
                    )
                    .await);
            }
            if response
                .content_length()
                .is_some_and(|length| length > MAX_MANIFEST_SIZE)
            {
                return Err(Error::ManifestTooLarge {
                    reference: reference.to_string(),
                    limit: MAX_MANIFEST_SIZE,
                });
            }
            let content_type = header_str(response.headers(), "content-type").map(str::to_owned);
            let announced =
                header_str(response.headers(), "docker-content-digest").map(str::to_owned);
            match read_limited(response, MAX_MANIFEST_SIZE).await {
                Ok(Some(bytes)) => break (bytes, content_type, announced),
                Ok(None) => {
                    return Err(Error::ManifestTooLarge {
                        reference: reference.to_string(),
                        limit: MAX_MANIFEST_SIZE,
                    });
                }
                Err(error) if attempt < policy.max_attempts => {
                    tracing::debug!(%reference, %error, "manifest body broke off, retrying");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
                Err(error) => {
                    return Err(Error::Transport {
                        method: "GET".to_owned(),
                        url: request.url.to_string(),
                        attempts: attempt,
                        detail: error,
                    });
                }
            }
        };
        let mut raw = RawManifest::new(bytes, content_type.as_deref());
        if let Some(pin) = reference.digest() {
            let actual = digest_like(pin, &raw.bytes)?;
            if &actual != pin {
                return Err(Error::ManifestDigestMismatch {
                    reference: reference.to_string(),
                    expected: pin.clone(),
                    actual,
                });
            }
            raw.digest = pin.clone();
        } else if let Some(announced) = announced
            .as_deref()
            .and_then(|text| parse_digest(text).ok())
            && let Ok(actual) = digest_like(&announced, &raw.bytes)
            && actual != announced
        {
            return Err(Error::ManifestDigestMismatch {
                reference: reference.to_string(),
                expected: announced,
                actual,
            });
        }
        Ok(raw)
    }

    /// Looks up what a reference points to without downloading it (`HEAD`): media
    /// type, digest and size. Falls back to a verified `GET` when the registry does not
    /// announce the digest.
    pub async fn head_manifest(&self, reference: &Reference) -> Result<Descriptor> {
        let host = self.host(reference)?;
        let path = format!(
            "{}/manifests/{}",
            reference.repository(),
            reference.manifest_reference()
        );
        let url = self.url(&host, &path).await?;
        let request = Request::new(Method::HEAD, url)
            .header(header::ACCEPT, &media_types::ACCEPTED.join(", "));
        let response = self
            .send(&host, &Scopes::pull(reference.repository()), &request)
            .await?;
        if !response.status().is_success() {
            return Err(self
                .status_error(
                    &host,
                    &request,
                    response,
                    Some(format!("manifest {reference}")),
                )
                .await);
        }
        let headers = response.headers();
        let digest =
            header_str(headers, "docker-content-digest").and_then(|text| parse_digest(text).ok());
        let media_type = header_str(headers, "content-type").map(str::to_owned);
        let size = content_length(headers);
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size))
                if manifest::manifest_kind(&media_type).is_some()
                    && reference.digest().is_none_or(|pin| pin == &digest) =>
            {
                Ok(Descriptor::new(media_type.as_str().into(), size, digest))
            }
            _ => Ok(self.get_manifest_on(&host, reference).await?.descriptor()),
        }
    }

    /// Resolves a reference to an image manifest: returns the index it named (if any),
    /// the manifest for `platform` (default: the host's), and the platform chosen.
    pub async fn resolve_image(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
    ) -> Result<(Option<RawManifest>, RawManifest, Option<Platform>)> {
        let host = self.host(reference)?;
        let top = self.get_manifest_on(&host, reference).await?;
        match top.kind(&reference.to_string())? {
            ManifestKind::Image => Ok((None, top, None)),
            ManifestKind::Index => {
                let index = top.index(&reference.to_string())?;
                let wanted = platform.cloned().unwrap_or_else(Platform::host);
                let chosen =
                    select_manifest(&index, &wanted).ok_or_else(|| Error::NoMatchingPlatform {
                        reference: reference.to_string(),
                        wanted: wanted.to_string(),
                        available: available_platforms(&index).join(", "),
                    })?;
                let chosen_platform = chosen.platform().as_ref().map(Platform::from_oci);
                let child_reference = reference.with_digest(chosen.digest().clone());
                let child = self.get_manifest_on(&host, &child_reference).await?;
                if child.kind(&child_reference.to_string())? != ManifestKind::Image {
                    return Err(manifest::unsupported(
                        &child_reference.to_string(),
                        &format!("{} (an index nested in an index)", child.media_type),
                    ));
                }
                Ok((Some(top), child, chosen_platform))
            }
        }
    }

    /// Pulls an image into `store`; see the [module docs](self).
    pub async fn pull(
        &self,
        reference: &Reference,
        options: &PullOptions,
        store: &dyn BlobStore,
    ) -> Result<PulledImage> {
        let host = self.host(reference)?;
        let repository = reference.repository();
        let (index, manifest, platform) = self
            .resolve_image(reference, options.platform.as_ref())
            .await?;
        let image = manifest.image_manifest(&reference.to_string())?;
        let mut stats = PullStats::default();

        let config = image.config().clone();
        let outcome = self
            .fetch_blob_on(&host, repository, &config, store)
            .await?;
        count(&mut stats, outcome);
        let config_bytes = Bytes::from(
            store
                .read_all(config.digest())
                .map_err(|e| Error::blob(repository, config.digest(), e))?,
        );

        let concurrency = self.config().max_concurrent_downloads.max(1);
        let outcomes: Vec<FetchOutcome> = stream::iter(image.layers().iter())
            .map(|layer| self.fetch_blob_on(&host, repository, layer, store))
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        for outcome in outcomes {
            count(&mut stats, outcome);
        }

        // Manifests last: a manifest in the store means its blobs are there too.
        store
            .put(&manifest.digest, &manifest.bytes)
            .map_err(|e| Error::blob(repository, &manifest.digest, e))?;
        if let Some(index) = &index {
            store
                .put(&index.digest, &index.bytes)
                .map_err(|e| Error::blob(repository, &index.digest, e))?;
        }
        Ok(PulledImage {
            reference: reference.clone(),
            index,
            manifest,
            platform,
            config,
            config_bytes,
            layers: image.layers().clone(),
            stats,
        })
    }

    /// Downloads one blob of `reference`'s repository into `store`, verified.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        store: &dyn BlobStore,
    ) -> Result<FetchOutcome> {
        let host = self.host(reference)?;
        self.fetch_blob_on(&host, reference.repository(), descriptor, store)
            .await
    }

    /// Downloads one blob into memory, verified (for configs and other small content;
    /// refuses descriptors over `limit` bytes before fetching).
    pub async fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Bytes> {
        if descriptor.size() > limit {
            return Err(Error::BlobTooLarge {
                digest: descriptor.digest().clone(),
                url: format!("{}/blobs/{}", reference.full_name(), descriptor.digest()),
                expected: limit,
            });
        }
        let memory = MemoryStore::new();
        self.fetch_blob(reference, descriptor, &memory).await?;
        Ok(memory
            .get(descriptor.digest())
            .expect("a fetched blob is in the store"))
    }

    /// Whether `repository` (of `reference`'s registry) has a blob (`HEAD`).
    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool> {
        let host = self.host(reference)?;
        self.blob_exists_on(
            &host,
            reference.repository(),
            digest,
            &Scopes::pull(reference.repository()),
        )
        .await
    }

    pub(crate) async fn blob_exists_on(
        &self,
        host: &Host,
        repository: &str,
        digest: &Digest,
        scopes: &Scopes,
    ) -> Result<bool> {
        let url = self
            .url(host, &format!("{repository}/blobs/{digest}"))
            .await?;
        let request = Request::new(Method::HEAD, url);
        let response = self.send(host, scopes, &request).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(host, &request, response, None).await),
        }
    }

    pub(crate) async fn fetch_blob_on(
        &self,
        host: &Host,
        repository: &str,
        descriptor: &Descriptor,
        store: &dyn BlobStore,
    ) -> Result<FetchOutcome> {
        let digest = descriptor.digest();
        let size = descriptor.size();
        let store_error = |e: StoreError| Error::blob(repository, digest, e);
        if store.has(digest).map_err(store_error)? {
            self.emit(|| ProgressEvent::BlobSkipped {
                digest: digest.clone(),
                size,
            });
            return Ok(FetchOutcome::Present);
        }
        // Refuse unverifiable algorithms before downloading anything.
        DigestHasher::for_digest(digest)?;
        let url = self
            .url(host, &format!("{repository}/blobs/{digest}"))
            .await?;
        let scopes = Scopes::pull(repository);
        let policy = self.config().retry.clone();
        self.emit(|| ProgressEvent::BlobStarted {
            digest: digest.clone(),
            size,
        });

        let mut writer: Option<Box<dyn BlobWriter>> = None;
        let mut received: u64 = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = Request::new(Method::GET, url.clone());
            if received > 0 {
                request = request.header(header::RANGE, &format!("bytes={received}-"));
            }
            let mut response = self.send(host, &scopes, &request).await?;
            match response.status() {
                StatusCode::OK => {
                    if received > 0 {
                        // The registry ignored the range: start over.
                        writer = None;
                        received = 0;
                    }
                }
                StatusCode::PARTIAL_CONTENT => {
                    let range_start = header_str(response.headers(), "content-range")
                        .and_then(|value| value.trim().strip_prefix("bytes "))
                        .and_then(|value| value.split('-').next())
                        .and_then(|start| start.parse::<u64>().ok());
                    if range_start != Some(received) {
                        // An unusable partial answer: start over without a range.
                        writer = None;
                        received = 0;
                        if attempt >= policy.max_attempts {
                            return Err(self.status_error(host, &request, response, None).await);
                        }
                        continue;
                    }
                }
                _ => {
                    return Err(self
                        .status_error(
                            host,
                            &request,
                            response,
                            Some(format!("blob {digest} in {repository}")),
                        )
                        .await);
                }
            }
            if response
                .content_length()
                .is_some_and(|length| received + length > size)
            {
                return Err(Error::BlobTooLarge {
                    digest: digest.clone(),
                    url: url.to_string(),
                    expected: size,
                });
            }
            let writer = match &mut writer {
                Some(writer) => writer,
                None => writer.insert(store.begin_write(digest, size).map_err(store_error)?),
            };
            let mut next_progress = received + PROGRESS_STEP;
            let failure = loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if received + chunk.len() as u64 > size {
                            return Err(Error::BlobTooLarge {
                                digest: digest.clone(),
                                url: url.to_string(),
                                expected: size,
                            });
                        }
                        writer
                            .write_all(&chunk)
                            .map_err(|e| store_error(into_store_error(digest, e)))?;
                        received += chunk.len() as u64;
                        if received >= next_progress && self.has_progress() {
                            next_progress = received + PROGRESS_STEP;
                            self.emit(|| ProgressEvent::BlobProgress {
                                digest: digest.clone(),
                                transferred: received,
                                size,
                            });
                        }
                    }
                    Ok(None) if received == size => break None,
                    Ok(None) => break Some("the body ended early".to_owned()),
                    Err(error) => break Some(crate::client::flatten_error(&error)),
                }
            };
            match failure {
                None => break,
                Some(detail) if attempt >= policy.max_attempts => {
                    return Err(Error::Truncated {
                        digest: digest.clone(),
                        url: url.to_string(),
                        received,
                        expected: size,
                        detail,
                        attempts: attempt,
                    });
                }
                Some(detail) => {
                    let delay = policy.backoff(attempt);
                    tracing::debug!(%digest, received, %detail, "blob download broke off, resuming");
                    self.emit(|| ProgressEvent::Retrying {
                        method: "GET".to_owned(),
                        url: url.to_string(),
                        attempt,
                        delay,
                        reason: detail,
                    });
                    tokio::time::sleep(delay).await;
                }
            }
        }
        let writer = writer.expect("a completed download has a writer");
        writer.commit().map_err(store_error)?;
        self.emit(|| ProgressEvent::BlobDone {
            digest: digest.clone(),
            size,
        });
        Ok(FetchOutcome::Fetched(size))
    }

    /// Lists a repository's tags, following `Link` pagination.
    pub async fn list_tags(&self, repository: &Reference) -> Result<Vec<String>> {
        let host = self.host(repository)?;
        let scopes = Scopes::pull(repository.repository());
        let mut url = self
            .url(&host, &format!("{}/tags/list", repository.repository()))
            .await?;
        let mut tags = Vec::new();
        loop {
            let request = Request::new(Method::GET, url.clone());
            let response = self.send(&host, &scopes, &request).await?;
            if !response.status().is_success() {
                return Err(self
                    .status_error(
                        &host,
                        &request,
                        response,
                        Some(format!("repository {}", repository.full_name())),
                    )
                    .await);
            }
            let next = next_link(response.headers(), &url);
            #[derive(serde::Deserialize)]
            struct TagList {
                tags: Option<Vec<String>>,
            }
            let body = response.bytes().await.map_err(|e| Error::Transport {
                method: "GET".to_owned(),
                url: url.to_string(),
                attempts: 1,
                detail: crate::client::flatten_error(&e),
            })?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| Error::Status {
                method: "GET".to_owned(),
                url: url.to_string(),
                status: 200,
                detail: format!(": not a tag list: {e}"),
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
    }
}

fn count(stats: &mut PullStats, outcome: FetchOutcome) {
    match outcome {
        FetchOutcome::Present => stats.blobs_present += 1,
        FetchOutcome::Fetched(bytes) => {
            stats.blobs_fetched += 1;
            stats.bytes_fetched += bytes;
        }
    }
}

/// A writer's I/O error as the store error it carries (size overrun), or as I/O.
fn into_store_error(digest: &Digest, error: std::io::Error) -> StoreError {
    match error.downcast::<StoreError>() {
        Ok(store_error) => store_error,
        Err(source) => StoreError::Io {
            operation: "writing blob",
            path: digest.to_string().into(),
            source,
        },
    }
}

/// Reads a whole body of at most `limit` bytes; `Ok(None)` when it is larger.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Option<Bytes>, String> {
    let mut bytes = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (bytes.len() + chunk.len()) as u64 > limit {
                    return Ok(None);
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Some(bytes.freeze())),
            Err(error) => return Err(crate::client::flatten_error(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_headers_give_the_next_page() {
        let base = Url::parse("https://r.example/v2/a/tags/list").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LINK,
            HeaderValue::from_static("</v2/a/tags/list?last=b&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&headers, &base).unwrap().as_str(),
            "https://r.example/v2/a/tags/list?last=b&n=2"
        );
        headers.insert(
            header::LINK,
            HeaderValue::from_static("<https://x/y>; rel=prev"),
        );
        assert_eq!(next_link(&headers, &base), None);
    }
}
