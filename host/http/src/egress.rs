//! The gate itself: one shared client per process ([`Egress`]) and one [`EgressSession`] per
//! connection run, which checks, resolves, pins, sends, retries and follows redirects.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::{Host, Url};

use crate::resolve::{CheckedAddrs, Lookup, PinnedResolver, Pins, UncheckedName};
use crate::retry::{self, Attempt, RetryPolicy};
use crate::secrets::Needles;
use crate::{
    EgressSettings, Error, Grant, HttpError, Request, Response, SealedUse, redact_userinfo,
};

/// Response headers a server may send at most (hyper's own parse limit).
const MAX_RESPONSE_HEADERS: usize = 128;

/// Headers a plugin may not set: they belong to the transport, or would let it talk past the
/// checks (a forged `Host`, a second request smuggled behind `Transfer-Encoding`).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-authorization",
    "proxy-connection",
];

/// Headers that carry credentials and are dropped when a redirect leaves the origin.
const CREDENTIAL_HEADERS: &[HeaderName] = &[
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// The process-wide egress gate: settings, the shared HTTP client and its pinned resolver.
#[derive(Clone)]
pub struct Egress {
    inner: Arc<Shared>,
}

struct Shared {
    client: reqwest::Client,
    pins: Pins,
    checked: Arc<CheckedAddrs>,
    lookup: Arc<dyn Lookup>,
    retry: RetryPolicy,
    max_redirects: usize,
    max_header_bytes: usize,
    /// Per plugin and connection: the hosts its listings named (login servers), shared by all
    /// its sessions. A host that only a wildcard grant admits must be one of them (T42).
    discovered: std::sync::Mutex<HashMap<(String, String), Discovered>>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("pins", &self.inner.pins)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Builds the shared client: rustls with the ring provider, platform roots plus the extra
    /// CAs, the pinned resolver, no automatic redirects or retries, and no proxy unless one is
    /// configured (system proxy variables are never read).
    pub fn new(settings: EgressSettings) -> Result<Self, Error> {
        let pins = Pins::new(&settings.resolve)?;
        let tls = tls_config(&settings.extra_ca_certs_pem)?;
        let checked = Arc::new(CheckedAddrs::default());
        let proxy = match &settings.proxy {
            None => None,
            Some(text) => {
                let invalid = || Error::InvalidProxy(redact_userinfo(text));
                let url = Url::parse(text).map_err(|_| invalid())?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(invalid());
                }
                let host = url
                    .host_str()
                    .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned());
                Some((reqwest::Proxy::all(url).map_err(|_| invalid())?, host))
            }
        };
        let resolver = PinnedResolver {
            checked: checked.clone(),
            proxy_host: proxy.as_ref().and_then(|(_, host)| host.clone()),
        };
        let builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(resolver)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .referer(false)
            .connect_timeout(settings.connect_timeout)
            .http1_max_headers(MAX_RESPONSE_HEADERS)
            .pool_idle_timeout(Duration::from_mins(1))
            .user_agent(concat!("keelson/", env!("CARGO_PKG_VERSION")));
        let builder = match proxy {
            None => builder.no_proxy(),
            Some((proxy, _)) => builder.proxy(proxy),
        };
        let client = builder
            .build()
            .map_err(|e| Error::Client(error_chain(&e.without_url())))?;
        Ok(Self {
            inner: Arc::new(Shared {
                client,
                pins,
                checked,
                lookup: settings.lookup,
                retry: settings.retry,
                max_redirects: settings.max_redirects,
                max_header_bytes: settings.max_header_bytes,
                discovered: std::sync::Mutex::default(),
            }),
        })
    }

    /// One session per connection run (per wasmtime `Store`): holds the grant, the request
    /// budget, the concurrency cap and the counters.
    pub fn session(&self, grant: Grant) -> EgressSession {
        let needles = grant
            .secrets
            .iter()
            .cloned()
            .filter_map(Needles::new)
            .collect();
        let discovered = grant.connection.as_ref().map(|connection| {
            let mut all = self
                .inner
                .discovered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            all.entry((grant.plugin.clone(), connection.clone()))
                .or_default()
                .clone()
        });
        EgressSession {
            inner: Arc::new(SessionInner {
                egress: self.inner.clone(),
                semaphore: Semaphore::new(grant.max_concurrent_requests.max(1)),
                grant,
                needles,
                stats: Stats::default(),
                discovered,
            }),
        }
    }
}

fn tls_config(extra_pems: &[Vec<u8>]) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra = Vec::new();
    for (index, pem) in extra_pems.iter().enumerate() {
        let invalid = |reason: String| Error::InvalidCaCert { index, reason };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        if certs.is_empty() {
            return Err(invalid("no PEM certificate found".to_owned()));
        }
        extra.extend(certs);
    }
    let no_extra = extra.is_empty();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = match rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
    {
        Ok(verifier) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
        // A machine without a system trust store can still run plugins that only use plain
        // HTTP to pinned names; every TLS handshake then fails with an unknown issuer.
        Err(e) if no_extra => {
            tracing::warn!(error = %e, "no trusted CA certificates; HTTPS requests will fail");
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
        Err(e) => return Err(Error::Tls(e.to_string())),
    };
    // The client speaks HTTP/1.1 only (no `http2` feature), so say so in ALPN.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Requests put on the wire, retries and redirect hops included (what the budget counts).
    pub requests_sent: u64,
    pub retries: u64,
    /// Redirect responses acted on, including those whose next hop was refused.
    pub redirects: u64,
    pub denials: u64,
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    retries: AtomicU64,
    redirects: AtomicU64,
    denials: AtomicU64,
}

/// What one plugin may do during one connection run, and what it has done so far. Cheap to
/// clone; clones share budget, semaphore and counters.
#[derive(Clone)]
pub struct EgressSession {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    egress: Arc<Shared>,
    grant: Grant,
    needles: Vec<Needles>,
    semaphore: Semaphore,
    stats: Stats,
    /// The connection's discovered hosts; `None` outside a connection.
    discovered: Option<Discovered>,
}

/// The hosts one connection's listings named.
type Discovered = Arc<std::sync::Mutex<HashSet<String>>>;

impl std::fmt::Debug for EgressSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressSession")
            .field("plugin", &self.inner.grant.plugin)
            .field("connection", &self.inner.grant.connection)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A destination that passed every check, with the addresses its socket may use.
struct Destination {
    /// `scheme://host:port`, the only form of a URL that is ever logged.
    origin: String,
    /// For names: the host text the client will resolve, and its checked addresses.
    pinned: Option<(String, Vec<IpAddr>)>,
}

impl EgressSession {
    /// Sends one request: checks, resolves, pins, follows redirects by re-checking, retries,
    /// caps. `deadline` is the calling export's remaining budget; the request's own `timeout`
    /// can only shorten it.
    pub async fn send(&self, request: Request, deadline: Instant) -> Result<Response, HttpError> {
        let deadline = match request.timeout {
            Some(t) => deadline.min(Instant::now() + t),
            None => deadline,
        };
        let Ok(Ok(_permit)) =
            tokio::time::timeout_at(deadline, self.inner.semaphore.acquire()).await
        else {
            return Err(HttpError::Timeout);
        };
        tokio::time::timeout_at(deadline, self.follow(request, deadline))
            .await
            .unwrap_or(Err(HttpError::Timeout))
    }

    /// Requests put on the wire so far (retries and redirect hops included).
    pub fn requests_sent(&self) -> u64 {
        self.inner.stats.sent.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> SessionStats {
        let s = &self.inner.stats;
        SessionStats {
            requests_sent: s.sent.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            redirects: s.redirects.load(Ordering::Relaxed),
            denials: s.denials.load(Ordering::Relaxed),
        }
    }

    pub fn grant(&self) -> &Grant {
        &self.inner.grant
    }

    /// Records that a listing of this connection named `registry` (`host[:port]`): from now on
    /// a wildcard grant admits that host for every session of the plugin and connection.
    pub fn admit(&self, registry: &str) {
        let Some(discovered) = &self.inner.discovered else {
            return;
        };
        let host = registry
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(registry, |(host, _)| host);
        discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(keelson_core::normalize_host(host));
    }

    /// Whether a listing of this connection named `host`.
    fn discovered(&self, host: &str) -> bool {
        self.inner.discovered.as_ref().is_some_and(|discovered| {
            discovered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&keelson_core::normalize_host(host))
        })
    }

    async fn follow(&self, request: Request, deadline: Instant) -> Result<Response, HttpError> {
        let mut method = check_method(request.method)?;
        let mut url = Url::parse(&request.url)
            .map_err(|e| HttpError::Invalid(format!("the URL is not valid: {e}")))?;
        let mut headers = build_headers(&request.headers)?;
        let mut body = Bytes::from(request.body);
        let mut visited = HashSet::new();
        let mut hops = 0;
        loop {
            url.set_fragment(None);
            let dest = self
                .check(&method, &url, &headers, &body, &request.sealed)
                .await?;
            visited.insert(url.to_string());
            let (status, resp_headers, resp_body) = self
                .exchange(&dest, &method, &url, &headers, &body, deadline)
                .await?;
            let Some(next) = redirect_target(status, &resp_headers, &url) else {
                return Ok(to_response(status, &resp_headers, resp_body));
            };
            if hops >= self.inner.egress.max_redirects {
                let reason = format!("too-many-redirects: more than {hops} hops");
                return Err(self.deny(&method, &dest.origin, reason));
            }
            if url.scheme() == "https" && next.scheme() != "https" {
                let reason = format!(
                    "redirect-downgrade: `{}` redirected to `{}`",
                    dest.origin,
                    origin_of(&next)
                );
                return Err(self.deny(&method, &dest.origin, reason));
            }
            if visited.contains(next.as_str()) {
                let reason = format!("redirect-loop: `{}` was already visited", origin_of(&next));
                return Err(self.deny(&method, &dest.origin, reason));
            }
            if next.origin() != url.origin() {
                for name in CREDENTIAL_HEADERS {
                    headers.remove(name);
                }
            }
            // 303 always, and 301/302 after a POST, turn into a body-less GET (what browsers do).
            if status == 303 && method != Method::HEAD
                || matches!(status, 301 | 302) && method == Method::POST
            {
                method = Method::GET;
                body = Bytes::new();
                headers.remove(header::CONTENT_TYPE);
            }
            self.inner.stats.redirects.fetch_add(1, Ordering::Relaxed);
            hops += 1;
            url = next;
        }
    }

    /// Every rule that can be judged before the request is sent: scheme, userinfo, allowlist,
    /// secret binding, then the address the name resolves to.
    async fn check(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &[u8],
        sealed: &[SealedUse],
    ) -> Result<Destination, HttpError> {
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https") {
            return Err(HttpError::Invalid(format!(
                "scheme `{scheme}` is not supported; use https or http"
            )));
        }
        let host = url
            .host()
            .ok_or_else(|| HttpError::Invalid("the URL has no host".to_owned()))?;
        let port = url.port_or_known_default().unwrap_or(0);
        let origin = origin_of(url);
        if !url.username().is_empty() || url.password().is_some() {
            let reason = format!(
                "userinfo-prohibited: the URL for `{origin}` carries a user name or password"
            );
            return Err(self.deny(method, &origin, reason));
        }
        let host_text = match &host {
            Host::Domain(d) => (*d).to_owned(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let grant = &self.inner.grant;
        let matching: Vec<&crate::HostPattern> = grant
            .allowed_hosts
            .iter()
            .filter(|p| p.matches(scheme, &host_text, port))
            .collect();
        let Some(first) = matching.first().map(ToString::to_string) else {
            let reason = format!("host-not-allowed: `{origin}` matches no allowed host");
            return Err(self.deny(method, &origin, reason));
        };
        // A wildcard grant (`https://*.azurecr.io`) admits only the hosts this connection's
        // listings named, not every name under the suffix.
        let only_wildcards = matching.iter().all(|p| p.is_subdomain_wildcard());
        if grant.confine_wildcards && only_wildcards && !self.discovered(&host_text) {
            let reason = format!(
                "host-not-discovered: `{origin}` matches only the wildcard grant `{first}`, and no listing of this connection named it; a wildcard admits the registries the connection lists"
            );
            return Err(self.deny(method, &origin, reason));
        }
        if let Some(secret) = sealed.iter().find(|secret| {
            !secret
                .allowed_hosts
                .iter()
                .any(|p| p.matches(scheme, &host_text, port))
        }) {
            let reason = format!(
                "secret-egress-denied: `{}` may not be sent to `{origin}`; it is bound to {}",
                secret.name,
                bound_hosts(&secret.allowed_hosts)
            );
            return Err(self.deny(method, &origin, reason));
        }
        for needle in &self.inner.needles {
            if needle
                .secret
                .allowed_hosts
                .iter()
                .any(|p| p.matches(scheme, &host_text, port))
            {
                continue;
            }
            let carried = needle.found_in(url.as_str().as_bytes())
                || headers.iter().any(|(n, v)| {
                    needle.found_in(n.as_str().as_bytes()) || needle.found_in(v.as_bytes())
                })
                || needle.found_in(body);
            if carried {
                let reason = format!(
                    "secret-egress-denied: `{}` may not be sent to `{origin}`",
                    needle.secret.name
                );
                return Err(self.deny(method, &origin, reason));
            }
        }
        let shared = &self.inner.egress;
        match host {
            Host::Ipv4(_) | Host::Ipv6(_) => {
                // The connector dials IP literals directly, so there is nothing to pin.
                let ip: IpAddr = host_text
                    .parse()
                    .map_err(|_| HttpError::Invalid("bad IP literal".to_owned()))?;
                if shared.pins.has_literal(ip) {
                    return Ok(Destination {
                        origin,
                        pinned: None,
                    });
                }
                let reason = match crate::ip::prohibited(ip) {
                    Some(why) => format!("destination-ip-prohibited: `{ip}` is a {why} address"),
                    None => format!(
                        "destination-ip-prohibited: `{ip}` is an IP literal; use a host name"
                    ),
                };
                Err(self.deny(method, &origin, reason))
            }
            Host::Domain(name) => {
                if let Some(addrs) = shared.pins.get(name) {
                    return Ok(Destination {
                        origin,
                        pinned: Some((name.to_owned(), addrs.to_vec())),
                    });
                }
                let answer =
                    shared.lookup.lookup(name).await.map_err(|e| {
                        HttpError::Connect(format!("could not resolve `{name}`: {e}"))
                    })?;
                if answer.is_empty() {
                    return Err(HttpError::Connect(format!(
                        "`{name}` resolves to no address"
                    )));
                }
                let mut allowed = Vec::new();
                let mut refused = Vec::new();
                for ip in answer {
                    match crate::ip::prohibited(ip) {
                        None => allowed.push(ip),
                        Some(why) => refused.push(format!("`{ip}` {why}")),
                    }
                }
                if allowed.is_empty() {
                    let reason = format!(
                        "destination-ip-prohibited: `{name}` resolves only to prohibited addresses ({})",
                        refused.join(", ")
                    );
                    return Err(self.deny(method, &origin, reason));
                }
                if !refused.is_empty() {
                    tracing::debug!(host = %name, refused = %refused.join(", "), "egress: dropped prohibited addresses");
                }
                Ok(Destination {
                    origin,
                    pinned: Some((name.to_owned(), allowed)),
                })
            }
        }
    }

    /// One hop with retries; the body is read (capped) inside each attempt so a connection reset
    /// mid-body is retried like any other.
    async fn exchange(
        &self,
        dest: &Destination,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Bytes,
        deadline: Instant,
    ) -> Result<(u16, HeaderMap, Vec<u8>), HttpError> {
        let shared = &self.inner.egress;
        let budget_left =
            || self.inner.stats.sent.load(Ordering::Relaxed) < self.inner.grant.max_requests;
        let out = retry::run(&shared.retry, deadline, budget_left, || {
            self.attempt(dest, method, url, headers, body)
        })
        .await;
        self.inner
            .stats
            .retries
            .fetch_add(u64::from(out.retries), Ordering::Relaxed);
        out.result
    }

    async fn attempt(
        &self,
        dest: &Destination,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Attempt<Vec<u8>> {
        let failed = |error, retryable| Attempt::Failed { error, retryable };
        let grant = &self.inner.grant;
        let reserved =
            self.inner
                .stats
                .sent
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < grant.max_requests).then_some(n + 1)
                });
        if reserved.is_err() {
            let reason = format!(
                "request-budget-exhausted: {} requests already sent",
                grant.max_requests
            );
            return failed(self.deny(method, &dest.origin, reason), false);
        }
        let shared = &self.inner.egress;
        if let Some((host, addrs)) = &dest.pinned {
            shared.checked.record(host, addrs);
        }
        let request = shared
            .client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .body(body.clone());
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let (error, retryable) = classify(&e);
                return failed(error, retryable);
            }
        };
        let status = response.status().as_u16();
        let header_bytes: usize = response
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        if header_bytes > shared.max_header_bytes {
            return failed(HttpError::TooLarge, false);
        }
        let cap = grant.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return failed(HttpError::TooLarge, false);
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > cap {
                        return failed(HttpError::TooLarge, false);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let (error, retryable) = classify(&e);
                    return failed(error, retryable);
                }
            }
        }
        Attempt::Response {
            status,
            headers: response.headers().clone(),
            response: body,
        }
    }

    /// Logs a refusal (never a query string, header value or body) and turns it into the value
    /// the plugin sees.
    fn deny(&self, method: &Method, origin: &str, reason: String) -> HttpError {
        self.inner.stats.denials.fetch_add(1, Ordering::Relaxed);
        let grant = &self.inner.grant;
        tracing::warn!(
            plugin = %grant.plugin,
            connection = grant.connection.as_deref().unwrap_or("-"),
            method = %method,
            destination = %origin,
            reason = %reason,
            "egress denied"
        );
        HttpError::Denied(reason)
    }
}

/// `scheme://host:port`, with IPv6 in brackets; never path, query or userinfo.
fn origin_of(url: &Url) -> String {
    let host = match url.host() {
        Some(Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

fn check_method(method: Method) -> Result<Method, HttpError> {
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(HttpError::Invalid(format!(
            "method `{method}` is not allowed"
        )));
    }
    Ok(method)
}

fn build_headers(pairs: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::Invalid(format!("`{name}` is not a valid header name")))?;
        if FORBIDDEN_HEADERS.contains(&parsed.as_str()) {
            return Err(HttpError::Invalid(format!(
                "header `{parsed}` is set by the host, not the plugin"
            )));
        }
        // The value is never quoted back: it may be a credential.
        let value = HeaderValue::from_str(value).map_err(|_| {
            HttpError::Invalid(format!("the value of header `{parsed}` is not valid"))
        })?;
        headers.append(parsed, value);
    }
    Ok(headers)
}

fn redirect_target(status: u16, headers: &HeaderMap, base: &Url) -> Option<Url> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = headers.get(header::LOCATION)?.to_str().ok()?;
    // An unusable `Location` leaves the 3xx for the plugin to see.
    base.join(location).ok()
}

fn to_response(status: u16, headers: &HeaderMap, body: Vec<u8>) -> Response {
    let headers = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Response {
        status,
        headers,
        body,
    }
}

/// Maps a transport error to what the plugin sees and whether another attempt may help. The URL
/// is stripped first: its query may hold a secret.
fn classify(error: &reqwest::Error) -> (HttpError, bool) {
    use std::io::ErrorKind as K;
    let text = error_chain(error);
    let mut reset = false;
    for e in causes(error) {
        if e.is::<UncheckedName>() || e.is::<rustls::Error>() {
            // A TLS failure or a name the gate never checked will not change on retry.
            return (HttpError::Connect(text), false);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            reset |= matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            );
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            reset |= h.is_incomplete_message() || h.is_canceled();
        }
    }
    let retryable = error.is_connect() || error.is_timeout() || reset;
    (HttpError::Connect(text), retryable)
}

/// The causes of an error, outermost first. `io::Error::source` skips the error it wraps, so
/// wrapped errors are entered through `get_ref` instead.
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
    .take(16)
}

/// An error and its causes as one line, without any URL.
fn error_chain(error: &reqwest::Error) -> String {
    // reqwest's own message names the URL, so start from a URL-free description of the kind.
    let head = if error.is_connect() {
        "could not connect"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else {
        "the request failed"
    };
    let mut parts = vec![head.to_owned()];
    for e in causes(error).skip(1) {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// `a`, `b` or `c`, for a refusal naming where a secret may go.
fn bound_hosts(hosts: &[crate::HostPattern]) -> String {
    if hosts.is_empty() {
        return "no host".to_owned();
    }
    let names: Vec<String> = hosts.iter().map(|h| format!("`{h}`")).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_never_carry_path_query_or_userinfo() {
        let o = |u: &str| origin_of(&Url::parse(u).unwrap());
        assert_eq!(
            o("https://user:pw@Example.com/p?token=secret#f"),
            "https://example.com:443"
        );
        assert_eq!(o("http://[::1]:8080/x"), "http://[::1]:8080");
        assert_eq!(o("http://2130706433/"), "http://127.0.0.1:80");
    }

    #[test]
    fn transport_headers_are_refused_and_values_never_quoted() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "connection",
            "proxy-authorization",
        ] {
            let err = build_headers(&[(name.to_owned(), "x".to_owned())]).unwrap_err();
            assert!(matches!(err, HttpError::Invalid(_)), "{name}");
        }
        let err = build_headers(&[("authorization".into(), "Bearer se\ncret".into())]).unwrap_err();
        assert!(!err.to_string().contains("se"), "{err}");
        let ok =
            build_headers(&[("accept".into(), "a".into()), ("Accept".into(), "b".into())]).unwrap();
        assert_eq!(ok.get_all("accept").iter().count(), 2);
    }

    #[test]
    fn redirect_targets_resolve_relative_locations() {
        let base = Url::parse("https://a.test/x/y?q=1").unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, HeaderValue::from_static("../z"));
        assert_eq!(
            redirect_target(302, &h, &base).unwrap().as_str(),
            "https://a.test/z"
        );
        assert!(redirect_target(200, &h, &base).is_none());
        assert!(redirect_target(304, &h, &base).is_none());
        assert!(redirect_target(307, &HeaderMap::new(), &base).is_none());
    }

    /// Answers `8.8.8.8` first and loopback afterwards, like a rebinding attacker's DNS.
    struct Rebinding(AtomicU64);

    impl Lookup for Rebinding {
        fn lookup(
            &self,
            _host: &str,
        ) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            let ip: IpAddr = if n == 0 { "8.8.8.8" } else { "127.0.0.1" }
                .parse()
                .unwrap();
            Box::pin(async move { Ok(vec![ip]) })
        }
    }

    #[tokio::test]
    async fn the_connector_gets_the_checked_address_without_a_second_lookup() {
        use reqwest::dns::Resolve as _;
        let dns = Arc::new(Rebinding(AtomicU64::new(0)));
        let settings = EgressSettings {
            lookup: dns.clone(),
            ..EgressSettings::default()
        };
        let egress = Egress::new(settings).unwrap();
        let grant = Grant {
            allowed_hosts: vec![crate::HostPattern::parse("https://rebind.example").unwrap()],
            ..Grant::default()
        };
        let session = egress.session(grant);
        let url = Url::parse("https://rebind.example/").unwrap();
        let dest = session
            .check(&Method::GET, &url, &HeaderMap::new(), &[], &[])
            .await
            .unwrap();
        let (host, addrs) = dest.pinned.clone().unwrap();
        assert_eq!(addrs, vec!["8.8.8.8".parse::<IpAddr>().unwrap()]);
        egress.inner.checked.record(&host, &addrs);
        // This is the resolver the shared client dials through; it must not ask DNS again.
        let resolver = PinnedResolver {
            checked: egress.inner.checked.clone(),
            proxy_host: None,
        };
        for _ in 0..3 {
            let got: Vec<_> = resolver
                .resolve("rebind.example".parse().unwrap())
                .await
                .unwrap()
                .collect();
            assert_eq!(got, vec!["8.8.8.8:0".parse().unwrap()]);
        }
        assert_eq!(
            dns.0.load(Ordering::SeqCst),
            1,
            "exactly one lookup, by the gate"
        );
        // A fresh check sees the rebound answer and refuses it.
        let err = session
            .check(&Method::GET, &url, &HeaderMap::new(), &[], &[])
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, HttpError::Denied(r) if r.starts_with("destination-ip-prohibited")),
            "{err:?}"
        );
    }

    #[test]
    fn sessions_and_their_futures_can_move_between_threads() {
        fn is_send<T: Send>(_: &T) {}
        fn is_sync<T: Sync>() {}
        is_sync::<Egress>();
        is_sync::<EgressSession>();
        let session = Egress::new(EgressSettings::default())
            .unwrap()
            .session(Grant::default());
        let request = Request {
            method: Method::GET,
            url: String::new(),
            headers: vec![],
            body: vec![],
            timeout: None,
            sealed: vec![],
        };
        let future = session.send(request, Instant::now());
        is_send(&future);
    }

    #[test]
    fn connect_and_trace_are_refused() {
        assert!(check_method(Method::CONNECT).is_err());
        assert!(check_method(Method::TRACE).is_err());
        assert_eq!(check_method(Method::PATCH).unwrap(), Method::PATCH);
    }
}
