//! Shared set-up: fixtures from the plugins workspace, one precompiled cache for the whole run,
//! a loopback HTTP server, and a check that the host still serves after a misbehaving plugin.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use keelson_config::{PluginId, PluginLimits, PluginSpec};
use keelson_core::{HostPattern, KeyValue};
use keelson_http::{Egress, EgressSettings, ResolvePin};
use keelson_runtime::{Connection, Plugin, Runtime, RuntimeSettings};

/// The name the test egress pins to 127.0.0.1 (only pinned names may reach loopback).
pub(crate) const LOCAL: &str = "local.test";

pub(crate) fn fixture(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm32-wasip2/release");
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "fixture `{}` is missing; build the plugins first: `cd plugins && cargo build --release --target wasm32-wasip2`",
        path.display()
    );
    path
}

/// One cache folder under the workspace `target/`, shared by every test of the run (and later
/// runs), so each fixture is compiled once.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/keelson-test-cache")
}

pub(crate) fn spec(id: &str, file: &str) -> PluginSpec {
    PluginSpec {
        id: PluginId::new(id).unwrap(),
        path: fixture(file),
        sha256: None,
        allowed_hosts: Vec::new(),
        limits: PluginLimits {
            call_timeout: Duration::from_secs(10),
            ..PluginLimits::default()
        },
        enabled: true,
        // The hostile and well-behaved fixtures are built against 0.1.0 (their tests need the
        // plaintext to try to leak it); the red-team suite turns this off.
        allow_plaintext_secrets: true,
        secret_hosts: std::collections::BTreeMap::new(),
    }
}

pub(crate) fn hosts(patterns: &[&str]) -> Vec<HostPattern> {
    patterns
        .iter()
        .map(|p| HostPattern::parse(p).unwrap())
        .collect()
}

pub(crate) fn runtime() -> Runtime {
    runtime_with(RuntimeSettings::new(cache_dir()))
}

pub(crate) fn runtime_with(settings: RuntimeSettings) -> Runtime {
    let egress = Egress::new(EgressSettings {
        resolve: vec![ResolvePin {
            name: LOCAL.to_owned(),
            addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }],
        ..EgressSettings::default()
    })
    .unwrap();
    Runtime::new(settings, egress).unwrap()
}

/// Loads one plugin. Loads are serialised so that tests running in parallel do not all compile
/// the same component on a cold cache.
pub(crate) async fn load(rt: &Runtime, spec: &PluginSpec) -> keelson_runtime::Result<Plugin> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK
        .get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await;
    rt.load(spec).await
}

pub(crate) fn settings(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: (*k).to_owned(),
            value: (*v).to_owned(),
        })
        .collect()
}

/// A hostile connection with `mode` (and further settings) and the given limits.
pub(crate) async fn hostile(
    rt: &Runtime,
    limits: PluginLimits,
    extra: &[(&str, &str)],
) -> Connection {
    let mut s = spec("hostile", "hostile");
    s.limits = limits;
    s.allowed_hosts = hosts(&["http://*:*", "https://*:*"]);
    let plugin = load(rt, &s).await.unwrap();
    plugin
        .connect("test", settings(extra), Vec::new())
        .await
        .unwrap()
}

pub(crate) fn limits(call_timeout: Duration, memory_mb: u64) -> PluginLimits {
    PluginLimits {
        call_timeout,
        memory_bytes: memory_mb << 20,
        ..PluginLimits::default()
    }
}

/// After a misbehaving plugin: the same runtime loads and runs a well-behaved one.
pub(crate) async fn assert_host_still_serves(rt: &Runtime) {
    let plugin = load(rt, &spec("well-behaved", "well_behaved"))
        .await
        .unwrap();
    let mut conn = plugin
        .connect("after", Vec::new(), Vec::new())
        .await
        .unwrap();
    let account = conn.verify().await.unwrap();
    assert_eq!(account.id, "fixture-account");
}

/// A loopback HTTP/1.1 server: `/ok` answers 200 `hello`, `/redirect` answers 302 towards the
/// metadata address, `/slow` never answers. Every accepted connection is counted.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) accepted: Arc<Mutex<u32>>,
}

impl Server {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                *counter.lock().unwrap() += 1;
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut first = String::new();
                    if reader.read_line(&mut first).is_err() {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let response = match path.as_str() {
                        "/ok" => "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello".to_owned(),
                        "/redirect" => "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/metadata/identity/oauth2/token\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                        "/slow" => {
                            std::thread::sleep(Duration::from_secs(30));
                            return;
                        }
                        _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = stream.write_all(response.as_bytes());
                });
            }
        });
        Self { addr, accepted }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{LOCAL}:{}{path}", self.addr.port())
    }

    pub(crate) fn accepted(&self) -> u32 {
        *self.accepted.lock().unwrap()
    }
}
