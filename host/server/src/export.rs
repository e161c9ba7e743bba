//! Exports of the queue: CSV safe to open in a spreadsheet, and SARIF 2.1.0 for code-scanning
//! dashboards. Both take the queue rows as the API returns them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The CSV columns, in order; enrichment columns stay empty when the rows lack them.
const CSV_COLUMNS: [&str; 17] = [
    "id",
    "source_tool",
    "registry",
    "repository",
    "vulnerability_id",
    "title",
    "package",
    "package_version",
    "fixed_version",
    "severity",
    "priority",
    "status",
    "application",
    "team",
    "sla_due",
    "first_seen",
    "last_seen",
];

fn cell_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One CSV field: a leading `=`, `+`, `-`, `@`, tab or carriage return (which a spreadsheet would
/// run as a formula) gets a `'` in front; quotes, commas and line breaks are quoted.
pub fn csv_field(text: &str) -> String {
    // Plugin text is data: control and bidi characters become visible escapes, so a cell can
    // neither rewrite the terminal it is printed on nor reorder what a reader sees.
    let text = keelson_core::text::for_terminal(text);
    let text = text.as_ref();
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// The rows as CSV with a header line, one line per issue, image digests joined by spaces.
pub fn csv(rows: &[Value]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str(",images\r\n");
    for row in rows {
        let mut fields: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| csv_field(&cell_text(row.get(*c))))
            .collect();
        let images: Vec<String> = row
            .get("images")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("digest").and_then(Value::as_str).map(str::to_owned))
            .collect();
        fields.push(csv_field(&images.join(" ")));
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The score GitHub-style dashboards rank by, from the effective level.
fn security_severity(level: &str) -> &'static str {
    match level {
        "critical" => "9.5",
        "high" => "8.0",
        "medium" => "5.5",
        "low" => "2.0",
        _ => "0.0",
    }
}

fn sarif_level(level: &str) -> &'static str {
    match level {
        "critical" | "high" => "error",
        "medium" => "warning",
        "low" => "note",
        _ => "none",
    }
}

fn text<'a>(row: &'a Value, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A fingerprint of an issue that survives re-scans and re-numbering: its natural key.
fn fingerprint(row: &Value) -> String {
    let key = [
        text(row, "source_tool"),
        text(row, "registry"),
        text(row, "repository"),
        text(row, "vulnerability_id"),
        text(row, "package"),
    ]
    .join("\u{1f}");
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The rows as a SARIF 2.1.0 log: one run per repository, with a stable
/// `automationDetails.id` (`keelson/REGISTRY/REPOSITORY/`), one rule per vulnerability, and per
/// result a `partialFingerprints` entry and the `security-severity` of its effective level.
pub fn sarif(rows: &[Value]) -> Value {
    let mut by_repo: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for row in rows {
        by_repo
            .entry((
                text(row, "registry").to_owned(),
                text(row, "repository").to_owned(),
            ))
            .or_default()
            .push(row);
    }
    let runs: Vec<Value> = by_repo
        .into_iter()
        .map(|((registry, repository), rows)| {
            let mut rules: BTreeMap<String, Value> = BTreeMap::new();
            let mut results = Vec::new();
            for row in rows {
                let vuln = text(row, "vulnerability_id");
                let level = row
                    .get("priority")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| text(row, "severity"));
                let rule = rules.entry(vuln.to_owned()).or_insert_with(|| {
                    json!({
                        "id": vuln,
                        "name": vuln,
                        "shortDescription": { "text": text(row, "title") },
                        "properties": {
                            "security-severity": security_severity(level),
                            "tags": ["security", "container"],
                        },
                    })
                });
                // The rule carries the highest score among its results.
                let current: f64 = rule["properties"]["security-severity"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0);
                let this: f64 = security_severity(level).parse().unwrap_or(0.0);
                if this > current {
                    rule["properties"]["security-severity"] = json!(security_severity(level));
                }
                let package = text(row, "package");
                let version = text(row, "package_version");
                let fixed = text(row, "fixed_version");
                let mut message = format!("{} in {package} {version}", text(row, "title"));
                if !fixed.is_empty() {
                    let _ = write!(message, "; fixed in {fixed}");
                }
                let locations: Vec<Value> = row
                    .get("images")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.get("digest").and_then(Value::as_str))
                    .map(|digest| {
                        json!({
                            "physicalLocation": {
                                "artifactLocation": {
                                    "uri": format!("{registry}/{repository}@{digest}"),
                                },
                            },
                            "logicalLocations": [{
                                "name": package,
                                "fullyQualifiedName": format!("{registry}/{repository}@{digest}!{package}"),
                                "kind": "package",
                            }],
                        })
                    })
                    .collect();
                results.push(json!({
                    "ruleId": vuln,
                    "level": sarif_level(level),
                    "message": { "text": message },
                    "locations": locations,
                    "partialFingerprints": { "keelsonIssue/v1": fingerprint(row) },
                    "properties": {
                        "keelson-issue-id": row.get("id").cloned().unwrap_or(Value::Null),
                        "severity": text(row, "severity"),
                        "status": text(row, "status"),
                        "security-severity": security_severity(level),
                    },
                }));
            }
            json!({
                "tool": {
                    "driver": {
                        "name": "Keelson",
                        "informationUri": "https://github.com/keelson",
                        "version": env!("CARGO_PKG_VERSION"),
                        "rules": rules.into_values().collect::<Vec<_>>(),
                    },
                },
                "automationDetails": { "id": format!("keelson/{registry}/{repository}/") },
                "results": results,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_neutralise_control_and_bidi_characters() {
        assert_eq!(
            csv_field("a\u{1b}]52;c;x\u{7}b\u{202e}c"),
            "a\\u{1b}]52;c;x\\u{7}b\\u{202e}c"
        );
    }

    #[test]
    fn csv_fields_are_formula_escaped_and_quoted() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1+2"), "'-1+2");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let rows = vec![
            json!({"id": 7, "title": "=cmd", "severity": "high", "images": [{"digest": "sha256:aa"}]}),
        ];
        let out = csv(&rows);
        let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("id,source_tool,"));
        assert!(lines[1].starts_with("7,"));
        assert!(lines[1].contains(",'=cmd,"), "{}", lines[1]);
        assert!(lines[1].ends_with(",sha256:aa"));
    }

    #[test]
    fn sarif_groups_by_repository_with_stable_ids() {
        let row = |id: i64, repo: &str, sev: &str| {
            json!({"id": id, "source_tool": "T", "registry": "r.io", "repository": repo,
                   "vulnerability_id": "CVE-1", "title": "t", "package": "p", "severity": sev,
                   "images": [{"digest": "sha256:1"}]})
        };
        let log = sarif(&[
            row(1, "a", "low"),
            row(2, "b", "critical"),
            row(3, "a", "high"),
        ]);
        let runs = log["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0]["automationDetails"]["id"], "keelson/r.io/a/");
        assert_eq!(runs[0]["results"].as_array().unwrap().len(), 2);
        assert_eq!(
            runs[0]["tool"]["driver"]["rules"][0]["properties"]["security-severity"],
            "8.0"
        );
        assert_eq!(runs[1]["results"][0]["level"], "error");
        let again = sarif(&[row(9, "a", "low")]);
        assert_eq!(
            again["runs"][0]["results"][0]["partialFingerprints"],
            runs[0]["results"][0]["partialFingerprints"],
            "the fingerprint does not depend on the issue number"
        );
    }
}
