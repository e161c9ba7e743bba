//! What a plugin author runs: `keelson plugins test` on the template connector (Rust, the SDK)
//! and on the Python connector (componentize-py), each against a loopback HTTPS server that
//! serves the JSON its connector reads; the Python connector's findings are also checked
//! against the feed it was served. A deliberately broken fixture must fail the runner.
//!
//! Needs the plugins built: `cargo build --release --target wasm32-wasip2` in `plugins/` and
//! `plugins/json-feed-py/build.sh` (both done by `scripts/test`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use keelson_config::{PluginId, PluginLimits, PluginSpec};
use keelson_core::{HostPattern, KeyValue, ScanScope};
use keelson_runtime::{BoundSecret, PageRequest, Runtime, RuntimeSettings};

mod support;

use support::JsonServer;

const TOKEN: &str = "test-token-not-a-secret";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache_dir() -> PathBuf {
    workspace_root().join("target/keelson-test-cache")
}

fn built(relative: &str, how: &str) -> PathBuf {
    let path = workspace_root().join(relative);
    assert!(path.is_file(), "`{}` is missing: {how}", path.display());
    std::path::absolute(path).expect("absolute path")
}

fn rust_plugin(file: &str) -> PathBuf {
    built(
        &format!("plugins/target/wasm32-wasip2/release/{file}"),
        "build the plugins first (`cargo build --release --target wasm32-wasip2` in `plugins/`)",
    )
}

fn authorised(auth: Option<&str>) -> bool {
    auth == Some(&format!("Bearer {TOKEN}"))
}

/// The template's API: four repositories, paged by name, and a few images each.
fn template_api(method: &str, target: &str, auth: Option<&str>) -> (u16, String) {
    const REPOS: [&str; 4] = ["alpha", "beta/one", "beta/two", "gamma"];
    if method != "GET" {
        return (405, "{}".into());
    }
    if !authorised(auth) {
        return (401, r#"{"error":"unauthorized"}"#.into());
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.replace("%2F", "/"))
    };
    if path == "/api/whoami" {
        return (200, r#"{"account":"acme"}"#.into());
    }
    if path == "/api/repositories" {
        let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
        let after = param("after").unwrap_or_default();
        let rest: Vec<&str> = REPOS
            .iter()
            .copied()
            .filter(|r| *r > after.as_str())
            .collect();
        let page: Vec<&str> = rest.iter().copied().take(limit).collect();
        let body = serde_json::json!({ "repositories": page, "more": rest.len() > limit });
        return (200, body.to_string());
    }
    if let Some(repo) = path
        .strip_prefix("/api/repositories/")
        .and_then(|p| p.strip_suffix("/images"))
    {
        let repo = repo.replace("%2F", "/");
        let Some(index) = REPOS.iter().position(|r| *r == repo) else {
            return (404, r#"{"error":"no such repository"}"#.into());
        };
        let images: Vec<_> = (0..=index)
            .map(|i| {
                serde_json::json!({
                    "digest": format!("sha256:{}", format!("{index}{i}").repeat(32)),
                    "tags": [format!("v{i}")],
                })
            })
            .collect();
        return (200, serde_json::json!({ "images": images }).to_string());
    }
    (404, "{}".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_connector_passes_conformance() {
    let server = JsonServer::start("template.test", Arc::new(template_api)).await;
    let out = server.conformance(
        &cache_dir(),
        &rust_plugin("template_connector.wasm"),
        &[("url", server.base()), ("token", TOKEN.to_owned())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "describe",
        "error-missing-setting",
        "error-wrong-secret",
        "paging-terminates",
        "limits-respected",
        "paging-stable",
        "cursor-foreign",
        "cursor-tampered",
        "cursor-replay",
        "grants-respected",
        "grants-denial-typed",
    ] {
        assert!(
            stdout.contains(&format!("PASS {check}:")),
            "{check}:\n{stdout}"
        );
    }
    // Four repositories over pages of three; images of the first three (1 + 2 + 3).
    assert!(
        stdout.contains("1 registries, 4 repositories, 6 images, 0 findings"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_breaks_the_contract_fails_the_runner() {
    // The hostile fixture misbehaves on purpose (it accepts any cursor); the runner must say so
    // and fail.
    let server = JsonServer::start("hostile.test", Arc::new(template_api)).await;
    let out = server.conformance(&cache_dir(), &rust_plugin("hostile.wasm"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL cursor-foreign:"), "{stdout}");
    assert!(stdout.contains("conformance: "), "{stdout}");

    // A component built against a contract version the host does not speak stops at `load`,
    // with the error the docs quote.
    let out = server.conformance(&cache_dir(), &rust_plugin("future_version.wasm"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL load: plugin `future-version` targets `keelson:registry@9.0.0`, but this host supports `keelson:registry@0.2.0` (it accepts `0.2.x` up to `0.2.0` and `0.1.x` up to `0.1.0`); rebuild the plugin against `0.2.0`"),
        "{stdout}"
    );
}

/// A feed of five findings over two registries.
fn feed() -> serde_json::Value {
    let row = |registry: &str, repository: &str, d: u8, id: &str, severity: &str| {
        serde_json::json!({
            "registry": registry,
            "repository": repository,
            "digest": format!("sha256:{}", format!("{d:02x}").repeat(32)),
            "vulnerability_id": id,
            "severity": severity,
            "package": "openssl",
            "installed_version": "3.0.1",
            "fixed_version": "3.0.2",
        })
    };
    serde_json::json!({ "findings": [
        row("a.example", "team/app", 1, "CVE-2024-0001", "high"),
        row("a.example", "team/app", 1, "CVE-2024-0002", "critical"),
        row("a.example", "team/app", 2, "CVE-2024-0001", "high"),
        row("a.example", "tools", 3, "CVE-2023-9999", "low"),
        row("b.example", "web", 4, "CVE-2024-0003", "medium"),
    ]})
}

fn feed_api(method: &str, target: &str, auth: Option<&str>) -> (u16, String) {
    match (method, target) {
        _ if !authorised(auth) => (401, r#"{"error":"unauthorized"}"#.into()),
        ("GET", "/feed.json") => (200, feed().to_string()),
        ("GET", "/truncated.json") => (200, r#"{"findings": [{"registry": "a.exa"#.into()),
        _ => (404, "{}".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_connector_passes_conformance_and_reports_the_feed() {
    let component = built(
        "target/json-feed-py/json_feed.wasm",
        "build it first (`plugins/json-feed-py/build.sh`)",
    );
    let server = JsonServer::start("feed.test", Arc::new(feed_api)).await;
    let url = format!("{}/feed.json", server.base());
    let out = server.conformance(
        &cache_dir(),
        &component,
        &[("url", url.clone()), ("token", TOKEN.to_owned())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PASS error-wrong-secret:"), "{stdout}");
    assert!(stdout.contains("PASS cursor-tampered:"), "{stdout}");
    assert!(stdout.contains("PASS grants-denial-typed:"), "{stdout}");
    assert!(
        stdout.contains("2 registries, 3 repositories, 4 images, 5 findings"),
        "{stdout}"
    );

    // The same host, sandbox and grants as a scan: the findings are the feed's, exactly.
    let egress = keelson_http::Egress::new(keelson_http::EgressSettings {
        extra_ca_certs_pem: vec![std::fs::read(server.ca_file.path()).unwrap()],
        resolve: vec![keelson_http::ResolvePin {
            name: server.host.clone(),
            addrs: vec![Ipv4Addr::LOCALHOST.into()],
        }],
        ..keelson_http::EgressSettings::default()
    })
    .unwrap();
    let runtime = Runtime::new(RuntimeSettings::new(cache_dir()), egress).unwrap();
    let grant = HostPattern::parse(&server.base()).unwrap();
    let plugin = runtime
        .load(&PluginSpec {
            id: PluginId::new("json-feed").unwrap(),
            path: component,
            sha256: None,
            allowed_hosts: vec![grant.clone()],
            limits: PluginLimits::default(),
            enabled: true,
            allow_plaintext_secrets: false,
            secret_hosts: std::collections::BTreeMap::new(),
        })
        .await
        .expect("the Python connector loads");
    assert_eq!(plugin.wit_version(), "0.2.0");
    assert!(plugin.seals_secrets(), "the feed token reaches it sealed");
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        value: v.to_owned(),
    };
    let mut conn = plugin
        .connect(
            "py",
            vec![kv("url", &url)],
            vec![BoundSecret {
                name: "token".to_owned(),
                value: TOKEN.to_owned(),
                allowed_hosts: vec![grant.clone()],
            }],
        )
        .await
        .expect("connects");
    let mut got = BTreeSet::new();
    let mut request = PageRequest::first(2);
    loop {
        let page = conn
            .list_findings(
                &ScanScope {
                    registries: vec!["a.example".to_owned()],
                },
                request,
            )
            .await
            .expect("a page of findings");
        for f in page.items {
            got.insert((
                f.image.repository,
                f.image.digest[7..9].to_owned(),
                f.vulnerability_id,
                format!("{:?}", f.severity),
            ));
        }
        match page.next {
            Some(next) => request = PageRequest::after(next, 2),
            None => break,
        }
    }
    let want: BTreeSet<_> = [
        ("team/app", "01", "CVE-2024-0001", "High"),
        ("team/app", "01", "CVE-2024-0002", "Critical"),
        ("team/app", "02", "CVE-2024-0001", "High"),
        ("tools", "03", "CVE-2023-9999", "Low"),
    ]
    .into_iter()
    .map(|(r, d, v, s)| (r.to_owned(), d.to_owned(), v.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(got, want);

    // A truncated feed and a missing one are typed errors, not traps.
    for (path, kind) in [
        ("/truncated.json", "unavailable"),
        ("/gone.json", "not-found"),
    ] {
        let url = format!("{}{path}", server.base());
        let mut conn = plugin
            .connect(
                "py-bad",
                vec![kv("url", &url)],
                vec![BoundSecret {
                    name: "token".to_owned(),
                    value: TOKEN.to_owned(),
                    allowed_hosts: vec![grant.clone()],
                }],
            )
            .await
            .expect("connects");
        match conn.verify().await {
            Err(keelson_runtime::Error::Connector { source, .. }) => {
                assert_eq!(source.kind(), kind, "{path}: {source}");
            }
            other => panic!("{path}: expected a typed error, got {other:?}"),
        }
    }
}

#[test]
fn the_acr_connector_passes_conformance_against_the_simulator() {
    let out = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args(["plugins", "test"])
        .arg(rust_plugin("azure_container_registry.wasm"))
        .args(["--against", "simulator", "--cache-dir"])
        .arg(cache_dir())
        .env_remove("KEELSON_CONFIG")
        .output()
        .expect("keelson runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(passed >= 17, "{stdout}");
    assert!(
        stdout
            .contains("PASS error-wrong-secret: a wrong `client_secret` gives invalid-credentials"),
        "{stdout}"
    );
    assert!(stdout.contains("conformance: all"), "{stdout}");
}
