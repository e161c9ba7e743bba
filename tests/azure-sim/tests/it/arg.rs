use std::collections::BTreeSet;

use azure_sim::{DataSet, Scenario, SimOptions};
use serde_json::{Value, json};

use crate::common::{Env, assert_shape, sample, start};

pub(crate) const INDIVIDUAL: &str = "securityresources\n| where type == \"microsoft.security/assessments\"\n| where properties.metadata.recommendationCategory == \"SoftwareUpdate\"\n| where properties.resourceDetails.ResourceType == \".containerimage\"\n| where properties.resourceDetails.Source == \"Azure\"\n| project id, name, type, subscriptionId, resourceGroup, properties\n| order by id asc";
const MDVM_KEY: &str = "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5";
const QUALYS_KEY: &str = "dbd0cb49-b563-45e7-9724-889e799fa648";

pub(crate) fn sub_query(key: &str, project: bool) -> String {
    let mut q = format!(
        "securityresources\n| where type == \"microsoft.security/assessments/subassessments\"\n| extend assessmentKey = extract(@\"(?i)providers/Microsoft.Security/assessments/([^/]*)\", 1, id)\n| where assessmentKey == \"{key}\""
    );
    if project {
        q.push_str("\n| project id, name, type, subscriptionId, resourceGroup, properties");
    }
    q.push_str("\n| order by id asc");
    q
}

pub(crate) type Finding = (String, String, String, String, String);

/// Follows `$skipToken` to the end; returns rows and the page envelopes (without data).
pub(crate) async fn fetch_all(
    env: &Env,
    token: &str,
    query: &str,
    top: u64,
) -> (Vec<Value>, Vec<Value>) {
    let sub = env.sim.credentials().subscription_id;
    let mut rows = Vec::new();
    let mut pages = Vec::new();
    let mut skip: Option<String> = None;
    loop {
        let mut options = json!({"$top": top, "resultFormat": "objectArray"});
        if let Some(s) = &skip {
            options["$skipToken"] = json!(s);
        }
        let r = env
            .post_json(
                &env.arg_url(),
                Some(token),
                &json!({"subscriptions": [sub], "query": query, "options": options}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let mut body = r.json();
        let data = body["data"].as_array().unwrap().clone();
        assert_eq!(body["count"], data.len());
        assert!(data.len() as u64 <= top);
        rows.extend(data);
        body.as_object_mut().unwrap().remove("data");
        skip = body["$skipToken"].as_str().map(str::to_owned);
        pages.push(body);
        if skip.is_none() {
            break;
        }
        assert!(pages.len() < 10_000, "paging does not end");
    }
    (rows, pages)
}

/// Reads open findings out of rows the way a connector would.
pub(crate) fn open_findings(rows: &[Value], data_set: DataSet) -> BTreeSet<Finding> {
    let mut out = BTreeSet::new();
    for row in rows {
        let p = &row["properties"];
        if p["status"]["code"] != "Unhealthy" {
            continue;
        }
        match data_set {
            DataSet::Individual => {
                let img: Value =
                    serde_json::from_str(p["resourceAdditionalData"].as_str().unwrap()).unwrap();
                let cves: Value =
                    serde_json::from_str(p["additionalData"]["CvesDetails"].as_str().unwrap())
                        .unwrap();
                for c in cves.as_array().unwrap() {
                    out.insert((
                        img["RegistryHost"].as_str().unwrap().to_owned(),
                        img["RepositoryDetails"]["RepositoryName"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        img["Digest"].as_str().unwrap().to_owned(),
                        c["CveId"].as_str().unwrap().to_owned(),
                        p["additionalData"]["SoftwareName"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    ));
                }
            }
            DataSet::Mdvm => {
                let a = &p["additionalData"]["artifactDetails"];
                out.insert((
                    a["registryHost"].as_str().unwrap().to_owned(),
                    a["repositoryName"].as_str().unwrap().to_owned(),
                    a["digest"].as_str().unwrap().to_owned(),
                    p["additionalData"]["vulnerabilityDetails"]["cveId"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    p["additionalData"]["softwareDetails"]["packageName"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ));
            }
            DataSet::Qualys => {
                // Qualys rows name no package; the ground truth reports none either.
                let a = &p["additionalData"];
                let package = "";
                out.insert((
                    a["registryHost"].as_str().unwrap().to_owned(),
                    a["repositoryName"].as_str().unwrap().to_owned(),
                    a["imageDigest"].as_str().unwrap().to_owned(),
                    a["cve"][0]["title"].as_str().unwrap().to_owned(),
                    package.to_owned(),
                ));
            }
        }
    }
    out
}

pub(crate) fn truth(env: &Env) -> BTreeSet<Finding> {
    env.sim
        .ground_truth()
        .findings()
        .map(|f| {
            (
                f.login_server,
                f.repository,
                f.digest,
                f.vulnerability_id,
                f.package,
            )
        })
        .collect()
}

#[tokio::test]
async fn individual_recommendations_page_and_match_the_ground_truth() {
    let env = start(SimOptions::new(Scenario::Small)).await;
    let token = env.arm_token().await;
    let (rows, pages) = fetch_all(&env, &token, INDIVIDUAL, 7).await;
    assert!(pages.len() > 2, "small must need several pages of 7");
    let page_sample = sample("arg-ResourcesFirstPageQuery-2024-04-01.json");
    let mut envelope = page_sample["responses"]["200"]["body"].clone();
    envelope.as_object_mut().unwrap().remove("data");
    assert_shape(&envelope, &pages[0], "page", &[], &[]);
    assert_shape(
        &envelope,
        pages.last().unwrap(),
        "last page",
        &[],
        &["$skipToken"],
    );
    assert_eq!(pages[0]["resultTruncated"], "false");
    assert_eq!(pages[0]["totalRecords"], rows.len());

    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "rows come in ascending id order without repeats"
    );
    let mut statuses = BTreeSet::new();
    let mut severities = BTreeSet::new();
    let mut empty_fix = false;
    for row in &rows {
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "id",
                "name",
                "type",
                "subscriptionId",
                "resourceGroup",
                "properties"
            ])
        );
        assert_eq!(row["type"], "microsoft.security/assessments");
        let p = &row["properties"];
        assert_eq!(p["metadata"]["recommendationCategory"], "SoftwareUpdate");
        assert_eq!(p["resourceDetails"]["ResourceType"], ".containerimage");
        assert_eq!(p["resourceDetails"]["Source"], "Azure");
        assert!(
            row["id"]
                .as_str()
                .unwrap()
                .contains("/providers/Microsoft.Security/assessments/")
        );
        assert!(
            p["resourceDetails"]["Id"]
                .as_str()
                .unwrap()
                .contains("/repositories-")
        );
        let img: Value =
            serde_json::from_str(p["resourceAdditionalData"].as_str().expect("a JSON string"))
                .unwrap();
        assert!(img["Digest"].as_str().unwrap().starts_with("sha256:"));
        let versions: Value = serde_json::from_str(
            p["additionalData"]["DetectedSoftwareVersions"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(versions.is_array());
        let cves: Value = serde_json::from_str(
            p["additionalData"]["CvesDetails"]
                .as_str()
                .expect("a JSON string"),
        )
        .unwrap();
        for c in cves.as_array().unwrap() {
            for k in [
                "CveId",
                "Description",
                "Cvss",
                "Severity",
                "PublishedDate",
                "LastModifiedDate",
                "Weaknesses",
                "FixStatus",
                "FixedVersion",
                "ExploitabilityDetails",
                "References",
            ] {
                assert!(c.get(k).is_some(), "CvesDetails item lacks {k}");
            }
            severities.insert(c["Severity"].as_str().unwrap().to_owned());
            empty_fix |= c["FixedVersion"] == "";
        }
        statuses.insert(p["status"]["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        statuses,
        BTreeSet::from([
            "Healthy".to_owned(),
            "NotApplicable".to_owned(),
            "Unhealthy".to_owned()
        ])
    );
    assert!(
        severities.contains("Critical") && severities.contains("Low"),
        "{severities:?}"
    );
    assert!(empty_fix, "some CVEs have no fixed version");
    assert_eq!(open_findings(&rows, DataSet::Individual), truth(&env));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn mdvm_rows_match_the_documented_row() {
    let mut opts = SimOptions::new(Scenario::Demo);
    opts.tenant.data_set = DataSet::Mdvm;
    let env = start(opts).await;
    let token = env.arm_token().await;
    let (rows, _) = fetch_all(&env, &token, &sub_query(MDVM_KEY, false), 1000).await;
    let expected = sample("defender-mdvm-subassessment-arg-row-azure.json");
    for row in &rows {
        assert_shape(&expected[0], row, "mdvm", &[], &[]);
        assert_eq!(row["assessmentKey"], MDVM_KEY);
    }
    assert!(
        rows.iter()
            .any(|r| r["properties"]["status"]["severity"] == "Critical")
    );
    assert!(
        rows.iter()
            .any(|r| r["properties"]["additionalData"]["softwareDetails"]["fixedVersion"] == "")
    );
    assert_eq!(open_findings(&rows, DataSet::Mdvm), truth(&env));
    // The individual query finds nothing in an MDVM-era tenant, and vice versa.
    let (none, _) = fetch_all(&env, &token, INDIVIDUAL, 1000).await;
    assert!(none.is_empty());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn qualys_rows_match_the_sub_assessment_sample() {
    let mut opts = SimOptions::new(Scenario::Demo);
    opts.tenant.data_set = DataSet::Qualys;
    let env = start(opts).await;
    let token = env.arm_token().await;
    let (rows, _) = fetch_all(&env, &token, &sub_query(QUALYS_KEY, true), 1000).await;
    assert!(!rows.is_empty());
    let expected = sample("security-ListSubscriptionSubAssessments-2019-01-01-preview.json");
    let expected = &expected["responses"]["200"]["body"]["value"][0]["properties"];
    for row in &rows {
        assert_eq!(row["type"], "microsoft.security/assessments/subassessments");
        // `registryHost` is seen in real Qualys-era data, not in the spec example.
        assert_shape(
            expected,
            &row["properties"],
            "qualys",
            &["registryHost"],
            &[],
        );
        assert_ne!(
            row["properties"]["status"]["severity"], "Critical",
            "Qualys had no Critical"
        );
    }
    assert_eq!(open_findings(&rows, DataSet::Qualys), truth(&env));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn unknown_queries_get_invalid_query_and_projection_is_honoured() {
    let env = start(SimOptions::new(Scenario::Demo)).await;
    let token = env.arm_token().await;
    let sub = env.sim.credentials().subscription_id;
    let r = env
        .post_json(
            &env.arg_url(),
            Some(&token),
            &json!({"subscriptions": [sub], "query": "Resources | project id, name | limit 3"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["error"]["code"], "BadRequest");
    assert_eq!(body["error"]["details"][0]["code"], "InvalidQuery");

    let q = INDIVIDUAL.replace(
        "project id, name, type, subscriptionId, resourceGroup, properties",
        "project id, name",
    );
    let r = env
        .post_json(
            &env.arg_url(),
            Some(&token),
            &json!({"subscriptions": [sub], "query": q, "options": {"$top": 3}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let keys: BTreeSet<String> = body["data"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, BTreeSet::from(["id".to_owned(), "name".to_owned()]));

    // Without `id` there is no paging: the result is truncated instead.
    let q = INDIVIDUAL.replace(
        "project id, name, type, subscriptionId, resourceGroup, properties",
        "project name",
    );
    let r = env
        .post_json(
            &env.arg_url(),
            Some(&token),
            &json!({"subscriptions": [sub], "query": q, "options": {"$top": 3}}),
        )
        .await;
    let body = r.json();
    assert_eq!(body["resultTruncated"], "true");
    assert!(body.get("$skipToken").is_none());

    let r = env
        .post_json(&env.arg_url(), Some(&token), &json!({"subscriptions": [sub], "query": INDIVIDUAL, "options": {"$top": 2, "resultFormat": "table"}}))
        .await;
    let body = r.json();
    assert_eq!(
        body["data"]["columns"][0],
        json!({"name": "id", "type": "string"})
    );
    assert_eq!(body["data"]["rows"].as_array().unwrap().len(), 2);

    let norole = env
        .token_for(
            &env.sim.no_role_client(),
            "https://management.azure.com/.default",
        )
        .await;
    let (rows, _) = fetch_all(&env, &norole, INDIVIDUAL, 1000).await;
    assert!(rows.is_empty(), "a principal without a role sees no rows");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn the_sixteenth_query_in_five_seconds_is_throttled() {
    let env = start(SimOptions::new(Scenario::Demo)).await;
    let token = env.arm_token().await;
    let body = json!({"subscriptions": [env.sim.credentials().subscription_id], "query": INDIVIDUAL, "options": {"$top": 1}});
    for i in 0..15u32 {
        let r = env.post_json(&env.arg_url(), Some(&token), &body).await;
        assert_eq!(r.status, 200, "query {i}: {}", r.text);
        assert_eq!(
            r.header("x-ms-user-quota-remaining").unwrap(),
            (14 - i).to_string()
        );
        let resets = r.header("x-ms-user-quota-resets-after").unwrap();
        assert!(resets.starts_with("00:00:0"), "{resets}");
    }
    let r = env.post_json(&env.arg_url(), Some(&token), &body).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ms-user-quota-remaining").as_deref(), Some("0"));
    assert!(
        r.header("x-ms-user-quota-resets-after")
            .unwrap()
            .starts_with("00:00:0")
    );
    assert!(r.header("retry-after").is_some());
    let e = r.json();
    assert_eq!(e["error"]["code"], "RateLimiting");
    assert_eq!(e["error"]["details"][0]["code"], "RateLimiting");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Please provide below info when asking for support: timestamp = ")
    );
    assert_eq!(env.sim.stats().count("arg.resources", 429), 1);
    env.sim.shutdown().await;
}
