-- Shared code references: one row per `ref_shared` event. `envelope` is the event exactly
-- as stored in the log (path, snippet, note, language and commit stay sealed); line
-- numbers are clear routing-neutral metadata. Visibility is that of messages: the
-- sender, the recipient, or everyone in the project when `recipient` is null.

CREATE TABLE refs (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id),
    seq         bigint NOT NULL,
    sender      uuid NOT NULL REFERENCES agents (id),
    recipient   uuid REFERENCES agents (id),
    start_line  integer NOT NULL,
    end_line    integer NOT NULL,
    envelope    json NOT NULL,
    shared_at   timestamptz NOT NULL
);

CREATE INDEX refs_by_project ON refs (project_id, seq);
