-- Papo client cache, version 1.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Resume position: last sequence number durably applied, per stream.
CREATE TABLE cursor (
    stream TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO cursor (stream, seq) VALUES ('public', 0), ('private', 0);

CREATE TABLE users (
    username       TEXT PRIMARY KEY,
    follower_count INTEGER,
    online         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE follows (
    follower TEXT NOT NULL,
    followee TEXT NOT NULL,
    PRIMARY KEY (follower, followee)
) WITHOUT ROWID;

-- Public chat and DMs. `sk` orders messages with the same `at`: the server id once known,
-- 2^62 + local id while pending. Local copies have `client_id`; server copies `server_id`.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,            -- 'chat' | 'dm'
    conversation TEXT NOT NULL,            -- 'public' | 'dm:<peer>'
    server_id    INTEGER,
    client_id    TEXT UNIQUE,
    sender       TEXT NOT NULL,
    text         TEXT NOT NULL,
    at           INTEGER NOT NULL,
    sk           INTEGER NOT NULL,
    state        TEXT NOT NULL             -- 'pending' | 'sent' | 'failed'
);
CREATE UNIQUE INDEX messages_server_id ON messages (kind, server_id) WHERE server_id IS NOT NULL;
CREATE INDEX messages_page ON messages (conversation, at, sk);
CREATE INDEX messages_unread ON messages (conversation, server_id);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    last_at     INTEGER NOT NULL,
    last_sender TEXT NOT NULL,
    last_text   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE read_state (
    conversation TEXT PRIMARY KEY,
    last_read    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE posts (
    id            INTEGER PRIMARY KEY,
    server_id     INTEGER UNIQUE,
    client_id     TEXT UNIQUE,
    author        TEXT NOT NULL,
    text          TEXT NOT NULL,
    at            INTEGER NOT NULL,
    sk            INTEGER NOT NULL,
    edited_at     INTEGER,
    like_count    INTEGER NOT NULL DEFAULT 0,
    comment_count INTEGER NOT NULL DEFAULT 0,
    deleted       INTEGER NOT NULL DEFAULT 0,
    state         TEXT NOT NULL
);
CREATE INDEX posts_feed ON posts (at, sk);

CREATE TABLE comments (
    id        INTEGER PRIMARY KEY,
    server_id INTEGER UNIQUE,
    client_id TEXT UNIQUE,
    post_id   INTEGER NOT NULL,
    author    TEXT NOT NULL,
    text      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    state     TEXT NOT NULL
);
CREATE INDEX comments_post ON comments (post_id, at);

CREATE TABLE likes (
    post_id  INTEGER NOT NULL,
    username TEXT NOT NULL,
    PRIMARY KEY (post_id, username)
) WITHOUT ROWID;

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,        -- server id
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    post_id    INTEGER,
    comment_id INTEGER,
    message_id INTEGER,
    excerpt    TEXT,
    at         INTEGER NOT NULL
);
CREATE INDEX notifications_at ON notifications (at, id);

-- User actions waiting for (or confirmed by) the server, in send order.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id       TEXT NOT NULL UNIQUE,
    event           TEXT NOT NULL,
    request         TEXT NOT NULL,         -- JSON of protocol::Request
    state           TEXT NOT NULL,         -- 'pending' | 'sent' | 'failed'
    attempts        INTEGER NOT NULL DEFAULT 0,
    error_code      TEXT,
    error_message   TEXT,
    next_attempt_at INTEGER,               -- unix ms; transient failures wait until then
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX outbox_state ON outbox (state, seq);

-- Full-text search over messages and posts (external content, kept by triggers).
CREATE VIRTUAL TABLE messages_fts USING fts5 (text, content = 'messages', content_rowid = 'id');
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE VIRTUAL TABLE posts_fts USING fts5 (text, content = 'posts', content_rowid = 'id');
CREATE TRIGGER posts_fts_ai AFTER INSERT ON posts BEGIN
    INSERT INTO posts_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER posts_fts_ad AFTER DELETE ON posts BEGIN
    INSERT INTO posts_fts (posts_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER posts_fts_au AFTER UPDATE OF text ON posts BEGIN
    INSERT INTO posts_fts (posts_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO posts_fts (rowid, text) VALUES (new.id, new.text);
END;
