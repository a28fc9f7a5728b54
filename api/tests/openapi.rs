//! The OpenAPI document against the code and the checked-in `schemas/openapi.json`:
//! - the file is byte for byte what the route table generates (rewrite it with
//!   `make schemas`, i.e. `NEXYSYNC_BLESS_SCHEMAS=1 cargo test -p nexysync-api --test
//!   openapi`, and review the diff);
//! - every reference resolves, every path parameter is declared, every operation that
//!   takes a token says which;
//! - the answers the API builds from stored JSON have the fields of the `domain::wire`
//!   types the clients parse them with.
//!
//! That a live server serves this document, and answers as it says, is
//! `tests/tests/openapi.rs`.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use nexysync_domain::wire;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi.json")
}

fn document() -> Value {
    serde_json::from_str(nexysync_api::document_text()).unwrap()
}

#[test]
fn the_checked_in_document_is_what_the_routes_generate() {
    let text = nexysync_api::document_text();
    if std::env::var("NEXYSYNC_BLESS_SCHEMAS").is_ok_and(|v| v == "1") {
        std::fs::write(checked_in(), text).unwrap();
    }
    let on_disk = std::fs::read_to_string(checked_in()).unwrap_or_default();
    assert!(
        on_disk == text,
        "schemas/openapi.json drifted from the routes and types. Regenerate it with \
         `make schemas` (NEXYSYNC_BLESS_SCHEMAS=1 cargo test -p nexysync-api --test openapi) \
         and review the diff."
    );
}

fn refs_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => refs_in(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs_in(item, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_operation_is_complete() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut refs = Vec::new();
    refs_in(&doc, &mut refs);
    assert!(!refs.is_empty());
    for target in &refs {
        let pointer = target.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
    // Two types of one name get `Name2` from schemars: a collision to resolve by a rename.
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            !name.ends_with(|c: char| c.is_ascii_digit()),
            "two types are both named like {name}; give one a #[schemars(rename)]"
        );
    }
    let methods = ["get", "post", "put", "delete", "patch"];
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, operation) in item.as_object().unwrap() {
            assert!(methods.contains(&method.as_str()), "{path}: {method}");
            assert!(ids.insert(operation["operationId"].as_str().unwrap().to_owned()));
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(declared, in_path, "{method} {path}");
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} has no success answer"
            );
            let public = operation["security"].as_array().unwrap().is_empty();
            let is_public_path = path.starts_with("/healthz")
                || path.starts_with("/readyz")
                || path == "/v1/openapi.json";
            assert_eq!(public, is_public_path, "{method} {path}: auth");
            if !public {
                assert!(responses.contains_key("401"), "{method} {path}");
            }
            if method != "get" && path != "/v1/files/{id}/commit" {
                assert!(
                    operation["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{method} {path} takes a signed event"
                );
            }
        }
    }
}

fn properties_of<T: JsonSchema>() -> BTreeSet<String> {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn answers_have_the_fields_of_the_wire_types_clients_parse() {
    let doc = document();
    let components = &doc["components"]["schemas"];
    let wire_types = [
        ("Appended", properties_of::<wire::Appended>()),
        ("KvAppended", properties_of::<wire::KvAppended>()),
        ("StoredEvent", properties_of::<wire::StoredEvent>()),
        ("MessageEntry", properties_of::<wire::MessageEntry>()),
        ("MessagePage", properties_of::<wire::MessagePage>()),
        ("Thread", properties_of::<wire::Thread>()),
        ("WhoAmI", properties_of::<wire::WhoAmI>()),
        ("AgentInfo", properties_of::<wire::AgentInfo>()),
        ("AgentList", properties_of::<wire::AgentList>()),
        ("PresenceList", properties_of::<wire::PresenceList>()),
        ("QuotaStatus", properties_of::<wire::QuotaStatus>()),
        ("KvEntry", properties_of::<wire::KvEntry>()),
        ("KvPage", properties_of::<wire::KvPage>()),
        ("RefPage", properties_of::<wire::RefPage>()),
        ("FilePage", properties_of::<wire::FilePage>()),
        ("FileDownload", properties_of::<wire::FileDownload>()),
        ("UploadTicket", properties_of::<wire::UploadTicket>()),
        ("ErrorBody", properties_of::<wire::ErrorBody>()),
    ];
    for (name, expected) in wire_types {
        let found: BTreeSet<String> = components[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no {name} in the document"))
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            found, expected,
            "{name}: the API's answer and domain::wire disagree"
        );
    }
}
