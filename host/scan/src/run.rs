//! One connection run: begin, enumerate, read findings, finish — streamed page by page.
//!
//! The order: [`Store::begin_run`] takes the connection's lease first (a second scan is refused
//! before it costs a request), then the connector is opened and registries are listed and
//! filtered by the [`Selection`]. Then reader tasks, each owning a connector instance, work at
//! once (see the `feeds` module): up to [`PagingPolicy::parallel_registries`] instances
//! walk the selected registries' repositories and images, a registry at a time each, and one more
//! walks the findings. This task alone writes what they send, page by page, with
//! [`Store::ingest_inventory`] and [`Store::ingest_findings`]: readers run on other cores than the
//! store, and a bounded channel keeps pages from piling up. A finding may arrive before its image
//! is listed; the store records the image by name and the listing fills it in. If no extra
//! instance can be opened, one instance enumerates and then reads the findings.
//!
//! Coverage, which decides what a run may resolve, is recorded per scope with the reason when a
//! scope was not read completely ([`Coverage`]):
//! - the registry listing: one that fails part way keeps the registries it returned, and they are
//!   scanned; findings are then read for every registry (an empty scope) and kept when the
//!   selection takes their registry, so a broken listing costs no finding;
//! - each registry's inventory: covered only when the registry's enumerator reported it done and
//!   nothing of it failed. A repository listing that fails part way keeps the repositories it
//!   returned (and reads their images); a registry never reached (every instance failed) is not
//!   covered;
//! - the findings listing (one scope per connection): complete only when its walk ended on a last
//!   page. A connector that skipped rows reports that as an error after its last page, which
//!   makes the listing incomplete and keeps every finding it returned.
//!
//! A fault in one registry, listing or page keeps everything else. The run ends `complete` when
//! every scope was read, `partial` when some was not, `failed` when none was (or the connector
//! could not be opened), `cancelled` when the operator stopped it; a trap never ends `complete`.
//! The store resolves only inside the registries whose inventory and findings were both read,
//! only for selected repositories, and holds a sudden drop ([`ResolveGuard`]) instead of
//! applying it.
//!
//! Enrichment: right after a registry's images are listed, the connector's `describe-images` is
//! asked about them in batches of [`DESCRIBE_BATCH`](crate::DESCRIBE_BATCH) by the instance that
//! listed them, and the answers are stored as image context, so a connector needs to remember
//! facts of one registry at a time, not of the whole tenant. A connector that fails here only
//! loses the context (and is not asked again in this run). After the run is finished,
//! [`scan_with_policy`] re-evaluates the connection's findings with the operator's [`Policy`]
//! (priority, factors, owner, SLA, controls).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keelson_connector::Connector;
use keelson_core::{Finding, Registry, ScanScope};
use keelson_enrich::Policy;
use keelson_store::{
    Coverage, EnrichCounts, EnrichScope, IngestCounts, InventoryItem, RegistryCoverage,
    ResolveGuard, RunId, RunInfo, RunOutcome, RunTrigger, Store,
};
use serde::Serialize;

use crate::feeds::{Mailbox, Readers, Report};
use crate::{PagingPolicy, Selection, WalkError, walk};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The connection's name in the store.
    pub connection: String,
    pub trigger: RunTrigger,
    pub selection: Selection,
    pub policy: PagingPolicy,
    /// When a run that would resolve many findings is held instead.
    pub guard: ResolveGuard,
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
    /// The run as recorded when it finished (status, counts, resolved, coverage, held, error).
    pub run: RunInfo,
    pub registries_total: usize,
    pub registries_selected: usize,
    /// Registries whose inventory and findings were read completely: the only ones a run
    /// resolves in.
    pub covered: Vec<String>,
    pub uncovered: Vec<Uncovered>,
    /// Per scope: what was read completely, and why the rest was not.
    pub coverage: Coverage,
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

/// Rounds of enumeration: when every instance reading registries failed, fresh instances are
/// opened for the registries left, this many times at most.
const ENUMERATION_ROUNDS: usize = 3;

/// Runs one scan of `request.connection`. `open` opens the connector (loads the plugin, resolves
/// secrets, connects); it is called after the lease is taken, and its failure ends the run
/// `failed` with its message. `cancel` is checked between pages.
///
/// Connector failures do not make this an `Err`: they end up in the run's status and coverage.
/// `Err` is a store failure (including [`keelson_store::Error::AlreadyRunning`]); when it
/// strikes mid-run the run is ended `failed` if the store still allows it.
pub async fn scan<C: Connector + 'static, E: std::fmt::Display>(
    store: &mut Store,
    request: &ScanRequest,
    open: impl AsyncFn() -> Result<C, E>,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
) -> Result<ScanSummary, crate::Error> {
    scan_with_policy(store, request, &Policy::default(), open, progress, cancel).await
}

/// [`scan`], re-evaluating the connection's findings with `policy` once the run is finished.
///
/// `open` is called again for the connector instances that read in parallel (each spends a
/// different throttling budget) and to replace instances that failed; if no more can be opened,
/// fewer instances do the work.
pub async fn scan_with_policy<C: Connector + 'static, E: std::fmt::Display>(
    store: &mut Store,
    request: &ScanRequest,
    policy: &Policy,
    open: impl AsyncFn() -> Result<C, E>,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
) -> Result<ScanSummary, crate::Error> {
    let started = Instant::now();
    let run = store.begin_run(&request.connection, request.trigger, &ScanScope::default())?;
    tracing::info!(connection = %request.connection, run = %run, "scan run started");
    progress.started(run);
    let mut state = RunState::default();
    let ended = match open().await {
        Ok(conn) => {
            let source_tool = conn.info().source_tool.clone();
            let mut ctx = Ctx {
                store: &mut *store,
                run,
                request,
                progress: &mut *progress,
                cancel,
                state: &mut state,
                source_tool,
                pending_inventory: Vec::new(),
                pending_contexts: Vec::new(),
            };
            match ctx.drive(conn, &open).await {
                Ok(()) => Ok(Ended::Read),
                Err(Stop::Cancelled) => Ok(Ended::Cancelled),
                Err(Stop::Store(err)) => Err(err),
            }
        }
        Err(err) => Ok(Ended::CannotConnect(format!("cannot connect: {err}"))),
    };
    let coverage = state.coverage();
    let outcome = match ended {
        Ok(Ended::Read) => outcome_of(&coverage),
        Ok(Ended::CannotConnect(reason)) => RunOutcome::Failed { reason },
        Ok(Ended::Cancelled) => RunOutcome::Cancelled,
        Err(store_err) => {
            let reason = format!("the store failed: {store_err}");
            let failed = RunOutcome::Failed { reason };
            if let Err(err) =
                store.finish_run(run, &failed, &coverage, &request.guard, &|_, _| false)
            {
                tracing::warn!(run = %run, error = %err, "cannot mark the run failed");
            }
            return Err(store_err.into());
        }
    };
    let selection = &request.selection;
    let info = store.finish_run(
        run,
        &outcome,
        &coverage,
        &request.guard,
        &|registry, repo| selection.repository_selected(registry, repo),
    )?;
    tracing::info!(run = %run, status = %info.status, resolved = info.findings_resolved,
        coverage = %coverage.summary(), "scan run finished");
    let enrichment = store.enrich(
        policy,
        &EnrichScope::Connection(request.connection.clone()),
        "scan",
    )?;
    progress.enriched(enrichment);
    let covered = coverage.resolvable();
    let uncovered = coverage
        .registries
        .iter()
        .filter_map(|r| {
            r.uncovered.as_ref().map(|reason| Uncovered {
                registry: r.registry.clone(),
                reason: reason.clone(),
            })
        })
        .collect();
    Ok(ScanSummary {
        run: info,
        registries_total: state.registries_total,
        registries_selected: state.in_scope.len(),
        covered,
        uncovered,
        coverage,
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
    /// Everything that could be read was; the coverage says how much that was.
    Read,
    CannotConnect(String),
    Cancelled,
}

/// How far the findings listing got.
#[derive(Debug, Default)]
enum FindingsRead {
    #[default]
    NotRead,
    Complete,
    Incomplete(String),
}

#[derive(Default)]
struct RunState {
    registries_total: usize,
    /// Why the registry listing did not reach its end, if it did not.
    registry_listing: Option<String>,
    /// Selected registries the listing returned, sorted.
    in_scope: Vec<String>,
    /// Registries whose enumerator reported them done.
    done: BTreeSet<String>,
    /// Why a registry (or part of it) could not be read; the first reason per registry.
    unread: BTreeMap<String, String>,
    /// Repositories left out by the selection, per registry.
    deselected: BTreeMap<String, u64>,
    /// Registries findings were kept for that the (incomplete) registry listing did not return.
    unlisted: BTreeSet<String>,
    /// Why no instance was left to reach the registries still waiting, if so.
    unreached: Option<String>,
    findings: FindingsRead,
    repositories: u64,
    images: u64,
    findings_read: u64,
    findings_kept: u64,
    requests: u64,
    images_described: u64,
    store_busy: Duration,
}

impl RunState {
    fn unread(&mut self, registry: &str, reason: String) {
        self.unread.entry(registry.to_owned()).or_insert(reason);
    }

    /// What the run read completely, per scope, and why the rest was not.
    fn coverage(&self) -> Coverage {
        let mut registries: Vec<RegistryCoverage> = self
            .in_scope
            .iter()
            .map(|registry| {
                let uncovered = if let Some(reason) = self.unread.get(registry) {
                    Some(reason.clone())
                } else if self.done.contains(registry) {
                    None
                } else {
                    Some(self.unreached.clone().unwrap_or_else(|| {
                        "not read: the scan ended before it reached this registry".to_owned()
                    }))
                };
                RegistryCoverage {
                    registry: registry.clone(),
                    uncovered,
                    deselected: self.deselected.get(registry).copied().unwrap_or(0),
                }
            })
            .collect();
        registries.extend(self.unlisted.iter().map(|registry| {
            RegistryCoverage {
                registry: registry.clone(),
                uncovered: Some(
                    "not in the registry listing, which was incomplete; its findings were kept"
                        .to_owned(),
                ),
                deselected: 0,
            }
        }));
        registries.sort_by(|a, b| a.registry.cmp(&b.registry));
        let findings = match &self.findings {
            FindingsRead::Complete => None,
            FindingsRead::NotRead => Some("not read".to_owned()),
            FindingsRead::Incomplete(reason) => Some(reason.clone()),
        };
        Coverage {
            registry_listing: self.registry_listing.clone(),
            findings,
            registries,
        }
    }
}

/// `complete` when every scope was read, `failed` when none was, `partial` otherwise.
fn outcome_of(coverage: &Coverage) -> RunOutcome {
    if !coverage.incomplete() {
        return RunOutcome::Complete;
    }
    let any_registry = coverage.registries.iter().any(|r| r.uncovered.is_none());
    let reason = coverage.summary();
    if any_registry || coverage.findings.is_none() {
        RunOutcome::Partial { reason }
    } else {
        RunOutcome::Failed { reason }
    }
}

struct Ctx<'a> {
    store: &'a mut Store,
    run: RunId,
    request: &'a ScanRequest,
    progress: &'a mut dyn Progress,
    cancel: &'a AtomicBool,
    state: &'a mut RunState,
    source_tool: String,
    /// Inventory and image context received but not yet written: small pages (a repository's
    /// images) are gathered into transactions of [`INVENTORY_BATCH`] records, or fewer when no
    /// more has arrived.
    pending_inventory: Vec<InventoryItem>,
    pending_contexts: Vec<keelson_core::ImageContext>,
}

/// Why the run stopped before the readers were done.
enum Stop {
    Cancelled,
    Store(keelson_store::Error),
}

/// How a set of reader tasks ended: the instances that still work, and how the findings listing
/// ended if one of them read it.
struct Joined<C> {
    healthy: Vec<C>,
    findings: Option<FindingsRead>,
}

impl Ctx<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Drives the run with the connector `first`; `open` makes more instances for the readers.
    async fn drive<C: Connector + 'static, E: std::fmt::Display>(
        &mut self,
        mut first: C,
        open: &impl AsyncFn() -> Result<C, E>,
    ) -> Result<(), Stop> {
        let request = self.request;
        let (policy, selection) = (&request.policy, &request.selection);

        // Registries: small (one row per registry); held to drive the rest. A listing that fails
        // part way keeps what it returned.
        let mut registries: Vec<Registry> = Vec::new();
        let listed = walk(
            policy,
            async |p| first.list_registries(p).await,
            |items| {
                registries.extend(items);
                Ok(())
            },
        )
        .await;
        let mut first = Some(first);
        if let Err(err) = listed {
            let reason = format!("listing registries failed: {err}");
            self.progress.problem("registries", &reason);
            if matches!(&err, WalkError::Call(e) if e.instance_failed()) {
                first = None;
            }
            self.state.registry_listing = Some(reason);
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
        let listing_complete = self.state.registry_listing.is_none();
        if in_scope.is_empty() && listing_complete {
            self.state.findings = FindingsRead::Complete;
            return Ok(());
        }
        // A complete listing names the registries to report findings for; after a broken one
        // every registry's findings are asked for and the selection filters them here.
        let findings_scope = if listing_complete {
            ScanScope {
                registries: in_scope.clone(),
            }
        } else {
            ScanScope::default()
        };

        // Up to `parallel_registries` instances enumerate registries (each registry has its own
        // budget) and one more reads the findings (another budget) from the start. An instance
        // that cannot be opened only means less parallelism.
        let enumerators = in_scope.len().min(policy.parallel_registries.max(1));
        let mut pool: Vec<C> = first.into_iter().collect();
        let mut open_failure = None;
        while pool.len() < enumerators + 1 {
            match open().await {
                Ok(more) => pool.push(more),
                Err(err) => {
                    tracing::info!(error = %err, "fewer connector instances than asked for");
                    open_failure = Some(err.to_string());
                    break;
                }
            }
        }
        let queue = Arc::new(Mutex::new(
            in_scope.iter().cloned().collect::<VecDeque<_>>(),
        ));
        let describe_failed = Arc::new(AtomicBool::new(false));
        // The findings get their own instance when there are two or more; with one, it
        // enumerates first and reads the findings after.
        let mut findings_conn = if pool.len() >= 2 || in_scope.is_empty() {
            pool.pop()
        } else {
            None
        };
        let findings_pending = findings_conn.is_none();
        for round in 0..ENUMERATION_ROUNDS {
            let waiting = queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len();
            if waiting == 0 && findings_conn.is_none() {
                break;
            }
            if round > 0 {
                // Every instance of the last round failed: fresh ones for the registries left.
                while pool.len() < waiting.min(enumerators) {
                    match open().await {
                        Ok(more) => pool.push(more),
                        Err(err) => {
                            open_failure = Some(err.to_string());
                            break;
                        }
                    }
                }
                if pool.is_empty() {
                    break;
                }
            }
            let mut readers = Readers::default();
            let (mailbox, inventory, findings) = Mailbox::new(pool.len().max(1));
            if waiting > 0 {
                for conn in pool.drain(..) {
                    readers.enumerate(
                        conn,
                        Arc::clone(&queue),
                        inventory.clone(),
                        policy.clone(),
                        selection.clone(),
                        Arc::clone(&describe_failed),
                    );
                }
            }
            // The mailbox is done once every sender is gone, so none may outlive its reader.
            match findings_conn.take() {
                Some(conn) => {
                    readers.read_findings(conn, findings_scope.clone(), findings, policy.clone());
                }
                None => drop(findings),
            }
            drop(inventory);
            let joined = self.run_readers(readers, mailbox).await?;
            pool.extend(joined.healthy);
            if let Some(read) = joined.findings {
                self.state.findings = read;
            }
        }
        let left: Vec<String> = queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        if !left.is_empty() {
            let why = open_failure.as_deref().map_or_else(
                || "not read: every connector instance reading registries failed".to_owned(),
                |e| format!("not read: every connector instance reading registries failed and no new one could be opened: {e}"),
            );
            for registry in left {
                self.state.unread(&registry, why.clone());
            }
        }
        if findings_pending {
            // No instance was free for the findings from the start: one reads them now.
            let conn = match pool.pop() {
                Some(conn) => Some(conn),
                None => match open().await {
                    Ok(conn) => Some(conn),
                    Err(err) => {
                        self.state.findings = FindingsRead::Incomplete(format!(
                            "not read: no connector instance could be opened: {err}"
                        ));
                        None
                    }
                },
            };
            if let Some(conn) = conn {
                let (mailbox, _, findings) = Mailbox::new(1);
                let mut readers = Readers::default();
                readers.read_findings(conn, findings_scope, findings, policy.clone());
                let joined = self.run_readers(readers, mailbox).await?;
                pool.extend(joined.healthy);
                if let Some(read) = joined.findings {
                    self.state.findings = read;
                }
            }
        }
        for conn in &pool {
            self.state.requests += conn.requests_sent();
        }
        if self.cancelled() {
            return Err(Stop::Cancelled);
        }
        Ok(())
    }

    /// Writes what `readers` send until every one of them is done, then collects them: the
    /// instances that still work come back (their requests are counted when the run ends), the
    /// others' requests are counted now.
    async fn run_readers<C: Connector + 'static>(
        &mut self,
        readers: Readers<C>,
        mut mailbox: Mailbox,
    ) -> Result<Joined<C>, Stop> {
        if let Err(stop) = self.write_reports(&mut mailbox).await {
            readers.abort();
            return Err(stop);
        }
        let mut joined = Joined {
            healthy: Vec::new(),
            findings: None,
        };
        for ended in readers.join().await {
            let ended = match ended {
                Ok(ended) => ended,
                Err(panic) => {
                    // Whatever that task was reading stays not covered.
                    tracing::warn!(error = %panic, "a connector task failed");
                    self.progress.problem("connector task", &panic);
                    if joined.findings.is_none()
                        && matches!(self.state.findings, FindingsRead::NotRead)
                    {
                        joined.findings = Some(FindingsRead::Incomplete(format!(
                            "a connector task failed: {panic}"
                        )));
                    }
                    continue;
                }
            };
            if let Some(listed) = ended.findings {
                joined.findings = Some(match listed {
                    Ok(_) => FindingsRead::Complete,
                    Err(err) => {
                        let reason = format!("listing findings failed: {err}");
                        self.progress.problem("findings", &reason);
                        FindingsRead::Incomplete(reason)
                    }
                });
            }
            if ended.failed {
                self.state.requests += ended.conn.requests_sent();
            } else {
                joined.healthy.push(ended.conn);
            }
        }
        Ok(joined)
    }

    /// Writes what the readers send until every one of them is done.
    async fn write_reports(&mut self, mailbox: &mut Mailbox) -> Result<(), Stop> {
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
            self.write(report).map_err(Stop::Store)?;
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

    fn write(&mut self, report: Report) -> Result<(), keelson_store::Error> {
        match report {
            Report::Repositories {
                registry,
                repositories,
                deselected,
            } => {
                if deselected > 0 {
                    *self.state.deselected.entry(registry.clone()).or_default() +=
                        deselected as u64;
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
                    .unread(&registry, format!("listing {what} failed: {reason}"));
            }
            Report::RegistryDone { registry } => {
                self.state.done.insert(registry);
            }
            Report::Contexts(contexts) => {
                self.pending_contexts.extend(contexts);
                self.gather()?;
            }
            Report::DescribeFailed(reason) => {
                tracing::warn!(run = %self.run, error = %reason, "describe-images failed; image context skipped");
                self.progress.problem("image context", &reason);
            }
            Report::Findings(items) => self.write_findings(items)?,
        }
        Ok(())
    }

    /// Writes one page of findings, kept when their registry is in scope and their repository
    /// selected. After an incomplete registry listing a registry is in scope when the selection
    /// takes it, listed or not.
    fn write_findings(&mut self, items: Vec<Finding>) -> Result<(), keelson_store::Error> {
        let selection = &self.request.selection;
        let listing_complete = self.state.registry_listing.is_none();
        let read = items.len() as u64;
        let in_scope = &self.state.in_scope;
        let kept: Vec<Finding> = items
            .into_iter()
            .filter(|f| {
                let registry = &f.image.registry;
                let listed = in_scope.binary_search(registry).is_ok();
                (listed || (!listing_complete && selection.registry_in_scope(registry)))
                    && selection.repository_selected(registry, &f.image.repository)
            })
            .collect();
        for f in &kept {
            if in_scope.binary_search(&f.image.registry).is_err()
                && !self.state.unlisted.contains(&f.image.registry)
            {
                self.state.unlisted.insert(f.image.registry.clone());
            }
        }
        let counts = self
            .store
            .ingest_findings(self.run, &self.source_tool, &kept)?;
        self.state.findings_read += read;
        self.state.findings_kept += kept.len() as u64;
        self.progress.findings_page(read, kept.len() as u64, counts);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
