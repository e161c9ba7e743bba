//! Scans started from the API, running in the background, and their live progress.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use keelson_scan::{Progress, ScanSummary};
use keelson_store::{Coverage, Held, IngestCounts, RunId, RunStatus};
use serde::Serialize;

use crate::{ApiError, AppState};

/// What the page shows of a connection's latest scan started here.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanState {
    /// `running`, then the run's status (`complete`, `partial`, `held`, `failed`, `cancelled`),
    /// or `error` when the scan could not run at all.
    pub state: String,
    pub run: Option<RunId>,
    /// The scan was started with the drop guard pre-approved.
    pub accept_drop: bool,
    /// The current step, in words.
    pub message: String,
    pub registries_selected: usize,
    pub repositories_done: u64,
    pub images: u64,
    pub findings: u64,
    pub new: u64,
    pub problems: Vec<String>,
    /// How completely the run read each scope, once it ended.
    pub coverage: Option<Coverage>,
    /// [`Coverage::summary`] of `coverage`.
    pub coverage_summary: Option<String>,
    /// What it would resolve, when it ended held.
    pub held: Option<Held>,
}

impl ScanState {
    /// Takes in how the scan ended: the run's status, counts, coverage and held reason.
    fn finish(&mut self, summary: &ScanSummary) {
        let run = &summary.run;
        run.status.as_str().clone_into(&mut self.state);
        self.run = Some(run.id);
        self.images = summary.images;
        self.findings = summary.findings_kept;
        let counts = format!(
            "{} images, {} findings ({} new, {} resolved)",
            summary.images, summary.findings_kept, run.findings_new, run.findings_resolved
        );
        let coverage = run.coverage.as_ref().unwrap_or(&summary.coverage);
        let line = coverage.summary();
        self.message = match (run.status, &run.held, &run.error) {
            (RunStatus::Held, Some(held), _) => format!(
                "{counts}; held, nothing resolved: {}",
                crate::runs::held_reason(held)
            ),
            (RunStatus::Partial, ..) => format!("{counts}; partial: {line}"),
            (RunStatus::Complete, ..) => counts,
            (_, _, Some(error)) => error.clone(),
            (status, ..) => format!("{counts}; {status}"),
        };
        self.coverage = Some(coverage.clone());
        self.coverage_summary = Some(line);
        self.held.clone_from(&run.held);
    }
}

type Shared = Arc<Mutex<ScanState>>;

#[derive(Default)]
pub(crate) struct Scans {
    map: Mutex<HashMap<String, Shared>>,
}

impl Scans {
    pub(crate) fn get(&self, name: &str) -> Option<ScanState> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(name).map(|s| {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }

    /// Forgets the last scan of `name`, unless it is running; `false` if it is.
    pub(crate) fn forget(&self, name: &str) -> bool {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = map.get(name).is_some_and(|s| {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .state
                == "running"
        });
        if !running {
            map.remove(name);
        }
        !running
    }

    /// Registers a new running scan of `name`, unless one is running already.
    fn begin(&self, name: &str, accept_drop: bool) -> Option<Shared> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = map.get(name)
            && existing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .state
                == "running"
        {
            return None;
        }
        let shared = Arc::new(Mutex::new(ScanState {
            state: "running".into(),
            message: "starting".into(),
            accept_drop,
            ..ScanState::default()
        }));
        map.insert(name.to_owned(), shared.clone());
        Some(shared)
    }
}

struct Live(Shared);

impl Live {
    fn update(&self, f: impl FnOnce(&mut ScanState)) {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }
}

impl Progress for Live {
    fn started(&mut self, run: RunId) {
        self.update(|s| {
            s.run = Some(run);
            s.message = format!("run {run}: connecting");
        });
    }
    fn registries(&mut self, selected: usize, total: usize) {
        self.update(|s| {
            s.registries_selected = selected;
            s.message = format!("{selected} of {total} registries selected");
        });
    }
    fn registry_started(&mut self, registry: &str, repositories: usize) {
        self.update(|s| s.message = format!("{registry}: {repositories} repositories"));
    }
    fn repository_done(&mut self, registry: &str, repository: &str, images: u64) {
        self.update(|s| {
            s.repositories_done += 1;
            s.images += images;
            s.message = format!("read {registry}/{repository}");
        });
    }
    fn findings_page(&mut self, _read: u64, kept: u64, counts: IngestCounts) {
        self.update(|s| {
            s.findings += kept;
            s.new += counts.new;
            s.message = format!("{} findings stored", s.findings);
        });
    }
    fn problem(&mut self, what: &str, reason: &str) {
        self.update(|s| s.problems.push(format!("{what}: {reason}")));
    }
}

/// Starts a scan of `name` in the background as `actor`; refuses a second one. `accept_drop`
/// pre-approves a resolution the guard would hold, and is on record in the request's event.
pub(crate) fn start(
    state: &AppState,
    name: &str,
    actor: &str,
    accept_drop: bool,
) -> Result<ScanState, ApiError> {
    state.write(|s| {
        s.connection(name)?
            .ok_or_else(|| ApiError::not_found(format!("no connection named `{name}`")))?;
        let detail = accept_drop.then_some("accept-drop");
        Ok(s.audit("scan-requested", Some(name), actor, detail)?)
    })?;
    let shared = state.scans().begin(name, accept_drop).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a scan of `{name}` is already running"),
        )
    })?;
    let snapshot = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let task_state = state.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        let live = Live(shared.clone());
        let cancel = Arc::new(AtomicBool::new(false));
        let result = task_state
            .backend()
            .scan(name.clone(), accept_drop, Box::new(live), cancel)
            .await;
        let mut s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(summary) => s.finish(&summary),
            Err(err) => {
                s.state = "error".into();
                s.message = ApiError::from(err).message;
            }
        }
        tracing::info!(connection = %name, state = %s.state, "scan from the web ended");
    });
    Ok(snapshot)
}
