//! Full-text indexing off the apply path, and search over the rows not indexed yet.
//!
//! Applying a batch no longer writes the FTS5 indexes (that was most of its cost): new rows
//! sit above the per-table mark in `fts_indexed` until [`Cache::index_step`] indexes a bounded
//! slice of them on the writer connection. [`Cache::search`] reads both parts: the index for
//! rows at or below the mark, and a scan of the rows above it (the tail), matched by
//! [`Matcher`] with the rules of the FTS query it runs on the index, so a new message is
//! found the moment it is applied.

use super::Cache;
use crate::rows::Result;
use rusqlite::{Connection, OptionalExtension};
use std::time::{Duration, Instant};
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// Most rows one [`Cache::index_step`] indexes (over both tables).
pub const INDEX_STEP_ROWS: usize = 4_000;
/// About how long one [`Cache::index_step`] may hold the writer.
pub const INDEX_STEP_BUDGET: Duration = Duration::from_millis(20);
/// Pages one step's incremental merge of the index segments may write.
const MERGE_PAGES: i64 = 64;
/// Rows indexed per statement inside a step.
const CHUNK: i64 = 500;

/// The tables with a full-text index: `(table, index)`.
const INDEXED: [(&str, &str); 2] = [("messages", "messages_fts"), ("posts", "posts_fts")];

/// The highest rowid of `table` the full-text index holds.
pub(crate) fn indexed_up_to(c: &Connection, table: &str) -> Result<i64> {
    Ok(
        c.prepare_cached("SELECT indexed FROM fts_indexed WHERE tbl = ?1")?
            .query_row([table], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}

impl Cache {
    /// Indexes the next slice of rows not yet in the full-text indexes (oldest first, at most
    /// [`INDEX_STEP_ROWS`] rows or about [`INDEX_STEP_BUDGET`], in one transaction on the
    /// writer). Returns whether unindexed rows remain. Search is correct whether or not this
    /// has run; it only keeps the unindexed tail that search must scan short.
    pub fn index_step(&self) -> Result<bool> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let start = Instant::now();
        let mut done = 0usize;
        let mut more = false;
        for (table, fts) in INDEXED {
            loop {
                if done >= INDEX_STEP_ROWS || start.elapsed() >= INDEX_STEP_BUDGET {
                    break;
                }
                let mark = indexed_up_to(&tx, table)?;
                let room = CHUNK.min((INDEX_STEP_ROWS - done) as i64);
                let (top, n): (Option<i64>, i64) = tx
                    .prepare_cached(&format!(
                        "SELECT MAX(id), COUNT(*) FROM \
                         (SELECT id FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2)"
                    ))?
                    .query_row([mark, room], |r| Ok((r.get(0)?, r.get(1)?)))?;
                let Some(top) = top else { break };
                tx.prepare_cached(&format!(
                    "INSERT INTO {fts} (rowid, text) \
                     SELECT id, text FROM {table} WHERE id > ?1 AND id <= ?2 ORDER BY id"
                ))?
                .execute([mark, top])?;
                tx.prepare_cached("UPDATE fts_indexed SET indexed = ?2 WHERE tbl = ?1")?
                    .execute(rusqlite::params![table, top])?;
                done += n as usize;
            }
            let mark = indexed_up_to(&tx, table)?;
            let behind = tx
                .prepare_cached(&format!(
                    "SELECT EXISTS (SELECT 1 FROM {table} WHERE id > ?1)"
                ))?
                .query_row([mark], |r| r.get::<_, bool>(0))?;
            more |= behind;
            // Caught up: merge the small segments the steps wrote, a bounded amount at a time
            // (FTS5's incremental 'merge'), so queries read few segments. It reports work done
            // through the change counter; fewer than 2 changes means nothing was left to merge.
            if !behind && start.elapsed() < INDEX_STEP_BUDGET {
                let before = tx.total_changes();
                tx.execute(
                    &format!("INSERT INTO {fts} ({fts}, rank) VALUES ('merge', ?1)"),
                    [MERGE_PAGES],
                )?;
                more |= tx.total_changes() - before >= 2;
            }
        }
        tx.commit()?;
        Ok(more)
    }

    /// Rows above the full-text mark, per table: what search scans instead of the index.
    pub fn unindexed_rows(&self) -> Result<(i64, i64)> {
        self.read(|c| {
            let mut out = [0i64; 2];
            for (i, (table, _)) in INDEXED.iter().enumerate() {
                let mark = indexed_up_to(c, table)?;
                out[i] = c
                    .prepare_cached(&format!("SELECT COUNT(*) FROM {table} WHERE id > ?1"))?
                    .query_row([mark], |r| r.get(0))?;
            }
            Ok((out[0], out[1]))
        })
    }
}

/// Builds a safe FTS5 query: each word quoted (no syntax injection), the last one as a prefix.
pub(crate) fn fts_query(query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut q = words.join(" ");
    q.push('*');
    Some(q)
}

/// The combining marks FTS5's unicode61 tokenizer treats as diacritics (token characters it
/// drops): a subset of U+0300..=U+0331, as in its `sqlite3Fts5UnicodeIsdiacritic`.
fn is_diacritic(c: char) -> bool {
    const MASK0: u32 = 0x0802_9FDF;
    const MASK1: u32 = 0x0003_61F8;
    let c = c as u32;
    if !(768..=817).contains(&c) {
        return false;
    }
    if c < 768 + 32 {
        MASK0 & (1 << (c - 768)) != 0
    } else {
        MASK1 & (1 << (c - 768 - 32)) != 0
    }
}

/// A character of a token in unicode61's default categories (`L* N* Co`).
fn is_token_char(c: char) -> bool {
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    ) || c.general_category() == GeneralCategory::PrivateUse
}

/// unicode61's fold with `remove_diacritics 1`: lower case, and a Latin letter written as one
/// ASCII letter plus one combining mark becomes that letter.
fn fold(c: char, out: &mut String) {
    let mut parts = [None; 3];
    let mut n = 0;
    unicode_normalization::char::decompose_canonical(c, |d| {
        if n < parts.len() {
            parts[n] = Some(d);
        }
        n += 1;
    });
    if let (2, Some(base), Some(mark)) = (n, parts[0], parts[1]) {
        if base.is_ascii_alphabetic() && unicode_normalization::char::is_combining_mark(mark) {
            out.push(base.to_ascii_lowercase());
            return;
        }
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => out.push(case_fold(l)),
        // Only U+0130 lowers to two characters; it decomposed above.
        _ => out.push(c),
    }
}

/// The lower-case letters Unicode case folding maps further (unicode61 folds, it does not
/// just lower): final sigma, the Greek symbol variants, long s, and the like.
fn case_fold(c: char) -> char {
    match c {
        '\u{b5}' => '\u{3bc}',
        '\u{17f}' => 's',
        '\u{3c2}' => '\u{3c3}',
        '\u{3d0}' => '\u{3b2}',
        '\u{3d1}' => '\u{3b8}',
        '\u{3d5}' => '\u{3c6}',
        '\u{3d6}' => '\u{3c0}',
        '\u{3f0}' => '\u{3ba}',
        '\u{3f1}' => '\u{3c1}',
        '\u{3f5}' => '\u{3b5}',
        '\u{1e9b}' => '\u{1e61}',
        '\u{1fbe}' => '\u{3b9}',
        c => c,
    }
}

/// The tokens unicode61 (default options) makes of `text`.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if is_diacritic(c) {
            continue;
        }
        if is_token_char(c) {
            fold(c, &mut cur);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Matches a text the way the FTS query of [`fts_query`] matches it in the index: every word
/// of the query is a phrase (its tokens consecutive in the text), the last word's last token
/// a prefix; words without tokens are left out, and a query with none matches nothing.
pub(crate) struct Matcher {
    phrases: Vec<Vec<String>>,
    last_is_prefix: bool,
}

impl Matcher {
    pub(crate) fn new(query: &str) -> Matcher {
        let words: Vec<Vec<String>> = query.split_whitespace().map(tokens).collect();
        let last_is_prefix = words.last().is_some_and(|w| !w.is_empty());
        Matcher {
            phrases: words.into_iter().filter(|w| !w.is_empty()).collect(),
            last_is_prefix,
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        if self.phrases.is_empty() {
            return false;
        }
        let doc = tokens(text);
        let last = self.phrases.len() - 1;
        self.phrases.iter().enumerate().all(|(i, phrase)| {
            let prefix = i == last && self.last_is_prefix;
            doc.windows(phrase.len()).any(|w| {
                w.iter().zip(phrase).enumerate().all(|(j, (d, q))| {
                    if prefix && j == phrase.len() - 1 {
                        d.starts_with(q.as_str())
                    } else {
                        d == q
                    }
                })
            })
        })
    }
}

#[cfg(test)]
#[path = "fts_tests.rs"]
mod tests;
