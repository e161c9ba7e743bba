//! The validated configuration. Every field is checked; consumers need no further validation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use keelson_core::HostPattern;

/// The whole validated `plugins.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub source: PathBuf,
    pub host: HostSettings,
    pub plugins: Vec<PluginSpec>,
    pub connections: Vec<ConnectionSpec>,
}

/// `[host]`: settings of the Keelson process itself.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// SQLite database file (default `keelson.db` beside the config file).
    pub database: PathBuf,
    /// Where precompiled plugins are cached (default `.keelson/cache` beside the config file).
    pub cache_dir: PathBuf,
    /// Extra PEM CA files trusted for plugin HTTPS (TLS-intercepting proxies, the simulator).
    pub extra_ca_certs: Vec<PathBuf>,
    /// Explicit outbound proxy; system proxy variables are ignored.
    pub proxy: Option<String>,
    /// `[host.resolve]`: operator pins of names (exact or `*.suffix`) to addresses. Pinned names may
    /// resolve to private or loopback addresses: the operator's word is trusted.
    pub resolve: Vec<ResolvePin>,
    /// Folder that `file:` secret references must stay inside (default: the config file's folder).
    pub secrets_dir: PathBuf,
}

/// One `[host.resolve]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvePin {
    /// `name.example` or `*.example`.
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// A validated plugin id: lowercase ASCII letters, digits and dashes, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginId(String);

impl PluginId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PluginId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[[plugin]]`: one connector component and what it is granted.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub id: PluginId,
    /// The component file, resolved against the config file's folder.
    pub path: PathBuf,
    /// Lowercase hex SHA-256 the file must have, when pinned.
    pub sha256: Option<String>,
    /// Destinations the plugin may reach; empty denies all.
    pub allowed_hosts: Vec<HostPattern>,
    pub limits: PluginLimits,
    /// `enabled = false` keeps the entry but loads nothing.
    pub enabled: bool,
}

/// Resource limits of one plugin instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Linear memory cap (`memory_mb`, default 64 MiB).
    pub memory_bytes: u64,
    /// Wall-clock budget of one export call, host calls included (`call_timeout_s`, default 60 s).
    pub call_timeout: Duration,
    /// Outbound requests allowed in one connection run (`max_requests`, default 100 000).
    pub max_requests: u64,
    /// Requests in flight at once (`max_concurrent_requests`, default 8).
    pub max_concurrent_requests: usize,
    /// Largest response body accepted (`max_response_mb`, default 32 MiB).
    pub max_response_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(60),
            max_requests: 100_000,
            max_concurrent_requests: 8,
            max_response_bytes: 32 << 20,
        }
    }
}

/// Where a secret's value comes from. The config never holds a secret value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `env:NAME`: an environment variable whose name starts with `KEELSON_`.
    Env(String),
    /// `file:PATH`: a file inside the secrets folder (checked again when read: symlinks out are refused).
    File(PathBuf),
    /// `prompt`: asked for interactively and stored encrypted.
    Prompt,
}

/// How often a connection is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `every 6h`, `every 30m`, `every 1d`.
    Every(Duration),
}

/// `[[connection]]`: one account of one plugin.
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    /// Unique name (`prod`), lowercase letters, digits, `-` and `_`.
    pub name: String,
    pub plugin: PluginId,
    pub schedule: Option<Schedule>,
    /// Non-secret settings, passed to the plugin as they are.
    pub settings: BTreeMap<String, String>,
    /// Secret settings by key, as references.
    pub secrets: BTreeMap<String, SecretRef>,
    /// Registry/repository globs to scan (`*` = everything).
    pub locations: Vec<String>,
}
