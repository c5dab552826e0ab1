-- Presence shared by several server processes: each node's device counts, and when each node
-- last proved it was alive. A node that dies stops beating and its users stop counting.
CREATE TABLE nodes (
    id      TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL
);

CREATE TABLE presence (
    node_id  TEXT NOT NULL,
    username TEXT NOT NULL,
    devices  INTEGER NOT NULL,
    PRIMARY KEY (node_id, username)
);
