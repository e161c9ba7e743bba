//! Scans started from the API, running in the background, and their live progress.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use keelson_scan::Progress;
use keelson_store::{IngestCounts, RunId};
use serde::Serialize;

use crate::{ApiError, AppState};

/// What the page shows of a connection's latest scan started here.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanState {
    /// `running`, `complete`, `partial`, `failed`, `cancelled` or `error`.
    pub state: String,
    pub run: Option<RunId>,
    /// The current step, in words.
    pub message: String,
    pub registries_selected: usize,
    pub repositories_done: u64,
    pub images: u64,
    pub findings: u64,
    pub new: u64,
    pub problems: Vec<String>,
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
    fn begin(&self, name: &str) -> Option<Shared> {
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

/// Starts a scan of `name` in the background as `actor`; refuses a second one.
pub(crate) fn start(state: &AppState, name: &str, actor: &str) -> Result<ScanState, ApiError> {
    state.with_store(|s| {
        s.connection(name)?
            .ok_or_else(|| ApiError::not_found(format!("no connection named `{name}`")))?;
        Ok(s.audit("scan-requested", Some(name), actor, None)?)
    })?;
    let shared = state.scans().begin(name).ok_or_else(|| {
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
            .scan(name.clone(), Box::new(live), cancel)
            .await;
        let mut s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(summary) => {
                summary.run.status.as_str().clone_into(&mut s.state);
                s.run = Some(summary.run.id);
                s.images = summary.images;
                s.findings = summary.findings_kept;
                s.message = match &summary.run.error {
                    Some(e) => e.clone(),
                    None => format!(
                        "{} images, {} findings ({} new, {} resolved)",
                        summary.images,
                        summary.findings_kept,
                        summary.run.findings_new,
                        summary.run.findings_resolved
                    ),
                };
            }
            Err(err) => {
                s.state = "error".into();
                s.message = ApiError::from(err).message;
            }
        }
        tracing::info!(connection = %name, state = %s.state, "scan from the web ended");
    });
    Ok(snapshot)
}
