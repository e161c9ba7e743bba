//! Wire structs to [`Config`]: every value checked, paths resolved, the first mistake reported
//! with its position.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keelson_core::HostPattern;
use toml::Spanned;

use crate::error::{Error, Location, Problem};
use crate::model::{
    Config, ConnectionSpec, HostSettings, PluginId, PluginLimits, PluginSpec, ResolvePin, Schedule,
    SecretRef, validate_connection_name,
};
use crate::wire::{ConnectionWire, FileWire, HostWire, OneOrMany, PluginWire};

mod enrichment;

/// The file being validated: its name for messages, its text for positions, its folder for
/// relative paths.
pub(crate) struct Source<'a> {
    pub(crate) file: &'a Path,
    pub(crate) text: &'a str,
    pub(crate) base: &'a Path,
}

impl Source<'_> {
    pub(crate) fn error_at(&self, offset: Option<usize>, problem: Problem) -> Error {
        Error::Invalid {
            location: Location::at(self.file.to_path_buf(), self.text, offset),
            problem,
        }
    }

    /// Words a TOML reader error in this crate's style. Only its message is used: the reader's
    /// own `Display` quotes the source line, which could hold a secret pasted by mistake.
    pub(crate) fn toml_error(&self, e: &toml::de::Error) -> Error {
        let span = e.span();
        let mut message = e.message().trim_end().to_owned();
        if message == "duplicate key" {
            // The reader does not name the key; its span does, and a key is never a secret.
            let key = span
                .clone()
                .and_then(|s| self.text.get(s))
                .filter(|k| k.len() <= 100 && !k.contains('\n'));
            message = match key {
                Some(key) => format!("duplicate key `{key}`; expected each key once in a table"),
                None => "duplicate key; expected each key once in a table".to_owned(),
            };
        }
        self.error_at(
            span.map(|s| s.start),
            Problem::Toml(restyle_serde_message(&message)),
        )
    }

    fn err(&self, span: &Range<usize>, problem: Problem) -> Error {
        self.error_at(Some(span.start), problem)
    }

    fn line(&self, span: &Range<usize>) -> usize {
        Location::at(self.file.to_path_buf(), self.text, Some(span.start))
            .position
            .map_or(0, |(line, _)| line)
    }

    fn path(&self, value: &str) -> PathBuf {
        // `join` keeps an absolute `value` as it is.
        self.base.join(value)
    }

    fn non_empty_path(&self, value: &Spanned<String>, key: &'static str) -> Result<PathBuf, Error> {
        if value.get_ref().trim().is_empty() {
            return Err(self.err(
                &value.span(),
                Problem::Empty {
                    key,
                    expected: "a file or folder path",
                },
            ));
        }
        Ok(self.path(value.get_ref()))
    }
}

pub(crate) fn validate(wire: FileWire, src: &Source<'_>) -> Result<Config, Error> {
    let host = host(wire.host, src)?;

    let mut plugins = Vec::with_capacity(wire.plugin.len());
    let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
    for entry in wire.plugin {
        let spec = plugin(&entry, src)?;
        let id_span = entry.id.span();
        match first_lines.entry(spec.id.as_str().to_owned()) {
            Entry::Occupied(first) => {
                let problem = Problem::DuplicatePluginId {
                    id: first.key().clone(),
                    first_line: *first.get(),
                };
                return Err(src.err(&id_span, problem));
            }
            Entry::Vacant(slot) => {
                slot.insert(src.line(&id_span));
            }
        }
        plugins.push(spec);
    }

    let known: Vec<PluginId> = plugins.iter().map(|p| p.id.clone()).collect();
    let mut connections = Vec::with_capacity(wire.connection.len());
    let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
    for entry in wire.connection {
        let spec = connection(entry, &known, &host, src, &mut first_lines)?;
        connections.push(spec);
    }

    let applications = enrichment::applications(wire.application, src)?;
    let thresholds = enrichment::thresholds(wire.enrichment, src)?;
    let compliance = enrichment::compliance(wire.compliance, src)?;

    Ok(Config {
        source: src.file.to_path_buf(),
        host,
        plugins,
        connections,
        applications,
        enrichment: thresholds,
        compliance,
    })
}

fn host(wire: Option<HostWire>, src: &Source<'_>) -> Result<HostSettings, Error> {
    let Some(wire) = wire else {
        return Ok(default_host(src));
    };
    let defaults = default_host(src);
    let database = match &wire.database {
        Some(v) => src.non_empty_path(v, "database")?,
        None => defaults.database,
    };
    let cache_dir = match &wire.cache_dir {
        Some(v) => src.non_empty_path(v, "cache_dir")?,
        None => defaults.cache_dir,
    };
    let secrets_dir = match &wire.secrets_dir {
        Some(v) => src.non_empty_path(v, "secrets_dir")?,
        None => defaults.secrets_dir,
    };
    let extra_ca_certs = wire
        .extra_ca_certs
        .iter()
        .map(|v| src.non_empty_path(v, "extra_ca_certs"))
        .collect::<Result<Vec<_>, _>>()?;
    let proxy = match &wire.proxy {
        Some(v) => Some(check_proxy(v.get_ref()).map_err(|problem| src.err(&v.span(), problem))?),
        None => None,
    };

    let mut resolve: Vec<ResolvePin> = Vec::with_capacity(wire.resolve.len());
    for (name, addrs) in &wire.resolve {
        let normalized = check_resolve_name(name.get_ref()).ok_or_else(|| {
            src.err(
                &name.span(),
                Problem::BadResolveName(name.get_ref().clone()),
            )
        })?;
        if resolve.iter().any(|pin| pin.name == normalized) {
            return Err(src.err(
                &name.span(),
                Problem::DuplicateResolveName(name.get_ref().clone()),
            ));
        }
        let spanned: Vec<(Range<usize>, &str)> = match addrs.get_ref() {
            OneOrMany::One(addr) => vec![(addrs.span(), addr.as_str())],
            OneOrMany::Many(list) => list
                .iter()
                .map(|a| (a.span(), a.get_ref().as_str()))
                .collect(),
        };
        if spanned.is_empty() {
            return Err(src.err(&addrs.span(), Problem::EmptyResolve(name.get_ref().clone())));
        }
        let mut parsed = Vec::with_capacity(spanned.len());
        for (span, addr) in spanned {
            let ip: IpAddr = addr.parse().map_err(|_| {
                src.err(
                    &span,
                    Problem::BadResolveAddr {
                        name: name.get_ref().clone(),
                        addr: addr.to_owned(),
                    },
                )
            })?;
            parsed.push(ip);
        }
        resolve.push(ResolvePin {
            name: normalized,
            addrs: parsed,
        });
    }

    Ok(HostSettings {
        database,
        cache_dir,
        extra_ca_certs,
        proxy,
        resolve,
        secrets_dir,
    })
}

fn default_host(src: &Source<'_>) -> HostSettings {
    HostSettings {
        database: src.path("keelson.db"),
        cache_dir: src.path(".keelson/cache"),
        extra_ca_certs: Vec::new(),
        proxy: None,
        resolve: Vec::new(),
        // A config named without a folder (`plugins.toml`) has the empty path as its base, which
        // cannot be resolved when a `file:` secret is read: it means the working folder.
        secrets_dir: if src.base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            src.base.to_path_buf()
        },
    }
}

/// A `[host.resolve]` name, lowercased without a trailing dot: a DNS name, optionally behind `*.`.
/// IP literals are refused: there is nothing to resolve.
fn check_resolve_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let is_ip =
        rest.parse::<IpAddr>().is_ok() || rest.chars().all(|c| c.is_ascii_digit() || c == '.');
    (!rest.is_empty() && rest.len() <= 253 && rest.split('.').all(label_ok) && !is_ip)
        .then_some(name)
}

fn check_proxy(value: &str) -> Result<String, Problem> {
    // The value is echoed, so whatever could be a password (`user:pass@`) is hidden first.
    let bad = |reason| Problem::BadProxy {
        value: without_userinfo(value),
        reason,
    };
    let url = url::Url::parse(value).map_err(|_| bad("it is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme is not `http` or `https`"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in plugins.toml"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a proxy URL has no path, query or fragment"));
    }
    Ok(value.to_owned())
}

/// `text` with whatever stands before an `@` (a URL's `user:password@`) hidden.
fn without_userinfo(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((before, host)) => {
            let scheme = before.find("://").map_or("", |i| &before[..i + 3]);
            format!("{scheme}***@{host}")
        }
        None => text.to_owned(),
    }
}

fn plugin(wire: &PluginWire, src: &Source<'_>) -> Result<PluginSpec, Error> {
    let id =
        PluginId::new(wire.id.get_ref()).map_err(|problem| src.err(&wire.id.span(), problem))?;
    let path = src.non_empty_path(&wire.path, "path")?;
    let sha256 = match &wire.sha256 {
        Some(v) => {
            let text = v.get_ref();
            if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(src.err(&v.span(), Problem::BadSha256(text.clone())));
            }
            Some(text.to_ascii_lowercase())
        }
        None => None,
    };
    let allowed_hosts = wire
        .allowed_hosts
        .iter()
        .map(|v| {
            HostPattern::parse(v.get_ref())
                .map_err(|e| src.err(&v.span(), Problem::BadHostPattern(e)))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut secret_hosts = BTreeMap::new();
    for (key, patterns) in &wire.secret_hosts {
        let mut parsed = Vec::with_capacity(patterns.len());
        for v in patterns {
            let pattern = HostPattern::parse(v.get_ref())
                .map_err(|e| src.err(&v.span(), Problem::BadHostPattern(e)))?;
            if !allowed_hosts.iter().any(|g| pattern.within(g)) {
                return Err(src.err(
                    &v.span(),
                    Problem::SecretHostNotGranted {
                        key: key.clone(),
                        pattern: v.get_ref().clone(),
                    },
                ));
            }
            parsed.push(pattern);
        }
        secret_hosts.insert(key.clone(), parsed);
    }

    let defaults = PluginLimits::default();
    let limit = |value: &Option<Spanned<u64>>,
                 key: &'static str,
                 min: u64,
                 max: u64,
                 unit: &'static str| {
        match value {
            Some(v) if (min..=max).contains(v.get_ref()) => Ok(Some(*v.get_ref())),
            Some(v) => Err(src.err(
                &v.span(),
                Problem::LimitOutOfRange {
                    key,
                    value: *v.get_ref(),
                    min,
                    max,
                    unit,
                },
            )),
            None => Ok(None),
        }
    };
    let memory_mb = limit(&wire.memory_mb, "memory_mb", 16, 4096, " MiB")?;
    let call_timeout_s = limit(&wire.call_timeout_s, "call_timeout_s", 1, 3600, " seconds")?;
    let max_requests = limit(&wire.max_requests, "max_requests", 1, 10_000_000, "")?;
    let max_concurrent = limit(
        &wire.max_concurrent_requests,
        "max_concurrent_requests",
        1,
        256,
        "",
    )?;
    let max_response_mb = limit(&wire.max_response_mb, "max_response_mb", 1, 1024, " MiB")?;
    let limits = PluginLimits {
        memory_bytes: memory_mb.map_or(defaults.memory_bytes, |mb| mb << 20),
        call_timeout: call_timeout_s.map_or(defaults.call_timeout, Duration::from_secs),
        max_requests: max_requests.unwrap_or(defaults.max_requests),
        max_concurrent_requests: max_concurrent
            .map_or(defaults.max_concurrent_requests, |n| n as usize),
        max_response_bytes: max_response_mb
            .map_or(defaults.max_response_bytes, |mb| (mb << 20) as usize),
    };

    Ok(PluginSpec {
        id,
        path,
        sha256,
        allowed_hosts,
        limits,
        enabled: wire.enabled.unwrap_or(true),
        allow_plaintext_secrets: wire.allow_plaintext_secrets.unwrap_or(false),
        secret_hosts,
    })
}

fn connection(
    wire: ConnectionWire,
    known: &[PluginId],
    host: &HostSettings,
    src: &Source<'_>,
    first_lines: &mut BTreeMap<String, usize>,
) -> Result<ConnectionSpec, Error> {
    let name_span = wire.name.span();
    let name = wire.name.into_inner();
    validate_connection_name(&name).map_err(|problem| src.err(&name_span, problem))?;
    if let Some(first_line) = first_lines.get(&name) {
        return Err(src.err(
            &name_span,
            Problem::DuplicateConnection {
                name,
                first_line: *first_line,
            },
        ));
    }
    first_lines.insert(name.clone(), src.line(&name_span));

    let Some(plugin) = known
        .iter()
        .find(|k| k.as_str() == wire.plugin.get_ref())
        .cloned()
    else {
        let problem = Problem::UnknownPlugin {
            plugin: wire.plugin.get_ref().clone(),
            known: known.iter().map(|k| k.as_str().to_owned()).collect(),
        };
        return Err(src.err(&wire.plugin.span(), problem));
    };

    let schedule = match &wire.schedule {
        Some(v) => {
            Some(Schedule::parse(v.get_ref()).map_err(|problem| src.err(&v.span(), problem))?)
        }
        None => None,
    };

    let mut settings = BTreeMap::new();
    for (key, value) in wire.settings {
        if key.get_ref().is_empty() {
            return Err(src.err(
                &key.span(),
                Problem::Empty {
                    key: "settings",
                    expected: "a non-empty setting key",
                },
            ));
        }
        settings.insert(key.into_inner(), value.into_inner());
    }

    let mut secrets = BTreeMap::new();
    for (key, value) in &wire.secrets.0 {
        if key.get_ref().is_empty() {
            return Err(src.err(
                &key.span(),
                Problem::Empty {
                    key: "secrets",
                    expected: "a non-empty setting key",
                },
            ));
        }
        if settings.contains_key(key.get_ref()) {
            return Err(src.err(&key.span(), Problem::KeyInBothTables(key.get_ref().clone())));
        }
        let Some(text) = value.get_ref() else {
            return Err(src.err(
                &value.span(),
                Problem::SecretNotAString(key.get_ref().clone()),
            ));
        };
        let secret = SecretRef::parse(key.get_ref(), text, &host.secrets_dir)
            .and_then(|secret| {
                secret.check_not_master_key(key.get_ref(), host)?;
                Ok(secret)
            })
            .map_err(|problem| src.err(&value.span(), problem))?;
        secrets.insert(key.get_ref().clone(), secret);
    }

    let locations = match wire.locations {
        None => vec!["*".to_owned()],
        Some(list) => {
            if list.get_ref().is_empty() {
                let problem = Problem::Empty {
                    key: "locations",
                    expected: "at least one glob; `*` scans everything",
                };
                return Err(src.err(&list.span(), problem));
            }
            let mut out = Vec::with_capacity(list.get_ref().len());
            for location in list.into_inner() {
                let text = location.get_ref();
                if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(src.err(&location.span(), Problem::BadLocation(text.clone())));
                }
                out.push(location.into_inner());
            }
            out
        }
    };

    let guard =
        |value: &Option<Spanned<u64>>, key: &'static str, min: u64, max: u64, default: u64| {
            match value {
                None => Ok(default),
                Some(v) if (min..=max).contains(v.get_ref()) => Ok(*v.get_ref()),
                Some(v) => Err(src.err(
                    &v.span(),
                    Problem::LimitOutOfRange {
                        key,
                        value: *v.get_ref(),
                        min,
                        max,
                        unit: "",
                    },
                )),
            }
        };
    let resolve_guard_percent = guard(
        &wire.resolve_guard_percent,
        "resolve_guard_percent",
        1,
        100,
        u64::from(crate::model::DEFAULT_RESOLVE_GUARD_PERCENT),
    )? as u8;
    let resolve_guard_min = guard(
        &wire.resolve_guard_min,
        "resolve_guard_min",
        0,
        1_000_000_000,
        crate::model::DEFAULT_RESOLVE_GUARD_MIN,
    )?;

    Ok(ConnectionSpec {
        name,
        plugin,
        schedule,
        settings,
        secrets,
        locations,
        resolve_guard_percent,
        resolve_guard_min,
    })
}

/// Brings serde's type errors to the house style: values in backticks, TOML's names for types.
fn restyle_serde_message(message: &str) -> String {
    let mut message = message.to_owned();
    // `invalid type: string "64", expected u64` quotes the value with `Debug`.
    if let Some(rest) = message.strip_prefix("invalid type: string \"")
        && let Some((value, expected)) = rest.rsplit_once("\", expected ")
        && !value.contains('`')
    {
        message = format!("invalid type: string `{value}`, expected {expected}");
    }
    for (serde_name, toml_name) in [
        (", expected u64", ", expected a non-negative whole number"),
        (", expected a sequence", ", expected an array"),
        (", expected a map", ", expected a table"),
    ] {
        if let Some(head) = message.strip_suffix(serde_name) {
            message = format!("{head}{toml_name}");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_are_brought_to_the_house_style() {
        assert_eq!(
            restyle_serde_message("invalid type: string \"64\", expected u64"),
            "invalid type: string `64`, expected a non-negative whole number"
        );
        assert_eq!(
            restyle_serde_message("invalid type: string \"x\", expected a sequence"),
            "invalid type: string `x`, expected an array"
        );
        assert_eq!(
            restyle_serde_message("missing field `path`"),
            "missing field `path`"
        );
        // A value holding a backtick keeps serde's quoting rather than break the backticks.
        assert_eq!(
            restyle_serde_message("invalid type: string \"a`b\", expected a boolean"),
            "invalid type: string \"a`b\", expected a boolean"
        );
    }

    #[test]
    fn resolve_names_are_dns_names_or_wildcards() {
        assert_eq!(
            check_resolve_name("Management.Azure.com."),
            Some("management.azure.com".to_owned())
        );
        assert_eq!(
            check_resolve_name("*.azurecr.io"),
            Some("*.azurecr.io".to_owned())
        );
        assert_eq!(
            check_resolve_name("sim_1.local"),
            Some("sim_1.local".to_owned())
        );
        for name in [
            "", "*", "*.", "a.*.com", "a..b", "-a.com", "a-.com", "10.0.0.1", "::1", "1.2.3",
            "a b.com",
        ] {
            assert_eq!(check_resolve_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn proxies_are_plain_http_origins() {
        assert_eq!(
            check_proxy("http://proxy:3128").unwrap(),
            "http://proxy:3128"
        );
        assert!(check_proxy("https://proxy.corp/").is_ok());
        for bad in [
            "proxy:3128",
            "socks5://proxy:1080",
            "http://u:p@proxy:3128",
            "http://proxy:3128/x",
            "http://",
            "x",
        ] {
            assert!(
                matches!(check_proxy(bad), Err(Problem::BadProxy { .. })),
                "{bad}"
            );
        }
        // A password is never echoed, whatever else is wrong with the value.
        for bad in [
            "http://u:hunter2@proxy:3128",
            "u:hunter2@proxy:3128",
            "socks5://u:hunter2@proxy:1080",
            "http://u:hunter2@proxy:3128/x",
        ] {
            let message = check_proxy(bad).unwrap_err().to_string();
            assert!(!message.contains("hunter2"), "{message}");
            assert!(message.contains("***@proxy"), "{message}");
        }
    }
}
