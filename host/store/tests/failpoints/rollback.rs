//! Rollback: a failure at any point inside a commit leaves nothing of that transaction, one after
//! a commit leaves that commit whole, and every listed point is reached.

use std::panic::{AssertUnwindSafe, catch_unwind};

use keelson_core::{Finding, ScanScope};
use keelson_store::{
    Coverage, Error, FAILPOINTS, IssueFilter, IssueStatus, ResolveGuard, RunId, RunOutcome,
    RunStatus, RunTrigger, Store,
};

use crate::{TOOL, add_prod};

const R1: &str = "one.azurecr.io";

fn finding(vulnerability: &str) -> Finding {
    crate::finding(R1, "sha256:a", vulnerability)
}

/// A store where connection `prod` has CVE-1 and CVE-2 open in R1, and a running run that saw
/// only CVE-1, so finishing it complete resolves CVE-2.
fn store_with_a_resolving_run() -> (Store, RunId) {
    let mut store = Store::open_in_memory().unwrap();
    add_prod(&mut store);
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store
        .ingest_findings(run, TOOL, &[finding("CVE-1"), finding("CVE-2")])
        .unwrap();
    finish(&mut store, run, &ResolveGuard::default()).unwrap();
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store
        .ingest_findings(run, TOOL, &[finding("CVE-1")])
        .unwrap();
    (store, run)
}

fn finish(
    store: &mut Store,
    run: RunId,
    guard: &ResolveGuard,
) -> keelson_store::Result<keelson_store::RunInfo> {
    store.finish_run(
        run,
        &RunOutcome::Complete,
        &Coverage::complete(&[R1]),
        guard,
        &|_, _| true,
    )
}

fn open_count(store: &Store) -> usize {
    store
        .issues(&IssueFilter {
            statuses: vec![IssueStatus::Open],
            ..IssueFilter::default()
        })
        .unwrap()
        .len()
}

const INSIDE_FINISH: [&str; 3] = [
    "store::finish_run::before_resolve",
    "store::finish_run::after_resolve",
    "store::finish_run::before_commit",
];

#[test]
fn a_failure_inside_finish_run_leaves_the_run_running_with_nothing_resolved() {
    let scenario = fail::FailScenario::setup();
    for point in INSIDE_FINISH {
        for action in ["return", "panic"] {
            let (mut store, run) = store_with_a_resolving_run();
            fail::cfg(point, action).unwrap();
            let result = catch_unwind(AssertUnwindSafe(|| {
                finish(&mut store, run, &ResolveGuard::default())
            }));
            fail::remove(point);
            match (action, result) {
                ("return", Ok(Err(Error::Failpoint(at)))) => assert_eq!(at, point),
                ("panic", Err(_)) => {}
                (_, other) => panic!("{point} {action}: {other:?}"),
            }
            let info = store.run(run).unwrap().unwrap();
            assert_eq!(info.status, RunStatus::Running, "{point} {action}");
            assert_eq!(info.finished_at, None, "{point} {action}");
            assert_eq!(
                open_count(&store),
                2,
                "{point} {action}: resolved something"
            );

            // The run is whole: finishing it again resolves what it did not see.
            let info = finish(&mut store, run, &ResolveGuard::default()).unwrap();
            assert_eq!(
                (info.status, info.findings_resolved),
                (RunStatus::Complete, 1),
                "{point} {action}"
            );
            assert_eq!(open_count(&store), 1);
        }
    }
    scenario.teardown();
}

#[test]
fn a_failure_after_a_commit_leaves_that_commit_whole() {
    let scenario = fail::FailScenario::setup();
    let (mut store, run) = store_with_a_resolving_run();
    fail::cfg("store::finish_run::after_commit", "return").unwrap();
    let result = finish(&mut store, run, &ResolveGuard::default());
    fail::remove("store::finish_run::after_commit");
    assert!(matches!(result, Err(Error::Failpoint(_))), "{result:?}");
    let info = store.run(run).unwrap().unwrap();
    assert_eq!(
        (info.status, info.findings_resolved),
        (RunStatus::Complete, 1)
    );
    assert_eq!(open_count(&store), 1);
    scenario.teardown();
}

#[test]
fn a_failure_inside_accept_held_leaves_the_run_held() {
    let scenario = fail::FailScenario::setup();
    let mut store = Store::open_in_memory().unwrap();
    add_prod(&mut store);
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    store
        .ingest_findings(run, TOOL, &[finding("CVE-1")])
        .unwrap();
    finish(&mut store, run, &ResolveGuard::default()).unwrap();
    let run = store
        .begin_run("prod", RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    assert_eq!(
        finish(&mut store, run, &ResolveGuard::default())
            .unwrap()
            .status,
        RunStatus::Held
    );
    fail::cfg("store::accept_held::before_commit", "return").unwrap();
    let result = store.accept_held(run, "alice");
    fail::remove("store::accept_held::before_commit");
    assert!(matches!(result, Err(Error::Failpoint(_))), "{result:?}");
    assert_eq!(store.run(run).unwrap().unwrap().status, RunStatus::Held);
    assert_eq!(open_count(&store), 1);
    let info = store.accept_held(run, "alice").unwrap();
    assert_eq!(
        (info.status, info.findings_resolved),
        (RunStatus::Complete, 1)
    );
    scenario.teardown();
}

/// Walks a scan, a held run and its accept, failing at `point`; returns whether it was reached.
fn reaches(point: &'static str) -> bool {
    let mut store = Store::open_in_memory().unwrap();
    add_prod(&mut store);
    fail::cfg(point, "return").unwrap();
    let hit = |result: Result<(), Error>| match result {
        Err(Error::Failpoint(at)) => {
            assert_eq!(at, point);
            true
        }
        Err(other) => panic!("{point}: {other}"),
        Ok(()) => false,
    };
    let walk = |store: &mut Store| -> Result<(), Error> {
        let run = store.begin_run("prod", RunTrigger::Manual, &ScanScope::default())?;
        store.ingest_inventory(run, &[])?;
        store.ingest_findings(run, TOOL, &[finding("CVE-1")])?;
        store.save_image_contexts(
            run,
            &[keelson_core::ImageContext {
                image: finding("CVE-1").image,
                tags: vec![],
                last_pushed_at: None,
                last_pulled_at: None,
                running: None,
                registry_public_network_access: None,
                attributes: vec![],
            }],
        )?;
        finish(store, run, &ResolveGuard::default())?;
        let run = store.begin_run("prod", RunTrigger::Manual, &ScanScope::default())?;
        finish(store, run, &ResolveGuard::default())?;
        store.accept_held(run, "alice")?;
        Ok(())
    };
    let reached = hit(walk(&mut store));
    fail::remove(point);
    reached
}

#[test]
fn every_listed_failpoint_is_reached_by_a_scan_and_an_accept() {
    let scenario = fail::FailScenario::setup();
    for point in FAILPOINTS {
        assert!(reaches(point), "`{point}` was never reached");
    }
    scenario.teardown();
}
