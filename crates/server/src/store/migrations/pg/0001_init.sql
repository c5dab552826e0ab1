-- Papo server schema for Postgres, version 1 (same tables as the SQLite migrations 0001-0002).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    follower_count BIGINT NOT NULL DEFAULT 0
);

-- One row per signed-in device session; the refresh token is stored hashed and rotated.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id),
    refresh_hash TEXT NOT NULL UNIQUE,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE posts (
    id            BIGSERIAL PRIMARY KEY,
    author_id     BIGINT NOT NULL REFERENCES users(id),
    text          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    edited_at     BIGINT,
    deleted       BIGINT NOT NULL DEFAULT 0,
    like_count    BIGINT NOT NULL DEFAULT 0,
    comment_count BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE likes (
    post_id BIGINT NOT NULL REFERENCES posts(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    PRIMARY KEY (post_id, user_id)
);

CREATE TABLE comments (
    id         BIGSERIAL PRIMARY KEY,
    post_id    BIGINT NOT NULL REFERENCES posts(id),
    author_id  BIGINT NOT NULL REFERENCES users(id),
    text       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE follows (
    follower_id BIGINT NOT NULL REFERENCES users(id),
    followee_id BIGINT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);

-- Public chat messages (recipient_id NULL) and private messages.
CREATE TABLE messages (
    id           BIGSERIAL PRIMARY KEY,
    sender_id    BIGINT NOT NULL REFERENCES users(id),
    recipient_id BIGINT REFERENCES users(id),
    text         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE notifications (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id),
    kind       TEXT NOT NULL,
    actor_id   BIGINT NOT NULL REFERENCES users(id),
    post_id    BIGINT,
    comment_id BIGINT,
    message_id BIGINT,
    excerpt    TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE read_state (
    user_id      BIGINT NOT NULL REFERENCES users(id),
    conversation TEXT NOT NULL,
    last_read    BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation)
);

-- The event log. A stream is 'public' or 'u:<user id>'; its head is the last sequence number
-- handed out, advanced in the same transaction as the event it numbers, so sequences are
-- gap-free and ordered.
CREATE TABLE streams (
    key  TEXT PRIMARY KEY,
    head BIGINT NOT NULL
);

CREATE TABLE events (
    stream   TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    actor_id BIGINT,
    cid      TEXT,
    body     TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
);

-- Idempotency: the reply given to each (user, client id), returned again on a retry.
CREATE TABLE requests (
    user_id BIGINT NOT NULL,
    cid     TEXT NOT NULL,
    event   TEXT NOT NULL,
    reply   TEXT NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, cid)
);

-- Presence shared by several server processes: each node's device counts, and when each node
-- last proved it was alive. A node that dies stops beating and its users stop counting.
CREATE TABLE nodes (
    id      TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);

CREATE TABLE presence (
    node_id  TEXT NOT NULL,
    username TEXT NOT NULL,
    devices  BIGINT NOT NULL,
    PRIMARY KEY (node_id, username)
);
