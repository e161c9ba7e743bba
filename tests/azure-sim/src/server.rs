//! The listener: TLS on one loopback port, routing by host name, fault injection and accounting
//! around every request.
//!
//! Handlers are plain functions from a [`Req`] to a [`Resp`]; they run on the blocking pool
//! because page generation for large tenants is CPU work.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::faults::{FaultSpec, FaultState, Transient};
use crate::stats::Stats;
use crate::tenant::Tenant;
use crate::throttle::{Limits, Throttles};
use crate::tokens::Signer;
use crate::util::{self, hash_bytes};
use crate::{acr, arg, arm, control, entra};

/// A client application registered in the simulated tenant.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub(crate) client_id: String,
    pub(crate) secret: String,
    pub(crate) object_id: String,
    /// The secret exists but expired: AADSTS7000222.
    pub(crate) secret_expired: bool,
    /// Reader on every subscription (and so pull on every registry).
    pub(crate) has_role: bool,
}

/// Shared simulator state.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) suffix: String,
    pub(crate) port: u16,
    pub(crate) principals: Vec<Principal>,
    pub(crate) faults: RwLock<FaultSpec>,
    pub(crate) fault_state: FaultState,
    pub(crate) stats: Stats,
    pub(crate) throttles: Throttles,
    pub(crate) limits: Limits,
    pub(crate) throttling: bool,
    pub(crate) token_lifetime: Duration,
    pub(crate) signer: Signer,
    pub(crate) arg_totals: std::sync::Mutex<std::collections::HashMap<(u64, u64), u64>>,
}

impl Sim {
    pub(crate) fn faults(&self) -> FaultSpec {
        self.faults
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_faults(&self, spec: FaultSpec) {
        *self
            .faults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = spec;
    }

    pub(crate) fn login_url(&self) -> String {
        format!("https://login.{}:{}", self.suffix, self.port)
    }

    pub(crate) fn management_url(&self) -> String {
        format!("https://management.{}:{}", self.suffix, self.port)
    }

    pub(crate) fn principal(&self, client_id: &str) -> Option<&Principal> {
        self.principals
            .iter()
            .find(|p| p.client_id.eq_ignore_ascii_case(client_id))
    }

    /// True when a token minted at `iat` and valid until `exp` is no longer accepted.
    pub(crate) fn token_expired(&self, iat: i64, exp: i64) -> bool {
        let now = util::now_secs();
        if exp <= now {
            return true;
        }
        match self.faults().token_max_age_secs {
            Some(max) => now - iat >= max as i64,
            None => false,
        }
    }
}

/// A request as handlers see it: body already read.
#[derive(Debug)]
pub(crate) struct Req {
    pub(crate) method: Method,
    /// The raw (percent-encoded) path.
    pub(crate) path: String,
    pub(crate) raw_query: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) host: String,
}

impl Req {
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        util::field(&self.query, name)
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?;
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// A response under construction.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// HEAD: send headers (with the GET `Content-Length`) and no body.
    pub(crate) head: bool,
}

impl Resp {
    pub(crate) fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        let mut r = Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: HeaderMap::new(),
            body: body.into(),
            head: false,
        };
        r.set("content-type", content_type);
        r.set("date", &util::http_date(util::now_secs()));
        r
    }

    pub(crate) fn json(status: u16, value: &impl Serialize) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Self::new(status, "application/json; charset=utf-8", body)
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) -> &mut Self {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            self.headers.insert(n, v);
        }
        self
    }

    pub(crate) fn append(&mut self, name: &str, value: &str) -> &mut Self {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            self.headers.append(n, v);
        }
        self
    }

    pub(crate) fn with(mut self, name: &str, value: &str) -> Self {
        self.set(name, value);
        self
    }

    fn into_response(self) -> Response<Body> {
        let len = self.body.len();
        let mut resp = Response::new(if self.head {
            Body::empty()
        } else {
            Body::from(self.body)
        });
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp.headers_mut()
            .insert("content-length", HeaderValue::from(len));
        resp
    }
}

/// Which simulated service a host name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Login,
    Management,
    Registry(usize),
    UnknownRegistry,
    Unknown,
}

pub(crate) fn service_for(sim: &Sim, host: &str) -> Service {
    let suffix = &sim.suffix;
    if host == format!("login.{suffix}") {
        Service::Login
    } else if host == format!("management.{suffix}") || host == "localhost" || host == "127.0.0.1" {
        Service::Management
    } else if let Some(name) = host.strip_suffix(&format!(".azurecr.{suffix}")) {
        sim.tenant
            .registry_by_name(name)
            .map_or(Service::UnknownRegistry, Service::Registry)
    } else {
        Service::Unknown
    }
}

/// The error that makes hyper drop the connection without a response (an injected reset).
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for ResetConnection {}

fn host_of(headers: &HeaderMap, sni: Option<&str>) -> String {
    let raw = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| sni.map(str::to_owned))
        .unwrap_or_default();
    let no_port = match raw.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h.to_owned(),
        _ => raw,
    };
    no_port.trim_end_matches('.').to_ascii_lowercase()
}

async fn handle(
    sim: Arc<Sim>,
    sni: Option<String>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ResetConnection> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), 8 << 20)
        .await
        .unwrap_or_default();
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let r = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: util::parse_form(&raw_query),
        raw_query,
        host: host_of(&parts.headers, sni.as_deref()),
        headers: parts.headers,
        body,
    };
    let sim2 = sim.clone();
    let outcome = tokio::task::spawn_blocking(move || dispatch(&sim2, &r))
        .await
        .unwrap_or_else(|_| {
            Some(Resp::json(500, &serde_json::json!({"error":{"code":"InternalServerError","message":"simulator handler panicked"}})))
        });
    match outcome {
        Some(resp) => Ok(resp.into_response()),
        None => Err(ResetConnection),
    }
}

/// Routes, injects faults and records the outcome. `None` means "reset the connection".
fn dispatch(sim: &Sim, r: &Req) -> Option<Resp> {
    let service = service_for(sim, &r.host);
    if service == Service::Management && r.path.starts_with("/_sim/") {
        let resp = control::handle(sim, r);
        sim.stats.record("sim.control", resp.status.as_u16());
        return Some(resp);
    }
    let endpoint = match service {
        Service::Login => entra::endpoint(r),
        Service::Management => arm::endpoint(r),
        Service::Registry(_) => acr::endpoint(r),
        Service::UnknownRegistry | Service::Unknown => "unknown",
    };
    if let Service::Registry(reg) = service {
        sim.stats
            .record_registry(&sim.tenant.registries[reg].spec.name);
    }
    let spec = sim.faults();
    let fault = if endpoint == "unknown" {
        None
    } else {
        let mut fp = Vec::with_capacity(r.body.len() + r.path.len() + 64);
        fp.extend_from_slice(r.method.as_str().as_bytes());
        fp.extend_from_slice(r.host.as_bytes());
        fp.extend_from_slice(r.path.as_bytes());
        fp.push(b'?');
        fp.extend_from_slice(r.raw_query.as_bytes());
        fp.extend_from_slice(&r.body);
        sim.fault_state
            .decide(&spec, sim.tenant.seed, hash_bytes(&fp))
            .filter(|t| {
                // The token endpoint only ever fails with resets and 5xx in practice.
                service != Service::Login
                    || matches!(t, Transient::Reset | Transient::ServerError(_))
            })
    };
    if let Some(t) = fault {
        sim.stats.record_fault(t.label());
    }
    let resp = match fault {
        Some(Transient::Reset) => {
            sim.stats.record(endpoint, 0);
            return None;
        }
        Some(Transient::Throttle) => fault_throttle(sim, service, endpoint, r),
        Some(Transient::ServerError(code)) => fault_server_error(sim, service, code),
        Some(Transient::Html) => html_error_page(),
        Some(Transient::Truncate) | None => {
            let mut resp = match service {
                Service::Login => entra::handle(sim, r),
                Service::Management => {
                    if endpoint == "arg.resources" {
                        arg::handle(sim, r)
                    } else {
                        arm::handle(sim, r)
                    }
                }
                Service::Registry(reg) => acr::handle(sim, reg, r),
                Service::UnknownRegistry | Service::Unknown => Resp::new(
                    404,
                    "text/plain; charset=utf-8",
                    format!("azure-sim: no service at host `{}`", r.host),
                ),
            };
            if fault == Some(Transient::Truncate) && resp.body.len() > 2 {
                resp.body = resp.body.slice(..resp.body.len() / 2);
            }
            resp
        }
    };
    if r.method == Method::HEAD {
        let mut resp = resp;
        resp.head = true;
        sim.stats.record(endpoint, resp.status.as_u16());
        return Some(resp);
    }
    sim.stats.record(endpoint, resp.status.as_u16());
    Some(resp)
}

/// The HTML page a gateway in front of Azure serves with status 200 when the service behind it
/// is unavailable.
pub(crate) fn html_error_page() -> Resp {
    Resp::new(
        200,
        "text/html; charset=utf-8",
        "<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h1>Service Unavailable</h1><p>The service is temporarily unavailable. Please try again later.</p></body></html>",
    )
}

fn fault_throttle(sim: &Sim, service: Service, endpoint: &str, _r: &Req) -> Resp {
    let secs = sim.limits.fault_retry_after_secs.max(1);
    match service {
        Service::Registry(_) => acr::too_many_requests(secs),
        _ if endpoint == "arg.resources" => arg::rate_limited(0, secs),
        _ => arm::error(
            429,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type - 'Read'. For more information, see - https://aka.ms/msdn-throttling",
        )
        .with("retry-after", &secs.to_string()),
    }
}

fn fault_server_error(sim: &Sim, service: Service, code: u16) -> Resp {
    let secs = sim.limits.fault_retry_after_secs.max(1).to_string();
    match service {
        Service::Login => entra::error_resp(
            sim,
            code,
            "temporarily_unavailable",
            50_001,
            "The service is temporarily unavailable. Please try again later.",
        )
        .with("retry-after", &secs),
        Service::Registry(_) => acr::errors(
            code,
            "UNAVAILABLE",
            "service unavailable, please retry",
            serde_json::Value::Null,
        )
        .with("retry-after", &secs),
        _ => arm::error(
            code,
            "InternalServerError",
            "Encountered internal server error. Diagnostic information: timestamp, correlation id.",
        )
        .with("retry-after", &secs),
    }
}

/// Accepts connections until `shutdown` flips.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sim: Arc<Sim>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(connection(tcp, acceptor.clone(), sim.clone(), shutdown.clone()));
            }
        }
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    sim: Arc<Sim>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
    else {
        return;
    };
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    let svc = hyper::service::service_fn(move |req| handle(sim.clone(), sni.clone(), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
