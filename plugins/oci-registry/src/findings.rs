//! The optional findings feed: a JSON document listing vulnerabilities by image digest, for
//! registries whose scanner (Trivy, Clair, Harbor's) exports its results somewhere.
//!
//! ```json
//! {"findings": [{"repository": "team/app", "digest": "sha256:…", "vulnerability_id": "CVE-2024-1234",
//!   "severity": "high", "title": "…", "description": "…", "package": "openssl",
//!   "installed_version": "3.0.1", "fixed_version": "3.0.2"}]}
//! ```
//!
//! `registry` may be given per finding; it defaults to the connection's registry.

use keelson_plugin_sdk::{
    ConnectorError, Exploitability, Finding, FixStatus, ImageRef, PackageInfo, Severity,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Feed {
    findings: Vec<Row>,
}

#[derive(Deserialize, serde::Serialize)]
struct Row {
    #[serde(default)]
    registry: Option<String>,
    repository: String,
    digest: String,
    vulnerability_id: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    installed_version: Option<String>,
    #[serde(default)]
    fixed_version: Option<String>,
}

/// Parses the feed; `registry` is the connection's login server.
pub(crate) fn parse_feed(body: &[u8], registry: &str) -> Result<Vec<Finding>, ConnectorError> {
    let feed: Feed = serde_json::from_slice(body).map_err(|e| {
        ConnectorError::Unavailable(format!(
            "the findings feed is not the expected JSON ({}:{})",
            e.line(),
            e.column()
        ))
    })?;
    Ok(feed
        .findings
        .into_iter()
        .map(|row| {
            let raw = serde_json::to_string(&row).unwrap_or_default();
            let package = row.package.map(|name| PackageInfo {
                name,
                version: row.installed_version.clone(),
                fix_status: if row.fixed_version.is_some() {
                    FixStatus::FixAvailable
                } else {
                    FixStatus::Unknown
                },
                fixed_version: row.fixed_version.clone(),
                kind: None,
                ecosystem: None,
            });
            Finding {
                image: ImageRef {
                    registry: row.registry.unwrap_or_else(|| registry.to_owned()),
                    repository: row.repository,
                    digest: row.digest,
                },
                title: row.title.unwrap_or_else(|| row.vulnerability_id.clone()),
                vulnerability_id: row.vulnerability_id,
                source_id: None,
                description: row.description.unwrap_or_default(),
                severity: row
                    .severity
                    .as_deref()
                    .map_or(Severity::Unknown, Severity::parse_lenient),
                cvss_score: None,
                cvss_vector: None,
                package,
                remediation: row.fixed_version.map(|v| format!("Upgrade to {v}.")),
                evidence: Vec::new(),
                references: Vec::new(),
                published_at: None,
                modified_at: None,
                exploitability: Exploitability {
                    exploit_published: false,
                    exploit_verified: false,
                    in_exploit_kit: false,
                    types: Vec::new(),
                },
                weaknesses: Vec::new(),
                raw,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_rows_become_findings_of_this_registry() {
        let body = br#"{"findings":[{"repository":"team/app","digest":"sha256:ab","vulnerability_id":"CVE-1","severity":"HIGH","package":"openssl","installed_version":"1","fixed_version":"2"}]}"#;
        let findings = parse_feed(body, "reg.example").unwrap();
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.image.registry, "reg.example");
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.title, "CVE-1");
        let package = f.package.as_ref().unwrap();
        assert_eq!(package.fix_status, FixStatus::FixAvailable);
        assert!(f.raw.contains("CVE-1"));
        assert!(parse_feed(b"[]", "r").is_err());
    }
}
