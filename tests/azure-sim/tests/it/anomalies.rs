//! The named anomalies over the real TLS server: each answers as described after a normal read,
//! switches on and off through `PUT /_sim/faults`, and its ground truth says what a correct client
//! concludes.

use std::collections::{BTreeMap, BTreeSet};

use azure_sim::{Anomaly, RunStatus, Scenario, SimOptions};
use serde_json::{Value, json};

use crate::arg::{INDIVIDUAL, fetch_all};
use crate::common::{Env, Reply, start};

async fn env(scenario: Scenario) -> Env {
    let mut opts = SimOptions::new(scenario);
    // Tests here send many Resource Graph queries in a burst.
    opts.throttling = false;
    start(opts).await
}

/// `PUT /_sim/faults` with `body`; asserts it was accepted.
async fn put_faults(env: &Env, body: &Value) {
    let r = env
        .send(
            env.http
                .put(format!("{}/_sim/faults", env.sim.management_url()))
                .body(body.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn anomalies_on(env: &Env, names: &[&str]) {
    put_faults(env, &json!({ "anomalies": names })).await;
}

async fn ground_truth(env: &Env) -> Value {
    let r = env
        .get(
            &format!("{}/_sim/ground-truth", env.sim.management_url()),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// The `anomaly` section of `GET /_sim/ground-truth`.
async fn anomaly_truth(env: &Env) -> Value {
    let gt = ground_truth(env).await;
    assert!(gt["anomaly"].is_object(), "an anomaly section: {gt}");
    gt["anomaly"].clone()
}

fn names(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|r| r[field].as_str().unwrap().to_owned())
        .collect()
}

fn registry_names(env: &Env) -> Vec<String> {
    env.sim
        .ground_truth()
        .registries()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

async fn arg_page(env: &Env, token: &str, options: &Value) -> Reply {
    let sub = env.sim.credentials().subscription_id;
    env.post_json(
        &env.arg_url(),
        Some(token),
        &json!({"subscriptions": [sub], "query": INDIVIDUAL, "options": options}),
    )
    .await
}

/// The ARM id of the registry a Resource Graph row belongs to.
fn registry_of(row: &Value) -> String {
    let id = row["id"].as_str().unwrap();
    id.split("/providers/Microsoft.Security/")
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn arg_null_data_answers_null_data_with_the_usual_headers() {
    let env = env(Scenario::Demo).await;
    let token = env.arm_token().await;
    let (rows, _) = fetch_all(&env, &token, INDIVIDUAL, 1000).await;
    assert!(!rows.is_empty(), "a normal read has rows");
    assert!(
        ground_truth(&env).await.get("anomaly").is_none(),
        "no anomaly section while none is on"
    );

    anomalies_on(&env, &["arg-null-data"]).await;
    for top in [5, 1000] {
        let r = arg_page(&env, &token, &json!({"$top": top})).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text, r#"{"totalRecords":0,"count":0,"data":null}"#);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        for h in [
            "x-ms-request-id",
            "x-ms-correlation-request-id",
            "x-ms-user-quota-remaining",
            "x-ms-user-quota-resets-after",
        ] {
            assert!(r.header(h).is_some(), "{h} is kept");
        }
    }
    // A request the service refuses still gets its usual error.
    let bad = env
        .post_json(
            &env.arg_url(),
            Some(&token),
            &json!({"query": "Resources | take 1"}),
        )
        .await;
    assert_eq!(bad.status, 400);

    let truth = anomaly_truth(&env).await;
    assert_eq!(truth["active"], json!(["arg-null-data"]));
    assert_eq!(truth["findings_complete"], false);
    assert_eq!(truth["findings_reasons"], json!(["arg-null-data"]));
    assert_eq!(
        names(&truth["covered_registries"], "name").len(),
        3,
        "the inventory is untouched"
    );
    assert_eq!(truth["uncovered_registries"], json!([]));
    assert_eq!(truth["may_resolve_registries"], json!([]));
    assert_eq!(truth["run_status"], "partial");
    assert_eq!(truth["target_registry"], Value::Null);

    put_faults(&env, &json!({})).await;
    let (again, _) = fetch_all(&env, &token, INDIVIDUAL, 1000).await;
    assert_eq!(again, rows, "switched off, the rows are back");
    assert!(ground_truth(&env).await.get("anomaly").is_none());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn arg_empty_after_full_serves_well_formed_zero_rows() {
    let env = env(Scenario::Demo).await;
    let token = env.arm_token().await;
    let (rows, _) = fetch_all(&env, &token, INDIVIDUAL, 1000).await;
    assert!(!rows.is_empty());

    anomalies_on(&env, &["arg-empty-after-full"]).await;
    let (empty, pages) = fetch_all(&env, &token, INDIVIDUAL, 5).await;
    assert!(empty.is_empty());
    assert_eq!(pages.len(), 1, "one page, no $skipToken");
    assert_eq!(pages[0]["totalRecords"], 0);
    assert_eq!(pages[0]["count"], 0);
    assert_eq!(pages[0]["resultTruncated"], "false");
    let table = arg_page(&env, &token, &json!({"resultFormat": "table"})).await;
    assert_eq!(table.json()["data"]["rows"], json!([]));
    assert!(
        env.sim.faults().has(Anomaly::ArgEmptyAfterFull),
        "the spec reports it"
    );

    let truth = anomaly_truth(&env).await;
    assert_eq!(truth["findings_complete"], false);
    assert_eq!(truth["findings_reasons"], json!(["arg-empty-after-full"]));
    assert_eq!(truth["run_status"], "held");
    assert_eq!(truth["may_resolve_registries"], json!([]));
    assert_eq!(names(&truth["covered_registries"], "name").len(), 3);

    put_faults(&env, &json!({})).await;
    assert_eq!(fetch_all(&env, &token, INDIVIDUAL, 1000).await.0, rows);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn arg_missing_status_strips_every_fifth_row_of_each_registry() {
    let env = env(Scenario::Demo).await;
    let token = env.arm_token().await;
    let (normal, _) = fetch_all(&env, &token, INDIVIDUAL, 1000).await;

    anomalies_on(&env, &["arg-missing-status"]).await;
    // Small pages cross registry boundaries mid-page and start pages mid-registry.
    let (paged, pages) = fetch_all(&env, &token, INDIVIDUAL, 3).await;
    assert!(pages.len() > 3);
    let (whole, _) = fetch_all(&env, &token, INDIVIDUAL, 1000).await;
    assert_eq!(paged, whole, "the stripped rows do not depend on paging");
    assert_eq!(whole.len(), normal.len(), "no row is dropped");

    let mut ordinal: BTreeMap<String, u64> = BTreeMap::new();
    let mut stripped: BTreeMap<String, u64> = BTreeMap::new();
    for (before, after) in normal.iter().zip(&whole) {
        assert_eq!(before["id"], after["id"]);
        let reg = registry_of(before);
        let n = ordinal.entry(reg.clone()).or_default();
        let missing = after["properties"].get("status").is_none();
        assert_eq!(missing, n.is_multiple_of(5), "row {n} of {reg}");
        let mut restored = after.clone();
        if missing {
            *stripped.entry(reg).or_default() += 1;
            restored["properties"]["status"] = before["properties"]["status"].clone();
        }
        assert_eq!(&restored, before, "nothing else changes");
        *n += 1;
    }
    assert_eq!(
        stripped.len(),
        3,
        "every demo registry loses a status: {stripped:?}"
    );

    let truth = anomaly_truth(&env).await;
    assert_eq!(truth["rows_without_status"], stripped.values().sum::<u64>());
    assert_eq!(truth["findings_complete"], false);
    assert_eq!(truth["findings_reasons"], json!(["arg-missing-status"]));
    assert_eq!(truth["run_status"], "partial");

    put_faults(&env, &json!({})).await;
    assert_eq!(fetch_all(&env, &token, INDIVIDUAL, 1000).await.0, normal);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn arg_html_200_answers_every_request_with_an_html_page() {
    let env = env(Scenario::Demo).await;
    let token = env.arm_token().await;
    assert_eq!(arg_page(&env, &token, &json!({})).await.status, 200);

    anomalies_on(&env, &["arg-html-200"]).await;
    let valid = arg_page(&env, &token, &json!({"$top": 5})).await;
    let unauthenticated = env
        .post_json(&env.arg_url(), None, &json!({"query": INDIVIDUAL}))
        .await;
    for r in [valid, unauthenticated] {
        assert_eq!(r.status, 200);
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("text/html; charset=utf-8")
        );
        assert!(r.text.starts_with("<!DOCTYPE html>"), "{}", r.text);
        assert!(serde_json::from_str::<Value>(&r.text).is_err());
    }
    // ARM itself is not behind that gateway.
    let subs = env
        .get(
            &format!(
                "{}/subscriptions?api-version=2022-12-01",
                env.sim.management_url()
            ),
            Some(&token),
        )
        .await;
    assert_eq!(subs.status, 200);
    assert!(subs.json()["value"].is_array());

    let truth = anomaly_truth(&env).await;
    assert_eq!(truth["findings_reasons"], json!(["arg-html-200"]));
    assert_eq!(truth["run_status"], "partial");

    put_faults(&env, &json!({})).await;
    let r = arg_page(&env, &token, &json!({})).await;
    assert!(r.json()["data"].is_array());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn totals_mismatch_contradicts_counts_on_every_page() {
    let env = env(Scenario::Demo).await;
    let token = env.arm_token().await;
    let (rows, pages) = fetch_all(&env, &token, INDIVIDUAL, 4).await;
    assert_eq!(pages[0]["totalRecords"], rows.len());

    anomalies_on(&env, &["totals-mismatch"]).await;
    let mut served = Vec::new();
    let mut options = json!({"$top": 4});
    let mut n_pages = 0;
    loop {
        let r = arg_page(&env, &token, &options).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        let data = body["data"].as_array().unwrap();
        assert_eq!(body["count"], data.len() + 1, "count is one too many");
        assert_eq!(
            body["totalRecords"],
            rows.len() - 1,
            "totalRecords is one short"
        );
        served.extend(data.iter().cloned());
        n_pages += 1;
        match body["$skipToken"].as_str() {
            Some(tok) => options["$skipToken"] = json!(tok),
            None => break,
        }
        assert!(n_pages < 100);
    }
    assert_eq!(n_pages, pages.len());
    assert_eq!(served, rows, "the rows themselves are intact");

    let truth = anomaly_truth(&env).await;
    assert_eq!(truth["findings_reasons"], json!(["totals-mismatch"]));
    assert_eq!(truth["findings_complete"], false);
    assert_eq!(truth["run_status"], "partial");

    put_faults(&env, &json!({})).await;
    assert_eq!(fetch_all(&env, &token, INDIVIDUAL, 4).await.0, rows);
    env.sim.shutdown().await;
}

/// Follows `nextLink` from the registry list for at most `max` pages; returns the names served
/// and the URLs requested.
async fn registry_pages(env: &Env, token: &str, max: usize) -> (Vec<String>, Vec<String>) {
    let mut url = format!(
        "{}/subscriptions/{}/providers/Microsoft.ContainerRegistry/registries?api-version=2025-04-01",
        env.sim.management_url(),
        env.sim.credentials().subscription_id
    );
    let mut served = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..max {
        let r = env.get(&url, Some(token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        served.extend(names(&body["value"], "name"));
        urls.push(url.clone());
        match body["nextLink"].as_str() {
            Some(next) => next.clone_into(&mut url),
            None => break,
        }
    }
    (served, urls)
}

#[tokio::test]
async fn arm_nextlink_loop_at_end_serves_every_registry_then_repeats() {
    for (scenario, pages) in [(Scenario::Demo, 1), (Scenario::Small, 2)] {
        let env = env(scenario).await;
        let token = env.arm_token().await;
        let mut all = registry_names(&env);
        all.sort();
        let (mut normal, urls) = registry_pages(&env, &token, 10).await;
        normal.sort();
        assert_eq!((normal, urls.len()), (all.clone(), pages));

        anomalies_on(&env, &["arm-nextlink-loop-at-end"]).await;
        let (served, urls) = registry_pages(&env, &token, pages + 3).await;
        assert_eq!(urls.len(), pages + 3, "the listing does not end");
        let distinct: BTreeSet<String> = served.iter().cloned().collect();
        assert_eq!(
            distinct.into_iter().collect::<Vec<_>>(),
            all,
            "every registry is served"
        );
        let mut first_pass = served[..all.len()].to_vec();
        first_pass.sort();
        assert_eq!(first_pass, all, "all of them before the loop");
        // From the last page on, the same nextLink comes back forever.
        let tail = &urls[pages..];
        assert!(tail.windows(2).all(|w| w[0] == w[1]), "{urls:?}");
        // The subscription list is not affected.
        let subs = env
            .get(
                &format!(
                    "{}/subscriptions?api-version=2022-12-01",
                    env.sim.management_url()
                ),
                Some(&token),
            )
            .await
            .json();
        assert!(subs.get("nextLink").is_none());

        let truth = anomaly_truth(&env).await;
        assert_eq!(truth["registry_listing_complete"], false);
        assert_eq!(truth["findings_complete"], true);
        assert_eq!(names(&truth["covered_registries"], "name").len(), all.len());
        assert_eq!(
            truth["may_resolve_registries"].as_array().unwrap().len(),
            all.len()
        );
        assert_eq!(truth["run_status"], "partial");

        put_faults(&env, &json!({})).await;
        assert_eq!(registry_pages(&env, &token, 10).await.1.len(), pages);
        env.sim.shutdown().await;
    }
}

/// Follows the catalog's `Link` for at most `max` pages; returns the repositories served and the
/// `Link` headers seen.
async fn catalog_pages(
    env: &Env,
    login: &str,
    token: &str,
    path: &str,
    n: usize,
    max: usize,
) -> (Vec<String>, Vec<String>) {
    let mut url = format!("https://{login}{path}?n={n}");
    let mut repos = Vec::new();
    let mut links = Vec::new();
    for _ in 0..max {
        let r = env.get(&url, Some(token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if let Some(list) = r.json()["repositories"].as_array() {
            repos.extend(list.iter().map(|v| v.as_str().unwrap().to_owned()));
        }
        let Some(link) = r.header("link") else { break };
        let target = link
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .unwrap()
            .0
            .to_owned();
        url = format!("https://{login}{target}");
        links.push(link);
    }
    (repos, links)
}

#[tokio::test]
async fn acr_catalog_loop_links_the_last_page_back_to_the_first() {
    let env = env(Scenario::Demo).await;
    anomalies_on(&env, &["acr-catalog-loop"]).await;
    let truth = anomaly_truth(&env).await;
    let target = truth["target_registry"].as_str().unwrap().to_owned();
    assert_eq!(
        target, "contosodev",
        "the first readable registry by ARM id"
    );
    put_faults(&env, &json!({})).await;

    let login = env.sim.login_server(&target).unwrap();
    let token = env.acr_token(&login, "registry:catalog:*").await;
    let (repos, links) = catalog_pages(&env, &login, &token, "/v2/_catalog", 1, 10).await;
    assert_eq!(repos.len(), 3);
    assert_eq!(links.len(), 2, "a normal catalog ends");

    anomalies_on(&env, &["acr-catalog-loop"]).await;
    for path in ["/v2/_catalog", "/acr/v1/_catalog"] {
        // One repository a page: the pages are served, then the last one links to the first.
        let (looped, links) = catalog_pages(&env, &login, &token, path, 1, 8).await;
        assert_eq!(looped.len(), 8, "the listing never ends");
        assert_eq!(looped[..3], repos[..], "every repository comes first");
        assert_eq!(looped[3..6], repos[..], "then again from the first page");
        assert_eq!(
            links[2],
            format!("<{path}?last=&n=1&orderby=>; rel=\"next\""),
            "the last page links back to the first"
        );
        // All repositories in one page: that page links to itself.
        let (one, links) = catalog_pages(&env, &login, &token, path, 100, 3).await;
        assert_eq!(one.len(), 9);
        assert!(links.iter().all(|l| l.contains("?last=&n=100&orderby=")));
    }
    // Other registries end their catalog as usual.
    let other = env.sim.login_server("contosoprod").unwrap();
    let other_token = env.acr_token(&other, "registry:catalog:*").await;
    let (_, links) = catalog_pages(&env, &other, &other_token, "/v2/_catalog", 100, 3).await;
    assert!(links.is_empty());

    let truth = anomaly_truth(&env).await;
    assert_eq!(
        truth["uncovered_registries"],
        json!([{"name": "contosodev", "login_server": login, "reason": "catalog-loop"}])
    );
    let mut covered = names(&truth["covered_registries"], "name");
    covered.sort();
    assert_eq!(covered, ["contosolegacy", "contosoprod"]);
    assert_eq!(truth["findings_complete"], true);
    let mut resolvable: Vec<String> = truth["may_resolve_registries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    resolvable.sort();
    assert_eq!(resolvable, covered);
    assert_eq!(truth["run_status"], "partial");

    put_faults(&env, &json!({})).await;
    let (_, links) = catalog_pages(&env, &login, &token, "/v2/_catalog", 100, 3).await;
    assert!(links.is_empty(), "switched off, the catalog ends again");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn one_registry_forbidden_denies_the_data_plane_but_not_arm_or_arg() {
    let env = env(Scenario::Demo).await;
    let arm = env.arm_token().await;
    let (rows, _) = fetch_all(&env, &arm, INDIVIDUAL, 1000).await;
    anomalies_on(&env, &["one-registry-forbidden"]).await;
    let truth = anomaly_truth(&env).await;
    let target = truth["target_registry"].as_str().unwrap().to_owned();
    let login = env.sim.login_server(&target).unwrap();

    // The exchange and the token succeed; the token grants nothing and reads are denied.
    let token = env.acr_token_with(&arm, &login, "registry:catalog:*").await;
    for path in ["/v2/_catalog", "/acr/v1/_catalog", "/v2/"] {
        let r = env
            .get(&format!("https://{login}{path}"), Some(&token))
            .await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
        assert_eq!(
            r.json(),
            json!({"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]})
        );
        assert_eq!(r.header("server").as_deref(), Some("openresty"));
    }
    // Another registry is readable.
    let other = env.sim.login_server("contosoprod").unwrap();
    let other_token = env.acr_token_with(&arm, &other, "registry:catalog:*").await;
    let r = env
        .get(&format!("https://{other}/v2/_catalog"), Some(&other_token))
        .await;
    assert_eq!(r.status, 200);
    // ARM still lists it, Resource Graph still reports its findings.
    let (listed, _) = registry_pages(&env, &arm, 10).await;
    assert!(listed.contains(&target));
    let (still, _) = fetch_all(&env, &arm, INDIVIDUAL, 1000).await;
    assert_eq!(still, rows);
    let target_arm_id = env
        .sim
        .ground_truth()
        .registries()
        .into_iter()
        .find(|r| r.name == target)
        .unwrap()
        .arm_id;
    assert!(rows.iter().any(|r| registry_of(r) == target_arm_id));

    let gt = ground_truth(&env).await;
    let readable: BTreeMap<String, bool> = gt["registries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["data_plane_readable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(!readable[&target]);
    assert!(readable["contosoprod"]);
    let truth = &gt["anomaly"];
    assert_eq!(
        truth["uncovered_registries"],
        json!([{"name": target, "login_server": login, "reason": "forbidden"}])
    );
    assert_eq!(truth["findings_complete"], true);
    assert_eq!(truth["may_resolve_registries"].as_array().unwrap().len(), 2);
    assert_eq!(truth["run_status"], "partial");
    let api = env.sim.ground_truth().anomaly();
    assert!(!api.may_resolve_in(&login));
    assert!(api.may_resolve_in(&other));

    put_faults(&env, &json!({})).await;
    let token = env.acr_token_with(&arm, &login, "registry:catalog:*").await;
    let r = env
        .get(&format!("https://{login}/v2/_catalog"), Some(&token))
        .await;
    assert_eq!(
        r.status, 200,
        "switched off, the registry is readable again"
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn unknown_anomaly_names_are_refused_and_leave_the_faults_alone() {
    let env = env(Scenario::Demo).await;
    anomalies_on(&env, &["arg-null-data"]).await;
    let r = env
        .send(
            env.http
                .put(format!("{}/_sim/faults", env.sim.management_url()))
                .body(json!({"anomalies": ["arg-nul-data"]}).to_string()),
        )
        .await;
    assert_eq!(r.status, 400);
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("arg-nul-data") && msg.contains("arg-null-data"),
        "{msg}"
    );
    assert_eq!(env.sim.faults().anomalies, [Anomaly::ArgNullData]);
    let faults = env
        .get(&format!("{}/_sim/faults", env.sim.management_url()), None)
        .await
        .json();
    assert_eq!(faults["anomalies"], json!(["arg-null-data"]));
    put_faults(&env, &json!({})).await;
    let faults = env
        .get(&format!("{}/_sim/faults", env.sim.management_url()), None)
        .await
        .json();
    assert!(faults.get("anomalies").is_none(), "left out when empty");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn the_ground_truth_adds_up_anomalies_and_the_tenant_spec() {
    // Without anomalies: the demo is covered completely, hostile has two unreadable registries.
    let demo = env(Scenario::Demo).await;
    let plain = demo.sim.ground_truth().anomaly();
    assert!(plain.active.is_empty());
    assert_eq!(plain.covered_registries.len(), 3);
    assert!(plain.uncovered_registries.is_empty());
    assert_eq!(plain.run_status, RunStatus::Complete);
    assert_eq!(plain.may_resolve_registries.len(), 3);

    // Both registry anomalies hit the same registry; forbidden wins. Two ARG anomalies add up.
    anomalies_on(
        &demo,
        &[
            "acr-catalog-loop",
            "one-registry-forbidden",
            "arg-empty-after-full",
            "arg-null-data",
        ],
    )
    .await;
    let truth = anomaly_truth(&demo).await;
    assert_eq!(
        truth["active"],
        json!([
            "arg-null-data",
            "arg-empty-after-full",
            "acr-catalog-loop",
            "one-registry-forbidden"
        ])
    );
    assert_eq!(
        names(&truth["uncovered_registries"], "reason"),
        ["forbidden"]
    );
    assert_eq!(
        truth["findings_reasons"],
        json!(["arg-null-data", "arg-empty-after-full"])
    );
    assert_eq!(truth["run_status"], "partial");
    demo.sim.shutdown().await;

    let hostile = env(Scenario::Hostile).await;
    let truth = hostile.sim.ground_truth().anomaly();
    let reasons: BTreeMap<String, &str> = truth
        .uncovered_registries
        .iter()
        .map(|r| (r.name.clone(), r.reason))
        .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("fabrikamprivate".to_owned(), "private-network"),
            ("fabrikamsecret".to_owned(), "forbidden"),
        ])
    );
    assert_eq!(truth.run_status, RunStatus::Partial);
    hostile.sim.shutdown().await;
}
