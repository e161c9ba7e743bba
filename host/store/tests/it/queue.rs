//! Queue filters and keyset pagination.

use keelson_core::Severity;
use keelson_store::{Error, IssueFilter, IssueId, IssueStatus, RunOutcome};

use crate::{all_issues, finding, scan, store_with};

const R1: &str = "one.azurecr.io";
const R2: &str = "two.azurecr.io";

fn seeded() -> keelson_store::Store {
    let mut store = store_with(&["prod"]);
    let severities = [
        Severity::Low,
        Severity::Critical,
        Severity::High,
        Severity::Critical,
        Severity::Medium,
    ];
    let mut findings = Vec::new();
    for (i, severity) in severities.into_iter().enumerate() {
        let registry = if i % 2 == 0 { R1 } else { R2 };
        let mut f = finding(registry, "app", "sha256:a", &format!("CVE-{i}"), "pkg");
        f.severity = severity;
        findings.push(f);
    }
    scan(
        &mut store,
        "prod",
        &findings,
        &RunOutcome::Complete,
        &[R1, R2],
    );
    // Resolve CVE-4 (R1): a complete run of R1 without it.
    let keep: Vec<_> = findings
        .iter()
        .filter(|f| f.image.registry == R1 && f.vulnerability_id != "CVE-4")
        .cloned()
        .collect();
    scan(&mut store, "prod", &keep, &RunOutcome::Complete, &[R1]);
    store
}

#[test]
fn issues_come_highest_severity_first_then_by_id() {
    let store = seeded();
    let order: Vec<(String, Severity)> = all_issues(&store)
        .into_iter()
        .map(|i| (i.vulnerability_id, i.severity))
        .collect();
    assert_eq!(
        order,
        [
            ("CVE-1".to_owned(), Severity::Critical),
            ("CVE-3".to_owned(), Severity::Critical),
            ("CVE-2".to_owned(), Severity::High),
            ("CVE-4".to_owned(), Severity::Medium),
            ("CVE-0".to_owned(), Severity::Low),
        ]
    );
}

#[test]
fn pages_joined_by_their_cursors_equal_the_whole_list() {
    let store = seeded();
    let whole = all_issues(&store);
    for limit in 1..=6 {
        let mut joined = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .issues(&IssueFilter {
                    after,
                    limit: Some(limit),
                    ..IssueFilter::default()
                })
                .unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            after = Some(last.cursor().to_string().parse().unwrap());
            joined.extend(page);
        }
        assert_eq!(joined, whole, "limit {limit}");
    }
}

#[test]
fn filters_narrow_by_each_field() {
    let store = seeded();
    let ids = |filter: IssueFilter| -> Vec<String> {
        store
            .issues(&filter)
            .unwrap()
            .into_iter()
            .map(|i| i.vulnerability_id)
            .collect()
    };
    assert_eq!(
        ids(IssueFilter {
            severities: vec![Severity::Critical],
            ..IssueFilter::default()
        }),
        ["CVE-1", "CVE-3"]
    );
    assert_eq!(
        ids(IssueFilter {
            statuses: vec![IssueStatus::Resolved],
            ..IssueFilter::default()
        }),
        ["CVE-4"]
    );
    assert_eq!(
        ids(IssueFilter {
            registry: Some(R1.into()),
            statuses: vec![IssueStatus::Open],
            ..IssueFilter::default()
        }),
        ["CVE-2", "CVE-0"]
    );
    assert_eq!(
        ids(IssueFilter {
            vulnerability: Some("CVE-3".into()),
            repository: Some("app".into()),
            ..IssueFilter::default()
        }),
        ["CVE-3"]
    );
    assert!(
        ids(IssueFilter {
            source_tool: Some("Defender".into()),
            ..IssueFilter::default()
        })
        .is_empty()
    );
    assert_eq!(
        ids(IssueFilter {
            source_tool: Some(crate::TOOL.into()),
            connection: Some("prod".into()),
            ..IssueFilter::default()
        })
        .len(),
        5
    );
    assert!(matches!(
        store.issues(&IssueFilter {
            connection: Some("nope".into()),
            ..IssueFilter::default()
        }),
        Err(Error::UnknownConnection(_))
    ));
}

#[test]
fn issue_detail_has_vulnerability_findings_and_history() {
    let store = seeded();
    let row = all_issues(&store)
        .into_iter()
        .find(|i| i.vulnerability_id == "CVE-4")
        .unwrap();
    let detail = store.issue(row.id).unwrap().unwrap();
    assert_eq!(detail.issue, row);
    let vulnerability = detail.vulnerability.unwrap();
    assert_eq!(vulnerability.title, "CVE-4 in pkg");
    assert_eq!(vulnerability.remediation.as_deref(), Some("upgrade"));
    assert_eq!(detail.findings.len(), 1);
    assert_eq!(detail.findings[0].connection, "prod");
    assert!(detail.findings[0].resolved_at.is_some());
    assert_eq!(detail.history.len(), 2);
    assert!(store.issue(IssueId(9999)).unwrap().is_none());
    // The detail serialises for `keelson issue show --format json`.
    let json = serde_json::to_value(store.issue(row.id).unwrap().unwrap()).unwrap();
    assert_eq!(json["issue"]["status"], "resolved");
    assert_eq!(json["history"][1]["kind"], "resolved");
}
