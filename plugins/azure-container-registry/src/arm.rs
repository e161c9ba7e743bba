//! Azure Resource Manager: the subscription, the registry list, and ARM's error envelope.

use keelson_plugin_sdk::http::{DEFAULT_RETRY_AFTER_MS, Response, display_url};
use keelson_plugin_sdk::{ConnectorError, Registry, Setting};
use serde_json::Value;

use crate::config::Config;
use crate::error::Error;
use crate::lenient;

pub(crate) const SUBSCRIPTIONS_API_VERSION: &str = "2022-12-01";
pub(crate) const REGISTRIES_API_VERSION: &str = "2025-04-01";

/// `GET` URL of the subscription.
pub(crate) fn subscription_url(config: &Config) -> String {
    format!(
        "{}/subscriptions/{}?api-version={SUBSCRIPTIONS_API_VERSION}",
        config.resource_manager, config.subscription_id
    )
}

/// `GET` URL of the first page of the subscription's registries.
pub(crate) fn registries_url(config: &Config) -> String {
    format!(
        "{}/subscriptions/{}/providers/Microsoft.ContainerRegistry/registries?api-version={REGISTRIES_API_VERSION}",
        config.resource_manager, config.subscription_id
    )
}

/// What `verify` reports about the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) display_name: Option<String>,
    pub(crate) state: Option<String>,
}

pub(crate) fn parse_subscription(response: &Response) -> Result<Subscription, ConnectorError> {
    let body = lenient::normalize(response.json::<Value>()?);
    Ok(Subscription {
        display_name: lenient::text(&body, &["displayname"]),
        state: lenient::text(&body, &["state"]),
    })
}

/// One registry from ARM, with what enrichment needs besides the contract's record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegistryInfo {
    pub(crate) registry: Registry,
    /// `networkRuleSet.defaultAction` (`Allow`, `Deny`).
    pub(crate) network_default_action: Option<String>,
}

/// One page of the registry list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegistryListPage {
    pub(crate) registries: Vec<RegistryInfo>,
    pub(crate) next_link: Option<String>,
}

/// Parses a page of `Registries_List`. Registries without a login server (still being created)
/// are left out with a warning: nothing can be listed in them yet.
pub(crate) fn parse_registry_page(response: &Response) -> Result<RegistryListPage, ConnectorError> {
    let body = lenient::normalize(response.json::<Value>()?);
    if lenient::at(&body, &["value"]).is_some_and(|v| !v.is_array()) {
        return Err(Error::Malformed {
            what: format!("`{}`", display_url(response.url())),
            detail: "`value` is not a list".into(),
        }
        .into());
    }
    let mut registries = Vec::new();
    for item in lenient::items(&body, &["value"]) {
        match parse_registry(item) {
            Some(info) => registries.push(info),
            None => keelson_plugin_sdk::warn!(
                "registry `{}` has no login server yet; skipped",
                lenient::text(item, &["id"]).unwrap_or_default()
            ),
        }
    }
    Ok(RegistryListPage {
        registries,
        next_link: lenient::text(&body, &["nextlink"]),
    })
}

fn parse_registry(item: &Value) -> Option<RegistryInfo> {
    let login_server = lenient::text(item, &["properties", "loginserver"])?.to_ascii_lowercase();
    let id = lenient::text(item, &["id"]).unwrap_or_default();
    let name = lenient::text(item, &["name"]).unwrap_or_else(|| login_server.clone());
    let public_network_access = lenient::text(item, &["properties", "publicnetworkaccess"])
        .and_then(|v| match v.to_ascii_lowercase().as_str() {
            "enabled" => Some(true),
            "disabled" => Some(false),
            _ => None,
        });
    let network_default_action =
        lenient::text(item, &["properties", "networkruleset", "defaultaction"]);

    let mut attributes = Vec::new();
    let mut attribute = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            attributes.push(Setting {
                key: key.to_owned(),
                value,
            });
        }
    };
    attribute("resource_group", resource_group(&id));
    attribute("network_default_action", network_default_action.clone());
    attribute(
        "admin_user_enabled",
        lenient::text(item, &["properties", "adminuserenabled"]),
    );
    attribute(
        "anonymous_pull_enabled",
        lenient::text(item, &["properties", "anonymouspullenabled"]),
    );
    attribute(
        "entra_arm_token_policy",
        lenient::text(
            item,
            &[
                "properties",
                "policies",
                "azureadauthenticationasarmpolicy",
                "status",
            ],
        ),
    );

    Some(RegistryInfo {
        registry: Registry {
            name: login_server,
            source_id: id,
            display_name: name,
            location: lenient::text(item, &["location"]),
            tier: lenient::first_text(item, &[&["sku", "tier"], &["sku", "name"]]),
            public_network_access,
            attributes,
        },
        network_default_action,
    })
}

/// The resource group named in an ARM id.
fn resource_group(id: &str) -> Option<String> {
    let mut parts = id.split('/');
    parts.find(|p| p.eq_ignore_ascii_case("resourcegroups"))?;
    parts.next().filter(|p| !p.is_empty()).map(str::to_owned)
}

/// The registry part of an ARM id (`/subscriptions/…/registries/<name>`), lowercased, from any
/// id below it (an assessment, a sub-assessment).
pub(crate) fn registry_resource_id(id: &str) -> Option<String> {
    const MARKER: &str = "/providers/microsoft.containerregistry/registries/";
    let lower = id.to_ascii_lowercase();
    let start = lower.find(MARKER)?;
    let name_start = start + MARKER.len();
    let name_end = lower[name_start..]
        .find('/')
        .map_or(lower.len(), |i| name_start + i);
    (name_end > name_start).then(|| lower[..name_end].to_owned())
}

/// A `nextLink` may only lead back to the Resource Manager the session talks to: the bearer
/// token goes with it.
pub(crate) fn check_next_link(config: &Config, link: &str) -> Result<(), ConnectorError> {
    let base = format!("{}/", config.resource_manager);
    if link.starts_with(&base) {
        Ok(())
    } else {
        Err(Error::ForeignLink {
            what: "the registry list",
            link: display_url(link),
            expected: config.resource_manager.clone(),
        }
        .into())
    }
}

/// ARM's `{"error":{"code","message"}}`.
fn cloud_error(response: &Response) -> (String, String) {
    let body = lenient::parse(&response.body);
    let code = lenient::first_text(&body, &[&["error", "code"], &["code"]])
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    let message = lenient::first_text(&body, &[&["error", "message"], &["message"]])
        .map_or_else(|| "no message".into(), |m| shorten(&m));
    (code, message)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 400;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        text.chars().take(MAX).chain(['…']).collect()
    }
}

/// Whether a 401 from ARM is worth one retry with a new token (it expired or was refused as
/// invalid), rather than a token for the wrong tenant, which a new one will not fix.
pub(crate) fn is_stale_token(response: &Response) -> bool {
    response.status == 401 && cloud_error(response).0 != "InvalidAuthenticationTokenTenant"
}

/// Maps an ARM error answer for `what` (a short description of the request) to a
/// [`ConnectorError`].
pub(crate) fn arm_error(response: &Response, config: &Config, what: &str) -> ConnectorError {
    let status = response.status;
    if status == 429 {
        return ConnectorError::Throttled(
            response.retry_after_ms().unwrap_or(DEFAULT_RETRY_AFTER_MS),
        );
    }
    let (code, message) = cloud_error(response);
    let what = what.to_owned();
    let error = match (status, code.as_str()) {
        (401, _) => Error::TokenRejected {
            code,
            subscription: config.subscription_id.clone(),
        },
        (403, "AuthorizationFailed") => Error::MissingRole {
            client_id: config.client_id.clone(),
            subscription: config.subscription_id.clone(),
        },
        (403, _) => Error::ArmForbidden {
            what,
            code,
            message,
        },
        (404, "SubscriptionNotFound") | (400, "InvalidSubscriptionId") => {
            Error::SubscriptionNotFound {
                subscription: config.subscription_id.clone(),
                tenant: config.tenant_id.clone(),
                cloud: config.cloud.name(),
            }
        }
        (404, _) => Error::ArmNotFound {
            what,
            code,
            message,
        },
        (408 | 500..=599, _) => Error::ArmUnavailable { what, code, status },
        _ => Error::ArmOther {
            what,
            code,
            status,
            message,
        },
    };
    error.into()
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::Settings;
    use serde_json::json;

    use super::*;
    use crate::testdata;

    fn config() -> Config {
        Config::from_settings(&Settings::from_pairs(&[
            ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", "CANARY-secret"),
            ("subscription_id", "00000000-0000-0000-0000-000000000000"),
        ]))
        .unwrap()
    }

    fn response(status: u16, body: &Value) -> Response {
        Response::new(
            "https://management.azure.com/subscriptions/x?api-version=1",
            status,
            &[],
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn urls_use_the_configured_endpoint() {
        let c = config();
        assert_eq!(
            registries_url(&c),
            "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.ContainerRegistry/registries?api-version=2025-04-01"
        );
        assert_eq!(
            subscription_url(&c),
            "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000?api-version=2022-12-01"
        );
    }

    #[test]
    fn parses_the_registry_list_sample() {
        let sample = testdata::sample("arm-containerregistry-RegistryList-2025-04-01.json");
        let page =
            parse_registry_page(&response(200, &sample["responses"]["200"]["body"])).unwrap();
        assert_eq!(page.next_link, None);
        assert_eq!(page.registries.len(), 1);
        let info = &page.registries[0];
        let r = &info.registry;
        assert_eq!(r.name, "myregistry.azurecr.io");
        assert_eq!(r.display_name, "myRegistry");
        assert!(r.source_id.ends_with("/registries/myRegistry"));
        assert_eq!(r.location.as_deref(), Some("westus"));
        assert_eq!(r.tier.as_deref(), Some("Standard"));
        assert_eq!(r.public_network_access, Some(true));
        assert_eq!(info.network_default_action.as_deref(), Some("Allow"));
        let attr = |k: &str| {
            r.attributes
                .iter()
                .find(|a| a.key == k)
                .map(|a| a.value.as_str())
        };
        assert_eq!(attr("resource_group"), Some("myResourceGroup"));
        assert_eq!(attr("network_default_action"), Some("Allow"));
        assert_eq!(attr("admin_user_enabled"), Some("false"));
        assert_eq!(attr("entra_arm_token_policy"), Some("enabled"));
    }

    #[test]
    fn registry_page_reads_next_link_and_skips_registries_without_login_server() {
        let body = json!({
            "value": [
                {"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/a",
                 "name": "a", "properties": {"loginServer": "a.azurecr.io", "publicNetworkAccess": "Disabled"}},
                {"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/b",
                 "name": "b", "properties": {"provisioningState": "Creating"}}
            ],
            "nextLink": "https://management.azure.com/subscriptions/s/providers/Microsoft.ContainerRegistry/registries?api-version=2025-04-01&$skipToken=abc"
        });
        let page = parse_registry_page(&response(200, &body)).unwrap();
        assert_eq!(page.registries.len(), 1);
        assert_eq!(
            page.registries[0].registry.public_network_access,
            Some(false)
        );
        assert!(page.next_link.unwrap().ends_with("$skipToken=abc"));
        let bad = parse_registry_page(&response(200, &json!({"value": 3}))).unwrap_err();
        assert_eq!(bad.kind(), "unavailable");
    }

    #[test]
    fn next_links_must_stay_on_the_resource_manager() {
        let c = config();
        assert!(check_next_link(&c, "https://management.azure.com/subscriptions/s?x").is_ok());
        let err = check_next_link(&c, "https://evil.example/subscriptions/s?x").unwrap_err();
        assert_eq!(err.kind(), "unavailable");
        assert!(
            err.message()
                .unwrap()
                .contains("`https://evil.example/subscriptions/s`")
        );
        assert!(check_next_link(&c, "https://management.azure.com.evil.example/x").is_err());
    }

    #[test]
    fn registry_ids_are_cut_from_assessment_ids() {
        let id = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/MyReg/providers/Microsoft.Security/assessments/c0b7/subassessments/x";
        assert_eq!(
            registry_resource_id(id).as_deref(),
            Some(
                "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerregistry/registries/myreg"
            )
        );
        assert_eq!(registry_resource_id("/subscriptions/s"), None);
    }

    #[test]
    fn subscription_sample_parses() {
        let sample = testdata::sample("arm-resources-GetSubscriptions-2022-12-01.json");
        let first = &sample["responses"]["200"]["body"]["value"][0];
        let s = parse_subscription(&response(200, first)).unwrap();
        assert_eq!(s.display_name.as_deref(), Some("Example Subscription"));
        assert_eq!(s.state.as_deref(), Some("Enabled"));
    }

    fn arm(status: u16, code: &str, message: &str) -> ConnectorError {
        arm_error(
            &response(
                status,
                &json!({"error": {"code": code, "message": message}}),
            ),
            &config(),
            "registry list",
        )
    }

    #[test]
    fn arm_errors_map_to_typed_errors_with_fixes() {
        let role = arm(
            403,
            "AuthorizationFailed",
            "The client 'x' with object id 'x' does not have authorization to perform action 'Microsoft.ContainerRegistry/registries/read'",
        );
        assert_eq!(role.kind(), "permission-denied");
        assert!(role.message().unwrap().contains("Reader role"));

        let missing = arm(
            404,
            "SubscriptionNotFound",
            "The subscription 'x' could not be found.",
        );
        assert_eq!(missing.kind(), "not-found");
        assert!(missing.message().unwrap().contains("`subscription_id`"));

        let expired = arm(
            401,
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time '…' is earlier than current UTC time '…'.",
        );
        assert_eq!(expired.kind(), "invalid-credentials");
        assert!(
            expired
                .message()
                .unwrap()
                .contains("ExpiredAuthenticationToken")
        );

        assert_eq!(arm(503, "ServiceUnavailable", "x").kind(), "unavailable");
        assert_eq!(arm(409, "Conflict", "busy").kind(), "other");
        assert_eq!(arm(404, "ResourceNotFound", "gone").kind(), "not-found");
        let throttled = arm_error(
            &Response::new("https://m/x", 429, &[("Retry-After", "10")], b"{}"),
            &config(),
            "x",
        );
        assert_eq!(throttled, ConnectorError::Throttled(10_000));
    }

    #[test]
    fn only_wrong_tenant_tokens_are_not_retried() {
        let stale = response(
            401,
            &json!({"error": {"code": "ExpiredAuthenticationToken"}}),
        );
        assert!(is_stale_token(&stale));
        let tenant = response(
            401,
            &json!({"error": {"code": "InvalidAuthenticationTokenTenant"}}),
        );
        assert!(!is_stale_token(&tenant));
        assert!(!is_stale_token(&response(403, &json!({}))));
    }
}
