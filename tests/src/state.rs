//! Message-state events as the MCP client makes them: a reaction seals its emoji (with
//! its per-message blind index), the others seal nothing; all signed by the acting agent.

use nexysync_domain::event::{
    emoji_index, fields, Actor, Draft, Envelope, EventBody, MessageTarget, Reaction,
};
use nexysync_domain::ids::EventId;

use crate::{json_of, TestAgent, TestApi, TestProject};

impl TestAgent {
    /// A signed `reaction_added` of `emoji` on `message`, not yet sent.
    pub fn reaction_added(&self, project: &TestProject, message: EventId, emoji: &str) -> Envelope {
        let keys = project.keys();
        Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::ReactionAdded(Reaction {
                message,
                emoji_ix: emoji_index(&keys, message, emoji),
            }),
        )
        .seal(&keys, fields::EMOJI, emoji.as_bytes())
        .sign(&self.key)
    }

    /// A signed `reaction_removed` of `emoji` on `message`, not yet sent.
    pub fn reaction_removed(
        &self,
        project: &TestProject,
        message: EventId,
        emoji: &str,
    ) -> Envelope {
        Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::ReactionRemoved(Reaction {
                message,
                emoji_ix: emoji_index(&project.keys(), message, emoji),
            }),
        )
        .sign(&self.key)
    }

    /// A signed message-state event without content: `make` picks the kind
    /// (`EventBody::MessageRead`, `MessagePinned`, `MessageUnpinned`, `MessageDeleted`).
    pub fn on_message(&self, message: EventId, make: fn(MessageTarget) -> EventBody) -> Envelope {
        Draft::new(
            self.project,
            Actor::Agent(self.id),
            make(MessageTarget { message }),
        )
        .sign(&self.key)
    }

    /// POSTs a message-state event to its endpoint under `/v1/messages/{message}/`;
    /// the status and JSON answer.
    pub async fn update(&self, api: &TestApi, event: &Envelope) -> (u16, serde_json::Value) {
        let message = event.body.target_message().expect("a message-state event");
        let path = match event.body {
            EventBody::ReactionAdded(_) | EventBody::ReactionRemoved(_) => "reactions",
            EventBody::MessageRead(_) => "read",
            EventBody::MessagePinned(_) => "pin",
            EventBody::MessageUnpinned(_) => "unpin",
            _ => "delete",
        };
        let response = api
            .http
            .post(format!("{}/v1/messages/{message}/{path}", api.url))
            .bearer_auth(self.token.expose_secret())
            .json(event)
            .send()
            .await
            .unwrap();
        json_of(response).await.unwrap()
    }
}
