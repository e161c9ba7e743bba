//! The large scenario: about a million findings without holding the tenant in memory. Prints
//! peak RSS and serve rates (a measurement, not a timed assertion); asserts the memory bound.

use std::time::Instant;

use azure_sim::{Scenario, SimOptions, Simulator, peak_rss_bytes};
use serde_json::json;

const INDIVIDUAL: &str = "securityresources\n| where type == \"microsoft.security/assessments\"\n| where properties.metadata.recommendationCategory == \"SoftwareUpdate\"\n| where properties.resourceDetails.ResourceType == \".containerimage\"\n| where properties.resourceDetails.Source == \"Azure\"\n| project id, name, type, subscriptionId, resourceGroup, properties\n| order by id asc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn large_tenant_holds_a_million_findings_in_little_memory() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut opts = SimOptions::new(Scenario::Large);
    opts.throttling = false;
    let sim = Simulator::start(opts).await.unwrap();

    let t0 = Instant::now();
    let truth = sim.ground_truth();
    let findings = truth.findings().count();
    let truth_secs = t0.elapsed().as_secs_f64();
    let images = 200_000;
    eprintln!(
        "large: {findings} open findings over {images} images, ground truth walked in {truth_secs:.1} s ({:.0} findings/s)",
        findings as f64 / truth_secs
    );
    assert!(findings >= 900_000, "{findings}");

    let ca = reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap();
    let mut b = reqwest::Client::builder().tls_certs_only([ca]).no_proxy();
    for n in sim.host_names() {
        b = b.resolve(&n, sim.addr());
    }
    let http = b.build().unwrap();
    let c = sim.credentials();
    let tok: serde_json::Value = serde_json::from_str(
        &http
            .post(format!("{}/{}/oauth2/v2.0/token", sim.login_url(), c.tenant_id))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("client_id={}&client_secret={}&grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default", c.client_id, c.client_secret))
            .send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    let token = tok["access_token"].as_str().unwrap().to_owned();
    let url = format!(
        "{}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
        sim.management_url()
    );
    let pages = 10;
    let mut skip: Option<String> = None;
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let mut total = 0u64;
    let t1 = Instant::now();
    for _ in 0..pages {
        let mut options = json!({"$top": 1000, "resultFormat": "objectArray"});
        if let Some(s) = &skip {
            options["$skipToken"] = json!(s);
        }
        let body =
            json!({"subscriptions": [c.subscription_id], "query": INDIVIDUAL, "options": options});
        let text = http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        bytes += text.len();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        rows += v["data"].as_array().unwrap().len();
        total = v["totalRecords"].as_u64().unwrap();
        skip = v["$skipToken"].as_str().map(str::to_owned);
    }
    let secs = t1.elapsed().as_secs_f64();
    eprintln!(
        "large: served {pages} ARG pages ({rows} rows, {:.1} MiB) over TLS in {secs:.2} s: {:.1} pages/s, {:.0} rows/s; totalRecords {total}",
        bytes as f64 / 1_048_576.0,
        pages as f64 / secs,
        rows as f64 / secs
    );
    assert_eq!(rows, pages * 1000);
    let rss = peak_rss_bytes().unwrap_or(0);
    eprintln!("large: peak RSS {:.1} MiB", rss as f64 / 1_048_576.0);
    assert!(rss < 300 * 1024 * 1024, "peak RSS {rss}");
    sim.shutdown().await;
}
