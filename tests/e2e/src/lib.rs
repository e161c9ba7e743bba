//! Harness for end-to-end tests: starts the Azure simulator, builds the real runtime with the
//! operator settings a user would write for it (the simulator's CA in `extra_ca_certs`, a
//! `[host.resolve]` pin of its names to loopback), loads the real connector component, and walks
//! everything a connection reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use azure_sim::{Credentials, SimHandle, SimOptions, Simulator};
use keelson_config::{PluginId, PluginLimits, PluginSpec};
use keelson_core::{
    ConnectorError, Finding, HostPattern, Image, KeyValue, Registry, Repository, ScanScope,
};
use keelson_runtime::{Connection, Plugin, Runtime, RuntimeSettings};
use keelson_scan::{PagingPolicy, WalkError, walk};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A plugin component built by `cargo build --release --target wasm32-wasip2` in `plugins/`.
pub fn plugin_component(file: &str) -> PathBuf {
    let path = workspace_root()
        .join("plugins/target/wasm32-wasip2/release")
        .join(file);
    assert!(
        path.is_file(),
        "`{}` is missing: build the plugins first (`cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml`)",
        path.display()
    );
    path
}

/// The precompiled-component cache shared by every test run, so each component compiles once.
pub fn shared_cache_dir() -> PathBuf {
    workspace_root().join("target/keelson-test-cache")
}

/// The simulator, the runtime configured for it and the loaded ACR connector.
pub struct AcrEnv {
    pub sim: SimHandle,
    pub runtime: Runtime,
    pub plugin: Plugin,
}

impl AcrEnv {
    /// Starts a simulator with `options` and loads the connector granted exactly the simulator's
    /// three host patterns.
    pub async fn start(options: SimOptions) -> Self {
        let sim = Simulator::start(options).await.expect("simulator starts");
        let egress = keelson_http::Egress::new(keelson_http::EgressSettings {
            extra_ca_certs_pem: vec![sim.ca_pem().as_bytes().to_vec()],
            resolve: vec![keelson_http::ResolvePin {
                name: format!("*.{}", sim.host_suffix()),
                addrs: vec![sim.addr().ip()],
            }],
            ..keelson_http::EgressSettings::default()
        })
        .expect("egress settings are valid");
        let runtime =
            Runtime::new(RuntimeSettings::new(shared_cache_dir()), egress).expect("runtime starts");
        let spec = PluginSpec {
            id: PluginId::new("azure-container-registry").expect("valid id"),
            path: plugin_component("azure_container_registry.wasm"),
            sha256: None,
            allowed_hosts: sim_host_patterns(&sim),
            limits: PluginLimits::default(),
            enabled: true,
            allow_plaintext_secrets: false,
            secret_hosts: BTreeMap::new(),
        };
        let plugin = runtime.load(&spec).await.expect("the ACR connector loads");
        Self {
            sim,
            runtime,
            plugin,
        }
    }

    /// The connection settings an operator gives for the simulator: the `custom` cloud pointed at
    /// it, everything else as for a real tenant.
    pub fn settings(&self, creds: &Credentials) -> Vec<KeyValue> {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.to_owned(),
            value: v.to_owned(),
        };
        vec![
            kv("tenant_id", &creds.tenant_id),
            kv("client_id", &creds.client_id),
            kv("client_secret", &creds.client_secret),
            kv("subscription_id", &creds.subscription_id),
            kv("cloud", "custom"),
            kv("authority_host", &self.sim.login_url()),
            kv("resource_manager_endpoint", &self.sim.management_url()),
        ]
    }

    /// Connects with `creds` plus extra settings; the client secret may only go to the login host.
    pub async fn connect_with(
        &self,
        creds: &Credentials,
        extra: &[(&str, &str)],
    ) -> Result<Connection, keelson_runtime::Error> {
        let mut settings = self.settings(creds);
        for (k, v) in extra {
            settings.retain(|s| s.key != *k);
            settings.push(KeyValue {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            });
        }
        let secret = keelson_http::BoundSecret {
            name: "client_secret".to_owned(),
            value: creds.client_secret.clone(),
            allowed_hosts: vec![
                HostPattern::parse(&self.sim.login_url()).expect("login url is a host pattern"),
            ],
        };
        self.plugin.connect("e2e", settings, vec![secret]).await
    }

    pub async fn connect(&self, creds: &Credentials) -> Result<Connection, keelson_runtime::Error> {
        self.connect_with(creds, &[]).await
    }
}

/// `https://login.<suffix>:<port>`, `https://management.<suffix>:<port>`, `https://*.azurecr.<suffix>:<port>`.
pub fn sim_host_patterns(sim: &SimHandle) -> Vec<HostPattern> {
    let port = sim.port();
    let suffix = sim.host_suffix();
    [
        format!("https://login.{suffix}:{port}"),
        format!("https://management.{suffix}:{port}"),
        format!("https://*.azurecr.{suffix}:{port}"),
    ]
    .iter()
    .map(|p| HostPattern::parse(p).expect("valid pattern"))
    .collect()
}

/// Everything one connection reported, with the listings that failed. Small tenants only: the
/// product streams; tests compare.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub registries: Vec<Registry>,
    pub repositories: Vec<Repository>,
    pub images: Vec<Image>,
    pub findings: Vec<Finding>,
    /// Listing -> why it failed (`registries`, `repositories of r`, `images of r/x`, `findings`).
    pub failures: BTreeMap<String, String>,
}

impl Snapshot {
    /// The connector error behind a failed listing, if the failure was one.
    pub fn failure(&self, listing: &str) -> Option<&str> {
        self.failures.get(listing).map(String::as_str)
    }
}

fn record(failures: &mut BTreeMap<String, String>, listing: String, err: &WalkError) {
    failures.insert(listing, err.to_string());
}

/// Walks registries, their repositories and images, then the findings, the way a scan does.
pub async fn snapshot(conn: &mut Connection, policy: &PagingPolicy) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut registries = Vec::new();
    if let Err(err) = walk(
        policy,
        async |p| Ok(conn.list_registries(p).await?),
        |items| {
            registries.extend(items);
            Ok(())
        },
    )
    .await
    {
        record(&mut snap.failures, "registries".to_owned(), &err);
    }
    for registry in &registries {
        let mut repositories = Vec::new();
        if let Err(err) = walk(
            policy,
            async |p| Ok(conn.list_repositories(&registry.name, p).await?),
            |items| {
                repositories.extend(items);
                Ok(())
            },
        )
        .await
        {
            record(
                &mut snap.failures,
                format!("repositories of {}", registry.name),
                &err,
            );
        }
        for repository in &repositories {
            let images = &mut snap.images;
            if let Err(err) = walk(
                policy,
                async |p| {
                    Ok(conn
                        .list_images(&registry.name, &repository.name, p)
                        .await?)
                },
                |items| {
                    images.extend(items);
                    Ok(())
                },
            )
            .await
            {
                record(
                    &mut snap.failures,
                    format!("images of {}/{}", registry.name, repository.name),
                    &err,
                );
            }
        }
        snap.repositories.extend(repositories);
    }
    snap.registries = registries;
    let findings = &mut snap.findings;
    if let Err(err) = walk(
        policy,
        async |p| Ok(conn.list_findings(&ScanScope::default(), p).await?),
        |items| {
            findings.extend(items);
            Ok(())
        },
    )
    .await
    {
        record(&mut snap.failures, "findings".to_owned(), &err);
    }
    snap
}

/// The connector error of a failed call, for assertions on typed errors.
pub fn connector_error(err: &keelson_runtime::Error) -> Option<&ConnectorError> {
    match err {
        keelson_runtime::Error::Connector { source, .. } => Some(source),
        _ => None,
    }
}
