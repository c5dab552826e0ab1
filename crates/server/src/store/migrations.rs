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

/// One schema version, as each backend writes it. Both backends run the same list, so a version
/// number names the same schema on either; the test `the_two_backends_build_the_same_schema`
/// (store/postgres.rs) checks that the SQL of the two columns really builds the same tables,
/// columns, keys and indexes.
pub struct Version {
    /// refinery's name: `V<n>__<what>`.
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every schema version, oldest first.
pub const HISTORY: &[Version] = &[
    Version {
        name: "V1__init",
        sqlite: include_str!("migrations/0001_init.sql"),
        postgres: include_str!("migrations/pg/0001_init.sql"),
    },
    Version {
        name: "V2__presence",
        sqlite: include_str!("migrations/0002_presence.sql"),
        postgres: include_str!("migrations/pg/0002_presence.sql"),
    },
    Version {
        name: "V3__spent_refresh",
        sqlite: include_str!("migrations/0003_spent_refresh.sql"),
        postgres: include_str!("migrations/pg/0003_spent_refresh.sql"),
    },
    Version {
        name: "V4__message_edits",
        sqlite: include_str!("migrations/0004_message_edits.sql"),
        postgres: include_str!("migrations/pg/0004_message_edits.sql"),
    },
    Version {
        name: "V5__dm_peers",
        sqlite: include_str!("migrations/0005_dm_peers.sql"),
        postgres: include_str!("migrations/pg/0005_dm_peers.sql"),
    },
    Version {
        name: "V6__account_deletion",
        sqlite: include_str!("migrations/0006_account_deletion.sql"),
        postgres: include_str!("migrations/pg/0006_account_deletion.sql"),
    },
    Version {
        name: "V7__replies",
        sqlite: include_str!("migrations/0007_replies.sql"),
        postgres: include_str!("migrations/pg/0007_replies.sql"),
    },
    Version {
        name: "V8__ended_sessions",
        sqlite: include_str!("migrations/0008_ended_sessions.sql"),
        postgres: include_str!("migrations/pg/0008_ended_sessions.sql"),
    },
    Version {
        name: "V9__shares",
        sqlite: include_str!("migrations/0009_shares.sql"),
        postgres: include_str!("migrations/pg/0009_shares.sql"),
    },
    Version {
        name: "V10__admin",
        sqlite: include_str!("migrations/0010_admin.sql"),
        postgres: include_str!("migrations/pg/0010_admin.sql"),
    },
];

/// Which column of [`HISTORY`] a backend runs.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The number of versions this binary knows.
pub fn known() -> usize {
    HISTORY.len()
}

/// A version's SQL for one backend.
pub fn sql(version: &Version, dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => version.sqlite,
        Dialect::Postgres => version.postgres,
    }
}

/// The history table refinery keeps; its presence means the database is past the legacy marker.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

pub fn list(dialect: Dialect) -> Result<Vec<Migration>, StoreError> {
    HISTORY
        .iter()
        .map(|v| Migration::unapplied(v.name, sql(v, dialect)).map_err(|e| err(e, known())))
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
