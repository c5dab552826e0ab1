-- What the user typed in a conversation's composer and did not send, kept across view switches
-- and restarts (per device; sign-out drops it with everything else).
CREATE TABLE drafts (
    conversation TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
