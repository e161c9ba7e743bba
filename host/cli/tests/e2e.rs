//! The real `keelson` binary against the Azure simulator over loopback TLS: connect, verify,
//! locations, scan, the queue against the ground truth, resolution on a second scan, nothing
//! resolved by a failing third; concurrent scans refused (T31); the secret never leaks (T37);
//! kill -9 at random moments (T29, binary level).
//!
//! Needs the ACR connector built: `cargo build --release --target wasm32-wasip2` in `plugins/`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use azure_sim::FaultSpec;
use keelson_store::{IssueFilter, RunStatus, Store};
use support::ACR_PLUGIN as PLUGIN;
use support::env::{
    Env, SECRET_VAR, connected_env, contains, queue_of, truth_findings, truth_queue,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_verify_select_scan_resolve_and_fail_safely() {
    let mut env = Env::start().await;
    let canary_bad = "CANARY-wrong-secret-4f1d";

    // A wrong secret is refused, says which value to fix, and saves nothing.
    let refused = env.connect(
        "prod",
        "env:KEELSON_E2E_WRONG",
        &[("KEELSON_E2E_WRONG", canary_bad)],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("connection `prod` was not saved"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`client_secret`"),
        "names the value to fix: {stderr}"
    );
    assert!(stderr.contains("AADSTS7000215"), "{stderr}");
    let none = env.run(&["verify", "prod"]);
    assert!(!none.status.success(), "nothing was saved");
    assert!(String::from_utf8_lossy(&none.stdout).contains("no connection named `prod`"));

    // A secret given on the command line is refused outright.
    let plain = env.run(&[
        "connect",
        PLUGIN,
        "--name",
        "prod",
        "--set",
        "client_secret=oops",
    ]);
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("setting `client_secret` is secret"));

    // The right secret is verified and saved, encrypted.
    let saved = env.connect("prod", &format!("env:{SECRET_VAR}"), &[]);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    assert!(String::from_utf8_lossy(&saved.stdout).contains("✔ connection `prod` saved"));
    assert!(
        !contains(&env.database_bytes(), &env.secret()),
        "the secret is stored encrypted"
    );
    let key = env.dir.path().join("state/master.key");
    assert!(
        key.is_file(),
        "a master key file is created beside the database"
    );

    let verified = env.ok(&["verify", "prod"]);
    assert!(verified.contains("✔ `prod` can connect"), "{verified}");

    // Narrow to one registry by a glob.
    let listed = env.ok(&["locations", "prod", "--select", "contosoprod*", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let states: BTreeMap<String, String> = listed["registries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states.len(), 3, "{states:?}");
    for (name, state) in &states {
        let expected = if name.starts_with("contosoprod.") {
            "selected"
        } else {
            "deselected"
        };
        assert_eq!(state, expected, "{name}");
    }

    // First scan: the queue equals the ground truth of the selected registry.
    let (ok, first) = env.scan_json("prod", &[]);
    assert!(ok, "{first}");
    assert_eq!(first["run"]["status"], "complete");
    assert_eq!(first["registries_selected"], 1);
    assert_eq!(first["covered"].as_array().unwrap().len(), 1);
    let before = truth_findings(&env.sim, "contosoprod.");
    assert!(!before.is_empty());
    assert_eq!(first["run"]["findings_new"], before.len());
    assert_eq!(
        queue_of(&env.issues("open")),
        truth_queue(&env.sim, "contosoprod.")
    );

    // The tenant changes: findings fixed, images deleted. The second scan resolves exactly those.
    assert!(env.sim.fix_findings(0.3) > 0);
    assert!(env.sim.remove_images(0.2) > 0);
    let after = truth_findings(&env.sim, "contosoprod.");
    let gone: BTreeSet<_> = before.difference(&after).collect();
    assert!(
        !gone.is_empty(),
        "the mutation touched the selected registry"
    );
    let (ok, second) = env.scan_json("prod", &[]);
    assert!(ok, "{second}");
    assert_eq!(second["run"]["status"], "complete");
    assert_eq!(second["run"]["findings_resolved"], gone.len());
    assert_eq!(
        second["run"]["findings_new"],
        after.difference(&before).count()
    );
    assert_eq!(
        queue_of(&env.issues("open")),
        truth_queue(&env.sim, "contosoprod.")
    );
    let resolved = env.issues("resolved");
    assert!(!resolved.is_empty());
    for issue in &resolved {
        let key = (
            issue["registry"].as_str().unwrap().to_owned(),
            issue["repository"].as_str().unwrap().to_owned(),
            issue["vulnerability_id"].as_str().unwrap().to_owned(),
            issue["package"].as_str().unwrap().to_owned(),
        );
        assert!(
            !truth_queue(&env.sim, "contosoprod.").contains_key(&key),
            "{key:?} is resolved but still open in the tenant"
        );
    }

    // Third scan reads the inventory but not the findings (their paging loops): partial, and
    // with no complete findings listing it resolves nothing.
    let open_before = queue_of(&env.issues("open"));
    assert!(env.sim.fix_findings(0.5) > 0);
    env.sim.set_faults(FaultSpec {
        repeat_page_token: true,
        ..FaultSpec::default()
    });
    let (ok, third) = env.scan_json("prod", &["--page-size", "2"]);
    assert!(!ok, "a partial scan exits non-zero");
    assert_eq!(third["run"]["status"], "partial", "{third}");
    assert!(third["coverage"]["findings"].is_string(), "{third}");
    assert_eq!(third["run"]["findings_resolved"], 0);
    assert!(third["covered"].as_array().unwrap().is_empty());
    assert!(
        third["images"].as_u64().unwrap() > 0,
        "it failed after reading the inventory: {third}"
    );
    assert_eq!(
        queue_of(&env.issues("open")),
        open_before,
        "nothing resolved, nothing lost"
    );
    env.sim.set_faults(FaultSpec::default());

    // The issue view shows everything, the CSV is formula-safe, the table is there.
    let id = env.issues("open")[0]["id"].as_i64().unwrap().to_string();
    let shown = env.ok(&["issue", "show", &id]);
    assert!(
        shown.contains("history:") && shown.contains("images ("),
        "{shown}"
    );
    let csv = env.ok(&["issues", "--format", "csv"]);
    assert!(csv.starts_with("id,source_tool,registry,repository,vulnerability_id"));
    assert_eq!(csv.lines().count(), open_before.len() + 1);

    // T37: the secrets never appear in any output, log line or the database, nor in what the
    // API and the pages show of the runs (the failed ones' errors included) and the queue.
    let token = env
        .ok(&["token", "create", "--role", "viewer", "--name", "t37"])
        .trim()
        .to_owned();
    let served = support::serve(env.dir.path());
    let mut shown = String::new();
    for path in [
        "/api/v1/connections/prod/runs",
        "/api/v1/connections",
        "/api/v1/issues?limit=500",
        "/connections/prod",
        "/issues",
        "/connectors",
    ] {
        let (status, body) = support::http_get(&served, path, &token);
        assert_eq!(status, 200, "{path}: {body}");
        shown.push_str(&body);
    }
    drop(served);
    assert!(
        shown.contains("listing findings failed"),
        "the third run's plugin error is among what was shown"
    );
    let db = env.database_bytes();
    for canary in [env.secret(), canary_bad.to_owned()] {
        assert!(
            !env.transcript.contains(&canary),
            "a secret leaked into output or logs"
        );
        assert!(!contains(&db, &canary), "a secret leaked into the database");
        assert!(
            !shown.contains(&canary),
            "a secret leaked into the API or a page"
        );
    }
    env.sim.shutdown().await;
}

/// Starts `keelson scan` with tiny pages (slow against the simulator's throttling).
fn spawn_slow_scan(env: &Env, name: &str) -> std::process::Child {
    env.command(&["scan", name, "--page-size", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("keelson starts")
}

fn wait_for_running(db: &Path, name: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(store) = Store::open(db)
            && store
                .runs(Some(name), 1)
                .is_ok_and(|runs| runs.first().is_some_and(|r| r.status == RunStatus::Running))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_scan_of_a_running_connection_is_refused() {
    let mut env = connected_env().await;
    let mut first = spawn_slow_scan(&env, "prod");
    assert!(
        wait_for_running(&env.database(), "prod"),
        "the first scan started"
    );
    let second = env.run(&["scan", "prod"]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stdout) + String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("a scan of connection `prod` is already running"),
        "{stderr}"
    );
    let status = tokio::task::spawn_blocking(move || first.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the first scan finished normally");
    let store = Store::open(env.database()).unwrap();
    let runs = store.runs(Some("prod"), 10).unwrap();
    assert_eq!(runs.len(), 1, "the refused scan recorded no run");
    assert_eq!(runs[0].status, RunStatus::Complete);
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_at_random_moments_loses_nothing() {
    let iterations: u32 = 10;
    let mut env = connected_env().await;
    for i in 0..iterations {
        let mut child = spawn_slow_scan(&env, "prod");
        assert!(
            wait_for_running(&env.database(), "prod"),
            "scan {i} started"
        );
        let wait = Duration::from_millis(rand::random_range(0..2500));
        tokio::time::sleep(wait).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();

        let store = Store::open(env.database()).expect("the store opens after a kill");
        assert_eq!(
            store.integrity_check().unwrap(),
            vec!["ok".to_owned()],
            "iteration {i}"
        );
        for run in store.runs(Some("prod"), 100).unwrap() {
            assert!(
                matches!(run.status, RunStatus::Complete | RunStatus::Interrupted),
                "iteration {i}: run {} is {}",
                run.id,
                run.status
            );
        }
        let resolved = store
            .issues(&IssueFilter {
                statuses: vec![keelson_store::IssueStatus::Resolved],
                ..IssueFilter::default()
            })
            .unwrap();
        assert!(
            resolved.is_empty(),
            "iteration {i}: nothing changed in the tenant, nothing may resolve"
        );
    }
    // A full scan afterwards: the queue is exactly the ground truth, nothing lost or duplicated.
    let (ok, summary) = env.scan_json("prod", &[]);
    assert!(ok, "{summary}");
    assert_eq!(summary["run"]["findings_resolved"], 0);
    assert_eq!(queue_of(&env.issues("open")), truth_queue(&env.sim, ""));
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_a_scan_cleanly_and_resolves_nothing() {
    let mut env = connected_env().await;
    let (ok, first) = env.scan_json("prod", &[]);
    assert!(ok, "{first}");
    let open_before = queue_of(&env.issues("open"));
    assert!(
        env.sim.fix_findings(0.5) > 0,
        "a complete scan would now resolve some"
    );

    let child = spawn_slow_scan(&env, "prod");
    assert!(wait_for_running(&env.database(), "prod"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success(), "a cancelled scan exits non-zero");

    let store = Store::open(env.database()).unwrap();
    let last = store.runs(Some("prod"), 1).unwrap().remove(0);
    assert_eq!(last.status, RunStatus::Cancelled);
    assert_eq!(last.findings_resolved, 0);
    drop(store);
    assert_eq!(queue_of(&env.issues("open")), open_before);
    env.sim.shutdown().await;
}
