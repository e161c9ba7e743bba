//! The egress gate every plugin HTTP request passes.
//!
//! Plugins never get sockets: the runtime hands each `host-http.send` call to an
//! [`EgressSession`], which enforces every network rule in one place before and while the request
//! goes out over a shared `reqwest` client:
//!
//! - the destination (`scheme://host:port`) must match the grant's [`HostPattern`] allowlist, and
//!   URLs with userinfo are refused; all of this before any I/O;
//! - the host resolves names itself and refuses loopback, private, link-local, metadata and other
//!   non-global addresses ([`ip`]) and IP literals, unless the operator pinned the name in
//!   [`EgressSettings::resolve`]; the socket then goes only to the address that was checked;
//! - a secret may travel only to the hosts it is bound to ([`secrets`]);
//! - redirects are followed here, each hop re-checked, with a hop cap, credentials dropped across
//!   origins and https→http refused;
//! - time (connect, total, bounded by the caller's deadline), response bytes, header bytes,
//!   concurrency and the per-run request budget are capped;
//! - 408/429/5xx and dropped connections are retried with jittered backoff that honours
//!   `Retry-After` ([`retry`]).
//!
//! Refusals come back as [`HttpError::Denied`] values and are logged with plugin and connection,
//! never with query strings, header values or bodies.

mod egress;
pub mod ip;
mod resolve;
pub mod retry;
pub mod secrets;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

pub use egress::{Egress, EgressSession, SessionStats};
pub use keelson_core::HostPattern;
pub use resolve::{Lookup, SystemLookup};
pub use retry::RetryPolicy;

/// Host-wide settings, from `plugins.toml` `[host]`; one per process.
#[derive(Clone)]
pub struct EgressSettings {
    /// PEM bytes of extra CA certificates, trusted on top of the platform roots.
    pub extra_ca_certs_pem: Vec<Vec<u8>>,
    /// Explicit proxy URL; system proxy variables (`HTTPS_PROXY`, …) are always ignored.
    pub proxy: Option<String>,
    /// Operator pins: a name or `*.suffix` mapped to addresses. Trusted as given, so they may be
    /// loopback or private (private endpoints, simulators).
    pub resolve: Vec<ResolvePin>,
    /// Upper bound for establishing one connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// Redirect hops followed per request before giving up.
    pub max_redirects: usize,
    /// Upper bound for the sum of response header names and values, in bytes.
    pub max_header_bytes: usize,
    /// How names are resolved; the system resolver unless a test substitutes its own.
    pub lookup: std::sync::Arc<dyn Lookup>,
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            extra_ca_certs_pem: Vec::new(),
            proxy: None,
            resolve: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            max_redirects: 5,
            max_header_bytes: 64 * 1024,
            lookup: std::sync::Arc::new(SystemLookup),
        }
    }
}

impl fmt::Debug for EgressSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressSettings")
            .field("extra_ca_certs", &self.extra_ca_certs_pem.len())
            .field("proxy", &self.proxy.as_deref().map(redact_userinfo))
            .field("resolve", &self.resolve)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("max_redirects", &self.max_redirects)
            .field("max_header_bytes", &self.max_header_bytes)
            .finish_non_exhaustive()
    }
}

/// One `[host.resolve]` entry: `name` (exact, or `*.suffix` for any name below the suffix, or an
/// IP literal the operator vouches for) resolves to `addrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvePin {
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// What one plugin, for one connection run, may do.
#[derive(Debug, Clone)]
pub struct Grant {
    pub plugin: String,
    pub connection: Option<String>,
    /// Destinations the plugin may reach; empty denies all.
    pub allowed_hosts: Vec<HostPattern>,
    /// Largest response body returned to the plugin; larger ones fail with [`HttpError::TooLarge`].
    pub max_response_bytes: usize,
    /// Requests of this run in flight at once (at least 1).
    pub max_concurrent_requests: usize,
    /// Requests this run may put on the wire in total, counting retries and redirect hops.
    pub max_requests: u64,
    /// Secret values of the connection and where each may be sent.
    pub secrets: Vec<BoundSecret>,
    /// Whether a `*.suffix` grant admits only the hosts this connection's listings named
    /// ([`EgressSession::admit`](crate::EgressSession::admit)) rather than every name under the
    /// suffix (T42). A `*` grant is the operator granting every host, and is never confined.
    pub confine_wildcards: bool,
}

impl Default for Grant {
    fn default() -> Self {
        Self {
            plugin: String::new(),
            connection: None,
            allowed_hosts: Vec::new(),
            max_response_bytes: 16 * 1024 * 1024,
            max_concurrent_requests: 8,
            max_requests: 10_000,
            secrets: Vec::new(),
            confine_wildcards: false,
        }
    }
}

/// A secret value that may leave the host only towards `allowed_hosts` (egress binding): a request
/// carrying it raw, percent-encoded, base64- or hex-encoded anywhere else is refused.
#[derive(Clone)]
pub struct BoundSecret {
    /// What the secret is, for logs (`client-secret`); never the value.
    pub name: String,
    pub value: String,
    pub allowed_hosts: Vec<HostPattern>,
}

impl fmt::Debug for BoundSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundSecret")
            .field("name", &self.name)
            .field("value", &"[REDACTED]")
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// One request as the plugin asked for it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: http::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The plugin's own bound for this request including retries; the caller's deadline still
    /// applies, whichever ends first.
    pub timeout: Option<Duration>,
    /// The sealed secrets the runtime put into this request: every hop (redirects included)
    /// must go to a host each of them is bound to.
    pub sealed: Vec<SealedUse>,
}

/// A sealed secret whose value the runtime wrote into a request, and the hosts it may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedUse {
    /// What the secret is, for the refusal (`client_secret`, `access_token`); never the value.
    pub name: String,
    pub allowed_hosts: Vec<HostPattern>,
}

/// The final response, after redirects and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why no response came back; what the plugin sees as `http-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Refused by a rule before (or instead of) sending; the reason starts with a short
    /// machine-readable phrase such as `host-not-allowed:`.
    #[error("denied: {0}")]
    Denied(String),
    #[error("no response within the time allowed")]
    Timeout,
    /// DNS, TCP, TLS or protocol failure, after retries.
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("response larger than the host allows")]
    TooLarge,
    /// The request itself is malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Why the egress gate could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("resolve pin `{name}` is invalid: {reason}")]
    InvalidResolvePin { name: String, reason: String },
    #[error("proxy `{0}` is not a valid http(s) URL")]
    InvalidProxy(String),
    #[error("extra CA certificate #{index} is invalid: {reason}")]
    InvalidCaCert { index: usize, reason: String },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("HTTP client set-up failed: {0}")]
    Client(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Drops `user:password@` from a URL-ish text, so a proxy's credentials never reach a log.
fn redact_userinfo(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://{}", &text[..s], &text[at + 1..]),
        (None, Some(at)) => text[at + 1..].to_owned(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted_from_proxy_text() {
        assert_eq!(
            redact_userinfo("http://u:p@proxy:3128"),
            "http://proxy:3128"
        );
        assert_eq!(redact_userinfo("u:p@proxy:3128"), "proxy:3128");
        assert_eq!(redact_userinfo("http://proxy:3128"), "http://proxy:3128");
    }

    #[test]
    fn secret_debug_never_shows_the_value() {
        let s = BoundSecret {
            name: "client-secret".into(),
            value: "hunter2-value".into(),
            allowed_hosts: vec![],
        };
        let text = format!("{s:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("client-secret"));
    }
}
