-- Shares (post:share): a share is a post pointing at the post it shares (share_of, a server id);
-- the shared post keeps its live share count. posts_share_of finds a post's shares (the feed's
-- "shared by me", and the shares to redraw when their original changes).
ALTER TABLE posts ADD COLUMN share_of INTEGER;
ALTER TABLE posts ADD COLUMN share_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX posts_share_of ON posts (share_of, author) WHERE share_of IS NOT NULL;
