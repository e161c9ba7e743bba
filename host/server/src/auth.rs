//! Who may do what: the `Host` check, API tokens and sessions, roles, Origin and CSRF checks.
//!
//! Every request passes `guard` first. It refuses a `Host` that is not one of the bound
//! addresses, so a page on another site that rebinds its DNS name to 127.0.0.1 reaches nothing.
//! It then finds the caller: a bearer token, or a session cookie made by signing in with a token.
//! A request that changes something must carry an allowed `Origin` (browsers always send it on
//! such requests; API clients with a bearer token may leave it out; behind an `https://` public
//! URL only that origin is allowed), and when it rides on the session cookie, the session's CSRF
//! token in `X-CSRF-Token` as well. A request of nobody is answered here unless it is for one of
//! the few open routes (`is_open`: sign-in, health, assets), so no handler reads, let alone
//! parses, its body. A bearer token or sign-in that names no live token is logged and counted
//! against the client's address; past the limit the address gets `429` for a while.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Redirect, Response};
use serde::Serialize;

use crate::{ApiError, AppState, token_hash};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "keelson_session";
/// The header carrying a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a token may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also scan, verify and suppress.
    Operator,
    /// Also add connections and change what they scan.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// An authenticated caller: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// How the caller appears in the event log.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// The caller of one request, as `guard` found it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Option<Principal>,
    /// The CSRF token of the caller's session, for pages to embed.
    pub csrf: Option<String>,
    /// The peer's address, which failed sign-ins count against; `None` when unknown.
    pub client: Option<IpAddr>,
}

impl Caller {
    /// The principal if it has at least `role`.
    pub fn require(&self, role: Role) -> Result<&Principal, ApiError> {
        let principal = self
            .principal
            .as_ref()
            .ok_or_else(ApiError::unauthenticated)?;
        if principal.role < role {
            return Err(ApiError::forbidden(role.as_str(), principal.role.as_str()));
        }
        Ok(principal)
    }

    pub fn can(&self, role: Role) -> bool {
        self.principal.as_ref().is_some_and(|p| p.role >= role)
    }
}

/// Starts a browser session for the token hashing to `token_sha256`, kept in the store (by the
/// SHA-256 of the cookie value) so it outlives a restart. Returns the cookie value, the CSRF
/// token and the principal; `None` when the token is unknown or revoked.
pub(crate) fn start_session(
    state: &AppState,
    token_sha256: &str,
) -> Result<Option<(String, String, Principal)>, ApiError> {
    let id = hex::encode(rand::random::<[u8; 32]>());
    let csrf = hex::encode(rand::random::<[u8; 32]>());
    let lifetime = state.config().session_lifetime;
    state.write(|s| {
        let Some(token) = s.token_by_hash(token_sha256)? else {
            return Ok(None);
        };
        let Some(role) = Role::parse(&token.role) else {
            return Ok(None);
        };
        s.create_session(&token_hash(&id), token.id, &csrf, lifetime)?;
        Ok(Some((
            id,
            csrf,
            Principal {
                name: token.name,
                role,
            },
        )))
    })
}

/// Ends session `id` (the cookie value), if it exists.
pub(crate) fn end_session(state: &AppState, id: &str) -> Result<(), ApiError> {
    state.write(|s| Ok(s.end_session(&token_hash(id)).map(|_| ())?))
}

/// The principal and CSRF token of live session `id` (the cookie value). Only reads; the use is
/// recorded in the background when it is due.
fn find_session(state: &AppState, id: &str) -> Result<Option<(Principal, String)>, ApiError> {
    let idle = state.config().session_idle;
    let hash = token_hash(id);
    let session = state.read(|s| Ok(s.find_session(&hash, idle)?))?;
    if session.as_ref().is_some_and(|s| s.touch_due) {
        state.touch_session_later(hash);
    }
    Ok(session.and_then(|s| {
        Role::parse(&s.token.role).map(|role| {
            (
                Principal {
                    name: s.token.name,
                    role,
                },
                s.csrf,
            )
        })
    }))
}

/// The `Set-Cookie` value that starts a session; `Secure` when the public URL is `https://`.
pub(crate) fn session_cookie(state: &AppState, id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{}",
        secure(state)
    )
}

/// The `Set-Cookie` value that ends one.
pub(crate) fn clear_cookie(state: &AppState) -> String {
    format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure(state)
    )
}

fn secure(state: &AppState) -> &'static str {
    if state.config().secure_cookies() {
        "; Secure"
    } else {
        ""
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The principal a token hash stands for, if the token exists and is not revoked.
pub(crate) fn principal_of(
    state: &AppState,
    token_sha256: &str,
) -> Result<Option<Principal>, ApiError> {
    let token = state.read(|s| Ok(s.token_by_hash(token_sha256)?))?;
    Ok(token.and_then(|t| Role::parse(&t.role).map(|role| Principal { name: t.name, role })))
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// Whether a request of nobody may reach the handler of `method` `path`: signing in and out,
/// the health check, the sign-in page and the page's assets. Every other route needs a caller.
pub(crate) fn is_open(method: &Method, path: &str) -> bool {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match path {
        "/api/v1/health" | "/static/app.css" | "/static/app.js" => read,
        "/api/v1/session" => matches!(*method, Method::POST | Method::DELETE),
        "/signin" => read || *method == Method::POST,
        "/signout" => *method == Method::POST,
        _ => false,
    }
}

/// The middleware every request passes: Host, caller, Origin and CSRF.
pub(crate) async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !state.config().allowed_hosts.iter().any(|h| h == host) {
        tracing::warn!(host, "refused a request for a foreign host");
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "foreign_host",
            "this server answers only to the address it is bound to",
        );
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let origin_ok = origin.map(|o| state.config().origin_allowed(o));
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site");
    if changes && (origin_ok == Some(false) || cross_site) {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "changes are accepted only from this server's own pages",
        );
    }

    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let mut caller = Caller {
        principal: None,
        csrf: None,
        client,
    };
    if let Some(token) = bearer {
        // A throttled address learns nothing about the token it sends, right or wrong.
        if let Some(err) = state.login_throttled(client) {
            return err.into_response();
        }
        match principal_of(&state, &token_hash(token)) {
            Ok(Some(p)) => caller.principal = Some(p),
            Ok(None) => {
                state.login_failed(client, "bearer token");
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the bearer token is unknown or revoked",
                );
            }
            Err(err) => return err.into_response(),
        }
    } else if let Some(id) = cookie(headers, SESSION_COOKIE) {
        match find_session(&state, id) {
            Ok(Some((p, csrf))) => {
                if changes {
                    // A browser session: the Origin must be present and the CSRF token match.
                    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                    if origin_ok != Some(true) {
                        return refuse(
                            StatusCode::FORBIDDEN,
                            "cross_origin",
                            "changes from a browser must carry this server's Origin",
                        );
                    }
                    if !sent.is_some_and(|s| constant_time_eq(s.as_bytes(), csrf.as_bytes())) {
                        return refuse(
                            StatusCode::FORBIDDEN,
                            "csrf",
                            "the CSRF token is missing or wrong; reload the page",
                        );
                    }
                }
                caller.principal = Some(p);
                caller.csrf = Some(csrf);
            }
            // Ended, expired, idle or revoked: the request is anonymous.
            Ok(None) => {}
            Err(err) => return err.into_response(),
        }
    }
    if caller.principal.is_none()
        && bearer.is_none()
        && changes
        && origin_ok != Some(true)
        && req.uri().path() == "/signin"
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "signing in is accepted only from this server's own page",
        );
    }
    if caller.principal.is_none() && !is_open(req.method(), req.uri().path()) {
        // Answered before any handler runs, so the body is never read.
        let page = !req.uri().path().starts_with("/api/");
        if page && matches!(*req.method(), Method::GET | Method::HEAD) {
            return Redirect::to("/signin").into_response();
        }
        return ApiError::unauthenticated().into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_required() {
        let viewer = Caller {
            principal: Some(Principal {
                name: "v".into(),
                role: Role::Viewer,
            }),
            csrf: None,
            client: None,
        };
        assert!(viewer.require(Role::Viewer).is_ok());
        let err = viewer.require(Role::Operator).unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert!(err.message.contains("`operator`"), "{}", err.message);
        let nobody = Caller {
            principal: None,
            csrf: None,
            client: None,
        };
        assert_eq!(
            nobody.require(Role::Viewer).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn cookies_are_parsed_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; keelson_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn only_signing_in_health_and_assets_are_open_to_nobody() {
        for (method, path) in [
            (Method::GET, "/api/v1/health"),
            (Method::POST, "/api/v1/session"),
            (Method::DELETE, "/api/v1/session"),
            (Method::GET, "/signin"),
            (Method::POST, "/signin"),
            (Method::POST, "/signout"),
            (Method::GET, "/static/app.js"),
            (Method::HEAD, "/static/app.css"),
        ] {
            assert!(is_open(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::POST, "/api/v1/connections"),
            (Method::GET, "/api/v1/issues"),
            (Method::POST, "/api/v1/health"),
            (Method::GET, "/api/v1/session"),
            (Method::GET, "/"),
            (Method::GET, "/issues"),
            (Method::GET, "/static/other.js"),
            (Method::GET, "/api/v1/nothing"),
        ] {
            assert!(!is_open(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
