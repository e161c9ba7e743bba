//! `keelson connect`, `keelson verify`, `keelson locations` and `keelson disconnect`: adding an
//! account, proving it works, choosing which of its registries and repositories are scanned, and
//! deleting it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use keelson_config::SecretRef;
use keelson_core::{Account, ConnectorInfo, SettingSpec};
use keelson_runtime::Plugin;
use keelson_scan::{PagingPolicy, Selection, check_glob, walk};
use keelson_server::{LocationReport, RegistryLocation};
use keelson_store::{ConnectionSpec, SelectionAction, SelectionRule};
use secrecy::SecretString;

use crate::app::{ACTOR, App, connect, read_secret};

/// `keelson connect`.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The plugin id, as in plugins.toml (`azure-container-registry`).
    plugin: String,
    /// The connection's name: lowercase letters, digits, `-` and `_`.
    #[arg(long)]
    name: String,
    /// A setting, `KEY=VALUE`; repeat for each. Secret settings go in `--secret`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// A secret setting, `KEY=REF` where REF is `env:KEELSON_NAME`, `file:PATH` or `prompt`; the
    /// value is read now, checked, and stored encrypted.
    #[arg(long = "secret", value_name = "KEY=REF")]
    secrets: Vec<String>,
}

fn split_pair<'a>(flag: &str, text: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => bail!("`{flag}` expects `KEY=VALUE`, got `{}`", redact_value(text)),
    }
}

/// Shows only the key of a malformed pair: a secret may have been typed where a reference belongs.
fn redact_value(text: &str) -> String {
    text.split_once('=')
        .map_or_else(|| "…".to_owned(), |(k, _)| format!("{k}=…"))
}

pub(crate) async fn connect_cmd(app: &mut App, args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    let mut settings = BTreeMap::new();
    for pair in &args.settings {
        let (key, value) = split_pair("--set", pair)?;
        settings.insert(key.to_owned(), value.to_owned());
    }
    let mut references = BTreeMap::new();
    for pair in &args.secrets {
        let (key, reference) = split_pair("--secret", pair)?;
        references.insert(key.to_owned(), reference.to_owned());
    }
    let secret_keys: BTreeSet<String> = references.keys().cloned().collect();
    let plugin = check_new_connection(app, &args.plugin, name, &settings, &secret_keys).await?;
    let info = plugin.describe().clone();
    let mut secrets: BTreeMap<String, SecretString> = BTreeMap::new();
    for (key, reference) in &references {
        let reference = SecretRef::parse(key, reference, &app.config.host.secrets_dir)
            .map_err(|p| anyhow::anyhow!("{p}"))
            .with_context(|| format!("invalid `--secret {key}=…`"))?;
        let value = read_secret(name, key, &reference, &app.config.host)?;
        secrets.insert(key.clone(), value);
    }
    let account = connect_and_save(app, &plugin, name, settings, secrets, ACTOR).await?;
    say(&format!(
        "✔ connection `{name}` saved: {} ({}) via {}",
        account.display_name, account.id, info.display_name
    ));
    say(&format!(
        "  next: `keelson locations {name}` to choose what to scan, then `keelson scan {name}`"
    ));
    Ok(ExitCode::SUCCESS)
}

/// Checks a new connection the way `keelson connect` and the web page both do, before anything
/// is contacted or any secret read: the name, no clash with a declared or other-plugin
/// connection, every setting known, the secret ones only among `secret_keys` and the others
/// only among `settings`, and every required one given. Loads the plugin.
pub(crate) async fn check_new_connection(
    app: &mut App,
    plugin_id: &str,
    name: &str,
    settings: &BTreeMap<String, String>,
    secret_keys: &BTreeSet<String>,
) -> anyhow::Result<Plugin> {
    keelson_config::validate_connection_name(name)
        .map_err(|p| anyhow::anyhow!("{p}"))
        .context("invalid `--name`")?;
    if app.declared(name).is_some() {
        bail!(
            "connection `{name}` is declared in `{}`; change it there",
            app.config.source.display()
        );
    }
    if let Some(existing) = app.store.connection(name)?
        && existing.plugin != plugin_id
    {
        bail!(
            "connection `{name}` already exists for plugin `{}`; pick another `--name`",
            existing.plugin
        );
    }
    let plugin = app.load_plugin(plugin_id).await?;
    let info = plugin.describe().clone();
    for key in settings.keys() {
        let spec = setting(&info, key)?;
        if spec.secret {
            bail!(
                "setting `{key}` is secret: pass it as `--secret {key}=env:KEELSON_...` (or `file:PATH`, `prompt`), never on the command line"
            );
        }
    }
    for key in secret_keys {
        let spec = setting(&info, key)?;
        if !spec.secret {
            bail!(
                "setting `{key}` is not secret: pass it as `--set {key}=VALUE`; `--secret` is only for the settings plugin `{}` marks secret ({})",
                info.id,
                secret_settings(&info)
            );
        }
    }
    check_required(&info, settings, secret_keys)?;
    Ok(plugin)
}

/// The plugin's secret settings, for an error: `` `client_secret` `` or `none`.
fn secret_settings(info: &ConnectorInfo) -> String {
    let secret: Vec<String> = info
        .settings
        .iter()
        .filter(|s| s.secret)
        .map(|s| format!("`{}`", s.key))
        .collect();
    if secret.is_empty() {
        "none".to_owned()
    } else {
        secret.join(", ")
    }
}

/// Every setting of connection `name` is of the kind `info` declares, checked at each connect
/// (a declared connection, or a stored one whose plugin changed): a secret setting only among
/// the secrets, never in `settings`, where its value would be kept and shown as text; a plain
/// one only among the settings, since a secret is hidden from review and bound to hosts.
/// Settings the plugin does not declare are left to it.
pub(crate) fn check_setting_kinds(
    info: &ConnectorInfo,
    name: &str,
    settings: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretString>,
) -> anyhow::Result<()> {
    let spec = |key: &str| info.settings.iter().find(|s| s.key == key);
    for key in settings.keys() {
        if spec(key).is_some_and(|s| s.secret) {
            bail!(
                "connection `{name}`: setting `{key}` is secret for plugin `{}` but is given as a plain setting; move it to `secrets` (`env:KEELSON_...`, `file:PATH` or `prompt`; `--secret` for `keelson connect`)",
                info.id
            );
        }
    }
    for key in secrets.keys() {
        if spec(key).is_some_and(|s| !s.secret) {
            bail!(
                "connection `{name}`: setting `{key}` is not secret for plugin `{}` but is given as a secret; move it to `settings` (`--set` for `keelson connect`); its secret settings are {}",
                info.id,
                secret_settings(info)
            );
        }
    }
    Ok(())
}

/// Connects with the given values, verifies, and only then saves the connection as `actor`.
pub(crate) async fn connect_and_save(
    app: &mut App,
    plugin: &Plugin,
    name: &str,
    settings: BTreeMap<String, String>,
    secrets: BTreeMap<String, SecretString>,
    actor: &str,
) -> anyhow::Result<Account> {
    let not_saved = || format!("connection `{name}` was not saved");
    app.refuse_master_key(name, &secrets)
        .with_context(not_saved)?;
    let mut conn = connect(plugin, name, &settings, &secrets)
        .await
        .with_context(not_saved)?;
    let account = conn
        .verify()
        .await
        .context("verifying the connection failed")
        .with_context(not_saved)?;
    let spec = ConnectionSpec {
        name: name.to_owned(),
        plugin: plugin.spec().id.as_str().to_owned(),
        settings,
        secrets,
    };
    app.store.save_connection(&spec, &app.keys, actor)?;
    Ok(account)
}

fn setting<'a>(info: &'a ConnectorInfo, key: &str) -> anyhow::Result<&'a SettingSpec> {
    info.settings
        .iter()
        .find(|s| s.key == key)
        .with_context(|| {
            let known: Vec<String> = info
                .settings
                .iter()
                .map(|s| format!("`{}`", s.key))
                .collect();
            format!(
                "plugin `{}` has no setting `{key}`; its settings are {}",
                info.id,
                known.join(", ")
            )
        })
}

/// Every required setting that applies (its `only_when` holds) must be given or have a default.
fn check_required(
    info: &ConnectorInfo,
    settings: &BTreeMap<String, String>,
    secrets: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let value_of = |key: &str| {
        settings.get(key).cloned().or_else(|| {
            info.settings
                .iter()
                .find(|s| s.key == key)
                .and_then(|s| s.default_value.clone())
        })
    };
    for spec in &info.settings {
        let applies = spec
            .only_when
            .as_ref()
            .is_none_or(|kv| value_of(&kv.key).as_deref() == Some(kv.value.as_str()));
        let given = settings.contains_key(&spec.key) || secrets.contains(&spec.key);
        if spec.required && applies && !given && spec.default_value.is_none() {
            let flag = if spec.secret {
                format!("--secret {}=env:KEELSON_...", spec.key)
            } else {
                format!("--set {}=...", spec.key)
            };
            bail!(
                "setting `{}` ({}) is required: add `{flag}`; {}",
                spec.key,
                spec.label,
                spec.help
            );
        }
    }
    Ok(())
}

/// `keelson verify NAME`.
pub(crate) async fn verify_cmd(app: &mut App, name: &str) -> anyhow::Result<ExitCode> {
    let result = async {
        let mut conn = app.open_connection(name).await?;
        Ok::<_, anyhow::Error>(conn.verify().await?)
    }
    .await;
    match result {
        Ok(account) => {
            say(&format!(
                "✔ `{name}` can connect: {} ({})",
                account.display_name, account.id
            ));
            for kv in &account.details {
                say(&format!("  {}: {}", kv.key, kv.value));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            say(&format!("✘ `{name}` cannot connect: {err:#}"));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `keelson disconnect NAME`: deletes a connection made with `keelson connect` (or the web
/// page). The store retires it: runs, findings and history stay, its secrets are wiped, it is
/// no longer listed, scanned or in the queue, and the name can be used again. A connection
/// declared in plugins.toml is refused: the next start would bring it back.
pub(crate) fn disconnect_cmd(app: &mut App, name: &str) -> anyhow::Result<ExitCode> {
    if app.declared(name).is_some() {
        bail!(
            "connection `{name}` is declared in `{}`: remove its `[[connection]]` there first, then run `keelson disconnect {name}`",
            app.config.source.display()
        );
    }
    app.stored(name)?;
    app.store.retire_connection(name, ACTOR)?;
    say(&format!(
        "✔ connection `{name}` deleted: it is no longer scanned, its issues left the queue and its secrets are wiped; its history stays"
    ));
    Ok(ExitCode::SUCCESS)
}

/// `keelson locations`.
#[derive(Debug, Args)]
pub(crate) struct LocationsArgs {
    /// The connection.
    name: String,
    /// Scan what matches GLOB (registry, or `registry/repository` when it has a `/`); repeatable.
    #[arg(long, value_name = "GLOB")]
    select: Vec<String>,
    /// Stop scanning what matches GLOB; repeatable. Applied after `--select`.
    #[arg(long, value_name = "GLOB")]
    deselect: Vec<String>,
    /// Forget every rule set here first (back to plugins.toml's `locations`, or everything).
    #[arg(long)]
    reset: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn locations_cmd(app: &mut App, args: LocationsArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    let stored = app.stored(name)?;
    if args.reset || !args.select.is_empty() || !args.deselect.is_empty() {
        let mut rules = if args.reset {
            Vec::new()
        } else {
            stored.selection
        };
        let changes = args
            .select
            .iter()
            .map(|g| (SelectionAction::Select, g))
            .chain(args.deselect.iter().map(|g| (SelectionAction::Deselect, g)));
        for (action, glob) in changes {
            check_glob(glob)?;
            // The newest rule for a glob replaces older ones, so the list stays short.
            rules.retain(|r| r.pattern != *glob);
            rules.push(SelectionRule {
                action,
                pattern: glob.clone(),
            });
        }
        app.store.set_selection(name, &rules, ACTOR)?;
    }
    let report = location_report(app, name).await?;
    if args.json {
        crate::output::json(&report)?;
    } else {
        print_locations(name, &report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The registries and repositories of connection `name`, listed live from its plugin, each with
/// what the current selection scans.
pub(crate) async fn location_report(app: &mut App, name: &str) -> anyhow::Result<LocationReport> {
    let rules = app.selection_rules(name)?;
    let selection = Selection::new(&rules)?;
    let mut conn = app.open_connection(name).await?;
    let policy = PagingPolicy::default();
    let mut registries = Vec::new();
    walk(
        &policy,
        async |p| Ok(conn.list_registries(p).await?),
        |items| {
            registries.extend(items);
            Ok(())
        },
    )
    .await
    .context("listing registries failed")?;
    registries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut report = LocationReport {
        rules,
        registries: Vec::new(),
    };
    for registry in registries {
        let mut repositories = Vec::new();
        let listed = walk(
            &policy,
            async |p| Ok(conn.list_repositories(&registry.name, p).await?),
            |items| {
                repositories.extend(items);
                Ok(())
            },
        )
        .await;
        let names = repositories.into_iter().map(|r| r.name).collect();
        report.registries.push(RegistryLocation {
            error: listed.err().map(|e| e.to_string()),
            ..RegistryLocation::new(&selection, registry.name, names)
        });
    }
    Ok(report)
}

fn print_locations(name: &str, report: &LocationReport) {
    if report.rules.is_empty() {
        say(&format!("`{name}` scans everything (no selection rules)"));
    } else {
        say(&format!(
            "selection rules of `{name}` (the last match wins):"
        ));
        for r in &report.rules {
            let action = match r.action {
                SelectionAction::Select => "select  ",
                SelectionAction::Deselect => "deselect",
            };
            say(&format!("  {action} {}", r.pattern));
        }
    }
    say("");
    for registry in &report.registries {
        let mark = match registry.state.as_str() {
            "selected" => "[x]",
            "partly" => "[~]",
            _ => "[ ]",
        };
        say(&format!("{mark} {}", registry.name));
        if let Some(err) = &registry.error {
            say(&format!("      cannot list repositories: {err}"));
        }
        for repo in &registry.repositories {
            say(&format!(
                "    {} {}",
                if repo.selected { "[x]" } else { "[ ]" },
                repo.name
            ));
        }
    }
    say("");
    say(&format!(
        "change with `keelson locations {name} --select GLOB` / `--deselect GLOB` (`*` and `?`; a `/` matches registry/repository)"
    ));
}

/// A line for the operator on stdout, neutralised as one line: it may quote plugin text.
pub(crate) fn say(line: &str) {
    // Unlike `println!`, no panic when the reader has gone (`keelson locations NAME | head`).
    let _ = crate::output::line(&mut std::io::stdout().lock(), line);
}
