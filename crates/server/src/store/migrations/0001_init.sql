-- Papo server schema, version 1.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    follower_count INTEGER NOT NULL DEFAULT 0
);

-- One row per signed-in device session; the refresh token is stored hashed and rotated.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    refresh_hash TEXT NOT NULL UNIQUE,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE posts (
    id            INTEGER PRIMARY KEY,
    author_id     INTEGER NOT NULL REFERENCES users(id),
    text          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    edited_at     INTEGER,
    deleted       INTEGER NOT NULL DEFAULT 0,
    like_count    INTEGER NOT NULL DEFAULT 0,
    comment_count INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE likes (
    post_id INTEGER NOT NULL REFERENCES posts(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (post_id, user_id)
) WITHOUT ROWID;

CREATE TABLE comments (
    id         INTEGER PRIMARY KEY,
    post_id    INTEGER NOT NULL REFERENCES posts(id),
    author_id  INTEGER NOT NULL REFERENCES users(id),
    text       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE follows (
    follower_id INTEGER NOT NULL REFERENCES users(id),
    followee_id INTEGER NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
) WITHOUT ROWID;

-- Public chat messages (recipient_id NULL) and private messages.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    sender_id    INTEGER NOT NULL REFERENCES users(id),
    recipient_id INTEGER REFERENCES users(id),
    text         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    kind       TEXT NOT NULL,
    actor_id   INTEGER NOT NULL REFERENCES users(id),
    post_id    INTEGER,
    comment_id INTEGER,
    message_id INTEGER,
    excerpt    TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE read_state (
    user_id      INTEGER NOT NULL REFERENCES users(id),
    conversation TEXT NOT NULL,
    last_read    INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation)
) WITHOUT ROWID;

-- The event log. A stream is 'public' or 'u:<user id>'; its head is the last sequence number
-- handed out, advanced in the same transaction as the event it numbers, so sequences are
-- gap-free and ordered.
CREATE TABLE streams (
    key  TEXT PRIMARY KEY,
    head INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    stream   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    actor_id INTEGER,
    cid      TEXT,
    body     TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;

-- Idempotency: the reply given to each (user, client id), returned again on a retry.
CREATE TABLE requests (
    user_id INTEGER NOT NULL,
    cid     TEXT NOT NULL,
    event   TEXT NOT NULL,
    reply   TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, cid)
) WITHOUT ROWID;
