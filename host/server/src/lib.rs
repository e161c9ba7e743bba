//! Keelson's HTTP API and web page: connector plugins, connections, locations, scans and the
//! active issues queue, for operators and analysts in a browser.
//!
//! [`router`] builds the whole service: the JSON API under `/api/v1` (described by
//! `openapi.json` beside this crate's manifest, checked against the routes in a test) and the
//! server-rendered pages. Everything that talks to a plugin goes through a [`Backend`], which
//! `keelson serve` implements with the same code the command line uses; the queue, suppressions,
//! runs and tokens are read and written through [`keelson_store::Store`] directly.
//!
//! Access ([`auth`]): every request's `Host` must be one of the bound addresses (DNS rebinding);
//! callers present an API token (`Authorization: Bearer`) or a session cookie obtained by signing
//! in with one (sessions live in the store, so a restart keeps them); roles are viewer (read), operator (scan, suppress) and admin (configure);
//! state-changing requests carry an allowed `Origin`, and cookie sessions also a CSRF token.
//! Every change is recorded in the store's event log with the token's name as actor.
//!
//! Runs are shown with their coverage ([`RunView`]); the queue says per connection how current
//! its part is ([`QueueConnection`]), so a failed, partial or held run, or a connection never
//! scanned, never reads as a clean queue; a held run is accepted with `POST /api/v1/runs/{id}/accept`.

pub mod api;
pub mod auth;
mod error;
pub mod export;
mod pages;
mod routes;
mod runs;
mod scans;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use keelson_core::{Account, ConnectorInfo};
use keelson_scan::{Progress, ScanSummary};
use keelson_store::{SelectionRule, Store};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use error::{ApiError, Error};
pub use routes::{API_ROUTES, router};
pub use runs::{LastRun, QueueConnection, RunView};
pub use scans::ScanState;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// Lists the locations of connection `name` with their selection (like `keelson locations`).
    fn locations(&self, name: String) -> BoxFuture<'_, Result<LocationReport, BackendError>>;
    /// The configuration file that declares connection `name`, when it comes from there rather
    /// than from a connect: such a connection is changed, and removed, in that file.
    fn declared_in(&self, name: &str) -> Option<String>;
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

/// Where the server listens and which `Host` names it answers to.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The bound address.
    pub bind: SocketAddr,
    /// `Host` header values accepted (the bound address, and `localhost:PORT` on loopback).
    pub allowed_hosts: Vec<String>,
    /// How long a signed-in session lasts without use.
    pub session_idle: std::time::Duration,
    /// How long a signed-in session lasts at most, however much it is used.
    pub session_lifetime: std::time::Duration,
}

impl ServerConfig {
    /// The defaults for listening on `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        let mut allowed_hosts = vec![bind.to_string()];
        if bind.ip().is_loopback() {
            allowed_hosts.push(format!("localhost:{}", bind.port()));
        }
        Self {
            bind,
            allowed_hosts,
            session_idle: std::time::Duration::from_hours(8),
            session_lifetime: std::time::Duration::from_hours(7 * 24),
        }
    }
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    store: Mutex<Store>,
    backend: Arc<dyn Backend>,
    scans: scans::Scans,
}

impl AppState {
    /// The state for a server with `config`, reading and writing `store` and reaching plugins
    /// through `backend`.
    pub fn new(config: ServerConfig, store: Store, backend: Arc<dyn Backend>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                store: Mutex::new(store),
                backend,
                scans: scans::Scans::default(),
            }),
        }
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.inner.backend.as_ref()
    }

    pub(crate) fn scans(&self) -> &scans::Scans {
        &self.inner.scans
    }

    /// Runs `f` with the store. Never held across an `.await`: SQLite calls are short.
    pub(crate) fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut store = self
            .inner
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut store)
    }
}

/// Serves `state` on `listener` until `shutdown` completes.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Io)?;
    tracing::info!(%addr, "serving");
    axum::serve(listener, router(state))
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
