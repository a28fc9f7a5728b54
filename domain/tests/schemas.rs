//! The JSON Schemas in `schemas/` against the code they are generated from and the events
//! they describe:
//! - the checked-in files are byte for byte what the types generate (rewrite them with
//!   `make schemas`, i.e. `NEXYSYNC_BLESS_SCHEMAS=1 cargo test -p nexysync-domain --test
//!   schemas`, and review the diff), and each is a valid JSON Schema 2020-12;
//! - every kind the envelope can carry has a schema for each of its versions, and the
//!   newest is the shape `EventBody` actually carries;
//! - every golden event validates against its kind's schema and the envelope schema, and
//!   events the code would refuse do not.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::event::schema::{
    envelope_schema, generator, to_file_text, versions, EventSchema, EVENT_SCHEMAS,
};
use nexysync_domain::event::{
    fields, Actor, AgentRegistered, ChainLink, Draft, EventBody, EventKind, MessageSent,
};
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, Seq};
use schemars::Schema;
use serde_json::{json, Value};

const ENVELOPE_FILE: &str = "envelope.v1.schema.json";

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

/// Every generated file: its path under `schemas/` and its text.
fn generated() -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, String> = EVENT_SCHEMAS
        .iter()
        .map(|entry| (entry.path(), to_file_text(&entry.schema())))
        .collect();
    files.insert(ENVELOPE_FILE.into(), to_file_text(&envelope_schema()));
    files
}

fn blessing() -> bool {
    std::env::var("NEXYSYNC_BLESS_SCHEMAS").is_ok_and(|v| v == "1")
}

#[test]
fn checked_in_schemas_are_what_the_types_generate() {
    let files = generated();
    if blessing() {
        let events = schemas_dir().join("events");
        // A fresh directory: a file whose (kind, version) left the list goes too.
        if events.exists() {
            std::fs::remove_dir_all(&events).unwrap();
        }
        std::fs::create_dir_all(&events).unwrap();
        for (path, text) in &files {
            std::fs::write(schemas_dir().join(path), text).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (path, text) in &files {
        match std::fs::read_to_string(schemas_dir().join(path)) {
            Ok(on_disk) if &on_disk == text => {}
            Ok(_) => stale.push(format!("{path} differs")),
            Err(_) => stale.push(format!("{path} is missing")),
        }
    }
    let on_disk = std::fs::read_dir(schemas_dir().join("events"))
        .into_iter()
        .flatten();
    for entry in on_disk {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !files.contains_key(&format!("events/{name}")) {
            stale.push(format!(
                "events/{name} matches no (kind, version) of EVENT_SCHEMAS"
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ drifted from the types: {}.\nRegenerate with `make schemas` \
         (NEXYSYNC_BLESS_SCHEMAS=1 cargo test -p nexysync-domain --test schemas) and review the diff.",
        stale.join("; ")
    );
}

#[test]
fn every_schema_is_a_valid_json_schema() {
    let mut all: Vec<(String, Schema)> = EVENT_SCHEMAS
        .iter()
        .map(|e| (e.path(), e.schema()))
        .collect();
    all.push((ENVELOPE_FILE.into(), envelope_schema()));
    for (path, schema) in all {
        if let Err(e) = jsonschema::meta::validate(schema.as_value()) {
            panic!("{path} is not a valid JSON Schema 2020-12: {e}");
        }
    }
}

/// The `meta` reference of each kind in the envelope's generated `oneOf`: what
/// `EventBody` carries today.
fn current_kinds(generator: &mut schemars::SchemaGenerator) -> BTreeMap<String, Value> {
    let body = generator.subschema_for::<EventBody>();
    let definitions = generator.definitions().clone();
    let name = body
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .unwrap()
        .to_owned();
    definitions[&name]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|branch| {
            let kind = branch["properties"]["kind"]["const"]
                .as_str()
                .unwrap()
                .to_owned();
            (kind, branch["properties"]["meta"].clone())
        })
        .collect()
}

#[test]
fn every_kind_has_a_schema_for_each_of_its_versions_and_the_newest_is_what_the_code_writes() {
    let mut generator = generator();
    let current = current_kinds(&mut generator);
    let listed = versions();
    let kinds_in_body: BTreeSet<&str> = current.keys().map(String::as_str).collect();
    let kinds_listed: BTreeSet<&str> = listed.keys().copied().collect();
    assert_eq!(
        kinds_in_body, kinds_listed,
        "EVENT_SCHEMAS (domain/src/event/schema.rs) and EventBody disagree on the kinds"
    );
    generator.subschema_for::<EventKind>();
    let kind_enum = generator.definitions()["EventKind"]["enum"].clone();
    let kinds_in_enum: BTreeSet<&str> = kind_enum
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        kinds_in_enum, kinds_listed,
        "EventKind and EVENT_SCHEMAS disagree"
    );
    for (kind, list) in &listed {
        let expected: Vec<u16> = (1..=list.len() as u16).collect();
        assert_eq!(
            list, &expected,
            "{kind}: versions must be listed once each, from 1, in order"
        );
        let newest = EVENT_SCHEMAS
            .iter()
            .rfind(|entry| entry.kind.as_str() == *kind)
            .unwrap();
        assert_eq!(
            newest.meta_in(&mut generator).to_value(),
            current[*kind],
            "{kind}: the newest version in EVENT_SCHEMAS must have the meta type EventBody carries"
        );
    }
}

fn validator(schema: &Schema) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema.as_value())
        .unwrap()
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// `<kind>.v<N>.json` → the registry's entry for it.
fn entry_for(file: &str) -> &'static EventSchema {
    let stem = file.strip_suffix(".json").unwrap();
    let (kind, version) = stem.rsplit_once(".v").unwrap();
    let version: u16 = version.parse().unwrap();
    EVENT_SCHEMAS
        .iter()
        .find(|e| e.kind.as_str() == kind && e.version == version)
        .unwrap_or_else(|| panic!("golden {file} has no schema in EVENT_SCHEMAS"))
}

fn golden() -> Vec<(String, Value)> {
    let mut files: Vec<(String, Value)> = std::fs::read_dir(schemas_dir().join("golden"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (name, value)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[test]
fn every_golden_event_validates_against_its_kind_and_the_envelope() {
    let envelope = validator(&envelope_schema());
    let golden = golden();
    assert!(golden.len() >= EVENT_SCHEMAS.len());
    let mut seen = BTreeSet::new();
    for (file, event) in &golden {
        let entry = entry_for(file);
        seen.insert(entry.path());
        let problems = errors(&validator(&entry.schema()), event);
        assert!(
            problems.is_empty(),
            "{file} against {}: {problems:?}",
            entry.path()
        );
        let problems = errors(&envelope, event);
        assert!(
            problems.is_empty(),
            "{file} against the envelope: {problems:?}"
        );
    }
    for entry in EVENT_SCHEMAS {
        assert!(
            seen.contains(&entry.path()),
            "{} has no golden example in schemas/golden",
            entry.path()
        );
    }
}

/// Edits a golden event in place.
fn with(mut event: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut event);
    event
}

#[test]
fn events_the_code_refuses_fail_the_schemas_too() {
    let golden: BTreeMap<String, Value> = golden().into_iter().collect();
    let sent = &golden["message_sent.v1.json"];
    let shared = &golden["file_shared.v1.json"];
    let envelope = validator(&envelope_schema());
    let message_sent = validator(&entry_for("message_sent.v1.json").schema());
    let file_shared = validator(&entry_for("file_shared.v1.json").schema());
    let bad_sent = [
        (
            "a v4 event id",
            with(sent.clone(), |e| e["id"] = json!(uuid_v4())),
        ),
        (
            "a short signature",
            with(sent.clone(), |e| e["sig"] = json!("AAAA")),
        ),
        (
            "an unknown kind",
            with(sent.clone(), |e| e["kind"] = json!("message_sung")),
        ),
        (
            "no signature",
            with(sent.clone(), |e| {
                e.as_object_mut().unwrap().remove("sig");
            }),
        ),
        (
            "an upper-case blind index",
            with(sent.clone(), |e| {
                e["meta"]["topic_ix"] = json!("92C3BAC53D877A3DE7FDA219C023B9FC")
            }),
        ),
        (
            "a 13-byte nonce",
            with(sent.clone(), |e| {
                e["sealed"]["body"]["n"] = json!("eSeezvETOr31Sa1lAA==")
            }),
        ),
        (
            "a text ttl",
            with(sent.clone(), |e| e["meta"]["ttl_s"] = json!("3600")),
        ),
        (
            "an actor that is neither owner nor a uuid",
            with(sent.clone(), |e| e["actor"] = json!("root")),
        ),
    ];
    for (what, event) in &bad_sent {
        assert!(
            envelope.validate(event).is_err(),
            "the envelope schema took {what}"
        );
        assert!(
            message_sent.validate(event).is_err(),
            "message_sent took {what}"
        );
        // The code refuses them as well: the schemas are not stricter than serde.
        assert!(
            serde_json::from_value::<nexysync_domain::event::Envelope>(event.clone()).is_err(),
            "the code took {what}"
        );
    }
    let bad_file = with(shared.clone(), |e| e["meta"]["digest"] = json!("not-hex"));
    assert!(file_shared.validate(&bad_file).is_err());
    // A valid event of another kind is not a `message_sent`.
    assert!(message_sent.validate(shared).is_err());
    assert!(file_shared.validate(sent).is_err());
}

fn uuid_v4() -> String {
    // Version nibble 4: a valid UUID but not an event id.
    "6f1c1a52-8f0e-4d7a-9c1e-0b7f3a2d4e5f".into()
}

#[test]
fn fresh_events_validate_whatever_their_random_bytes() {
    let envelope = validator(&envelope_schema());
    let message_sent = validator(&entry_for("message_sent.v1.json").schema());
    let agent_registered = validator(&entry_for("agent_registered.v1.json").schema());
    let keys = ProjectKey::generate().content_keys();
    for length in 0..40 {
        let key = SigningKey::generate();
        let mut event = Draft::new(
            ProjectId::generate(),
            Actor::Agent(AgentId::generate()),
            EventBody::MessageSent(MessageSent {
                to: Some(AgentId::generate()),
                reply_to: Some(EventId::generate()),
                ttl_s: None,
                topic_ix: Some(keys.blind_index("topic", &length.to_string())),
            }),
        )
        .seal(&keys, fields::BODY, &vec![b'x'; length])
        .sign(&key);
        event.prev = Some(ChainLink {
            seq: Seq(length as u64 + 1),
            hash: event.hash(),
        });
        let value: Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(errors(&envelope, &value), Vec::<String>::new());
        assert_eq!(errors(&message_sent, &value), Vec::<String>::new());

        let registration = Draft::new(
            event.project,
            Actor::Owner,
            EventBody::AgentRegistered(AgentRegistered {
                agent: AgentId::generate(),
                name: AgentName::parse(&format!("agent-{length}")).unwrap(),
                signing_key: key.public_key(),
                token_hash: AgentToken::generate().hash(),
            }),
        )
        .sign(&SigningKey::generate());
        let value: Value = serde_json::from_slice(&registration.to_json()).unwrap();
        assert_eq!(errors(&envelope, &value), Vec::<String>::new());
        assert_eq!(errors(&agent_registered, &value), Vec::<String>::new());
    }
}
