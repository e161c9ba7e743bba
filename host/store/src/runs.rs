//! Scan runs: the lease on a connection, the outcome, and the one place findings get resolved.
//!
//! A run is begun ([`Store::begin_run`]), takes pages of data while `running`, and is finished
//! ([`Store::finish_run`]) with its outcome and its [`Coverage`]. A complete or partial run
//! resolves the open findings it did not see, and marks removed the inventory it did not see, only
//! inside the registries it read completely while the findings listing was read to the end
//! ([`Coverage::resolvable`]), only in repositories the operator selected, and in the transaction
//! that ends it. Scopes it did not read keep everything as it was. A failed or cancelled run, or
//! one interrupted by a crash, resolves nothing.
//!
//! Before resolving, the [`ResolveGuard`] is asked: a run that would resolve every open finding of
//! the scopes it read, or too large a share of the connection's open findings, ends `held`
//! instead. It keeps what it added and changed, resolves and removes nothing, and keeps the exact
//! ids it would have resolved and removed until an operator accepts it ([`Store::accept_held`]),
//! which applies exactly that, or a later run of the connection starts, which makes it out of
//! date. [`Store::connection_states`] tells the queue each connection's last run and how recent
//! its data is.

use std::fmt;
use std::str::FromStr;

use keelson_core::ScanScope;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::failpoints::failpoint;
use crate::owner::Liveness;
use crate::resolve::Resolution;
use crate::seen::{Seen, SeenSet};
use crate::{
    ConnectionId, Coverage, Error, Held, ResolveGuard, Result, RunId, Store, from_json, now,
    to_json,
};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunTrigger {
    /// An operator asked (`keelson scan`, "Scan now").
    Manual,
    /// The scheduler of `keelson run`.
    Schedule,
    /// A call to the local API.
    Api,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Schedule => "schedule",
            Self::Api => "api",
        }
    }
}

/// Where a run is in its life. Only `Running` takes data; `Complete` and `Partial` resolved
/// inside the scopes they read completely; `Held` resolves nothing until it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    /// Everything in scope was read.
    Complete,
    /// Some of the scope could not be read; the rest was brought up to date.
    Partial,
    /// It would have resolved a sudden drop; its resolution waits for an operator
    /// ([`Store::accept_held`]).
    Held,
    Failed,
    Cancelled,
    /// The process running it died; found and marked by recovery.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Held => "held",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => Self::Running,
            "complete" => Self::Complete,
            "partial" => Self::Partial,
            "held" => Self::Held,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "interrupted" => Self::Interrupted,
            other => {
                return Err(Error::Corrupt {
                    column: "scan_runs.status",
                    reason: format!("`{other}`"),
                });
            }
        })
    }
}

/// How the scan pipeline ends a run. Where a complete or partial run resolves is decided by its
/// [`Coverage`], not by the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Everything in scope was read to the end: findings there that the run did not report are
    /// resolved.
    Complete,
    /// Some of the scope could not be read (throttled, forbidden, truncated). Findings are
    /// resolved only inside the scopes that were read completely.
    Partial { reason: String },
    /// The run stopped on an error. Nothing is resolved.
    Failed { reason: String },
    /// An operator or shutdown stopped it. Nothing is resolved.
    Cancelled,
}

impl RunOutcome {
    fn status(&self) -> RunStatus {
        match self {
            Self::Complete => RunStatus::Complete,
            Self::Partial { .. } => RunStatus::Partial,
            Self::Failed { .. } => RunStatus::Failed,
            Self::Cancelled => RunStatus::Cancelled,
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Self::Partial { reason } | Self::Failed { reason } => Some(reason),
            Self::Complete | Self::Cancelled => None,
        }
    }
}

/// A run as recorded, with its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: RunId,
    pub connection: String,
    pub trigger: String,
    /// Registries asked for; empty means all.
    pub requested_scope: Vec<String>,
    /// Registries the run may resolve in ([`Coverage::resolvable`]), as reported when it
    /// finished; only a complete, partial or accepted held run resolved there.
    pub covered_registries: Option<Vec<String>>,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub images_seen: u64,
    pub findings_new: u64,
    pub findings_seen: u64,
    pub findings_reopened: u64,
    pub findings_updated: u64,
    pub findings_resolved: u64,
    pub error: Option<String>,
    /// How completely it read each scope; `None` while running and for runs finished before
    /// coverage was recorded.
    pub coverage: Option<Coverage>,
    /// What it would have resolved, when it was held (kept after it is accepted).
    pub held: Option<Held>,
    /// When an operator accepted its held resolution.
    pub accepted_at: Option<String>,
    /// Who accepted it.
    pub accepted_by: Option<String>,
}

const RUN_COLUMNS: &str = "r.id, c.name, r.trigger, r.requested_scope, r.covered_registries, r.status, r.started_at,
    r.finished_at, r.images_seen, r.findings_new, r.findings_seen, r.findings_reopened, r.findings_updated,
    r.findings_resolved, r.error, r.coverage, r.held, r.accepted_at, r.accepted_by";

/// A run's row with its text columns not yet parsed (parsing errors are the store's, not SQLite's).
struct RunRow {
    info: RunInfo,
    status: String,
    requested: String,
    covered: Option<String>,
    coverage: Option<String>,
    held: Option<String>,
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
    let count = |i: usize| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
    Ok(RunRow {
        info: RunInfo {
            id: RunId(row.get(0)?),
            connection: row.get(1)?,
            trigger: row.get(2)?,
            requested_scope: Vec::new(),
            covered_registries: None,
            status: RunStatus::Running,
            started_at: row.get(6)?,
            finished_at: row.get(7)?,
            images_seen: count(8)?,
            findings_new: count(9)?,
            findings_seen: count(10)?,
            findings_reopened: count(11)?,
            findings_updated: count(12)?,
            findings_resolved: count(13)?,
            error: row.get(14)?,
            coverage: None,
            held: None,
            accepted_at: row.get(17)?,
            accepted_by: row.get(18)?,
        },
        status: row.get(5)?,
        requested: row.get(3)?,
        covered: row.get(4)?,
        coverage: row.get(15)?,
        held: row.get(16)?,
    })
}

fn finish_run_info(row: RunRow) -> Result<RunInfo> {
    let mut info = row.info;
    info.status = row.status.parse()?;
    info.requested_scope = from_json("scan_runs.requested_scope", &row.requested)?;
    info.covered_registries = row
        .covered
        .map(|c| from_json("scan_runs.covered_registries", &c))
        .transpose()?;
    info.coverage = row
        .coverage
        .map(|c| from_json("scan_runs.coverage", &c))
        .transpose()?;
    info.held = row
        .held
        .map(|h| from_json("scan_runs.held", &h))
        .transpose()?;
    Ok(info)
}

/// The last run of a connection, as the queue's footer and banner show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBrief {
    pub id: RunId,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// [`Coverage::summary`] of the run; `None` while running or if it recorded none.
    pub coverage: Option<String>,
}

/// A live connection's last run and how recent its data is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionState {
    pub connection: String,
    /// The newest run (any status, running included).
    pub last_run: Option<RunBrief>,
    /// `finished_at` of the newest run that stored data (complete, partial or held); `None` if none.
    pub data_as_of: Option<String>,
}

/// The state of a run as a writer checks it before touching data.
pub(crate) struct RunState {
    pub(crate) connection_id: i64,
    pub(crate) status: RunStatus,
    pub(crate) requested: Vec<String>,
}

pub(crate) fn run_state(conn: &Connection, run: RunId) -> Result<RunState> {
    let row: Option<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT connection_id, status, requested_scope FROM scan_runs WHERE id = ?1",
        )?
        .query_row([run.0], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let (connection_id, status, requested) = row.ok_or(Error::UnknownRun(run))?;
    Ok(RunState {
        connection_id,
        status: status.parse()?,
        requested: from_json("scan_runs.requested_scope", &requested)?,
    })
}

/// Refuses data for a run that is not running (finished, or interrupted by recovery).
pub(crate) fn running_state(conn: &Connection, run: RunId) -> Result<RunState> {
    let state = run_state(conn, run)?;
    if state.status == RunStatus::Running {
        Ok(state)
    } else {
        Err(Error::RunNotRunning {
            run,
            status: state.status,
        })
    }
}

const INTERRUPTED_REASON: &str = "the process running this scan ended before it finished";

fn interrupt(conn: &Connection, run: i64, connection_id: i64, at: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE scan_runs SET status = 'interrupted', finished_at = ?2, error = ?3, owner = NULL
         WHERE id = ?1 AND status = 'running'",
        params![run, at, INTERRUPTED_REASON],
    )?;
    conn.execute(
        "INSERT INTO events (at, kind, connection_id, run_id, actor, field, old_value, new_value)
         VALUES (?1, 'run-interrupted', ?2, ?3, 'recovery', 'status', 'running', 'interrupted')",
        params![at, connection_id, run],
    )?;
    Ok(())
}

impl Store {
    /// Starts a run of connection `connection` and takes its lease.
    ///
    /// A second run of the same connection while one is running (in this or another live process)
    /// is refused with [`Error::AlreadyRunning`]. A run left `running` by a dead process is marked
    /// `interrupted` first. Expired suppressions are lifted so the run sees current triage.
    pub fn begin_run(
        &mut self,
        connection: &str,
        trigger: RunTrigger,
        requested: &ScanScope,
    ) -> Result<RunId> {
        let Store { conn, owner } = self;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = now(&tx)?;
        let connection_id: i64 = tx
            .prepare_cached("SELECT id FROM connections WHERE name = ?1 AND retired_at IS NULL")?
            .query_row([connection], |row| row.get(0))
            .optional()?
            .ok_or_else(|| Error::UnknownConnection(connection.to_owned()))?;
        let running: Option<(i64, Option<String>)> = tx
            .prepare_cached(
                "SELECT id, owner FROM scan_runs WHERE connection_id = ?1 AND status = 'running'",
            )?
            .query_row([connection_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if let Some((run, run_owner)) = running {
            match owner.liveness(run_owner.as_deref()) {
                Liveness::Alive => {
                    return Err(Error::AlreadyRunning {
                        connection: connection.to_owned(),
                        run: RunId(run),
                    });
                }
                Liveness::Dead => interrupt(&tx, run, connection_id, &at)?,
            }
        }
        crate::queue::expire_suppressions_in(&tx, &at)?;
        let mut scope = requested.registries.clone();
        scope.sort();
        scope.dedup();
        let inserted = tx.query_row(
            "INSERT INTO scan_runs (connection_id, trigger, requested_scope, status, owner, started_at)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5) RETURNING id",
            params![connection_id, trigger.as_str(), to_json(&scope), owner.token(), at],
            |row| row.get::<_, i64>(0),
        );
        let run = match inserted {
            Ok(run) => run,
            // The partial unique index is the lease; IMMEDIATE makes this unreachable in practice.
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                let run: i64 = tx.query_row(
                    "SELECT id FROM scan_runs WHERE connection_id = ?1 AND status = 'running'",
                    [connection_id],
                    |row| row.get(0),
                )?;
                return Err(Error::AlreadyRunning {
                    connection: connection.to_owned(),
                    run: RunId(run),
                });
            }
            Err(e) => return Err(e.into()),
        };
        tx.execute(
            "INSERT INTO events (at, kind, connection_id, run_id, new_value) VALUES (?1, 'run-started', ?2, ?3, ?4)",
            params![at, connection_id, run, trigger.as_str()],
        )?;
        failpoint!("store::begin_run::before_commit");
        tx.commit()?;
        Ok(RunId(run))
    }

    /// Ends a running run with `outcome` and what it read, `coverage`.
    ///
    /// A [`RunOutcome::Failed`] or [`RunOutcome::Cancelled`] run resolves and removes nothing. A
    /// complete or partial one resolves the open findings of this connection that it did not
    /// report, and marks removed the images, repositories and registries that it did not see, only
    /// inside [`Coverage::resolvable`] and only where `selected(registry, repository)` holds; the
    /// registries there with no deselected repository get `last_covered_at` (an open finding
    /// there was seen by this run). Suppressed findings are never touched. All of it happens in
    /// the transaction that ends the run.
    ///
    /// Before anything is resolved `guard` is asked ([`ResolveGuard::holds`], with what the run
    /// would resolve, the connection's open findings, and those inside the resolvable, selected
    /// scope). A held run ends [`RunStatus::Held`]: what it added and changed stays, nothing is
    /// resolved or removed, and the ids it would resolve and remove are kept for
    /// [`Store::accept_held`].
    ///
    /// Refused with [`Error::CoverageOutsideScope`] when a registry reported as read completely is
    /// outside the scope the run was begun with.
    pub fn finish_run(
        &mut self,
        run: RunId,
        outcome: &RunOutcome,
        coverage: &Coverage,
        guard: &ResolveGuard,
        selected: &dyn Fn(&str, &str) -> bool,
    ) -> Result<RunInfo> {
        let tx = self.write()?;
        let at = now(&tx)?;
        let state = running_state(&tx, run)?;
        let coverage = coverage.clone().normalised();
        if !state.requested.is_empty()
            && let Some(outside) = coverage
                .registries
                .iter()
                .find(|r| r.uncovered.is_none() && !state.requested.contains(&r.registry))
        {
            return Err(Error::CoverageOutsideScope {
                run,
                registry: outside.registry.clone(),
            });
        }
        let resolvable = coverage.resolvable();
        let resolvable_json = to_json(&resolvable);
        let mut status = outcome.status();
        let mut resolved = 0;
        let mut held = None;
        failpoint!("store::finish_run::before_resolve");
        if matches!(status, RunStatus::Complete | RunStatus::Partial) {
            let plan =
                Resolution::compute(&tx, run, state.connection_id, &resolvable_json, selected)?;
            let counts = (plan.findings.len() as u64, plan.open, plan.open_in_covered);
            if let Some(why) = guard.reason(counts.0, counts.1, counts.2) {
                plan.persist(&tx, run)?;
                held = Some(Held::new(run, guard, why, counts, status));
                status = RunStatus::Held;
            } else {
                resolved = plan.apply(&tx, run, &at, None)?.findings;
                mark_covered(&tx, run, state.connection_id, &coverage, &at)?;
            }
        }
        failpoint!("store::finish_run::after_resolve");
        let images_seen =
            i64::try_from(SeenSet::load(&tx, run, Seen::Images)?.len()).unwrap_or(i64::MAX);
        tx.execute(
            "UPDATE scan_runs SET status = ?2, finished_at = ?3, covered_registries = ?4, error = ?5,
                 images_seen = ?6, findings_resolved = ?7, coverage = ?8, held = ?9, owner = NULL
             WHERE id = ?1",
            params![
                run.0,
                status.as_str(),
                at,
                resolvable_json,
                outcome.reason(),
                images_seen,
                resolved as i64,
                to_json(&coverage),
                held.as_ref().map(to_json)
            ],
        )?;
        crate::seen::forget(&tx, run, state.connection_id)?;
        crate::resolve::drop_superseded(&tx, run, state.connection_id)?;
        tx.execute(
            "INSERT INTO events (at, kind, connection_id, run_id, field, old_value, new_value)
             VALUES (?1, 'run-finished', ?2, ?3, 'status', 'running', ?4)",
            params![at, state.connection_id, run.0, status.as_str()],
        )?;
        failpoint!("store::finish_run::before_commit");
        tx.commit()?;
        failpoint!("store::finish_run::after_commit");
        self.run(run)?.ok_or(Error::UnknownRun(run))
    }

    /// Applies exactly the resolution a held run computed; `actor` goes to the audit event.
    ///
    /// Refused with [`Error::NotHeld`] unless the run is `held`, and with
    /// [`Error::HeldSuperseded`] once a later run of its connection has started (its resolution
    /// no longer matches what the source says). Otherwise, in one transaction: the findings it
    /// would have resolved that are still open are resolved (events name the held run and
    /// `actor`), the inventory it would have removed is marked removed, its covered registries get
    /// `last_covered_at` (its finish time), it takes the status it was held from, and a
    /// `run-accepted` event records `actor` and the counts.
    pub fn accept_held(&mut self, run: RunId, actor: &str) -> Result<RunInfo> {
        let tx = self.write()?;
        let at = now(&tx)?;
        /// The columns of a held run that an accept needs.
        struct Record {
            connection_id: i64,
            status: String,
            coverage: Option<String>,
            held: Option<String>,
            finished_at: Option<String>,
        }
        let Record {
            connection_id,
            status,
            coverage,
            held,
            finished_at,
        } = tx
            .prepare_cached(
                "SELECT connection_id, status, coverage, held, finished_at FROM scan_runs WHERE id = ?1",
            )?
            .query_row([run.0], |row| {
                Ok(Record {
                    connection_id: row.get(0)?,
                    status: row.get(1)?,
                    coverage: row.get(2)?,
                    held: row.get(3)?,
                    finished_at: row.get(4)?,
                })
            })
            .optional()?
            .ok_or(Error::UnknownRun(run))?;
        let status: RunStatus = status.parse()?;
        if status != RunStatus::Held {
            return Err(Error::NotHeld { run, status });
        }
        let newer: Option<i64> = tx
            .prepare_cached("SELECT min(id) FROM scan_runs WHERE connection_id = ?1 AND id > ?2")?
            .query_row(params![connection_id, run.0], |row| row.get(0))?;
        if let Some(newer) = newer {
            return Err(Error::HeldSuperseded {
                run,
                newer: RunId(newer),
            });
        }
        let missing = |column: &'static str| Error::Corrupt {
            column,
            reason: format!("held run `{run}` has none"),
        };
        let held: Held = from_json(
            "scan_runs.held",
            &held.ok_or_else(|| missing("scan_runs.held"))?,
        )?;
        let coverage: Coverage = from_json(
            "scan_runs.coverage",
            &coverage.ok_or_else(|| missing("scan_runs.coverage"))?,
        )?;
        let finished_at = finished_at.ok_or_else(|| missing("scan_runs.finished_at"))?;
        if !matches!(held.then, RunStatus::Complete | RunStatus::Partial) {
            return Err(Error::Corrupt {
                column: "scan_runs.held",
                reason: format!("held run `{run}` would become `{}`", held.then),
            });
        }
        let plan = Resolution::load(&tx, run)?;
        let applied = plan.apply(&tx, run, &at, Some(actor))?;
        mark_covered(&tx, run, connection_id, &coverage, &finished_at)?;
        tx.execute(
            "UPDATE scan_runs SET status = ?2, findings_resolved = ?3, accepted_at = ?4, accepted_by = ?5
             WHERE id = ?1",
            params![run.0, held.then.as_str(), applied.findings as i64, at, actor],
        )?;
        crate::resolve::drop_held(&tx, run)?;
        let detail = serde_json::json!({
            "status": held.then,
            "findings_resolved": applied.findings,
            "images_removed": applied.images,
        });
        tx.execute(
            "INSERT INTO events (at, kind, connection_id, run_id, actor, field, old_value, new_value)
             VALUES (?1, 'run-accepted', ?2, ?3, ?4, 'resolution', 'held', ?5)",
            params![at, connection_id, run.0, actor, detail.to_string()],
        )?;
        failpoint!("store::accept_held::before_commit");
        tx.commit()?;
        failpoint!("store::accept_held::after_commit");
        self.run(run)?.ok_or(Error::UnknownRun(run))
    }

    /// Each live (not retired) connection's last run and "data as of", for the queue's footer and
    /// banner, by connection name; connections never scanned have `last_run: None`.
    pub fn connection_states(&self) -> Result<Vec<ConnectionState>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.name, r.id, r.status, r.started_at, r.finished_at, r.error, r.coverage,
                 (SELECT d.finished_at FROM scan_runs d
                  WHERE d.connection_id = c.id AND d.status IN ('complete', 'partial', 'held')
                  ORDER BY d.id DESC LIMIT 1)
             FROM connections c
             LEFT JOIN scan_runs r ON r.id = (
                 SELECT max(l.id) FROM scan_runs l WHERE l.connection_id = c.id)
             WHERE c.retired_at IS NULL
             ORDER BY c.name",
        )?;
        type Raw = (
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Raw> = stmt
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(
                |(connection, id, status, started_at, finished_at, error, coverage, data_as_of)| {
                    let last_run = match (id, status, started_at) {
                        (Some(id), Some(status), Some(started_at)) => Some(RunBrief {
                            id: RunId(id),
                            status: status.parse()?,
                            started_at,
                            finished_at,
                            error,
                            coverage: coverage
                                .map(|c| from_json::<Coverage>("scan_runs.coverage", &c))
                                .transpose()?
                                .map(|c| c.summary()),
                        }),
                        _ => None,
                    };
                    Ok(ConnectionState {
                        connection,
                        last_run,
                        data_as_of,
                    })
                },
            )
            .collect()
    }

    /// Marks every `running` run whose owning process is gone as `interrupted`. Called by
    /// [`Store::open`]; a daemon may call it again at any time. Returns the runs it marked.
    pub fn recover_interrupted(&mut self) -> Result<Vec<RunId>> {
        let Store { conn, owner } = self;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = now(&tx)?;
        let running: Vec<(i64, i64, Option<String>)> = tx
            .prepare_cached("SELECT id, connection_id, owner FROM scan_runs WHERE status = 'running' ORDER BY id")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut recovered = Vec::new();
        for (run, connection_id, run_owner) in running {
            if owner.liveness(run_owner.as_deref()) == Liveness::Dead {
                interrupt(&tx, run, connection_id, &at)?;
                recovered.push(RunId(run));
            }
        }
        tx.commit()?;
        Ok(recovered)
    }

    /// One run, with its counts.
    pub fn run(&self, run: RunId) -> Result<Option<RunInfo>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM scan_runs r JOIN connections c ON c.id = r.connection_id WHERE r.id = ?1"
        );
        let parts = self
            .conn
            .prepare_cached(&sql)?
            .query_row([run.0], run_from_row)
            .optional()?;
        parts.map(finish_run_info).transpose()
    }

    /// The latest runs, newest first, of one connection or of all.
    pub fn runs(&self, connection: Option<&str>, limit: usize) -> Result<Vec<RunInfo>> {
        let connection_id = connection
            .map(|name| self.connection_id(name))
            .transpose()?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM scan_runs r JOIN connections c ON c.id = r.connection_id
             WHERE ?1 IS NULL OR r.connection_id = ?1 ORDER BY r.id DESC LIMIT ?2"
        );
        let rows: Vec<_> = self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                params![connection_id.map(|c: ConnectionId| c.0), limit as i64],
                run_from_row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter().map(finish_run_info).collect()
    }
}

/// Moves `last_covered_at` to `at` for the resolvable registries of `coverage` that have no
/// deselected repository: an open finding there was seen by `run`, or it would be resolved. A
/// deselected repository's findings were not read, so such a registry keeps its older date.
fn mark_covered(
    conn: &Connection,
    run: RunId,
    connection_id: i64,
    coverage: &Coverage,
    at: &str,
) -> Result<()> {
    let whole: Vec<String> = coverage
        .resolvable()
        .into_iter()
        .filter(|name| {
            coverage
                .registries
                .iter()
                .all(|r| &r.registry != name || r.deselected == 0)
        })
        .collect();
    conn.prepare_cached(
        "UPDATE registries SET last_covered_at = ?4, last_covered_run_id = ?2
         WHERE connection_id = ?1 AND name IN (SELECT value FROM json_each(?3))",
    )?
    .execute(params![connection_id, run.0, to_json(&whole), at])?;
    Ok(())
}
