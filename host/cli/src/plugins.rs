//! `keelson plugins`: what plugins.toml enables, whether each loads, and what it says of itself.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use keelson_config::{Config, PluginSpec};
use keelson_core::ConnectorInfo;
use serde::Serialize;

use crate::connections::say;
use crate::host;
use crate::output::indented;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// Lists each plugin with its file, digest, contract version, exports and grants.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows one plugin in full, including what its `describe` returns.
    Inspect {
        /// The plugin id, as in plugins.toml.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Runs the conformance checks on a connector component against the Azure simulator or a
    /// server; one PASS/FAIL line per check. Needs no plugins.toml.
    Test(Box<crate::conformance::TestArgs>),
}

/// One plugin as `list` and `inspect` show it.
#[derive(Debug, Serialize)]
struct PluginReport {
    id: String,
    path: String,
    enabled: bool,
    /// `loaded`, `disabled` or `refused`.
    status: &'static str,
    /// Why it was refused.
    error: Option<String>,
    sha256: Option<String>,
    wit_version: Option<String>,
    /// How the plugin gets its secrets: `sealed` (0.2.0) or `plaintext` (0.1.0, allowed by the
    /// operator); `None` when it is not loaded.
    secrets: Option<&'static str>,
    exports: Vec<String>,
    imports: Vec<String>,
    allowed_hosts: Vec<String>,
    memory_mb: u64,
    call_timeout_s: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    connector: Option<ConnectorInfo>,
}

pub(crate) async fn run(config: &Config, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    let runtime = host::runtime(config)?;
    match command {
        PluginsCommand::List { json } => {
            let mut reports = Vec::with_capacity(config.plugins.len());
            for spec in &config.plugins {
                reports.push(report(&runtime, spec, false).await);
            }
            let refused = reports.iter().any(|r| r.status == "refused");
            if json {
                crate::output::json(&reports)?;
            } else {
                print_table(&reports);
            }
            Ok(if refused {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        PluginsCommand::Inspect { id, json } => {
            let spec = config.plugin(&id).with_context(|| {
                let known: Vec<_> = config
                    .plugins
                    .iter()
                    .map(|p| format!("`{}`", p.id))
                    .collect();
                format!(
                    "no plugin `{id}` in plugins.toml; known: {}",
                    known.join(", ")
                )
            })?;
            let report = report(&runtime, spec, true).await;
            if json {
                crate::output::json(&report)?;
            } else {
                print_detail(&report);
            }
            Ok(if report.status == "refused" {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        PluginsCommand::Test(args) => crate::conformance::run(*args).await,
    }
}

async fn report(
    runtime: &keelson_runtime::Runtime,
    spec: &PluginSpec,
    with_info: bool,
) -> PluginReport {
    let mut report = PluginReport {
        id: spec.id.to_string(),
        path: spec.path.display().to_string(),
        enabled: spec.enabled,
        status: "disabled",
        error: None,
        sha256: spec.sha256.clone(),
        wit_version: None,
        secrets: None,
        exports: Vec::new(),
        imports: Vec::new(),
        allowed_hosts: spec.allowed_hosts.iter().map(ToString::to_string).collect(),
        memory_mb: spec.limits.memory_bytes >> 20,
        call_timeout_s: spec.limits.call_timeout.as_secs(),
        connector: None,
    };
    if !spec.enabled {
        return report;
    }
    match runtime.load(spec).await {
        Ok(plugin) => {
            report.status = "loaded";
            report.sha256 = Some(plugin.sha256().to_owned());
            report.wit_version = Some(plugin.wit_version().to_owned());
            report.secrets = Some(if plugin.seals_secrets() {
                "sealed"
            } else {
                "plaintext"
            });
            report.exports = plugin.exports().to_vec();
            report.imports = plugin.imports().to_vec();
            if with_info {
                report.connector = Some(plugin.describe().clone());
            }
        }
        Err(err) => {
            report.status = "refused";
            report.error = Some(err.to_string());
        }
    }
    report
}

/// The plugins as a table; a refusal quotes the plugin file, so lines go out through [`say`].
fn print_table(reports: &[PluginReport]) {
    if reports.is_empty() {
        say("no plugins in plugins.toml");
        return;
    }
    say(&format!(
        "{:<28} {:<8} {:<8} {:<14} EXPORTS",
        "ID", "STATUS", "WIT", "SHA256"
    ));
    for r in reports {
        let sha = r.sha256.as_deref().map_or("-", |s| &s[..s.len().min(12)]);
        let exports: Vec<&str> = r.exports.iter().map(|e| short_interface(e)).collect();
        say(&format!(
            "{:<28} {:<8} {:<8} {:<14} {}",
            r.id,
            r.status,
            r.wit_version.as_deref().unwrap_or("-"),
            sha,
            if exports.is_empty() {
                "-".to_owned()
            } else {
                exports.join(",")
            }
        ));
        say(&format!("    path:  {}", r.path));
        say(&format!(
            "    hosts: {}",
            if r.allowed_hosts.is_empty() {
                "(none: all requests denied)".to_owned()
            } else {
                r.allowed_hosts.join(" ")
            }
        ));
        if r.secrets == Some("plaintext") {
            say(&format!("    secrets: {PLAINTEXT_WARNING}"));
        }
        if let Some(err) = &r.error {
            say(&format!("    error: {err}"));
        }
    }
}

/// Why `allow_plaintext_secrets` is dangerous, where a plugin runs with it.
const PLAINTEXT_WARNING: &str = "PLAINTEXT: built for keelson:registry@0.1.0, this plugin holds     its connections' secret values itself (allowed by `allow_plaintext_secrets = true`); only     the egress gate's byte matching keeps it from sending them elsewhere, and re-encodings get     past that. Rebuild it against 0.2.0, which seals them.";

/// One plugin in full: most of it is what the plugin says of itself, so lines go out through
/// [`say`] and the instructions through [`indented`].
fn print_detail(r: &PluginReport) {
    say(&format!("id:            {}", r.id));
    say(&format!("status:        {}", r.status));
    if let Some(err) = &r.error {
        say(&format!("error:         {err}"));
    }
    say(&format!("path:          {}", r.path));
    say(&format!(
        "sha256:        {}",
        r.sha256.as_deref().unwrap_or("-")
    ));
    say(&format!(
        "wit version:   {}",
        r.wit_version.as_deref().unwrap_or("-")
    ));
    match r.secrets {
        Some("plaintext") => say(&format!("secrets:       {PLAINTEXT_WARNING}")),
        Some(how) => say(&format!("secrets:       {how}")),
        None => {}
    }
    say(&format!("exports:       {}", r.exports.join(" ")));
    say(&format!("imports:       {}", r.imports.join(" ")));
    say(&format!("allowed hosts: {}", r.allowed_hosts.join(" ")));
    say(&format!("memory:        {} MiB", r.memory_mb));
    say(&format!("call timeout:  {} s", r.call_timeout_s));
    let Some(info) = &r.connector else { return };
    say("");
    say(&format!(
        "connector:     {} ({}) version {}",
        info.display_name, info.id, info.version
    ));
    say(&format!("source tool:   {}", info.source_tool));
    say(&format!(
        "suggested hosts: {}",
        info.suggested_hosts.join(" ")
    ));
    say("settings:");
    for s in &info.settings {
        let mut flags = Vec::new();
        if s.required {
            flags.push("required".to_owned());
        }
        if s.secret {
            flags.push("secret".to_owned());
        }
        if let Some(d) = &s.default_value {
            flags.push(format!("default `{d}`"));
        }
        if !s.choices.is_empty() {
            flags.push(format!("one of {}", s.choices.join("|")));
        }
        if let Some(w) = &s.only_when {
            flags.push(format!("when {} = {}", w.key, w.value));
        }
        say(&format!(
            "  {:<26} {} [{}]",
            s.key,
            s.label,
            flags.join(", ")
        ));
        say(&format!("  {:<26} {}", "", s.help));
    }
    say("");
    say("connection instructions:");
    let _ = indented(&mut std::io::stdout().lock(), "  ", &info.instructions);
}

/// `keelson:registry/auth@0.1.0` -> `auth`.
fn short_interface(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    name.rsplit('/').next().unwrap_or(name)
}
