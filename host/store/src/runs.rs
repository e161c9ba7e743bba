//! Scan runs: the lease on a connection, the outcome, and the one place findings get resolved.

use std::fmt;
use std::str::FromStr;

use keelson_core::ScanScope;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::owner::Liveness;
use crate::seen::{Seen, SeenSet};
use crate::{ConnectionId, Error, Result, RunId, Store, from_json, now, to_json};

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

/// Where a run is in its life. Only `Running` takes data; only `Complete` resolved anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Complete,
    Partial,
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

/// How the scan pipeline ends a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every covered registry was read to the end: findings there that the run did not report are
    /// resolved.
    Complete,
    /// Some of the scope could not be read (throttled, forbidden, truncated). Nothing is resolved.
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
    /// Registries read completely, as reported when the run finished.
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
}

const RUN_COLUMNS: &str = "r.id, c.name, r.trigger, r.requested_scope, r.covered_registries, r.status, r.started_at,
    r.finished_at, r.images_seen, r.findings_new, r.findings_seen, r.findings_reopened, r.findings_updated,
    r.findings_resolved, r.error";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<(RunInfo, String, String, Option<String>)> {
    let count = |i: usize| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
    Ok((
        RunInfo {
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
        },
        row.get(5)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn finish_run_info(parts: (RunInfo, String, String, Option<String>)) -> Result<RunInfo> {
    let (mut info, status, requested, covered) = parts;
    info.status = status.parse()?;
    info.requested_scope = from_json("scan_runs.requested_scope", &requested)?;
    info.covered_registries = covered
        .map(|c| from_json("scan_runs.covered_registries", &c))
        .transpose()?;
    Ok(info)
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
        tx.commit()?;
        Ok(RunId(run))
    }

    /// Ends a running run with `outcome`.
    ///
    /// `covered_registries` are the registries (login servers) whose inventory and findings the run
    /// read completely. If, and only if, the outcome is [`RunOutcome::Complete`], open findings of
    /// this connection in those registries that the run did not report are resolved, and images,
    /// repositories and registries there that it did not see are marked removed — in the same
    /// transaction that marks the run complete. Suppressed findings are never touched.
    pub fn finish_run(
        &mut self,
        run: RunId,
        outcome: &RunOutcome,
        covered_registries: &[String],
    ) -> Result<RunInfo> {
        let tx = self.write()?;
        let at = now(&tx)?;
        let state = running_state(&tx, run)?;
        let mut covered = covered_registries.to_vec();
        covered.sort();
        covered.dedup();
        if !state.requested.is_empty()
            && let Some(outside) = covered.iter().find(|r| !state.requested.contains(r))
        {
            return Err(Error::CoverageOutsideScope {
                run,
                registry: outside.clone(),
            });
        }
        let covered_json = to_json(&covered);
        let status = outcome.status();
        let mut resolved = 0;
        if status == RunStatus::Complete {
            resolved = resolve_unseen(&tx, run, state.connection_id, &covered_json, &at)?;
        }
        let images_seen =
            i64::try_from(SeenSet::load(&tx, run, Seen::Images)?.len()).unwrap_or(i64::MAX);
        tx.execute(
            "UPDATE scan_runs SET status = ?2, finished_at = ?3, covered_registries = ?4, error = ?5,
                 images_seen = ?6, findings_resolved = ?7, owner = NULL
             WHERE id = ?1",
            params![run.0, status.as_str(), at, covered_json, outcome.reason(), images_seen, resolved as i64],
        )?;
        crate::seen::forget(&tx, run, state.connection_id)?;
        tx.execute(
            "INSERT INTO events (at, kind, connection_id, run_id, field, old_value, new_value)
             VALUES (?1, 'run-finished', ?2, ?3, 'status', 'running', ?4)",
            params![at, state.connection_id, run.0, status.as_str()],
        )?;
        tx.commit()?;
        self.run(run)?.ok_or(Error::UnknownRun(run))
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

/// Fills `temp.unseen` with the ids that `candidates` lists (bound to the connection, `?1`, and
/// the covered registries, `?2`) and `seen` lacks. Few things go away per run, so the ids are
/// staged in a temporary table for the statements that act on them.
fn stage_unseen(
    conn: &Connection,
    candidates: &str,
    connection_id: i64,
    covered_json: &str,
    seen: &SeenSet,
) -> Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS unseen (id INTEGER PRIMARY KEY); DELETE FROM temp.unseen;",
    )?;
    let mut listed = conn.prepare_cached(candidates)?;
    let mut unseen = conn.prepare_cached("INSERT INTO temp.unseen (id) VALUES (?1)")?;
    let mut rows = listed.query(params![connection_id, covered_json])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        if !seen.contains(id) {
            unseen.execute([id])?;
        }
    }
    Ok(())
}

/// Resolves what a complete run did not see inside its covered registries; returns how many
/// findings it resolved. Runs inside the transaction that marks the run complete.
fn resolve_unseen(
    conn: &Connection,
    run: RunId,
    connection_id: i64,
    covered_json: &str,
    at: &str,
) -> Result<usize> {
    let seen = SeenSet::load(conn, run, Seen::Findings)?;
    stage_unseen(
        conn,
        "SELECT f.id FROM findings f JOIN issues i ON i.id = f.issue_id
         WHERE f.connection_id = ?1 AND f.status = 'open'
           AND i.registry IN (SELECT value FROM json_each(?2))",
        connection_id,
        covered_json,
        &seen,
    )?;
    const UNSEEN: &str = "SELECT id FROM temp.unseen";
    conn.execute(
        &format!(
            "INSERT INTO events (at, kind, connection_id, issue_id, finding_id, run_id, field, old_value, new_value)
             SELECT ?2, 'resolved', f.connection_id, f.issue_id, f.id, ?1, 'status', 'open', 'resolved'
             FROM findings f WHERE f.id IN ({UNSEEN}) ORDER BY f.id"
        ),
        params![run.0, at],
    )?;
    let resolved = conn.execute(
        &format!(
            "UPDATE findings SET status = 'resolved', resolved_at = ?2, resolved_run_id = ?1
             WHERE id IN ({UNSEEN})"
        ),
        params![run.0, at],
    )?;
    conn.execute(
        "UPDATE registries SET last_covered_at = ?4, last_covered_run_id = ?2
         WHERE connection_id = ?1 AND name IN (SELECT value FROM json_each(?3))",
        params![connection_id, run.0, covered_json, at],
    )?;
    // Inventory that the complete run no longer saw is gone from the source.
    let images = SeenSet::load(conn, run, Seen::Images)?;
    stage_unseen(
        conn,
        "SELECT im.id FROM images im
         JOIN repositories rp ON rp.id = im.repository_id JOIN registries rg ON rg.id = rp.registry_id
         WHERE rg.connection_id = ?1 AND im.removed_at IS NULL
           AND rg.name IN (SELECT value FROM json_each(?2))",
        connection_id,
        covered_json,
        &images,
    )?;
    conn.execute(
        "UPDATE images SET removed_at = ?1 WHERE id IN (SELECT id FROM temp.unseen)",
        [at],
    )?;
    conn.execute(
        "UPDATE repositories SET removed_at = ?4
         WHERE removed_at IS NULL AND last_run_id IS NOT ?2 AND registry_id IN (
             SELECT id FROM registries WHERE connection_id = ?1 AND name IN (SELECT value FROM json_each(?3)))",
        params![connection_id, run.0, covered_json, at],
    )?;
    conn.execute(
        "UPDATE registries SET removed_at = ?4
         WHERE connection_id = ?1 AND removed_at IS NULL AND last_run_id IS NOT ?2
           AND name IN (SELECT value FROM json_each(?3))",
        params![connection_id, run.0, covered_json, at],
    )?;
    Ok(resolved)
}
