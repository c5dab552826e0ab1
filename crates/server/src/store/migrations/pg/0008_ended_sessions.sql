-- The sessions of deleted accounts, kept (only ids and refresh-token hashes) until their refresh
-- token would have expired: a device that was away when its account was deleted is told so
-- (account_deleted) when it refreshes or connects, and erases what it holds of the account.
CREATE TABLE ended_sessions (
    id           TEXT PRIMARY KEY,
    refresh_hash TEXT NOT NULL UNIQUE,
    expires_at   BIGINT NOT NULL
);
