//! KV writes as the MCP client makes them: keys found by blind index, keys and values
//! sealed, every event signed by the writing agent.

use nexysync_domain::event::{
    fields, Actor, Draft, Envelope, EventBody, KvDeleted, KvSet, KV_NAMESPACE,
};

use crate::{json_of, TestAgent, TestApi, TestProject};

impl TestAgent {
    /// A sealed, signed `kv_set`, not yet sent.
    pub fn kv_set(
        &self,
        project: &TestProject,
        key: &str,
        value: &str,
        expected_revision: Option<u64>,
        ttl_s: Option<u32>,
    ) -> Envelope {
        let keys = project.keys();
        Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::KvSet(KvSet {
                key_ix: keys.blind_index(KV_NAMESPACE, key),
                expected_revision,
                ttl_s,
            }),
        )
        .seal(&keys, fields::KEY, key.as_bytes())
        .seal(&keys, fields::VALUE, value.as_bytes())
        .sign(&self.key)
    }

    /// A signed `kv_deleted`, not yet sent.
    pub fn kv_delete(
        &self,
        project: &TestProject,
        key: &str,
        expected_revision: Option<u64>,
    ) -> Envelope {
        Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::KvDeleted(KvDeleted {
                key_ix: project.keys().blind_index(KV_NAMESPACE, key),
                expected_revision,
            }),
        )
        .sign(&self.key)
    }

    /// Sends a KV write (`PUT /v1/kv` for a set, `POST /v1/kv/delete` for a delete).
    pub async fn kv_write(&self, api: &TestApi, event: &Envelope) -> (u16, serde_json::Value) {
        let request = match event.body {
            EventBody::KvDeleted(_) => api.http.post(format!("{}/v1/kv/delete", api.url)),
            _ => api.http.put(format!("{}/v1/kv", api.url)),
        };
        let response = request
            .bearer_auth(self.token.expose_secret())
            .json(event)
            .send()
            .await
            .unwrap();
        json_of(response).await.unwrap()
    }
}
