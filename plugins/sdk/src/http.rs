//! Outbound HTTP through the host's `host-http` import.
//!
//! The host enforces the operator's allow-list, refuses private addresses, follows redirects
//! safely, caps sizes and time, and already retries 408, 429, 5xx and dropped connections with
//! backoff. What reaches the connector is the final answer, so connectors do not retry
//! transport failures themselves; they map statuses to [`ConnectorError`]s
//! ([`Response::error_for_status`] does the common mapping).
//!
//! Secrets are sealed ([`Secret`]): a request names one where its value goes and the host
//! writes it in, only for hosts the secret is bound to. A credential in a response is captured
//! the same way ([`RequestBuilder::capture`]):
//!
//! ```ignore
//! let response = client
//!     .post("https://login.example/token")
//!     .form(&[("grant_type", "client_credentials"), ("client_id", id)])
//!     .form_secret("client_secret", &secret)
//!     .capture("access_token", &[])
//!     .send()?
//!     .error_for_status()?;
//! let token = response.captured("access_token");   // a Secret; the body reads `[sealed:access_token]`
//! client.get(url).bearer(&token?).send()?;
//! ```
//!
//! Error messages name URLs without their query or user info ([`display_url`]); never put a
//! secret in a URL. A [`Client`] can run over a [`Transport`] instead of the host, which lets
//! unit tests answer requests with a closure: the SDK then writes test secrets
//! ([`Secret::for_tests`]) in itself and captures response fields as the host would.

use std::fmt;
use std::rc::Rc;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ConnectorError;
use crate::pager::shorten;
use crate::secret::{Secret, View};
use crate::wit::keelson::registry::host_http as wit;

pub use crate::wit::keelson::registry::host_http::{Header, HttpError, Method};

/// Retry delay reported in `throttled` when a 429 names none, in milliseconds.
pub const DEFAULT_RETRY_AFTER_MS: u32 = 10_000;

/// A request as it goes on the wire, every secret written in: what a test [`Transport`] sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The URL.
    pub url: String,
    /// Every header, authorization and content type included.
    pub headers: Vec<Header>,
    /// The encoded body.
    pub body: Vec<u8>,
    /// The request's own time bound, if it set one.
    pub timeout_ms: Option<u32>,
}

/// A response as a test [`Transport`] gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
}

/// Sends requests in unit tests, instead of the host.
pub trait Transport {
    /// Sends one request and returns the final response.
    fn send(&self, request: &Request) -> Result<RawResponse, HttpError>;
}

impl<F> Transport for F
where
    F: Fn(&Request) -> Result<RawResponse, HttpError>,
{
    fn send(&self, request: &Request) -> Result<RawResponse, HttpError> {
        self(request)
    }
}

/// An HTTP client; cheap to clone.
#[derive(Clone, Default)]
pub struct Client {
    /// `None`: the host.
    transport: Option<Rc<dyn Transport>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client over the host. Outside WebAssembly there is no host, and every request fails
    /// with an `other` error.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client over `transport` (a closure works: `Client::with_transport(|req| ...)`).
    pub fn with_transport(transport: impl Transport + 'static) -> Self {
        Self {
            transport: Some(Rc::new(transport)),
        }
    }

    /// Starts a request.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            url: url.to_owned(),
            headers: Vec::new(),
            sealed_headers: Vec::new(),
            authorization: Authorization::None,
            body: Body::Empty,
            captures: Vec::new(),
            timeout_ms: None,
            error: None,
        }
    }

    /// Starts a `GET`.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::Get, url)
    }

    /// Starts a `POST`.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::Post, url)
    }

    /// Starts a `HEAD`.
    pub fn head(&self, url: &str) -> RequestBuilder {
        self.request(Method::Head, url)
    }
}

enum Authorization {
    None,
    Bearer(Secret),
    Basic(String, Secret),
}

enum Body {
    Empty,
    Bytes(Vec<u8>),
    Form(Vec<(String, Field)>),
}

enum Field {
    Text(String),
    Secret(Secret),
}

/// A request being built; [`RequestBuilder::send`] sends it.
pub struct RequestBuilder {
    client: Client,
    method: Method,
    url: String,
    headers: Vec<Header>,
    sealed_headers: Vec<(String, Secret)>,
    authorization: Authorization,
    body: Body,
    /// Response fields to capture, and the hosts each may go to.
    captures: Vec<(String, Vec<String>)>,
    timeout_ms: Option<u32>,
    error: Option<ConnectorError>,
}

// Headers and bodies may hold credentials: show only the method and a safe URL.
impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("url", &display_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl RequestBuilder {
    /// Adds a header (names may repeat). Never put a secret in one: use
    /// [`header_secret`](Self::header_secret).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Adds a header whose value is `secret`.
    #[must_use]
    pub fn header_secret(mut self, name: &str, secret: &Secret) -> Self {
        self.sealed_headers.push((name.to_owned(), secret.clone()));
        self
    }

    /// `Authorization: Bearer <secret>`.
    #[must_use]
    pub fn bearer(mut self, token: &Secret) -> Self {
        self.authorization = Authorization::Bearer(token.clone());
        self
    }

    /// `Authorization: Basic base64(user:password)`.
    #[must_use]
    pub fn basic(mut self, user: &str, password: &Secret) -> Self {
        self.authorization = Authorization::Basic(user.to_owned(), password.clone());
        self
    }

    /// Sets an `application/x-www-form-urlencoded` body from pairs (plain values).
    #[must_use]
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        self.body = Body::Form(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Field::Text((*v).to_owned())))
                .collect(),
        );
        self
    }

    /// Adds a form field whose value is `secret` (starting a form body if there is none).
    #[must_use]
    pub fn form_secret(mut self, name: &str, secret: &Secret) -> Self {
        let field = (name.to_owned(), Field::Secret(secret.clone()));
        match &mut self.body {
            Body::Form(fields) => fields.push(field),
            _ => self.body = Body::Form(vec![field]),
        }
        self
    }

    /// Sets a JSON body (plain values).
    #[must_use]
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body = Body::Bytes(bytes),
            Err(e) => {
                self.error = Some(ConnectorError::Other(format!(
                    "could not encode the request body for `{}`: {e}",
                    display_url(&self.url)
                )));
            }
        }
        self.header("Content-Type", "application/json")
    }

    /// Sets a raw body.
    #[must_use]
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Body::Bytes(body);
        self
    }

    /// Captures top-level field `field` of a 2xx JSON response as a sealed secret (see
    /// [`Response::captured`]), which may go to `hosts` (patterns inside the plugin's grant;
    /// empty: this request's origin). In the body the field then reads `[sealed:FIELD]`.
    #[must_use]
    pub fn capture(mut self, field: &str, hosts: &[&str]) -> Self {
        self.captures.push((
            field.to_owned(),
            hosts.iter().map(|h| (*h).to_owned()).collect(),
        ));
        self
    }

    /// Bounds the request, retries included, in milliseconds (the host's own budget still
    /// applies).
    #[must_use]
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sends the request. Transport failures become [`ConnectorError`]s naming the URL (see
    /// [`connector_error`]); every status comes back as a [`Response`].
    pub fn send(self) -> Result<Response, ConnectorError> {
        if let Some(error) = self.error.clone() {
            return Err(error);
        }
        let (status, headers, body, captured) = match &self.client.transport {
            Some(transport) => self.send_plain(transport.as_ref())?,
            None => self.send_host()?,
        };
        crate::log::trace(&format!(
            "{:?} {} -> {status}",
            self.method,
            display_url(&self.url)
        ));
        Ok(Response {
            url: self.url,
            status,
            headers,
            body,
            captured,
        })
    }

    /// Over a test transport: the SDK writes the values in and captures fields itself, as
    /// the host does.
    fn send_plain(&self, transport: &dyn Transport) -> Result<Sent, ConnectorError> {
        // Every value written in, to scrub from the response as the host does.
        let written = std::cell::RefCell::new(Vec::<(String, String)>::new());
        let plain = |secret: &Secret| match secret.view() {
            View::Plain(value) => {
                written.borrow_mut().push((secret.name(), value.to_owned()));
                Ok(value.to_owned())
            }
            View::Sealed(_) => Err(ConnectorError::Other(
                "a sealed secret can only be sent through the host".to_owned(),
            )),
        };
        let mut headers = self.headers.clone();
        for (name, secret) in &self.sealed_headers {
            headers.push(Header {
                name: name.clone(),
                value: plain(secret)?,
            });
        }
        match &self.authorization {
            Authorization::None => {}
            Authorization::Bearer(token) => headers.push(Header {
                name: "Authorization".to_owned(),
                value: format!("Bearer {}", plain(token)?),
            }),
            Authorization::Basic(user, password) => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", plain(password)?));
                headers.push(Header {
                    name: "Authorization".to_owned(),
                    value: format!("Basic {encoded}"),
                });
            }
        }
        let body = match &self.body {
            Body::Empty => Vec::new(),
            Body::Bytes(bytes) => bytes.clone(),
            Body::Form(fields) => {
                let mut pairs = Vec::with_capacity(fields.len());
                for (name, field) in fields {
                    let value = match field {
                        Field::Text(text) => text.clone(),
                        Field::Secret(secret) => plain(secret)?,
                    };
                    pairs.push((name.as_str(), value));
                }
                headers.insert(
                    0,
                    Header {
                        name: "Content-Type".to_owned(),
                        value: "application/x-www-form-urlencoded".to_owned(),
                    },
                );
                let pairs: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                encode_form(&pairs).into_bytes()
            }
        };
        let request = Request {
            method: self.method,
            url: self.url.clone(),
            headers,
            body,
            timeout_ms: self.timeout_ms,
        };
        let raw = transport
            .send(&request)
            .map_err(|e| connector_error(&e, &self.url))?;
        let mut body = raw.body;
        let mut captured = Vec::new();
        if (200..300).contains(&raw.status)
            && !self.captures.is_empty()
            && let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(&body)
        {
            let expires = object
                .get("expires_in")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
                .map(|s| now().saturating_add(s));
            for (field, _) in &self.captures {
                if let Some(serde_json::Value::String(value)) = object.get(field) {
                    captured.push((field.clone(), Secret::plain(field, value, expires)));
                    object.insert(
                        field.clone(),
                        serde_json::Value::String(format!("[sealed:{field}]")),
                    );
                }
            }
            body = serde_json::to_vec(&object).unwrap_or(body);
        }
        let written = written.into_inner();
        let body = scrub(&String::from_utf8_lossy(&body), &written).into_bytes();
        let headers = raw
            .headers
            .into_iter()
            .map(|h| Header {
                value: scrub(&h.value, &written),
                name: h.name,
            })
            .collect();
        Ok((raw.status, headers, body, captured))
    }

    /// Through the host's `host-http.send`.
    fn send_host(&self) -> Result<Sent, ConnectorError> {
        // Off WebAssembly there is no host to link against.
        if !cfg!(target_arch = "wasm32") {
            return Err(ConnectorError::Other(format!(
                "the request to `{}` has no host to go through outside WebAssembly; give the client a transport",
                display_url(&self.url)
            )));
        }
        let sealed_headers: Vec<wit::SealedHeader<'_>> = self
            .sealed_headers
            .iter()
            .map(|(name, secret)| wit::SealedHeader {
                name: name.clone(),
                value: vec![part(secret)],
            })
            .collect();
        let mut headers = self.headers.clone();
        let authorization = match &self.authorization {
            Authorization::None => wit::Authorization::None,
            Authorization::Bearer(token) => match token.view() {
                View::Sealed(handle) => wit::Authorization::Bearer(handle),
                View::Plain(value) => {
                    headers.push(Header {
                        name: "Authorization".to_owned(),
                        value: format!("Bearer {value}"),
                    });
                    wit::Authorization::None
                }
            },
            Authorization::Basic(user, password) => {
                wit::Authorization::Basic(wit::BasicCredentials {
                    user: vec![wit::Part::Text(user.clone())],
                    password: vec![part(password)],
                })
            }
        };
        let body = match &self.body {
            Body::Empty => wit::Body::Empty,
            Body::Bytes(bytes) => wit::Body::Bytes(bytes.clone()),
            Body::Form(fields) => wit::Body::Form(
                fields
                    .iter()
                    .map(|(name, field)| wit::FormField {
                        name: name.clone(),
                        value: vec![match field {
                            Field::Text(text) => wit::Part::Text(text.clone()),
                            Field::Secret(secret) => part(secret),
                        }],
                    })
                    .collect(),
            ),
        };
        let request = wit::Request {
            method: self.method,
            url: self.url.clone(),
            headers,
            sealed_headers,
            authorization,
            body,
            captures: self
                .captures
                .iter()
                .map(|(field, hosts)| wit::Capture {
                    field: field.clone(),
                    hosts: hosts.clone(),
                })
                .collect(),
            timeout_ms: self.timeout_ms,
        };
        let response = host_send(&request).map_err(|e| connector_error(&e, &self.url))?;
        let captured = response
            .captured
            .into_iter()
            .map(|c| (c.field, Secret::sealed(c.value)))
            .collect();
        Ok((response.status, response.headers, response.body, captured))
    }
}

/// A secret as a request part: the host's handle, or a test secret's value.
fn part(secret: &Secret) -> wit::Part<'_> {
    match secret.view() {
        View::Sealed(handle) => wit::Part::Secret(handle),
        View::Plain(value) => wit::Part::Text(value.to_owned()),
    }
}

/// Status, headers, body and captured secrets of a sent request.
type Sent = (u16, Vec<Header>, Vec<u8>, Vec<(String, Secret)>);

#[cfg(target_arch = "wasm32")]
fn host_send(request: &wit::Request<'_>) -> Result<wit::Response, HttpError> {
    wit::send(request)
}

#[cfg(not(target_arch = "wasm32"))]
fn host_send(_: &wit::Request<'_>) -> Result<wit::Response, HttpError> {
    Err(HttpError::Invalid("no host outside WebAssembly".to_owned()))
}

/// `text` with each value (raw, percent-encoded, JSON-escaped, base64) read as `[sealed:NAME]`,
/// as the host shows a response to a connector.
fn scrub(text: &str, values: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (name, value) in values.iter().filter(|(_, v)| v.len() >= 4) {
        let json = serde_json::Value::String(value.clone()).to_string();
        let forms = [
            value.clone(),
            encode_component(value),
            json[1..json.len() - 1].to_owned(),
            base64::engine::general_purpose::STANDARD.encode(value),
        ];
        for form in forms {
            out = out.replace(&form, &format!("[sealed:{name}]"));
        }
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A response, with the URL it answers.
#[derive(Clone)]
pub struct Response {
    url: String,
    /// The HTTP status.
    pub status: u16,
    /// The headers, as received (any known secret in them reads `[sealed:NAME]`).
    pub headers: Vec<Header>,
    /// The body, as received (captured fields and known secrets read `[sealed:NAME]`).
    pub body: Vec<u8>,
    captured: Vec<(String, Secret)>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("url", &display_url(&self.url))
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// A response built by hand, for tests.
    pub fn new(url: &str, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Self {
        Self {
            url: url.to_owned(),
            status,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
            body: body.to_vec(),
            captured: Vec::new(),
        }
    }

    /// The secret captured from field `field` (see [`RequestBuilder::capture`]), or an
    /// `unavailable` error naming the field when the response did not carry it.
    pub fn captured(&self, field: &str) -> Result<Secret, ConnectorError> {
        self.captured
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, secret)| secret.clone())
            .ok_or_else(|| {
                ConnectorError::Unavailable(format!(
                    "`{}` answered HTTP {} without a `{field}` to capture",
                    display_url(&self.url),
                    self.status
                ))
            })
    }

    /// The URL that was requested.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name`, matched ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of header `name`, matched ignoring case, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON. A malformed body is `unavailable`, naming the URL without its
    /// query and never quoting the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ConnectorError::Unavailable(format!(
                "`{}` answered HTTP {} with a body that is not the expected JSON ({})",
                display_url(&self.url),
                self.status,
                describe_json_error(&e)
            ))
        })
    }

    /// How long the server asked to wait, from `retry-after-ms`, `x-ms-retry-after-ms` or
    /// `Retry-After` (seconds), in milliseconds.
    pub fn retry_after_ms(&self) -> Option<u32> {
        for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
            if let Some(ms) = self.header(name).and_then(|v| v.trim().parse::<u32>().ok()) {
                return Some(ms);
            }
        }
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(|s| s.saturating_mul(1000))
    }

    /// Passes a 2xx (or 3xx) response through and maps the rest: 401 → `invalid-credentials`,
    /// 403 → `permission-denied`, 404 → `not-found`, 429 → `throttled` (with the server's
    /// delay, or [`DEFAULT_RETRY_AFTER_MS`]), 408 and 5xx → `unavailable`, others → `other`.
    /// Messages name the URL (without query) and the status.
    pub fn error_for_status(self) -> Result<Self, ConnectorError> {
        if self.status < 400 {
            return Ok(self);
        }
        let url = display_url(&self.url);
        let status = self.status;
        Err(match status {
            401 => ConnectorError::InvalidCredentials(format!(
                "`{url}` rejected the credentials (HTTP 401)"
            )),
            403 => ConnectorError::PermissionDenied(format!("`{url}` refused access (HTTP 403)")),
            404 => ConnectorError::NotFound(format!("`{url}` was not found (HTTP 404)")),
            429 => {
                ConnectorError::Throttled(self.retry_after_ms().unwrap_or(DEFAULT_RETRY_AFTER_MS))
            }
            408 | 500..=599 => ConnectorError::Unavailable(format!(
                "`{url}` failed with HTTP {status}; try again later"
            )),
            _ => ConnectorError::Other(format!("`{url}` answered HTTP {status}")),
        })
    }
}

/// Maps a transport failure to a [`ConnectorError`] naming the URL (without its query):
/// `denied` → `permission-denied` (the operator's grants), `timeout`, `connect` and
/// `too-large` → `unavailable`, `invalid` → `other`.
pub fn connector_error(error: &HttpError, url: &str) -> ConnectorError {
    let url = display_url(url);
    match error {
        HttpError::Denied(reason) => ConnectorError::PermissionDenied(format!(
            "the host refused the request to `{url}`: {reason}; if the connector needs it, \
             grant the host in the plugin's `allowed_hosts`"
        )),
        HttpError::Timeout => {
            ConnectorError::Unavailable(format!("`{url}` did not answer in time"))
        }
        HttpError::Connect(reason) => {
            ConnectorError::Unavailable(format!("could not connect to `{url}`: {reason}"))
        }
        HttpError::TooLarge => ConnectorError::Unavailable(format!(
            "the response from `{url}` is larger than the host allows"
        )),
        HttpError::Invalid(reason) => {
            ConnectorError::Other(format!("the request to `{url}` is malformed: {reason}"))
        }
    }
}

/// `url` without user info, query or fragment: safe to show in logs and errors.
pub fn display_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Characters kept as they are in a URL component: the RFC 3986 unreserved set.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `text` for a path segment, query value or form field (everything but
/// `A-Z a-z 0-9 - . _ ~`; so `/` becomes `%2F`).
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Encodes pairs as an `application/x-www-form-urlencoded` body.
pub fn encode_form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Describes a JSON error without quoting the input: serde's type errors echo values, which
/// could be tokens.
fn describe_json_error(error: &serde_json::Error) -> String {
    let mut message = String::new();
    let mut quoted = false;
    for c in error.to_string().chars() {
        if c == '"' {
            quoted = !quoted;
            if quoted {
                message.push_str("\"…\"");
            }
        } else if !quoted {
            message.push(c);
        }
    }
    shorten(&message, 200)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::Secret;

    fn raw(status: u16, headers: &[(&str, &str)], body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn builder_sends_form_bearer_and_json() {
        let seen = Rc::new(RefCell::new(Vec::<Request>::new()));
        let log = Rc::clone(&seen);
        let client = Client::with_transport(move |req: &Request| {
            log.borrow_mut().push(req.clone());
            Ok(raw(
                200,
                &[("Content-Type", "application/json")],
                "{\"a\":1}",
            ))
        });

        let r = client
            .post("https://login.example/t/oauth2/v2.0/token")
            .form(&[
                ("scope", "https://management.azure.com/.default"),
                ("x", "a b&c"),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status, 200);
        client
            .get("https://arm.example/x")
            .bearer(&Secret::for_tests("token", "tok"))
            .timeout_ms(500)
            .send()
            .unwrap();
        client
            .post("https://arm.example/q")
            .json(&serde_json::json!({"k": [1]}))
            .send()
            .unwrap();

        let seen = seen.borrow();
        assert_eq!(seen[0].method, Method::Post);
        assert_eq!(
            String::from_utf8(seen[0].body.clone()).unwrap(),
            "scope=https%3A%2F%2Fmanagement.azure.com%2F.default&x=a%20b%26c"
        );
        assert_eq!(
            seen[0].headers[0].value,
            "application/x-www-form-urlencoded"
        );
        assert_eq!(seen[1].headers[0].name, "Authorization");
        assert_eq!(seen[1].headers[0].value, "Bearer tok");
        assert_eq!(seen[1].timeout_ms, Some(500));
        assert_eq!(seen[2].body, b"{\"k\":[1]}");
        assert_eq!(seen[2].headers[0].value, "application/json");
    }

    #[test]
    fn test_secrets_are_written_in_and_captured_fields_sealed_as_the_host_does() {
        let seen = Rc::new(RefCell::new(Vec::<Request>::new()));
        let log = Rc::clone(&seen);
        let client = Client::with_transport(move |req: &Request| {
            log.borrow_mut().push(req.clone());
            Ok(raw(
                200,
                &[],
                r#"{"token_type":"Bearer","expires_in":60,"access_token":"AT-1"}"#,
            ))
        });
        let secret = Secret::for_tests("client_secret", "s3cr/t~");
        let r = client
            .post("https://login.example/token")
            .form(&[("grant_type", "client_credentials")])
            .form_secret("client_secret", &secret)
            .header_secret("x-key", &secret)
            .basic("app", &secret)
            .capture("access_token", &[])
            .send()
            .unwrap();
        let sent = &seen.borrow()[0];
        assert_eq!(
            String::from_utf8(sent.body.clone()).unwrap(),
            "grant_type=client_credentials&client_secret=s3cr%2Ft~"
        );
        let header = |name: &str| {
            sent.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.clone())
        };
        assert_eq!(header("x-key").as_deref(), Some("s3cr/t~"));
        assert_eq!(
            header("authorization").as_deref(),
            Some("Basic YXBwOnMzY3IvdH4=")
        );
        let token = r.captured("access_token").unwrap();
        assert_eq!(token.name(), "access_token");
        assert!(token.expires_at().is_some());
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["access_token"], "[sealed:access_token]");
        assert_eq!(body["expires_in"], 60);
        assert_eq!(
            r.captured("refresh_token").unwrap_err().kind(),
            "unavailable"
        );
    }

    #[test]
    fn response_headers_are_case_insensitive() {
        let r = Response::new(
            "https://a/b",
            200,
            &[("Link", "<x>; rel=\"next\""), ("X-A", "1"), ("x-a", "2")],
            b"",
        );
        assert_eq!(r.header("link"), Some("<x>; rel=\"next\""));
        assert_eq!(r.header_all("X-a").collect::<Vec<_>>(), vec!["1", "2"]);
        assert_eq!(r.header("missing"), None);
    }

    #[test]
    fn json_error_names_url_without_query_and_hides_values() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let r = Response::new(
            "https://reg.example/acr/v1/_catalog?n=5&token=abc",
            200,
            &[],
            b"{\"n\":\"SECRETVALUE\"}",
        );
        let err = r.json::<T>().unwrap_err();
        let msg = err.message().unwrap();
        assert_eq!(err.kind(), "unavailable");
        assert!(
            msg.contains("`https://reg.example/acr/v1/_catalog`"),
            "{msg}"
        );
        assert!(!msg.contains("token=abc"));
        assert!(!msg.contains("SECRETVALUE"), "{msg}");
        let ok = Response::new("https://a", 200, &[], b"{\"n\":3}");
        assert_eq!(ok.json::<T>().unwrap().n, 3);
        assert_eq!(ok.text(), "{\"n\":3}");
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let r = Response::new(
            "u",
            429,
            &[("Retry-After", "2"), ("x-ms-retry-after-ms", "1500")],
            b"",
        );
        assert_eq!(r.retry_after_ms(), Some(1500));
        let r = Response::new("u", 429, &[("Retry-After", "3")], b"");
        assert_eq!(r.retry_after_ms(), Some(3000));
        let r = Response::new(
            "u",
            429,
            &[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")],
            b"",
        );
        assert_eq!(r.retry_after_ms(), None);
    }

    #[test]
    fn error_for_status_maps_common_statuses() {
        let map = |status, headers: &[(&str, &str)]| {
            Response::new("https://h/p?q=1", status, headers, b"")
                .error_for_status()
                .map(|r| r.status)
        };
        assert_eq!(map(200, &[]), Ok(200));
        assert_eq!(map(401, &[]).unwrap_err().kind(), "invalid-credentials");
        assert_eq!(map(403, &[]).unwrap_err().kind(), "permission-denied");
        assert_eq!(map(404, &[]).unwrap_err().kind(), "not-found");
        assert_eq!(
            map(429, &[("Retry-After", "7")]),
            Err(ConnectorError::Throttled(7000))
        );
        assert_eq!(
            map(429, &[]),
            Err(ConnectorError::Throttled(DEFAULT_RETRY_AFTER_MS))
        );
        let err = map(503, &[]).unwrap_err();
        assert_eq!(err.kind(), "unavailable");
        assert!(err.message().unwrap().contains("`https://h/p`"));
        assert_eq!(map(418, &[]).unwrap_err().kind(), "other");
    }

    #[test]
    fn transport_errors_map_to_connector_errors() {
        let url = "https://user:pw@h.example/p?secret=1";
        let denied = connector_error(&HttpError::Denied("not granted".into()), url);
        assert_eq!(denied.kind(), "permission-denied");
        let msg = denied.message().unwrap();
        assert!(msg.contains("`https://h.example/p`") && msg.contains("not granted"));
        assert!(!msg.contains("pw") && !msg.contains("secret=1"));
        assert_eq!(
            connector_error(&HttpError::Timeout, url).kind(),
            "unavailable"
        );
        assert_eq!(
            connector_error(&HttpError::Connect("reset".into()), url).kind(),
            "unavailable"
        );
        assert_eq!(
            connector_error(&HttpError::TooLarge, url).kind(),
            "unavailable"
        );
        assert_eq!(
            connector_error(&HttpError::Invalid("bad".into()), url).kind(),
            "other"
        );
    }

    #[test]
    fn the_host_client_fails_cleanly_off_wasm() {
        let err = Client::new().get("https://a.example/").send().unwrap_err();
        assert_eq!(err.kind(), "other");
    }

    #[test]
    fn display_url_strips_credentials_query_and_fragment() {
        assert_eq!(
            display_url("https://a.example/p?x=1#f"),
            "https://a.example/p"
        );
        assert_eq!(
            display_url("https://u:p@a.example:8443/p"),
            "https://a.example:8443/p"
        );
        assert_eq!(display_url("/acr/v1/_catalog?last=a"), "/acr/v1/_catalog");
        assert_eq!(
            display_url("https://a.example/p@q"),
            "https://a.example/p@q"
        );
    }

    #[test]
    fn encode_component_escapes_reserved_characters() {
        assert_eq!(encode_component("team/app"), "team%2Fapp");
        assert_eq!(encode_component("sha256:ab"), "sha256%3Aab");
        assert_eq!(encode_component("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(encode_form(&[("a", "1"), ("b c", "é")]), "a=1&b%20c=%C3%A9");
    }
}
