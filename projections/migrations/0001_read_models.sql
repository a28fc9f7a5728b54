-- Read models of the spine: projects, agents, messages, inboxes and thread edges.
-- Everything here is derived from the log and can be rebuilt from sequence 1.
-- Content stays sealed: `envelope` is the event exactly as stored in the log.

CREATE TABLE projector_checkpoints (
    projector   text PRIMARY KEY,
    last_seq    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    owner_key      text NOT NULL,
    created_seq    bigint NOT NULL,
    -- Messages applied so far: a counter, so an event applied twice would show.
    message_count  bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL
);

CREATE TABLE agents (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES projects (id),
    name            text NOT NULL,
    signing_key     text NOT NULL,
    token_hash      text NOT NULL UNIQUE,
    registered_seq  bigint NOT NULL,
    registration    json NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE messages (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id),
    seq         bigint NOT NULL UNIQUE,
    sender      uuid NOT NULL,
    recipient   uuid,
    reply_to    uuid,
    topic_ix    text,
    ttl_s       integer,
    sent_at     timestamptz NOT NULL,
    envelope    json NOT NULL
);
CREATE INDEX messages_by_project ON messages (project_id, seq);

-- One row per agent that may read a message: the recipient of a direct message, every
-- other agent of the project for a broadcast (as registered when it was sent).
CREATE TABLE inbox_entries (
    agent_id    uuid NOT NULL,
    seq         bigint NOT NULL,
    message_id  uuid NOT NULL REFERENCES messages (id),
    PRIMARY KEY (agent_id, seq)
);

-- The reply_to DAG.
CREATE TABLE thread_edges (
    child       uuid PRIMARY KEY REFERENCES messages (id),
    parent      uuid NOT NULL,
    project_id  uuid NOT NULL
);
CREATE INDEX thread_edges_by_parent ON thread_edges (parent);
