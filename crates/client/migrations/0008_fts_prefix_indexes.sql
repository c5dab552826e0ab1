-- Search matches the last word of a query as a prefix (search as you type). FTS5 answers a
-- prefix query without a prefix index by reading and merging the whole doclist of every term
-- with that prefix before it returns the first row, so its cost grew with every matching
-- message: ~9 ms for a word in 6% of a million messages, and the better part of a second for
-- a one- or two-letter prefix matching thousands of terms. With prefix indexes for 1 to 6
-- characters, such a query reads one doclist newest first and stops after the page.
--
-- The index is about five times bigger (measured: 19 → 92 MB for 600k messages of 8 words).
-- Both indexes are built again from nothing: the marks go back to 0 and Cache::index_step
-- rebuilds them in the background; meanwhile search scans the rows not indexed yet, as it
-- does for any unindexed tail, so nothing is missing from results while it catches up.
-- The update/delete triggers of 0004 and 0007 name the tables and keep working; with the marks
-- at 0 they leave the new, empty indexes alone until rows are indexed again.

DROP TABLE messages_fts;
DROP TABLE posts_fts;
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text, content = 'messages', content_rowid = 'id', prefix = '1 2 3 4 5 6'
);
CREATE VIRTUAL TABLE posts_fts USING fts5 (
    text, content = 'posts', content_rowid = 'id', prefix = '1 2 3 4 5 6'
);
UPDATE fts_indexed SET indexed = 0;
