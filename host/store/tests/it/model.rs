//! T32: a proptest state machine. Random sequences of runs (complete, partial, failed,
//! cancelled; random coverage of registries and of the findings listing; random deselected
//! repositories; random findings reported, some with changed severity; a random resolve guard),
//! accepts of held runs and suppressions are applied to the store and to a plain model; after
//! each step the finding states and the ingest counts must agree, and:
//! - a finding is resolved only by a complete or partial run (or an accepted held run) whose
//!   coverage made its registry resolvable with the findings listing complete, and that did not
//!   report it;
//! - a held run resolves nothing until it is accepted, and only the newest run can be accepted;
//! - findings are never deleted.

use std::collections::{BTreeMap, BTreeSet};

use keelson_core::{Finding, Severity};
use keelson_store::{
    Coverage, Error, IngestCounts, IssueFilter, IssueId, IssueStatus, RegistryCoverage,
    ResolveGuard, RunId, RunOutcome, RunStatus, RunTrigger, Store,
};
use proptest::prelude::*;

use crate::{TOOL, finding, scope, store_with};

const REGISTRIES: [&str; 3] = ["r0.azurecr.io", "r1.azurecr.io", "r2.azurecr.io"];
const REPOSITORIES: [&str; 2] = ["app", "api"];
const VULNERABILITIES: [&str; 2] = ["CVE-0", "CVE-1"];
const KEYS: usize = REGISTRIES.len() * REPOSITORIES.len() * VULNERABILITIES.len();

/// (registry, repository, vulnerability) indices.
type Key = (usize, usize, usize);

fn key(index: usize) -> Key {
    (index / 4, (index / 2) % 2, index % 2)
}

fn digest(repository: usize) -> String {
    format!("sha256:d{repository}")
}

fn make_finding((r, p, v): Key, severity: Severity) -> Finding {
    let mut f = finding(
        REGISTRIES[r],
        REPOSITORIES[p],
        &digest(p),
        VULNERABILITIES[v],
        "pkg",
    );
    f.severity = severity;
    f
}

#[derive(Debug, Clone)]
struct RunOp {
    /// 0 complete, 1 partial, 2 failed, 3 cancelled.
    outcome: u8,
    /// Registries whose inventory was read completely (bit per registry).
    covered: u8,
    findings_complete: bool,
    /// Deselected (registry, repository) pairs (bit `r * 2 + p`).
    deselected: u8,
    reported: u16,
    critical: bool,
    guard: ResolveGuard,
}

#[derive(Debug, Clone)]
enum Op {
    Run(RunOp),
    /// Accept the newest run (`true`) or the newest held run older than it (`false`).
    Accept(bool),
    /// Suppress or lift the issue of a key (one finding per issue: one digest per repository).
    Suppress(Key),
    Lift(Key),
}

fn guard() -> impl Strategy<Value = ResolveGuard> {
    (1u8..=100, 0u64..8, proptest::bool::weighted(0.1)).prop_map(
        |(percent, min_open, accept_drop)| ResolveGuard {
            percent,
            min_open,
            accept_drop,
        },
    )
}

fn run_op() -> impl Strategy<Value = RunOp> {
    (
        prop_oneof![3 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
        0u8..8,
        proptest::bool::weighted(0.8),
        prop_oneof![3 => Just(0u8), 1 => 0u8..64],
        // Sometimes nothing at all, as from a source that answers empty.
        prop_oneof![4 => 0u16..(1 << KEYS), 1 => Just(0u16)],
        any::<bool>(),
        guard(),
    )
        .prop_map(
            |(outcome, covered, findings_complete, deselected, reported, critical, guard)| RunOp {
                outcome,
                covered,
                findings_complete,
                deselected,
                reported,
                critical,
                guard,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => run_op().prop_map(Op::Run),
        3 => proptest::bool::weighted(0.8).prop_map(Op::Accept),
        1 => (0..KEYS).prop_map(|i| Op::Suppress(key(i))),
        1 => (0..KEYS).prop_map(|i| Op::Lift(key(i))),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelFinding {
    status: IssueStatus,
    severity: Severity,
}

/// A held run as the model remembers it.
#[derive(Debug, Clone)]
struct ModelHeld {
    run: RunId,
    would: Vec<Key>,
    then: RunStatus,
}

#[derive(Default)]
struct Model {
    findings: BTreeMap<Key, ModelFinding>,
    /// Keys of suppressed issues.
    suppressed: BTreeSet<Key>,
    /// The newest run, and what it would resolve if it is held and not yet accepted.
    newest: Option<RunId>,
    held: Option<ModelHeld>,
    /// Held runs that a newer run superseded.
    superseded: Vec<RunId>,
    findings_ever: usize,
}

/// What the model expects of a finished run.
struct Expected {
    counts: IngestCounts,
    status: RunStatus,
    resolved: u64,
    /// (would, open, open_in_covered) when held.
    held: Option<(u64, u64, u64)>,
}

impl Model {
    fn ingest(&mut self, reported: &[Key], severity: Severity) -> IngestCounts {
        let mut counts = IngestCounts::default();
        for &k in reported {
            let start = if self.suppressed.contains(&k) {
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
        counts
    }

    fn run(&mut self, run: RunId, op: &RunOp, reported: &[Key], severity: Severity) -> Expected {
        if let Some(old) = self.held.take() {
            self.superseded.push(old.run);
        }
        self.newest = Some(run);
        let counts = self.ingest(reported, severity);
        let status = match op.outcome {
            0 => RunStatus::Complete,
            1 => RunStatus::Partial,
            2 => RunStatus::Failed,
            _ => RunStatus::Cancelled,
        };
        let mut expected = Expected {
            counts,
            status,
            resolved: 0,
            held: None,
        };
        if !matches!(status, RunStatus::Complete | RunStatus::Partial) {
            return expected;
        }
        let resolvable = |r: usize| op.findings_complete && op.covered & (1 << r) != 0;
        let selected = |r: usize, p: usize| op.deselected & (1 << (r * 2 + p)) == 0;
        let open = |f: &ModelFinding| f.status == IssueStatus::Open;
        let in_scope: Vec<Key> = self
            .findings
            .iter()
            .filter(|(k, f)| open(f) && resolvable(k.0) && selected(k.0, k.1))
            .map(|(k, _)| *k)
            .collect();
        let would: Vec<Key> = in_scope
            .iter()
            .filter(|k| !reported.contains(k))
            .copied()
            .collect();
        let open_all = self.findings.values().filter(|f| open(f)).count() as u64;
        let (w, c) = (would.len() as u64, in_scope.len() as u64);
        let g = op.guard;
        let hold = !g.accept_drop
            && w > 0
            && (w == c || (open_all > g.min_open && w * 100 > u64::from(g.percent) * open_all));
        if hold {
            expected.held = Some((w, open_all, c));
            expected.status = RunStatus::Held;
            self.held = Some(ModelHeld {
                run,
                would,
                then: status,
            });
        } else {
            for k in &would {
                self.findings.get_mut(k).unwrap().status = IssueStatus::Resolved;
            }
            expected.resolved = w;
        }
        expected
    }

    fn set_issue(&mut self, k: Key, from: IssueStatus, to: IssueStatus) {
        if let Some(f) = self.findings.get_mut(&k)
            && f.status == from
        {
            f.status = to;
        }
    }
}

fn issue_id(store: &Store, (r, p, v): Key) -> Option<IssueId> {
    let rows = store
        .issues(&IssueFilter {
            registry: Some(REGISTRIES[r].into()),
            repository: Some(REPOSITORIES[p].into()),
            vulnerability: Some(VULNERABILITIES[v].into()),
            ..IssueFilter::default()
        })
        .unwrap();
    assert!(rows.len() <= 1);
    rows.first().map(|row| row.id)
}

/// The finding states as the store has them (one finding per issue).
fn states(store: &Store) -> BTreeMap<Key, ModelFinding> {
    let mut actual = BTreeMap::new();
    for row in store.issues(&IssueFilter::default()).unwrap() {
        let r = REGISTRIES.iter().position(|x| *x == row.registry).unwrap();
        let p = REPOSITORIES
            .iter()
            .position(|x| *x == row.repository)
            .unwrap();
        let v = VULNERABILITIES
            .iter()
            .position(|x| *x == row.vulnerability_id)
            .unwrap();
        assert_eq!(row.images.len(), 1, "{row:?}");
        actual.insert(
            (r, p, v),
            ModelFinding {
                status: row.images[0].status,
                severity: row.severity,
            },
        );
    }
    actual
}

/// Checks the store's finding states against the model after each step.
fn check(store: &Store, model: &mut Model) {
    let actual = states(store);
    assert_eq!(actual, model.findings, "nothing deleted, nothing invented");
    assert!(actual.len() >= model.findings_ever, "findings went away");
    model.findings_ever = actual.len();
}

/// Checks every resolution ever made against the run that made it. Events are append-only, so
/// checking once at the end of a sequence sees all of them.
fn check_history(store: &Store) {
    for row in store.issues(&IssueFilter::default()).unwrap() {
        let detail = store.issue(row.id).unwrap().unwrap();
        for e in &detail.history {
            if e.kind == "resolved" {
                let by = e.run.expect("a resolution names the run that made it");
                let run = store.run(by).unwrap().unwrap();
                assert!(
                    matches!(run.status, RunStatus::Complete | RunStatus::Partial),
                    "resolved by a {} run",
                    run.status
                );
                if run.held.is_some() {
                    let accepted = run.accepted_at.as_deref().expect("held, never accepted");
                    assert!(
                        e.at.as_str() >= accepted,
                        "a held run resolved before its accept"
                    );
                }
                let coverage = run.coverage.expect("a resolving run recorded its coverage");
                assert!(coverage.findings.is_none(), "resolved without all findings");
                assert!(
                    coverage.resolvable().contains(&row.registry),
                    "resolved outside what run {by} read"
                );
                // A run that created, reopened or changed the finding reported it.
                assert!(
                    !detail.history.iter().any(|other| other.finding == e.finding
                        && other.run == Some(by)
                        && other.kind != "resolved"),
                    "resolved by run {by}, which reported it"
                );
            }
            // Scans never move a finding out of or into `suppressed`; only people and expiry do.
            if e.run.is_some() && e.field.as_deref() == Some("status") {
                assert_ne!(e.old_value.as_deref(), Some("suppressed"), "{e:?}");
            }
        }
        for f in &detail.findings {
            if f.status == IssueStatus::Resolved {
                let by = detail
                    .history
                    .iter()
                    .rev()
                    .find(|e| e.finding == Some(f.id) && e.kind == "resolved")
                    .and_then(|e| e.run)
                    .unwrap();
                assert!(f.last_run < by, "resolved by a run that reported it");
            }
        }
    }
}

fn apply(store: &mut Store, model: &mut Model, op: &Op) {
    match op {
        Op::Run(op) => run(store, model, op),
        Op::Accept(newest) => accept(store, model, *newest),
        Op::Suppress(k) => {
            if !model.findings.contains_key(k) {
                assert!(issue_id(store, *k).is_none());
                return;
            }
            let id = issue_id(store, *k).unwrap();
            let result = store.suppress(id, "accepted", None, "tester");
            if model.suppressed.insert(*k) {
                result.unwrap();
                model.set_issue(*k, IssueStatus::Open, IssueStatus::Suppressed);
            } else {
                assert!(matches!(result, Err(Error::AlreadySuppressed(_))));
            }
        }
        Op::Lift(k) => {
            let Some(id) = issue_id(store, *k) else {
                return;
            };
            let result = store.lift_suppression(id, "tester");
            if model.suppressed.remove(k) {
                result.unwrap();
                model.set_issue(*k, IssueStatus::Suppressed, IssueStatus::Open);
            } else {
                assert!(matches!(result, Err(Error::NotSuppressed(_))));
            }
        }
    }
}

fn run(store: &mut Store, model: &mut Model, op: &RunOp) {
    let reported: Vec<Key> = (0..KEYS)
        .filter(|i| op.reported & (1 << i) != 0)
        .map(key)
        .collect();
    let severity = if op.critical {
        Severity::Critical
    } else {
        Severity::High
    };
    let outcome = match op.outcome {
        0 => RunOutcome::Complete,
        1 => RunOutcome::Partial {
            reason: "throttled".into(),
        },
        2 => RunOutcome::Failed {
            reason: "trap".into(),
        },
        _ => RunOutcome::Cancelled,
    };
    let coverage = Coverage {
        registry_listing: None,
        findings: (!op.findings_complete).then(|| "a page was malformed".to_owned()),
        registries: (0..REGISTRIES.len())
            .map(|r| RegistryCoverage {
                registry: REGISTRIES[r].to_owned(),
                uncovered: (op.covered & (1 << r) == 0).then(|| "403".to_owned()),
                deselected: u64::from((op.deselected >> (r * 2)) & 0b11 != 0),
            })
            .collect(),
    };
    let run = store
        .begin_run("prod", RunTrigger::Schedule, &scope(&[]))
        .unwrap();
    let expected = model.run(run, op, &reported, severity);
    // Two pages, so counts add up across transactions.
    let findings: Vec<Finding> = reported
        .iter()
        .map(|k| make_finding(*k, severity))
        .collect();
    let (first, second) = findings.split_at(findings.len() / 2);
    let mut counts = store.ingest_findings(run, TOOL, first).unwrap();
    counts += store.ingest_findings(run, TOOL, second).unwrap();
    assert_eq!(counts, expected.counts);
    let deselected = op.deselected;
    let selected = move |registry: &str, repository: &str| {
        let r = REGISTRIES.iter().position(|x| *x == registry).unwrap();
        let p = REPOSITORIES.iter().position(|x| *x == repository).unwrap();
        deselected & (1 << (r * 2 + p)) == 0
    };
    let info = store
        .finish_run(run, &outcome, &coverage, &op.guard, &selected)
        .unwrap();
    assert_eq!(info.status, expected.status);
    assert_eq!(info.findings_new, expected.counts.new);
    assert_eq!(info.findings_resolved, expected.resolved);
    assert_eq!(
        info.held
            .as_ref()
            .map(|h| (h.would_resolve, h.open, h.open_in_covered)),
        expected.held
    );
    assert_eq!(info.coverage.as_ref(), Some(&coverage));
}

fn accept(store: &mut Store, model: &mut Model, newest: bool) {
    if newest {
        let Some(run) = model.newest else { return };
        let result = store.accept_held(run, "tester");
        if let Some(held) = model.held.take() {
            assert_eq!(held.run, run);
            let mut resolved = 0;
            for k in &held.would {
                let f = model.findings.get_mut(k).unwrap();
                // Only what is still open: people may have suppressed some meanwhile.
                if f.status == IssueStatus::Open {
                    f.status = IssueStatus::Resolved;
                    resolved += 1;
                }
            }
            let info = result.unwrap();
            assert_eq!(info.status, held.then);
            assert_eq!(info.findings_resolved, resolved);
            assert_eq!(info.accepted_by.as_deref(), Some("tester"));
        } else {
            let status = store.run(run).unwrap().unwrap().status;
            assert!(
                matches!(result, Err(Error::NotHeld { run: r, status: s }) if r == run && s == status),
                "{result:?}"
            );
        }
    } else {
        let Some(&old) = model.superseded.last() else {
            return;
        };
        let result = store.accept_held(old, "tester");
        assert!(
            matches!(result, Err(Error::HeldSuperseded { run, newer }) if run == old && newer > old),
            "{result:?}"
        );
        assert_eq!(
            store.run(old).unwrap().unwrap().status,
            RunStatus::Held,
            "a refused accept changes nothing"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_run_sequences_keep_the_lifecycle_invariants(ops in proptest::collection::vec(op(), 1..14)) {
        let mut store = store_with(&["prod"]);
        let mut model = Model::default();
        for op in &ops {
            apply(&mut store, &mut model, op);
            check(&store, &mut model);
        }
        check_history(&store);
    }
}
