use std::time::Duration;

use azure_sim::{Limits, Scenario, SimOptions};

use crate::common::{assert_shape, sample, start};

#[tokio::test]
async fn subscriptions_match_the_sample() {
    let env = start(SimOptions::new(Scenario::Demo)).await;
    let token = env.arm_token().await;
    let c = env.sim.credentials();
    let url = format!(
        "{}/subscriptions?api-version=2022-12-01",
        env.sim.management_url()
    );
    let r = env.get(&url, Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let expected = sample("arm-resources-GetSubscriptions-2022-12-01.json");
    let expected = &expected["responses"]["200"]["body"];
    // The sample has a nextLink; a one-subscription tenant has none.
    assert_shape(expected, &body, "subscriptions", &[], &["nextLink"]);
    assert_eq!(
        body["value"][0]["subscriptionId"],
        c.subscription_id.as_str()
    );
    assert_eq!(body["value"][0]["tenantId"], c.tenant_id.as_str());
    assert!(r.header("x-ms-ratelimit-remaining-tenant-reads").is_some());
    for h in [
        "x-ms-request-id",
        "x-ms-correlation-request-id",
        "x-ms-routing-request-id",
    ] {
        assert!(r.header(h).is_some(), "{h}");
    }
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));

    let one = env
        .get(
            &format!(
                "{}/subscriptions/{}?api-version=2022-12-01",
                env.sim.management_url(),
                c.subscription_id
            ),
            Some(&token),
        )
        .await;
    assert_eq!(one.status, 200);
    assert_shape(&expected["value"][0], &one.json(), "subscription", &[], &[]);
    assert_eq!(
        one.header("x-ms-ratelimit-remaining-subscription-reads")
            .as_deref(),
        Some("249")
    );
    assert_eq!(
        one.header("x-ms-ratelimit-remaining-subscription-global-reads")
            .as_deref(),
        Some("3749")
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn registries_page_with_next_link_and_match_the_sample() {
    let env = start(SimOptions::new(Scenario::Small)).await;
    let token = env.arm_token().await;
    let c = env.sim.credentials();
    let mut url = format!(
        "{}/subscriptions/{}/providers/Microsoft.ContainerRegistry/registries?api-version=2025-04-01",
        env.sim.management_url(),
        c.subscription_id
    );
    let expected = sample("arm-containerregistry-RegistryList-2025-04-01.json");
    let expected = &expected["responses"]["200"]["body"]["value"][0];
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let r = env.get(&url, Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        pages += 1;
        for reg in body["value"].as_array().unwrap() {
            assert_shape(expected, reg, "registry", &[], &[]);
            let name = reg["name"].as_str().unwrap().to_owned();
            assert_eq!(
                reg["properties"]["loginServer"],
                format!("{name}.azurecr.sim.localhost:{}", env.sim.port()).as_str()
            );
            names.push(name);
        }
        match body["nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 2, "small pages two registries at a time");
    let mut truth: Vec<String> = env
        .sim
        .ground_truth()
        .registries()
        .into_iter()
        .map(|r| r.name)
        .collect();
    truth.sort();
    names.sort();
    assert_eq!(names, truth);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn arm_errors_use_the_cloud_error_envelope() {
    let mut opts = SimOptions::new(Scenario::Demo);
    opts.token_lifetime = Duration::from_secs(1);
    let env = start(opts).await;
    let c = env.sim.credentials();
    let base = env.sim.management_url();
    let regs = format!(
        "{base}/subscriptions/{}/providers/Microsoft.ContainerRegistry/registries",
        c.subscription_id
    );
    let token = env.arm_token().await;

    let r = env
        .get(&format!("{regs}?api-version=2025-04-01"), None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "AuthenticationFailed");
    assert_eq!(
        r.json()["error"]["message"],
        "Authentication failed. The 'Authorization' header is missing."
    );
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.starts_with(&format!(
            "Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\"",
            env.sim.login_url(),
            c.tenant_id
        )),
        "{www}"
    );

    let r = env
        .get(
            &format!("{regs}?api-version=2025-04-01"),
            Some("not-a-token"),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str().unwrap()),
        (401, "InvalidAuthenticationToken")
    );

    let acr = env
        .token_for(&c, "https://containerregistry.azure.net/.default")
        .await;
    let r = env
        .get(&format!("{regs}?api-version=2025-04-01"), Some(&acr))
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong audience")
    );

    let r = env.get(&regs, Some(&token)).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str().unwrap()),
        (400, "MissingApiVersionParameter")
    );
    let r = env
        .get(&format!("{regs}?api-version=2099-01-01"), Some(&token))
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str().unwrap()),
        (400, "NoRegisteredProviderFound")
    );
    let r = env
        .get(
            &format!("{base}/subscriptions?api-version=1999-01-01"),
            Some(&token),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str().unwrap()),
        (400, "InvalidApiVersionParameter")
    );

    let r = env.get(&format!("{base}/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.ContainerRegistry/registries?api-version=2025-04-01"), Some(&token)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "SubscriptionNotFound");
    assert_eq!(
        r.json()["error"]["message"],
        "The subscription '00000000-0000-0000-0000-000000000000' could not be found."
    );

    let norole = env
        .token_for(
            &env.sim.no_role_client(),
            "https://management.azure.com/.default",
        )
        .await;
    let r = env
        .get(&format!("{regs}?api-version=2025-04-01"), Some(&norole))
        .await;
    assert_eq!(r.status, 403);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["error"]["code"], "AuthorizationFailed");
    assert!(msg.contains("does not have authorization to perform action 'Microsoft.ContainerRegistry/registries/read' over scope"), "{msg}");
    let r = env
        .get(
            &format!("{base}/subscriptions?api-version=2022-12-01"),
            Some(&norole),
        )
        .await;
    assert_eq!(r.json()["value"], serde_json::json!([]));

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = env
        .get(&format!("{regs}?api-version=2025-04-01"), Some(&token))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "ExpiredAuthenticationToken");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.starts_with("The access token expiry UTC time '")
            && msg.contains("M' is earlier than current UTC time '"),
        "{msg}"
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn arm_reads_are_throttled_by_a_token_bucket() {
    let mut opts = SimOptions::new(Scenario::Demo);
    opts.limits = Limits {
        arm_reads_capacity: 3,
        arm_reads_per_sec: 0.01,
        ..Limits::default()
    };
    let env = start(opts).await;
    let token = env.arm_token().await;
    let url = format!(
        "{}/subscriptions/{}?api-version=2022-12-01",
        env.sim.management_url(),
        env.sim.credentials().subscription_id
    );
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = env.get(&url, Some(&token)).await;
        assert_eq!(r.status, 200);
        remaining.push(
            r.header("x-ms-ratelimit-remaining-subscription-reads")
                .unwrap(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = env.get(&url, Some(&token)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "SubscriptionRequestsThrottled");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(env.sim.stats().count("arm.subscription", 429), 1);
    env.sim.shutdown().await;
}
