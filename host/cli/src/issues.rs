//! `keelson issues` (the queue) and `keelson issue show ID` (everything about one issue).
//!
//! `--format json` prints an array of issues in the documented, stable schema of
//! [`keelson_store::IssueRow`]: `id`, `source_tool`, `registry`, `repository`, `vulnerability_id`,
//! `title`, `package`, `package_version`, `fixed_version`, `severity`, `status`, `first_seen`,
//! `last_seen` and `images` (each `digest`, `tags`, `status`), and from enrichment `priority`,
//! `factors` (each `id`, `direction`, `from`, `to`, `reason`, `evidence`), `application`, `team`,
//! `sla_due`, `sla_breached` and `controls`. `--format csv` has one row per issue; every cell
//! that a spreadsheet would run as a formula is prefixed with `'`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use keelson_core::Severity;
use keelson_enrich::Direction;
use keelson_store::{
    ConnectionState, IssueCursor, IssueFilter, IssueId, IssueRow, IssueStatus, RunStatus, SlaState,
};

use crate::app::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SlaArg {
    Breached,
    Within,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusArg {
    Open,
    Resolved,
    Suppressed,
    All,
}

/// `keelson issues`.
#[derive(Debug, Args)]
pub(crate) struct IssuesArgs {
    /// Only issues reported by this tool (`Azure Container Registry`).
    #[arg(long)]
    source_tool: Option<String>,
    /// Only these severities (comma-separated or repeated): critical, high, medium, low,
    /// informational, unknown.
    #[arg(long, value_delimiter = ',')]
    severity: Vec<Severity>,
    /// Issue status; `open` (the active queue) unless given.
    #[arg(long, value_enum, default_value = "open")]
    status: StatusArg,
    /// Only this registry (as listed, e.g. `contosoprod.azurecr.io`).
    #[arg(long)]
    registry: Option<String>,
    /// Only this repository (`payments/api`).
    #[arg(long)]
    repository: Option<String>,
    /// Only this vulnerability (`CVE-2024-3094`).
    #[arg(long)]
    vulnerability: Option<String>,
    /// Only findings of this connection.
    #[arg(long)]
    connection: Option<String>,
    /// Only these priorities (comma-separated or repeated): the level after enrichment.
    #[arg(long, value_delimiter = ',')]
    priority: Vec<Severity>,
    /// Only issues of this `[[application]]`.
    #[arg(long, conflicts_with = "unmapped")]
    application: Option<String>,
    /// Only issues owned by this team.
    #[arg(long)]
    team: Option<String>,
    /// Only issues in images no `[[application]]` rule claims.
    #[arg(long)]
    unmapped: bool,
    /// SLA state: `breached` (open past due), `within`, or `none`.
    #[arg(long, value_enum)]
    sla: Option<SlaArg>,
    /// Only issues under this compliance control (`6.3.3`, `RA-5` or `PCI DSS 4.0 6.3.3`).
    #[arg(long)]
    control: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// At most this many issues (a page).
    #[arg(long)]
    limit: Option<usize>,
    /// Continue after this cursor (`SEVERITY:ID`, printed under a full table page, or the
    /// `severity:id` of the last issue of a JSON/CSV page).
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
}

pub(crate) fn issues_cmd(app: &App, args: &IssuesArgs) -> anyhow::Result<ExitCode> {
    let after = args
        .after
        .as_deref()
        .map(str::parse::<IssueCursor>)
        .transpose()?;
    if let Some(name) = &args.connection {
        app.stored(name)?;
    }
    let filter = IssueFilter {
        connection: args.connection.clone(),
        source_tool: args.source_tool.clone(),
        severities: args.severity.clone(),
        statuses: match args.status {
            StatusArg::Open => vec![IssueStatus::Open],
            StatusArg::Resolved => vec![IssueStatus::Resolved],
            StatusArg::Suppressed => vec![IssueStatus::Suppressed],
            StatusArg::All => Vec::new(),
        },
        registry: args.registry.clone(),
        repository: args.repository.clone(),
        vulnerability: args.vulnerability.clone(),
        priorities: args.priority.clone(),
        application: args.application.clone(),
        team: args.team.clone(),
        unmapped: args.unmapped,
        sla: args.sla.map(|s| match s {
            SlaArg::Breached => SlaState::Breached,
            SlaArg::Within => SlaState::Within,
            SlaArg::None => SlaState::None,
        }),
        control: args.control.clone(),
        after,
        limit: args.limit,
    };
    let rows = app.store.issues(&filter)?;
    let states: Vec<ConnectionState> = app
        .store
        .connection_states()?
        .into_iter()
        .filter(|c| args.connection.as_ref().is_none_or(|n| *n == c.connection))
        .collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => crate::output::json(&rows)?,
        Format::Csv => write_csv(&mut out, &rows)?,
        Format::Table => {
            write_table(&mut out, &rows)?;
            if let (Some(limit), Some(last)) = (args.limit, rows.last())
                && rows.len() == limit
            {
                writeln!(out, "more: add `--after {}`", last.cursor())?;
            }
            for state in &states {
                writeln!(out, "{}", data_line(state))?;
            }
        }
    }
    if args.format != Format::Table {
        // Machine formats keep their schema; what makes the queue incomplete goes to stderr.
        for state in states.iter().filter(|s| !is_current(s)) {
            warn(&data_line(state));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(
    clippy::print_stderr,
    reason = "a warning beside machine-readable output"
)]
fn warn(line: &str) {
    eprintln!("{line}");
}

/// Whether the connection's last run read everything, so its part of the queue is current (as
/// the API's `current` says: a run still scanning is not).
fn is_current(state: &ConnectionState) -> bool {
    state
        .last_run
        .as_ref()
        .is_some_and(|r| r.status == RunStatus::Complete)
}

/// One line per connection under the queue: how current its part of the queue is. A connection
/// that was never scanned, or whose last run did not read everything, is never shown as clean.
pub(crate) fn data_line(state: &ConnectionState) -> String {
    let name = &state.connection;
    let as_of = state.data_as_of.as_deref().map_or_else(
        || "no data from it yet".to_owned(),
        |at| format!("data as of {at}"),
    );
    let Some(run) = &state.last_run else {
        return format!(
            "data: `{name}` was never scanned; nothing from it is in this queue (`keelson scan {name}`)"
        );
    };
    let detail = match run.status {
        RunStatus::Complete => String::new(),
        RunStatus::Running => " — scanning now; this is the data of the runs before it".to_owned(),
        RunStatus::Partial => format!(
            " — not everything was read, what was not stays as it was: {}",
            run.coverage.as_deref().unwrap_or("see `keelson runs`")
        ),
        RunStatus::Held => format!(
            " — it would have resolved most findings, so nothing was resolved; review with `keelson runs {name}` and accept with `keelson runs accept {}`",
            run.id
        ),
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Interrupted => format!(
            " — this queue may be out of date: {}",
            run.error.as_deref().unwrap_or("the run did not finish")
        ),
    };
    format!(
        "data: `{name}`: last run {} {}{detail}; {as_of}",
        run.id, run.status
    )
}

const CSV_HEADER: [&str; 21] = [
    "id",
    "source_tool",
    "registry",
    "repository",
    "vulnerability_id",
    "title",
    "package",
    "package_version",
    "fixed_version",
    "severity",
    "status",
    "first_seen",
    "last_seen",
    "images",
    "digests",
    "priority",
    "application",
    "team",
    "sla_due",
    "sla_breached",
    "controls",
];

fn write_csv(out: &mut impl std::io::Write, rows: &[IssueRow]) -> anyhow::Result<()> {
    writeln!(out, "{}", CSV_HEADER.join(","))?;
    for r in rows {
        let digests: Vec<&str> = r.images.iter().map(|i| i.digest.as_str()).collect();
        let cells = [
            r.id.to_string(),
            r.source_tool.clone(),
            r.registry.clone(),
            r.repository.clone(),
            r.vulnerability_id.clone(),
            r.title.clone(),
            r.package.clone().unwrap_or_default(),
            r.package_version.clone().unwrap_or_default(),
            r.fixed_version.clone().unwrap_or_default(),
            r.severity.to_string(),
            r.status.to_string(),
            r.first_seen.clone(),
            r.last_seen.clone(),
            r.images.len().to_string(),
            digests.join(";"),
            r.priority.to_string(),
            r.application.clone().unwrap_or_default(),
            r.team.clone().unwrap_or_default(),
            r.sla_due.clone().unwrap_or_default(),
            r.sla_breached.to_string(),
            r.controls.join(";"),
        ];
        let line: Vec<String> = cells
            .iter()
            .map(|c| keelson_server::export::csv_field(c))
            .collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn write_table(out: &mut impl std::io::Write, rows: &[IssueRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        writeln!(out, "no issues match")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>5}  {:<16}  {:<8}  {:<8}  {:<18}  {:<20}  {:<20}  {:<12}  {:<11}  {:<34}  {:>6}",
        "ID",
        "PRIORITY",
        "SEVERITY",
        "STATUS",
        "VULNERABILITY",
        "PACKAGE",
        "VERSION → FIX",
        "APPLICATION",
        "SLA DUE",
        "REGISTRY/REPOSITORY",
        "IMAGES"
    )?;
    for r in rows {
        let versions = format!(
            "{} → {}",
            r.package_version.as_deref().unwrap_or("?"),
            r.fixed_version.as_deref().unwrap_or("-")
        );
        let registry = r.registry.split('.').next().unwrap_or(&r.registry);
        // `high ↑` / `low ↓`: enrichment moved the scanner's level.
        let priority = match r.priority.cmp(&r.severity) {
            std::cmp::Ordering::Greater => format!("{} ↑", r.priority),
            std::cmp::Ordering::Less => format!("{} ↓", r.priority),
            std::cmp::Ordering::Equal => r.priority.to_string(),
        };
        let sla = match (&r.sla_due, r.sla_breached) {
            (Some(due), true) => format!("{} !", due.get(..10).unwrap_or(due)),
            (Some(due), false) => due.get(..10).unwrap_or(due).to_owned(),
            (None, _) => "-".to_owned(),
        };
        writeln!(
            out,
            "{:>5}  {:<16}  {:<8}  {:<8}  {:<18}  {:<20}  {:<20}  {:<12}  {:<11}  {:<34}  {:>6}",
            r.id,
            priority,
            r.severity.as_str(),
            r.status.as_str(),
            truncate(&r.vulnerability_id, 18),
            truncate(r.package.as_deref().unwrap_or("-"), 20),
            truncate(&versions, 20),
            truncate(r.application.as_deref().unwrap_or("(unmapped)"), 12),
            sla,
            truncate(&format!("{registry}/{}", r.repository), 34),
            r.images.len()
        )?;
    }
    writeln!(out, "{} issues", rows.len())?;
    Ok(())
}

/// `keelson issue`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum IssueCommand {
    /// Everything known about one issue: evidence, remediation, references, images, history.
    Show {
        /// The issue id, as `keelson issues` prints it.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn issue_cmd(app: &App, command: &IssueCommand) -> anyhow::Result<ExitCode> {
    let &IssueCommand::Show { id, json } = command;
    let Some(detail) = app.store.issue(IssueId(id))? else {
        bail!("no issue {id}; `keelson issues --status all` lists them");
    };
    if json {
        crate::output::json(&detail)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    let i = &detail.issue;
    writeln!(
        out,
        "issue {}: {} in {}",
        i.id,
        i.vulnerability_id,
        i.package.as_deref().unwrap_or("(no package)")
    )?;
    if !i.title.is_empty() {
        writeln!(out, "  {}", i.title)?;
    }
    writeln!(out, "  priority:   {}", i.priority)?;
    writeln!(out, "  severity:   {} (the scanner's)", i.severity)?;
    writeln!(out, "  status:     {}", i.status)?;
    writeln!(
        out,
        "  owner:      {}",
        match (&i.application, &i.team) {
            (Some(a), Some(t)) => format!("application {a}, team {t}"),
            (Some(a), None) => format!("application {a}"),
            _ => "unmapped: no [[application]] rule claims this image".to_owned(),
        }
    )?;
    if let Some(due) = &i.sla_due {
        writeln!(
            out,
            "  sla due:    {due}{}",
            if i.sla_breached { " (breached)" } else { "" }
        )?;
    }
    if !i.controls.is_empty() {
        writeln!(out, "  controls:   {}", i.controls.join(", "))?;
    }
    writeln!(out, "  source:     {}", i.source_tool)?;
    writeln!(out, "  location:   {}/{}", i.registry, i.repository)?;
    writeln!(
        out,
        "  package:    {} {} (fixed in {})",
        i.package.as_deref().unwrap_or("-"),
        i.package_version.as_deref().unwrap_or("?"),
        i.fixed_version.as_deref().unwrap_or("no fix known")
    )?;
    writeln!(out, "  seen:       {} … {}", i.first_seen, i.last_seen)?;
    if let Some(s) = &detail.suppression {
        writeln!(
            out,
            "  suppressed: by {} at {}{}: {}",
            s.actor,
            s.created_at,
            s.expires_at
                .as_deref()
                .map(|e| format!(" until {e}"))
                .unwrap_or_default(),
            s.reason
        )?;
    }
    if let Some(score) = detail.vulnerability.as_ref().and_then(|v| v.cvss_score) {
        let vector = detail
            .vulnerability
            .as_ref()
            .and_then(|v| v.cvss_vector.as_deref())
            .unwrap_or("");
        writeln!(out, "  cvss:       {score} {vector}")?;
    }
    write_why(&mut out, i)?;
    if let Some(v) = &detail.vulnerability {
        if !v.description.is_empty() {
            writeln!(out, "\ndescription:\n  {}", v.description)?;
        }
        if let Some(r) = &v.remediation {
            writeln!(out, "\nremediation:\n  {r}")?;
        }
        if v.exploitability.exploit_published {
            writeln!(
                out,
                "\nexploit published: yes {}",
                v.exploitability.types.join(", ")
            )?;
        }
        if !v.weaknesses.is_empty() {
            writeln!(out, "weaknesses: {}", v.weaknesses.join(", "))?;
        }
        if !v.references.is_empty() {
            writeln!(out, "\nreferences:")?;
            for r in &v.references {
                writeln!(out, "  {} {}", r.url, r.title)?;
            }
        }
    }
    writeln!(out, "\nimages ({}):", detail.findings.len())?;
    for f in &detail.findings {
        writeln!(
            out,
            "  {} {}{} [{}] via `{}` · {} {} · seen {} … {}{}",
            f.digest,
            if f.tags.is_empty() {
                "(untagged)".to_owned()
            } else {
                f.tags.join(",")
            },
            if f.image_removed {
                " (image removed)"
            } else {
                ""
            },
            f.status,
            f.connection,
            f.severity,
            f.package_version.as_deref().unwrap_or("?"),
            f.first_seen,
            f.last_seen,
            f.resolved_at
                .as_deref()
                .map(|r| format!(" · resolved {r}"))
                .unwrap_or_default()
        )?;
        for e in &f.evidence {
            writeln!(out, "      evidence: {e}")?;
        }
    }
    writeln!(out, "\nhistory:")?;
    for e in &detail.history {
        let change = match (&e.old_value, &e.new_value) {
            (Some(old), Some(new)) => format!("{old} → {new}"),
            (None, Some(new)) => new.clone(),
            _ => String::new(),
        };
        writeln!(
            out,
            "  {} {:<10} {}{}{}",
            e.at,
            e.kind,
            e.field
                .as_deref()
                .map(|f| format!("{f}: "))
                .unwrap_or_default(),
            truncate(&change, 80),
            e.run.map(|r| format!(" (run {r})")).unwrap_or_default()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The priority in plain sentences, each with its evidence.
fn write_why(out: &mut impl std::io::Write, i: &IssueRow) -> anyhow::Result<()> {
    if i.factors.is_empty() {
        writeln!(
            out,
            "\nwhy {}: not evaluated yet; the priority is the scanner's severity.",
            i.priority
        )?;
        return Ok(());
    }
    let moved = i.factors.iter().any(|f| f.direction != Direction::Note);
    writeln!(
        out,
        "\nwhy {}: {}",
        i.priority,
        if moved {
            format!("the scanner said {}; then:", i.severity)
        } else {
            format!("the scanner said {} and no rule moved it.", i.severity)
        }
    )?;
    for f in &i.factors {
        let lead = match f.direction {
            Direction::Raise => format!("Raised from {} to {}. ", f.from, f.to),
            Direction::Lower => format!("Lowered from {} to {}. ", f.from, f.to),
            Direction::Set => format!("Set from {} to {}. ", f.from, f.to),
            Direction::Note => String::new(),
        };
        writeln!(out, "  - {lead}{} [{}]", f.reason, f.id)?;
        for e in &f.evidence {
            writeln!(out, "      evidence: {e}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: Option<RunStatus>) -> ConnectionState {
        ConnectionState {
            connection: "prod".into(),
            last_run: status.map(|status| keelson_store::RunBrief {
                id: keelson_store::RunId(4),
                status,
                started_at: "2026-01-02T00:00:00.000Z".into(),
                finished_at: None,
                error: Some("403 AuthorizationFailed".into()),
                coverage: None,
            }),
            data_as_of: Some("2026-01-01T00:00:00.000Z".into()),
        }
    }

    #[test]
    fn only_a_complete_last_run_makes_a_connection_current() {
        assert!(is_current(&state(Some(RunStatus::Complete))));
        for status in [
            None,
            Some(RunStatus::Running),
            Some(RunStatus::Partial),
            Some(RunStatus::Held),
            Some(RunStatus::Failed),
        ] {
            assert!(!is_current(&state(status)), "{status:?}");
        }
        assert!(data_line(&state(None)).contains("never scanned"));
        assert!(data_line(&state(Some(RunStatus::Running))).contains("scanning now"));
        let failed = data_line(&state(Some(RunStatus::Failed)));
        assert!(
            failed.contains("out of date") && failed.contains("403"),
            "{failed}"
        );
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_issue() {
        let row = IssueRow {
            id: IssueId(7),
            source_tool: "Azure Container Registry".into(),
            registry: "r.azurecr.io".into(),
            repository: "payments/api".into(),
            vulnerability_id: "CVE-2024-1".into(),
            title: "=cmd|' /C calc'!A0".into(),
            package: Some("openssl".into()),
            package_version: Some("3.0.1".into()),
            fixed_version: None,
            severity: Severity::High,
            priority: Severity::Critical,
            status: IssueStatus::Open,
            first_seen: "2026-01-01T00:00:00.000Z".into(),
            last_seen: "2026-01-02T00:00:00.000Z".into(),
            images: vec![],
            factors: vec![],
            application: Some("shop".into()),
            team: None,
            sla_due: None,
            sla_breached: false,
            controls: vec!["PCI DSS 4.0 6.3.3".into(), "NIST SP 800-53 RA-5".into()],
        };
        let mut out = Vec::new();
        write_csv(&mut out, &[row]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert!(
            lines[1].ends_with(",critical,shop,,,false,PCI DSS 4.0 6.3.3;NIST SP 800-53 RA-5"),
            "{}",
            lines[1]
        );
        assert!(lines[1].starts_with("7,Azure Container Registry,r.azurecr.io,payments/api,CVE-2024-1,'=cmd|' /C calc'!A0,openssl,3.0.1,,high,open,"), "{}", lines[1]);
    }
}
