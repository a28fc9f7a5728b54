-- A broadcast is read where it is, in `messages`, instead of being copied into the inbox
-- of every other agent of its project. Its inbox entries were one row per agent: a
-- broadcast in a project of 1,000 agents wrote 1,000 rows (7 to 11 ms of PostgreSQL per
-- broadcast, measured, on the path every push to those agents shares the machine with),
-- and the inbox grew with agents times broadcasts.
--
-- An agent's inbox is now its inbox entries (direct messages to it) and the broadcasts of
-- its project by other agents with a sequence after its own registration: the agents the
-- entries went to, since an agent is never removed (`inbox_sql::inbox_query!`).
CREATE INDEX messages_broadcasts ON messages (project_id, seq) WHERE recipient IS NULL;
