//! The client against a registry that misbehaves: each case must end in a clear error
//! or a recovery, and never leave unverified bytes in the blob store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kiln_registry::auth::Credential;
use kiln_registry::manifest::media_types;
use kiln_registry::store::StoreError;
use kiln_registry::{
    ClientConfig, Error, OciDir, ProgressEvent, ProgressSink, PullOptions, PushOptions,
    RawManifest, Reference, RegistryClient, RetryPolicy,
};

use crate::fake::{FakeRegistry, Misbehave};
use crate::images::{self, TestImage, assert_store_clean};

fn fast_config() -> ClientConfig {
    let mut config = ClientConfig::anonymous();
    config.retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(2),
    };
    config
}

fn client() -> RegistryClient {
    RegistryClient::new(fast_config())
}

/// Builds an image in a scratch layout and serves it from `fake` as `repo:tag`.
fn serve(
    fake: &FakeRegistry,
    repo: &str,
    tag: &str,
    seed: &str,
    sizes: &[usize],
) -> (TestImage, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let source = OciDir::create(dir.path()).unwrap();
    let image = images::build(&source, seed, sizes, "linux", "amd64");
    fake.put_blob(repo, image.config.1.clone());
    for (_, blob) in &image.layers {
        fake.put_blob(repo, blob.clone());
    }
    fake.put_manifest(
        repo,
        tag,
        media_types::OCI_MANIFEST,
        image.manifest.bytes.clone(),
    );
    fake.put_manifest(
        repo,
        image.manifest.digest.as_ref(),
        media_types::OCI_MANIFEST,
        image.manifest.bytes.clone(),
    );
    (image, dir)
}

fn reference(fake: &FakeRegistry, rest: &str) -> Reference {
    Reference::parse(&format!("{}/{rest}", fake.host())).unwrap()
}

#[tokio::test]
async fn blob_not_matching_its_digest_is_refused_and_not_kept() {
    let fake = FakeRegistry::start().await;
    let (image, _source) = serve(&fake, "app", "1", "corrupt", &[20_000]);
    let (layer_digest, layer) = &image.layers[0];
    let mut corrupted = layer.to_vec();
    corrupted[100] ^= 0xff;
    fake.misbehave(
        "GET",
        layer_digest.digest(),
        100,
        Misbehave::Body(Bytes::from(corrupted)),
    );

    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let error = client()
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap_err();
    match &error {
        Error::Blob { digest, source, .. } => {
            assert_eq!(digest, layer_digest);
            assert!(
                matches!(**source, StoreError::DigestMismatch { .. }),
                "{error}"
            );
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(
        error.to_string().contains("does not match its digest"),
        "{error}"
    );
    let kept = assert_store_clean(store_dir.path());
    assert!(!kept.contains(&layer_digest.digest().to_owned()));
    assert!(!kept.contains(&image.manifest.digest.digest().to_owned()));
    // A verification failure is not a transient error: one download only.
    assert_eq!(fake.count("GET", layer_digest.digest()), 1);

    // Fetching into memory verifies as well.
    let descriptor = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::ImageLayerGzip,
        layer.len() as u64,
        layer_digest.clone(),
    );
    let error = client()
        .fetch_blob_bytes(&reference(&fake, "app"), &descriptor, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Blob { .. }), "{error}");
}

#[tokio::test]
async fn manifest_not_matching_its_pin_is_refused() {
    let fake = FakeRegistry::start().await;
    let (image, _source) = serve(&fake, "app", "1", "pinned", &[1000]);
    let (other, _other_source) = serve(&fake, "other", "1", "impostor", &[1000]);
    // The registry answers the pinned digest with another manifest's bytes.
    fake.put_manifest(
        "app",
        image.manifest.digest.as_ref(),
        media_types::OCI_MANIFEST,
        other.manifest.bytes.clone(),
    );

    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let pinned = reference(&fake, &format!("app:1@{}", image.manifest.digest));
    let error = client()
        .pull(&pinned, &PullOptions::default(), &store)
        .await
        .unwrap_err();
    match &error {
        Error::ManifestDigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &image.manifest.digest);
            assert_eq!(actual, &other.manifest.digest);
        }
        other => panic!("expected a manifest digest mismatch, got {other}"),
    }
    assert!(assert_store_clean(store_dir.path()).is_empty());
    // Tag and digest together: the digest is what was asked for, the tag never.
    assert_eq!(fake.count("GET", "/manifests/1"), 0);
}

#[tokio::test]
async fn manifest_not_matching_the_announced_digest_is_refused() {
    let fake = FakeRegistry::start().await;
    let (_image, _source) = serve(&fake, "app", "1", "announced", &[1000]);
    fake.misbehave(
        "GET",
        "/manifests/1",
        1,
        Misbehave::Body(Bytes::from_static(br#"{"schemaVersion":2,"manifests":[]}"#)),
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let error = client()
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ManifestDigestMismatch { .. }),
        "{error}"
    );
    assert!(assert_store_clean(store_dir.path()).is_empty());
}

#[tokio::test]
async fn truncated_blob_is_resumed_with_a_range_request() {
    let fake = FakeRegistry::start().await;
    let (image, _source) = serve(&fake, "app", "1", "resume", &[60_000]);
    let layer_digest = &image.layers[0].0;
    fake.misbehave("GET", layer_digest.digest(), 1, Misbehave::Truncate(10_000));

    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let pulled = client()
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    let gets: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|l| l.method == "GET" && l.path.contains(layer_digest.digest()))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=10000-"));
    assert!(assert_store_clean(store_dir.path()).contains(&layer_digest.digest().to_owned()));
}

#[tokio::test]
async fn blob_truncated_every_time_gives_a_clear_error() {
    let fake = FakeRegistry::start().await;
    let (image, _source) = serve(&fake, "app", "1", "cut", &[200_000]);
    let layer_digest = &image.layers[0].0;
    fake.misbehave(
        "GET",
        layer_digest.digest(),
        100,
        Misbehave::Truncate(5_000),
    );

    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let error = client()
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap_err();
    match &error {
        Error::Truncated {
            digest,
            received,
            expected,
            attempts,
            ..
        } => {
            assert_eq!(digest, layer_digest);
            assert_eq!(*received, 15_000);
            assert_eq!(*expected, image.layers[0].1.len() as u64);
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected a truncation error, got {other}"),
    }
    assert!(error.to_string().contains("received 15000 of"), "{error}");
    let kept = assert_store_clean(store_dir.path());
    assert!(!kept.contains(&layer_digest.digest().to_owned()));
}

#[tokio::test]
async fn blob_larger_than_declared_is_refused() {
    let fake = FakeRegistry::start().await;
    let (image, _source) = serve(&fake, "app", "1", "large", &[5_000]);
    let (layer_digest, layer) = &image.layers[0];
    let mut longer = layer.to_vec();
    longer.extend_from_slice(b"trailing garbage");
    fake.misbehave(
        "GET",
        layer_digest.digest(),
        1,
        Misbehave::Body(Bytes::from(longer)),
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let error = client()
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BlobTooLarge { .. }), "{error}");
    assert!(!assert_store_clean(store_dir.path()).contains(&layer_digest.digest().to_owned()));
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let fake = FakeRegistry::start().await;
    let (image, _source) = serve(&fake, "app", "1", "flaky", &[1000, 2000]);
    fake.misbehave("GET", "/manifests/1", 1, Misbehave::Status(500, vec![]));
    fake.misbehave(
        "GET",
        image.layers[1].0.digest(),
        2,
        Misbehave::Status(503, vec![]),
    );
    fake.misbehave("GET", image.config.0.digest(), 1, Misbehave::Close);

    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let pulled = client()
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    assert_eq!(pulled.stats.blobs_fetched, 3);
    assert_eq!(fake.count("GET", "/manifests/1"), 2);
    assert_eq!(fake.count("GET", image.layers[1].0.digest()), 3);
    assert_eq!(fake.count("GET", image.config.0.digest()), 2);
    assert_eq!(assert_store_clean(store_dir.path()).len(), 4);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let fake = FakeRegistry::start().await;
    let (_image, _source) = serve(&fake, "app", "1", "busy", &[1000]);
    fake.misbehave(
        "GET",
        "/manifests/1",
        1,
        Misbehave::Status(429, vec![("retry-after", "1".to_owned())]),
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let client = client();
    // Connect (and pick the scheme) first so only the wait is timed.
    client
        .head_manifest(&reference(&fake, "app:1"))
        .await
        .unwrap();
    let started = Instant::now();
    client
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "did not wait for Retry-After: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "waited too long: {waited:?}"
    );
    assert_eq!(fake.count("GET", "/manifests/1"), 2);
}

#[tokio::test]
async fn bad_token_endpoint_gives_an_error_naming_the_realm() {
    let fake = FakeRegistry::start().await;
    let (_image, _source) = serve(&fake, "app", "1", "token", &[1000]);
    fake.require_tokens(500);
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let error = client()
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap_err();
    let realm = format!("http://{}/token", fake.host());
    match &error {
        Error::TokenRequest { realm: named, .. } => assert_eq!(named, &realm),
        other => panic!("expected a token error, got {other}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&realm) && message.contains("500"),
        "{message}"
    );
    assert!(assert_store_clean(store_dir.path()).is_empty());
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fake = FakeRegistry::start().await;
    let (image, _source) = serve(&fake, "app", "1", "missing", &[1000]);
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let client = client();

    let error = client
        .pull(
            &reference(&fake, "app:nope"),
            &PullOptions::default(),
            &store,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error}");
    assert!(error.to_string().contains("MANIFEST_UNKNOWN"), "{error}");
    assert_eq!(fake.count("GET", "/manifests/nope"), 1);

    fake.misbehave(
        "GET",
        image.layers[0].0.digest(),
        10,
        Misbehave::Status(403, vec![]),
    );
    let error = client
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 403, .. }),
        "{error}"
    );
    assert_eq!(fake.count("GET", image.layers[0].0.digest()), 1);
    assert!(!assert_store_clean(store_dir.path()).contains(&image.layers[0].0.digest().to_owned()));
}

#[tokio::test]
async fn tokens_carry_every_scope_and_are_renewed_after_a_401() {
    let fake = FakeRegistry::start().await;
    let (base, _base_source) = serve(&fake, "base", "1", "tok-base", &[3000]);
    fake.require_tokens(200);
    let client = client();

    // Push an image whose layer lives in "base": one token for both repositories.
    let dir = tempfile::tempdir().unwrap();
    let source = OciDir::create(dir.path()).unwrap();
    let app = images::build(&source, "tok-app", &[1000], "linux", "amd64");
    // The app reuses base's layer as its first layer.
    let manifest = with_extra_base_layer(&app, &base, &source);
    let mut mount_from = HashMap::new();
    mount_from.insert(base.layers[0].0.clone(), "base".to_owned());
    let report = client
        .push(
            &reference(&fake, "app:1"),
            &manifest,
            &source,
            &PushOptions {
                tags: vec![],
                mount_from,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.stats.blobs_mounted, 1);
    assert_eq!(report.stats.blobs_uploaded, 2);
    let requests = fake.token_requests();
    assert!(
        requests
            .iter()
            .any(|q| q.contains("scope=repository%3Aapp%3Apull%2Cpush")
                && q.contains("scope=repository%3Abase%3Apull")
                && q.contains("service=fake+registry")),
        "{requests:?}"
    );
    assert_eq!(
        requests.len(),
        1,
        "one token for the whole push: {requests:?}"
    );

    // A cached token that the registry no longer accepts is replaced once.
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    client
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap();
    let before = fake.token_requests().len();
    fake.revoke_tokens();
    let store_dir2 = tempfile::tempdir().unwrap();
    let store2 = OciDir::create(store_dir2.path()).unwrap();
    let pulled = client
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store2)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, manifest.digest);
    assert_eq!(fake.token_requests().len(), before + 1);
    let rejected = fake
        .log()
        .iter()
        .filter(|l| l.status == 401 && l.authorization.is_some())
        .count();
    assert_eq!(
        rejected, 1,
        "exactly one request was made with the revoked token"
    );
}

/// `app`'s manifest with `base`'s layer added first (its bytes copied into `source`).
fn with_extra_base_layer(app: &TestImage, base: &TestImage, source: &OciDir) -> RawManifest {
    use kiln_registry::BlobStore;
    let (base_digest, base_blob) = &base.layers[0];
    source.put(base_digest, base_blob).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&app.manifest.bytes).unwrap();
    let layers = manifest["layers"].as_array_mut().unwrap();
    layers.insert(
        0,
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": base_digest.to_string(),
            "size": base_blob.len(),
        }),
    );
    let raw = RawManifest::new(
        serde_json::to_vec(&manifest).unwrap(),
        Some(media_types::OCI_MANIFEST),
    );
    source.put(&raw.digest, &raw.bytes).unwrap();
    raw
}

#[tokio::test]
async fn refused_mount_falls_back_to_an_upload() {
    let fake = FakeRegistry::start().await;
    let (base, _base_source) = serve(&fake, "base", "1", "refuse-base", &[3000]);
    fake.refuse_mounts();
    let dir = tempfile::tempdir().unwrap();
    let source = OciDir::create(dir.path()).unwrap();
    let app = images::build(&source, "refuse-app", &[1000], "linux", "amd64");
    let manifest = with_extra_base_layer(&app, &base, &source);
    let mut mount_from = HashMap::new();
    mount_from.insert(base.layers[0].0.clone(), "base".to_owned());
    let report = client()
        .push(
            &reference(&fake, "app:1"),
            &manifest,
            &source,
            &PushOptions {
                tags: vec![],
                mount_from,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.stats.blobs_mounted, 0);
    assert_eq!(report.stats.blobs_uploaded, 3);
    assert!(fake.has_blob("app", &base.layers[0].0));
    assert_eq!(fake.count("POST", "/app/blobs/uploads/"), 3);
    assert!(
        fake.log()
            .iter()
            .any(|l| l.query.contains("mount=") && l.status == 202)
    );
}

#[tokio::test]
async fn interrupted_chunked_upload_resumes_where_the_registry_stopped() {
    let fake = FakeRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = OciDir::create(dir.path()).unwrap();
    let image = images::build(&source, "chunky", &[300_000], "linux", "amd64");
    let layer_size = image.layers[0].1.len() as u64;
    let mut config = fast_config();
    config.chunk_size = Some(64 * 1024);
    config.monolithic_upload_max = 64 * 1024;
    let client = RegistryClient::new(config);
    // The third chunk's answer is lost (the registry did store it).
    fake.misbehave_after("PATCH", "/blobs/uploads/", 2, 1, Misbehave::Close);
    let report = client
        .push(
            &reference(&fake, "app:1"),
            &image.manifest,
            &source,
            &PushOptions::default(),
        )
        .await
        .unwrap();
    assert!(fake.has_blob("app", &image.layers[0].0));
    let patches = fake.count("PATCH", "/blobs/uploads/") as u64;
    assert_eq!(
        patches,
        layer_size.div_ceil(64 * 1024),
        "no chunk was sent twice"
    );
    assert!(
        fake.log()
            .iter()
            .any(|l| l.method == "GET" && l.path.contains("/blobs/uploads/"))
    );
    assert_eq!(report.stats.blobs_uploaded, 2);
    assert!(report.stats.bytes_uploaded <= layer_size + image.config.1.len() as u64);
    assert_eq!(fake.manifest("app", "1").unwrap().1, image.manifest.bytes);
}

#[tokio::test]
async fn manifest_put_is_retried_on_server_errors() {
    let fake = FakeRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = OciDir::create(dir.path()).unwrap();
    let image = images::build(&source, "put-retry", &[1000], "linux", "amd64");
    fake.misbehave("PUT", "/manifests/", 1, Misbehave::Status(502, vec![]));
    let report = client()
        .push(
            &reference(&fake, "app:1"),
            &image.manifest,
            &source,
            &PushOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.digest, image.manifest.digest);
    assert_eq!(fake.count("PUT", "/manifests/1"), 2);
}

#[tokio::test]
async fn identity_tokens_use_the_oauth2_refresh_flow() {
    let fake = FakeRegistry::start().await;
    let (image, _source) = serve(&fake, "app", "1", "oauth", &[1000]);
    fake.require_tokens(200);
    let mut config = fast_config();
    config.credentials = config.credentials.clone().with_credential(
        &fake.host(),
        Credential::IdentityToken {
            username: Some("robot".to_owned()),
            token: "refresh-me".to_owned(),
        },
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let pulled = RegistryClient::new(config)
        .pull(&reference(&fake, "app:1"), &PullOptions::default(), &store)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    let requests = fake.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let form = &requests[0];
    for expected in [
        "POST ",
        "grant_type=refresh_token",
        "refresh_token=refresh-me",
        "service=fake+registry",
        "scope=repository%3Aapp%3Apull",
        "client_id=kiln",
    ] {
        assert!(form.contains(expected), "{expected} missing from {form}");
    }
}

#[tokio::test]
async fn progress_events_describe_the_transfer() {
    let fake = FakeRegistry::start().await;
    let (base, _base_source) = serve(&fake, "base", "1", "events-base", &[3000]);
    let dir = tempfile::tempdir().unwrap();
    let source = OciDir::create(dir.path()).unwrap();
    let app = images::build(&source, "events-app", &[2_500_000], "linux", "amd64");
    let manifest = with_extra_base_layer(&app, &base, &source);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink_events = events.clone();
    let client = client().with_progress(ProgressSink::new(move |event| {
        sink_events.lock().unwrap().push(event)
    }));
    let mut mount_from = HashMap::new();
    mount_from.insert(base.layers[0].0.clone(), "base".to_owned());
    let options = PushOptions {
        tags: vec!["1".to_owned()],
        mount_from,
    };
    client
        .push(&reference(&fake, "app"), &manifest, &source, &options)
        .await
        .unwrap();
    client
        .push(&reference(&fake, "app"), &manifest, &source, &options)
        .await
        .unwrap();
    let events = events.lock().unwrap().clone();
    let count = |f: &dyn Fn(&ProgressEvent) -> bool| events.iter().filter(|e| f(e)).count();
    assert_eq!(
        count(&|e| matches!(e, ProgressEvent::BlobMounted { from, .. } if from == "base")),
        1
    );
    assert_eq!(
        count(&|e| matches!(e, ProgressEvent::BlobStarted { .. })),
        2
    );
    assert_eq!(count(&|e| matches!(e, ProgressEvent::BlobDone { .. })), 2);
    assert_eq!(
        count(&|e| matches!(e, ProgressEvent::BlobSkipped { .. })),
        3,
        "second push: all present"
    );
    assert!(
        count(
            &|e| matches!(e, ProgressEvent::BlobProgress { transferred, size, .. } if transferred == size)
        ) >= 1
    );
    assert_eq!(
        count(
            &|e| matches!(e, ProgressEvent::ManifestPushed { reference, .. } if reference.ends_with("/app:1"))
        ),
        2
    );
}

#[tokio::test]
async fn interrupted_streamed_upload_resumes_without_resending() {
    let fake = FakeRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = OciDir::create(dir.path()).unwrap();
    let image = images::build(&source, "streamy", &[300_000], "linux", "amd64");
    let mut config = fast_config();
    config.monolithic_upload_max = 1024;
    config.chunk_size = None;
    let client = RegistryClient::new(config);
    // The registry stores the streamed layer but the answer is lost.
    fake.misbehave("PATCH", "/blobs/uploads/", 1, Misbehave::Close);
    let report = client
        .push(
            &reference(&fake, "app:1"),
            &image.manifest,
            &source,
            &PushOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.stats.blobs_uploaded, 2);
    assert!(fake.has_blob("app", &image.layers[0].0));
    assert!(fake.has_blob("app", &image.config.0));
    // One PATCH for the layer (the config goes in a single PUT): the lost answer was
    // recovered by asking the upload status, not by sending the layer again.
    assert_eq!(fake.count("PATCH", "/blobs/uploads/"), 1);
    assert!(
        fake.log()
            .iter()
            .any(|l| l.method == "GET" && l.path.contains("/blobs/uploads/") && l.status == 204)
    );
}
