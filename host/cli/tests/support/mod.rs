//! Shared pieces of the binary's integration tests: the Azure Container Registry connector and a
//! `plugins.toml` for the demo simulator, and a small HTTPS server (one request per connection,
//! answered by a closure with a status and a JSON body, under a throwaway CA for one host name).

#![allow(dead_code, reason = "each test file uses part of it")]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

pub(crate) mod env;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Answers `(method, path and query, authorization)` with a status and a JSON body.
pub(crate) type Handler = dyn Fn(&str, &str, Option<&str>) -> (u16, String) + Send + Sync;

/// A one-request-per-connection HTTPS server on 127.0.0.1 for the name `host`.
pub(crate) struct JsonServer {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) ca_file: tempfile::NamedTempFile,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JsonServer {
    pub(crate) async fn start(host: &str, handler: Arc<Handler>) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), ca.pem()).unwrap();

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, handler) = (acceptor.clone(), handler.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                    let auth = lines
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                        .map(|(_, v)| v.trim().to_owned());
                    let (status, body) = handler(method, target, auth.as_deref());
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            host: host.to_owned(),
            port,
            ca_file,
            task,
        }
    }

    pub(crate) fn base(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// Runs `keelson plugins test` on `component` against this server.
    pub(crate) fn conformance(
        &self,
        cache_dir: &Path,
        component: &Path,
        settings: &[(&str, String)],
    ) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keelson"));
        cmd.args(["plugins", "test"])
            .arg(component)
            .args(["--against", &self.base()])
            .args(["--resolve", &format!("{}=127.0.0.1", self.host)])
            .arg("--ca-cert")
            .arg(self.ca_file.path())
            .arg("--cache-dir")
            .arg(cache_dir)
            .env_remove("KEELSON_CONFIG");
        for (k, v) in settings {
            cmd.args(["--set", &format!("{k}={v}")]);
        }
        cmd.output().expect("keelson runs")
    }
}

/// The id of the Azure Container Registry connector in the generated configs.
pub(crate) const ACR_PLUGIN: &str = "azure-container-registry";

/// The workspace root.
pub(crate) fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built ACR connector component, as an absolute path.
pub(crate) fn acr_connector() -> std::path::PathBuf {
    let path =
        workspace_root().join("plugins/target/wasm32-wasip2/release/azure_container_registry.wasm");
    assert!(
        path.is_file(),
        "`{}` is missing: build the plugins first (`cargo build --release --target wasm32-wasip2` in `plugins/`)",
        path.display()
    );
    std::path::absolute(path).expect("absolute path")
}

/// Starts the demo simulator with its CA in `dir` and writes `dir/plugins.toml` for it: the ACR
/// connector granted the simulator's hosts, no connection declared, the shared compile cache.
pub(crate) async fn demo_simulator(dir: &Path) -> azure_sim::SimHandle {
    let mut options = azure_sim::SimOptions::new(azure_sim::Scenario::Demo);
    options.ca_out = Some(dir.join("sim-ca.pem"));
    let sim = azure_sim::Simulator::start(options)
        .await
        .expect("simulator starts");
    let port = sim.port();
    let suffix = sim.host_suffix().to_owned();
    let cache = workspace_root().join("target/keelson-test-cache");
    let config = format!(
        r#"[host]
database = "state/keelson.db"
cache_dir = {cache:?}
extra_ca_certs = ["sim-ca.pem"]

[host.resolve]
"*.{suffix}" = "127.0.0.1"

[[plugin]]
id = "{ACR_PLUGIN}"
path = {path:?}
allowed_hosts = ["https://login.{suffix}:{port}", "https://management.{suffix}:{port}", "https://*.azurecr.{suffix}:{port}"]
"#,
        cache = cache.display().to_string(),
        path = acr_connector().display().to_string(),
    );
    std::fs::write(dir.join("plugins.toml"), config).expect("write plugins.toml");
    sim
}

/// A running `keelson serve` (on a free loopback port, its log in `serve.log`); killed on drop.
pub(crate) struct Served {
    pub(crate) child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `keelson serve` in `dir` and waits for the address it serves on.
pub(crate) fn serve(dir: &Path) -> Served {
    use std::io::BufRead as _;
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .current_dir(dir)
        .args(["--log", "info", "serve", "--bind", "127.0.0.1:0"])
        .env_remove("KEELSON_CONFIG")
        .env_remove("KEELSON_MASTER_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("keelson serve starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("serving on ")
        .unwrap_or_else(|| panic!("unexpected first line `{line}`"))
        .to_owned();
    Served { child, base }
}

/// `GET path` on a [`Served`] with a bearer token, over a plain loopback connection: the status
/// and the body.
pub(crate) fn http_get(served: &Served, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let authority = served.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).expect("connects to keelson serve");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}
