//! One connection run: begin, enumerate, read findings, finish — streamed page by page.
//!
//! The order is fixed: [`Store::begin_run`] takes the connection's lease first (a second scan is
//! refused before it costs a request), then the connector is opened, registries are listed and
//! filtered by the [`Selection`], each selected registry's repositories and images are walked and
//! every page is written with [`Store::ingest_inventory`], and the findings of the selected
//! registries are walked and written with [`Store::ingest_findings`]. Only the list of registries
//! and one registry's repository names are held at a time; images and findings never pile up.
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
//! asked about them in batches of [`DESCRIBE_BATCH`] and the answers are stored as image context,
//! so a connector needs to remember facts of one registry at a time, not of the whole tenant. A
//! connector that fails here only loses the context (and is not asked again in this run). After
//! the run is finished, [`scan_with_policy`] re-evaluates the connection's
//! findings with the operator's [`Policy`] (priority, factors, owner, SLA, controls).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keelson_core::{Finding, ImageRef, Registry, Repository, ScanScope};
use keelson_enrich::Policy;
use keelson_runtime::Connection;
use keelson_store::{
    EnrichCounts, EnrichScope, IngestCounts, InventoryItem, RunId, RunInfo, RunOutcome, RunTrigger,
    Store,
};
use serde::Serialize;

use crate::{PageSink, PageSource, PagingPolicy, Selection, WalkError, walk, walk_pages};

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
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// How many inventory records go into one transaction when a listing is written.
const INVENTORY_BATCH: usize = 500;

/// Images asked about per `describe-images` call.
pub const DESCRIBE_BATCH: usize = 100;

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
    /// `describe-images` failed once; it is not asked again in this run.
    describe_failed: bool,
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
}

/// Why a sink stopped a walk; the walk itself only carries a message.
enum Stop {
    Cancelled,
    Store(keelson_store::Error),
}

const STOPPED: &str = "stopped by the host";

impl Ctx<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The walk's error, unless a sink stopped it: then the stop itself.
    fn walk_failed(err: &WalkError, stop: &mut Option<Stop>) -> Result<String, Stop> {
        match stop.take() {
            Some(stop) => Err(stop),
            None => Ok(err.to_string()),
        }
    }

    /// Drives the run with the connector in `slot`, which is lent to the findings reader's task
    /// and handed back (empty only if that task panicked).
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
        // Findings come from another budget (Resource Graph, not the registries), so a second
        // instance reads them from the start and its pages are written between repositories.
        let mut findings = match open().await {
            Ok(second) => Some(FindingsFeed::start(second, policy.clone(), &in_scope)),
            Err(err) => {
                tracing::info!(error = %err, "no second connector instance; findings are read after the enumeration");
                None
            }
        };
        for registry in &in_scope {
            if self.cancelled() {
                return Err(Stop::Cancelled);
            }
            self.enumerate_registry(conn, registry, findings.as_mut(), source_tool)
                .await?;
        }
        if self.cancelled() {
            return Err(Stop::Cancelled);
        }
        let findings = match findings {
            Some(feed) => feed,
            None => match slot.take() {
                Some(first) => FindingsFeed::start(first, policy.clone(), &in_scope),
                None => return Ok(Ended::Failed("the connector is gone".to_owned())),
            },
        };
        self.read_findings(findings, slot, source_tool).await
    }

    /// Writes one page of findings, kept when their registry is in scope and their repository
    /// selected.
    fn ingest_findings_page(&mut self, items: Vec<Finding>, source_tool: &str) -> Result<(), Stop> {
        let selection = &self.request.selection;
        let read = items.len() as u64;
        let kept: Vec<Finding> = items
            .into_iter()
            .filter(|f| {
                self.state.in_scope.binary_search(&f.image.registry).is_ok()
                    && selection.repository_selected(&f.image.registry, &f.image.repository)
            })
            .collect();
        let counts = self
            .store
            .ingest_findings(self.run, source_tool, &kept)
            .map_err(Stop::Store)?;
        self.state.findings_read += read;
        self.state.findings_kept += kept.len() as u64;
        self.progress.findings_page(read, kept.len() as u64, counts);
        Ok(())
    }

    /// Writes the findings pages that have already arrived, without waiting for more.
    fn ingest_ready_findings(
        &mut self,
        feed: Option<&mut FindingsFeed>,
        source_tool: &str,
    ) -> Result<(), Stop> {
        let Some(feed) = feed else {
            return Ok(());
        };
        while let Ok(items) = feed.received.try_recv() {
            self.ingest_findings_page(items, source_tool)?;
        }
        Ok(())
    }

    /// Repositories and images of one registry; failures uncover the registry and move on.
    async fn enumerate_registry(
        &mut self,
        conn: &mut Connection,
        registry: &str,
        mut findings: Option<&mut FindingsFeed>,
        source_tool: &str,
    ) -> Result<(), Stop> {
        let request = self.request;
        let (policy, selection) = (&request.policy, &request.selection);
        let mut repositories: Vec<Repository> = Vec::new();
        let mut stop = None;
        let cancel = self.cancel;
        let listed = walk(
            policy,
            async |p| conn.list_repositories(registry, p).await,
            |items| {
                if cancel.load(Ordering::Relaxed) {
                    stop = Some(Stop::Cancelled);
                    return Err(STOPPED.to_owned());
                }
                repositories.extend(items);
                Ok(())
            },
        )
        .await;
        if let Err(err) = listed {
            let reason = Self::walk_failed(&err, &mut stop)?;
            self.progress
                .problem(&format!("repositories of `{registry}`"), &reason);
            self.state
                .uncover(registry, format!("listing repositories failed: {reason}"));
            return Ok(());
        }
        let before = repositories.len();
        repositories
            .retain(|r| r.registry == registry && selection.repository_selected(registry, &r.name));
        if repositories.len() < before {
            self.state.uncover(
                registry,
                format!(
                    "{} of its repositories are deselected",
                    before - repositories.len()
                ),
            );
        }
        self.progress.registry_started(registry, repositories.len());
        self.state.repositories += repositories.len() as u64;
        for chunk in repositories.chunks(INVENTORY_BATCH) {
            let items: Vec<InventoryItem> = chunk
                .iter()
                .cloned()
                .map(InventoryItem::Repository)
                .collect();
            self.store
                .ingest_inventory(self.run, &items)
                .map_err(Stop::Store)?;
        }
        // The registry's images, to describe once it is listed: one registry's worth at a time.
        let mut to_describe: Vec<ImageRef> = Vec::new();
        for repository in &repositories {
            let mut images = 0u64;
            let mut stop = None;
            let store = &mut *self.store;
            let run = self.run;
            let listed = walk(
                policy,
                async |p| conn.list_images(registry, &repository.name, p).await,
                |items| {
                    if cancel.load(Ordering::Relaxed) {
                        stop = Some(Stop::Cancelled);
                        return Err(STOPPED.to_owned());
                    }
                    images += items.len() as u64;
                    to_describe.extend(items.iter().map(|i| i.image_ref.clone()));
                    let items: Vec<InventoryItem> =
                        items.into_iter().map(InventoryItem::Image).collect();
                    store.ingest_inventory(run, &items).map_err(|e| {
                        stop = Some(Stop::Store(e));
                        STOPPED.to_owned()
                    })
                },
            )
            .await;
            self.state.images += images;
            if let Err(err) = listed {
                let reason = Self::walk_failed(&err, &mut stop)?;
                let what = format!("images of `{registry}/{}`", repository.name);
                self.progress.problem(&what, &reason);
                self.state
                    .uncover(registry, format!("listing {what} failed: {reason}"));
            }
            self.progress
                .repository_done(registry, &repository.name, images);
            self.ingest_ready_findings(findings.as_deref_mut(), source_tool)?;
        }
        self.describe_images(conn, &to_describe).await
    }

    /// Asks the connector about `images`, a batch at a time, and stores the answers. A connector
    /// failure ends the asking for the run (the context is a bonus); a store failure stops it.
    async fn describe_images(
        &mut self,
        conn: &mut Connection,
        images: &[ImageRef],
    ) -> Result<(), Stop> {
        for batch in images.chunks(DESCRIBE_BATCH) {
            if self.state.describe_failed {
                break;
            }
            if self.cancelled() {
                return Err(Stop::Cancelled);
            }
            match conn.describe_images(batch).await {
                Ok(contexts) => {
                    self.state.images_described +=
                        self.store
                            .save_image_contexts(self.run, &contexts)
                            .map_err(Stop::Store)? as u64;
                }
                Err(err) => {
                    tracing::warn!(run = %self.run, error = %err, "describe-images failed; image context skipped");
                    self.progress.problem("image context", &err.to_string());
                    self.state.describe_failed = true;
                }
            }
        }
        Ok(())
    }

    /// Writes the rest of the findings as they arrive and waits for the reader to end; its
    /// connector is handed back into `slot` (the first instance) or counted (a second one).
    async fn read_findings(
        &mut self,
        mut feed: FindingsFeed,
        slot: &mut Option<Connection>,
        source_tool: &str,
    ) -> Result<Ended, Stop> {
        let mut stop = None;
        while let Some(items) = feed.received.recv().await {
            if self.cancelled() {
                stop = Some(Stop::Cancelled);
                break;
            }
            if let Err(err) = self.ingest_findings_page(items, source_tool) {
                stop = Some(err);
                break;
            }
        }
        // Closing the channel stops the reader at its next page.
        drop(feed.received);
        let (conn, listed) = match feed.reader.await {
            Ok(done) => done,
            Err(err) => {
                return match stop {
                    Some(stop) => Err(stop),
                    None => Ok(Ended::Failed(format!("the findings reader failed: {err}"))),
                };
            }
        };
        if slot.is_none() {
            *slot = Some(conn);
        } else {
            self.state.requests += conn.requests_sent();
        }
        if let Some(stop) = stop {
            return Err(stop);
        }
        match listed {
            Ok(_) => Ok(Ended::Done),
            Err(err) => {
                let reason = err.to_string();
                self.progress.problem("findings", &reason);
                Ok(Ended::Failed(format!("listing findings failed: {reason}")))
            }
        }
    }
}

/// Findings read by a task of their own: a connector instance pages through `list-findings`
/// (plugin and network on one core) while the run writes pages to the store (on the other).
/// The channel holds one page, so a slow store slows the reader instead of piling pages up.
struct FindingsFeed {
    received: tokio::sync::mpsc::Receiver<Vec<Finding>>,
    reader: tokio::task::JoinHandle<(Connection, Result<u64, WalkError>)>,
}

impl FindingsFeed {
    fn start(conn: Connection, policy: PagingPolicy, in_scope: &[String]) -> Self {
        let (mut pages, received) = tokio::sync::mpsc::channel::<Vec<Finding>>(1);
        let mut reader = FindingsReader {
            conn,
            scope: ScanScope {
                registries: in_scope.to_vec(),
            },
        };
        let reader = tokio::spawn(async move {
            let listed = walk_pages(&policy, &mut reader, &mut pages).await;
            (reader.conn, listed)
        });
        Self { received, reader }
    }
}

/// The connector, lent to the task that reads the findings of `scope`.
struct FindingsReader {
    conn: Connection,
    scope: ScanScope,
}

impl PageSource<Finding> for FindingsReader {
    async fn fetch(
        &mut self,
        request: keelson_runtime::PageRequest,
    ) -> Result<keelson_core::Page<Finding>, keelson_runtime::Error> {
        self.conn.list_findings(&self.scope, request).await
    }
}

impl PageSink<Finding> for tokio::sync::mpsc::Sender<Vec<Finding>> {
    async fn accept(&mut self, items: Vec<Finding>) -> Result<(), String> {
        self.send(items).await.map_err(|_| STOPPED.to_owned())
    }
}
