use std::time::Duration;

use azure_sim::{FaultSpec, Scenario, SimOptions};
use serde_json::json;

use crate::arg::INDIVIDUAL;
use crate::common::{Env, start};

/// One GET with up to `tries` attempts, as a well-behaved client retries; returns every status
/// seen (0 = connection reset).
async fn get_retrying(env: &Env, url: &str, token: &str, tries: usize) -> Vec<u16> {
    let mut seen = Vec::new();
    for _ in 0..tries {
        match env.http.get(url).bearer_auth(token).send().await {
            Err(_) => seen.push(0),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let html = resp
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/html"));
                let text = resp.text().await.unwrap_or_default();
                let json_ok = serde_json::from_str::<serde_json::Value>(&text).is_ok();
                seen.push(if status == 200 && (html || !json_ok) {
                    299
                } else {
                    status
                });
                if status == 200 && json_ok && !html {
                    return seen;
                }
            }
        }
    }
    seen
}

fn opts(seed: u64, faults: FaultSpec) -> SimOptions {
    let mut o = SimOptions::new(Scenario::Small).seed(seed);
    o.faults = faults;
    o.throttling = false;
    o
}

async fn scan_statuses(seed: u64) -> Vec<Vec<u16>> {
    let faults = FaultSpec {
        throttle_share: 0.1,
        server_error_share: 0.1,
        reset_share: 0.1,
        truncate_share: 0.1,
        html_share: 0.1,
        ..FaultSpec::default()
    };
    let env = start(opts(seed, FaultSpec::default())).await;
    let token = env.arm_token().await;
    env.sim.set_faults(faults);
    let base = env.sim.management_url();
    let sub = env.sim.credentials().subscription_id;
    let mut all = Vec::new();
    for i in 0..30 {
        // Distinct URLs: a fault is decided per request fingerprint.
        let url = format!("{base}/subscriptions/{sub}?api-version=2022-12-01&n={i}");
        let seen = get_retrying(&env, &url, &token, 5).await;
        assert_eq!(
            seen.last(),
            Some(&200),
            "request {i} recovers on retry: {seen:?}"
        );
        all.push(seen);
    }
    let stats = env.sim.stats();
    let faulted: u64 = ["throttle", "server_error", "reset", "truncate", "html"]
        .iter()
        .map(|k| stats.faults(k))
        .sum();
    assert_eq!(faulted as usize, all.iter().filter(|s| s.len() > 1).count());
    env.sim.shutdown().await;
    all
}

#[tokio::test]
async fn transient_faults_hit_once_and_replay_for_a_seed() {
    let a = scan_statuses(11).await;
    let b = scan_statuses(11).await;
    let c = scan_statuses(12).await;
    assert_eq!(a, b, "same seed, same faults");
    assert_ne!(a, c, "another seed, other faults");
    let kinds: std::collections::BTreeSet<u16> = a
        .iter()
        .flat_map(|s| s[..s.len() - 1].iter().copied())
        .collect();
    assert!(kinds.len() >= 3, "several fault kinds show up: {kinds:?}");
}

#[tokio::test]
async fn each_transient_kind_looks_like_azure() {
    let env = start(opts(5, FaultSpec::default())).await;
    let token = env.arm_token().await;
    let url = format!(
        "{}/subscriptions?api-version=2022-12-01",
        env.sim.management_url()
    );
    let set = |f: FaultSpec| env.sim.set_faults(f);

    set(FaultSpec {
        server_error_share: 1.0,
        ..FaultSpec::default()
    });
    let r = env.get(&format!("{url}&k=1"), Some(&token)).await;
    assert!([500, 502, 503, 504].contains(&r.status));
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        env.get(&format!("{url}&k=1"), Some(&token)).await.status,
        200
    );

    set(FaultSpec {
        throttle_share: 1.0,
        ..FaultSpec::default()
    });
    let r = env.get(&format!("{url}&k=2"), Some(&token)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));

    set(FaultSpec {
        html_share: 1.0,
        ..FaultSpec::default()
    });
    let r = env.get(&format!("{url}&k=3"), Some(&token)).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text.contains("<html>"));

    set(FaultSpec {
        truncate_share: 1.0,
        ..FaultSpec::default()
    });
    let r = env.get(&format!("{url}&k=4"), Some(&token)).await;
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_str::<serde_json::Value>(&r.text).is_err(),
        "truncated JSON"
    );

    set(FaultSpec {
        reset_share: 1.0,
        ..FaultSpec::default()
    });
    assert!(
        env.http
            .get(format!("{url}&k=5"))
            .bearer_auth(&token)
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        env.get(&format!("{url}&k=5"), Some(&token)).await.status,
        200
    );
    assert_eq!(env.sim.stats().count("arm.subscriptions", 0), 1);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn structural_faults_persist() {
    let env = start(opts(5, FaultSpec::default())).await;
    let token = env.arm_token().await;
    env.sim.set_faults(FaultSpec {
        repeat_page_token: true,
        ..FaultSpec::default()
    });
    let sub = env.sim.credentials().subscription_id;
    let body = json!({"subscriptions": [sub], "query": INDIVIDUAL, "options": {"$top": 2}});
    let first = env
        .post_json(&env.arg_url(), Some(&token), &body)
        .await
        .json();
    let tok = first["$skipToken"].as_str().unwrap().to_owned();
    let mut again = body.clone();
    again["options"]["$skipToken"] = json!(tok);
    for _ in 0..3 {
        let page = env
            .post_json(&env.arg_url(), Some(&token), &again)
            .await
            .json();
        assert_eq!(page["$skipToken"], tok.as_str(), "the token repeats");
    }
    let regs = format!(
        "{}/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries?api-version=2025-04-01",
        env.sim.management_url()
    );
    let p1 = env.get(&regs, Some(&token)).await.json();
    let next = p1["nextLink"].as_str().unwrap().to_owned();
    let p2 = env.get(&next, Some(&token)).await.json();
    assert_eq!(p2["nextLink"], next.as_str(), "the nextLink repeats");

    env.sim.set_faults(FaultSpec {
        arg_zero_rows: true,
        ..FaultSpec::default()
    });
    for _ in 0..2 {
        let page = env
            .post_json(&env.arg_url(), Some(&token), &body)
            .await
            .json();
        assert_eq!(
            (page["totalRecords"].as_u64(), page["count"].as_u64()),
            (Some(0), Some(0))
        );
    }
    env.sim.shutdown().await;
}

#[tokio::test]
async fn tokens_can_expire_mid_scan() {
    let env = start(opts(5, FaultSpec::default())).await;
    let token = env.arm_token().await;
    let url = format!(
        "{}/subscriptions?api-version=2022-12-01",
        env.sim.management_url()
    );
    assert_eq!(env.get(&url, Some(&token)).await.status, 200);
    env.sim.set_faults(FaultSpec {
        token_max_age_secs: Some(1),
        ..FaultSpec::default()
    });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = env.get(&url, Some(&token)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "ExpiredAuthenticationToken");
    let fresh = env.arm_token().await;
    assert_eq!(env.get(&url, Some(&fresh)).await.status, 200);
    env.sim.shutdown().await;
}
