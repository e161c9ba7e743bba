//! The per-store host state and the imports the guest may call: `host-http` (a thin adapter onto
//! [`keelson_http::EgressSession`], where every network rule lives) and `log` (into `tracing`).
//! WASI p2 is linked too, with an empty context: no preopens, environment, arguments or sockets;
//! stdout and stderr go into capped in-memory pipes that the runtime forwards to the log.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{host_http, log};
use crate::output::{Redactor, sanitize};
use crate::sealed::Scrubber;

/// The mappings of the WIT enums every contract version declares alike, written once and
/// expanded where each version's `host_http` and `log` bindings are in scope.
macro_rules! wit_mappings {
    () => {
        fn method(m: host_http::Method) -> http::Method {
            match m {
                host_http::Method::Get => http::Method::GET,
                host_http::Method::Head => http::Method::HEAD,
                host_http::Method::Post => http::Method::POST,
                host_http::Method::Put => http::Method::PUT,
                host_http::Method::Patch => http::Method::PATCH,
                host_http::Method::Delete => http::Method::DELETE,
            }
        }

        fn http_error(e: keelson_http::HttpError) -> host_http::HttpError {
            match e {
                keelson_http::HttpError::Denied(reason) => host_http::HttpError::Denied(reason),
                keelson_http::HttpError::Timeout => host_http::HttpError::Timeout,
                keelson_http::HttpError::Connect(m) => host_http::HttpError::Connect(m),
                keelson_http::HttpError::TooLarge => host_http::HttpError::TooLarge,
                keelson_http::HttpError::Invalid(m) => host_http::HttpError::Invalid(m),
            }
        }

        fn tracing_level(level: log::Level) -> tracing::Level {
            match level {
                log::Level::Trace => tracing::Level::TRACE,
                log::Level::Debug => tracing::Level::DEBUG,
                log::Level::Info => tracing::Level::INFO,
                log::Level::Warn => tracing::Level::WARN,
                log::Level::Error => tracing::Level::ERROR,
            }
        }
    };
}

wit_mappings!();

mod v0_2;

/// Caps that apply to one store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreCaps {
    pub(crate) memory_bytes: u64,
    pub(crate) table_elements: usize,
    pub(crate) instances: usize,
    pub(crate) wasi_resources: usize,
    pub(crate) output_bytes: usize,
    pub(crate) log_line_bytes: usize,
    pub(crate) log_lines_per_call: u32,
}

/// A limit the guest ran into; carried as the trap's error so the runtime can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LimitHit {
    #[error("memory limit of {limit} bytes reached (asked for {requested})")]
    Memory { limit: u64, requested: u64 },
    #[error("table limit of {limit} elements reached (asked for {requested})")]
    Table { limit: usize, requested: usize },
}

/// Enforces the store's memory and table caps and remembers the largest memory seen.
pub(crate) struct Limiter {
    inner: StoreLimits,
    memory_bytes: u64,
    table_elements: usize,
    /// Largest linear memory any instance of the store reached, in bytes.
    pub(crate) peak_memory: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            // A trap rather than a failed `memory.grow`: guests abort on allocation failure
            // anyway, and this way the error says which limit it was.
            return Err(LimitHit::Memory {
                limit: self.memory_bytes,
                requested: desired as u64,
            }
            .into());
        }
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if ok {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(LimitHit::Table {
                limit: self.table_elements,
                requested: desired,
            }
            .into());
        }
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Everything a store holds on the host side.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    /// `None` for the stores that only call `describe`: every request is then denied.
    egress: Option<keelson_http::EgressSession>,
    pub(crate) plugin: Arc<str>,
    pub(crate) connection: Arc<str>,
    /// When the current export call must end; host calls never get more time than this.
    pub(crate) deadline: Instant,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    /// Capacity of each of the two pipes.
    pub(crate) output_capacity: usize,
    log_line_bytes: usize,
    log_lines_per_call: u32,
    /// Log lines written and dropped in the current call.
    pub(crate) log_lines: u32,
    pub(crate) log_dropped: u64,
    /// The connection's secret values, kept out of everything the plugin writes.
    pub(crate) redact: Redactor,
    /// Every value sealed in this store (secret settings and captured tokens), kept out of what
    /// the guest is shown (contract 0.2.0) and of its log lines.
    scrub: Scrubber,
}

impl HostState {
    pub(crate) fn new(
        caps: StoreCaps,
        plugin: Arc<str>,
        connection: Arc<str>,
        egress: Option<keelson_http::EgressSession>,
    ) -> Self {
        let redact = Redactor::new(
            egress
                .iter()
                .flat_map(|e| e.grant().secrets.iter().map(|s| s.value.clone())),
        );
        let stdout = MemoryOutputPipe::new(caps.output_bytes);
        let stderr = MemoryOutputPipe::new(caps.output_bytes);
        // The builder's defaults are what we want: no preopens, no environment, no arguments,
        // stdin closed, every socket address denied, no name lookups.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(caps.wasi_resources);
        let inner = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(caps.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(caps.table_elements)
            .instances(caps.instances)
            .tables(caps.instances)
            .memories(caps.instances)
            .build();
        Self {
            wasi,
            table,
            limiter: Limiter {
                inner,
                memory_bytes: caps.memory_bytes,
                table_elements: caps.table_elements,
                peak_memory: 0,
            },
            egress,
            plugin,
            connection,
            deadline: Instant::now(),
            stdout,
            stderr,
            output_capacity: caps.output_bytes,
            log_line_bytes: caps.log_line_bytes,
            log_lines_per_call: caps.log_lines_per_call,
            log_lines: 0,
            log_dropped: 0,
            redact,
            // Filled as values are sealed (`seal`); 0.1.0's plaintext secrets are `redact`'s.
            scrub: Scrubber::default(),
        }
    }

    pub(crate) fn requests_sent(&self) -> u64 {
        self.egress
            .as_ref()
            .map_or(0, keelson_http::EgressSession::requests_sent)
    }

    /// A listing named `registry`: a `*.suffix` grant now admits its host (T42).
    pub(crate) fn admit(&self, registry: &str) {
        if let Some(egress) = &self.egress {
            egress.admit(registry);
        }
    }

    pub(crate) fn egress_denials(&self) -> u64 {
        self.egress.as_ref().map_or(0, |e| e.stats().denials)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host_http::Host for HostState {
    async fn send(
        &mut self,
        request: host_http::Request,
    ) -> Result<host_http::Response, host_http::HttpError> {
        let Some(egress) = self.egress.clone() else {
            return Err(host_http::HttpError::Denied(
                "no-connection: requests are only allowed inside a connection".to_owned(),
            ));
        };
        let request = keelson_http::Request {
            method: method(request.method),
            url: request.url,
            headers: request
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: request.body,
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
            // Contract 0.1.0 has no sealed secrets: plaintext values are caught by the gate's
            // byte matching instead.
            sealed: Vec::new(),
        };
        match egress.send(request, self.deadline).await {
            Ok(resp) => Ok(host_http::Response {
                status: resp.status,
                headers: resp
                    .headers
                    .into_iter()
                    .map(|(name, value)| host_http::Header { name, value })
                    .collect(),
                body: resp.body,
            }),
            Err(e) => Err(http_error(e)),
        }
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) {
        self.write_log(tracing_level(level), &message);
    }
}

impl HostState {
    /// One plugin log line: counted against the per-call cap, secrets scrubbed, escaped, capped.
    fn write_log(&mut self, level: tracing::Level, message: &str) {
        if self.log_lines >= self.log_lines_per_call {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let message = sanitize(
            &self.scrub.text(&self.redact.apply(message)),
            self.log_line_bytes,
        );
        let (plugin, connection) = (&*self.plugin, &*self.connection);
        match level {
            tracing::Level::TRACE => {
                tracing::trace!(target: "keelson::plugin", plugin, connection, "{message}");
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "keelson::plugin", plugin, connection, "{message}");
            }
            tracing::Level::INFO => {
                tracing::info!(target: "keelson::plugin", plugin, connection, "{message}");
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "keelson::plugin", plugin, connection, "{message}");
            }
            tracing::Level::ERROR => {
                tracing::error!(target: "keelson::plugin", plugin, connection, "{message}");
            }
        }
    }
}

impl crate::bindings::types::Host for HostState {}
