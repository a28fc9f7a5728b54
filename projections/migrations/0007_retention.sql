-- Retention (ADR 0012): the project's policy, each message's expiry, and the placeholder
-- nodes erased messages leave in their threads.
--
-- `expires_at` is the message's `at` plus its effective TTL (its own `ttl_s`, else the
-- project's `default_ttl_s` in force when it was applied, in log order): deterministic on
-- a rebuild. NULL: it lives for ever. Readers skip a message from `expires_at` on,
-- before the pruner erases it.

ALTER TABLE projects
    ADD COLUMN default_ttl_s integer,
    ADD COLUMN max_ttl_s     integer;

ALTER TABLE messages ADD COLUMN expires_at timestamptz;
CREATE INDEX messages_expiring ON messages (expires_at) WHERE expires_at IS NOT NULL;

-- An erased message leaves its thread edges, so the threads through it hold together:
-- the edge no longer needs a row in `messages`.
ALTER TABLE thread_edges DROP CONSTRAINT thread_edges_child_fkey;

-- Where an erased message was: no content, only its place in the log and in its thread,
-- and who could read it (who may see the placeholder). `erased_seq` is the tombstone.
CREATE TABLE expired_messages (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id),
    seq         bigint NOT NULL,
    sender      uuid NOT NULL,
    recipient   uuid,
    reply_to    uuid,
    erased_seq  bigint NOT NULL
);
CREATE INDEX expired_messages_by_project ON expired_messages (project_id, seq);

-- Sequences a projected tombstone lists, until the pruner has erased them from the log:
-- a pruner that stopped between the tombstone and the erasure finishes on its next run.
CREATE TABLE pending_erasures (
    seq            bigint PRIMARY KEY,
    project_id     uuid NOT NULL,
    tombstone_seq  bigint NOT NULL
);
