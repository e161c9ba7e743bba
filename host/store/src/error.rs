//! The store's error type: one variant per failure, each carrying the value at fault.

use std::fmt;
use std::path::PathBuf;

use crate::{IssueId, RunId, RunStatus};

/// `Result` with the store's [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the store can fail with. Messages never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the store at `{path}`")]
    Open {
        path: PathBuf,
        #[source]
        source: DbError,
    },

    #[error("the store at `{path}` stayed in journal mode `{mode}`; keelson needs WAL")]
    NotWal { path: PathBuf, mode: String },

    #[error(
        "the store at `{path}` has schema version {found}, but this keelson supports up to version {supported}; \
         use a newer keelson or another database file"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error(
        "the store at `{path}` has schema version {found}, but this keelson reads version {expected}; \
         run any keelson command on it once to migrate it"
    )]
    SchemaNotMigrated {
        path: PathBuf,
        found: i64,
        expected: i64,
    },

    #[error("migrating the store to schema version {version} failed")]
    Migrate {
        version: i64,
        #[source]
        source: DbError,
    },

    #[error(
        "migrating the store to schema version {version} left row {} of `{table}` pointing at no row of `{parent}`; \
         the store was left at its previous version",
        rowid.map_or_else(|| "?".to_owned(), |r| r.to_string())
    )]
    MigrateForeignKey {
        version: i64,
        table: String,
        rowid: Option<i64>,
        parent: String,
    },

    #[error("cannot use the owner lock `{path}`")]
    OwnerLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no connection named `{0}`")]
    UnknownConnection(String),

    #[error("a scan of connection `{connection}` is already running (run {run})")]
    AlreadyRunning { connection: String, run: RunId },

    #[error("no scan run {0}")]
    UnknownRun(RunId),

    #[error("scan run {run} is `{status}`, not running; it takes no more data")]
    RunNotRunning { run: RunId, status: RunStatus },

    #[error(
        "batch {batch} of what scan run {run} saw is corrupt; the run cannot resolve anything: scan again"
    )]
    CorruptSeenBatch { run: RunId, batch: i64 },

    #[error("registry `{registry}` is outside the scope requested for scan run {run}")]
    CoverageOutsideScope { run: RunId, registry: String },

    #[error("run `{run}` is `{status}`, not held; nothing to accept")]
    NotHeld { run: RunId, status: RunStatus },

    #[error(
        "run `{run}` was held, but run `{newer}` of the same connection started after it; \
         its resolution is out of date — accept or re-run the newest"
    )]
    HeldSuperseded { run: RunId, newer: RunId },

    /// A failpoint (feature `failpoints`) was configured to return an error.
    #[cfg(feature = "failpoints")]
    #[error("failpoint `{0}` returned an error")]
    Failpoint(&'static str),

    #[error("no issue {0}")]
    UnknownIssue(IssueId),

    #[error("issue {0} is already suppressed")]
    AlreadySuppressed(IssueId),

    #[error("issue {0} is not suppressed")]
    NotSuppressed(IssueId),

    #[error("`{0}` is not an RFC 3339 timestamp")]
    InvalidTimestamp(String),

    #[error("`{0}` is not an issue cursor; expected `SEVERITY:ID` as printed by a previous page")]
    InvalidCursor(String),

    #[error("an API token named `{0}` already exists; pick another name or revoke it first")]
    TokenExists(String),

    #[error("`{0}` is not a token role; use `viewer`, `operator` or `admin`")]
    InvalidRole(String),

    #[error("a master key must be 32 bytes, got {0}")]
    InvalidKeyLength(usize),

    #[error("a master key id must be 1 to 64 characters of `A-Za-z0-9._-`, got `{0}`")]
    InvalidKeyId(String),

    #[error(
        "secret `{secret}` of connection `{connection}` is encrypted with master key `{key_id}`, which was not given"
    )]
    MissingKey {
        connection: String,
        secret: String,
        key_id: String,
    },

    #[error(
        "secret `{secret}` of connection `{connection}` cannot be decrypted with master key `{key_id}`: \
         the key is wrong or the stored secret was altered"
    )]
    Decrypt {
        connection: String,
        secret: String,
        key_id: String,
    },

    #[error("secret `{secret}` of connection `{connection}` is too large to encrypt")]
    SecretTooLarge { connection: String, secret: String },

    #[error("stored value in `{column}` is not valid: {reason}")]
    Corrupt {
        column: &'static str,
        reason: String,
    },

    #[error("no suppression rule {0}")]
    UnknownSuppressionRule(i64),

    #[error("suppression rule {0} is already lifted")]
    SuppressionRuleLifted(i64),

    #[error("a suppression or manual priority needs a justification; it was empty")]
    EmptyJustification,

    #[error("a {0} suppression needs a pattern; it was empty")]
    EmptyPattern(&'static str),

    #[error(
        "`{0}` cannot be a manual priority; expected critical, high, medium, low or informational"
    )]
    BadOverride(keelson_core::Severity),

    #[error("issue {0} has no manual priority")]
    NoOverride(IssueId),

    #[error(transparent)]
    Feed(#[from] keelson_enrich::Error),

    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for Error {
    fn from(source: rusqlite::Error) -> Self {
        Self::Db(DbError(source))
    }
}

/// An error from SQLite, kept opaque so no other crate depends on the SQLite binding.
#[derive(Debug)]
pub struct DbError(pub(crate) rusqlite::Error);

impl DbError {
    /// Whether SQLite gave up waiting for another writer (`SQLITE_BUSY` or `SQLITE_LOCKED`).
    pub fn is_busy(&self) -> bool {
        matches!(
            self.0.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sqlite: {}", self.0)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(source: rusqlite::Error) -> Self {
        Self(source)
    }
}

impl Error {
    /// Whether this is SQLite giving up on a lock; the store's busy timeout should make it rare.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Db(e) | Self::Open { source: e, .. } | Self::Migrate { source: e, .. } => {
                e.is_busy()
            }
            _ => false,
        }
    }
}
