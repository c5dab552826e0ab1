-- A post can share another (post:share): the share is a post of its own, with the sharer's
-- comment as its text, pointing at the shared post; each user shares a post at most once (live
-- shares), and the shared post counts its live shares.
ALTER TABLE posts ADD COLUMN share_of BIGINT REFERENCES posts(id);
ALTER TABLE posts ADD COLUMN share_count BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX posts_one_share ON posts(author_id, share_of) WHERE share_of IS NOT NULL AND deleted = 0;
