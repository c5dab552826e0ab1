-- Same version as the SQLite migration 0002 (presence shared by several server processes).
-- The Postgres schema began with those tables in its version 1, so there is nothing to do.
SELECT 1;
