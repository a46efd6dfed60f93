//! The CycloneDX document: schema validity, determinism, content.

use std::collections::BTreeMap;

use kiln_sbom::{BaseImage, BuildStep, ImageDescription};
use serde_json::Value;

use crate::attribution::three_layer_inventory;
use crate::common::{image, schema_errors, valid_bom};

fn described(digit: char) -> ImageDescription {
    let mut image = image(digit);
    image.base_images = vec![BaseImage {
        reference: "docker.io/library/debian:bookworm".to_owned(),
        digest: format!("sha256:{}", "d".repeat(64)),
    }];
    image.build_args = BTreeMap::from([
        ("PIP_INDEX".to_owned(), "https://pypi.org/simple".to_owned()),
        ("APT_MIRROR".to_owned(), "deb.debian.org".to_owned()),
    ]);
    image.dockerfile_digest = Some(format!("sha256:{}", "e".repeat(64)));
    image.source_date_epoch = Some(1_700_000_000);
    image.target = Some("final".to_owned());
    image.pinned_images = BTreeMap::from([(
        "debian:bookworm".to_owned(),
        format!(
            "docker.io/library/debian:bookworm@sha256:{}",
            "d".repeat(64)
        ),
    )]);
    image.steps = vec![
        BuildStep {
            stage: "final".to_owned(),
            instruction: "FROM docker.io/library/debian:bookworm".to_owned(),
            source: Some("Dockerfile:1".to_owned()),
            layer_digest: None,
        },
        BuildStep {
            stage: "final".to_owned(),
            instruction: "RUN pip install demo".to_owned(),
            source: Some("Dockerfile:3".to_owned()),
            layer_digest: Some(format!("sha256:{}", "3".repeat(64))),
        },
        BuildStep {
            stage: "final".to_owned(),
            instruction: "RUN echo same".to_owned(),
            source: None,
            layer_digest: None,
        },
        BuildStep {
            stage: "final".to_owned(),
            instruction: "RUN echo same".to_owned(),
            source: None,
            layer_digest: None,
        },
    ];
    image
}

#[test]
fn document_is_valid_deterministic_and_bound_to_the_digest() {
    let inventory = three_layer_inventory();
    let first = valid_bom(&inventory, &described('a'));
    let second = valid_bom(&three_layer_inventory(), &described('a'));
    assert_eq!(first, second, "same input, same bytes");
    let other = valid_bom(&inventory, &described('b'));
    let serial = |bytes: &[u8]| -> String {
        let document: Value = serde_json::from_slice(bytes).unwrap();
        document["serialNumber"].as_str().unwrap().to_owned()
    };
    assert_ne!(serial(&first), serial(&other));
    assert!(serial(&first).starts_with("urn:uuid:"));
}

#[test]
fn document_content() {
    let inventory = three_layer_inventory();
    let document: Value = serde_json::from_slice(&valid_bom(&inventory, &described('a'))).unwrap();
    assert_eq!(document["bomFormat"], "CycloneDX");
    assert_eq!(document["specVersion"], "1.6");
    assert_eq!(document["version"], 1);
    let metadata = &document["metadata"];
    assert_eq!(metadata["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(metadata["tools"]["components"][0]["name"], "kiln");
    assert_eq!(metadata["tools"]["components"][0]["version"], "0.1.0");
    let subject = &metadata["component"];
    assert_eq!(subject["type"], "container");
    assert_eq!(
        subject["purl"],
        format!(
            "pkg:oci/app@sha256%3A{}?repository_url=ghcr.io/acme/app&tag=1.0",
            "a".repeat(64)
        )
    );
    assert_eq!(subject["properties"][1]["value"], "latest");
    let metadata_properties: Vec<(&str, &str)> = metadata["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        metadata_properties[0],
        ("kiln:build-arg:APT_MIRROR", "deb.debian.org")
    );
    assert!(metadata_properties.contains(&(
        "kiln:dockerfile:digest",
        &*format!("sha256:{}", "e".repeat(64))
    )));
    // The inputs `kiln verify` rebuilds with.
    assert!(metadata_properties.contains(&("kiln:source-date-epoch", "1700000000")));
    assert!(metadata_properties.contains(&("kiln:target", "final")));
    assert!(metadata_properties.contains(&(
        "kiln:base:debian:bookworm",
        &*format!(
            "docker.io/library/debian:bookworm@sha256:{}",
            "d".repeat(64)
        )
    )));

    let components = document["components"].as_array().unwrap();
    let purls: Vec<&str> = components
        .iter()
        .map(|c| c["purl"].as_str().unwrap_or(""))
        .collect();
    let mut sorted = purls.clone();
    sorted.sort();
    assert_eq!(purls, sorted, "components sorted by purl");
    let find = |name: &str| {
        components
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no component {name}"))
    };
    let properties = |component: &Value| -> BTreeMap<String, String> {
        component["properties"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().to_owned(),
                            p["value"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let curl = find("curl");
    let curl_properties = properties(curl);
    assert_eq!(curl_properties["kiln:source"], "Dockerfile:5");
    assert_eq!(curl_properties["kiln:stage"], "final");
    assert_eq!(
        curl_properties["kiln:layer:digest"],
        format!("sha256:{}", "5".repeat(64))
    );
    assert!(curl_properties["kiln:instruction"].starts_with("RUN apt-get install"));
    assert_eq!(curl["licenses"][0]["license"]["id"], "curl");
    assert_eq!(
        curl["evidence"]["occurrences"][1]["location"],
        "/var/lib/dpkg/status"
    );
    let libc = find("libc6");
    let libc_properties = properties(libc);
    assert_eq!(
        libc_properties["kiln:base-image"],
        "docker.io/library/debian:bookworm"
    );
    assert_eq!(libc_properties["kiln:source-package"], "glibc");
    let os = find("debian");
    assert_eq!(os["type"], "operating-system");
    assert_eq!(os["version"], "12");
    let base = components
        .iter()
        .find(|c| c["type"] == "container")
        .expect("base image component");
    assert_eq!(base["hashes"][0]["content"], "d".repeat(64));
    assert_eq!(base["name"], "docker.io/library/debian");

    let dependencies = document["dependencies"].as_array().unwrap();
    let curl_ref = curl["bom-ref"].as_str().unwrap();
    let curl_node = dependencies.iter().find(|d| d["ref"] == curl_ref).unwrap();
    assert_eq!(curl_node["dependsOn"][0], libc["bom-ref"]);
    let image_node = dependencies
        .iter()
        .find(|d| d["ref"] == subject["bom-ref"])
        .unwrap();
    assert_eq!(image_node["dependsOn"][0], base["bom-ref"]);
    let refs: Vec<&str> = dependencies
        .iter()
        .map(|d| d["ref"].as_str().unwrap())
        .collect();
    let mut sorted_refs = refs.clone();
    sorted_refs.sort();
    assert_eq!(refs, sorted_refs);

    let workflow = &document["formulation"][0]["workflows"][0];
    assert_eq!(workflow["taskTypes"][0], "build");
    let steps = workflow["tasks"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[1]["name"], "Dockerfile:3");
    assert_eq!(steps[1]["commands"][0]["executed"], "RUN pip install demo");
    assert_eq!(steps[3]["name"], "RUN");
}

#[test]
fn bom_refs_are_unique() {
    let document: Value =
        serde_json::from_slice(&valid_bom(&three_layer_inventory(), &described('a'))).unwrap();
    let mut refs = vec![
        document["metadata"]["component"]["bom-ref"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for component in document["components"].as_array().unwrap() {
        refs.push(component["bom-ref"].as_str().unwrap().to_owned());
    }
    let count = refs.len();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), count);
}

#[test]
fn the_schema_check_rejects_what_the_schema_forbids() {
    let valid = valid_bom(&three_layer_inventory(), &described('a'));
    let mut document: Value = serde_json::from_slice(&valid).unwrap();
    document["components"][0]["licenses"] =
        serde_json::json!([{"license": {"id": "Not-An-SPDX-Licence"}}]);
    document["metadata"]["timestamp"] = Value::String("yesterday".to_owned());
    let Some(errors) = schema_errors(&serde_json::to_vec(&document).unwrap()) else {
        eprintln!("skipping: no CycloneDX schema");
        return;
    };
    assert!(errors.len() >= 2, "{errors:?}");
}
