-- A chat message or DM can reply to an earlier message of the same conversation (chat:send /
-- dm:send with reply_to). The events carry the quote; the row keeps which message it answers.
ALTER TABLE messages ADD COLUMN reply_to INTEGER REFERENCES messages(id);
