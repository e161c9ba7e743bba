//! Microsoft Defender for Cloud findings, read through Azure Resource Graph.
//!
//! Three data sets hold container-image vulnerabilities: the current *individual
//! recommendations* (one `microsoft.security/assessments` row per vulnerable package, its CVEs
//! in `CvesDetails`), and the legacy MDVM and Qualys *sub-assessments* (one row per
//! vulnerability). Each has its own query ([`DataSet::query`]) and row parser; all keep only
//! `Unhealthy` rows and produce one finding per CVE. A finding's `raw` (its whole source row,
//! as sent) is left to the session, which holds each row's text once for all its findings.

use std::collections::BTreeMap;

use keelson_plugin_sdk::http::{DEFAULT_RETRY_AFTER_MS, Response, display_url};
use keelson_plugin_sdk::{
    ConnectorError, Exploitability, Finding, FixStatus, ImageRef, PackageInfo, Reference, Severity,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::arm::registry_resource_id;
use crate::config::{Config, FindingsSource};
use crate::error::Error;
use crate::lenient::{self, as_text, at, first_text, flag, items, number, text, texts};

pub(crate) const GRAPH_API_VERSION: &str = "2024-04-01";

/// Resource Graph's largest page.
pub(crate) const MAX_ROWS: u32 = 1000;

/// Individual recommendations (current format).
pub(crate) const INDIVIDUAL_QUERY: &str = "securityresources
| where type == \"microsoft.security/assessments\"
| where properties.metadata.recommendationCategory == \"SoftwareUpdate\"
| where properties.resourceDetails.ResourceType == \".containerimage\"
| where properties.resourceDetails.Source == \"Azure\"
| project id, name, type, subscriptionId, resourceGroup, properties
| order by id asc";

/// MDVM sub-assessments (legacy).
pub(crate) const MDVM_QUERY: &str = "securityresources
| where type == \"microsoft.security/assessments/subassessments\"
| extend assessmentKey = extract(@\"(?i)providers/Microsoft.Security/assessments/([^/]*)\", 1, id)
| where assessmentKey == \"c0b7cfc6-3172-465a-b378-53c7ff2cc0d5\"
| project id, name, type, subscriptionId, resourceGroup, properties
| order by id asc";

/// Qualys sub-assessments (legacy).
pub(crate) const QUALYS_QUERY: &str = "securityresources
| where type == \"microsoft.security/assessments/subassessments\"
| extend assessmentKey = extract(@\"(?i)providers/Microsoft.Security/assessments/([^/]*)\", 1, id)
| where assessmentKey == \"dbd0cb49-b563-45e7-9724-889e799fa648\"
| project id, name, type, subscriptionId, resourceGroup, properties
| order by id asc";

/// One of Defender's data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DataSet {
    Individual,
    Mdvm,
    Qualys,
}

impl DataSet {
    pub(crate) fn query(self) -> &'static str {
        match self {
            Self::Individual => INDIVIDUAL_QUERY,
            Self::Mdvm => MDVM_QUERY,
            Self::Qualys => QUALYS_QUERY,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Individual => "individual",
            Self::Mdvm => "mdvm",
            Self::Qualys => "qualys",
        }
    }

    /// Sub-assessments, retired by Microsoft on 2026-07-31.
    pub(crate) fn is_legacy(self) -> bool {
        self != Self::Individual
    }

    /// The data sets a source reads, in order.
    pub(crate) fn for_source(source: FindingsSource) -> &'static [DataSet] {
        match source {
            FindingsSource::Auto => &[Self::Individual, Self::Mdvm, Self::Qualys],
            FindingsSource::Individual => &[Self::Individual],
            FindingsSource::Mdvm => &[Self::Mdvm],
            FindingsSource::Qualys => &[Self::Qualys],
        }
    }
}

/// `POST` URL of a Resource Graph query.
pub(crate) fn graph_url(config: &Config) -> String {
    format!(
        "{}/providers/Microsoft.ResourceGraph/resources?api-version={GRAPH_API_VERSION}",
        config.resource_manager
    )
}

/// A Resource Graph request body, serialised in the documented field order.
#[derive(Debug, Serialize)]
pub(crate) struct QueryBody<'a> {
    subscriptions: [&'a str; 1],
    query: &'a str,
    options: QueryOptions<'a>,
}

#[derive(Debug, Serialize)]
struct QueryOptions<'a> {
    #[serde(rename = "$skipToken", skip_serializing_if = "Option::is_none")]
    skip_token: Option<&'a str>,
    #[serde(rename = "$top")]
    top: u32,
    #[serde(rename = "resultFormat")]
    result_format: &'static str,
}

/// The request body of one page of `query` over the subscription.
pub(crate) fn query_body<'a>(
    subscription: &'a str,
    query: &'a str,
    top: u32,
    skip_token: Option<&'a str>,
) -> QueryBody<'a> {
    QueryBody {
        subscriptions: [subscription],
        query,
        options: QueryOptions {
            skip_token,
            top,
            result_format: "objectArray",
        },
    }
}

/// One page of rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GraphPage {
    /// Each row as Resource Graph wrote it: the source a finding's `raw` carries.
    pub(crate) rows: Vec<Box<str>>,
    pub(crate) skip_token: Option<String>,
    /// The rows the page says it holds (`count`).
    pub(crate) count: Option<u64>,
    /// The rows the whole query has (`totalRecords`).
    pub(crate) total_records: Option<u64>,
}

/// What a page's counts say against its rows: problems that leave the listing incomplete.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CountCheck {
    /// `(problem, detail)`, for [`keelson_plugin_sdk::skipped::Skipped::problem`].
    pub(crate) problems: Vec<(&'static str, String)>,
    /// More rows than `totalRecords` promised: the listing must not follow the page's
    /// `$skipToken` (a pager serving rows again under new tokens would never end).
    pub(crate) stop: bool,
}

impl GraphPage {
    /// Checks `count` against the page's rows and `totalRecords` against the rows read so far
    /// (`rows_before`, on the listing's earlier pages, plus these): never more, and on the
    /// last page exactly as many. An absent count is not checked.
    pub(crate) fn check_counts(&self, dataset: DataSet, rows_before: u64) -> CountCheck {
        let rows = self.rows.len() as u64;
        let so_far = rows_before + rows;
        let name = dataset.name();
        let mut check = CountCheck::default();
        if let Some(count) = self.count.filter(|c| *c != rows) {
            check.problems.push((
                "a Resource Graph page's `count` contradicted its rows",
                format!("`{name}`: `count` {count}, {rows} rows in `data`"),
            ));
        }
        match self.total_records {
            Some(total) if so_far > total => {
                check.problems.push((
                    "Resource Graph sent more rows than its `totalRecords`",
                    format!("`{name}`: {so_far} rows read, `totalRecords` {total}"),
                ));
                check.stop = true;
            }
            Some(total) if self.skip_token.is_none() && so_far < total => {
                check.problems.push((
                    "Resource Graph ended with fewer rows than its `totalRecords`",
                    format!("`{name}`: {so_far} rows read, `totalRecords` {total}"),
                ));
            }
            _ => {}
        }
        check
    }
}

/// Parses a Resource Graph answer (object-array or table format). The rows are not parsed
/// here, only delimited: each is kept as the text sent, and [`parse_row`] reads it.
pub(crate) fn parse_graph_page(
    response: &Response,
    dataset: DataSet,
) -> Result<GraphPage, ConnectorError> {
    let Ok(mut top) = serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(&response.body)
    else {
        // Not JSON is reported as such; JSON of another shape is malformed.
        response.json::<Value>()?;
        return Err(malformed(response, "the answer is not an object"));
    };
    // Only the envelope is read case-insensitively; rows stay as sent (they are the raw data).
    let mut take = |name: &str| {
        let key = top.keys().find(|k| k.eq_ignore_ascii_case(name))?.clone();
        top.remove(&key)
    };
    let parsed = |raw: Option<Box<RawValue>>| {
        raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
            .filter(|v| !v.is_null())
    };
    let skip_token = parsed(take("$skipToken")).as_ref().and_then(as_text);
    let truncated = parsed(take("resultTruncated")).is_some_and(|v| {
        v.as_bool() == Some(true) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
    });
    if truncated && skip_token.is_none() {
        return Err(Error::Truncated {
            dataset: dataset.name(),
        }
        .into());
    }
    let mut counted = |field: &str| match parsed(take(field)) {
        None => Ok(None),
        Some(value) => lenient::unsigned(&value, &[])
            .map(Some)
            .ok_or_else(|| malformed(response, &format!("`{field}` is `{value}`, not a count"))),
    };
    let count = counted("count")?;
    let total_records = counted("totalRecords")?;
    // A 200 without rows where rows belong is an outage, never an empty tenant.
    let rows = match take("data") {
        None => return Err(malformed(response, "`data` is missing")),
        Some(data) if data.get() == "null" => {
            return Err(malformed(response, "`data` is null"));
        }
        Some(data) if data.get().starts_with('[') => {
            serde_json::from_str::<Vec<Box<RawValue>>>(data.get())
                .map_err(|_| malformed(response, "`data` is a malformed list"))?
                .into_iter()
                .map(Box::<str>::from)
                .collect()
        }
        Some(data) => match serde_json::from_str::<Value>(data.get()) {
            Ok(Value::Object(table)) => table_rows(&table)
                .ok_or_else(|| malformed(response, "`data` is a malformed table"))?
                .into_iter()
                .map(|row| row.to_string().into_boxed_str())
                .collect(),
            _ => return Err(malformed(response, "`data` is neither a list nor a table")),
        },
    };
    Ok(GraphPage {
        rows,
        skip_token,
        count,
        total_records,
    })
}

/// Rows of the `table` result format as objects.
fn table_rows(table: &Map<String, Value>) -> Option<Vec<Value>> {
    let columns: Vec<String> = table
        .get("columns")?
        .as_array()?
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect::<Option<_>>()?;
    table
        .get("rows")?
        .as_array()?
        .iter()
        .map(|row| {
            let cells = row.as_array()?;
            Some(Value::Object(
                columns.iter().cloned().zip(cells.iter().cloned()).collect(),
            ))
        })
        .collect()
}

fn malformed(response: &Response, detail: &str) -> ConnectorError {
    Error::Malformed {
        what: format!("`{}`", display_url(response.url())),
        detail: detail.to_owned(),
    }
    .into()
}

/// Whether a Resource Graph error is `InvalidQuery` (the query itself was refused).
pub(crate) fn is_invalid_query(response: &Response) -> bool {
    response.status == 400
        && error_codes(response)
            .iter()
            .any(|c| c.eq_ignore_ascii_case("InvalidQuery"))
}

fn error_codes(response: &Response) -> Vec<String> {
    let body = lenient::parse(&response.body);
    let mut codes: Vec<String> = text(&body, &["error", "code"]).into_iter().collect();
    codes.extend(
        items(&body, &["error", "details"])
            .iter()
            .filter_map(|d| text(d, &["code"])),
    );
    codes
}

fn error_message(response: &Response) -> String {
    let body = lenient::parse(&response.body);
    let detail = items(&body, &["error", "details"])
        .iter()
        .find_map(|d| text(d, &["message"]));
    let message = detail
        .or_else(|| text(&body, &["error", "message"]))
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    message.chars().take(300).collect()
}

/// Maps a Resource Graph error answer (other than a stale-token 401, which the session
/// retries) to a [`ConnectorError`].
pub(crate) fn graph_error(
    response: &Response,
    config: &Config,
    dataset: DataSet,
) -> ConnectorError {
    match response.status {
        429 => ConnectorError::Throttled(graph_retry_after_ms(response)),
        400 if is_invalid_query(response) => Error::QueryRejected {
            dataset: dataset.name(),
            code: "InvalidQuery".into(),
            message: error_message(response),
        }
        .into(),
        403 => Error::ArmForbidden {
            what: format!("Resource Graph query `{}`", dataset.name()),
            code: error_codes(response)
                .into_iter()
                .next()
                .unwrap_or_else(|| "HTTP 403".into()),
            message: format!(
                "{}; the app needs the Reader role on subscription `{}`",
                error_message(response),
                config.subscription_id
            ),
        }
        .into(),
        _ => crate::arm::arm_error(
            response,
            config,
            &format!("Resource Graph query `{}`", dataset.name()),
        ),
    }
}

/// Resource Graph's quota reset (`x-ms-user-quota-resets-after: hh:mm:ss`), else the standard
/// retry headers.
fn graph_retry_after_ms(response: &Response) -> u32 {
    quota_resets_after_secs(response)
        .map(|s| {
            u32::try_from(s.saturating_mul(1000))
                .unwrap_or(u32::MAX)
                .max(1000)
        })
        .or_else(|| response.retry_after_ms())
        .unwrap_or(DEFAULT_RETRY_AFTER_MS)
}

/// Seconds until the caller's Resource Graph quota window resets
/// (`x-ms-user-quota-resets-after: hh:mm:ss`, whole seconds).
fn quota_resets_after_secs(response: &Response) -> Option<u64> {
    let parts: Vec<u64> = response
        .header("x-ms-user-quota-resets-after")?
        .trim()
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [h, m, s] => Some(h * 3600 + m * 60 + s),
        _ => None,
    }
}

/// What a Resource Graph answer says of the caller's quota: the queries left in the current
/// window (`x-ms-user-quota-remaining`) and the whole seconds until it resets.
pub(crate) fn graph_quota(response: &Response) -> Option<(u32, u64)> {
    let remaining = response
        .header("x-ms-user-quota-remaining")?
        .trim()
        .parse()
        .ok()?;
    Some((remaining, quota_resets_after_secs(response)?))
}

/// Tags and times a finding row tells about its image, kept for enrichment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageFacts {
    pub(crate) tags: Vec<String>,
    pub(crate) last_pushed_at: Option<String>,
    pub(crate) created_at: Option<String>,
    pub(crate) updated_at: Option<String>,
}

/// Where a row says its image is. The registry may be named only by its resource id, and the
/// repository only in a lossy form; the session resolves both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageLocation {
    pub(crate) registry_host: Option<String>,
    pub(crate) registry_id: Option<String>,
    pub(crate) repository: Option<String>,
    /// A repository name read back from a resource id, where `/` may have become `-`.
    pub(crate) repository_hint: Option<String>,
    pub(crate) digest: Option<String>,
}

impl ImageLocation {
    /// What the row lacks to name an image, as an [`Unusable`] reason; `None` when it names
    /// one (a digest, a registry and a repository, each perhaps only in a lossy form).
    pub(crate) fn missing(&self) -> Option<&'static str> {
        if self.digest.is_none() {
            Some("named no image digest")
        } else if self.registry_host.is_none() && self.registry_id.is_none() {
            Some("named no registry")
        } else if self.repository.is_none() && self.repository_hint.is_none() {
            Some("named no repository")
        } else {
            None
        }
    }
}

/// The findings of one open row, before their image is resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowFindings {
    /// The row's `id`.
    pub(crate) id: String,
    pub(crate) location: ImageLocation,
    pub(crate) facts: ImageFacts,
    /// Findings whose `image` and `raw` are still empty.
    pub(crate) findings: Vec<Finding>,
}

/// A row that could not be read as a finding or as a healthy resource: it may hold findings,
/// so it is counted, and the listing ends incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unusable {
    /// Why, after the rows' name: ``lacked `properties.status.code` ``.
    pub(crate) reason: &'static str,
    /// The row's `id` (else its `name`), to find it.
    pub(crate) example: String,
}

/// Parses one row (its JSON text): `Ok(None)` when it is not an open finding (`Healthy`,
/// `NotApplicable`).
pub(crate) fn parse_row(dataset: DataSet, row: &str) -> Result<Option<RowFindings>, Unusable> {
    let unusable = |reason, example: &str| Unusable {
        reason,
        example: example.to_owned(),
    };
    let n = match serde_json::from_str::<Value>(row) {
        Ok(value @ Value::Object(_)) => lenient::normalize(value),
        _ => return Err(unusable("were not JSON objects", row)),
    };
    let Some(id) = text(&n, &["id"]) else {
        let name = text(&n, &["name"]).unwrap_or_else(|| "(no `name` either)".into());
        return Err(unusable("lacked `id`", &name));
    };
    let Some(code) = text(&n, &["properties", "status", "code"]) else {
        return Err(unusable("lacked `properties.status.code`", &id));
    };
    if code.eq_ignore_ascii_case("healthy") || code.eq_ignore_ascii_case("notapplicable") {
        return Ok(None);
    }
    if !code.eq_ignore_ascii_case("unhealthy") {
        return Err(unusable(
            "had a `properties.status.code` other than Healthy, Unhealthy or NotApplicable",
            &format!("{id} ({code})"),
        ));
    }
    let mut found = match dataset {
        DataSet::Individual => individual(&n),
        DataSet::Mdvm => mdvm(&n),
        DataSet::Qualys => qualys(&n),
    };
    found.id = id;
    Ok(Some(found))
}

fn individual(n: &Value) -> RowFindings {
    let props = at(n, &["properties"]).unwrap_or(&Value::Null);
    let image = at(props, &["resourceadditionaldata"]).unwrap_or(&Value::Null);
    let details_id = text(props, &["resourcedetails", "id"]).unwrap_or_default();
    let row_id = text(n, &["id"]).unwrap_or_default();
    let location = ImageLocation {
        registry_host: text(image, &["registryhost"]),
        registry_id: registry_resource_id(&row_id).or_else(|| registry_resource_id(&details_id)),
        repository: first_text(
            image,
            &[
                &["repositorydetails", "repositoryname"],
                &["repositoryname"],
            ],
        ),
        repository_hint: between(&details_id, "/repositories-", "-images-"),
        digest: text(image, &["digest"]).or_else(|| digest_in(&details_id)),
    };
    let facts = ImageFacts {
        tags: texts(image, &["tags"]),
        last_pushed_at: first_text(
            image,
            &[
                &["repositorydetails", "lastpushedtoregistryutc"],
                &["lastpushedtoregistryutc"],
            ],
        ),
        ..ImageFacts::default()
    };

    let add = at(props, &["additionaldata"]).unwrap_or(&Value::Null);
    let package_name = text(add, &["softwarename"]);
    let versions = texts(add, &["detectedsoftwareversions"]);
    let version = (!versions.is_empty()).then(|| versions.join(", "));
    let row_severity = first_text(props, &[&["metadata", "severity"], &["status", "severity"]]);
    let remediation = first_text(
        props,
        &[&["metadata", "remediationdescription"], &["remediation"]],
    );
    let row_title = first_text(props, &[&["displayname"], &["metadata", "displayname"]]);
    let source_id = text(n, &["id"]);

    let cves = items(add, &["cvesdetails"]);
    let finding_for = |cve: &Value| {
        let vulnerability_id = text(cve, &["cveid"])
            .or_else(|| text(n, &["name"]))
            .unwrap_or_else(|| "unknown".into());
        let (cvss_score, cvss_vector) = cvss(at(cve, &["cvss"]));
        let fixed_version = text(cve, &["fixedversion"]).or_else(|| text(add, &["fixedversion"]));
        let fix_status = first_text(cve, &[&["fixstatus"]]).or_else(|| text(add, &["fixstatus"]));
        Finding {
            image: empty_image(),
            title: title(
                &vulnerability_id,
                package_name.as_deref(),
                row_title.as_deref(),
            ),
            description: first_text(cve, &[&["description"], &["extendeddescription"]])
                .or_else(|| text(props, &["metadata", "description"]))
                .unwrap_or_default(),
            severity: severity(&[text(cve, &["severity"]), row_severity.clone()]),
            cvss_score,
            cvss_vector,
            package: package_name.as_ref().map(|name| PackageInfo {
                name: name.clone(),
                version: version.clone(),
                fixed_version,
                fix_status: fix_status
                    .as_deref()
                    .map_or(FixStatus::Unknown, FixStatus::parse_lenient),
                kind: text(add, &["packagetype"]).map(|k| k.to_ascii_lowercase()),
                ecosystem: text(add, &["language"]).map(|l| l.to_ascii_lowercase()),
            }),
            remediation: remediation.clone(),
            evidence: Vec::new(),
            references: references(items(cve, &["references"])),
            published_at: text(cve, &["publisheddate"]),
            modified_at: text(cve, &["lastmodifieddate"]),
            exploitability: Exploitability {
                exploit_published: flag(cve, &["exploitabilitydetails", "exploitstepspublished"]),
                exploit_verified: flag(cve, &["exploitabilitydetails", "exploitstepsverified"]),
                in_exploit_kit: flag(cve, &["exploitabilitydetails", "isinexploitkit"]),
                types: exploit_types(cve, &["exploitabilitydetails", "types"]),
            },
            weaknesses: weaknesses(at(cve, &["weaknesses"])),
            vulnerability_id,
            source_id: source_id.clone(),
            raw: String::new(),
        }
    };
    let findings = if cves.is_empty() {
        vec![finding_for(&Value::Null)]
    } else {
        cves.iter().map(finding_for).collect()
    };
    RowFindings {
        id: String::new(),
        location,
        facts,
        findings,
    }
}

fn mdvm(n: &Value) -> RowFindings {
    let props = at(n, &["properties"]).unwrap_or(&Value::Null);
    let add = at(props, &["additionaldata"]).unwrap_or(&Value::Null);
    let vuln = at(add, &["vulnerabilitydetails"]).unwrap_or(&Value::Null);
    let artifact = at(add, &["artifactdetails"]).unwrap_or(&Value::Null);
    let software = at(add, &["softwaredetails"]).unwrap_or(&Value::Null);
    let details_id = text(props, &["resourcedetails", "id"]).unwrap_or_default();
    let row_id = text(n, &["id"]).unwrap_or_default();

    let location = ImageLocation {
        registry_host: text(artifact, &["registryhost"]),
        registry_id: registry_resource_id(&row_id),
        repository: text(artifact, &["repositoryname"])
            .or_else(|| between(&details_id, "/repositories/", "/images/")),
        repository_hint: None,
        digest: text(artifact, &["digest"]).or_else(|| digest_in(&details_id)),
    };
    let facts = ImageFacts {
        tags: texts(artifact, &["tags"]),
        last_pushed_at: text(artifact, &["lastpushedtoregistryutc"]),
        ..ImageFacts::default()
    };

    let vulnerability_id = first_text(vuln, &[&["cveid"]])
        .or_else(|| text(props, &["id"]))
        .or_else(|| text(n, &["name"]))
        .unwrap_or_else(|| "unknown".into());
    let (mut cvss_score, cvss_vector) = cvss(at(vuln, &["cvss"]));
    if cvss_score.is_none() {
        cvss_score = number(add, &["cvssv30score"]);
    }
    let package_name = text(software, &["packagename"]);
    let language = text(software, &["language"]).filter(|l| l != "*");
    let mut refs = references(items(vuln, &["references"]));
    if let Some(url) = text(software, &["fixreference", "url"]) {
        refs.push(Reference {
            title: text(software, &["fixreference", "id"]).unwrap_or_else(|| "Fix".into()),
            url,
        });
    }
    let finding = Finding {
        image: empty_image(),
        title: title(
            &vulnerability_id,
            package_name.as_deref(),
            text(props, &["displayname"]).as_deref(),
        ),
        description: text(props, &["description"]).unwrap_or_default(),
        severity: severity(&[
            text(vuln, &["severity"]),
            text(props, &["status", "severity"]),
        ]),
        cvss_score,
        cvss_vector,
        package: package_name.map(|name| PackageInfo {
            name,
            version: text(software, &["version"]),
            fixed_version: text(software, &["fixedversion"]),
            fix_status: text(software, &["fixstatus"])
                .as_deref()
                .map_or(FixStatus::Unknown, FixStatus::parse_lenient),
            kind: text(software, &["category"]).map(|k| k.to_ascii_lowercase()),
            ecosystem: language
                .or_else(|| text(software, &["osdetails", "osversion"]))
                .map(|e| e.to_ascii_lowercase()),
        }),
        remediation: text(props, &["remediation"]),
        evidence: texts(software, &["evidence"]),
        references: refs,
        published_at: text(vuln, &["publisheddate"]),
        modified_at: text(vuln, &["lastmodifieddate"]),
        exploitability: Exploitability {
            exploit_published: flag(vuln, &["exploitabilityassessment", "exploitstepspublished"]),
            exploit_verified: flag(vuln, &["exploitabilityassessment", "exploitstepsverified"]),
            in_exploit_kit: flag(vuln, &["exploitabilityassessment", "isinexploitkit"]),
            types: exploit_types(vuln, &["exploitabilityassessment", "types"]),
        },
        weaknesses: weaknesses(at(vuln, &["weaknesses"])),
        vulnerability_id,
        source_id: text(n, &["id"]),
        raw: String::new(),
    };
    RowFindings {
        id: String::new(),
        location,
        facts,
        findings: vec![finding],
    }
}

fn qualys(n: &Value) -> RowFindings {
    let props = at(n, &["properties"]).unwrap_or(&Value::Null);
    let add = at(props, &["additionaldata"]).unwrap_or(&Value::Null);
    let details_id = text(props, &["resourcedetails", "id"]).unwrap_or_default();
    let row_id = text(n, &["id"]).unwrap_or_default();
    let location = ImageLocation {
        registry_host: text(add, &["registryhost"]),
        registry_id: registry_resource_id(&row_id).or_else(|| registry_resource_id(&details_id)),
        repository: text(add, &["repositoryname"])
            .or_else(|| between(&details_id, "/repository/", "/imageDigest/")),
        repository_hint: None,
        digest: text(add, &["imagedigest"]).or_else(|| between(&details_id, "/imageDigest/", "/")),
    };
    let facts = ImageFacts {
        tags: texts(add, &["imagetags"]),
        ..ImageFacts::default()
    };

    let cve_ids: Vec<String> = items(add, &["cve"])
        .iter()
        .filter_map(|c| text(c, &["title"]).or_else(|| as_text(c)))
        .collect();
    let mut refs = references(items(add, &["cve"]));
    refs.extend(references(items(add, &["vendorreferences"])));
    if let Some(url) = text(add, &["remediationlink"]) {
        refs.push(Reference {
            title: "Remediation".into(),
            url,
        });
    }
    let (cvss_score, cvss_vector) = cvss(at(add, &["cvss"]));
    let qid = text(props, &["id"]).map(|id| format!("QID-{id}"));
    let ids = if cve_ids.is_empty() {
        vec![
            qid.clone()
                .or_else(|| text(n, &["name"]))
                .unwrap_or_else(|| "unknown".into()),
        ]
    } else {
        cve_ids
    };
    let display_name = text(props, &["displayname"]);
    let findings = ids
        .into_iter()
        .map(|vulnerability_id| Finding {
            image: empty_image(),
            title: display_name
                .clone()
                .unwrap_or_else(|| vulnerability_id.clone()),
            description: text(props, &["description"]).unwrap_or_default(),
            severity: severity(&[text(props, &["status", "severity"])]),
            cvss_score,
            cvss_vector: cvss_vector.clone(),
            package: None,
            remediation: text(props, &["remediation"]),
            evidence: Vec::new(),
            references: refs.clone(),
            published_at: text(add, &["publishedtime"]),
            modified_at: None,
            exploitability: Exploitability {
                exploit_published: false,
                exploit_verified: false,
                in_exploit_kit: false,
                types: Vec::new(),
            },
            weaknesses: Vec::new(),
            source_id: text(n, &["id"]).or_else(|| qid.clone()),
            raw: String::new(),
            vulnerability_id,
        })
        .collect();
    // Qualys names no package, so `patchable` has no record to go in; it stays in `raw`.
    RowFindings {
        id: String::new(),
        location,
        facts,
        findings,
    }
}

fn empty_image() -> ImageRef {
    ImageRef {
        registry: String::new(),
        repository: String::new(),
        digest: String::new(),
    }
}

fn title(vulnerability_id: &str, package: Option<&str>, fallback: Option<&str>) -> String {
    match (package, fallback) {
        (Some(package), _) => format!("{vulnerability_id} in {package}"),
        (None, Some(fallback)) if fallback != vulnerability_id => {
            format!("{vulnerability_id}: {fallback}")
        }
        _ => vulnerability_id.to_owned(),
    }
}

/// The first severity that says something.
fn severity(words: &[Option<String>]) -> Severity {
    words
        .iter()
        .flatten()
        .map(|w| Severity::parse_lenient(w))
        .find(|s| *s != Severity::Unknown)
        .unwrap_or(Severity::Unknown)
}

/// The score and vector of the newest CVSS version given, from either shape Defender uses:
/// `{"3.0": {"base", "cvssVectorString"}}` or `[{"Key": "3.1", "Value": {"Base", …}}]`.
fn cvss(value: Option<&Value>) -> (Option<f64>, Option<String>) {
    let entries: Vec<(f64, &Value)> = match value {
        Some(Value::Object(map)) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.parse().unwrap_or(0.0), v))
            .collect(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|item| {
                let version = text(item, &["key"])
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(0.0);
                at(item, &["value"]).map(|v| (version, v))
            })
            .collect(),
        _ => Vec::new(),
    };
    entries
        .into_iter()
        .filter(|(_, v)| number(v, &["base"]).is_some())
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or((None, None), |(_, v)| {
            (
                number(v, &["base"]),
                first_text(v, &[&["cvssvectorstring"], &["vector"]]),
            )
        })
}

fn references(list: &[Value]) -> Vec<Reference> {
    list.iter()
        .filter_map(|r| {
            let url = first_text(r, &[&["link"], &["url"], &["href"]])?;
            Some(Reference {
                title: text(r, &["title"]).unwrap_or_else(|| url.clone()),
                url,
            })
        })
        .collect()
}

/// CWE ids from a list of strings, `{"id"}` objects, or `{"cwe": [...]}`.
fn weaknesses(value: Option<&Value>) -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            Value::Object(map) => match map.get("id").and_then(as_text) {
                Some(id) => out.push(id),
                None => map.values().for_each(|v| collect(v, out)),
            },
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(value) = value {
        collect(value, &mut out);
    }
    out.dedup();
    out
}

fn exploit_types(value: &Value, path: &[&str]) -> Vec<String> {
    texts(value, path)
        .into_iter()
        .filter(|t| !t.eq_ignore_ascii_case("NotAvailable"))
        .collect()
}

/// The text between `start` and the next `end` after it.
fn between(haystack: &str, start: &str, end: &str) -> Option<String> {
    let from = haystack.find(start)? + start.len();
    let rest = &haystack[from..];
    let to = rest.find(end).unwrap_or(rest.len());
    let found = &rest[..to];
    (!found.is_empty()).then(|| found.to_owned())
}

/// A `sha256:<64 hex>` digest anywhere in `text`.
fn digest_in(text: &str) -> Option<String> {
    let start = text.find("sha256:")?;
    let hex: String = text[start + 7..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (hex.len() == 64).then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// A digest as registries write it: lowercase, `sha256:` added to bare hex.
pub(crate) fn normalize_digest(digest: &str) -> String {
    let digest = digest.trim().to_ascii_lowercase();
    if digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()) {
        format!("sha256:{digest}")
    } else {
        digest
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::Settings;
    use serde_json::json;

    use super::*;
    use crate::testdata;

    /// A row that must be usable: its findings, or `None` when it is not open.
    fn open_row(dataset: DataSet, row: &str) -> Option<RowFindings> {
        parse_row(dataset, row).unwrap_or_else(|u| panic!("unusable row: {u:?}"))
    }

    fn ids(findings: &[Finding]) -> Vec<&str> {
        findings
            .iter()
            .map(|f| f.vulnerability_id.as_str())
            .collect()
    }

    #[test]
    fn queries_are_the_shared_contract() {
        assert!(INDIVIDUAL_QUERY.starts_with(
            "securityresources\n| where type == \"microsoft.security/assessments\"\n"
        ));
        assert!(
            INDIVIDUAL_QUERY.contains("SoftwareUpdate")
                && INDIVIDUAL_QUERY.contains(".containerimage")
        );
        assert!(MDVM_QUERY.contains("c0b7cfc6-3172-465a-b378-53c7ff2cc0d5"));
        assert!(QUALYS_QUERY.contains("dbd0cb49-b563-45e7-9724-889e799fa648"));
        assert_eq!(
            MDVM_QUERY.replace(
                "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5",
                "dbd0cb49-b563-45e7-9724-889e799fa648"
            ),
            QUALYS_QUERY
        );
        for q in [INDIVIDUAL_QUERY, MDVM_QUERY, QUALYS_QUERY] {
            assert!(q.ends_with("| project id, name, type, subscriptionId, resourceGroup, properties\n| order by id asc"));
            assert_eq!(q.lines().count(), if q == INDIVIDUAL_QUERY { 7 } else { 6 });
            assert!(!q.contains('\r'));
        }
    }

    #[test]
    fn query_bodies_match_the_documented_shape() {
        let first = serde_json::to_value(query_body("sub", "q", 1000, None)).unwrap();
        assert_eq!(
            first,
            json!({"subscriptions": ["sub"], "query": "q", "options": {"$top": 1000, "resultFormat": "objectArray"}})
        );
        let next = serde_json::to_value(query_body("sub", "q", 1000, Some("tok"))).unwrap();
        assert_eq!(
            next["options"],
            json!({"$skipToken": "tok", "$top": 1000, "resultFormat": "objectArray"})
        );
        let text = serde_json::to_string(&query_body("sub", "q", 1000, None)).unwrap();
        assert!(
            text.starts_with(
                "{\"subscriptions\":[\"sub\"],\"query\":\"q\",\"options\":{\"$top\":1000"
            ),
            "{text}"
        );
    }

    #[test]
    fn sources_choose_data_sets_in_order() {
        assert_eq!(
            DataSet::for_source(FindingsSource::Auto),
            [DataSet::Individual, DataSet::Mdvm, DataSet::Qualys]
        );
        assert_eq!(
            DataSet::for_source(FindingsSource::Qualys),
            [DataSet::Qualys]
        );
        assert!(DataSet::Mdvm.is_legacy() && !DataSet::Individual.is_legacy());
    }

    fn response(status: u16, body: &Value) -> Response {
        Response::new(
            "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
            status,
            &[],
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn graph_pages_from_the_samples_parse() {
        let first = testdata::sample("arg-ResourcesFirstPageQuery-2024-04-01.json");
        let page = parse_graph_page(
            &response(200, &first["responses"]["200"]["body"]),
            DataSet::Mdvm,
        )
        .unwrap();
        assert_eq!(page.rows.len(), 3);
        assert_eq!(
            page.skip_token.as_deref(),
            Some("eyAibm8iOiAibHVjayIsICJidXQiOiAibmljZSIsICJ0cnkiOiAiISIgfQ==")
        );
        let basic = testdata::sample("arg-ResourcesBasicQuery-2021-03-01.json");
        let page = parse_graph_page(
            &response(200, &basic["responses"]["200"]["body"]),
            DataSet::Mdvm,
        )
        .unwrap();
        assert_eq!((page.rows.len(), page.skip_token), (3, None));
    }

    #[test]
    fn graph_rows_are_kept_as_sent() {
        let body = br#"{"Data": [ {"id": "a",  "n": "\u00e9"}, {"id":"b"} ], "$SkipToken": null}"#;
        let page =
            parse_graph_page(&Response::new("https://m/x", 200, &[], body), DataSet::Mdvm).unwrap();
        assert_eq!(
            page.rows,
            [
                r#"{"id": "a",  "n": "\u00e9"}"#.into(),
                r#"{"id":"b"}"#.into()
            ]
        );
        assert_eq!(page.skip_token, None);
        for (body, detail) in [
            (&b"[1]"[..], "not an object"),
            (br#"{"data": 5}"#, "neither a list nor a table"),
        ] {
            let err =
                parse_graph_page(&Response::new("https://m/x", 200, &[], body), DataSet::Mdvm)
                    .unwrap_err();
            assert!(err.message().unwrap().contains(detail), "{err:?}");
        }
        let err = parse_graph_page(
            &Response::new("https://m/x", 200, &[], b"<html>"),
            DataSet::Mdvm,
        )
        .unwrap_err();
        assert_eq!(err.kind(), "unavailable");
    }

    #[test]
    fn graph_table_format_and_truncation() {
        let table = json!({"data": {"columns": [{"name": "id", "type": "string"}, {"name": "n", "type": "integer"}], "rows": [["a", 1], ["b", 2]]}});
        let page = parse_graph_page(&response(200, &table), DataSet::Individual).unwrap();
        let rows: Vec<Value> = page
            .rows
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        assert_eq!(
            rows,
            [json!({"id": "a", "n": 1}), json!({"id": "b", "n": 2})]
        );
        let truncated = json!({"resultTruncated": "true", "data": []});
        let err = parse_graph_page(&response(200, &truncated), DataSet::Qualys).unwrap_err();
        assert_eq!(err.kind(), "unavailable");
        assert!(err.message().unwrap().contains("`qualys`"));
        let empty = parse_graph_page(
            &response(200, &json!({"count": 0, "data": []})),
            DataSet::Individual,
        )
        .unwrap();
        assert!(empty.rows.is_empty());
    }

    #[test]
    fn a_graph_page_without_data_is_malformed_naming_the_field() {
        for (body, detail) in [
            (
                json!({"totalRecords": 0, "count": 0, "data": null}),
                "`data` is null",
            ),
            (json!({"totalRecords": 0, "count": 0}), "`data` is missing"),
            (json!({"count": "many", "data": []}), "`count`"),
            (json!({"totalRecords": [], "data": []}), "`totalRecords`"),
        ] {
            let err = parse_graph_page(&response(200, &body), DataSet::Mdvm).unwrap_err();
            assert_eq!(err.kind(), "unavailable", "{body}");
            assert!(err.message().unwrap().contains(detail), "{body}: {err:?}");
        }
    }

    #[test]
    fn counts_that_contradict_the_rows_are_problems() {
        let page = |body: Value| parse_graph_page(&response(200, &body), DataSet::Mdvm).unwrap();
        let two = json!([{"id": "a"}, {"id": "b"}]);

        let honest = page(json!({"totalRecords": 5, "count": 2, "data": two, "$skipToken": "t"}));
        assert_eq!(honest.check_counts(DataSet::Mdvm, 0), CountCheck::default());
        let last = page(json!({"totalRecords": 5, "count": 2, "data": two}));
        assert_eq!(last.check_counts(DataSet::Mdvm, 3), CountCheck::default());

        let lying_count = page(json!({"totalRecords": 2, "count": 3, "data": two}));
        let check = lying_count.check_counts(DataSet::Mdvm, 0);
        assert!(!check.stop);
        assert_eq!(check.problems.len(), 1, "{check:?}");
        assert!(
            check.problems[0].1.contains("`count` 3, 2 rows"),
            "{check:?}"
        );

        let beyond = page(json!({"totalRecords": 3, "count": 2, "data": two, "$skipToken": "t"}));
        let check = beyond.check_counts(DataSet::Mdvm, 2);
        assert!(check.stop, "more rows than promised stops the listing");
        assert!(check.problems[0].0.contains("more rows"), "{check:?}");

        let short = page(json!({"totalRecords": 9, "count": 2, "data": two}));
        let check = short.check_counts(DataSet::Mdvm, 2);
        assert!(!check.stop);
        assert!(check.problems[0].0.contains("fewer rows"), "{check:?}");

        let uncounted = page(json!({"data": two}));
        assert_eq!(
            uncounted.check_counts(DataSet::Mdvm, 0),
            CountCheck::default()
        );
    }

    #[test]
    fn rows_that_cannot_be_read_are_unusable_with_a_reason_and_an_example() {
        let reason = |row: &str| parse_row(DataSet::Individual, row).unwrap_err();
        let no_status = reason(r#"{"id": "/sub/x", "properties": {}}"#);
        assert_eq!(no_status.reason, "lacked `properties.status.code`");
        assert_eq!(no_status.example, "/sub/x");
        let no_id = reason(r#"{"name": "n1", "properties": {"status": {"code": "Unhealthy"}}}"#);
        assert_eq!(
            (no_id.reason, no_id.example.as_str()),
            ("lacked `id`", "n1")
        );
        assert_eq!(reason("[1]").reason, "were not JSON objects");
        let odd = reason(r#"{"id": "/sub/y", "properties": {"status": {"code": "Pending"}}}"#);
        assert!(odd.example.contains("Pending"), "{odd:?}");
        let healthy = r#"{"id": "/sub/z", "properties": {"status": {"code": "healthy"}}}"#;
        assert!(parse_row(DataSet::Individual, healthy).unwrap().is_none());
    }

    fn config() -> Config {
        Config::from_settings(&Settings::from_pairs(&[
            ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", "CANARY-secret"),
            ("subscription_id", "00000000-0000-0000-0000-000000000000"),
        ]))
        .unwrap()
    }

    #[test]
    fn graph_errors_are_typed() {
        let invalid = response(
            400,
            &json!({"error": {"code": "BadRequest", "message": "Please provide below info", "details": [{"code": "InvalidQuery", "message": "Query is invalid."}]}}),
        );
        assert!(is_invalid_query(&invalid));
        let err = graph_error(&invalid, &config(), DataSet::Mdvm);
        assert_eq!(err.kind(), "invalid-config");
        assert!(err.message().unwrap().contains("`findings_source`"));

        let throttled = Response::new(
            "https://m/x",
            429,
            &[("x-ms-user-quota-resets-after", "00:00:03")],
            br#"{"error":{"code":"RateLimiting"}}"#,
        );
        assert_eq!(
            graph_error(&throttled, &config(), DataSet::Individual),
            ConnectorError::Throttled(3000)
        );
        let forbidden = response(
            403,
            &json!({"error": {"code": "AuthorizationFailed", "message": "no"}}),
        );
        assert_eq!(
            graph_error(&forbidden, &config(), DataSet::Individual).kind(),
            "permission-denied"
        );
        assert_eq!(
            graph_error(&response(502, &json!({})), &config(), DataSet::Individual).kind(),
            "unavailable"
        );
        assert!(!is_invalid_query(&response(
            400,
            &json!({"error": {"code": "BadRequest"}})
        )));
    }

    #[test]
    fn mdvm_sample_row_parses_every_field() {
        let sample = testdata::sample("defender-mdvm-subassessment-arg-row-azure.json");
        let mut row = sample[0].clone();
        // The published row is exempt; the same row open must give a finding.
        assert_eq!(open_row(DataSet::Mdvm, &row.to_string()), None);
        row["properties"]["status"]["code"] = json!("Unhealthy");
        let parsed = open_row(DataSet::Mdvm, &row.to_string()).unwrap();
        assert_eq!(
            parsed.location.registry_host.as_deref(),
            Some("ptebic.azurecr.io")
        );
        assert_eq!(
            parsed.location.repository.as_deref(),
            Some("public/azureml/aifx/stable-ubuntu2004-cu117-py39-torch200")
        );
        assert_eq!(
            parsed.location.digest.as_deref(),
            Some("sha256:4af8e6f002401a965bbe753a381af308b40d8947fad2b9e1f6a369aa81abee59")
        );
        assert_eq!(parsed.facts.tags, vec!["biweekly.202309.1".to_owned()]);
        assert_eq!(
            parsed.facts.last_pushed_at.as_deref(),
            Some("2023-09-04T16:05:32.8223098Z")
        );
        let f = &parsed.findings[0];
        assert_eq!(f.vulnerability_id, "CVE-2022-42969");
        assert_eq!(f.title, "CVE-2022-42969 in py");
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.cvss_score, Some(7.5));
        assert_eq!(
            f.cvss_vector.as_deref(),
            Some("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H")
        );
        let p = f.package.as_ref().unwrap();
        assert_eq!(
            (
                p.name.as_str(),
                p.version.as_deref(),
                p.fixed_version.as_deref()
            ),
            ("py", Some("1.11.0.0"), None)
        );
        assert_eq!(p.fix_status, FixStatus::FixAvailable);
        assert_eq!(
            (p.kind.as_deref(), p.ecosystem.as_deref()),
            (Some("language"), Some("python"))
        );
        assert_eq!(f.remediation.as_deref(), Some("No remediation exists"));
        assert_eq!(f.references.len(), 4);
        assert_eq!(
            f.references[0].url,
            "https://nvd.nist.gov/vuln/detail/CVE-2022-42969"
        );
        assert_eq!(f.weaknesses, vec!["CWE-1333".to_owned()]);
        assert_eq!(f.exploitability.types, vec!["Remote".to_owned()]);
        assert!(!f.exploitability.exploit_published);
        assert_eq!(f.published_at.as_deref(), Some("2022-10-16T06:15:00Z"));
        assert_eq!(f.modified_at.as_deref(), Some("2023-09-12T00:00:00Z"));
        assert!(f.description.starts_with("This vulnerability affects"));
        assert!(
            f.source_id
                .as_deref()
                .unwrap()
                .ends_with("/subassessments/{SubAssessmentId}")
        );
        assert!(
            f.raw.is_empty(),
            "the session writes the row once for all its findings"
        );
    }

    #[test]
    fn mdvm_critical_and_os_packages() {
        let sample = testdata::sample("defender-mdvm-subassessment-arg-row-azure.json");
        let mut row = sample[0].clone();
        row["properties"]["status"] = json!({"code": "unhealthy", "severity": "High"});
        row["properties"]["additionalData"]["vulnerabilityDetails"]["severity"] = json!("Critical");
        row["properties"]["additionalData"]["softwareDetails"]["language"] = json!("*");
        row["properties"]["additionalData"]["softwareDetails"]["category"] = json!("OS");
        let f = &open_row(DataSet::Mdvm, &row.to_string()).unwrap().findings[0];
        assert_eq!(f.severity, Severity::Critical);
        let p = f.package.as_ref().unwrap();
        assert_eq!(
            (p.kind.as_deref(), p.ecosystem.as_deref()),
            (Some("os"), Some("ubuntu_linux_20.04"))
        );
    }

    #[test]
    fn individual_rows_give_one_finding_per_cve_and_only_when_unhealthy() {
        let sample = testdata::sample("individual-recommendations-arg-response.json");
        let page = parse_graph_page(&response(200, &sample), DataSet::Individual).unwrap();
        let parsed: Vec<RowFindings> = page
            .rows
            .iter()
            .filter_map(|r| open_row(DataSet::Individual, r))
            .collect();
        assert_eq!(
            parsed.len(),
            2,
            "Healthy and NotApplicable rows are dropped"
        );

        let first = &parsed[0];
        assert_eq!(
            first.location.registry_host.as_deref(),
            Some("contosoapps.azurecr.io")
        );
        assert_eq!(first.location.repository.as_deref(), Some("team/api"));
        assert_eq!(
            first.location.digest.as_deref(),
            Some(format!("sha256:{}", "3c".repeat(32)).as_str())
        );
        assert_eq!(
            first.facts.tags,
            vec!["1.4.2".to_owned(), "latest".to_owned()]
        );
        assert_eq!(
            first.facts.last_pushed_at.as_deref(),
            Some("2026-08-02T10:15:00.1234567Z")
        );
        assert_eq!(ids(&first.findings), ["CVE-2024-5535", "CVE-2023-5678"]);

        let critical = &first.findings[0];
        assert_eq!(critical.severity, Severity::Critical);
        assert_eq!(
            critical.cvss_score,
            Some(9.1),
            "the newest CVSS version wins"
        );
        assert_eq!(
            critical.cvss_vector.as_deref(),
            Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H")
        );
        let p = critical.package.as_ref().unwrap();
        assert_eq!(p.name, "openssl");
        assert_eq!(p.version.as_deref(), Some("3.0.2-0ubuntu1.10"));
        assert_eq!(
            p.fixed_version.as_deref(),
            Some("3.0.2-0ubuntu1.16"),
            "the CVE's fix wins over the row's"
        );
        assert_eq!(p.kind.as_deref(), Some("os"));
        assert!(
            critical.exploitability.exploit_published && !critical.exploitability.in_exploit_kit
        );
        assert_eq!(critical.references.len(), 2);
        assert_eq!(critical.weaknesses, vec!["CWE-200".to_owned()]);
        assert_eq!(
            critical.remediation.as_deref(),
            Some("Update openssl to a fixed version and rebuild the image.")
        );
        assert_eq!(critical.title, "CVE-2024-5535 in openssl");

        let medium = &first.findings[1];
        assert_eq!(medium.severity, Severity::Medium);
        let p = medium.package.as_ref().unwrap();
        assert_eq!(p.fix_status, FixStatus::NoFixAvailable);
        assert_eq!(
            p.fixed_version.as_deref(),
            Some("3.0.2-0ubuntu1.15"),
            "an empty CVE fix falls back to the row's"
        );

        assert!(first.findings.iter().all(|f| f.raw.is_empty()));

        let second = &parsed[1].findings[0];
        assert_eq!(
            second.severity,
            Severity::Low,
            "an Unknown CVE severity falls back to the row's"
        );
        assert!(second.references.is_empty());
        let p = second.package.as_ref().unwrap();
        assert_eq!(p.version.as_deref(), Some("58.1.0, 59.0.0"));
        assert_eq!(p.ecosystem.as_deref(), Some("python"));
    }

    #[test]
    fn individual_rows_tolerate_casing_arrays_and_nulls() {
        let row = json!({
            "ID": "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/Reg1/providers/Microsoft.Security/assessments/x",
            "PROPERTIES": {
                "status": {"Code": "UNHEALTHY"},
                "metadata": {"Severity": "high"},
                "resourceDetails": {"id": format!("/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/Reg1/repositories-team-app-images-sha256:{}", "ab".repeat(32))},
                "resourceAdditionalData": null,
                "additionalData": {"softwareName": "zlib", "cvesDetails": [{"cveId": "CVE-2022-37434", "severity": null, "cvss": null, "references": null}], "unknownField": {"x": 1}}
            }
        });
        let parsed = open_row(DataSet::Individual, &row.to_string()).unwrap();
        assert_eq!(parsed.location.registry_host, None);
        assert_eq!(
            parsed.location.registry_id.as_deref(),
            Some(
                "/subscriptions/s/resourcegroups/g/providers/microsoft.containerregistry/registries/reg1"
            )
        );
        assert_eq!(parsed.location.repository, None);
        assert_eq!(parsed.location.repository_hint.as_deref(), Some("team-app"));
        assert_eq!(
            parsed.location.digest,
            Some(format!("sha256:{}", "ab".repeat(32)))
        );
        let f = &parsed.findings[0];
        assert_eq!(f.vulnerability_id, "CVE-2022-37434");
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.cvss_score, None);
    }

    #[test]
    fn qualys_sample_rows_parse() {
        let sample =
            testdata::sample("security-ListSubscriptionSubAssessments-2019-01-01-preview.json");
        let row = &sample["responses"]["200"]["body"]["value"][0];
        let parsed = open_row(DataSet::Qualys, &row.to_string()).unwrap();
        assert_eq!(parsed.location.repository.as_deref(), Some("myRepo"));
        assert_eq!(
            parsed.location.digest.as_deref(),
            Some("c186fc44-3154-4ce2-ba18-b719d895c3b0")
        );
        assert_eq!(
            parsed.location.registry_id.as_deref(),
            Some(
                "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourcegroups/myrg/providers/microsoft.containerregistry/registries/myregistry"
            )
        );
        let f = &parsed.findings[0];
        assert_eq!(f.vulnerability_id, "CVE-2019-12345");
        assert_eq!(f.title, "'Back Orifice' Backdoor");
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.cvss_score, Some(10.0));
        assert_eq!(
            f.published_at.as_deref(),
            Some("2018-01-01T00:00:00.0000000Z")
        );
        assert!(f.references.iter().any(|r| r.title == "Reference_1"));
        assert!(
            f.remediation
                .as_deref()
                .unwrap()
                .starts_with("Use a recent anti-virus")
        );

        let get = testdata::sample("security-GetSubAssessment-2019-01-01-preview.json");
        let row = &get["responses"]["200"]["body"];
        let parsed = open_row(DataSet::Qualys, &row.to_string()).unwrap();
        assert!(
            parsed.findings[0]
                .references
                .iter()
                .any(|r| r.title == "Remediation")
        );
    }

    #[test]
    fn qualys_rows_list_each_cve_or_fall_back_to_the_qid() {
        let sample =
            testdata::sample("security-ListSubscriptionSubAssessments-2019-01-01-preview.json");
        let mut row = sample["responses"]["200"]["body"]["value"][0].clone();
        row["properties"]["additionalData"]["cve"] = json!([{"title": "CVE-1", "link": "https://a"}, {"title": "CVE-2", "link": "https://b"}]);
        row["properties"]["status"]["severity"] = json!("Critical");
        let parsed = open_row(DataSet::Qualys, &row.to_string()).unwrap();
        assert_eq!(ids(&parsed.findings), ["CVE-1", "CVE-2"]);
        assert!(
            parsed
                .findings
                .iter()
                .all(|f| f.severity == Severity::Critical)
        );
        row["properties"]["additionalData"]["cve"] = Value::Null;
        assert_eq!(
            ids(&open_row(DataSet::Qualys, &row.to_string())
                .unwrap()
                .findings),
            ["QID-1001"]
        );
        row["properties"]["status"]["code"] = json!("Healthy");
        assert!(open_row(DataSet::Qualys, &row.to_string()).is_none());
    }

    #[test]
    fn digests_are_normalised() {
        let hex = "AB".repeat(32);
        assert_eq!(
            normalize_digest(&hex),
            format!("sha256:{}", "ab".repeat(32))
        );
        assert_eq!(normalize_digest(" sha256:AA "), "sha256:aa");
        assert_eq!(digest_in("x/images/sha256:zz"), None);
    }
}
