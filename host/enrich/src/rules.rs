//! Severity factors: from the scanner's severity to the queue's priority, one explained step at
//! a time.
//!
//! [`Policy::evaluate`](crate::Policy::evaluate) starts from the scanner's severity (medium when
//! it gave none) and applies, in this order:
//!
//! | id | effect | when |
//! | --- | --- | --- |
//! | `known-exploited` | raise one, never below high | the CVE is in the CISA KEV catalog |
//! | `exploit-flags` | raise one | the scanner says an exploit is verified or in an exploit kit |
//! | `epss-high` | raise one | EPSS at or above `epss_high` (default 0.1) |
//! | `network-exposed` | raise one | attack vector network, application internet-exposed and in production |
//! | `epss-low` | lower one | EPSS below `epss_low` (default 0.001) and no exploit known anywhere |
//! | `non-production` | lower one | the application's environment is not production |
//! | `not-in-use` | lower one | the image is not running and was last pushed `not_in_use_days` (90) ago or more |
//! | `local-attack-vector` | lower one | attack vector local or physical |
//! | `no-fix` | lower one | the scanner says no fix exists (or won't be made) |
//! | `kernel-package` | to informational | a kernel package in a container image: containers run the host's kernel |
//! | `manual-override` | to the level set | an operator set the priority by hand |
//!
//! Lowering is bounded: the `epss-low` … `no-fix` rules together lower at most
//! [`MAX_LOWERING`] levels; further lowerings are recorded as capped. A `known-exploited` finding
//! ends at high or above whatever else applies (only the kernel rule and an override go lower).
//! Each step is a [`Factor`] with the level before and after, a sentence and its evidence.
//!
//! The SLA is due a number of days after the finding opened (7 / 30 / 90 / 180 for critical /
//! high / medium / low, configurable; none for informational), or at the KEV due date when that
//! is sooner. Whether a reopen restarts the clock is `sla_restart_on_reopen` (default yes),
//! applied by the store when it picks the start.

use std::fmt;

use keelson_core::Severity;
use serde::{Deserialize, Serialize};

use crate::Policy;
use crate::app::{Criticality, Environment};
use crate::compliance::ControlFacts;
use crate::time::{self, DAY, Seconds};

/// The most levels the lowering rules may take off together.
pub const MAX_LOWERING: usize = 2;

/// Thresholds and SLA days (`[enrichment]` in `plugins.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// EPSS at or above this raises (default 0.1).
    pub epss_high: f64,
    /// EPSS below this lowers when no exploit is known (default 0.001).
    pub epss_low: f64,
    /// An image not running and not pushed for this many days is not in use (default 90).
    pub not_in_use_days: u32,
    /// SLA days for critical, high, medium and low priority (default 7, 30, 90, 180).
    pub sla_days: SlaDays,
    /// A reopened finding starts a new SLA clock (default true).
    pub sla_restart_on_reopen: bool,
}

/// Days to fix, per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaDays {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
}

impl SlaDays {
    /// Days for `priority`; `None` for informational and unknown.
    pub fn for_priority(&self, priority: Severity) -> Option<u32> {
        match priority {
            Severity::Critical => Some(self.critical),
            Severity::High => Some(self.high),
            Severity::Medium => Some(self.medium),
            Severity::Low => Some(self.low),
            Severity::Informational | Severity::Unknown => None,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            epss_high: 0.1,
            epss_low: 0.001,
            not_in_use_days: 90,
            sla_days: SlaDays {
                critical: 7,
                high: 30,
                medium: 90,
                low: 180,
            },
            sla_restart_on_reopen: true,
        }
    }
}

/// Which way a factor moved the priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Raise,
    Lower,
    /// Set outright (kernel package, manual override).
    Set,
    /// Context that moved nothing (a capped lowering, the SLA, the application).
    Note,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Raise => "raise",
            Self::Lower => "lower",
            Self::Set => "set",
            Self::Note => "note",
        })
    }
}

/// One explained step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    /// The rule (`known-exploited`).
    pub id: String,
    pub direction: Direction,
    pub from: Severity,
    pub to: Severity,
    /// A plain sentence.
    pub reason: String,
    /// What the sentence rests on, one fact per entry.
    pub evidence: Vec<String>,
}

/// A CISA KEV entry, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KevFact {
    pub date_added: String,
    pub due_date: Option<String>,
    pub ransomware: bool,
    pub catalog_version: Option<String>,
}

/// An EPSS score, as the rules need it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EpssFact {
    pub score: f64,
    pub percentile: Option<f64>,
    pub score_date: Option<String>,
}

/// What the connector said about the image (`describe-images`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageFacts {
    pub last_pushed_at: Option<String>,
    pub running: Option<bool>,
    pub registry_public_network_access: Option<bool>,
}

/// An operator's priority, which wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub priority: Severity,
    pub reason: String,
    pub actor: String,
    pub at: String,
}

/// Everything one finding's evaluation looks at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Input {
    pub vulnerability_id: String,
    pub severity: Option<Severity>,
    pub cvss_vector: Option<String>,
    pub exploit_published: bool,
    pub exploit_verified: bool,
    pub in_exploit_kit: bool,
    pub package: Option<String>,
    /// `os` or `language`, where known.
    pub package_kind: Option<String>,
    pub fixed_version: Option<String>,
    /// As stored: `fix-available`, `no-fix-available`, `scheduled`, `wont-fix`, `unknown`.
    pub fix_status: Option<String>,
    pub registry: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub image: ImageFacts,
    pub kev: Option<KevFact>,
    pub epss: Option<EpssFact>,
    pub manual: Option<Override>,
    /// When the SLA clock started (first seen, or the last reopen).
    pub sla_start: Option<Seconds>,
    pub now: Seconds,
}

/// The outcome for one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub priority: Severity,
    pub factors: Vec<Factor>,
    pub application: Option<String>,
    pub team: Option<String>,
    pub service: Option<String>,
    pub environment: Option<Environment>,
    pub criticality: Option<Criticality>,
    /// Stored form (`2026-03-08T00:00:00.000Z`).
    pub sla_due: Option<String>,
    pub controls: Vec<String>,
}

/// The attack vector of a CVSS vector string (`AV:N` → `N`).
fn attack_vector(vector: &str) -> Option<char> {
    vector
        .split('/')
        .find_map(|part| part.strip_prefix("AV:"))
        .and_then(|v| v.chars().next())
}

/// Kernel packages, as Debian, Ubuntu, Alpine and RPM distributions name them.
pub fn is_kernel_package(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "linux" | "kernel" | "linux-libc-dev" | "linux-lts" | "linux-virt"
    ) || [
        "linux-image-",
        "linux-headers-",
        "linux-modules-",
        "linux-tools-",
        "kernel-",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

fn step(level: Severity, up: bool) -> Severity {
    let i = Severity::ALL.iter().position(|l| *l == level).unwrap_or(0);
    let i = if up {
        (i + 1).min(Severity::ALL.len() - 1)
    } else {
        // Informational is the floor of lowering: `unknown` is not a priority.
        i.saturating_sub(1).max(1)
    };
    Severity::ALL[i]
}

struct Steps {
    level: Severity,
    lowered: usize,
    factors: Vec<Factor>,
}

impl Steps {
    fn raise(&mut self, id: &str, reason: String, evidence: Vec<String>) {
        let from = self.level;
        self.level = step(from, true);
        let reason = if from == self.level {
            format!(
                "{} (it is already at the top).",
                reason.trim_end_matches('.')
            )
        } else {
            reason
        };
        self.push(id, Direction::Raise, from, reason, evidence);
    }

    fn lower(&mut self, id: &str, reason: String, evidence: Vec<String>) {
        let from = self.level;
        if self.lowered >= MAX_LOWERING {
            let reason = format!(
                "{} Not applied: rules may lower a finding by at most {MAX_LOWERING} levels in all.",
                reason.trim_end_matches('.')
            );
            self.push(id, Direction::Note, from, reason, evidence);
            return;
        }
        self.lowered += 1;
        self.level = step(from, false);
        self.push(id, Direction::Lower, from, reason, evidence);
    }

    fn set(&mut self, id: &str, to: Severity, reason: String, evidence: Vec<String>) {
        let from = self.level;
        self.level = to;
        self.push(id, Direction::Set, from, reason, evidence);
    }

    fn push(
        &mut self,
        id: &str,
        direction: Direction,
        from: Severity,
        reason: String,
        evidence: Vec<String>,
    ) {
        let direction = if direction != Direction::Note && from == self.level {
            Direction::Note
        } else {
            direction
        };
        self.factors.push(Factor {
            id: id.to_owned(),
            direction,
            from,
            to: self.level,
            reason,
            evidence,
        });
    }
}

impl Policy {
    /// Applies the rules to one finding.
    pub fn evaluate(&self, input: &Input) -> Evaluation {
        let th = &self.thresholds;
        let base = input.severity.unwrap_or(Severity::Unknown);
        let mut s = Steps {
            level: base,
            lowered: 0,
            factors: Vec::new(),
        };
        let cve = input.vulnerability_id.as_str();
        if base == Severity::Unknown {
            s.set(
                "no-severity",
                Severity::Medium,
                "The scanner gave no severity, so the priority starts at medium.".to_owned(),
                vec![format!("{cve}: scanner severity unknown")],
            );
        }
        let mapping = self
            .applications
            .map(&input.registry, &input.repository, &input.tags);
        let app = mapping.as_ref().map(|m| m.application);
        let environment = app.and_then(|a| a.environment);

        // Raises.
        if let Some(kev) = &input.kev {
            let mut evidence = vec![format!("CISA KEV: {cve} added {}", kev.date_added)];
            if let Some(due) = &kev.due_date {
                evidence.push(format!("CISA KEV due date {due}"));
            }
            if kev.ransomware {
                evidence.push("CISA KEV: known use in ransomware campaigns".to_owned());
            }
            if let Some(v) = &kev.catalog_version {
                evidence.push(format!("KEV catalog version {v}"));
            }
            s.raise(
                "known-exploited",
                format!("{cve} is being exploited in the wild: it is in CISA's Known Exploited Vulnerabilities catalog."),
                evidence,
            );
        }
        if input.exploit_verified || input.in_exploit_kit {
            let mut evidence = Vec::new();
            if input.exploit_verified {
                evidence.push("scanner: exploit steps verified".to_owned());
            }
            if input.in_exploit_kit {
                evidence.push("scanner: included in an exploit kit".to_owned());
            }
            s.raise(
                "exploit-flags",
                "The scanner reports a working exploit (verified, or packaged in an exploit kit)."
                    .to_owned(),
                evidence,
            );
        }
        let epss_evidence = |e: &EpssFact| {
            let percentile = e
                .percentile
                .map(|p| format!(" (percentile {p:.3})"))
                .unwrap_or_default();
            let scored = e
                .score_date
                .as_deref()
                .map(|d| format!(" scored {}", d.get(..10).unwrap_or(d)))
                .unwrap_or_default();
            let line = format!("EPSS {:.5}{percentile}{scored}", e.score);
            vec![
                line,
                format!(
                    "threshold epss_high = {}, epss_low = {}",
                    th.epss_high, th.epss_low
                ),
            ]
        };
        if let Some(e) = input.epss.as_ref().filter(|e| e.score >= th.epss_high) {
            s.raise(
                "epss-high",
                format!(
                    "EPSS gives {cve} a {:.0}% chance of exploitation in the next 30 days, at or above the {:.0}% threshold.",
                    e.score * 100.0,
                    th.epss_high * 100.0
                ),
                epss_evidence(e),
            );
        }
        let vector = input.cvss_vector.as_deref();
        let av = vector.and_then(attack_vector);
        if let (Some('N'), Some(a)) = (av, app)
            && a.internet_exposed == Some(true)
            && environment == Some(Environment::Production)
        {
            let mut evidence = vec![
                format!("CVSS vector {}", vector.unwrap_or_default()),
                format!(
                    "application `{}`: internet_exposed = true, environment = production",
                    a.name
                ),
            ];
            if let Some(public) = input.image.registry_public_network_access {
                evidence.push(format!(
                    "registry public network access: {}",
                    if public { "enabled" } else { "disabled" }
                ));
            }
            s.raise(
                "network-exposed",
                format!(
                    "It can be attacked over the network, and `{}` is an internet-facing production application.",
                    a.name
                ),
                evidence,
            );
        }

        // Lowerings, bounded together.
        let exploit_known = input.kev.is_some()
            || input.exploit_published
            || input.exploit_verified
            || input.in_exploit_kit;
        if let Some(e) = input.epss.as_ref().filter(|e| e.score < th.epss_low)
            && !exploit_known
        {
            let mut evidence = epss_evidence(e);
            evidence.push(
                "no exploit: not in CISA KEV, none published according to the scanner".to_owned(),
            );
            s.lower(
                "epss-low",
                format!(
                    "Exploitation is very unlikely: EPSS puts it at {:.2}% in the next 30 days and no exploit is known.",
                    e.score * 100.0
                ),
                evidence,
            );
        }
        if let (Some(a), Some(env)) = (app, environment)
            && env != Environment::Production
        {
            s.lower(
                "non-production",
                format!(
                    "The image belongs to `{}`, a {env} application, not production.",
                    a.name
                ),
                vec![format!(
                    "application `{}`: environment = {env} (matched by `{}`)",
                    a.name,
                    mapping.as_ref().map_or("", |m| m.glob)
                )],
            );
        }
        if input.image.running == Some(false)
            && let Some(pushed) = input.image.last_pushed_at.as_deref()
            && let Ok(at) = time::parse(pushed)
        {
            let idle_days = (input.now - at).div_euclid(DAY);
            if idle_days >= i64::from(th.not_in_use_days) {
                s.lower(
                    "not-in-use",
                    format!(
                        "The image is not in use: it is not running and was last pushed {idle_days} days ago."
                    ),
                    vec![
                        "connector: image not running".to_owned(),
                        format!("last pushed {pushed}"),
                        format!("threshold not_in_use_days = {}", th.not_in_use_days),
                    ],
                );
            }
        }
        if let Some(av @ ('L' | 'P')) = av {
            let how = if av == 'L' { "local" } else { "physical" };
            s.lower(
                "local-attack-vector",
                format!("An attacker needs {how} access to the machine; it cannot be exploited over the network."),
                vec![format!("CVSS vector {}", vector.unwrap_or_default())],
            );
        }
        let fix_status = input.fix_status.as_deref();
        let no_fix = input.fixed_version.is_none()
            && matches!(fix_status, Some("no-fix-available" | "wont-fix"));
        if no_fix {
            s.lower(
                "no-fix",
                "No fixed version exists yet, so there is nothing to deploy: this lowers the priority, not the scanner's severity, and lifts again when a fix appears.".to_owned(),
                vec![format!("scanner: fix status {}", fix_status.unwrap_or("unknown"))],
            );
        }

        if input.kev.is_some() && s.level < Severity::High {
            let from = s.level;
            s.level = Severity::High;
            s.push(
                "known-exploited-floor",
                Direction::Raise,
                from,
                "Known exploited vulnerabilities never rank below high.".to_owned(),
                vec![format!("CISA KEV: {cve}")],
            );
        }
        let kernel = input
            .package
            .as_deref()
            .filter(|p| is_kernel_package(p) && input.package_kind.as_deref() != Some("language"));
        if let Some(p) = kernel {
            s.set(
                "kernel-package",
                Severity::Informational,
                "It is a kernel package: a container runs on its host's kernel, not on the one in its image.".to_owned(),
                vec![format!("package `{p}`")],
            );
        }
        if let Some(m) = &input.manual {
            s.set(
                "manual-override",
                m.priority,
                format!("{} set the priority by hand: {}", m.actor, m.reason),
                vec![format!("override by {} at {}", m.actor, m.at)],
            );
        }

        let priority = s.level;
        if let Some(m) = &mapping {
            let a = m.application;
            let mut evidence = vec![format!("matched by `{}`", m.glob)];
            evidence.extend(a.team.as_ref().map(|t| format!("team {t}")));
            evidence.extend(a.environment.map(|e| format!("environment {e}")));
            evidence.extend(
                a.business_criticality
                    .map(|c| format!("business criticality {c}")),
            );
            s.push(
                "application",
                Direction::Note,
                priority,
                format!("The image belongs to application `{}`.", a.name),
                evidence,
            );
        }

        let sla_due = self.sla(input, priority, &mut s);
        let facts = ControlFacts {
            priority,
            fix_available: input.fixed_version.is_some() || fix_status == Some("fix-available"),
            known_exploited: input.kev.is_some(),
            application: app.map(|a| a.name.as_str()),
            environment,
        };
        let mut controls: Vec<String> = self
            .controls
            .iter()
            .filter(|r| r.applies(&facts))
            .map(crate::compliance::ControlRule::key)
            .collect();
        controls.dedup();
        Evaluation {
            priority,
            factors: s.factors,
            application: app.map(|a| a.name.clone()),
            team: app.and_then(|a| a.team.clone()),
            service: app.and_then(|a| a.service.clone()),
            environment,
            criticality: app.and_then(|a| a.business_criticality),
            sla_due,
            controls,
        }
    }

    fn sla(&self, input: &Input, priority: Severity, s: &mut Steps) -> Option<String> {
        let start = input.sla_start?;
        let days = self.thresholds.sla_days.for_priority(priority)?;
        let by_priority = start + i64::from(days) * DAY;
        let kev_due = input
            .kev
            .as_ref()
            .and_then(|k| k.due_date.as_deref())
            .and_then(|d| time::parse(d).ok());
        let (due, reason, evidence) = match kev_due {
            Some(kev) if kev < by_priority => (
                kev,
                format!(
                    "Fix by {}: CISA's KEV due date comes before the {days} days that {priority} priority allows.",
                    time::date(kev)
                ),
                vec![format!("CISA KEV due date {}", time::date(kev))],
            ),
            _ => (
                by_priority,
                format!(
                    "Fix by {}: {days} days for {priority} priority from {}.",
                    time::date(by_priority),
                    time::date(start)
                ),
                vec![format!("SLA clock started {}", time::format(start))],
            ),
        };
        s.push("sla", Direction::Note, priority, reason, evidence);
        Some(time::format(due))
    }
}

#[cfg(test)]
mod tests;
