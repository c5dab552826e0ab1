-- Unread messages per conversation, maintained in the apply transaction (a new message from
-- someone else past the read mark adds one; a read mark moving forward subtracts the messages
-- it passed), so the conversation list and the tray never scan the messages table.

CREATE TABLE unread (
    conversation TEXT PRIMARY KEY,
    count        INTEGER NOT NULL CHECK (count >= 0)
) WITHOUT ROWID;

-- Caches written by an older app: count once, from then on maintained.
INSERT INTO unread (conversation, count)
SELECT m.conversation, COUNT(*)
FROM messages m LEFT JOIN read_state r ON r.conversation = m.conversation
WHERE m.server_id > COALESCE(r.last_read, 0)
  AND m.sender != (SELECT value FROM meta WHERE key = 'me')
GROUP BY m.conversation;

CREATE INDEX conversations_recent ON conversations (last_at);
