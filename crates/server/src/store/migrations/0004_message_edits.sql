-- Chat messages and DMs can be edited and deleted by their sender. A deleted message keeps its
-- row (its id stays valid as a read mark) with the text emptied.
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
