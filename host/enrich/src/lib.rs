//! Keelson's enrichment: what the host adds to a scanner's word. Pure logic, no I/O beyond the
//! readers handed to [`feeds::open`].
//!
//! - [`app`]: `[[application]]` rules map images to applications, services and teams.
//! - [`rules`]: severity factors turn the scanner's severity into the queue's **priority**, each
//!   step explained ([`Factor`]), with bounded lowering, a manual override and the SLA due date.
//! - [`compliance`]: which framework controls a finding is evidence for.
//! - [`feeds`]: the CISA KEV catalog (JSON) and FIRST EPSS scores (CSV, gzipped or not).
//! - [`SuppressionKind`]: why an operator hid findings.
//!
//! A [`Policy`] bundles the operator's rules; the store feeds it one [`Input`] per finding and
//! keeps the [`Evaluation`].

pub mod app;
pub mod compliance;
pub mod feeds;
mod glob;
pub mod rules;
pub mod time;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use app::{Application, ApplicationMap, Criticality, Environment, Mapping};
pub use compliance::{ControlRule, control_matches, default_controls};
pub use glob::{check_glob, glob_match};
pub use rules::{
    Direction, EpssFact, Evaluation, Factor, ImageFacts, Input, KevFact, MAX_LOWERING, Override,
    SlaDays, Thresholds, is_kernel_package,
};

/// What enrichment can fail with: a value that is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a date or RFC 3339 timestamp")]
    BadTimestamp(String),
    #[error("`{0}` is not an environment; expected production, staging, test or development")]
    BadEnvironment(String),
    #[error("`{0}` is not a business criticality; expected low, medium, high or critical")]
    BadCriticality(String),
    #[error(
        "`{0}` is not a suppression kind; expected false-positive, risk-accepted, not-affected or wont-fix"
    )]
    BadSuppressionKind(String),
    #[error("not a CISA KEV catalog: {0}")]
    BadKev(String),
    #[error("EPSS line {line}: {reason}")]
    BadEpss { line: u64, reason: String },
    #[error("cannot read the feed: {0}")]
    Read(String),
}

/// The operator's enrichment rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub applications: ApplicationMap,
    pub thresholds: Thresholds,
    /// The built-in controls followed by the operator's.
    pub controls: Vec<ControlRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(Vec::new(), Thresholds::default(), Vec::new())
    }
}

impl Policy {
    /// Rules from `plugins.toml`: applications, thresholds and extra control rows.
    pub fn new(
        applications: Vec<Application>,
        thresholds: Thresholds,
        extra_controls: Vec<ControlRule>,
    ) -> Self {
        let mut controls = default_controls();
        controls.extend(extra_controls);
        Self {
            applications: ApplicationMap::new(applications),
            thresholds,
            controls,
        }
    }
}

/// Why findings are hidden from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuppressionKind {
    FalsePositive,
    RiskAccepted,
    NotAffected,
    WontFix,
}

impl SuppressionKind {
    pub const ALL: [SuppressionKind; 4] = [
        SuppressionKind::FalsePositive,
        SuppressionKind::RiskAccepted,
        SuppressionKind::NotAffected,
        SuppressionKind::WontFix,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FalsePositive => "false-positive",
            Self::RiskAccepted => "risk-accepted",
            Self::NotAffected => "not-affected",
            Self::WontFix => "wont-fix",
        }
    }
}

impl fmt::Display for SuppressionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SuppressionKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::BadSuppressionKind(s.to_owned()))
    }
}
