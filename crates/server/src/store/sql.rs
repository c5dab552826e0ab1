//! The little SQL interface both backends implement, so the store's logic (what a request does,
//! how events are numbered) is written once and behaves the same on SQLite and Postgres.
//!
//! Statements use Postgres-style `$1, $2, …` placeholders and the SQL both engines accept
//! (`INSERT … ON CONFLICT DO NOTHING`, `UPDATE … RETURNING`).

use super::StoreError;

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Text(String),
    /// A NULL meant for an integer column (Postgres wants typed NULLs).
    NullInt,
    /// A NULL meant for a text column.
    NullText,
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::NullInt, Val::Int)
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        v.map_or(Val::NullText, Val::Text)
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn col(&self, i: usize) -> Result<&Val, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("missing column {i}")))
    }
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.col(i)? {
            Val::Int(v) => Ok(*v),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected int, got {other:?}"
            ))),
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.col(i)? {
            Val::Int(v) => Ok(Some(*v)),
            Val::NullInt | Val::NullText => Ok(None),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected int, got {other:?}"
            ))),
        }
    }
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.col(i)? {
            Val::Text(v) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.col(i)? {
            Val::Text(v) => Ok(Some(v.clone())),
            Val::NullInt | Val::NullText => Ok(None),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }
}

/// A connection (inside a transaction when the caller opened one).
pub trait Sql {
    /// Runs a statement; returns the number of rows it changed.
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError>;
    /// Runs a query; returns all rows.
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError>;
    /// Runs statements without parameters (savepoints).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Tells other server processes that a stream moved (Postgres NOTIFY, delivered at commit).
    /// A no-op where there is only one process.
    fn announce(&mut self, stream_key: &str, seq: u64) -> Result<(), StoreError>;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    /// Exactly one row.
    fn query_one(&mut self, sql: &str, params: &[Val]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Db(format!("no row for: {sql}")))
    }
}

/// `$1` → `?1`, for SQLite (whose `$name` parameters would be numbered by first appearance).
pub fn to_sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_translated_for_sqlite() {
        assert_eq!(
            to_sqlite_placeholders("SELECT $2, $1, '$' FROM t WHERE a = $10"),
            "SELECT ?2, ?1, '$' FROM t WHERE a = ?10"
        );
    }

    #[test]
    fn rows_convert_with_clear_errors() {
        let r = Row(vec![Val::Int(1), Val::Text("a".into()), Val::NullInt]);
        assert_eq!(r.int(0).unwrap(), 1);
        assert_eq!(r.text(1).unwrap(), "a");
        assert_eq!(r.opt_int(2).unwrap(), None);
        assert!(r.int(1).is_err());
        assert!(r.int(9).is_err());
    }
}
