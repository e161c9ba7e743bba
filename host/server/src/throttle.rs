//! Failed sign-ins counted per client address, so a token cannot be guessed at speed.
//!
//! [`LoginThrottle::failed`] records a sign-in (or bearer token) that named no live token;
//! after [`MAX_FAILURES`] of them within [`WINDOW`], [`LoginThrottle::retry_after`] says how long
//! that address must wait, and the guard answers `429` with `Retry-After` without looking at
//! the token at all, so a throttled client learns nothing from trying. IPv6 clients are counted
//! per `/64`, the block one host is usually given. The table is bounded: past
//! [`MAX_CLIENTS`] addresses, new ones share one count.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins an address may make within [`WINDOW`].
pub(crate) const MAX_FAILURES: usize = 5;
/// How far back failures count.
pub(crate) const WINDOW: Duration = Duration::from_mins(1);
/// Addresses counted separately before new ones share a count.
const MAX_CLIENTS: usize = 65_536;

/// The shared count for addresses past [`MAX_CLIENTS`] and for requests of no known address.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[derive(Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// How long `client` must wait before its next sign-in, if it is throttled now.
    pub(crate) fn retry_after(&self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let times = map.get(&key(client))?;
        let recent: Vec<&Instant> = times
            .iter()
            .filter(|t| now.duration_since(**t) < WINDOW)
            .collect();
        if recent.len() < MAX_FAILURES {
            return None;
        }
        // Free again once enough of the recent failures have aged out of the window.
        let freeing = recent[recent.len() - MAX_FAILURES];
        Some(WINDOW.saturating_sub(now.duration_since(*freeing)))
    }

    /// Records a failed sign-in of `client`; returns how many it made within [`WINDOW`].
    pub(crate) fn failed(&self, client: Option<IpAddr>, now: Instant) -> usize {
        let mut map = self.lock();
        let mut key = key(client);
        if !map.contains_key(&key) && map.len() >= MAX_CLIENTS {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
            if map.len() >= MAX_CLIENTS {
                key = OVERFLOW;
            }
        }
        let times = map.entry(key).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        times.push_back(now);
        // Only the newest failures decide anything.
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
        times.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The address a failure counts against: IPv4 as it is, IPv6 by its `/64`.
fn key(client: Option<IpAddr>) -> IpAddr {
    match client {
        None => OVERFLOW,
        Some(IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(v4)
            } else {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }
        Some(v4) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_after_five_failures_in_a_minute_and_freed_after() {
        let t = LoginThrottle::default();
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.retry_after(a, start), None, "after {i} failures");
            t.failed(a, start + Duration::from_secs(i as u64));
        }
        let now = start + Duration::from_secs(10);
        let wait = t.retry_after(a, now).unwrap();
        assert_eq!(
            wait,
            Duration::from_secs(50),
            "the first failure ages out at 60 s"
        );
        assert_eq!(
            t.retry_after(b, now),
            None,
            "another address is not affected"
        );
        assert_eq!(t.retry_after(a, start + WINDOW), None);
        // Failures spread wider than the window never add up.
        let later = start + Duration::from_mins(10);
        for i in 0..10 {
            t.failed(b, later + Duration::from_secs(i * 20));
        }
        assert_eq!(t.retry_after(b, later + Duration::from_secs(181)), None);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_the_unknown_share_one_count() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 1..=MAX_FAILURES {
            t.failed(Some(format!("2001:db8:1:2::{i}").parse().unwrap()), now);
        }
        assert!(
            t.retry_after(Some("2001:db8:1:2::ff".parse().unwrap()), now)
                .is_some()
        );
        assert!(
            t.retry_after(Some("2001:db8:1:3::1".parse().unwrap()), now)
                .is_none()
        );
        for _ in 0..MAX_FAILURES {
            t.failed(None, now);
        }
        assert!(t.retry_after(None, now).is_some());
    }
}
