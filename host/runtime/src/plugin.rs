//! A loaded [`Plugin`] and its [`Connection`]s: one fresh, fully limited `Store` per connection,
//! every export call bounded in time, every failure classified into an [`Error`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keelson_config::{PluginId, PluginSpec};
use keelson_core::{
    Account, ConnectorInfo, Finding, Image, ImageContext, ImageRef, KeyValue, Page, Registry,
    Repository, ScanScope,
};
use tokio::time::Instant;
use tracing::Instrument as _;
use wasmtime::component::{ResourceAny, ResourceTableError};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::{types as wit, v0_1, v0_2};
use crate::convert::{self, Caps, Invalid, v0_2 as lift};
use crate::engine::Runtime;
use crate::error::{CallSite, Error, Result};
use crate::host::{HostState, LimitHit, StoreCaps};
use crate::output::{sanitize, tail};
use crate::sealed::SealedSecret;
pub use keelson_connector::PageRequest;

/// Runs one export call on an [`Instance`] under its deadline and span, then classifies the
/// result. Written as a macro so the bindings and the store can be borrowed side by side.
macro_rules! call {
    ($inst:ident, $op:literal, |$b:ident, $s:ident| $call:expr) => {{
        match $inst.begin($op) {
            Err(e) => Err(e),
            Ok((deadline, span)) => {
                let ($b, $s) = (&$inst.bindings, &mut $inst.store);
                let result = tokio::time::timeout_at(deadline, $call)
                    .instrument(span)
                    .await;
                $inst.finish($op, result)
            }
        }
    }};
}

/// What the stderr tail attached to a trap may hold, in bytes.
const STDERR_TAIL: usize = 2048;
/// Lines of captured stdout/stderr forwarded to the log per call; the rest are counted.
const OUTPUT_LINES_PER_CALL: usize = 200;

/// What `load` learnt about the component before linking it.
pub(crate) struct PluginMeta {
    pub(crate) spec: PluginSpec,
    pub(crate) sha256: String,
    pub(crate) wit_version: String,
    pub(crate) imports: Vec<String>,
    pub(crate) exports: Vec<String>,
}

/// A component linked against the bindings of the contract version it was built for.
pub(crate) enum Pre {
    V0_1(v0_1::RegistryConnectorPre<HostState>),
    V0_2(v0_2::RegistryConnectorPre<HostState>),
}

impl Pre {
    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Self::V0_1(pre) => Bindings::V0_1(pre.instantiate_async(store).await?),
            Self::V0_2(pre) => Bindings::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance's exports, by contract version.
enum Bindings {
    V0_1(v0_1::RegistryConnector),
    V0_2(v0_2::RegistryConnector),
}

/// A page as the guest returned it, its items already in 0.1.0's types.
struct RawPage<T> {
    items: Vec<T>,
    next: Option<String>,
    gaps: Vec<v0_2::types::Gap>,
}

impl<T> RawPage<T> {
    fn v0_1(items: Vec<T>, next: Option<String>) -> Self {
        Self {
            items,
            next,
            gaps: Vec::new(),
        }
    }
}

/// A loaded, linked plugin. Cheap to clone. Every [`connect`](Self::connect) gets a fresh
/// instance; nothing is shared between connections but the compiled code.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    runtime: Runtime,
    meta: PluginMeta,
    pre: Pre,
    info: ConnectorInfo,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id().as_str())
            .field("version", &self.inner.info.version)
            .field("wit_version", &self.inner.meta.wit_version)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Wraps a linked component and asks it to describe itself, in a throw-away instance.
    pub(crate) async fn new(runtime: Runtime, meta: PluginMeta, pre: Pre) -> Result<Self> {
        let info = describe(&runtime, &meta, &pre, "?").await?;
        Ok(Self {
            inner: Arc::new(PluginInner {
                runtime,
                meta,
                pre,
                info,
            }),
        })
    }

    pub fn id(&self) -> &PluginId {
        &self.inner.meta.spec.id
    }

    pub fn spec(&self) -> &PluginSpec {
        &self.inner.meta.spec
    }

    pub fn path(&self) -> &Path {
        &self.inner.meta.spec.path
    }

    /// Lowercase hex SHA-256 of the component file as loaded.
    pub fn sha256(&self) -> &str {
        &self.inner.meta.sha256
    }

    /// The `keelson:registry` version the component was built against (`0.1.0`).
    pub fn wit_version(&self) -> &str {
        &self.inner.meta.wit_version
    }

    /// Whether the component receives its secrets sealed (contract 0.2.0 and later) rather than
    /// as plaintext settings (0.1.0).
    pub fn seals_secrets(&self) -> bool {
        matches!(self.inner.pre, Pre::V0_2(_))
    }

    /// Names of everything the component imports (`keelson:registry/host-http@0.1.0`, WASI…).
    pub fn imports(&self) -> &[String] {
        &self.inner.meta.imports
    }

    /// Names of everything the component exports (`keelson:registry/auth@0.1.0`, …).
    pub fn exports(&self) -> &[String] {
        &self.inner.meta.exports
    }

    /// What the connector said about itself when it was loaded.
    pub fn describe(&self) -> &ConnectorInfo {
        &self.inner.info
    }

    /// Instantiates the plugin afresh and calls `describe` again. Mostly useful to measure the
    /// cost of an instance.
    pub async fn describe_fresh(&self) -> Result<ConnectorInfo> {
        let i = &self.inner;
        describe(&i.runtime, &i.meta, &i.pre, &i.info.version).await
    }

    /// Opens a connection: a fresh instance with its own limits and egress budget, then the
    /// guest's `connect`. `secrets` are the secret settings' values and where each may be sent:
    /// a 0.2.0 component gets them as sealed handles (a value in `settings` under a secret's key
    /// is dropped), a 0.1.0 component as plaintext settings (which `settings` must carry).
    pub async fn connect(
        &self,
        connection: &str,
        settings: Vec<KeyValue>,
        secrets: Vec<keelson_http::BoundSecret>,
    ) -> Result<Connection> {
        let i = &self.inner;
        let spec = &i.meta.spec;
        let grant = keelson_http::Grant {
            plugin: spec.id.to_string(),
            connection: Some(connection.to_owned()),
            allowed_hosts: spec.allowed_hosts.clone(),
            max_response_bytes: spec.limits.max_response_bytes,
            max_concurrent_requests: spec.limits.max_concurrent_requests,
            max_requests: spec.limits.max_requests,
            secrets,
            confine_wildcards: true,
        };
        let secrets = grant.secrets.clone();
        let egress = i.runtime.inner.egress.session(grant);
        let mut instance = Instance::new(
            &i.runtime,
            &i.meta,
            &i.pre,
            connection,
            &i.info.version,
            Some(egress),
        )
        .await?;
        let settings: Vec<wit::Setting> = settings
            .into_iter()
            .map(|kv| wit::Setting {
                key: kv.key,
                value: kv.value,
            })
            .collect();
        // A 0.2.0 guest gets each secret as a sealed handle, and no value under its key.
        let mut sealed = Vec::new();
        let mut plain = settings;
        if matches!(instance.bindings, Bindings::V0_2(_)) {
            plain.retain(|kv| !secrets.iter().any(|s| s.name == kv.key));
            for secret in secrets {
                let value = instance
                    .store
                    .data_mut()
                    .seal(SealedSecret {
                        name: secret.name.clone(),
                        value: secret.value,
                        hosts: secret.allowed_hosts,
                        expires_at: None,
                        captured: false,
                    })
                    .map_err(|e| Error::Engine(format!("cannot seal a secret: {e}")))?;
                sealed.push(v0_2::secrets::SecretSetting {
                    key: secret.name,
                    value,
                });
            }
        }
        let raw = call!(instance, "connect", |b, s| async {
            match b {
                Bindings::V0_1(b) => b.keelson_registry_auth().call_connect(s, &plain).await,
                Bindings::V0_2(b) => {
                    let plain: Vec<v0_2::types::Setting> = plain
                        .iter()
                        .map(|kv| v0_2::types::Setting {
                            key: kv.key.clone(),
                            value: kv.value.clone(),
                        })
                        .collect();
                    let r = b
                        .keelson_registry_auth()
                        .call_connect(s, &plain, &sealed)
                        .await?;
                    Ok(r.map_err(lift::error))
                }
            }
        })?;
        let session = instance.outcome("connect", raw, Ok)?;
        Ok(Connection {
            plugin: self.clone(),
            instance,
            session,
        })
    }
}

async fn describe(
    runtime: &Runtime,
    meta: &PluginMeta,
    pre: &Pre,
    version: &str,
) -> Result<ConnectorInfo> {
    let mut instance = Instance::new(runtime, meta, pre, "-", version, None).await?;
    let caps = instance.caps;
    let info = call!(instance, "describe", |b, s| async {
        Ok(match b {
            Bindings::V0_1(b) => caps.info(b.keelson_registry_auth().call_describe(s).await?),
            Bindings::V0_2(b) => {
                lift::info(&caps, b.keelson_registry_auth().call_describe(s).await?)
            }
        })
    })?;
    instance.outcome("describe", Ok(info), |i| i)
}

/// One store and the instance in it.
struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    plugin: Arc<str>,
    connection: Arc<str>,
    version: String,
    caps: Caps,
    limits: CallLimits,
    /// Why the instance may not be entered again.
    retired: Option<String>,
    /// Set while a call runs; still set at the next call means the previous one was cancelled.
    in_call: bool,
    stdout_seen: usize,
    stderr_seen: usize,
    output_capped: [bool; 2],
}

impl Instance {
    async fn new(
        runtime: &Runtime,
        meta: &PluginMeta,
        pre: &Pre,
        connection: &str,
        version: &str,
        egress: Option<keelson_http::EgressSession>,
    ) -> Result<Self> {
        let settings = &runtime.inner.settings;
        let spec = &meta.spec;
        let caps = StoreCaps {
            memory_bytes: spec.limits.memory_bytes,
            table_elements: settings.max_table_elements,
            instances: settings.max_instances,
            wasi_resources: settings.max_wasi_resources,
            output_bytes: settings.max_output_bytes,
            log_line_bytes: settings.max_log_line_bytes,
            log_lines_per_call: settings.max_log_lines_per_call,
        };
        let plugin: Arc<str> = spec.id.as_str().into();
        let connection: Arc<str> = connection.into();
        let mut store = Store::new(
            &runtime.inner.engine,
            HostState::new(caps, plugin.clone(), connection.clone(), egress),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(settings.max_lifted_bytes);
        store.set_max_component_handles(settings.max_component_handles);
        // Every tick past the deadline set before each call lands here: stop the guest once the
        // call's time is up, otherwise yield so the wall-clock timeout and other tasks get a turn.
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let timeout = spec.limits.call_timeout;
        let limits = CallLimits {
            timeout,
            max_wasm_stack: settings.max_wasm_stack,
            max_lifted_bytes: settings.max_lifted_bytes,
        };
        let deadline = Instant::now() + timeout;
        store.data_mut().deadline = deadline;
        let site = CallSite {
            plugin: plugin.to_string(),
            version: version.to_owned(),
            operation: "instantiate",
        };
        let instantiated = tokio::time::timeout_at(deadline, pre.instantiate(&mut store)).await;
        let bindings = match instantiated {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let data = store.data();
                let stderr = tail(
                    &data
                        .redact
                        .apply(&String::from_utf8_lossy(&data.stderr.contents())),
                    STDERR_TAIL,
                );
                return Err(classify(site, &e, stderr, &limits));
            }
            Err(_) => {
                return Err(Error::Timeout {
                    site,
                    limit: timeout,
                });
            }
        };
        Ok(Self {
            store,
            bindings,
            plugin,
            connection,
            version: version.to_owned(),
            caps: settings.caps,
            limits,
            retired: None,
            in_call: false,
            stdout_seen: 0,
            stderr_seen: 0,
            output_capped: [false; 2],
        })
    }

    fn site(&self, operation: &'static str) -> CallSite {
        CallSite {
            plugin: self.plugin.to_string(),
            version: self.version.clone(),
            operation,
        }
    }

    /// Checks the instance may be entered and arms the call's deadline.
    fn begin(&mut self, op: &'static str) -> Result<(Instant, tracing::Span)> {
        if self.in_call && self.retired.is_none() {
            self.retired = Some("an earlier call was cancelled before it finished".to_owned());
        }
        if let Some(reason) = &self.retired {
            return Err(Error::Retired {
                plugin: self.plugin.to_string(),
                connection: self.connection.to_string(),
                reason: reason.clone(),
            });
        }
        self.in_call = true;
        let deadline = Instant::now() + self.limits.timeout;
        let data = self.store.data_mut();
        data.deadline = deadline;
        data.log_lines = 0;
        self.store.set_epoch_deadline(1);
        let span = tracing::info_span!(
            "plugin.call",
            plugin = &*self.plugin,
            connection = &*self.connection,
            operation = op
        );
        Ok((deadline, span))
    }

    /// Classifies how the call ended; a trap or timeout retires the instance.
    fn finish<T>(
        &mut self,
        op: &'static str,
        result: std::result::Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        self.in_call = false;
        self.forward_output();
        let dropped = std::mem::take(&mut self.store.data_mut().log_dropped);
        if dropped > 0 {
            tracing::warn!(
                plugin = &*self.plugin,
                connection = &*self.connection,
                operation = op,
                dropped,
                "plugin log lines over the per-call cap were dropped"
            );
        }
        let err = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                let data = self.store.data();
                let stderr = tail(
                    &data
                        .redact
                        .apply(&String::from_utf8_lossy(&data.stderr.contents())),
                    STDERR_TAIL,
                );
                classify(self.site(op), &e, stderr, &self.limits)
            }
            Err(_) => Error::Timeout {
                site: self.site(op),
                limit: self.limits.timeout,
            },
        };
        self.retired = Some(err.to_string());
        tracing::warn!(
            plugin = &*self.plugin,
            connection = &*self.connection,
            operation = op,
            "plugin call failed; instance retired: {err}"
        );
        Err(err)
    }

    /// Turns the guest's own result into ours: its typed error, or the value converted and
    /// checked by `convert`.
    fn outcome<T, U>(
        &self,
        op: &'static str,
        result: std::result::Result<T, wit::ConnectorError>,
        convert: impl FnOnce(T) -> std::result::Result<U, Invalid>,
    ) -> Result<U> {
        match result {
            Err(e) => Err(Error::Connector {
                site: self.site(op),
                source: convert::connector_error(e, &self.caps, &self.store.data().redact),
            }),
            Ok(v) => convert(v).map_err(|reason| Error::Invalid {
                site: self.site(op),
                reason,
            }),
        }
    }

    /// A page's outcome: its items (at most `max`) converted by `item`, its cursor and gaps.
    fn page<T, U>(
        &self,
        op: &'static str,
        result: std::result::Result<RawPage<T>, wit::ConnectorError>,
        max: usize,
        mut item: impl FnMut(&Caps, T) -> std::result::Result<U, Invalid>,
    ) -> Result<Page<U>> {
        let caps = self.caps;
        let redact = &self.store.data().redact;
        self.outcome(op, result, |p| {
            Ok(Page {
                items: caps.page("items", p.items, max, |i| item(&caps, i))?,
                next: caps.cursor(p.next)?,
                gaps: lift::gaps(&caps, p.gaps, redact)?,
            })
        })
    }

    /// Sends what the guest wrote to stdout/stderr since the last call to the log, line by
    /// line, escaped.
    fn forward_output(&mut self) {
        let data = self.store.data();
        let streams = [
            ("stdout", data.stdout.contents(), self.stdout_seen),
            ("stderr", data.stderr.contents(), self.stderr_seen),
        ];
        let cap = data.output_capacity;
        for (i, (stream, bytes, seen)) in streams.iter().enumerate() {
            if bytes.len() <= *seen {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes[*seen..]);
            let mut lines = text.lines();
            for line in lines.by_ref().take(OUTPUT_LINES_PER_CALL) {
                tracing::info!(target: "keelson::plugin", plugin = &*self.plugin, connection = &*self.connection, stream, "{}", sanitize(&data.redact.apply(line), 4096));
            }
            let rest = lines.count();
            if rest > 0 {
                tracing::warn!(
                    plugin = &*self.plugin,
                    connection = &*self.connection,
                    stream,
                    lines = rest,
                    "plugin output lines over the per-call cap were not logged"
                );
            }
            if bytes.len() >= cap && !self.output_capped[i] {
                self.output_capped[i] = true;
                tracing::warn!(
                    plugin = &*self.plugin,
                    connection = &*self.connection,
                    stream,
                    cap,
                    "plugin output reached its cap; the rest is dropped"
                );
            }
        }
        self.stdout_seen = streams[0].1.len();
        self.stderr_seen = streams[1].1.len();
    }
}

/// The limits a failed call may have hit, for its error message.
#[derive(Debug, Clone, Copy)]
struct CallLimits {
    timeout: Duration,
    max_wasm_stack: usize,
    max_lifted_bytes: usize,
}

/// Names the limit or fault behind a failed call.
fn classify(site: CallSite, e: &wasmtime::Error, stderr: String, limits: &CallLimits) -> Error {
    if let Some(hit) = e.downcast_ref::<LimitHit>() {
        return match *hit {
            LimitHit::Memory { limit, requested } => Error::MemoryLimit {
                site,
                limit,
                requested,
            },
            LimitHit::Table { limit, requested } => Error::TableLimit {
                site,
                limit,
                requested,
            },
        };
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        match trap {
            // Only the epoch callback interrupts, and only once the call's time is up.
            Trap::Interrupt => {
                return Error::Timeout {
                    site,
                    limit: limits.timeout,
                };
            }
            Trap::StackOverflow => {
                return Error::StackOverflow {
                    site,
                    limit: limits.max_wasm_stack,
                };
            }
            _ => {}
        }
    }
    if matches!(
        e.downcast_ref::<ResourceTableError>(),
        Some(ResourceTableError::Full)
    ) {
        return Error::ResourceLimit {
            site,
            reason: "the WASI resource table is full".to_owned(),
        };
    }
    let messages: Vec<String> = e.chain().map(ToString::to_string).collect();
    if messages
        .iter()
        .any(|m| m.contains("fuel allocated for hostcalls has been exhausted"))
    {
        return Error::LiftLimit {
            site,
            limit: limits.max_lifted_bytes,
        };
    }
    if let Some(m) = messages
        .iter()
        .find(|m| m.contains("handle limit exceeded"))
    {
        return Error::ResourceLimit {
            site,
            reason: m.clone(),
        };
    }
    // The first line of each cause; wasm backtraces follow on further lines.
    let message = messages
        .iter()
        .filter_map(|m| m.lines().next())
        .collect::<Vec<_>>()
        .join(": ");
    Error::Trap {
        site,
        message: sanitize(&message, 2048),
        stderr,
    }
}

/// An open connection: one instance, one guest `session`. Calls run one at a time (`&mut self`).
/// After a trap or timeout every further call returns [`Error::Retired`].
pub struct Connection {
    plugin: Plugin,
    instance: Instance,
    session: ResourceAny,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("plugin", &self.plugin)
            .field("name", &&*self.instance.connection)
            .field("retired", &self.instance.retired)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub fn name(&self) -> &str {
        &self.instance.connection
    }

    /// Why this connection can serve no more calls, if it cannot.
    pub fn retired(&self) -> Option<&str> {
        self.instance.retired.as_deref()
    }

    /// The largest linear memory the instance has had, in bytes.
    pub fn peak_memory_bytes(&self) -> usize {
        self.instance.store.data().limiter.peak_memory
    }

    /// Requests the plugin put on the wire so far (retries and redirect hops included).
    pub fn requests_sent(&self) -> u64 {
        self.instance.store.data().requests_sent()
    }

    /// Requests the egress gate refused so far (outside the grants, a secret to the wrong host…).
    pub fn egress_denials(&self) -> u64 {
        self.instance.store.data().egress_denials()
    }

    fn page_size(&self, page: &PageRequest) -> (wit::PageRequest, usize) {
        let max = page
            .max_items
            .min(u32::try_from(self.instance.caps.max_items).unwrap_or(u32::MAX));
        let request = wit::PageRequest {
            cursor: page.cursor.clone(),
            max_items: max,
        };
        (request, max as usize)
    }

    /// `session.verify`: proves the connection works without scanning.
    pub async fn verify(&mut self) -> Result<Account> {
        let (inst, session) = (&mut self.instance, self.session);
        let raw = call!(inst, "verify", |b, s| async {
            match b {
                Bindings::V0_1(b) => {
                    b.keelson_registry_auth()
                        .session()
                        .call_verify(s, session)
                        .await
                }
                Bindings::V0_2(b) => {
                    let r = b
                        .keelson_registry_auth()
                        .session()
                        .call_verify(s, session)
                        .await?;
                    Ok(r.map(lift::account).map_err(lift::error))
                }
            }
        })?;
        let caps = inst.caps;
        let mut account = inst.outcome("verify", raw, |a| caps.account(a))?;
        // A 0.1.0 plugin holds its secrets: what it says is shown with them redacted.
        let redact = &inst.store.data().redact;
        account.display_name = redact.apply(&account.display_name);
        for detail in &mut account.details {
            detail.value = redact.apply(&detail.value);
        }
        Ok(account)
    }

    pub async fn list_registries(&mut self, page: PageRequest) -> Result<Page<Registry>> {
        let (request, max) = self.page_size(&page);
        let (inst, session) = (&mut self.instance, self.session);
        let raw = call!(inst, "list-registries", |b, s| async {
            match b {
                Bindings::V0_1(b) => {
                    let r = b
                        .keelson_registry_enumeration()
                        .call_list_registries(s, session, &request)
                        .await?;
                    Ok(r.map(|p| RawPage::v0_1(p.items, p.next)))
                }
                Bindings::V0_2(b) => {
                    let r = b
                        .keelson_registry_enumeration()
                        .call_list_registries(s, session, &lift::page_request(&request))
                        .await?;
                    Ok(r.map(|p| RawPage {
                        items: p.items.into_iter().map(lift::registry).collect(),
                        next: p.next,
                        gaps: p.gaps,
                    })
                    .map_err(lift::error))
                }
            }
        })?;
        let page = inst.page("list-registries", raw, max, Caps::registry)?;
        for registry in &page.items {
            inst.store.data().admit(&registry.name);
        }
        Ok(page)
    }

    pub async fn list_repositories(
        &mut self,
        registry: &str,
        page: PageRequest,
    ) -> Result<Page<Repository>> {
        let (request, max) = self.page_size(&page);
        let (inst, session) = (&mut self.instance, self.session);
        // The host names a registry it listed (or the operator selected).
        inst.store.data().admit(registry);
        let raw = call!(inst, "list-repositories", |b, s| async {
            match b {
                Bindings::V0_1(b) => {
                    let r = b
                        .keelson_registry_enumeration()
                        .call_list_repositories(s, session, registry, &request)
                        .await?;
                    Ok(r.map(|p| RawPage::v0_1(p.items, p.next)))
                }
                Bindings::V0_2(b) => {
                    let r = b
                        .keelson_registry_enumeration()
                        .call_list_repositories(s, session, registry, &lift::page_request(&request))
                        .await?;
                    Ok(r.map(|p| RawPage {
                        items: p.items.into_iter().map(lift::repository).collect(),
                        next: p.next,
                        gaps: p.gaps,
                    })
                    .map_err(lift::error))
                }
            }
        })?;
        inst.page("list-repositories", raw, max, Caps::repository)
    }

    pub async fn list_images(
        &mut self,
        registry: &str,
        repository: &str,
        page: PageRequest,
    ) -> Result<Page<Image>> {
        let (request, max) = self.page_size(&page);
        let (inst, session) = (&mut self.instance, self.session);
        inst.store.data().admit(registry);
        let raw = call!(inst, "list-images", |b, s| async {
            match b {
                Bindings::V0_1(b) => {
                    let r = b
                        .keelson_registry_enumeration()
                        .call_list_images(s, session, registry, repository, &request)
                        .await?;
                    Ok(r.map(|p| RawPage::v0_1(p.items, p.next)))
                }
                Bindings::V0_2(b) => {
                    let r = b
                        .keelson_registry_enumeration()
                        .call_list_images(
                            s,
                            session,
                            registry,
                            repository,
                            &lift::page_request(&request),
                        )
                        .await?;
                    Ok(r.map(|p| RawPage {
                        items: p.items.into_iter().map(lift::image).collect(),
                        next: p.next,
                        gaps: p.gaps,
                    })
                    .map_err(lift::error))
                }
            }
        })?;
        inst.page("list-images", raw, max, Caps::image)
    }

    pub async fn list_findings(
        &mut self,
        scope: &ScanScope,
        page: PageRequest,
    ) -> Result<Page<Finding>> {
        let (request, max) = self.page_size(&page);
        let (inst, session) = (&mut self.instance, self.session);
        let raw = call!(inst, "list-findings", |b, s| async {
            match b {
                Bindings::V0_1(b) => {
                    let scope = wit::ScanScope {
                        registries: scope.registries.clone(),
                    };
                    let r = b
                        .keelson_registry_scanning()
                        .call_list_findings(s, session, &scope, &request)
                        .await?;
                    Ok(r.map(|p| RawPage::v0_1(p.items, p.next)))
                }
                Bindings::V0_2(b) => {
                    let scope = v0_2::types::ScanScope {
                        registries: scope.registries.clone(),
                    };
                    let r = b
                        .keelson_registry_scanning()
                        .call_list_findings(s, session, &scope, &lift::page_request(&request))
                        .await?;
                    Ok(r.map(|p| RawPage {
                        items: p.items.into_iter().map(lift::finding).collect(),
                        next: p.next,
                        gaps: p.gaps,
                    })
                    .map_err(lift::error))
                }
            }
        })?;
        let mut page = inst.page("list-findings", raw, max, Caps::finding)?;
        let redact = &inst.store.data().redact;
        for finding in &mut page.items {
            finding.title = redact.apply(&finding.title);
            finding.description = redact.apply(&finding.description);
        }
        Ok(page)
    }

    /// `enrichment.describe-images`; at most one context per image asked about comes back.
    pub async fn describe_images(&mut self, images: &[ImageRef]) -> Result<Vec<ImageContext>> {
        let max = images.len();
        let (inst, session) = (&mut self.instance, self.session);
        for image in images {
            inst.store.data().admit(&image.registry);
        }
        let raw = call!(inst, "describe-images", |b, s| async {
            match b {
                Bindings::V0_1(b) => {
                    let images: Vec<wit::ImageRef> = images
                        .iter()
                        .map(|r| wit::ImageRef {
                            registry: r.registry.clone(),
                            repository: r.repository.clone(),
                            digest: r.digest.clone(),
                        })
                        .collect();
                    b.keelson_registry_enrichment()
                        .call_describe_images(s, session, &images)
                        .await
                }
                Bindings::V0_2(b) => {
                    let images: Vec<v0_2::types::ImageRef> =
                        images.iter().map(lift::image_ref_in).collect();
                    let r = b
                        .keelson_registry_enrichment()
                        .call_describe_images(s, session, &images)
                        .await?;
                    Ok(
                        r.map(|list| list.into_iter().map(lift::image_context).collect())
                            .map_err(lift::error),
                    )
                }
            }
        })?;
        let caps = inst.caps;
        inst.outcome("describe-images", raw, |list| {
            caps.page("contexts", list, max, |c| caps.image_context(c))
        })
    }
}

/// The scan and the other host-side callers see a component through the host-facing trait; every
/// call keeps its typed error or, when the instance failed, the runtime's message.
impl keelson_connector::Connector for Connection {
    fn info(&self) -> &ConnectorInfo {
        self.plugin.describe()
    }

    fn requests_sent(&self) -> u64 {
        Connection::requests_sent(self)
    }

    async fn verify(&mut self) -> keelson_connector::CallResult<Account> {
        Ok(Connection::verify(self).await?)
    }

    async fn list_registries(
        &mut self,
        page: PageRequest,
    ) -> keelson_connector::CallResult<Page<Registry>> {
        Ok(Connection::list_registries(self, page).await?)
    }

    async fn list_repositories(
        &mut self,
        registry: &str,
        page: PageRequest,
    ) -> keelson_connector::CallResult<Page<Repository>> {
        Ok(Connection::list_repositories(self, registry, page).await?)
    }

    async fn list_images(
        &mut self,
        registry: &str,
        repository: &str,
        page: PageRequest,
    ) -> keelson_connector::CallResult<Page<Image>> {
        Ok(Connection::list_images(self, registry, repository, page).await?)
    }

    async fn list_findings(
        &mut self,
        scope: &ScanScope,
        page: PageRequest,
    ) -> keelson_connector::CallResult<Page<Finding>> {
        Ok(Connection::list_findings(self, scope, page).await?)
    }

    async fn describe_images(
        &mut self,
        images: &[ImageRef],
    ) -> keelson_connector::CallResult<Vec<ImageContext>> {
        Ok(Connection::describe_images(self, images).await?)
    }
}
