//! What a run read completely, and the guard that holds a sudden drop instead of applying it.
//!
//! [`Coverage`] is reported by the scan when it finishes a run and stored with the run as JSON.
//! It decides where the run may resolve: [`Coverage::resolvable`] names the registries whose
//! inventory was read completely, and only when the connection's findings listing was read to the
//! end (a finding missing from a cut-short listing proves nothing). Scopes that were not read
//! keep everything as it was.
//!
//! [`ResolveGuard`] is checked before anything is resolved: a run that would resolve every open
//! finding of the scopes it read, or a large share of the connection's open findings, ends
//! `held` instead, with a [`Held`] record of what it would have done, until an operator accepts
//! it ([`Store::accept_held`](crate::Store::accept_held)).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{RunId, RunStatus};

/// How completely a run read each part of a connection; stored with the run as JSON (`coverage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// `None` when the registry listing was read to the end; otherwise why not.
    pub registry_listing: Option<String>,
    /// `None` when the findings listing was read to the end; otherwise why not (this is the
    /// connection's one findings scope, a subscription for Azure).
    pub findings: Option<String>,
    /// Every registry in scope of the run, sorted by name.
    pub registries: Vec<RegistryCoverage>,
}

/// How completely a run read one registry's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCoverage {
    pub registry: String,
    /// `None` when its inventory (repositories and all their images) was read completely;
    /// otherwise why not, e.g. "listing repositories failed: from plugin ...: permission denied: ...".
    pub uncovered: Option<String>,
    /// Repositories the operator deselected (their findings were not read and are never resolved).
    pub deselected: u64,
}

impl RegistryCoverage {
    /// A registry whose inventory was read completely, with nothing deselected.
    pub fn covered(registry: impl Into<String>) -> Self {
        Self {
            registry: registry.into(),
            uncovered: None,
            deselected: 0,
        }
    }

    /// A registry whose inventory was not read completely, and why.
    pub fn uncovered(registry: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            registry: registry.into(),
            uncovered: Some(reason.into()),
            deselected: 0,
        }
    }
}

impl Coverage {
    /// Complete listings and every one of `registries` read completely.
    pub fn complete<S: AsRef<str>>(registries: &[S]) -> Self {
        Self {
            registry_listing: None,
            findings: None,
            registries: registries
                .iter()
                .map(|r| RegistryCoverage::covered(r.as_ref()))
                .collect(),
        }
        .normalised()
    }

    /// Registries a run may resolve in: inventory read completely AND the findings listing read
    /// completely (empty when `findings` is `Some`).
    pub fn resolvable(&self) -> Vec<String> {
        if self.findings.is_some() {
            return Vec::new();
        }
        let mut names: Vec<String> = self
            .registries
            .iter()
            .filter(|r| r.uncovered.is_none())
            .map(|r| r.registry.clone())
            .collect();
        names.sort();
        names.dedup();
        // A name listed twice, once uncovered, was not read completely.
        names.retain(|name| {
            !self
                .registries
                .iter()
                .any(|r| &r.registry == name && r.uncovered.is_some())
        });
        names
    }

    /// Whether anything in scope was not read completely (registry listing, findings, a registry).
    pub fn incomplete(&self) -> bool {
        self.registry_listing.is_some()
            || self.findings.is_some()
            || self.registries.iter().any(|r| r.uncovered.is_some())
    }

    /// One line for people, e.g. `12/14 registries covered; acr-eu.azurecr.io: 403
    /// AuthorizationFailed; findings: complete`: the count of registries read completely, the
    /// registry listing's reason when it was cut short, each uncovered registry with its reason,
    /// the deselected repositories when there are any, and the findings listing's state.
    pub fn summary(&self) -> String {
        let covered = self
            .registries
            .iter()
            .filter(|r| r.uncovered.is_none())
            .count();
        let mut line = format!("{covered}/{} registries covered", self.registries.len());
        if let Some(reason) = &self.registry_listing {
            let _ = write!(line, "; registry listing: {reason}");
        }
        for r in &self.registries {
            if let Some(reason) = &r.uncovered {
                let _ = write!(line, "; {}: {reason}", r.registry);
            }
        }
        let deselected: u64 = self.registries.iter().map(|r| r.deselected).sum();
        if deselected > 0 {
            let noun = if deselected == 1 {
                "repository"
            } else {
                "repositories"
            };
            let _ = write!(line, "; {deselected} {noun} deselected");
        }
        match &self.findings {
            None => line.push_str("; findings: complete"),
            Some(reason) => {
                let _ = write!(line, "; findings: {reason}");
            }
        }
        line
    }

    /// The same coverage with registries sorted by name and each listed once (a registry reported
    /// twice keeps the first reason it was not covered, and the larger deselected count).
    pub(crate) fn normalised(mut self) -> Self {
        self.registries.sort_by(|a, b| a.registry.cmp(&b.registry));
        let mut out: Vec<RegistryCoverage> = Vec::with_capacity(self.registries.len());
        for r in self.registries {
            match out.last_mut() {
                Some(last) if last.registry == r.registry => {
                    if last.uncovered.is_none() {
                        last.uncovered = r.uncovered;
                    }
                    last.deselected = last.deselected.max(r.deselected);
                }
                _ => out.push(r),
            }
        }
        self.registries = out;
        self
    }
}

/// When a run that would resolve findings is held instead (see
/// [`Store::finish_run`](crate::Store::finish_run)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveGuard {
    /// Hold when the run would resolve more than this percentage of the connection's open
    /// findings... (1..=100; values outside are taken as the nearest bound)
    pub percent: u8,
    /// ...and the connection has more than this many open findings.
    pub min_open: u64,
    /// The operator pre-approved this run (`keelson scan --accept-drop`): never hold.
    pub accept_drop: bool,
}

impl Default for ResolveGuard {
    fn default() -> Self {
        Self {
            percent: 50,
            min_open: 20,
            accept_drop: false,
        }
    }
}

/// Why a guard holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldReason {
    /// It would resolve every open finding of the scopes it read.
    EveryOpenInScope,
    /// It would resolve more than the guard's share of the connection's open findings.
    Share,
}

impl ResolveGuard {
    /// Whether a run that would resolve `would` findings is held, given the connection's `open`
    /// findings and the `in_covered` of them inside the scopes the run may resolve in.
    pub fn holds(&self, would: u64, open: u64, in_covered: u64) -> bool {
        self.reason(would, open, in_covered).is_some()
    }

    pub(crate) fn reason(&self, would: u64, open: u64, in_covered: u64) -> Option<HoldReason> {
        if self.accept_drop || would == 0 {
            return None;
        }
        if would == in_covered {
            return Some(HoldReason::EveryOpenInScope);
        }
        let percent = u128::from(self.percent.clamp(1, 100));
        (open > self.min_open && u128::from(would) * 100 > percent * u128::from(open))
            .then_some(HoldReason::Share)
    }

    /// The percentage used, after bounding it to 1..=100.
    pub(crate) fn bounded_percent(&self) -> u8 {
        self.percent.clamp(1, 100)
    }
}

/// What a held run would have resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Findings it would resolve.
    pub would_resolve: u64,
    /// Open findings of the connection when it finished.
    pub open: u64,
    /// Open findings inside the scopes it covered.
    pub open_in_covered: u64,
    /// Why it was held, for people: "would resolve 298 of 298 open findings (every open finding in
    /// the scopes it read); accept with `keelson runs accept 12`".
    pub reason: String,
    /// The status the run takes when accepted (`complete` or `partial`).
    pub then: RunStatus,
}

impl Held {
    pub(crate) fn new(
        run: RunId,
        guard: &ResolveGuard,
        why: HoldReason,
        (would_resolve, open, open_in_covered): (u64, u64, u64),
        then: RunStatus,
    ) -> Self {
        let detail = match why {
            HoldReason::EveryOpenInScope => "every open finding in the scopes it read".to_owned(),
            HoldReason::Share => format!(
                "more than {}% of the connection's open findings",
                guard.bounded_percent()
            ),
        };
        Self {
            would_resolve,
            open,
            open_in_covered,
            reason: format!(
                "would resolve {would_resolve} of {open} open findings ({detail}); \
                 accept with `keelson runs accept {run}`"
            ),
            then,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(name: &str, uncovered: Option<&str>, deselected: u64) -> RegistryCoverage {
        RegistryCoverage {
            registry: name.into(),
            uncovered: uncovered.map(Into::into),
            deselected,
        }
    }

    #[test]
    fn only_fully_read_registries_are_resolvable_and_none_without_the_findings_listing() {
        let mut coverage = Coverage {
            registry_listing: Some("repeated nextLink".into()),
            findings: None,
            registries: vec![
                registry("b.azurecr.io", None, 2),
                registry("a.azurecr.io", None, 0),
                registry("c.azurecr.io", Some("403 AuthorizationFailed"), 0),
            ],
        };
        // A cut-short registry listing only hides registries; those listed and read still count.
        assert_eq!(coverage.resolvable(), ["a.azurecr.io", "b.azurecr.io"]);
        assert!(coverage.incomplete());
        coverage.findings = Some("Resource Graph answered `data: null`".into());
        assert!(coverage.resolvable().is_empty());
    }

    #[test]
    fn a_registry_reported_twice_is_covered_only_if_both_say_so() {
        let coverage = Coverage {
            registries: vec![
                registry("a.azurecr.io", None, 0),
                registry("a.azurecr.io", Some("trap"), 3),
            ],
            ..Coverage::default()
        };
        assert!(coverage.resolvable().is_empty());
        let normal = coverage.normalised();
        assert_eq!(
            normal.registries,
            [registry("a.azurecr.io", Some("trap"), 3)]
        );
    }

    #[test]
    fn complete_coverage_is_not_incomplete() {
        let coverage = Coverage::complete(&["b", "a"]);
        assert!(!coverage.incomplete());
        assert_eq!(coverage.resolvable(), ["a", "b"]);
        assert_eq!(coverage.registries[0].registry, "a");
    }

    #[test]
    fn the_summary_names_every_gap_and_the_findings_state() {
        let coverage = Coverage {
            registry_listing: None,
            findings: None,
            registries: vec![
                registry("acr-eu.azurecr.io", Some("403 AuthorizationFailed"), 0),
                registry("acr-us.azurecr.io", None, 1),
                registry("acr-ap.azurecr.io", None, 0),
            ],
        };
        assert_eq!(
            coverage.summary(),
            "2/3 registries covered; acr-eu.azurecr.io: 403 AuthorizationFailed; \
             1 repository deselected; findings: complete"
        );
        let broken = Coverage {
            registry_listing: Some("repeated nextLink".into()),
            findings: Some("rows without a status: 3".into()),
            registries: vec![],
        };
        assert_eq!(
            broken.summary(),
            "0/0 registries covered; registry listing: repeated nextLink; findings: rows without a status: 3"
        );
    }

    #[test]
    fn the_guard_holds_a_total_drop_in_scope_or_a_large_share_of_a_big_connection() {
        let guard = ResolveGuard::default();
        // Resolving nothing is never held.
        assert!(!guard.holds(0, 0, 0));
        // Every open finding of the scopes it read, however small.
        assert_eq!(guard.reason(1, 100, 1), Some(HoldReason::EveryOpenInScope));
        assert_eq!(
            guard.reason(298, 298, 298),
            Some(HoldReason::EveryOpenInScope)
        );
        // More than half of more than 20.
        assert_eq!(guard.reason(11, 21, 15), Some(HoldReason::Share));
        assert!(!guard.holds(10, 20, 15), "exactly 50% is not more than 50%");
        assert!(
            !guard.holds(11, 20, 15),
            "20 open is not more than min_open"
        );
        assert!(!guard.holds(10, 21, 15));
        assert!(
            !ResolveGuard {
                accept_drop: true,
                ..guard
            }
            .holds(298, 298, 298)
        );
        // Out-of-range percentages take the nearest bound.
        let zero = ResolveGuard {
            percent: 0,
            ..guard
        };
        assert!(
            !zero.holds(1, 100, 50),
            "0 acts as 1%: 1 of 100 is not more"
        );
        assert!(zero.holds(2, 100, 50));
        let huge = ResolveGuard {
            percent: 250,
            ..guard
        };
        assert!(!huge.holds(99, 100, 120));
    }

    #[test]
    fn a_held_reason_has_the_numbers_and_the_accept_command() {
        let held = Held::new(
            RunId(12),
            &ResolveGuard::default(),
            HoldReason::EveryOpenInScope,
            (298, 298, 298),
            RunStatus::Complete,
        );
        assert_eq!(
            held.reason,
            "would resolve 298 of 298 open findings (every open finding in the scopes it read); \
             accept with `keelson runs accept 12`"
        );
        let share = Held::new(
            RunId(3),
            &ResolveGuard::default(),
            HoldReason::Share,
            (30, 50, 40),
            RunStatus::Partial,
        );
        assert_eq!(
            share.reason,
            "would resolve 30 of 50 open findings (more than 50% of the connection's open findings); \
             accept with `keelson runs accept 3`"
        );
    }
}
