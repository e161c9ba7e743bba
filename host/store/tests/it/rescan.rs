//! What a rescan writes: nothing for an unchanged finding or image, and a source row once
//! however many findings were read from it.

use keelson_core::ScanScope;
use keelson_store::{Coverage, IngestCounts, ResolveGuard, RunOutcome, RunTrigger, Store};
use rusqlite::Connection;

use crate::{TOOL, add_connections, everything, finding, scan};

const R1: &str = "one.azurecr.io";

/// Counts every insert into and update of `findings`, through triggers in the database file, so
/// the store's own writes are counted whatever statement makes them.
fn count_finding_writes(db: &Connection) {
    db.execute_batch(
        "CREATE TABLE finding_writes (n INTEGER NOT NULL);
         INSERT INTO finding_writes VALUES (0);
         CREATE TRIGGER count_finding_inserts AFTER INSERT ON findings
         BEGIN UPDATE finding_writes SET n = n + 1; END;
         CREATE TRIGGER count_finding_updates AFTER UPDATE ON findings
         BEGIN UPDATE finding_writes SET n = n + 1; END;
         CREATE TABLE image_writes (n INTEGER NOT NULL);
         INSERT INTO image_writes VALUES (0);
         CREATE TRIGGER count_image_inserts AFTER INSERT ON images
         BEGIN UPDATE image_writes SET n = n + 1; END;
         CREATE TRIGGER count_image_updates AFTER UPDATE ON images
         BEGIN UPDATE image_writes SET n = n + 1; END;",
    )
    .unwrap();
}

fn finding_writes(db: &Connection) -> i64 {
    db.query_row("SELECT n FROM finding_writes", [], |r| r.get(0))
        .unwrap()
}

fn image_writes(db: &Connection) -> i64 {
    db.query_row("SELECT n FROM image_writes", [], |r| r.get(0))
        .unwrap()
}

fn reset(db: &Connection) {
    db.execute_batch("UPDATE finding_writes SET n = 0; UPDATE image_writes SET n = 0;")
        .unwrap();
}

#[test]
fn an_unchanged_rescan_writes_no_finding_or_image_row_and_still_resolves_what_it_did_not_see() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    let mut store = Store::open(&path).unwrap();
    add_connections(&mut store, &["prod"]);
    let db = Connection::open(&path).unwrap();
    count_finding_writes(&db);

    let findings: Vec<_> = (0..300)
        .map(|i| {
            finding(
                R1,
                &format!("app{}", i % 7),
                &format!("sha256:{:02}", i % 40),
                &format!("CVE-{i}"),
                "pkg",
            )
        })
        .collect();
    // Two pages, as a connector would deliver them.
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    for page in findings.chunks(128) {
        store.ingest_findings(run, TOOL, page).unwrap();
    }
    let first = store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[R1]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    assert_eq!(finding_writes(&db), 300);
    // Timestamps have millisecond resolution: the rescan must finish visibly later.
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(image_writes(&db), 280, "one per (repository, digest)");

    reset(&db);
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    let mut counts = IngestCounts::default();
    for page in findings.chunks(100) {
        counts += store.ingest_findings(run, TOOL, page).unwrap();
    }
    let info = store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[R1]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    assert_eq!(counts.seen, 300);
    assert_eq!(info.findings_resolved, 0);
    assert_eq!(
        finding_writes(&db),
        0,
        "an unchanged rescan wrote finding rows"
    );
    assert_eq!(image_writes(&db), 0, "an unchanged rescan wrote image rows");
    assert_eq!(info.images_seen, 280);
    // The finding rows were not touched, yet the queue says they were seen by this run.
    let covered_at: String = db
        .query_row(
            "SELECT last_covered_at FROM registries WHERE name = ?1",
            [R1],
            |r| r.get(0),
        )
        .unwrap();
    let finished_at = info.finished_at.clone().unwrap();
    assert_eq!(covered_at, finished_at);
    assert_ne!(first.finished_at.as_deref(), Some(finished_at.as_str()));
    for row in crate::all_issues(&store) {
        assert_eq!(row.last_seen, finished_at, "{}", row.vulnerability_id);
    }
    let batches: i64 = db
        .query_row("SELECT count(*) FROM run_seen", [], |r| r.get(0))
        .unwrap();
    assert_eq!(batches, 0, "a finished run keeps no seen batches");

    // The third scan misses two findings: exactly those are resolved, and only they are written.
    reset(&db);
    let (_, counts, info) = scan(
        &mut store,
        "prod",
        &findings[2..],
        &RunOutcome::Complete,
        &[R1],
    );
    assert_eq!((counts.seen, info.findings_resolved), (298, 2));
    assert_eq!(finding_writes(&db), 2);
    let resolved: Vec<String> = db
        .prepare(
            "SELECT i.vulnerability_id FROM findings f JOIN issues i ON i.id = f.issue_id
             WHERE f.status = 'resolved' ORDER BY f.id",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(resolved, ["CVE-0", "CVE-1"]);
}

#[test]
fn findings_read_from_one_source_row_share_its_raw_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    let mut store = Store::open(&path).unwrap();
    add_connections(&mut store, &["prod"]);
    let row = |digest: &str, cves: &[&str]| -> Vec<_> {
        cves.iter()
            .map(|cve| {
                let mut f = finding(R1, "app", digest, cve, "pkg");
                f.raw = format!(r#"{{"digest":"{digest}","cves":{cves:?}}}"#);
                f
            })
            .collect()
    };
    let mut page = row("sha256:a", &["CVE-1", "CVE-2", "CVE-3"]);
    page.extend(row("sha256:b", &["CVE-1", "CVE-4"]));
    scan(&mut store, "prod", &page, &RunOutcome::Complete, &[R1]);

    let db = Connection::open(&path).unwrap();
    let (raw_rows, findings): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM raw_rows), (SELECT count(*) FROM findings)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((raw_rows, findings), (2, 5));
    // Each finding still shows its own source row.
    let issue = store
        .issues(&keelson_store::IssueFilter {
            vulnerability: Some("CVE-1".into()),
            ..keelson_store::IssueFilter::default()
        })
        .unwrap()[0]
        .id;
    let detail = store.issue(issue).unwrap().unwrap();
    let mut raws: Vec<&str> = detail.findings.iter().map(|f| f.raw.as_str()).collect();
    raws.sort_unstable();
    assert_eq!(
        raws,
        [
            r#"{"digest":"sha256:a","cves":["CVE-1", "CVE-2", "CVE-3"]}"#,
            r#"{"digest":"sha256:b","cves":["CVE-1", "CVE-4"]}"#
        ]
    );
}
