//! Pushing: blobs from a [`BlobStore`], then the raw manifest under each tag; and
//! copying manifests between tags, repositories and registries.
//!
//! Contract:
//!
//! - Each blob (config and layers; for an index, those of every child manifest,
//!   whose bytes must be in the source store) is first checked with `HEAD` and skipped
//!   when present. A blob listed in [`PushOptions::mount_from`] is mounted
//!   (`POST …/blobs/uploads/?mount=<digest>&from=<repo>`); when the registry refuses
//!   (202), the upload session it opened is used to upload instead.
//! - Blobs up to [`ClientConfig::monolithic_upload_max`](crate::ClientConfig) go in
//!   one `PUT`; larger ones in one streamed `PATCH`, or in `PATCH` chunks of
//!   [`ClientConfig::chunk_size`](crate::ClientConfig) with `Content-Range`, then a
//!   closing `PUT ?digest=`. A failed upload is resumed where the registry says it stopped
//!   (`GET` on the upload URL → `Range`), or restarted when the session is gone, within
//!   the retry policy; a blob that turns out to be present counts as uploaded.
//!   Uploads run concurrently
//!   ([`ClientConfig::max_concurrent_uploads`](crate::ClientConfig)).
//! - Child manifests of an index are `PUT` by digest; the top manifest under every
//!   tag (or by digest when there is none). The registry's `Docker-Content-Digest`
//!   answer must equal the digest of the bytes sent.
//! - [`RegistryClient::copy_manifest`] re-tags without moving layers within a
//!   repository, mounts them across repositories of one registry, and goes through a
//!   staging store between registries.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use oci_spec::image::Descriptor;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::RegistryClient;
use crate::client::{Host, Request, Scopes};
use crate::digest::{Digest, digest_like, parse_digest};
use crate::error::{Error, Result};
use crate::manifest::{ManifestKind, RawManifest};
use crate::progress::ProgressEvent;
use crate::reference::Reference;
use crate::store::{BlobReader, BlobStore, StoreError};

/// Options for [`RegistryClient::push`].
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Tags to push the manifest under. When empty, the target reference's tag is used;
    /// when that is absent too, the manifest is pushed by digest only.
    pub tags: Vec<String>,
    /// Blobs known to be in another repository of the same registry (repository path,
    /// e.g. `owner/base`): they are mounted instead of uploaded.
    pub mount_from: HashMap<Digest, String>,
}

/// Counts of what a push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Blobs whose bytes were uploaded.
    pub blobs_uploaded: usize,
    /// Blobs the registry already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Blob bytes sent (including any re-sent after a failure).
    pub bytes_uploaded: u64,
    /// Manifest `PUT`s (children by digest and the top one per tag).
    pub manifests_pushed: usize,
}

impl PushStats {
    fn add(&mut self, other: PushStats) {
        self.blobs_uploaded += other.blobs_uploaded;
        self.blobs_skipped += other.blobs_skipped;
        self.blobs_mounted += other.blobs_mounted;
        self.bytes_uploaded += other.bytes_uploaded;
        self.manifests_pushed += other.manifests_pushed;
    }
}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The pushed (top) manifest's digest.
    pub digest: Digest,
    /// Every reference it was stored under (`registry/repo:tag`, or `…@digest`).
    pub references: Vec<String>,
    /// Transfer counts.
    pub stats: PushStats,
    /// The `OCI-Subject` header of the last manifest `PUT`, when the registry sent one
    /// (it then maintains the referrers index itself).
    pub oci_subject: Option<String>,
}

/// Where the bytes of blobs and child manifests come from during a push.
#[derive(Clone, Copy)]
struct PushSource<'a> {
    store: &'a dyn BlobStore,
    /// For copies: fetch what the store lacks from this repository first.
    fetch_from: Option<(&'a Host, &'a str)>,
}

enum BlobOutcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

/// `registry/repo:tag` or `registry/repo@digest`.
fn reference_string(target: &Reference, tag_or_digest: &str) -> String {
    if tag_or_digest.contains(':') {
        format!("{}@{tag_or_digest}", target.full_name())
    } else {
        format!("{}:{tag_or_digest}", target.full_name())
    }
}

/// Reads `length` bytes at `offset`.
fn read_range(
    reader: &mut Box<dyn BlobReader>,
    digest: &Digest,
    offset: u64,
    length: u64,
) -> Result<Bytes> {
    let io = |source| read_error(digest, source);
    reader.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buffer = vec![0u8; length as usize];
    reader.read_exact(&mut buffer).map_err(io)?;
    Ok(Bytes::from(buffer))
}

fn read_error(digest: &Digest, source: std::io::Error) -> Error {
    Error::blob(
        "source store",
        digest,
        StoreError::Io {
            operation: "reading blob",
            path: digest.to_string().into(),
            source,
        },
    )
}

/// A request body streaming `length` bytes from `offset` of a blob, read on a blocking
/// thread in 1 MiB pieces (a few in flight).
fn stream_body(mut reader: Box<dyn BlobReader>, offset: u64, length: u64) -> reqwest::Body {
    const PIECE: u64 = 1024 * 1024;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = reader.seek(SeekFrom::Start(offset)) {
            let _ = sender.blocking_send(Err(error));
            return;
        }
        let mut remaining = length;
        while remaining > 0 {
            let mut piece = vec![0u8; PIECE.min(remaining) as usize];
            let item = reader.read_exact(&mut piece).map(|()| Bytes::from(piece));
            let failed = item.is_err();
            remaining -= if failed {
                remaining
            } else {
                PIECE.min(remaining)
            };
            // The receiver is gone when the request failed: stop reading.
            if sender.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    reqwest::Body::wrap_stream(stream)
}

fn is_retryable(error: &Error) -> bool {
    match error {
        Error::Transport { .. } => true,
        // A streamed upload cannot be re-sent on a 401; the loop renews the token.
        Error::Unauthorized { status: 401, .. } => true,
        Error::Status { status, .. } => {
            *status == 429 || *status == 416 || (*status >= 500 && *status != 501)
        }
        _ => false,
    }
}

impl RegistryClient {
    /// Pushes `manifest` and every blob it needs from `source` to `target`'s
    /// repository; see the [module docs](self).
    pub async fn push(
        &self,
        target: &Reference,
        manifest: &RawManifest,
        source: &dyn BlobStore,
        options: &PushOptions,
    ) -> Result<PushReport> {
        let source = PushSource {
            store: source,
            fetch_from: None,
        };
        self.push_inner(target, manifest, source, options).await
    }

    async fn push_inner(
        &self,
        target: &Reference,
        manifest: &RawManifest,
        source: PushSource<'_>,
        options: &PushOptions,
    ) -> Result<PushReport> {
        let host = self.host(target)?;
        let repository = target.repository();
        let mut tags: Vec<String> = options.tags.clone();
        if tags.is_empty()
            && let Some(tag) = target.tag()
        {
            tags.push(tag.to_owned());
        }
        for tag in &tags {
            target.with_tag(tag)?;
        }
        let mut scopes = Scopes::push(repository);
        for from in options.mount_from.values().collect::<BTreeSet<_>>() {
            scopes = scopes.and_pull(from);
        }
        let mut stats = PushStats::default();
        self.push_children(
            &host, target, manifest, source, options, &scopes, &mut stats,
        )
        .await?;

        let mut references = Vec::new();
        let mut oci_subject = None;
        let targets: Vec<String> = if tags.is_empty() {
            vec![manifest.digest.to_string()]
        } else {
            tags
        };
        for tag in &targets {
            let headers = self
                .put_manifest(&host, target, tag, manifest, &scopes)
                .await?;
            stats.manifests_pushed += 1;
            oci_subject = headers
                .get("oci-subject")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let reference = reference_string(target, tag);
            self.emit(|| ProgressEvent::ManifestPushed {
                reference: reference.clone(),
                digest: manifest.digest.clone(),
            });
            references.push(reference);
        }
        Ok(PushReport {
            digest: manifest.digest.clone(),
            references,
            stats,
            oci_subject,
        })
    }

    /// Stores `manifest` under each of `tags` (by digest when empty) without pushing
    /// anything it references: the caller knows those are in the repository already.
    pub async fn push_manifest(
        &self,
        target: &Reference,
        manifest: &RawManifest,
        tags: &[String],
    ) -> Result<PushReport> {
        let host = self.host(target)?;
        let scopes = Scopes::push(target.repository());
        let mut stats = PushStats::default();
        let mut references = Vec::new();
        let mut oci_subject = None;
        let targets: Vec<String> = if tags.is_empty() {
            vec![manifest.digest.to_string()]
        } else {
            for tag in tags {
                target.with_tag(tag)?;
            }
            tags.to_vec()
        };
        for tag in &targets {
            let headers = self
                .put_manifest(&host, target, tag, manifest, &scopes)
                .await?;
            stats.manifests_pushed += 1;
            oci_subject = headers
                .get("oci-subject")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let reference = reference_string(target, tag);
            self.emit(|| ProgressEvent::ManifestPushed {
                reference: reference.clone(),
                digest: manifest.digest.clone(),
            });
            references.push(reference);
        }
        Ok(PushReport {
            digest: manifest.digest.clone(),
            references,
            stats,
            oci_subject,
        })
    }

    /// Pushes what `manifest` references: blobs for an image; child manifests (with
    /// their blobs, then the child by digest) for an index.
    #[allow(clippy::too_many_arguments)]
    async fn push_children(
        &self,
        host: &Host,
        target: &Reference,
        manifest: &RawManifest,
        source: PushSource<'_>,
        options: &PushOptions,
        scopes: &Scopes,
        stats: &mut PushStats,
    ) -> Result<()> {
        let name = format!("{}@{}", target.full_name(), manifest.digest);
        match manifest.kind(&name)? {
            ManifestKind::Image => {
                let image = manifest.image_manifest(&name)?;
                let mut blobs: Vec<&Descriptor> = vec![image.config()];
                blobs.extend(image.layers().iter());
                let mut seen = BTreeSet::new();
                blobs.retain(|blob| seen.insert(blob.digest().to_string()));
                let concurrency = self.config().max_concurrent_uploads.max(1);
                let outcomes: Vec<BlobOutcome> = stream::iter(blobs)
                    .map(|blob| {
                        let mount_from = options.mount_from.get(blob.digest()).map(String::as_str);
                        self.push_blob(host, target, blob, source, mount_from, scopes)
                    })
                    .buffer_unordered(concurrency)
                    .try_collect()
                    .await?;
                for outcome in outcomes {
                    match outcome {
                        BlobOutcome::Skipped => stats.blobs_skipped += 1,
                        BlobOutcome::Mounted => stats.blobs_mounted += 1,
                        BlobOutcome::Uploaded(bytes) => {
                            stats.blobs_uploaded += 1;
                            stats.bytes_uploaded += bytes;
                        }
                    }
                }
                Ok(())
            }
            ManifestKind::Index => {
                let index = manifest.index(&name)?;
                for child in index.manifests() {
                    let bytes = match source.store.read_all(child.digest()) {
                        Ok(bytes) => bytes,
                        Err(StoreError::NotFound { .. }) => {
                            return Err(Error::MissingSource {
                                reference: target.to_string(),
                                what: "manifest",
                                digest: child.digest().clone(),
                            });
                        }
                        Err(e) => return Err(Error::blob(target.repository(), child.digest(), e)),
                    };
                    let media_type = child.media_type().to_string();
                    let mut child_raw = RawManifest::new(bytes, Some(&media_type));
                    let actual = digest_like(child.digest(), &child_raw.bytes)?;
                    if &actual != child.digest() {
                        return Err(Error::blob(
                            target.repository(),
                            child.digest(),
                            StoreError::DigestMismatch {
                                expected: child.digest().clone(),
                                actual,
                            },
                        ));
                    }
                    child_raw.digest = child.digest().clone();
                    let mut child_stats = PushStats::default();
                    Box::pin(self.push_children(
                        host,
                        target,
                        &child_raw,
                        source,
                        options,
                        scopes,
                        &mut child_stats,
                    ))
                    .await?;
                    stats.add(child_stats);
                    self.put_manifest(host, target, child_raw.digest.as_ref(), &child_raw, scopes)
                        .await?;
                    stats.manifests_pushed += 1;
                }
                Ok(())
            }
        }
    }

    /// `PUT /v2/<repo>/manifests/<tag or digest>`; returns the answer's headers.
    async fn put_manifest(
        &self,
        host: &Host,
        target: &Reference,
        tag_or_digest: &str,
        manifest: &RawManifest,
        scopes: &Scopes,
    ) -> Result<HeaderMap> {
        let url = self
            .url(
                host,
                &format!("{}/manifests/{tag_or_digest}", target.repository()),
            )
            .await?;
        let request = Request::new(Method::PUT, url)
            .header(header::CONTENT_TYPE, &manifest.media_type)
            .body(manifest.bytes.clone());
        let response = self.send(host, scopes, &request).await?;
        if !response.status().is_success() {
            return Err(self.status_error(host, &request, response, None).await);
        }
        let headers = response.headers().clone();
        if let Some(reported) = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && let Ok(reported_digest) = parse_digest(reported)
            && reported_digest.algorithm() == manifest.digest.algorithm()
            && reported_digest != manifest.digest
        {
            return Err(Error::PushedDigestMismatch {
                reference: format!("{}:{tag_or_digest}", target.full_name()),
                expected: manifest.digest.clone(),
                reported: reported.to_owned(),
            });
        }
        Ok(headers)
    }

    async fn push_blob(
        &self,
        host: &Host,
        target: &Reference,
        blob: &Descriptor,
        source: PushSource<'_>,
        mount_from: Option<&str>,
        scopes: &Scopes,
    ) -> Result<BlobOutcome> {
        let repository = target.repository();
        let digest = blob.digest();
        let size = blob.size();
        if self
            .blob_exists_on(host, repository, digest, scopes)
            .await?
        {
            self.emit(|| ProgressEvent::BlobSkipped {
                digest: digest.clone(),
                size,
            });
            return Ok(BlobOutcome::Skipped);
        }
        // A refused mount leaves an upload session open; use it.
        let mut session = None;
        if let Some(from) = mount_from.filter(|from| *from != repository) {
            match self
                .start_upload(host, repository, scopes, Some((digest, from)))
                .await?
            {
                None => {
                    self.emit(|| ProgressEvent::BlobMounted {
                        digest: digest.clone(),
                        size,
                        from: from.to_owned(),
                    });
                    return Ok(BlobOutcome::Mounted);
                }
                Some(location) => {
                    tracing::debug!(%digest, from, "mount refused, uploading instead");
                    session = Some(location);
                }
            }
        }
        if !source
            .store
            .has(digest)
            .map_err(|e| Error::blob(repository, digest, e))?
        {
            match source.fetch_from {
                Some((from_host, from_repository)) => {
                    self.fetch_blob_on(from_host, from_repository, blob, source.store)
                        .await?;
                }
                None => {
                    return Err(Error::MissingSource {
                        reference: target.to_string(),
                        what: "blob",
                        digest: digest.clone(),
                    });
                }
            }
        }
        let location = match session {
            Some(location) => location,
            None => self
                .start_upload(host, repository, scopes, None)
                .await?
                .expect("an upload without mount always opens a session"),
        };
        self.emit(|| ProgressEvent::BlobStarted {
            digest: digest.clone(),
            size,
        });
        let sent = self
            .upload_blob(host, repository, scopes, blob, source.store, location)
            .await?;
        self.emit(|| ProgressEvent::BlobDone {
            digest: digest.clone(),
            size,
        });
        Ok(BlobOutcome::Uploaded(sent))
    }

    /// `POST …/blobs/uploads/` (with `mount`/`from` when given). `None` when the mount
    /// succeeded (201), else the upload session's URL.
    async fn start_upload(
        &self,
        host: &Host,
        repository: &str,
        scopes: &Scopes,
        mount: Option<(&Digest, &str)>,
    ) -> Result<Option<Url>> {
        let mut url = self
            .url(host, &format!("{repository}/blobs/uploads/"))
            .await?;
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", digest.as_ref())
                .append_pair("from", from);
        }
        let request = Request::new(Method::POST, url).body(Bytes::new());
        let response = self.send(host, scopes, &request).await?;
        match response.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.location(&request, response.headers())?)),
            _ => Err(self.status_error(host, &request, response, None).await),
        }
    }

    /// The absolute URL of a `Location` header.
    fn location(&self, request: &Request, headers: &HeaderMap) -> Result<Url> {
        let value = headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        request
            .url
            .join(value)
            .ok()
            .filter(|_| !value.is_empty())
            .ok_or_else(|| Error::InvalidHeader {
                method: request.method.to_string(),
                url: request.url.to_string(),
                header: "Location",
                value: value.to_owned(),
            })
    }

    /// Uploads a blob's bytes into an open session, resuming or restarting on failure.
    /// Returns the bytes sent.
    async fn upload_blob(
        &self,
        host: &Host,
        repository: &str,
        scopes: &Scopes,
        blob: &Descriptor,
        store: &dyn BlobStore,
        mut location: Url,
    ) -> Result<u64> {
        let digest = blob.digest();
        let policy = self.config().retry.clone();
        let mut offset = 0u64;
        let mut sent = 0u64;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .upload_from(
                    host,
                    scopes,
                    blob,
                    store,
                    &mut location,
                    &mut offset,
                    &mut sent,
                )
                .await;
            let error = match result {
                Ok(()) => return Ok(sent),
                Err(error) if attempt < policy.max_attempts && is_retryable(&error) => error,
                Err(error) => return Err(error),
            };
            let delay = policy.backoff(attempt);
            tracing::debug!(%digest, offset, %error, "blob upload failed, resuming");
            self.emit(|| ProgressEvent::Retrying {
                method: "PATCH".to_owned(),
                url: location.to_string(),
                attempt,
                delay,
                reason: error.to_string(),
            });
            tokio::time::sleep(delay).await;
            if self
                .blob_exists_on(host, repository, digest, scopes)
                .await?
            {
                return Ok(sent);
            }
            match self.upload_status(host, scopes, &location).await {
                Some((resumed_location, resumed_offset))
                    if !matches!(error, Error::Status { status: 416, .. }) =>
                {
                    location = resumed_location;
                    offset = resumed_offset;
                }
                _ => {
                    location = self
                        .start_upload(host, repository, scopes, None)
                        .await?
                        .expect("an upload without mount always opens a session");
                    offset = 0;
                }
            }
        }
    }

    /// Where an interrupted upload stands: its (new) URL and the next offset.
    async fn upload_status(
        &self,
        host: &Host,
        scopes: &Scopes,
        location: &Url,
    ) -> Option<(Url, u64)> {
        let request = Request::new(Method::GET, location.clone());
        let response = self.send(host, scopes, &request).await.ok()?;
        if response.status() != StatusCode::NO_CONTENT {
            return None;
        }
        let range = response.headers().get(header::RANGE)?.to_str().ok()?;
        let end: u64 = range
            .trim()
            .trim_start_matches("bytes=")
            .split('-')
            .nth(1)?
            .parse()
            .ok()?;
        // "0-0" is ambiguous (nothing or one byte): start from 0, a range mismatch
        // (416) then restarts the upload.
        let offset = if end == 0 { 0 } else { end + 1 };
        let url = self
            .location(&request, response.headers())
            .unwrap_or_else(|_| location.clone());
        Some((url, offset))
    }

    /// Sends the blob from `offset`: one `PUT` for a small blob from the start, else
    /// the rest in one streamed `PATCH` or in `PATCH` chunks, and a closing `PUT`.
    /// Updates `location`, `offset` and `sent`.
    #[allow(clippy::too_many_arguments)]
    async fn upload_from(
        &self,
        host: &Host,
        scopes: &Scopes,
        blob: &Descriptor,
        store: &dyn BlobStore,
        location: &mut Url,
        offset: &mut u64,
        sent: &mut u64,
    ) -> Result<()> {
        let digest = blob.digest();
        let size = blob.size();
        let open = || {
            store
                .open(digest)
                .map_err(|e| Error::blob("source store", digest, e))
        };
        let finish_url = |location: &Url| {
            let mut url = location.clone();
            url.query_pairs_mut().append_pair("digest", digest.as_ref());
            url
        };

        if *offset == 0 && size <= self.config().monolithic_upload_max {
            let body = read_range(&mut open()?, digest, 0, size)?;
            let request = Request::new(Method::PUT, finish_url(location))
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(body);
            let response = self.send_once(host, scopes, &request).await?;
            if !response.status().is_success() {
                return Err(self.status_error(host, &request, response, None).await);
            }
            *sent += size;
            *offset = size;
            self.emit_upload_progress(digest, size, size);
            return Ok(());
        }

        match self.config().chunk_size {
            None if *offset < size => {
                let length = size - *offset;
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("{}-{}", *offset, size - 1))
                        .expect("digits are a valid header"),
                );
                let body = stream_body(open()?, *offset, length);
                let response = self
                    .send_streaming(host, scopes, Method::PATCH, location.clone(), headers, body)
                    .await?;
                let request = Request::new(Method::PATCH, location.clone());
                if !response.status().is_success() {
                    return Err(self.status_error(host, &request, response, None).await);
                }
                *location = self.location(&request, response.headers())?;
                *sent += length;
                *offset = size;
                self.emit_upload_progress(digest, size, size);
            }
            None => {}
            Some(chunk_size) => {
                let chunk_size = chunk_size.max(1);
                let mut reader = open()?;
                while *offset < size {
                    let length = chunk_size.min(size - *offset);
                    let body = read_range(&mut reader, digest, *offset, length)?;
                    let request = Request::new(Method::PATCH, location.clone())
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(
                            header::CONTENT_RANGE,
                            &format!("{}-{}", *offset, *offset + length - 1),
                        )
                        .body(body);
                    let response = self.send_once(host, scopes, &request).await?;
                    if !response.status().is_success() {
                        return Err(self.status_error(host, &request, response, None).await);
                    }
                    *location = self.location(&request, response.headers())?;
                    *sent += length;
                    *offset += length;
                    self.emit_upload_progress(digest, *offset, size);
                }
            }
        }
        let request = Request::new(Method::PUT, finish_url(location)).body(Bytes::new());
        let response = self.send_once(host, scopes, &request).await?;
        if !response.status().is_success() {
            return Err(self.status_error(host, &request, response, None).await);
        }
        Ok(())
    }

    fn emit_upload_progress(&self, digest: &Digest, transferred: u64, size: u64) {
        self.emit(|| ProgressEvent::BlobProgress {
            digest: digest.clone(),
            transferred,
            size,
        });
    }

    /// Copies the manifest `source` names to `destination` (a tag, or the repository
    /// for a by-digest copy) without pulling layers through this machine when it can:
    ///
    /// - same repository: only the manifest is `PUT` under the new tag;
    /// - another repository of the same registry: blobs are mounted, falling back to a
    ///   transfer through `staging` if the registry refuses a mount;
    /// - another registry: blobs go through `staging` (skipping those it has).
    ///
    /// For an index, every child manifest is copied too.
    pub async fn copy_manifest(
        &self,
        source: &Reference,
        destination: &Reference,
        staging: &dyn BlobStore,
    ) -> Result<PushReport> {
        let source_host = self.host(source)?;
        let manifest = self.get_manifest_on(&source_host, source).await?;
        if source.registry() == destination.registry()
            && source.repository() == destination.repository()
        {
            let tags: Vec<String> = destination
                .tag()
                .map(|t| vec![t.to_owned()])
                .unwrap_or_default();
            return self.push_manifest(destination, &manifest, &tags).await;
        }

        // Stage child manifests so the push can read them; collect blob digests.
        let mut blob_digests = Vec::new();
        let mut pending = vec![manifest.clone()];
        while let Some(current) = pending.pop() {
            let name = format!("{}@{}", source.full_name(), current.digest);
            match current.kind(&name)? {
                ManifestKind::Image => {
                    let image = current.image_manifest(&name)?;
                    blob_digests.push(image.config().digest().clone());
                    blob_digests.extend(image.layers().iter().map(|l| l.digest().clone()));
                }
                ManifestKind::Index => {
                    for child in current.index(&name)?.manifests() {
                        let child_raw = self
                            .get_manifest_on(
                                &source_host,
                                &source.with_digest(child.digest().clone()),
                            )
                            .await?;
                        staging
                            .put(&child_raw.digest, &child_raw.bytes)
                            .map_err(|e| Error::blob(source.repository(), &child_raw.digest, e))?;
                        pending.push(child_raw);
                    }
                }
            }
        }
        let mut options = PushOptions {
            tags: destination
                .tag()
                .map(|t| vec![t.to_owned()])
                .unwrap_or_default(),
            mount_from: HashMap::new(),
        };
        if source.registry() == destination.registry() {
            for digest in blob_digests {
                options
                    .mount_from
                    .insert(digest, source.repository().to_owned());
            }
        }
        let push_source = PushSource {
            store: staging,
            fetch_from: Some((&source_host, source.repository())),
        };
        self.push_inner(destination, &manifest, push_source, &options)
            .await
    }
}
