//! End-to-end against Debian's `docker-registry` 2.8 on loopback: push and pull real
//! (small) images, multi-tag pushes, no re-upload, cross-repository mounts, manifest
//! copies, platform selection from an index, TLS with basic auth, and referrers
//! through the OCI 1.1 tag fallback (2.8 has no referrers API).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use kiln_registry::auth::CredentialSources;
use kiln_registry::auth::login::store_login;
use kiln_registry::digest::sha256_digest;
use kiln_registry::manifest::media_types;
use kiln_registry::{
    BlobStore, ClientConfig, Error, OciDir, Platform, PullOptions, PushOptions, RawManifest,
    Reference, RegistryClient,
};

use crate::images::{self, TestImage, assert_store_clean};
use kiln_testimages::registry::{LoggedRequest, Mode, TestRegistry};

/// A registry from the test harness, or `None` (after saying so) when Debian's
/// `docker-registry` is not installed.
fn start(mode: Mode) -> Option<TestRegistry> {
    if !Path::new("/usr/bin/docker-registry").exists() {
        eprintln!("skipping: /usr/bin/docker-registry is not installed");
        return None;
    }
    Some(TestRegistry::start(mode).expect("start the test registry"))
}

fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig::anonymous())
}

fn reference(registry: &TestRegistry, rest: &str) -> Reference {
    Reference::parse(&format!("{}/{rest}", registry.host())).unwrap()
}

/// The access log once the registry has written the last requests.
fn settled_log(registry: &TestRegistry) -> Vec<LoggedRequest> {
    let mut previous = registry.request_log().len();
    loop {
        std::thread::sleep(Duration::from_millis(150));
        let log = registry.request_log();
        if log.len() == previous {
            return log;
        }
        previous = log.len();
    }
}

fn is_blob_transfer(request: &LoggedRequest) -> bool {
    request.path.contains("/blobs/")
        && (request.method == "PATCH"
            || request.method == "POST"
            || (request.method == "PUT" && request.path.contains("/uploads/"))
            || request.method == "GET")
}

fn source_image(seed: &str, sizes: &[usize]) -> (tempfile::TempDir, OciDir, TestImage) {
    let dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(dir.path()).unwrap();
    let image = images::build(&store, seed, sizes, "linux", "amd64");
    (dir, store, image)
}

#[tokio::test]
async fn push_then_pull_by_tag_and_by_digest() {
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let (_dir, source, image) = source_image("busy", &[40_000, 3_000]);
    let client = client();
    let target = reference(&registry, "kiln/busybox:1");
    let report = client
        .push(&target, &image.manifest, &source, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(report.digest, image.manifest.digest);
    assert_eq!(report.stats.blobs_uploaded, 3);
    assert_eq!(
        report.references,
        vec![format!("{}/kiln/busybox:1", registry.host())]
    );

    for pulled_ref in [
        target.clone(),
        target.with_digest(image.manifest.digest.clone()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = OciDir::create(dir.path()).unwrap();
        let pulled = client
            .pull(&pulled_ref, &PullOptions::default(), &store)
            .await
            .unwrap();
        assert_eq!(
            pulled.manifest.digest, image.manifest.digest,
            "{pulled_ref}"
        );
        assert_eq!(pulled.manifest.bytes, image.manifest.bytes);
        assert_eq!(pulled.config_bytes, image.config.1);
        let config = client
            .fetch_blob_bytes(&pulled_ref, &pulled.config, 1 << 20)
            .await
            .unwrap();
        assert_eq!(config, image.config.1);
        assert_eq!(pulled.stats.blobs_fetched, 3);
        let kept = assert_store_clean(dir.path());
        for (digest, _) in &image.layers {
            assert!(kept.contains(&digest.digest().to_owned()));
            assert_eq!(
                std::fs::read(store.blob_path(digest)).unwrap(),
                source.read_all(digest).unwrap()
            );
        }
        // Pulling again into the same store fetches nothing.
        let again = client
            .pull(&pulled_ref, &PullOptions::default(), &store)
            .await
            .unwrap();
        assert_eq!(again.stats.blobs_fetched, 0);
        assert_eq!(again.stats.blobs_present, 3);
    }

    // A real tool agrees on the digest.
    if Path::new("/usr/bin/skopeo").exists() {
        let output = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/kiln/busybox:1", registry.host()),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(sha256_digest(&output.stdout), image.manifest.digest);
    }
}

#[tokio::test]
async fn push_with_three_tags_and_a_second_push_uploads_nothing() {
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let (_dir, source, image) = source_image("tags", &[20_000, 5_000]);
    let client = client();
    let target = reference(&registry, "kiln/tags");
    let options = PushOptions {
        tags: vec!["1".to_owned(), "1.2".to_owned(), "latest".to_owned()],
        ..PushOptions::default()
    };
    let first = client
        .push(&target, &image.manifest, &source, &options)
        .await
        .unwrap();
    assert_eq!(first.references.len(), 3);
    assert_eq!(first.stats.blobs_uploaded, 3);
    let mut tags = client.list_tags(&target).await.unwrap();
    tags.sort();
    assert_eq!(tags, vec!["1", "1.2", "latest"]);
    for tag in ["1", "1.2", "latest"] {
        let descriptor = client
            .head_manifest(&target.with_tag(tag).unwrap())
            .await
            .unwrap();
        assert_eq!(descriptor.digest(), &image.manifest.digest);
    }

    let before = settled_log(&registry).len();
    let second = client
        .push(&target, &image.manifest, &source, &options)
        .await
        .unwrap();
    assert_eq!(second.stats.blobs_uploaded, 0);
    assert_eq!(second.stats.blobs_skipped, 3);
    assert_eq!(second.stats.bytes_uploaded, 0);
    let log = settled_log(&registry);
    let new: Vec<_> = log[before..].to_vec();
    assert!(!new.is_empty());
    assert!(
        !new.iter().any(is_blob_transfer),
        "second push transferred blobs: {new:?}"
    );
    assert_eq!(
        new.iter()
            .filter(|r| r.method == "HEAD" && r.path.contains("/blobs/"))
            .count(),
        3
    );
    assert_eq!(
        new.iter()
            .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
            .count(),
        3
    );
}

#[tokio::test]
async fn layers_are_mounted_between_repositories() {
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let (_dir, source, base) = source_image("mount-base", &[30_000, 10_000]);
    let client = client();
    client
        .push(
            &reference(&registry, "kiln/base:1"),
            &base.manifest,
            &source,
            &PushOptions::default(),
        )
        .await
        .unwrap();
    let before = settled_log(&registry).len();
    let mut mount_from = HashMap::new();
    for (digest, _) in &base.layers {
        mount_from.insert(digest.clone(), "kiln/base".to_owned());
    }
    mount_from.insert(base.config.0.clone(), "kiln/base".to_owned());
    let report = client
        .push(
            &reference(&registry, "kiln/app:1"),
            &base.manifest,
            &source,
            &PushOptions {
                tags: vec![],
                mount_from,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.stats.blobs_mounted, 3);
    assert_eq!(report.stats.blobs_uploaded, 0);
    let new = settled_log(&registry)[before..].to_vec();
    let mounts: Vec<_> = new.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(mounts.len(), 3);
    assert!(
        mounts
            .iter()
            .all(|r| r.status == 201 && r.path == "/v2/kiln/app/blobs/uploads/"),
        "{mounts:?}"
    );
    assert!(
        !new.iter()
            .any(|r| r.method == "PATCH" || (r.method == "PUT" && r.path.contains("/uploads/")))
    );

    let dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(dir.path()).unwrap();
    let pulled = client
        .pull(
            &reference(&registry, "kiln/app:1"),
            &PullOptions::default(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, base.manifest.digest);
}

#[tokio::test]
async fn manifest_copy_retags_without_moving_layers() {
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let (_dir, source, image) = source_image("copy", &[25_000]);
    let client = client();
    let original = reference(&registry, "kiln/web:1.0");
    client
        .push(&original, &image.manifest, &source, &PushOptions::default())
        .await
        .unwrap();
    let staging_dir = tempfile::tempdir().unwrap();
    let staging = OciDir::create(staging_dir.path()).unwrap();

    // Same repository: only manifests move.
    let before = settled_log(&registry).len();
    let report = client
        .copy_manifest(
            &original,
            &reference(&registry, "kiln/web:stable"),
            &staging,
        )
        .await
        .unwrap();
    assert_eq!(report.digest, image.manifest.digest);
    let new = settled_log(&registry)[before..].to_vec();
    assert!(
        new.iter()
            .all(|r| r.path.contains("/manifests/") || r.path == "/v2/"),
        "{new:?}"
    );
    assert_eq!(
        client
            .head_manifest(&reference(&registry, "kiln/web:stable"))
            .await
            .unwrap()
            .digest(),
        &image.manifest.digest
    );

    // Another repository of the same registry: blobs are mounted, none transferred.
    let before = settled_log(&registry).len();
    let report = client
        .copy_manifest(
            &original,
            &reference(&registry, "kiln/web-prod:1.0"),
            &staging,
        )
        .await
        .unwrap();
    assert_eq!(report.stats.blobs_mounted, 2);
    let new = settled_log(&registry)[before..].to_vec();
    assert!(
        !new.iter()
            .any(|r| r.method == "PATCH" || r.method == "GET" && r.path.contains("/blobs/")),
        "{new:?}"
    );
    assert!(
        assert_store_clean(staging_dir.path()).is_empty(),
        "nothing went through staging"
    );
}

#[tokio::test]
async fn index_with_two_platforms_resolves_to_the_requested_one() {
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = OciDir::create(dir.path()).unwrap();
    let amd64 = images::build(&source, "multi-amd64", &[10_000], "linux", "amd64");
    let arm64 = images::build(&source, "multi-arm64", &[12_000], "linux", "arm64");
    let index = images::index(
        &source,
        &[(&amd64, "linux/amd64"), (&arm64, "linux/arm64/v8")],
    );
    let client = client();
    let target = reference(&registry, "kiln/multi:1");
    let report = client
        .push(&target, &index, &source, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(report.digest, index.digest);
    assert_eq!(report.stats.manifests_pushed, 3);
    assert_eq!(report.stats.blobs_uploaded, 4);

    for (platform, expected) in [("linux/arm64", &arm64), ("linux/amd64", &amd64)] {
        let store_dir = tempfile::tempdir().unwrap();
        let store = OciDir::create(store_dir.path()).unwrap();
        let options = PullOptions {
            platform: Some(platform.parse::<Platform>().unwrap()),
        };
        let pulled = client.pull(&target, &options, &store).await.unwrap();
        assert_eq!(
            pulled.manifest.digest, expected.manifest.digest,
            "{platform}"
        );
        assert_eq!(pulled.index.as_ref().unwrap().digest, index.digest);
        assert_eq!(pulled.digest(), &index.digest);
        assert_eq!(pulled.platform.as_ref().unwrap().to_string(), platform);
        assert_eq!(pulled.stats.blobs_fetched, 2);
        assert!(store.has(&index.digest).unwrap());
    }
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let options = PullOptions {
        platform: Some("linux/s390x".parse().unwrap()),
    };
    let error = client.pull(&target, &options, &store).await.unwrap_err();
    assert!(matches!(error, Error::NoMatchingPlatform { .. }), "{error}");
    assert!(
        error.to_string().contains("linux/amd64, linux/arm64"),
        "{error}"
    );
}

#[tokio::test]
async fn tls_with_basic_auth_end_to_end() {
    let Some(registry) = start(Mode::TlsBasic) else {
        return;
    };
    let (user, password) = registry.credentials().unwrap();
    let ca = std::fs::read(registry.ca_cert_path().unwrap()).unwrap();
    // Docker's layout: <certs_dir>/<host:port>/ca.crt.
    let home = tempfile::tempdir().unwrap();
    let certs_dir = home.path().join("certs.d");
    std::fs::create_dir_all(certs_dir.join(registry.host())).unwrap();
    std::fs::write(certs_dir.join(registry.host()).join("ca.crt"), &ca).unwrap();
    let mut sources = CredentialSources::anonymous();
    sources.docker_config_dir = Some(home.path().join("docker"));
    let mut config = ClientConfig::anonymous();
    config.certs_dir = certs_dir;

    // Without credentials: refused, with a hint.
    config.credentials = sources.clone();
    let anonymous = RegistryClient::new(config.clone());
    let error = anonymous
        .check_credentials(&registry.host())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("kiln login"), "{error}");

    // Wrong password: refused.
    store_login(&sources, &registry.host(), &user, "wrong").unwrap();
    let wrong = RegistryClient::new(config.clone());
    assert!(matches!(
        wrong.check_credentials(&registry.host()).await.unwrap_err(),
        Error::Unauthorized { .. }
    ));

    // The right password, saved as `docker login` does, then push and pull over TLS.
    store_login(&sources, &registry.host(), &user, &password).unwrap();
    let client = RegistryClient::new(config.clone());
    client.check_credentials(&registry.host()).await.unwrap();
    let (_dir, source, image) = source_image("tls", &[15_000]);
    let target = reference(&registry, "kiln/secure:1");
    client
        .push(&target, &image.manifest, &source, &PushOptions::default())
        .await
        .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let pulled = client
        .pull(&target, &PullOptions::default(), &store)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, image.manifest.digest);

    // Without the CA the certificate is not trusted (and there is no HTTP fallback
    // masking it: the registry only speaks TLS).
    let mut untrusting = ClientConfig::anonymous();
    untrusting.certs_dir = home.path().join("nowhere");
    untrusting.credentials = sources.clone();
    let error = RegistryClient::new(untrusting)
        .get_manifest(&target)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    // The CA can also be given programmatically.
    let mut inline = ClientConfig::anonymous();
    inline.extra_ca_pems = vec![ca];
    inline.credentials = sources;
    let manifest = RegistryClient::new(inline)
        .get_manifest(&target)
        .await
        .unwrap();
    assert_eq!(manifest.digest, image.manifest.digest);
}

#[tokio::test]
async fn referrers_use_the_tag_fallback_on_registries_without_the_api() {
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let (_dir, source, image) = source_image("subject", &[5_000]);
    let client = client();
    let repository = reference(&registry, "kiln/sbom-demo:1");
    client
        .push(
            &repository,
            &image.manifest,
            &source,
            &PushOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        client
            .referrers(&repository, &image.manifest.digest, None)
            .await
            .unwrap()
            .is_empty()
    );

    let artifact = |kind: &str, content: &[u8]| -> RawManifest {
        let empty = Bytes::from_static(b"{}");
        let empty_digest = sha256_digest(&empty);
        source.put(&empty_digest, &empty).unwrap();
        let payload_digest = sha256_digest(content);
        source.put(&payload_digest, content).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "artifactType": kind,
            "config": {"mediaType": media_types::OCI_EMPTY, "digest": empty_digest.to_string(), "size": 2},
            "layers": [{"mediaType": kind, "digest": payload_digest.to_string(), "size": content.len()}],
            "subject": {"mediaType": media_types::OCI_MANIFEST, "digest": image.manifest.digest.to_string(), "size": image.manifest.bytes.len()},
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        });
        RawManifest::new(
            serde_json::to_vec(&manifest).unwrap(),
            Some(media_types::OCI_MANIFEST),
        )
    };
    let sbom = artifact(
        "application/vnd.cyclonedx+json",
        br#"{"bomFormat":"CycloneDX"}"#,
    );
    let signature = artifact(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        b"{}signature",
    );

    let pushed = client
        .push_referrer(&repository, &sbom, &source)
        .await
        .unwrap();
    let expected_tag = format!("sha256-{}", image.manifest.digest.digest());
    assert_eq!(pushed.fallback_tag.as_deref(), Some(expected_tag.as_str()));
    let pushed_again = client
        .push_referrer(&repository, &sbom, &source)
        .await
        .unwrap();
    assert_eq!(
        pushed_again.fallback_tag.as_deref(),
        Some(expected_tag.as_str())
    );
    client
        .push_referrer(&repository, &signature, &source)
        .await
        .unwrap();

    let all = client
        .referrers(&repository, &image.manifest.digest, None)
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "the same referrer is listed once: {all:?}");
    let sboms = client
        .referrers(
            &repository,
            &image.manifest.digest,
            Some("application/vnd.cyclonedx+json"),
        )
        .await
        .unwrap();
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].digest(), &sbom.digest);
    assert_eq!(sboms[0].size(), sbom.bytes.len() as u64);
    assert!(
        sboms[0]
            .annotations()
            .as_ref()
            .is_some_and(|a| a.contains_key("org.opencontainers.image.created"))
    );
    // The fallback index is a real OCI index in the registry.
    let tagged = client
        .get_manifest(&repository.with_tag(&expected_tag).unwrap())
        .await
        .unwrap();
    assert_eq!(tagged.media_type, media_types::OCI_INDEX);
}

#[tokio::test]
async fn copy_between_registries_goes_through_staging() {
    let Some(first) = start(Mode::Http) else {
        return;
    };
    let Some(second) = start(Mode::Http) else {
        return;
    };
    let (_dir, source, image) = source_image("cross", &[18_000]);
    let client = client();
    let from = reference(&first, "kiln/cross:1");
    client
        .push(&from, &image.manifest, &source, &PushOptions::default())
        .await
        .unwrap();
    let staging_dir = tempfile::tempdir().unwrap();
    let staging = OciDir::create(staging_dir.path()).unwrap();
    let to = reference(&second, "mirror/cross:1");
    let report = client.copy_manifest(&from, &to, &staging).await.unwrap();
    assert_eq!(report.digest, image.manifest.digest);
    assert_eq!(report.stats.blobs_uploaded, 2);
    assert_eq!(assert_store_clean(staging_dir.path()).len(), 2);
    assert_eq!(
        client.get_manifest(&to).await.unwrap().bytes,
        image.manifest.bytes
    );
}

#[tokio::test]
async fn images_interoperate_with_skopeo_in_both_formats() {
    if !Path::new("/usr/bin/skopeo").exists() {
        eprintln!("skipping: skopeo is not installed");
        return;
    }
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let (dir, _source, image) = source_image("skopeo", &[12_000]);
    let skopeo = |args: &[&str]| {
        let output = std::process::Command::new("skopeo")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // skopeo converts to Docker schema 2 on the way; kiln pulls it.
    skopeo(&[
        "copy",
        "--quiet",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:skopeo", dir.path().display()),
        &format!("docker://{}/kiln/docker-format:1", registry.host()),
    ]);
    let client = client();
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let pulled = client
        .pull(
            &reference(&registry, "kiln/docker-format:1"),
            &PullOptions::default(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest.media_type, media_types::DOCKER_MANIFEST);
    assert_eq!(
        pulled.config.media_type().to_string(),
        media_types::DOCKER_CONFIG
    );
    assert_eq!(pulled.layers[0].digest(), &image.layers[0].0);
    assert_store_clean(store_dir.path());

    // kiln pushes; skopeo pulls it back unchanged.
    let pushed = reference(&registry, "kiln/by-kiln:1");
    let (_dir2, source2, image2) = source_image("by-kiln", &[9_000]);
    client
        .push(&pushed, &image2.manifest, &source2, &PushOptions::default())
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/kiln/by-kiln:1", registry.host()),
        &format!("oci:{}:copy", out.path().display()),
    ]);
    let copied = OciDir::open(out.path())
        .unwrap()
        .resolve(Some("copy"))
        .unwrap();
    assert_eq!(copied.digest(), &image2.manifest.digest);
}

#[tokio::test]
async fn streamed_and_chunked_uploads_arrive_intact() {
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let (_dir, source, image) = source_image("upload-modes", &[400_000, 150_000]);
    for (repository, chunk_size) in [("kiln/streamed", None), ("kiln/chunked", Some(64 * 1024))] {
        let mut config = ClientConfig::anonymous();
        config.monolithic_upload_max = 16 * 1024;
        config.chunk_size = chunk_size;
        let client = RegistryClient::new(config);
        let target = reference(&registry, &format!("{repository}:1"));
        let before = settled_log(&registry).len();
        let report = client
            .push(&target, &image.manifest, &source, &PushOptions::default())
            .await
            .unwrap();
        assert_eq!(report.stats.blobs_uploaded, 3);
        let layer_bytes: u64 = image.layers.iter().map(|(_, b)| b.len() as u64).sum();
        assert_eq!(
            report.stats.bytes_uploaded,
            layer_bytes + image.config.1.len() as u64
        );
        let patches = settled_log(&registry)[before..]
            .iter()
            .filter(|r| r.method == "PATCH" && r.status == 202)
            .count();
        let expected_patches = match chunk_size {
            None => 2,
            Some(chunk) => image
                .layers
                .iter()
                .map(|(_, b)| (b.len() as u64).div_ceil(chunk) as usize)
                .sum(),
        };
        assert_eq!(patches, expected_patches, "{repository}");
        let store_dir = tempfile::tempdir().unwrap();
        let store = OciDir::create(store_dir.path()).unwrap();
        let pulled = client
            .pull(&target, &PullOptions::default(), &store)
            .await
            .unwrap();
        assert_eq!(pulled.manifest.digest, image.manifest.digest);
        for (digest, blob) in &image.layers {
            assert_eq!(&store.read_all(digest).unwrap(), blob);
        }
    }
}

#[tokio::test]
async fn token_auth_end_to_end() {
    let Some(registry) = start(Mode::Token) else {
        return;
    };
    let (user, password) = registry.credentials().unwrap();
    let realm = registry.token_realm().unwrap();
    let (_dir, source, base) = source_image("token-base", &[20_000]);

    // Anonymous: the token endpoint refuses, and the error names it.
    let anonymous = client();
    let error = anonymous
        .push(
            &reference(&registry, "kiln/base:1"),
            &base.manifest,
            &source,
            &PushOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::TokenRequest { .. }), "{error}");
    assert!(error.to_string().contains(&realm), "{error}");

    let mut config = ClientConfig::anonymous();
    config.credentials = CredentialSources::anonymous().with_credential(
        &registry.host(),
        kiln_registry::auth::Credential::Basic {
            username: user.clone(),
            password,
        },
    );
    let client = RegistryClient::new(config);
    client.check_credentials(&registry.host()).await.unwrap();
    client
        .push(
            &reference(&registry, "kiln/base:1"),
            &base.manifest,
            &source,
            &PushOptions::default(),
        )
        .await
        .unwrap();
    let mut mount_from = HashMap::new();
    mount_from.insert(base.layers[0].0.clone(), "kiln/base".to_owned());
    let report = client
        .push(
            &reference(&registry, "kiln/app:1"),
            &base.manifest,
            &source,
            &PushOptions {
                tags: vec![],
                mount_from,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.stats.blobs_mounted, 1);
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let pulled = client
        .pull(
            &reference(&registry, "kiln/app:1"),
            &PullOptions::default(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, base.manifest.digest);

    let requests = registry.token_requests();
    let granted: Vec<_> = requests.iter().filter(|r| r.status == 200).collect();
    assert!(
        granted
            .iter()
            .all(|r| r.account.as_deref() == Some(user.as_str())),
        "{requests:?}"
    );
    let mount_token = granted
        .iter()
        .find(|r| r.scopes.len() == 2)
        .unwrap_or_else(|| panic!("no token asked for two scopes: {requests:?}"));
    let mut scopes = mount_token.scopes.clone();
    scopes.sort();
    assert_eq!(
        scopes,
        vec!["repository:kiln/app:pull,push", "repository:kiln/base:pull"]
    );
    assert!(
        granted
            .iter()
            .any(|r| r.scopes == vec!["repository:kiln/app:pull".to_owned()]),
        "{requests:?}"
    );
    // One token per scope set: pushing base, pushing app (with the mount), pulling app,
    // plus the login check.
    assert!(
        granted.len() <= 4,
        "tokens are cached per scope set: {requests:?}"
    );
}

#[tokio::test]
async fn busybox_from_the_harness_round_trips_and_matches_skopeo() {
    let Some(registry) = start(Mode::Http) else {
        return;
    };
    let busybox = kiln_testimages::images::busybox().expect("build the busybox test image");
    let layout = OciDir::open(&busybox.layout).unwrap();
    let descriptor = layout.resolve(Some(&busybox.name)).unwrap();
    let manifest = RawManifest::new(
        layout.read_all(descriptor.digest()).unwrap(),
        Some(descriptor.media_type().as_ref()),
    );
    assert_eq!(manifest.digest.to_string(), busybox.manifest_digest);
    let client = client();
    let report = client
        .push(
            &reference(&registry, "kiln/busybox:1"),
            &manifest,
            &layout,
            &PushOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.digest.to_string(), busybox.manifest_digest);
    // skopeo pushing the same image elsewhere gives the same digest.
    let by_skopeo = kiln_testimages::images::push(&busybox, &registry, "skopeo/busybox:1").unwrap();
    assert_eq!(by_skopeo, busybox.manifest_digest);
    let store_dir = tempfile::tempdir().unwrap();
    let store = OciDir::create(store_dir.path()).unwrap();
    let pulled = client
        .pull(
            &reference(&registry, "skopeo/busybox:1"),
            &PullOptions::default(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest.to_string(), busybox.manifest_digest);
    assert_eq!(pulled.config.digest().to_string(), busybox.config_digest);
    let layers: Vec<String> = pulled
        .layers
        .iter()
        .map(|l| l.digest().to_string())
        .collect();
    assert_eq!(layers, busybox.layer_digests);
    assert_store_clean(store_dir.path());
}
