//! The grammar of `allowed_hosts`: which destinations a plugin may reach.
//!
//! A pattern is `scheme://host[:port]`, with Spin's semantics: the scheme is `http`, `https` or
//! `*`; the host is a name, `*.suffix` (any name *below* the suffix, not the suffix itself) or `*`;
//! the port is a number or `*`, and when left out it is the scheme's default. Paths, queries and
//! userinfo are refused, so a pattern can never be read two ways.

use std::fmt;
use std::str::FromStr;

/// One part of a pattern: anything, or exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternPart<T> {
    Any,
    Exact(T),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Below(String),
}

/// A parsed `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    original: String,
    scheme: PatternPart<String>,
    host: HostMatch,
    /// `None`: the default port of the request's scheme.
    port: Option<PatternPart<u16>>,
}

/// Why a text is not a host pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPatternError {
    #[error("`{0}` has no scheme; expected `scheme://host[:port]`, e.g. `https://*.azurecr.io`")]
    MissingScheme(String),
    #[error("`{0}` has scheme `{1}`; expected `https`, `http` or `*`")]
    UnsupportedScheme(String, String),
    #[error("`{0}` has a path, query or fragment; a host pattern is only `scheme://host[:port]`")]
    HasPath(String),
    #[error("`{0}` has a user name or password; a host pattern is only `scheme://host[:port]`")]
    HasUserinfo(String),
    #[error("`{0}` has no host")]
    EmptyHost(String),
    #[error(
        "`{0}` has a wildcard inside the host; only a leading `*.` (any subdomain) or `*` is allowed"
    )]
    MisplacedWildcard(String),
    #[error("`{0}` has host `{1}`, which is not a valid DNS name or IP address")]
    InvalidHost(String, String),
    #[error("`{0}` has port `{1}`; expected a number from 1 to 65535 or `*`")]
    InvalidPort(String, String),
}

/// The port a scheme uses when a URL names none.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

/// Lowercases a host name and drops one trailing dot, so `A.AZURECR.IO.` and `a.azurecr.io` are
/// the same destination.
pub fn normalize_host(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

impl HostPattern {
    /// Parses `scheme://host[:port]`.
    pub fn parse(text: &str) -> Result<Self, HostPatternError> {
        let owned = || text.to_owned();
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| HostPatternError::MissingScheme(owned()))?;
        let scheme = scheme.to_ascii_lowercase();
        let scheme = match scheme.as_str() {
            "*" => PatternPart::Any,
            "http" | "https" => PatternPart::Exact(scheme),
            _ => return Err(HostPatternError::UnsupportedScheme(owned(), scheme)),
        };
        // A lone trailing slash is how people paste origins; anything more is a path.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(HostPatternError::HasPath(owned()));
        }
        if rest.contains('@') {
            return Err(HostPatternError::HasUserinfo(owned()));
        }
        let (host, port) = split_host_port(rest);
        let port = match port {
            None => None,
            Some("*") => Some(PatternPart::Any),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(PatternPart::Exact(n)),
                _ => return Err(HostPatternError::InvalidPort(owned(), p.to_owned())),
            },
        };
        if host.is_empty() {
            return Err(HostPatternError::EmptyHost(owned()));
        }
        let host = normalize_host(host);
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            check_name(text, suffix)?;
            HostMatch::Below(format!(".{suffix}"))
        } else {
            check_name(text, &host)?;
            HostMatch::Exact(host)
        };
        Ok(Self {
            original: text.to_owned(),
            scheme,
            host,
            port,
        })
    }

    /// Whether a request to `scheme://host:port` is allowed. `host` may be in any case and carry a
    /// trailing dot; IPv6 literals are given without brackets.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        if let PatternPart::Exact(s) = &self.scheme
            && *s != scheme
        {
            return false;
        }
        let port_ok = match &self.port {
            Some(PatternPart::Any) => true,
            Some(PatternPart::Exact(p)) => *p == port,
            None => default_port(&scheme) == Some(port),
        };
        if !port_ok {
            return false;
        }
        let host = normalize_host(host);
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => *h == host,
            HostMatch::Below(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }

    /// Whether every destination this pattern admits is admitted by `outer` too: a secret's
    /// hosts must lie inside the plugin's grant.
    pub fn within(&self, outer: &Self) -> bool {
        let scheme_ok = match (&outer.scheme, &self.scheme) {
            (PatternPart::Any, _) => true,
            (PatternPart::Exact(o), PatternPart::Exact(s)) => o == s,
            (PatternPart::Exact(_), PatternPart::Any) => false,
        };
        // A port left out means each scheme's default; compare what each admits per scheme.
        let schemes: &[&str] = match &self.scheme {
            PatternPart::Exact(s) => &[s.as_str()][..],
            PatternPart::Any => &["http", "https"],
        };
        let port_ok = schemes.iter().all(|scheme| {
            let port = |p: &Option<PatternPart<u16>>| match p {
                Some(PatternPart::Any) => None,
                Some(PatternPart::Exact(n)) => Some(*n),
                None => default_port(scheme),
            };
            match (&outer.port, port(&self.port)) {
                (Some(PatternPart::Any), _) => true,
                (_, None) => false,
                (o, Some(mine)) => port(o) == Some(mine),
            }
        });
        let host_ok = match (&outer.host, &self.host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(o), HostMatch::Exact(h)) => o == h,
            (HostMatch::Below(o), HostMatch::Exact(h)) => {
                h.len() > o.len() && h.ends_with(o.as_str())
            }
            (HostMatch::Below(o), HostMatch::Below(h)) => h.ends_with(o.as_str()),
            _ => false,
        };
        scheme_ok && port_ok && host_ok
    }

    /// Whether the host part is `*.suffix` (any name below a suffix).
    pub fn is_subdomain_wildcard(&self) -> bool {
        matches!(self.host, HostMatch::Below(_))
    }

    /// Whether the host part is an exact name (not `*` or `*.suffix`).
    pub fn exact_host(&self) -> Option<&str> {
        match &self.host {
            HostMatch::Exact(h) => Some(h),
            _ => None,
        }
    }

    /// The text the pattern was parsed from.
    pub fn as_str(&self) -> &str {
        &self.original
    }
}

fn split_host_port(rest: &str) -> (&str, Option<&str>) {
    if let Some(inner) = rest.strip_prefix('[') {
        // IPv6 literal: `[::1]:8443`.
        return match inner.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    }
}

fn check_name(text: &str, host: &str) -> Result<(), HostPatternError> {
    if host.contains('*') {
        return Err(HostPatternError::MisplacedWildcard(text.to_owned()));
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(HostPatternError::InvalidHost(
            text.to_owned(),
            host.to_owned(),
        ));
    }
    Ok(())
}

impl FromStr for HostPattern {
    type Err = HostPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, scheme: &str, host: &str, port: u16) -> bool {
        HostPattern::parse(pattern)
            .unwrap()
            .matches(scheme, host, port)
    }

    #[test]
    fn subdomain_wildcard_matches_below_the_suffix_only() {
        let p = "https://*.azurecr.io";
        assert!(allows(p, "https", "contoso.azurecr.io", 443));
        assert!(allows(p, "https", "a.b.azurecr.io", 443));
        assert!(allows(p, "https", "A.AZURECR.IO.", 443));
        assert!(!allows(p, "https", "azurecr.io", 443));
        assert!(!allows(p, "https", "evilazurecr.io", 443));
        assert!(!allows(p, "https", "azurecr.io.evil.com", 443));
    }

    #[test]
    fn scheme_and_port_must_match() {
        assert!(!allows("https://*.azurecr.io", "http", "a.azurecr.io", 80));
        assert!(!allows(
            "https://*.azurecr.io",
            "https",
            "a.azurecr.io",
            444
        ));
        assert!(allows(
            "https://a.example.com:8443",
            "https",
            "a.example.com",
            8443
        ));
        assert!(!allows(
            "https://a.example.com:8443",
            "https",
            "a.example.com",
            443
        ));
        assert!(allows("*://a.example.com:*", "http", "a.example.com", 1234));
        assert!(allows("*://*:*", "https", "anything.test", 9));
        assert!(allows("*://a.example.com", "http", "a.example.com", 80));
        assert!(!allows("*://a.example.com", "http", "a.example.com", 443));
    }

    #[test]
    fn exact_hosts_and_ip_literals() {
        assert!(allows(
            "https://login.microsoftonline.com",
            "https",
            "login.microsoftonline.com",
            443
        ));
        assert!(!allows(
            "https://login.microsoftonline.com",
            "https",
            "xlogin.microsoftonline.com",
            443
        ));
        assert!(allows("https://[::1]:8443", "https", "::1", 8443));
        assert!(allows("https://127.0.0.1:8443", "https", "127.0.0.1", 8443));
    }

    #[test]
    fn rejects_paths_userinfo_and_misplaced_wildcards() {
        use HostPatternError as E;
        let err = |t: &str| HostPattern::parse(t).unwrap_err();
        assert!(matches!(err("management.azure.com"), E::MissingScheme(_)));
        assert!(matches!(err("ftp://x.com"), E::UnsupportedScheme(..)));
        assert!(matches!(err("https://x.com/path"), E::HasPath(_)));
        assert!(matches!(err("https://x.com?q"), E::HasPath(_)));
        assert!(matches!(
            err("https://ok.azurecr.io@evil.com"),
            E::HasUserinfo(_)
        ));
        assert!(matches!(err("https://a.*.com"), E::MisplacedWildcard(_)));
        assert!(matches!(
            err("https://*example.com"),
            E::MisplacedWildcard(_)
        ));
        assert!(matches!(err("https://x.com:0"), E::InvalidPort(..)));
        assert!(matches!(err("https://x.com:http"), E::InvalidPort(..)));
        assert!(matches!(err("https://"), E::EmptyHost(_)));
        assert!(matches!(err("https://bad host"), E::InvalidHost(..)));
        assert!(HostPattern::parse("https://management.azure.com/").is_ok());
    }

    #[test]
    fn error_messages_quote_the_pattern_and_show_the_expected_form() {
        let msg = HostPattern::parse("management.azure.com")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "`management.azure.com` has no scheme; expected `scheme://host[:port]`, e.g. `https://*.azurecr.io`"
        );
    }

    #[test]
    fn a_pattern_lies_within_a_wider_one_only_when_it_admits_nothing_more() {
        let p = |t: &str| HostPattern::parse(t).unwrap();
        let within = |inner: &str, outer: &str| p(inner).within(&p(outer));
        assert!(within(
            "https://login.example.com",
            "https://login.example.com"
        ));
        assert!(within("https://a.azurecr.io", "https://*.azurecr.io"));
        assert!(within("https://*.eu.azurecr.io", "https://*.azurecr.io"));
        assert!(within(
            "https://login.example.com",
            "https://login.example.com:443"
        ));
        assert!(within("https://x.example:8443", "*://*:*"));
        assert!(!within("https://azurecr.io", "https://*.azurecr.io"));
        assert!(!within("https://*.azurecr.io", "https://a.azurecr.io"));
        assert!(!within(
            "http://login.example.com",
            "https://login.example.com"
        ));
        assert!(!within(
            "*://login.example.com",
            "https://login.example.com"
        ));
        assert!(!within(
            "https://login.example.com:*",
            "https://login.example.com"
        ));
        assert!(!within(
            "https://login.example.com:8443",
            "https://login.example.com"
        ));
        assert!(!within("https://evil.example", "https://login.example.com"));
    }
}
