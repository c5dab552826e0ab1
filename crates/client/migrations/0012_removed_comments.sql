-- A comment a moderator removed (comment.removed): the row stays, without its text, so that a
-- post's open comment list can show "removed" in its place.
ALTER TABLE comments ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
