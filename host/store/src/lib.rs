//! Keelson's findings store: one SQLite file that holds connections, inventory, scan runs,
//! vulnerabilities, findings, issues, suppressions and an append-only event log.
//!
//! [`Store`] is the only type that touches SQLite. It is opened with [`Store::open`], which sets WAL,
//! `synchronous=FULL`, a busy timeout and foreign keys, applies the append-only migrations in
//! [`migrate`] and marks runs left `running` by a dead process as `interrupted`.
//! [`Store::open_read_only`] opens more connections to the same file that only read, for a
//! server whose readers must not wait behind its writer.
//!
//! The scan pipeline drives a run through [`Store::begin_run`], [`Store::ingest_inventory`],
//! [`Store::ingest_findings`] and [`Store::finish_run`]; each call is one `BEGIN IMMEDIATE`
//! transaction, so pages stream in and a crash loses at most the batch in flight. A run finishes
//! with its [`Coverage`]: a complete or partial run resolves findings only inside the registries
//! it read completely while the findings listing was read to the end ([`Coverage::resolvable`]),
//! only in selected repositories, and in the same transaction that ends it; failed, cancelled and
//! interrupted runs resolve nothing. A run that would resolve a sudden drop (see
//! [`ResolveGuard`]) ends `held` and resolves only when [`Store::accept_held`] accepts it.
//! [`Store::connection_states`] gives each connection's last run and the time its data is as of.
//! With the `failpoints` feature, every commit point is a failpoint (see [`FAILPOINTS`]).
//! The queue is read with [`Store::issues`] and
//! [`Store::issue`]; secrets of a [`ConnectionSpec`] are sealed with AES-256-GCM under a
//! caller-supplied [`MasterKey`] (see [`secrets`]).
//!
//! Enrichment: [`Store::save_image_contexts`] keeps what connectors say about images,
//! [`Store::import_kev`] and [`Store::import_epss`] replace the feeds, and [`Store::enrich`]
//! re-evaluates findings with a `keelson_enrich::Policy` in batches, recording each change of
//! priority as an event and applying suppression rules ([`Store::add_suppression_rule`]).
//!
//! Beside `keelson.db` (and its `-wal`/`-shm`) the store keeps `keelson.db-owners/`, one locked
//! file per open store, which tells a crashed scan from a live one. Back up with
//! [`Store::backup_to`], never by copying the file while keelson runs.

mod failpoints;

mod connections;
mod coverage;
mod enrich;
mod error;
mod ingest;
pub mod migrate;
mod owner;
mod queue;
mod resolve;
mod runs;
pub mod secrets;
mod seen;
mod sessions;
mod tokens;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

pub use connections::{
    ConnectionSpec, KnownRegistry, SelectionAction, SelectionRule, StoredConnection,
};
pub use coverage::{Coverage, Held, RegistryCoverage, ResolveGuard};
pub use enrich::{
    ControlCount, ENRICH_BATCH, EnrichCounts, EnrichScope, OverrideInfo, RuleScope, SuppressionRule,
};
pub use error::{DbError, Error, Result};
pub use failpoints::FAILPOINTS;
pub use ingest::{IngestCounts, InventoryItem};
pub use queue::{
    EventRow, FindingDetail, IssueCursor, IssueDetail, IssueFilter, IssueImage, IssueRow,
    IssueSort, IssueStatus, QueueSummary, SlaState, SortCursor, SortKey, SuppressionInfo,
    VulnerabilityInfo,
};
pub use runs::{ConnectionState, RunBrief, RunInfo, RunOutcome, RunStatus, RunTrigger};
pub use secrets::{Keyring, MasterKey};
pub use sessions::WebSession;
pub use tokens::{ApiToken, TOKEN_ROLES};

/// How long a writer waits for another writer before SQLite reports busy.
///
/// Long enough to outlast any single batch transaction of a concurrent scan.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }
    };
}

id_type!(
    /// Row id of a connection.
    ConnectionId
);
id_type!(
    /// Row id of a scan run.
    RunId
);
id_type!(
    /// Row id of an issue: stable across scans, shown to operators.
    IssueId
);
id_type!(
    /// Row id of a finding (one occurrence of an issue in one image).
    FindingId
);

/// The findings store: one SQLite connection plus this process's run-owner lock.
///
/// Reads take `&self`; every write takes `&mut self` and runs in one `BEGIN IMMEDIATE` transaction.
/// The type is `Send` but not `Sync`: a daemon owns one per thread or behind a mutex, and never
/// holds it across an `.await`.
pub struct Store {
    conn: Connection,
    owner: owner::Owner,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path`, migrates it and recovers interrupted runs.
    ///
    /// Refuses a database written by a newer keelson ([`Error::SchemaTooNew`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let conn = Self::open_wal(path, OpenFlags::default(), "PRAGMA journal_mode = WAL")?;
        Self::finish_open(conn, path, owner::Owner::for_database(path)?)
    }

    /// Opens `path` with `flags` and a busy timeout, refusing it unless `journal_pragma` (which
    /// asks for WAL, or only reads the mode) answers WAL.
    fn open_wal(path: &Path, flags: OpenFlags, journal_pragma: &str) -> Result<Connection> {
        let open_err = |source: rusqlite::Error| Error::Open {
            path: path.to_owned(),
            source: DbError(source),
        };
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL lets readers (the queue, the web page) run while a scan writes; FULL makes each
        // commit durable on power loss, which NORMAL does not in WAL mode.
        let mode: String = conn
            .query_row(journal_pragma, [], |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::NotWal {
                path: path.to_owned(),
                mode,
            });
        }
        Ok(conn)
    }

    /// Opens a read-only connection to the store at `path`, for readers beside its one writer
    /// (the pages and API of `keelson serve`): in WAL mode it reads while a scan or another
    /// request writes. It never migrates or recovers anything, so it refuses a file whose schema
    /// is not exactly this build's; every write method fails on it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let open_err = |source: rusqlite::Error| Error::Open {
            path: path.to_owned(),
            source: DbError(source),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Self::open_wal(path, flags, "PRAGMA journal_mode")?;
        conn.pragma_update(None, "query_only", true)
            .map_err(open_err)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(open_err)?;
        let supported = migrate::latest_version();
        if found > supported {
            return Err(Error::SchemaTooNew {
                path: path.to_owned(),
                found,
                supported,
            });
        }
        if found < supported {
            return Err(Error::SchemaNotMigrated {
                path: path.to_owned(),
                found,
                expected: supported,
            });
        }
        // A reader never begins or recovers a run, so it holds no owner lock.
        Ok(Self {
            conn,
            owner: owner::Owner::in_memory(),
        })
    }

    /// The file this store is on; `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.conn.path().filter(|p| !p.is_empty()).map(Path::new)
    }

    /// Opens a private in-memory store, for tests and dry runs.
    pub fn open_in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| Error::Open {
            path: path.clone(),
            source: DbError(source),
        })?;
        Self::finish_open(conn, &path, owner::Owner::in_memory())
    }

    fn finish_open(conn: Connection, path: &Path, owner: owner::Owner) -> Result<Self> {
        let open_err = |source: rusqlite::Error| Error::Open {
            path: path.to_owned(),
            source: DbError(source),
        };
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // A scan writes pages of a thousand findings per transaction: with SQLite's 2 MB default
        // cache those transactions spill to the WAL mid-way; statement journals stay in memory.
        conn.pragma_update(None, "cache_size", -32_768)
            .map_err(open_err)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_err)?;
        let mut store = Self { conn, owner };
        migrate::migrate(&mut store.conn, path)?;
        store.recover_interrupted()?;
        Ok(store)
    }

    /// Runs `PRAGMA integrity_check` and returns its lines (`["ok"]` for a sound file).
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Writes a consistent copy of the whole database to `dest` (`VACUUM INTO`).
    ///
    /// Copying the file while keelson runs can miss the WAL; this cannot.
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<()> {
        let dest = dest.as_ref();
        let dest_text = dest.to_str().ok_or_else(|| Error::Open {
            path: dest.to_owned(),
            source: DbError(rusqlite::Error::InvalidPath(dest.to_owned())),
        })?;
        self.conn.execute("VACUUM INTO ?1", [dest_text])?;
        Ok(())
    }

    /// Schema version of the open database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))?)
    }

    /// Starts a write transaction that takes the write lock up front, so it never fails half-way
    /// with `SQLITE_BUSY` on lock upgrade; waiting is bounded by [`BUSY_TIMEOUT`].
    fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// The current time as stored: RFC 3339 UTC with milliseconds, taken from SQLite's clock.
fn now(conn: &Connection) -> rusqlite::Result<String> {
    conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |row| {
        row.get(0)
    })
}

/// Normalises an RFC 3339 timestamp to the stored form, or `None` if SQLite cannot parse it.
fn normalise_timestamp(conn: &Connection, text: &str) -> Result<String> {
    let parsed: Option<String> =
        conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1)", [text], |row| {
            row.get(0)
        })?;
    parsed.ok_or_else(|| Error::InvalidTimestamp(text.to_owned()))
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serialising plain data (strings, vectors, maps with string keys) cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn from_json<T: serde::de::DeserializeOwned>(column: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        column,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_sets_wal_full_sync_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("k.db")).unwrap();
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        let fk: i64 = store
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL is 2");
        assert_eq!(fk, 1);
        assert_eq!(store.integrity_check().unwrap(), vec!["ok".to_owned()]);
    }

    #[test]
    fn a_read_only_store_reads_while_a_writer_holds_the_lock_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let mut writer = Store::open(&db).unwrap();
        let keys = Keyring::new(MasterKey::generate("k1").unwrap());
        writer
            .save_connection(&ConnectionSpec::new("prod", "acr"), &keys, "test")
            .unwrap();
        let mut reader = Store::open_read_only(&db).unwrap();
        assert_eq!(reader.path(), Some(db.as_path()));
        // The writer holds the write lock with an uncommitted change, as a scan's batch does.
        writer.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer
            .conn
            .execute("UPDATE connections SET plugin = 'changed'", [])
            .unwrap();
        let seen = reader.connection("prod").unwrap().unwrap();
        assert_eq!(seen.plugin, "acr", "the reader sees the last commit");
        writer.conn.execute_batch("COMMIT").unwrap();
        assert_eq!(
            reader.connection("prod").unwrap().unwrap().plugin,
            "changed"
        );
        // It writes nothing, and it needs a migrated file.
        assert!(reader.revoke_token("nobody", "test").is_err());
        assert!(
            reader
                .save_connection(&ConnectionSpec::new("x", "acr"), &keys, "test")
                .is_err()
        );
        assert!(writer.connection("x").unwrap().is_none());
        assert_eq!(Store::open_in_memory().unwrap().path(), None);
        let fresh = dir.path().join("fresh.db");
        Connection::open(&fresh)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL")
            .unwrap();
        let err = Store::open_read_only(&fresh).unwrap_err();
        assert!(
            matches!(err, Error::SchemaNotMigrated { found: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn timestamps_normalise_to_utc_and_reject_garbage() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(
            normalise_timestamp(&store.conn, "2026-03-01T02:00:00+02:00").unwrap(),
            "2026-03-01T00:00:00.000Z"
        );
        assert!(matches!(
            normalise_timestamp(&store.conn, "next tuesday"),
            Err(Error::InvalidTimestamp(t)) if t == "next tuesday"
        ));
        let t = now(&store.conn).unwrap();
        assert_eq!(t.len(), "2026-03-01T00:00:00.000Z".len());
        assert!(t.ends_with('Z'));
    }

    #[test]
    fn backup_copies_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("k.db")).unwrap();
        store
            .save_connection(
                &ConnectionSpec::new("prod", "azure-container-registry"),
                &Keyring::new(MasterKey::generate("k1").unwrap()),
                "test",
            )
            .unwrap();
        let copy = dir.path().join("copy.db");
        store.backup_to(&copy).unwrap();
        let other = Store::open(&copy).unwrap();
        assert!(other.connection("prod").unwrap().is_some());
    }
}
