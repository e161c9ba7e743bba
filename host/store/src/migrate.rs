//! Append-only schema migrations, tracked by `PRAGMA user_version`.
//!
//! Entry `n` of [`MIGRATIONS`] takes the schema from version `n` to `n + 1`. Released entries are
//! never edited or removed; a schema change is a new file appended here. All pending migrations
//! and the new `user_version` commit in one `BEGIN IMMEDIATE` transaction, so a crash leaves the
//! old schema or the new one, never a mix.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::{DbError, Error, Result};

/// The schema, one SQL script per version.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_enrichment.sql"),
    include_str!("../migrations/0003_server.sql"),
    include_str!("../migrations/0004_retire.sql"),
    include_str!("../migrations/0005_scale.sql"),
    include_str!("../migrations/0006_seen_images.sql"),
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
