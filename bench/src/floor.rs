//! The throttling floor: the shortest time in which a set of requests can pass Azure's documented
//! limits, whatever the client does.
//!
//! Every budget is independent (ARM's token bucket, Resource Graph's per-user window, each
//! registry's ReadOps window), so a client that used them all in parallel would finish when the
//! slowest one lets its last request through. The floor is that maximum; it ignores the latency
//! of the requests themselves and the order the APIs force (registries before images), so no real
//! client can beat it.

use std::collections::BTreeMap;
use std::time::Duration;

use azure_sim::{Limits, Sku};

/// Earliest time the `n`-th request passes a fixed window of `limit` requests per `window`,
/// measured from the first: every full window before the last one must run out.
pub(crate) fn window_floor(n: u64, limit: u32, window: Duration) -> Duration {
    if n == 0 || limit == 0 {
        return Duration::ZERO;
    }
    let windows = n.div_ceil(u64::from(limit)) - 1;
    window * u32::try_from(windows).unwrap_or(u32::MAX)
}

/// Earliest time `n` requests pass a token bucket of `capacity` refilled at `per_sec`: the bucket
/// starts full, every request past it waits for a token.
pub(crate) fn bucket_floor(n: u64, capacity: u32, per_sec: f64) -> Duration {
    let over = n.saturating_sub(u64::from(capacity));
    if over == 0 || per_sec <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(over as f64 / per_sec)
}

/// ReadOps per window for a SKU.
pub(crate) fn acr_limit(limits: &Limits, sku: Sku) -> u32 {
    match sku {
        Sku::Basic => limits.acr_read_ops[0],
        Sku::Standard => limits.acr_read_ops[1],
        Sku::Premium => limits.acr_read_ops[2],
    }
}

/// The floor of one scan and which budget sets it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Floor {
    pub(crate) arm: Duration,
    pub(crate) arg: Duration,
    /// The slowest registry's floor and its name.
    pub(crate) acr: (Duration, String),
}

impl Floor {
    /// ARM reads `arm`, Resource Graph queries `arg`, and per registry its SKU and requests.
    pub(crate) fn of(
        limits: &Limits,
        arm: u64,
        arg: u64,
        registries: &BTreeMap<String, (Sku, u64)>,
    ) -> Self {
        let acr = registries
            .iter()
            .map(|(name, (sku, n))| {
                (
                    window_floor(*n, acr_limit(limits, *sku), limits.acr_window),
                    name.clone(),
                )
            })
            .max()
            .unwrap_or_default();
        Self {
            arm: bucket_floor(arm, limits.arm_reads_capacity, limits.arm_reads_per_sec),
            arg: window_floor(arg, limits.arg_queries, limits.arg_window),
            acr,
        }
    }

    pub(crate) fn total(&self) -> Duration {
        self.arm.max(self.arg).max(self.acr.0)
    }

    /// Which budget sets the floor, for the table.
    pub(crate) fn binding(&self) -> String {
        let total = self.total();
        if total.is_zero() {
            "none (everything fits in the first window)".to_owned()
        } else if total == self.arg {
            "Resource Graph".to_owned()
        } else if total == self.arm {
            "ARM reads".to_owned()
        } else {
            format!("ACR ReadOps of `{}`", self.acr.1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_floor_counts_full_windows_before_the_last_request() {
        let w = Duration::from_secs(5);
        assert_eq!(window_floor(0, 15, w), Duration::ZERO);
        assert_eq!(window_floor(15, 15, w), Duration::ZERO);
        assert_eq!(window_floor(16, 15, w), w);
        assert_eq!(window_floor(1000, 15, w), Duration::from_secs(5 * 66));
    }

    #[test]
    fn bucket_floor_spends_the_burst_then_the_refill() {
        assert_eq!(bucket_floor(250, 250, 25.0), Duration::ZERO);
        assert_eq!(bucket_floor(300, 250, 25.0), Duration::from_secs(2));
    }

    #[test]
    fn floor_is_the_slowest_budget() {
        let limits = Limits::default();
        let mut regs = BTreeMap::new();
        regs.insert("basic".to_owned(), (Sku::Basic, 2500));
        regs.insert("premium".to_owned(), (Sku::Premium, 2500));
        let floor = Floor::of(&limits, 10, 20, &regs);
        assert_eq!(floor.acr, (Duration::from_mins(2), "basic".to_owned()));
        assert_eq!(floor.arg, Duration::from_secs(5));
        assert_eq!(floor.total(), Duration::from_mins(2));
        assert_eq!(floor.binding(), "ACR ReadOps of `basic`");
    }
}
