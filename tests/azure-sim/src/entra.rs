//! Microsoft Entra ID: the v2.0 client-credentials token endpoint with its real error matrix.

use serde_json::json;

use crate::server::{Req, Resp, Sim};
use crate::tokens::{Claims, TokenKind};
use crate::util::{self, entra_time, field, parse_form, request_guid};

/// The ARM audiences a client may ask for (the `/.default` suffix removed).
pub(crate) fn arm_resources(sim: &Sim) -> Vec<String> {
    vec![
        "https://management.azure.com".to_owned(),
        "https://management.azure.com/".to_owned(),
        "https://management.core.windows.net".to_owned(),
        "https://management.core.windows.net/".to_owned(),
        sim.management_url(),
        format!("{}/", sim.management_url()),
    ]
}

/// The ACR audience.
pub(crate) const ACR_RESOURCE: &str = "https://containerregistry.azure.net";

pub(crate) fn endpoint(r: &Req) -> &'static str {
    if r.path.ends_with("/oauth2/v2.0/token") {
        "entra.token"
    } else if r.path.ends_with("/.well-known/openid-configuration") {
        "entra.discovery"
    } else {
        "unknown"
    }
}

fn headers(mut resp: Resp) -> Resp {
    resp.set("cache-control", "no-store, no-cache")
        .set("pragma", "no-cache")
        .set("expires", "-1")
        .set("strict-transport-security", "max-age=31536000; includeSubDomains")
        .set("x-content-type-options", "nosniff")
        .set("p3p", "CP=\"DSP CUR OTPi IND OTRi ONL FIN\"")
        .set("x-ms-request-id", &request_guid())
        .set("x-ms-ests-server", "2.1.18874.4 - azure-sim")
        .set("set-cookie", "fpc=AsimulatedCookie; expires=Thu, 01-Jan-2099 00:00:00 GMT; path=/; secure; HttpOnly; SameSite=None");
    resp
}

/// An Entra error body: `error`, `error_description` with trace lines, `error_codes`, …
pub(crate) fn error_resp(sim: &Sim, status: u16, error: &str, code: u32, text: &str) -> Resp {
    let trace = request_guid();
    let correlation = request_guid();
    let ts = entra_time(util::now_secs());
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}"
        ),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("{}/error?code={code}", sim.login_url()),
    });
    headers(Resp::json(status, &body))
}

fn tenant_not_found(sim: &Sim, tenant: &str, error: &str) -> Resp {
    error_resp(
        sim,
        400,
        error,
        90_002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

/// True for a GUID or a DNS-like name: things Entra treats as tenant identifiers.
fn plausible_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 256
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

pub(crate) fn handle(sim: &Sim, r: &Req) -> Resp {
    let segments: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let tenant = util::decode_component(segments.first().copied().unwrap_or(""));
    match (r.method.as_str(), &segments[1..]) {
        ("POST", ["oauth2", "v2.0", "token"]) => token(sim, r, &tenant),
        ("GET", ["v2.0", ".well-known", "openid-configuration"]) => discovery(sim, &tenant),
        _ => headers(Resp::new(
            404,
            "text/html; charset=utf-8",
            "<html><body>Not Found</body></html>",
        )),
    }
}

fn discovery(sim: &Sim, tenant: &str) -> Resp {
    if !tenant.eq_ignore_ascii_case(&sim.tenant.tenant_id) {
        return tenant_not_found(sim, tenant, "invalid_tenant");
    }
    let login = sim.login_url();
    let tid = &sim.tenant.tenant_id;
    headers(Resp::json(
        200,
        &json!({
            "token_endpoint": format!("{login}/{tid}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "issuer": format!("{login}/{tid}/v2.0"),
            "authorization_endpoint": format!("{login}/{tid}/oauth2/v2.0/authorize"),
            "tenant_region_scope": "EU",
            "cloud_instance_name": "sim.localhost",
        }),
    ))
}

fn token(sim: &Sim, r: &Req, tenant: &str) -> Resp {
    if !tenant.eq_ignore_ascii_case(&sim.tenant.tenant_id) {
        if !plausible_tenant(tenant) {
            return error_resp(
                sim,
                400,
                "invalid_request",
                900_023,
                &format!(
                    "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain."
                ),
            );
        }
        return tenant_not_found(sim, tenant, "invalid_request");
    }
    let form = parse_form(&String::from_utf8_lossy(&r.body));
    // RFC 6749 §2.3.1: client id and secret may come as HTTP Basic instead of form fields.
    let basic = r.header("authorization").and_then(|h| {
        let (scheme, v) = h.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (id, secret) = s.split_once(':')?;
        Some((util::decode_component(id), util::decode_component(secret)))
    });
    let grant = field(&form, "grant_type").unwrap_or("");
    if grant.is_empty() {
        return error_resp(
            sim,
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    if grant != "client_credentials" {
        return error_resp(
            sim,
            400,
            "unsupported_grant_type",
            70_003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let client_id = field(&form, "client_id")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
        .unwrap_or_default();
    if client_id.is_empty() {
        return error_resp(
            sim,
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    }
    let Some(principal) = sim.principal(&client_id) else {
        return error_resp(
            sim,
            400,
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory 'Simulated Tenant'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    };
    let secret = field(&form, "client_secret")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    let Some(secret) = secret else {
        return error_resp(
            sim,
            401,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if secret != principal.secret {
        return error_resp(
            sim,
            401,
            "invalid_client",
            7_000_215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                principal.client_id
            ),
        );
    }
    if principal.secret_expired {
        return error_resp(
            sim,
            401,
            "invalid_client",
            7_000_222,
            &format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds",
                principal.client_id
            ),
        );
    }
    let scope = field(&form, "scope").unwrap_or("").trim().to_owned();
    if scope.is_empty() {
        return error_resp(
            sim,
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'scope'.",
        );
    }
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let resources: Vec<String> = scopes
        .iter()
        .filter_map(|s| s.strip_suffix("/.default").map(str::to_owned))
        .collect();
    let arm = arm_resources(sim);
    let kind_of = |res: &str| {
        if arm.iter().any(|a| a == res) || arm.iter().any(|a| format!("{a}/") == res) {
            Some(TokenKind::Arm)
        } else if res == ACR_RESOURCE || res == format!("{ACR_RESOURCE}/") {
            Some(TokenKind::Acr)
        } else {
            None
        }
    };
    let invalid_scope = || {
        error_resp(
            sim,
            400,
            "invalid_scope",
            70_011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        )
    };
    if resources.len() != scopes.len() {
        return invalid_scope();
    }
    let kinds: Vec<Option<TokenKind>> = resources.iter().map(|r| kind_of(r)).collect();
    if kinds.iter().any(Option::is_none) {
        return invalid_scope();
    }
    let mut distinct = resources.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() > 1 {
        return error_resp(
            sim,
            400,
            "invalid_scope",
            28_000,
            &format!(
                "Provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid."
            ),
        );
    }
    let kind = kinds[0].unwrap_or(TokenKind::Arm);
    let resource = &resources[0];
    let aud = if resource.ends_with('/') {
        resource.clone()
    } else {
        format!("{resource}/")
    };
    let now = util::now_secs();
    let lifetime = sim.token_lifetime.as_secs().max(1);
    let tid = &sim.tenant.tenant_id;
    let claims = Claims {
        kind,
        aud,
        iss: format!("https://sts.windows.net/{tid}/"),
        tid: tid.clone(),
        appid: principal.client_id.clone(),
        oid: principal.object_id.clone(),
        iat: now,
        nbf: now,
        exp: now + lifetime as i64,
        access: Vec::new(),
    };
    let token = sim.signer.sign(&claims);
    headers(Resp::json(
        200,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }),
    ))
}
