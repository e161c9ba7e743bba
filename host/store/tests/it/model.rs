//! T32: a proptest state machine. Random sequences of runs (complete, partial, failed; random
//! covered registries; random findings reported, some with changed severity) and suppressions
//! are applied to the store and to a plain model; after each step the finding states and the
//! ingest counts must agree, and every resolved finding must have been resolved by a complete run
//! that covered its registry and did not report it.

use std::collections::{BTreeMap, BTreeSet};

use keelson_core::{Finding, Severity};
use keelson_store::{
    Error, IngestCounts, IssueFilter, IssueId, IssueStatus, RunId, RunOutcome, RunStatus,
    RunTrigger, Store,
};
use proptest::prelude::*;

use crate::{TOOL, finding, scope, store_with};

const REGISTRIES: [&str; 3] = ["r0.azurecr.io", "r1.azurecr.io", "r2.azurecr.io"];
const DIGESTS: [&str; 2] = ["sha256:d0", "sha256:d1"];
const VULNERABILITIES: [&str; 2] = ["CVE-0", "CVE-1"];
const KEYS: usize = REGISTRIES.len() * DIGESTS.len() * VULNERABILITIES.len();

/// (registry, digest, vulnerability) indices.
type Key = (usize, usize, usize);

fn key(index: usize) -> Key {
    (index / 4, (index / 2) % 2, index % 2)
}

fn make_finding((r, d, v): Key, severity: Severity) -> Finding {
    let mut f = finding(REGISTRIES[r], "app", DIGESTS[d], VULNERABILITIES[v], "pkg");
    f.severity = severity;
    f
}

#[derive(Debug, Clone)]
enum Op {
    Run {
        outcome: u8,
        covered: u8,
        reported: u16,
        critical: bool,
    },
    Suppress(usize, usize),
    Lift(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 0u8..8, 0u16..(1 << KEYS), any::<bool>()).prop_map(|(outcome, covered, reported, critical)| Op::Run {
            outcome,
            covered,
            reported,
            critical
        }),
        1 => (0..REGISTRIES.len(), 0..VULNERABILITIES.len()).prop_map(|(r, v)| Op::Suppress(r, v)),
        1 => (0..REGISTRIES.len(), 0..VULNERABILITIES.len()).prop_map(|(r, v)| Op::Lift(r, v)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelFinding {
    status: IssueStatus,
    severity: Severity,
}

#[derive(Default)]
struct Model {
    findings: BTreeMap<Key, ModelFinding>,
    /// (registry, vulnerability) of suppressed issues.
    suppressed: BTreeSet<(usize, usize)>,
}

impl Model {
    fn run(
        &mut self,
        complete: bool,
        covered: &[usize],
        reported: &[Key],
        severity: Severity,
    ) -> IngestCounts {
        let mut counts = IngestCounts::default();
        for &k in reported {
            let suppressed = self.suppressed.contains(&(k.0, k.2));
            let start = if suppressed {
                IssueStatus::Suppressed
            } else {
                IssueStatus::Open
            };
            match self.findings.get_mut(&k) {
                None => {
                    self.findings.insert(
                        k,
                        ModelFinding {
                            status: start,
                            severity,
                        },
                    );
                    counts.new += 1;
                }
                Some(f) if f.status == IssueStatus::Resolved => {
                    *f = ModelFinding {
                        status: start,
                        severity,
                    };
                    counts.reopened += 1;
                }
                Some(f) if f.severity != severity => {
                    f.severity = severity;
                    counts.updated += 1;
                }
                Some(_) => counts.seen += 1,
            }
        }
        if complete {
            for (k, f) in &mut self.findings {
                if f.status == IssueStatus::Open && covered.contains(&k.0) && !reported.contains(k)
                {
                    f.status = IssueStatus::Resolved;
                }
            }
        }
        counts
    }

    fn set_issue(&mut self, (r, v): (usize, usize), from: IssueStatus, to: IssueStatus) {
        for (k, f) in &mut self.findings {
            if (k.0, k.2) == (r, v) && f.status == from {
                f.status = to;
            }
        }
    }

    fn issue_exists(&self, (r, v): (usize, usize)) -> bool {
        self.findings.keys().any(|k| (k.0, k.2) == (r, v))
    }
}

fn issue_id(store: &Store, (r, v): (usize, usize)) -> Option<IssueId> {
    let rows = store
        .issues(&IssueFilter {
            registry: Some(REGISTRIES[r].into()),
            vulnerability: Some(VULNERABILITIES[v].into()),
            ..IssueFilter::default()
        })
        .unwrap();
    assert!(rows.len() <= 1);
    rows.first().map(|row| row.id)
}

/// Checks the store against the model, and the resolve invariant against the run records.
fn check(store: &Store, model: &Model) {
    let mut actual = BTreeMap::new();
    for row in store.issues(&IssueFilter::default()).unwrap() {
        let r = REGISTRIES.iter().position(|x| *x == row.registry).unwrap();
        let v = VULNERABILITIES
            .iter()
            .position(|x| *x == row.vulnerability_id)
            .unwrap();
        let detail = store.issue(row.id).unwrap().unwrap();
        for f in &detail.findings {
            let d = DIGESTS.iter().position(|x| *x == f.digest).unwrap();
            actual.insert(
                (r, d, v),
                ModelFinding {
                    status: f.status,
                    severity: f.severity,
                },
            );
            if f.status == IssueStatus::Resolved {
                let resolved_by: RunId = detail
                    .history
                    .iter()
                    .rev()
                    .find(|e| e.finding == Some(f.id) && e.kind == "resolved")
                    .and_then(|e| e.run)
                    .expect("a resolved finding names the run that resolved it");
                let run = store.run(resolved_by).unwrap().unwrap();
                assert_eq!(
                    run.status,
                    RunStatus::Complete,
                    "resolved by a {} run",
                    run.status
                );
                assert!(run.covered_registries.unwrap().contains(&row.registry));
                assert!(f.last_run < resolved_by, "resolved by a run that saw it");
            }
        }
        // Scans never move a finding out of or into `suppressed`; only people and expiry do.
        for e in &detail.history {
            if e.run.is_some() && e.field.as_deref() == Some("status") {
                assert_ne!(e.old_value.as_deref(), Some("suppressed"), "{e:?}");
            }
        }
    }
    assert_eq!(actual, model.findings, "nothing deleted, nothing invented");
}

fn apply(store: &mut Store, model: &mut Model, op: &Op) {
    match *op {
        Op::Run {
            outcome,
            covered,
            reported,
            critical,
        } => {
            let covered: Vec<usize> = (0..REGISTRIES.len())
                .filter(|r| covered & (1 << r) != 0)
                .collect();
            let reported: Vec<Key> = (0..KEYS)
                .filter(|i| reported & (1 << i) != 0)
                .map(key)
                .collect();
            let severity = if critical {
                Severity::Critical
            } else {
                Severity::High
            };
            let outcome = match outcome {
                0 => RunOutcome::Complete,
                1 => RunOutcome::Partial {
                    reason: "throttled".into(),
                },
                _ => RunOutcome::Failed {
                    reason: "trap".into(),
                },
            };
            let expected = model.run(
                outcome == RunOutcome::Complete,
                &covered,
                &reported,
                severity,
            );
            let run = store
                .begin_run("prod", RunTrigger::Schedule, &scope(&[]))
                .unwrap();
            // Two pages, so counts add up across transactions.
            let findings: Vec<Finding> = reported
                .iter()
                .map(|k| make_finding(*k, severity))
                .collect();
            let (first, second) = findings.split_at(findings.len() / 2);
            let mut counts = store.ingest_findings(run, TOOL, first).unwrap();
            counts += store.ingest_findings(run, TOOL, second).unwrap();
            assert_eq!(counts, expected);
            let covered_names: Vec<String> =
                covered.iter().map(|r| REGISTRIES[*r].to_owned()).collect();
            let info = store.finish_run(run, &outcome, &covered_names).unwrap();
            assert_eq!(info.findings_new, expected.new);
            if outcome != RunOutcome::Complete {
                assert_eq!(info.findings_resolved, 0);
            }
        }
        Op::Suppress(r, v) => {
            if !model.issue_exists((r, v)) {
                assert!(issue_id(store, (r, v)).is_none());
                return;
            }
            let id = issue_id(store, (r, v)).unwrap();
            let result = store.suppress(id, "accepted", None, "tester");
            if model.suppressed.insert((r, v)) {
                result.unwrap();
                model.set_issue((r, v), IssueStatus::Open, IssueStatus::Suppressed);
            } else {
                assert!(matches!(result, Err(Error::AlreadySuppressed(_))));
            }
        }
        Op::Lift(r, v) => {
            let Some(id) = issue_id(store, (r, v)) else {
                return;
            };
            let result = store.lift_suppression(id, "tester");
            if model.suppressed.remove(&(r, v)) {
                result.unwrap();
                model.set_issue((r, v), IssueStatus::Suppressed, IssueStatus::Open);
            } else {
                assert!(matches!(result, Err(Error::NotSuppressed(_))));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_run_sequences_keep_the_lifecycle_invariants(ops in proptest::collection::vec(op(), 1..14)) {
        let mut store = store_with(&["prod"]);
        let mut model = Model::default();
        for op in &ops {
            apply(&mut store, &mut model, op);
            check(&store, &model);
        }
    }
}
