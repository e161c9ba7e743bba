//! Integration tests of the findings store: lifecycle, concurrency (T31), the state-machine
//! model (T32), schema versions (T33), secrets at rest (T38) and crash safety (T29).

mod concurrency;
mod crash;
mod enrich;
mod lifecycle;
mod model;
mod queue;
mod rescan;
mod schema;
mod secrets;

use keelson_core::{Exploitability, Finding, FixStatus, ImageRef, Package, ScanScope, Severity};
use keelson_store::{
    ConnectionSpec, IssueFilter, IssueRow, Keyring, MasterKey, RunId, RunOutcome, RunTrigger, Store,
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

/// Runs one whole scan of `connection`: begin, one page of findings, finish.
pub(crate) fn scan(
    store: &mut Store,
    connection: &str,
    findings: &[Finding],
    outcome: &RunOutcome,
    covered: &[&str],
) -> (RunId, keelson_store::IngestCounts, keelson_store::RunInfo) {
    let run = store
        .begin_run(connection, RunTrigger::Manual, &ScanScope::default())
        .unwrap();
    let counts = store.ingest_findings(run, TOOL, findings).unwrap();
    let info = store.finish_run(run, outcome, &strings(covered)).unwrap();
    (run, counts, info)
}

pub(crate) fn all_issues(store: &Store) -> Vec<IssueRow> {
    store.issues(&IssueFilter::default()).unwrap()
}
