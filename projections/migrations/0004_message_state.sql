-- Message state: reactions, per-agent read marks, pins and deletions. Derived from the
-- `reaction_added`, `reaction_removed`, `message_read`, `message_pinned`,
-- `message_unpinned` and `message_deleted` events; rebuildable from sequence 1.
--
-- A deleted message keeps its row (sender, time, recipient, reply_to, thread edges and
-- inbox entries: a visible "deleted" node of its thread), but its stored envelope loses
-- every sealed field, and its reactions (whose envelopes seal the emoji) are removed.
-- `deletion` is the sender's signed `message_deleted` event, so readers can check who
-- deleted it.

ALTER TABLE messages
    ADD COLUMN pinned       boolean NOT NULL DEFAULT false,
    ADD COLUMN deleted_seq  bigint,
    ADD COLUMN deletion     json;

-- One row per live reaction: `envelope` is the `reaction_added` event as stored in the
-- log (the emoji stays sealed); `emoji_ix` is its blind index.
CREATE TABLE message_reactions (
    message_id  uuid NOT NULL REFERENCES messages (id),
    agent_id    uuid NOT NULL,
    emoji_ix    text NOT NULL,
    seq         bigint NOT NULL,
    envelope    json NOT NULL,
    PRIMARY KEY (message_id, agent_id, emoji_ix)
);

-- Who marked which message read.
CREATE TABLE message_reads (
    agent_id    uuid NOT NULL,
    message_id  uuid NOT NULL REFERENCES messages (id),
    seq         bigint NOT NULL,
    PRIMARY KEY (agent_id, message_id)
);

-- Every applied message-state event by id: each takes effect once, and a retried write
-- is recognised and answered with its original sequence.
CREATE TABLE message_updates (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id),
    message_id  uuid NOT NULL REFERENCES messages (id),
    agent_id    uuid NOT NULL,
    kind        text NOT NULL,
    seq         bigint NOT NULL
);
