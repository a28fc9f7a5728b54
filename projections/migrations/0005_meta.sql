-- ns_meta read models: agent profiles, quota counters, presence.
--
-- Profiles: the latest `agent_profile_updated` of each agent, as stored in the log (role
-- and description stay sealed; clients verify the agent's signature).
CREATE TABLE agent_profiles (
    agent_id    uuid PRIMARY KEY REFERENCES agents (id),
    project_id  uuid NOT NULL REFERENCES projects (id),
    seq         bigint NOT NULL,
    envelope    json NOT NULL
);

-- Quota counters. A content-bearing event (message, code reference) counts once on the
-- UTC day of its `at`, and its sealed bytes add to the project's stored bytes. KV writes
-- never count.
CREATE TABLE quota_daily (
    project_id  uuid NOT NULL REFERENCES projects (id),
    day         date NOT NULL,
    messages    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, day)
);
ALTER TABLE projects ADD COLUMN stored_bytes bigint NOT NULL DEFAULT 0;

-- Presence, projected from the `<prefix>_presence` stream by its own projector (its
-- checkpoint, named `presence`, counts that stream's sequences). Server facts only:
-- instance ids, agent ids and times. An agent is online while a row connects it to an
-- instance whose last heartbeat is within the API's presence timeout.
CREATE TABLE presence_instances (
    instance_id     uuid PRIMARY KEY,
    last_heartbeat  timestamptz NOT NULL
);
CREATE TABLE presence_connections (
    instance_id  uuid NOT NULL,
    project_id   uuid NOT NULL,
    agent_id     uuid NOT NULL,
    since        timestamptz NOT NULL,
    PRIMARY KEY (instance_id, agent_id)
);
CREATE INDEX presence_connections_by_agent ON presence_connections (agent_id);
CREATE TABLE presence_last_seen (
    agent_id    uuid PRIMARY KEY,
    project_id  uuid NOT NULL,
    last_seen   timestamptz NOT NULL
);
CREATE INDEX presence_last_seen_by_project ON presence_last_seen (project_id);
