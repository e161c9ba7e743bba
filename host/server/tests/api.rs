//! The server over real loopback HTTP with a seeded store and a plugin stand-in whose every
//! string is hostile: roles (a viewer changes nothing), the `Host` check (T39), Origin and CSRF,
//! escaping, the OpenAPI file against the routes, exports (SARIF against the 2.1.0 schema, CSV
//! formula escaping), paging under concurrent ingest, runs with their coverage, accepting a held
//! run, scans with the drop guard pre-approved or not, and the queue's word on how current each
//! connection's part of it is (API field and page banners).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read as _, Write as IoWrite};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use keelson_core::{
    Account, ConnectorInfo, Exploitability, Finding, FixStatus, ImageRef, KeyValue, Package,
    Reference, ScanScope, SettingSpec, Severity,
};
use keelson_scan::{Progress, ScanSummary};
use keelson_server::{
    API_ROUTES, AppState, Backend, BackendError, BoxFuture, ConnectRequest, LocationReport,
    RegistryLocation, RepositoryLocation, ServerConfig,
};
use keelson_store::{
    ConnectionSpec, Coverage, EnrichCounts, Keyring, MasterKey, RegistryCoverage, ResolveGuard,
    RunId, RunInfo, RunOutcome, RunStatus, RunTrigger, SelectionRule, Store,
};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

const TOOL: &str = "Azure Container Registry";
const XSS: &str = "<script>alert('x')</script>";
const IMG: &str = "<img src=x onerror=alert(1)>";
const REGISTRY: &str = "contoso.azurecr.io";

/// A plugin stand-in that says hostile things everywhere a plugin may say something. Its scans
/// read the one registry completely and find nothing: a total drop, which the guard holds
/// unless the scan pre-approved it.
struct Hostile {
    db: std::path::PathBuf,
    /// How many times the locations were listed live (a plugin call).
    live: Arc<AtomicUsize>,
}

fn info() -> ConnectorInfo {
    ConnectorInfo {
        id: "hostile".into(),
        display_name: format!("Hostile {XSS}"),
        version: "1.0.0\"><u>".into(),
        source_tool: format!("Tool {IMG}"),
        settings: vec![
            SettingSpec {
                key: "tenant\"><script>".into(),
                label: format!("Tenant {XSS}"),
                help: format!("help {IMG}"),
                secret: false,
                required: true,
                default_value: Some("\"><script>alert(2)</script>".into()),
                choices: vec![],
                only_when: None,
                secret_hosts: Vec::new(),
            },
            SettingSpec {
                key: "mode".into(),
                label: "Mode".into(),
                help: String::new(),
                secret: false,
                required: false,
                default_value: None,
                choices: vec![format!("a{XSS}"), "b".into()],
                only_when: Some(KeyValue {
                    key: "x\"".into(),
                    value: "<y>".into(),
                }),
                secret_hosts: Vec::new(),
            },
            SettingSpec {
                key: "client_secret".into(),
                label: "Secret".into(),
                help: String::new(),
                secret: true,
                required: true,
                default_value: None,
                choices: vec![],
                only_when: None,
                secret_hosts: Vec::new(),
            },
        ],
        instructions: format!(
            "# Setup {XSS}\n\n{IMG}\n\n- [click](javascript:alert(1))\n- `{XSS}`\n"
        ),
        suggested_hosts: vec![],
    }
}

impl Backend for Hostile {
    fn plugins(&self) -> BoxFuture<'_, Result<Vec<ConnectorInfo>, BackendError>> {
        Box::pin(async { Ok(vec![info()]) })
    }
    fn connect(
        &self,
        request: ConnectRequest,
        _actor: String,
    ) -> BoxFuture<'_, Result<Account, BackendError>> {
        Box::pin(async move {
            let secret = request
                .secrets
                .get("client_secret")
                .map(|s| s.expose_secret().to_owned());
            if secret.as_deref() == Some("good") {
                Ok(Account {
                    id: "acct".into(),
                    display_name: XSS.into(),
                    details: vec![],
                })
            } else {
                Err(BackendError::Failed(format!("denied {XSS}")))
            }
        })
    }
    fn declared_in(&self, name: &str) -> Option<String> {
        (name == "declared").then(|| "plugins.toml".to_owned())
    }
    fn declared_rules(&self, _name: &str) -> Vec<SelectionRule> {
        Vec::new()
    }
    fn verify(&self, _name: String) -> BoxFuture<'_, Result<Account, BackendError>> {
        Box::pin(async { Err(BackendError::Failed(format!("cannot reach {IMG}"))) })
    }
    fn locations(&self, _name: String) -> BoxFuture<'_, Result<LocationReport, BackendError>> {
        self.live.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(LocationReport {
                rules: vec![],
                registries: vec![RegistryLocation {
                    name: format!("reg{XSS}"),
                    state: "partly".into(),
                    repositories: vec![RepositoryLocation {
                        name: format!("repo\"{IMG}"),
                        selected: true,
                    }],
                    error: Some(format!("oops {XSS}")),
                    last_seen: None,
                }],
            })
        })
    }
    fn scan(
        &self,
        name: String,
        accept_drop: bool,
        mut progress: Box<dyn Progress>,
        _cancel: Arc<AtomicBool>,
    ) -> BoxFuture<'_, Result<ScanSummary, BackendError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let failed = |e: keelson_store::Error| BackendError::Failed(e.to_string());
            let mut store = Store::open(&db).map_err(failed)?;
            let run = store
                .begin_run(&name, RunTrigger::Api, &ScanScope::default())
                .map_err(failed)?;
            progress.started(run);
            let coverage = Coverage::complete(&[REGISTRY]);
            let guard = ResolveGuard {
                accept_drop,
                ..ResolveGuard::default()
            };
            let info = store
                .finish_run(run, &RunOutcome::Complete, &coverage, &guard, &|_, _| true)
                .map_err(failed)?;
            Ok(ScanSummary {
                run: info,
                registries_total: 1,
                registries_selected: 1,
                covered: vec![REGISTRY.into()],
                uncovered: vec![],
                coverage,
                repositories: 0,
                images: 0,
                findings_read: 0,
                findings_kept: 0,
                requests: 0,
                images_described: 0,
                enrichment: EnrichCounts::default(),
                elapsed: Duration::ZERO,
                store_busy: Duration::ZERO,
            })
        })
    }
}

fn finding(repository: &str, digest: &str, vuln: &str, severity: Severity) -> Finding {
    Finding {
        image: ImageRef {
            registry: REGISTRY.into(),
            repository: repository.into(),
            digest: digest.into(),
        },
        vulnerability_id: vuln.into(),
        source_id: None,
        title: format!("{vuln} {XSS}"),
        description: format!("desc {IMG}"),
        severity,
        cvss_score: Some(9.8),
        cvss_vector: Some("CVSS:3.1/AV:N/AC:L".into()),
        package: Some(Package {
            name: "=cmd|' /C calc'!A0".into(),
            version: Some("1.0<u>".into()),
            fixed_version: Some("1.1".into()),
            fix_status: FixStatus::FixAvailable,
            kind: None,
            ecosystem: None,
        }),
        remediation: Some(format!("upgrade {XSS}")),
        evidence: vec![IMG.into()],
        references: vec![
            Reference {
                title: format!("ref {XSS}"),
                url: "javascript:alert(1)".into(),
            },
            Reference {
                title: "nvd".into(),
                url: "https://nvd.example/\"onmouseover=\"x".into(),
            },
        ],
        published_at: None,
        modified_at: None,
        exploitability: Exploitability::default(),
        weaknesses: vec![],
        raw: "{}".into(),
    }
}

fn keys() -> Keyring {
    Keyring::new(MasterKey::from_bytes("k", &[7u8; 32]).unwrap())
}

fn ingest(store: &mut Store, findings: &[Finding]) {
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store.ingest_findings(run, TOOL, findings).unwrap();
    store
        .finish_run(
            run,
            &RunOutcome::Partial {
                reason: "test".into(),
            },
            &Coverage::default(),
            &ResolveGuard::default(),
            &|_, _| true,
        )
        .unwrap();
}

struct Server {
    addr: SocketAddr,
    db: std::path::PathBuf,
    /// The backend's count of live listings.
    live: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    admin: String,
    operator: String,
    viewer: String,
}

async fn start() -> Server {
    start_with(|c| c).await
}

/// [`start`] with the server's configuration changed by `configure`.
async fn start_with(configure: impl FnOnce(ServerConfig) -> ServerConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keelson.db");
    let mut store = Store::open(&db).unwrap();
    let mut spec = ConnectionSpec::new("prod", "hostile");
    spec.settings.insert("tenant".into(), XSS.into());
    store.save_connection(&spec, &keys(), "test").unwrap();
    let findings: Vec<Finding> = (0..12)
        .map(|i| {
            let sev = [
                Severity::Critical,
                Severity::High,
                Severity::Medium,
                Severity::Low,
            ][i % 4];
            finding(
                ["web", "api", "jobs"][i % 3],
                &format!("sha256:{i:064x}"),
                &format!("CVE-2024-{:04}", 1000 + i),
                sev,
            )
        })
        .collect();
    ingest(&mut store, &findings);
    let mut tokens = Vec::new();
    for role in ["admin", "operator", "viewer"] {
        let token = keelson_server::new_token();
        store
            .create_token(role, role, &keelson_server::token_hash(&token), "test")
            .unwrap();
        tokens.push(token);
    }
    let (addr, live) = serve_with(&db, configure).await;
    Server {
        addr,
        db,
        live,
        _dir: dir,
        admin: tokens[0].clone(),
        operator: tokens[1].clone(),
        viewer: tokens[2].clone(),
    }
}

/// Starts a server on a fresh port over the store at `db`: a new process as far as the server's
/// state goes.
async fn serve_db(db: &std::path::Path) -> SocketAddr {
    serve_with(db, |c| c).await.0
}

/// [`serve_db`] with the configuration changed by `configure`; also the backend's count of
/// live listings.
async fn serve_with(
    db: &std::path::Path,
    configure: impl FnOnce(ServerConfig) -> ServerConfig,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_store = Store::open(db).unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let backend = Hostile {
        db: db.to_owned(),
        live: live.clone(),
    };
    let config = configure(ServerConfig::new(addr));
    let state = AppState::new(config, server_store, Arc::new(backend));
    tokio::spawn(keelson_server::serve(
        state,
        listener,
        std::future::pending(),
    ));
    (addr, live)
}

/// A response: status, headers (lowercase names) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// One HTTP/1.1 request with exactly the headers given (plus Host unless given, and
/// Content-Length), read to the end. Runs on a blocking thread.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    send_from(None, addr, method, path, headers, body).await
}

/// [`send`] from the loopback address `from` (another client, as far as the server can tell).
async fn send_from(
    from: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        let _ = write!(request, "Host: {addr}\r\n");
    }
    for (k, v) in headers {
        let _ = write!(request, "{k}: {v}\r\n");
    }
    let _ = write!(request, "Content-Length: {}\r\n\r\n{body}", body.len());
    let mut stream = match from {
        None => TcpStream::connect(addr).unwrap(),
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
            let stream = socket.connect(addr).await.unwrap().into_std().unwrap();
            stream.set_nonblocking(false).unwrap();
            stream
        }
    };
    tokio::task::spawn_blocking(move || {
        IoWrite::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("a complete response");
        let mut lines = head.lines();
        let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        Reply {
            status,
            headers,
            body,
        }
    })
    .await
    .unwrap()
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        text = &rest[n + 2..];
    }
    out
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Signs in through the API; returns the cookie pair and the CSRF token.
async fn session(s: &Server, token: &str) -> (String, String) {
    let origin = format!("http://{}", s.addr);
    let reply = send(
        s.addr,
        "POST",
        "/api/v1/session",
        &[("Origin", &origin), ("Content-Type", "application/json")],
        &json!({ "token": token }).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.header("set-cookie").unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, reply.json()["csrf"].as_str().unwrap().to_owned())
}

fn first_issue_id(s: &Server) -> i64 {
    let store = Store::open(&s.db).unwrap();
    store
        .issues(&keelson_store::IssueFilter::default())
        .unwrap()[0]
        .id
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused() {
    let s = start().await;
    let ok = send(s.addr, "GET", "/api/v1/health", &[], "").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let port = s.addr.port();
    let localhost = format!("localhost:{port}");
    let ok = send(s.addr, "GET", "/api/v1/health", &[("Host", &localhost)], "").await;
    assert_eq!(ok.status, 200);
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
        String::new(),
    ] {
        let auth = bearer(&s.admin);
        let reply = send(
            s.addr,
            "GET",
            "/api/v1/issues",
            &[("Host", &host), ("Authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(reply.status, 421, "host `{host}`: {}", reply.body);
        assert_eq!(reply.code(), "foreign_host");
        assert!(
            !reply.body.contains("CVE-"),
            "no data leaks to a foreign host"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_can_read_but_change_nothing() {
    let s = start().await;
    let auth = bearer(&s.viewer);
    let read = send(
        s.addr,
        "GET",
        "/api/v1/issues",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["items"].as_array().unwrap().len(), 12);
    let id = first_issue_id(&s).to_string();
    let store = Store::open(&s.db).unwrap();
    let events_before = store.events_by_actor("token:viewer", 100).unwrap().len();
    // Every state-changing API route but the session's, by bearer token.
    for (method, path) in API_ROUTES
        .iter()
        .filter(|(m, p)| *m != "GET" && !p.ends_with("/session"))
    {
        let path = path.replace("{name}", "prod").replace("{id}", &id);
        let body = match path.as_str() {
            "/api/v1/connections" => {
                json!({"plugin": "hostile", "name": "x", "secrets": {"client_secret": "good"}})
            }
            p if p.ends_with("/locations") => {
                json!({"rules": [{"action": "deselect", "pattern": "*"}]})
            }
            p if p.ends_with("/suppression") => json!({"reason": "no"}),
            _ => json!({}),
        };
        let reply = send(
            s.addr,
            method,
            &path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &body.to_string(),
        )
        .await;
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        assert_eq!(reply.code(), "forbidden", "{method} {path}");
    }
    // The same through a signed-in browser session with a valid CSRF token and Origin.
    let (cookie, csrf) = session(&s, &s.viewer).await;
    let origin = format!("http://{}", s.addr);
    let reply = send(
        s.addr,
        "POST",
        &format!("/api/v1/issues/{id}/suppression"),
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Origin", &origin),
            ("Content-Type", "application/json"),
        ],
        r#"{"reason":"no"}"#,
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    // The page says so and offers no working form.
    let page = send(
        s.addr,
        "GET",
        "/connectors/hostile",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("cannot configure connectors"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<fieldset disabled>"));
    let panel = send(
        s.addr,
        "GET",
        &format!("/issues/{id}/panel"),
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert!(panel.body.contains("cannot suppress issues"));
    assert!(!panel.body.contains("suppress-form"));
    // Nothing changed: no connection, no suppression, no selection, only the sign-in event.
    let store = Store::open(&s.db).unwrap();
    assert_eq!(store.connections().unwrap().len(), 1);
    assert!(
        store
            .connection("prod")
            .unwrap()
            .unwrap()
            .selection
            .is_empty()
    );
    let all = store
        .issues(&keelson_store::IssueFilter::default())
        .unwrap();
    assert!(
        all.iter()
            .all(|i| i.status != keelson_store::IssueStatus::Suppressed)
    );
    let kinds: Vec<String> = store
        .events_by_actor("token:viewer", 100)
        .unwrap()
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert_eq!(kinds.len(), events_before + 1, "{kinds:?}");
    assert_eq!(kinds[0], "signed-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_and_csrf_less_changes_are_refused() {
    let s = start().await;
    let id = first_issue_id(&s);
    let path = format!("/api/v1/issues/{id}/suppression");
    let (cookie, csrf) = session(&s, &s.operator).await;
    let good_origin = format!("http://{}", s.addr);
    let body = r#"{"reason":"accepted risk"}"#;
    let json_type = ("Content-Type", "application/json");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("Origin", "http://evil.example")], "cross_origin"),
        (&[("Origin", "null")], "cross_origin"),
        (&[], "cross_origin"),
        (&[("Origin", &good_origin)], "csrf"),
    ];
    for (extra, code) in cases {
        let mut headers = vec![("Cookie", cookie.as_str()), json_type];
        headers.extend_from_slice(extra);
        if code == "cross_origin" {
            headers.push(("X-CSRF-Token", &csrf));
        }
        let reply = send(s.addr, "POST", &path, &headers, body).await;
        assert_eq!(reply.status, 403, "{extra:?}: {}", reply.body);
        assert_eq!(reply.code(), code, "{extra:?}");
    }
    // A wrong CSRF token, and a cross-site fetch even with a bearer token.
    let wrong = send(
        s.addr,
        "POST",
        &path,
        &[
            ("Cookie", &cookie),
            json_type,
            ("Origin", &good_origin),
            ("X-CSRF-Token", "00"),
        ],
        body,
    )
    .await;
    assert_eq!(wrong.code(), "csrf");
    let auth = bearer(&s.operator);
    let cross = send(
        s.addr,
        "POST",
        &path,
        &[
            ("Authorization", &auth),
            json_type,
            ("Origin", "http://evil.example"),
        ],
        body,
    )
    .await;
    assert_eq!(cross.code(), "cross_origin");
    // Signing in from another site is refused too.
    let signin = send(
        s.addr,
        "POST",
        "/signin",
        &[
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("token={}", s.operator),
    )
    .await;
    assert_eq!(signin.status, 403);
    assert!(signin.header("set-cookie").is_none());
    // Nothing was suppressed so far; the proper request works and is audited with its actor.
    let store = Store::open(&s.db).unwrap();
    assert!(
        store
            .issue(keelson_store::IssueId(id))
            .unwrap()
            .unwrap()
            .suppression
            .is_none()
    );
    let ok = send(
        s.addr,
        "POST",
        &path,
        &[
            ("Cookie", &cookie),
            json_type,
            ("Origin", &good_origin),
            ("X-CSRF-Token", &csrf),
        ],
        body,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["suppression"]["actor"], "token:operator");
    let kinds: Vec<String> = store
        .events_by_actor("token:operator", 10)
        .unwrap()
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert!(kinds.contains(&"suppressed".to_owned()), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_string_is_escaped() {
    let s = start().await;
    // A registry and repository the plugin named with markup, as a scan stored them.
    let mut hostile = finding(
        &format!("repo\"{IMG}"),
        "sha256:ee",
        "CVE-2024-9999",
        Severity::Low,
    );
    hostile.image.registry = format!("reg{XSS}");
    ingest(&mut Store::open(&s.db).unwrap(), &[hostile]);
    let (cookie, csrf) = session(&s, &s.admin).await;
    let origin = format!("http://{}", s.addr);
    let id = first_issue_id(&s);
    for (method, path) in [
        ("GET", "/connectors".to_owned()),
        ("GET", "/connectors/hostile".to_owned()),
        ("GET", "/connectors/hostile/instructions".to_owned()),
        ("GET", "/connections/prod".to_owned()),
        ("GET", "/connections/prod/locations".to_owned()),
        ("POST", "/connections/prod/locations/live".to_owned()),
        ("GET", "/issues".to_owned()),
        ("GET", format!("/issues/{id}/panel")),
    ] {
        let headers = [
            ("Cookie", cookie.as_str()),
            ("X-CSRF-Token", &csrf),
            ("Origin", &origin),
        ];
        let reply = send(s.addr, method, &path, &headers, "").await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let body = &reply.body;
        for raw in [
            "<script>alert",
            "<img src=x",
            "<u>",
            "href=\"javascript:",
            "\"onmouseover",
        ] {
            assert!(!body.contains(raw), "{path} contains raw `{raw}`");
        }
        assert!(
            body.contains("&lt;script&gt;") || body.contains("&lt;img"),
            "{path} shows the hostile text escaped"
        );
        assert!(
            body.matches("<script").count() <= 1,
            "{path}: only the page's own script"
        );
    }
    let page = send(s.addr, "GET", "/issues", &[("Cookie", &cookie)], "").await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // API errors carry plugin text as JSON, never as HTML.
    let auth = bearer(&s.admin);
    let verify = send(
        s.addr,
        "POST",
        "/api/v1/connections/prod/verify",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(verify.code(), "plugin_failed");
    assert!(
        verify
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_file_matches_the_routes() {
    let spec: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = API_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routed, "openapi.json and API_ROUTES differ");
    // And each one is really routed: it answers with anything but the router's own refusals,
    // and every failure has the one error shape.
    let s = start().await;
    let auth = bearer(&s.admin);
    for (method, path) in API_ROUTES {
        let concrete = path
            .replace("{name}", "nope")
            .replace("{id}", "999999")
            .replace("{format}", "json");
        let reply = send(
            s.addr,
            method,
            &concrete,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            "{}",
        )
        .await;
        if reply.status >= 400 {
            let code = reply.code();
            assert!(
                code != "no_route" && code != "method_not_allowed",
                "{method} {path} is documented but not routed"
            );
            assert!(reply.json()["error"]["message"].is_string());
        }
    }
    let none = send(
        s.addr,
        "GET",
        "/api/v1/nothing",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!((none.status, none.code().as_str()), (404, "no_route"));
    let bad = send(
        s.addr,
        "GET",
        "/api/v1/issues?severity=urgent",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["field"], "severity");
    let anon = send(s.addr, "GET", "/api/v1/issues", &[], "").await;
    assert_eq!(
        (anon.status, anon.code().as_str()),
        (401, "unauthenticated")
    );
}

fn escape_stray_bracket(v: &mut Value) -> usize {
    const BAD: &str = "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$";
    match v {
        Value::Object(map) => {
            let mut n = 0;
            for (k, child) in map.iter_mut() {
                if k == "pattern" && child == BAD {
                    *child = json!("^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\\]?$");
                    n += 1;
                } else {
                    n += escape_stray_bracket(child);
                }
            }
            n
        }
        Value::Array(items) => items.iter_mut().map(escape_stray_bracket).sum(),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarif_export_is_valid_sarif_2_1_0_with_stable_ids() {
    let s = start().await;
    let auth = bearer(&s.viewer);
    let reply = send(
        s.addr,
        "GET",
        "/api/v1/exports/sarif",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .header("content-disposition")
            .unwrap()
            .contains("keelson-issues.sarif")
    );
    let log = reply.json();
    let mut schema: Value =
        serde_json::from_str(include_str!("data/sarif-schema-2.1.0.json")).unwrap();
    // The published schema's `language` patterns have a stray `]`: ECMAScript reads it as a
    // literal, the validator's regex engine refuses it. Escape it; nothing else is touched.
    assert!(escape_stray_bracket(&mut schema) >= 1);
    let validator = jsonschema::draft4::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "SARIF schema violations: {errors:#?}");
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "one run per repository (web, api, jobs)");
    let ids: Vec<&str> = runs
        .iter()
        .map(|r| r["automationDetails"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "keelson/contoso.azurecr.io/api/",
            "keelson/contoso.azurecr.io/jobs/",
            "keelson/contoso.azurecr.io/web/"
        ]
    );
    let results: Vec<&Value> = runs
        .iter()
        .flat_map(|r| r["results"].as_array().unwrap())
        .collect();
    assert_eq!(results.len(), 12);
    for r in &results {
        assert!(
            r["partialFingerprints"]["keelsonIssue/v1"]
                .as_str()
                .unwrap()
                .len()
                == 64
        );
    }
    for rule in runs
        .iter()
        .flat_map(|r| r["tool"]["driver"]["rules"].as_array().unwrap())
    {
        let score: f64 = rule["properties"]["security-severity"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..=10.0).contains(&score));
    }
    let again = send(
        s.addr,
        "GET",
        "/api/v1/exports/sarif",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(again.json(), log, "the export is deterministic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_json_exports_follow_the_filters() {
    let s = start().await;
    let auth = bearer(&s.viewer);
    let csv = send(
        s.addr,
        "GET",
        "/api/v1/exports/csv?severity=critical",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "header and the three critical issues");
    assert!(lines[1].contains("'=cmd|"), "formula escaped: {}", lines[1]);
    assert!(!lines.iter().skip(1).any(|l| l.contains(",=")));
    let json = send(
        s.addr,
        "GET",
        "/api/v1/exports/json?repository=web",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    let rows = json.json();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["repository"] == "web")
    );
    let summary = send(
        s.addr,
        "GET",
        "/api/v1/compliance",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(summary.json()["open_issues"], 12);
    assert_eq!(summary.json()["by_severity"]["critical"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_stable_under_concurrent_ingest() {
    let s = start().await;
    let auth = bearer(&s.viewer);
    let before: BTreeSet<i64> = Store::open(&s.db)
        .unwrap()
        .issues(&keelson_store::IssueFilter::default())
        .unwrap()
        .iter()
        .map(|i| i.id.0)
        .collect();
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut writer = Store::open(&s.db).unwrap();
    for page in 0.. {
        let path = format!("/api/v1/issues?limit=5&after={after}");
        let reply = send(s.addr, "GET", &path, &[("Authorization", &auth)], "").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        seen.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_i64().unwrap()),
        );
        // Between pages, a scan adds issues of every severity.
        let sev = [Severity::Critical, Severity::Low, Severity::High][page % 3];
        ingest(
            &mut writer,
            &[finding(
                "web",
                &format!("sha256:{:064x}", 900 + page),
                &format!("CVE-2025-{page:04}"),
                sev,
            )],
        );
        match body["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
        assert!(page < 20, "paging must end");
    }
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no issue twice: {seen:?}");
    assert!(
        before.is_subset(&unique),
        "every issue present at the start is seen once"
    );
}

/// GETs `path` with the viewer's token; the JSON body.
async fn get_json(s: &Server, path: &str) -> Value {
    let reply = send(
        s.addr,
        "GET",
        path,
        &[("Authorization", &bearer(&s.viewer))],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    reply.json()
}

fn ids_of(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_connection_retires_it_and_frees_its_name() {
    let s = start().await;
    let delete = |token: String, name: &'static str| {
        let addr = s.addr;
        async move {
            send(
                addr,
                "DELETE",
                &format!("/api/v1/connections/{name}"),
                &[("Authorization", &bearer(&token))],
                "",
            )
            .await
        }
    };
    for token in [s.viewer.clone(), s.operator.clone()] {
        let reply = delete(token, "prod").await;
        assert_eq!((reply.status, reply.code().as_str()), (403, "forbidden"));
    }
    let declared = delete(s.admin.clone(), "declared").await;
    assert_eq!(
        (declared.status, declared.code().as_str()),
        (409, "declared")
    );
    assert!(
        declared.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("remove its `[[connection]]` there"),
        "{}",
        declared.body
    );
    assert_eq!(
        get_json(&s, "/api/v1/issues").await["items"]
            .as_array()
            .unwrap()
            .len(),
        12
    );
    let reply = delete(s.admin.clone(), "prod").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Gone from lists, the queue, the summary and exports; asking for it again finds nothing.
    assert!(
        get_json(&s, "/api/v1/connections").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(ids_of(&get_json(&s, "/api/v1/issues?status=all").await).is_empty());
    assert_eq!(get_json(&s, "/api/v1/compliance").await["open_issues"], 0);
    assert_eq!(get_json(&s, "/api/v1/exports/json").await, json!([]));
    let again = delete(s.admin.clone(), "prod").await;
    assert_eq!((again.status, again.code().as_str()), (404, "not_found"));
    let scan = send(
        s.addr,
        "POST",
        "/api/v1/connections/prod/scan",
        &[("Authorization", &bearer(&s.operator))],
        "",
    )
    .await;
    assert_eq!(scan.status, 404, "{}", scan.body);
    // The admin is on record, and the name can be used again by a new connection.
    let mut store = Store::open(&s.db).unwrap();
    let kinds: Vec<String> = store
        .events_by_actor("token:admin", 10)
        .unwrap()
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert!(
        kinds.contains(&"connection-retired".to_owned()),
        "{kinds:?}"
    );
    store
        .save_connection(&ConnectionSpec::new("prod", "hostile"), &keys(), "test")
        .unwrap();
    let listed = get_json(&s, "/api/v1/connections").await;
    assert_eq!(listed["items"][0]["name"], "prod");
    assert!(
        listed["items"][0]["last_run"].is_null(),
        "a fresh connection has no runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_filters_run_in_sql_so_pages_are_full_and_end_exactly() {
    let s = start().await;
    // Without enrichment the priority is the severity: critical and low are 3 issues each.
    let first = get_json(&s, "/api/v1/issues?priority=critical,low&limit=4").await;
    assert_eq!(ids_of(&first).len(), 4, "a full page");
    let next = first["next"].as_str().expect("a next page").to_owned();
    let second = get_json(
        &s,
        &format!("/api/v1/issues?priority=critical,low&limit=4&after={next}"),
    )
    .await;
    assert_eq!(ids_of(&second).len(), 2);
    assert!(second["next"].is_null(), "no cursor after the last page");
    let both: BTreeSet<i64> = ids_of(&first).into_iter().chain(ids_of(&second)).collect();
    assert_eq!(both.len(), 6);
    // A page that holds exactly the rest has no `next` either.
    let exact = get_json(&s, "/api/v1/issues?priority=critical&limit=3").await;
    assert_eq!(ids_of(&exact).len(), 3);
    assert!(exact["next"].is_null(), "{exact}");
    for item in exact["items"].as_array().unwrap() {
        assert_eq!(item["priority"], "critical");
    }
    assert!(ids_of(&get_json(&s, "/api/v1/issues?team=nobody").await).is_empty());
    assert!(ids_of(&get_json(&s, "/api/v1/issues?sla=breached").await).is_empty());
    assert_eq!(
        ids_of(&get_json(&s, "/api/v1/issues?sla=none").await).len(),
        12
    );
    let bad = send(
        s.addr,
        "GET",
        "/api/v1/issues?sla=late",
        &[("Authorization", &bearer(&s.viewer))],
        "",
    )
    .await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].as_str()),
        (400, Some("sla"))
    );
}

/// The value an issue is sorted by, comparable as text.
fn sort_value(item: &Value, key: &str) -> String {
    let rank = |level: &str| {
        [
            "unknown",
            "informational",
            "low",
            "medium",
            "high",
            "critical",
        ]
        .iter()
        .position(|l| *l == level)
        .unwrap()
        .to_string()
    };
    let text = |k: &str| item[k].as_str().unwrap().to_owned();
    match key {
        "severity" | "priority" => rank(&text(key)),
        "images" => format!("{:04}", item["images"].as_array().unwrap().len()),
        "repository" => format!("{} {}", text("repository"), text("registry")),
        "vulnerability" => text("vulnerability_id"),
        other => text(other),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sort_pages_in_order_under_concurrent_ingest() {
    let s = start().await;
    let mut writer = Store::open(&s.db).unwrap();
    // Some issues in several images, so the image counts differ.
    ingest(
        &mut writer,
        &[
            finding(
                "web",
                &format!("sha256:{:064x}", 500),
                "CVE-2024-1000",
                Severity::Critical,
            ),
            finding(
                "web",
                &format!("sha256:{:064x}", 501),
                "CVE-2024-1000",
                Severity::Critical,
            ),
            finding(
                "api",
                &format!("sha256:{:064x}", 502),
                "CVE-2024-1001",
                Severity::High,
            ),
        ],
    );
    let mut added = 0;
    for sort in [
        "severity",
        "-first_seen",
        "repository",
        "-images",
        "vulnerability",
        "-last_seen",
    ] {
        let (descending, key) = match sort.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, sort),
        };
        let before: BTreeSet<i64> = writer
            .issues(&keelson_store::IssueFilter::default())
            .unwrap()
            .iter()
            .map(|i| i.id.0)
            .collect();
        let mut seen: Vec<Value> = Vec::new();
        let mut after = String::new();
        for page in 0.. {
            let body = get_json(
                &s,
                &format!("/api/v1/issues?sort={sort}&limit=4&after={after}"),
            )
            .await;
            seen.extend(body["items"].as_array().unwrap().iter().cloned());
            // Between pages, a scan adds issues that sort anywhere.
            added += 1;
            let sev = [Severity::Critical, Severity::Low, Severity::High][added % 3];
            ingest(
                &mut writer,
                &[finding(
                    ["api", "web", "jobs"][added % 3],
                    &format!("sha256:{:064x}", 900 + added),
                    &format!("CVE-2025-{added:04}"),
                    sev,
                )],
            );
            match body["next"].as_str() {
                Some(next) => {
                    after = percent_encoding::utf8_percent_encode(
                        next,
                        percent_encoding::NON_ALPHANUMERIC,
                    )
                    .to_string();
                }
                None => break,
            }
            assert!(page < 30, "{sort}: paging must end");
        }
        let ids: Vec<i64> = seen.iter().map(|i| i["id"].as_i64().unwrap()).collect();
        let unique: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "{sort}: no issue twice: {ids:?}");
        assert!(
            before.is_subset(&unique),
            "{sort}: every issue present at the start is seen"
        );
        for pair in seen.windows(2) {
            let (x, y) = (sort_value(&pair[0], key), sort_value(&pair[1], key));
            let ordered = if descending { x >= y } else { x <= y };
            assert!(ordered, "{sort}: `{x}` before `{y}`");
            if x == y {
                assert!(
                    pair[0]["id"].as_i64() < pair[1]["id"].as_i64(),
                    "{sort}: ties by id"
                );
            }
        }
    }
    // A cursor of one order does not continue another.
    let page = get_json(&s, "/api/v1/issues?sort=images&limit=2").await;
    let next = page["next"].as_str().unwrap();
    let mixed = send(
        s.addr,
        "GET",
        &format!("/api/v1/issues?sort=severity&after={next}"),
        &[("Authorization", &bearer(&s.viewer))],
        "",
    )
    .await;
    assert_eq!(
        (mixed.status, mixed.json()["error"]["field"].as_str()),
        (400, Some("after"))
    );
    // The page's column headers are server-side sort links.
    let (cookie, _) = session(&s, &s.viewer).await;
    let html = send(
        s.addr,
        "GET",
        "/issues?sort=-images",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert!(
        html.body
            .contains(r#"data-sort-key="images" data-dir="desc"><a href="/issues?sort=images""#),
        "{}",
        html.body
    );
    assert!(
        html.body
            .contains(r#"<a href="/issues?sort=%2Dseverity">Severity</a>"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_end_with_their_token() {
    let s = start().await;
    let (cookie, csrf) = session(&s, &s.operator).await;
    let (other, _) = session(&s, &s.operator).await;
    // Another server over the same store: what a restart of `keelson serve` leaves.
    let restarted = serve_db(&s.db).await;
    let me = send(restarted, "GET", "/api/v1/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["name"], "operator");
    // The CSRF token survived too: a change from the page still works after the restart.
    let id = first_issue_id(&s);
    let origin = format!("http://{restarted}");
    let suppress = send(
        restarted,
        "POST",
        &format!("/api/v1/issues/{id}/suppression"),
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Origin", &origin),
            ("Content-Type", "application/json"),
        ],
        r#"{"reason":"accepted after the restart"}"#,
    )
    .await;
    assert_eq!(suppress.status, 200, "{}", suppress.body);
    // Signing out ends the session on every server.
    let out = send(
        restarted,
        "DELETE",
        "/api/v1/session",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Origin", &origin),
        ],
        "",
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.body);
    let gone = send(s.addr, "GET", "/api/v1/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(gone.status, 401);
    // Revoking the token ends its other sessions at once.
    assert_eq!(
        send(s.addr, "GET", "/api/v1/me", &[("Cookie", &other)], "")
            .await
            .status,
        200
    );
    Store::open(&s.db)
        .unwrap()
        .revoke_token("operator", "test")
        .unwrap();
    for addr in [s.addr, restarted] {
        let reply = send(addr, "GET", "/api/v1/me", &[("Cookie", &other)], "").await;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
}

/// One finished run of `connection` that reported `findings`.
fn finished(
    store: &mut Store,
    connection: &str,
    findings: &[Finding],
    outcome: &RunOutcome,
    coverage: &Coverage,
) -> RunInfo {
    let run = store
        .begin_run(connection, RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    if !findings.is_empty() {
        store.ingest_findings(run, TOOL, findings).unwrap();
    }
    store
        .finish_run(run, outcome, coverage, &ResolveGuard::default(), &|_, _| {
            true
        })
        .unwrap()
}

/// A run of `connection` that read the registry completely and found nothing: held when the
/// connection has open findings there.
fn held(store: &mut Store, connection: &str) -> RunId {
    let info = finished(
        store,
        connection,
        &[],
        &RunOutcome::Complete,
        &Coverage::complete(&[REGISTRY]),
    );
    assert_eq!(info.status, RunStatus::Held, "{info:?}");
    info.id
}

fn open_issues(db: &std::path::Path, connection: &str) -> usize {
    Store::open(db)
        .unwrap()
        .issues(&keelson_store::IssueFilter {
            connection: Some(connection.into()),
            statuses: vec![keelson_store::IssueStatus::Open],
            ..keelson_store::IssueFilter::default()
        })
        .unwrap()
        .len()
}

/// POSTs `path` (no body) as the bearer of `token`.
async fn post(s: &Server, token: &str, path: &str) -> Reply {
    send(
        s.addr,
        "POST",
        path,
        &[("Authorization", &bearer(token))],
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_carry_their_coverage_and_its_summary() {
    let s = start().await;
    let mut store = Store::open(&s.db).unwrap();
    let coverage = Coverage {
        registries: vec![
            // The registry with all the open findings was not read, so nothing is resolved.
            RegistryCoverage::uncovered(REGISTRY, "403 AuthorizationFailed"),
            RegistryCoverage::covered("other.azurecr.io"),
        ],
        ..Coverage::default()
    };
    let run = finished(
        &mut store,
        "prod",
        &[],
        &RunOutcome::Partial {
            reason: "1 registry not covered".into(),
        },
        &coverage,
    );
    let runs = get_json(&s, "/api/v1/connections/prod/runs").await;
    let newest = &runs["items"][0];
    assert_eq!(newest["id"], run.id.0);
    assert_eq!(newest["status"], "partial");
    assert_eq!(newest["coverage"]["registries"][0]["registry"], REGISTRY);
    assert_eq!(
        newest["coverage"]["registries"][0]["uncovered"],
        "403 AuthorizationFailed"
    );
    assert!(newest["coverage"]["registries"][1]["uncovered"].is_null());
    assert_eq!(newest["findings_resolved"], 0);
    assert_eq!(
        newest["coverage_summary"],
        "1/2 registries covered; contoso.azurecr.io: 403 AuthorizationFailed; findings: complete"
    );
    assert!(newest["held"].is_null() && newest["accepted_by"].is_null());
    // The run of the fixture: partial with nothing covered.
    assert_eq!(
        runs["items"][1]["coverage_summary"],
        "0/0 registries covered; findings: complete"
    );
    let connection = get_json(&s, "/api/v1/connections/prod").await;
    assert_eq!(
        connection["last_run"]["coverage_summary"],
        newest["coverage_summary"]
    );
    // The connection's page shows the same, run by run.
    let (cookie, _) = session(&s, &s.viewer).await;
    let page = send(
        s.addr,
        "GET",
        "/connections/prod",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert!(
        page.body.contains(&format!(
            r#"<tr data-run="{}" data-status="partial">"#,
            run.id
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains(
        "1/2 registries covered; contoso.azurecr.io: 403 AuthorizationFailed; findings: complete"
    ));
    assert!(page.body.contains("1 registry not covered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_accepts_a_held_run_and_its_findings_are_resolved() {
    let s = start().await;
    let run = held(&mut Store::open(&s.db).unwrap(), "prod");
    let runs = get_json(&s, "/api/v1/connections/prod/runs").await;
    let listed = &runs["items"][0];
    assert_eq!(
        (listed["id"].as_i64(), listed["status"].as_str()),
        (Some(run.0), Some("held"))
    );
    assert_eq!(listed["held"]["would_resolve"], 12);
    assert_eq!(listed["held"]["open"], 12);
    assert!(
        listed["held"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("would resolve 12 of 12 open findings"),
        "{listed}"
    );
    let path = format!("/api/v1/runs/{run}/accept");
    // A viewer may not, by token or by session.
    let refused = post(&s, &s.viewer, &path).await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "forbidden")
    );
    // From the page, the Origin and the CSRF token are needed like for any change.
    let (cookie, csrf) = session(&s, &s.operator).await;
    let origin = format!("http://{}", s.addr);
    let no_csrf = send(
        s.addr,
        "POST",
        &path,
        &[("Cookie", &cookie), ("Origin", &origin)],
        "",
    )
    .await;
    assert_eq!((no_csrf.status, no_csrf.code().as_str()), (403, "csrf"));
    assert_eq!(open_issues(&s.db, "prod"), 12, "nothing resolved so far");
    let accepted = send(
        s.addr,
        "POST",
        &path,
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("X-CSRF-Token", &csrf),
        ],
        "",
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let body = accepted.json();
    assert_eq!(body["status"], "complete");
    assert_eq!(body["findings_resolved"], 12);
    assert_eq!(body["accepted_by"], "token:operator");
    assert_eq!(
        body["coverage_summary"],
        "1/1 registries covered; findings: complete"
    );
    assert_eq!(
        open_issues(&s.db, "prod"),
        0,
        "the held resolution was applied"
    );
    let queue = get_json(&s, "/api/v1/issues").await;
    assert!(ids_of(&queue).is_empty());
    assert_eq!(queue["connections"][0]["current"], true, "{queue}");
    // Once is enough; the accept is in the audit log with its actor.
    let again = post(&s, &s.operator, &path).await;
    assert_eq!((again.status, again.code().as_str()), (409, "not_held"));
    let kinds: Vec<String> = Store::open(&s.db)
        .unwrap()
        .events_by_actor("token:operator", 10)
        .unwrap()
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert!(kinds.contains(&"run-accepted".to_owned()), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_run_not_held_or_out_of_date_is_refused_with_the_reason() {
    let s = start().await;
    let mut store = Store::open(&s.db).unwrap();
    let partial = store.runs(Some("prod"), 1).unwrap()[0].id;
    let reply = post(&s, &s.operator, &format!("/api/v1/runs/{partial}/accept")).await;
    assert_eq!((reply.status, reply.code().as_str()), (409, "not_held"));
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(&format!("run `{partial}` is `partial`, not held")),
        "{message}"
    );
    // A held run goes out of date as soon as a newer run of its connection starts.
    let run = held(&mut store, "prod");
    let newer = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    let reply = post(&s, &s.operator, &format!("/api/v1/runs/{run}/accept")).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (409, "held_superseded"),
        "{}",
        reply.body
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(&format!(
            "run `{newer}` of the same connection started after it"
        )),
        "{message}"
    );
    assert_eq!(open_issues(&s.db, "prod"), 12, "nothing resolved");
    // Unknown and malformed run ids.
    let unknown = post(&s, &s.operator, "/api/v1/runs/999999/accept").await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "not_found")
    );
    let garbage = post(&s, &s.operator, "/api/v1/runs/seven/accept").await;
    assert_eq!(
        (garbage.status, garbage.json()["error"]["field"].as_str()),
        (400, Some("id"))
    );
}

/// The queue's entry for `name` in an `/api/v1/issues` response.
fn entry<'a>(queue: &'a Value, name: &str) -> &'a Value {
    queue["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connection"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {queue}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_says_which_connections_are_not_current_and_why() {
    let s = start().await;
    let mut store = Store::open(&s.db).unwrap();
    for name in ["fresh", "broken", "dropped", "clean"] {
        store
            .save_connection(&ConnectionSpec::new(name, "hostile"), &keys(), "test")
            .unwrap();
    }
    let one = |n: usize| {
        finding(
            "web",
            &format!("sha256:{:064x}", 700 + n),
            &format!("CVE-2024-{}", 7000 + n),
            Severity::High,
        )
    };
    let complete = Coverage::complete(&[REGISTRY]);
    let broken = finished(
        &mut store,
        "broken",
        &[],
        &RunOutcome::Failed {
            reason: format!("denied {XSS}"),
        },
        &Coverage::default(),
    );
    finished(
        &mut store,
        "dropped",
        &[one(1)],
        &RunOutcome::Complete,
        &complete,
    );
    let dropped = held(&mut store, "dropped");
    let clean = finished(
        &mut store,
        "clean",
        &[one(2)],
        &RunOutcome::Complete,
        &complete,
    );
    assert_eq!(clean.status, RunStatus::Complete);

    let queue = get_json(&s, "/api/v1/issues").await;
    assert_eq!(
        ids_of(&queue).len(),
        14,
        "12 of prod, 1 of dropped, 1 of clean"
    );
    assert!(queue["next"].is_null());
    let names: Vec<&str> = queue["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connection"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["broken", "clean", "dropped", "fresh", "prod"]);

    let fresh = entry(&queue, "fresh");
    assert_eq!(fresh["current"], false);
    assert!(fresh["last_run"].is_null() && fresh["data_as_of"].is_null());
    assert_eq!(
        fresh["notice"],
        "never scanned: nothing from it is in this queue"
    );

    let failed = entry(&queue, "broken");
    assert_eq!(failed["current"], false);
    assert_eq!(failed["last_run"]["id"], broken.id.0);
    assert_eq!(failed["last_run"]["status"], "failed");
    assert_eq!(failed["last_run"]["error"], format!("denied {XSS}"));
    assert!(
        failed["data_as_of"].is_null(),
        "a failed run stored no data as of anything"
    );
    assert!(
        failed["notice"]
            .as_str()
            .unwrap()
            .starts_with(&format!("last run {} failed: denied", broken.id)),
        "{failed}"
    );

    let partial = entry(&queue, "prod");
    assert_eq!(partial["current"], false);
    assert_eq!(partial["last_run"]["status"], "partial");
    assert_eq!(
        partial["last_run"]["coverage_summary"],
        "0/0 registries covered; findings: complete"
    );
    assert_eq!(partial["data_as_of"], partial["last_run"]["finished_at"]);
    assert!(
        partial["notice"]
            .as_str()
            .unwrap()
            .contains("was partial: 0/0 registries covered; findings: complete"),
        "{partial}"
    );

    let on_hold = entry(&queue, "dropped");
    assert_eq!(on_hold["current"], false);
    assert_eq!(on_hold["last_run"]["id"], dropped.0);
    assert_eq!(on_hold["last_run"]["status"], "held");
    assert_eq!(on_hold["last_run"]["held"]["would_resolve"], 1);
    assert_eq!(on_hold["last_run"]["held"]["open"], 1);
    assert_eq!(on_hold["data_as_of"], on_hold["last_run"]["finished_at"]);
    assert!(
        on_hold["notice"]
            .as_str()
            .unwrap()
            .contains("is held, nothing was resolved: would resolve 1 of 1 open findings"),
        "{on_hold}"
    );

    let current = entry(&queue, "clean");
    assert_eq!(current["current"], true);
    assert!(current["notice"].is_null());
    assert_eq!(current["last_run"]["status"], "complete");
    assert_eq!(current["data_as_of"], current["last_run"]["finished_at"]);

    // A queue filtered to one connection speaks of that one.
    let only = get_json(&s, "/api/v1/issues?connection=fresh").await;
    assert!(ids_of(&only).is_empty());
    assert_eq!(only["connections"].as_array().unwrap().len(), 1);
    assert_eq!(only["connections"][0]["connection"], "fresh");

    // The page: a banner per connection not current, none for the clean one, a "data as of"
    // line for each, and an Accept button on the held run only for operators.
    let (viewer, _) = session(&s, &s.viewer).await;
    let page = send(s.addr, "GET", "/issues", &[("Cookie", &viewer)], "").await;
    assert_eq!(page.status, 200);
    let html = &page.body;
    for (name, status) in [
        ("fresh", "never"),
        ("broken", "failed"),
        ("prod", "partial"),
        ("dropped", "held"),
    ] {
        assert!(
            html.contains(&format!(
                r#"data-connection="{name}" data-status="{status}""#
            )),
            "a banner for `{name}`: {html}"
        );
        assert!(
            html.contains(&format!(r#"<li data-connection="{name}">"#)),
            "{name}"
        );
    }
    assert!(
        !html.contains(r#"data-connection="clean" data-status"#),
        "no banner when current"
    );
    assert!(html.contains(r#"<li data-connection="clean"><b>clean</b>: data as of "#));
    assert!(html.contains("never scanned: nothing from it is in this queue"));
    assert!(
        html.contains("denied &lt;script&gt;"),
        "the reason, escaped"
    );
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("was partial: 0/0 registries covered; findings: complete"));
    assert!(html.contains("would resolve 1 of 1 open findings"));
    assert!(
        !html.contains(r#"data-action="accept-run""#),
        "a viewer gets no button"
    );
    assert!(html.contains("An operator can accept it."));
    let (operator, _) = session(&s, &s.operator).await;
    let page = send(s.addr, "GET", "/issues", &[("Cookie", &operator)], "").await;
    assert!(
        page.body.contains(&format!(
            r#"data-action="accept-run" data-run="{dropped}" data-would-resolve="1""#
        )),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches(r#"data-action="accept-run""#).count(), 1);
    // An empty queue over data that is not current does not read as clean.
    let empty = send(
        s.addr,
        "GET",
        "/issues?connection=fresh",
        &[("Cookie", &viewer)],
        "",
    )
    .await;
    assert!(
        empty.body.contains("this queue is not current"),
        "{}",
        empty.body
    );
    // The held connection's page has the banner and the button too, and its run's notes.
    let page = send(
        s.addr,
        "GET",
        "/connections/dropped",
        &[("Cookie", &operator)],
        "",
    )
    .await;
    assert!(
        page.body
            .contains(&format!(r#"data-run="{dropped}" data-would-resolve="1""#))
    );
    assert!(
        page.body
            .contains(&format!(r#"<tr data-run="{dropped}" data-status="held">"#))
    );
    assert!(
        page.body
            .contains("held: would resolve 1 of 1 open findings")
    );
}

/// Polls the scan status of `name` until the scan is no longer running.
async fn scan_ended(s: &Server, name: &str) -> Value {
    for _ in 0..200 {
        let status = get_json(s, &format!("/api/v1/connections/{name}/scan")).await;
        if status["state"] != "running" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the scan of `{name}` did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_from_the_api_is_held_unless_the_drop_is_pre_approved() {
    let s = start().await;
    let started = post(&s, &s.operator, "/api/v1/connections/prod/scan").await;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.json()["accept_drop"], false);
    let status = scan_ended(&s, "prod").await;
    assert_eq!(status["state"], "held", "{status}");
    assert_eq!(status["held"]["would_resolve"], 12);
    assert_eq!(
        status["coverage_summary"],
        "1/1 registries covered; findings: complete"
    );
    assert_eq!(status["coverage"]["registries"][0]["registry"], REGISTRY);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("held, nothing resolved: would resolve 12 of 12 open findings"),
        "{status}"
    );
    assert_eq!(open_issues(&s.db, "prod"), 12);
    // A flag that is not a boolean, or a body with something else, is refused.
    let bad = post(
        &s,
        &s.operator,
        "/api/v1/connections/prod/scan?accept_drop=yes",
    )
    .await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].as_str()),
        (400, Some("accept_drop"))
    );
    for body in [
        r#"{"accept-drop": true}"#,
        r#"{"accept_drop": 1}"#,
        "not json",
    ] {
        let reply = send(
            s.addr,
            "POST",
            "/api/v1/connections/prod/scan",
            &[
                ("Authorization", &bearer(&s.operator)),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (400, "invalid"),
            "{body}"
        );
    }
    // Pre-approved in the query: the same drop is applied.
    let started = post(
        &s,
        &s.operator,
        "/api/v1/connections/prod/scan?accept_drop=true",
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.json()["accept_drop"], true);
    let status = scan_ended(&s, "prod").await;
    assert_eq!(status["state"], "complete", "{status}");
    assert!(status["held"].is_null());
    assert_eq!(
        status["message"],
        "0 images, 0 findings (0 new, 12 resolved)"
    );
    assert_eq!(open_issues(&s.db, "prod"), 0);
    // And in a JSON body.
    let started = send(
        s.addr,
        "POST",
        "/api/v1/connections/prod/scan",
        &[
            ("Authorization", &bearer(&s.operator)),
            ("Content-Type", "application/json"),
        ],
        r#"{"accept_drop": true}"#,
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.json()["accept_drop"], true);
    assert_eq!(scan_ended(&s, "prod").await["state"], "complete");
    // A viewer may not pre-approve anything.
    let viewer = post(
        &s,
        &s.viewer,
        "/api/v1/connections/prod/scan?accept_drop=true",
    )
    .await;
    assert_eq!(viewer.status, 403);
}

/// The `LocationReport` schema of openapi.json, to hold answers to it.
fn location_schema() -> jsonschema::Validator {
    let spec: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    jsonschema::validator_for(&spec["components"]["schemas"]["LocationReport"]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_stored_locations_and_only_an_operator_lists_them_live() {
    let s = start().await;
    let schema = location_schema();
    let viewer = bearer(&s.viewer);
    let stored = send(
        s.addr,
        "GET",
        "/api/v1/connections/prod/locations",
        &[("Authorization", &viewer)],
        "",
    )
    .await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    let report = stored.json();
    assert!(schema.is_valid(&report), "{report:#}");
    assert_eq!(report["source"], "stored");
    assert_eq!(report["registries"][0]["name"], REGISTRY);
    assert!(
        report["registries"][0]["last_seen"].is_string(),
        "{report:#}"
    );
    let repositories: Vec<&str> = report["registries"][0]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(repositories, ["api", "jobs", "web"], "what the scan stored");
    // The picker reads the store too, and offers a viewer no live listing.
    let (cookie, csrf) = session(&s, &s.viewer).await;
    let origin = format!("http://{}", s.addr);
    let page = send(
        s.addr,
        "GET",
        "/connections/prod/locations",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(r#"data-source="stored""#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"data-action="locations-live" disabled"#)
    );
    assert!(page.body.contains("cannot list locations live"));
    let api_live = send(
        s.addr,
        "POST",
        "/api/v1/connections/prod/locations/live",
        &[("Authorization", &viewer)],
        "",
    )
    .await;
    assert_eq!(
        (api_live.status, api_live.code().as_str()),
        (403, "forbidden")
    );
    let session_headers = [
        ("Cookie", cookie.as_str()),
        ("X-CSRF-Token", &csrf),
        ("Origin", &origin),
    ];
    let page_live = send(
        s.addr,
        "POST",
        "/connections/prod/locations/live",
        &session_headers,
        "",
    )
    .await;
    assert_eq!(page_live.status, 403, "{}", page_live.body);
    assert_eq!(
        s.live.load(Ordering::SeqCst),
        0,
        "a viewer called no plugin"
    );

    // An operator lists them live, through the API or the page's button.
    let live = post(&s, &s.operator, "/api/v1/connections/prod/locations/live").await;
    assert_eq!(live.status, 200, "{}", live.body);
    assert!(schema.is_valid(&live.json()), "{}", live.body);
    assert_eq!(live.json()["source"], "live");
    assert_eq!(s.live.load(Ordering::SeqCst), 1);
    let (cookie, csrf) = session(&s, &s.operator).await;
    let page_live = send(
        s.addr,
        "POST",
        "/connections/prod/locations/live",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Origin", &origin),
        ],
        "",
    )
    .await;
    assert_eq!(page_live.status, 200, "{}", page_live.body);
    assert!(page_live.body.contains(r#"data-source="live""#));
    assert_eq!(s.live.load(Ordering::SeqCst), 2);
    // Without its CSRF token the button's request is refused before the plugin is called.
    let forged = send(
        s.addr,
        "POST",
        "/connections/prod/locations/live",
        &[("Cookie", &cookie), ("Origin", &origin)],
        "",
    )
    .await;
    assert_eq!((forged.status, forged.code().as_str()), (403, "csrf"));
    assert_eq!(s.live.load(Ordering::SeqCst), 2);

    // The stored view follows the selection, and knows no connection that is not there.
    let admin = bearer(&s.admin);
    let put = send(
        s.addr,
        "PUT",
        "/api/v1/connections/prod/locations",
        &[
            ("Authorization", &admin),
            ("Content-Type", "application/json"),
        ],
        &json!({"rules": [{"action": "deselect", "pattern": "*/jobs"}]}).to_string(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let report = get_json(&s, "/api/v1/connections/prod/locations").await;
    let registry = &report["registries"][0];
    assert_eq!(registry["state"], "partly", "{report:#}");
    let jobs = registry["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "jobs")
        .unwrap();
    assert_eq!(jobs["selected"], false);
    let missing = send(
        s.addr,
        "GET",
        "/api/v1/connections/nope/locations",
        &[("Authorization", &viewer)],
        "",
    )
    .await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "not_found")
    );
    assert_eq!(s.live.load(Ordering::SeqCst), 2);
}

fn has_security_headers(reply: &Reply) -> bool {
    reply.header("x-frame-options") == Some("DENY")
        && reply.header("x-content-type-options") == Some("nosniff")
        && reply.header("referrer-policy") == Some("same-origin")
        && reply
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("frame-ancestors 'none'"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guards_own_refusals_carry_the_security_headers() {
    let s = start().await;
    let port = s.addr.port();
    let foreign = send(
        s.addr,
        "GET",
        "/issues",
        &[("Host", &format!("evil.example:{port}"))],
        "",
    )
    .await;
    let anonymous = send(s.addr, "GET", "/api/v1/issues", &[], "").await;
    let unknown_token = send(
        s.addr,
        "GET",
        "/api/v1/issues",
        &[("Authorization", "Bearer kt_nope")],
        "",
    )
    .await;
    let cross_origin = send(
        s.addr,
        "POST",
        "/api/v1/connections/prod/scan",
        &[
            ("Authorization", &bearer(&s.operator)),
            ("Origin", "http://evil.example"),
        ],
        "",
    )
    .await;
    let to_signin = send(s.addr, "GET", "/issues", &[], "").await;
    for (reply, status) in [
        (&foreign, 421),
        (&anonymous, 401),
        (&unknown_token, 401),
        (&cross_origin, 403),
        (&to_signin, 303),
    ] {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(has_security_headers(reply), "{status}: {:?}", reply.headers);
    }
    assert_eq!(to_signin.header("location"), Some("/signin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_nobody_is_refused_before_its_body_is_read() {
    let s = start().await;
    // Today's trap: the endpoint's schema in the answer to an empty object.
    for body in ["{}", "not json at all", r#"{"plugin": 1}"#] {
        let reply = send(
            s.addr,
            "POST",
            "/api/v1/connections",
            &[("Content-Type", "application/json")],
            body,
        )
        .await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (401, "unauthenticated"),
            "{body}: {}",
            reply.body
        );
        for schema_word in ["missing field", "plugin", "expected", "body"] {
            assert!(!reply.body.contains(schema_word), "{body}: {}", reply.body);
        }
    }
    // A body announced and never sent: answered at once, so nothing waited to read it.
    let answer = tokio::task::spawn_blocking({
        let addr = s.addr;
        move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let head = format!(
                "POST /api/v1/connections/prod/locations/live HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{"
            );
            IoWrite::write_all(&mut stream, head.as_bytes()).unwrap();
            let mut raw = [0u8; 4096];
            let n = stream.read(&mut raw).expect("an answer before the body");
            String::from_utf8_lossy(&raw[..n]).into_owned()
        }
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(s.live.load(Ordering::SeqCst), 0);
    // The open routes stay open.
    assert_eq!(
        send(s.addr, "GET", "/api/v1/health", &[], "").await.status,
        200
    );
    assert_eq!(send(s.addr, "GET", "/signin", &[], "").await.status, 200);
    assert_eq!(
        send(s.addr, "GET", "/static/app.js", &[], "").await.status,
        200
    );
}

/// The log lines of this test binary, from the first call on.
fn captured_log() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOG: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(log))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
}

struct LogWriter(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_logged_without_the_token_and_throttled_per_address() {
    let log = captured_log();
    let s = start().await;
    // An address of its own, so the log lines of other tests' clients are not counted.
    let client: IpAddr = "127.0.0.3".parse().unwrap();
    let wrong = "kt_wrong_but_could_be_a_typo_of_a_real_one";
    let sign_in = |token: &str| json!({ "token": token }).to_string();
    let origin = format!("http://{}", s.addr);
    let api_headers = [
        ("Origin", origin.as_str()),
        ("Content-Type", "application/json"),
    ];
    let form_headers = [
        ("Origin", origin.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let wrong_bearer = bearer(wrong);
    // Five failures within the minute, by the API, the form and a bearer token.
    // Method, path, headers and body of each try.
    type Attempt<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], String);
    let attempts: [Attempt<'_>; 5] = [
        ("POST", "/api/v1/session", &api_headers, sign_in(wrong)),
        ("POST", "/api/v1/session", &api_headers, sign_in(wrong)),
        ("POST", "/signin", &form_headers, format!("token={wrong}")),
        ("POST", "/signin", &form_headers, format!("token={wrong}")),
        (
            "GET",
            "/api/v1/me",
            &[("Authorization", &wrong_bearer)],
            String::new(),
        ),
    ];
    for (method, path, headers, body) in &attempts {
        let reply = send_from(Some(client), s.addr, method, path, headers, body).await;
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.body);
    }
    // Now even the right token is refused from this address, without being looked at.
    let admin = sign_in(&s.admin);
    let right = send_from(
        Some(client),
        s.addr,
        "POST",
        "/api/v1/session",
        &api_headers,
        &admin,
    )
    .await;
    assert_eq!(
        (right.status, right.code().as_str()),
        (429, "throttled"),
        "{}",
        right.body
    );
    assert!(right.header("set-cookie").is_none());
    let wait: u64 = right.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(has_security_headers(&right));
    let admin_bearer = bearer(&s.admin);
    let by_bearer = send_from(
        Some(client),
        s.addr,
        "GET",
        "/api/v1/me",
        &[("Authorization", &admin_bearer)],
        "",
    )
    .await;
    assert_eq!(by_bearer.status, 429, "{}", by_bearer.body);
    let admin_form = format!("token={}", s.admin);
    let by_form = send_from(
        Some(client),
        s.addr,
        "POST",
        "/signin",
        &form_headers,
        &admin_form,
    )
    .await;
    assert_eq!(by_form.status, 429);
    assert!(by_form.header("retry-after").is_some());
    assert!(
        by_form.body.contains("too many failed sign-ins"),
        "{}",
        by_form.body
    );
    // Another address is not held back.
    let elsewhere = send(s.addr, "POST", "/api/v1/session", &api_headers, &admin).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);

    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("client=127.0.0.3"))
        .collect();
    let failed: Vec<&&str> = ours
        .iter()
        .filter(|l| l.contains("sign-in failed"))
        .collect();
    assert_eq!(failed.len(), 5, "{ours:#?}");
    for via in ["api session", "sign-in form", "bearer token"] {
        assert!(failed.iter().any(|l| l.contains(via)), "{via}: {failed:#?}");
    }
    assert!(
        ours.iter().any(|l| l.contains("too many failed ones")),
        "{ours:#?}"
    );
    assert!(!text.contains(wrong), "the token never reaches the log");
    assert!(!text.contains(&s.admin), "nor does the right one");
}

/// A suppression of issue `id` through the browser session `cookie`, sent from `origin`.
async fn suppress_from(s: &Server, id: i64, cookie: &str, csrf: &str, origin: &str) -> Reply {
    send(
        s.addr,
        "POST",
        &format!("/api/v1/issues/{id}/suppression"),
        &[
            ("Cookie", cookie),
            ("X-CSRF-Token", csrf),
            ("Origin", origin),
            ("Content-Type", "application/json"),
        ],
        r#"{"reason":"behind the proxy"}"#,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_an_https_public_url_cookies_are_secure_and_only_that_origin_changes_anything() {
    let public = "https://keelson.example.test";
    let s =
        start_with(|c| c.with_public_url(keelson_server::PublicUrl::parse(public).unwrap())).await;
    let json_type = ("Content-Type", "application/json");
    let body = json!({ "token": s.operator }).to_string();
    let plain = format!("http://{}", s.addr);
    // Signing in from the plain-HTTP address is refused; from the public origin it works.
    let refused = send(
        s.addr,
        "POST",
        "/api/v1/session",
        &[("Origin", &plain), json_type],
        &body,
    )
    .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "cross_origin")
    );
    let signed_in = send(
        s.addr,
        "POST",
        "/api/v1/session",
        &[
            ("Origin", public),
            ("Host", "keelson.example.test"),
            json_type,
        ],
        &body,
    )
    .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap().to_owned();
    let csrf = signed_in.json()["csrf"].as_str().unwrap().to_owned();
    let id = first_issue_id(&s);
    for origin in [
        plain.as_str(),
        "http://keelson.example.test",
        "https://evil.example",
    ] {
        let reply = suppress_from(&s, id, &pair, &csrf, origin).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (403, "cross_origin"),
            "{origin}"
        );
    }
    assert_eq!(
        suppress_from(&s, id, &pair, &csrf, public).await.status,
        200
    );
    let out = send(
        s.addr,
        "DELETE",
        "/api/v1/session",
        &[
            ("Cookie", &pair),
            ("X-CSRF-Token", &csrf),
            ("Origin", public),
        ],
        "",
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("; Secure"));
    // Without a public URL the cookie has no `Secure`: the bound address is plain HTTP.
    let plain_server = start().await;
    let reply = send(
        plain_server.addr,
        "POST",
        "/api/v1/session",
        &[
            ("Origin", &format!("http://{}", plain_server.addr)),
            json_type,
        ],
        &json!({ "token": plain_server.viewer }).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!reply.header("set-cookie").unwrap().contains("Secure"));
}
