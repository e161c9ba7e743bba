//! The real `keelson` binary against the simulator's bad answers (`azure_sim::Anomaly`): a
//! normal scan first, then some findings fixed at the source and a rescan with the anomaly on.
//! The run ends with the status the simulator's ground truth says a correct client reaches;
//! findings are resolved only in registries that could be read completely, everything else
//! stays open, and nothing read is lost. A held run is accepted through `keelson runs accept`.
//!
//! Needs the ACR connector built: `cargo build --release --target wasm32-wasip2` in `plugins/`.

mod support;

use std::collections::BTreeSet;

use azure_sim::{Anomaly, FaultSpec};
use support::env::{Env, Queue, connected_env, queue_of, truth_queue};

/// Share of the tenant's findings fixed before the anomalous rescan (well under the guard).
const FIXED_SHARE: f64 = 0.2;

/// What the anomalous rescan did: its summary, and the open queue before and after.
struct Rescan {
    env: Env,
    summary: serde_json::Value,
    exit: Option<i32>,
    before: Queue,
    after: Queue,
    /// The open queue of the tenant itself when the rescan ran.
    truth: Queue,
    expected: azure_sim::AnomalyTruth,
}

async fn rescan_with(anomaly: Anomaly) -> Rescan {
    let mut env = connected_env().await;
    let (ok, first) = env.scan_json("prod", &[]);
    assert!(ok, "the normal scan is complete: {first}");
    let before = queue_of(&env.issues("open"));
    assert!(!before.is_empty());
    assert!(env.sim.fix_findings(FIXED_SHARE) > 0);
    let truth = truth_queue(&env.sim, "");
    env.sim.set_faults(FaultSpec {
        anomalies: vec![anomaly],
        ..FaultSpec::default()
    });
    let expected = env.sim.ground_truth().anomaly();
    let output = env.run(&["scan", "prod", "--json"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summaries: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "scan --json prints JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let after = queue_of(&env.issues("open"));
    Rescan {
        env,
        summary: summaries[0].clone(),
        exit: output.status.code(),
        before,
        after,
        truth,
        expected,
    }
}

impl Rescan {
    fn status(&self) -> &str {
        self.summary["run"]["status"].as_str().unwrap_or_default()
    }

    /// The status and exit code are the ground truth's; no open finding outside a registry the
    /// scan could read completely was resolved, and inside one exactly the fixed ones were.
    fn holds_to_the_ground_truth(&self) {
        let expected = serde_json::to_value(self.expected.run_status).unwrap();
        assert_eq!(
            self.status(),
            expected.as_str().unwrap(),
            "{}",
            self.summary
        );
        let code = match self.status() {
            "complete" => 0,
            "partial" => 2,
            "held" => 3,
            _ => 1,
        };
        assert_eq!(self.exit, Some(code), "{}", self.summary);
        for (key, digests) in &self.before {
            let now: BTreeSet<String> = self.after.get(key).cloned().unwrap_or_default();
            if self.expected.may_resolve_in(&key.0) && self.status() != "held" {
                let still: BTreeSet<String> = self.truth.get(key).cloned().unwrap_or_default();
                assert_eq!(
                    now, still,
                    "{key:?}: brought up to date in a covered registry"
                );
            } else {
                assert_eq!(&now, digests, "{key:?}: must stay open as it was");
            }
        }
    }

    fn coverage_mentions(&self, needle: &str) {
        let coverage = self.summary["coverage"].to_string();
        assert!(
            coverage.contains(needle),
            "the coverage names `{needle}`: {coverage}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_resource_graph_after_a_full_scan_is_held_and_accepted_by_hand() {
    let mut r = rescan_with(Anomaly::ArgEmptyAfterFull).await;
    r.holds_to_the_ground_truth();
    assert_eq!(r.status(), "held");
    assert_eq!(r.summary["run"]["findings_resolved"], 0);
    let would = r.summary["run"]["held"]["would_resolve"].as_u64().unwrap();
    assert!(would > 0, "{}", r.summary);
    let run = r.summary["run"]["id"].to_string();

    // The queue says so, under the table.
    let table = r.env.ok(&["issues"]);
    assert!(
        table.contains("last run") && table.contains("held"),
        "{table}"
    );
    let runs = r.env.ok(&["runs", "prod"]);
    assert!(
        runs.contains("held") && runs.contains("would resolve"),
        "{runs}"
    );

    // Accepting applies exactly the held resolution, once.
    let accepted = r.env.ok(&["runs", "accept", &run, "--json"]);
    let accepted: serde_json::Value = serde_json::from_str(&accepted).unwrap();
    assert_eq!(accepted["findings_resolved"].as_u64(), Some(would));
    assert_eq!(accepted["accepted_by"], "cli");
    assert!(queue_of(&r.env.issues("open")).is_empty());
    let again = r.env.run(&["runs", "accept", &run]);
    assert!(!again.status.success());
    let text = String::from_utf8_lossy(&again.stderr);
    assert!(text.contains("not held"), "{text}");
    r.env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_run_cannot_be_accepted_after_a_newer_run() {
    let mut r = rescan_with(Anomaly::ArgEmptyAfterFull).await;
    assert_eq!(r.status(), "held", "{}", r.summary);
    let run = r.summary["run"]["id"].to_string();
    r.env.sim.set_faults(FaultSpec::default());
    let (_, newer) = r.env.scan_json("prod", &[]);
    assert_eq!(newer["run"]["status"], "complete", "{newer}");
    let refused = r.env.run(&["runs", "accept", &run]);
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("started after it"), "{text}");
    r.env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_data_from_resource_graph_is_an_error_not_an_empty_tenant() {
    let r = rescan_with(Anomaly::ArgNullData).await;
    r.holds_to_the_ground_truth();
    r.coverage_mentions("data");
    r.env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_with_status_200_from_resource_graph_resolves_nothing() {
    let r = rescan_with(Anomaly::ArgHtml200).await;
    r.holds_to_the_ground_truth();
    r.env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_without_a_status_make_the_findings_incomplete_and_keep_the_rest() {
    let r = rescan_with(Anomaly::ArgMissingStatus).await;
    r.holds_to_the_ground_truth();
    r.coverage_mentions("status");
    r.env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_contradict_the_rows_resolve_nothing() {
    let r = rescan_with(Anomaly::TotalsMismatch).await;
    r.holds_to_the_ground_truth();
    r.env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_list_that_loops_at_the_end_costs_no_finding() {
    let r = rescan_with(Anomaly::ArmNextlinkLoopAtEnd).await;
    r.holds_to_the_ground_truth();
    assert!(
        r.summary["coverage"]["registry_listing"].is_string(),
        "{}",
        r.summary
    );
    assert_eq!(
        r.summary["findings_kept"].as_u64(),
        Some(r.truth.values().map(|d| d.len() as u64).sum::<u64>()),
        "every finding Resource Graph returned is kept: {}",
        r.summary
    );
    r.env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_that_loops_leaves_only_its_registry_uncovered() {
    let r = rescan_with(Anomaly::AcrCatalogLoop).await;
    r.holds_to_the_ground_truth();
    let target = r
        .expected
        .target_registry
        .clone()
        .expect("a target registry");
    r.coverage_mentions(&target);
    r.env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_forbidden_registry_keeps_its_findings_open_and_the_rest_up_to_date() {
    let r = rescan_with(Anomaly::OneRegistryForbidden).await;
    r.holds_to_the_ground_truth();
    let target = r
        .expected
        .target_registry
        .clone()
        .expect("a target registry");
    r.coverage_mentions(&target);
    r.env.sim.shutdown().await;
}
