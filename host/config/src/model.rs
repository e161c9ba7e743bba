//! The validated configuration. Every field is checked; consumers need no further validation.
//!
//! The checks that also apply to values typed elsewhere (a connection created from the CLI or the
//! API) are public: [`PluginId::new`], [`validate_connection_name`], [`Schedule::parse`] and
//! [`SecretRef::parse`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use keelson_core::HostPattern;

use crate::error::Problem;

/// The whole validated `plugins.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub source: PathBuf,
    pub host: HostSettings,
    pub plugins: Vec<PluginSpec>,
    pub connections: Vec<ConnectionSpec>,
    /// `[[application]]`: ownership rules, in the order written.
    pub applications: Vec<keelson_enrich::Application>,
    /// `[enrichment]`: thresholds and SLA days (defaults in [`keelson_enrich::Thresholds`]).
    pub enrichment: keelson_enrich::Thresholds,
    /// `[[compliance]]`: control rows added to the built-in table.
    pub compliance: Vec<keelson_enrich::ControlRule>,
}

/// The environment variable the master key is read from; when it is unset, the key is the
/// [`MASTER_KEY_FILE`] beside the database. Neither may be a connection's secret.
pub const MASTER_KEY_ENV: &str = "KEELSON_MASTER_KEY";

/// The master key file's name, in the database's folder ([`master_key_file`]).
pub const MASTER_KEY_FILE: &str = "master.key";

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

/// Where the master key of the store at `database` is kept when [`MASTER_KEY_ENV`] is unset:
/// [`MASTER_KEY_FILE`] beside it.
pub fn master_key_file(database: &Path) -> PathBuf {
    database
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(MASTER_KEY_FILE)
}

impl HostSettings {
    /// [`master_key_file`] of this database.
    pub fn master_key_file(&self) -> PathBuf {
        master_key_file(&self.database)
    }
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
    /// Longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Checks `id`: lowercase ASCII letters, digits and single dashes, starting with a letter and
    /// not ending with a dash.
    pub fn new(id: &str) -> Result<Self, Problem> {
        let valid = id.len() <= Self::MAX_LEN
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && !id.ends_with('-')
            && !id.contains("--")
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(Problem::BadPluginId(id.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PluginId {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for PluginId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Sound because `Eq`, `Ord` and `Hash` are derived from the one `String` field.
impl std::borrow::Borrow<str> for PluginId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for PluginId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for PluginId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Checks a connection name: lowercase ASCII letters, digits, `-` and `_`, starting with a letter
/// or digit, at most 64 characters.
pub fn validate_connection_name(name: &str) -> Result<(), Problem> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Problem::BadConnectionName(name.to_owned()))
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
    /// `allow_plaintext_secrets = true` lets a plugin built for contract 0.1.0 load, although
    /// that contract hands it secret values in plaintext (0.2.0 seals them).
    pub allow_plaintext_secrets: bool,
    /// `secret_hosts = { token = ["https://feed.example"] }`: the operator's narrowing of where
    /// each secret may be sent; each pattern lies inside `allowed_hosts`, and at connect inside
    /// the hosts the plugin declares for that secret.
    pub secret_hosts: BTreeMap<String, Vec<HostPattern>>,
}

/// Resource limits of one plugin instance.
///
/// Bounds accepted in `plugins.toml` (outside them the file is refused): `memory_mb` 16 to 4096
/// (a component's runtime needs a few MiB; wasm32 cannot address more than 4 GiB),
/// `call_timeout_s` 1 to 3600, `max_requests` 1 to 10 000 000, `max_concurrent_requests` 1 to 256,
/// `max_response_mb` 1 to 1024.
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
            call_timeout: Duration::from_mins(1),
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

impl SecretRef {
    /// Reads a reference as written in a connection's `secrets` table. `key` is the setting it is
    /// for (named in errors; the text itself is never echoed unless it is a well-formed reference).
    ///
    /// `env:NAME` must name a `KEELSON_` variable, so a config can never ask for `PATH` or
    /// another tool's credentials, and not [`MASTER_KEY_ENV`]. A `file:` path is checked
    /// lexically here: relative paths are read from `secrets_dir`, absolute ones must lie inside
    /// it, and `..` may not climb out. Symlinks are checked when the file is read, by
    /// [`resolve_secret_file`](crate::resolve_secret_file); whether the path is the master key
    /// file, by [`SecretRef::check_not_master_key`].
    pub fn parse(key: &str, text: &str, secrets_dir: &Path) -> Result<Self, Problem> {
        if text == "prompt" {
            return Ok(Self::Prompt);
        }
        if let Some(name) = text.strip_prefix("env:") {
            let valid = name.strip_prefix("KEELSON_").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            });
            if !valid {
                return Err(Problem::EnvOutsidePrefix {
                    key: key.to_owned(),
                    name: name.to_owned(),
                });
            }
            if name == MASTER_KEY_ENV {
                return Err(Problem::SecretIsMasterKey {
                    key: key.to_owned(),
                    reference: text.to_owned(),
                });
            }
            return Ok(Self::Env(name.to_owned()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            let outside = || Problem::FileOutsideSecretsDir {
                key: key.to_owned(),
                path: PathBuf::from(path),
            };
            let path = Path::new(path);
            if path.as_os_str().is_empty() {
                return Err(outside());
            }
            let resolved = if path.is_absolute() {
                let path = normalize_lexically(path).ok_or_else(outside)?;
                let dir = std::path::absolute(secrets_dir)
                    .ok()
                    .and_then(|d| normalize_lexically(&d));
                match dir {
                    Some(dir) if path.starts_with(&dir) && path != dir => path,
                    _ => return Err(outside()),
                }
            } else {
                let relative = normalize_lexically(path).ok_or_else(outside)?;
                if relative.as_os_str().is_empty() {
                    return Err(outside());
                }
                secrets_dir.join(relative)
            };
            return Ok(Self::File(resolved));
        }
        Err(Problem::PlainSecret(key.to_owned()))
    }
}

impl SecretRef {
    /// Refuses a reference to the master key: `env:KEELSON_MASTER_KEY`, or a `file:` path to
    /// `host`'s master key file, compared by path (the file need not exist yet). `key` is the
    /// setting, named in the error. The reader of the secret checks again on the file itself,
    /// through links.
    pub fn check_not_master_key(&self, key: &str, host: &HostSettings) -> Result<(), Problem> {
        let normal = |p: &Path| {
            std::path::absolute(p)
                .ok()
                .and_then(|p| normalize_lexically(&p))
        };
        let is_key = match self {
            Self::Env(name) => name == MASTER_KEY_ENV,
            Self::File(path) => {
                normal(path).is_some_and(|p| Some(p) == normal(&host.master_key_file()))
            }
            Self::Prompt => false,
        };
        if is_key {
            return Err(Problem::SecretIsMasterKey {
                key: key.to_owned(),
                reference: self.to_string(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Prompt => f.write_str("prompt"),
        }
    }
}

/// Drops `.` and resolves `..` without touching the file system; `None` when `..` climbs above
/// the start (or above the root of an absolute path).
pub(crate) fn normalize_lexically(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth.checked_sub(1)?;
                out.pop();
            }
            Component::Normal(part) => {
                depth += 1;
                out.push(part);
            }
        }
    }
    Some(out)
}

/// How often a connection is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `every 6h`, `every 30m`, `every 1d`.
    Every(Duration),
}

impl Schedule {
    /// Longest interval accepted: a year.
    pub const MAX: Duration = Duration::from_hours(365 * 24);

    /// Reads `every <n>m`, `every <n>h` or `every <n>d` (n at least 1, at most 365 days in all).
    pub fn parse(text: &str) -> Result<Self, Problem> {
        let bad = || Problem::BadSchedule(text.to_owned());
        let amount = text.strip_prefix("every ").ok_or_else(bad)?;
        let unit_at = amount.len().checked_sub(1).ok_or_else(bad)?;
        let (number, unit) = amount.split_at_checked(unit_at).ok_or_else(bad)?;
        let seconds_per_unit = match unit {
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        let seconds = n.checked_mul(seconds_per_unit).ok_or_else(bad)?;
        let interval = Duration::from_secs(seconds);
        if n == 0 || interval > Self::MAX {
            return Err(bad());
        }
        Ok(Self::Every(interval))
    }

    /// Time between two scans.
    pub fn interval(self) -> Duration {
        match self {
            Self::Every(interval) => interval,
        }
    }
}

impl FromStr for Schedule {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Writes the largest whole unit, so `Schedule::parse(&s.to_string()) == Ok(s)` for any interval
/// that is a whole number of minutes.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.interval().as_secs();
        if seconds.is_multiple_of(86_400) {
            write!(f, "every {}d", seconds / 86_400)
        } else if seconds.is_multiple_of(3600) {
            write!(f, "every {}h", seconds / 3600)
        } else {
            write!(f, "every {}m", seconds / 60)
        }
    }
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
    /// A run that would resolve more than this percentage of the connection's open findings is
    /// held for an operator to accept...
    pub resolve_guard_percent: u8,
    /// ...when the connection has more than this many open findings.
    pub resolve_guard_min: u64,
}

/// The default of `resolve_guard_percent`.
pub const DEFAULT_RESOLVE_GUARD_PERCENT: u8 = 50;
/// The default of `resolve_guard_min`.
pub const DEFAULT_RESOLVE_GUARD_MIN: u64 = 20;

impl Config {
    /// The plugin with this id.
    pub fn plugin(&self, id: &str) -> Option<&PluginSpec> {
        self.plugins.iter().find(|p| p.id.as_str() == id)
    }

    /// The connection with this name.
    pub fn connection(&self, name: &str) -> Option<&ConnectionSpec> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// The enrichment rules this file sets: applications, thresholds and extra controls.
    pub fn policy(&self) -> keelson_enrich::Policy {
        keelson_enrich::Policy::new(
            self.applications.clone(),
            self.enrichment.clone(),
            self.compliance.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_read_minutes_hours_and_days() {
        assert_eq!(
            Schedule::parse("every 30m").unwrap().interval(),
            Duration::from_mins(30)
        );
        assert_eq!(
            Schedule::parse("every 6h").unwrap().interval(),
            Duration::from_hours(6)
        );
        assert_eq!(
            Schedule::parse("every 1d").unwrap().interval(),
            Duration::from_hours(24)
        );
        assert_eq!(
            Schedule::parse("every 365d").unwrap().interval(),
            Schedule::MAX
        );
        assert_eq!(
            "every 90m".parse::<Schedule>().unwrap().interval(),
            Duration::from_mins(90)
        );
    }

    #[test]
    fn schedules_print_in_their_largest_whole_unit_and_read_back() {
        for (text, printed) in [
            ("every 90m", "every 90m"),
            ("every 120m", "every 2h"),
            ("every 48h", "every 2d"),
        ] {
            let schedule = Schedule::parse(text).unwrap();
            assert_eq!(schedule.to_string(), printed);
            assert_eq!(Schedule::parse(printed).unwrap(), schedule);
        }
    }

    #[test]
    fn malformed_schedules_are_refused_naming_the_text() {
        for text in [
            "",
            "daily",
            "every",
            "every h",
            "every 6",
            "every -1h",
            "every +6h",
            "every 6 h",
            "Every 6h",
            "every 6H",
            "every 6h ",
            " every 6h",
            "every 0m",
            "every 366d",
            "every 8761h",
            "every 99999999999999999999d",
            "every 6s",
            "every 1.5h",
            "every ６h",
        ] {
            assert_eq!(
                Schedule::parse(text),
                Err(Problem::BadSchedule(text.to_owned())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn plugin_ids_are_lowercase_words_joined_by_single_dashes() {
        for id in ["a", "acr", "azure-container-registry", "a1-b2", "x9"] {
            assert_eq!(PluginId::new(id).unwrap().as_str(), id);
        }
        for id in [
            "",
            "1acr",
            "-acr",
            "acr-",
            "a--b",
            "Acr",
            "acr_x",
            "acr.x",
            "acr x",
            "é",
            &"a".repeat(65),
        ] {
            assert_eq!(
                PluginId::new(id),
                Err(Problem::BadPluginId(id.to_owned())),
                "{id:?}"
            );
        }
        let id: PluginId = "acr".parse().unwrap();
        assert!(id == "acr");
        let set: std::collections::BTreeSet<PluginId> = [id].into();
        assert!(
            set.contains("acr"),
            "lookups by &str go through Borrow<str>"
        );
    }

    #[test]
    fn connection_names_allow_underscores_and_leading_digits() {
        for name in ["prod", "lab_2", "9", "team-a_prod"] {
            assert!(validate_connection_name(name).is_ok(), "{name}");
        }
        for name in [
            "",
            "_x",
            "-x",
            "Prod",
            "prod account",
            "prod/x",
            &"a".repeat(65),
        ] {
            assert!(validate_connection_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn secret_references_read_env_file_and_prompt() {
        let dir = Path::new("/srv/secrets");
        assert_eq!(SecretRef::parse("k", "prompt", dir), Ok(SecretRef::Prompt));
        assert_eq!(
            SecretRef::parse("k", "env:KEELSON_A_1", dir),
            Ok(SecretRef::Env("KEELSON_A_1".to_owned()))
        );
        assert_eq!(
            SecretRef::parse("k", "file:a/b.pem", dir),
            Ok(SecretRef::File("/srv/secrets/a/b.pem".into()))
        );
        assert_eq!(
            SecretRef::parse("k", "file:./a/../b", dir),
            Ok(SecretRef::File("/srv/secrets/b".into()))
        );
        assert_eq!(
            SecretRef::parse("k", "file:/srv/secrets/x", dir),
            Ok(SecretRef::File("/srv/secrets/x".into()))
        );
        for reference in ["prompt", "env:KEELSON_A_1", "file:/srv/secrets/x"] {
            let parsed = SecretRef::parse("k", reference, dir).unwrap();
            assert_eq!(parsed.to_string(), reference);
        }
    }

    #[test]
    fn secret_references_outside_their_bounds_are_refused() {
        let dir = Path::new("/srv/secrets");
        for name in [
            "PATH",
            "AZURE_CLIENT_SECRET",
            "KEELSON_",
            "KEELSON_a",
            "keelson_A",
            "KEELSON_A-B",
            "",
        ] {
            let err = SecretRef::parse("k", &format!("env:{name}"), dir).unwrap_err();
            assert_eq!(
                err,
                Problem::EnvOutsidePrefix {
                    key: "k".to_owned(),
                    name: name.to_owned()
                }
            );
        }
        for path in [
            "/etc/shadow",
            "../x",
            "a/../../x",
            "",
            ".",
            "a/..",
            "/srv/secrets",
            "/srv/secretsx/a",
            "/srv/secrets/../x",
        ] {
            let err = SecretRef::parse("k", &format!("file:{path}"), dir).unwrap_err();
            assert_eq!(
                err,
                Problem::FileOutsideSecretsDir {
                    key: "k".to_owned(),
                    path: path.into()
                },
                "{path:?}"
            );
        }
    }

    #[test]
    fn the_master_key_is_never_a_connection_secret() {
        let dir = Path::new("/srv/secrets");
        assert_eq!(
            SecretRef::parse("client_secret", "env:KEELSON_MASTER_KEY", dir),
            Err(Problem::SecretIsMasterKey {
                key: "client_secret".to_owned(),
                reference: "env:KEELSON_MASTER_KEY".to_owned()
            })
        );
        // A variable that merely starts like it is another variable.
        assert!(SecretRef::parse("k", "env:KEELSON_MASTER_KEY_2", dir).is_ok());

        let host = HostSettings {
            database: PathBuf::from("/srv/secrets/state/keelson.db"),
            cache_dir: PathBuf::new(),
            extra_ca_certs: Vec::new(),
            proxy: None,
            resolve: Vec::new(),
            secrets_dir: dir.to_path_buf(),
        };
        assert_eq!(
            host.master_key_file(),
            Path::new("/srv/secrets/state/master.key")
        );
        for text in [
            "file:state/master.key",
            "file:./state/../state/master.key",
            "file:/srv/secrets/state/master.key",
        ] {
            let reference = SecretRef::parse("client_secret", text, dir).unwrap();
            let err = reference
                .check_not_master_key("client_secret", &host)
                .unwrap_err();
            assert!(
                matches!(&err, Problem::SecretIsMasterKey { key, .. } if key == "client_secret"),
                "{text}: {err:?}"
            );
            assert!(err.to_string().contains("master key"), "{err}");
        }
        let env = SecretRef::Env(MASTER_KEY_ENV.to_owned());
        assert!(env.check_not_master_key("k", &host).is_err());
        for text in [
            "file:state/other.key",
            "file:master.key",
            "env:KEELSON_X",
            "prompt",
        ] {
            let reference = SecretRef::parse("k", text, dir).unwrap();
            assert_eq!(reference.check_not_master_key("k", &host), Ok(()), "{text}");
        }
    }

    #[test]
    fn a_plain_value_where_a_reference_belongs_is_refused_without_echo() {
        let err = SecretRef::parse("client_secret", "s3cr3t-value", Path::new("/srv")).unwrap_err();
        assert_eq!(err, Problem::PlainSecret("client_secret".to_owned()));
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        // Near misses of the reference forms are plain values too.
        for text in ["Prompt", "ENV:KEELSON_X", "env KEELSON_X", "file"] {
            assert_eq!(
                SecretRef::parse("k", text, Path::new("/srv")),
                Err(Problem::PlainSecret("k".to_owned()))
            );
        }
    }

    #[test]
    fn lexical_normalisation_refuses_climbing_above_the_start() {
        assert_eq!(
            normalize_lexically(Path::new("a/./b/../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(
            normalize_lexically(Path::new("/a/../b")),
            Some(PathBuf::from("/b"))
        );
        assert_eq!(normalize_lexically(Path::new("a/../..")), None);
        assert_eq!(normalize_lexically(Path::new("/..")), None);
    }

    #[test]
    fn config_finds_plugins_and_connections_by_name() {
        let spec = |id: &str| PluginSpec {
            id: PluginId::new(id).unwrap(),
            path: PathBuf::from(format!("{id}.wasm")),
            sha256: None,
            allowed_hosts: Vec::new(),
            limits: PluginLimits::default(),
            enabled: true,
            allow_plaintext_secrets: false,
            secret_hosts: BTreeMap::new(),
        };
        let config = Config {
            source: PathBuf::from("plugins.toml"),
            host: HostSettings {
                database: PathBuf::new(),
                cache_dir: PathBuf::new(),
                extra_ca_certs: Vec::new(),
                proxy: None,
                resolve: Vec::new(),
                secrets_dir: PathBuf::new(),
            },
            plugins: vec![spec("a"), spec("b")],
            connections: vec![ConnectionSpec {
                name: "prod".to_owned(),
                plugin: PluginId::new("b").unwrap(),
                schedule: None,
                settings: BTreeMap::new(),
                secrets: BTreeMap::new(),
                locations: vec!["*".to_owned()],
                resolve_guard_percent: DEFAULT_RESOLVE_GUARD_PERCENT,
                resolve_guard_min: DEFAULT_RESOLVE_GUARD_MIN,
            }],
            applications: Vec::new(),
            enrichment: keelson_enrich::Thresholds::default(),
            compliance: Vec::new(),
        };
        assert_eq!(config.plugin("b").unwrap().path, Path::new("b.wasm"));
        assert!(config.plugin("c").is_none());
        assert_eq!(config.connection("prod").unwrap().plugin.as_str(), "b");
        assert!(config.connection("dev").is_none());
    }
}
