//! Compliance: which controls of which frameworks a finding is evidence for.
//!
//! A rules table maps findings to controls. The built-in table covers NIST SP 800-53 (RA-5,
//! SI-2), PCI DSS 4.0 (6.3.3, 11.3.1), ISO/IEC 27001:2022 (A.8.8) and CIS Controls v8 (7.5,
//! 7.7); operators add rows with `[[compliance]]` in `plugins.toml`. A control is named
//! `"<framework> <control>"` (`PCI DSS 4.0 6.3.3`), and the queue filter accepts that or the bare
//! control id (`6.3.3`).

use keelson_core::Severity;
use serde::{Deserialize, Serialize};

use crate::app::Environment;
use crate::glob::glob_match;

/// One row of the rules table: the control applies to a finding when every condition given holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRule {
    pub framework: String,
    pub control: String,
    pub title: String,
    /// Only findings of at least this priority.
    pub min_priority: Option<Severity>,
    /// Only findings with (`true`) or without (`false`) a fixed version.
    pub fix_available: Option<bool>,
    /// Only findings in (`true`) or not in (`false`) the CISA KEV catalog.
    pub known_exploited: Option<bool>,
    /// Only images of these applications (globs over application names); empty means any.
    pub applications: Vec<String>,
    /// Only images of applications in these environments; empty means any.
    pub environments: Vec<Environment>,
}

impl ControlRule {
    fn builtin(framework: &str, control: &str, title: &str) -> Self {
        Self {
            framework: framework.to_owned(),
            control: control.to_owned(),
            title: title.to_owned(),
            min_priority: None,
            fix_available: None,
            known_exploited: None,
            applications: Vec::new(),
            environments: Vec::new(),
        }
    }

    /// `"<framework> <control>"`, the name stored with each finding.
    pub fn key(&self) -> String {
        format!("{} {}", self.framework, self.control)
    }

    /// Whether the control applies to a finding with these facts.
    pub fn applies(&self, facts: &ControlFacts<'_>) -> bool {
        self.min_priority.is_none_or(|min| facts.priority >= min)
            && self
                .fix_available
                .is_none_or(|want| want == facts.fix_available)
            && self
                .known_exploited
                .is_none_or(|want| want == facts.known_exploited)
            && (self.applications.is_empty()
                || facts
                    .application
                    .is_some_and(|a| self.applications.iter().any(|g| glob_match(g, a))))
            && (self.environments.is_empty()
                || facts
                    .environment
                    .is_some_and(|e| self.environments.contains(&e)))
    }
}

/// What the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlFacts<'a> {
    pub priority: Severity,
    pub fix_available: bool,
    pub known_exploited: bool,
    pub application: Option<&'a str>,
    pub environment: Option<Environment>,
}

/// The built-in table.
pub fn default_controls() -> Vec<ControlRule> {
    let nist = "NIST SP 800-53";
    let pci = "PCI DSS 4.0";
    let cis = "CIS Controls v8";
    vec![
        ControlRule::builtin(nist, "RA-5", "Vulnerability Monitoring and Scanning"),
        ControlRule {
            fix_available: Some(true),
            ..ControlRule::builtin(nist, "SI-2", "Flaw Remediation")
        },
        ControlRule {
            min_priority: Some(Severity::High),
            fix_available: Some(true),
            ..ControlRule::builtin(
                pci,
                "6.3.3",
                "Security patches and updates are installed; critical ones within one month of release",
            )
        },
        ControlRule {
            min_priority: Some(Severity::High),
            ..ControlRule::builtin(
                pci,
                "11.3.1",
                "Internal vulnerability scans: high-risk and critical vulnerabilities are resolved",
            )
        },
        ControlRule::builtin(
            "ISO/IEC 27001:2022",
            "A.8.8",
            "Management of technical vulnerabilities",
        ),
        ControlRule::builtin(
            cis,
            "7.5",
            "Perform automated vulnerability scans of internal enterprise assets",
        ),
        ControlRule {
            fix_available: Some(true),
            ..ControlRule::builtin(cis, "7.7", "Remediate detected vulnerabilities")
        },
    ]
}

/// Whether a stored control name answers a filter: the full name, or its control id alone.
pub fn control_matches(stored: &str, filter: &str) -> bool {
    stored.eq_ignore_ascii_case(filter)
        || stored
            .rsplit_once(' ')
            .is_some_and(|(_, id)| id.eq_ignore_ascii_case(filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(priority: Severity, fix: bool) -> ControlFacts<'static> {
        ControlFacts {
            priority,
            fix_available: fix,
            known_exploited: false,
            application: Some("payments"),
            environment: Some(Environment::Production),
        }
    }

    fn applying(f: &ControlFacts<'_>) -> Vec<String> {
        default_controls()
            .iter()
            .filter(|r| r.applies(f))
            .map(ControlRule::key)
            .collect()
    }

    #[test]
    fn every_finding_is_scanning_evidence_and_fixable_high_ones_are_patching_evidence() {
        assert_eq!(
            applying(&facts(Severity::Low, false)),
            [
                "NIST SP 800-53 RA-5",
                "ISO/IEC 27001:2022 A.8.8",
                "CIS Controls v8 7.5"
            ]
        );
        let high = applying(&facts(Severity::High, true));
        for key in [
            "NIST SP 800-53 SI-2",
            "PCI DSS 4.0 6.3.3",
            "PCI DSS 4.0 11.3.1",
            "CIS Controls v8 7.7",
        ] {
            assert!(high.iter().any(|k| k == key), "{key} missing from {high:?}");
        }
    }

    #[test]
    fn operator_rows_can_narrow_by_application_and_environment() {
        let rule = ControlRule {
            applications: vec!["pay*".to_owned()],
            environments: vec![Environment::Production],
            ..ControlRule::builtin("SOC 2", "CC7.1", "Detect vulnerabilities")
        };
        assert!(rule.applies(&facts(Severity::Low, false)));
        let mut other = facts(Severity::Low, false);
        other.application = Some("web");
        assert!(!rule.applies(&other));
        other.application = None;
        assert!(!rule.applies(&other));
    }

    #[test]
    fn filters_take_the_full_name_or_the_control_id() {
        assert!(control_matches("PCI DSS 4.0 6.3.3", "6.3.3"));
        assert!(control_matches("NIST SP 800-53 RA-5", "ra-5"));
        assert!(control_matches(
            "NIST SP 800-53 RA-5",
            "NIST SP 800-53 RA-5"
        ));
        assert!(!control_matches("PCI DSS 4.0 6.3.3", "6.3"));
    }
}
