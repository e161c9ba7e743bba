//! The ACR data plane of one registry: the challenge, `/oauth2/exchange`, `/oauth2/token`, the
//! catalog, tag and manifest listings with `Link` paging, and manifests by tag or digest.
//!
//! Two anomalies ([`Anomaly`]) hit the [target registry](crate::anomaly::target_registry):
//! `one-registry-forbidden` answers as a denied registry does (the token grants nothing, reads
//! get 403 `DENIED`), and `acr-catalog-loop` ends the catalog's last page with a `Link` back to
//! the first page.

use serde_json::{Value, json};

use crate::anomaly::{self, Anomaly};
use crate::entra::ACR_RESOURCE;
use crate::server::{Req, Resp, Sim};
use crate::tenant::{Image, MANIFEST_MEDIA_TYPE, Registry};
use crate::throttle::{Verdict, ceil_secs};
use crate::tokens::{Access, Claims, TokenKind};
use crate::util::{
    self, decode_component, encode_component, field, parse_form, request_guid, rfc3339_7,
};

/// A data-plane route.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Base,
    Exchange,
    Token,
    Catalog { v2: bool },
    Tags(String),
    Tag(String, String),
    Manifests(String),
    ManifestAttrs(String, String),
    Repository(String),
    TagsList(String),
    Manifest(String, String),
    NotFound,
}

fn route(path: &str) -> Route {
    match path {
        "/v2" | "/v2/" => return Route::Base,
        "/oauth2/exchange" => return Route::Exchange,
        "/oauth2/token" => return Route::Token,
        "/acr/v1/_catalog" => return Route::Catalog { v2: false },
        "/v2/_catalog" => return Route::Catalog { v2: true },
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/acr/v1/") {
        let decoded = decode_component(rest);
        let segs: Vec<&str> = decoded.split('/').collect();
        let Some(cut) = segs.iter().position(|s| s.starts_with('_')) else {
            return if decoded.is_empty() {
                Route::NotFound
            } else {
                Route::Repository(decoded.trim_end_matches('/').to_owned())
            };
        };
        let repo = segs[..cut].join("/");
        return match (segs[cut], &segs[cut + 1..]) {
            ("_tags", []) => Route::Tags(repo),
            ("_tags", [tag]) => Route::Tag(repo, (*tag).to_owned()),
            ("_manifests", []) => Route::Manifests(repo),
            ("_manifests", [d]) => Route::ManifestAttrs(repo, (*d).to_owned()),
            _ => Route::NotFound,
        };
    }
    if let Some(rest) = path.strip_prefix("/v2/") {
        if let Some(repo) = rest.strip_suffix("/tags/list") {
            return Route::TagsList(decode_component(repo));
        }
        if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
            return Route::Manifest(decode_component(repo), decode_component(reference));
        }
    }
    Route::NotFound
}

pub(crate) fn endpoint(r: &Req) -> &'static str {
    match route(&r.path) {
        Route::Base => "acr.base",
        Route::Exchange => "acr.exchange",
        Route::Token => "acr.token",
        Route::Catalog { .. } => "acr.catalog",
        Route::Tags(_) | Route::Tag(..) | Route::TagsList(_) => "acr.tags",
        Route::Manifests(_) | Route::ManifestAttrs(..) => "acr.manifests",
        Route::Repository(_) => "acr.repository",
        Route::Manifest(..) => "acr.manifest",
        Route::NotFound => "unknown",
    }
}

fn headers(mut resp: Resp) -> Resp {
    resp.set("server", "openresty")
        .set("docker-distribution-api-version", "registry/2.0")
        .set("x-ms-correlation-request-id", &request_guid())
        .set(
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        )
        .set("x-content-type-options", "nosniff");
    for h in [
        "Docker-Content-Digest",
        "WWW-Authenticate",
        "Link",
        "X-Ms-Correlation-Request-Id",
    ] {
        resp.append("access-control-expose-headers", h);
    }
    resp
}

/// An OCI/ACR error envelope.
pub(crate) fn errors(status: u16, code: &str, message: &str, detail: Value) -> Resp {
    let mut e = json!({"code": code, "message": message});
    if !detail.is_null() {
        e["detail"] = detail;
    }
    headers(Resp::json(status, &json!({"errors": [e]})))
}

/// 429 past the SKU's ReadOps.
pub(crate) fn too_many_requests(retry_secs: u64) -> Resp {
    errors(
        429,
        "TOOMANYREQUESTS",
        "too many requests",
        json!(format!(
            "Too many requests. Please retry after {retry_secs} seconds."
        )),
    )
    .with("retry-after", &retry_secs.to_string())
}

/// A required scope: `registry:catalog:*` or `repository:<name>:<action>`.
#[derive(Clone, Debug)]
struct Scope {
    kind: &'static str,
    name: String,
    action: &'static str,
}

impl Scope {
    fn text(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.action)
    }
}

fn challenge(reg: &Registry, scope: Option<&Scope>, error: Option<&str>) -> Resp {
    let login = &reg.login_server;
    let mut value = format!("Bearer realm=\"https://{login}/oauth2/token\",service=\"{login}\"");
    if let Some(s) = scope {
        value = format!("{value},scope=\"{}\"", s.text());
    }
    if let Some(e) = error {
        value = format!("{value},error=\"{e}\"");
    }
    let detail = scope.map_or(
        Value::Null,
        |s| json!([{"Type": s.kind, "Name": s.name, "Action": s.action}]),
    );
    errors(
        401,
        "UNAUTHORIZED",
        "authentication required, visit https://aka.ms/acr/authorization for more information.",
        detail,
    )
    .with("www-authenticate", &value)
}

fn denied() -> Resp {
    errors(
        403,
        "DENIED",
        "requested access to the resource is denied",
        Value::Null,
    )
}

/// True when `anomaly` is on and hits this registry.
fn hit_by(sim: &Sim, reg: &Registry, anomaly: Anomaly) -> bool {
    sim.faults().has(anomaly)
        && anomaly::target_registry(&sim.tenant)
            .is_some_and(|i| sim.tenant.registries[i].arm_id == reg.arm_id)
}

/// True when the principal behind a token may read this registry's data plane.
fn allowed(sim: &Sim, reg: &Registry, appid: &str) -> bool {
    !reg.spec.data_plane_denied
        && !hit_by(sim, reg, Anomaly::OneRegistryForbidden)
        && sim.principal(appid).is_some_and(|p| p.has_role)
}

fn rate_header(sim: &Sim, reg: &Registry) -> String {
    let limit = sim.limits.acr_limit(reg.spec.sku);
    let per_sec = f64::from(limit) / sim.limits.acr_window.as_secs_f64().max(1.0);
    format!("{per_sec:.2}")
}

pub(crate) fn handle(sim: &Sim, reg_index: usize, r: &Req) -> Resp {
    let reg = &sim.tenant.registries[reg_index];
    if !reg.spec.public_network {
        return errors(
            403,
            "DENIED",
            "client with IP '127.0.0.1' is not allowed access. Refer https://aka.ms/acr/firewall to grant access.",
            Value::Null,
        );
    }
    if sim.throttling {
        let limit = sim.limits.acr_limit(reg.spec.sku);
        if let Verdict::Throttled { retry_after } = sim.throttles.window(
            &format!("acr:{}", reg.spec.name),
            limit,
            sim.limits.acr_window,
        ) {
            return too_many_requests(ceil_secs(retry_after));
        }
    }
    let route = route(&r.path);
    let is_read = matches!(r.method.as_str(), "GET" | "HEAD");
    match route {
        Route::Exchange if r.method == "POST" => exchange(sim, reg, r),
        Route::Token if r.method == "POST" => token(sim, reg, r),
        Route::Token if r.method == "GET" => errors(
            401,
            "UNAUTHORIZED",
            "authentication required, visit https://aka.ms/acr/authorization for more information.",
            Value::Null,
        ),
        Route::NotFound => errors(
            404,
            "NOT_FOUND",
            "the requested resource was not found",
            Value::Null,
        ),
        _ if !is_read => errors(
            405,
            "UNSUPPORTED",
            "The operation is unsupported.",
            Value::Null,
        ),
        Route::Base => match authorize(sim, reg, r, None) {
            Ok(()) => headers(Resp::json(200, &json!({}))),
            Err(resp) => resp,
        },
        Route::Catalog { v2 } => {
            let scope = Scope {
                kind: "registry",
                name: "catalog".into(),
                action: "*",
            };
            match authorize(sim, reg, r, Some(&scope)) {
                Ok(()) => catalog(sim, reg_index, r, v2),
                Err(resp) => resp,
            }
        }
        Route::Tags(ref repo)
        | Route::Tag(ref repo, _)
        | Route::Manifests(ref repo)
        | Route::ManifestAttrs(ref repo, _)
        | Route::Repository(ref repo) => {
            let scope = Scope {
                kind: "repository",
                name: repo.clone(),
                action: "metadata_read",
            };
            if let Err(resp) = authorize(sim, reg, r, Some(&scope)) {
                return resp;
            }
            let Some(images) = repo_images(sim, reg_index, repo) else {
                return name_unknown(repo);
            };
            match route {
                Route::Tags(_) => tags(reg, repo, r, &images),
                Route::Tag(_, tag) => tag_attrs(reg, repo, &tag, &images),
                Route::Manifests(_) => manifests(reg, repo, r, &images),
                Route::ManifestAttrs(_, digest) => manifest_attrs(reg, repo, &digest, &images),
                _ => repository(reg, repo, &images),
            }
        }
        Route::TagsList(ref repo) | Route::Manifest(ref repo, _) => {
            let scope = Scope {
                kind: "repository",
                name: repo.clone(),
                action: "pull",
            };
            if let Err(resp) = authorize(sim, reg, r, Some(&scope)) {
                return resp;
            }
            let Some(images) = repo_images(sim, reg_index, repo) else {
                return name_unknown(repo);
            };
            match route {
                Route::TagsList(_) => tags_list(repo, r, &images),
                Route::Manifest(_, reference) => manifest(r, repo, &reference, &images),
                _ => unreachable!("outer match covers only these two"),
            }
        }
        Route::Exchange | Route::Token => errors(
            405,
            "UNSUPPORTED",
            "The operation is unsupported.",
            Value::Null,
        ),
    }
}

fn name_unknown(repo: &str) -> Resp {
    errors(
        404,
        "NAME_UNKNOWN",
        "repository name not known to registry",
        json!({"name": repo}),
    )
}

fn repo_images(sim: &Sim, reg: usize, repo: &str) -> Option<Vec<Image>> {
    let t = &sim.tenant;
    let p = t.repo_by_name(reg, repo)?;
    let images = t.repo_images(&t.overlay(), reg, p);
    (!images.is_empty()).then_some(images)
}

/// Checks an ACR access token against the scope a route needs.
fn authorize(sim: &Sim, reg: &Registry, r: &Req, scope: Option<&Scope>) -> Result<(), Resp> {
    let Some(token) = r.bearer() else {
        return Err(challenge(reg, scope, None));
    };
    let Some(claims) = sim.signer.verify(token) else {
        return Err(challenge(reg, scope, Some("invalid_token")));
    };
    if claims.kind != TokenKind::AcrAccess
        || !claims.aud.eq_ignore_ascii_case(&reg.login_server)
        || sim.token_expired(claims.iat, claims.exp)
    {
        return Err(challenge(reg, scope, Some("invalid_token")));
    }
    if !allowed(sim, reg, &claims.appid) {
        return Err(denied());
    }
    let Some(scope) = scope else { return Ok(()) };
    let covered = claims.access.iter().any(|a| {
        a.kind == scope.kind
            && a.name == scope.name
            && a.actions.iter().any(|x| x == scope.action || x == "*")
    });
    if covered {
        Ok(())
    } else {
        Err(challenge(reg, Some(scope), Some("insufficient_scope")))
    }
}

fn exchange(sim: &Sim, reg: &Registry, r: &Req) -> Resp {
    let form = parse_form(&String::from_utf8_lossy(&r.body));
    let grant = field(&form, "grant_type").unwrap_or("");
    if grant != "access_token" {
        return errors(
            400,
            "UNSUPPORTED",
            &format!("grant type `{grant}` is not supported"),
            Value::Null,
        );
    }
    let service = field(&form, "service").unwrap_or("");
    if !service.eq_ignore_ascii_case(&reg.login_server) {
        return errors(
            400,
            "UNSUPPORTED",
            &format!("service `{service}` does not match this registry"),
            Value::Null,
        );
    }
    let unauthorized = |msg: &str| errors(401, "UNAUTHORIZED", msg, Value::Null);
    let Some(token) = field(&form, "access_token").filter(|t| !t.is_empty()) else {
        return unauthorized("access token is required");
    };
    let Some(claims) = sim.signer.verify(token) else {
        return unauthorized("the access token is invalid");
    };
    let audience_ok = match claims.kind {
        TokenKind::Acr => true,
        TokenKind::Arm => reg.spec.aad_as_arm,
        TokenKind::AcrRefresh | TokenKind::AcrAccess => false,
    };
    if !audience_ok {
        return unauthorized(&format!(
            "the access token audience `{}` is not accepted by this registry; use `{ACR_RESOURCE}`",
            claims.aud
        ));
    }
    if sim.token_expired(claims.iat, claims.exp) {
        return unauthorized("the access token has expired");
    }
    if let Some(tenant) = field(&form, "tenant")
        && !tenant.eq_ignore_ascii_case(&claims.tid)
    {
        return unauthorized(&format!(
            "the access token was not issued by tenant `{tenant}`"
        ));
    }
    let now = util::now_secs();
    let refresh = Claims {
        kind: TokenKind::AcrRefresh,
        aud: reg.login_server.clone(),
        iss: "Azure Container Registry".to_owned(),
        tid: claims.tid,
        appid: claims.appid,
        oid: claims.oid,
        iat: now,
        nbf: now,
        exp: now + 3 * 3600,
        access: Vec::new(),
    };
    headers(Resp::json(
        200,
        &json!({"refresh_token": sim.signer.sign(&refresh)}),
    ))
    .with(
        "x-ms-ratelimit-remaining-calls-per-second",
        &rate_header(sim, reg),
    )
}

fn parse_scope(s: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((
        kind.to_owned(),
        name.to_owned(),
        actions.split(',').map(str::to_owned).collect(),
    ))
}

fn token(sim: &Sim, reg: &Registry, r: &Req) -> Resp {
    let form = parse_form(&String::from_utf8_lossy(&r.body));
    let unauthorized = |msg: &str| errors(401, "UNAUTHORIZED", msg, Value::Null);
    let grant = field(&form, "grant_type").unwrap_or("");
    if grant != "refresh_token" {
        return errors(
            400,
            "UNSUPPORTED",
            &format!("grant type `{grant}` is not supported"),
            Value::Null,
        );
    }
    let service = field(&form, "service").unwrap_or("");
    if !service.eq_ignore_ascii_case(&reg.login_server) {
        return errors(
            400,
            "UNSUPPORTED",
            &format!("service `{service}` does not match this registry"),
            Value::Null,
        );
    }
    let Some(claims) = field(&form, "refresh_token").and_then(|t| sim.signer.verify(t)) else {
        return unauthorized("the refresh token is invalid");
    };
    if claims.kind != TokenKind::AcrRefresh || !claims.aud.eq_ignore_ascii_case(&reg.login_server) {
        return unauthorized("the refresh token is invalid");
    }
    if sim.token_expired(claims.iat, claims.exp) {
        return unauthorized("the refresh token has expired");
    }
    let may_read = allowed(sim, reg, &claims.appid);
    let mut access: Vec<Access> = Vec::new();
    for (_, value) in form.iter().filter(|(k, _)| k == "scope") {
        for s in value.split_whitespace() {
            let Some((kind, name, actions)) = parse_scope(s) else {
                return errors(
                    400,
                    "UNSUPPORTED",
                    &format!("scope `{s}` is malformed"),
                    Value::Null,
                );
            };
            // A Reader gets pull and metadata_read, and the catalog; never push or delete.
            let granted: Vec<String> = if may_read {
                actions
                    .into_iter()
                    .filter(|a| match kind.as_str() {
                        "registry" => name == "catalog" && a == "*",
                        "repository" => a == "pull" || a == "metadata_read",
                        _ => false,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            access.push(Access {
                kind,
                name,
                actions: granted,
            });
        }
    }
    let now = util::now_secs();
    let token = Claims {
        kind: TokenKind::AcrAccess,
        aud: reg.login_server.clone(),
        iss: "Azure Container Registry".to_owned(),
        tid: claims.tid,
        appid: claims.appid,
        oid: claims.oid,
        iat: now,
        nbf: now,
        exp: now + 4500,
        access,
    };
    headers(Resp::json(
        200,
        &json!({"access_token": sim.signer.sign(&token)}),
    ))
    .with(
        "x-ms-ratelimit-remaining-calls-per-second",
        &rate_header(sim, reg),
    )
}

/// `n` and `last` as ACR reads them.
fn paging(r: &Req) -> (usize, Option<String>) {
    let n = r
        .query("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(100)
        .min(1000);
    let last = r.query("last").filter(|l| !l.is_empty()).map(str::to_owned);
    (n, last)
}

fn link(path: &str, last: &str, n: usize, orderby: &str) -> String {
    format!(
        "<{path}?last={}&n={n}&orderby={}>; rel=\"next\"",
        encode_component(last),
        encode_component(orderby)
    )
}

/// Slices `items` after `last`, `n` at a time; returns the page and whether more remain.
fn window<T: Clone>(
    items: &[T],
    key: impl Fn(&T) -> &str,
    n: usize,
    last: Option<&str>,
) -> (Vec<T>, bool) {
    let start = match last {
        Some(l) => items.iter().position(|i| key(i) == l).map_or_else(
            || items.iter().position(|i| key(i) > l).unwrap_or(items.len()),
            |p| p + 1,
        ),
        None => 0,
    };
    let end = (start + n).min(items.len());
    (items[start..end].to_vec(), end < items.len() && n > 0)
}

fn catalog(sim: &Sim, reg: usize, r: &Req, v2: bool) -> Resp {
    let t = &sim.tenant;
    let ov = t.overlay();
    let names: Vec<String> = (0..t.registries[reg].repos.len())
        .filter(|p| t.repo_exists(&ov, reg, *p))
        .map(|p| t.registries[reg].repos[p].name.clone())
        .collect();
    let (n, last) = paging(r);
    let (page, more) = window(&names, String::as_str, n, last.as_deref());
    let body = if page.is_empty() {
        json!({"repositories": null})
    } else {
        json!({"repositories": page})
    };
    let mut resp = headers(Resp::json(200, &body));
    let path = if v2 {
        "/v2/_catalog"
    } else {
        "/acr/v1/_catalog"
    };
    if more {
        resp.set(
            "link",
            &link(path, page.last().map_or("", String::as_str), n, ""),
        );
    } else if n > 0 && !names.is_empty() && hit_by(sim, &t.registries[reg], Anomaly::AcrCatalogLoop)
    {
        // `last=` empty starts over: the first page again, and so on forever.
        resp.set("link", &link(path, "", n, ""));
    }
    resp
}

fn change_attrs() -> Value {
    json!({"deleteEnabled": true, "writeEnabled": true, "readEnabled": true, "listEnabled": true})
}

fn time(i: &Image) -> String {
    rfc3339_7(i.created, i.created_frac)
}

fn tag_json(name: &str, i: &Image) -> Value {
    json!({
        "name": name,
        "digest": i.digest,
        "createdTime": time(i),
        "lastUpdateTime": time(i),
        "signed": false,
        "changeableAttributes": change_attrs(),
    })
}

fn all_tags(images: &[Image]) -> Vec<(String, Image)> {
    let mut tags: Vec<(String, Image)> = images
        .iter()
        .flat_map(|i| i.tags.iter().map(move |t| (t.clone(), i.clone())))
        .collect();
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    tags
}

fn order(r: &Req) -> String {
    r.query("orderby").unwrap_or("").to_owned()
}

fn sort_by_time<T>(items: &mut [T], created: impl Fn(&T) -> (i64, u32), orderby: &str) {
    match orderby {
        "timedesc" => items.sort_by_key(|i| std::cmp::Reverse(created(i))),
        "timeasc" => items.sort_by_key(|i| created(i)),
        _ => {}
    }
}

fn tags(reg: &Registry, repo: &str, r: &Req, images: &[Image]) -> Resp {
    let mut tags = all_tags(images);
    if let Some(d) = r.query("digest") {
        tags.retain(|(_, i)| i.digest == d);
    }
    let orderby = order(r);
    sort_by_time(&mut tags, |(_, i)| (i.created, i.created_frac), &orderby);
    let (n, last) = paging(r);
    let (page, more) = window(&tags, |t| t.0.as_str(), n, last.as_deref());
    let mut resp = headers(Resp::json(
        200,
        &json!({
            "registry": reg.login_server,
            "imageName": repo,
            "tags": page.iter().map(|(name, i)| tag_json(name, i)).collect::<Vec<_>>(),
        }),
    ));
    if more {
        let path = format!("/acr/v1/{}/_tags", encode_component(repo));
        resp.set(
            "link",
            &link(&path, page.last().map_or("", |t| t.0.as_str()), n, &orderby),
        );
    }
    resp
}

fn tag_attrs(reg: &Registry, repo: &str, tag: &str, images: &[Image]) -> Resp {
    match all_tags(images).into_iter().find(|(t, _)| t == tag) {
        Some((name, i)) => headers(Resp::json(
            200,
            &json!({"registry": reg.login_server, "imageName": repo, "tag": tag_json(&name, &i)}),
        )),
        None => errors(
            404,
            "TAG_UNKNOWN",
            "the specified tag does not exist",
            json!({"Tag": tag}),
        ),
    }
}

fn manifest_json(i: &Image) -> Value {
    let mut m = json!({
        "digest": i.digest,
        "imageSize": i.size,
        "createdTime": time(i),
        "lastUpdateTime": time(i),
        "architecture": i.architecture,
        "os": i.os,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "configMediaType": "application/vnd.docker.container.image.v1+json",
        "changeableAttributes": change_attrs(),
    });
    if !i.tags.is_empty() {
        m["tags"] = json!(i.tags);
    }
    m
}

fn manifests(reg: &Registry, repo: &str, r: &Req, images: &[Image]) -> Resp {
    let mut sorted: Vec<Image> = images.to_vec();
    sorted.sort_by(|a, b| a.digest.cmp(&b.digest));
    let orderby = order(r);
    sort_by_time(&mut sorted, |i| (i.created, i.created_frac), &orderby);
    let (n, last) = paging(r);
    let (page, more) = window(&sorted, |i| i.digest.as_str(), n, last.as_deref());
    let mut resp = headers(Resp::json(
        200,
        &json!({
            "registry": reg.login_server,
            "imageName": repo,
            "manifests": page.iter().map(manifest_json).collect::<Vec<_>>(),
        }),
    ));
    if more {
        let path = format!("/acr/v1/{}/_manifests", encode_component(repo));
        resp.set(
            "link",
            &link(
                &path,
                page.last().map_or("", |i| i.digest.as_str()),
                n,
                &orderby,
            ),
        );
    }
    resp
}

fn manifest_attrs(reg: &Registry, repo: &str, digest: &str, images: &[Image]) -> Resp {
    match images.iter().find(|i| i.digest == digest) {
        Some(i) => headers(Resp::json(
            200,
            &json!({"registry": reg.login_server, "imageName": repo, "manifest": manifest_json(i)}),
        )),
        None => manifest_unknown(repo, digest),
    }
}

fn repository(reg: &Registry, repo: &str, images: &[Image]) -> Resp {
    let created = images
        .iter()
        .map(|i| (i.created, i.created_frac))
        .min()
        .unwrap_or((0, 0));
    let updated = images
        .iter()
        .map(|i| (i.created, i.created_frac))
        .max()
        .unwrap_or((0, 0));
    headers(Resp::json(
        200,
        &json!({
            "registry": reg.login_server,
            "imageName": repo,
            "createdTime": rfc3339_7(created.0, created.1),
            "lastUpdateTime": rfc3339_7(updated.0, updated.1),
            "manifestCount": images.len(),
            "tagCount": images.iter().map(|i| i.tags.len()).sum::<usize>(),
            "changeableAttributes": {"deleteEnabled": true, "writeEnabled": true, "readEnabled": true, "listEnabled": true, "teleportEnabled": false},
        }),
    ))
}

fn tags_list(repo: &str, r: &Req, images: &[Image]) -> Resp {
    let names: Vec<String> = all_tags(images).into_iter().map(|(t, _)| t).collect();
    let (n, last) = paging(r);
    let (page, more) = window(&names, String::as_str, n, last.as_deref());
    let mut resp = headers(Resp::json(
        200,
        &json!({"name": repo, "tags": if page.is_empty() { Value::Null } else { json!(page) }}),
    ));
    if more {
        resp.set(
            "link",
            &link(
                &format!("/v2/{repo}/tags/list"),
                page.last().map_or("", String::as_str),
                n,
                "",
            ),
        );
    }
    resp
}

fn manifest_unknown(repo: &str, reference: &str) -> Resp {
    if reference.starts_with("sha256:") {
        errors(
            404,
            "MANIFEST_UNKNOWN",
            &format!("manifest {reference} is not found"),
            json!({"Name": repo, "Revision": reference}),
        )
    } else {
        errors(
            404,
            "MANIFEST_UNKNOWN",
            &format!("manifest tagged by \"{reference}\" is not found"),
            json!({"Tag": reference}),
        )
    }
}

fn manifest(r: &Req, repo: &str, reference: &str, images: &[Image]) -> Resp {
    let found = if reference.starts_with("sha256:") {
        images.iter().find(|i| i.digest == reference)
    } else {
        images
            .iter()
            .find(|i| i.tags.iter().any(|t| t == reference))
    };
    let Some(i) = found else {
        return manifest_unknown(repo, reference);
    };
    let mut resp = headers(Resp::new(200, MANIFEST_MEDIA_TYPE, i.manifest.clone()));
    resp.set("docker-content-digest", &i.digest)
        .set("etag", &format!("\"{}\"", i.digest))
        .set("x-ms-request-id", &request_guid());
    if let Some(id) = r.header("x-ms-client-request-id") {
        resp.set("x-ms-client-request-id", id);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_repository_names_with_slashes() {
        assert_eq!(
            route("/acr/v1/library%2Fhello-world/_tags"),
            Route::Tags("library/hello-world".into())
        );
        assert_eq!(
            route("/acr/v1/a/b/c/_manifests"),
            Route::Manifests("a/b/c".into())
        );
        assert_eq!(
            route("/acr/v1/a%2Fb/_manifests/sha256%3Aab"),
            Route::ManifestAttrs("a/b".into(), "sha256:ab".into())
        );
        assert_eq!(route("/acr/v1/a/b"), Route::Repository("a/b".into()));
        assert_eq!(route("/v2/a/b/tags/list"), Route::TagsList("a/b".into()));
        assert_eq!(
            route("/v2/library%2Fhello-world/manifests/sha256%3Ac0"),
            Route::Manifest("library/hello-world".into(), "sha256:c0".into())
        );
        assert_eq!(route("/v2/_catalog"), Route::Catalog { v2: true });
    }

    #[test]
    fn window_pages_after_last() {
        let items = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(
            window(&items, String::as_str, 2, None),
            (vec!["a".into(), "b".into()], true)
        );
        assert_eq!(
            window(&items, String::as_str, 2, Some("b")),
            (vec!["c".into()], false)
        );
        assert_eq!(
            window(&items, String::as_str, 2, Some("bb")),
            (vec!["c".into()], false)
        );
    }
}
