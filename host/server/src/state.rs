//! What every request handler shares: the configuration, the store's one writer with a small
//! pool of read-only connections beside it, the backend, the scans started here and the
//! sign-in throttle.
//!
//! Reads ([`AppState::read`]) never wait for the writer: each takes a read-only connection to the
//! same SQLite file, and in WAL mode a reader is not blocked by anyone's write transaction,
//! whether a request's or a scan's in another process. Only writes ([`AppState::write`]) take the
//! writer; since one may wait for SQLite's write lock as long as [`keelson_store::BUSY_TIMEOUT`],
//! it tells the runtime it blocks, so the other requests keep their worker threads.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use keelson_store::Store;

use crate::throttle::{self, LoginThrottle};
use crate::{ApiError, Backend, ServerConfig, scans};

/// Read-only connections kept open between requests; more are opened when they are all in use.
const IDLE_READERS: usize = 4;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    writer: Mutex<Store>,
    readers: Readers,
    backend: Arc<dyn Backend>,
    scans: scans::Scans,
    throttle: LoginThrottle,
}

/// The read-only connections: `path` is the writer's file, `None` for an in-memory store,
/// whose one connection then serves reads too.
struct Readers {
    path: Option<PathBuf>,
    idle: Mutex<Vec<Store>>,
}

impl AppState {
    /// The state for a server with `config`, writing through `store`, reading through read-only
    /// connections to its file, and reaching plugins through `backend`.
    pub fn new(config: ServerConfig, store: Store, backend: Arc<dyn Backend>) -> Self {
        let path = store.path().map(std::path::Path::to_path_buf);
        Self {
            inner: Arc::new(Inner {
                config,
                writer: Mutex::new(store),
                readers: Readers {
                    path,
                    idle: Mutex::new(Vec::new()),
                },
                backend,
                scans: scans::Scans::default(),
                throttle: LoginThrottle::default(),
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

    /// Runs `f` with a read-only connection of its own. Never held across an `.await`.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let Some(path) = &self.inner.readers.path else {
            return self.write(|s| f(s));
        };
        let idle = lock(&self.inner.readers.idle).pop();
        let reader = match idle {
            Some(reader) => reader,
            None => Store::open_read_only(path)?,
        };
        let result = f(&reader);
        let mut idle = lock(&self.inner.readers.idle);
        if idle.len() < IDLE_READERS {
            idle.push(reader);
        }
        result
    }

    /// Runs `f` with the writer, the one connection that changes the store. Never held across
    /// an `.await`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        blocking(|| f(&mut lock(&self.inner.writer)))
    }

    /// Records that the session whose cookie hashes to `cookie_sha256` was used, in the
    /// background and only if the writer is free: a missed mark is made by a later request,
    /// while waiting for it would hold this one up.
    pub(crate) fn touch_session_later(&self, cookie_sha256: String) {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(mut writer) = state.inner.writer.try_lock() else {
                return;
            };
            if let Err(err) = writer.touch_session(&cookie_sha256) {
                tracing::warn!(error = %err, "could not mark a session used");
            }
        });
    }

    /// How long `client` must wait before its next sign-in, if it made too many failed ones.
    pub(crate) fn login_throttled(&self, client: Option<IpAddr>) -> Option<ApiError> {
        self.inner
            .throttle
            .retry_after(client, Instant::now())
            .map(|wait| {
                tracing::warn!(client = %shown(client), "sign-in refused: too many failed ones from this address");
                ApiError::throttled(wait)
            })
    }

    /// Logs and counts a sign-in by `via` (the form, the API, a bearer token) that named no live
    /// token. The token itself is never logged.
    pub(crate) fn login_failed(&self, client: Option<IpAddr>, via: &'static str) {
        let failures = self.inner.throttle.failed(client, Instant::now());
        tracing::warn!(
            client = %shown(client),
            via,
            failures,
            window_s = throttle::WINDOW.as_secs(),
            "sign-in failed: the token is unknown or revoked"
        );
    }
}

fn shown(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f`, which may block for seconds, without starving the runtime: on a multi-threaded
/// runtime the worker hands its other tasks on first.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use keelson_core::{Account, ConnectorInfo};
    use keelson_scan::{Progress, ScanSummary};
    use keelson_store::{ConnectionSpec, Keyring, MasterKey, SelectionRule};
    use tower::ServiceExt as _;

    use super::*;
    use crate::{BackendError, BoxFuture, ConnectRequest, LocationReport};

    /// A backend no test here should reach.
    struct Unreachable;

    impl Backend for Unreachable {
        fn plugins(&self) -> BoxFuture<'_, Result<Vec<ConnectorInfo>, BackendError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn connect(
            &self,
            _: ConnectRequest,
            _: String,
        ) -> BoxFuture<'_, Result<Account, BackendError>> {
            Box::pin(async { Err(BackendError::Failed("no plugins here".into())) })
        }
        fn verify(&self, _: String) -> BoxFuture<'_, Result<Account, BackendError>> {
            Box::pin(async { Err(BackendError::Failed("no plugins here".into())) })
        }
        fn locations(&self, _: String) -> BoxFuture<'_, Result<LocationReport, BackendError>> {
            Box::pin(async { Err(BackendError::Failed("no plugins here".into())) })
        }
        fn declared_in(&self, _: &str) -> Option<String> {
            None
        }
        fn declared_rules(&self, _: &str) -> Vec<SelectionRule> {
            Vec::new()
        }
        fn scan(
            &self,
            _: String,
            _: bool,
            _: Box<dyn Progress>,
            _: Arc<std::sync::atomic::AtomicBool>,
        ) -> BoxFuture<'_, Result<ScanSummary, BackendError>> {
            Box::pin(async { Err(BackendError::Failed("no plugins here".into())) })
        }
    }

    async fn get(state: &AppState, path: &str, auth: (header::HeaderName, String)) -> StatusCode {
        let request = Request::get(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(auth.0, auth.1)
            .body(Body::empty())
            .unwrap();
        // A task of its own, so a request stuck on the writer cannot stop this timeout; generous,
        // since a reader that needed the writer would wait for as long as it is held.
        let answer = tokio::spawn(crate::router(state.clone()).oneshot(request));
        tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .unwrap_or_else(|_| panic!("GET {path} waited for the writer"))
            .unwrap()
            .unwrap()
            .status()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_are_answered_while_the_writer_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("keelson.db")).unwrap();
        let keys = Keyring::new(MasterKey::from_bytes("k", &[7u8; 32]).unwrap());
        store
            .save_connection(&ConnectionSpec::new("prod", "acr"), &keys, "test")
            .unwrap();
        let token = crate::new_token();
        let record = store
            .create_token("ana", "viewer", &crate::token_hash(&token), "test")
            .unwrap();
        let cookie = "c0ffee";
        store
            .create_session(
                &crate::token_hash(cookie),
                record.id,
                "csrf",
                Duration::from_hours(1),
            )
            .unwrap();
        let config = ServerConfig::new("127.0.0.1:8080".parse().unwrap());
        let state = AppState::new(config, store, Arc::new(Unreachable));

        // Hold the writer, as a write request waiting out a scan's transaction does.
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = state.clone();
        let thread = std::thread::spawn(move || {
            let _writer = lock(&holder.inner.writer);
            held_tx.send(()).unwrap();
            // Until released, or until the test fails and drops the sender.
            let _ = release_rx.recv();
        });
        held_rx.recv().unwrap();

        let bearer = (header::AUTHORIZATION, format!("Bearer {token}"));
        let session = (header::COOKIE, format!("keelson_session={cookie}"));
        for path in [
            "/api/v1/health",
            "/api/v1/issues",
            "/api/v1/connections",
            "/api/v1/connections/prod",
            "/api/v1/connections/prod/runs",
            "/api/v1/connections/prod/locations",
            "/api/v1/compliance",
            "/api/v1/exports/csv",
            "/issues",
            "/connections/prod",
        ] {
            assert_eq!(
                get(&state, path, bearer.clone()).await,
                StatusCode::OK,
                "{path}"
            );
        }
        assert_eq!(
            get(&state, "/api/v1/me", session.clone()).await,
            StatusCode::OK
        );
        assert!(
            state.inner.writer.try_lock().is_err(),
            "the writer was held all along"
        );
        release_tx.send(()).unwrap();
        thread.join().unwrap();

        // With the writer free, writes go through it as before.
        state
            .write(|s| Ok(s.audit("signed-in", None, "token:ana", None)?))
            .unwrap();
        assert_eq!(get(&state, "/api/v1/me", session).await, StatusCode::OK);
        assert!(
            lock(&state.inner.readers.idle).len() <= IDLE_READERS,
            "idle readers stay few"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_in_memory_store_serves_reads_through_its_one_connection() {
        let config = ServerConfig::new("127.0.0.1:8080".parse().unwrap());
        let state = AppState::new(
            config,
            Store::open_in_memory().unwrap(),
            Arc::new(Unreachable),
        );
        let version = state.read(|s| Ok(s.schema_version()?)).unwrap();
        assert!(version > 0);
        assert!(lock(&state.inner.readers.idle).is_empty());
    }
}
