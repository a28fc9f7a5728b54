-- Erasing a message (retention, ADR 0012) finds its rows by key instead of by scanning.
--
-- Its inbox entries, read marks and updates were deleted `WHERE message_id = $1`, which
-- none of those tables has an index for, and deleting the message row then checked each
-- foreign key onto `messages` the same way: two scans of the whole inbox per erased
-- message (160 ms at a million inbox rows, measured), all inside the projector's
-- transaction, so a day's expiries stalled every read model behind them.
--
-- Inbox entries lose their foreign key: the projector writes them only in the statement
-- that writes their message, and erasure deletes them by their key (agent, seq), with the
-- message. The check cost more than the row itself, on the path every broadcast takes
-- (one row per agent): 200,000 rows took 0.50 s without it and 1.65 s with it in psql.
ALTER TABLE inbox_entries DROP CONSTRAINT inbox_entries_message_id_fkey;

-- Read marks and updates keep theirs, found through an index on the message.
CREATE INDEX message_reads_by_message ON message_reads (message_id);
CREATE INDEX message_updates_by_message ON message_updates (message_id);
