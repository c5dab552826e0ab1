-- The /admin namespace: an admin role (granted by `papo-server grant-admin`), suspension by a
-- moderator (the account's sessions end, it cannot sign in until `admin:unsuspend`), comments
-- a moderator removed, and each node's last statistics (admin:stats, per node in a cluster).
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN suspended_at INTEGER;
ALTER TABLE comments ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
-- Why a session ended ('deleted': its account was deleted; 'suspended': its account was
-- suspended), and whose it was, so lifting a suspension forgets that account's.
ALTER TABLE ended_sessions ADD COLUMN reason TEXT NOT NULL DEFAULT 'deleted';
ALTER TABLE ended_sessions ADD COLUMN user_id INTEGER;
CREATE INDEX ended_sessions_user ON ended_sessions(user_id);
ALTER TABLE nodes ADD COLUMN stats TEXT;
