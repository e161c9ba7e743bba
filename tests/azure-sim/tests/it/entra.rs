use azure_sim::{Scenario, SimOptions};
use serde_json::Value;

use crate::common::{assert_shape, sample, start};

fn check_error(body: &Value, error: &str, code: u64, text_start: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]));
    let desc = body["error_description"].as_str().unwrap();
    assert!(
        desc.starts_with(&format!("AADSTS{code}: {text_start}")),
        "{desc}"
    );
    assert!(
        desc.contains("\r\nTrace ID: ")
            && desc.contains("\r\nCorrelation ID: ")
            && desc.contains("\r\nTimestamp: ")
    );
    // `2020-04-07 20:52:51Z`
    let ts = body["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), 20, "{ts}");
    assert_eq!(&ts[10..11], " ");
    assert!(ts.ends_with('Z'));
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 36);
    assert_shape(
        &sample("entra-token-v2-error-invalid_scope.json"),
        body,
        "error",
        &["error_uri"],
        &[],
    );
}

#[tokio::test]
async fn token_success_matches_the_sample_and_headers() {
    let env = start(SimOptions::new(Scenario::Demo)).await;
    let c = env.sim.credentials();
    let r = env
        .token_reply(&c, "https://management.azure.com/.default")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_shape(
        &sample("entra-token-v2-success.json"),
        &body,
        "token",
        &["ext_expires_in"],
        &[],
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("no-store, no-cache")
    );
    assert_eq!(r.header("pragma").as_deref(), Some("no-cache"));
    assert_eq!(r.header("expires").as_deref(), Some("-1"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert!(r.header("x-ms-request-id").is_some());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn every_documented_audience_is_accepted() {
    let env = start(SimOptions::new(Scenario::Demo)).await;
    let c = env.sim.credentials();
    let mgmt = format!("{}/.default", env.sim.management_url());
    for scope in [
        "https://management.azure.com/.default",
        "https://management.core.windows.net/.default",
        "https://management.core.windows.net//.default",
        mgmt.as_str(),
        "https://containerregistry.azure.net/.default",
    ] {
        let r = env.token_reply(&c, scope).await;
        assert_eq!(r.status, 200, "{scope}: {}", r.text);
    }
    // HTTP Basic client authentication (RFC 6749 §2.3.1) instead of form fields.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", c.client_id, c.client_secret));
    let r = env
        .send(
            env.http
                .post(env.token_url(&c.tenant_id))
                .header("authorization", format!("Basic {basic}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn token_errors_follow_the_entra_matrix() {
    let env = start(SimOptions::new(Scenario::Demo)).await;
    let arm = "https://management.azure.com/.default";

    let r = env.token_reply(&env.sim.wrong_secret(), arm).await;
    assert_eq!(r.status, 401);
    check_error(
        &r.json(),
        "invalid_client",
        7_000_215,
        "Invalid client secret provided.",
    );

    let r = env.token_reply(&env.sim.expired_secret_client(), arm).await;
    assert_eq!(r.status, 401);
    check_error(
        &r.json(),
        "invalid_client",
        7_000_222,
        "The provided client secret keys for app '",
    );

    let r = env.token_reply(&env.sim.unknown_client(), arm).await;
    assert_eq!(r.status, 400);
    check_error(
        &r.json(),
        "unauthorized_client",
        700_016,
        "Application with identifier '",
    );

    let unknown = env.sim.unknown_tenant();
    let r = env.token_reply(&unknown, arm).await;
    assert_eq!(r.status, 400);
    let body = r.json();
    check_error(
        &body,
        "invalid_request",
        90_002,
        &format!("Tenant '{}' not found.", unknown.tenant_id),
    );

    let r = env
        .token_reply(&env.sim.credentials(), "https://foo.microsoft.com/.default")
        .await;
    assert_eq!(r.status, 400);
    check_error(
        &r.json(),
        "invalid_scope",
        70_011,
        "The provided value for the input parameter 'scope' is not valid. The scope https://foo.microsoft.com/.default is not valid.",
    );

    let r = env
        .token_reply(
            &env.sim.credentials(),
            "https://management.azure.com/.default https://containerregistry.azure.net/.default",
        )
        .await;
    assert_eq!(r.status, 400);
    check_error(
        &r.json(),
        "invalid_scope",
        28_000,
        "Provided value for the input parameter scope is not valid because it contains more than one resource.",
    );

    let r = env.token_reply(&env.sim.credentials(), "").await;
    assert_eq!(r.status, 400);
    check_error(
        &r.json(),
        "invalid_request",
        900_144,
        "The request body must contain the following parameter: 'scope'.",
    );

    // Nothing in any error names the secret.
    let secret = env.sim.credentials().client_secret;
    for c in [env.sim.wrong_secret(), env.sim.expired_secret_client()] {
        let r = env.token_reply(&c, arm).await;
        assert!(!r.text.contains(&secret) && !r.text.contains(&c.client_secret));
    }
    env.sim.shutdown().await;
}
