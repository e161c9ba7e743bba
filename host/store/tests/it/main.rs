//! Integration tests of the findings store: lifecycle, concurrency (T31), the state-machine
//! model (T32), schema versions (T33) and secrets at rest (T38). Crash safety (T29) needs the
//! store's failpoints, so it lives in the `failpoints` test binary.

mod concurrency;
mod coverage;
mod enrich;
mod held;
mod lifecycle;
mod model;
mod queue;
mod rescan;
mod schema;
mod secrets;

use keelson_core::{Exploitability, Finding, FixStatus, ImageRef, Package, ScanScope, Severity};
use keelson_store::{
    ConnectionSpec, Coverage, IssueFilter, IssueRow, Keyring, MasterKey, ResolveGuard, RunId,
    RunOutcome, RunTrigger, Store,
};

pub(crate) const TOOL: &str = "Azure Container Registry";

pub(crate) fn keys() -> Keyring {
    Keyring::new(MasterKey::from_bytes("test-key", &[42u8; 32]).unwrap())
}

/// A store with connection `prod` (plugin `acr`) and no secrets.
pub(crate) fn store_with(connections: &[&str]) -> Store {
    let mut store = Store::open_in_memory().unwrap();
    add_connections(&mut store, connections);
    store
}

pub(crate) fn add_connections(store: &mut Store, connections: &[&str]) {
    for name in connections {
        store
            .save_connection(&ConnectionSpec::new(*name, "acr"), &keys(), "test")
            .unwrap();
    }
}

pub(crate) fn finding(
    registry: &str,
    repository: &str,
    digest: &str,
    vulnerability: &str,
    package: &str,
) -> Finding {
    Finding {
        image: ImageRef {
            registry: registry.into(),
            repository: repository.into(),
            digest: digest.into(),
        },
        vulnerability_id: vulnerability.into(),
        source_id: None,
        title: format!("{vulnerability} in {package}"),
        description: "a test vulnerability".into(),
        severity: Severity::High,
        cvss_score: Some(7.5),
        cvss_vector: None,
        package: Some(Package {
            name: package.into(),
            version: Some("1.0.0".into()),
            fixed_version: Some("1.0.1".into()),
            fix_status: FixStatus::FixAvailable,
            kind: None,
            ecosystem: None,
        }),
        remediation: Some("upgrade".into()),
        evidence: vec![],
        references: vec![],
        published_at: None,
        modified_at: None,
        exploitability: Exploitability::default(),
        weaknesses: vec![],
        raw: "{}".into(),
    }
}

pub(crate) fn scope(registries: &[&str]) -> ScanScope {
    ScanScope {
        registries: registries.iter().map(|r| (*r).to_owned()).collect(),
    }
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every repository is selected.
pub(crate) fn everything(_: &str, _: &str) -> bool {
    true
}

/// The default guard, pre-approved: for runs that deliberately resolve most of what is open.
pub(crate) fn accept_drop() -> ResolveGuard {
    ResolveGuard {
        accept_drop: true,
        ..ResolveGuard::default()
    }
}

/// Runs one whole scan of `connection`: begin, one page of findings, finish with `covered` read
/// completely (and the findings listing complete) under the default guard.
pub(crate) fn scan(
    store: &mut Store,
    connection: &str,
    findings: &[Finding],
    outcome: &RunOutcome,
    covered: &[&str],
) -> (RunId, keelson_store::IngestCounts, keelson_store::RunInfo) {
    scan_with(
        store,
        connection,
        findings,
        outcome,
        &Coverage::complete(covered),
        &ResolveGuard::default(),
    )
}

/// [`scan`] pre-approved with [`accept_drop`].
pub(crate) fn scan_accepting(
    store: &mut Store,
    connection: &str,
    findings: &[Finding],
    outcome: &RunOutcome,
    covered: &[&str],
) -> (RunId, keelson_store::IngestCounts, keelson_store::RunInfo) {
    scan_with(
        store,
        connection,
        findings,
        outcome,
        &Coverage::complete(covered),
        &accept_drop(),
    )
}

/// Runs one whole scan of `connection` with a given coverage and guard, every repository selected.
pub(crate) fn scan_with(
    store: &mut Store,
    connection: &str,
    findings: &[Finding],
    outcome: &RunOutcome,
    coverage: &Coverage,
    guard: &ResolveGuard,
) -> (RunId, keelson_store::IngestCounts, keelson_store::RunInfo) {
    let run = store
        .begin_run(connection, RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    let counts = store.ingest_findings(run, TOOL, findings).unwrap();
    let info = store
        .finish_run(run, outcome, coverage, guard, &everything)
        .unwrap();
    (run, counts, info)
}

pub(crate) fn all_issues(store: &Store) -> Vec<IssueRow> {
    store.issues(&IssueFilter::default()).unwrap()
}
