//! Registries, images, findings and what connectors say about themselves.
//!
//! Timestamps stay RFC 3339 strings as the source gave them; the store parses what it sorts on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A severity level, as a scanner reported it or as enrichment re-prioritised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every level, lowest first.
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::Informational,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Informational => "informational",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a severity name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a severity; expected one of unknown, informational, low, medium, high, critical"
)]
pub struct ParseSeverityError(pub String);

impl FromStr for Severity {
    type Err = ParseSeverityError;

    /// Parses a level name, ignoring case (`High`, `critical`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseSeverityError(s.to_owned()))
    }
}

/// One key and value: a setting or a free-form attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// Describes one setting of a connector (mirrors WIT `setting-spec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingSpec {
    pub key: String,
    pub label: String,
    pub help: String,
    pub secret: bool,
    pub required: bool,
    pub default_value: Option<String>,
    pub choices: Vec<String>,
    pub only_when: Option<KeyValue>,
    /// For a secret (contract 0.2.0): the host patterns its value may be sent to, as the plugin
    /// declared them; empty means the plugin's exact-host grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_hosts: Vec<String>,
}

/// What a connector says about itself (mirrors WIT `connector-info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    pub id: String,
    pub display_name: String,
    pub version: String,
    pub source_tool: String,
    pub settings: Vec<SettingSpec>,
    pub instructions: String,
    pub suggested_hosts: Vec<String>,
}

/// The identity a session acts as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub display_name: String,
    pub details: Vec<KeyValue>,
}

/// A page of items, the cursor of the next one, and the parts of the listing's scope this page
/// could not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
    /// Parts of the scope that could not be read (a forbidden project): the listing is
    /// incomplete, the items it did return are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
}

impl<T> Page<T> {
    /// A page with no gaps.
    pub fn new(items: Vec<T>, next: Option<String>) -> Self {
        Self {
            items,
            next,
            gaps: Vec::new(),
        }
    }
}

/// A part of a listing's scope that could not be read (contract 0.2.0 `gap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The registry it is in; `None` when it is not inside one.
    pub registry: Option<String>,
    /// The repository path prefix it covers (`team-a` covers `team-a/*`); `None` for the whole
    /// registry.
    pub namespace: Option<String>,
    /// Why, as the connector reported it.
    pub error: crate::ConnectorError,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.registry, &self.namespace) {
            (Some(r), Some(n)) => write!(f, "`{r}/{n}/*`")?,
            (Some(r), None) => write!(f, "`{r}`")?,
            (None, Some(n)) => write!(f, "`{n}`")?,
            (None, None) => f.write_str("part of the listing")?,
        }
        write!(f, ": {}", self.error)
    }
}

/// A container registry, keyed by its login server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub name: String,
    pub source_id: String,
    pub display_name: String,
    pub location: Option<String>,
    pub tier: Option<String>,
    pub public_network_access: Option<bool>,
    pub attributes: Vec<KeyValue>,
}

/// A repository inside a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub registry: String,
    pub name: String,
    pub updated_at: Option<String>,
}

/// Points at one image manifest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub digest: String,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

/// The platform an image runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// One image manifest or index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub image_ref: ImageRef,
    pub tags: Vec<String>,
    pub media_type: Option<String>,
    pub platform: Option<Platform>,
    pub children: Vec<String>,
    pub size_bytes: Option<u64>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// Whether a fix exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixStatus {
    Unknown,
    FixAvailable,
    NoFixAvailable,
    Scheduled,
    WontFix,
}

/// The software component a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: Option<String>,
    pub fixed_version: Option<String>,
    pub fix_status: FixStatus,
    pub kind: Option<String>,
    pub ecosystem: Option<String>,
}

/// Exploitability as the scanner reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exploitability {
    pub exploit_published: bool,
    pub exploit_verified: bool,
    pub in_exploit_kit: bool,
    pub types: Vec<String>,
}

/// A titled link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub title: String,
    pub url: String,
}

/// One vulnerability in one package of one image, open at the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub image: ImageRef,
    pub vulnerability_id: String,
    pub source_id: Option<String>,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub cvss_score: Option<f64>,
    pub cvss_vector: Option<String>,
    pub package: Option<Package>,
    pub remediation: Option<String>,
    pub evidence: Vec<String>,
    pub references: Vec<Reference>,
    pub published_at: Option<String>,
    pub modified_at: Option<String>,
    pub exploitability: Exploitability,
    pub weaknesses: Vec<String>,
    pub raw: String,
}

/// Which part of an account a scan covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanScope {
    /// Registries (login servers) to report findings for; empty means all.
    pub registries: Vec<String>,
}

/// What the source knows about an image beyond its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageContext {
    pub image: ImageRef,
    pub tags: Vec<String>,
    pub last_pushed_at: Option<String>,
    pub last_pulled_at: Option<String>,
    pub running: Option<bool>,
    pub registry_public_network_access: Option<bool>,
    pub attributes: Vec<KeyValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_parses_any_case_and_orders_low_to_high() {
        assert_eq!("Critical".parse::<Severity>(), Ok(Severity::Critical));
        assert_eq!(" high ".parse::<Severity>(), Ok(Severity::High));
        assert!("urgent".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Informational);
    }

    #[test]
    fn severity_serialises_lowercase() {
        assert_eq!(
            serde_json::to_string(&Severity::Medium).unwrap(),
            "\"medium\""
        );
    }
}
