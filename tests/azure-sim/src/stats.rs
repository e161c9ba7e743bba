//! Request accounting: counts by endpoint and status, and injected faults by kind.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Live counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    faults: BTreeMap<String, u64>,
    registries: BTreeMap<String, u64>,
}

impl Stats {
    pub(crate) fn record(&self, endpoint: &str, status: u16) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g.requests.entry((endpoint.to_owned(), status)).or_default() += 1;
    }

    /// Counts one request to a registry's data plane host (each registry has its own ReadOps budget).
    pub(crate) fn record_registry(&self, registry: &str) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g.registries.entry(registry.to_owned()).or_default() += 1;
    }

    /// Requests per registry data plane host since the last reset.
    pub(crate) fn registries(&self) -> BTreeMap<String, u64> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .registries
            .clone()
    }

    pub(crate) fn record_fault(&self, kind: &str) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g.faults.entry(kind.to_owned()).or_default() += 1;
    }

    pub(crate) fn reset(&self) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = Inner::default();
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        StatsSnapshot {
            requests: g
                .requests
                .iter()
                .map(|((endpoint, status), count)| StatEntry {
                    endpoint: endpoint.clone(),
                    status: *status,
                    count: *count,
                })
                .collect(),
            faults: g.faults.clone(),
        }
    }
}

/// One counter: requests to `endpoint` answered with `status` (0 = connection reset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    pub endpoint: String,
    pub status: u16,
    pub count: u64,
}

/// A copy of the counters. Endpoint names: `entra.token`, `arm.subscriptions`, `arm.subscription`,
/// `arm.registries`, `arm.registry`, `arg.resources`, `entra.discovery`, `acr.base`, `acr.exchange`, `acr.token`,
/// `acr.catalog`, `acr.tags`, `acr.manifests`, `acr.repository`, `acr.manifest`, `sim.control`,
/// `unknown`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub requests: Vec<StatEntry>,
    pub faults: BTreeMap<String, u64>,
}

impl StatsSnapshot {
    /// Requests to `endpoint` answered with `status`.
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.requests
            .iter()
            .filter(|e| e.endpoint == endpoint && e.status == status)
            .map(|e| e.count)
            .sum()
    }

    /// All requests to `endpoint`.
    pub fn total(&self, endpoint: &str) -> u64 {
        self.requests
            .iter()
            .filter(|e| e.endpoint == endpoint)
            .map(|e| e.count)
            .sum()
    }

    /// All requests.
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().map(|e| e.count).sum()
    }

    /// Injected faults of a kind (`throttle`, `server_error`, `reset`, `truncate`, `html`).
    pub fn faults(&self, kind: &str) -> u64 {
        self.faults.get(kind).copied().unwrap_or(0)
    }
}
