//! What every store-backed command shares: the configuration, the store, the master key, and
//! opening a connection's connector with its secrets bound to the hosts they may reach.
//!
//! Connections come from two places. Those declared in plugins.toml are copied into the store at
//! start (settings, plugin, and the sealed value of any `prompt` secret); their `env:` and `file:`
//! secrets are read afresh each time they are used, so the configuration stays the source of
//! truth. Those created by `keelson connect` live only in the store, their secrets sealed.
//!
//! A secret is never Keelson's own master key: not `env:KEELSON_MASTER_KEY`, not the key file
//! (by path, or through a link), and not the key's value under another name. Settings are of the
//! kind the plugin's `describe` gives them: secret ones only as secrets, the others never.
//!
//! Egress binding: a secret may be sent only to the plugin's granted hosts that name one exact
//! host (`https://login.microsoftonline.com`), never to a wildcard grant (`https://*.azurecr.io`),
//! since anyone can own a name under a wildcard. For ACR that is the Entra authority and ARM.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use keelson_config::{
    Config, ConnectionSpec as DeclaredConnection, HostSettings, PluginSpec, SecretRef,
};
use keelson_core::{HostPattern, KeyValue};
use keelson_runtime::{BoundSecret, Connection, Plugin, Runtime};
use keelson_scan::Selection;
use keelson_store::{
    ConnectionSpec, Keyring, ResolveGuard, SelectionAction, SelectionRule, Store, StoredConnection,
};
use secrecy::{ExposeSecret as _, SecretString};

use crate::host;

/// The actor recorded in the event log for changes made from this command line.
pub(crate) const ACTOR: &str = "cli";

/// The configuration, the open store and the master key.
pub(crate) struct App {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) keys: Keyring,
    runtime: Option<Runtime>,
}

impl App {
    /// Opens the store named by `[host] database` (creating its folder), loads the master key and
    /// copies the connections of plugins.toml into the store.
    pub(crate) fn open(config: Config, master_key: Option<&str>) -> anyhow::Result<Self> {
        let database = &config.host.database;
        if let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder `{}`", dir.display()))?;
        }
        let store = Store::open(database)?;
        let keys = crate::keys::keyring(database, master_key)?;
        let mut app = Self {
            config,
            store,
            keys,
            runtime: None,
        };
        app.sync_declared()?;
        Ok(app)
    }

    /// The plugin runtime, built on first use.
    pub(crate) fn runtime(&mut self) -> anyhow::Result<&Runtime> {
        if self.runtime.is_none() {
            self.runtime = Some(host::runtime(&self.config)?);
        }
        Ok(self.runtime.as_ref().expect("just set"))
    }

    /// Writes each `[[connection]]` of plugins.toml into the store when it differs from what the
    /// store holds. Stored `prompt` secrets are kept; nothing else of a declared connection is.
    fn sync_declared(&mut self) -> anyhow::Result<()> {
        for declared in self.config.connections.clone() {
            let stored = self.store.connection(&declared.name)?;
            let prompt_keys: Vec<&String> = declared
                .secrets
                .iter()
                .filter(|(_, r)| **r == SecretRef::Prompt)
                .map(|(k, _)| k)
                .collect();
            let mut secrets = BTreeMap::new();
            if let Some(stored) = &stored {
                let kept: Vec<String> = stored
                    .secret_keys
                    .iter()
                    .filter(|k| prompt_keys.contains(k))
                    .cloned()
                    .collect();
                let same = stored.plugin == declared.plugin.as_str()
                    && stored.settings == declared.settings
                    && kept == stored.secret_keys;
                if same {
                    continue;
                }
                if !kept.is_empty() {
                    let mut open = self.store.connection_secrets(&declared.name, &self.keys)?;
                    secrets = kept.iter().filter_map(|k| open.remove_entry(k)).collect();
                }
            }
            let spec = ConnectionSpec {
                name: declared.name.clone(),
                plugin: declared.plugin.as_str().to_owned(),
                settings: declared.settings.clone(),
                secrets,
            };
            self.store
                .save_connection(&spec, &self.keys, "plugins.toml")?;
        }
        Ok(())
    }

    /// The connection's declaration in plugins.toml, if it has one.
    pub(crate) fn declared(&self, name: &str) -> Option<&DeclaredConnection> {
        self.config.connection(name)
    }

    /// The stored connection `name`, or an error listing the known ones.
    pub(crate) fn stored(&self, name: &str) -> anyhow::Result<StoredConnection> {
        if let Some(c) = self.store.connection(name)? {
            return Ok(c);
        }
        let known: Vec<String> = self
            .store
            .connections()?
            .into_iter()
            .map(|c| format!("`{}`", c.name))
            .collect();
        if known.is_empty() {
            bail!(
                "no connection named `{name}`; there are none yet: add one with `keelson connect PLUGIN --name NAME ...` or a `[[connection]]` in plugins.toml"
            );
        }
        bail!("no connection named `{name}`; known: {}", known.join(", "))
    }

    /// The enabled plugin `id` of plugins.toml.
    pub(crate) fn plugin_spec(&self, id: &str) -> anyhow::Result<PluginSpec> {
        let spec = self.config.plugin(id).with_context(|| {
            let known: Vec<String> = self
                .config
                .plugins
                .iter()
                .map(|p| format!("`{}`", p.id))
                .collect();
            format!(
                "no plugin `{id}` in `{}`; known: {}",
                self.config.source.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })?;
        if !spec.enabled {
            bail!(
                "plugin `{id}` is disabled in `{}` (`enabled = false`)",
                self.config.source.display()
            );
        }
        Ok(spec.clone())
    }

    /// Loads plugin `id`.
    pub(crate) async fn load_plugin(&mut self, id: &str) -> anyhow::Result<Plugin> {
        let spec = self.plugin_spec(id)?;
        let runtime = self.runtime()?;
        Ok(runtime.load(&spec).await?)
    }

    /// The secret values of connection `name`: declared references read now (a `prompt` one from
    /// the store, asked for if it was never stored), or the sealed values of a CLI connection.
    pub(crate) fn secrets_of(
        &mut self,
        name: &str,
    ) -> anyhow::Result<BTreeMap<String, SecretString>> {
        let mut stored = self.store.connection_secrets(name, &self.keys)?;
        let Some(declared) = self.declared(name).cloned() else {
            self.refuse_master_key(name, &stored)?;
            return Ok(stored);
        };
        let host = self.config.host.clone();
        let mut out = BTreeMap::new();
        let mut asked = false;
        for (key, reference) in &declared.secrets {
            let value = match (reference, stored.remove(key)) {
                (SecretRef::Prompt, Some(value)) => value,
                (SecretRef::Prompt, None) => {
                    asked = true;
                    read_secret(name, key, reference, &host)?
                }
                (_, _) => read_secret(name, key, reference, &host)?,
            };
            out.insert(key.clone(), value);
        }
        self.refuse_master_key(name, &out)?;
        if asked {
            // Keep what was typed, sealed, so the next run does not ask again.
            let prompt: BTreeMap<String, SecretString> = declared
                .secrets
                .iter()
                .filter(|(_, r)| **r == SecretRef::Prompt)
                .filter_map(|(k, _)| out.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            let spec = ConnectionSpec {
                name: name.to_owned(),
                plugin: declared.plugin.as_str().to_owned(),
                settings: declared.settings.clone(),
                secrets: prompt,
            };
            self.store
                .save_connection(&spec, &self.keys, "plugins.toml")?;
        }
        Ok(out)
    }

    /// Refuses secrets of connection `name` whose value is Keelson's master key, however they
    /// were referenced: a copy of the key file, another variable holding the key, a typed value.
    pub(crate) fn refuse_master_key(
        &self,
        name: &str,
        secrets: &BTreeMap<String, SecretString>,
    ) -> anyhow::Result<()> {
        for (key, value) in secrets {
            if crate::keys::is_master_key(&self.keys, value.expose_secret()) {
                bail!(
                    "secret `{key}` of connection `{name}` is Keelson's master key (it seals every stored secret), and a connector is never given it; give the connection its own credential"
                );
            }
        }
        Ok(())
    }

    /// Loads the plugin of connection `name` and connects with its settings and secrets.
    pub(crate) async fn open_connection(&mut self, name: &str) -> anyhow::Result<Connection> {
        let stored = self.stored(name)?;
        let secrets = self.secrets_of(name)?;
        let plugin = self.load_plugin(&stored.plugin).await?;
        connect(&plugin, name, &stored.settings, &secrets).await
    }

    /// The location selection of connection `name`: the `locations` of its declaration (each a
    /// select rule; `*` alone means everything), then the rules set with `keelson locations`.
    pub(crate) fn selection_rules(&self, name: &str) -> anyhow::Result<Vec<SelectionRule>> {
        let stored = self.stored(name)?;
        let mut rules = declared_rules(&self.config, name);
        rules.extend(stored.selection);
        Ok(rules)
    }

    pub(crate) fn selection(&self, name: &str) -> anyhow::Result<Selection> {
        Ok(Selection::new(&self.selection_rules(name)?)?)
    }

    /// When a run of connection `name` that would resolve many findings is held: the thresholds
    /// of its `[[connection]]` in plugins.toml, or the defaults.
    pub(crate) fn resolve_guard(&self, name: &str, accept_drop: bool) -> ResolveGuard {
        let (percent, min_open) = self.declared(name).map_or(
            (
                keelson_config::DEFAULT_RESOLVE_GUARD_PERCENT,
                keelson_config::DEFAULT_RESOLVE_GUARD_MIN,
            ),
            |d| (d.resolve_guard_percent, d.resolve_guard_min),
        );
        ResolveGuard {
            percent,
            min_open,
            accept_drop,
        }
    }
}

/// The selection rules `config` declares for connection `name` (its `locations`; `*` is
/// everything, so no rule), which come before the stored ones.
pub(crate) fn declared_rules(config: &Config, name: &str) -> Vec<SelectionRule> {
    config
        .connection(name)
        .map(|d| {
            d.locations
                .iter()
                .filter(|l| l.as_str() != "*")
                .map(|l| SelectionRule {
                    action: SelectionAction::Select,
                    pattern: l.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Connects `plugin` as connection `name`: settings and secret values go to the guest, and each
/// secret is bound to the plugin's exact-host grants. Refused when a setting is not of the kind
/// (secret or not) the plugin declares.
pub(crate) async fn connect(
    plugin: &Plugin,
    name: &str,
    settings: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretString>,
) -> anyhow::Result<Connection> {
    crate::connections::check_setting_kinds(plugin.describe(), name, settings, secrets)?;
    let mut values: Vec<KeyValue> = settings
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    let exact_hosts: Vec<HostPattern> = plugin
        .spec()
        .allowed_hosts
        .iter()
        .filter(|p| p.exact_host().is_some())
        .cloned()
        .collect();
    let mut bound = Vec::with_capacity(secrets.len());
    for (key, value) in secrets {
        values.retain(|kv| kv.key != *key);
        values.push(KeyValue {
            key: key.clone(),
            value: value.expose_secret().to_owned(),
        });
        bound.push(BoundSecret {
            name: key.clone(),
            value: value.expose_secret().to_owned(),
            allowed_hosts: secret_hosts(plugin, key, &exact_hosts)?,
        });
    }
    Ok(plugin.connect(name, values, bound).await?)
}

/// Where secret `key` of `plugin` may be sent: the hosts its setting declares (each inside the
/// plugin's `allowed_hosts`), else the plugin's exact-host grants; narrowed by the operator's
/// `secret_hosts` for that key, which must lie inside those.
fn secret_hosts(
    plugin: &Plugin,
    key: &str,
    exact_hosts: &[HostPattern],
) -> anyhow::Result<Vec<HostPattern>> {
    let id = plugin.id();
    let declared = plugin
        .describe()
        .settings
        .iter()
        .find(|s| s.key == key)
        .map_or(&[][..], |s| s.secret_hosts.as_slice());
    let granted = &plugin.spec().allowed_hosts;
    let hosts: Vec<HostPattern> = if declared.is_empty() {
        exact_hosts.to_vec()
    } else {
        declared
            .iter()
            .map(|text| {
                let pattern = HostPattern::parse(text).map_err(|e| {
                    anyhow::anyhow!(
                        "plugin `{id}` declares secret `{key}` bound to {e}; the plugin is broken, ask its author"
                    )
                })?;
                if granted.iter().any(|g| pattern.within(g)) {
                    Ok(pattern)
                } else {
                    anyhow::bail!(
                        "plugin `{id}` sends secret `{key}` to `{text}`, which is not in its `allowed_hosts` in plugins.toml; grant it there if you trust that host"
                    )
                }
            })
            .collect::<anyhow::Result<_>>()?
    };
    let Some(narrowed) = plugin.spec().secret_hosts.get(key) else {
        return Ok(hosts);
    };
    for pattern in narrowed {
        if !hosts.iter().any(|h| pattern.within(h)) {
            let allowed: Vec<String> = hosts.iter().map(|h| format!("`{h}`")).collect();
            anyhow::bail!(
                "`secret_hosts.{key}` of plugin `{id}` names `{pattern}`, where the plugin does not send that secret (it may go to {}); `secret_hosts` can only narrow",
                if allowed.is_empty() {
                    "no host".to_owned()
                } else {
                    allowed.join(", ")
                }
            );
        }
    }
    Ok(narrowed.clone())
}

/// Reads one secret reference under `host`'s `secrets_dir`; a reference to the master key (by
/// name, or a file that is the key file through a link) is refused. Errors name the
/// connection, the setting and the reference, never a value.
pub(crate) fn read_secret(
    connection: &str,
    key: &str,
    reference: &SecretRef,
    host: &HostSettings,
) -> anyhow::Result<SecretString> {
    reference
        .check_not_master_key(key, host)
        .map_err(|problem| anyhow::anyhow!("connection `{connection}`: {problem}"))?;
    let value = match reference {
        SecretRef::Env(var) => {
            #[allow(clippy::disallowed_methods, reason = "the CLI is where the environment is read")]
            let value = std::env::var(var);
            value.map_err(|_| {
                anyhow::anyhow!(
                    "secret `{key}` of connection `{connection}` comes from `env:{var}`, but `{var}` is not set (or not UTF-8)"
                )
            })?
        }
        SecretRef::File(path) => {
            let resolved = keelson_config::resolve_secret_file(&host.secrets_dir, path)?;
            if same_file(&resolved, &host.master_key_file()) {
                bail!(
                    "secret `{key}` of connection `{connection}` reads `{reference}`, which is Keelson's master key file (it seals every stored secret), and a connector is never given it; give the connection its own credential"
                );
            }
            let text = std::fs::read_to_string(&resolved).with_context(|| {
                format!(
                    "cannot read secret `{key}` of connection `{connection}` from `{}`",
                    resolved.display()
                )
            })?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
        SecretRef::Prompt => rpassword::prompt_password(format!(
            "secret `{key}` of connection `{connection}` (input hidden): "
        ))
        .with_context(|| {
            format!(
                "cannot ask for secret `{key}` of connection `{connection}`: no terminal; use `env:KEELSON_...` or `file:PATH` instead of `prompt`"
            )
        })?,
    };
    if value.is_empty() {
        bail!("secret `{key}` of connection `{connection}` ({reference}) is empty");
    }
    Ok(SecretString::from(value))
}

/// Whether `a` and `b` name the same file, through symbolic and hard links. A file that cannot
/// be read is no file.
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(meta_a), Ok(meta_b)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        meta_a.dev() == meta_b.dev() && meta_a.ino() == meta_b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (meta_a, meta_b);
        a.canonicalize().ok() == b.canonicalize().ok()
    }
}
