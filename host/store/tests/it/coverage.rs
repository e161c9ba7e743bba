//! Per-scope coverage: a run resolves and removes only inside the registries it read completely
//! while the findings listing was complete, and only in selected repositories; the queue learns
//! each connection's last run and how recent its data is.

use keelson_core::{Image, ImageRef, ScanScope};
use keelson_store::{
    Coverage, InventoryItem, IssueFilter, IssueStatus, RegistryCoverage, ResolveGuard, RunOutcome,
    RunStatus, RunTrigger, Store,
};
use rusqlite::Connection;

use crate::{
    TOOL, accept_drop, add_connections, everything, finding, scan, scan_with, store_with, strings,
};

const R1: &str = "one.azurecr.io";
const R2: &str = "two.azurecr.io";

fn status_of(store: &Store, registry: &str, repository: &str, vulnerability: &str) -> IssueStatus {
    let rows = store
        .issues(&IssueFilter {
            registry: Some(registry.into()),
            repository: Some(repository.into()),
            vulnerability: Some(vulnerability.into()),
            ..IssueFilter::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].status
}

fn image(registry: &str, repository: &str, digest: &str) -> InventoryItem {
    InventoryItem::Image(Image {
        image_ref: ImageRef {
            registry: registry.into(),
            repository: repository.into(),
            digest: digest.into(),
        },
        tags: vec![],
        media_type: None,
        platform: None,
        children: vec![],
        size_bytes: None,
        created_at: None,
        updated_at: None,
    })
}

fn last_covered_at(db: &Connection, registry: &str) -> Option<String> {
    db.query_row(
        "SELECT last_covered_at FROM registries WHERE name = ?1",
        [registry],
        |r| r.get(0),
    )
    .unwrap()
}

fn image_removed(db: &Connection, digest: &str) -> bool {
    db.query_row(
        "SELECT removed_at IS NOT NULL FROM images WHERE digest = ?1",
        [digest],
        |r| r.get(0),
    )
    .unwrap()
}

/// A file-backed store with connection `prod`, and a second handle to read what it wrote.
fn file_store() -> (tempfile::TempDir, Store, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    let mut store = Store::open(&path).unwrap();
    add_connections(&mut store, &["prod"]);
    let db = Connection::open(&path).unwrap();
    (dir, store, db)
}

#[test]
fn a_partial_run_brings_the_registries_it_read_up_to_date_and_keeps_the_rest() {
    let (_dir, mut store, db) = file_store();
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store
        .ingest_inventory(
            run,
            &[
                image(R1, "app", "sha256:a1"),
                image(R1, "app", "sha256:a2"),
                image(R2, "app", "sha256:b1"),
                image(R2, "app", "sha256:b2"),
            ],
        )
        .unwrap();
    store
        .ingest_findings(
            run,
            TOOL,
            &[
                finding(R1, "app", "sha256:a1", "CVE-1", "p"),
                finding(R1, "app", "sha256:a2", "CVE-2", "p"),
                finding(R2, "app", "sha256:b1", "CVE-3", "p"),
                finding(R2, "app", "sha256:b2", "CVE-4", "p"),
            ],
        )
        .unwrap();
    let first = store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[R1, R2]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));

    // R2 answers 403 this time; R1 was read to the end and lost image a2 and its finding.
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store
        .ingest_inventory(run, &[image(R1, "app", "sha256:a1")])
        .unwrap();
    store
        .ingest_findings(run, TOOL, &[finding(R1, "app", "sha256:a1", "CVE-1", "p")])
        .unwrap();
    let coverage = Coverage {
        registries: vec![
            RegistryCoverage::covered(R1),
            RegistryCoverage::uncovered(R2, "403 AuthorizationFailed"),
        ],
        ..Coverage::default()
    };
    let info = store
        .finish_run(
            run,
            &RunOutcome::Partial {
                reason: "1 of 2 registries could not be read".into(),
            },
            &coverage,
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    assert_eq!(info.status, RunStatus::Partial);
    assert_eq!(info.findings_resolved, 1);
    assert_eq!(info.covered_registries, Some(strings(&[R1])));
    assert_eq!(info.coverage, Some(coverage));
    assert_eq!(
        info.error.as_deref(),
        Some("1 of 2 registries could not be read")
    );
    assert_eq!(status_of(&store, R1, "app", "CVE-1"), IssueStatus::Open);
    assert_eq!(status_of(&store, R1, "app", "CVE-2"), IssueStatus::Resolved);
    assert_eq!(status_of(&store, R2, "app", "CVE-3"), IssueStatus::Open);
    assert_eq!(status_of(&store, R2, "app", "CVE-4"), IssueStatus::Open);
    assert!(!image_removed(&db, "sha256:a1"));
    assert!(image_removed(&db, "sha256:a2"));
    assert!(!image_removed(&db, "sha256:b1"), "R2 was not read");
    assert!(!image_removed(&db, "sha256:b2"), "R2 was not read");
    assert_eq!(last_covered_at(&db, R1), info.finished_at);
    assert_eq!(last_covered_at(&db, R2), first.finished_at);
}

#[test]
fn a_findings_listing_cut_short_resolves_nothing_anywhere() {
    let (_dir, mut store, db) = file_store();
    scan(
        &mut store,
        "prod",
        &[
            finding(R1, "app", "sha256:a", "CVE-1", "p"),
            finding(R1, "app", "sha256:a", "CVE-2", "p"),
        ],
        &RunOutcome::Complete,
        &[R1],
    );
    let before = last_covered_at(&db, R1);
    let coverage = Coverage {
        findings: Some("Resource Graph answered `data: null`".into()),
        ..Coverage::complete(&[R1])
    };
    let (_, _, info) = scan_with(
        &mut store,
        "prod",
        &[finding(R1, "app", "sha256:a", "CVE-1", "p")],
        &RunOutcome::Partial {
            reason: "findings incomplete".into(),
        },
        &coverage,
        &accept_drop(),
    );
    assert_eq!(info.status, RunStatus::Partial);
    assert_eq!(info.findings_resolved, 0);
    assert_eq!(info.covered_registries, Some(vec![]));
    assert_eq!(status_of(&store, R1, "app", "CVE-2"), IssueStatus::Open);
    assert_eq!(last_covered_at(&db, R1), before);
}

#[test]
fn deselected_repositories_keep_their_findings_and_images() {
    let (_dir, mut store, db) = file_store();
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store
        .ingest_inventory(
            run,
            &[
                image(R1, "app", "sha256:app"),
                image(R1, "legacy", "sha256:old"),
            ],
        )
        .unwrap();
    store
        .ingest_findings(
            run,
            TOOL,
            &[
                finding(R1, "app", "sha256:app", "CVE-1", "p"),
                finding(R1, "app", "sha256:app", "CVE-2", "p"),
                finding(R1, "legacy", "sha256:old", "CVE-3", "p"),
            ],
        )
        .unwrap();
    let first = store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[R1]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();

    // `legacy` is deselected now: the scan reads neither its images nor its findings.
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store
        .ingest_inventory(run, &[image(R1, "app", "sha256:app")])
        .unwrap();
    store
        .ingest_findings(run, TOOL, &[finding(R1, "app", "sha256:app", "CVE-1", "p")])
        .unwrap();
    let coverage = Coverage {
        registries: vec![RegistryCoverage {
            registry: R1.into(),
            uncovered: None,
            deselected: 1,
        }],
        ..Coverage::default()
    };
    let selected = |registry: &str, repository: &str| {
        assert_eq!(
            registry, R1,
            "asked only about the registry it may resolve in"
        );
        repository != "legacy"
    };
    let info = store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &coverage,
            &ResolveGuard::default(),
            &selected,
        )
        .unwrap();
    assert_eq!(info.status, RunStatus::Complete);
    assert_eq!(info.findings_resolved, 1);
    assert_eq!(status_of(&store, R1, "app", "CVE-2"), IssueStatus::Resolved);
    assert_eq!(status_of(&store, R1, "legacy", "CVE-3"), IssueStatus::Open);
    assert!(!image_removed(&db, "sha256:old"));
    let legacy_removed: bool = db
        .query_row(
            "SELECT removed_at IS NOT NULL FROM repositories WHERE name = 'legacy'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!legacy_removed);
    // The legacy findings were not read, so the registry is not "seen as of this run" as a whole.
    assert_eq!(last_covered_at(&db, R1), first.finished_at);
}

#[test]
fn the_queue_learns_each_connections_last_run_and_how_old_its_data_is() {
    let mut store = store_with(&["prod", "staging", "never", "gone"]);
    let (_, _, good) = scan(
        &mut store,
        "prod",
        &[finding(R1, "app", "sha256:a", "CVE-1", "p")],
        &RunOutcome::Complete,
        &[R1],
    );
    let (failed, _, _) = scan_with(
        &mut store,
        "prod",
        &[],
        &RunOutcome::Failed {
            reason: "cannot connect: invalid client secret".into(),
        },
        &Coverage {
            registry_listing: Some("cannot connect".into()),
            findings: Some("cannot connect".into()),
            registries: vec![],
        },
        &ResolveGuard::default(),
    );
    let running = store
        .begin_run("staging", RunTrigger::Schedule, &ScanScope::default())
        .unwrap();
    scan(&mut store, "gone", &[], &RunOutcome::Complete, &[]);
    store.retire_connection("gone", "alice").unwrap();

    let states = store.connection_states().unwrap();
    let names: Vec<&str> = states.iter().map(|s| s.connection.as_str()).collect();
    assert_eq!(
        names,
        ["never", "prod", "staging"],
        "retired ones are left out"
    );

    assert_eq!(states[0].last_run, None);
    assert_eq!(states[0].data_as_of, None, "never scanned is never clean");

    let prod = states[1].last_run.as_ref().unwrap();
    assert_eq!((prod.id, prod.status), (failed, RunStatus::Failed));
    assert_eq!(
        prod.error.as_deref(),
        Some("cannot connect: invalid client secret")
    );
    assert_eq!(
        prod.coverage.as_deref(),
        Some("0/0 registries covered; registry listing: cannot connect; findings: cannot connect")
    );
    assert_eq!(
        states[1].data_as_of, good.finished_at,
        "the data is as of the last run that stored some"
    );

    let staging = states[2].last_run.as_ref().unwrap();
    assert_eq!((staging.id, staging.status), (running, RunStatus::Running));
    assert_eq!(
        (staging.finished_at.as_deref(), staging.coverage.as_deref()),
        (None, None)
    );
    assert_eq!(states[2].data_as_of, None);
}
