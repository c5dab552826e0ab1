-- Chat messages and DMs can be edited and deleted by their sender. A deleted message keeps its
-- row (its id stays valid as a read mark) with the text emptied.
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
