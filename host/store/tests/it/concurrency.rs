//! T31: one run at a time per connection, across stores and processes; concurrent writers and
//! readers on one file never see `SQLITE_BUSY`.

use std::sync::{Arc, Barrier};
use std::thread;

use keelson_store::{
    Coverage, Error, IssueFilter, ResolveGuard, RunOutcome, RunStatus, RunTrigger, Store,
};

use crate::{TOOL, add_connections, everything, finding, scope};

#[test]
fn a_second_run_of_the_same_connection_is_refused_as_already_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    let mut first = Store::open(&path).unwrap();
    add_connections(&mut first, &["prod", "staging"]);
    let mut second = Store::open(&path).unwrap();

    let run = first
        .begin_run("prod", RunTrigger::Schedule, &scope(&[]))
        .unwrap();
    for store in [&mut first, &mut second] {
        let err = store
            .begin_run("prod", RunTrigger::Manual, &scope(&[]))
            .unwrap_err();
        assert!(
            matches!(&err, Error::AlreadyRunning { run: r, .. } if *r == run),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("a scan of connection `prod` is already running (run {run})")
        );
    }
    // Another connection is independent; the first connection is free again once finished.
    let other = second
        .begin_run("staging", RunTrigger::Manual, &scope(&[]))
        .unwrap();
    second
        .finish_run(
            other,
            &RunOutcome::Complete,
            &Coverage::default(),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    first
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::default(),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    let again = second
        .begin_run("prod", RunTrigger::Manual, &scope(&[]))
        .unwrap();
    second
        .finish_run(
            again,
            &RunOutcome::Cancelled,
            &Coverage::default(),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
}

#[test]
fn a_run_whose_store_is_gone_is_interrupted_not_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    let mut survivor = Store::open(&path).unwrap();
    add_connections(&mut survivor, &["prod"]);
    let mut dying = Store::open(&path).unwrap();
    let run = dying
        .begin_run("prod", RunTrigger::Manual, &scope(&[]))
        .unwrap();
    dying
        .ingest_findings(
            run,
            TOOL,
            &[finding("r.azurecr.io", "app", "sha256:a", "CVE-1", "x")],
        )
        .unwrap();

    // While its owner lives, recovery leaves the run alone.
    assert!(survivor.recover_interrupted().unwrap().is_empty());
    drop(dying);
    assert_eq!(survivor.recover_interrupted().unwrap(), [run]);
    let info = survivor.run(run).unwrap().unwrap();
    assert_eq!(info.status, RunStatus::Interrupted);
    assert_eq!(info.findings_new, 1, "what it committed stays");

    // begin_run also clears an abandoned lease by itself.
    let mut dying = Store::open(&path).unwrap();
    let abandoned = dying
        .begin_run("prod", RunTrigger::Manual, &scope(&[]))
        .unwrap();
    drop(dying);
    let next = survivor
        .begin_run("prod", RunTrigger::Manual, &scope(&[]))
        .unwrap();
    assert_eq!(
        survivor.run(abandoned).unwrap().unwrap().status,
        RunStatus::Interrupted
    );
    survivor
        .finish_run(
            next,
            &RunOutcome::Complete,
            &Coverage::default(),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
}

#[test]
fn racing_begin_runs_on_one_connection_let_exactly_one_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    add_connections(&mut Store::open(&path).unwrap(), &["prod"]);
    for _ in 0..5 {
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                thread::spawn(move || {
                    let mut store = Store::open(&path).unwrap();
                    barrier.wait();
                    let result = store.begin_run("prod", RunTrigger::Manual, &scope(&[]));
                    // Keep the store (and so the lease owner) alive until every thread has tried.
                    barrier.wait();
                    (result, store)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut winners = 0;
        for (result, mut store) in results {
            match result {
                Ok(run) => {
                    winners += 1;
                    store
                        .finish_run(
                            run,
                            &RunOutcome::Cancelled,
                            &Coverage::default(),
                            &ResolveGuard::default(),
                            &everything,
                        )
                        .unwrap();
                }
                Err(Error::AlreadyRunning { .. }) => {}
                Err(other) => panic!("unexpected error: {other:?}"),
            }
        }
        assert_eq!(winners, 1);
    }
}

#[test]
fn concurrent_writers_and_readers_on_one_file_never_see_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    add_connections(&mut Store::open(&path).unwrap(), &["c0", "c1", "c2"]);
    let barrier = Arc::new(Barrier::new(4));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (path, barrier) = (path.clone(), barrier.clone());
            thread::spawn(move || -> Result<u64, Error> {
                let mut store = Store::open(&path)?;
                let connection = format!("c{w}");
                let registry = format!("r{w}.azurecr.io");
                barrier.wait();
                let mut written = 0;
                for round in 0..3 {
                    let run = store.begin_run(&connection, RunTrigger::Manual, &scope(&[]))?;
                    for page in 0..8 {
                        let findings: Vec<_> = (0..40)
                            .map(|i| {
                                finding(
                                    &registry,
                                    "app",
                                    &format!("sha256:{page}"),
                                    &format!("CVE-{i}"),
                                    "p",
                                )
                            })
                            .collect();
                        written += store.ingest_findings(run, TOOL, &findings)?.total();
                    }
                    let outcome = if round == 1 {
                        RunOutcome::Cancelled
                    } else {
                        RunOutcome::Complete
                    };
                    store.finish_run(
                        run,
                        &outcome,
                        &Coverage::complete(&[&registry]),
                        &ResolveGuard::default(),
                        &everything,
                    )?;
                }
                Ok(written)
            })
        })
        .collect();
    let reader = {
        let (path, barrier) = (path.clone(), barrier.clone());
        thread::spawn(move || -> Result<usize, Error> {
            let store = Store::open(&path)?;
            barrier.wait();
            let mut reads = 0;
            for _ in 0..40 {
                let rows = store.issues(&IssueFilter {
                    limit: Some(50),
                    ..IssueFilter::default()
                })?;
                // A reader sees whole pages: every issue it sees has at least one image.
                assert!(rows.iter().all(|r| !r.images.is_empty()));
                reads += 1;
            }
            Ok(reads)
        })
    };
    for writer in writers {
        let written = writer
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("writer failed: {e:?}"));
        assert_eq!(written, 3 * 8 * 40);
    }
    assert_eq!(
        reader
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("reader failed: {e:?}")),
        40
    );
    let store = Store::open(&path).unwrap();
    assert_eq!(store.issues(&IssueFilter::default()).unwrap().len(), 3 * 40);
    assert_eq!(store.integrity_check().unwrap(), ["ok"]);
}
