//! The content store under concurrency, and as an OCI layout other tools read.

use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;

use kiln_builder::digest::Digest;
use kiln_builder::store::{Descriptor, OCI_MANIFEST, Store};

fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn concurrent_writers_of_one_blob_both_succeed_with_one_intact_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    Store::open(&root).unwrap();
    let content = Arc::new(pseudo_random_bytes(8 << 20, 7));
    let expected = Digest::of(&content);
    let writers = 4;
    let barrier = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|_| {
            let (root, content, expected, barrier) = (
                root.clone(),
                content.clone(),
                expected.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                // Each writer opens its own store handle, as separate processes do.
                let store = Store::open(&root).unwrap();
                let mut writer = store.blob_writer().unwrap();
                barrier.wait();
                for chunk in content.chunks(64 * 1024) {
                    writer.write_all(chunk).unwrap();
                }
                writer.commit(Some(&expected), Some(content.len() as u64))
            })
        })
        .collect();
    for handle in handles {
        let (digest, size) = handle.join().unwrap().unwrap();
        assert_eq!(digest, expected);
        assert_eq!(size, content.len() as u64);
    }
    let store = Store::open(&root).unwrap();
    assert_eq!(Digest::of(&store.read_blob(&expected).unwrap()), expected);
    assert_eq!(
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn index_stays_valid_under_concurrent_tagging() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let manifest = store.write_blob(br#"{"schemaVersion":2}"#).unwrap();
    let descriptor = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: manifest,
        size: 19,
        annotations: Default::default(),
        platform: None,
        artifact_type: None,
    };
    let (threads, tags_each) = (6, 40);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (root, descriptor) = (root.clone(), descriptor.clone());
            thread::spawn(move || {
                let store = Store::open(&root).unwrap();
                for i in 0..tags_each {
                    store.tag(&format!("img-{t}:{i}"), &descriptor).unwrap();
                    // A reader in the middle of the storm always sees valid JSON.
                    let bytes = std::fs::read(root.join("index.json")).unwrap();
                    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let names: std::collections::BTreeSet<_> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names.len(), threads * tags_each);
}
