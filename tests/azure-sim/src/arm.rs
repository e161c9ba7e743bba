//! Azure Resource Manager: subscriptions and container registries, with ARM's auth errors,
//! api-version checks, `nextLink` paging and token-bucket throttling. Under
//! `arm-nextlink-loop-at-end` ([`Anomaly`]) the last page of a registry list links to itself.

use serde_json::{Value, json};

use crate::anomaly::Anomaly;
use crate::server::{Principal, Req, Resp, Sim};
use crate::tenant::Registry;
use crate::throttle::{Verdict, ceil_secs};
use crate::tokens::{Claims, TokenKind};
use crate::util::{self, compact_time, request_guid, us_time};

const SUBSCRIPTION_API_VERSIONS: &[&str] = &[
    "2014-04-01",
    "2015-01-01",
    "2016-06-01",
    "2018-06-01",
    "2019-06-01",
    "2019-11-01",
    "2020-01-01",
    "2021-01-01",
    "2022-01-01",
    "2022-09-01",
    "2022-12-01",
];

const REGISTRY_API_VERSIONS: &[&str] = &[
    "2017-10-01",
    "2019-05-01",
    "2021-09-01",
    "2022-12-01",
    "2023-01-01-preview",
    "2023-07-01",
    "2023-11-01-preview",
    "2024-11-01-preview",
    "2025-04-01",
    "2025-05-01-preview",
    "2026-01-01-preview",
];

pub(crate) fn endpoint(r: &Req) -> &'static str {
    let p = r.path.to_ascii_lowercase();
    let seg: Vec<&str> = p.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        ["providers", "microsoft.resourcegraph", "resources"] => "arg.resources",
        ["subscriptions"] => "arm.subscriptions",
        ["subscriptions", _] => "arm.subscription",
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.containerregistry",
            "registries",
        ]
        | [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.containerregistry",
            "registries",
        ] => "arm.registries",
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.containerregistry",
            "registries",
            _,
        ] => "arm.registry",
        _ => "unknown",
    }
}

/// Adds ARM's common response headers.
pub(crate) fn headers(mut resp: Resp) -> Resp {
    let id = request_guid();
    resp.set("cache-control", "no-cache")
        .set("pragma", "no-cache")
        .set("expires", "-1")
        .set("vary", "Accept-Encoding")
        .set("x-ms-request-id", &id)
        .set("x-ms-correlation-request-id", &id)
        .set(
            "x-ms-routing-request-id",
            &format!("WESTEUROPE:{}:{id}", compact_time(util::now_secs())),
        )
        .set(
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        )
        .set("x-content-type-options", "nosniff");
    resp
}

/// An ARM CloudError.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Resp {
    headers(Resp::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    ))
}

fn unauthorized(sim: &Sim, code: &str, message: &str) -> Resp {
    let mut resp = error(401, code, message);
    resp.set(
        "www-authenticate",
        &format!(
            "Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\", error_description=\"{}\"",
            sim.login_url(),
            sim.tenant.tenant_id,
            if code == "AuthenticationFailed" {
                "The authentication failed because of missing 'Authorization' header."
            } else {
                "The access token is invalid."
            }
        ),
    );
    resp
}

/// Checks the bearer token of an ARM or Resource Graph request.
pub(crate) fn authenticate<'a>(sim: &'a Sim, r: &Req) -> Result<(Claims, &'a Principal), Resp> {
    let Some(token) = r.bearer() else {
        return Err(unauthorized(
            sim,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let Some(claims) = sim.signer.verify(token) else {
        return Err(unauthorized(
            sim,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ));
    };
    if claims.kind != TokenKind::Arm {
        return Err(unauthorized(
            sim,
            "InvalidAuthenticationToken",
            &format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
                claims.aud.trim_end_matches('/')
            ),
        ));
    }
    if sim.token_expired(claims.iat, claims.exp) {
        let now = util::now_secs();
        let exp = claims.exp.min(now - 1);
        return Err(unauthorized(
            sim,
            "ExpiredAuthenticationToken",
            &format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                us_time(exp),
                us_time(now)
            ),
        ));
    }
    if claims.tid != sim.tenant.tenant_id {
        return Err(unauthorized(
            sim,
            "InvalidAuthenticationTokenTenant",
            &format!(
                "The access token is from the wrong issuer '{}'. It must match the tenant 'https://sts.windows.net/{}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{}' to get the token.",
                claims.iss, sim.tenant.tenant_id, sim.tenant.tenant_id
            ),
        ));
    }
    let Some(principal) = sim.principal(&claims.appid) else {
        return Err(unauthorized(
            sim,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ));
    };
    Ok((claims, principal))
}

/// Validates `api-version` against a list.
pub(crate) fn check_api_version(
    r: &Req,
    supported: &[&str],
    provider_type: Option<&str>,
) -> Result<String, Resp> {
    let Some(v) = r.query("api-version") else {
        return Err(error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if supported.contains(&v) {
        return Ok(v.to_owned());
    }
    let list = supported.join(", ");
    Err(match provider_type {
        Some(t) => error(
            400,
            "NoRegisteredProviderFound",
            &format!(
                "No registered resource provider found for location 'westeurope' and API version '{v}' for type '{t}'. The supported api-versions are '{list}'. The supported locations are 'westeurope, northeurope, eastus, westus'."
            ),
        ),
        None => error(
            400,
            "InvalidApiVersionParameter",
            &format!("The api-version '{v}' is invalid. The supported versions are '{list}'."),
        ),
    })
}

/// Takes one read from the principal's bucket; `Err` is the 429.
fn throttle(
    sim: &Sim,
    principal: &Principal,
    subscription: Option<&str>,
) -> Result<Vec<(String, String)>, Resp> {
    let cap = sim.limits.arm_reads_capacity;
    let rate = sim.limits.arm_reads_per_sec;
    let (key, global_key, header) = match subscription {
        Some(sub) => (
            format!("arm:{sub}:{}", principal.object_id),
            Some(format!("arm-global:{sub}")),
            "x-ms-ratelimit-remaining-subscription-reads",
        ),
        None => (
            format!("arm-tenant:{}", principal.object_id),
            None,
            "x-ms-ratelimit-remaining-tenant-reads",
        ),
    };
    if !sim.throttling {
        let mut h = vec![(header.to_owned(), (cap - 1).to_string())];
        if global_key.is_some() {
            h.push((
                "x-ms-ratelimit-remaining-subscription-global-reads".to_owned(),
                (cap * 15 - 1).to_string(),
            ));
        }
        return Ok(h);
    }
    let throttled = |retry: u64| {
        let (code, scope) = match subscription {
            Some(sub) => (
                "SubscriptionRequestsThrottled",
                format!("subscription '{sub}'"),
            ),
            None => (
                "TenantRequestsThrottled",
                format!("tenant '{}'", sim.tenant.tenant_id),
            ),
        };
        error(
            429,
            code,
            &format!("Number of 'read' requests for {scope} actor '{}' exceeded. Please try again after '{retry}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling", principal.object_id),
        )
        .with("retry-after", &retry.to_string())
        .with(header, "0")
    };
    let mut out = Vec::new();
    match sim.throttles.bucket(&key, cap, rate) {
        Verdict::Allowed { remaining, .. } => out.push((header.to_owned(), remaining.to_string())),
        Verdict::Throttled { retry_after } => return Err(throttled(ceil_secs(retry_after))),
    }
    if let Some(g) = global_key {
        match sim.throttles.bucket(&g, cap * 15, rate * 15.0) {
            Verdict::Allowed { remaining, .. } => out.push((
                "x-ms-ratelimit-remaining-subscription-global-reads".to_owned(),
                remaining.to_string(),
            )),
            Verdict::Throttled { retry_after } => return Err(throttled(ceil_secs(retry_after))),
        }
    }
    Ok(out)
}

fn with_headers(mut resp: Resp, extra: &[(String, String)]) -> Resp {
    for (k, v) in extra {
        resp.set(k, v);
    }
    resp
}

fn subscription_json(sim: &Sim, index: usize) -> Value {
    let s = &sim.tenant.subscriptions[index];
    json!({
        "id": format!("/subscriptions/{}", s.id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": s.id,
        "tenantId": sim.tenant.tenant_id,
        "displayName": s.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off"
        },
        "tags": {}
    })
}

pub(crate) fn registry_json(reg: &Registry) -> Value {
    let s = &reg.spec;
    let mut h = util::Rng::new(&[reg.name_hash, 0xC4]);
    let created = 1_640_995_200 + i64::from(h.range(0, 60_000_000));
    json!({
        "id": reg.arm_id,
        "name": s.name,
        "type": "Microsoft.ContainerRegistry/registries",
        "location": s.location,
        "tags": {},
        "sku": {"name": s.sku.as_str(), "tier": s.sku.as_str()},
        "properties": {
            "loginServer": reg.login_server,
            "creationDate": util::rfc3339_7(created, h.range(0, 9_999_999)),
            "provisioningState": "Succeeded",
            "adminUserEnabled": false,
            "networkRuleSet": {
                "defaultAction": if s.public_network { "Allow" } else { "Deny" },
                "ipRules": []
            },
            "policies": {
                "quarantinePolicy": {"status": "disabled"},
                "trustPolicy": {"type": "Notary", "status": "disabled"},
                "retentionPolicy": {
                    "days": 7,
                    "lastUpdatedTime": "2021-06-15T21:40:12.8506835+00:00",
                    "status": "disabled"
                },
                "exportPolicy": {"status": "enabled"},
                "azureADAuthenticationAsArmPolicy": {
                    "status": if s.aad_as_arm { "enabled" } else { "disabled" }
                }
            },
            "encryption": {"status": "disabled"},
            "status": null,
            "dataEndpointEnabled": false,
            "dataEndpointHostNames": [],
            "privateEndpointConnections": [],
            "publicNetworkAccess": if s.public_network { "Enabled" } else { "Disabled" },
            "networkRuleBypassOptions": "AzureServices",
            "zoneRedundancy": "Disabled",
            "anonymousPullEnabled": false
        }
    })
}

fn forbidden(principal: &Principal, action: &str, scope: &str) -> Resp {
    error(
        403,
        "AuthorizationFailed",
        &format!(
            "The client '{0}' with object id '{0}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            principal.object_id
        ),
    )
}

fn skip_of(r: &Req) -> usize {
    r.query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("$skiptoken"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A page of `items` with an absolute `nextLink` when more remain. With `loop_at_end`, the last
/// page links to itself as well, so the listing never ends.
fn page(sim: &Sim, r: &Req, api_version: &str, items: &[Value], loop_at_end: bool) -> Value {
    let size = sim.tenant.arm_page_size;
    let skip = skip_of(r).min(items.len());
    let end = (skip + size).min(items.len());
    let mut body = json!({"value": items[skip..end].to_vec()});
    if end < items.len() || loop_at_end {
        // A repeating nextLink points back at the page just served.
        let next = if sim.faults().repeat_page_token || end == items.len() {
            skip
        } else {
            end
        };
        body["nextLink"] = Value::String(format!(
            "{}{}?api-version={api_version}&%24skipToken={next}",
            sim.management_url(),
            r.path
        ));
    }
    body
}

pub(crate) fn handle(sim: &Sim, r: &Req) -> Resp {
    let endpoint = endpoint(r);
    if endpoint == "unknown" {
        return error(
            404,
            "NotFound",
            &format!(
                "The requested path `{}` does not exist in the simulator.",
                r.path
            ),
        );
    }
    if r.method != axum::http::Method::GET {
        return error(
            405,
            "MethodNotAllowed",
            &format!(
                "The requested method `{}` is not allowed for this resource.",
                r.method
            ),
        );
    }
    let (_, principal) = match authenticate(sim, r) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let seg: Vec<String> = r
        .path
        .trim_matches('/')
        .split('/')
        .map(util::decode_component)
        .collect();
    if endpoint == "arm.subscriptions" {
        let version = match check_api_version(r, SUBSCRIPTION_API_VERSIONS, None) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let extra = match throttle(sim, principal, None) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        let subs: Vec<Value> = if principal.has_role {
            (0..sim.tenant.subscriptions.len())
                .map(|i| subscription_json(sim, i))
                .collect()
        } else {
            Vec::new()
        };
        return with_headers(
            headers(Resp::json(200, &page(sim, r, &version, &subs, false))),
            &extra,
        );
    }
    let sub_id = seg.get(1).cloned().unwrap_or_default();
    let Some(sub_index) = sim
        .tenant
        .subscriptions
        .iter()
        .position(|s| s.id.eq_ignore_ascii_case(&sub_id))
    else {
        // ARM checks the api-version before it looks the subscription up.
        let supported = if endpoint == "arm.subscription" {
            SUBSCRIPTION_API_VERSIONS
        } else {
            REGISTRY_API_VERSIONS
        };
        if let Err(resp) = check_api_version(r, supported, None) {
            return resp;
        }
        return error(
            404,
            "SubscriptionNotFound",
            &format!("The subscription '{sub_id}' could not be found."),
        );
    };
    let sub = sim.tenant.subscriptions[sub_index].id.clone();
    if endpoint == "arm.subscription" {
        if let Err(resp) = check_api_version(r, SUBSCRIPTION_API_VERSIONS, None) {
            return resp;
        }
        if !principal.has_role {
            return forbidden(
                principal,
                "Microsoft.Resources/subscriptions/read",
                &format!("/subscriptions/{sub}"),
            );
        }
        let extra = match throttle(sim, principal, Some(&sub)) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        return with_headers(
            headers(Resp::json(200, &subscription_json(sim, sub_index))),
            &extra,
        );
    }
    let version = match check_api_version(r, REGISTRY_API_VERSIONS, Some("registries")) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let rg =
        (seg.len() >= 4 && seg[2].eq_ignore_ascii_case("resourceGroups")).then(|| seg[3].clone());
    if !principal.has_role {
        let scope = match &rg {
            Some(rg) => format!("/subscriptions/{sub}/resourceGroups/{rg}"),
            None => format!("/subscriptions/{sub}"),
        };
        return forbidden(
            principal,
            "Microsoft.ContainerRegistry/registries/read",
            &scope,
        );
    }
    let extra = match throttle(sim, principal, Some(&sub)) {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    let in_scope = |reg: &&Registry| {
        reg.subscription_id == sub
            && rg
                .as_ref()
                .is_none_or(|g| reg.spec.resource_group.eq_ignore_ascii_case(g))
    };
    if endpoint == "arm.registry" {
        let name = seg.get(7).cloned().unwrap_or_default();
        return match sim
            .tenant
            .registries
            .iter()
            .filter(in_scope)
            .find(|reg| reg.spec.name.eq_ignore_ascii_case(&name))
        {
            Some(reg) => with_headers(headers(Resp::json(200, &registry_json(reg))), &extra),
            None => error(
                404,
                "ResourceNotFound",
                &format!(
                    "The Resource 'Microsoft.ContainerRegistry/registries/{name}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                    rg.unwrap_or_default()
                ),
            ),
        };
    }
    if let Some(g) = &rg
        && !sim
            .tenant
            .registries
            .iter()
            .any(|reg| reg.spec.resource_group.eq_ignore_ascii_case(g))
    {
        return error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{g}' could not be found."),
        );
    }
    let items: Vec<Value> = sim
        .tenant
        .registries
        .iter()
        .filter(in_scope)
        .map(registry_json)
        .collect();
    let loop_at_end = sim.faults().has(Anomaly::ArmNextlinkLoopAtEnd);
    with_headers(
        headers(Resp::json(
            200,
            &page(sim, r, &version, &items, loop_at_end),
        )),
        &extra,
    )
}
