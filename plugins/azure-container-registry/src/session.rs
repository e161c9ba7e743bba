//! One connection to a subscription: the token caches, the requests, and the paging.
//!
//! Every request counts against Azure's throttles, so a session fetches nothing twice: one
//! Entra ID token per lifetime (the Resource Manager audience, also used for the registries'
//! token exchange), one refresh token per registry, one access token per registry and scope,
//! registry-list pages kept by URL, and the Resource Graph page being served kept until it is
//! served. Resource Graph queries are paced by the quota its answers report. Paging state lives
//! in the cursors; the caches only save requests.
//!
//! Memory stays flat as the tenant grows: access tokens and image facts are held for the
//! registry being enumerated only (see [`crate::facts`]), what stays for the whole session is
//! per registry or per repository name, and a Resource Graph page is held once (each row's JSON
//! as sent, once however many findings it gives) and handed over as it is served.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use keelson_plugin_sdk::Secret;
use keelson_plugin_sdk::http::{Client, RequestBuilder, Response};
use keelson_plugin_sdk::pager::{self, Cursor, Trail};
use keelson_plugin_sdk::skipped::Skipped;
use keelson_plugin_sdk::{
    Account, ConnectorError, Finding, FindingPage, ImageContext, ImagePage, ImageRef, PageRequest,
    RegistryPage, RepositoryPage, ScanScope, Session, Setting, debug, warn,
};
use serde::{Deserialize, Serialize};

use crate::acr::{self, CATALOG_SCOPE};
use crate::arm::{self, RegistryInfo, RegistryListPage};
use crate::auth::{self, Token};
use crate::config::{self, Config, FindingsSource, is_guid};
use crate::defender::{self, CountCheck, DataSet, ImageFacts, ImageLocation};
use crate::error::Error;
use crate::facts::{FactsCache, RepositoryIndex};

/// Repository scopes asked for in one ACR token request: few requests, and a token that stays
/// a few kilobytes (it travels in every request's `Authorization` header).
const SCOPES_PER_TOKEN: usize = 50;

/// Seconds since the Unix epoch.
fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The caller's Resource Graph quota as the last answer told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GraphQuota {
    /// Queries left in the current window.
    remaining: u32,
    /// When the window has surely reset (ms since the epoch). Answers give whole seconds,
    /// rounded down, so each answer bounds it from above by a second more than it says; the
    /// answers of one window narrow it to the earliest of their bounds.
    resets_by_ms: u64,
}

impl GraphQuota {
    /// The quota after an answer that said `(remaining, resets_after_secs)`, for a query sent
    /// at `sent_ms` and answered at `received_ms`.
    fn after(
        previous: Option<Self>,
        (remaining, resets_after_secs): (u32, u64),
        sent_ms: u64,
        received_ms: u64,
    ) -> Self {
        let resets_ms = resets_after_secs.saturating_mul(1000);
        let upper = received_ms.saturating_add(resets_ms).saturating_add(1000);
        let lower = sent_ms.saturating_add(resets_ms);
        let resets_by_ms = match previous {
            // Fewer left and a reset no later than the last bound: the same window.
            Some(p) if remaining < p.remaining && lower < p.resets_by_ms => {
                upper.min(p.resets_by_ms)
            }
            _ => upper,
        };
        Self {
            remaining,
            resets_by_ms,
        }
    }

    /// How long to wait before the next query, if the window is used up.
    fn wait_ms(self, now_ms: u64) -> Option<u64> {
        (self.remaining == 0 && now_ms < self.resets_by_ms).then(|| self.resets_by_ms - now_ms)
    }
}

/// The Resource Graph page being served: a page of rows can hold more findings than the host
/// takes at once (a row lists several CVEs), so it is kept until served. Each row's JSON, as
/// sent, is held once; a finding takes its copy when served and leaves the slot then.
struct FindingsSlot {
    dataset: DataSet,
    token: Option<String>,
    top: u32,
    /// The registries in scope when the page was read (lowercase; empty: all).
    wanted: BTreeSet<String>,
    /// The JSON of each row with findings in scope, for their `raw`.
    raws: Vec<String>,
    /// Per row, its findings not served yet: the last one served takes the row's JSON.
    unserved: Vec<u32>,
    /// The findings in scope in order, with their row's index; `None` once served.
    findings: Vec<(u32, Option<Finding>)>,
    skip_token: Option<String>,
    /// Rows on the page, for the listing's count against `totalRecords`.
    rows: u64,
    /// The page's rows that could not be read, and what its counts contradict.
    skipped: Skipped,
    check: CountCheck,
}

impl FindingsSlot {
    /// Whether this page, as read for `wanted`, can serve `findings[start..end]` again.
    fn serves(
        &self,
        dataset: DataSet,
        token: Option<&str>,
        top: u32,
        wanted: &BTreeSet<String>,
        (start, max): (usize, usize),
    ) -> bool {
        let (start, end) = self.range(start, max);
        self.dataset == dataset
            && self.token.as_deref() == token
            && self.top == top
            && self.wanted == *wanted
            && self.findings[start..end].iter().all(|(_, f)| f.is_some())
    }

    /// The range of at most `max` findings from `start`, within the page.
    fn range(&self, start: usize, max: usize) -> (usize, usize) {
        let start = start.min(self.findings.len());
        (start, (start + max).min(self.findings.len()))
    }

    /// Moves `findings[start..end]` out, each with a copy of its row's JSON (the last of a row
    /// takes the row's string itself).
    fn serve(&mut self, start: usize, end: usize) -> Vec<Finding> {
        let mut items = Vec::with_capacity(end - start);
        for (row, finding) in &mut self.findings[start..end] {
            let Some(mut finding) = finding.take() else {
                continue;
            };
            let row = *row as usize;
            self.unserved[row] -= 1;
            finding.raw = if self.unserved[row] == 0 {
                std::mem::take(&mut self.raws[row])
            } else {
                self.raws[row].clone()
            };
            items.push(finding);
        }
        items
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct RegistryCursor {
    url: String,
    skip: usize,
    trail: Trail,
}

#[derive(Debug, Serialize, Deserialize)]
struct ListCursor {
    path: String,
    trail: Trail,
}

#[derive(Debug, Serialize, Deserialize)]
struct FindingsCursor {
    dataset: DataSet,
    token: Option<String>,
    skip: usize,
    trail: Trail,
    /// Rows on the data set's pages before `token`'s.
    rows: u64,
    /// Rows skipped and problems met so far, over every data set: the listing ends with them.
    skipped: Skipped,
}

impl FindingsCursor {
    /// The first page of `dataset`, carrying what earlier data sets skipped.
    fn start(dataset: DataSet, skipped: Skipped) -> Self {
        Self {
            dataset,
            token: None,
            skip: 0,
            trail: Trail::new(),
            rows: 0,
            skipped,
        }
    }
}

/// The `next` cursor after an ACR page: the `Link` header's next page, or, when that link is
/// foreign or repeats, a deferred error, so the page in hand is kept and the listing still ends
/// incomplete.
fn follow_link(response: &Response, registry: &str, trail: Trail, what: &str) -> Option<String> {
    match acr::next_link(response, registry) {
        Ok(link) => {
            link.map(|link| trail.follow(link, what, |path, trail| ListCursor { path, trail }))
        }
        Err(error) => Some(defer(&error)),
    }
}

/// A deferred cursor carrying `error`'s message.
fn defer(error: &ConnectorError) -> String {
    pager::deferred(error.message().unwrap_or("the service asked to slow down"))
}

/// What the findings listing could not use, before any page.
fn no_skipped_rows() -> Skipped {
    Skipped::new("findings", "Resource Graph rows")
}

/// A session with Azure.
pub(crate) struct AcrSession {
    config: Config,
    client: Client,
    clock: fn() -> u64,
    clock_ms: fn() -> u64,
    arm_token: RefCell<Option<Token>>,
    refresh_tokens: RefCell<HashMap<String, Token>>,
    /// Shared: one token may carry the scopes of 50 repositories and is cached under each.
    access_tokens: RefCell<HashMap<(String, String), Rc<Token>>>,
    /// Registries that refused the app, so their other calls fail without a request.
    denied: RefCell<HashMap<String, ConnectorError>>,
    registry_pages: RefCell<HashMap<String, RegistryListPage>>,
    registries: RefCell<HashMap<String, RegistryInfo>>,
    registries_complete: Cell<bool>,
    /// Facts of listed images until they are described; one registry's at most.
    images: RefCell<FactsCache>,
    /// Repository names of the registries enumerated, to resolve rows' lossy names.
    repositories: RefCell<RepositoryIndex>,
    findings_slot: RefCell<Option<FindingsSlot>>,
    graph_quota: Cell<Option<GraphQuota>>,
}

impl AcrSession {
    pub(crate) fn new(config: Config, client: Client) -> Self {
        Self {
            config,
            client,
            clock: system_now,
            clock_ms: system_now_ms,
            arm_token: RefCell::default(),
            refresh_tokens: RefCell::default(),
            access_tokens: RefCell::default(),
            denied: RefCell::default(),
            registry_pages: RefCell::default(),
            registries: RefCell::default(),
            registries_complete: Cell::new(false),
            images: RefCell::default(),
            repositories: RefCell::default(),
            findings_slot: RefCell::default(),
            graph_quota: Cell::new(None),
        }
    }

    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    #[cfg(test)]
    pub(crate) fn with_clock_ms(mut self, clock_ms: fn() -> u64) -> Self {
        self.clock_ms = clock_ms;
        self
    }

    // ---- tokens -------------------------------------------------------------------------

    /// The Resource Manager token (sealed), and whether it was just fetched. It may go to
    /// Resource Manager and, for the token exchange, to the cloud's registries.
    fn arm_token(&self) -> Result<(Secret, bool), ConnectorError> {
        let now = (self.clock)();
        if let Some(token) = self.arm_token.borrow().as_ref()
            && token.is_fresh(now)
        {
            return Ok((token.value().clone(), false));
        }
        let registries = self.config.cloud.registry_hosts();
        let mut hosts = vec![self.config.resource_manager.as_str()];
        hosts.push(registries);
        let response = self
            .client
            .post(&self.config.token_url())
            .form(&auth::client_credentials_form(&self.config))
            .form_secret(config::key::CLIENT_SECRET, &self.config.client_secret)
            .capture("access_token", &hosts)
            .send()?;
        let token = auth::parse_entra_token(&response, &self.config, now)?;
        debug!("signed in to Entra ID as app `{}`", self.config.client_id);
        let value = token.value().clone();
        *self.arm_token.borrow_mut() = Some(token);
        Ok((value, true))
    }

    /// Sends a Resource Manager request built by `build` with the bearer token; a 401 for a
    /// cached token is retried once with a new one, never more.
    fn arm_send(
        &self,
        build: &dyn Fn(&Secret) -> RequestBuilder,
    ) -> Result<Response, ConnectorError> {
        let (token, fresh) = self.arm_token()?;
        let response = build(&token).send()?;
        if fresh || !arm::is_stale_token(&response) {
            return Ok(response);
        }
        debug!("Resource Manager refused the cached token; signing in again");
        *self.arm_token.borrow_mut() = None;
        let (token, _) = self.arm_token()?;
        build(&token).send()
    }

    /// The registry's refresh token (from `/oauth2/exchange`), and whether it was just fetched.
    fn refresh_token(&self, registry: &str) -> Result<(Secret, bool), ConnectorError> {
        let now = (self.clock)();
        if let Some(token) = self.refresh_tokens.borrow().get(registry)
            && token.is_fresh(now)
        {
            return Ok((token.value().clone(), false));
        }
        let url = format!("https://{registry}/oauth2/exchange");
        let tenant = is_guid(&self.config.tenant_id).then_some(self.config.tenant_id.as_str());
        let send = |arm_token: &Secret| {
            let mut form = vec![("grant_type", "access_token"), ("service", registry)];
            if let Some(tenant) = tenant {
                form.push(("tenant", tenant));
            }
            // The refresh token may go back to this registry only.
            self.client
                .post(&url)
                .form(&form)
                .form_secret("access_token", arm_token)
                .capture("refresh_token", &[])
                .send()
        };
        let (arm_token, fresh) = self.arm_token()?;
        let mut response = send(&arm_token)?;
        if response.status == 401 && !fresh {
            *self.arm_token.borrow_mut() = None;
            let (arm_token, _) = self.arm_token()?;
            response = send(&arm_token)?;
        }
        match response.status {
            401 | 403 => return Err(self.deny(registry, "token exchange".into(), response.status)),
            404 => {
                return Err(Error::RegistryNotFound {
                    registry: registry.to_owned(),
                    what: "token exchange endpoint".into(),
                }
                .into());
            }
            _ => {}
        }
        let response = response.error_for_status()?;
        let token = auth::parse_registry_token(&response, "refresh_token", now)?;
        let value = token.value().clone();
        self.refresh_tokens
            .borrow_mut()
            .insert(registry.to_owned(), token);
        Ok((value, true))
    }

    /// An access token for `scope` on the registry, and whether it was just fetched.
    fn access_token(&self, registry: &str, scope: &str) -> Result<(Secret, bool), ConnectorError> {
        let now = (self.clock)();
        let key = (registry.to_owned(), scope.to_owned());
        if let Some(token) = self.access_tokens.borrow().get(&key)
            && token.is_fresh(now)
        {
            return Ok((token.value().clone(), false));
        }
        let token = self.request_access_token(registry, &[scope])?;
        let value = token.value().clone();
        self.access_tokens.borrow_mut().insert(key, Rc::new(token));
        Ok((value, true))
    }

    /// `POST /oauth2/token` for one or more scopes (ACR grants several in one token).
    fn request_access_token(
        &self,
        registry: &str,
        scopes: &[&str],
    ) -> Result<Token, ConnectorError> {
        let now = (self.clock)();
        let url = format!("https://{registry}/oauth2/token");
        let send = |refresh: &Secret| {
            let mut form = vec![("grant_type", "refresh_token"), ("service", registry)];
            form.extend(scopes.iter().map(|s| ("scope", *s)));
            self.client
                .post(&url)
                .form(&form)
                .form_secret("refresh_token", refresh)
                .capture("access_token", &[])
                .send()
        };
        let (refresh, fresh) = self.refresh_token(registry)?;
        let mut response = send(&refresh)?;
        if response.status == 401 && !fresh {
            self.refresh_tokens.borrow_mut().remove(registry);
            let (refresh, _) = self.refresh_token(registry)?;
            response = send(&refresh)?;
        }
        if matches!(response.status, 401 | 403) {
            return Err(Error::RegistryDenied {
                registry: registry.to_owned(),
                step: format!("token for `{}`", scopes.join(" ")),
                status: response.status,
            }
            .into());
        }
        let response = response.error_for_status()?;
        auth::parse_registry_token(&response, "access_token", now)
    }

    /// Fetches the metadata tokens of a page of repositories [`SCOPES_PER_TOKEN`] at a time, so
    /// listing their images costs no token request each: on a Basic registry one token per
    /// repository would spend half the ReadOps budget on tokens. Best effort: on any failure the
    /// repositories fall back to a token each, and a token that turns out to lack a scope is
    /// replaced on the registry's challenge like an expired one.
    fn prefetch_metadata_tokens(&self, registry: &str, repositories: &[String]) {
        let now = (self.clock)();
        let missing: Vec<String> = {
            let cache = self.access_tokens.borrow();
            repositories
                .iter()
                .map(|r| acr::metadata_scope(r))
                .filter(|scope| {
                    !cache
                        .get(&(registry.to_owned(), scope.clone()))
                        .is_some_and(|t| t.is_fresh(now))
                })
                .collect()
        };
        for chunk in missing.chunks(SCOPES_PER_TOKEN) {
            if chunk.len() < 2 {
                return;
            }
            let scopes: Vec<&str> = chunk.iter().map(String::as_str).collect();
            match self.request_access_token(registry, &scopes) {
                Ok(token) => {
                    let token = Rc::new(token);
                    let mut cache = self.access_tokens.borrow_mut();
                    for scope in chunk {
                        cache.insert((registry.to_owned(), scope.clone()), Rc::clone(&token));
                    }
                }
                Err(err) => {
                    debug!("one token per repository on `{registry}`: {err}");
                    return;
                }
            }
        }
    }

    /// Records that `registry` refused the app; its later calls fail the same way at no cost.
    fn deny(&self, registry: &str, step: String, status: u16) -> ConnectorError {
        let error: ConnectorError = Error::RegistryDenied {
            registry: registry.to_owned(),
            step,
            status,
        }
        .into();
        warn!("registry `{registry}` is not covered: it refused the app");
        self.denied
            .borrow_mut()
            .insert(registry.to_owned(), error.clone());
        error
    }

    /// Enumeration of `registry` begins (or goes on): what the session holds for other
    /// registries' enumeration is dropped, so it holds one registry's images and tokens at a
    /// time. Their refresh tokens (one per registry) stay, should the host come back.
    fn start_registry(&self, registry: &str) {
        let dropped = self.images.borrow_mut().start_registry(registry);
        if dropped > 0 {
            debug!("dropped the facts of {dropped} images not described before `{registry}`");
        }
        self.access_tokens
            .borrow_mut()
            .retain(|(owner, _), _| owner == registry);
    }

    /// `GET https://<registry><path>` with an access token for `scope`. A 401 is retried once:
    /// with a new token when the cached one may have expired, or with the scope the registry's
    /// challenge asks for. A refusal of a registry-wide scope marks the registry as denied.
    fn registry_get(
        &self,
        registry: &str,
        path: &str,
        scope: &str,
    ) -> Result<Response, ConnectorError> {
        if let Some(error) = self.denied.borrow().get(registry) {
            return Err(error.clone());
        }
        let url = format!("https://{registry}{path}");
        let get = |token: &Secret| {
            self.client
                .get(&url)
                .bearer(token)
                .header("Accept", "application/json")
                .send()
        };
        let (token, fresh) = self.access_token(registry, scope)?;
        let mut response = get(&token)?;
        if response.status == 401 {
            let challenged = response
                .header("www-authenticate")
                .and_then(auth::parse_challenge)
                .and_then(|c| c.scope)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| scope.to_owned());
            if !fresh || challenged != scope {
                self.access_tokens
                    .borrow_mut()
                    .remove(&(registry.to_owned(), scope.to_owned()));
                let (token, _) = self.access_token(registry, &challenged)?;
                response = get(&token)?;
            }
        }
        match response.status {
            401 | 403 if scope == CATALOG_SCOPE => {
                Err(self.deny(registry, "catalog listing".into(), response.status))
            }
            401 | 403 => Err(Error::RegistryDenied {
                registry: registry.to_owned(),
                step: format!("listing with `{scope}`"),
                status: response.status,
            }
            .into()),
            404 => Err(Error::RegistryNotFound {
                registry: registry.to_owned(),
                what: keelson_plugin_sdk::http::display_url(path),
            }
            .into()),
            _ => response.error_for_status(),
        }
    }

    /// A Resource Graph query, paced by the quota the last answers reported: with none left
    /// in the window, the host is asked to wait until it resets (`throttled`, no request sent)
    /// rather than spending a request on a 429. The host has no sleep to offer a guest; its
    /// retry waits out `throttled` and asks for the same page again.
    fn graph_post(&self, body: &defender::QueryBody<'_>) -> Result<Response, ConnectorError> {
        let sent_ms = (self.clock_ms)();
        if let Some(wait) = self.graph_quota.get().and_then(|q| q.wait_ms(sent_ms)) {
            debug!("Resource Graph quota used up until its window resets; waiting {wait} ms");
            return Err(ConnectorError::Throttled(
                u32::try_from(wait).unwrap_or(u32::MAX),
            ));
        }
        let url = defender::graph_url(&self.config);
        let response = self.arm_send(&|t| self.client.post(&url).bearer(t).json(body))?;
        // A 429 brings its own wait; only answers served count as the window's.
        let quota = defender::graph_quota(&response)
            .filter(|_| response.is_success())
            .map(|said| {
                GraphQuota::after(self.graph_quota.get(), said, sent_ms, (self.clock_ms)())
            });
        self.graph_quota.set(quota);
        Ok(response)
    }

    // ---- registries -----------------------------------------------------------------------

    /// One page of the ARM registry list, fetched once per session.
    fn registry_page(&self, url: &str) -> Result<RegistryListPage, ConnectorError> {
        if let Some(page) = self.registry_pages.borrow().get(url) {
            return Ok(page.clone());
        }
        let response = self.arm_send(&|token| self.client.get(url).bearer(token))?;
        if !response.is_success() {
            return Err(arm::arm_error(&response, &self.config, "registry list"));
        }
        let page = arm::parse_registry_page(&response)?;
        {
            let mut registries = self.registries.borrow_mut();
            for info in &page.registries {
                registries.insert(info.registry.name.clone(), info.clone());
            }
        }
        self.registry_pages
            .borrow_mut()
            .insert(url.to_owned(), page.clone());
        Ok(page)
    }

    /// Walks the whole registry list (from the cache where the host already paged it).
    fn ensure_all_registries(&self) -> Result<(), ConnectorError> {
        if self.registries_complete.get() {
            return Ok(());
        }
        let mut url = arm::registries_url(&self.config);
        let mut trail = Trail::new();
        trail.visit(&url, "the registry list")?;
        loop {
            let page = self.registry_page(&url)?;
            match page.next_link {
                Some(link) => {
                    arm::check_next_link(&self.config, &link)?;
                    trail.visit(&link, "the registry list")?;
                    url = link;
                }
                None => break,
            }
        }
        self.registries_complete.set(true);
        Ok(())
    }

    /// The login server of the registry with resource id `id` (lowercase).
    fn login_server_for(&self, id: &str) -> Result<Option<String>, ConnectorError> {
        let find = || {
            self.registries
                .borrow()
                .values()
                .find(|r| r.registry.source_id.eq_ignore_ascii_case(id))
                .map(|r| r.registry.name.clone())
        };
        if let Some(found) = find() {
            return Ok(Some(found));
        }
        self.ensure_all_registries()?;
        Ok(find())
    }

    // ---- findings -----------------------------------------------------------------------

    /// Where a finding's image is, resolved; `None` when the row cannot say.
    fn resolve(&self, location: &ImageLocation) -> Result<Option<ImageRef>, ConnectorError> {
        let Some(digest) = location.digest.as_deref().map(defender::normalize_digest) else {
            return Ok(None);
        };
        let registry = match (&location.registry_host, &location.registry_id) {
            (Some(host), _) => host.to_ascii_lowercase(),
            (None, Some(id)) => {
                if let Some(server) = self.login_server_for(id)? {
                    server
                } else {
                    // A registry deleted since Defender scanned it: name it as its cloud would.
                    let name = id.rsplit('/').next().unwrap_or_default();
                    format!("{name}{}", self.config.cloud.registry_suffix())
                }
            }
            (None, None) => return Ok(None),
        };
        // A lossy name (`/` written as `-`) is looked up in the registry's catalog, not in the
        // images: those are not kept once described. A name without `-` can only be itself.
        let repository = match (&location.repository, &location.repository_hint) {
            (Some(repository), _) => Some(repository.clone()),
            (None, Some(hint)) => {
                if hint.contains('-') {
                    self.ensure_catalog(&registry);
                }
                Some(self.repositories.borrow().resolve(&registry, hint, &digest))
            }
            (None, None) => None,
        };
        Ok(repository.map(|repository| ImageRef {
            registry,
            repository,
            digest,
        }))
    }

    /// Reads `registry`'s catalog into the repository index once per session, for a session
    /// that lists findings without having enumerated the registry. Enumeration state is left
    /// alone (no [`Self::start_registry`], no metadata tokens). A catalog that cannot be read
    /// does not fail the findings: the registry is recorded with what was read (maybe nothing),
    /// so it is not asked again, and its lossy names stay as the rows write them.
    fn ensure_catalog(&self, registry: &str) {
        if self.repositories.borrow().knows(registry) {
            return;
        }
        // Scrubbed: the message goes to the log, not through the host's error path.
        if let Err(err) = self.read_catalog(registry) {
            warn!(
                "the catalog of `{registry}` could not be read; its findings keep repository \
                 names as Defender writes them: {err}"
            );
        }
        self.repositories
            .borrow_mut()
            .add(registry, std::iter::empty());
    }

    /// Every page of `registry`'s catalog, added to the repository index page by page.
    fn read_catalog(&self, registry: &str) -> Result<(), ConnectorError> {
        let registry = acr::check_login_server(registry)?;
        let what = format!("the catalog of `{registry}`");
        let mut path = acr::catalog_path(acr::MAX_PAGE);
        let mut trail = Trail::new();
        trail.visit(&path, &what)?;
        loop {
            let response = self.registry_get(&registry, &path, CATALOG_SCOPE)?;
            let items = acr::parse_catalog(&response, &registry)?;
            self.repositories
                .borrow_mut()
                .add(&registry, items.iter().map(|r| r.name.as_str()));
            match acr::next_link(&response, &registry)? {
                Some(link) => {
                    trail.visit(&link, &what)?;
                    path = link;
                }
                None => return Ok(()),
            }
        }
    }

    /// Reads one Resource Graph page into the slot, unless the slot can serve `range` (start,
    /// count) of it already. `false` when the data set was skipped (see
    /// [`Self::list_findings`]).
    fn load_findings_page(
        &self,
        dataset: DataSet,
        (token, rows_before): (Option<&str>, u64),
        top: u32,
        wanted: &BTreeSet<String>,
        range: (usize, usize),
    ) -> Result<bool, ConnectorError> {
        if let Some(slot) = self.findings_slot.borrow().as_ref()
            && slot.serves(dataset, token, top, wanted, range)
        {
            return Ok(true);
        }
        // The page held is done with (or of no use): free it before the next one arrives.
        *self.findings_slot.borrow_mut() = None;
        let body = defender::query_body(&self.config.subscription_id, dataset.query(), top, token);
        let response = self.graph_post(&body)?;
        if !response.is_success() {
            // Sub-assessments were retired on 2026-07-31. Under `auto`, a legacy data set whose
            // first page is refused as an invalid query is treated as gone (no data); the
            // current data set, an explicit choice, or a later page failing is an error, since
            // a short result would resolve findings.
            if self.config.findings_source == FindingsSource::Auto
                && dataset.is_legacy()
                && token.is_none()
                && defender::is_invalid_query(&response)
            {
                warn!(
                    "Resource Graph refused the legacy `{}` query; treating that data set as retired",
                    dataset.name()
                );
                return Ok(false);
            }
            return Err(defender::graph_error(&response, &self.config, dataset));
        }
        let page = defender::parse_graph_page(&response, dataset)?;
        drop(response);
        let check = page.check_counts(dataset, rows_before);
        let mut slot = FindingsSlot {
            dataset,
            token: token.map(str::to_owned),
            top,
            wanted: wanted.clone(),
            raws: Vec::new(),
            unserved: Vec::new(),
            findings: Vec::new(),
            skip_token: page.skip_token,
            rows: page.rows.len() as u64,
            skipped: no_skipped_rows(),
            check,
        };
        for row in page.rows {
            let parsed = match defender::parse_row(dataset, &row) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => continue,
                Err(unusable) => {
                    slot.skipped.record(unusable.reason, &unusable.example);
                    continue;
                }
            };
            if let Some(reason) = parsed.location.missing() {
                slot.skipped.record(reason, &parsed.id);
                continue;
            }
            let Some(image) = self.resolve(&parsed.location)? else {
                slot.skipped.record("named no image", &parsed.id);
                continue;
            };
            self.images.borrow_mut().fill_known(&image, &parsed.facts);
            if !(wanted.is_empty() || wanted.contains(&image.registry))
                || parsed.findings.is_empty()
            {
                continue;
            }
            // The whole row as sent, held once for all its findings (the WIT's `raw`: the
            // source row, for audit); the host stores equal consecutive rows once.
            let index = slot.raws.len() as u32;
            slot.raws.push(row.into_string());
            slot.unserved.push(parsed.findings.len() as u32);
            let mut findings = parsed.findings;
            if let Some((last, rest)) = findings.split_last_mut() {
                for finding in rest {
                    finding.image.clone_from(&image);
                }
                last.image = image;
            }
            slot.findings
                .extend(findings.into_iter().map(|f| (index, Some(f))));
        }
        *self.findings_slot.borrow_mut() = Some(slot);
        Ok(true)
    }

    /// The cursor after the last page of `dataset`: the next data set's first page, or the
    /// end of the listing (a deferred error when rows were skipped).
    fn after_dataset(&self, dataset: DataSet, skipped: Skipped) -> Option<String> {
        let order = DataSet::for_source(self.config.findings_source);
        let at = order.iter().position(|d| *d == dataset)?;
        match order.get(at + 1) {
            Some(next) => Some(Cursor::encode(&FindingsCursor::start(*next, skipped))),
            None => skipped.finish(),
        }
    }

    fn verify_inner(&self) -> Result<Account, ConnectorError> {
        let url = arm::subscription_url(&self.config);
        let response = self.arm_send(&|token| self.client.get(&url).bearer(token))?;
        if !response.is_success() {
            return Err(arm::arm_error(
                &response,
                &self.config,
                &format!("subscription `{}`", self.config.subscription_id),
            ));
        }
        let subscription = arm::parse_subscription(&response)?;

        let first = self.registry_page(&arm::registries_url(&self.config))?;
        let registries = if first.next_link.is_some() {
            format!("{} on the first page, more follow", first.registries.len())
        } else {
            first.registries.len().to_string()
        };

        let body = defender::query_body(
            &self.config.subscription_id,
            defender::INDIVIDUAL_QUERY,
            1,
            None,
        );
        let response = self.graph_post(&body)?;
        if !response.is_success() {
            return Err(defender::graph_error(
                &response,
                &self.config,
                DataSet::Individual,
            ));
        }
        defender::parse_graph_page(&response, DataSet::Individual)?;

        let detail = |key: &str, value: String| Setting {
            key: key.to_owned(),
            value,
        };
        let mut details = vec![
            detail("cloud", self.config.cloud.name().to_owned()),
            detail("registries", registries),
            detail("resource_graph", "readable".to_owned()),
            detail(
                "findings_source",
                self.config.findings_source.name().to_owned(),
            ),
        ];
        if let Some(state) = subscription.state {
            details.insert(0, detail("subscription_state", state));
        }
        Ok(Account {
            id: self.config.subscription_id.clone(),
            display_name: subscription
                .display_name
                .unwrap_or_else(|| self.config.subscription_id.clone()),
            details,
        })
    }

    fn list_registries_inner(&self, page: &PageRequest) -> Result<RegistryPage, ConnectorError> {
        let (url, skip, trail) = if let Some(cursor) = page.state::<RegistryCursor>()? {
            (cursor.url, cursor.skip, cursor.trail)
        } else {
            let url = arm::registries_url(&self.config);
            let mut trail = Trail::new();
            trail.visit(&url, "the registry list")?;
            (url, 0, trail)
        };
        let arm_page = self.registry_page(&url)?;
        let total = arm_page.registries.len();
        let start = skip.min(total);
        let end = (start + page.max_items.max(1) as usize).min(total);
        let items = arm_page.registries[start..end]
            .iter()
            .map(|info| info.registry.clone())
            .collect();
        let next = if end < total {
            Some(Cursor::encode(&RegistryCursor {
                url,
                skip: end,
                trail,
            }))
        } else {
            // A foreign or repeating link ends the listing incomplete; the page in hand is kept.
            arm_page
                .next_link
                .map(|link| match arm::check_next_link(&self.config, &link) {
                    Ok(()) => {
                        trail.follow(link, "the registry list", |url, trail| RegistryCursor {
                            url,
                            skip: 0,
                            trail,
                        })
                    }
                    Err(error) => defer(&error),
                })
        };
        Ok(RegistryPage::new(items, next))
    }

    fn list_repositories_inner(
        &self,
        registry: &str,
        page: &PageRequest,
    ) -> Result<RepositoryPage, ConnectorError> {
        let registry = acr::check_login_server(registry)?;
        let n = page.limit(acr::MAX_PAGE);
        let what = format!("the catalog of `{registry}`");
        let (path, trail) = if let Some(cursor) = page.state::<ListCursor>()? {
            (acr::with_page_size(&cursor.path, n), cursor.trail)
        } else {
            let path = acr::catalog_path(n);
            let mut trail = Trail::new();
            trail.visit(&path, &what)?;
            (path, trail)
        };
        self.start_registry(&registry);
        let response = self.registry_get(&registry, &path, CATALOG_SCOPE)?;
        let items = acr::parse_catalog(&response, &registry)?;
        let names: Vec<String> = items.iter().map(|r| r.name.clone()).collect();
        self.repositories
            .borrow_mut()
            .add(&registry, names.iter().map(String::as_str));
        self.prefetch_metadata_tokens(&registry, &names);
        let next = follow_link(&response, &registry, trail, &what);
        Ok(RepositoryPage::new(items, next))
    }

    fn list_images_inner(
        &self,
        registry: &str,
        repository: &str,
        page: &PageRequest,
    ) -> Result<ImagePage, ConnectorError> {
        let registry = acr::check_login_server(registry)?;
        acr::check_repository(repository)?;
        let n = page.limit(acr::MAX_PAGE);
        let what = format!("the manifests of `{registry}/{repository}`");
        let (path, trail) = if let Some(cursor) = page.state::<ListCursor>()? {
            (acr::with_page_size(&cursor.path, n), cursor.trail)
        } else {
            let path = acr::manifests_path(repository, n);
            let mut trail = Trail::new();
            trail.visit(&path, &what)?;
            (path, trail)
        };
        let response = self.registry_get(&registry, &path, &acr::metadata_scope(repository))?;
        let items = acr::parse_manifests(&response, &registry, repository)?;
        {
            let mut facts = self.images.borrow_mut();
            let mut index = self.repositories.borrow_mut();
            for image in &items {
                facts.remember(
                    &image.image_ref,
                    &ImageFacts {
                        tags: image.tags.clone(),
                        last_pushed_at: None,
                        created_at: image.created_at.clone(),
                        updated_at: image.updated_at.clone(),
                    },
                );
                index.note_image(&image.image_ref);
            }
        }
        let next = follow_link(&response, &registry, trail, &what);
        Ok(ImagePage::new(items, next))
    }

    fn list_findings_inner(
        &self,
        scope: &ScanScope,
        page: &PageRequest,
    ) -> Result<FindingPage, ConnectorError> {
        let order = DataSet::for_source(self.config.findings_source);
        let mut cursor = page
            .state::<FindingsCursor>()?
            .unwrap_or_else(|| FindingsCursor::start(order[0], no_skipped_rows()));
        if !order.contains(&cursor.dataset) {
            return Err(ConnectorError::Other(format!(
                "the cursor reads data set `{}`, which `findings_source` `{}` does not include; \
                 start the listing again",
                cursor.dataset.name(),
                self.config.findings_source.name()
            )));
        }
        let wanted: BTreeSet<String> = scope
            .registries
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .collect();
        let top = page.limit(defender::MAX_ROWS);
        let max = page.max_items.max(1) as usize;

        if !self.load_findings_page(
            cursor.dataset,
            (cursor.token.as_deref(), cursor.rows),
            top,
            &wanted,
            (cursor.skip, max),
        )? {
            return Ok(FindingPage::new(
                Vec::new(),
                self.after_dataset(cursor.dataset, cursor.skipped),
            ));
        }
        let (items, more, page_end) = {
            let mut held = self.findings_slot.borrow_mut();
            let Some(slot) = held.as_mut() else {
                return Err(ConnectorError::Other(
                    "the Resource Graph page read is gone".into(),
                ));
            };
            if cursor.skip == 0 {
                // The page's first serving: what it could not use joins the listing's count
                // (later servings of the page carry it in their cursor already).
                cursor.skipped.merge(&slot.skipped);
                for (problem, detail) in &slot.check.problems {
                    cursor.skipped.problem(problem, detail);
                }
            }
            let (start, end) = slot.range(cursor.skip, max);
            let items = slot.serve(start, end);
            cursor.skip = end;
            let more = end < slot.findings.len();
            let page_end = if more {
                None
            } else {
                // Served to the end: nothing of it is needed any more.
                held.take()
                    .map(|slot| (slot.skip_token, slot.rows, slot.check.stop))
            };
            (items, more, page_end)
        };

        let next = match page_end {
            _ if more => Some(Cursor::encode(&cursor)),
            // More rows than promised: the listing stops, with what it read.
            Some((_, _, true)) => cursor.skipped.finish(),
            Some((Some(token), rows, false)) => {
                let what = format!("Resource Graph (`{}`)", cursor.dataset.name());
                if cursor.trail.contains(&token) {
                    cursor.skipped.problem(
                        "Resource Graph paged in a loop",
                        &format!("{what}: a `$skipToken` came back a second time"),
                    );
                    cursor.skipped.finish()
                } else {
                    cursor.trail.visit(&token, &what)?;
                    Some(Cursor::encode(&FindingsCursor {
                        dataset: cursor.dataset,
                        token: Some(token),
                        skip: 0,
                        trail: cursor.trail,
                        rows: cursor.rows + rows,
                        skipped: cursor.skipped,
                    }))
                }
            }
            _ => self.after_dataset(cursor.dataset, cursor.skipped),
        };
        Ok(FindingPage::new(items, next))
    }

    fn describe_images_inner(
        &self,
        images: &[ImageRef],
    ) -> Result<Vec<ImageContext>, ConnectorError> {
        let unknown_registry = images.iter().any(|i| {
            !self
                .registries
                .borrow()
                .contains_key(&i.registry.to_ascii_lowercase())
        });
        if unknown_registry {
            self.ensure_all_registries()?;
        }
        let registries = self.registries.borrow();
        let mut facts = self.images.borrow_mut();
        let mut contexts = Vec::new();
        for image in images {
            let key = ImageRef {
                registry: image.registry.to_ascii_lowercase(),
                repository: image.repository.clone(),
                digest: image.digest.to_ascii_lowercase(),
            };
            let info = registries.get(&key.registry);
            // Taken out: the host describes each image once, right after its registry's listing.
            let known = facts.take(&key);
            if info.is_none() && known.is_none() {
                continue;
            }
            let known = known.unwrap_or_default();
            let mut attributes = Vec::new();
            let mut attribute = |key: &str, value: Option<String>| {
                if let Some(value) = value {
                    attributes.push(Setting {
                        key: key.to_owned(),
                        value,
                    });
                }
            };
            attribute(
                "network_default_action",
                info.and_then(|i| i.network_default_action.clone()),
            );
            attribute("created_at", known.created_at.clone());
            attribute("last_updated_at", known.updated_at.clone());
            contexts.push(ImageContext {
                image: image.clone(),
                tags: known.tags,
                last_pushed_at: known.last_pushed_at.or(known.created_at),
                last_pulled_at: None,
                // Defender's running-image data is not among the queries this connector sends.
                running: None,
                registry_public_network_access: info.and_then(|i| i.registry.public_network_access),
                attributes,
            });
        }
        Ok(contexts)
    }
}

impl Session for AcrSession {
    fn verify(&self) -> Result<Account, ConnectorError> {
        self.verify_inner()
    }

    fn list_registries(&self, page: PageRequest) -> Result<RegistryPage, ConnectorError> {
        self.list_registries_inner(&page)
    }

    fn list_repositories(
        &self,
        registry: &str,
        page: PageRequest,
    ) -> Result<RepositoryPage, ConnectorError> {
        self.list_repositories_inner(registry, &page)
    }

    fn list_images(
        &self,
        registry: &str,
        repository: &str,
        page: PageRequest,
    ) -> Result<ImagePage, ConnectorError> {
        self.list_images_inner(registry, repository, &page)
    }

    fn list_findings(
        &self,
        scope: &ScanScope,
        page: PageRequest,
    ) -> Result<FindingPage, ConnectorError> {
        self.list_findings_inner(scope, &page)
    }

    fn describe_images(&self, images: &[ImageRef]) -> Result<Vec<ImageContext>, ConnectorError> {
        self.describe_images_inner(images)
    }
}

#[cfg(test)]
mod tests;
