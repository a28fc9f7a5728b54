-- A message's sequence is unique within its project, through the index every read by
-- sequence already goes through, instead of in an index of its own. Every statement that
-- looks messages up by sequence names the project too (lists, inboxes, threads, message
-- state), so `messages (seq)` had no reader: it only cost every message written one more
-- index entry, live, and each rebuild one more scan and sort of the whole table. A
-- sequence is the log's and is applied once, which the per-project key still checks.
ALTER TABLE messages DROP CONSTRAINT messages_seq_key;
DROP INDEX messages_by_project;
ALTER TABLE messages ADD CONSTRAINT messages_by_project UNIQUE (project_id, seq);
