//! Runs as the API and the page show them, and how current each connection's part of the queue
//! is.
//!
//! [`RunView`] is a recorded run with its coverage in one line. [`QueueConnection`] is what the
//! queue says about one connection: its last run, the time its data is as of, whether that part
//! of the queue is `current` (the last run was complete) and, when it is not, a [`notice`] in
//! words. A connection never scanned, or whose last run failed, is never current: an empty queue
//! must not read as a clean one.

use keelson_store::{ConnectionState, Held, RunId, RunInfo, RunStatus, Store};
use serde::Serialize;

use crate::ApiError;

/// A run with its [`Coverage::summary`](keelson_store::Coverage::summary).
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: RunInfo,
    /// One line for people ("12/14 registries covered; ...; findings: complete"); `None` while
    /// running and for runs finished before coverage was recorded.
    pub coverage_summary: Option<String>,
}

impl From<RunInfo> for RunView {
    fn from(run: RunInfo) -> Self {
        let coverage_summary = run.coverage.as_ref().map(keelson_store::Coverage::summary);
        Self {
            run,
            coverage_summary,
        }
    }
}

/// A connection's newest run, as the queue shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRun {
    pub id: RunId,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub coverage_summary: Option<String>,
    /// What it would resolve, when it is held.
    pub held: Option<Held>,
}

/// One connection's part of the queue: how current it is, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueConnection {
    pub connection: String,
    /// `None` when it was never scanned.
    pub last_run: Option<LastRun>,
    /// When the newest run that stored data (complete, partial or held) finished.
    pub data_as_of: Option<String>,
    /// Its last run was complete: its part of the queue is what the source says now.
    pub current: bool,
    /// Why its part of the queue is not current, in words; `None` when it is.
    pub notice: Option<String>,
}

/// A held run's reason without the command-line hint at its end (the page has a button and the
/// API a route for that).
pub(crate) fn held_reason(held: &Held) -> &str {
    held.reason
        .split_once("; accept with")
        .map_or(held.reason.as_str(), |(reason, _)| reason)
}

/// Why a connection's part of the queue is not current, or `None` when its last run was complete.
pub(crate) fn notice(last_run: Option<&LastRun>) -> Option<String> {
    let Some(run) = last_run else {
        return Some("never scanned: nothing from it is in this queue".to_owned());
    };
    let id = run.id;
    let reason = |fallback: &str| run.error.clone().unwrap_or_else(|| fallback.to_owned());
    let stale = "nothing was resolved, so its part of the queue may be out of date";
    Some(match run.status {
        RunStatus::Complete => return None,
        RunStatus::Running => format!(
            "run {id} is scanning now (started {}); its part of the queue is from before it",
            run.started_at
        ),
        RunStatus::Partial => format!(
            "last run {id} was partial: {}; findings were resolved only where everything was read, the rest stays as it was",
            run.coverage_summary
                .as_deref()
                .or(run.error.as_deref())
                .unwrap_or("some of its scope could not be read")
        ),
        RunStatus::Held => format!(
            "run {id} is held, nothing was resolved: {}",
            run.held.as_ref().map_or(
                "it would resolve a sudden drop of open findings",
                held_reason
            )
        ),
        RunStatus::Failed => format!(
            "last run {id} failed: {}; {stale}",
            reason("no reason was recorded")
        ),
        RunStatus::Cancelled => format!(
            "last run {id} was cancelled: {}; {stale}",
            reason("stopped before it finished")
        ),
        RunStatus::Interrupted => format!(
            "last run {id} was interrupted: {}; {stale}",
            reason("the process running it ended")
        ),
    })
}

fn queue_connection(store: &Store, state: ConnectionState) -> Result<QueueConnection, ApiError> {
    let last_run = match state.last_run {
        None => None,
        Some(brief) => {
            // The brief has no held record; only held runs need the extra lookup.
            let held = if brief.status == RunStatus::Held {
                store.run(brief.id)?.and_then(|r| r.held)
            } else {
                None
            };
            Some(LastRun {
                id: brief.id,
                status: brief.status,
                started_at: brief.started_at,
                finished_at: brief.finished_at,
                error: brief.error,
                coverage_summary: brief.coverage,
                held,
            })
        }
    };
    let current = last_run
        .as_ref()
        .is_some_and(|r| r.status == RunStatus::Complete);
    Ok(QueueConnection {
        connection: state.connection,
        notice: notice(last_run.as_ref()),
        last_run,
        data_as_of: state.data_as_of,
        current,
    })
}

/// Every live connection's part of the queue, by name; only `only` when given (a queue filtered
/// to one connection speaks of that one).
pub(crate) fn queue_connections(
    store: &Store,
    only: Option<&str>,
) -> Result<Vec<QueueConnection>, ApiError> {
    store
        .connection_states()?
        .into_iter()
        .filter(|s| only.is_none_or(|name| s.connection == name))
        .map(|s| queue_connection(store, s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus) -> LastRun {
        LastRun {
            id: RunId(7),
            status,
            started_at: "2026-03-01T09:00:00.000Z".into(),
            finished_at: Some("2026-03-01T09:05:00.000Z".into()),
            error: None,
            coverage_summary: None,
            held: None,
        }
    }

    #[test]
    fn only_a_complete_last_run_has_no_notice() {
        assert_eq!(notice(Some(&run(RunStatus::Complete))), None);
        for status in [
            RunStatus::Running,
            RunStatus::Partial,
            RunStatus::Held,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::Interrupted,
        ] {
            let text = notice(Some(&run(status))).unwrap_or_default();
            assert!(text.contains("run 7"), "{status}: {text}");
        }
        assert_eq!(
            notice(None).as_deref(),
            Some("never scanned: nothing from it is in this queue")
        );
    }

    #[test]
    fn notices_carry_the_reason_the_coverage_and_the_held_numbers() {
        let mut failed = run(RunStatus::Failed);
        failed.error = Some("from plugin `acr`: permission denied".into());
        let text = notice(Some(&failed)).unwrap();
        assert!(
            text.starts_with("last run 7 failed: from plugin `acr`: permission denied;"),
            "{text}"
        );
        assert!(text.contains("may be out of date"), "{text}");

        let mut partial = run(RunStatus::Partial);
        partial.error = Some("1 registry not covered".into());
        partial.coverage_summary =
            Some("1/2 registries covered; b.azurecr.io: 403; findings: complete".into());
        let text = notice(Some(&partial)).unwrap();
        assert!(
            text.contains("partial: 1/2 registries covered; b.azurecr.io: 403; findings: complete"),
            "the coverage line wins over the bare reason: {text}"
        );

        let mut held = run(RunStatus::Held);
        held.held = Some(Held {
            would_resolve: 298,
            open: 298,
            open_in_covered: 298,
            reason: "would resolve 298 of 298 open findings (every open finding in the scopes it read); accept with `keelson runs accept 7`".into(),
            then: RunStatus::Complete,
        });
        assert_eq!(
            notice(Some(&held)).unwrap(),
            "run 7 is held, nothing was resolved: would resolve 298 of 298 open findings (every open finding in the scopes it read)"
        );
    }
}
