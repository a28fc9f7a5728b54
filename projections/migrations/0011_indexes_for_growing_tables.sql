-- Indexes for queries that otherwise read a project's whole history, or every project's.
--
-- The pruner's expired messages of a project, soonest first: in seq order through
-- `messages_by_project` it walked every older message that never expires (90-126 ms to
-- find 50 among 50,000, measured).
CREATE INDEX messages_expiring_by_project ON messages (project_id, expires_at)
    WHERE expires_at IS NOT NULL;

-- The bytes of a project's live files, which every quota check and upload declaration
-- sums: read from the index alone, without the files deleted since.
CREATE INDEX files_live_bytes ON files (project_id) INCLUDE (ciphertext_size)
    WHERE deleted_seq IS NULL;

-- The bytes of a project's pending uploads, summed likewise: there was no index by
-- project at all (the sum still reads each pending row's id, to leave one out).
CREATE INDEX pending_uploads_by_project ON pending_uploads (project_id, expires_at)
    INCLUDE (ciphertext_size);
