//! Name resolution for the egress gate: operator pins, the lookup itself, and the `reqwest`
//! resolver that hands the connector only addresses the gate already checked.
//!
//! The gate resolves a name once per hop, checks every address, and records the survivors in
//! [`CheckedAddrs`]. The client's [`PinnedResolver`] answers from that record only and never looks
//! a target name up again, so a DNS answer that changes between check and connect (rebinding)
//! cannot redirect the socket.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::BoxFuture;

use crate::{Error, ResolvePin};

/// Resolves a host name to addresses. The system resolver in production; tests substitute
/// their own to play DNS tricks.
pub trait Lookup: Send + Sync {
    fn lookup(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (`getaddrinfo` via tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Validated operator pins: exact names win over `*.suffix` ones, longer suffixes over shorter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pins {
    exact: HashMap<String, Vec<IpAddr>>,
    /// IP literals the operator vouches for; kept apart so no `*.suffix` pin can cover one.
    literals: Vec<IpAddr>,
    /// `(".suffix", addrs)`, longest suffix first.
    below: Vec<(String, Vec<IpAddr>)>,
}

impl Pins {
    pub(crate) fn new(pins: &[ResolvePin]) -> Result<Self, Error> {
        let mut out = Self::default();
        for pin in pins {
            let invalid = |reason: &str| Error::InvalidResolvePin {
                name: pin.name.clone(),
                reason: reason.to_owned(),
            };
            if pin.addrs.is_empty() {
                return Err(invalid("it maps to no address"));
            }
            let name = normalize(&pin.name);
            if let Ok(ip) = name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                // An IP literal pin vouches for that literal; it cannot point it elsewhere.
                if pin.addrs != [ip] {
                    return Err(invalid(
                        "an IP literal pin must map to exactly that address",
                    ));
                }
                out.literals.push(ip);
                continue;
            }
            let (suffix, exact) = match name.strip_prefix("*.") {
                Some(suffix) => (suffix, false),
                None => (name.as_str(), true),
            };
            if !is_dns_name(suffix) {
                return Err(invalid("expected a DNS name, `*.suffix` or an IP address"));
            }
            if exact {
                out.exact.insert(name.clone(), pin.addrs.clone());
            } else {
                out.below.push((format!(".{suffix}"), pin.addrs.clone()));
            }
        }
        out.below
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Ok(out)
    }

    /// Whether the operator vouched for this IP literal.
    pub(crate) fn has_literal(&self, ip: IpAddr) -> bool {
        self.literals.contains(&ip)
    }

    /// The pinned addresses for the DNS name `host`.
    pub(crate) fn get(&self, host: &str) -> Option<&[IpAddr]> {
        let host = normalize(host);
        if let Some(addrs) = self.exact.get(&host) {
            return Some(addrs);
        }
        self.below
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, addrs)| addrs.as_slice())
    }
}

fn normalize(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn is_dns_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// Addresses the gate checked, by the host text the connector will ask for.
#[derive(Debug, Default)]
pub(crate) struct CheckedAddrs {
    map: Mutex<HashMap<String, (Vec<IpAddr>, Instant)>>,
}

/// Entries kept before old ones are swept; a sweep only drops entries older than [`STALE`].
const SWEEP_AT: usize = 1024;
const STALE: std::time::Duration = std::time::Duration::from_mins(5);

impl CheckedAddrs {
    /// Records `addrs` (all of them already checked) as the answer for `host`. Overwriting is
    /// safe: every entry ever written holds only checked addresses.
    pub(crate) fn record(&self, host: &str, addrs: &[IpAddr]) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if map.len() >= SWEEP_AT {
            map.retain(|_, (_, at)| now.duration_since(*at) < STALE);
        }
        map.insert(normalize(host), (addrs.to_vec(), now));
    }

    fn get(&self, host: &str) -> Option<Vec<IpAddr>> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&normalize(host)).map(|(addrs, _)| addrs.clone())
    }
}

/// Why the connector asked for a name the gate never checked; surfaced as a connect failure.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` was not checked by the egress gate")]
pub(crate) struct UncheckedName(String);

/// The client's resolver: answers target names from [`CheckedAddrs`] only. The one exception is
/// the operator's proxy, which is resolved normally (it is the operator's own choice).
pub(crate) struct PinnedResolver {
    pub(crate) checked: Arc<CheckedAddrs>,
    pub(crate) proxy_host: Option<String>,
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        if let Some(addrs) = self.checked.get(&host) {
            let addrs: Vec<SocketAddr> =
                addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            return Box::pin(async move { Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs) });
        }
        if self
            .proxy_host
            .as_deref()
            .is_some_and(|p| normalize(p) == normalize(&host))
        {
            return Box::pin(async move {
                let addrs: Vec<SocketAddr> =
                    tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
                Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
            });
        }
        Box::pin(async move {
            Err(Box::new(UncheckedName(host)) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(name: &str, addrs: &[&str]) -> ResolvePin {
        ResolvePin {
            name: name.into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn exact_pins_win_over_wildcards_and_longer_suffixes_over_shorter() {
        let pins = Pins::new(&[
            pin("*.azurecr.io", &["127.0.0.1"]),
            pin("*.eu.azurecr.io", &["127.0.0.2"]),
            pin("special.eu.azurecr.io", &["127.0.0.3"]),
        ])
        .unwrap();
        let ip = |h: &str| pins.get(h).map(|a| a[0].to_string());
        assert_eq!(ip("a.azurecr.io").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("a.eu.azurecr.io").as_deref(), Some("127.0.0.2"));
        assert_eq!(ip("Special.EU.azurecr.io.").as_deref(), Some("127.0.0.3"));
        assert_eq!(
            ip("azurecr.io"),
            None,
            "a wildcard covers names below the suffix only"
        );
        assert_eq!(ip("evilazurecr.io"), None);
        assert_eq!(ip("azurecr.io.evil.com"), None);
    }

    #[test]
    fn invalid_pins_are_refused_with_the_name() {
        for bad in [
            pin("a.*.com", &["127.0.0.1"]),
            pin("bad host", &["127.0.0.1"]),
            pin("x.test", &[]),
            pin("*.", &["127.0.0.1"]),
        ] {
            let err = Pins::new(std::slice::from_ref(&bad)).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{}`", bad.name)),
                "{err}"
            );
        }
        assert!(Pins::new(&[pin("127.0.0.1", &["10.0.0.1"])]).is_err());
        let pins = Pins::new(&[
            pin("[::1]", &["::1"]),
            pin("127.0.0.1", &["127.0.0.1"]),
            pin("*.0.0.1", &["10.0.0.1"]),
        ])
        .unwrap();
        assert!(pins.has_literal("::1".parse().unwrap()));
        assert!(pins.has_literal("127.0.0.1".parse().unwrap()));
        assert!(
            !pins.has_literal("127.0.0.2".parse().unwrap()),
            "a wildcard never covers an IP literal"
        );
    }

    #[tokio::test]
    async fn resolver_answers_only_checked_names() {
        use reqwest::dns::Resolve;
        let checked = Arc::new(CheckedAddrs::default());
        checked.record("api.test", &["127.0.0.1".parse().unwrap()]);
        let r = PinnedResolver {
            checked,
            proxy_host: None,
        };
        let got: Vec<SocketAddr> = r
            .resolve("API.test".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(got, vec!["127.0.0.1:0".parse().unwrap()]);
        let err = r
            .resolve("other.test".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("`other.test` was not checked"),
            "{err}"
        );
    }
}
