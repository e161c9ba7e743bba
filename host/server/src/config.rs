//! How the server is reached: the bound address, the `Host` names it answers to, the public URL
//! a TLS proxy in front of it serves, and how long sessions last.
//!
//! [`ServerConfig::origin_allowed`] is the one answer to "may a change come from this `Origin`":
//! behind an `https://` [`PublicUrl`] only that origin, otherwise `http://` and an allowed host.

use std::net::SocketAddr;
use std::time::Duration;

use crate::Error;

/// Where the server listens and which `Host` names it answers to.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The bound address.
    pub bind: SocketAddr,
    /// `Host` header values accepted (the bound address, and `localhost:PORT` on loopback).
    pub allowed_hosts: Vec<String>,
    /// How long a signed-in session lasts without use.
    pub session_idle: Duration,
    /// How long a signed-in session lasts at most, however much it is used.
    pub session_lifetime: Duration,
    /// The URL users reach the server by, when a proxy serves it (see [`Self::with_public_url`]).
    pub public_url: Option<PublicUrl>,
}

impl ServerConfig {
    /// The defaults for listening on `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        let mut allowed_hosts = vec![bind.to_string()];
        if bind.ip().is_loopback() {
            allowed_hosts.push(format!("localhost:{}", bind.port()));
        }
        Self {
            bind,
            allowed_hosts,
            session_idle: Duration::from_hours(8),
            session_lifetime: Duration::from_hours(7 * 24),
            public_url: None,
        }
    }

    /// Serves users at `url`: its host is answered to, and when it is `https://` the session
    /// cookie is `Secure` and changes are accepted only from that origin (a page served over
    /// plain HTTP, or straight from the bound address, cannot make any).
    pub fn with_public_url(mut self, url: PublicUrl) -> Self {
        for host in url.hosts() {
            if !self.allowed_hosts.contains(&host) {
                self.allowed_hosts.push(host);
            }
        }
        self.public_url = Some(url);
        self
    }

    /// Whether the session cookie carries `Secure`: the public URL is `https://`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.as_ref().is_some_and(|u| u.https)
    }

    /// Whether a change may come from a page of `origin` (the `Origin` header's value).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        match &self.public_url {
            Some(url) if url.https => origin == url.origin,
            public => {
                public.as_ref().is_some_and(|u| origin == u.origin)
                    || self
                        .allowed_hosts
                        .iter()
                        .any(|h| origin.strip_prefix("http://") == Some(h.as_str()))
            }
        }
    }
}

/// The URL users reach the server by: `https://NAME[:PORT]` behind a TLS proxy, or `http://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// As a browser sends it in `Origin`: lowercase, without a default port.
    origin: String,
    /// The host as a browser sends it in `Host`.
    host: String,
    /// The default port of the scheme, which a client may also name in `Host`.
    default_port: u16,
    https: bool,
}

impl PublicUrl {
    /// Parses `text`: `https://` or `http://`, a host and optional port, nothing else (no
    /// credentials, path, query or fragment: the server is served at the root).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason| Error::PublicUrl {
            value: without_userinfo(text),
            reason,
        };
        let uri: http::Uri = text.trim().parse().map_err(|_| bad("it is not a URL"))?;
        let (https, default_port) = match uri.scheme_str() {
            Some("https") => (true, 443),
            Some("http") => (false, 80),
            _ => return Err(bad("the scheme is not `https` or `http`")),
        };
        let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials do not belong in it"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() || text.contains('#') {
            return Err(bad("it has a path, query or fragment"));
        }
        let name = authority.host().to_ascii_lowercase();
        if name.is_empty() {
            return Err(bad("it has no host"));
        }
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{name}:{port}"),
            _ => name,
        };
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            origin: format!("{scheme}://{host}"),
            host,
            default_port,
            https,
        })
    }

    /// The `Host` values that name it: the host, and with the default port spelled out.
    fn hosts(&self) -> Vec<String> {
        if self.host.contains(':') && !self.host.ends_with(']') {
            vec![self.host.clone()]
        } else {
            vec![
                self.host.clone(),
                format!("{}:{}", self.host, self.default_port),
            ]
        }
    }
}

/// `text` with whatever stands before an `@` (a URL's `user:password@`) hidden, for messages.
fn without_userinfo(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((before, host)) => {
            let scheme = before.find("://").map_or("", |i| &before[..i + 3]);
            format!("{scheme}***@{host}")
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        ServerConfig::new("127.0.0.1:8080".parse().unwrap())
    }

    #[test]
    fn without_a_public_url_changes_come_from_the_bound_address_over_http() {
        let c = config();
        assert!(!c.secure_cookies());
        assert!(c.origin_allowed("http://127.0.0.1:8080"));
        assert!(c.origin_allowed("http://localhost:8080"));
        assert!(!c.origin_allowed("https://127.0.0.1:8080"));
        assert!(!c.origin_allowed("http://evil.example"));
        assert!(!c.origin_allowed("null"));
    }

    #[test]
    fn an_https_public_url_makes_cookies_secure_and_admits_only_its_origin() {
        let c = config().with_public_url(PublicUrl::parse("https://Keelson.Example.com/").unwrap());
        assert!(c.secure_cookies());
        assert!(c.origin_allowed("https://keelson.example.com"));
        for refused in [
            "http://keelson.example.com",
            "https://keelson.example.com:8443",
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "https://evil.example",
        ] {
            assert!(!c.origin_allowed(refused), "{refused}");
        }
        for host in [
            "keelson.example.com",
            "keelson.example.com:443",
            "127.0.0.1:8080",
        ] {
            assert!(c.allowed_hosts.iter().any(|h| h == host), "{host}");
        }
        let c = config().with_public_url(PublicUrl::parse("https://k.example:8443").unwrap());
        assert!(c.origin_allowed("https://k.example:8443"));
        assert!(!c.origin_allowed("https://k.example"));
        assert!(c.allowed_hosts.iter().any(|h| h == "k.example:8443"));
    }

    #[test]
    fn an_http_public_url_adds_its_origin_and_keeps_cookies_plain() {
        let c = config().with_public_url(PublicUrl::parse("http://keelson.lan:8080").unwrap());
        assert!(!c.secure_cookies());
        assert!(c.origin_allowed("http://keelson.lan:8080"));
        assert!(c.origin_allowed("http://127.0.0.1:8080"));
    }

    #[test]
    fn a_bad_public_url_is_refused_without_echoing_credentials() {
        for (text, reason) in [
            ("keelson.example.com", "scheme"),
            ("ftp://keelson.example.com", "scheme"),
            ("https://keelson.example.com/app", "path"),
            ("https://keelson.example.com/?a=1", "path"),
            ("https://keelson.example.com/#x", "path"),
            ("https://ana:hunter2@keelson.example.com", "credentials"),
            ("ana:hunter2@keelson.example.com", "keelson.example.com"),
        ] {
            let err = PublicUrl::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{text}: {err}");
        }
        let err = PublicUrl::parse("https://ana:hunter2@k.example").unwrap_err();
        assert!(err.to_string().contains("`https://***@k.example`"), "{err}");
    }
}
