-- Replies: a chat message or DM can answer an earlier message of its conversation. The row keeps
-- the original's server id and the quote shown above it (sender, excerpt). The excerpt follows
-- the original: an edit rewrites it, a delete clears it (NULL with reply_to set = "message
-- deleted"), found through messages_reply_to.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN reply_from TEXT;
ALTER TABLE messages ADD COLUMN reply_excerpt TEXT;
CREATE INDEX messages_reply_to ON messages (reply_to) WHERE reply_to IS NOT NULL;
