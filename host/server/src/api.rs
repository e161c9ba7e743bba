//! The JSON API under `/api/v1`: plugins, connections, locations (as stored from scans, or
//! listed live by an operator), scans, runs (and accepting a held one), the queue with how
//! current each connection's part of it is, suppressions, exports, the compliance summary, health
//! and sessions.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keelson_core::Severity;
use keelson_store::{
    IssueCursor, IssueFilter, IssueId, IssueSort, IssueStatus, RunId, SelectionRule, SlaState,
    SortCursor, Store,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{self, Caller, Role};
use crate::locations::{self, Source};
use crate::runs::{RunView, queue_connections};
use crate::{ApiError, AppState, ConnectRequest, LocationReport, export, scans};

/// A JSON body whose rejection is an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::invalid(format!(
                "the request body is not what this endpoint takes: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// A JSON body that may be left out (no body, or only whitespace, is `None`); a body that is
/// there must parse, and its rejection is an [`ApiError`].
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                ApiError::invalid(format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ))
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map(Self)
            .map_err(|e| {
                ApiError::invalid(format!(
                    "the request body is not what this endpoint takes: {e}"
                ))
            })
    }
}

pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let version = state.read(|s| Ok(s.schema_version()?))?;
    Ok(Json(json!({ "status": "ok", "schema_version": version })))
}

pub(crate) async fn me(Extension(caller): Extension<Caller>) -> Result<Json<Value>, ApiError> {
    let p = caller.require(Role::Viewer)?;
    Ok(Json(json!({ "name": p.name, "role": p.role })))
}

// ---- sessions

#[derive(Deserialize)]
pub(crate) struct SignIn {
    pub(crate) token: String,
}

/// Starts a browser session for `token`, signing in from `caller`'s address through `via`; the
/// cookie and the CSRF token, or why not (a token that is unknown or revoked, or too many of
/// those from this address lately).
pub(crate) fn sign_in(
    state: &AppState,
    caller: &Caller,
    via: &'static str,
    token: &str,
) -> Result<(String, String, auth::Principal), ApiError> {
    if let Some(err) = state.login_throttled(caller.client) {
        return Err(err);
    }
    let hash = crate::token_hash(token.trim());
    let Some((id, csrf, principal)) = auth::start_session(state, &hash)? else {
        state.login_failed(caller.client, via);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "that token is unknown or revoked",
        ));
    };
    state.write(|s| Ok(s.audit("signed-in", None, &principal.actor(), None)?))?;
    Ok((id, csrf, principal))
}

pub(crate) async fn create_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let (id, csrf, principal) = sign_in(&state, &caller, "api session", &body.token)?;
    let mut response =
        Json(json!({ "name": principal.name, "role": principal.role, "csrf": csrf }))
            .into_response();
    set_cookie(&mut response, &auth::session_cookie(&state, &id));
    Ok(response)
}

pub(crate) async fn delete_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = auth::cookie(&headers, auth::SESSION_COOKIE) {
        auth::end_session(&state, id)?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &auth::clear_cookie(&state));
    Ok(response)
}

pub(crate) fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

// ---- plugins

pub(crate) async fn plugins(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let plugins = state.backend().plugins().await?;
    Ok(Json(json!({ "items": plugins })))
}

pub(crate) async fn plugin(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let plugins = state.backend().plugins().await?;
    let plugin = plugins
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no enabled plugin `{id}`")))?;
    Ok(Json(serde_json::to_value(plugin).unwrap_or(Value::Null)))
}

// ---- connections

fn connection_json(store: &Store, c: &keelson_store::StoredConnection) -> Result<Value, ApiError> {
    let last_run = store
        .runs(Some(&c.name), 1)?
        .into_iter()
        .next()
        .map(RunView::from);
    Ok(json!({
        "name": c.name,
        "plugin": c.plugin,
        "settings": c.settings,
        "secret_keys": c.secret_keys,
        "selection": c.selection,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "last_run": last_run,
    }))
}

pub(crate) async fn connections(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let items = state.read(|s| {
        s.connections()?
            .into_iter()
            .map(|c| connection_json(s, &c))
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok(Json(json!({ "items": items })))
}

pub(crate) async fn connection(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    state
        .read(|s| {
            let c = s
                .connection(&name)?
                .ok_or_else(|| ApiError::not_found(format!("no connection named `{name}`")))?;
            connection_json(s, &c)
        })
        .map(Json)
}

/// Deletes connection `name`: the store retires it (its runs, findings and history stay; its
/// secrets are wiped; the name is free again). A connection declared in the configuration file
/// is refused, since the next start would bring it back.
pub(crate) async fn delete_connection(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Admin)?.actor();
    if let Some(file) = state.backend().declared_in(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "declared",
            format!(
                "connection `{name}` is declared in `{file}`: remove its `[[connection]]` there and restart keelson, then delete it"
            ),
        ));
    }
    state.read(|s| {
        s.connection(&name)?
            .ok_or_else(|| ApiError::not_found(format!("no connection named `{name}`")))?;
        Ok(())
    })?;
    if !state.scans().forget(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a scan of `{name}` is running; wait for it to end"),
        ));
    }
    state.write(|s| Ok(s.retire_connection(&name, &actor)?))?;
    Ok(Json(json!({ "name": name, "deleted": true })))
}

pub(crate) async fn create_connection(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<ConnectRequest>,
) -> Result<Response, ApiError> {
    let actor = caller.require(Role::Admin)?.actor();
    let name = request.name.clone();
    let account = state
        .backend()
        .connect(request, actor)
        .await
        .map_err(|e| with_setting_field(ApiError::from(e)))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "account": account })),
    )
        .into_response())
}

/// Points a connect error at the form field it names (`setting `KEY`` or the name), so the page
/// can show it beside that field.
fn with_setting_field(err: ApiError) -> ApiError {
    if err.code != "invalid" {
        return err;
    }
    let field = err
        .message
        .split_once("setting `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .or_else(|| err.message.contains("`--name`").then(|| "name".to_owned()));
    match field {
        Some(f) => err.on_field(f),
        None => err,
    }
}

pub(crate) async fn verify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Operator)?.actor();
    let result = state.backend().verify(name.clone()).await;
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    state.write(|s| Ok(s.audit("connection-verified", Some(&name), &actor, Some(outcome))?))?;
    let account = result?;
    Ok(Json(json!({ "name": name, "account": account })))
}

/// The locations the store has from the connection's scans: no plugin is called.
pub(crate) async fn locations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let report = locations::stored(&state, &name)?;
    Ok(Json(locations::to_json(&report, Source::Stored)))
}

/// The locations listed just now through the connection's plugin: an operator's action.
pub(crate) async fn live_locations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let report = list_live(&state, &caller, name).await?;
    Ok(Json(locations::to_json(&report, Source::Live)))
}

/// Lists connection `name`'s locations through its plugin, for an operator.
pub(crate) async fn list_live(
    state: &AppState,
    caller: &Caller,
    name: String,
) -> Result<LocationReport, ApiError> {
    let actor = caller.require(Role::Operator)?.actor();
    tracing::info!(connection = %name, actor = %actor, "listing locations live");
    Ok(state.backend().locations(name).await?)
}

#[derive(Deserialize)]
pub(crate) struct SelectionBody {
    rules: Vec<SelectionRule>,
}

pub(crate) async fn set_locations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SelectionBody>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Admin)?.actor();
    for (i, rule) in body.rules.iter().enumerate() {
        keelson_scan::check_glob(&rule.pattern).map_err(|e| {
            ApiError::invalid(e.to_string()).on_field(format!("rules[{i}].pattern"))
        })?;
    }
    state.write(|s| Ok(s.set_selection(&name, &body.rules, &actor)?))?;
    Ok(Json(json!({ "name": name, "rules": body.rules })))
}

/// The query of `POST .../scan`: `accept_drop=true` pre-approves a drop the guard would hold.
#[derive(Deserialize)]
pub(crate) struct ScanQuery {
    accept_drop: Option<String>,
}

/// The optional body of `POST .../scan`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScanBody {
    #[serde(default)]
    accept_drop: bool,
}

pub(crate) async fn start_scan(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(query): Query<ScanQuery>,
    OptionalJson(body): OptionalJson<ScanBody>,
) -> Result<Response, ApiError> {
    let actor = caller.require(Role::Operator)?.actor();
    let in_query = match blank(query.accept_drop.as_ref()) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`accept_drop` must be `true` or `false`, got `{other}`"
            ))
            .on_field("accept_drop"));
        }
    };
    let accept_drop = in_query || body.is_some_and(|b| b.accept_drop);
    let snapshot = scans::start(&state, &name, &actor, accept_drop)?;
    Ok((StatusCode::ACCEPTED, Json(snapshot)).into_response())
}

pub(crate) async fn scan_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<scans::ScanState>, ApiError> {
    caller.require(Role::Viewer)?;
    state
        .scans()
        .get(&name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no scan of `{name}` was started here")))
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let runs = state.read(|s| {
        s.connection(&name)?
            .ok_or_else(|| ApiError::not_found(format!("no connection named `{name}`")))?;
        Ok(s.runs(Some(&name), 100)?)
    })?;
    let items: Vec<RunView> = runs.into_iter().map(RunView::from).collect();
    Ok(Json(json!({ "items": items })))
}

/// Applies a held run's resolution as the caller (operator): exactly what the run computed,
/// refused when the run is not held or a newer run of its connection has started.
pub(crate) async fn accept_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let actor = caller.require(Role::Operator)?.actor();
    let run = id.parse::<i64>().map(RunId).map_err(|_| {
        ApiError::invalid(format!("`{id}` is not a run id; use the `id` of a run")).on_field("id")
    })?;
    let info = state.write(|s| Ok(s.accept_held(run, &actor)?))?;
    tracing::info!(run = %run, actor = %actor, status = %info.status, "held run accepted");
    Ok(Json(RunView::from(info)))
}

// ---- the queue

/// The queue's filters, as query parameters. Lists are comma-separated.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct IssueQuery {
    pub connection: Option<String>,
    pub source_tool: Option<String>,
    pub severity: Option<String>,
    /// `open` (default), `resolved`, `suppressed`, a list of them, or `all`.
    pub status: Option<String>,
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub vulnerability: Option<String>,
    /// Comma-separated priorities (the level enrichment settled on).
    pub priority: Option<String>,
    pub application: Option<String>,
    pub team: Option<String>,
    /// `breached`, `within` or `none`.
    pub sla: Option<String>,
    /// `KEY` or `-KEY` (descending); see [`IssueSort`]. Default `-priority`.
    pub sort: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    pub limit: Option<String>,
}

fn blank(v: Option<&String>) -> Option<&str> {
    v.map(|s| s.trim()).filter(|s| !s.is_empty())
}

impl IssueQuery {
    /// The store filter for these parameters (without page bounds).
    pub fn filter(&self) -> Result<IssueFilter, ApiError> {
        let levels = |value: Option<&String>, field: &'static str| match blank(value) {
            None => Ok(Vec::new()),
            Some(list) => list
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse::<Severity>()
                        .map_err(|e| ApiError::invalid(e.to_string()).on_field(field))
                })
                .collect::<Result<Vec<_>, _>>(),
        };
        let severities = levels(self.severity.as_ref(), "severity")?;
        let priorities = levels(self.priority.as_ref(), "priority")?;
        let sla = match blank(self.sla.as_ref()) {
            None => None,
            Some("breached") => Some(SlaState::Breached),
            Some("within") => Some(SlaState::Within),
            Some("none") => Some(SlaState::None),
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "`{other}` is not an SLA state; use `breached`, `within` or `none`"
                ))
                .on_field("sla"));
            }
        };
        let statuses = match blank(self.status.as_ref()) {
            None => vec![IssueStatus::Open],
            Some("all") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| {
                    s.trim().parse::<IssueStatus>().map_err(|_| {
                        ApiError::invalid(format!(
                            "`{s}` is not a status; use `open`, `resolved`, `suppressed` or `all`"
                        ))
                        .on_field("status")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let owned = |v: Option<&String>| blank(v).map(str::to_owned);
        Ok(IssueFilter {
            connection: owned(self.connection.as_ref()),
            source_tool: owned(self.source_tool.as_ref()),
            severities,
            statuses,
            registry: owned(self.registry.as_ref()),
            repository: owned(self.repository.as_ref()),
            vulnerability: owned(self.vulnerability.as_ref()),
            priorities,
            application: owned(self.application.as_ref()),
            team: owned(self.team.as_ref()),
            sla,
            ..IssueFilter::default()
        })
    }

    /// The order these parameters ask for.
    pub fn sort(&self) -> Result<IssueSort, ApiError> {
        match blank(self.sort.as_ref()) {
            None => Ok(IssueSort::default()),
            Some(text) => IssueSort::parse(text).ok_or_else(|| {
                ApiError::invalid(format!(
                    "`{text}` is not a sort; use one of priority, severity, first_seen, last_seen, vulnerability, repository or images, with `-` in front for descending"
                ))
                .on_field("sort")
            }),
        }
    }

    /// The cursor in `after`, which must belong to `sort` (the default sort also takes the
    /// command line's `SEVERITY:ID`).
    fn after(&self, sort: IssueSort) -> Result<Option<SortCursor>, ApiError> {
        let Some(text) = blank(self.after.as_ref()) else {
            return Ok(None);
        };
        let cursor = match text.parse::<SortCursor>() {
            Ok(c) => c,
            Err(e) if sort == IssueSort::default() => text
                .parse::<IssueCursor>()
                .map(SortCursor::from)
                .map_err(|_| ApiError::invalid(e.to_string()).on_field("after"))?,
            Err(e) => return Err(ApiError::invalid(e.to_string()).on_field("after")),
        };
        if cursor.sort != sort {
            return Err(ApiError::invalid(format!(
                "the cursor `{text}` continues the `{}` order, not `{sort}`",
                cursor.sort
            ))
            .on_field("after"));
        }
        Ok(Some(cursor))
    }
}

/// `breached` or `within` for a row with an SLA due date, from the clock.
pub(crate) fn sla_state(row: &Value) -> Option<&'static str> {
    let due = row.get("sla_due").and_then(Value::as_str)?;
    if row.get("sla_breached").and_then(Value::as_bool) == Some(true) {
        return Some("breached");
    }
    Some(if due < now_rfc3339().as_str() {
        "breached"
    } else {
        "within"
    })
}

/// The current UTC time as RFC 3339 with milliseconds, like the store's timestamps.
pub(crate) fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// One page of the queue: rows as JSON (with whatever enrichment the store adds) and the cursor
/// of the next page.
pub struct IssuePage {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

pub(crate) const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

/// Reads one page of the queue (every matching issue when `all`), filtered and sorted in SQL.
/// Keyset paging on (sort key, id): issues ingested meanwhile never shift a page, so paging
/// neither repeats nor skips an issue that existed when it began.
pub fn issue_page(store: &Store, query: &IssueQuery, all: bool) -> Result<IssuePage, ApiError> {
    let limit = match blank(query.limit.as_ref()) {
        None if all => usize::MAX,
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!("`limit` must be 1 to {MAX_PAGE}, got `{text}`"))
                    .on_field("limit")
            })?,
    };
    let mut filter = query.filter()?;
    let sort = query.sort()?;
    let after = query.after(sort)?;
    // One more than the page: whether it exists decides `next`, so a last page has none.
    filter.limit = (!all).then(|| limit.saturating_add(1));
    let mut rows = store.issues_sorted(&filter, sort, after.as_ref())?;
    let next = if !all && rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| r.sort_cursor(sort).to_string())
    } else {
        None
    };
    let items = rows
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    Ok(IssuePage { items, next })
}

pub(crate) async fn issues(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<IssueQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let (page, connections) = state.read(|s| {
        let page = issue_page(s, &query, false)?;
        let connections = queue_connections(s, blank(query.connection.as_ref()))?;
        Ok((page, connections))
    })?;
    Ok(Json(
        json!({ "items": page.items, "next": page.next, "connections": connections }),
    ))
}

pub(crate) fn parse_issue_id(text: &str) -> Result<IssueId, ApiError> {
    text.parse::<i64>()
        .map(IssueId)
        .map_err(|_| ApiError::invalid(format!("`{text}` is not an issue id")).on_field("id"))
}

pub(crate) fn issue_json(store: &Store, id: IssueId) -> Result<Value, ApiError> {
    let detail = store
        .issue(id)?
        .ok_or_else(|| ApiError::not_found(format!("no issue {id}")))?;
    Ok(serde_json::to_value(detail).unwrap_or(Value::Null))
}

pub(crate) async fn issue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let id = parse_issue_id(&id)?;
    state.read(|s| issue_json(s, id)).map(Json)
}

#[derive(Deserialize)]
pub(crate) struct SuppressBody {
    reason: String,
    expires_at: Option<String>,
}

pub(crate) async fn suppress(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SuppressBody>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Operator)?.actor();
    let id = parse_issue_id(&id)?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid("a suppression needs a reason").on_field("reason"));
    }
    let expires = body
        .expires_at
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    state
        .write(|s| {
            s.suppress(id, reason, expires, &actor)?;
            issue_json(s, id)
        })
        .map(Json)
}

pub(crate) async fn unsuppress(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Operator)?.actor();
    let id = parse_issue_id(&id)?;
    state
        .write(|s| {
            s.lift_suppression(id, &actor)?;
            issue_json(s, id)
        })
        .map(Json)
}

pub(crate) async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(format): Path<String>,
    Query(query): Query<IssueQuery>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let rows = state.read(|s| Ok(issue_page(s, &query, true)?.items))?;
    let (body, mime, ext) = match format.as_str() {
        "json" => (
            serde_json::to_string_pretty(&rows).unwrap_or_default(),
            "application/json",
            "json",
        ),
        "csv" => (export::csv(&rows), "text/csv; charset=utf-8", "csv"),
        "sarif" => (
            serde_json::to_string_pretty(&export::sarif(&rows)).unwrap_or_default(),
            "application/sarif+json",
            "sarif",
        ),
        other => {
            return Err(ApiError::not_found(format!(
                "no export format `{other}`; use `json`, `csv` or `sarif`"
            ))
            .on_field("format"));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"keelson-issues.{ext}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Counts of the open queue: by severity, by priority and SLA state when the rows carry them,
/// and by compliance control.
pub fn compliance_summary(rows: &[Value]) -> Value {
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_priority: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_control: BTreeMap<String, u64> = BTreeMap::new();
    let mut breached = 0u64;
    for row in rows {
        let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(s) = text("severity") {
            *by_severity.entry(s).or_default() += 1;
        }
        if let Some(p) = text("priority") {
            *by_priority.entry(p).or_default() += 1;
        }
        if sla_state(row) == Some("breached") {
            breached += 1;
        }
        for control in row
            .get("controls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = control.as_str().map_or_else(
                || {
                    control
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                },
                str::to_owned,
            );
            *by_control.entry(name).or_default() += 1;
        }
    }
    json!({
        "open_issues": rows.len(),
        "by_severity": by_severity,
        "by_priority": by_priority,
        "sla_breached": breached,
        "by_control": by_control,
    })
}

pub(crate) async fn compliance(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let rows = state.read(|s| Ok(issue_page(s, &IssueQuery::default(), true)?.items))?;
    Ok(Json(compliance_summary(&rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_point_at_their_field() {
        let e = with_setting_field(ApiError::invalid(
            "setting `tenant_id` (Tenant ID) is required",
        ));
        assert_eq!(e.field.as_deref(), Some("tenant_id"));
        let e = with_setting_field(ApiError::invalid("invalid `--name`: bad"));
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = with_setting_field(ApiError::invalid("something else"));
        assert_eq!(e.field, None);
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2026-03-01T00:00:00.000Z".len(), "{now}");
        assert!(now.as_str() > "2025-01-01T00:00:00.000Z");
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn sla_state_compares_the_due_date() {
        assert_eq!(
            sla_state(&json!({"sla_due": "2000-01-01T00:00:00.000Z"})),
            Some("breached")
        );
        assert_eq!(
            sla_state(&json!({"sla_due": "2999-01-01T00:00:00.000Z"})),
            Some("within")
        );
        assert_eq!(sla_state(&json!({})), None);
    }

    #[test]
    fn filters_parse_and_refuse_garbage() {
        let q = IssueQuery {
            severity: Some("critical,High".into()),
            status: Some("all".into()),
            ..IssueQuery::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.severities, vec![Severity::Critical, Severity::High]);
        assert!(f.statuses.is_empty());
        let bad = IssueQuery {
            severity: Some("urgent".into()),
            ..IssueQuery::default()
        };
        assert_eq!(bad.filter().unwrap_err().field.as_deref(), Some("severity"));
        assert_eq!(
            IssueQuery::default().filter().unwrap().statuses,
            vec![IssueStatus::Open]
        );
    }

    #[test]
    fn enrichment_filters_and_sorts_reach_the_store_filter() {
        let q = IssueQuery {
            priority: Some("high, critical".into()),
            team: Some("payments".into()),
            sla: Some("breached".into()),
            sort: Some("-first_seen".into()),
            ..IssueQuery::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.priorities, vec![Severity::High, Severity::Critical]);
        assert_eq!(f.team.as_deref(), Some("payments"));
        assert_eq!(f.sla, Some(SlaState::Breached));
        assert_eq!(q.sort().unwrap().to_string(), "-first_seen");
        for (field, bad) in [("sla", "late"), ("priority", "urgent"), ("sort", "-colour")] {
            let mut q = IssueQuery::default();
            match field {
                "sla" => q.sla = Some(bad.into()),
                "priority" => q.priority = Some(bad.into()),
                _ => q.sort = Some(bad.into()),
            }
            let err = q.filter().and_then(|_| q.sort().map(|_| ())).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{bad}");
        }
        // The default order still takes the command line's cursor; another order does not.
        let q = IssueQuery {
            after: Some("high:42".into()),
            ..IssueQuery::default()
        };
        assert_eq!(q.after(q.sort().unwrap()).unwrap().unwrap().id, IssueId(42));
        let q = IssueQuery {
            after: Some("high:42".into()),
            sort: Some("images".into()),
            ..IssueQuery::default()
        };
        assert!(q.after(q.sort().unwrap()).is_err());
    }
}
