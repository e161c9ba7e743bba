//! One test per rule: the input, the factor it records and the resulting priority.

use super::*;
use crate::{Application, Criticality, Environment, Policy};

const NOW: &str = "2026-06-01T00:00:00Z";

fn now() -> Seconds {
    time::parse(NOW).unwrap()
}

fn app(name: &str, glob: &str, environment: Environment, internet: bool) -> Application {
    Application {
        name: name.to_owned(),
        service: Some(format!("{name}-svc")),
        team: Some(format!("team-{name}")),
        environment: Some(environment),
        internet_exposed: Some(internet),
        business_criticality: Some(Criticality::High),
        matches: vec![glob.to_owned()],
        priority: 100,
    }
}

fn policy() -> Policy {
    Policy::new(
        vec![
            app("shop", "prod.io/web/*", Environment::Production, true),
            app(
                "payments",
                "prod.io/payments/*",
                Environment::Production,
                false,
            ),
            app("sandbox", "dev.io/*", Environment::Development, false),
        ],
        Thresholds::default(),
        Vec::new(),
    )
}

/// A medium finding in an unmapped image, with a fix, nothing else known.
fn input(severity: Severity) -> Input {
    Input {
        vulnerability_id: "CVE-2024-0001".to_owned(),
        severity: Some(severity),
        cvss_vector: Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".to_owned()),
        package: Some("openssl".to_owned()),
        package_kind: Some("os".to_owned()),
        fixed_version: Some("3.0.9".to_owned()),
        fix_status: Some("fix-available".to_owned()),
        registry: "other.io".to_owned(),
        repository: "base/alpine".to_owned(),
        tags: vec!["1".to_owned()],
        now: now(),
        ..Input::default()
    }
}

/// The one factor with `id`, asserting it moved `from` → `to` in `direction`.
fn factor<'a>(
    e: &'a Evaluation,
    id: &str,
    direction: Direction,
    from: Severity,
    to: Severity,
) -> &'a Factor {
    let f = e
        .factors
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no `{id}` factor in {:#?}", e.factors));
    assert_eq!((f.direction, f.from, f.to), (direction, from, to), "{f:#?}");
    assert!(
        f.reason.ends_with('.') || f.reason.contains(';') || f.reason.contains(':'),
        "a sentence: {}",
        f.reason
    );
    assert!(!f.evidence.is_empty(), "evidence for `{id}`");
    f
}

fn kev() -> KevFact {
    KevFact {
        date_added: "2021-12-10".to_owned(),
        due_date: Some("2021-12-24".to_owned()),
        ransomware: true,
        catalog_version: Some("2025.01.02".to_owned()),
    }
}

#[test]
fn nothing_known_keeps_the_scanner_severity() {
    let e = policy().evaluate(&input(Severity::Medium));
    assert_eq!(e.priority, Severity::Medium);
    assert!(
        e.factors.iter().all(|f| f.direction == Direction::Note),
        "{:#?}",
        e.factors
    );
    assert_eq!(e.application, None);
}

#[test]
fn unknown_severity_starts_at_medium() {
    let mut i = input(Severity::Unknown);
    i.severity = None;
    let e = policy().evaluate(&i);
    factor(
        &e,
        "no-severity",
        Direction::Set,
        Severity::Unknown,
        Severity::Medium,
    );
    assert_eq!(e.priority, Severity::Medium);
}

#[test]
fn known_exploited_raises_one_level() {
    let mut i = input(Severity::High);
    i.kev = Some(kev());
    let e = policy().evaluate(&i);
    let f = factor(
        &e,
        "known-exploited",
        Direction::Raise,
        Severity::High,
        Severity::Critical,
    );
    assert!(
        f.evidence.iter().any(|l| l.contains("added 2021-12-10")),
        "{:?}",
        f.evidence
    );
    assert!(f.evidence.iter().any(|l| l.contains("ransomware")));
    assert_eq!(e.priority, Severity::Critical);
}

#[test]
fn known_exploited_never_ends_below_high() {
    // Low, raised to medium, then lowered twice (no fix, local vector): the floor brings it to high.
    let mut i = input(Severity::Low);
    i.kev = Some(kev());
    i.cvss_vector = Some("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H".to_owned());
    i.fixed_version = None;
    i.fix_status = Some("no-fix-available".to_owned());
    let e = policy().evaluate(&i);
    factor(
        &e,
        "known-exploited",
        Direction::Raise,
        Severity::Low,
        Severity::Medium,
    );
    factor(
        &e,
        "known-exploited-floor",
        Direction::Raise,
        Severity::Informational,
        Severity::High,
    );
    assert_eq!(e.priority, Severity::High);
}

#[test]
fn defender_exploit_flags_raise() {
    let mut i = input(Severity::Medium);
    i.exploit_verified = true;
    i.in_exploit_kit = true;
    let e = policy().evaluate(&i);
    let f = factor(
        &e,
        "exploit-flags",
        Direction::Raise,
        Severity::Medium,
        Severity::High,
    );
    assert_eq!(f.evidence.len(), 2);
    assert_eq!(e.priority, Severity::High);
}

#[test]
fn high_epss_raises() {
    let mut i = input(Severity::Medium);
    i.epss = Some(EpssFact {
        score: 0.42,
        percentile: Some(0.97),
        score_date: Some("2025-03-20T00:00:00+0000".to_owned()),
    });
    let e = policy().evaluate(&i);
    let f = factor(
        &e,
        "epss-high",
        Direction::Raise,
        Severity::Medium,
        Severity::High,
    );
    assert!(
        f.evidence[0].contains("0.42000") && f.evidence[0].contains("2025-03-20"),
        "{:?}",
        f.evidence
    );
    assert_eq!(e.priority, Severity::High);
}

#[test]
fn very_low_epss_lowers_only_without_any_exploit() {
    let mut i = input(Severity::High);
    i.epss = Some(EpssFact {
        score: 0.0004,
        percentile: Some(0.1),
        score_date: None,
    });
    let e = policy().evaluate(&i);
    factor(
        &e,
        "epss-low",
        Direction::Lower,
        Severity::High,
        Severity::Medium,
    );
    assert_eq!(e.priority, Severity::Medium);
    i.exploit_published = true;
    let e = policy().evaluate(&i);
    assert!(e.factors.iter().all(|f| f.id != "epss-low"));
    assert_eq!(e.priority, Severity::High);
}

#[test]
fn network_vector_on_internet_facing_production_raises() {
    let mut i = input(Severity::Medium);
    i.registry = "prod.io".to_owned();
    i.repository = "web/frontend".to_owned();
    i.image.registry_public_network_access = Some(true);
    let e = policy().evaluate(&i);
    let f = factor(
        &e,
        "network-exposed",
        Direction::Raise,
        Severity::Medium,
        Severity::High,
    );
    assert!(f.evidence.iter().any(|l| l.contains("AV:N")));
    assert_eq!(e.priority, Severity::High);
    assert_eq!(e.application.as_deref(), Some("shop"));
    assert_eq!(e.team.as_deref(), Some("team-shop"));
    // Not internet-facing: no raise.
    i.repository = "payments/api".to_owned();
    let e = policy().evaluate(&i);
    assert!(e.factors.iter().all(|f| f.id != "network-exposed"));
    assert_eq!(e.priority, Severity::Medium);
}

#[test]
fn non_production_lowers() {
    let mut i = input(Severity::High);
    i.registry = "dev.io".to_owned();
    let e = policy().evaluate(&i);
    let f = factor(
        &e,
        "non-production",
        Direction::Lower,
        Severity::High,
        Severity::Medium,
    );
    assert!(f.evidence[0].contains("development"), "{:?}", f.evidence);
    assert_eq!(e.priority, Severity::Medium);
}

#[test]
fn not_running_and_not_pushed_for_long_lowers() {
    let mut i = input(Severity::High);
    i.image = ImageFacts {
        last_pushed_at: Some("2026-01-01T00:00:00Z".to_owned()),
        running: Some(false),
        registry_public_network_access: None,
    };
    let e = policy().evaluate(&i);
    let f = factor(
        &e,
        "not-in-use",
        Direction::Lower,
        Severity::High,
        Severity::Medium,
    );
    assert!(f.reason.contains("151 days"), "{}", f.reason);
    assert_eq!(e.priority, Severity::Medium);
    // Running state unknown, or pushed recently: in use as far as anyone knows.
    i.image.running = None;
    assert_eq!(policy().evaluate(&i).priority, Severity::High);
    i.image.running = Some(false);
    i.image.last_pushed_at = Some("2026-05-01T00:00:00Z".to_owned());
    assert_eq!(policy().evaluate(&i).priority, Severity::High);
}

#[test]
fn local_or_physical_attack_vector_lowers() {
    for (vector, word) in [("AV:L", "local"), ("AV:P", "physical")] {
        let mut i = input(Severity::High);
        i.cvss_vector = Some(format!("CVSS:3.1/{vector}/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"));
        let e = policy().evaluate(&i);
        let f = factor(
            &e,
            "local-attack-vector",
            Direction::Lower,
            Severity::High,
            Severity::Medium,
        );
        assert!(f.reason.contains(word));
        assert_eq!(e.priority, Severity::Medium);
    }
}

#[test]
fn no_fix_changes_priority_not_severity_and_says_so() {
    let mut i = input(Severity::High);
    i.fixed_version = None;
    i.fix_status = Some("no-fix-available".to_owned());
    let e = policy().evaluate(&i);
    let f = factor(
        &e,
        "no-fix",
        Direction::Lower,
        Severity::High,
        Severity::Medium,
    );
    assert!(
        f.reason.contains("not the scanner's severity"),
        "{}",
        f.reason
    );
    assert_eq!(e.priority, Severity::Medium);
    // An unknown fix state is not "no fix".
    i.fix_status = Some("unknown".to_owned());
    assert_eq!(policy().evaluate(&i).priority, Severity::High);
}

#[test]
fn kernel_packages_drop_to_informational() {
    let mut i = input(Severity::Critical);
    i.package = Some("linux-libc-dev".to_owned());
    let e = policy().evaluate(&i);
    factor(
        &e,
        "kernel-package",
        Direction::Set,
        Severity::Critical,
        Severity::Informational,
    );
    assert_eq!(e.priority, Severity::Informational);
    assert_eq!(e.sla_due, None, "no SLA for informational");
    assert!(is_kernel_package("linux-image-6.1.0-18-amd64") && is_kernel_package("kernel-core"));
    assert!(!is_kernel_package("linuxdoc-tools") && !is_kernel_package("libkernel32"));
}

#[test]
fn lowering_is_bounded_to_two_levels() {
    // Critical, in development, not in use, local vector, no fix, very low EPSS: five lowerings.
    let mut i = input(Severity::Critical);
    i.registry = "dev.io".to_owned();
    i.cvss_vector = Some("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H".to_owned());
    i.fixed_version = None;
    i.fix_status = Some("wont-fix".to_owned());
    i.epss = Some(EpssFact {
        score: 0.0001,
        percentile: None,
        score_date: None,
    });
    i.image = ImageFacts {
        last_pushed_at: Some("2025-01-01T00:00:00Z".to_owned()),
        running: Some(false),
        registry_public_network_access: None,
    };
    let e = policy().evaluate(&i);
    assert_eq!(e.priority, Severity::Medium, "{:#?}", e.factors);
    let lowered: Vec<&Factor> = e
        .factors
        .iter()
        .filter(|f| f.direction == Direction::Lower)
        .collect();
    assert_eq!(lowered.len(), MAX_LOWERING);
    let capped: Vec<&Factor> = e
        .factors
        .iter()
        .filter(|f| f.direction == Direction::Note && f.reason.contains("at most 2 levels in all."))
        .collect();
    assert_eq!(capped.len(), 3, "{:#?}", e.factors);
    assert!(
        capped
            .iter()
            .all(|f| f.from == Severity::Medium && f.to == Severity::Medium)
    );
}

#[test]
fn a_manual_override_wins_and_says_who() {
    let mut i = input(Severity::Low);
    i.kev = Some(kev());
    i.manual = Some(Override {
        priority: Severity::Critical,
        reason: "payment card data in scope".to_owned(),
        actor: "alice".to_owned(),
        at: "2026-05-30T10:00:00.000Z".to_owned(),
    });
    let e = policy().evaluate(&i);
    let f = factor(
        &e,
        "manual-override",
        Direction::Set,
        Severity::High,
        Severity::Critical,
    );
    assert!(f.reason.contains("alice") && f.reason.contains("payment card data"));
    assert_eq!(e.priority, Severity::Critical);
}

#[test]
fn sla_is_due_after_the_priority_days_or_at_the_sooner_kev_date() {
    let mut i = input(Severity::High);
    i.sla_start = Some(time::parse("2026-05-01T00:00:00Z").unwrap());
    let e = policy().evaluate(&i);
    assert_eq!(e.sla_due.as_deref(), Some("2026-05-31T00:00:00.000Z"));
    factor(&e, "sla", Direction::Note, Severity::High, Severity::High);
    i.kev = Some(KevFact {
        due_date: Some("2026-05-05".to_owned()),
        ..kev()
    });
    let e = policy().evaluate(&i);
    assert_eq!(e.priority, Severity::Critical);
    assert_eq!(e.sla_due.as_deref(), Some("2026-05-05T00:00:00.000Z"));
    assert!(
        e.factors
            .iter()
            .any(|f| f.id == "sla" && f.reason.contains("KEV due date"))
    );
    // Configurable days.
    let mut p = policy();
    p.thresholds.sla_days.critical = 3;
    let mut i = input(Severity::Critical);
    i.sla_start = Some(time::parse("2026-05-01").unwrap());
    assert_eq!(
        p.evaluate(&i).sla_due.as_deref(),
        Some("2026-05-04T00:00:00.000Z")
    );
}

#[test]
fn controls_follow_the_final_priority() {
    let mut i = input(Severity::Medium);
    let e = policy().evaluate(&i);
    assert!(
        !e.controls.iter().any(|c| c == "PCI DSS 4.0 11.3.1"),
        "{:?}",
        e.controls
    );
    i.kev = Some(kev());
    let e = policy().evaluate(&i);
    assert!(
        e.controls.iter().any(|c| c == "PCI DSS 4.0 11.3.1"),
        "{:?}",
        e.controls
    );
    assert!(e.controls.iter().any(|c| c == "NIST SP 800-53 RA-5"));
}
