//! Enrichment commands: `keelson feeds import`, `keelson compliance`, `keelson suppress` /
//! `unsuppress` / `suppressions`, and `keelson priority set|clear` (the manual override).
//!
//! Every change re-evaluates the findings it touches with the rules of plugins.toml
//! (`[[application]]`, `[enrichment]`, `[[compliance]]`), so the queue is current when the
//! command returns; each change of priority is an event in the issue's history.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use keelson_core::Severity;
use keelson_enrich::SuppressionKind;
use keelson_enrich::feeds::{self, Feed};
use keelson_store::{EnrichCounts, EnrichScope, IssueId, RuleScope};
use serde::Serialize;

use crate::app::{ACTOR, App};

/// `keelson feeds`.
#[derive(Debug, Subcommand)]
pub(crate) enum FeedsCommand {
    /// Import the CISA KEV catalog (JSON) and FIRST EPSS scores (CSV, gzipped or not), as
    /// downloaded; each replaces its feed, then open findings are re-evaluated.
    Import {
        /// `known_exploited_vulnerabilities.json`, `epss_scores-current.csv.gz`, ...
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[allow(clippy::print_stdout, reason = "command output")]
pub(crate) fn feeds_cmd(app: &mut App, command: &FeedsCommand) -> anyhow::Result<ExitCode> {
    let FeedsCommand::Import { files } = command;
    for path in files {
        let file = File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
        let what = match feeds::open(file)
            .with_context(|| format!("`{}` is not a KEV or EPSS file", path.display()))?
        {
            Feed::Kev(catalog) => {
                let n = app.store.import_kev(&catalog, ACTOR)?;
                format!("CISA KEV catalog {}: {n} entries", catalog.catalog_version)
            }
            Feed::Epss(mut reader) => {
                let n = app
                    .store
                    .import_epss(&mut reader, ACTOR)
                    .with_context(|| format!("cannot import `{}`", path.display()))?;
                format!(
                    "FIRST EPSS scores (model {}, scored {}): {n} CVEs",
                    reader.header.model_version.as_deref().unwrap_or("?"),
                    reader.header.score_date.as_deref().unwrap_or("?")
                )
            }
        };
        println!("✔ {}: {what}", path.display());
    }
    let counts = app
        .store
        .enrich(&app.config.policy(), &EnrichScope::All, "feeds")?;
    print_counts(&counts);
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout, reason = "command output")]
fn print_counts(counts: &EnrichCounts) {
    println!(
        "re-evaluated {} findings: {} re-prioritised{}{} (`keelson issues` shows the queue)",
        counts.evaluated,
        counts.reprioritised,
        if counts.suppressed > 0 {
            format!(", {} suppressed by rules", counts.suppressed)
        } else {
            String::new()
        },
        if counts.unsuppressed > 0 {
            format!(", {} shown again", counts.unsuppressed)
        } else {
            String::new()
        }
    );
}

/// `keelson compliance`.
#[derive(Debug, Args)]
pub(crate) struct ComplianceArgs {
    /// Only this framework (`PCI DSS 4.0`).
    #[arg(long)]
    framework: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One control's line of the report.
#[derive(Debug, Serialize)]
struct ControlReport {
    framework: String,
    control: String,
    title: String,
    open_issues: u64,
    open_findings: u64,
    breached_issues: u64,
    breached_findings: u64,
}

pub(crate) fn compliance_cmd(app: &App, args: &ComplianceArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut counts: BTreeMap<String, keelson_store::ControlCount> = app
        .store
        .compliance()?
        .into_iter()
        .map(|c| (c.control.clone(), c))
        .collect();
    let mut report = Vec::new();
    for rule in app.config.policy().controls {
        let key = rule.key();
        if report
            .iter()
            .any(|r: &ControlReport| format!("{} {}", r.framework, r.control) == key)
        {
            continue;
        }
        let c = counts.remove(&key);
        report.push(ControlReport {
            framework: rule.framework,
            control: rule.control,
            title: rule.title,
            open_issues: c.as_ref().map_or(0, |c| c.issues),
            open_findings: c.as_ref().map_or(0, |c| c.findings),
            breached_issues: c.as_ref().map_or(0, |c| c.breached_issues),
            breached_findings: c.as_ref().map_or(0, |c| c.breached_findings),
        });
    }
    // Controls recorded by an earlier configuration, until the next evaluation drops them.
    for (key, c) in counts {
        let (framework, control) = key.rsplit_once(' ').unwrap_or(("(unknown)", &key));
        report.push(ControlReport {
            framework: framework.to_owned(),
            control: control.to_owned(),
            title: "(no longer configured)".to_owned(),
            open_issues: c.issues,
            open_findings: c.findings,
            breached_issues: c.breached_issues,
            breached_findings: c.breached_findings,
        });
    }
    if let Some(framework) = &args.framework {
        report.retain(|r| r.framework.eq_ignore_ascii_case(framework));
        if report.is_empty() {
            bail!("no controls of framework `{framework}`; `keelson compliance` lists them all");
        }
    }
    if args.json {
        crate::output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    let mut framework = "";
    for r in &report {
        if r.framework != framework {
            framework = &r.framework;
            writeln!(out, "{framework}")?;
        }
        let breaches = if r.breached_issues > 0 {
            format!(
                " · {} past SLA ({})",
                r.breached_issues,
                plural(r.breached_findings, "finding")
            )
        } else {
            String::new()
        };
        writeln!(
            out,
            "  {:<8} {:<60} {:>4} open issues ({}){breaches}",
            r.control,
            crate::issues::truncate(&r.title, 60),
            r.open_issues,
            plural(r.open_findings, "finding")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn parse_kind(text: &str) -> Result<SuppressionKind, String> {
    text.parse()
        .map_err(|e: keelson_enrich::Error| e.to_string())
}

/// `keelson suppress`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["issue", "vulnerability", "package", "repository", "application"])))]
pub(crate) struct SuppressArgs {
    /// One issue, by id.
    #[arg(long)]
    issue: Option<i64>,
    /// Every finding of a vulnerability (`CVE-2024-3094`).
    #[arg(long)]
    vulnerability: Option<String>,
    /// Every finding in a package (`linux-libc-dev`).
    #[arg(long)]
    package: Option<String>,
    /// Every finding in repositories matching a `registry/repository` glob (`contosoprod*/legacy/*`).
    #[arg(long)]
    repository: Option<String>,
    /// Every finding of an `[[application]]`.
    #[arg(long)]
    application: Option<String>,
    /// false-positive, risk-accepted, not-affected or wont-fix.
    #[arg(long, value_parser = parse_kind)]
    kind: SuppressionKind,
    /// Why; kept with the suppression and in the history.
    #[arg(long)]
    justification: String,
    /// When it ends by itself (`2026-12-31` or an RFC 3339 time); what is still seen then opens.
    #[arg(long)]
    expires: Option<String>,
    /// End it by itself once a fix is available.
    #[arg(long)]
    until_fix: bool,
}

#[allow(clippy::print_stdout, reason = "command output")]
pub(crate) fn suppress_cmd(app: &mut App, args: &SuppressArgs) -> anyhow::Result<ExitCode> {
    if args.justification.trim().is_empty() {
        bail!("`--justification` is empty; say why these findings are hidden");
    }
    let expires = args.expires.as_deref();
    if let Some(id) = args.issue {
        app.store.suppress_issue(
            IssueId(id),
            args.kind,
            &args.justification,
            expires,
            args.until_fix,
            ACTOR,
        )?;
        println!("✔ issue {id} suppressed ({})", args.kind);
        return Ok(ExitCode::SUCCESS);
    }
    let (scope, pattern) = if let Some(v) = &args.vulnerability {
        (RuleScope::Vulnerability, v)
    } else if let Some(p) = &args.package {
        (RuleScope::Package, p)
    } else if let Some(r) = &args.repository {
        if !keelson_enrich::check_glob(r) {
            bail!("`{r}` is not a repository glob; e.g. `contosoprod*/legacy/*`");
        }
        (RuleScope::Repository, r)
    } else if let Some(a) = &args.application {
        if app.config.applications.iter().all(|x| &x.name != a) {
            let known: Vec<String> = app
                .config
                .applications
                .iter()
                .map(|x| format!("`{}`", x.name))
                .collect();
            bail!(
                "no `[[application]]` named `{a}` in `{}`; known: {}",
                app.config.source.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
        }
        (RuleScope::Application, a)
    } else {
        unreachable!("clap requires one target")
    };
    let (rule, hidden) = app.store.add_suppression_rule(
        scope,
        pattern,
        args.kind,
        &args.justification,
        expires,
        args.until_fix,
        ACTOR,
    )?;
    println!(
        "✔ suppression rule {} ({} {scope} `{pattern}`): {hidden} open findings hidden; later scans hide new matches",
        rule.id, args.kind
    );
    Ok(ExitCode::SUCCESS)
}

/// `keelson unsuppress`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["issue", "rule"])))]
pub(crate) struct UnsuppressArgs {
    /// Lift the suppression of this issue.
    #[arg(long)]
    issue: Option<i64>,
    /// Lift this suppression rule (`keelson suppressions` lists them).
    #[arg(long)]
    rule: Option<i64>,
}

#[allow(clippy::print_stdout, reason = "command output")]
pub(crate) fn unsuppress_cmd(app: &mut App, args: &UnsuppressArgs) -> anyhow::Result<ExitCode> {
    if let Some(id) = args.issue {
        app.store.lift_suppression(IssueId(id), ACTOR)?;
        println!("✔ issue {id} is no longer suppressed");
    } else if let Some(rule) = args.rule {
        let n = app.store.lift_suppression_rule(rule, ACTOR)?;
        println!("✔ suppression rule {rule} lifted: {n} findings open again");
    }
    Ok(ExitCode::SUCCESS)
}

/// `keelson suppressions`.
#[derive(Debug, Args)]
pub(crate) struct SuppressionsArgs {
    /// Lifted and expired rules too.
    #[arg(long)]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn suppressions_cmd(app: &App, args: &SuppressionsArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut rules = app.store.suppression_rules()?;
    if !args.all {
        rules.retain(|r| r.lifted_at.is_none());
    }
    if args.json {
        crate::output::json(&rules)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if rules.is_empty() {
        writeln!(
            out,
            "no suppression rules (issue suppressions show in `keelson issues --status suppressed`)"
        )?;
    }
    for r in rules {
        let mut extra = Vec::new();
        if let Some(e) = &r.expires_at {
            extra.push(format!("expires {e}"));
        }
        if r.until_fix {
            extra.push("until a fix is available".to_owned());
        }
        if let Some(l) = &r.lifted_at {
            extra.push(format!(
                "lifted {l} by {}",
                r.lifted_by.as_deref().unwrap_or("?")
            ));
        }
        writeln!(
            out,
            "{:>4}  {:<14} {:<13} `{}` by {} at {}{}: {}",
            r.id,
            r.kind.as_str(),
            r.scope.as_str(),
            r.pattern,
            r.actor,
            r.created_at,
            if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join(", "))
            },
            r.justification
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Level {
    Critical,
    High,
    Medium,
    Low,
    Informational,
}

impl From<Level> for Severity {
    fn from(level: Level) -> Self {
        match level {
            Level::Critical => Severity::Critical,
            Level::High => Severity::High,
            Level::Medium => Severity::Medium,
            Level::Low => Severity::Low,
            Level::Informational => Severity::Informational,
        }
    }
}

/// `keelson priority`.
#[derive(Debug, Subcommand)]
pub(crate) enum PriorityCommand {
    /// Set an issue's priority by hand; it wins over every rule and is logged.
    Set {
        /// The issue id.
        id: i64,
        #[arg(value_enum)]
        level: Level,
        /// Why; shown as the issue's last factor and kept in its history.
        #[arg(long)]
        reason: String,
    },
    /// Give the issue back to the rules.
    Clear {
        /// The issue id.
        id: i64,
    },
}

#[allow(clippy::print_stdout, reason = "command output")]
pub(crate) fn priority_cmd(app: &mut App, command: &PriorityCommand) -> anyhow::Result<ExitCode> {
    let id = match command {
        PriorityCommand::Set { id, level, reason } => {
            app.store
                .set_priority_override(IssueId(*id), (*level).into(), reason, ACTOR)?;
            *id
        }
        PriorityCommand::Clear { id } => {
            app.store.clear_priority_override(IssueId(*id), ACTOR)?;
            *id
        }
    };
    app.store.enrich(
        &app.config.policy(),
        &EnrichScope::Issue(IssueId(id)),
        ACTOR,
    )?;
    let priority = app
        .store
        .issue(IssueId(id))?
        .map_or(Severity::Unknown, |d| d.issue.priority);
    println!("✔ issue {id} now has priority {priority}");
    Ok(ExitCode::SUCCESS)
}
