//! The web page in a real headless Chromium, driven over WebDriver (chromedriver), against
//! `keelson serve` and the Azure simulator: sign in, connect with a bad then a good secret,
//! verify, change locations, scan with live progress, filter the queue by source tool and
//! severity, sort it by a column, read an issue's factors, suppress it, sign in as a viewer and
//! find configuring refused, see a held run's banner (with its Accept button for the admin, none
//! for the viewer) and accept it, then delete the connection as the admin (and `keelson
//! disconnect` refusing a declared one). Screenshots of the main pages go to
//! `target/screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/setup`) and the ACR connector built (`cargo build --release --target wasm32-wasip2`
//! in `plugins/`).

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use keelson_core::ScanScope;
use keelson_store::{
    Coverage, IssueFilter, IssueStatus, ResolveGuard, RunOutcome, RunStatus, RunTrigger, Store,
};
use serde_json::{Value, json};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
use support::{ACR_PLUGIN as PLUGIN, workspace_root};
const TOOL: &str = "Azure Container Registry";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> PathBuf {
    #[allow(
        clippy::disallowed_methods,
        reason = "the test finds the browser where the shell would"
    )]
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "none of {names:?} is on PATH: run `./scripts/setup` (it installs chromium and chromium-driver)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange with a JSON body; returns the status and the parsed body.
fn http_json(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_mins(2)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    // chromedriver keeps the connection open: read the head, then exactly the body.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).expect("read a response");
        assert!(n > 0, "the connection closed before a response");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    let mut body_bytes = raw[head_end + 4..].to_vec();
    loop {
        let done = match length {
            Some(n) => body_bytes.len() >= n,
            None if chunked => body_bytes.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = stream.read(&mut buf).expect("read the body");
        if n == 0 {
            break;
        }
        body_bytes.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&body_bytes).into_owned();
    let body = if chunked {
        let mut out = String::new();
        let mut t = rest.as_str();
        while let Some((size, r)) = t.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&r[..n]);
            t = &r[n + 2..];
        }
        out
    } else {
        rest
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A chromedriver with one headless Chromium session.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let chromedriver = find_program(&["chromedriver"]);
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1600,1000",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut driver = KillOnDrop(Some(driver));
        let (status, body) = http_json(
            addr,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args}
            }}})),
        );
        assert_eq!(status, 200, "no browser session: {body}");
        let session = body["value"]["sessionId"].as_str().unwrap().to_owned();
        Self {
            driver: driver.0.take().expect("still owned"),
            addr,
            session,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, tail: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{tail}", self.session);
        let (status, reply) = http_json(self.addr, method, &path, body);
        assert_eq!(status, 200, "{method} {tail}: {reply}");
        reply["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    fn js(&self, script: &str, args: &[Value]) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{css}`: {v}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(&json!({})));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        );
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits until `condition` (a JS expression) is truthy; returns its value.
    fn wait(&self, condition: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let v = self.js(&format!("return ({condition}) || null;"), &[]);
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn screenshot(&self, name: &str) {
        let png = self.cmd("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = workspace_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http_json(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Kills a child process that has not been handed on yet.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn keelson(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(KEELSON)
        .current_dir(dir)
        .args(args)
        .env_remove("KEELSON_CONFIG")
        .env_remove("KEELSON_MASTER_KEY")
        .env_remove("KEELSON_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("keelson runs");
    assert!(
        out.status.success(),
        "keelson {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sign_in(b: &Browser, base: &str, token: &str) {
    b.go(&format!("{base}/signin"));
    b.type_into("#token", token);
    b.click("form button[type=submit]");
    b.wait(
        "location.pathname === '/issues'",
        "the queue after signing in",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_works_the_queue_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let sim = support::demo_simulator(dir.path()).await;
    let creds = sim.credentials();
    let admin = keelson(
        dir.path(),
        &["token", "create", "--role", "admin", "--name", "ana"],
    )
    .trim()
    .to_owned();
    let viewer = keelson(
        dir.path(),
        &["token", "create", "--role", "viewer", "--name", "vic"],
    )
    .trim()
    .to_owned();
    let served = support::serve(dir.path());
    let base = served.base.clone();
    let (sim_login, sim_arm) = (sim.login_url(), sim.management_url());
    let db = dir.path().join("state/keelson.db");
    let flow_db = db.clone();

    let flow = tokio::task::spawn_blocking(move || {
        let b = Browser::start();
        sign_in(&b, &base, &admin);

        // Connectors > Registry > Azure Container Registry: the form from the settings spec.
        b.go(&format!("{base}/connectors"));
        b.click(&format!(".card.plugin[data-plugin=\"{PLUGIN}\"]"));
        b.wait(
            "document.querySelector('#connect-form')",
            "the connection form",
        );
        b.click("[data-action=instructions]");
        b.wait(
            "!document.querySelector('#instructions').hidden && document.querySelector('#instructions').innerText.length > 40",
            "the connection instructions",
        );
        b.type_into("#f-name", "prod");
        b.type_into("[name=tenant_id]", &creds.tenant_id);
        b.type_into("[name=client_id]", &creds.client_id);
        b.type_into("[name=subscription_id]", &creds.subscription_id);
        b.click("select[name=cloud] option[value=custom]");
        b.wait(
            "!document.querySelector('[data-field=authority_host]').hidden",
            "the custom cloud fields",
        );
        b.type_into("[name=authority_host]", &sim_login);
        b.type_into("[name=resource_manager_endpoint]", &sim_arm);
        b.type_into("[name=client_secret]", "not-the-secret");
        b.js("window.scrollTo(0, 0); return null;", &[]);
        b.screenshot("connector-form.png");
        b.click("#connect-form button[type=submit]");
        let error = b.wait(
            "document.querySelector('#connect-error').innerText",
            "the bad secret's error in place",
        );
        let error = error.as_str().unwrap().to_owned();
        assert!(error.contains("not saved"), "{error}");
        assert!(
            !error.contains("not-the-secret"),
            "the secret is not echoed"
        );
        b.type_into("[name=client_secret]", &creds.client_secret);
        b.click("#connect-form button[type=submit]");
        b.wait(
            "location.pathname === '/connections/prod'",
            "the new connection's page",
        );

        // Verify connectivity: a green check.
        b.click("[data-action=verify]");
        b.wait(
            "document.querySelector('#verify-result.ok')",
            "verification",
        );
        assert!(b.text("#verify-result").starts_with('✔'));

        // The gear: what scans stored (nothing yet), then the tree listed live through the
        // plugin, which is an operator's button; untick one repository and save.
        b.click("[data-action=locations]");
        b.wait(
            "document.querySelector('#locations [data-source=stored]')",
            "the stored locations",
        );
        b.click("#locations [data-action=locations-live]");
        b.wait(
            "document.querySelector('#locations [data-source=live]') && document.querySelectorAll('#locations input.repo').length > 1",
            "the locations tree listed live",
        );
        let unticked = b.js(
            "const r = document.querySelector('#locations input.repo'); r.click(); return r.dataset.registry + '/' + r.dataset.repository;",
            &[],
        );
        b.click("[data-action=save-locations]");
        b.wait(
            "document.querySelector('#locations-note').innerText.includes('Saved')",
            "saving locations",
        );

        // Scan now, with live progress, until the run history shows it complete.
        b.click("[data-action=scan]");
        b.wait(
            "!document.querySelector('#scan-progress').hidden",
            "scan progress",
        );
        b.wait(
            "document.querySelector('#runs tr[data-status=complete]')",
            "a complete run",
        );
        b.click("[data-action=locations]");
        b.wait(
            "document.querySelector('#locations [data-source=stored]') && document.querySelectorAll('#locations input.repo').length > 1",
            "the locations tree again, as the scan stored it",
        );
        b.screenshot("connection.png");
        b.go(&format!("{base}/connectors"));
        b.screenshot("connectors.png");

        // A run that reads every registry and reports nothing would resolve the whole queue:
        // it is held, and the queue says so with an Accept button.
        let held = hold_everything(&flow_db);
        b.go(&format!("{base}/issues"));
        b.wait(
            &format!(
                "document.querySelector('.banner[data-status=held] [data-action=accept-run][data-run=\"{held}\"]')"
            ),
            "the held run's banner with its Accept button",
        );
        assert!(
            b.text(".banner[data-status=held]")
                .contains("is held, nothing was resolved: would resolve"),
            "{}",
            b.text(".banner[data-status=held]")
        );
        b.screenshot("held.png");

        // Active issues: filter by source tool, then severity.
        b.click(&format!(
            "select[name=source_tool] option[value=\"{TOOL}\"]"
        ));
        b.wait(
            "location.search.includes('source_tool=Azure')",
            "the source tool filter",
        );
        b.click("select[name=severity] option[value=critical]");
        b.wait(
            "location.search.includes('severity=critical')",
            "the severity filter",
        );
        let rows = b.js(
            "return Array.from(document.querySelectorAll('tr.issue-row')).map(r => r.cells[0].innerText.trim().toLowerCase());",
            &[],
        );
        let rows: Vec<String> = serde_json::from_value(rows).unwrap();
        assert!(!rows.is_empty(), "the demo tenant has critical issues");
        assert!(rows.iter().all(|s| s == "critical"), "{rows:?}");

        // Sorting is a link to the server's order, keeping the filters.
        b.click("th[data-sort-key=images] a");
        b.wait(
            "new URLSearchParams(location.search).get('sort') === '-images'",
            "the queue sorted by images",
        );
        assert!(
            b.js("return location.search;", &[])
                .as_str()
                .unwrap()
                .contains("severity=critical")
        );
        let images = b.js(
            "return Array.from(document.querySelectorAll('tr.issue-row')).map(r => Number(r.cells[5].innerText));",
            &[],
        );
        let images: Vec<u64> = serde_json::from_value(images).unwrap();
        assert_eq!(images.len(), rows.len(), "the same issues");
        assert!(images.windows(2).all(|w| w[0] >= w[1]), "{images:?}");

        // Open the first issue and read its factors; suppress it.
        b.click("tr.issue-row");
        b.wait(
            "document.querySelectorAll('#factors li').length > 0",
            "the detail panel",
        );
        let factors = b.text("#factors");
        assert!(factors.contains("rates it critical"), "{factors}");
        let issue_id: i64 = b
            .js(
                "return Number(document.querySelector('#panel .panel-head').dataset.issue);",
                &[],
            )
            .as_i64()
            .unwrap();
        b.screenshot("issues.png");
        b.type_into("#s-reason", "not reachable: the package is never loaded");
        b.click("#suppress-form button[type=submit]");
        b.wait(
            "document.querySelector('.suppressed-note')",
            "the suppression",
        );
        assert!(b.text(".suppressed-note").contains("token:ana"));

        // A viewer: configuring is refused on the page and by the API behind it.
        b.click("[data-action=signout]");
        b.wait("location.pathname === '/signin'", "signing out");
        sign_in(&b, &base, &viewer);
        b.go(&format!("{base}/connectors/{PLUGIN}"));
        assert!(b.text(".refused").contains("cannot configure connectors"));
        assert_eq!(
            b.js(
                "return document.querySelector('#connect-form fieldset').disabled;",
                &[]
            ),
            json!(true)
        );
        let status = b.cmd(
            "POST",
            "/execute/async",
            Some(&json!({
                "script": "const done = arguments[0]; fetch('/api/v1/connections/prod/locations', {method: 'PUT', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}, body: JSON.stringify({rules: []})}).then(r => r.json().then(j => done([r.status, j.error.code])));",
                "args": []
            })),
        );
        assert_eq!(status, json!([403, "forbidden"]));
        b.go(&format!("{base}/issues"));
        assert_eq!(
            b.js(
                "return [!!document.querySelector('.banner[data-status=held]'), !!document.querySelector('[data-action=accept-run]')];",
                &[]
            ),
            json!([true, false]),
            "a viewer sees the held run but no Accept button"
        );
        b.go(&format!("{base}/connections/prod"));
        assert_eq!(
            b.js(
                "return [document.querySelector('[data-action=scan]').disabled, document.querySelector('[data-action=delete-connection]').disabled];",
                &[]
            ),
            json!([true, true])
        );

        // The admin deletes the connection, confirming the question first.
        b.click("[data-action=signout]");
        b.wait("location.pathname === '/signin'", "signing out");
        sign_in(&b, &base, &admin);
        let selection = b.cmd(
            "POST",
            "/execute/async",
            Some(&json!({
                "script": "const done = arguments[0]; fetch('/api/v1/connections/prod').then(r => r.json()).then(j => done(j.selection));",
                "args": []
            })),
        );
        // The admin accepts the held run, confirming first: the banner goes.
        b.go(&format!("{base}/issues"));
        b.click("[data-action=accept-run]");
        let question = b.cmd("GET", "/alert/text", None);
        assert!(
            question
                .as_str()
                .unwrap()
                .contains(&format!("Accept run {held}")),
            "{question}"
        );
        b.cmd("POST", "/alert/accept", Some(&json!({})));
        b.wait(
            "document.readyState === 'complete' && document.querySelector('#data-as-of') && !document.querySelector('.banner[data-status=held]')",
            "the queue without the held banner",
        );
        b.go(&format!("{base}/connections/prod"));
        b.click("[data-action=delete-connection]");
        let question = b.cmd("GET", "/alert/text", None);
        assert!(
            question.as_str().unwrap().contains("Delete connection"),
            "{question}"
        );
        b.cmd("POST", "/alert/accept", Some(&json!({})));
        b.wait("location.pathname === '/connectors'", "the connectors page");
        assert_eq!(
            b.js(
                "return document.querySelector('a[href=\"/connections/prod\"]');",
                &[]
            ),
            Value::Null,
            "prod is no longer listed"
        );
        (unticked.as_str().unwrap().to_owned(), issue_id, selection)
    });
    let result = flow.await;
    let (unticked, issue_id, selection) = match result {
        Ok(v) => v,
        Err(err) => {
            let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
            panic!("browser flow failed: {err}\n--- keelson serve log ---\n{log}");
        }
    };

    // What the page did is in the store, with the actor.
    let selection: Vec<keelson_store::SelectionRule> = serde_json::from_value(selection).unwrap();
    assert!(
        selection.iter().all(|r| r.pattern != unticked),
        "the unticked repository is not selected: {selection:?}"
    );
    assert!(!selection.is_empty());
    let store = Store::open(&db).unwrap();
    assert!(store.connection("prod").unwrap().is_none(), "deleted");
    assert!(store.connections().unwrap().is_empty());
    let issue = store
        .issue(keelson_store::IssueId(issue_id))
        .unwrap()
        .unwrap();
    assert_eq!(issue.issue.status, IssueStatus::Suppressed);
    assert_eq!(issue.suppression.unwrap().actor, "token:ana");
    let open_critical = store
        .issues(&IssueFilter {
            source_tool: Some(TOOL.into()),
            severities: vec![keelson_core::Severity::Critical],
            statuses: vec![IssueStatus::Open],
            ..IssueFilter::default()
        })
        .unwrap();
    assert!(open_critical.iter().all(|i| i.id.0 != issue_id));
    let kinds: Vec<String> = store
        .events_by_actor("token:ana", 50)
        .unwrap()
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    for kind in [
        "signed-in",
        "connection-saved",
        "connection-verified",
        "selection-changed",
        "scan-requested",
        "suppressed",
        "run-accepted",
        "connection-retired",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "`{kind}` by token:ana is in the log: {kinds:?}"
        );
    }
    drop(store);
    drop(served);

    // The command line: nothing left to scan; a declared connection is deleted in plugins.toml.
    assert!(keelson(dir.path(), &["scan", "--all"]).contains("no connections to scan"));
    let config = dir.path().join("plugins.toml");
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "\n[[connection]]\nname = \"declared\"\nplugin = \"{PLUGIN}\"\nsettings = {{ tenant_id = \"t\" }}\n"
        );
    std::fs::write(&config, text).unwrap();
    let refused = keelson_fails(dir.path(), &["disconnect", "declared"]);
    assert!(
        refused.contains("is declared in") && refused.contains("remove its `[[connection]]` there"),
        "{refused}"
    );
    let gone = keelson_fails(dir.path(), &["disconnect", "prod"]);
    assert!(gone.contains("no connection named `prod`"), "{gone}");
    drop(sim);
}

/// Ends a run of `prod` that read every registry of its last run completely and reported
/// nothing, which the drop guard holds; its id.
fn hold_everything(db: &Path) -> keelson_store::RunId {
    let mut store = Store::open(db).unwrap();
    let last = store.runs(Some("prod"), 1).unwrap().remove(0);
    let registries: Vec<String> = last
        .coverage
        .expect("the last run recorded its coverage")
        .registries
        .into_iter()
        .map(|r| r.registry)
        .collect();
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    let info = store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&registries),
            &ResolveGuard::default(),
            &|_, _| true,
        )
        .unwrap();
    assert_eq!(info.status, RunStatus::Held, "{info:?}");
    info.id
}

/// Runs keelson expecting it to fail; its stderr.
fn keelson_fails(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(KEELSON)
        .current_dir(dir)
        .args(args)
        .env_remove("KEELSON_CONFIG")
        .env_remove("KEELSON_MASTER_KEY")
        .env_remove("KEELSON_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("keelson runs");
    assert!(!out.status.success(), "keelson {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}
