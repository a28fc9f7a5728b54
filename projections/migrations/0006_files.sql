-- Shared files: one row per `file_shared` event. `envelope` is the event exactly as
-- stored in the log (name and media type stay sealed); sizes are clear. The blob itself
-- (ciphertext) lives in the CDN under `<project_id>/<id>`. A `file_deleted` marks the row
-- (`deleted_seq`) rather than removing it, so a late download or a second delete is told
-- the file is gone. Visibility is that of messages: the sender, the recipient, or
-- everyone in the project when `recipient` is null.

CREATE TABLE files (
    id               uuid PRIMARY KEY,
    project_id       uuid NOT NULL REFERENCES projects (id),
    seq              bigint NOT NULL,
    sender           uuid NOT NULL REFERENCES agents (id),
    recipient        uuid REFERENCES agents (id),
    size             bigint NOT NULL,
    ciphertext_size  bigint NOT NULL,
    envelope         json NOT NULL,
    shared_at        timestamptz NOT NULL,
    deleted_seq      bigint
);

CREATE INDEX files_by_project ON files (project_id, seq);

-- Uploads declared but not committed yet (no event exists for them). Written by the API,
-- not by a projector: `envelope` is the signed `file_shared` the commit will append. A
-- row whose URL expired without a commit is swept by the API, blob included, so an upload
-- cut off halfway leaves no orphan behind for ever. The projector removes the row when
-- the `file_shared` is applied.
CREATE TABLE pending_uploads (
    id               uuid PRIMARY KEY,
    project_id       uuid NOT NULL REFERENCES projects (id),
    uploader         uuid NOT NULL REFERENCES agents (id),
    ciphertext_size  bigint NOT NULL,
    envelope         json NOT NULL,
    expires_at       timestamptz NOT NULL
);

CREATE INDEX pending_uploads_by_expiry ON pending_uploads (expires_at);
