//! T33: schema versions. A database from a newer keelson is refused, untouched; one from an
//! older keelson is migrated and reads back as it was.

use keelson_store::{Error, Store, migrate};

#[test]
fn a_database_newer_than_this_build_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    drop(Store::open(&path).unwrap());
    let newer = migrate::latest_version() + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();

    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found, supported, .. } if found == newer && supported == migrate::latest_version())
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("schema version {newer}")),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "supports up to version {}",
            migrate::latest_version()
        )),
        "{message}"
    );

    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, newer);
}

#[test]
fn reopening_keeps_data_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    let mut store = Store::open(&path).unwrap();
    crate::add_connections(&mut store, &["prod"]);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), migrate::latest_version());
    assert_eq!(store.connections().unwrap().len(), 1);
}

#[test]
fn runs_recorded_before_coverage_read_back_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    {
        // A database as version 6 of the schema left it, with one finished run.
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &migrate::MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute_batch(
            "INSERT INTO connections (id, name, plugin, created_at, updated_at)
                 VALUES (1, 'prod', 'acr', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
             INSERT INTO scan_runs (id, connection_id, trigger, requested_scope, covered_registries, status,
                 started_at, finished_at, findings_new)
                 VALUES (3, 1, 'manual', '[]', '[\"one.azurecr.io\"]', 'complete',
                     '2026-01-01T00:00:00.000Z', '2026-01-01T00:01:00.000Z', 4);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), migrate::latest_version());
    let run = store.run(keelson_store::RunId(3)).unwrap().unwrap();
    assert_eq!(run.status, keelson_store::RunStatus::Complete);
    assert_eq!(run.findings_new, 4);
    assert_eq!(
        run.covered_registries,
        Some(vec!["one.azurecr.io".to_owned()])
    );
    assert_eq!(
        (run.coverage, run.held, run.accepted_at, run.accepted_by),
        (None, None, None, None)
    );
    assert_eq!(store.runs(Some("prod"), 10).unwrap().len(), 1);
    let states = store.connection_states().unwrap();
    let last = states[0].last_run.as_ref().unwrap();
    assert_eq!((last.id.0, last.coverage.as_deref()), (3, None));
    assert_eq!(
        states[0].data_as_of.as_deref(),
        Some("2026-01-01T00:01:00.000Z")
    );
}
