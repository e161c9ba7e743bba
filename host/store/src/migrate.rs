//! Append-only schema migrations, tracked by `PRAGMA user_version`.
//!
//! Entry `n` of [`MIGRATIONS`] takes the schema from version `n` to `n + 1`. Released entries are
//! never edited or removed; a schema change is a new file appended here. All pending migrations
//! and the new `user_version` commit in one `BEGIN IMMEDIATE` transaction, so a crash leaves the
//! old schema or the new one, never a mix.
//!
//! Foreign keys are off while migrations run (SQLite ignores the pragma inside a transaction, so
//! it is switched around it): a migration that rebuilds a table other tables reference (version
//! 7 rebuilds `scan_runs`) drops the old table before the new one takes its name. Before the
//! commit `PRAGMA foreign_key_check` must come back empty, so the rebuild cannot leave a dangling
//! reference behind.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::{DbError, Error, Result};

/// The schema, one SQL script per version.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_enrichment.sql"),
    include_str!("../migrations/0003_server.sql"),
    include_str!("../migrations/0004_retire.sql"),
    include_str!("../migrations/0005_scale.sql"),
    include_str!("../migrations/0006_seen_images.sql"),
    include_str!("../migrations/0007_coverage.sql"),
];

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the database up to [`latest_version`], or refuses one that is newer.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    apply(conn, path, MIGRATIONS)
}

fn apply(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    let foreign_keys: bool = conn.query_row("PRAGMA foreign_keys", [], |row| row.get(0))?;
    if foreign_keys {
        conn.pragma_update(None, "foreign_keys", false)?;
    }
    let applied = apply_in_transaction(conn, path, migrations);
    if foreign_keys {
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    applied
}

fn apply_in_transaction(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    let supported = migrations.len() as i64;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > supported {
        return Err(Error::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    if found == supported {
        return Ok(());
    }
    for (index, sql) in migrations.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let migrate_err = |source: rusqlite::Error| Error::Migrate {
            version,
            source: DbError(source),
        };
        tx.execute_batch(sql).map_err(migrate_err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(migrate_err)?;
    }
    let dangling: Option<(String, Option<i64>, String)> = tx
        .query_row("PRAGMA foreign_key_check", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    if let Some((table, rowid, parent)) = dangling {
        return Err(Error::MigrateForeignKey {
            version: supported,
            table,
            rowid,
            parent,
        });
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn migrate_twice() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(user_version(&conn), latest_version());
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(user_version(&conn), latest_version());
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(tables >= 12, "found {tables} tables");
    }

    #[test]
    fn failing_migration_leaves_the_previous_version_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        let migrations = [
            "CREATE TABLE a (x INTEGER);",
            "CREATE TABLE b (y INTEGER); SELECT * FROM missing;",
        ];
        let err = apply(&mut conn, Path::new(":memory:"), &migrations).unwrap_err();
        assert!(matches!(err, Error::Migrate { version: 2, .. }), "{err:?}");
        // Both steps ran in one transaction: neither table nor version survived.
        assert_eq!(user_version(&conn), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn version_6_runs_survive_the_scan_runs_rebuild_and_references_still_hold() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        apply(&mut conn, Path::new(":memory:"), &MIGRATIONS[..6]).unwrap();
        conn.execute_batch(
            "INSERT INTO connections (id, name, plugin, created_at, updated_at) VALUES (1, 'prod', 'acr', 't', 't');
             INSERT INTO scan_runs (id, connection_id, trigger, requested_scope, covered_registries, status, started_at,
                 finished_at, findings_new, findings_resolved)
                 VALUES (7, 1, 'manual', '[]', '[\"r.azurecr.io\"]', 'complete', 't0', 't1', 3, 2);
             INSERT INTO registries (connection_id, name, first_seen, last_seen, last_run_id)
                 VALUES (1, 'r.azurecr.io', 't', 't', 7);",
        )
        .unwrap();
        apply(&mut conn, Path::new(":memory:"), MIGRATIONS).unwrap();
        assert_eq!(user_version(&conn), latest_version());
        let foreign_keys: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(foreign_keys, "foreign keys are switched back on");
        let row: (String, i64, i64, Option<String>) = conn
            .query_row(
                "SELECT status, findings_new, findings_resolved, coverage FROM scan_runs WHERE id = 7",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(row, ("complete".to_owned(), 3, 2, None));
        conn.execute("UPDATE scan_runs SET status = 'held' WHERE id = 7", [])
            .unwrap();
        // The other tables still reference the rebuilt table, and the lease index is back.
        let dangling = conn.execute(
            "INSERT INTO registries (connection_id, name, first_seen, last_seen, last_run_id)
             VALUES (1, 'other.azurecr.io', 't', 't', 99)",
            [],
        );
        assert!(dangling.is_err(), "a reference to no run was accepted");
        conn.execute_batch(
            "INSERT INTO scan_runs (connection_id, trigger, requested_scope, status, started_at)
             VALUES (1, 'manual', '[]', 'running', 't2');",
        )
        .unwrap();
        let second = conn.execute(
            "INSERT INTO scan_runs (connection_id, trigger, requested_scope, status, started_at)
             VALUES (1, 'manual', '[]', 'running', 't3')",
            [],
        );
        assert!(second.is_err(), "two running runs of one connection");
    }

    #[test]
    fn a_migration_that_leaves_a_dangling_reference_is_rolled_back() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        let migrations = [
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent_id INTEGER REFERENCES parent (id));",
            "INSERT INTO child VALUES (5);",
        ];
        let err = apply(&mut conn, Path::new(":memory:"), &migrations).unwrap_err();
        assert_eq!(
            err.to_string(),
            "migrating the store to schema version 2 left row 1 of `child` pointing at no row of `parent`; \
             the store was left at its previous version"
        );
        assert_eq!(user_version(&conn), 0);
    }

    #[test]
    fn newer_schema_is_refused_naming_both_versions() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest_version() + 3)
            .unwrap();
        let err = migrate(&mut conn, Path::new("keelson.db")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("version {}", latest_version() + 3)),
            "{message}"
        );
        assert!(
            message.contains(&format!("up to version {}", latest_version())),
            "{message}"
        );
        assert!(message.contains("`keelson.db`"), "{message}");
    }
}
