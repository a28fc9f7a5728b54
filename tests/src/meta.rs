//! Profiles as the MCP client makes them (role and description sealed, signed by the
//! agent itself), fast presence settings, and SSE streams for presence tests.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nexysync_api::Settings;
use nexysync_domain::event::{fields, Actor, AgentProfileUpdated, Draft, Envelope, EventBody};

use crate::{json_of, TestAgent, TestApi, TestEnv, TestProject};

/// An SSE stream of one agent, as parsed events.
pub type SseEvents = std::pin::Pin<
    Box<
        dyn futures::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

impl TestEnv {
    /// Settings with presence fast enough for tests: heartbeats every 200 ms, an instance
    /// gone after 1 s of silence, SSE heartbeats every second (so a closed client is
    /// noticed when the next one fails to write).
    pub fn fast_presence_settings(&self) -> Settings {
        let mut settings = self.settings();
        settings.presence_heartbeat = Duration::from_millis(200);
        settings.presence_timeout = Duration::from_secs(1);
        settings.heartbeat = Duration::from_secs(1);
        settings
    }
}

impl TestAgent {
    /// A sealed, signed `agent_profile_updated` of this agent, not yet sent.
    pub fn profile(
        &self,
        project: &TestProject,
        role: &str,
        description: Option<&str>,
    ) -> Envelope {
        let keys = project.keys();
        let mut draft = Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::AgentProfileUpdated(AgentProfileUpdated {}),
        )
        .seal(&keys, fields::ROLE, role.as_bytes());
        if let Some(description) = description {
            draft = draft.seal(&keys, fields::DESCRIPTION, description.as_bytes());
        }
        draft.sign(&self.key)
    }

    /// PUTs a profile event to `/v1/profile`; the status and JSON answer.
    pub async fn put_profile(&self, api: &TestApi, event: &Envelope) -> (u16, serde_json::Value) {
        let response = api
            .http
            .put(format!("{}/v1/profile", api.url))
            .bearer_auth(self.token.expose_secret())
            .json(event)
            .send()
            .await
            .unwrap();
        json_of(response).await.unwrap()
    }

    /// Opens this agent's SSE stream and waits for `ready`.
    pub async fn stream(&self, api: &TestApi) -> SseEvents {
        let response = api
            .http
            .get(format!("{}/v1/stream?presence=true", api.url))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut events: SseEvents = Box::pin(response.bytes_stream().eventsource());
        let first = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the stream answers")
            .expect("the stream is open")
            .expect("a readable event");
        assert_eq!(first.event, "ready");
        events
    }
}

/// Waits for the next `presence_change` on `events` (skipping others); its data.
pub async fn next_presence_change(events: &mut SseEvents, deadline: Duration) -> serde_json::Value {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let next = tokio::time::timeout_at(until, events.next())
            .await
            .expect("a presence_change within the deadline")
            .expect("the stream stays open")
            .expect("a readable event");
        if next.event == "presence_change" {
            assert!(next.id.is_empty(), "presence is not in the log: no id");
            return serde_json::from_str(&next.data).unwrap();
        }
    }
}
