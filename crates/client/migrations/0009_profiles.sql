-- Profiles: a user's posts newest first, and who follows a user, each read by keyset off its own
-- index (the feed's index and the follows key serve neither).
CREATE INDEX posts_author ON posts (author, at, sk);
CREATE INDEX follows_followee ON follows (followee, follower);
