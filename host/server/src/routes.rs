//! The route table: the API, the pages and the static files, behind the access guard.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};

use crate::{ApiError, AppState, api, auth, pages};

/// Every API route as `(METHOD, PATH)`, exactly as `openapi.json` documents them (a test holds
/// the two together and sends each one to the router).
pub const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/session"),
    ("DELETE", "/api/v1/session"),
    ("GET", "/api/v1/plugins"),
    ("GET", "/api/v1/plugins/{id}"),
    ("GET", "/api/v1/connections"),
    ("POST", "/api/v1/connections"),
    ("GET", "/api/v1/connections/{name}"),
    ("DELETE", "/api/v1/connections/{name}"),
    ("POST", "/api/v1/connections/{name}/verify"),
    ("GET", "/api/v1/connections/{name}/locations"),
    ("PUT", "/api/v1/connections/{name}/locations"),
    ("POST", "/api/v1/connections/{name}/locations/live"),
    ("POST", "/api/v1/connections/{name}/scan"),
    ("GET", "/api/v1/connections/{name}/scan"),
    ("GET", "/api/v1/connections/{name}/runs"),
    ("POST", "/api/v1/runs/{id}/accept"),
    ("GET", "/api/v1/issues"),
    ("GET", "/api/v1/issues/{id}"),
    ("POST", "/api/v1/issues/{id}/suppression"),
    ("DELETE", "/api/v1/issues/{id}/suppression"),
    ("GET", "/api/v1/exports/{format}"),
    ("GET", "/api/v1/compliance"),
];

const CSS: &str = include_str!("../static/app.css");
const JS: &str = include_str!("../static/app.js");

fn asset(body: &'static str, mime: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The whole service: API, pages and assets, every request through `auth::guard` and every
/// response with `security_headers`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/health", get(api::health))
        .route("/api/v1/me", get(api::me))
        .route(
            "/api/v1/session",
            post(api::create_session).delete(api::delete_session),
        )
        .route("/api/v1/plugins", get(api::plugins))
        .route("/api/v1/plugins/{id}", get(api::plugin))
        .route(
            "/api/v1/connections",
            get(api::connections).post(api::create_connection),
        )
        .route(
            "/api/v1/connections/{name}",
            get(api::connection).delete(api::delete_connection),
        )
        .route("/api/v1/connections/{name}/verify", post(api::verify))
        .route(
            "/api/v1/connections/{name}/locations",
            get(api::locations).put(api::set_locations),
        )
        .route(
            "/api/v1/connections/{name}/locations/live",
            post(api::live_locations),
        )
        .route(
            "/api/v1/connections/{name}/scan",
            post(api::start_scan).get(api::scan_status),
        )
        .route("/api/v1/connections/{name}/runs", get(api::runs))
        .route("/api/v1/runs/{id}/accept", post(api::accept_run))
        .route("/api/v1/issues", get(api::issues))
        .route("/api/v1/issues/{id}", get(api::issue))
        .route(
            "/api/v1/issues/{id}/suppression",
            post(api::suppress).delete(api::unsuppress),
        )
        .route("/api/v1/exports/{format}", get(api::export))
        .route("/api/v1/compliance", get(api::compliance));
    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/signin", get(pages::signin_form).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/connectors", get(pages::connectors))
        .route("/connectors/{plugin}", get(pages::connector))
        .route(
            "/connectors/{plugin}/instructions",
            get(pages::instructions),
        )
        .route("/connections/{name}", get(pages::connection))
        .route("/connections/{name}/locations", get(pages::locations))
        .route(
            "/connections/{name}/locations/live",
            post(pages::live_locations),
        )
        .route("/issues", get(pages::issues))
        .route("/issues/{id}/panel", get(pages::issue_panel))
        .route(
            "/static/app.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        );
    api.merge(pages)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                "no such page or endpoint",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        // The guard inside the headers: its own refusals (401, 403, 421, 429) carry them too.
        .layer(from_fn_with_state(state.clone(), auth::guard))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every response, the guard's refusals included: no framing by other sites, no
/// sniffing, a strict content policy.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
