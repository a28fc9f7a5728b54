//! The JSON Schemas of stored events, generated from the types: [`EVENT_SCHEMAS`] is the
//! one list of every (kind, version) and the Rust type of its `meta`; the schemas of
//! `schemas/events/<kind>.v<N>.schema.json` and `schemas/envelope.v1.schema.json` are
//! built from it and from [`Envelope`] here, and `domain/tests/schemas.rs` fails when the
//! checked-in files drift from them (`make schemas` rewrites them).
//!
//! A version is never removed: the log keeps old events forever, so a reader must still
//! be able to check them. A new version of a kind adds one line below (its old type stays,
//! frozen, beside the upcast); a new kind adds one line and a variant of [`EventBody`].
//!
//! [`EventBody`]: super::EventBody

use std::collections::{BTreeMap, BTreeSet};

use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use super::kinds::{
    AgentProfileUpdated, AgentRegistered, FileDeleted, FileShared, KvDeleted, KvSet, MessageSent,
    MessageTarget, ProjectCreated, ProjectCreatedV1, Reaction, RefShared, RetentionPolicy,
};
use super::EventsErased;
use super::{Envelope, EventKind};

/// Every version of every event kind, with the type of its `meta`.
pub const EVENT_SCHEMAS: &[EventSchema] = &[
    EventSchema::of::<ProjectCreatedV1>(EventKind::ProjectCreated, 1),
    EventSchema::of::<ProjectCreated>(EventKind::ProjectCreated, 2),
    EventSchema::of::<AgentRegistered>(EventKind::AgentRegistered, 1),
    EventSchema::of::<MessageSent>(EventKind::MessageSent, 1),
    EventSchema::of::<KvSet>(EventKind::KvSet, 1),
    EventSchema::of::<KvDeleted>(EventKind::KvDeleted, 1),
    EventSchema::of::<RefShared>(EventKind::RefShared, 1),
    EventSchema::of::<Reaction>(EventKind::ReactionAdded, 1),
    EventSchema::of::<Reaction>(EventKind::ReactionRemoved, 1),
    EventSchema::of::<MessageTarget>(EventKind::MessageRead, 1),
    EventSchema::of::<MessageTarget>(EventKind::MessagePinned, 1),
    EventSchema::of::<MessageTarget>(EventKind::MessageUnpinned, 1),
    EventSchema::of::<MessageTarget>(EventKind::MessageDeleted, 1),
    EventSchema::of::<AgentProfileUpdated>(EventKind::AgentProfileUpdated, 1),
    EventSchema::of::<FileShared>(EventKind::FileShared, 1),
    EventSchema::of::<FileDeleted>(EventKind::FileDeleted, 1),
    EventSchema::of::<RetentionPolicy>(EventKind::RetentionSet, 1),
    EventSchema::of::<EventsErased>(EventKind::EventsErased, 1),
];

/// One version of one event kind.
#[derive(Debug, Clone, Copy)]
pub struct EventSchema {
    pub kind: EventKind,
    /// 1 for the first shape of the kind's `meta`, then one more for each change.
    pub version: u16,
    meta: fn(&mut SchemaGenerator) -> Schema,
}

fn meta_schema<M: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<M>()
}

impl EventSchema {
    /// The kind's `version`, whose `meta` has the shape of `M`.
    pub const fn of<M: JsonSchema>(kind: EventKind, version: u16) -> Self {
        Self {
            kind,
            version,
            meta: meta_schema::<M>,
        }
    }

    /// The file's path under `schemas/`: `events/<kind>.v<N>.schema.json`.
    pub fn path(&self) -> String {
        format!(
            "events/{}.v{}.schema.json",
            self.kind.as_str(),
            self.version
        )
    }

    /// The `meta` schema in `generator` (a `$ref` into its definitions for a struct).
    pub fn meta_in(&self, generator: &mut SchemaGenerator) -> Schema {
        (self.meta)(generator)
    }

    /// `kind_v` of this version: absent (or 1) for a first version, else this number.
    fn kind_v_schema(&self) -> Value {
        json_schema!({ "type": "integer", "const": self.version }).to_value()
    }

    /// The members a stored event of this version must have beside the envelope's own.
    fn required(&self) -> Vec<&'static str> {
        match self.version {
            1 => vec!["kind", "meta"],
            _ => vec!["kind", "meta", "kind_v"],
        }
    }

    /// The schema of a whole stored event of this kind and version: the envelope with
    /// `kind` fixed and `meta` of this version's shape. Self-contained (its `$defs` hold
    /// exactly what it refers to).
    pub fn schema(&self) -> Schema {
        let mut generator = generator();
        let mut root = generator.root_schema_for::<Envelope>();
        let meta = self.meta_in(&mut generator).to_value();
        let object = root.ensure_object();
        // The envelope's `oneOf` is its flattened body, one branch per current kind;
        // this file is about one of them.
        object.remove("oneOf");
        object.insert(
            "title".into(),
            format!("{} (version {})", self.kind.as_str(), self.version).into(),
        );
        object.insert(
            "description".into(),
            format!(
                "A stored `{}` event, version {} of its `meta`, in the envelope (version 1) of every event.",
                self.kind.as_str(),
                self.version
            )
            .into(),
        );
        if let Some(Value::Object(properties)) = object.get_mut("properties") {
            properties.insert(
                "kind".into(),
                json_schema!({ "type": "string", "const": self.kind.as_str() }).to_value(),
            );
            properties.insert("meta".into(), meta);
            properties.insert("kind_v".into(), self.kind_v_schema());
        }
        if let Some(Value::Array(required)) = object.get_mut("required") {
            required.extend(["kind".into(), "meta".into()]);
            if self.version > 1 {
                required.push("kind_v".into());
            }
        }
        let definitions = generator.take_definitions(true);
        object.insert("$defs".into(), Value::Object(definitions));
        prune_definitions(&mut root);
        root
    }
}

/// The schema of every stored event (`schemas/envelope.v1.schema.json`): the envelope
/// with one `anyOf` branch per line of [`EVENT_SCHEMAS`], so an event of an old version
/// validates as it was written. (The API's request bodies are the envelope as the code
/// derives it, current versions only: writes are never of an old version.)
pub fn envelope_schema() -> Schema {
    let mut generator = generator();
    let mut root = generator.root_schema_for::<Envelope>();
    let branches: Vec<Value> = EVENT_SCHEMAS
        .iter()
        .map(|entry| {
            json_schema!({
                "title": format!("{} (version {})", entry.kind.as_str(), entry.version),
                "type": "object",
                "properties": {
                    "kind": { "type": "string", "const": entry.kind.as_str() },
                    "kind_v": entry.kind_v_schema(),
                    "meta": entry.meta_in(&mut generator),
                },
                "required": entry.required(),
            })
            .to_value()
        })
        .collect();
    let object = root.ensure_object();
    object.remove("oneOf");
    object.insert("anyOf".into(), branches.into());
    object.insert(
        "description".into(),
        "Any stored event, in the envelope (version 1): `kind` and `meta` of one (kind, version), sealed content, the actor's signature and the link to the project's previous event."
            .into(),
    );
    let definitions = generator.take_definitions(true);
    object.insert("$defs".into(), Value::Object(definitions));
    prune_definitions(&mut root);
    root
}

/// The settings of every schema file: JSON Schema 2020-12, definitions under `$defs`.
pub fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().into_generator()
}

/// Each kind's versions, in order, as listed in [`EVENT_SCHEMAS`].
pub fn versions() -> BTreeMap<&'static str, Vec<u16>> {
    let mut out: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    for entry in EVENT_SCHEMAS {
        out.entry(entry.kind.as_str())
            .or_default()
            .push(entry.version);
    }
    out
}

/// The schema a JSON text is checked against, serialised as the files are: pretty, with
/// a final newline.
pub fn to_file_text(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema always serialises");
    text.push('\n');
    text
}

/// Drops the definitions nothing refers to (from the root or another kept definition).
fn prune_definitions(root: &mut Schema) {
    let Some(object) = root.as_object_mut() else {
        return;
    };
    let Some(Value::Object(definitions)) = object.remove("$defs") else {
        return;
    };
    let mut keep = BTreeSet::new();
    let mut pending = Vec::new();
    refs_in(&Value::Object(object.clone()), &mut pending);
    while let Some(name) = pending.pop() {
        if keep.insert(name.clone()) {
            if let Some(definition) = definitions.get(&name) {
                refs_in(definition, &mut pending);
            }
        }
    }
    let kept: serde_json::Map<String, Value> = definitions
        .into_iter()
        .filter(|(name, _)| keep.contains(name))
        .collect();
    if !kept.is_empty() {
        object.insert("$defs".into(), Value::Object(kept));
    }
}

/// Collects the names of the `#/$defs/<name>` references in `value`.
fn refs_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix("#/$defs/") {
                            out.push(name.to_owned());
                        }
                    }
                    _ => refs_in(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs_in(item, out)),
        _ => {}
    }
}
