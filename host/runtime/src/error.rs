//! What can go wrong loading a plugin or calling it.
//!
//! Load errors name the plugin and its file. Call errors carry a [`CallSite`] (plugin id, the
//! connector's version, the operation), so a message reads
//! "from plugin `acr` 0.1.0 in `verify`: …" wherever it ends up.

use std::path::PathBuf;
use std::time::Duration;

use keelson_connector::{CallError, FailureKind};
use keelson_core::ConnectorError;

pub use keelson_connector::CallSite;

/// Why loading or calling a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),

    #[error("cannot read plugin `{plugin}` from `{path}`: {source}")]
    Read {
        plugin: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "plugin `{plugin}` at `{path}` has sha256 `{actual}`, but plugins.toml pins `{expected}`; refusing to load it"
    )]
    DigestMismatch {
        plugin: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error(
        "plugin `{plugin}` at `{path}` is not a WebAssembly file (it does not start with `\\0asm`)"
    )]
    NotWasm { plugin: String, path: PathBuf },

    #[error(
        "plugin `{plugin}` at `{path}` is a core WebAssembly module, not a component; build it for `wasm32-wasip2` so it is a component"
    )]
    CoreModule { plugin: String, path: PathBuf },

    #[error("plugin `{plugin}` at `{path}` is not a valid component: {reason}")]
    InvalidComponent {
        plugin: String,
        path: PathBuf,
        reason: String,
    },

    #[error("compiling plugin `{plugin}` took longer than {limit:?}; refusing to load it")]
    CompileTimeout { plugin: String, limit: Duration },

    #[error("plugin `{plugin}` does not implement `keelson:registry` (it exports {exports})")]
    NotAConnector { plugin: String, exports: String },

    #[error(
        "plugin `{plugin}` targets `keelson:registry@{found}`, but this host supports `keelson:registry@{supported}` (it accepts {compatible}); rebuild the plugin against `{supported}`"
    )]
    UnsupportedVersion {
        plugin: String,
        found: String,
        supported: &'static str,
        compatible: String,
    },

    #[error(
        "plugin `{plugin}` targets `keelson:registry@{found}`, which hands a plugin its secrets in plaintext; rebuild it against `keelson:registry@0.2.0` (sealed secrets), or, if you trust its author, set `allow_plaintext_secrets = true` on its `[[plugin]]` entry"
    )]
    PlaintextSecrets { plugin: String, found: String },

    #[error("plugin `{plugin}` cannot be linked against this host: {reason}")]
    Link { plugin: String, reason: String },

    /// The connector returned its own typed error; the connection stays usable.
    #[error("{site}: {source}")]
    Connector {
        site: CallSite,
        source: ConnectorError,
    },

    #[error("{site}: the plugin trapped: {message}{}", stderr_suffix(.stderr))]
    Trap {
        site: CallSite,
        message: String,
        /// The end of what the guest wrote to stderr (a panic message lands there), escaped.
        stderr: String,
    },

    #[error("{site}: no answer within {limit:?}; the call was stopped")]
    Timeout { site: CallSite, limit: Duration },

    #[error(
        "{site}: memory limit of {limit} bytes reached (the plugin asked for {requested} bytes)"
    )]
    MemoryLimit {
        site: CallSite,
        limit: u64,
        requested: u64,
    },

    #[error("{site}: table limit of {limit} elements reached (the plugin asked for {requested})")]
    TableLimit {
        site: CallSite,
        limit: usize,
        requested: usize,
    },

    #[error("{site}: stack overflow (the wasm stack is capped at {limit} bytes)")]
    StackOverflow { site: CallSite, limit: usize },

    #[error(
        "{site}: the plugin passed a value larger than the {limit}-byte cap on data lifted out of the guest"
    )]
    LiftLimit { site: CallSite, limit: usize },

    #[error("{site}: resource limit reached: {reason}")]
    ResourceLimit { site: CallSite, reason: String },

    /// The guest returned a value the host refuses (too many items, a field too long, a page
    /// larger than asked for); the connection stays usable.
    #[error("{site}: invalid value: {reason}")]
    Invalid { site: CallSite, reason: String },

    #[error(
        "connection `{connection}` of plugin `{plugin}` was retired after an earlier failure ({reason}); open a new connection"
    )]
    Retired {
        plugin: String,
        connection: String,
        reason: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with `{stderr}`")
    }
}

impl Error {
    /// Where the failing call happened, for call errors.
    pub fn call_site(&self) -> Option<&CallSite> {
        match self {
            Self::Connector { site, .. }
            | Self::Trap { site, .. }
            | Self::Timeout { site, .. }
            | Self::MemoryLimit { site, .. }
            | Self::TableLimit { site, .. }
            | Self::StackOverflow { site, .. }
            | Self::LiftLimit { site, .. }
            | Self::ResourceLimit { site, .. }
            | Self::Invalid { site, .. } => Some(site),
            _ => None,
        }
    }

    /// Whether the failure poisoned the instance, so its connection can serve no further calls.
    pub fn retires_connection(&self) -> bool {
        self.call_site().is_some() && !matches!(self, Self::Connector { .. } | Self::Invalid { .. })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for CallError {
    /// Keeps the connector's typed errors and refused values as they are; every other failure
    /// retired the instance and travels as its message.
    fn from(err: Error) -> Self {
        match err {
            Error::Connector { site, source } => Self::Connector { site, source },
            Error::Invalid { site, reason } => Self::Invalid { site, reason },
            other => {
                let kind = match &other {
                    Error::Trap { .. } => FailureKind::Trap,
                    Error::Timeout { .. } => FailureKind::Timeout,
                    Error::Retired { .. } => FailureKind::Retired,
                    _ => FailureKind::Limit,
                };
                Self::Failed {
                    kind,
                    message: other.to_string(),
                }
            }
        }
    }
}
