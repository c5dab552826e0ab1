-- Same as the SQLite migration 0003: refresh tokens already exchanged, kept (hashed) until they
-- would have expired. One presented again was copied — a stolen token replayed — and its whole
-- session is revoked.
CREATE TABLE used_refresh (
    refresh_hash TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE INDEX used_refresh_by_session ON used_refresh(session_id, expires_at);

-- A user's expired sessions are dropped when they sign in again.
CREATE INDEX sessions_by_user ON sessions(user_id);
