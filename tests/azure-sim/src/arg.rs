//! Azure Resource Graph: `POST /providers/Microsoft.ResourceGraph/resources`.
//!
//! KQL cannot be run here, so the documented Defender queries are recognised by their markers
//! and anything else gets the real 400 `InvalidQuery` envelope. Rows are produced lazily, in id
//! order, from a cursor carried in `$skipToken`. The `arg-*` and `totals-mismatch` anomalies
//! ([`Anomaly`]) change the answer to a valid query.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::anomaly::{self, Anomaly};
use crate::arm;
use crate::server::{self, Principal, Req, Resp, Sim};
use crate::tenant::{
    BaseStatus, DataSet, Image, ImageKey, Overlay, PackageFinding, Registry, Tenant,
};
use crate::throttle::{Verdict, ceil_secs};
use crate::util::{self, hash, hash_bytes, hms, request_guid, rfc3339, rfc3339_7};
use crate::vulns::{self, PACKAGES, PackageKind};

const API_VERSIONS: &[&str] = &[
    "2018-09-01-preview",
    "2019-04-01",
    "2020-04-01-preview",
    "2021-03-01",
    "2021-06-01-preview",
    "2022-10-01",
    "2024-04-01",
];

pub(crate) const MDVM_KEY: &str = "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5";
pub(crate) const QUALYS_KEY: &str = "dbd0cb49-b563-45e7-9724-889e799fa648";

/// A recognised query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) data_set: DataSet,
    /// The final `project` list; `None` returns whole rows.
    pub(crate) columns: Option<Vec<String>>,
}

const KNOWN_COLUMNS: &[(&str, &str)] = &[
    ("id", "string"),
    ("name", "string"),
    ("type", "string"),
    ("tenantId", "string"),
    ("kind", "string"),
    ("location", "string"),
    ("resourceGroup", "string"),
    ("subscriptionId", "string"),
    ("managedBy", "string"),
    ("sku", "object"),
    ("plan", "object"),
    ("properties", "object"),
    ("tags", "object"),
    ("identity", "object"),
    ("zones", "object"),
    ("extendedLocation", "object"),
    ("assessmentKey", "string"),
    ("timeGenerated", "datetime"),
];

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| {
            if c == '\'' {
                '"'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Recognises the Defender queries of the connector contract; `None` means InvalidQuery.
pub(crate) fn parse_query(q: &str) -> Option<Query> {
    let segments: Vec<&str> = q.split('|').map(str::trim).collect();
    if squash(segments.first()?) != "securityresources" {
        return None;
    }
    let mut individual_markers = 0;
    let mut sub_type = false;
    let mut key: Option<DataSet> = None;
    let mut columns = None;
    for seg in &segments[1..] {
        let s = squash(seg);
        if let Some(cond) = s.strip_prefix("where") {
            for part in cond.split("and") {
                match part {
                    "type==\"microsoft.security/assessments\""
                    | "type=~\"microsoft.security/assessments\""
                    | "properties.metadata.recommendationcategory==\"softwareupdate\""
                    | "properties.resourcedetails.resourcetype==\".containerimage\""
                    | "properties.resourcedetails.source==\"azure\"" => individual_markers += 1,
                    "type==\"microsoft.security/assessments/subassessments\""
                    | "type=~\"microsoft.security/assessments/subassessments\"" => sub_type = true,
                    "properties.additionaldata.assessedresourcetype==\"azurecontainerregistryvulnerability\""
                    | "properties.additionaldata.assessedresourcetype==\"containerregistryvulnerability\"" =>
                        {}
                    p if p == format!("assessmentkey==\"{MDVM_KEY}\"") => key = Some(DataSet::Mdvm),
                    p if p == format!("assessmentkey==\"{QUALYS_KEY}\"") => {
                        key = Some(DataSet::Qualys);
                    }
                    _ => return None,
                }
            }
        } else if s.starts_with("extendassessmentkey=extract(") {
            if !s.contains("providers/microsoft.security/assessments/") {
                return None;
            }
        } else if let Some(rest) = seg.strip_prefix("project ") {
            let cols: Vec<String> = rest.split(',').map(|c| c.trim().to_owned()).collect();
            if cols
                .iter()
                .any(|c| !KNOWN_COLUMNS.iter().any(|(k, _)| k == c))
            {
                return None;
            }
            columns = Some(cols);
        } else if matches!(
            s.as_str(),
            "orderbyidasc" | "orderbyid" | "sortbyidasc" | "sortbyid"
        ) {
        } else {
            return None;
        }
    }
    let data_set = if sub_type {
        key?
    } else if individual_markers == 4 && key.is_none() {
        DataSet::Individual
    } else {
        return None;
    };
    Some(Query { data_set, columns })
}

/// The position of the next row: registry (index into the scoped list), repository, slot, row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pos {
    g: usize,
    p: usize,
    s: u32,
    w: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct SkipToken {
    q: String,
    #[serde(flatten)]
    pos: Pos,
}

/// One row reference inside an image.
#[derive(Clone, Copy, Debug)]
struct RowRef {
    pkg: usize,
    cve: Option<usize>,
}

fn row_refs(data_set: DataSet, pkgs: &[PackageFinding]) -> Vec<RowRef> {
    match data_set {
        DataSet::Individual => (0..pkgs.len())
            .map(|pkg| RowRef { pkg, cve: None })
            .collect(),
        DataSet::Mdvm | DataSet::Qualys => pkgs
            .iter()
            .enumerate()
            .flat_map(|(pkg, p)| (0..p.cves.len()).map(move |c| RowRef { pkg, cve: Some(c) }))
            .collect(),
    }
}

/// Walks rows from `start`; `f` returns false to stop. Returns the position after the last row
/// visited by `f`.
fn walk(
    t: &Tenant,
    ov: &Overlay,
    regs: &[usize],
    data_set: DataSet,
    start: Pos,
    mut f: impl FnMut(Pos, usize, ImageKey, u32, &[PackageFinding], RowRef) -> bool,
) {
    for (g, &reg) in regs.iter().enumerate().skip(start.g) {
        let repos = t.registries[reg].repos.len();
        let p0 = if g == start.g { start.p } else { 0 };
        for p in p0..repos {
            let s0 = if g == start.g && p == start.p {
                start.s
            } else {
                0
            };
            for s in s0..t.slots(ov, reg, p) {
                let key = ImageKey {
                    reg: reg as u32,
                    repo: p as u32,
                    idx: s,
                };
                let Some(generation) = ov.generation(key) else {
                    continue;
                };
                let pkgs = t.packages_of(ov, key, generation);
                if pkgs.is_empty() {
                    continue;
                }
                let refs = row_refs(data_set, &pkgs);
                let w0 = if g == start.g && p == start.p && s == start.s {
                    start.w
                } else {
                    0
                };
                for (w, rr) in refs.iter().enumerate().skip(w0 as usize) {
                    let pos = Pos {
                        g,
                        p,
                        s,
                        w: w as u32,
                    };
                    if !f(pos, reg, key, generation, &pkgs, *rr) {
                        return;
                    }
                }
            }
        }
    }
}

fn before(a: Pos, b: Pos) -> bool {
    (a.g, a.p, a.s, a.w) < (b.g, b.p, b.s, b.w)
}

/// How many rows of registry `regs[start.g]` come before `start`: the ordinal of the row at
/// `start` within its registry.
fn ordinal_at(t: &Tenant, ov: &Overlay, regs: &[usize], data_set: DataSet, start: Pos) -> u64 {
    let mut n = 0;
    let from = Pos {
        g: start.g,
        ..Pos::default()
    };
    walk(t, ov, regs, data_set, from, |pos, _, _, _, _, _| {
        if pos.g != start.g || !before(pos, start) {
            return false;
        }
        n += 1;
        true
    });
    n
}

/// Rows of the tenant's data set that `arg-missing-status` serves without `properties.status`.
pub(crate) fn rows_without_status(t: &Tenant, ov: &Overlay) -> u64 {
    let regs: Vec<usize> = (0..t.registries.len()).collect();
    let mut cur = (0, 0u64);
    let mut n = 0;
    walk(
        t,
        ov,
        &regs,
        t.data_set,
        Pos::default(),
        |pos, _, _, _, _, _| {
            let ordinal = if pos.g == cur.0 { cur.1 } else { 0 };
            cur = (pos.g, ordinal + 1);
            if anomaly::strips_status(ordinal) {
                n += 1;
            }
            true
        },
    );
    n
}

fn severity_of(p: &PackageFinding) -> vulns::Severity {
    p.cves
        .iter()
        .map(|c| c.cve.severity)
        .max()
        .unwrap_or(vulns::Severity::Low)
}

fn row_guid(seed: u64, key: ImageKey, generation: u32, pkg: usize, cve: Option<usize>) -> String {
    let h = hash(&[
        seed,
        u64::from(key.reg),
        u64::from(key.repo),
        u64::from(key.idx),
        u64::from(generation),
        pkg as u64,
        cve.map_or(999, |c| c as u64),
    ]);
    format!(
        "{:04x}{:04x}-{:04x}-{:04x}-{:02x}{:02x}-{:012x}",
        key.reg & 0xffff,
        key.repo & 0xffff,
        key.idx & 0xffff,
        generation & 0xffff,
        pkg & 0xff,
        cve.map_or(0, |c| c + 1) & 0xff,
        h & 0xffff_ffff_ffff
    )
}

fn language(p: &PackageFinding) -> Option<&'static str> {
    match p.kind() {
        PackageKind::Os => None,
        PackageKind::Language(l) => Some(l),
    }
}

fn top_level(
    t: &Tenant,
    reg: &Registry,
    id: String,
    name: String,
    kind: &str,
    properties: Value,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(id));
    m.insert("name".into(), Value::String(name));
    m.insert("type".into(), Value::String(kind.into()));
    m.insert("tenantId".into(), Value::String(t.tenant_id.clone()));
    m.insert("kind".into(), Value::String(String::new()));
    m.insert("location".into(), Value::String("global".into()));
    m.insert(
        "resourceGroup".into(),
        Value::String(reg.spec.resource_group.to_ascii_lowercase()),
    );
    m.insert(
        "subscriptionId".into(),
        Value::String(reg.subscription_id.clone()),
    );
    m.insert("managedBy".into(), Value::String(String::new()));
    m.insert("sku".into(), Value::Null);
    m.insert("plan".into(), Value::Null);
    m.insert("properties".into(), properties);
    m.insert("tags".into(), Value::Null);
    m.insert("identity".into(), Value::Null);
    m.insert("zones".into(), Value::Null);
    m.insert("extendedLocation".into(), Value::Null);
    m
}

fn individual_row(
    t: &Tenant,
    reg: &Registry,
    repo: &str,
    img: &Image,
    p: &PackageFinding,
) -> Map<String, Value> {
    let guid = row_guid(t.seed, img.key, img.generation, p.idx as usize, None);
    let id = format!(
        "{}/providers/Microsoft.Security/assessments/{guid}",
        reg.arm_id
    );
    let status = p.status();
    let status_json = match status {
        BaseStatus::Unhealthy => json!({"code": "Unhealthy"}),
        BaseStatus::Healthy => json!({"code": "Healthy"}),
        BaseStatus::Exempt => {
            json!({"code": "NotApplicable", "cause": "Exempt", "description": "This resource is exempt from the recommendation"})
        }
    };
    let fix_status = if p.fixed_version.is_some() {
        "FixAvailable"
    } else {
        "NoFixAvailable"
    };
    let fixed = p.fixed_version.clone().unwrap_or_default();
    let cves: Vec<Value> = p
        .cves
        .iter()
        .filter(|c| status != BaseStatus::Unhealthy || !c.fixed)
        .map(|c| {
            json!({
                "CveId": c.cve.id,
                "AdditionalIdentifiers": [],
                "Description": format!("{} in {} allows a remote attacker to affect confidentiality, integrity or availability.", c.cve.id, p.name()),
                "ExtendedDescription": "",
                "Cvss": [{"Key": "3.1", "Value": {"Base": c.cve.cvss, "CvssVectorString": vulns::cvss_vector("3.1", c.cve.cvss)}}],
                "CvssSource": "NVD",
                "Severity": c.cve.severity.as_str(),
                "PublishedDate": rfc3339(c.cve.published),
                "LastModifiedDate": rfc3339(c.cve.published + 30 * 86_400),
                "Weaknesses": ["CWE-400"],
                "FixStatus": fix_status,
                "FixedVersion": fixed,
                "ExploitabilityDetails": {
                    "IsInExploitKit": c.exploit[2],
                    "ExploitStepsPublished": c.exploit[0],
                    "ExploitStepsVerified": c.exploit[1]
                },
                "References": [{"Title": c.cve.id, "Link": format!("https://nvd.nist.gov/vuln/detail/{}", c.cve.id)}],
                "Tags": []
            })
        })
        .collect();
    let def = &PACKAGES[p.package];
    let mut additional = json!({
        "SoftwareName": p.name(),
        "SoftwareVendor": def.vendor,
        "PackageType": if language(p).is_some() { "Language" } else { "OS" },
        "DetectedSoftwareVersions": serde_json::to_string(&[p.version]).unwrap_or_default(),
        "FixStatus": fix_status,
        "CvesDetails": serde_json::to_string(&cves).unwrap_or_default(),
    });
    if let Some(l) = language(p) {
        additional["Language"] = json!(l);
    }
    if let Some(f) = &p.fixed_version {
        additional["FixedVersion"] = json!(f);
    }
    let image_data = json!({
        "Digest": img.digest,
        "RegistryHost": reg.login_server,
        "RepositoryDetails": {
            "RepositoryName": repo,
            "LastPushedToRegistryUTC": rfc3339_7(img.created, img.created_frac)
        },
        "Tags": img.tags
    });
    let display = format!("{} should be updated to fix vulnerabilities", p.name());
    let properties = json!({
        "displayName": display,
        "status": status_json,
        "metadata": {
            "severity": severity_of(p).as_str(),
            "recommendationCategory": "SoftwareUpdate",
            "displayName": display,
            "description": format!("The container image uses {} {}, which has known vulnerabilities.", p.name(), p.version),
            "remediationDescription": match &p.fixed_version {
                Some(f) => format!("Update {} to version {f} or later and rebuild the image.", p.name()),
                None => format!("No fixed version of {} is available yet. Consider mitigations or an alternative package.", p.name()),
            },
            "assessmentType": "BuiltIn"
        },
        "resourceDetails": {
            "Source": "Azure",
            "ResourceType": ".containerimage",
            "Id": format!("{}/repositories-{}-images-{}", reg.arm_id, repo.replace('/', "-"), img.digest),
            "ResourceProvider": "microsoft.containerregistry"
        },
        "resourceAdditionalData": serde_json::to_string(&image_data).unwrap_or_default(),
        "additionalData": additional,
        "timeGenerated": rfc3339_7(p.time_generated, 1_234_567)
    });
    top_level(
        t,
        reg,
        id,
        guid,
        "microsoft.security/assessments",
        properties,
    )
}

fn sub_status(p: &PackageFinding, c: &crate::tenant::CveFinding, severity: &str) -> Value {
    match p.cve_status(c) {
        BaseStatus::Unhealthy => {
            json!({"code": "Unhealthy", "severity": severity, "cause": "", "description": "The resource is unhealthy"})
        }
        BaseStatus::Healthy => {
            json!({"code": "Healthy", "severity": severity, "cause": "", "description": "The resource is healthy"})
        }
        BaseStatus::Exempt => {
            json!({"code": "NotApplicable", "severity": severity, "cause": "Exempt", "description": "Disabled parent assessment"})
        }
    }
}

fn mdvm_row(
    t: &Tenant,
    reg: &Registry,
    repo: &str,
    img: &Image,
    p: &PackageFinding,
    ci: usize,
) -> Map<String, Value> {
    let c = &p.cves[ci];
    let guid = row_guid(t.seed, img.key, img.generation, p.idx as usize, Some(ci));
    let id = format!(
        "{}/providers/Microsoft.Security/assessments/{MDVM_KEY}/subassessments/{guid}",
        reg.arm_id
    );
    let sev = c.cve.severity.as_str();
    let def = &PACKAGES[p.package];
    let time = rfc3339_7(p.time_generated, 772_799);
    let properties = json!({
        "id": c.cve.id,
        "displayName": c.cve.id,
        "description": format!("This vulnerability affects the following vendors: {}. To view more details about this vulnerability please visit the vendor website.", def.vendor),
        "remediation": match &p.fixed_version {
            Some(f) => format!("Update {} to version {f}", p.name()),
            None => "No remediation exists".to_owned(),
        },
        "timeGenerated": time,
        "status": sub_status(p, c, sev),
        "resourceDetails": {"id": format!("/repositories/{repo}/images/{}", img.digest), "source": "Azure"},
        "additionalData": {
            "assessedResourceType": "AzureContainerRegistryVulnerability",
            "cvssV30Score": c.cve.cvss,
            "vulnerabilityDetails": {
                "cveId": c.cve.id,
                "severity": sev,
                "exploitabilityAssessment": {
                    "exploitStepsPublished": c.exploit[0],
                    "exploitStepsVerified": c.exploit[1],
                    "isInExploitKit": c.exploit[2],
                    "exploitUris": [],
                    "types": ["Remote"]
                },
                "lastModifiedDate": rfc3339(c.cve.published + 30 * 86_400),
                "publishedDate": rfc3339(c.cve.published),
                "workarounds": [],
                "references": [{"title": c.cve.id, "link": format!("https://nvd.nist.gov/vuln/detail/{}", c.cve.id)}],
                "weaknesses": {"cwe": [{"id": "CWE-400"}]},
                "cvss": {"2.0": null, "3.0": {"cvssVectorString": vulns::cvss_vector("3.0", c.cve.cvss), "base": c.cve.cvss}},
                "cpe": {
                    "language": "*", "softwareEdition": "*", "version": "*", "targetHardware": "*",
                    "targetSoftware": language(p).unwrap_or("*"), "vendor": def.vendor, "edition": "*",
                    "product": p.name(), "update": "*", "other": "*",
                    "part": if language(p).is_some() { "Applications" } else { "OperatingSystems" },
                    "uri": format!("cpe:2.3:a:{}:{}:*:*:*:*:*:{}:*:*", def.vendor, p.name(), language(p).unwrap_or("*"))
                }
            },
            "artifactDetails": {
                "lastPushedToRegistryUTC": rfc3339_7(img.created, img.created_frac),
                "repositoryName": repo,
                "registryHost": reg.login_server,
                "artifactType": "ContainerImage",
                "mediaType": crate::tenant::MANIFEST_MEDIA_TYPE,
                "digest": img.digest,
                "tags": img.tags
            },
            "softwareDetails": {
                "category": if language(p).is_some() { "Language" } else { "OS" },
                "language": language(p).unwrap_or(""),
                "fixedVersion": p.fixed_version.clone().unwrap_or_default(),
                "version": p.version,
                "vendor": def.vendor,
                "packageName": p.name(),
                "osDetails": {"osPlatform": "linux", "osVersion": "ubuntu_linux_22.04"},
                "fixStatus": if p.fixed_version.is_some() { "FixAvailable" } else { "NoFixAvailable" },
                "evidence": []
            }
        }
    });
    let mut m = top_level(
        t,
        reg,
        id,
        guid,
        "microsoft.security/assessments/subassessments",
        properties,
    );
    m.insert("assessmentKey".into(), json!(MDVM_KEY));
    m.insert("timeGenerated".into(), json!(time));
    m
}

fn qualys_row(
    t: &Tenant,
    reg: &Registry,
    repo: &str,
    img: &Image,
    p: &PackageFinding,
    ci: usize,
) -> Map<String, Value> {
    let c = &p.cves[ci];
    let guid = row_guid(t.seed, img.key, img.generation, p.idx as usize, Some(ci));
    let base = format!(
        "{}/providers/Microsoft.Security/assessments/{QUALYS_KEY}/subassessments/{guid}",
        reg.arm_id
    );
    // Qualys knew no Critical.
    let sev = match c.cve.severity {
        vulns::Severity::Critical => "High",
        s => s.as_str(),
    };
    let qid = 170_000 + hash_bytes(c.cve.id.as_bytes()) % 100_000;
    let time = rfc3339_7(p.time_generated, 7_644_808);
    let properties = json!({
        "displayName": format!("Ubuntu Security Update for {} ({})", p.name(), c.cve.id),
        "id": qid.to_string(),
        "status": sub_status(p, c, sev),
        "resourceDetails": {
            "source": "Azure",
            "id": format!("{}/repository/{repo}/imageDigest/{}/providers/Microsoft.Security/assessments/{QUALYS_KEY}/subAssessments/{guid}", reg.arm_id, img.digest)
        },
        "remediation": match &p.fixed_version {
            Some(f) => format!("Update {} to version {f} or later.", p.name()),
            None => "No patch is available yet.".to_owned(),
        },
        "impact": "Successful exploitation could compromise the container.",
        "category": "Ubuntu",
        "description": format!("{} is affected by {}.", p.name(), c.cve.id),
        "timeGenerated": time,
        "additionalData": {
            "assessedResourceType": "ContainerRegistryVulnerability",
            "imageDigest": img.digest,
            "repositoryName": repo,
            "registryHost": reg.login_server,
            "type": "Vulnerability",
            "cvss": {"2.0": {"base": c.cve.cvss}, "3.0": {"base": c.cve.cvss}},
            "patchable": p.fixed_version.is_some(),
            "cve": [{"title": c.cve.id, "link": format!("https://nvd.nist.gov/vuln/detail/{}", c.cve.id)}],
            "publishedTime": rfc3339_7(c.cve.published, 0),
            "vendorReferences": [{"title": format!("USN for {}", p.name()), "link": "https://ubuntu.com/security/notices"}]
        }
    });
    let mut m = top_level(
        t,
        reg,
        base,
        guid,
        "microsoft.security/assessments/subassessments",
        properties,
    );
    m.insert("assessmentKey".into(), json!(QUALYS_KEY));
    m.insert("timeGenerated".into(), json!(time));
    m
}

#[derive(Debug, Deserialize)]
struct Body {
    #[serde(default)]
    subscriptions: Option<Vec<String>>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    options: Option<Options>,
}

#[derive(Debug, Default, Deserialize)]
struct Options {
    #[serde(rename = "$top")]
    top: Option<i64>,
    #[serde(rename = "$skip")]
    skip: Option<i64>,
    #[serde(rename = "$skipToken")]
    skip_token: Option<String>,
    #[serde(rename = "resultFormat")]
    result_format: Option<String>,
}

#[derive(Serialize)]
struct Envelope {
    #[serde(rename = "totalRecords")]
    total_records: u64,
    count: u64,
    #[serde(rename = "resultTruncated")]
    result_truncated: &'static str,
    facets: Vec<Value>,
    #[serde(rename = "$skipToken", skip_serializing_if = "Option::is_none")]
    skip_token: Option<String>,
    data: Value,
}

fn support_message() -> String {
    format!(
        "Please provide below info when asking for support: timestamp = {}, correlationId = {}.",
        rfc3339_7(
            util::now_secs(),
            (util::now_nanos() / 100 % 10_000_000) as u32
        ),
        request_guid()
    )
}

fn bad_request(code: &str, message: &str) -> Resp {
    arm::headers(Resp::json(
        400,
        &json!({"error": {"code": "BadRequest", "message": support_message(), "details": [{"code": code, "message": message}]}}),
    ))
}

fn invalid_query() -> Resp {
    bad_request(
        "InvalidQuery",
        "Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the error before retrying.",
    )
}

/// The real 429 body, with quota headers.
pub(crate) fn rate_limited(remaining: u32, retry_secs: u64) -> Resp {
    arm::headers(Resp::json(
        429,
        &json!({"error": {"code": "RateLimiting", "message": support_message(), "details": [{"code": "RateLimiting", "message": "Client application has been throttled and should not attempt to repeat the request until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help."}]}}),
    ))
    .with("x-ms-user-quota-remaining", &remaining.to_string())
    .with("x-ms-user-quota-resets-after", &hms(retry_secs))
    .with("retry-after", &retry_secs.to_string())
}

fn quota(sim: &Sim, principal: &Principal) -> Result<(u32, u64), Resp> {
    let key = format!("arg:{}", principal.object_id);
    let limit = sim.limits.arg_queries;
    let window = sim.limits.arg_window;
    if !sim.throttling {
        let (rem, after) = sim.throttles.window_remaining(&key, limit, window);
        return Ok((rem.saturating_sub(1), after.as_secs()));
    }
    match sim.throttles.window(&key, limit, window) {
        Verdict::Allowed {
            remaining,
            resets_after,
        } => Ok((remaining, resets_after.as_secs())),
        Verdict::Throttled { retry_after } => Err(rate_limited(0, ceil_secs(retry_after))),
    }
}

pub(crate) fn handle(sim: &Sim, r: &Req) -> Resp {
    // The page comes from the gateway in front of the service, before any validation.
    if sim.faults().has(Anomaly::ArgHtml200) {
        return server::html_error_page();
    }
    if r.method != axum::http::Method::POST {
        return arm::error(
            405,
            "MethodNotAllowed",
            "Resource Graph queries are sent with POST.",
        );
    }
    let (_, principal) = match arm::authenticate(sim, r) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if let Err(resp) = arm::check_api_version(r, API_VERSIONS, None) {
        return resp;
    }
    let (remaining, resets) = match quota(sim, principal) {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    let resp = query(sim, principal, r);
    resp.with("x-ms-user-quota-remaining", &remaining.to_string())
        .with("x-ms-user-quota-resets-after", &hms(resets))
}

fn query(sim: &Sim, principal: &Principal, req: &Req) -> Resp {
    let spec = sim.faults();
    let body: Body = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => {
            return bad_request(
                "InvalidRequestContent",
                &format!("The request content was invalid and could not be deserialized: '{e}'."),
            );
        }
    };
    let Some(text) = body.query.filter(|text| !text.trim().is_empty()) else {
        return bad_request("InvalidRequestContent", "The query property is required.");
    };
    let Some(parsed) = parse_query(&text) else {
        return invalid_query();
    };
    let options = body.options.unwrap_or_default();
    let top = options.top.unwrap_or(100);
    if !(1..=1000).contains(&top) {
        return bad_request(
            "InvalidParameter",
            &format!("The value of $top `{top}` must be between 1 and 1000."),
        );
    }
    let skip = options.skip.unwrap_or(0);
    if skip < 0 {
        return bad_request(
            "InvalidParameter",
            &format!("The value of $skip `{skip}` must not be negative."),
        );
    }
    let table = match options.result_format.as_deref() {
        None | Some("objectArray") => false,
        Some("table") => true,
        Some(other) => {
            return bad_request(
                "InvalidParameter",
                &format!("Unknown resultFormat `{other}`."),
            );
        }
    };
    if spec.has(Anomaly::ArgNullData) {
        return arm::headers(Resp::new(
            200,
            "application/json; charset=utf-8",
            r#"{"totalRecords":0,"count":0,"data":null}"#,
        ));
    }
    let tenant = &sim.tenant;
    let ov = tenant.overlay();
    // Subscriptions the caller may read; ARG silently leaves out the others.
    let subs: Vec<String> = match &body.subscriptions {
        Some(list) => list.iter().map(|s| s.to_ascii_lowercase()).collect(),
        None => tenant.subscriptions.iter().map(|s| s.id.clone()).collect(),
    };
    let regs: Vec<usize> =
        if principal.has_role && !spec.arg_zero_rows() && parsed.data_set == tenant.data_set {
            (0..tenant.registries.len())
                .filter(|i| subs.contains(&tenant.registries[*i].subscription_id))
                .collect()
        } else {
            Vec::new()
        };
    let fingerprint = {
        let mut parts = vec![hash_bytes(squash(&text).as_bytes())];
        parts.extend(regs.iter().map(|r| *r as u64));
        hash(&parts).to_string()
    };
    let (start, page_size) = match &options.skip_token {
        Some(tok) => match decode_token(tok) {
            Some(st) if st.q == fingerprint => (st.pos, top as usize),
            _ => {
                return bad_request(
                    "InvalidSkipToken",
                    "The skip token is invalid or does not belong to this query.",
                );
            }
        },
        None => (Pos::default(), top as usize),
    };
    let total = total_rows(sim, &ov, &regs, parsed.data_set, &fingerprint);
    let mut data: Vec<Map<String, Value>> = Vec::new();
    let mut to_skip = if options.skip_token.is_none() {
        skip as u64
    } else {
        0
    };
    let mut next: Option<Pos> = None;
    let mut cached: Option<(ImageKey, Image)> = None;
    let strip_status = spec.has(Anomaly::ArgMissingStatus);
    // (registry position, ordinal of the next row within it), for `arg-missing-status`.
    let mut ordinals = (
        start.g,
        if strip_status {
            ordinal_at(tenant, &ov, &regs, parsed.data_set, start)
        } else {
            0
        },
    );
    walk(
        tenant,
        &ov,
        &regs,
        parsed.data_set,
        start,
        |pos, reg, key, generation, pkgs, rr| {
            let ordinal = if pos.g == ordinals.0 { ordinals.1 } else { 0 };
            ordinals = (pos.g, ordinal + 1);
            if to_skip > 0 {
                to_skip -= 1;
                return true;
            }
            if data.len() == page_size {
                next = Some(pos);
                return false;
            }
            if cached.as_ref().is_none_or(|(k, _)| *k != key) {
                let img = tenant
                    .image(&ov, key)
                    .unwrap_or_else(|| unreachable_image(key, generation));
                cached = Some((key, img));
            }
            let img = &cached.as_ref().map(|c| &c.1).expect("image cached above");
            let registry = &tenant.registries[reg];
            let repo = &registry.repos[key.repo as usize].name;
            let p = &pkgs[rr.pkg];
            let mut row = match (parsed.data_set, rr.cve) {
                (DataSet::Individual, _) | (_, None) => {
                    individual_row(tenant, registry, repo, img, p)
                }
                (DataSet::Mdvm, Some(c)) => mdvm_row(tenant, registry, repo, img, p, c),
                (DataSet::Qualys, Some(c)) => qualys_row(tenant, registry, repo, img, p, c),
            };
            if strip_status
                && anomaly::strips_status(ordinal)
                && let Some(Value::Object(props)) = row.get_mut("properties")
            {
                props.remove("status");
            }
            data.push(row);
            true
        },
    );
    let has_id = parsed
        .columns
        .as_ref()
        .is_none_or(|c| c.iter().any(|c| c == "id"));
    let truncated = next.is_some() && !has_id;
    let skip_token = match (next, has_id) {
        (Some(pos), true) => Some(if spec.repeat_page_token {
            options
                .skip_token
                .clone()
                .unwrap_or_else(|| encode_token(&fingerprint, Pos::default()))
        } else {
            encode_token(&fingerprint, pos)
        }),
        _ => None,
    };
    let mut count = data.len() as u64;
    let mut total = total;
    if spec.has(Anomaly::TotalsMismatch) {
        count += 1;
        total = total.saturating_sub(1);
    }
    let columns: Vec<String> = parsed.columns.clone().unwrap_or_else(|| {
        let mut all: Vec<String> = KNOWN_COLUMNS.iter().map(|(k, _)| (*k).to_owned()).collect();
        if parsed.data_set == DataSet::Individual {
            all.retain(|c| c != "assessmentKey" && c != "timeGenerated");
        }
        all
    });
    let projected: Vec<Map<String, Value>> = data
        .into_iter()
        .map(|row| {
            if parsed.columns.is_none() {
                return row;
            }
            columns
                .iter()
                .map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Value::Null)))
                .collect()
        })
        .collect();
    let data_json = if table {
        json!({
            "columns": columns.iter().map(|c| json!({"name": c, "type": KNOWN_COLUMNS.iter().find(|(k, _)| k == c).map_or("object", |(_, t)| *t)})).collect::<Vec<_>>(),
            "rows": projected.iter().map(|row| columns.iter().map(|c| row.get(c).cloned().unwrap_or(Value::Null)).collect::<Vec<_>>()).collect::<Vec<_>>(),
        })
    } else {
        Value::Array(projected.into_iter().map(Value::Object).collect())
    };
    arm::headers(Resp::json(
        200,
        &Envelope {
            total_records: total,
            count,
            result_truncated: if truncated { "true" } else { "false" },
            facets: Vec::new(),
            skip_token,
            data: data_json,
        },
    ))
}

fn unreachable_image(key: ImageKey, generation: u32) -> Image {
    // `walk` only yields slots whose generation exists, so the image is always there.
    panic!("image {key:?} generation {generation} vanished during a page")
}

fn total_rows(
    sim: &Sim,
    ov: &Overlay,
    regs: &[usize],
    data_set: DataSet,
    fingerprint: &str,
) -> u64 {
    let key = (hash_bytes(fingerprint.as_bytes()), ov.epoch);
    if let Some(n) = sim
        .arg_totals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return *n;
    }
    let mut n = 0u64;
    walk(
        &sim.tenant,
        ov,
        regs,
        data_set,
        Pos::default(),
        |_, _, _, _, _, _| {
            n += 1;
            true
        },
    );
    sim.arg_totals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, n);
    n
}

fn encode_token(q: &str, pos: Pos) -> String {
    STANDARD.encode(
        serde_json::to_vec(&SkipToken {
            q: q.to_owned(),
            pos,
        })
        .unwrap_or_default(),
    )
}

fn decode_token(s: &str) -> Option<SkipToken> {
    let bytes = STANDARD.decode(s).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Generates every row of a tenant's data set in-process (no HTTP), for measurements.
/// Returns `(rows, bytes of JSON)`.
pub(crate) fn generate_all(
    t: &Tenant,
    page_size: usize,
    mut on_page: impl FnMut(usize, usize),
) -> (u64, u64) {
    let ov = t.overlay();
    let regs: Vec<usize> = (0..t.registries.len()).collect();
    let mut rows = 0u64;
    let mut bytes = 0u64;
    let mut page: Vec<Map<String, Value>> = Vec::with_capacity(page_size);
    let mut cached: Option<(ImageKey, Image)> = None;
    let mut flush = |page: &mut Vec<Map<String, Value>>, bytes: &mut u64| {
        let v = serde_json::to_vec(page).unwrap_or_default();
        *bytes += v.len() as u64;
        on_page(page.len(), v.len());
        page.clear();
    };
    walk(
        t,
        &ov,
        &regs,
        t.data_set,
        Pos::default(),
        |_, reg, key, _, pkgs, rr| {
            if cached.as_ref().is_none_or(|(k, _)| *k != key) {
                cached = t.image(&ov, key).map(|i| (key, i));
            }
            let Some((_, img)) = cached.as_ref() else {
                return true;
            };
            let registry = &t.registries[reg];
            let repo = &registry.repos[key.repo as usize].name;
            let p = &pkgs[rr.pkg];
            page.push(match (t.data_set, rr.cve) {
                (DataSet::Individual, _) | (_, None) => individual_row(t, registry, repo, img, p),
                (DataSet::Mdvm, Some(c)) => mdvm_row(t, registry, repo, img, p, c),
                (DataSet::Qualys, Some(c)) => qualys_row(t, registry, repo, img, p, c),
            });
            rows += 1;
            if page.len() == page_size {
                flush(&mut page, &mut bytes);
            }
            true
        },
    );
    if !page.is_empty() {
        flush(&mut page, &mut bytes);
    }
    (rows, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDIVIDUAL: &str = "securityresources\n| where type == \"microsoft.security/assessments\"\n| where properties.metadata.recommendationCategory == \"SoftwareUpdate\"\n| where properties.resourceDetails.ResourceType == \".containerimage\"\n| where properties.resourceDetails.Source == \"Azure\"\n| project id, name, type, subscriptionId, resourceGroup, properties\n| order by id asc";

    fn sub(key: &str) -> String {
        format!(
            "securityresources\n| where type == \"microsoft.security/assessments/subassessments\"\n| extend assessmentKey = extract(@\"(?i)providers/Microsoft.Security/assessments/([^/]*)\", 1, id)\n| where assessmentKey == \"{key}\"\n| project id, name, type, subscriptionId, resourceGroup, properties\n| order by id asc"
        )
    }

    #[test]
    fn recognises_the_contract_queries() {
        let q = parse_query(INDIVIDUAL).unwrap();
        assert_eq!(q.data_set, DataSet::Individual);
        assert_eq!(q.columns.unwrap().len(), 6);
        assert_eq!(parse_query(&sub(MDVM_KEY)).unwrap().data_set, DataSet::Mdvm);
        assert_eq!(
            parse_query(&sub(QUALYS_KEY)).unwrap().data_set,
            DataSet::Qualys
        );
        // Quote style and whitespace do not matter.
        let single = INDIVIDUAL.replace('"', "'").replace('\n', " ");
        assert_eq!(parse_query(&single).unwrap().data_set, DataSet::Individual);
    }

    #[test]
    fn rejects_anything_else() {
        assert!(parse_query("Resources | project id").is_none());
        assert!(parse_query(&INDIVIDUAL.replace("SoftwareUpdate", "Other")).is_none());
        assert!(
            parse_query(&format!(
                "{INDIVIDUAL}\n| where properties.status.code == \"Unhealthy\""
            ))
            .is_none()
        );
        assert!(parse_query(&INDIVIDUAL.replace("project id,", "project id = 1,")).is_none());
        assert!(parse_query(&sub("00000000-0000-0000-0000-000000000000")).is_none());
    }
}
