//! Code references as the MCP client makes them: path and snippet sealed, line numbers
//! clear, every event signed by the sharing agent.

use nexysync_domain::event::{fields, Actor, Draft, Envelope, EventBody, RefShared};

use crate::{json_of, TestAgent, TestApi, TestProject};

impl TestAgent {
    /// A sealed, signed `ref_shared` of `path` lines `lines`, not yet sent.
    pub fn ref_shared(
        &self,
        project: &TestProject,
        to: Option<&TestAgent>,
        path: &str,
        lines: (u32, u32),
        snippet: &str,
    ) -> Envelope {
        let keys = project.keys();
        Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::RefShared(RefShared {
                to: to.map(|a| a.id),
                start_line: lines.0,
                end_line: lines.1,
            }),
        )
        .seal(&keys, fields::PATH, path.as_bytes())
        .seal(&keys, fields::SNIPPET, snippet.as_bytes())
        .sign(&self.key)
    }

    /// POSTs a `ref_shared` to `/v1/refs`; the status and JSON answer.
    pub async fn share_ref(&self, api: &TestApi, event: &Envelope) -> (u16, serde_json::Value) {
        let response = api
            .http
            .post(format!("{}/v1/refs", api.url))
            .bearer_auth(self.token.expose_secret())
            .json(event)
            .send()
            .await
            .unwrap();
        json_of(response).await.unwrap()
    }
}
