//! Outbound HTTP through the host's `host-http` import.
//!
//! The host enforces the operator's allow-list, refuses private addresses, follows redirects
//! safely, caps sizes and time, and already retries 408, 429, 5xx and dropped connections with
//! backoff. What reaches the connector is the final answer, so connectors do not retry
//! transport failures themselves; they map statuses to [`ConnectorError`]s
//! ([`Response::error_for_status`] does the common mapping).
//!
//! ```ignore
//! let client = Client::new();
//! let response = client
//!     .post("https://login.example/token")
//!     .form(&[("grant_type", "client_credentials"), ("client_secret", secret)])
//!     .send()?
//!     .error_for_status()?;
//! let token: TokenResponse = response.json()?;
//! ```
//!
//! Error messages name URLs without their query or user info ([`display_url`]); never put a
//! secret in a URL path. A [`Client`] can run over any [`Transport`], which lets unit tests
//! answer requests with a closure instead of the host.

use std::fmt;
use std::rc::Rc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ConnectorError;
use crate::pager::shorten;

pub use crate::wit::keelson::registry::host_http::{
    Header, HttpError, Method, Request, Response as RawResponse,
};

/// Retry delay reported in `throttled` when a 429 names none, in milliseconds.
pub const DEFAULT_RETRY_AFTER_MS: u32 = 10_000;

/// Sends requests: the host in a component, anything else in tests.
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

/// The host's `host-http.send`. Outside WebAssembly there is no host, and every request
/// fails with [`HttpError::Invalid`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HostTransport;

impl Transport for HostTransport {
    fn send(&self, request: &Request) -> Result<RawResponse, HttpError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::wit::keelson::registry::host_http::send(request)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = request;
            Err(HttpError::Invalid(
                "no host to send through outside WebAssembly".to_owned(),
            ))
        }
    }
}

/// An HTTP client; cheap to clone.
#[derive(Clone)]
pub struct Client {
    transport: Rc<dyn Transport>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::with_transport(HostTransport)
    }
}

impl Client {
    /// A client over the host.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client over `transport` (a closure works: `Client::with_transport(|req| ...)`).
    pub fn with_transport(transport: impl Transport + 'static) -> Self {
        Self {
            transport: Rc::new(transport),
        }
    }

    /// Starts a request.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            request: Request {
                method,
                url: url.to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
            },
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

/// A request being built; [`RequestBuilder::send`] sends it.
pub struct RequestBuilder {
    client: Client,
    request: Request,
    error: Option<ConnectorError>,
}

// Headers and bodies may hold credentials: show only the method and a safe URL.
impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.request.method)
            .field("url", &display_url(&self.request.url))
            .finish_non_exhaustive()
    }
}

impl RequestBuilder {
    /// Adds a header (names may repeat).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request.headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    #[must_use]
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Sets an `application/x-www-form-urlencoded` body from pairs.
    #[must_use]
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        self.request.body = encode_form(pairs).into_bytes();
        self.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// Sets a JSON body.
    #[must_use]
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.request.body = bytes,
            Err(e) => {
                self.error = Some(ConnectorError::Other(format!(
                    "could not encode the request body for `{}`: {e}",
                    display_url(&self.request.url)
                )));
            }
        }
        self.header("Content-Type", "application/json")
    }

    /// Sets a raw body.
    #[must_use]
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.request.body = body;
        self
    }

    /// Bounds the request, retries included, in milliseconds (the host's own budget still
    /// applies).
    #[must_use]
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.request.timeout_ms = Some(ms);
        self
    }

    /// The request as built.
    pub fn as_request(&self) -> &Request {
        &self.request
    }

    /// Sends the request. Transport failures become [`ConnectorError`]s naming the URL (see
    /// [`connector_error`]); every status comes back as a [`Response`].
    pub fn send(self) -> Result<Response, ConnectorError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let raw = self
            .client
            .transport
            .send(&self.request)
            .map_err(|e| connector_error(&e, &self.request.url))?;
        crate::log::trace(&format!(
            "{:?} {} -> {}",
            self.request.method,
            display_url(&self.request.url),
            raw.status
        ));
        Ok(Response {
            url: self.request.url,
            status: raw.status,
            headers: raw.headers,
            body: raw.body,
        })
    }
}

/// A response, with the URL it answers.
#[derive(Clone, PartialEq)]
pub struct Response {
    url: String,
    /// The HTTP status.
    pub status: u16,
    /// The headers, as received.
    pub headers: Vec<Header>,
    /// The body, as received.
    pub body: Vec<u8>,
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
        }
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
            .bearer("tok")
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
    fn host_transport_fails_cleanly_off_wasm() {
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
