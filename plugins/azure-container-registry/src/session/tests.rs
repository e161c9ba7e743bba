//! Session flows against an in-process fake of Azure (a transport closure): token reuse,
//! retries, paging, loop detection, permission errors, and request counts.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use keelson_plugin_sdk::http::{Client, Header, HttpError, Method, RawResponse, Request};
use keelson_plugin_sdk::{ConnectorError, ImageRef, PageRequest, ScanScope, Session, Settings};
use serde_json::{Value, json};

use super::AcrSession;
use crate::config::Config;
use crate::testdata;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "CANARY-7f3e+secret/=";
const SUB: &str = "00000000-0000-0000-0000-000000000001";
const ARM: &str = "https://management.azure.com";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn now() -> u64 {
    1_000_000
}

fn response(status: u16, body: &Value) -> RawResponse {
    RawResponse {
        status,
        headers: vec![Header {
            name: "Content-Type".into(),
            value: "application/json; charset=utf-8".into(),
        }],
        body: body.to_string().into_bytes(),
    }
}

fn with_header(mut r: RawResponse, name: &str, value: &str) -> RawResponse {
    r.headers.push(Header {
        name: name.into(),
        value: value.into(),
    });
    r
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn form(req: &Request) -> HashMap<String, String> {
    String::from_utf8(req.body.clone())
        .unwrap()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn bearer(req: &Request) -> Option<String> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .and_then(|h| h.value.strip_prefix("Bearer ").map(str::to_owned))
}

fn registry_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

fn registry_json(name: &str) -> Value {
    json!({
        "id": registry_id(name), "name": name, "location": "westeurope",
        "sku": {"name": "Premium", "tier": "Premium"},
        "properties": {"loginServer": format!("{name}.azurecr.io"), "publicNetworkAccess": "Enabled",
                        "networkRuleSet": {"defaultAction": "Deny"}}
    })
}

fn registries_url() -> String {
    format!(
        "{ARM}/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/registries?api-version=2025-04-01"
    )
}

fn page2_url() -> String {
    format!("{}&$skipToken=page2", registries_url())
}

/// An individual-recommendation row for `registry`'s `team/api` image, listing `cves`.
fn individual_row(registry: &str, name: &str, cves: &[&str]) -> Value {
    let details: Vec<Value> = cves
        .iter()
        .map(|c| json!({"CveId": c, "Severity": "High", "FixedVersion": ""}))
        .collect();
    json!({
        "id": format!("{}/providers/Microsoft.Security/assessments/{name}", registry_id(registry)),
        "name": name, "type": "microsoft.security/assessments",
        "properties": {
            "status": {"code": "Unhealthy"},
            "metadata": {"severity": "Medium"},
            "resourceAdditionalData": json!({"Digest": DIGEST, "RegistryHost": format!("{registry}.azurecr.io"),
                "RepositoryDetails": {"RepositoryName": "team/api", "LastPushedToRegistryUTC": "2026-08-01T00:00:00Z"},
                "Tags": ["1.0"]}).to_string(),
            "additionalData": {"SoftwareName": "openssl", "CvesDetails": Value::Array(details).to_string()}
        }
    })
}

/// A fake of Entra ID, Resource Manager, Resource Graph and two registries (`alpha`, `beta`
/// on the first registry page, `gamma` on the second).
fn standard(req: &Request) -> RawResponse {
    let url = req.url.as_str();
    if url == format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token") {
        let f = form(req);
        assert_eq!(f["client_secret"], SECRET);
        assert_eq!(f["grant_type"], "client_credentials");
        assert_eq!(f["scope"], "https://management.azure.com/.default");
        return response(
            200,
            &json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "arm-token"}),
        );
    }
    if url.starts_with(ARM) {
        assert!(
            bearer(req).is_some_and(|t| t.starts_with("arm-token")),
            "ARM call without token: {url}"
        );
    }
    if url == format!("{ARM}/subscriptions/{SUB}?api-version=2022-12-01") {
        return response(
            200,
            &json!({"subscriptionId": SUB, "displayName": "Production", "state": "Enabled"}),
        );
    }
    if url == registries_url() {
        return response(
            200,
            &json!({"value": [registry_json("alpha"), registry_json("beta")], "nextLink": page2_url()}),
        );
    }
    if url == page2_url() {
        return response(200, &json!({"value": [registry_json("gamma")]}));
    }
    if url == format!("{ARM}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01") {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let query = body["query"].as_str().unwrap();
        assert_eq!(body["subscriptions"], json!([SUB]));
        if query.contains("c0b7cfc6") || query.contains("dbd0cb49") {
            return response(200, &json!({"count": 0, "data": []}));
        }
        return response(
            200,
            &json!({"count": 1, "data": [individual_row("alpha", "a1", &["CVE-1", "CVE-2"])]}),
        );
    }
    if let Some(rest) = url.strip_prefix("https://") {
        let (host, path) = rest.split_once('/').unwrap();
        let path = format!("/{path}");
        if path == "/oauth2/exchange" {
            let f = form(req);
            assert_eq!(f["grant_type"], "access_token");
            assert_eq!(f["service"], host);
            assert!(f["access_token"].starts_with("arm-token"));
            return response(200, &json!({"refresh_token": format!("refresh-{host}")}));
        }
        if path == "/oauth2/token" {
            let f = form(req);
            assert_eq!(f["refresh_token"], format!("refresh-{host}"));
            return response(
                200,
                &json!({"access_token": format!("access|{host}|{}", f["scope"])}),
            );
        }
        let scope = if path.starts_with("/acr/v1/_catalog") {
            "registry:catalog:*".to_owned()
        } else {
            let repo = path
                .trim_start_matches("/acr/v1/")
                .split("/_manifests")
                .next()
                .unwrap();
            format!("repository:{}:metadata_read", percent_decode(repo))
        };
        if bearer(req) != Some(format!("access|{host}|{scope}")) {
            return with_header(
                response(401, &json!({"errors": [{"code": "UNAUTHORIZED"}]})),
                "WWW-Authenticate",
                &format!(
                    "Bearer realm=\"https://{host}/oauth2/token\",service=\"{host}\",scope=\"{scope}\""
                ),
            );
        }
        if path.starts_with("/acr/v1/_catalog") {
            if path.contains("last=team%2Fapi") {
                return response(200, &json!({"repositories": ["web"]}));
            }
            return with_header(
                response(200, &json!({"repositories": ["team/api"]})),
                "Link",
                "</acr/v1/_catalog?last=team%2Fapi&n=1&orderby=>; rel=\"next\"",
            );
        }
        if path.starts_with("/acr/v1/team%2Fapi/_manifests") {
            return response(
                200,
                &json!({"manifests": [{"digest": DIGEST, "imageSize": 10, "createdTime": "2026-07-01T00:00:00Z",
                "lastUpdateTime": "2026-07-02T00:00:00Z", "architecture": "amd64", "os": "linux", "tags": ["1.0"]}]}),
            );
        }
    }
    response(404, &json!({"error": {"code": "NotFound", "message": url}}))
}

type Log = Rc<RefCell<Vec<Request>>>;

fn session_with(
    settings: &[(&str, &str)],
    handler: impl Fn(&Request) -> RawResponse + 'static,
) -> (AcrSession, Log) {
    let log: Log = Rc::default();
    let seen = Rc::clone(&log);
    let client = Client::with_transport(move |req: &Request| -> Result<RawResponse, HttpError> {
        seen.borrow_mut().push(req.clone());
        Ok(handler(req))
    });
    let mut pairs = vec![
        ("tenant_id", TENANT),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("subscription_id", SUB),
    ];
    pairs.extend_from_slice(settings);
    let config = Config::from_settings(&Settings::from_pairs(&pairs)).unwrap();
    (AcrSession::new(config, client).with_clock(now), log)
}

fn count(log: &Log, pred: impl Fn(&Request) -> bool) -> usize {
    log.borrow().iter().filter(|r| pred(r)).count()
}

fn url_has(part: &'static str) -> impl Fn(&Request) -> bool {
    move |r: &Request| r.url.contains(part)
}

fn page(cursor: Option<String>, max_items: u32) -> PageRequest {
    PageRequest { cursor, max_items }
}

#[test]
fn a_full_scan_fetches_each_thing_once() {
    let (session, log) = session_with(&[], standard);

    let mut registries = Vec::new();
    let mut cursor = None;
    loop {
        let p = session.list_registries(page(cursor, 1)).unwrap();
        registries.extend(p.items.into_iter().map(|r| r.name));
        cursor = p.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        registries,
        ["alpha.azurecr.io", "beta.azurecr.io", "gamma.azurecr.io"]
    );

    let mut repositories = Vec::new();
    let mut cursor = None;
    loop {
        let p = session
            .list_repositories("alpha.azurecr.io", page(cursor, 1))
            .unwrap();
        repositories.extend(p.items.into_iter().map(|r| r.name));
        cursor = p.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(repositories, ["team/api", "web"]);

    let images = session
        .list_images("alpha.azurecr.io", "team/api", page(None, 500))
        .unwrap();
    assert_eq!(images.items.len(), 1);
    assert_eq!(images.next, None);
    assert!(
        log.borrow()
            .last()
            .unwrap()
            .url
            .ends_with("/acr/v1/team%2Fapi/_manifests?n=500")
    );

    let mut findings = Vec::new();
    let mut cursor = None;
    loop {
        let p = session
            .list_findings(&ScanScope { registries: vec![] }, page(cursor, 1000))
            .unwrap();
        findings.extend(p.items);
        cursor = p.next;
        if cursor.is_none() {
            break;
        }
    }
    let ids: Vec<_> = findings
        .iter()
        .map(|f| f.vulnerability_id.as_str())
        .collect();
    assert_eq!(ids, ["CVE-1", "CVE-2"]);
    assert_eq!(
        findings[0].image,
        ImageRef {
            registry: "alpha.azurecr.io".into(),
            repository: "team/api".into(),
            digest: DIGEST.into()
        }
    );

    let contexts = session
        .describe_images(&[findings[0].image.clone()])
        .unwrap();
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0].tags, vec!["1.0".to_owned()]);
    assert_eq!(
        contexts[0].last_pushed_at.as_deref(),
        Some("2026-08-01T00:00:00Z")
    );
    assert_eq!(contexts[0].registry_public_network_access, Some(true));
    assert!(
        contexts[0]
            .attributes
            .iter()
            .any(|a| a.key == "network_default_action" && a.value == "Deny")
    );

    // The minimum the APIs allow: one Entra token, each registry page once, one exchange and
    // one token per scope, one request per listing page, one Resource Graph page per data set.
    assert_eq!(count(&log, url_has("login.microsoftonline.com")), 1);
    assert_eq!(count(&log, |r| r.url == registries_url()), 1);
    assert_eq!(count(&log, |r| r.url == page2_url()), 1);
    assert_eq!(count(&log, url_has("/oauth2/exchange")), 1);
    assert_eq!(count(&log, url_has("/oauth2/token")), 2);
    assert_eq!(count(&log, url_has("/_catalog")), 2);
    assert_eq!(count(&log, url_has("/_manifests")), 1);
    assert_eq!(count(&log, url_has("Microsoft.ResourceGraph")), 3);
    assert_eq!(log.borrow().len(), 12);
}

#[test]
fn verify_reports_what_it_checked() {
    let (session, log) = session_with(&[], standard);
    let account = session.verify().unwrap();
    assert_eq!(account.id, SUB);
    assert_eq!(account.display_name, "Production");
    let detail = |k: &str| {
        account
            .details
            .iter()
            .find(|d| d.key == k)
            .map(|d| d.value.clone())
    };
    assert_eq!(
        detail("registries").as_deref(),
        Some("2 on the first page, more follow")
    );
    assert_eq!(detail("subscription_state").as_deref(), Some("Enabled"));
    let graph = log
        .borrow()
        .iter()
        .find(|r| r.url.contains("ResourceGraph"))
        .cloned()
        .unwrap();
    let body: Value = serde_json::from_slice(&graph.body).unwrap();
    assert_eq!(body["options"]["$top"], 1);
    assert_eq!(body["query"], crate::defender::INDIVIDUAL_QUERY);
    // Listing registries afterwards reuses the first page.
    session.list_registries(page(None, 10)).unwrap();
    assert_eq!(count(&log, |r| r.url == registries_url()), 1);
}

#[test]
fn a_stale_resource_manager_token_is_renewed_once() {
    let calls = Rc::new(Cell::new(0));
    let tokens = Rc::new(Cell::new(0));
    let (c, t) = (Rc::clone(&calls), Rc::clone(&tokens));
    let (session, log) = session_with(&[], move |req| {
        if req.url.contains("login.microsoftonline.com") {
            t.set(t.get() + 1);
            return response(
                200,
                &json!({"expires_in": 3599, "access_token": format!("arm-token-{}", t.get())}),
            );
        }
        if req.url.contains("/subscriptions/") && !req.url.contains("registries") {
            c.set(c.get() + 1);
            // The second call, with the cached token, finds it expired.
            if bearer(req).as_deref() == Some("arm-token-1") && c.get() == 2 {
                return response(
                    401,
                    &json!({"error": {"code": "ExpiredAuthenticationToken", "message": "expired"}}),
                );
            }
        }
        standard(req)
    });
    session.verify().unwrap();
    session.verify().unwrap();
    assert_eq!(tokens.get(), 2);
    assert_eq!(count(&log, url_has("login.microsoftonline.com")), 2);
}

#[test]
fn a_rejected_token_is_retried_once_never_in_a_loop() {
    let (session, log) = session_with(&[], |req| {
        if req.url.contains("/subscriptions/") {
            return response(
                401,
                &json!({"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}}),
            );
        }
        standard(req)
    });
    let err = session.verify().unwrap_err();
    assert_eq!(err.kind(), "invalid-credentials");
    assert!(
        err.message()
            .unwrap()
            .contains("InvalidAuthenticationToken")
    );
    // A fresh token refused is not retried.
    assert_eq!(count(&log, url_has("/subscriptions/")), 1);
    // A cached one is retried exactly once.
    let err = session.verify().unwrap_err();
    assert_eq!(err.kind(), "invalid-credentials");
    assert_eq!(count(&log, url_has("/subscriptions/")), 3);
    assert_eq!(count(&log, url_has("login.microsoftonline.com")), 2);
}

#[test]
fn each_credential_failure_has_its_own_message_and_never_the_secret() {
    let cases = [
        (401, 7_000_215, "invalid_client", "AADSTS7000215"),
        (401, 7_000_222, "invalid_client", "AADSTS7000222"),
        (400, 700_016, "unauthorized_client", "AADSTS700016"),
        (400, 90_002, "invalid_request", "AADSTS90002"),
    ];
    let _ = keelson_plugin_sdk::log::take_captured();
    let mut messages = Vec::new();
    for (status, code, error, expected) in cases {
        let (session, _) = session_with(&[], move |req| {
            if req.url.contains("login.microsoftonline.com") {
                // A hostile answer echoing the secret must not leak it either.
                return response(
                    status,
                    &json!({"error": error, "error_codes": [code],
                    "error_description": format!("AADSTS{code}: bad secret {SECRET}\r\nTrace ID: x")}),
                );
            }
            standard(req)
        });
        let err = session.verify().unwrap_err();
        assert_eq!(err.kind(), "invalid-credentials", "{expected}");
        let msg = err.message().unwrap().to_owned();
        assert!(msg.contains(expected), "{msg}");
        assert!(!msg.contains("CANARY"), "{msg}");
        messages.push(msg);
    }
    let distinct: std::collections::HashSet<_> = messages.iter().collect();
    assert_eq!(distinct.len(), 4);

    // An unknown code quotes Azure's description, scrubbed.
    let (session, _) = session_with(&[], |req| {
        if req.url.contains("login.microsoftonline.com") {
            return response(
                400,
                &json!({"error": "invalid_request", "error_codes": [12345],
                "error_description": format!("AADSTS12345: odd {SECRET} and {}", keelson_plugin_sdk::http::encode_component(SECRET))}),
            );
        }
        standard(req)
    });
    let msg = session.verify().unwrap_err().message().unwrap().to_owned();
    assert!(
        msg.contains("AADSTS12345") && msg.contains("[sealed:client_secret]"),
        "{msg}"
    );
    assert!(!msg.contains("CANARY"), "{msg}");
    let logs = keelson_plugin_sdk::log::take_captured();
    assert!(logs.iter().all(|(_, line)| !line.contains("CANARY")));
}

#[test]
fn missing_role_and_unknown_subscription_are_typed() {
    let (session, _) = session_with(&[], |req| {
        if req.url.contains("/subscriptions/") {
            return response(
                403,
                &json!({"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization"}}),
            );
        }
        standard(req)
    });
    let err = session.verify().unwrap_err();
    assert_eq!(err.kind(), "permission-denied");
    assert!(err.message().unwrap().contains("Reader role"));

    let (session, _) = session_with(&[], |req| {
        if req.url.contains("/subscriptions/") {
            return response(
                404,
                &json!({"error": {"code": "SubscriptionNotFound", "message": "The subscription could not be found."}}),
            );
        }
        standard(req)
    });
    assert_eq!(session.verify().unwrap_err().kind(), "not-found");
}

#[test]
fn a_registry_that_refuses_the_app_is_denied_alone_and_not_asked_again() {
    let (session, log) = session_with(&[], |req| {
        if req.url == "https://beta.azurecr.io/oauth2/exchange" {
            return response(
                401,
                &json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
            );
        }
        standard(req)
    });
    let err = session
        .list_repositories("beta.azurecr.io", page(None, 100))
        .unwrap_err();
    assert_eq!(err.kind(), "permission-denied");
    assert!(err.message().unwrap().contains("`beta.azurecr.io`"));
    let again = session
        .list_repositories("beta.azurecr.io", page(None, 100))
        .unwrap_err();
    assert_eq!(again, err);
    assert_eq!(
        session
            .list_images("beta.azurecr.io", "x", page(None, 10))
            .unwrap_err(),
        err
    );
    // The Entra token was fresh, so the refusal is final: one exchange, no retry.
    assert_eq!(
        count(&log, |r| r.url == "https://beta.azurecr.io/oauth2/exchange"),
        1
    );
    assert!(
        session
            .list_repositories("alpha.azurecr.io", page(None, 100))
            .is_ok()
    );
}

#[test]
fn an_expired_registry_token_is_renewed_once() {
    let catalog_calls = Rc::new(Cell::new(0));
    let c = Rc::clone(&catalog_calls);
    let (session, log) = session_with(&[], move |req| {
        if req.url.contains("/acr/v1/_catalog") {
            c.set(c.get() + 1);
            if c.get() == 2 {
                return with_header(
                    response(401, &json!({"errors": [{"code": "UNAUTHORIZED"}]})),
                    "WWW-Authenticate",
                    "Bearer realm=\"https://alpha.azurecr.io/oauth2/token\",service=\"alpha.azurecr.io\",scope=\"registry:catalog:*\",error=\"invalid_token\"",
                );
            }
        }
        standard(req)
    });
    session
        .list_repositories("alpha.azurecr.io", page(None, 100))
        .unwrap();
    session
        .list_repositories("alpha.azurecr.io", page(None, 100))
        .unwrap();
    assert_eq!(catalog_calls.get(), 3);
    assert_eq!(count(&log, url_has("/oauth2/token")), 2);
    assert_eq!(count(&log, url_has("/oauth2/exchange")), 1);
}

#[test]
fn a_registry_list_that_loops_keeps_its_last_page_and_ends_unavailable() {
    let (session, log) = session_with(&[], |req| {
        if req.url == page2_url() {
            return response(
                200,
                &json!({"value": [registry_json("gamma")], "nextLink": registries_url()}),
            );
        }
        standard(req)
    });
    let first = session.list_registries(page(None, 100)).unwrap();
    let second = session.list_registries(page(first.next, 100)).unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["gamma.azurecr.io"],
        "the page that looped is kept"
    );
    let requests = log.borrow().len();
    for _ in 0..2 {
        let err = session
            .list_registries(page(second.next.clone(), 100))
            .unwrap_err();
        assert_eq!(err.kind(), "unavailable");
        assert!(err.message().unwrap().contains("loop"), "{err:?}");
    }
    assert_eq!(
        log.borrow().len(),
        requests,
        "the deferred error asks nothing"
    );
}

#[test]
fn a_registry_list_link_to_another_host_is_refused() {
    let (session, log) = session_with(&[], |req| {
        if req.url == registries_url() {
            return response(
                200,
                &json!({"value": [], "nextLink": "https://evil.example/next"}),
            );
        }
        standard(req)
    });
    let first = session.list_registries(page(None, 100)).unwrap();
    let err = session.list_registries(page(first.next, 100)).unwrap_err();
    assert_eq!(err.kind(), "unavailable");
    assert!(err.message().unwrap().contains("evil.example"), "{err:?}");
    assert_eq!(count(&log, url_has("evil.example")), 0);
}

#[test]
fn a_catalog_that_loops_keeps_the_page_and_ends_unavailable() {
    let (session, _) = session_with(&[], |req| {
        if req.url.contains("/acr/v1/_catalog") && req.url.contains("last=team%2Fapi") {
            let mut r = standard(req);
            r.headers.push(Header {
                name: "Link".into(),
                value: "</acr/v1/_catalog?last=team%2Fapi&n=1&orderby=>; rel=\"next\"".into(),
            });
            return r;
        }
        standard(req)
    });
    let first = session
        .list_repositories("alpha.azurecr.io", page(None, 1))
        .unwrap();
    let second = session
        .list_repositories("alpha.azurecr.io", page(first.next, 1))
        .unwrap();
    assert_eq!(second.items.len(), 1, "the page that looped is kept");
    let err = session
        .list_repositories("alpha.azurecr.io", page(second.next, 1))
        .unwrap_err();
    assert_eq!(err.kind(), "unavailable");
    assert!(err.message().unwrap().contains("loop"), "{err:?}");
}

#[test]
fn an_empty_registry_lists_nothing() {
    let (session, _) = session_with(&[], |req| {
        if req.url.contains("/acr/v1/_catalog")
            && bearer(req).is_some_and(|t| t.starts_with("access|"))
        {
            return response(200, &json!({"repositories": null}));
        }
        standard(req)
    });
    let p = session
        .list_repositories("alpha.azurecr.io", page(None, 100))
        .unwrap();
    assert!(p.items.is_empty() && p.next.is_none());
}

#[test]
fn a_big_graph_page_is_served_in_parts_without_fetching_again() {
    let (session, log) = session_with(&[("findings_source", "individual")], standard);
    let scope = ScanScope { registries: vec![] };
    let first = session.list_findings(&scope, page(None, 1)).unwrap();
    assert_eq!(first.items[0].vulnerability_id, "CVE-1");
    let second = session.list_findings(&scope, page(first.next, 1)).unwrap();
    assert_eq!(second.items[0].vulnerability_id, "CVE-2");
    assert_eq!(second.next, None);
    assert_eq!(count(&log, url_has("ResourceGraph")), 1);
    let graph = log
        .borrow()
        .iter()
        .find(|r| r.url.contains("ResourceGraph"))
        .cloned()
        .unwrap();
    let body: Value = serde_json::from_slice(&graph.body).unwrap();
    assert_eq!(body["options"]["$top"], 1, "max-items is the page size");
}

#[test]
fn scope_filters_findings_by_registry() {
    let (session, _) = session_with(&[("findings_source", "individual")], standard);
    let p = session
        .list_findings(
            &ScanScope {
                registries: vec!["Beta.azurecr.io".into()],
            },
            page(None, 100),
        )
        .unwrap();
    assert!(p.items.is_empty());
    let p = session
        .list_findings(
            &ScanScope {
                registries: vec!["ALPHA.azurecr.io".into()],
            },
            page(None, 100),
        )
        .unwrap();
    assert_eq!(p.items.len(), 2);
}

#[test]
fn skip_tokens_are_followed_and_a_repeating_one_is_caught() {
    let (session, log) = session_with(&[("findings_source", "mdvm")], |req| {
        if req.url.contains("ResourceGraph") {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let mut row =
                testdata::sample("defender-mdvm-subassessment-arg-row-azure.json")[0].clone();
            row["properties"]["status"]["code"] = json!("Unhealthy");
            return response(
                200,
                &json!({"$skipToken": "same", "data": [row], "token_seen": body["options"]["$skipToken"]}),
            );
        }
        standard(req)
    });
    let scope = ScanScope { registries: vec![] };
    let first = session.list_findings(&scope, page(None, 100)).unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].image.registry, "ptebic.azurecr.io");
    // The page whose token repeats is still served (its findings are kept); the listing
    // then ends with the loop as its error, the same on a retry, with no further request.
    let second = session
        .list_findings(&scope, page(first.next, 100))
        .unwrap();
    assert_eq!(second.items.len(), 1);
    let sent: Value = serde_json::from_slice(&log.borrow().last().unwrap().body).unwrap();
    assert_eq!(sent["options"]["$skipToken"], "same");
    let requests = log.borrow().len();
    for _ in 0..2 {
        let err = session
            .list_findings(&scope, page(second.next.clone(), 100))
            .unwrap_err();
        assert_eq!(err.kind(), "unavailable");
        assert!(
            err.message().unwrap().contains("paged in a loop"),
            "{err:?}"
        );
    }
    assert_eq!(log.borrow().len(), requests);
}

#[test]
fn rows_without_a_status_are_counted_and_end_the_findings_listing_incomplete() {
    let (session, _) = session_with(&[("findings_source", "mdvm")], |req| {
        if req.url.contains("ResourceGraph") {
            let mut good =
                testdata::sample("defender-mdvm-subassessment-arg-row-azure.json")[0].clone();
            good["properties"]["status"]["code"] = json!("Unhealthy");
            let mut bad = good.clone();
            bad["id"] = json!("/subscriptions/x/assessments/no-status");
            bad["properties"].as_object_mut().unwrap().remove("status");
            let rows = [good, bad.clone(), bad];
            return response(200, &json!({"totalRecords": 3, "count": 3, "data": rows}));
        }
        standard(req)
    });
    let scope = ScanScope { registries: vec![] };
    let first = session.list_findings(&scope, page(None, 100)).unwrap();
    assert_eq!(first.items.len(), 1, "the usable row is served");
    let mut cursor = first.next;
    let err = loop {
        match session.list_findings(&scope, page(cursor.clone(), 100)) {
            Ok(next) => {
                assert!(next.items.is_empty(), "{next:?}");
                cursor = next.next;
                assert!(cursor.is_some(), "the listing ended complete");
            }
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), "unavailable");
    let message = err.message().unwrap();
    assert!(message.contains("2 Resource Graph rows"), "{message}");
    assert!(message.contains("properties.status.code"), "{message}");
    assert!(message.contains("no-status"), "an example id: {message}");
}

#[test]
fn auto_skips_a_retired_legacy_data_set_but_not_an_explicit_one() {
    let invalid = || {
        response(
            400,
            &json!({"error": {"code": "BadRequest", "message": "x",
        "details": [{"code": "InvalidQuery", "message": "Query is invalid."}]}}),
        )
    };
    let handler = move |req: &Request| {
        if req.url.contains("ResourceGraph")
            && String::from_utf8_lossy(&req.body).contains("c0b7cfc6")
        {
            return invalid();
        }
        standard(req)
    };
    let (session, log) = session_with(&[], handler);
    let scope = ScanScope { registries: vec![] };
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let p = session.list_findings(&scope, page(cursor, 100)).unwrap();
        all.extend(p.items);
        cursor = p.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(all.len(), 2);
    assert_eq!(count(&log, url_has("ResourceGraph")), 3);

    let (session, _) = session_with(&[("findings_source", "mdvm")], handler);
    let err = session.list_findings(&scope, page(None, 100)).unwrap_err();
    assert_eq!(err.kind(), "invalid-config");
    assert!(err.message().unwrap().contains("`findings_source`"));

    // The current data set refused is an error even under `auto`.
    let (session, _) = session_with(&[], move |req| {
        if req.url.contains("ResourceGraph") {
            return invalid();
        }
        standard(req)
    });
    assert!(session.list_findings(&scope, page(None, 100)).is_err());
}

#[test]
fn rows_naming_a_registry_by_id_are_resolved_through_the_registry_list() {
    let (session, log) = session_with(&[("findings_source", "individual")], |req| {
        if req.url.contains("ResourceGraph") {
            let mut row = individual_row("gamma", "g1", &["CVE-9"]);
            let mut image: Value = serde_json::from_str(
                row["properties"]["resourceAdditionalData"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            image.as_object_mut().unwrap().remove("RegistryHost");
            row["properties"]["resourceAdditionalData"] = json!(image.to_string());
            return response(200, &json!({"data": [row]}));
        }
        standard(req)
    });
    let p = session
        .list_findings(&ScanScope { registries: vec![] }, page(None, 100))
        .unwrap();
    assert_eq!(p.items[0].image.registry, "gamma.azurecr.io");
    // Both registry pages were needed, each fetched once.
    assert_eq!(count(&log, url_has("registries?api-version")), 2);
}

#[test]
fn a_throttled_graph_reports_the_wait() {
    let (session, _) = session_with(&[], |req| {
        if req.url.contains("ResourceGraph") {
            return with_header(
                response(429, &json!({"error": {"code": "RateLimiting"}})),
                "Retry-After",
                "5",
            );
        }
        standard(req)
    });
    let err = session
        .list_findings(&ScanScope { registries: vec![] }, page(None, 100))
        .unwrap_err();
    assert_eq!(err, ConnectorError::Throttled(5000));
}

#[test]
fn host_denials_become_permission_denied() {
    let client =
        Client::with_transport(|_: &Request| Err(HttpError::Denied("host not granted".into())));
    let config = Config::from_settings(&Settings::from_pairs(&[
        ("tenant_id", TENANT),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("subscription_id", SUB),
    ]))
    .unwrap();
    let session = AcrSession::new(config, client).with_clock(now);
    let err = session.verify().unwrap_err();
    assert_eq!(err.kind(), "permission-denied");
    assert!(err.message().unwrap().contains("login.microsoftonline.com"));
}

#[test]
fn bad_input_from_the_host_is_refused_before_any_request() {
    let (session, log) = session_with(&[], standard);
    assert_eq!(
        session
            .list_repositories("evil.example/x?", page(None, 10))
            .unwrap_err()
            .kind(),
        "other"
    );
    assert_eq!(
        session
            .list_images("alpha.azurecr.io", "../x", page(None, 10))
            .unwrap_err()
            .kind(),
        "not-found"
    );
    assert_eq!(
        session
            .list_findings(
                &ScanScope { registries: vec![] },
                page(Some("junk".into()), 10)
            )
            .unwrap_err()
            .kind(),
        "other"
    );
    assert!(log.borrow().is_empty());
}

#[test]
fn methods_and_custom_endpoints_are_used() {
    let (session, log) = session_with(
        &[
            ("cloud", "custom"),
            ("authority_host", "https://login.sim.test:8443"),
            ("resource_manager_endpoint", "https://arm.sim.test:8443/"),
        ],
        |req| {
            if req.url.starts_with("https://login.sim.test:8443/") {
                assert_eq!(form(req)["scope"], "https://arm.sim.test:8443/.default");
                return response(
                    200,
                    &json!({"expires_in": 3599, "access_token": "arm-token"}),
                );
            }
            response(200, &json!({"value": []}))
        },
    );
    session.list_registries(page(None, 10)).unwrap();
    let log = log.borrow();
    assert_eq!(log[0].method, Method::Post);
    assert_eq!(
        log[0].url,
        format!("https://login.sim.test:8443/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(log[1].method, Method::Get);
    assert_eq!(
        log[1].url,
        format!(
            "https://arm.sim.test:8443/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/registries?api-version=2025-04-01"
        )
    );
}

/// A registry with three repositories on one catalog page; the token endpoint grants every
/// `scope` it is asked for in one token, and each listing checks its scope is in the bearer.
fn many_repositories(req: &Request) -> RawResponse {
    let url = req.url.as_str();
    let Some(rest) = url.strip_prefix("https://alpha.azurecr.io") else {
        return standard(req);
    };
    if rest == "/oauth2/exchange" {
        return standard(req);
    }
    if rest == "/oauth2/token" {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let scopes: Vec<String> = body
            .split('&')
            .filter_map(|kv| kv.strip_prefix("scope="))
            .map(percent_decode)
            .collect();
        return response(
            200,
            &json!({"access_token": format!("access|{}", scopes.join(" "))}),
        );
    }
    let scope = if rest.starts_with("/acr/v1/_catalog") {
        "registry:catalog:*".to_owned()
    } else {
        let repo = rest
            .trim_start_matches("/acr/v1/")
            .split("/_manifests")
            .next()
            .unwrap();
        format!("repository:{}:metadata_read", percent_decode(repo))
    };
    let granted = bearer(req).is_some_and(|b| b.split(['|', ' ']).any(|s| s == scope));
    if !granted {
        return with_header(
            response(401, &json!({"errors": [{"code": "UNAUTHORIZED"}]})),
            "WWW-Authenticate",
            &format!(
                "Bearer realm=\"https://alpha.azurecr.io/oauth2/token\",service=\"alpha.azurecr.io\",scope=\"{scope}\""
            ),
        );
    }
    if rest.starts_with("/acr/v1/_catalog") {
        return response(200, &json!({"repositories": ["a/one", "a/two", "b/three"]}));
    }
    response(200, &json!({"manifests": []}))
}

#[test]
fn repositories_of_a_catalog_page_share_one_token_request() {
    let (session, log) = session_with(&[], many_repositories);
    let repos = session
        .list_repositories("alpha.azurecr.io", page(None, 1000))
        .unwrap();
    assert_eq!(repos.items.len(), 3);
    for repo in ["a/one", "a/two", "b/three"] {
        let images = session
            .list_images("alpha.azurecr.io", repo, page(None, 1000))
            .unwrap();
        assert!(images.items.is_empty());
    }
    // One token for the catalog, one for the three repositories; no 401 on the way.
    assert_eq!(count(&log, url_has("/oauth2/token")), 2);
    assert_eq!(count(&log, url_has("/_manifests")), 3);
    let batch = log
        .borrow()
        .iter()
        .filter(|r| r.url.ends_with("/oauth2/token"))
        .map(|r| String::from_utf8_lossy(&r.body).matches("scope=").count())
        .collect::<Vec<_>>();
    assert_eq!(batch, [1, 3]);
}

#[test]
fn a_registry_that_refuses_the_batch_falls_back_to_a_token_per_repository() {
    let (session, log) = session_with(&[], |req: &Request| {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        if req.url.ends_with("/oauth2/token") && body.matches("scope=").count() > 1 {
            return response(400, &json!({"errors": [{"code": "UNSUPPORTED"}]}));
        }
        many_repositories(req)
    });
    session
        .list_repositories("alpha.azurecr.io", page(None, 1000))
        .unwrap();
    for repo in ["a/one", "a/two"] {
        session
            .list_images("alpha.azurecr.io", repo, page(None, 1000))
            .unwrap();
    }
    // Catalog token, the refused batch, then one token per repository listed.
    assert_eq!(count(&log, url_has("/oauth2/token")), 4);
}

/// Lists every repository and image of `registry` (the `standard` fake: `team/api` with one
/// image, `web` with none).
fn enumerate(session: &AcrSession, registry: &str) {
    let mut cursor = None;
    let mut repositories = Vec::new();
    loop {
        let p = session
            .list_repositories(registry, page(cursor, 1))
            .unwrap();
        repositories.extend(p.items.into_iter().map(|r| r.name));
        cursor = p.next;
        if cursor.is_none() {
            break;
        }
    }
    for repository in repositories {
        if repository == "team/api" {
            session
                .list_images(registry, &repository, page(None, 100))
                .unwrap();
        }
    }
}

fn image_in(registry: &str) -> ImageRef {
    ImageRef {
        registry: registry.into(),
        repository: "team/api".into(),
        digest: DIGEST.into(),
    }
}

#[test]
fn facts_are_gone_once_described() {
    let (session, _) = session_with(&[], standard);
    enumerate(&session, "alpha.azurecr.io");
    assert_eq!(session.images.borrow().len(), 1);
    let image = image_in("alpha.azurecr.io");
    let first = session
        .describe_images(std::slice::from_ref(&image))
        .unwrap();
    assert_eq!(first[0].tags, ["1.0"]);
    assert_eq!(
        first[0].last_pushed_at.as_deref(),
        Some("2026-07-01T00:00:00Z")
    );
    assert_eq!(session.images.borrow().len(), 0);
    // Asked again: the registry's exposure still, but the image's facts were handed over.
    let again = session.describe_images(&[image]).unwrap();
    assert!(again[0].tags.is_empty() && again[0].last_pushed_at.is_none());
    assert_eq!(again[0].registry_public_network_access, Some(true));
}

#[test]
fn enumerating_another_registry_drops_what_the_last_one_left() {
    let (session, log) = session_with(&[], standard);
    enumerate(&session, "alpha.azurecr.io");
    let tokens = |registry: &str| {
        session
            .access_tokens
            .borrow()
            .keys()
            .filter(|(r, _)| r == registry)
            .count()
    };
    assert!(tokens("alpha.azurecr.io") > 0);
    // Not described: the host moved on to `beta`.
    enumerate(&session, "beta.azurecr.io");
    assert_eq!(session.images.borrow().len(), 1, "only beta's image");
    assert_eq!(tokens("alpha.azurecr.io"), 0);
    assert!(tokens("beta.azurecr.io") > 0);
    let contexts = session
        .describe_images(&[image_in("alpha.azurecr.io"), image_in("beta.azurecr.io")])
        .unwrap();
    assert!(contexts[0].tags.is_empty(), "alpha's facts were dropped");
    assert_eq!(contexts[1].tags, ["1.0"]);
    // Going back to alpha costs a token again, not a new exchange.
    let exchanges = count(&log, url_has("/oauth2/exchange"));
    enumerate(&session, "alpha.azurecr.io");
    assert_eq!(count(&log, url_has("/oauth2/exchange")), exchanges);
}

/// `standard`, with Resource Graph answering `rows` for the individual data set.
fn graph_rows(rows: Vec<Value>) -> impl Fn(&Request) -> RawResponse {
    move |req: &Request| {
        if req.url.contains("ResourceGraph") {
            return response(200, &json!({"data": rows}));
        }
        standard(req)
    }
}

/// An `alpha` row that names its repository only in `resourceDetails.Id` (`/` as `-`).
fn repository_less_row() -> Value {
    let mut row = individual_row("alpha", "a1", &["CVE-1"]);
    row["properties"]["resourceAdditionalData"] = Value::Null;
    row["properties"]["resourceDetails"] = json!({
        "Id": format!("{}/repositories-team-api-images-{DIGEST}", registry_id("alpha"))
    });
    row
}

#[test]
fn a_row_without_its_repository_is_resolved_through_the_catalog() {
    let scope = ScanScope { registries: vec![] };
    let (session, _) = session_with(
        &[("findings_source", "individual")],
        graph_rows(vec![repository_less_row()]),
    );
    enumerate(&session, "alpha.azurecr.io");
    // Described already: the image facts are gone, the catalog's names are not.
    session
        .describe_images(&[image_in("alpha.azurecr.io")])
        .unwrap();
    enumerate(&session, "beta.azurecr.io");
    let p = session.list_findings(&scope, page(None, 100)).unwrap();
    assert_eq!(p.items.len(), 1);
    assert_eq!(p.items[0].image, image_in("alpha.azurecr.io"));

    // A session that lists findings only (no enumeration) reads the catalog itself, all its
    // pages, once however many rows need it.
    let (session, log) = session_with(
        &[("findings_source", "individual")],
        graph_rows(vec![repository_less_row(), repository_less_row()]),
    );
    let p = session.list_findings(&scope, page(None, 100)).unwrap();
    assert_eq!(p.items.len(), 2);
    assert!(
        p.items
            .iter()
            .all(|f| f.image == image_in("alpha.azurecr.io"))
    );
    assert_eq!(count(&log, url_has("/acr/v1/_catalog?n=1000")), 1);
    assert_eq!(count(&log, url_has("last=team%2Fapi")), 1, "second page");
    // No enumeration state: no metadata tokens, nothing held to describe.
    assert_eq!(count(&log, url_has("metadata_read")), 0);
    assert_eq!(session.images.borrow().len(), 0);
    let p = session.list_findings(&scope, page(None, 100)).unwrap();
    assert_eq!(p.items[1].image.repository, "team/api");
    assert_eq!(
        count(&log, url_has("/acr/v1/_catalog")),
        2,
        "not read again"
    );
}

#[test]
fn a_catalog_that_cannot_be_read_keeps_the_name_as_written() {
    let scope = ScanScope { registries: vec![] };
    for status in [403, 404, 429, 500] {
        let rows = graph_rows(vec![repository_less_row(), repository_less_row()]);
        let (session, log) = session_with(&[("findings_source", "individual")], move |req| {
            if req.url.contains("/acr/v1/_catalog") {
                return with_header(
                    response(status, &json!({"errors": [{"code": "DENIED"}]})),
                    "Retry-After",
                    "30",
                );
            }
            rows(req)
        });
        let p = session.list_findings(&scope, page(None, 100)).unwrap();
        assert_eq!(p.items.len(), 2, "{status}");
        assert!(
            p.items.iter().all(|f| f.image.repository == "team-api"
                && f.image.registry == "alpha.azurecr.io"),
            "{status}"
        );
        // Given up on once, not once per row.
        assert_eq!(count(&log, url_has("/acr/v1/_catalog")), 1, "{status}");
        assert!(session.repositories.borrow().knows("alpha.azurecr.io"));
    }
}

#[test]
fn every_finding_of_a_row_carries_the_whole_row_as_sent() {
    let row = individual_row("alpha", "a1", &["CVE-1", "CVE-2", "CVE-3"]);
    let other = individual_row("beta", "b1", &["CVE-4"]);
    let (session, log) = session_with(
        &[("findings_source", "individual")],
        graph_rows(vec![row.clone(), other.clone()]),
    );
    let scope = ScanScope { registries: vec![] };
    let mut findings = Vec::new();
    let mut cursor = None;
    loop {
        // Two at a time: the row's findings are split across pages.
        let p = session.list_findings(&scope, page(cursor, 2)).unwrap();
        findings.extend(p.items);
        cursor = p.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(count(&log, url_has("ResourceGraph")), 1);
    let ids: Vec<_> = findings
        .iter()
        .map(|f| f.vulnerability_id.as_str())
        .collect();
    assert_eq!(ids, ["CVE-1", "CVE-2", "CVE-3", "CVE-4"]);
    for f in &findings[..3] {
        assert_eq!(
            f.raw,
            row.to_string(),
            "the row as sent, the same for each finding"
        );
    }
    assert_eq!(findings[3].raw, other.to_string());
    assert!(
        session.findings_slot.borrow().is_none(),
        "freed once served"
    );
}

#[test]
fn a_part_already_served_is_read_again_when_asked_again() {
    let (session, log) = session_with(&[("findings_source", "individual")], standard);
    let scope = ScanScope { registries: vec![] };
    let first = session.list_findings(&scope, page(None, 1)).unwrap();
    // The host asks for the first part again (a second walk): the page is read again, whole.
    let again = session.list_findings(&scope, page(None, 1)).unwrap();
    assert_eq!(again.items, first.items);
    assert_eq!(count(&log, url_has("ResourceGraph")), 2);
    let second = session.list_findings(&scope, page(again.next, 1)).unwrap();
    assert_eq!(second.items[0].vulnerability_id, "CVE-2");
    assert_eq!(second.items[0].raw, first.items[0].raw);
    assert_eq!(count(&log, url_has("ResourceGraph")), 2);
}

thread_local! {
    static NOW_MS: Cell<u64> = const { Cell::new(1_000_000_000) };
}

fn now_ms() -> u64 {
    NOW_MS.with(Cell::get)
}

fn advance_ms(ms: u64) {
    NOW_MS.with(|c| c.set(c.get() + ms));
}

#[test]
fn resource_graph_is_paced_by_its_quota_headers() {
    let (session, log) = session_with(&[("findings_source", "individual")], |req| {
        if req.url.contains("ResourceGraph") {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let first = body["options"]["$skipToken"].is_null();
            let data = json!({"data": [individual_row("alpha", "a1", &["CVE-1"])],
                "$skipToken": if first { json!("p2") } else { Value::Null }});
            let (remaining, resets) = if first {
                ("0", "00:00:03")
            } else {
                ("14", "00:00:04")
            };
            return with_header(
                with_header(response(200, &data), "x-ms-user-quota-remaining", remaining),
                "x-ms-user-quota-resets-after",
                resets,
            );
        }
        standard(req)
    });
    let session = session.with_clock_ms(now_ms);
    let scope = ScanScope { registries: vec![] };
    let first = session.list_findings(&scope, page(None, 100)).unwrap();
    assert_eq!(first.items.len(), 1);
    // None left: the host is told to wait until the window has surely reset (3 s said, whole
    // seconds rounded down, so up to 4 s), and no request is spent on a 429.
    let cursor = first.next.unwrap();
    let err = session
        .list_findings(&scope, page(Some(cursor.clone()), 100))
        .unwrap_err();
    assert_eq!(err, ConnectorError::Throttled(4000));
    advance_ms(2500);
    let err = session
        .list_findings(&scope, page(Some(cursor.clone()), 100))
        .unwrap_err();
    assert_eq!(err, ConnectorError::Throttled(1500));
    assert_eq!(count(&log, url_has("ResourceGraph")), 1);
    advance_ms(1500);
    let second = session
        .list_findings(&scope, page(Some(cursor), 100))
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(count(&log, url_has("ResourceGraph")), 2);
    assert!(
        session
            .graph_quota
            .get()
            .unwrap()
            .wait_ms(now_ms())
            .is_none()
    );
}

#[test]
fn a_windows_answers_narrow_when_it_resets() {
    use super::GraphQuota;
    // The window truly resets at 4500 ms; each answer gives whole seconds rounded down.
    let q = GraphQuota::after(None, (14, 4), 0, 0);
    assert_eq!(q.resets_by_ms, 5000);
    let q = GraphQuota::after(Some(q), (13, 3), 1200, 1200);
    assert_eq!(q.resets_by_ms, 5000, "a later bound does not widen it");
    let q = GraphQuota::after(Some(q), (0, 2), 1600, 1600);
    assert_eq!(q.resets_by_ms, 4600);
    assert_eq!(q.wait_ms(2000), Some(2600));
    assert_eq!(q.wait_ms(4600), None);
    // More left than before: a new window, judged on its own.
    let q = GraphQuota::after(Some(q), (14, 4), 4700, 4700);
    assert_eq!(q.resets_by_ms, 9700);
    assert_eq!(q.wait_ms(4700), None, "queries left: no wait");
}
