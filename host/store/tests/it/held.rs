//! A sudden drop is held instead of applied: what a held run keeps and does not do, and how
//! accepting it applies exactly what it computed, once, while it is the newest run.

use keelson_core::{Finding, Image, ImageRef, ScanScope};
use keelson_store::{
    Coverage, Error, InventoryItem, IssueFilter, IssueStatus, ResolveGuard, RunOutcome, RunStatus,
    RunTrigger, Store,
};
use rusqlite::Connection;

use crate::{TOOL, accept_drop, add_connections, everything, finding, scan, scan_with};

const R1: &str = "one.azurecr.io";
const R2: &str = "two.azurecr.io";

fn findings(registry: &str, n: usize) -> Vec<Finding> {
    (0..n)
        .map(|i| finding(registry, "app", "sha256:a", &format!("CVE-{i}"), "pkg"))
        .collect()
}

fn open_findings(store: &Store) -> usize {
    store
        .issues(&IssueFilter {
            statuses: vec![IssueStatus::Open],
            ..IssueFilter::default()
        })
        .unwrap()
        .len()
}

fn file_store() -> (tempfile::TempDir, Store, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    let mut store = Store::open(&path).unwrap();
    add_connections(&mut store, &["prod"]);
    let db = Connection::open(&path).unwrap();
    (dir, store, db)
}

fn count(db: &Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_run_that_would_resolve_every_open_finding_is_held_and_keeps_what_it_added() {
    let (_dir, mut store, db) = file_store();
    let (_, _, first) = scan(
        &mut store,
        "prod",
        &findings(R1, 30),
        &RunOutcome::Complete,
        &[R1],
    );
    let covered_before: String = db
        .query_row("SELECT last_covered_at FROM registries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(Some(&covered_before), first.finished_at.as_ref());

    // Resource Graph answers `200` with no rows: the run would resolve all 30.
    let (run, _, info) = scan(&mut store, "prod", &[], &RunOutcome::Complete, &[R1]);
    assert_eq!(info.status, RunStatus::Held);
    assert_eq!(info.findings_resolved, 0);
    let held = info.held.unwrap();
    assert_eq!(
        (
            held.would_resolve,
            held.open,
            held.open_in_covered,
            held.then
        ),
        (30, 30, 30, RunStatus::Complete)
    );
    assert_eq!(
        held.reason,
        format!(
            "would resolve 30 of 30 open findings (every open finding in the scopes it read); \
             accept with `keelson runs accept {run}`"
        )
    );
    assert_eq!(open_findings(&store), 30);
    let covered_after: String = db
        .query_row("SELECT last_covered_at FROM registries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(covered_after, covered_before, "a held run covers nothing");
    assert_eq!(count(&db, "SELECT count(*) FROM run_seen"), 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM run_held WHERE kind = 'findings'"),
        1
    );

    // A held run still stores what is new; held again by the share of 31 it would resolve.
    let mut page = vec![finding(R1, "app", "sha256:b", "CVE-NEW", "pkg")];
    page.extend(findings(R1, 1));
    let (_, counts, info) = scan(&mut store, "prod", &page, &RunOutcome::Complete, &[R1]);
    assert_eq!((counts.new, counts.seen), (1, 1));
    assert_eq!(info.status, RunStatus::Held);
    let held = info.held.unwrap();
    assert_eq!(
        (held.would_resolve, held.open, held.open_in_covered),
        (29, 31, 31)
    );
    assert!(
        held.reason
            .contains("more than 50% of the connection's open findings"),
        "{}",
        held.reason
    );
    assert_eq!(open_findings(&store), 31);
    // The first held run can never be accepted now, so what it kept is gone.
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM run_held WHERE run_id = {run}")
        ),
        0
    );
}

#[test]
fn accepting_applies_exactly_the_held_resolution_and_is_audited() {
    let (_dir, mut store, db) = file_store();
    let image = |digest: &str| {
        InventoryItem::Image(Image {
            image_ref: ImageRef {
                registry: R1.into(),
                repository: "app".into(),
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
    };
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store.ingest_inventory(run, &[image("sha256:a")]).unwrap();
    store.ingest_findings(run, TOOL, &findings(R1, 3)).unwrap();
    store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[R1]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();

    let held_run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    let info = store
        .finish_run(
            held_run,
            &RunOutcome::Partial {
                reason: "a registry outside this connection's grant".into(),
            },
            &Coverage::complete(&[R1]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    assert_eq!(info.status, RunStatus::Held);
    assert_eq!(info.held.as_ref().unwrap().then, RunStatus::Partial);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM images WHERE removed_at IS NOT NULL"
        ),
        0
    );

    // Someone triages one of them before the accept: it stays suppressed.
    let suppressed = store
        .issues(&IssueFilter {
            vulnerability: Some("CVE-0".into()),
            ..IssueFilter::default()
        })
        .unwrap()[0]
        .id;
    store
        .suppress(suppressed, "not affected", None, "bob")
        .unwrap();

    let accepted = store.accept_held(held_run, "token:alice").unwrap();
    assert_eq!(accepted.status, RunStatus::Partial);
    assert_eq!(accepted.findings_resolved, 2);
    assert_eq!(accepted.accepted_by.as_deref(), Some("token:alice"));
    assert!(accepted.accepted_at.is_some());
    assert_eq!(
        accepted.held.as_ref().map(|h| h.would_resolve),
        Some(3),
        "the record of the hold stays"
    );
    assert_eq!(open_findings(&store), 0);
    let rows = store.issues(&IssueFilter::default()).unwrap();
    for row in &rows {
        let expected = if row.id == suppressed {
            IssueStatus::Suppressed
        } else {
            IssueStatus::Resolved
        };
        assert_eq!(row.status, expected, "{}", row.vulnerability_id);
    }
    let detail = store
        .issue(rows.iter().find(|r| r.id != suppressed).unwrap().id)
        .unwrap()
        .unwrap();
    let resolved = detail.history.last().unwrap();
    assert_eq!(resolved.kind, "resolved");
    assert_eq!(resolved.run, Some(held_run));
    assert_eq!(resolved.actor.as_deref(), Some("token:alice"));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM images WHERE removed_at IS NOT NULL"
        ),
        1
    );
    let covered_run: i64 = db
        .query_row("SELECT last_covered_run_id FROM registries", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(covered_run, held_run.0);
    assert_eq!(count(&db, "SELECT count(*) FROM run_held"), 0);
    let audit = store.events_by_actor("token:alice", 10).unwrap();
    assert_eq!(audit.len(), 3, "two resolutions and the accept: {audit:?}");
    assert_eq!(audit[0].1, "run-accepted");
    let detail: String = db
        .query_row(
            "SELECT new_value FROM events WHERE kind = 'run-accepted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&detail).unwrap(),
        serde_json::json!({"status": "partial", "findings_resolved": 2, "images_removed": 1})
    );

    // Accepted once; a second accept is refused and changes nothing.
    let err = store.accept_held(held_run, "token:alice").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("run `{held_run}` is `partial`, not held; nothing to accept")
    );
}

#[test]
fn a_held_run_cannot_be_accepted_once_a_newer_run_started() {
    let mut store = crate::store_with(&["prod"]);
    scan(
        &mut store,
        "prod",
        &findings(R1, 5),
        &RunOutcome::Complete,
        &[R1],
    );
    let (held, _, info) = scan(&mut store, "prod", &[], &RunOutcome::Complete, &[R1]);
    assert_eq!(info.status, RunStatus::Held);
    let newer = store
        .begin_run("prod", RunTrigger::Schedule, &ScanScope::default())
        .unwrap();
    let err = store.accept_held(held, "alice").unwrap_err();
    assert!(
        matches!(err, Error::HeldSuperseded { run, newer: n } if run == held && n == newer),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "run `{held}` was held, but run `{newer}` of the same connection started after it; \
             its resolution is out of date — accept or re-run the newest"
        )
    );
    assert_eq!(open_findings(&store), 5);
    assert_eq!(store.run(held).unwrap().unwrap().status, RunStatus::Held);
    assert!(matches!(
        store.accept_held(keelson_store::RunId(999), "alice"),
        Err(Error::UnknownRun(_))
    ));
    assert!(matches!(
        store.accept_held(newer, "alice"),
        Err(Error::NotHeld {
            status: RunStatus::Running,
            ..
        })
    ));
}

#[test]
fn accept_drop_pre_approves_and_the_share_guard_spares_small_connections() {
    let mut store = crate::store_with(&["prod"]);
    scan(
        &mut store,
        "prod",
        &findings(R1, 5),
        &RunOutcome::Complete,
        &[R1],
    );
    let (_, _, info) = scan_with(
        &mut store,
        "prod",
        &[],
        &RunOutcome::Complete,
        &Coverage::complete(&[R1]),
        &accept_drop(),
    );
    assert_eq!(
        (info.status, info.findings_resolved),
        (RunStatus::Complete, 5)
    );
    assert!(info.held.is_none());

    // 20 open in R1, 10 in R2: resolving 16 of 30 is more than half of more than 20.
    let mut all = findings(R1, 20);
    all.extend(findings(R2, 10));
    scan(&mut store, "prod", &all, &RunOutcome::Complete, &[R1, R2]);
    let mut kept = all[..4].to_vec();
    kept.extend(all[20..].iter().cloned());
    let (_, _, info) = scan(&mut store, "prod", &kept, &RunOutcome::Complete, &[R1, R2]);
    assert_eq!(info.status, RunStatus::Held);
    let held = info.held.unwrap();
    assert_eq!(
        (held.would_resolve, held.open, held.open_in_covered),
        (16, 30, 30)
    );
    // With a threshold of 30 open findings the same drop goes through.
    let (_, _, info) = scan_with(
        &mut store,
        "prod",
        &kept,
        &RunOutcome::Complete,
        &Coverage::complete(&[R1, R2]),
        &ResolveGuard {
            min_open: 30,
            ..ResolveGuard::default()
        },
    );
    assert_eq!(
        (info.status, info.findings_resolved),
        (RunStatus::Complete, 16)
    );
}
