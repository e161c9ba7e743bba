//! The server-rendered web page: sign-in, *Connectors > Registry* (plugins, the connection form
//! generated from a plugin's settings, verify, locations (as the scans stored them, or listed
//! live by an operator), scan with live progress, the run
//! history with each run's coverage) and *Active issues* (filters, the paged queue, the detail
//! panel, exports). Above the queue, each connection whose part of it is not current (never
//! scanned, last run failed, partial or held) has a banner saying why, with an Accept button on
//! a held run for operators, and every connection has a "data as of" line.
//!
//! Every string that came from a plugin or the store passes [`esc`] (or [`href`] for links)
//! before it reaches the page; the page runs no inline script, so the content security policy
//! can forbid them.

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use keelson_core::{ConnectorInfo, Severity};
use keelson_store::{IssueSort, RunStatus, SortKey};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{self, IssueQuery};
use crate::auth::{self, Caller, Role};
use crate::locations::Source;
use crate::runs::{QueueConnection, RunView, held_reason, queue_connections};
use crate::{ApiError, AppState, LocationReport};

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link target from untrusted text: only `http(s)` URLs, escaped; anything else is `#`.
pub(crate) fn href(url: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        esc(url.trim())
    } else {
        "#".to_owned()
    }
}

/// Percent-encodes a path segment or query value.
fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The page frame around `body`, with the navigation and the signed-in user.
fn layout(title: &str, active: &str, caller: &Caller, body: &str) -> Html<String> {
    let who = caller.principal.as_ref().map_or_else(String::new, |p| {
        format!(
            r#"<div class="who"><span class="user">{}</span><span class="role role-{}">{}</span><button type="button" class="link" data-action="signout">Sign out</button></div>"#,
            esc(&p.name),
            p.role.as_str(),
            p.role.as_str()
        )
    });
    let nav = |href: &str, key: &str, label: &str| {
        let class = if key == active {
            " class=\"active\""
        } else {
            ""
        };
        format!(r#"<a href="{href}"{class}>{label}</a>"#)
    };
    let csrf = caller.csrf.as_deref().unwrap_or("");
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<title>{title} · Keelson</title><link rel="stylesheet" href="/static/app.css"></head>
<body><header class="top"><a class="brand" href="/issues"><span class="logo">◆</span> Keelson</a>
<nav>{issues}{connectors}</nav>{who}</header>
<main>{body}</main>
<script src="/static/app.js"></script></body></html>"#,
        csrf = esc(csrf),
        title = esc(title),
        issues = nav("/issues", "issues", "Active issues"),
        connectors = nav("/connectors", "connectors", "Connectors"),
    ))
}

/// A page for a failed request, or the sign-in page when nobody is signed in.
fn error_page(caller: &Caller, err: &ApiError) -> Response {
    if err.status == StatusCode::UNAUTHORIZED {
        return Redirect::to("/signin").into_response();
    }
    let body = format!(
        r#"<section class="card error-page"><h1>{}</h1><p class="refused" data-code="{}">{}</p><p><a href="/issues">Back to the queue</a></p></section>"#,
        err.status.as_u16(),
        esc(err.code),
        esc(&err.message)
    );
    (err.status, layout("Error", "", caller, &body)).into_response()
}

fn page(caller: &Caller, result: Result<Html<String>, ApiError>) -> Response {
    match result {
        Ok(html) => html.into_response(),
        Err(err) => error_page(caller, &err),
    }
}

pub(crate) async fn home() -> Redirect {
    Redirect::to("/issues")
}

// ---- sign-in

fn signin_html(message: Option<&str>) -> Html<String> {
    let message = message.map_or_else(String::new, |m| {
        format!(r#"<p class="form-error" role="alert">{}</p>"#, esc(m))
    });
    let caller = Caller {
        principal: None,
        csrf: None,
        client: None,
    };
    layout(
        "Sign in",
        "",
        &caller,
        &format!(
            r#"<section class="card signin"><h1>Sign in</h1>
<p class="muted">Paste an API token made with <code>keelson token create --role viewer|operator|admin</code>.</p>
{message}<form method="post" action="/signin"><label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<button type="submit" class="primary">Sign in</button></form></section>"#
        ),
    )
}

pub(crate) async fn signin_form() -> Html<String> {
    signin_html(None)
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    token: String,
}

pub(crate) async fn signin(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<SignInForm>,
) -> Response {
    match api::sign_in(&state, &caller, "sign-in form", &form.token) {
        Ok((id, _csrf, _)) => {
            let mut response = Redirect::to("/issues").into_response();
            api::set_cookie(&mut response, &auth::session_cookie(&state, &id));
            response
        }
        Err(err) => {
            err.retry_after_on((err.status, signin_html(Some(&err.message))).into_response())
        }
    }
}

pub(crate) async fn signout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = auth::cookie(&headers, auth::SESSION_COOKIE)
        && let Err(err) = auth::end_session(&state, id)
    {
        return err.into_response();
    }
    let mut response = Redirect::to("/signin").into_response();
    api::set_cookie(&mut response, &auth::clear_cookie(&state));
    response
}

// ---- connectors

fn refused_note(caller: &Caller, role: Role, what: &str) -> String {
    if caller.can(role) {
        return String::new();
    }
    let have = caller
        .principal
        .as_ref()
        .map_or("none", |p| p.role.as_str());
    format!(
        r#"<p class="refused" role="note">Your role (<b>{have}</b>) cannot {what}: that needs <b>{}</b>.</p>"#,
        role.as_str()
    )
}

fn status_badge(status: &str) -> String {
    let class = match status {
        "complete" => "ok",
        "running" => "run",
        "partial" | "held" | "cancelled" | "interrupted" => "warn",
        "failed" | "error" => "bad",
        _ => "muted",
    };
    format!(r#"<span class="pill {class}">{}</span>"#, esc(status))
}

pub(crate) async fn connectors(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let result = async {
        caller.require(Role::Viewer)?;
        let plugins = state.backend().plugins().await?;
        let connections = state.read(|s| {
            s.connections()?
                .into_iter()
                .map(|c| {
                    let last = s.runs(Some(&c.name), 1)?.into_iter().next();
                    let open = s
                        .queue_summary(&keelson_store::IssueFilter {
                            connection: Some(c.name.clone()),
                            statuses: vec![keelson_store::IssueStatus::Open],
                            ..keelson_store::IssueFilter::default()
                        })?
                        .total;
                    Ok((c, last, open))
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })?;
        let mut body = String::from(
            r#"<nav class="crumbs"><span>Connectors</span> › <b>Registry</b></nav><h1>Registry connectors</h1>
<p class="muted">Connector plugins run sandboxed; each reaches only the hosts it was granted.</p><div class="cards">"#,
        );
        for p in &plugins {
            let _ = write!(
                body,
                r#"<a class="card plugin" href="/connectors/{id_enc}" data-plugin="{id}"><div class="plugin-name">{name}</div><div class="muted">{tool} · v{version}</div><div class="plugin-id"><code>{id}</code></div></a>"#,
                id_enc = enc(&p.id),
                id = esc(&p.id),
                name = esc(&p.display_name),
                tool = esc(&p.source_tool),
                version = esc(&p.version),
            );
        }
        if plugins.is_empty() {
            body.push_str(r#"<p class="muted">No connector plugin is enabled in plugins.toml.</p>"#);
        }
        body.push_str("</div><h2>Connections</h2>");
        if connections.is_empty() {
            body.push_str(r#"<p class="muted">No connection yet: choose a connector above.</p>"#);
        } else {
            body.push_str(r#"<section class="card flush"><table class="grid"><thead><tr><th>Name</th><th>Plugin</th><th>Open issues</th><th>Last scan</th><th>Finished</th><th></th></tr></thead><tbody>"#);
            for (c, last, open) in &connections {
                let (status, finished) = last.as_ref().map_or_else(
                    || (r#"<span class="muted">never</span>"#.to_owned(), String::new()),
                    |r| {
                        (
                            status_badge(r.status.as_str()),
                            esc(r.finished_at.as_deref().unwrap_or("")),
                        )
                    },
                );
                let _ = write!(
                    body,
                    r#"<tr><td><a class="strong" href="/connections/{ne}">{n}</a></td><td>{p}</td><td class="num"><a href="/issues?connection={ne}">{open}</a></td><td>{status}</td><td class="mono">{finished}</td><td class="right"><a class="button" href="/connections/{ne}">Open</a></td></tr>"#,
                    ne = enc(&c.name),
                    n = esc(&c.name),
                    p = esc(&c.plugin),
                );
            }
            body.push_str("</tbody></table></section>");
        }
        Ok(layout("Connectors", "connectors", &caller, &body))
    }
    .await;
    page(&caller, result)
}

async fn find_plugin(state: &AppState, id: &str) -> Result<ConnectorInfo, ApiError> {
    state
        .backend()
        .plugins()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no enabled plugin `{id}`")))
}

fn setting_input(spec: &keelson_core::SettingSpec) -> String {
    let key = esc(&spec.key);
    let only_when = spec.only_when.as_ref().map_or_else(String::new, |kv| {
        format!(
            r#" data-only-when-key="{}" data-only-when-value="{}""#,
            esc(&kv.key),
            esc(&kv.value)
        )
    });
    let required = if spec.required { " required" } else { "" };
    let input = if spec.choices.is_empty() {
        let kind = if spec.secret { "password" } else { "text" };
        let value = spec
            .default_value
            .as_deref()
            .filter(|_| !spec.secret)
            .map_or_else(String::new, |d| format!(r#" value="{}""#, esc(d)));
        format!(
            r#"<input id="f-{key}" name="{key}" type="{kind}" autocomplete="off"{value}{required} data-secret="{}">"#,
            spec.secret
        )
    } else {
        let mut options = String::new();
        for choice in &spec.choices {
            let selected = if spec.default_value.as_deref() == Some(choice) {
                " selected"
            } else {
                ""
            };
            let _ = write!(
                options,
                r#"<option value="{c}"{selected}>{c}</option>"#,
                c = esc(choice)
            );
        }
        format!(
            r#"<select id="f-{key}" name="{key}" data-secret="{}">{options}</select>"#,
            spec.secret
        )
    };
    format!(
        r#"<div class="field" data-field="{key}"{only_when}><label for="f-{key}">{label}{star}</label>{input}<div class="help">{help}</div><div class="field-error" data-error-for="{key}"></div></div>"#,
        label = esc(&spec.label),
        star = if spec.required {
            r#" <span class="req">*</span>"#
        } else {
            ""
        },
        help = esc(&spec.help),
    )
}

pub(crate) async fn connector(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        caller.require(Role::Viewer)?;
        let plugin = find_plugin(&state, &id).await?;
        let disabled = if caller.can(Role::Admin) { "" } else { " disabled" };
        let mut fields = String::new();
        for spec in &plugin.settings {
            fields.push_str(&setting_input(spec));
        }
        let body = format!(
            r#"<nav class="crumbs"><a href="/connectors">Connectors</a> › <a href="/connectors">Registry</a> › <b>{name}</b></nav>
<div class="head-row"><h1>{name}</h1><a class="button" href="/connectors/{id_enc}/instructions" data-action="instructions">Connection instructions</a></div>
<p class="muted">Source tool: {tool} · plugin <code>{id}</code> v{version}</p>
{refused}
<div class="split"><form class="card connect-form" id="connect-form" data-plugin="{id}"><fieldset{disabled}>
<div class="field"><label for="f-name">Connection name <span class="req">*</span></label><input id="f-name" name="__name" required pattern="[a-z0-9_-]+" placeholder="prod"><div class="help">Lowercase letters, digits, <code>-</code> and <code>_</code>.</div><div class="field-error" data-error-for="name"></div></div>
{fields}
<div class="form-error" role="alert" id="connect-error"></div>
<div class="actions"><button type="submit" class="primary">Connect</button><span class="spinner" hidden></span><span class="ok-note" id="connect-ok"></span></div>
</fieldset></form>
<section class="card instructions grow" id="instructions" hidden><h2>Connection instructions</h2>{instructions}</section></div>"#,
            name = esc(&plugin.display_name),
            id_enc = enc(&plugin.id),
            id = esc(&plugin.id),
            tool = esc(&plugin.source_tool),
            version = esc(&plugin.version),
            refused = refused_note(&caller, Role::Admin, "configure connectors"),
            instructions = markdown(&plugin.instructions),
        );
        Ok(layout(&plugin.display_name, "connectors", &caller, &body))
    }
    .await;
    page(&caller, result)
}

pub(crate) async fn instructions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        caller.require(Role::Viewer)?;
        let plugin = find_plugin(&state, &id).await?;
        let body = format!(
            r#"<nav class="crumbs"><a href="/connectors">Connectors</a> › <a href="/connectors/{id_enc}">{name}</a> › <b>Connection instructions</b></nav><section class="card instructions">{md}</section>"#,
            id_enc = enc(&plugin.id),
            name = esc(&plugin.display_name),
            md = markdown(&plugin.instructions),
        );
        Ok(layout("Connection instructions", "connectors", &caller, &body))
    }
    .await;
    page(&caller, result)
}

/// A small, safe Markdown subset: headings, paragraphs, lists, fenced code, inline code, bold
/// and `http(s)` links. Everything is escaped first; no raw HTML passes.
pub(crate) fn markdown(text: &str) -> String {
    let mut out = String::new();
    let mut in_list = false;
    let mut in_code = false;
    let mut para: Vec<String> = Vec::new();
    let flush = |out: &mut String, para: &mut Vec<String>| {
        if !para.is_empty() {
            let _ = write!(out, "<p>{}</p>", para.join(" "));
            para.clear();
        }
    };
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            flush(&mut out, &mut para);
            out.push_str(if in_code {
                "</code></pre>"
            } else {
                "<pre><code>"
            });
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push_str(&esc(line));
            out.push('\n');
            continue;
        }
        let trimmed = line.trim();
        let item = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
            .or_else(|| {
                trimmed
                    .split_once(". ")
                    .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                    .map(|(_, rest)| rest)
            });
        if item.is_none() && in_list {
            out.push_str("</ul>");
            in_list = false;
        }
        if trimmed.is_empty() {
            flush(&mut out, &mut para);
        } else if let Some(item) = item {
            flush(&mut out, &mut para);
            if !in_list {
                out.push_str("<ul>");
                in_list = true;
            }
            let _ = write!(out, "<li>{}</li>", inline(item));
        } else if let Some((hashes, title)) = trimmed
            .split_once(' ')
            .filter(|(h, _)| !h.is_empty() && h.len() <= 4 && h.chars().all(|c| c == '#'))
        {
            flush(&mut out, &mut para);
            let level = hashes.len() + 2;
            let _ = write!(out, "<h{level}>{}</h{level}>", inline(title));
        } else {
            para.push(inline(trimmed));
        }
    }
    flush(&mut out, &mut para);
    if in_list {
        out.push_str("</ul>");
    }
    if in_code {
        out.push_str("</code></pre>");
    }
    out
}

/// Inline Markdown on one line: `code`, **bold**, [text](http-url).
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
        {
            let _ = write!(out, "<code>{}</code>", esc(&after[..end]));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
        {
            let _ = write!(out, "<b>{}</b>", esc(&after[..end]));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('*')
            && let Some(end) = after.find('*')
            && end > 0
        {
            let _ = write!(out, "<i>{}</i>", esc(&after[..end]));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('[')
            && let Some(close) = after.find("](")
            && let Some(end) = after[close + 2..].find(')')
        {
            let label = &after[..close];
            let url = &after[close + 2..close + 2 + end];
            let _ = write!(
                out,
                r#"<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>"#,
                href(url),
                esc(label)
            );
            rest = &after[close + 3 + end..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push_str(&esc(&c.to_string()));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

pub(crate) async fn connection(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let result = async {
        caller.require(Role::Viewer)?;
        let (conn, runs, freshness) = state.read(|s| {
            let c = s
                .connection(&name)?
                .ok_or_else(|| ApiError::not_found(format!("no connection named `{name}`")))?;
            let runs: Vec<RunView> = s.runs(Some(&name), 20)?.into_iter().map(RunView::from).collect();
            Ok((c, runs, queue_connections(s, Some(&name))?))
        })?;
        let mut settings = String::new();
        for (k, v) in &conn.settings {
            let _ = write!(settings, "<dt>{}</dt><dd class=\"mono\">{}</dd>", esc(k), esc(v));
        }
        for k in &conn.secret_keys {
            let _ = write!(settings, "<dt>{}</dt><dd class=\"muted\">•••••• (sealed)</dd>", esc(k));
        }
        let mut history = String::new();
        for view in &runs {
            let r = &view.run;
            let coverage = view.coverage_summary.as_deref().map_or_else(
                || r#"<span class="muted">—</span>"#.to_owned(),
                esc,
            );
            let _ = write!(
                history,
                r#"<tr data-run="{id}" data-status="{status}"><td>{id}</td><td>{trigger}</td><td>{badge}</td><td class="mono">{started}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="coverage">{coverage}</td><td class="notes">{notes}</td></tr>"#,
                r.images_seen,
                r.findings_new,
                r.findings_seen,
                r.findings_resolved,
                id = r.id,
                status = r.status.as_str(),
                trigger = esc(&r.trigger),
                badge = status_badge(r.status.as_str()),
                started = esc(&r.started_at),
                notes = run_notes(r),
            );
        }
        if runs.is_empty() {
            history.push_str(r#"<tr><td colspan="10" class="muted">No scan yet.</td></tr>"#);
        }
        let freshness = freshness_html(&caller, &freshness, false);
        let op = |role: Role| if caller.can(role) { "" } else { " disabled" };
        // A connection declared in the configuration file is removed there, not here.
        let delete = match state.backend().declared_in(&conn.name) {
            Some(file) => format!(
                r#"<button type="button" class="danger" data-action="delete-connection" disabled title="Declared in {f}: remove it there">Delete</button>"#,
                f = esc(&file)
            ),
            None => format!(
                r#"<button type="button" class="danger" data-action="delete-connection"{}>Delete</button>"#,
                op(Role::Admin)
            ),
        };
        let body = format!(
            r#"<nav class="crumbs"><a href="/connectors">Connectors</a> › <a href="/connectors/{pe}">{plugin}</a> › <b>{n}</b></nav>
<div class="head-row" id="connection" data-connection="{n}"><h1>{n}</h1>
<div class="toolbar"><button type="button" data-action="verify"{op_v}>Verify connectivity</button>
<button type="button" class="icon" data-action="locations" title="Locations: what is scanned" aria-label="Locations">⚙</button>
<button type="button" class="primary" data-action="scan"{op_s}>Scan now</button>{delete}</div></div>
{refused}
{freshness}
<div class="verify-result" id="verify-result" role="status"></div>
<section class="card locations" id="locations" hidden></section>
<section class="card scan-progress" id="scan-progress" hidden><div class="bar"><div class="fill"></div></div><div class="scan-message"></div></section>
<div class="split"><section class="card"><h2>Settings</h2><dl class="kv">{settings}</dl></section>
<section class="card grow"><h2>Run history</h2><table class="grid"><thead><tr><th>Run</th><th>Trigger</th><th>Status</th><th>Started</th><th>Images</th><th>New</th><th>Seen</th><th>Resolved</th><th>Coverage</th><th>Notes</th></tr></thead><tbody id="runs">{history}</tbody></table></section></div>"#,
            pe = enc(&conn.plugin),
            plugin = esc(&conn.plugin),
            n = esc(&conn.name),
            op_v = op(Role::Operator),
            op_s = op(Role::Operator),
            refused = refused_note(&caller, Role::Operator, "verify or scan"),
        );
        Ok(layout(&conn.name, "connectors", &caller, &body))
    }
    .await;
    page(&caller, result)
}

/// The locations picker, as a fragment the connection page loads into its panel: what the
/// store has from the connection's scans, with a button for an operator to list them live.
pub(crate) async fn locations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let result = caller
        .require(Role::Viewer)
        .and_then(|_| crate::locations::stored(&state, &name));
    fragment(result.map(|report| locations_html(&caller, &report, Source::Stored)))
}

/// The locations picker listed live through the plugin: an operator's action (a POST, so a
/// browser session also needs its CSRF token).
pub(crate) async fn live_locations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let result = api::list_live(&state, &caller, name).await;
    fragment(result.map(|report| locations_html(&caller, &report, Source::Live)))
}

fn fragment(result: Result<Html<String>, ApiError>) -> Response {
    match result {
        Ok(html) => html.into_response(),
        Err(err) => (
            err.status,
            Html(format!(
                r#"<p class="form-error">{}</p>"#,
                esc(&err.message)
            )),
        )
            .into_response(),
    }
}

fn locations_html(caller: &Caller, report: &LocationReport, source: Source) -> Html<String> {
    let disabled = if caller.can(Role::Admin) {
        ""
    } else {
        " disabled"
    };
    let mut tree = String::new();
    for r in &report.registries {
        let checked = if r.state == "selected" {
            " checked"
        } else {
            ""
        };
        let partly = if r.state == "partly" {
            " data-partly=\"true\""
        } else {
            ""
        };
        let _ = write!(
            tree,
            r#"<li class="registry"><label><input type="checkbox" class="reg" data-registry="{n}"{checked}{partly}{disabled}> <b>{n}</b></label>"#,
            n = esc(&r.name)
        );
        if let Some(seen) = &r.last_seen {
            let _ = write!(
                tree,
                r#" <span class="muted">last listed {}</span>"#,
                esc(seen)
            );
        }
        if let Some(err) = &r.error {
            let _ = write!(
                tree,
                r#"<div class="field-error">cannot list repositories: {}</div>"#,
                esc(err)
            );
        }
        tree.push_str("<ul>");
        for repo in &r.repositories {
            let _ = write!(
                tree,
                r#"<li><label><input type="checkbox" class="repo" data-registry="{rn}" data-repository="{n}"{c}{disabled}> {n}</label></li>"#,
                rn = esc(&r.name),
                n = esc(&repo.name),
                c = if repo.selected { " checked" } else { "" },
            );
        }
        tree.push_str("</ul></li>");
    }
    let rules = if report.rules.is_empty() {
        "everything".to_owned()
    } else {
        report
            .rules
            .iter()
            .map(|r| {
                format!(
                    "{} <code>{}</code>",
                    match r.action {
                        keelson_store::SelectionAction::Select => "select",
                        keelson_store::SelectionAction::Deselect => "deselect",
                    },
                    esc(&r.pattern)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let origin = match source {
        Source::Stored if report.registries.is_empty() => {
            "No scan has listed this connection's registries yet."
        }
        Source::Stored => "As the connection's scans listed them.",
        Source::Live => "Listed live from the plugin just now.",
    };
    let live = if caller.can(Role::Operator) {
        ""
    } else {
        " disabled"
    };
    Html(format!(
        r#"<h2>Locations</h2><p class="muted" data-source="{source}">{origin} Scanned now: {rules}. Tick what to scan.</p>{refused}{refused_live}<ul class="tree">{tree}</ul>
<div class="actions"><button type="button" class="primary" data-action="save-locations"{disabled}>Save</button><button type="button" data-action="locations-live"{live}>List live from the plugin</button><span class="ok-note" id="locations-note"></span></div>"#,
        source = source.as_str(),
        refused = refused_note(caller, Role::Admin, "change locations"),
        refused_live = refused_note(caller, Role::Operator, "list locations live"),
    ))
}

/// The notes of one run in the history: its error, what it would resolve while held, and who
/// accepted that.
fn run_notes(run: &keelson_store::RunInfo) -> String {
    let mut notes = Vec::new();
    if let Some(e) = &run.error {
        notes.push(esc(e));
    }
    if let Some(h) = &run.held {
        notes.push(format!("held: {}", esc(held_reason(h))));
    }
    if let Some(by) = &run.accepted_by {
        notes.push(format!(
            "accepted by {} at {}",
            esc(by),
            esc(run.accepted_at.as_deref().unwrap_or(""))
        ));
    }
    notes.join("<br>")
}

/// One connection's banner when its part of the queue is not current: why, in the words of
/// [`crate::runs::notice`], and for a held run an Accept button (operators) or who may accept it.
fn banner(caller: &Caller, c: &QueueConnection) -> Option<String> {
    let notice = c.notice.as_deref()?;
    let status = c.last_run.as_ref().map(|r| r.status);
    // Partial and held runs brought the rest up to date; the others left it as it was.
    let class = match status {
        Some(RunStatus::Partial | RunStatus::Held | RunStatus::Running) => "warn",
        _ => "bad",
    };
    let status = status.map_or("never", RunStatus::as_str);
    let mut action = String::new();
    if let Some(run) = c.last_run.as_ref().filter(|r| r.status == RunStatus::Held) {
        if caller.can(Role::Operator) {
            let _ = write!(
                action,
                r#" <button type="button" class="primary" data-action="accept-run" data-run="{id}" data-would-resolve="{n}">Accept run {id}</button><span class="form-error accept-error"></span>"#,
                id = run.id,
                n = run.held.as_ref().map_or(0, |h| h.would_resolve),
            );
        } else {
            action.push_str(r#" <span class="muted">An operator can accept it.</span>"#);
        }
    }
    Some(format!(
        r#"<div class="banner {class}" role="status" data-connection="{n}" data-status="{status}"><span><a href="/connections/{ne}"><b>{n}</b></a>: {text}.</span>{action}</div>"#,
        n = esc(&c.connection),
        ne = enc(&c.connection),
        text = esc(notice),
    ))
}

/// The banners of connections whose part of the queue is not current, then a "data as of" line
/// for each connection. On the queue (`queue`), having no connection at all is said too: an
/// empty queue is then not a clean one.
fn freshness_html(caller: &Caller, connections: &[QueueConnection], queue: bool) -> String {
    let mut html = String::from(r#"<section class="freshness" id="freshness">"#);
    if queue && connections.is_empty() {
        html.push_str(
            r#"<div class="banner bad" role="status" data-status="none">No connection is scanned: nothing is in this queue. Add one under <a href="/connectors">Connectors</a>.</div>"#,
        );
    }
    for c in connections {
        if let Some(b) = banner(caller, c) {
            html.push_str(&b);
        }
    }
    if !connections.is_empty() {
        html.push_str(r#"<ul class="as-of" id="data-as-of">"#);
        for c in connections {
            let when = c.data_as_of.as_deref().map_or_else(
                || "no data yet".to_owned(),
                |at| format!("data as of {}", esc(at)),
            );
            let last = c.last_run.as_ref().map_or_else(
                || "never scanned".to_owned(),
                |r| format!("last run {} {}", r.id, r.status),
            );
            let _ = write!(
                html,
                r#"<li data-connection="{n}"><b>{n}</b>: {when} <span class="muted">({last})</span></li>"#,
                n = esc(&c.connection),
            );
        }
        html.push_str("</ul>");
    }
    html.push_str("</section>");
    html
}

// ---- the queue

fn sev_badge(level: &str) -> String {
    if level.is_empty() {
        return r#"<span class="muted">—</span>"#.to_owned();
    }
    let class = esc(&level.to_ascii_lowercase());
    format!(r#"<span class="sev sev-{class}">{}</span>"#, esc(level))
}

fn select(
    name: &str,
    label: &str,
    current: Option<&String>,
    options: &[(String, String)],
) -> String {
    let current = current.map_or("", |c| c.as_str());
    let mut html = format!(
        r#"<label class="filter"><span>{label}</span><select name="{name}" data-filter="{name}">"#
    );
    for (value, text) in options {
        let sel = if value == current { " selected" } else { "" };
        let _ = write!(
            html,
            r#"<option value="{}"{sel}>{}</option>"#,
            esc(value),
            esc(text)
        );
    }
    html.push_str("</select></label>");
    html
}

fn any_plus(values: impl IntoIterator<Item = String>, any: &str) -> Vec<(String, String)> {
    let mut v = vec![(String::new(), any.to_owned())];
    v.extend(values.into_iter().map(|x| (x.clone(), x)));
    v
}

fn query_string(q: &IssueQuery, after: Option<&str>) -> String {
    let mut q = q.clone();
    q.after = after.map(str::to_owned);
    let value = serde_json::to_value(&q).unwrap_or(Value::Null);
    let mut parts = Vec::new();
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", enc(v)));
            }
        }
    }
    parts.join("&")
}

pub(crate) async fn issues(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<IssueQuery>,
) -> Response {
    let result = async {
        caller.require(Role::Viewer)?;
        let plugins = state.backend().plugins().await.unwrap_or_default();
        let sort = query.sort()?;
        let (page, summary, connections) = state.read(|s| {
            let page = api::issue_page(s, &query, false)?;
            // Tiles and filter choices come from one aggregate over the filtered queue.
            let summary = s.queue_summary(&query.filter()?)?;
            let only = query.connection.as_deref().map(str::trim).filter(|c| !c.is_empty());
            Ok((page, summary, queue_connections(s, only)?))
        })?;
        let all_current = !connections.is_empty() && connections.iter().all(|c| c.current);
        // Choices for the filters: what the queue holds, plus every enabled plugin's source tool.
        let mut tools = summary.source_tools.clone();
        tools.extend(plugins.iter().map(|p| p.source_tool.clone()));
        let priorities: Vec<String> = summary
            .priorities
            .iter()
            .rev()
            .map(ToString::to_string)
            .collect();
        let severities = ["critical", "high", "medium", "low", "informational", "unknown"];
        let sev_opts: Vec<(String, String)> = std::iter::once((String::new(), "Any".to_owned()))
            .chain(severities.iter().map(|l| ((*l).to_owned(), capitalise(l))))
            .chain([("critical,high".to_owned(), "Critical + high".to_owned())])
            .collect();
        let status_opts: Vec<(String, String)> = [
            ("", "Open"),
            ("suppressed", "Suppressed"),
            ("resolved", "Resolved"),
            ("all", "All"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let sla_opts: Vec<(String, String)> = [("", "Any"), ("breached", "Breached"), ("within", "Within SLA"), ("none", "No SLA")]
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        let mut tiles = String::new();
        for level in [Severity::Critical, Severity::High, Severity::Medium, Severity::Low] {
            let name = level.to_string();
            let _ = write!(
                tiles,
                r#"<a class="tile tile-{name}" href="/issues?severity={name}"><div class="n">{}</div><div class="l">{}</div></a>"#,
                summary.by_severity.get(&level).copied().unwrap_or(0),
                capitalise(&name)
            );
        }
        let _ = write!(
            tiles,
            r#"<div class="tile"><div class="n">{}</div><div class="l">Matching issues</div></div><div class="tile"><div class="n">{}</div><div class="l">SLA breached</div></div>"#,
            summary.total,
            summary.sla_breached
        );
        let filters = [
            select("source_tool", "Source tool", query.source_tool.as_ref(), &any_plus(tools, "Any tool")),
            select("severity", "Severity", query.severity.as_ref(), &sev_opts),
            select(
                "priority",
                "Priority",
                query.priority.as_ref(),
                &any_plus(priorities, "Any"),
            ),
            select("status", "Status", query.status.as_ref(), &status_opts),
            select(
                "application",
                "Application",
                query.application.as_ref(),
                &any_plus(summary.applications.iter().cloned(), "Any"),
            ),
            select(
                "team",
                "Team",
                query.team.as_ref(),
                &any_plus(summary.teams.iter().cloned(), "Any"),
            ),
            select(
                "registry",
                "Registry",
                query.registry.as_ref(),
                &any_plus(summary.registries.iter().cloned(), "Any"),
            ),
            select(
                "repository",
                "Repository",
                query.repository.as_ref(),
                &any_plus(summary.repositories.iter().cloned(), "Any"),
            ),
            select("sla", "SLA", query.sla.as_ref(), &sla_opts),
        ]
        .join("");
        let mut rows = String::new();
        for r in &page.items {
            let id = r.get("id").and_then(Value::as_i64).unwrap_or(0);
            let images = r.get("images").and_then(Value::as_array).map_or(0, Vec::len);
            let owner = if r.get("application").is_some_and(Value::is_null) {
                r#"<span class="muted">unmapped</span>"#.to_owned()
            } else {
                [s(r, "application"), s(r, "team")]
                    .iter()
                    .filter(|v| !v.is_empty())
                    .map(|v| esc(v))
                    .collect::<Vec<_>>()
                    .join(" · ")
            };
            let fix = if s(r, "fixed_version").is_empty() {
                r#"<span class="muted">no fix</span>"#.to_owned()
            } else {
                format!(r#"<span class="fix">→ {}</span>"#, esc(s(r, "fixed_version")))
            };
            let vuln_id = s(r, "vulnerability_id");
            let title = s(r, "title");
            let subtitle = if title.is_empty() || title.starts_with(vuln_id) {
                String::new()
            } else {
                format!(r#"<div class="sub">{}</div>"#, esc(title))
            };
            let _ = write!(
                rows,
                r#"<tr class="issue-row" data-issue="{id}" tabindex="0"><td class="nowrap">{sev}</td><td class="nowrap">{prio}</td><td><div class="mono strong">{vuln}</div>{subtitle}</td><td><div class="mono">{pkg}</div><div class="sub">{ver} {fix}</div></td><td><div>{repo}</div><div class="sub clip" title="{reg}">{reg}</div></td><td class="num">{images}</td><td>{owner}</td><td class="mono nowrap" title="{fs}">{first}</td><td>{status}</td></tr>"#,
                sev = sev_badge(s(r, "severity")),
                prio = sev_badge(s(r, "priority")),
                vuln = esc(vuln_id),
                pkg = esc(s(r, "package")),
                ver = esc(s(r, "package_version")),
                reg = esc(s(r, "registry")),
                repo = esc(s(r, "repository")),
                fs = esc(s(r, "first_seen")),
                first = esc(s(r, "first_seen").get(..10).unwrap_or("")),
                status = status_badge(s(r, "status")),
            );
        }
        if page.items.is_empty() {
            rows.push_str(if all_current {
                r#"<tr><td colspan="9" class="empty">No issues match these filters.</td></tr>"#
            } else {
                // An empty queue over data that is not current is not a clean one.
                r#"<tr><td colspan="9" class="empty">No issues match these filters, but this queue is not current: see the notices above.</td></tr>"#
            });
        }
        let qs = query_string(&query, None);
        let export = |fmt: &str, label: &str| {
            format!(r#"<a class="button" href="/api/v1/exports/{fmt}?{}" download data-export="{fmt}">{label}</a>"#, esc(&qs))
        };
        let mut pager = String::new();
        if query.after.as_deref().is_some_and(|a| !a.is_empty()) {
            let _ = write!(pager, r#"<a class="button" href="/issues?{}">« First page</a>"#, esc(&query_string(&query, None)));
        }
        if let Some(next) = &page.next {
            let _ = write!(
                pager,
                r#"<a class="button" href="/issues?{}" data-action="next-page">Next page »</a>"#,
                esc(&query_string(&query, Some(next)))
            );
        }
        let body = format!(
            r#"<div class="head-row"><h1>Active issues</h1><div class="toolbar">{csv}{json}{sarif}</div></div>
{freshness}
<div class="tiles">{tiles}</div>
<form class="filters card" method="get" action="/issues" id="filters">{filters}<div class="filter-actions"><button type="submit" class="primary">Apply</button><a class="link" href="/issues">Reset</a></div></form>
<div class="queue-wrap"><section class="card queue"><table class="grid" id="queue"><thead><tr>{h_sev}{h_prio}{h_vuln}<th>Package</th>{h_repo}{h_images}<th>Owner</th>{h_first}<th>Status</th></tr></thead><tbody>{rows}</tbody></table>
<div class="pager"><span class="muted">{shown} shown of {total}</span>{pager}</div></section>
<aside class="card panel" id="panel" hidden></aside></div>"#,
            freshness = freshness_html(&caller, &connections, true),
            csv = export("csv", "Export CSV"),
            json = export("json", "JSON"),
            sarif = export("sarif", "SARIF"),
            shown = page.items.len(),
            total = summary.total,
            h_sev = sort_header(&query, sort, SortKey::Severity, "Severity"),
            h_prio = sort_header(&query, sort, SortKey::Priority, "Priority"),
            h_vuln = sort_header(&query, sort, SortKey::Vulnerability, "Vulnerability"),
            h_repo = sort_header(&query, sort, SortKey::Repository, "Repository"),
            h_images = sort_header(&query, sort, SortKey::Images, "Images"),
            h_first = sort_header(&query, sort, SortKey::FirstSeen, "First seen"),
        );
        Ok(layout("Active issues", "issues", &caller, &body))
    }
    .await;
    page(&caller, result)
}

/// A column header that sorts the queue on the server: a link to the first page in this
/// column's order, reversing it when the column already sorts the queue.
fn sort_header(query: &IssueQuery, current: IssueSort, key: SortKey, label: &str) -> String {
    let descending = if current.key == key {
        !current.descending
    } else {
        // Worst, newest and most widespread first; names alphabetically.
        !matches!(key, SortKey::Vulnerability | SortKey::Repository)
    };
    let mut q = query.clone();
    q.sort = Some(IssueSort { key, descending }.to_string());
    let (dir, aria) = match (current.key == key, current.descending) {
        (false, _) => (String::new(), "none"),
        (true, true) => (r#" data-dir="desc""#.to_owned(), "descending"),
        (true, false) => (r#" data-dir="asc""#.to_owned(), "ascending"),
    };
    format!(
        r#"<th class="sort" aria-sort="{aria}" data-sort-key="{key}"{dir}><a href="/issues?{qs}">{label}</a></th>"#,
        key = key.as_str(),
        qs = esc(&query_string(&q, None)),
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// One severity factor as a sentence: its reason, the change it made and its evidence.
fn factor_sentence(f: &Value) -> String {
    if let Some(text) = f.as_str() {
        return esc(text);
    }
    let reason = ["reason", "sentence", "text", "description"]
        .iter()
        .find_map(|k| f.get(*k).and_then(Value::as_str))
        .unwrap_or_else(|| s(f, "id"));
    let mut out = esc(reason);
    let (from, to) = (s(f, "from"), s(f, "to"));
    if !from.is_empty() && !to.is_empty() && from != to {
        let _ = write!(
            out,
            r#" <span class="change">{} → {}</span>"#,
            sev_badge(from),
            sev_badge(to)
        );
    }
    let evidence = match f.get("evidence") {
        Some(Value::String(e)) => e.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; "),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    if !evidence.is_empty() {
        let _ = write!(
            out,
            r#"<div class="evidence">Evidence: {}</div>"#,
            esc(&evidence)
        );
    }
    out
}

/// The detail panel of one issue, as a fragment the queue page loads.
pub(crate) async fn issue_panel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = (|| {
        caller.require(Role::Viewer)?;
        let id = api::parse_issue_id(&id)?;
        let d = state.read(|s| api::issue_json(s, id))?;
        Ok::<_, ApiError>(issue_panel_html(&caller, &d))
    })();
    match result {
        Ok(html) => Html(html).into_response(),
        Err(err) => (
            err.status,
            Html(format!(
                r#"<p class="form-error">{}</p>"#,
                esc(&err.message)
            )),
        )
            .into_response(),
    }
}

fn issue_panel_html(caller: &Caller, d: &Value) -> String {
    let issue = &d["issue"];
    let vuln = &d["vulnerability"];
    let id = issue.get("id").and_then(Value::as_i64).unwrap_or(0);
    let mut html = format!(
        r#"<div class="panel-head" data-issue="{id}"><button type="button" class="icon close" data-action="close-panel" aria-label="Close">×</button>
<div class="mono muted">#{id} · {tool}</div><h2>{title}</h2>
<div class="badges">{sev} <span class="muted">severity</span> {prio} {status}</div></div>"#,
        tool = esc(s(issue, "source_tool")),
        title = esc(s(issue, "title")),
        sev = sev_badge(s(issue, "severity")),
        prio = if s(issue, "priority").is_empty() {
            String::new()
        } else {
            format!(
                r#"{} <span class="muted">priority</span>"#,
                sev_badge(s(issue, "priority"))
            )
        },
        status = status_badge(s(issue, "status")),
    );
    let _ = write!(
        html,
        r#"<dl class="kv"><dt>Vulnerability</dt><dd class="mono">{v}</dd><dt>Package</dt><dd><span class="mono">{p}</span> {pv}</dd><dt>Fixed in</dt><dd>{fx}</dd><dt>Repository</dt><dd>{reg}/{repo}</dd>{owner}<dt>First seen</dt><dd class="mono">{fs}</dd><dt>Last seen</dt><dd class="mono">{ls}</dd>{sla}</dl>"#,
        v = esc(s(issue, "vulnerability_id")),
        p = esc(s(issue, "package")),
        pv = esc(s(issue, "package_version")),
        fx = if s(issue, "fixed_version").is_empty() {
            "<span class=\"muted\">no fix available</span>".to_owned()
        } else {
            esc(s(issue, "fixed_version"))
        },
        reg = esc(s(issue, "registry")),
        repo = esc(s(issue, "repository")),
        owner = if s(issue, "application").is_empty() && s(issue, "team").is_empty() {
            String::new()
        } else {
            format!(
                "<dt>Application</dt><dd>{}</dd><dt>Team</dt><dd>{}</dd>",
                esc(s(issue, "application")),
                esc(s(issue, "team"))
            )
        },
        fs = esc(s(issue, "first_seen")),
        ls = esc(s(issue, "last_seen")),
        sla = if s(issue, "sla_due").is_empty() {
            String::new()
        } else {
            format!(
                r#"<dt>SLA due</dt><dd class="mono">{} <span class="pill {}">{}</span></dd>"#,
                esc(s(issue, "sla_due")),
                if api::sla_state(issue) == Some("breached") {
                    "bad"
                } else {
                    "ok"
                },
                api::sla_state(issue).unwrap_or("")
            )
        },
    );
    // Severity factors: from the enrichment on the issue, else what the scanner's data says.
    html.push_str(r#"<h3>Why this priority</h3><ul class="factors" id="factors">"#);
    let factors: Vec<&Value> = issue
        .get("factors")
        .or_else(|| d.get("factors"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for f in &factors {
        let _ = write!(html, "<li>{}</li>", factor_sentence(f));
    }
    for sentence in scanner_sentences(issue, vuln) {
        let _ = write!(html, r#"<li class="scanner">{}</li>"#, esc(&sentence));
    }
    html.push_str("</ul>");
    if let Some(desc) = vuln
        .get("description")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        let _ = write!(
            html,
            "<h3>Description</h3><p class=\"prose\">{}</p>",
            esc(desc)
        );
    }
    if let Some(rem) = vuln
        .get("remediation")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        let _ = write!(
            html,
            "<h3>Remediation</h3><p class=\"prose\">{}</p>",
            esc(rem)
        );
    }
    let refs = vuln
        .get("references")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !refs.is_empty() {
        html.push_str("<h3>References</h3><ul class=\"refs\">");
        for r in &refs {
            let _ = write!(
                html,
                r#"<li><a href="{}" rel="noopener noreferrer" target="_blank">{}</a></li>"#,
                href(s(r, "url")),
                esc(if s(r, "title").is_empty() {
                    s(r, "url")
                } else {
                    s(r, "title")
                })
            );
        }
        html.push_str("</ul>");
    }
    html.push_str("<h3>Images and evidence</h3><ul class=\"images\">");
    for f in d["findings"].as_array().into_iter().flatten() {
        let tags: Vec<String> = f["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(esc)
            .collect();
        let _ = write!(
            html,
            r#"<li><div><span class="mono digest">{}</span> {} {}</div><div class="muted">tags: {} · connection {}</div>"#,
            esc(s(f, "digest")),
            status_badge(s(f, "status")),
            if f["image_removed"].as_bool() == Some(true) {
                "<span class=\"pill muted\">image removed</span>"
            } else {
                ""
            },
            if tags.is_empty() {
                "none".to_owned()
            } else {
                tags.join(", ")
            },
            esc(s(f, "connection")),
        );
        for e in f["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let _ = write!(html, r#"<div class="evidence mono">{}</div>"#, esc(e));
        }
        html.push_str("</li>");
    }
    html.push_str("</ul>");
    // Suppression.
    html.push_str("<h3>Suppression</h3>");
    if let Some(sup) = d.get("suppression").filter(|v| !v.is_null()) {
        let _ = write!(
            html,
            r#"<p class="suppressed-note">Suppressed by {} at {}: “{}”{}</p>"#,
            esc(s(sup, "actor")),
            esc(s(sup, "created_at")),
            esc(s(sup, "reason")),
            if s(sup, "expires_at").is_empty() {
                String::new()
            } else {
                format!(" until {}", esc(s(sup, "expires_at")))
            },
        );
        if caller.can(Role::Operator) {
            html.push_str(
                r#"<button type="button" data-action="unsuppress">Lift suppression</button>"#,
            );
        }
    } else if caller.can(Role::Operator) {
        html.push_str(
            r#"<form class="suppress-form" id="suppress-form"><label for="s-reason">Reason</label><input id="s-reason" name="reason" required placeholder="e.g. not reachable: the package is never loaded">
<label for="s-expires">Expires (optional)</label><input id="s-expires" name="expires_at" type="date">
<div class="form-error" role="alert"></div><button type="submit">Suppress</button></form>"#,
        );
    } else {
        html.push_str(&refused_note(caller, Role::Operator, "suppress issues"));
    }
    html.push_str("<h3>History</h3><ol class=\"history\">");
    for e in d["history"].as_array().into_iter().flatten() {
        let what = match (s(e, "field"), s(e, "old_value"), s(e, "new_value")) {
            ("", _, "") => String::new(),
            (f, "", n) => format!(" {}: {}", esc(f), esc(n)),
            (f, o, n) => format!(" {}: {} → {}", esc(f), esc(o), esc(n)),
        };
        let actor = if s(e, "actor").is_empty() {
            e.get("run")
                .and_then(Value::as_i64)
                .map_or_else(String::new, |r| format!(" (run {r})"))
        } else {
            format!(" by {}", esc(s(e, "actor")))
        };
        let _ = write!(
            html,
            r#"<li><span class="mono muted">{}</span> <b>{}</b>{}{}</li>"#,
            esc(s(e, "at")),
            esc(s(e, "kind")),
            what,
            actor
        );
    }
    html.push_str("</ol>");
    html
}

/// Plain sentences from the scanner's own data: its severity, CVSS and exploit flags.
fn scanner_sentences(issue: &Value, vuln: &Value) -> Vec<String> {
    let mut out = vec![format!(
        "The scanner ({}) rates it {}.",
        s(issue, "source_tool"),
        s(issue, "severity")
    )];
    if let Some(score) = vuln.get("cvss_score").and_then(Value::as_f64) {
        let vector = s(vuln, "cvss_vector");
        out.push(if vector.is_empty() {
            format!("CVSS base score {score:.1}.")
        } else {
            format!("CVSS base score {score:.1} ({vector}).")
        });
        if vector.contains("AV:N") {
            out.push("It can be attacked over the network.".to_owned());
        } else if vector.contains("AV:L") || vector.contains("AV:P") {
            out.push("It needs local or physical access.".to_owned());
        }
    }
    let x = &vuln["exploitability"];
    if x["exploit_verified"].as_bool() == Some(true) {
        out.push("A working exploit has been verified.".to_owned());
    } else if x["exploit_published"].as_bool() == Some(true) {
        out.push("An exploit has been published.".to_owned());
    }
    if x["in_exploit_kit"].as_bool() == Some(true) {
        out.push("It is part of an exploit kit.".to_owned());
    }
    if s(issue, "fixed_version").is_empty() {
        out.push("No fixed version is available yet.".to_owned());
    } else {
        out.push(format!(
            "Upgrading {} to {} fixes it.",
            s(issue, "package"),
            s(issue, "fixed_version")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_escapes_every_markup_character() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn href_allows_only_http() {
        assert_eq!(href("javascript:alert(1)"), "#");
        assert_eq!(href(" JAVASCRIPT:alert(1)"), "#");
        assert_eq!(
            href("https://x.test/?a=1&b=\"2\""),
            "https://x.test/?a=1&amp;b=&quot;2&quot;"
        );
    }

    #[test]
    fn markdown_escapes_html_and_renders_the_subset() {
        let html = markdown(
            "# Title\n\nSome **bold**, *it<i>* and `code` <script>alert(1)</script>\n\n- one\n- [two](https://x.test)\n- [bad](javascript:alert(1))\n\n```\n<b>raw</b>\n```",
        );
        assert!(html.contains("<h3>Title</h3>"), "{html}");
        assert!(html.contains("<b>bold</b>"));
        assert!(html.contains("<i>it&lt;i&gt;</i>"), "{html}");
        assert!(html.contains("<code>code</code>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains(r#"<a href="https://x.test""#));
        assert!(html.contains(r##"<a href="#""##));
        assert!(html.contains("<pre><code>&lt;b&gt;raw&lt;/b&gt;"));
        assert_eq!(html.matches("<li>").count(), 3);
    }

    #[test]
    fn factors_read_as_sentences() {
        let f = serde_json::json!({"id": "kev", "direction": "raise", "from": "medium", "to": "high",
            "reason": "Known exploited <in the wild>", "evidence": "CISA KEV 2024-01-01"});
        let html = factor_sentence(&f);
        assert!(
            html.starts_with("Known exploited &lt;in the wild&gt;"),
            "{html}"
        );
        assert!(html.contains("sev-medium") && html.contains("sev-high"));
        assert!(html.contains("Evidence: CISA KEV 2024-01-01"));
    }
}
