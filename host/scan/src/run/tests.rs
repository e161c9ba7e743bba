//! Coverage and resolution rules of a run, against the scripted [`FakeConnector`]: every fault at
//! every page of every listing, and a property test that no finding is ever resolved outside a
//! scope the run read completely.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use keelson_store::{
    ConnectionSpec, IssueFilter, IssueStatus, Keyring, MasterKey, ResolveGuard, RunStatus,
};
use proptest::prelude::*;

use super::*;
use crate::fake::{FakeConnector, Fault, FaultAt, Listing, Tenant};

/// (registry, repository, digest, vulnerability) of a finding.
type Key = (String, String, String, String);

fn store() -> Store {
    let mut store = Store::open_in_memory().unwrap();
    let keys = Keyring::new(MasterKey::from_bytes("test", &[7u8; 32]).unwrap());
    store
        .save_connection(&ConnectionSpec::new("prod", "fake"), &keys, "test")
        .unwrap();
    store
}

fn request(guard: ResolveGuard) -> ScanRequest {
    ScanRequest {
        connection: "prod".into(),
        trigger: RunTrigger::Manual,
        selection: Selection::all(),
        policy: PagingPolicy {
            page_size: 2,
            retries: 1,
            retry_delay: Duration::ZERO,
            parallel_registries: 2,
            ..PagingPolicy::default()
        },
        guard,
    }
}

/// The guard off, so the rules of coverage are seen alone.
fn no_guard() -> ResolveGuard {
    ResolveGuard {
        accept_drop: true,
        ..ResolveGuard::default()
    }
}

async fn scan_fake(
    store: &mut Store,
    tenant: &Tenant,
    faults: Vec<FaultAt>,
    request: &ScanRequest,
) -> ScanSummary {
    let tenant = Arc::new(tenant.clone());
    let faults = Arc::new(faults);
    let cancel = Arc::new(AtomicBool::new(false));
    let open = {
        let cancel = Arc::clone(&cancel);
        async move || -> Result<FakeConnector, String> {
            Ok(FakeConnector::new(
                Arc::clone(&tenant),
                Arc::clone(&faults),
                Arc::clone(&cancel),
                2,
            ))
        }
    };
    scan(store, request, open, &mut NoProgress, &cancel)
        .await
        .unwrap()
}

fn statuses(store: &Store) -> BTreeMap<Key, IssueStatus> {
    let filter = IssueFilter {
        statuses: vec![
            IssueStatus::Open,
            IssueStatus::Resolved,
            IssueStatus::Suppressed,
        ],
        ..IssueFilter::default()
    };
    let mut out = BTreeMap::new();
    for issue in store.issues(&filter).unwrap() {
        for image in &issue.images {
            out.insert(
                (
                    issue.registry.clone(),
                    issue.repository.clone(),
                    image.digest.clone(),
                    issue.vulnerability_id.clone(),
                ),
                image.status,
            );
        }
    }
    out
}

fn key(f: &Finding) -> Key {
    (
        f.image.registry.clone(),
        f.image.repository.clone(),
        f.image.digest.clone(),
        f.vulnerability_id.clone(),
    )
}

/// Every page position of every listing of `tenant` (a fault past the last page never fires).
fn listings(tenant: &Tenant) -> Vec<(Listing, usize)> {
    let pages = |n: usize| n.div_ceil(2).max(1);
    let mut out = vec![(Listing::Registries, pages(tenant.repositories.len()))];
    for (registry, repos) in &tenant.repositories {
        out.push((Listing::Repositories(registry.clone()), pages(repos.len())));
        for repo in repos {
            let images = tenant.images[&(registry.clone(), repo.clone())].len();
            out.push((
                Listing::Images(registry.clone(), repo.clone()),
                pages(images),
            ));
        }
    }
    out.push((Listing::Findings, pages(tenant.findings.len())));
    out
}

#[tokio::test]
async fn a_clean_rescan_is_complete_and_resolves_only_what_went_away() {
    let mut store = store();
    let mut tenant = Tenant::grid(2, 2, 2, 2);
    let first = scan_fake(&mut store, &tenant, Vec::new(), &request(no_guard())).await;
    assert_eq!(
        first.run.status,
        RunStatus::Complete,
        "{:?}",
        first.coverage
    );
    assert_eq!(first.covered, tenant.registries());
    assert_eq!(first.run.findings_new, 16);

    let gone = tenant.findings.remove(3);
    let second = scan_fake(&mut store, &tenant, Vec::new(), &request(no_guard())).await;
    assert_eq!(second.run.status, RunStatus::Complete);
    assert_eq!(second.run.findings_resolved, 1);
    let now = statuses(&store);
    assert_eq!(now[&key(&gone)], IssueStatus::Resolved);
    assert_eq!(
        now.values().filter(|s| **s == IssueStatus::Open).count(),
        15
    );
}

/// Each fault at each page of each listing, on a rescan in which one finding of every registry
/// went away: the run never ends complete, keeps every finding the source returned, resolves
/// only inside the registries it covered (and only with a complete findings listing), and
/// leaves the rest exactly as it was.
#[tokio::test]
async fn every_fault_at_every_page_keeps_the_rest_and_resolves_only_covered_scopes() {
    let base = Tenant::grid(3, 3, 3, 1);
    // One finding of every registry is fixed at the source before the faulty rescan.
    let mut fixed = base.clone();
    let mut gone: Vec<Finding> = Vec::new();
    for registry in base.registries() {
        let at = fixed
            .findings
            .iter()
            .position(|f| f.image.registry == registry)
            .unwrap();
        gone.push(fixed.findings.remove(at));
    }
    let mut cases = 0;
    for (listing, pages) in listings(&fixed) {
        for page in 0..pages {
            for fault in Fault::ALL {
                cases += 1;
                let mut store = store();
                let first = scan_fake(&mut store, &base, Vec::new(), &request(no_guard())).await;
                assert_eq!(first.run.status, RunStatus::Complete);
                let faults = vec![FaultAt {
                    listing: listing.clone(),
                    page,
                    fault,
                }];
                let summary = scan_fake(&mut store, &fixed, faults, &request(no_guard())).await;
                let case = format!("{fault:?} at page {page} of {listing:?}");
                let status = summary.run.status;
                if fault == Fault::Cancel {
                    assert_eq!(status, RunStatus::Cancelled, "{case}");
                } else {
                    assert_ne!(
                        status,
                        RunStatus::Complete,
                        "{case}: {:?}",
                        summary.coverage
                    );
                    assert!(
                        summary.coverage.incomplete(),
                        "{case}: the coverage must say what was not read"
                    );
                }
                let now = statuses(&store);
                let resolvable = summary.coverage.resolvable();
                for f in &gone {
                    let expect = if status != RunStatus::Cancelled
                        && resolvable.contains(&f.image.registry)
                    {
                        IssueStatus::Resolved
                    } else {
                        IssueStatus::Open
                    };
                    assert_eq!(now[&key(f)], expect, "{case}: {}", f.image);
                }
                // Nothing else is resolved, ever.
                for f in &fixed.findings {
                    assert_eq!(now[&key(f)], IssueStatus::Open, "{case}: {}", f.image);
                }
                // A fault outside the findings listing costs no finding: every one was read.
                if listing != Listing::Findings && fault != Fault::Cancel {
                    assert_eq!(summary.coverage.findings, None, "{case}");
                    assert_eq!(summary.findings_kept, fixed.findings.len() as u64, "{case}");
                }
                // A fault in one registry leaves the other registries covered.
                if let Listing::Repositories(r) | Listing::Images(r, _) = &listing
                    && fault != Fault::Cancel
                {
                    let expected: Vec<String> =
                        fixed.registries().into_iter().filter(|x| x != r).collect();
                    assert_eq!(resolvable, expected, "{case}");
                    assert_eq!(status, RunStatus::Partial, "{case}");
                }
                if listing == Listing::Findings && fault != Fault::Cancel {
                    assert!(resolvable.is_empty(), "{case}");
                }
            }
        }
    }
    assert!(cases > 100, "the matrix covers {cases} cases");
}

#[tokio::test]
async fn a_registry_listing_that_breaks_keeps_its_registries_and_every_finding() {
    let mut store = store();
    let tenant = Tenant::grid(5, 1, 1, 1);
    // The third page (registries 4 and 5) never comes: its cursor repeats.
    let faults = vec![FaultAt {
        listing: Listing::Registries,
        page: 1,
        fault: Fault::Loop,
    }];
    let summary = scan_fake(&mut store, &tenant, faults, &request(no_guard())).await;
    assert_eq!(summary.run.status, RunStatus::Partial);
    assert!(
        summary
            .coverage
            .registry_listing
            .as_deref()
            .is_some_and(|r| r.contains("a second time")),
        "{:?}",
        summary.coverage.registry_listing
    );
    // Registries of the first two pages are scanned and covered; the findings of the registry
    // the listing never returned are still read and kept.
    assert_eq!(summary.covered.len(), 4);
    assert_eq!(summary.findings_kept, 5);
    let unlisted: Vec<&RegistryCoverage> = summary
        .coverage
        .registries
        .iter()
        .filter(|r| r.uncovered.is_some())
        .collect();
    assert_eq!(unlisted.len(), 1, "{:?}", summary.coverage);
    assert_eq!(unlisted[0].registry, "r4.test");
}

#[tokio::test]
async fn a_trap_on_the_only_registry_is_never_complete() {
    let mut store = store();
    let tenant = Tenant::grid(1, 1, 1, 1);
    let faults = vec![FaultAt {
        listing: Listing::Repositories("r0.test".into()),
        page: 0,
        fault: Fault::Trap,
    }];
    let summary = scan_fake(&mut store, &tenant, faults, &request(no_guard())).await;
    assert_eq!(summary.run.status, RunStatus::Partial);
    assert!(summary.covered.is_empty());
    let reason = summary.uncovered[0].reason.as_str();
    assert!(
        reason.contains("trapped") && reason.contains("boom"),
        "{reason}"
    );
}

#[tokio::test]
async fn when_nothing_can_be_read_the_run_fails() {
    let mut store = store();
    let tenant = Tenant::grid(2, 1, 1, 1);
    let faults = vec![
        FaultAt {
            listing: Listing::Registries,
            page: 0,
            fault: Fault::Denied,
        },
        FaultAt {
            listing: Listing::Findings,
            page: 0,
            fault: Fault::Denied,
        },
    ];
    let summary = scan_fake(&mut store, &tenant, faults, &request(no_guard())).await;
    assert_eq!(summary.run.status, RunStatus::Failed);
    assert!(summary.run.error.is_some());
}

#[tokio::test]
async fn a_sudden_drop_is_held_and_nothing_is_resolved() {
    let mut store = store();
    let tenant = Tenant::grid(2, 2, 2, 2);
    scan_fake(
        &mut store,
        &tenant,
        Vec::new(),
        &request(ResolveGuard::default()),
    )
    .await;
    let empty = Tenant {
        findings: Vec::new(),
        ..tenant.clone()
    };
    let held = scan_fake(
        &mut store,
        &empty,
        Vec::new(),
        &request(ResolveGuard::default()),
    )
    .await;
    assert_eq!(held.run.status, RunStatus::Held);
    assert_eq!(held.run.findings_resolved, 0);
    assert_eq!(held.run.held.as_ref().map(|h| h.would_resolve), Some(16));
    assert!(
        statuses(&store).values().all(|s| *s == IssueStatus::Open),
        "a held run resolves nothing"
    );
    // Pre-approved, the same drop is applied.
    let accepted = scan_fake(&mut store, &empty, Vec::new(), &request(no_guard())).await;
    assert_eq!(accepted.run.status, RunStatus::Complete);
    assert_eq!(accepted.run.findings_resolved, 16);
}

/// A deselected repository does not make a run partial; its findings are never resolved.
#[tokio::test]
async fn a_deselected_repository_is_left_alone() {
    let mut store = store();
    let tenant = Tenant::grid(1, 2, 1, 1);
    scan_fake(&mut store, &tenant, Vec::new(), &request(no_guard())).await;
    let mut req = request(no_guard());
    req.selection = Selection::new(&[keelson_store::SelectionRule {
        action: keelson_store::SelectionAction::Deselect,
        pattern: "r0.test/app1".into(),
    }])
    .unwrap();
    let empty = Tenant {
        findings: Vec::new(),
        ..tenant.clone()
    };
    let summary = scan_fake(&mut store, &empty, Vec::new(), &req).await;
    assert_eq!(
        summary.run.status,
        RunStatus::Complete,
        "{:?}",
        summary.coverage
    );
    assert_eq!(summary.coverage.registries[0].deselected, 1);
    assert_eq!(summary.run.findings_resolved, 1);
    let now = statuses(&store);
    let app1 = now.iter().find(|(k, _)| k.1 == "app1").unwrap();
    assert_eq!(*app1.1, IssueStatus::Open);
}

fn fault_strategy(tenant: &Tenant) -> impl Strategy<Value = Vec<FaultAt>> {
    let positions: Vec<(Listing, usize)> = listings(tenant)
        .into_iter()
        .flat_map(|(l, pages)| (0..pages).map(move |p| (l.clone(), p)))
        .collect();
    // Cancelling is covered by the matrix above; here every fault is structural, so what may be
    // resolved follows from where the faults sit alone.
    let faults: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| *f != Fault::Cancel)
        .collect();
    prop::collection::vec(
        (
            prop::sample::select(positions),
            prop::sample::select(faults),
        ),
        0..4,
    )
    .prop_map(|picks| {
        picks
            .into_iter()
            .map(|((listing, page), fault)| FaultAt {
                listing,
                page,
                fault,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// No finding is ever resolved outside a scope that the resolving run read completely, and a
    /// finding the source still reports is never resolved.
    #[test]
    fn no_finding_is_resolved_outside_a_covered_scope(
        faults in fault_strategy(&Tenant::grid(3, 2, 2, 1)),
        removed in prop::collection::vec(any::<bool>(), 12),
        guard_on in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let base = Tenant::grid(3, 2, 2, 1);
            let mut store = store();
            scan_fake(&mut store, &base, Vec::new(), &request(no_guard())).await;
            let mut next = base.clone();
            next.findings = base
                .findings
                .iter()
                .zip(&removed)
                .filter(|(_, gone)| !**gone)
                .map(|(f, _)| f.clone())
                .collect();
            let guard = if guard_on { ResolveGuard::default() } else { no_guard() };
            let summary = scan_fake(&mut store, &next, faults.clone(), &request(guard)).await;
            let now = statuses(&store);
            let still: Vec<Key> = next.findings.iter().map(key).collect();
            // The oracle, from the faults alone: a registry was read completely when no fault sat
            // in the findings listing, in its own listings, or in the registry listing at or
            // before the page that lists it (registries are served in name order, two a page).
            // The scan's own coverage is not consulted.
            let registries = base.registries();
            // A fault placed past the last page of a listing never fires.
            let pages: Vec<(Listing, usize)> = listings(&next);
            let fires = |f: &FaultAt| pages.iter().any(|(l, n)| *l == f.listing && f.page < *n);
            let read_completely = |registry: &str| {
                let page = registries.iter().position(|r| r == registry).unwrap() / 2;
                !faults.iter().filter(|f| fires(f)).any(|f| match &f.listing {
                    Listing::Findings => true,
                    // A looping page still serves its own items; a failing one does not.
                    Listing::Registries if f.fault == Fault::Loop => f.page < page,
                    Listing::Registries => f.page <= page,
                    Listing::Repositories(r) | Listing::Images(r, _) => r == registry,
                })
            };
            for (k, status) in &now {
                if *status == IssueStatus::Resolved {
                    prop_assert!(!still.contains(k), "resolved while still reported: {k:?}");
                    prop_assert!(read_completely(&k.0), "resolved outside a scope read completely: {k:?} with {faults:?}");
                    prop_assert!(
                        matches!(summary.run.status, RunStatus::Complete | RunStatus::Partial),
                        "resolved by a {} run", summary.run.status
                    );
                }
            }
            // And the other way: with the guard off, whatever went away in a registry read
            // completely is resolved.
            if !guard_on {
                for f in &base.findings {
                    if !still.contains(&key(f)) && read_completely(&f.image.registry) {
                        prop_assert_eq!(now[&key(f)], IssueStatus::Resolved, "{} with {:?}", f.image, faults);
                    }
                }
            }
            Ok(())
        })?;
    }
}
