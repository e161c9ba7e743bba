//! Sign-in: the Entra ID client-credentials token, the registry's token exchange, and the
//! mapping of Entra ID's `AADSTS` errors to operator messages.
//!
//! The data plane is reached with the Resource Manager token: `/oauth2/exchange` turns it into
//! a registry refresh token, `/oauth2/token` turns that into an access token for one scope.
//! Parsing here is pure; the session does the requests and caches the [`Token`]s.

use std::fmt;

use keelson_plugin_sdk::http::{DEFAULT_RETRY_AFTER_MS, Response, display_url};
use keelson_plugin_sdk::{ConnectorError, Secret};
use serde_json::Value;

use crate::config::{Cloud, Config};
use crate::error::Error;
use crate::lenient;

/// Lifetime assumed for a registry token that does not say when it expires. A token that
/// expires earlier is caught by the 401-and-retry path.
const REGISTRY_TOKEN_FALLBACK_SECS: u64 = 30 * 60;

/// A sealed bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    value: Secret,
    refresh_at: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A token valid for `lifetime` seconds from `now`, renewed a little before it ends (a tenth
    /// of its life, at most five minutes), so a request never leaves with a dying token.
    pub(crate) fn new(value: Secret, now: u64, lifetime: u64) -> Self {
        let margin = (lifetime / 10).min(300);
        Self {
            value,
            refresh_at: now + lifetime - margin,
        }
    }

    pub(crate) fn value(&self) -> &Secret {
        &self.value
    }

    pub(crate) fn is_fresh(&self, now: u64) -> bool {
        now < self.refresh_at
    }
}

/// The plain fields of the client-credentials request; the host adds the sealed
/// `client_secret`.
pub(crate) fn client_credentials_form(config: &Config) -> [(&'static str, &str); 3] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", config.client_id.as_str()),
        ("scope", config.arm_scope.as_str()),
    ]
}

/// Reads Entra ID's answer to the client-credentials request.
pub(crate) fn parse_entra_token(
    response: &Response,
    config: &Config,
    now: u64,
) -> Result<Token, ConnectorError> {
    if !response.is_success() {
        return Err(entra_error(response, config));
    }
    let body: Value = response.json()?;
    let body = lenient::normalize(body);
    let value = response
        .captured("access_token")
        .map_err(|_| Error::Malformed {
            what: format!("`{}`", display_url(response.url())),
            detail: "no `access_token` in the token response".into(),
        })?;
    // v2 answers numbers, v1 strings; both are seconds.
    let lifetime = lenient::unsigned(&body, &["expires_in"]).unwrap_or(3599);
    Ok(Token::new(value, now, lifetime))
}

/// Maps an Entra ID error answer to a [`ConnectorError`].
pub(crate) fn entra_error(response: &Response, config: &Config) -> ConnectorError {
    let status = response.status;
    if status == 429 {
        return ConnectorError::Throttled(
            response.retry_after_ms().unwrap_or(DEFAULT_RETRY_AFTER_MS),
        );
    }
    if status >= 500 || status == 408 {
        return ConnectorError::Unavailable(format!(
            "sign-in at `{}` failed with HTTP {status}; try again later",
            display_url(response.url())
        ));
    }
    let body = lenient::parse(&response.body);
    let description = lenient::text(&body, &["error_description"]).unwrap_or_default();
    let code = lenient::items(&body, &["error_codes"])
        .iter()
        .find_map(Value::as_u64)
        .or_else(|| aadsts_code(&description));
    let client_id = config.client_id.clone();
    let tenant = config.tenant_id.clone();
    let error = match code {
        Some(7_000_215) => Error::WrongSecret { client_id },
        Some(7_000_222) => Error::ExpiredSecret { client_id },
        Some(700_016) => Error::UnknownApp { client_id, tenant },
        Some(90_002) => Error::UnknownTenant { tenant },
        Some(900_023) => Error::BadTenant(tenant),
        Some(70_011) => Error::BadScope {
            scope: config.arm_scope.clone(),
            hint: if config.cloud == Cloud::Custom {
                "check `resource_manager_endpoint`; tokens are requested for `<endpoint>/.default`"
            } else {
                "check that `cloud` is the tenant's cloud"
            },
        },
        other => {
            let code = match other {
                Some(n) => format!("AADSTS{n}"),
                None => lenient::text(&body, &["error"]).unwrap_or_else(|| "no error code".into()),
            };
            let first_line = description.lines().next().unwrap_or_default();
            let description = if first_line.is_empty() {
                format!("`{}` gave no description", display_url(response.url()))
            } else {
                shorten(first_line)
            };
            Error::SignInRefused {
                client_id,
                code,
                status,
                description,
            }
        }
    };
    error.into()
}

fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        text.chars().take(MAX).chain(['…']).collect()
    }
}

/// The number after `AADSTS` in a description.
fn aadsts_code(description: &str) -> Option<u64> {
    let start = description.find("AADSTS")? + "AADSTS".len();
    let digits: String = description[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Reads the token `field` (captured by the host) of a registry's `/oauth2/exchange` or
/// `/oauth2/token` answer, with its lifetime (its JWT `exp`, as the host read it).
pub(crate) fn parse_registry_token(
    response: &Response,
    field: &str,
    now: u64,
) -> Result<Token, ConnectorError> {
    // The body is checked as JSON first: a malformed answer is reported as such.
    let _: Value = response.json()?;
    let value = response.captured(field).map_err(|_| Error::Malformed {
        what: format!("`{}`", display_url(response.url())),
        detail: format!("no `{field}` in the answer"),
    })?;
    let lifetime = value
        .expires_at()
        .map_or(REGISTRY_TOKEN_FALLBACK_SECS, |exp| exp.saturating_sub(now))
        .max(1);
    Ok(Token::new(value, now, lifetime))
}

/// A `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) realm: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) error: Option<String>,
}

/// Parses a Bearer challenge; quoted values may hold commas (`repository:a:pull,push`).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let rest = header.trim();
    let scheme_end = rest.find(char::is_whitespace)?;
    if !rest[..scheme_end].eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut challenge = Challenge::default();
    let mut chars = rest[scheme_end..].chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
            value = value.trim().to_string();
        }
        match name.trim().to_ascii_lowercase().as_str() {
            "realm" => challenge.realm = Some(value),
            "service" => challenge.service = Some(value),
            "scope" => challenge.scope = Some(value),
            "error" => challenge.error = Some(value),
            _ => {}
        }
    }
    Some(challenge)
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::Settings;
    use keelson_plugin_sdk::http::{RawResponse, Request};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

    /// `body` answered at `url`, with `field` captured as the host would.
    fn answered(url: &str, status: u16, body: &str, field: &str) -> Response {
        let body = body.as_bytes().to_vec();
        keelson_plugin_sdk::http::Client::with_transport(move |_: &Request| {
            Ok(RawResponse {
                status,
                headers: Vec::new(),
                body: body.clone(),
            })
        })
        .post(url)
        .capture(field, &[])
        .send()
        .unwrap()
    }

    fn entra(status: u16, body: &str) -> Response {
        answered(
            "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            status,
            body,
            "access_token",
        )
    }

    #[test]
    fn parses_the_documented_success_sample() {
        let sample = testdata::sample("entra-token-v2-success.json");
        let response = entra(200, &sample.to_string());
        let token = parse_entra_token(&response, &config(), 1000).unwrap();
        assert_eq!(token.value().name(), "access_token");
        assert!(token.is_fresh(1000 + 3599 - 301));
        assert!(!token.is_fresh(1000 + 3599 - 300));
    }

    #[test]
    fn v1_string_lifetimes_are_read() {
        let response = entra(
            200,
            r#"{"token_type":"Bearer","expires_in":"600","access_token":"abc"}"#,
        );
        let token = parse_entra_token(&response, &config(), 0).unwrap();
        assert!(token.is_fresh(539) && !token.is_fresh(540));
    }

    #[test]
    fn missing_access_token_is_unavailable() {
        let err = parse_entra_token(&entra(200, r#"{"expires_in":1}"#), &config(), 0).unwrap_err();
        assert_eq!(err.kind(), "unavailable");
    }

    fn aadsts(code: u64, error: &str, description: &str, status: u16) -> ConnectorError {
        let body = serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: x\r\nCorrelation ID: y"),
            "error_codes": [code],
        });
        entra_error(&entra(status, &body.to_string()), &config())
    }

    #[test]
    fn each_aadsts_code_has_its_own_message() {
        let wrong = aadsts(
            7_000_215,
            "invalid_client",
            "Invalid client secret provided.",
            401,
        );
        assert_eq!(wrong.kind(), "invalid-credentials");
        assert!(
            wrong
                .message()
                .unwrap()
                .contains("Value (not its Secret ID)")
        );

        let expired = aadsts(
            7_000_222,
            "invalid_client",
            "The provided client secret keys are expired.",
            401,
        );
        assert!(expired.message().unwrap().contains("has expired"));

        let app = aadsts(
            700_016,
            "unauthorized_client",
            "Application not found.",
            400,
        );
        assert!(app.message().unwrap().contains("AADSTS700016"));
        assert!(app.message().unwrap().contains("`client_id`"));

        let tenant = aadsts(90_002, "invalid_request", "Tenant not found.", 400);
        assert_eq!(tenant.kind(), "invalid-credentials");
        assert!(tenant.message().unwrap().contains("`tenant_id`"));

        let messages: std::collections::HashSet<_> = [&wrong, &expired, &app, &tenant]
            .iter()
            .map(|e| e.message().unwrap().to_owned())
            .collect();
        assert_eq!(messages.len(), 4);
    }

    #[test]
    fn the_documented_invalid_scope_sample_names_the_scope() {
        let sample = testdata::sample("entra-token-v2-error-invalid_scope.json");
        let err = entra_error(&entra(400, &sample.to_string()), &config());
        assert_eq!(err.kind(), "invalid-config");
        assert!(
            err.message()
                .unwrap()
                .contains("`https://management.azure.com/.default`")
        );
    }

    #[test]
    fn code_is_read_from_the_description_when_codes_are_missing() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret is provided."}"#;
        let err = entra_error(&entra(401, body), &config());
        assert!(err.message().unwrap().contains("AADSTS7000215"));
    }

    #[test]
    fn unknown_codes_keep_only_the_first_description_line() {
        let err = aadsts(
            50_034,
            "invalid_request",
            "The user account does not exist.",
            400,
        );
        assert_eq!(err.kind(), "invalid-credentials");
        let msg = err.message().unwrap();
        assert!(msg.contains("AADSTS50034") && msg.contains("does not exist"));
        assert!(!msg.contains("Trace ID"), "{msg}");
    }

    #[test]
    fn throttling_and_outages_are_not_credential_errors() {
        let throttled = entra_error(
            &Response::new("https://l/t", 429, &[("Retry-After", "4")], b""),
            &config(),
        );
        assert_eq!(throttled, ConnectorError::Throttled(4000));
        assert_eq!(
            entra_error(&entra(503, ""), &config()).kind(),
            "unavailable"
        );
        // Non-JSON client errors still say something useful.
        let err = entra_error(&entra(400, "<html>"), &config());
        assert!(err.message().unwrap().contains("no error code"));
    }

    #[test]
    fn registry_tokens_use_the_jwt_expiry() {
        let claims = URL_SAFE_NO_PAD.encode(br#"{"exp":5000,"iss":"Azure Container Registry"}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig");
        let response = answered(
            "https://r.azurecr.io/oauth2/exchange",
            200,
            &format!(r#"{{"refresh_token":"{jwt}"}}"#),
            "refresh_token",
        );
        let token = parse_registry_token(&response, "refresh_token", 1000).unwrap();
        assert_eq!(token.value().expires_at(), Some(5000));
        assert!(token.is_fresh(4000) && !token.is_fresh(4700));
    }

    #[test]
    fn registry_tokens_from_the_samples_parse() {
        let exchange = testdata::sample("acr-dataplane-PostRefreshToken-2021-07-01.json");
        let body = &exchange["responses"]["200"]["body"];
        let response = answered(
            "https://r/oauth2/exchange",
            200,
            &body.to_string(),
            "refresh_token",
        );
        let token = parse_registry_token(&response, "refresh_token", 0).unwrap();
        assert_eq!(token.value().name(), "refresh_token");
        // Opaque tokens get the fallback lifetime.
        let opaque = answered(
            "https://r/oauth2/token",
            200,
            r#"{"access_token":"Sanitized"}"#,
            "access_token",
        );
        let token = parse_registry_token(&opaque, "access_token", 0).unwrap();
        assert!(token.is_fresh(REGISTRY_TOKEN_FALLBACK_SECS - 181));
        let missing = answered("https://r/oauth2/token", 200, "{}", "access_token");
        assert_eq!(
            parse_registry_token(&missing, "access_token", 0)
                .unwrap_err()
                .kind(),
            "unavailable"
        );
    }

    #[test]
    fn challenges_from_the_recordings_parse() {
        let recording = testdata::sample("acr-recording-list-manifests-by-pages.json");
        let header = recording["Entries"][0]["ResponseHeaders"]["WWW-Authenticate"]
            .as_str()
            .unwrap();
        let c = parse_challenge(header).unwrap();
        assert_eq!(
            c.realm.as_deref(),
            Some("https://myregistry.azurecr.io/oauth2/token")
        );
        assert_eq!(c.service.as_deref(), Some("myregistry.azurecr.io"));
        assert_eq!(
            c.scope.as_deref(),
            Some("repository:library/hello-world:metadata_read")
        );
        assert_eq!(c.error, None);

        let c = parse_challenge(
            r#"Bearer realm="https://r/oauth2/token",service="r",scope="repository:a:pull,push",error="invalid_token""#,
        )
        .unwrap();
        assert_eq!(c.scope.as_deref(), Some("repository:a:pull,push"));
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(parse_challenge("Basic realm=\"x\""), None);
    }

    #[test]
    fn the_plain_form_carries_the_scope_and_never_the_secret() {
        let config = config();
        let form = client_credentials_form(&config);
        assert!(form.contains(&("scope", "https://management.azure.com/.default")));
        assert!(form.contains(&("grant_type", "client_credentials")));
        assert!(
            form.iter()
                .all(|(k, v)| *k != "client_secret" && !v.contains("CANARY"))
        );
        let token = Token::new(Secret::for_tests("access_token", "SECRET-TOKEN"), 0, 10);
        assert!(!format!("{token:?}").contains("SECRET"));
    }
}
