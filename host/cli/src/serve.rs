//! `keelson serve` (the HTTP API and web page) and `keelson token` (the API tokens it accepts).
//!
//! The server reaches plugins through [`CliBackend`], which runs the very functions the
//! subcommands run: `keelson connect`'s checks, `keelson verify`, `keelson locations` and
//! `keelson scan`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use keelson_config::Config;
use keelson_core::{Account, ConnectorInfo};
use keelson_scan::{PagingPolicy, Progress, ScanSummary};
use keelson_server::{
    AppState, Backend, BackendError, BoxFuture, ConnectRequest, LocationReport, PublicUrl,
    ServerConfig,
};
use keelson_store::{RunTrigger, SelectionRule, Store};
use tokio::sync::Mutex;

use crate::app::{ACTOR, App};
use crate::connections::{check_new_connection, connect_and_save, location_report, say};

/// `keelson serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on. Loopback by default; the page answers only to this address
    /// (and `localhost:PORT` on loopback) in the `Host` header.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Also answer to this `Host` (`NAME:PORT`, the name a proxy or the users reach it by);
    /// repeatable. Anything else is refused, so a rebinding DNS name reaches nothing.
    #[arg(long, value_name = "HOST:PORT")]
    allowed_host: Vec<String>,
    /// The URL users reach the page by, when a TLS proxy serves it (`https://keelson.example.com`):
    /// its host is answered to, and with `https://` the session cookie is `Secure` and changes
    /// are accepted only from that origin.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
}

/// `keelson token`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an API token for the web page and the API; it is printed once and stored hashed.
    Create {
        /// `viewer` (read), `operator` (also scan and suppress) or `admin` (also configure).
        #[arg(long)]
        role: String,
        /// A name for the token, shown as the actor in the event log (default: the role and four random hex digits, e.g. `viewer-3fa2`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (names and roles, never values).
    List,
    /// Revoke a token by name.
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub(crate) fn token_cmd(app: &mut App, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { role, name } => {
            let name = name
                .unwrap_or_else(|| format!("{role}-{}", hex::encode(rand::random::<[u8; 2]>())));
            let token = keelson_server::new_token();
            let record =
                app.store
                    .create_token(&name, &role, &keelson_server::token_hash(&token), ACTOR)?;
            say(&token);
            note(&format!(
                "token `{}` ({}) created; it is shown only this once",
                record.name, record.role
            ));
        }
        TokenCommand::List => {
            for t in app.store.tokens()? {
                let state = t
                    .revoked_at
                    .map_or_else(|| "active".to_owned(), |at| format!("revoked {at}"));
                say(&format!(
                    "{}\t{}\t{}\t{state}",
                    t.name, t.role, t.created_at
                ));
            }
        }
        TokenCommand::Revoke { name } => {
            if !app.store.revoke_token(&name, ACTOR)? {
                anyhow::bail!("no active token named `{name}`");
            }
            say(&format!("token `{name}` revoked"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stderr, reason = "status for the operator")]
fn note(line: &str) {
    eprintln!("{line}");
}

pub(crate) async fn serve_cmd(
    app: App,
    master_key: Option<String>,
    args: ServeArgs,
) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on `{}`", args.bind))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        note(&format!(
            "warning: listening on `{addr}`, which is not loopback; put TLS in front of it"
        ));
    }
    let mut server = ServerConfig::new(addr);
    server.allowed_hosts.extend(args.allowed_host);
    if let Some(url) = &args.public_url {
        server = server.with_public_url(PublicUrl::parse(url).context("invalid `--public-url`")?);
    }
    let store = Store::open(&app.config.host.database)?;
    let backend = Arc::new(CliBackend {
        inner: Arc::new(Inner {
            config: app.config.clone(),
            master_key,
            app: Mutex::new(app),
            plugins: Mutex::new(None),
        }),
    });
    // Describe the plugins now, so no viewer's page is what first loads one.
    if let Err(err) = backend.plugins().await {
        tracing::warn!(error = ?err, "describing the plugins failed");
    }
    let state = AppState::new(server, store, backend);
    say(&format!("serving on http://{addr}"));
    keelson_server::serve(state, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// The server's way to plugins: one [`App`] for short calls, a fresh one per scan so a long
/// scan never blocks verify or the locations picker.
struct CliBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    master_key: Option<String>,
    app: Mutex<App>,
    plugins: Mutex<Option<Vec<ConnectorInfo>>>,
}

fn failed(err: &anyhow::Error) -> BackendError {
    BackendError::Failed(format!("{err:#}"))
}

/// `NotFound` unless connection `name` exists.
fn known(app: &App, name: &str) -> Result<(), BackendError> {
    match app.store.connection(name) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(BackendError::NotFound(format!(
            "no connection named `{name}`"
        ))),
        Err(e) => Err(BackendError::Failed(e.to_string())),
    }
}

/// Runs `f` on a blocking thread that drives it on the server's runtime. The plugin calls hold
/// borrows across awaits that the compiler cannot prove `Send` for every lifetime, so they are
/// driven where `Send` is not needed.
fn off_thread<T, F, Fut>(inner: &Arc<Inner>, f: F) -> BoxFuture<'static, Result<T, BackendError>>
where
    T: Send + 'static,
    F: FnOnce(Arc<Inner>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let inner = inner.clone();
    let handle = tokio::runtime::Handle::current();
    Box::pin(async move {
        tokio::task::spawn_blocking(move || handle.block_on(f(inner)))
            .await
            .unwrap_or_else(|e| Err(BackendError::Failed(format!("the task failed: {e}"))))
    })
}

impl Backend for CliBackend {
    fn plugins(&self) -> BoxFuture<'_, Result<Vec<ConnectorInfo>, BackendError>> {
        off_thread(&self.inner, async |inner: Arc<Inner>| {
            let mut cache = inner.plugins.lock().await;
            if let Some(list) = cache.as_ref() {
                return Ok(list.clone());
            }
            let mut app = inner.app.lock().await;
            let mut list = Vec::new();
            for spec in inner.config.plugins.iter().filter(|p| p.enabled) {
                match app.load_plugin(spec.id.as_str()).await {
                    Ok(plugin) => list.push(plugin.describe().clone()),
                    Err(err) => {
                        tracing::warn!(plugin = %spec.id, error = %format!("{err:#}"), "plugin not loadable");
                    }
                }
            }
            *cache = Some(list.clone());
            Ok(list)
        })
    }

    fn connect(
        &self,
        request: ConnectRequest,
        actor: String,
    ) -> BoxFuture<'_, Result<Account, BackendError>> {
        off_thread(&self.inner, async move |inner: Arc<Inner>| {
            let mut app = inner.app.lock().await;
            let secret_keys: BTreeSet<String> = request.secrets.keys().cloned().collect();
            let plugin = check_new_connection(
                &mut app,
                &request.plugin,
                &request.name,
                &request.settings,
                &secret_keys,
            )
            .await
            .map_err(|e| BackendError::Invalid(format!("{e:#}")))?;
            connect_and_save(
                &mut app,
                &plugin,
                &request.name,
                request.settings,
                request.secrets,
                &actor,
            )
            .await
            .map_err(|e| failed(&e))
        })
    }

    fn verify(&self, name: String) -> BoxFuture<'_, Result<Account, BackendError>> {
        off_thread(&self.inner, async move |inner: Arc<Inner>| {
            let mut app = inner.app.lock().await;
            known(&app, &name)?;
            let mut conn = app.open_connection(&name).await.map_err(|e| failed(&e))?;
            conn.verify()
                .await
                .map_err(|e| BackendError::Failed(e.to_string()))
        })
    }

    fn locations(&self, name: String) -> BoxFuture<'_, Result<LocationReport, BackendError>> {
        off_thread(&self.inner, async move |inner: Arc<Inner>| {
            let mut app = inner.app.lock().await;
            known(&app, &name)?;
            location_report(&mut app, &name)
                .await
                .map_err(|e| failed(&e))
        })
    }

    fn declared_in(&self, name: &str) -> Option<String> {
        self.inner
            .config
            .connection(name)
            .map(|_| self.inner.config.source.display().to_string())
    }

    fn declared_rules(&self, name: &str) -> Vec<SelectionRule> {
        crate::app::declared_rules(&self.inner.config, name)
    }

    fn scan(
        &self,
        name: String,
        accept_drop: bool,
        mut progress: Box<dyn Progress>,
        cancel: Arc<AtomicBool>,
    ) -> BoxFuture<'_, Result<ScanSummary, BackendError>> {
        off_thread(&self.inner, async move |inner: Arc<Inner>| {
            let mut app = App::open(inner.config.clone(), inner.master_key.as_deref())
                .map_err(|e| failed(&e))?;
            known(&app, &name)?;
            crate::scan::scan_with(
                &mut app,
                &name,
                RunTrigger::Manual,
                &PagingPolicy::default(),
                accept_drop,
                &cancel,
                progress.as_mut(),
            )
            .await
            .map_err(|e| {
                let text = format!("{e:#}");
                if text.contains("already running") {
                    BackendError::Conflict(text)
                } else {
                    failed(&e)
                }
            })
        })
    }
}
