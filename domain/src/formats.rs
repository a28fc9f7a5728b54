//! JSON Schemas of the values that serialise as text of their own: ids (UUID strings),
//! names, keys and signatures (base64), digests and blind indexes (hex), the actor.
//!
//! Their serde forms are hand-written (`try_from`/`into` a string, `with = "b64"`, a
//! visitor of their own), so a derived schema would say "any string" or worse; these say
//! exactly which strings. Each
//! pattern is the form this crate writes, which is also what it accepts (UUIDs aside: the
//! parser also takes braced and URN forms, which nothing here ever writes).
//! Kept in one file, beside the encodings they mirror, so the schemas are reviewed
//! together; `domain/tests/schemas.rs` checks them against real values.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::crypto::{BlindIndex, PublicKey, Signature, TokenHash};
use crate::event::{Actor, EventHash};
use crate::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName};

const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const UUID_V7_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
/// Standard base64 with canonical padding, any length.
const BASE64_PATTERN: &str = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

/// Standard, padded base64 of exactly `bytes` bytes.
fn base64_of(bytes: usize, description: &str) -> Schema {
    let chars = bytes / 3 * 4 + [0, 2, 3][bytes % 3];
    let padding = ["", "==", "="][bytes % 3];
    json_schema!({
        "type": "string",
        "description": description,
        "contentEncoding": "base64",
        "pattern": format!("^[A-Za-z0-9+/]{{{chars}}}{padding}$"),
    })
}

/// Lowercase hex of exactly `bytes` bytes.
fn hex_of(bytes: usize, description: &str) -> Schema {
    json_schema!({
        "type": "string",
        "description": description,
        "pattern": format!("^[0-9a-f]{{{}}}$", bytes * 2),
    })
}

fn uuid(pattern: &str, description: &str) -> Schema {
    json_schema!({
        "type": "string",
        "format": "uuid",
        "description": description,
        "pattern": pattern,
    })
}

/// Implements [`JsonSchema`] for a type from a function building its schema.
macro_rules! schema {
    ($ty:ty, $name:literal, $build:expr) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }

            fn schema_id() -> Cow<'static, str> {
                Cow::Borrowed(concat!("nexysync_domain::", $name))
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $build
            }
        }
    };
}

schema!(
    ProjectId,
    "ProjectId",
    uuid(UUID_PATTERN, "A project's id (UUID).")
);
schema!(
    AgentId,
    "AgentId",
    uuid(UUID_PATTERN, "An agent's id (UUID).")
);
schema!(
    EventId,
    "EventId",
    uuid(
        UUID_V7_PATTERN,
        "An event's id: a UUIDv7 chosen by the client (time-ordered; also the append's idempotency key and a message's or file's id)."
    )
);

fn name(description: &str) -> Schema {
    json_schema!({
        "type": "string",
        "description": description,
        "minLength": 1,
        "maxLength": 64,
        "pattern": NAME_PATTERN,
    })
}

schema!(
    ProjectName,
    "ProjectName",
    name("A project's name: 1 to 64 of a-z, A-Z, 0-9, '.', '_', '-', starting with a letter or digit.")
);
schema!(
    AgentName,
    "AgentName",
    name("An agent's name, unique in its project: 1 to 64 of a-z, A-Z, 0-9, '.', '_', '-', starting with a letter or digit.")
);

schema!(
    PublicKey,
    "PublicKey",
    base64_of(32, "An Ed25519 public key (32 bytes, base64).")
);
schema!(
    Signature,
    "Signature",
    base64_of(64, "An Ed25519 signature (64 bytes, base64).")
);
schema!(
    BlindIndex,
    "BlindIndex",
    hex_of(
        16,
        "A blind index: 128 bits of HMAC under a key derived from the project key (lowercase hex)."
    )
);
schema!(
    TokenHash,
    "TokenHash",
    hex_of(32, "SHA-256 of an agent's bearer token (lowercase hex).")
);
schema!(
    EventHash,
    "EventHash",
    hex_of(
        32,
        "SHA-256 of an event, as the next event's `prev` names it (lowercase hex)."
    )
);

schema!(
    Actor,
    "Actor",
    json_schema!({
        "description": "Who acted: `owner` (the project owner, for provisioning), `pruner` (the server's retention pruner, for tombstones) or an agent's id.",
        "oneOf": [
            { "type": "string", "const": "owner" },
            { "type": "string", "const": "pruner" },
            { "type": "string", "format": "uuid", "pattern": UUID_PATTERN },
        ],
    })
);

/// Schemas of the parts of a sealed field (`#[schemars(schema_with = …)]`).
pub(crate) mod sealed {
    use schemars::{json_schema, Schema, SchemaGenerator};

    pub(crate) fn nonce(_: &mut SchemaGenerator) -> Schema {
        super::base64_of(12, "`n`: the fresh random 96-bit AES-GCM nonce (base64).")
    }

    pub(crate) fn ciphertext(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "`c`: AES-256-GCM ciphertext and its 16-byte tag (base64).",
            "contentEncoding": "base64",
            "minLength": 24,
            "pattern": super::BASE64_PATTERN,
        })
    }

    pub(crate) fn commitment(_: &mut SchemaGenerator) -> Schema {
        super::base64_of(32, "`k`: the key commitment (HMAC, 32 bytes, base64).")
    }

    pub(crate) fn binding(_: &mut SchemaGenerator) -> Schema {
        super::base64_of(
            16,
            "`b`: the binding tag to (project, event, field) (HMAC, 16 bytes, base64).",
        )
    }
}

/// The digest of a shared file's ciphertext (`#[schemars(schema_with = …)]`).
pub(crate) fn sha256_hex(_: &mut SchemaGenerator) -> Schema {
    hex_of(
        32,
        "Lowercase hex SHA-256 of the encrypted blob, which the CDN checks on upload.",
    )
}

/// A file declaration's digest: hex SHA-256, or empty when the declaration leaves it to
/// the CDN's receipt (never empty in the log).
pub(crate) fn sha256_hex_or_pending(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [sha256_hex(generator), { "type": "string", "const": "" }],
    })
}
