//! Keelson's HTTP API and web page: connector plugins, connections, locations, scans and the
//! active issues queue, for operators and analysts in a browser.
//!
//! [`router`] builds the whole service: the JSON API under `/api/v1` (described by
//! `openapi.json` beside this crate's manifest, checked against the routes in a test) and the
//! server-rendered pages. Everything that talks to a plugin goes through a [`Backend`], which
//! `keelson serve` implements with the same code the command line uses. A viewer's requests
//! only read the plugins' descriptions (which `keelson serve` loads once, at start) and call no
//! plugin: the locations they see are the ones the store has from scans, and listing them live
//! is an operator's action. The queue, suppressions, runs and tokens are read and written
//! through [`keelson_store::Store`] directly.
//!
//! Access ([`auth`]): every request's `Host` must be one of the bound addresses (DNS rebinding);
//! callers present an API token (`Authorization: Bearer`) or a session cookie obtained by signing
//! in with one (sessions live in the store, so a restart keeps them), and a request of nobody is
//! refused before its body is read; failed sign-ins are logged and throttled per address; roles
//! are viewer (read), operator (scan, suppress, list locations live) and admin (configure);
//! state-changing requests carry an allowed `Origin`, and cookie sessions also a CSRF token.
//! Behind a TLS proxy, an `https://` [`PublicUrl`] makes the cookie `Secure` and that origin
//! the only one changes come from. Every change is recorded in the store's event log with the
//! token's name as actor.
//!
//! [`AppState`] reads through a small pool of read-only store connections and writes through one
//! writer, so a slow write never holds up a page or an API read.
//!
//! Runs are shown with their coverage ([`RunView`]); the queue says per connection how current
//! its part is ([`QueueConnection`]), so a failed, partial or held run, or a connection never
//! scanned, never reads as a clean queue; a held run is accepted with `POST /api/v1/runs/{id}/accept`.

pub mod api;
pub mod auth;
mod config;
mod error;
pub mod export;
mod locations;
mod pages;
mod routes;
mod runs;
mod scans;
mod state;
mod throttle;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use keelson_core::{Account, ConnectorInfo};
use keelson_scan::{Progress, ScanSummary, Selection};
use keelson_store::SelectionRule;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use config::{PublicUrl, ServerConfig};
pub use error::{ApiError, Error};
pub use routes::{API_ROUTES, router};
pub use runs::{LastRun, QueueConnection, RunView};
pub use scans::ScanState;
pub use state::AppState;

/// A boxed, sendable future: what [`Backend`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a [`Backend`] call failed, sorted by who is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The request is wrong (a missing setting, a bad name); the message says how to fix it.
    Invalid(String),
    /// No such plugin or connection.
    NotFound(String),
    /// The request clashes with the current state (a declared connection, a scan running).
    Conflict(String),
    /// The plugin or the remote side failed; the message is the plugin's reason.
    Failed(String),
}

/// A new connection as the web form or the API sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectRequest {
    pub plugin: String,
    pub name: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Secret settings by key; values never appear in responses or logs.
    #[serde(default, skip_serializing)]
    pub secrets: BTreeMap<String, SecretString>,
}

/// A connection's registries and repositories with what its selection scans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationReport {
    pub rules: Vec<SelectionRule>,
    pub registries: Vec<RegistryLocation>,
}

/// One registry of a [`LocationReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryLocation {
    pub name: String,
    /// `selected`, `partly` or `deselected`.
    pub state: String,
    pub repositories: Vec<RepositoryLocation>,
    /// Why the repositories could not be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a scan last listed it, for a report read from the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

impl RegistryLocation {
    /// Registry `name` with its `repositories`, each marked as `selection` scans it: the
    /// registry is `deselected` when it is out of scope, `selected` when every repository is,
    /// `partly` otherwise.
    pub fn new(selection: &Selection, name: String, repositories: Vec<String>) -> Self {
        let repositories: Vec<RepositoryLocation> = repositories
            .into_iter()
            .map(|repository| RepositoryLocation {
                selected: selection.repository_selected(&name, &repository),
                name: repository,
            })
            .collect();
        let state = if !selection.registry_in_scope(&name) {
            "deselected"
        } else if repositories.iter().all(|r| r.selected) {
            "selected"
        } else {
            "partly"
        };
        Self {
            name,
            state: state.to_owned(),
            repositories,
            error: None,
            last_seen: None,
        }
    }
}

/// One repository of a [`RegistryLocation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryLocation {
    pub name: String,
    pub selected: bool,
}

/// What talks to plugins: implemented by `keelson serve` with the command line's own code.
pub trait Backend: Send + Sync + 'static {
    /// The enabled connector plugins, as each describes itself.
    fn plugins(&self) -> BoxFuture<'_, Result<Vec<ConnectorInfo>, BackendError>>;
    /// Validates, connects and verifies `request`, then saves it as `actor` (like `keelson connect`).
    fn connect(
        &self,
        request: ConnectRequest,
        actor: String,
    ) -> BoxFuture<'_, Result<Account, BackendError>>;
    /// Connects connection `name` and verifies it (like `keelson verify`).
    fn verify(&self, name: String) -> BoxFuture<'_, Result<Account, BackendError>>;
    /// Lists the locations of connection `name` live through its plugin, with their selection
    /// (like `keelson locations`). Called only for an operator who asked for it: everyone else
    /// reads the locations the store has from the connection's scans.
    fn locations(&self, name: String) -> BoxFuture<'_, Result<LocationReport, BackendError>>;
    /// The configuration file that declares connection `name`, when it comes from there rather
    /// than from a connect: such a connection is changed, and removed, in that file.
    fn declared_in(&self, name: &str) -> Option<String>;
    /// The selection rules the configuration file gives connection `name` (its `locations`),
    /// which come before the stored ones; empty for a connection it does not declare.
    fn declared_rules(&self, name: &str) -> Vec<SelectionRule>;
    /// Runs one scan of connection `name` (like `keelson scan`), reporting to `progress`;
    /// `accept_drop` pre-approves a resolution the guard would hold (like `--accept-drop`).
    fn scan(
        &self,
        name: String,
        accept_drop: bool,
        progress: Box<dyn Progress>,
        cancel: Arc<AtomicBool>,
    ) -> BoxFuture<'_, Result<ScanSummary, BackendError>>;
}

/// Serves `state` on `listener` until `shutdown` completes.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Io)?;
    tracing::info!(%addr, "serving");
    // The peer address counts failed sign-ins per client.
    let service = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Io)
}

/// Hashes an API token for lookup: hex SHA-256 of its text.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A fresh API token: `kt_` and 32 random bytes in hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("kt_{}", hex::encode(bytes))
}
