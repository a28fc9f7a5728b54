-- The shared key-value store: one row per live key of a project, found by the key's
-- blind index. `revision` is the stream sequence of the `kv_set` that gave the current
-- value; `value_envelope` is that event exactly as stored in the log (key and value stay
-- sealed). `kv_deleted` removes the row. Expired rows count as absent (readers filter
-- `expires_at > now()`); nothing prunes them yet. `expires_at` is the event's `at` plus
-- its `ttl_s`, so a rebuild from the log gives the same answer.

CREATE TABLE kv_entries (
    project_id      uuid NOT NULL REFERENCES projects (id),
    key_ix          text NOT NULL,
    revision        bigint NOT NULL,
    event_id        uuid NOT NULL,
    value_envelope  json NOT NULL,
    expires_at      timestamptz,
    updated_by      uuid NOT NULL,
    PRIMARY KEY (project_id, key_ix)
);
