//! T33: schema versions. A database from a newer keelson is refused, untouched.

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
