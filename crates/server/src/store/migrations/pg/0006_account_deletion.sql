-- Accounts can be deleted by their owner (POST /api/delete-account). The row stays, so the
-- username stays taken (nobody can take over a name others know) and what the account wrote
-- keeps its author; deleted_at marks it, and every lookup of users by name or id skips it.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;
