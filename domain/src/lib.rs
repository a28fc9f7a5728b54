//! NexySync's domain: the shapes and rules every other crate agrees on, with no I/O.
//!
//! # Layout
//! - [`ids`]: newtype ids (project, agent, event as UUIDv7, stream sequence) and names.
//! - [`crypto`]: client-side crypto: project key and HKDF subkeys, AES-256-GCM sealing with
//!   key commitment and field binding, HMAC blind indexes, Ed25519 signatures, tokens.
//! - [`event`]: the envelope (version 1), event kinds, canonical signing bytes, the hash
//!   chain and its verifier; `event::schema`, the list of every (kind, version) and the
//!   JSON Schemas generated from it (`schemas/`). `formats` holds the schemas of the
//!   values with a text form of their own (ids, base64 keys, hex digests).
//! - [`decide`]: the pure decision whether a signed event may be appended.
//! - [`presence`]: the server's presence events (no content, unsigned) and the pure
//!   board that tells who is online, including after an instance goes silent.
//! - [`quota`]: per-project limits and usage, and the pure checks of the write path.
//! - [`audit`]: the pure auditor of a project's log (authorship, chain, root of trust,
//!   message-state events on messages of the log, deletions by their sender).
//! - [`wire`]: the HTTP API's JSON shapes, shared by server and client.
//! - [`pieces`]: pooled byte buffers lent out as `Bytes`, for the file pipelines of the
//!   client and the CDN.
//! - [`blob_url`]: the CDN's signed URLs (HMAC over method, blob, expiry, limits), shared
//!   by the API that signs them and the CDN that checks them.
//!
//! # Invariants
//! - Content is sealed on the client; nothing here sends or stores plaintext.
//! - An event's signature covers its clear metadata and the digest of every sealed field;
//!   its hash also covers the signature and the link to the previous event.
//! - No tokio, sqlx, axum or async-nats: this crate is pure.

pub mod audit;
pub mod blob_url;
pub mod crypto;
pub mod decide;
pub mod direct_file;
pub mod event;
pub mod flushing_file;
mod formats;
pub mod ids;
pub mod pieces;
pub mod presence;
pub mod quota;
pub mod wire;

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod envelope_tests {
    use crate::event::{fields, Envelope};
    use crate::test_support::{message_from, Project};

    #[test]
    fn an_envelope_survives_its_json_form_and_still_verifies() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = message_from(&project, &alice, "hello");
        let json = event.to_json();
        let back: Envelope = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, event);
        assert!(back.verify_signature(&alice.key.public_key()).is_ok());
        assert_eq!(back.hash(), event.hash());
        assert_eq!(
            back.open(&project.keys, fields::BODY).unwrap().unwrap(),
            b"hello"
        );
    }

    #[test]
    fn an_event_hash_is_stored_as_64_hex_digits_and_read_only_as_such() {
        use crate::event::EventHash;
        let hash = message_from(&Project::new(), &Project::new().agent("a"), "x").hash();
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{}\"", hash.to_hex()));
        assert_eq!(serde_json::from_str::<EventHash>(&json).unwrap(), hash);
        for (text, why) in [
            ("ab".repeat(31), "not 32 bytes"),
            ("ab".repeat(33), "not 32 bytes"),
            ("zz".repeat(32), "not hex"),
            (hash.to_hex().to_uppercase(), "not hex"),
            (format!("{}g", "a".repeat(63)), "not hex"),
            (format!("{}é", "a".repeat(62)), "not hex"),
        ] {
            let error = serde_json::from_str::<EventHash>(&format!("\"{text}\"")).unwrap_err();
            assert!(error.to_string().contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn the_stored_form_holds_no_plaintext() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = message_from(&project, &alice, "canary-7f3a9");
        let json = String::from_utf8(event.to_json()).unwrap();
        assert!(!json.contains("canary-7f3a9"));
    }

    #[test]
    fn a_sealed_field_swapped_between_events_fails_to_open_and_to_verify() {
        let project = Project::new();
        let alice = project.agent("alice");
        let first = message_from(&project, &alice, "first");
        let mut second = message_from(&project, &alice, "second");
        second
            .sealed
            .insert(fields::BODY.into(), first.sealed[fields::BODY].clone());
        assert!(second.verify_signature(&alice.key.public_key()).is_err());
        assert!(matches!(
            second.open(&project.keys, fields::BODY),
            Err(crate::crypto::OpenError::Misplaced { .. })
        ));
    }
}
