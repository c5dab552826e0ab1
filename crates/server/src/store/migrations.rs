//! Schema migrations for both backends, run by `refinery` (its history table is
//! `refinery_schema_history`).
//!
//! Databases made before refinery carry a legacy marker instead (SQLite `PRAGMA user_version`,
//! Postgres `schema_migrations`). When the history table is missing and the marker says N, the
//! first N migrations are recorded as applied with refinery's `Target::FakeVersion(N)` before
//! the normal run. The marker is then kept equal to the latest version after every run, so a
//! binary from before refinery still refuses a schema newer than it knows instead of re-running
//! its first migration on a populated database.

use refinery_core::{Error as RefineryError, Migration, Runner, Target};

use super::StoreError;

/// The SQLite migrations, oldest first.
pub const SQLITE: &[(&str, &str)] = &[
    ("V1__init", include_str!("migrations/0001_init.sql")),
    ("V2__presence", include_str!("migrations/0002_presence.sql")),
    (
        "V3__spent_refresh",
        include_str!("migrations/0003_spent_refresh.sql"),
    ),
    (
        "V4__message_edits",
        include_str!("migrations/0004_message_edits.sql"),
    ),
    ("V5__dm_peers", include_str!("migrations/0005_dm_peers.sql")),
];

/// The Postgres migrations, oldest first.
pub const POSTGRES: &[(&str, &str)] = &[
    ("V1__init", include_str!("migrations/pg/0001_init.sql")),
    (
        "V2__spent_refresh",
        include_str!("migrations/pg/0002_spent_refresh.sql"),
    ),
    (
        "V3__message_edits",
        include_str!("migrations/pg/0003_message_edits.sql"),
    ),
    (
        "V4__dm_peers",
        include_str!("migrations/pg/0004_dm_peers.sql"),
    ),
];

/// The history table refinery keeps; its presence means the database is past the legacy marker.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

pub fn list(set: &[(&str, &str)]) -> Result<Vec<Migration>, StoreError> {
    set.iter()
        .map(|(name, sql)| Migration::unapplied(name, sql).map_err(|e| err(e, set.len())))
        .collect()
}

/// The runner for a normal start: all pending migrations in one transaction (so a failure
/// leaves no half-applied schema), refusing a database that has migrations this binary lacks.
pub fn runner(migrations: &[Migration]) -> Runner {
    Runner::new(migrations)
        .set_grouped(true)
        .set_abort_missing(true)
        .set_abort_divergent(true)
}

/// The runner that records the first `legacy` migrations as applied without running them.
pub fn baseline(migrations: &[Migration], legacy: i64, known: usize) -> Result<Runner, StoreError> {
    if legacy as usize > known {
        return Err(newer(legacy, known));
    }
    Ok(runner(migrations).set_target(Target::FakeVersion(legacy as i32)))
}

pub fn newer(version: impl std::fmt::Display, known: usize) -> StoreError {
    StoreError::SchemaTooNew {
        found: version.to_string(),
        known,
    }
}

/// Refinery's error as a store error; a migration the binary does not have means the database
/// was migrated by a newer server.
pub fn err(e: RefineryError, known: usize) -> StoreError {
    match e.kind() {
        refinery_core::error::Kind::MissingVersion(m) if m.version() as usize > known => {
            newer(m.version(), known)
        }
        _ => StoreError::Db(format!("schema migration failed: {e}")),
    }
}
