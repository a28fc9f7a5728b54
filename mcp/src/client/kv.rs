//! The shared key-value store, client side: keys are found by their blind index, keys
//! and values are sealed before they leave, and every entry read back is verified
//! (a `kv_set` of this project, signed by a registered agent, consistent with the hash
//! chain seen so far, its key matching its index) before it is opened.

use nexysync_domain::crypto::BlindIndex;
use nexysync_domain::decide::{MAX_SEALED_BYTES, MAX_TTL_S};
use nexysync_domain::event::{fields, Actor, Draft, EventBody, KvDeleted, KvSet, KV_NAMESPACE};
use nexysync_domain::ids::{AgentName, Seq};
use nexysync_domain::wire::{KvAppended, KvEntry, KvPage, StoredEvent};
use serde::Serialize;

use super::arrival::KvChange;
use super::http::Attempts;
use super::message::RejectedMessage;
use super::verify::{author, open_text, rfc3339, Reader, VerifyError};
use super::{ChainMemory, Client, ClientError, Directory, SEAL_OVERHEAD};

/// A verified, decrypted KV entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvValue {
    pub key: String,
    pub value: String,
    /// The sequence of the write that set this value; name it as `expected_revision`
    /// to change the entry only if nobody else did meanwhile.
    pub revision: u64,
    pub updated_by: AgentName,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A page of verified entries in key-index order (not key order: keys are sealed).
#[derive(Debug, Clone)]
pub struct KvListPage {
    pub items: Vec<Result<KvValue, RejectedMessage>>,
    /// Pass back as `after` for the next page.
    pub next_cursor: Option<BlindIndex>,
    pub has_more: bool,
}

impl Client {
    /// The blind index the server knows `key` by.
    pub fn kv_key_index(&self, key: &str) -> BlindIndex {
        self.inner.keys.blind_index(KV_NAMESPACE, key)
    }

    /// Seals, signs and sends a `kv_set`. With `expected_revision`, the server applies
    /// it only if the key's revision is that (`0`: only if the key does not exist);
    /// otherwise it answers `revision_mismatch` with the current revision.
    pub async fn kv_set(
        &self,
        key: &str,
        value: &str,
        expected_revision: Option<u64>,
        ttl_s: Option<u32>,
    ) -> Result<KvAppended, ClientError> {
        let size = key.len() + value.len() + 2 * SEAL_OVERHEAD;
        if size > MAX_SEALED_BYTES {
            return Err(ClientError::ContentTooLarge {
                size,
                limit: MAX_SEALED_BYTES,
            });
        }
        if let Some(ttl_s) = ttl_s {
            if ttl_s == 0 || ttl_s > MAX_TTL_S {
                return Err(ClientError::InvalidTtl {
                    ttl_s,
                    max: MAX_TTL_S,
                });
            }
        }
        let me = &self.inner.key;
        let keys = &self.inner.keys;
        let envelope = Draft::new(
            me.project.id,
            Actor::Agent(me.agent.id),
            EventBody::KvSet(KvSet {
                key_ix: self.kv_key_index(key),
                expected_revision,
                ttl_s,
            }),
        )
        .seal(keys, fields::KEY, key.as_bytes())
        .seal(keys, fields::VALUE, value.as_bytes())
        .sign(&me.signing_key);
        let appended: KvAppended = self.inner.http.put("v1/kv", &envelope).await?;
        self.note_known(appended.seq);
        Ok(appended)
    }

    /// Signs and sends a `kv_deleted` (compare-and-set as for [`Client::kv_set`]).
    pub async fn kv_delete(
        &self,
        key: &str,
        expected_revision: Option<u64>,
    ) -> Result<KvAppended, ClientError> {
        let me = &self.inner.key;
        let envelope = Draft::new(
            me.project.id,
            Actor::Agent(me.agent.id),
            EventBody::KvDeleted(KvDeleted {
                key_ix: self.kv_key_index(key),
                expected_revision,
            }),
        )
        .sign(&me.signing_key);
        let appended: KvAppended = self.inner.http.post("v1/kv/delete", &envelope).await?;
        self.note_known(appended.seq);
        Ok(appended)
    }

    /// `GET /v1/kv/{key_ix}`, verified and opened; `None` when the key is absent or
    /// expired.
    pub async fn kv_get(&self, key: &str) -> Result<Option<KvValue>, ClientError> {
        let ix = self.kv_key_index(key);
        let entry: KvEntry = match self
            .inner
            .http
            .get(
                &format!("v1/kv/{}", ix.as_str()),
                &self.min_seq(),
                Attempts::Retry,
            )
            .await
        {
            Ok(entry) => entry,
            Err(e) if e.api_code() == Some("key_not_found") => return Ok(None),
            Err(e) => return Err(e),
        };
        let value = self.verify_kv(&entry).await?;
        match value {
            Ok(value) if value.key == key => Ok(Some(value)),
            Ok(_) => Err(RejectedMessage {
                id: entry.event.id,
                seq: Seq(entry.revision),
                reason: VerifyError::KeyIndexMismatch,
            }
            .into()),
            Err(rejected) => Err(rejected.into()),
        }
    }

    /// `GET /v1/kv`: live entries after `after`, each verified and opened.
    pub async fn kv_list(
        &self,
        after: Option<&BlindIndex>,
        limit: u32,
    ) -> Result<KvListPage, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.as_str().to_owned()));
        }
        query.extend(self.min_seq());
        let page: KvPage = self
            .inner
            .http
            .get("v1/kv", &query, Attempts::Retry)
            .await?;
        let mut items = Vec::with_capacity(page.entries.len());
        for entry in &page.entries {
            items.push(self.verify_kv(entry).await?);
        }
        Ok(KvListPage {
            items,
            next_cursor: page.next_after,
            has_more: page.has_more,
        })
    }

    /// Verifies one served entry, fetching the agents again when its writer is unknown
    /// (it may have joined since). The outer error means it could not be judged.
    async fn verify_kv(
        &self,
        entry: &KvEntry,
    ) -> Result<Result<KvValue, RejectedMessage>, ClientError> {
        let directory = self.directory().await?;
        let mut outcome = self.verify_kv_with(&directory, entry);
        if matches!(&outcome, Err(r) if r.reason.may_be_stale_directory()) {
            let fresh = self.agents().await?;
            outcome = self.verify_kv_with(&fresh, entry);
        }
        if let Err(rejected) = &outcome {
            tracing::warn!(event = %rejected.id, seq = %rejected.seq, reason = %rejected.reason, "kv entry failed verification");
        }
        Ok(outcome)
    }

    /// Verifies one `kv_set` or `kv_deleted` the stream pushed, fetching the agents again
    /// when its writer is unknown. The outer error means it could not be judged.
    pub(super) async fn verify_kv_change(
        &self,
        stored: &StoredEvent,
    ) -> Result<Result<KvChange, RejectedMessage>, ClientError> {
        let directory = self.directory().await?;
        let mut outcome = self.verify_kv_change_with(&directory, stored);
        if matches!(&outcome, Err(r) if r.reason.may_be_stale_directory()) {
            let fresh = self.agents().await?;
            outcome = self.verify_kv_change_with(&fresh, stored);
        }
        match &outcome {
            Ok(change) => self.note_known(Seq(change.revision)),
            Err(rejected) => {
                tracing::warn!(event = %rejected.id, seq = %rejected.seq, reason = %rejected.reason, "kv update failed verification");
            }
        }
        Ok(outcome)
    }

    fn verify_kv_change_with(
        &self,
        directory: &Directory,
        stored: &StoredEvent,
    ) -> Result<KvChange, RejectedMessage> {
        let reader = Reader {
            project: self.inner.key.project.id,
            keys: &self.inner.keys,
        };
        let rejected = |reason| RejectedMessage {
            id: stored.event.id,
            seq: stored.seq,
            reason,
        };
        match &stored.event.body {
            EventBody::KvSet(set) => {
                // The same checks as an entry read back, with the event as its own entry.
                let entry = KvEntry {
                    key_ix: set.key_ix.clone(),
                    revision: stored.seq.0,
                    expires_at_ms: None,
                    event: stored.event.clone(),
                };
                let value = check_kv(reader, directory, &mut self.chain(), &entry, stored)
                    .map_err(rejected)?;
                Ok(KvChange {
                    key: Some(value.key),
                    key_ix: set.key_ix.clone(),
                    value: Some(value.value),
                    deleted: false,
                    revision: value.revision,
                    by: value.updated_by,
                    at: value.updated_at,
                    id: stored.event.id,
                })
            }
            EventBody::KvDeleted(deleted) => {
                let writer = author(reader, directory, &stored.event).map_err(rejected)?;
                self.chain()
                    .observe(stored.seq, &stored.event)
                    .map_err(|e| rejected(e.into()))?;
                Ok(KvChange {
                    key: None,
                    key_ix: deleted.key_ix.clone(),
                    value: None,
                    deleted: true,
                    revision: stored.seq.0,
                    by: writer.name.clone(),
                    at: rfc3339(stored.event.at),
                    id: stored.event.id,
                })
            }
            other => Err(rejected(VerifyError::NotAKvSet {
                kind: other.kind().as_str(),
            })),
        }
    }

    fn verify_kv_with(
        &self,
        directory: &Directory,
        entry: &KvEntry,
    ) -> Result<KvValue, RejectedMessage> {
        let reader = Reader {
            project: self.inner.key.project.id,
            keys: &self.inner.keys,
        };
        let stored = StoredEvent {
            seq: Seq(entry.revision),
            event: entry.event.clone(),
        };
        check_kv(reader, directory, &mut self.chain(), entry, &stored).map_err(|reason| {
            RejectedMessage {
                id: entry.event.id,
                seq: stored.seq,
                reason,
            }
        })
    }
}

fn check_kv(
    reader: Reader<'_>,
    directory: &Directory,
    chain: &mut ChainMemory,
    entry: &KvEntry,
    stored: &StoredEvent,
) -> Result<KvValue, VerifyError> {
    let event = &stored.event;
    let EventBody::KvSet(set) = &event.body else {
        return Err(VerifyError::NotAKvSet {
            kind: event.body.kind().as_str(),
        });
    };
    let writer = author(reader, directory, event)?;
    chain.observe(stored.seq, event)?;
    let key =
        open_text(reader, stored, fields::KEY)?.ok_or(VerifyError::MissingField(fields::KEY))?;
    let value = open_text(reader, stored, fields::VALUE)?
        .ok_or(VerifyError::MissingField(fields::VALUE))?;
    if reader.keys.blind_index(KV_NAMESPACE, &key) != set.key_ix || set.key_ix != entry.key_ix {
        return Err(VerifyError::KeyIndexMismatch);
    }
    Ok(KvValue {
        key,
        value,
        revision: entry.revision,
        updated_by: writer.name.clone(),
        updated_at: rfc3339(event.at),
        expires_at: set
            .ttl_s
            .map(|ttl| rfc3339(event.at + i64::from(ttl) * 1000)),
    })
}
