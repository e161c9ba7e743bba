//! Throttling as Azure documents it: ARM token buckets, the Resource Graph per-user window and
//! ACR ReadOps per minute by SKU. Limits and windows are injectable so tests stay fast.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::tenant::Sku;

/// The limits the simulator enforces when throttling is on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// ARM subscription/tenant reads bucket size (250).
    pub arm_reads_capacity: u32,
    /// ARM bucket refill per second (25).
    pub arm_reads_per_sec: f64,
    /// Resource Graph queries per user per window (15).
    pub arg_queries: u32,
    /// Resource Graph window (5 s).
    pub arg_window: Duration,
    /// ACR ReadOps per window for Basic, Standard, Premium (1000, 3000, 10000).
    pub acr_read_ops: [u32; 3],
    /// ACR window (60 s).
    pub acr_window: Duration,
    /// `Retry-After` seconds on injected transient 429s and 503s.
    pub fault_retry_after_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            arm_reads_capacity: 250,
            arm_reads_per_sec: 25.0,
            arg_queries: 15,
            arg_window: Duration::from_secs(5),
            acr_read_ops: [1000, 3000, 10_000],
            acr_window: Duration::from_mins(1),
            fault_retry_after_secs: 1,
        }
    }
}

impl Limits {
    pub(crate) fn acr_limit(&self, sku: Sku) -> u32 {
        match sku {
            Sku::Basic => self.acr_read_ops[0],
            Sku::Standard => self.acr_read_ops[1],
            Sku::Premium => self.acr_read_ops[2],
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    used: u32,
}

/// Outcome of a throttled operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Allowed; `remaining` after this request, window `resets_after`.
    Allowed {
        remaining: u32,
        resets_after: Duration,
    },
    /// Refused; retry after this long.
    Throttled { retry_after: Duration },
}

/// All throttling state, keyed by caller.
#[derive(Debug, Default)]
pub(crate) struct Throttles {
    buckets: Mutex<HashMap<String, Bucket>>,
    windows: Mutex<HashMap<String, Window>>,
}

impl Throttles {
    /// Takes one token from a bucket of `capacity` refilled at `per_sec`.
    pub(crate) fn bucket(&self, key: &str, capacity: u32, per_sec: f64) -> Verdict {
        let now = Instant::now();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = map.entry(key.to_owned()).or_insert(Bucket {
            tokens: f64::from(capacity),
            last: now,
        });
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(f64::from(capacity));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Verdict::Allowed {
                remaining: b.tokens.floor() as u32,
                resets_after: Duration::ZERO,
            }
        } else {
            let secs = ((1.0 - b.tokens) / per_sec.max(0.001)).ceil().max(1.0);
            Verdict::Throttled {
                retry_after: Duration::from_secs_f64(secs),
            }
        }
    }

    /// Counts one operation in a fixed window of `limit` per `window`.
    pub(crate) fn window(&self, key: &str, limit: u32, window: Duration) -> Verdict {
        let now = Instant::now();
        let mut map = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = map.entry(key.to_owned()).or_insert(Window {
            start: now,
            used: 0,
        });
        if now.duration_since(w.start) >= window {
            w.start = now;
            w.used = 0;
        }
        let resets_after = window.saturating_sub(now.duration_since(w.start));
        if w.used < limit {
            w.used += 1;
            Verdict::Allowed {
                remaining: limit - w.used,
                resets_after,
            }
        } else {
            Verdict::Throttled {
                retry_after: resets_after,
            }
        }
    }

    /// Remaining quota in a window without using any.
    pub(crate) fn window_remaining(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> (u32, Duration) {
        let now = Instant::now();
        let map = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(key) {
            Some(w) if now.duration_since(w.start) < window => (
                limit.saturating_sub(w.used),
                window.saturating_sub(now.duration_since(w.start)),
            ),
            _ => (limit, window),
        }
    }
}

/// Rounds a duration up to whole seconds, at least one.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_allows_limit_then_throttles() {
        let t = Throttles::default();
        for i in 0..15 {
            match t.window("u", 15, Duration::from_secs(5)) {
                Verdict::Allowed { remaining, .. } => assert_eq!(remaining, 14 - i),
                Verdict::Throttled { .. } => panic!("throttled early at {i}"),
            }
        }
        assert!(matches!(
            t.window("u", 15, Duration::from_secs(5)),
            Verdict::Throttled { .. }
        ));
    }

    #[test]
    fn bucket_drains_and_reports_remaining() {
        let t = Throttles::default();
        assert!(matches!(
            t.bucket("k", 2, 0.001),
            Verdict::Allowed { remaining: 1, .. }
        ));
        assert!(matches!(
            t.bucket("k", 2, 0.001),
            Verdict::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(t.bucket("k", 2, 0.001), Verdict::Throttled { .. }));
    }
}
