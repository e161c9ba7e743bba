//! `keelson issues` (the queue) and `keelson issue show ID` (everything about one issue).
//!
//! `--format json` prints an array of issues in the documented, stable schema of
//! [`keelson_store::IssueRow`]: `id`, `source_tool`, `registry`, `repository`, `vulnerability_id`,
//! `title`, `package`, `package_version`, `fixed_version`, `severity`, `status`, `first_seen`,
//! `last_seen` and `images` (each `digest`, `tags`, `status`), and from enrichment `priority`,
//! `factors` (each `id`, `direction`, `from`, `to`, `reason`, `evidence`), `application`, `team`,
//! `sla_due`, `sla_breached` and `controls`. `--format csv` has one row per issue; every cell
//! that a spreadsheet would run as a formula is prefixed with `'`.
//!
//! Almost every field is the plugin's text, kept in the store as it was sent: the table, the CSV
//! cells and `issue show` write its control and bidi characters as visible `\u{…}` escapes
//! ([`keelson_core::text`]), and JSON as `\u` escapes that decode to the text unchanged.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use keelson_core::Severity;
use keelson_core::text::for_terminal;
use keelson_enrich::Direction;
use keelson_store::{
    ConnectionState, IssueCursor, IssueDetail, IssueFilter, IssueId, IssueRow, IssueStatus,
    RunStatus, SlaState,
};

use crate::app::App;
use crate::output::{indented, line};

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
                line(&mut out, &data_line(state))?;
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
fn warn(text: &str) {
    eprintln!("{}", for_terminal(text));
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
        // Neutralised first, so the formula guard sees the cell as written out.
        let fields: Vec<String> = cells
            .iter()
            .map(|c| keelson_server::export::csv_field(&for_terminal(c)))
            .collect();
        writeln!(out, "{}", fields.join(","))?;
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

/// A table cell: the plugin's text neutralised, then cut to `max` characters.
fn cell(text: &str, max: usize) -> String {
    truncate(&for_terminal(text), max)
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
            cell(&r.vulnerability_id, 18),
            cell(r.package.as_deref().unwrap_or("-"), 20),
            cell(&versions, 20),
            cell(r.application.as_deref().unwrap_or("(unmapped)"), 12),
            sla,
            cell(&format!("{registry}/{}", r.repository), 34),
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
    } else {
        write_issue(&mut std::io::stdout().lock(), &detail)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `keelson issue show` as text. Nearly every field is the plugin's: each line goes out through
/// [`line`] (neutralised as one line), and the multi-line description and remediation through
/// [`indented`].
fn write_issue(out: &mut impl std::io::Write, detail: &IssueDetail) -> anyhow::Result<()> {
    let i = &detail.issue;
    line(
        out,
        &format!(
            "issue {}: {} in {}",
            i.id,
            i.vulnerability_id,
            i.package.as_deref().unwrap_or("(no package)")
        ),
    )?;
    if !i.title.is_empty() {
        line(out, &format!("  {}", i.title))?;
    }
    line(out, &format!("  priority:   {}", i.priority))?;
    line(
        out,
        &format!("  severity:   {} (the scanner's)", i.severity),
    )?;
    line(out, &format!("  status:     {}", i.status))?;
    let owner = match (&i.application, &i.team) {
        (Some(a), Some(t)) => format!("application {a}, team {t}"),
        (Some(a), None) => format!("application {a}"),
        _ => "unmapped: no [[application]] rule claims this image".to_owned(),
    };
    line(out, &format!("  owner:      {owner}"))?;
    if let Some(due) = &i.sla_due {
        let breached = if i.sla_breached { " (breached)" } else { "" };
        line(out, &format!("  sla due:    {due}{breached}"))?;
    }
    if !i.controls.is_empty() {
        line(out, &format!("  controls:   {}", i.controls.join(", ")))?;
    }
    line(out, &format!("  source:     {}", i.source_tool))?;
    line(
        out,
        &format!("  location:   {}/{}", i.registry, i.repository),
    )?;
    line(
        out,
        &format!(
            "  package:    {} {} (fixed in {})",
            i.package.as_deref().unwrap_or("-"),
            i.package_version.as_deref().unwrap_or("?"),
            i.fixed_version.as_deref().unwrap_or("no fix known")
        ),
    )?;
    line(
        out,
        &format!("  seen:       {} … {}", i.first_seen, i.last_seen),
    )?;
    if let Some(s) = &detail.suppression {
        let until = s
            .expires_at
            .as_deref()
            .map(|e| format!(" until {e}"))
            .unwrap_or_default();
        line(
            out,
            &format!(
                "  suppressed: by {} at {}{until}: {}",
                s.actor, s.created_at, s.reason
            ),
        )?;
    }
    if let Some(score) = detail.vulnerability.as_ref().and_then(|v| v.cvss_score) {
        let vector = detail
            .vulnerability
            .as_ref()
            .and_then(|v| v.cvss_vector.as_deref())
            .unwrap_or("");
        line(out, &format!("  cvss:       {score} {vector}"))?;
    }
    write_why(out, i)?;
    if let Some(v) = &detail.vulnerability {
        if !v.description.is_empty() {
            writeln!(out, "\ndescription:")?;
            indented(out, "  ", &v.description)?;
        }
        if let Some(r) = &v.remediation {
            writeln!(out, "\nremediation:")?;
            indented(out, "  ", r)?;
        }
        if v.exploitability.exploit_published {
            writeln!(out)?;
            let types = v.exploitability.types.join(", ");
            line(out, &format!("exploit published: yes {types}"))?;
        }
        if !v.weaknesses.is_empty() {
            line(out, &format!("weaknesses: {}", v.weaknesses.join(", ")))?;
        }
        if !v.references.is_empty() {
            writeln!(out, "\nreferences:")?;
            for r in &v.references {
                line(out, &format!("  {} {}", r.url, r.title))?;
            }
        }
    }
    writeln!(out, "\nimages ({}):", detail.findings.len())?;
    for f in &detail.findings {
        let tags = if f.tags.is_empty() {
            "(untagged)".to_owned()
        } else {
            f.tags.join(",")
        };
        let removed = if f.image_removed {
            " (image removed)"
        } else {
            ""
        };
        let resolved = f
            .resolved_at
            .as_deref()
            .map(|r| format!(" · resolved {r}"))
            .unwrap_or_default();
        line(
            out,
            &format!(
                "  {} {tags}{removed} [{}] via `{}` · {} {} · seen {} … {}{resolved}",
                f.digest,
                f.status,
                f.connection,
                f.severity,
                f.package_version.as_deref().unwrap_or("?"),
                f.first_seen,
                f.last_seen,
            ),
        )?;
        for e in &f.evidence {
            line(out, &format!("      evidence: {e}"))?;
        }
    }
    writeln!(out, "\nhistory:")?;
    for e in &detail.history {
        let change = match (&e.old_value, &e.new_value) {
            (Some(old), Some(new)) => format!("{old} → {new}"),
            (None, Some(new)) => new.clone(),
            _ => String::new(),
        };
        // Neutralised before the cut, so the escapes count towards the width.
        line(
            out,
            &format!(
                "  {} {:<10} {}{}{}",
                e.at,
                e.kind,
                e.field
                    .as_deref()
                    .map(|f| format!("{f}: "))
                    .unwrap_or_default(),
                truncate(&for_terminal(&change), 80),
                e.run.map(|r| format!(" (run {r})")).unwrap_or_default()
            ),
        )?;
    }
    Ok(())
}

/// The priority in plain sentences, each with its evidence.
fn write_why(out: &mut impl std::io::Write, i: &IssueRow) -> anyhow::Result<()> {
    writeln!(out)?;
    if i.factors.is_empty() {
        line(
            out,
            &format!(
                "why {}: not evaluated yet; the priority is the scanner's severity.",
                i.priority
            ),
        )?;
        return Ok(());
    }
    let moved = i.factors.iter().any(|f| f.direction != Direction::Note);
    let said = if moved {
        format!("the scanner said {}; then:", i.severity)
    } else {
        format!("the scanner said {} and no rule moved it.", i.severity)
    };
    line(out, &format!("why {}: {said}", i.priority))?;
    for f in &i.factors {
        let lead = match f.direction {
            Direction::Raise => format!("Raised from {} to {}. ", f.from, f.to),
            Direction::Lower => format!("Lowered from {} to {}. ", f.from, f.to),
            Direction::Set => format!("Set from {} to {}. ", f.from, f.to),
            Direction::Note => String::new(),
        };
        line(out, &format!("  - {lead}{} [{}]", f.reason, f.id))?;
        for e in &f.evidence {
            line(out, &format!("      evidence: {e}"))?;
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

    /// What a hostile plugin put in its text: an OSC 52 clipboard write, a screen clear, a
    /// right-to-left override, a C1 CSI and a newline that forges a line.
    const HOSTILE: &str = "x\x1b]52;c;SGk=\x07\x1b[2J\u{202e}gnp\u{9b}1m\nforged";
    const SHOWN: &str = r"x\u{1b}]52;c;SGk=\u{7}\u{1b}[2J\u{202e}gnp\u{9b}1m\u{a}forged";

    fn hostile_row() -> IssueRow {
        IssueRow {
            id: IssueId(9),
            source_tool: HOSTILE.into(),
            registry: HOSTILE.into(),
            repository: HOSTILE.into(),
            vulnerability_id: HOSTILE.into(),
            title: HOSTILE.into(),
            package: Some(HOSTILE.into()),
            package_version: Some(HOSTILE.into()),
            fixed_version: Some(HOSTILE.into()),
            severity: Severity::High,
            priority: Severity::High,
            status: IssueStatus::Open,
            first_seen: "2026-01-01T00:00:00.000Z".into(),
            last_seen: "2026-01-02T00:00:00.000Z".into(),
            images: vec![keelson_store::IssueImage {
                digest: HOSTILE.into(),
                tags: vec![HOSTILE.into()],
                status: IssueStatus::Open,
            }],
            factors: vec![keelson_enrich::Factor {
                id: "network-exposed".into(),
                direction: Direction::Raise,
                from: Severity::Medium,
                to: Severity::High,
                reason: HOSTILE.into(),
                evidence: vec![HOSTILE.into()],
            }],
            application: None,
            team: None,
            sla_due: None,
            sla_breached: false,
            controls: vec![],
        }
    }

    /// Only the newlines the CLI writes itself, and no other neutralised character.
    fn assert_no_raw(text: &str) {
        assert!(
            !text
                .chars()
                .any(|c| keelson_core::text::is_neutralised(c) && c != '\n'),
            "{text:?}"
        );
    }

    #[test]
    fn the_table_shows_plugin_text_neutralised() {
        let mut out = Vec::new();
        write_table(&mut out, &[hostile_row()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_no_raw(&text);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains(r"  x\u{1b}]52;c;SGk=…  "), "{text}");
        assert!(
            text.contains(r"  x\u{1b}]52;c;SGk=\u{7}\u{1b}[2J\u…  "),
            "{text}"
        );
    }

    #[test]
    fn csv_cells_are_neutralised_and_still_formula_guarded() {
        let mut row = hostile_row();
        row.title = "=HYPERLINK(\"http://x\")\x1b[2J".into();
        row.package = Some("\tpkg".into());
        let mut out = Vec::new();
        write_csv(&mut out, &[row]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_no_raw(&text);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains(&format!(",{SHOWN},")), "{text}");
        assert!(
            text.contains(r#","'=HYPERLINK(""http://x"")\u{1b}[2J","#),
            "{text}"
        );
        // A leading tab is no longer a tab, so it is shown as its escape, not guarded.
        assert!(text.contains(r",\u{9}pkg,"), "{text}");
    }

    #[test]
    fn issue_show_neutralises_every_line_and_keeps_description_lines() {
        let row = hostile_row();
        let detail = IssueDetail {
            issue: row,
            vulnerability: Some(keelson_store::VulnerabilityInfo {
                title: HOSTILE.into(),
                description: format!("first line\r\nsecond {HOSTILE}"),
                cvss_score: Some(7.5),
                cvss_vector: Some(HOSTILE.into()),
                remediation: Some(HOSTILE.into()),
                references: vec![keelson_core::Reference {
                    title: HOSTILE.into(),
                    url: HOSTILE.into(),
                }],
                weaknesses: vec![HOSTILE.into()],
                exploitability: keelson_core::Exploitability {
                    exploit_published: true,
                    types: vec![HOSTILE.into()],
                    ..keelson_core::Exploitability::default()
                },
                published_at: None,
                modified_at: None,
            }),
            findings: vec![keelson_store::FindingDetail {
                id: keelson_store::FindingId(1),
                connection: "prod".into(),
                digest: HOSTILE.into(),
                tags: vec![HOSTILE.into()],
                image_removed: false,
                status: IssueStatus::Open,
                severity: Severity::High,
                package_version: Some(HOSTILE.into()),
                fixed_version: None,
                fix_status: None,
                evidence: vec![HOSTILE.into()],
                first_seen: "2026-01-01T00:00:00.000Z".into(),
                last_seen: "2026-01-02T00:00:00.000Z".into(),
                resolved_at: None,
                last_run: keelson_store::RunId(3),
                raw: HOSTILE.into(),
            }],
            suppression: None,
            priority_override: None,
            history: vec![keelson_store::EventRow {
                id: 1,
                at: "2026-01-02T00:00:00.000Z".into(),
                kind: "changed".into(),
                finding: None,
                run: Some(keelson_store::RunId(3)),
                actor: None,
                field: Some("title".into()),
                old_value: Some("old".into()),
                new_value: Some(HOSTILE.into()),
            }],
        };
        let mut out = Vec::new();
        write_issue(&mut out, &detail).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_no_raw(&text);
        // Only the description and the remediation, multi-line fields, break where the plugin's
        // text did; every other field stays on its line.
        let forged: Vec<&str> = text.lines().filter(|l| l.trim() == "forged").collect();
        assert_eq!(forged, ["  forged", "  forged"], "{text}");
        assert!(text.contains(&format!("\n  {SHOWN}\n")), "{text}");
        // The description keeps its own lines, each indented, the Windows line end dropped.
        let before_newline = SHOWN.strip_suffix(r"\u{a}forged").unwrap();
        assert!(
            text.contains(&format!(
                "\ndescription:\n  first line\n  second {before_newline}\n  forged\n"
            )),
            "{text}"
        );
    }
}
