//! Erasing a signed-out user's cache.
//!
//! Deleting rows is not enough: SQLite leaves deleted content in free pages and in the WAL
//! until they are reused, so a DM could still be read off the file with `strings`. Sign-out
//! therefore drops every table, index, trigger and FTS index, rebuilds the empty schema from
//! the migrations, and then rewrites the file (`VACUUM`) and empties the WAL
//! (`wal_checkpoint(TRUNCATE)`), with `secure_delete` on so freed pages are zeroed as well.

use super::{migrate, Cache, Result};
use rusqlite::Connection;

impl Cache {
    /// Erases everything this cache holds (server data, the outbox and its local copies, the
    /// owner and the cursor), leaving an empty cache of the current schema, with nothing of the
    /// old content left in the database file or its WAL.
    pub fn wipe(&self) -> Result<()> {
        let mut conn = self.writer.lock().unwrap();
        wipe(&mut conn)
    }
}

fn wipe(conn: &mut Connection) -> Result<()> {
    conn.pragma_update(None, "secure_delete", true)?;
    let objects: Vec<(String, String)> = {
        let mut stmt = conn.prepare(
            "SELECT type, name FROM sqlite_master \
             WHERE type IN ('trigger', 'view', 'table') AND name NOT LIKE 'sqlite_%' \
             ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'view' THEN 1 ELSE 2 END, \
                      CASE WHEN sql LIKE 'CREATE VIRTUAL TABLE%' THEN 0 ELSE 1 END",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let tx = conn.transaction()?;
    for (kind, name) in &objects {
        let quoted = name.replace('"', "\"\"");
        // An FTS index's shadow tables go with it: IF EXISTS skips them afterwards.
        let sql = match kind.as_str() {
            "trigger" => format!("DROP TRIGGER IF EXISTS \"{quoted}\""),
            "view" => format!("DROP VIEW IF EXISTS \"{quoted}\""),
            _ => format!("DROP TABLE IF EXISTS \"{quoted}\""),
        };
        tx.execute_batch(&sql)?;
    }
    tx.pragma_update(None, "user_version", 0)?;
    tx.commit()?;
    migrate(conn)?;
    conn.execute_batch("VACUUM")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use papo_protocol::{DirectMessage, EventBody, LogEvent, Stream};

    fn file_contains(path: &std::path::Path, needle: &[u8]) -> bool {
        let mut found = false;
        for p in [
            path.to_path_buf(),
            path.with_extension("sqlite-wal"),
            path.with_extension("sqlite-shm"),
        ] {
            if let Ok(bytes) = std::fs::read(&p) {
                found |= bytes.windows(needle.len()).any(|w| w == needle);
            }
        }
        found
    }

    #[test]
    fn wipe_leaves_no_trace_of_the_previous_users_messages_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let cache = Cache::open(&path).unwrap();
        cache.set_me("ana").unwrap();
        let secret = "segredo-do-dm-7f3a9c";
        let events: Vec<LogEvent> = (1..=200)
            .map(|i| LogEvent {
                stream: Stream::Private,
                seq: i,
                at: 1_000 + i as i64,
                cid: None,
                body: EventBody::DmMessage(DirectMessage {
                    id: i as i64,
                    from: "joao".into(),
                    to: "ana".into(),
                    text: format!("{secret} número {i}"),
                    at: 1_000 + i as i64,
                    reply_to: None,
                }),
            })
            .collect();
        cache.apply_batch("ana", &events).unwrap();
        assert!(cache.resume_point().unwrap().0.private == 200);
        assert!(file_contains(&path, secret.as_bytes()));

        cache.wipe().unwrap();

        assert!(
            !file_contains(&path, secret.as_bytes()),
            "the DM text is still readable in the cache file or its WAL"
        );
        assert_eq!(cache.me().unwrap(), None);
        let (cursor, epoch) = cache.resume_point().unwrap();
        assert_eq!((cursor.public, cursor.private), (0, 0));
        assert_eq!(epoch, None);
        assert!(cache.search("segredo", 10).unwrap().is_empty());
        // The empty cache works as a new one: another user's data goes in and is found.
        cache.set_me("bia").unwrap();
        let again = vec![LogEvent {
            stream: Stream::Private,
            seq: 1,
            at: 5,
            cid: None,
            body: EventBody::DmMessage(DirectMessage {
                id: 1,
                from: "joao".into(),
                to: "bia".into(),
                text: "olá bia".into(),
                at: 5,
                reply_to: None,
            }),
        }];
        cache.apply_batch("bia", &again).unwrap();
        assert_eq!(cache.search("bia", 10).unwrap().len(), 1);
        drop(cache);
        // And it reopens at the current schema.
        Cache::open(&path).unwrap();
    }
}
