-- One index of message expiry, not two. The pruner finds the projects with expired
-- messages by probing `messages_expiring_by_project` once per project (migration 0011),
-- so the index of every project's expiries together had no reader left, and cost every
-- message written another index entry: live, and in each rebuild's restore.
DROP INDEX messages_expiring;
