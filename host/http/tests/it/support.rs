//! Loopback test servers that count what reaches them, and helpers to build settings and grants.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use keelson_http::{EgressSettings, Grant, HostPattern, Lookup, Request, ResolvePin, RetryPolicy};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
pub(crate) enum Reply {
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// Raw bytes, then close.
    Raw(Vec<u8>),
    /// Close with a TCP reset instead of answering.
    Reset,
    /// A chunked body that never ends.
    Endless,
    /// Headers promising 100 bytes, then one byte every `Duration`.
    Trickle(Duration),
    Delay(Duration, Box<Reply>),
}

impl Reply {
    pub(crate) fn ok(body: &str) -> Self {
        Self::Respond(200, vec![], body.as_bytes().to_vec())
    }
    pub(crate) fn status(code: u16, headers: &[(&str, &str)]) -> Self {
        Self::Respond(
            code,
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            vec![],
        )
    }
    pub(crate) fn redirect(code: u16, location: &str) -> Self {
        Self::status(code, &[("location", location)])
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

struct State {
    accepts: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    handler: Box<Handler>,
}

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 (plain or TLS).
pub(crate) struct TestServer {
    pub(crate) port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub(crate) async fn start(
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_inner(handler, None).await
    }

    pub(crate) async fn start_tls(
        acceptor: tokio_rustls::TlsAcceptor,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_inner(handler, Some(acceptor)).await
    }

    async fn start_inner(
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            accepts: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            handler: Box::new(handler),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                st.accepts.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => {
                            if let Some(stream) = serve(stream, &st).await {
                                // A zero linger turns the close into a reset.
                                let _ = stream.set_zero_linger();
                                drop(stream);
                            }
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, &st).await;
                            }
                        }
                    }
                });
            }
        });
        Self { port, state, task }
    }

    /// Connections accepted so far.
    pub(crate) fn accepts(&self) -> usize {
        self.state.accepts.load(Ordering::SeqCst)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Serves one request; gives the stream back when the reply asks for a reset.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(stream: S, state: &State) -> Option<S> {
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        lines.push(line.trim_end().to_owned());
    }
    let mut request_line = lines.first()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines[1..]
        .iter()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.ok()?;
    let seen = Seen {
        method,
        target,
        headers,
        body,
    };
    let index = {
        let mut all = state.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let reply = (state.handler)(&seen, index);
    let mut stream = reader.into_inner();
    let reset = act(&mut stream, reply).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    reset.then_some(stream)
}

/// Carries out a reply; true when the connection should be reset.
fn act<S: AsyncWrite + Unpin + Send>(stream: &mut S, reply: Reply) -> BoxFuture<'_, bool> {
    Box::pin(async move {
        match reply {
            Reply::Respond(status, headers, body) => {
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (n, v) in headers {
                    head.push_str(&n);
                    head.push_str(": ");
                    head.push_str(&v);
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
                false
            }
            Reply::Raw(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                false
            }
            Reply::Reset => true,
            Reply::Endless => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let chunk = [b'x'; 16 * 1024];
                loop {
                    let framed =
                        [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if stream.write_all(&framed).await.is_err() {
                        return false;
                    }
                }
            }
            Reply::Trickle(every) => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                    .await;
                for _ in 0..100 {
                    if stream.write_all(b"x").await.is_err() {
                        return false;
                    }
                    tokio::time::sleep(every).await;
                }
                false
            }
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                act(stream, *inner).await
            }
        }
    })
}

/// A resolver whose answers are scripted per name; each call takes the next answer (the last
/// one repeats).
#[derive(Default)]
pub(crate) struct FakeDns {
    answers: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
    pub(crate) calls: AtomicUsize,
}

impl FakeDns {
    pub(crate) fn answer(self: &Arc<Self>, name: &str, answers: &[&[&str]]) -> Arc<Self> {
        let parsed = answers
            .iter()
            .map(|a| a.iter().map(|ip| ip.parse().unwrap()).collect())
            .collect();
        self.answers.lock().unwrap().insert(name.to_owned(), parsed);
        self.clone()
    }
}

impl Lookup for FakeDns {
    fn lookup(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut answers = self.answers.lock().unwrap();
        let out = match answers.get_mut(host) {
            Some(list) if list.len() > 1 => Ok(list.remove(0)),
            Some(list) => Ok(list[0].clone()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such name")),
        };
        Box::pin(async move { out })
    }
}

/// Settings with `*.test` pinned to loopback and fast retries.
pub(crate) fn settings() -> EgressSettings {
    EgressSettings {
        resolve: vec![ResolvePin {
            name: "*.test".into(),
            addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }],
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        },
        connect_timeout: Duration::from_secs(2),
        ..EgressSettings::default()
    }
}

pub(crate) fn grant(patterns: &[&str]) -> Grant {
    Grant {
        plugin: "test-plugin".into(),
        connection: Some("conn-1".into()),
        allowed_hosts: patterns
            .iter()
            .map(|p| HostPattern::parse(p).unwrap())
            .collect(),
        ..Grant::default()
    }
}

pub(crate) fn get(url: &str) -> Request {
    Request {
        method: http::Method::GET,
        url: url.to_owned(),
        headers: vec![],
        body: vec![],
        timeout: None,
        sealed: vec![],
    }
}

pub(crate) fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A CA, and a TLS acceptor for `name` with a leaf certificate that CA signed.
pub(crate) fn tls_acceptor(name: &str) -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
