-- Chat messages and DMs edited or deleted by their sender (message.edited / message.deleted).
-- A deleted message keeps its row, with its text emptied, and shows as "message deleted".
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
