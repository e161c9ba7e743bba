//! The finding lifecycle across runs: new, seen, resolved by a complete run, reopened; what
//! partial, failed and cancelled runs may not do; scope limits; suppression.

use keelson_core::{Image, ImageRef, Registry, Repository, Severity};
use keelson_store::{
    Coverage, Error, IngestCounts, InventoryItem, IssueFilter, IssueStatus, RegistryCoverage,
    ResolveGuard, RunOutcome, RunStatus, RunTrigger, Store,
};

use crate::{
    TOOL, accept_drop, all_issues, everything, finding, scan, scan_accepting, scan_with, scope,
    store_with, strings,
};

const R1: &str = "one.azurecr.io";
const R2: &str = "two.azurecr.io";

fn status_of(store: &Store, vulnerability: &str) -> IssueStatus {
    let rows = store
        .issues(&IssueFilter {
            vulnerability: Some(vulnerability.into()),
            ..IssueFilter::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].status
}

#[test]
fn new_then_seen_then_resolved_by_a_complete_run_then_reopened() {
    let mut store = store_with(&["prod"]);
    let a = finding(R1, "app", "sha256:a", "CVE-1", "openssl");
    let b = finding(R1, "app", "sha256:a", "CVE-2", "zlib");

    let (_, counts, info) = scan(
        &mut store,
        "prod",
        &[a.clone(), b.clone()],
        &RunOutcome::Complete,
        &[R1],
    );
    assert_eq!(
        counts,
        IngestCounts {
            new: 2,
            ..IngestCounts::default()
        }
    );
    assert_eq!(
        (info.status, info.findings_new, info.findings_resolved),
        (RunStatus::Complete, 2, 0)
    );
    assert_eq!(info.images_seen, 1);

    let (_, counts, _) = scan(
        &mut store,
        "prod",
        &[a.clone(), b.clone()],
        &RunOutcome::Complete,
        &[R1],
    );
    assert_eq!(
        counts,
        IngestCounts {
            seen: 2,
            ..IngestCounts::default()
        }
    );

    let (resolving_run, counts, info) = scan(
        &mut store,
        "prod",
        std::slice::from_ref(&a),
        &RunOutcome::Complete,
        &[R1],
    );
    assert_eq!(counts.seen, 1);
    assert_eq!(info.findings_resolved, 1);
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Open);
    assert_eq!(status_of(&store, "CVE-2"), IssueStatus::Resolved);

    let (_, counts, info) = scan(&mut store, "prod", &[a, b], &RunOutcome::Complete, &[R1]);
    assert_eq!(
        counts,
        IngestCounts {
            seen: 1,
            reopened: 1,
            ..IngestCounts::default()
        }
    );
    assert_eq!(info.findings_reopened, 1);
    assert_eq!(status_of(&store, "CVE-2"), IssueStatus::Open);

    // The history tells the whole story, with the run that resolved it.
    let id = all_issues(&store)
        .into_iter()
        .find(|i| i.vulnerability_id == "CVE-2")
        .unwrap()
        .id;
    let detail = store.issue(id).unwrap().unwrap();
    let kinds: Vec<&str> = detail.history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "resolved", "reopened"]);
    assert_eq!(detail.history[1].run, Some(resolving_run));
    assert_eq!(detail.findings[0].resolved_at, None);
}

#[test]
fn failed_and_cancelled_runs_resolve_nothing_and_partial_ones_nothing_they_did_not_read() {
    let mut store = store_with(&["prod"]);
    let a = finding(R1, "app", "sha256:a", "CVE-1", "openssl");
    scan(&mut store, "prod", &[a], &RunOutcome::Complete, &[R1]);
    let new = finding(R1, "app", "sha256:b", "CVE-9", "glibc");
    let throttled = Coverage {
        registries: vec![RegistryCoverage::uncovered(
            R1,
            "registry `one.azurecr.io` answered 429 too often",
        )],
        ..Coverage::default()
    };
    let findings_cut_short = Coverage {
        findings: Some("Resource Graph answered `data: null`".into()),
        ..Coverage::complete(&[R1])
    };
    let partial = RunOutcome::Partial {
        reason: "not everything was read".into(),
    };
    for (outcome, coverage) in [
        (partial.clone(), throttled),
        (partial, findings_cut_short),
        // Even with everything reported as read, these two never resolve.
        (
            RunOutcome::Failed {
                reason: "plugin trapped".into(),
            },
            Coverage::complete(&[R1]),
        ),
        (RunOutcome::Cancelled, Coverage::complete(&[R1])),
    ] {
        let (_, _, info) = scan_with(
            &mut store,
            "prod",
            std::slice::from_ref(&new),
            &outcome,
            &coverage,
            &accept_drop(),
        );
        assert_eq!(info.findings_resolved, 0, "{outcome:?}");
        assert_eq!(info.coverage.as_ref(), Some(&coverage), "{outcome:?}");
        assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Open, "{outcome:?}");
    }
    // They still add and update.
    assert_eq!(status_of(&store, "CVE-9"), IssueStatus::Open);
    let runs = store.runs(Some("prod"), 10).unwrap();
    assert_eq!(runs[0].status, RunStatus::Cancelled);
    assert_eq!(runs[1].error.as_deref(), Some("plugin trapped"));
}

#[test]
fn a_complete_run_resolves_only_inside_the_registries_it_covered() {
    let mut store = store_with(&["prod"]);
    let in_one = finding(R1, "app", "sha256:a", "CVE-1", "openssl");
    let in_two = finding(R2, "app", "sha256:b", "CVE-2", "openssl");
    scan(
        &mut store,
        "prod",
        &[in_one, in_two],
        &RunOutcome::Complete,
        &[R1, R2],
    );
    // R2 could not be read (403): the run is complete for R1 only.
    let (_, _, info) = scan_accepting(&mut store, "prod", &[], &RunOutcome::Complete, &[R1]);
    assert_eq!(info.findings_resolved, 1);
    assert_eq!(info.covered_registries, Some(strings(&[R1])));
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Resolved);
    assert_eq!(status_of(&store, "CVE-2"), IssueStatus::Open);
}

#[test]
fn another_connections_findings_are_never_resolved() {
    let mut store = store_with(&["prod", "staging"]);
    scan(
        &mut store,
        "staging",
        &[finding(R1, "app", "sha256:a", "CVE-1", "x")],
        &RunOutcome::Complete,
        &[R1],
    );
    let (_, _, info) = scan_accepting(&mut store, "prod", &[], &RunOutcome::Complete, &[R1]);
    assert_eq!(info.findings_resolved, 0);
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Open);
}

#[test]
fn suppressed_findings_are_never_resolved_or_reopened_by_a_scan() {
    let mut store = store_with(&["prod"]);
    let a = finding(R1, "app", "sha256:a", "CVE-1", "openssl");
    let b = finding(R1, "app", "sha256:a", "CVE-2", "zlib");
    scan(
        &mut store,
        "prod",
        &[a.clone(), b.clone()],
        &RunOutcome::Complete,
        &[R1],
    );
    let issues = all_issues(&store);
    let issue_a = issues
        .iter()
        .find(|i| i.vulnerability_id == "CVE-1")
        .unwrap()
        .id;
    let issue_b = issues
        .iter()
        .find(|i| i.vulnerability_id == "CVE-2")
        .unwrap()
        .id;

    store
        .suppress(issue_a, "accepted risk", None, "alice")
        .unwrap();
    assert!(
        matches!(store.suppress(issue_a, "again", None, "alice"), Err(Error::AlreadySuppressed(i)) if i == issue_a)
    );
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Suppressed);

    // Not reported by a complete run: still suppressed, not resolved.
    scan_accepting(&mut store, "prod", &[], &RunOutcome::Complete, &[R1]);
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Suppressed);
    assert_eq!(status_of(&store, "CVE-2"), IssueStatus::Resolved);

    // A new digest of a suppressed issue starts suppressed; a resolved finding of an issue
    // suppressed meanwhile comes back suppressed, not open.
    store
        .suppress(issue_b, "false positive", None, "bob")
        .unwrap();
    let a_new_digest = finding(R1, "app", "sha256:c", "CVE-1", "openssl");
    let (_, counts, _) = scan(
        &mut store,
        "prod",
        &[a, a_new_digest, b],
        &RunOutcome::Complete,
        &[R1],
    );
    assert_eq!(counts.new, 1);
    assert_eq!(counts.reopened, 1);
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Suppressed);
    assert_eq!(status_of(&store, "CVE-2"), IssueStatus::Suppressed);
    let detail = store.issue(issue_a).unwrap().unwrap();
    assert_eq!(detail.suppression.as_ref().unwrap().reason, "accepted risk");
    assert!(
        detail
            .findings
            .iter()
            .all(|f| f.status == IssueStatus::Suppressed)
    );

    // Lifting opens them again, as alice's change; the next complete run judges them.
    store.lift_suppression(issue_a, "alice").unwrap();
    assert!(matches!(
        store.lift_suppression(issue_a, "alice"),
        Err(Error::NotSuppressed(_))
    ));
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Open);
    let detail = store.issue(issue_a).unwrap().unwrap();
    let last = detail.history.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_deref()),
        ("unsuppressed", Some("alice"))
    );
    assert!(detail.suppression.is_none());
}

#[test]
fn an_expired_suppression_is_lifted_when_a_run_begins() {
    let mut store = store_with(&["prod"]);
    scan(
        &mut store,
        "prod",
        &[finding(R1, "app", "sha256:a", "CVE-1", "x")],
        &RunOutcome::Complete,
        &[R1],
    );
    let id = all_issues(&store)[0].id;
    assert!(matches!(
        store.suppress(id, "later", Some("whenever"), "alice"),
        Err(Error::InvalidTimestamp(t)) if t == "whenever"
    ));
    store
        .suppress(id, "until yesterday", Some("2000-01-01T00:00:00Z"), "alice")
        .unwrap();
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Suppressed);
    let run = store
        .begin_run("prod", RunTrigger::Schedule, &scope(&[]))
        .unwrap();
    assert_eq!(status_of(&store, "CVE-1"), IssueStatus::Open);
    store
        .finish_run(
            run,
            &RunOutcome::Cancelled,
            &Coverage::default(),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    let detail = store.issue(id).unwrap().unwrap();
    assert!(
        detail
            .history
            .iter()
            .any(|e| e.actor.as_deref() == Some("expiry"))
    );
}

#[test]
fn attribute_changes_update_in_place_and_unchanged_findings_log_nothing() {
    let mut store = store_with(&["prod"]);
    let a = finding(R1, "app", "sha256:a", "CVE-1", "openssl");
    scan(
        &mut store,
        "prod",
        std::slice::from_ref(&a),
        &RunOutcome::Complete,
        &[R1],
    );
    let id = all_issues(&store)[0].id;
    let events_before = store.issue(id).unwrap().unwrap().history.len();
    scan(
        &mut store,
        "prod",
        std::slice::from_ref(&a),
        &RunOutcome::Complete,
        &[R1],
    );
    assert_eq!(
        store.issue(id).unwrap().unwrap().history.len(),
        events_before
    );

    let mut changed = a.clone();
    changed.severity = Severity::Critical;
    changed.package.as_mut().unwrap().version = Some("1.0.2".into());
    changed.title = "a new title".into();
    let (_, counts, _) = scan(&mut store, "prod", &[changed], &RunOutcome::Complete, &[R1]);
    assert_eq!(
        counts,
        IngestCounts {
            updated: 1,
            ..IngestCounts::default()
        }
    );
    let rows = all_issues(&store);
    assert_eq!(
        rows.len(),
        1,
        "severity and versions are not part of the key"
    );
    assert_eq!(rows[0].severity, Severity::Critical);
    assert_eq!(rows[0].package_version.as_deref(), Some("1.0.2"));
    assert_eq!(rows[0].title, "a new title");
    let history = store.issue(id).unwrap().unwrap().history;
    let changes: Vec<(Option<&str>, Option<&str>, Option<&str>)> = history[events_before..]
        .iter()
        .map(|e| {
            (
                e.field.as_deref(),
                e.old_value.as_deref(),
                e.new_value.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (Some("severity"), Some("high"), Some("critical")),
            (Some("package_version"), Some("1.0.0"), Some("1.0.2"))
        ]
    );
}

#[test]
fn a_new_digest_is_a_new_finding_of_the_same_issue() {
    let mut store = store_with(&["prod"]);
    let old = finding(R1, "app", "sha256:old", "CVE-1", "openssl");
    let new = finding(R1, "app", "sha256:new", "CVE-1", "openssl");
    scan(&mut store, "prod", &[old], &RunOutcome::Complete, &[R1]);
    let (_, counts, _) = scan(&mut store, "prod", &[new], &RunOutcome::Complete, &[R1]);
    assert_eq!((counts.new, counts.seen), (1, 0));
    let rows = all_issues(&store);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, IssueStatus::Open);
    let mut images: Vec<(String, IssueStatus)> = rows[0]
        .images
        .iter()
        .map(|i| (i.digest.clone(), i.status))
        .collect();
    images.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        images,
        [
            ("sha256:new".to_owned(), IssueStatus::Open),
            ("sha256:old".to_owned(), IssueStatus::Resolved)
        ]
    );
}

#[test]
fn inventory_is_recorded_and_marked_removed_only_where_a_run_read_it_completely() {
    let mut store = store_with(&["prod"]);
    let image = |digest: &str, tags: &[&str]| {
        InventoryItem::Image(Image {
            image_ref: ImageRef {
                registry: R1.into(),
                repository: "app".into(),
                digest: digest.into(),
            },
            tags: strings(tags),
            media_type: None,
            platform: None,
            children: vec![],
            size_bytes: Some(1024),
            created_at: None,
            updated_at: None,
        })
    };
    let registry = InventoryItem::Registry(Registry {
        name: R1.into(),
        source_id: "/subscriptions/s/registries/one".into(),
        display_name: "one".into(),
        location: Some("westeurope".into()),
        tier: Some("Premium".into()),
        public_network_access: Some(false),
        attributes: vec![],
    });
    let repository = InventoryItem::Repository(Repository {
        registry: R1.into(),
        name: "app".into(),
        updated_at: None,
    });
    let run = store
        .begin_run("prod", RunTrigger::Manual, &scope(&[R1]))
        .unwrap();
    store
        .ingest_inventory(
            run,
            &[
                registry.clone(),
                repository.clone(),
                image("sha256:a", &["v1"]),
                image("sha256:b", &[]),
            ],
        )
        .unwrap();
    store
        .ingest_findings(run, TOOL, &[finding(R1, "app", "sha256:a", "CVE-1", "x")])
        .unwrap();
    let info = store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[R1]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    assert_eq!(info.images_seen, 2);
    let rows = all_issues(&store);
    assert_eq!(rows[0].images[0].tags, strings(&["v1"]));

    // A partial run that sees only image b of a registry it could not read to the end: image a
    // is not marked removed.
    let run = store
        .begin_run("prod", RunTrigger::Manual, &scope(&[R1]))
        .unwrap();
    store
        .ingest_inventory(run, &[image("sha256:b", &[])])
        .unwrap();
    store
        .finish_run(
            run,
            &RunOutcome::Partial {
                reason: "throttled".into(),
            },
            &Coverage {
                registries: vec![RegistryCoverage::uncovered(R1, "throttled")],
                ..Coverage::default()
            },
            &accept_drop(),
            &everything,
        )
        .unwrap();
    let detail = store.issue(rows[0].id).unwrap().unwrap();
    assert!(!detail.findings[0].image_removed);

    // A complete one does, and resolves its finding in the same step.
    let run = store
        .begin_run("prod", RunTrigger::Manual, &scope(&[R1]))
        .unwrap();
    store
        .ingest_inventory(run, &[registry, repository, image("sha256:b", &[])])
        .unwrap();
    store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[R1]),
            &accept_drop(),
            &everything,
        )
        .unwrap();
    let detail = store.issue(rows[0].id).unwrap().unwrap();
    assert!(detail.findings[0].image_removed);
    assert_eq!(detail.findings[0].status, IssueStatus::Resolved);
    let known = store.known_locations("prod").unwrap();
    assert_eq!(known.len(), 1);
    assert_eq!((known[0].name.as_str(), known[0].removed), (R1, false));
    assert_eq!(known[0].repositories, [("app".to_owned(), false)]);
}

#[test]
fn runs_take_no_data_after_they_finish_and_coverage_stays_inside_the_scope() {
    let mut store = store_with(&["prod"]);
    let run = store
        .begin_run("prod", RunTrigger::Api, &scope(&[R1]))
        .unwrap();
    let err = store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[R1, R2]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::CoverageOutsideScope { registry, .. } if registry == R2),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("registry `{R2}` is outside the scope requested for scan run {run}")
    );
    // A registry outside the scope that was not read is no claim about it.
    store
        .finish_run(
            run,
            &RunOutcome::Partial {
                reason: "R2 is not ours".into(),
            },
            &Coverage {
                registries: vec![
                    RegistryCoverage::covered(R1),
                    RegistryCoverage::uncovered(R2, "outside the scope"),
                ],
                ..Coverage::default()
            },
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    let late = store.ingest_findings(run, TOOL, &[finding(R1, "app", "sha256:a", "CVE-1", "x")]);
    assert!(matches!(
        late,
        Err(Error::RunNotRunning {
            status: RunStatus::Partial,
            ..
        })
    ));
    assert!(matches!(
        store.finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::default(),
            &ResolveGuard::default(),
            &everything
        ),
        Err(Error::RunNotRunning { .. })
    ));
    assert!(matches!(
        store.begin_run("nope", RunTrigger::Manual, &scope(&[])),
        Err(Error::UnknownConnection(n)) if n == "nope"
    ));
    assert!(all_issues(&store).is_empty());
}
