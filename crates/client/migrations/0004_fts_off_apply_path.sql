-- Full-text indexing leaves the apply transaction: rows are indexed afterwards, in bounded
-- slices (Cache::index_step), and search covers the rows not yet indexed by scanning them.
--
-- fts_indexed holds, per table, the highest rowid the index holds: rows at or below it are
-- indexed, rows above it are not. The update/delete triggers touch the index only for indexed
-- rows (a 'delete' of a row an external-content FTS5 table does not hold corrupts it). Every
-- delete, of an indexed row or not, clamps the mark to the highest rowid left, because a rowid
-- table without AUTOINCREMENT hands out max + 1 again, and a new row at a reused id must not
-- count as indexed. (One trigger does both, in that order: the index delete must see the mark
-- from before the clamp.)

DROP TRIGGER messages_fts_ai;
DROP TRIGGER messages_fts_ad;
DROP TRIGGER messages_fts_au;
DROP TRIGGER posts_fts_ai;
DROP TRIGGER posts_fts_ad;
DROP TRIGGER posts_fts_au;

CREATE TABLE fts_indexed (
    tbl     TEXT PRIMARY KEY,           -- 'messages' | 'posts'
    indexed INTEGER NOT NULL
) WITHOUT ROWID;

-- Everything already in the file was indexed by the old insert triggers.
INSERT INTO fts_indexed (tbl, indexed) VALUES
    ('messages', COALESCE((SELECT MAX(id) FROM messages), 0)),
    ('posts', COALESCE((SELECT MAX(id) FROM posts), 0));

CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) SELECT 'delete', old.id, old.text
    WHERE old.id <= (SELECT indexed FROM fts_indexed WHERE tbl = 'messages');
    UPDATE fts_indexed SET indexed = COALESCE((SELECT MAX(id) FROM messages), 0)
    WHERE tbl = 'messages' AND indexed > COALESCE((SELECT MAX(id) FROM messages), 0);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF text ON messages
WHEN old.id <= (SELECT indexed FROM fts_indexed WHERE tbl = 'messages') BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER posts_fts_ad AFTER DELETE ON posts BEGIN
    INSERT INTO posts_fts (posts_fts, rowid, text) SELECT 'delete', old.id, old.text
    WHERE old.id <= (SELECT indexed FROM fts_indexed WHERE tbl = 'posts');
    UPDATE fts_indexed SET indexed = COALESCE((SELECT MAX(id) FROM posts), 0)
    WHERE tbl = 'posts' AND indexed > COALESCE((SELECT MAX(id) FROM posts), 0);
END;
CREATE TRIGGER posts_fts_au AFTER UPDATE OF text ON posts
WHEN old.id <= (SELECT indexed FROM fts_indexed WHERE tbl = 'posts') BEGIN
    INSERT INTO posts_fts (posts_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO posts_fts (rowid, text) VALUES (new.id, new.text);
END;
