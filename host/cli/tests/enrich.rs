//! Enrichment end to end with the real binary on the simulator's demo tenant: the demo's
//! `[[application]]` rules re-prioritise issues on the first scan; importing the shipped KEV and
//! EPSS samples re-evaluates with events; the queue filters and its JSON fields; `issue show`
//! explains; `compliance`, `suppress`/`unsuppress` and `priority` work.
//!
//! Needs the ACR connector built: `cargo build --release --target wasm32-wasip2` in `plugins/`.

mod support;

use std::process::{Command, Stdio};

use azure_sim::SimHandle;
use serde_json::Value;
use support::{ACR_PLUGIN as PLUGIN, demo_simulator, workspace_root};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const SECRET_VAR: &str = "KEELSON_ENRICH_CLIENT_SECRET";

struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = demo_simulator(dir.path()).await;
        let applications = std::fs::read_to_string(
            workspace_root().join("tests/azure-sim/demo-applications.toml"),
        )
        .expect("the demo's application rules");
        // The demo's plugins.toml, plus a compliance mapping and the demo's application rules.
        let demo =
            std::fs::read_to_string(dir.path().join("plugins.toml")).expect("read plugins.toml");
        let config = format!(
            r#"{demo}
[[compliance]]
framework = "SOC 2"
control = "CC7.1"
title = "Detect and monitor new vulnerabilities"
applications = ["payments"]

{applications}"#
        );
        std::fs::write(dir.path().join("plugins.toml"), config).expect("write config");
        Self { sim, dir }
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let c = self.sim.credentials();
        let output = Command::new(KEELSON)
            .current_dir(self.dir.path())
            .args(args)
            .env_remove("KEELSON_CONFIG")
            .env_remove("KEELSON_MASTER_KEY")
            .env_remove("KEELSON_LOG")
            .env(SECRET_VAR, c.client_secret)
            .stdin(Stdio::null())
            .output()
            .expect("keelson runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "`keelson {}` failed:\n{out}\n{err}", args.join(" "));
        out
    }

    fn issues(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["issues", "--format", "json"];
        args.extend(extra);
        serde_json::from_str(&self.ok(&args)).expect("a JSON array")
    }

    fn connect_and_scan(&self) -> String {
        let c = self.sim.credentials();
        let mut args: Vec<String> = ["connect", PLUGIN, "--name", "contoso"]
            .map(String::from)
            .to_vec();
        for (k, v) in [
            ("tenant_id", c.tenant_id.clone()),
            ("client_id", c.client_id.clone()),
            ("subscription_id", c.subscription_id.clone()),
            ("cloud", "custom".to_owned()),
            ("authority_host", self.sim.login_url()),
            ("resource_manager_endpoint", self.sim.management_url()),
        ] {
            args.extend(["--set".to_owned(), format!("{k}={v}")]);
        }
        args.extend([
            "--secret".to_owned(),
            format!("client_secret=env:{SECRET_VAR}"),
        ]);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        self.ok(&["scan", "contoso"])
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

fn sample(name: &str) -> String {
    workspace_root()
        .join("host/enrich/tests/data")
        .join(name)
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tenant_is_reprioritised_explained_and_filterable() {
    let env = Env::start().await;
    let summary = env.connect_and_scan();
    assert!(summary.contains("re-prioritised"), "{summary}");

    // Out of the box: the applications alone move issues both ways.
    let queue = env.issues(&[]);
    assert!(queue.len() > 10, "{} issues", queue.len());
    for issue in &queue {
        for key in [
            "priority",
            "factors",
            "application",
            "team",
            "sla_due",
            "controls",
        ] {
            assert!(issue.get(key).is_some(), "`{key}` missing from {issue}");
        }
    }
    let moved = |q: &[Value], up: bool| -> usize {
        q.iter()
            .filter(|i| {
                let order = [
                    "unknown",
                    "informational",
                    "low",
                    "medium",
                    "high",
                    "critical",
                ];
                let at = |k: &str| order.iter().position(|l| *l == text(i, k)).unwrap();
                if up {
                    at("priority") > at("severity")
                } else {
                    at("priority") < at("severity")
                }
            })
            .count()
    };
    assert!(moved(&queue, true) >= 2, "storefront issues are raised");
    assert!(moved(&queue, false) >= 2, "dev-sandbox issues are lowered");
    let storefront = env.issues(&["--application", "storefront"]);
    assert!(!storefront.is_empty());
    assert!(storefront.iter().all(|i| text(i, "team") == "web"));
    assert!(
        storefront
            .iter()
            .all(|i| text(i, "repository").starts_with("web/"))
    );
    let unmapped = env.issues(&["--unmapped"]);
    assert!(!unmapped.is_empty() && unmapped.iter().all(|i| i["application"].is_null()));
    assert!(
        unmapped
            .iter()
            .all(|i| text(i, "repository") == "base/alpine")
    );
    let team = env.issues(&["--team", "platform"]);
    assert!(!team.is_empty() && team.iter().all(|i| text(i, "application") == "dev-sandbox"));
    let lowered = env.issues(&[
        "--team",
        "platform",
        "--priority",
        "informational,low,medium",
    ]);
    assert!(!lowered.is_empty());

    // Feeds: KEV raises, EPSS lowers, each change an event.
    let out = env.ok(&[
        "feeds",
        "import",
        &sample("kev-sample.json"),
        &sample("epss-sample.csv.gz"),
    ]);
    assert!(
        out.contains("CISA KEV catalog 2025.01.02: 5 entries"),
        "{out}"
    );
    assert!(
        out.contains("FIRST EPSS scores (model v2025.03.14"),
        "{out}"
    );
    let after = env.issues(&[]);
    let kev: Vec<&Value> = after
        .iter()
        .filter(|i| {
            i["factors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["id"] == "known-exploited")
        })
        .collect();
    assert!(!kev.is_empty(), "the demo has KEV-listed CVEs");
    assert!(
        kev.iter()
            .all(|i| ["high", "critical"].contains(&text(i, "priority").as_str()))
    );
    // KEV due dates are long past: those issues are breached.
    let breached = env.issues(&["--sla", "breached"]);
    assert!(!breached.is_empty());
    assert!(breached.iter().all(|i| i["sla_breached"] == true));

    // `issue show` explains the priority in sentences with evidence.
    let id = kev[0]["id"].to_string();
    let show = env.ok(&["issue", "show", &id]);
    assert!(show.contains("why "), "{show}");
    assert!(
        show.contains("Known Exploited Vulnerabilities catalog"),
        "{show}"
    );
    assert!(show.contains("evidence: CISA KEV:"), "{show}");
    assert!(
        show.contains("reprioritised"),
        "the history records the change:\n{show}"
    );

    // Compliance per framework and control, the operator's row included.
    let report = env.ok(&["compliance"]);
    for needle in [
        "NIST SP 800-53",
        "RA-5",
        "PCI DSS 4.0",
        "6.3.3",
        "11.3.1",
        "ISO/IEC 27001:2022",
        "A.8.8",
        "CIS Controls v8",
        "SOC 2",
        "CC7.1",
        "past SLA",
    ] {
        assert!(report.contains(needle), "`{needle}` missing:\n{report}");
    }
    let pci = env.issues(&["--control", "11.3.1"]);
    assert!(!pci.is_empty());
    assert!(
        pci.iter()
            .all(|i| ["high", "critical"].contains(&text(i, "priority").as_str()))
    );

    // Suppress a whole application, then lift it.
    let before = env.issues(&["--application", "legacy-billing"]).len();
    assert!(before > 0);
    let (ok, _, err) = env.run(&[
        "suppress",
        "--application",
        "legacy-billing",
        "--kind",
        "wont-fix",
    ]);
    assert!(
        !ok && err.contains("--justification"),
        "a justification is mandatory: {err}"
    );
    let out = env.ok(&[
        "suppress",
        "--application",
        "legacy-billing",
        "--kind",
        "wont-fix",
        "--justification",
        "retired in Q3",
    ]);
    assert!(out.contains("suppression rule 1"), "{out}");
    assert!(env.issues(&["--application", "legacy-billing"]).is_empty());
    assert!(env.ok(&["suppressions"]).contains("retired in Q3"));
    env.ok(&["unsuppress", "--rule", "1"]);
    assert_eq!(
        env.issues(&["--application", "legacy-billing"]).len(),
        before
    );

    // A manual priority wins and says who set it.
    let target = &unmapped[0];
    let tid = target["id"].to_string();
    env.ok(&[
        "priority",
        "set",
        &tid,
        "informational",
        "--reason",
        "base image, rebuilt nightly",
    ]);
    let show = env.ok(&["issue", "show", &tid]);
    assert!(show.contains("priority:   informational"), "{show}");
    assert!(
        show.contains("cli set the priority by hand: base image, rebuilt nightly"),
        "{show}"
    );
}
