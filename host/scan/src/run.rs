//! One connection run: begin, enumerate, read findings, finish — streamed page by page.
//!
//! The order: [`Store::begin_run`] takes the connection's lease first (a second scan is refused
//! before it costs a request), then the connector is opened and registries are listed and
//! filtered by the [`Selection`]. Then reader tasks, each owning a connector instance, work at
//! once (see the `feeds` module): up to [`PagingPolicy::parallel_registries`] instances
//! walk the selected registries' repositories and images, a registry at a time each, and one more
//! walks the findings of the selected registries. This task alone writes what they send, page by
//! page, with [`Store::ingest_inventory`] and [`Store::ingest_findings`]: readers run on other
//! cores than the store, and a bounded channel keeps pages from piling up. A finding may arrive
//! before its image is listed; the store records the image by name and the listing fills it in.
//! If no extra instance can be opened, the first one enumerates and then reads the findings.
//!
//! Coverage, which decides what a complete run may resolve: a registry is covered when its
//! repositories and all their images were read to the end, every one of its repositories is
//! selected (a deselected repository's findings are not read, so they must not be resolved), and
//! the findings listing was read to the end. A registry whose listing failed (permission denied,
//! throttled too long, a broken page) is reported as uncovered with the reason. If the registry or
//! findings listing fails, nothing is covered and the run ends `failed`; an operator's cancel ends
//! it `cancelled`. Neither resolves anything.
//!
//! Enrichment: right after a registry's images are listed, the connector's `describe-images` is
//! asked about them in batches of [`DESCRIBE_BATCH`](crate::DESCRIBE_BATCH) by the instance that
//! listed them, and the answers are stored as image context,
//! so a connector needs to remember facts of one registry at a time, not of the whole tenant. A
//! connector that fails here only loses the context (and is not asked again in this run). After
//! the run is finished, [`scan_with_policy`] re-evaluates the connection's
//! findings with the operator's [`Policy`] (priority, factors, owner, SLA, controls).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keelson_core::{Finding, Registry, ScanScope};
use keelson_enrich::Policy;
use keelson_runtime::Connection;
use keelson_store::{
    EnrichCounts, EnrichScope, IngestCounts, InventoryItem, RunId, RunInfo, RunOutcome, RunTrigger,
    Store,
};
use serde::Serialize;

use crate::feeds::{Mailbox, Readers, Report};
use crate::{PagingPolicy, Selection, walk};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The connection's name in the store.
    pub connection: String,
    pub trigger: RunTrigger,
    pub selection: Selection,
    pub policy: PagingPolicy,
}

/// What the scan reports as it goes, for progress bars. Every method has a no-op default.
pub trait Progress: Send {
    /// The run took the lease.
    fn started(&mut self, _run: RunId) {}
    /// Registries listed: `selected` of `total` are in scope.
    fn registries(&mut self, _selected: usize, _total: usize) {}
    /// Enumeration of `registry` begins; it has `repositories` selected repositories.
    fn registry_started(&mut self, _registry: &str, _repositories: usize) {}
    /// One repository's images were read (`images` of them).
    fn repository_done(&mut self, _registry: &str, _repository: &str, _images: u64) {}
    /// One page of findings was stored.
    fn findings_page(&mut self, _read: u64, _kept: u64, _counts: IngestCounts) {}
    /// Part of the scope could not be read.
    fn problem(&mut self, _what: &str, _reason: &str) {}
    /// The connection's findings were re-evaluated.
    fn enriched(&mut self, _counts: EnrichCounts) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// A registry the run could not cover, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uncovered {
    pub registry: String,
    pub reason: String,
}

/// What one run did.
#[derive(Debug, Clone, Serialize)]
pub struct ScanSummary {
    /// The run as recorded when it finished (status, counts, resolved, error).
    pub run: RunInfo,
    pub registries_total: usize,
    pub registries_selected: usize,
    /// Registries read completely; a complete run resolved findings only in these.
    pub covered: Vec<String>,
    pub uncovered: Vec<Uncovered>,
    pub repositories: u64,
    pub images: u64,
    /// Findings the connector reported, and those kept after the selection.
    pub findings_read: u64,
    pub findings_kept: u64,
    /// Requests the plugin put on the wire.
    pub requests: u64,
    /// Images the connector described (`describe-images`).
    pub images_described: u64,
    /// What re-evaluating the connection's findings changed.
    pub enrichment: EnrichCounts,
    #[serde(serialize_with = "as_secs")]
    pub elapsed: Duration,
    /// Time spent writing what the readers sent (the rest of `elapsed` the store waited on them).
    #[serde(serialize_with = "as_secs")]
    pub store_busy: Duration,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// How many inventory records go into one transaction when a listing is written.
const INVENTORY_BATCH: usize = 500;

/// Runs one scan of `request.connection`. `open` opens the connector (loads the plugin, resolves
/// secrets, connects); it is called after the lease is taken, and its failure ends the run
/// `failed` with its message. `cancel` is checked between pages.
///
/// Connector failures do not make this an `Err`: they end up in the run's status and the
/// summary. `Err` is a store failure (including [`keelson_store::Error::AlreadyRunning`]); when it
/// strikes mid-run the run is ended `failed` if the store still allows it.
pub async fn scan<E: std::fmt::Display>(
    store: &mut Store,
    request: &ScanRequest,
    open: impl AsyncFn() -> Result<Connection, E>,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
) -> Result<ScanSummary, crate::Error> {
    scan_with_policy(store, request, &Policy::default(), open, progress, cancel).await
}

/// [`scan`], re-evaluating the connection's findings with `policy` once the run is finished.
///
/// `open` is called a second time for a connector instance that reads findings while the first
/// enumerates (each spends a different throttling budget); if that fails, findings are read by
/// the first instance after the enumeration.
pub async fn scan_with_policy<E: std::fmt::Display>(
    store: &mut Store,
    request: &ScanRequest,
    policy: &Policy,
    open: impl AsyncFn() -> Result<Connection, E>,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
) -> Result<ScanSummary, crate::Error> {
    let started = Instant::now();
    let run = store.begin_run(&request.connection, request.trigger, &ScanScope::default())?;
    tracing::info!(connection = %request.connection, run = %run, "scan run started");
    progress.started(run);
    let mut state = RunState::default();
    let outcome = match open().await {
        Ok(conn) => {
            let source_tool = conn.plugin().describe().source_tool.clone();
            let mut conn = Some(conn);
            let mut ctx = Ctx {
                store: &mut *store,
                run,
                request,
                progress: &mut *progress,
                cancel,
                state: &mut state,
                pending_inventory: Vec::new(),
                pending_contexts: Vec::new(),
            };
            let outcome = ctx.drive(&mut conn, &open, &source_tool).await;
            state.requests += conn.as_ref().map_or(0, Connection::requests_sent);
            outcome
        }
        Err(err) => Ok(Ended::Failed(format!("cannot connect: {err}"))),
    };
    let (outcome, covered) = match outcome {
        Ok(Ended::Done) => (RunOutcome::Complete, state.covered()),
        Ok(Ended::Failed(reason)) => (RunOutcome::Failed { reason }, Vec::new()),
        Ok(Ended::Cancelled) => (RunOutcome::Cancelled, Vec::new()),
        Err(store_err) => {
            let reason = format!("the store failed: {store_err}");
            if let Err(err) = store.finish_run(run, &RunOutcome::Failed { reason }, &[]) {
                tracing::warn!(run = %run, error = %err, "cannot mark the run failed");
            }
            return Err(store_err.into());
        }
    };
    let info = store.finish_run(run, &outcome, &covered)?;
    tracing::info!(run = %run, status = %info.status, resolved = info.findings_resolved, "scan run finished");
    let enrichment = store.enrich(
        policy,
        &EnrichScope::Connection(request.connection.clone()),
        "scan",
    )?;
    progress.enriched(enrichment);
    Ok(ScanSummary {
        run: info,
        registries_total: state.registries_total,
        registries_selected: state.in_scope.len(),
        covered,
        uncovered: state.uncovered,
        repositories: state.repositories,
        images: state.images,
        findings_read: state.findings_read,
        findings_kept: state.findings_kept,
        requests: state.requests,
        images_described: state.images_described,
        enrichment,
        elapsed: started.elapsed(),
        store_busy: state.store_busy,
    })
}

/// How the connector part of a run ended (store failures travel as `Err`).
enum Ended {
    Done,
    Failed(String),
    Cancelled,
}

#[derive(Default)]
struct RunState {
    registries_total: usize,
    in_scope: Vec<String>,
    uncovered: Vec<Uncovered>,
    repositories: u64,
    images: u64,
    findings_read: u64,
    findings_kept: u64,
    requests: u64,
    images_described: u64,
    store_busy: Duration,
}

impl RunState {
    fn covered(&self) -> Vec<String> {
        self.in_scope
            .iter()
            .filter(|r| !self.uncovered.iter().any(|u| &u.registry == *r))
            .cloned()
            .collect()
    }

    fn uncover(&mut self, registry: &str, reason: String) {
        if !self.uncovered.iter().any(|u| u.registry == registry) {
            self.uncovered.push(Uncovered {
                registry: registry.to_owned(),
                reason,
            });
        }
    }
}

struct Ctx<'a> {
    store: &'a mut Store,
    run: RunId,
    request: &'a ScanRequest,
    progress: &'a mut dyn Progress,
    cancel: &'a AtomicBool,
    state: &'a mut RunState,
    /// Inventory and image context received but not yet written: small pages (a repository's
    /// images) are gathered into transactions of [`INVENTORY_BATCH`] records, or fewer when no
    /// more has arrived.
    pending_inventory: Vec<InventoryItem>,
    pending_contexts: Vec<keelson_core::ImageContext>,
}

/// How a set of reader tasks ended: how the findings listing ended, if one of them read it.
enum Joined {
    Findings(Option<Result<u64, crate::WalkError>>),
    Failed(String),
}

/// Why the run stopped before the readers were done.
enum Stop {
    Cancelled,
    Store(keelson_store::Error),
}

impl Ctx<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Drives the run with the connector in `slot`; `open` makes more instances for the readers.
    /// `slot` is empty afterwards only if the reader that had it panicked or was stopped.
    async fn drive<E: std::fmt::Display>(
        &mut self,
        slot: &mut Option<Connection>,
        open: &impl AsyncFn() -> Result<Connection, E>,
        source_tool: &str,
    ) -> Result<Ended, keelson_store::Error> {
        match self.drive_inner(slot, open, source_tool).await {
            Ok(ended) => Ok(ended),
            Err(Stop::Cancelled) => Ok(Ended::Cancelled),
            Err(Stop::Store(err)) => Err(err),
        }
    }

    async fn drive_inner<E: std::fmt::Display>(
        &mut self,
        slot: &mut Option<Connection>,
        open: &impl AsyncFn() -> Result<Connection, E>,
        source_tool: &str,
    ) -> Result<Ended, Stop> {
        let Some(conn) = slot.as_mut() else {
            return Ok(Ended::Failed("the connector is gone".to_owned()));
        };
        let request = self.request;
        let (policy, selection) = (&request.policy, &request.selection);

        // Registries: small (one row per registry); held to drive the rest.
        let mut registries: Vec<Registry> = Vec::new();
        let listed = walk(
            policy,
            async |p| conn.list_registries(p).await,
            |items| {
                registries.extend(items);
                Ok(())
            },
        )
        .await;
        if let Err(err) = listed {
            return Ok(Ended::Failed(format!("listing registries failed: {err}")));
        }
        self.state.registries_total = registries.len();
        registries.retain(|r| selection.registry_in_scope(&r.name));
        registries.sort_by(|a, b| a.name.cmp(&b.name));
        registries.dedup_by(|a, b| a.name == b.name);
        self.state.in_scope = registries.iter().map(|r| r.name.clone()).collect();
        self.progress
            .registries(registries.len(), self.state.registries_total);
        let items: Vec<InventoryItem> = registries
            .into_iter()
            .map(InventoryItem::Registry)
            .collect();
        for chunk in items.chunks(INVENTORY_BATCH) {
            self.store
                .ingest_inventory(self.run, chunk)
                .map_err(Stop::Store)?;
        }
        let in_scope = self.state.in_scope.clone();
        if in_scope.is_empty() {
            return Ok(Ended::Done);
        }

        // Up to `parallel_registries` instances enumerate registries (each registry has its own
        // budget) and one more reads the findings (another budget) from the start. An instance
        // that cannot be opened only means less parallelism.
        let mut extra = Vec::new();
        for _ in 0..in_scope.len().min(policy.parallel_registries.max(1)) {
            match open().await {
                Ok(more) => extra.push(more),
                Err(err) => {
                    tracing::info!(error = %err, "fewer connector instances than asked for");
                    break;
                }
            }
        }
        let findings_conn = extra.pop();
        let queue = Arc::new(Mutex::new(
            in_scope.iter().cloned().collect::<VecDeque<_>>(),
        ));
        let describe_failed = Arc::new(AtomicBool::new(false));
        let (mailbox, inventory, findings) = Mailbox::new(extra.len() + 1);
        let mut readers = Readers::default();
        let first = slot.take().expect("checked above");
        for conn in std::iter::once(first).chain(extra) {
            readers.enumerate(
                conn,
                Arc::clone(&queue),
                inventory.clone(),
                policy.clone(),
                selection.clone(),
                Arc::clone(&describe_failed),
            );
        }
        // The mailbox is done once every sender is gone, so none may outlive its reader.
        let early = findings_conn.is_some();
        match findings_conn {
            Some(conn) => readers.read_findings(conn, &in_scope, findings, policy.clone()),
            None => drop(findings),
        }
        drop(inventory);
        let mut findings_listed = match self
            .run_readers(readers, mailbox, slot, source_tool)
            .await?
        {
            Joined::Findings(listed) => listed,
            Joined::Failed(reason) => return Ok(Ended::Failed(reason)),
        };
        if !early {
            // No instance was free for the findings: the first one reads them now.
            let Some(conn) = slot.take() else {
                return Ok(Ended::Failed("the connector is gone".to_owned()));
            };
            let (mailbox, _, findings) = Mailbox::new(1);
            let mut readers = Readers::default();
            readers.read_findings(conn, &in_scope, findings, policy.clone());
            findings_listed = match self
                .run_readers(readers, mailbox, slot, source_tool)
                .await?
            {
                Joined::Findings(listed) => listed,
                Joined::Failed(reason) => return Ok(Ended::Failed(reason)),
            };
        }
        if self.cancelled() {
            return Err(Stop::Cancelled);
        }
        match findings_listed {
            Some(Ok(_)) => Ok(Ended::Done),
            Some(Err(err)) => {
                let reason = err.to_string();
                self.progress.problem("findings", &reason);
                Ok(Ended::Failed(format!("listing findings failed: {reason}")))
            }
            None => Ok(Ended::Failed("the findings were not read".to_owned())),
        }
    }

    /// Writes what `readers` send until every one of them is done, then collects them: a
    /// connector goes back into `slot` if it is empty, the others' requests are counted.
    async fn run_readers(
        &mut self,
        readers: Readers,
        mut mailbox: Mailbox,
        slot: &mut Option<Connection>,
        source_tool: &str,
    ) -> Result<Joined, Stop> {
        if let Err(stop) = self.write_reports(&mut mailbox, source_tool).await {
            readers.abort();
            return Err(stop);
        }
        let mut findings = None;
        for ended in readers.join().await {
            let ended = match ended {
                Ok(ended) => ended,
                Err(panic) => {
                    return Ok(Joined::Failed(format!("a connector task failed: {panic}")));
                }
            };
            if ended.findings.is_some() {
                findings = ended.findings;
                self.state.requests += ended.conn.requests_sent();
            } else if slot.is_none() {
                *slot = Some(ended.conn);
            } else {
                self.state.requests += ended.conn.requests_sent();
            }
        }
        Ok(Joined::Findings(findings))
    }

    /// Writes what the readers send until every one of them is done.
    async fn write_reports(
        &mut self,
        mailbox: &mut Mailbox,
        source_tool: &str,
    ) -> Result<(), Stop> {
        loop {
            let report = if let Some(report) = mailbox.ready() {
                report
            } else {
                // Nothing waiting: write what was gathered before waiting for more.
                self.flush().map_err(Stop::Store)?;
                match mailbox.next().await {
                    Some(report) => report,
                    None => return Ok(()),
                }
            };
            if self.cancelled() {
                return Err(Stop::Cancelled);
            }
            let writing = Instant::now();
            self.write(report, source_tool).map_err(Stop::Store)?;
            self.state.store_busy += writing.elapsed();
        }
    }

    /// Writes the gathered inventory, then the gathered context (which refers to it).
    fn flush(&mut self) -> Result<(), keelson_store::Error> {
        let writing = Instant::now();
        if !self.pending_inventory.is_empty() {
            self.store
                .ingest_inventory(self.run, &self.pending_inventory)?;
            self.pending_inventory.clear();
        }
        if !self.pending_contexts.is_empty() {
            self.state.images_described +=
                self.store
                    .save_image_contexts(self.run, &self.pending_contexts)? as u64;
            self.pending_contexts.clear();
        }
        self.state.store_busy += writing.elapsed();
        Ok(())
    }

    /// Gathers inventory or context; writes it all once a batch is full.
    fn gather(&mut self) -> Result<(), keelson_store::Error> {
        if self.pending_inventory.len() + self.pending_contexts.len() >= INVENTORY_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn write(&mut self, report: Report, source_tool: &str) -> Result<(), keelson_store::Error> {
        match report {
            Report::Repositories {
                registry,
                repositories,
                deselected,
            } => {
                if deselected > 0 {
                    self.state.uncover(
                        &registry,
                        format!("{deselected} of its repositories are deselected"),
                    );
                }
                self.progress
                    .registry_started(&registry, repositories.len());
                self.state.repositories += repositories.len() as u64;
                self.pending_inventory
                    .extend(repositories.into_iter().map(InventoryItem::Repository));
                self.gather()?;
            }
            Report::Images(images) => {
                self.state.images += images.len() as u64;
                self.pending_inventory
                    .extend(images.into_iter().map(InventoryItem::Image));
                self.gather()?;
            }
            Report::RepositoryDone {
                registry,
                repository,
                images,
            } => self
                .progress
                .repository_done(&registry, &repository, images),
            Report::Unread {
                registry,
                what,
                reason,
            } => {
                self.progress.problem(&what, &reason);
                self.state
                    .uncover(&registry, format!("listing {what} failed: {reason}"));
            }
            Report::Contexts(contexts) => {
                self.pending_contexts.extend(contexts);
                self.gather()?;
            }
            Report::DescribeFailed(reason) => {
                tracing::warn!(run = %self.run, error = %reason, "describe-images failed; image context skipped");
                self.progress.problem("image context", &reason);
            }
            Report::Findings(items) => self.write_findings(items, source_tool)?,
        }
        Ok(())
    }

    /// Writes one page of findings, kept when their registry is in scope and their repository
    /// selected.
    fn write_findings(
        &mut self,
        items: Vec<Finding>,
        source_tool: &str,
    ) -> Result<(), keelson_store::Error> {
        let selection = &self.request.selection;
        let read = items.len() as u64;
        let kept: Vec<Finding> = items
            .into_iter()
            .filter(|f| {
                self.state.in_scope.binary_search(&f.image.registry).is_ok()
                    && selection.repository_selected(&f.image.registry, &f.image.repository)
            })
            .collect();
        let counts = self.store.ingest_findings(self.run, source_tool, &kept)?;
        self.state.findings_read += read;
        self.state.findings_kept += kept.len() as u64;
        self.progress.findings_page(read, kept.len() as u64, counts);
        Ok(())
    }
}
