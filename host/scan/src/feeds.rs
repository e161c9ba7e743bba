//! The reading half of a run: tasks that each own a connector instance and send what they read
//! to the run, which alone writes to the store.
//!
//! Registries are enumerated by several instances at once ([`DEFAULT_PARALLEL_REGISTRIES`] unless
//! the [`PagingPolicy`] says otherwise), each taking the next
//! registry from a shared queue (every registry has its own ACR budget), and the findings are read
//! by one more instance from the start (Resource Graph is another budget). The plugin work of
//! these tasks runs on other cores than the store's writes. The channel is bounded, so a slow
//! store slows the readers instead of piling pages up in memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use keelson_connector::{CallError, Connector, PageRequest};
use keelson_core::{Finding, Image, ImageContext, ImageRef, Page, Repository, ScanScope};
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::task::JoinHandle;

use crate::{PageSink, PageSource, PagingPolicy, Selection, WalkError, walk_pages};

/// Connector instances enumerating registries at once, unless the [`PagingPolicy`] says otherwise.
pub const DEFAULT_PARALLEL_REGISTRIES: usize = 4;

/// Inventory pages in flight between the enumerators and the store, per enumerator.
const PAGES_IN_FLIGHT: usize = 2;

/// Images asked about per `describe-images` call.
pub const DESCRIBE_BATCH: usize = 100;

/// What a reader tells the run, in the order it read it.
pub(crate) enum Report {
    /// A registry's selected repositories (those listed before a failure, if its listing failed);
    /// `deselected` were left out by the selection.
    Repositories {
        registry: String,
        repositories: Vec<Repository>,
        deselected: usize,
    },
    /// One page of a repository's images.
    Images(Vec<Image>),
    /// A repository's images were read (`images` of them).
    RepositoryDone {
        registry: String,
        repository: String,
        images: u64,
    },
    /// Part of a registry could not be read: `what`, and why.
    Unread {
        registry: String,
        what: String,
        reason: String,
    },
    /// Every repository of the registry was listed and read (any failure was reported as
    /// [`Report::Unread`] before this). A registry is covered only after this arrives.
    RegistryDone { registry: String },
    /// What the connector said about images it listed.
    Contexts(Vec<ImageContext>),
    /// `describe-images` failed; no reader asks again in this run.
    DescribeFailed(String),
    /// One page of findings.
    Findings(Vec<Finding>),
}

/// How a reader task ended: its connector (to count its requests) and, for the findings reader,
/// how the listing ended.
pub(crate) struct Ended<C> {
    pub(crate) conn: C,
    pub(crate) findings: Option<Result<u64, WalkError>>,
    /// The instance failed (a trap, a timeout, a limit) and serves no further calls.
    pub(crate) failed: bool,
}

/// The reader tasks of a run.
pub(crate) struct Readers<C> {
    tasks: Vec<JoinHandle<Ended<C>>>,
}

impl<C> Default for Readers<C> {
    fn default() -> Self {
        Self { tasks: Vec::new() }
    }
}

impl<C: Connector + 'static> Readers<C> {
    /// Starts an enumerator on `conn` taking registries from `queue`.
    pub(crate) fn enumerate(
        &mut self,
        conn: C,
        queue: Arc<Mutex<VecDeque<String>>>,
        reports: Sender<Report>,
        policy: PagingPolicy,
        selection: Selection,
        describe_failed: Arc<AtomicBool>,
    ) {
        self.tasks.push(tokio::spawn(async move {
            let mut enumerator = Enumerator {
                conn,
                reports,
                policy,
                selection,
                describe_failed,
            };
            let mut failed = false;
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop_front();
                let Some(registry) = next else { break };
                match enumerator.registry(&registry).await {
                    Ok(()) => {}
                    Err(Halt::Closed) => break,
                    // The rest of the queue is left to the instances that still work.
                    Err(Halt::InstanceFailed) => {
                        failed = true;
                        break;
                    }
                }
            }
            Ended {
                conn: enumerator.conn,
                findings: None,
                failed,
            }
        }));
    }

    /// Starts the findings reader on `conn` for the registries in `in_scope`.
    pub(crate) fn read_findings(
        &mut self,
        conn: C,
        scope: ScanScope,
        reports: Sender<Report>,
        policy: PagingPolicy,
    ) {
        let mut reader = FindingsReader { conn, scope };
        self.tasks.push(tokio::spawn(async move {
            let mut sink = ReportSink {
                reports: &reports,
                wrap: Report::Findings,
            };
            let listed = walk_pages(&policy, &mut reader, &mut sink).await;
            let failed = matches!(&listed, Err(WalkError::Call(e)) if e.instance_failed());
            Ended {
                conn: reader.conn,
                findings: Some(listed),
                failed,
            }
        }));
    }

    /// Waits for every reader to end. A task that panicked is reported by its message.
    pub(crate) async fn join(self) -> Vec<Result<Ended<C>, String>> {
        let mut ended = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            ended.push(task.await.map_err(|e| e.to_string()));
        }
        ended
    }

    /// Stops every reader now (a cancelled or failed run does not wait for their pages).
    pub(crate) fn abort(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Where the readers' reports arrive: inventory from `enumerators` enumerators, and findings from
/// one reader through a channel of one page (a findings page is the largest thing in flight:
/// about two thousand findings, each with its source row).
pub(crate) struct Mailbox {
    inventory: Option<Receiver<Report>>,
    findings: Option<Receiver<Report>>,
}

impl Mailbox {
    /// The mailbox and the senders for the enumerators and the findings reader.
    pub(crate) fn new(enumerators: usize) -> (Self, Sender<Report>, Sender<Report>) {
        let (inventory_tx, inventory) =
            tokio::sync::mpsc::channel(PAGES_IN_FLIGHT * enumerators.max(1));
        let (findings_tx, findings) = tokio::sync::mpsc::channel(1);
        let mailbox = Self {
            inventory: Some(inventory),
            findings: Some(findings),
        };
        (mailbox, inventory_tx, findings_tx)
    }

    /// A report that has already arrived, inventory first; `None` if none is waiting now.
    pub(crate) fn ready(&mut self) -> Option<Report> {
        use tokio::sync::mpsc::error::TryRecvError;
        for slot in [&mut self.inventory, &mut self.findings] {
            if let Some(receiver) = slot {
                match receiver.try_recv() {
                    Ok(report) => return Some(report),
                    Err(TryRecvError::Disconnected) => *slot = None,
                    Err(TryRecvError::Empty) => {}
                }
            }
        }
        None
    }

    /// The next report, inventory first; `None` once every sender is gone.
    pub(crate) async fn next(&mut self) -> Option<Report> {
        loop {
            let (report, from_inventory) = match (&mut self.inventory, &mut self.findings) {
                (None, None) => return None,
                (Some(inventory), None) => (inventory.recv().await, true),
                (None, Some(findings)) => (findings.recv().await, false),
                (Some(inventory), Some(findings)) => tokio::select! {
                    biased;
                    report = inventory.recv() => (report, true),
                    report = findings.recv() => (report, false),
                },
            };
            match report {
                Some(report) => return Some(report),
                None if from_inventory => self.inventory = None,
                None => self.findings = None,
            }
        }
    }
}

/// Why an enumerator stops taking registries.
enum Halt {
    /// The run stopped listening.
    Closed,
    /// Its connector instance failed; other instances take the rest.
    InstanceFailed,
}

struct Enumerator<C> {
    conn: C,
    reports: Sender<Report>,
    policy: PagingPolicy,
    selection: Selection,
    describe_failed: Arc<AtomicBool>,
}

async fn send(reports: &Sender<Report>, report: Report) -> Result<(), Halt> {
    reports.send(report).await.map_err(|_| Halt::Closed)
}

/// Whether a walk ended because the instance can serve no more calls.
fn instance_failed(err: &WalkError) -> bool {
    matches!(err, WalkError::Call(e) if e.instance_failed())
}

impl<C: Connector> Enumerator<C> {
    /// Repositories and images of one registry, then what the connector says about them.
    ///
    /// A failure is reported and the rest kept: repositories listed before a failed repository
    /// listing are still read, and one repository's failed image listing leaves the others. The
    /// registry is done ([`Report::RegistryDone`]) only when every step was tried; `Err` when the
    /// run stopped listening or the instance failed (the registry then stays not covered).
    async fn registry(&mut self, registry: &str) -> Result<(), Halt> {
        let mut repositories = Vec::new();
        let mut source = Repositories {
            conn: &mut self.conn,
            registry,
        };
        let listed = walk_pages(&self.policy, &mut source, &mut Collect(&mut repositories)).await;
        let mut halted = false;
        if let Err(err) = listed {
            halted = instance_failed(&err);
            send(
                &self.reports,
                Report::Unread {
                    registry: registry.to_owned(),
                    what: format!("repositories of `{registry}`"),
                    reason: err.to_string(),
                },
            )
            .await?;
        }
        let before = repositories.len();
        repositories.retain(|r: &Repository| {
            r.registry == registry && self.selection.repository_selected(registry, &r.name)
        });
        let names: Vec<String> = repositories.iter().map(|r| r.name.clone()).collect();
        send(
            &self.reports,
            Report::Repositories {
                registry: registry.to_owned(),
                deselected: before - repositories.len(),
                repositories,
            },
        )
        .await?;
        if halted {
            return Err(Halt::InstanceFailed);
        }
        // The registry's images, described once it is listed: one registry's worth at a time.
        let mut to_describe: Vec<ImageRef> = Vec::new();
        for repository in names {
            let mut source = Images {
                conn: &mut self.conn,
                registry,
                repository: &repository,
            };
            let mut sink = ImageSink {
                reports: &self.reports,
                images: 0,
                to_describe: &mut to_describe,
            };
            let listed = walk_pages(&self.policy, &mut source, &mut sink).await;
            let images = sink.images;
            let mut halted = false;
            if let Err(err) = listed {
                if matches!(err, WalkError::Stopped(_)) {
                    return Err(Halt::Closed);
                }
                halted = instance_failed(&err);
                send(
                    &self.reports,
                    Report::Unread {
                        registry: registry.to_owned(),
                        what: format!("images of `{registry}/{repository}`"),
                        reason: err.to_string(),
                    },
                )
                .await?;
            }
            send(
                &self.reports,
                Report::RepositoryDone {
                    registry: registry.to_owned(),
                    repository,
                    images,
                },
            )
            .await?;
            if halted {
                return Err(Halt::InstanceFailed);
            }
        }
        send(
            &self.reports,
            Report::RegistryDone {
                registry: registry.to_owned(),
            },
        )
        .await?;
        for batch in to_describe.chunks(DESCRIBE_BATCH) {
            if self.describe_failed.load(Ordering::Relaxed) {
                break;
            }
            match self.conn.describe_images(batch).await {
                Ok(contexts) => send(&self.reports, Report::Contexts(contexts)).await?,
                Err(err) => {
                    self.describe_failed.store(true, Ordering::Relaxed);
                    let failed = err.instance_failed();
                    send(&self.reports, Report::DescribeFailed(err.to_string())).await?;
                    if failed {
                        return Err(Halt::InstanceFailed);
                    }
                }
            }
        }
        Ok(())
    }
}

struct Repositories<'a, C> {
    conn: &'a mut C,
    registry: &'a str,
}

impl<C: Connector> PageSource<Repository> for Repositories<'_, C> {
    async fn fetch(&mut self, request: PageRequest) -> Result<Page<Repository>, CallError> {
        self.conn.list_repositories(self.registry, request).await
    }
}

struct Images<'a, C> {
    conn: &'a mut C,
    registry: &'a str,
    repository: &'a str,
}

impl<C: Connector> PageSource<Image> for Images<'_, C> {
    async fn fetch(&mut self, request: PageRequest) -> Result<Page<Image>, CallError> {
        self.conn
            .list_images(self.registry, self.repository, request)
            .await
    }
}

struct FindingsReader<C> {
    conn: C,
    scope: ScanScope,
}

impl<C: Connector> PageSource<Finding> for FindingsReader<C> {
    async fn fetch(&mut self, request: PageRequest) -> Result<Page<Finding>, CallError> {
        self.conn.list_findings(&self.scope, request).await
    }
}

/// Keeps every item (a registry's repository names are needed to walk its images).
struct Collect<'a, T>(&'a mut Vec<T>);

impl<T: Send> PageSink<T> for Collect<'_, T> {
    async fn accept(&mut self, items: Vec<T>) -> Result<(), String> {
        self.0.extend(items);
        Ok(())
    }
}

const CLOSED: &str = "the run stopped listening";

/// Sends each page on as a report.
struct ReportSink<'a, T> {
    reports: &'a Sender<Report>,
    wrap: fn(Vec<T>) -> Report,
}

impl<T: Send> PageSink<T> for ReportSink<'_, T> {
    async fn accept(&mut self, items: Vec<T>) -> Result<(), String> {
        self.reports
            .send((self.wrap)(items))
            .await
            .map_err(|_| CLOSED.to_owned())
    }
}

/// Sends image pages on and remembers their references for `describe-images`.
struct ImageSink<'a> {
    reports: &'a Sender<Report>,
    images: u64,
    to_describe: &'a mut Vec<ImageRef>,
}

impl PageSink<Image> for ImageSink<'_> {
    async fn accept(&mut self, items: Vec<Image>) -> Result<(), String> {
        self.images += items.len() as u64;
        self.to_describe
            .extend(items.iter().map(|i| i.image_ref.clone()));
        self.reports
            .send(Report::Images(items))
            .await
            .map_err(|_| CLOSED.to_owned())
    }
}
