//! A faithful Azure simulator for tests, the demo and benchmarks.
//!
//! It serves, over real TLS on one loopback port, the Azure APIs the ACR connector uses, routed by
//! host name:
//!
//! - `login.<suffix>`: Microsoft Entra ID client credentials (module `entra`),
//! - `management.<suffix>`: ARM subscriptions and registries (module `arm`) and Resource Graph
//!   (module `arg`), plus `/_sim/...` control routes (module `control`),
//! - `<registry>.azurecr.<suffix>`: each registry's data plane (module `acr`).
//!
//! The tenant behind it ([`TenantSpec`]) is generated deterministically from a seed and lazily,
//! so a 200k-image tenant fits in a few megabytes. [`SimHandle::ground_truth`] says what a correct
//! connector must report; the mutation calls change the tenant between scans; [`FaultSpec`]
//! injects faults deterministically per seed, and its named [`Anomaly`] scenarios answer the way
//! real Azure answers badly (with [`AnomalyTruth`] saying what a correct client concludes);
//! [`SimHandle::stats`] counts requests.
//!
//! ```no_run
//! # async fn demo() -> azure_sim::Result<()> {
//! use azure_sim::{Scenario, SimOptions, Simulator};
//! let sim = Simulator::start(SimOptions::new(Scenario::Demo)).await?;
//! let creds = sim.credentials();
//! println!("{} {}", sim.login_url(), creds.tenant_id);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

// Handlers return a whole response as their error; it is built once per request, boxing buys nothing.
#![allow(clippy::result_large_err)]

mod acr;
mod anomaly;
mod arg;
mod arm;
mod control;
mod entra;
mod faults;
mod server;
mod stats;
mod tenant;
mod throttle;
mod tls;
mod tokens;
mod truth;
mod util;
mod vulns;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use anomaly::Anomaly;
pub use faults::FaultSpec;
pub use stats::{StatEntry, StatsSnapshot};
pub use tenant::{
    DataSet, FindingSpec, ImageSpec, RegistrySpec, RepoSpec, Scenario, Sku, TenantSpec,
};
pub use throttle::Limits;
pub use truth::{
    AnomalyTruth, CoveredRegistry, GroundTruth, RunStatus, TruthCounts, TruthFinding, TruthImage,
    TruthRegistry, UncoveredRegistry,
};
pub use vulns::Severity;

use server::{Principal, Sim};
use tenant::Tenant;
use util::seeded_guid;

/// Errors of the simulator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown scenario `{0}` (expected demo, small, hostile or large)")]
    UnknownScenario(String),
    #[error("unknown data set `{0}` (expected individual, mdvm or qualys)")]
    UnknownDataSet(String),
    #[error("unknown anomaly `{0}` (expected one of {names})", names = anomaly::NAMES)]
    UnknownAnomaly(String),
    #[error("invalid tenant spec: {0}")]
    InvalidSpec(String),
    #[error("unknown registry `{0}`")]
    UnknownRegistry(String),
    #[error("unknown repository `{0}`")]
    UnknownRepository(String),
    #[error("unknown digest `{0}`")]
    UnknownDigest(String),
    #[error("unknown finding `{0}`")]
    UnknownFinding(String),
    #[error("tls setup failed: {0}")]
    Tls(String),
    #[error("cannot listen on `{addr}`")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the CA certificate to `{}`", path.display())]
    WriteCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to start a simulator.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// What the tenant contains.
    pub tenant: TenantSpec,
    /// Seed for the tenant, ids, credentials and fault decisions.
    pub seed: u64,
    /// Faults active from the start (change them later with [`SimHandle::set_faults`]).
    pub faults: FaultSpec,
    /// `expires_in` of Entra access tokens.
    pub token_lifetime: Duration,
    /// Enforce ARM, Resource Graph and ACR throttling.
    pub throttling: bool,
    /// The limits enforced when `throttling` is on.
    pub limits: Limits,
    /// Host suffix: `login.<suffix>`, `management.<suffix>`, `<name>.azurecr.<suffix>`.
    pub host_suffix: String,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where to write the CA certificate (PEM).
    pub ca_out: Option<PathBuf>,
}

impl SimOptions {
    /// The options of a named scenario with seed 1 and any free port.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            tenant: TenantSpec::for_scenario(scenario),
            seed: 1,
            faults: if scenario == Scenario::Hostile {
                FaultSpec::hostile()
            } else {
                FaultSpec::default()
            },
            token_lifetime: Duration::from_secs(3599),
            throttling: true,
            limits: Limits::default(),
            host_suffix: "sim.localhost".to_owned(),
            port: 0,
            ca_out: None,
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        Self::new(Scenario::Demo)
    }
}

/// Client credentials for the simulated tenant. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription_id: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("subscription_id", &self.subscription_id)
            .finish()
    }
}

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Binds, makes the CA, builds the tenant and starts serving.
    pub async fn start(opts: SimOptions) -> Result<SimHandle> {
        let addr = format!("127.0.0.1:{}", opts.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?
            .port();
        let suffix = opts.host_suffix.trim_matches('.').to_ascii_lowercase();
        let tls = tls::make(&suffix)?;
        if let Some(path) = &opts.ca_out {
            std::fs::write(path, &tls.ca_pem).map_err(|source| Error::WriteCa {
                path: path.clone(),
                source,
            })?;
        }
        let tenant = Tenant::new(&opts.tenant, opts.seed, |name| {
            format!("{name}.azurecr.{suffix}:{port}")
        })?;
        let seed = opts.seed;
        let principal = |label: &str, secret_expired: bool, has_role: bool| Principal {
            client_id: seeded_guid(seed, label),
            secret: client_secret(seed, label),
            object_id: seeded_guid(seed, &format!("{label}-object")),
            secret_expired,
            has_role,
        };
        let sim = Arc::new(Sim {
            tenant: Arc::new(tenant),
            suffix,
            port,
            principals: vec![
                principal("client", false, true),
                principal("client-expired", true, true),
                principal("client-norole", false, false),
            ],
            faults: RwLock::new(opts.faults),
            fault_state: faults::FaultState::default(),
            stats: stats::Stats::default(),
            throttles: throttle::Throttles::default(),
            limits: opts.limits,
            throttling: opts.throttling,
            token_lifetime: opts.token_lifetime,
            signer: tokens::Signer::new(seed),
            arg_totals: Mutex::default(),
        });
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(
            listener,
            TlsAcceptor::from(tls.server_config),
            sim.clone(),
            rx,
        ));
        Ok(SimHandle {
            sim,
            ca_pem: tls.ca_pem,
            ca_path: opts.ca_out,
            shutdown: tx,
            task,
        })
    }
}

fn client_secret(seed: u64, label: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};
    let d = Sha256::new()
        .chain_update(b"azure-sim client secret")
        .chain_update(seed.to_le_bytes())
        .chain_update(label.as_bytes())
        .finalize();
    format!(
        "sim~{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..24])
    )
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    sim: Arc<Sim>,
    ca_pem: String,
    ca_path: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.sim.port
    }

    /// `127.0.0.1:<port>`: where every simulated host name must resolve.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sim.port))
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA was written, if [`SimOptions::ca_out`] was set.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// The host suffix (`sim.localhost` by default).
    pub fn host_suffix(&self) -> &str {
        &self.sim.suffix
    }

    /// `https://login.<suffix>:<port>`: the Entra authority host.
    pub fn login_url(&self) -> String {
        self.sim.login_url()
    }

    /// `https://management.<suffix>:<port>`: the ARM and Resource Graph endpoint.
    pub fn management_url(&self) -> String {
        self.sim.management_url()
    }

    /// The host names clients connect to (for DNS pinning in tests).
    pub fn host_names(&self) -> Vec<String> {
        let s = &self.sim.suffix;
        let mut names = vec![format!("login.{s}"), format!("management.{s}")];
        names.extend(
            self.sim
                .tenant
                .registries
                .iter()
                .map(|r| format!("{}.azurecr.{s}", r.spec.name)),
        );
        names
    }

    /// The login server of a registry (`<name>.azurecr.<suffix>:<port>`).
    pub fn login_server(&self, registry: &str) -> Option<String> {
        self.sim
            .tenant
            .registry_by_name(registry)
            .map(|i| self.sim.tenant.registries[i].login_server.clone())
    }

    fn creds(&self, label: &str) -> Credentials {
        let p = self
            .sim
            .principals
            .iter()
            .find(|p| p.client_id == seeded_guid(self.sim.tenant.seed, label))
            .expect("principals are created at start");
        Credentials {
            tenant_id: self.sim.tenant.tenant_id.clone(),
            client_id: p.client_id.clone(),
            client_secret: p.secret.clone(),
            subscription_id: self.sim.tenant.subscriptions[0].id.clone(),
        }
    }

    /// Valid credentials: Reader on every subscription, pull on every registry.
    pub fn credentials(&self) -> Credentials {
        self.creds("client")
    }

    /// The valid client against a tenant that does not exist (AADSTS90002).
    pub fn unknown_tenant(&self) -> Credentials {
        Credentials {
            tenant_id: seeded_guid(self.sim.tenant.seed ^ 0xdead, "other-tenant"),
            ..self.credentials()
        }
    }

    /// A client id the tenant does not know (AADSTS700016).
    pub fn unknown_client(&self) -> Credentials {
        Credentials {
            client_id: seeded_guid(self.sim.tenant.seed ^ 0xbeef, "other-client"),
            ..self.credentials()
        }
    }

    /// The valid client with a wrong secret (AADSTS7000215).
    pub fn wrong_secret(&self) -> Credentials {
        Credentials {
            client_secret: "sim~not-the-secret".to_owned(),
            ..self.credentials()
        }
    }

    /// A client whose only secret expired (AADSTS7000222).
    pub fn expired_secret_client(&self) -> Credentials {
        self.creds("client-expired")
    }

    /// A client that authenticates but has no role: ARM 403, no ARG rows, data plane 403.
    pub fn no_role_client(&self) -> Credentials {
        self.creds("client-norole")
    }

    /// Request counts by endpoint and status.
    pub fn stats(&self) -> StatsSnapshot {
        self.sim.stats.snapshot()
    }

    /// Requests per registry data plane (by registry name) since the last reset, whatever their
    /// outcome: each registry has its own ReadOps budget, so throttling floors are per registry.
    pub fn registry_requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.sim.stats.registries()
    }

    /// Zeroes the request counters.
    pub fn reset_stats(&self) {
        self.sim.stats.reset();
    }

    /// What a correct connector must report for the tenant as it is now.
    pub fn ground_truth(&self) -> GroundTruth {
        GroundTruth::new(self.sim.tenant.clone(), &self.sim.faults())
    }

    /// The active faults.
    pub fn faults(&self) -> FaultSpec {
        self.sim.faults()
    }

    /// Replaces the active faults.
    pub fn set_faults(&self, faults: FaultSpec) {
        self.sim.set_faults(faults);
    }

    /// Deletes one image.
    pub fn remove_image(&self, registry: &str, repository: &str, digest: &str) -> Result<()> {
        self.sim.tenant.remove_image(registry, repository, digest)
    }

    /// Deletes a deterministic share of all images; returns how many.
    pub fn remove_images(&self, share: f64) -> usize {
        self.sim.tenant.remove_share(share)
    }

    /// Re-pushes one image under the same tags (new digest, new findings); returns the digest.
    pub fn repush_image(&self, registry: &str, repository: &str, digest: &str) -> Result<String> {
        self.sim.tenant.repush_image(registry, repository, digest)
    }

    /// Re-pushes a deterministic share of all images; returns how many.
    pub fn repush_images(&self, share: f64) -> usize {
        self.sim.tenant.repush_share(share)
    }

    /// Pushes new images to an existing repository; returns their digests.
    pub fn push_images(&self, registry: &str, repository: &str, count: u32) -> Result<Vec<String>> {
        self.sim.tenant.push_images(registry, repository, count)
    }

    /// Fixes one open finding.
    pub fn fix_finding(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        vulnerability_id: &str,
        package: &str,
    ) -> Result<()> {
        self.sim
            .tenant
            .fix_finding(registry, repository, digest, vulnerability_id, package)
    }

    /// Fixes a deterministic share of the open findings; returns how many.
    pub fn fix_findings(&self, share: f64) -> usize {
        self.sim.tenant.fix_share(share)
    }

    /// Generates every Resource Graph row of the tenant in-process, `page_size` rows per page,
    /// without HTTP; returns `(rows, JSON bytes)`. For measuring generation cost.
    pub fn generate_all_rows(&self, page_size: usize) -> (u64, u64) {
        arg::generate_all(&self.sim.tenant, page_size.max(1), |_, _| {})
    }

    /// The Keelson `plugins.toml` snippet pointing the ACR connector at this simulator. The
    /// secret is referenced as `env:KEELSON_SIM_CLIENT_SECRET`, never included.
    pub fn config_snippet(&self) -> String {
        let c = self.credentials();
        let port = self.sim.port;
        let s = &self.sim.suffix;
        let ca = self
            .ca_path
            .as_ref()
            .map_or_else(|| "<ca path>".to_owned(), |p| p.display().to_string());
        let q = toml_quote;
        format!(
            "[host]\nextra_ca_certs = [{ca}]\n\n[host.resolve]\n{pin} = \"127.0.0.1\"\n\n[[plugin]]\nid = \"azure-container-registry\"\npath = \"plugins/target/wasm32-wasip2/release/azure_container_registry.wasm\"\nallowed_hosts = [{login}, {mgmt}, {acr}]\n\n[[connection]]\nname = \"sim\"\nplugin = \"azure-container-registry\"\nsettings = {{ tenant_id = {tid}, client_id = {cid}, subscription_id = {sid}, cloud = \"custom\", authority_host = {login}, resource_manager_endpoint = {mgmt} }}\nsecrets = {{ client_secret = \"env:KEELSON_SIM_CLIENT_SECRET\" }}\n",
            ca = q(&ca),
            pin = q(&format!("*.{s}")),
            login = q(&self.login_url()),
            mgmt = q(&self.management_url()),
            acr = q(&format!("https://*.azurecr.{s}:{port}")),
            tid = q(&c.tenant_id),
            cid = q(&c.client_id),
            sid = q(&c.subscription_id),
        )
    }

    /// Stops accepting, lets open connections finish, and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// A TOML basic string.
fn toml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
