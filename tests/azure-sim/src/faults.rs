//! Fault injection: transient faults that hit a request once, and structural faults that persist
//! (including the named [`Anomaly`] scenarios).
//!
//! A transient fault is decided from the seed and a fingerprint of the request (method, host,
//! path, query and body, never the `Authorization` header), so the same scan against the same
//! seed sees the same faults. Each faulted fingerprint is remembered and its retry succeeds, which
//! is what a correct client needs to recover.

use std::collections::HashSet;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::anomaly::Anomaly;
use crate::util::{hash, unit_of};

/// What can go wrong, and how often.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSpec {
    /// Share of requests answered 429 once (ARM, Resource Graph or ACR flavour).
    pub throttle_share: f64,
    /// Share of requests answered 500/502/503/504 once.
    pub server_error_share: f64,
    /// Share of requests whose connection is closed before any response.
    pub reset_share: f64,
    /// Share of JSON responses cut in half (valid HTTP, broken JSON).
    pub truncate_share: f64,
    /// Share of requests answered with an HTML error page and status 200.
    pub html_share: f64,
    /// ARM `nextLink` and ARG `$skipToken` point back at the page just served (persists).
    pub repeat_page_token: bool,
    /// Resource Graph returns zero rows for every query (persists; the `arg-empty-after-full`
    /// anomaly does the same).
    pub arg_zero_rows: bool,
    /// Tokens older than this are rejected as expired although `expires_in` promised more.
    pub token_max_age_secs: Option<u64>,
    /// Named structural faults (persist); see [`Anomaly`]. Left out of the JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Anomaly>,
}

impl FaultSpec {
    /// The transient mix the `hostile` scenario uses.
    pub fn hostile() -> Self {
        Self {
            throttle_share: 0.04,
            server_error_share: 0.04,
            reset_share: 0.02,
            truncate_share: 0.02,
            html_share: 0.02,
            token_max_age_secs: Some(20),
            ..Self::default()
        }
    }

    /// True when the named anomaly is on.
    pub fn has(&self, anomaly: Anomaly) -> bool {
        self.anomalies.contains(&anomaly)
    }

    /// True when Resource Graph answers zero rows (`arg_zero_rows` or `arg-empty-after-full`).
    pub(crate) fn arg_zero_rows(&self) -> bool {
        self.arg_zero_rows || self.has(Anomaly::ArgEmptyAfterFull)
    }
}

/// A fault that hits one request once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transient {
    Throttle,
    ServerError(u16),
    Reset,
    Truncate,
    Html,
}

impl Transient {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::ServerError(_) => "server_error",
            Self::Reset => "reset",
            Self::Truncate => "truncate",
            Self::Html => "html",
        }
    }
}

/// Remembers which fingerprints were already faulted.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    hit: Mutex<HashSet<u64>>,
}

impl FaultState {
    /// Decides the fault for a request, at most once per fingerprint.
    pub(crate) fn decide(
        &self,
        spec: &FaultSpec,
        seed: u64,
        fingerprint: u64,
    ) -> Option<Transient> {
        let u = unit_of(hash(&[seed, fingerprint, 0xFA17]));
        let mut edge = 0.0;
        let mut pick = None;
        for (share, kind) in [
            (spec.throttle_share, Transient::Throttle),
            (spec.server_error_share, Transient::ServerError(0)),
            (spec.reset_share, Transient::Reset),
            (spec.truncate_share, Transient::Truncate),
            (spec.html_share, Transient::Html),
        ] {
            edge += share.max(0.0);
            if u < edge {
                pick = Some(kind);
                break;
            }
        }
        let kind = pick?;
        let mut hit = self
            .hit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !hit.insert(fingerprint) {
            return None;
        }
        Some(match kind {
            Transient::ServerError(_) => {
                let codes = [500, 502, 503, 504];
                Transient::ServerError(codes[(hash(&[seed, fingerprint, 5]) % 4) as usize])
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_hits_once_and_is_deterministic() {
        let spec = FaultSpec {
            server_error_share: 1.0,
            ..FaultSpec::default()
        };
        let a = FaultState::default();
        let b = FaultState::default();
        let first = a.decide(&spec, 9, 1234);
        assert!(matches!(
            first,
            Some(Transient::ServerError(500 | 502 | 503 | 504))
        ));
        assert_eq!(a.decide(&spec, 9, 1234), None);
        assert_eq!(b.decide(&spec, 9, 1234), first);
    }

    #[test]
    fn shares_are_respected_roughly() {
        let spec = FaultSpec {
            throttle_share: 0.1,
            ..FaultSpec::default()
        };
        let s = FaultState::default();
        let n = (0..10_000)
            .filter(|i| s.decide(&spec, 1, *i).is_some())
            .count();
        assert!((800..1200).contains(&n), "{n}");
    }
}
