//! Enrichment in the store: feed imports re-prioritise with events, the queue's enrichment
//! filters and fields, manual priorities, suppression rules, image context.

use std::fs::File;
use std::path::PathBuf;

use keelson_core::{FixStatus, ImageContext, Severity};
use keelson_enrich::feeds::{self, Feed};
use keelson_enrich::{Application, Environment, Policy, SuppressionKind, Thresholds};
use keelson_store::{
    Coverage, EnrichScope, IssueFilter, IssueId, IssueStatus, ResolveGuard, RuleScope, RunOutcome,
    RunTrigger, SlaState, Store,
};

use crate::{TOOL, all_issues, everything, finding, scan, store_with};

const PROD: &str = "prod.azurecr.io";
const DEV: &str = "dev.azurecr.io";

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../enrich/tests/data")
        .join(name)
}

fn import(store: &mut Store, name: &str) -> u64 {
    match feeds::open(File::open(sample(name)).unwrap()).unwrap() {
        Feed::Kev(catalog) => store.import_kev(&catalog, "test").unwrap(),
        Feed::Epss(mut reader) => store.import_epss(&mut reader, "test").unwrap(),
    }
}

fn policy() -> Policy {
    let app = |name: &str, glob: &str, env: Environment, internet: bool| Application {
        name: name.into(),
        service: None,
        team: Some(format!("team-{name}")),
        environment: Some(env),
        internet_exposed: Some(internet),
        business_criticality: None,
        matches: vec![glob.into()],
        priority: 100,
    };
    Policy::new(
        vec![
            app("shop", "prod*/web/*", Environment::Production, true),
            app("sandbox", "dev*/*", Environment::Development, false),
        ],
        Thresholds::default(),
        Vec::new(),
    )
}

fn issue_by_cve(store: &Store, cve: &str) -> keelson_store::IssueRow {
    store
        .issues(&IssueFilter {
            vulnerability: Some(cve.into()),
            statuses: Vec::new(),
            ..IssueFilter::default()
        })
        .unwrap()
        .pop()
        .unwrap_or_else(|| panic!("no issue for {cve}"))
}

fn events(store: &Store, id: IssueId, kind: &str) -> Vec<(Option<String>, Option<String>)> {
    store
        .issue(id)
        .unwrap()
        .unwrap()
        .history
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.old_value, e.new_value))
        .collect()
}

#[test]
fn a_kev_import_raises_an_existing_finding_and_records_the_event() {
    let mut store = store_with(&["prod"]);
    let f = finding(
        PROD,
        "payments/api",
        "sha256:a",
        "CVE-2021-44228",
        "log4j-core",
    );
    scan(&mut store, "prod", &[f], &RunOutcome::Complete, &[PROD]);
    let first = store.enrich(&policy(), &EnrichScope::All, "test").unwrap();
    assert_eq!((first.evaluated, first.reprioritised), (1, 0));
    let before = issue_by_cve(&store, "CVE-2021-44228");
    assert_eq!(
        (before.severity, before.priority),
        (Severity::High, Severity::High)
    );

    assert_eq!(import(&mut store, "kev-sample.json"), 5);
    let counts = store.enrich(&policy(), &EnrichScope::All, "feeds").unwrap();
    assert_eq!((counts.evaluated, counts.reprioritised), (1, 1));
    let after = issue_by_cve(&store, "CVE-2021-44228");
    assert_eq!(after.severity, Severity::High, "the scanner's word stays");
    assert_eq!(after.priority, Severity::Critical);
    let kev = after
        .factors
        .iter()
        .find(|f| f.id == "known-exploited")
        .unwrap();
    assert!(
        kev.evidence.iter().any(|e| e.contains("2021-12-10")),
        "{kev:?}"
    );
    // The KEV due date (2021-12-24) is sooner than 7 days from now: it wins and is breached.
    assert_eq!(after.sla_due.as_deref(), Some("2021-12-24T00:00:00.000Z"));
    assert!(after.sla_breached);
    assert_eq!(
        events(&store, after.id, "reprioritised"),
        [(Some("high".to_owned()), Some("critical".to_owned()))]
    );
    // A second pass changes nothing and logs nothing.
    let again = store.enrich(&policy(), &EnrichScope::All, "feeds").unwrap();
    assert_eq!(again.reprioritised, 0);
    assert_eq!(events(&store, after.id, "reprioritised").len(), 1);
}

#[test]
fn an_epss_import_lowers_a_finding_nobody_exploits() {
    let mut store = store_with(&["prod"]);
    let mut f = finding(
        PROD,
        "base/debian",
        "sha256:b",
        "CVE-2016-2781",
        "coreutils",
    );
    f.severity = Severity::Medium;
    scan(&mut store, "prod", &[f], &RunOutcome::Complete, &[PROD]);
    store.enrich(&policy(), &EnrichScope::All, "scan").unwrap();
    assert_eq!(import(&mut store, "epss-sample.csv.gz"), 32);
    let counts = store.enrich(&policy(), &EnrichScope::All, "feeds").unwrap();
    assert_eq!(counts.reprioritised, 1);
    let issue = issue_by_cve(&store, "CVE-2016-2781");
    assert_eq!(
        (issue.severity, issue.priority),
        (Severity::Medium, Severity::Low)
    );
    let factor = issue.factors.iter().find(|f| f.id == "epss-low").unwrap();
    assert!(factor.evidence[0].starts_with("EPSS 0.00043"), "{factor:?}");
    assert_eq!(
        events(&store, issue.id, "reprioritised"),
        [(Some("medium".to_owned()), Some("low".to_owned()))]
    );
}

#[test]
fn the_queue_filters_by_application_team_priority_sla_and_control() {
    let mut store = store_with(&["prod", "dev"]);
    let mut web = finding(PROD, "web/frontend", "sha256:w", "CVE-1", "openssl");
    web.cvss_vector = Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into());
    let base = finding(PROD, "base/alpine", "sha256:x", "CVE-2", "busybox");
    scan(
        &mut store,
        "prod",
        &[web, base],
        &RunOutcome::Complete,
        &[PROD],
    );
    let tool = finding(DEV, "tools/ci", "sha256:d", "CVE-3", "curl");
    scan(&mut store, "dev", &[tool], &RunOutcome::Complete, &[DEV]);
    store
        .enrich(&policy(), &EnrichScope::Connection("prod".into()), "scan")
        .unwrap();
    store
        .enrich(&policy(), &EnrichScope::Connection("dev".into()), "scan")
        .unwrap();

    let ids = |filter: IssueFilter| -> Vec<String> {
        store
            .issues(&filter)
            .unwrap()
            .into_iter()
            .map(|i| i.vulnerability_id)
            .collect()
    };
    // Ordered by priority: the raised web issue, the plain high one, the lowered dev one.
    let all: Vec<(String, Severity, Severity)> = all_issues(&store)
        .into_iter()
        .map(|i| (i.vulnerability_id, i.severity, i.priority))
        .collect();
    assert_eq!(
        all,
        [
            ("CVE-1".into(), Severity::High, Severity::Critical),
            ("CVE-2".into(), Severity::High, Severity::High),
            ("CVE-3".into(), Severity::High, Severity::Medium),
        ]
    );
    assert_eq!(
        ids(IssueFilter {
            application: Some("shop".into()),
            ..IssueFilter::default()
        }),
        ["CVE-1"]
    );
    assert_eq!(
        ids(IssueFilter {
            team: Some("team-sandbox".into()),
            ..IssueFilter::default()
        }),
        ["CVE-3"]
    );
    assert_eq!(
        ids(IssueFilter {
            unmapped: true,
            ..IssueFilter::default()
        }),
        ["CVE-2"]
    );
    assert_eq!(
        ids(IssueFilter {
            priorities: vec![Severity::Medium],
            ..IssueFilter::default()
        }),
        ["CVE-3"]
    );
    assert_eq!(
        ids(IssueFilter {
            severities: vec![Severity::High],
            ..IssueFilter::default()
        })
        .len(),
        3,
        "severity stays the scanner's"
    );
    assert_eq!(
        ids(IssueFilter {
            sla: Some(SlaState::Breached),
            ..IssueFilter::default()
        }),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(IssueFilter {
            sla: Some(SlaState::Within),
            ..IssueFilter::default()
        })
        .len(),
        3
    );
    // PCI 11.3.1 takes high and above; the id alone or the full name both work.
    assert_eq!(
        ids(IssueFilter {
            control: Some("11.3.1".into()),
            ..IssueFilter::default()
        }),
        ["CVE-1", "CVE-2"]
    );
    assert_eq!(
        ids(IssueFilter {
            control: Some("pci dss 4.0 11.3.1".into()),
            ..IssueFilter::default()
        }),
        ["CVE-1", "CVE-2"]
    );
    assert!(
        ids(IssueFilter {
            control: Some("1.3.1".into()),
            ..IssueFilter::default()
        })
        .is_empty()
    );
    let web = &store
        .issues(&IssueFilter {
            application: Some("shop".into()),
            ..IssueFilter::default()
        })
        .unwrap()[0];
    let json = serde_json::to_value(web).unwrap();
    assert_eq!(json["priority"], "critical");
    assert_eq!(json["application"], "shop");
    assert_eq!(json["team"], "team-shop");
    assert!(json["sla_due"].is_string());
    assert!(
        json["controls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "NIST SP 800-53 RA-5")
    );
    assert!(
        json["factors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "network-exposed")
    );
    // Compliance counts per control.
    let counts = store.compliance().unwrap();
    let ra5 = counts
        .iter()
        .find(|c| c.control == "NIST SP 800-53 RA-5")
        .unwrap();
    assert_eq!((ra5.issues, ra5.findings, ra5.breached_issues), (3, 3, 0));
    assert_eq!(
        counts
            .iter()
            .find(|c| c.control == "PCI DSS 4.0 11.3.1")
            .unwrap()
            .issues,
        2
    );
}

#[test]
fn a_manual_priority_wins_and_is_logged() {
    let mut store = store_with(&["prod"]);
    scan(
        &mut store,
        "prod",
        &[finding(PROD, "a", "sha256:a", "CVE-9", "zlib")],
        &RunOutcome::Complete,
        &[PROD],
    );
    let id = issue_by_cve(&store, "CVE-9").id;
    store
        .set_priority_override(
            id,
            Severity::Low,
            "compensating control: WAF rule 12",
            "alice",
        )
        .unwrap();
    store
        .enrich(&policy(), &EnrichScope::Issue(id), "cli")
        .unwrap();
    let issue = issue_by_cve(&store, "CVE-9");
    assert_eq!(issue.priority, Severity::Low);
    assert!(
        issue
            .factors
            .iter()
            .any(|f| f.id == "manual-override" && f.reason.contains("alice"))
    );
    let detail = store.issue(id).unwrap().unwrap();
    assert_eq!(detail.priority_override.unwrap().actor, "alice");
    assert_eq!(events(&store, id, "priority-override").len(), 1);
    assert_eq!(
        events(&store, id, "reprioritised"),
        [(Some("high".into()), Some("low".into()))]
    );
    store.clear_priority_override(id, "alice").unwrap();
    store
        .enrich(&policy(), &EnrichScope::Issue(id), "cli")
        .unwrap();
    assert_eq!(issue_by_cve(&store, "CVE-9").priority, Severity::High);
    assert!(
        store
            .set_priority_override(id, Severity::High, " ", "alice")
            .is_err()
    );
}

#[test]
fn suppression_rules_hide_now_and_later_and_every_step_is_an_event() {
    let mut store = store_with(&["prod"]);
    let a = finding(PROD, "legacy/billing", "sha256:a", "CVE-10", "openssl");
    scan(
        &mut store,
        "prod",
        std::slice::from_ref(&a),
        &RunOutcome::Complete,
        &[PROD],
    );
    let (rule, hidden) = store
        .add_suppression_rule(
            RuleScope::Repository,
            "prod*/legacy/*",
            SuppressionKind::WontFix,
            "decommissioned in Q3",
            None,
            false,
            "bob",
        )
        .unwrap();
    assert_eq!(hidden, 1);
    let id = issue_by_cve(&store, "CVE-10").id;
    assert_eq!(
        issue_by_cve(&store, "CVE-10").status,
        IssueStatus::Suppressed
    );
    // A new finding under the glob is hidden by the next enrichment pass.
    let b = finding(PROD, "legacy/reports", "sha256:b", "CVE-11", "curl");
    scan(&mut store, "prod", &[a, b], &RunOutcome::Complete, &[PROD]);
    let counts = store.enrich(&policy(), &EnrichScope::All, "scan").unwrap();
    assert_eq!(counts.suppressed, 1);
    assert_eq!(
        issue_by_cve(&store, "CVE-11").status,
        IssueStatus::Suppressed
    );
    assert_eq!(store.lift_suppression_rule(rule.id, "bob").unwrap(), 2);
    assert_eq!(issue_by_cve(&store, "CVE-10").status, IssueStatus::Open);
    let steps = events(&store, id, "suppressed").len() + events(&store, id, "unsuppressed").len();
    assert_eq!(steps, 2);
    assert!(matches!(
        store.lift_suppression_rule(rule.id, "bob"),
        Err(keelson_store::Error::SuppressionRuleLifted(_))
    ));
    assert!(
        store
            .add_suppression_rule(
                RuleScope::Package,
                "x",
                SuppressionKind::FalsePositive,
                "",
                None,
                false,
                "bob"
            )
            .is_err()
    );
}

#[test]
fn until_a_fix_is_available_ends_when_the_scanner_reports_one() {
    let mut store = store_with(&["prod"]);
    let mut f = finding(PROD, "app", "sha256:a", "CVE-20", "glibc");
    let package = f.package.as_mut().unwrap();
    package.fixed_version = None;
    package.fix_status = FixStatus::NoFixAvailable;
    scan(
        &mut store,
        "prod",
        &[f.clone()],
        &RunOutcome::Complete,
        &[PROD],
    );
    let (_, hidden) = store
        .add_suppression_rule(
            RuleScope::Package,
            "glibc",
            SuppressionKind::RiskAccepted,
            "no fix yet",
            None,
            true,
            "bob",
        )
        .unwrap();
    assert_eq!(hidden, 1);
    let package = f.package.as_mut().unwrap();
    package.fixed_version = Some("2.36-9".into());
    package.fix_status = FixStatus::FixAvailable;
    scan(&mut store, "prod", &[f], &RunOutcome::Complete, &[PROD]);
    let counts = store.enrich(&policy(), &EnrichScope::All, "scan").unwrap();
    assert_eq!(counts.unsuppressed, 1);
    assert_eq!(issue_by_cve(&store, "CVE-20").status, IssueStatus::Open);
    // The same for an issue suppression.
    let mut g = finding(PROD, "app", "sha256:a", "CVE-21", "zlib");
    g.package.as_mut().unwrap().fixed_version = None;
    g.package.as_mut().unwrap().fix_status = FixStatus::NoFixAvailable;
    scan(
        &mut store,
        "prod",
        &[g.clone()],
        &RunOutcome::Complete,
        &[PROD],
    );
    let id = issue_by_cve(&store, "CVE-21").id;
    store
        .suppress_issue(
            id,
            SuppressionKind::NotAffected,
            "not reachable",
            None,
            true,
            "bob",
        )
        .unwrap();
    let detail = store.issue(id).unwrap().unwrap();
    let s = detail.suppression.unwrap();
    assert_eq!((s.kind, s.until_fix), (SuppressionKind::NotAffected, true));
    g.package.as_mut().unwrap().fixed_version = Some("1.3".into());
    scan(&mut store, "prod", &[g], &RunOutcome::Complete, &[PROD]);
    store.enrich(&policy(), &EnrichScope::All, "scan").unwrap();
    assert_eq!(issue_by_cve(&store, "CVE-21").status, IssueStatus::Open);
    assert_eq!(events(&store, id, "suppression-lifted").len(), 1);
}

#[test]
fn an_expired_rule_shows_its_findings_again() {
    let mut store = store_with(&["prod"]);
    scan(
        &mut store,
        "prod",
        &[finding(PROD, "app", "sha256:a", "CVE-30", "curl")],
        &RunOutcome::Complete,
        &[PROD],
    );
    store
        .add_suppression_rule(
            RuleScope::Vulnerability,
            "cve-30",
            SuppressionKind::FalsePositive,
            "scanner bug",
            Some("2000-01-01T00:00:00Z"),
            false,
            "bob",
        )
        .unwrap();
    assert_eq!(
        issue_by_cve(&store, "CVE-30").status,
        IssueStatus::Suppressed
    );
    let counts = store.enrich(&policy(), &EnrichScope::All, "scan").unwrap();
    assert_eq!(counts.unsuppressed, 1);
    assert_eq!(issue_by_cve(&store, "CVE-30").status, IssueStatus::Open);
    let rules = store.suppression_rules().unwrap();
    assert_eq!(rules[0].lifted_by.as_deref(), Some("expiry"));
}

#[test]
fn connector_context_feeds_the_not_in_use_rule() {
    let mut store = store_with(&["prod"]);
    let f = finding(PROD, "old/app", "sha256:a", "CVE-40", "curl");
    let run = store
        .begin_run(
            "prod",
            RunTrigger::Manual,
            &keelson_core::ScanScope::default(),
        )
        .unwrap();
    store
        .ingest_findings(run, TOOL, std::slice::from_ref(&f))
        .unwrap();
    let saved = store
        .save_image_contexts(
            run,
            &[ImageContext {
                image: f.image.clone(),
                tags: vec!["1.0".into()],
                last_pushed_at: Some("2020-01-01T00:00:00Z".into()),
                last_pulled_at: None,
                running: Some(false),
                registry_public_network_access: Some(true),
                attributes: vec![],
            }],
        )
        .unwrap();
    assert_eq!(saved, 1);
    store
        .finish_run(
            run,
            &RunOutcome::Complete,
            &Coverage::complete(&[PROD]),
            &ResolveGuard::default(),
            &everything,
        )
        .unwrap();
    store
        .enrich(&policy(), &EnrichScope::Connection("prod".into()), "scan")
        .unwrap();
    let issue = issue_by_cve(&store, "CVE-40");
    assert_eq!(issue.priority, Severity::Medium);
    assert!(
        issue
            .factors
            .iter()
            .any(|f| f.id == "not-in-use" && f.evidence.iter().any(|e| e.contains("2020-01-01")))
    );
}
