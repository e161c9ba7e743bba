//! `keelson runs`: the history of scan runs with their coverage, and `keelson runs accept`, which
//! applies the resolution of a run that was held because it would have resolved too much.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use keelson_store::{RunId, RunInfo, RunStatus};

use crate::app::{ACTOR, App};
use crate::connections::say;

/// `keelson runs`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RunsArgs {
    #[command(subcommand)]
    command: Option<RunsCommand>,
    /// Only the runs of this connection.
    connection: Option<String>,
    /// At most this many runs, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON (each run with its coverage and, when held, what it would resolve).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Apply exactly the resolution a held run computed (refused if a newer run of its
    /// connection has started since).
    Accept {
        /// The run id, as `keelson runs` or the scan summary prints it.
        run: i64,
        /// Print the run as JSON afterwards.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn runs_cmd(app: &mut App, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(RunsCommand::Accept { run, json }) => accept(app, RunId(*run), *json),
        None => list(app, args),
    }
}

fn accept(app: &mut App, run: RunId, json: bool) -> anyhow::Result<ExitCode> {
    let info = app.store.accept_held(run, ACTOR)?;
    if json {
        crate::output::json(&info)?;
    } else {
        say(&format!(
            "✔ run {} of `{}` accepted: {} findings resolved; the run is now `{}`",
            info.id, info.connection, info.findings_resolved, info.status
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(app: &App, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.connection {
        app.stored(name)?;
    }
    let runs = app.store.runs(args.connection.as_deref(), args.limit)?;
    if args.json {
        crate::output::json(&runs)?;
    } else {
        write_table(&mut std::io::stdout().lock(), &runs)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a person needs to know about a run beyond its counts: coverage, why it failed or was
/// held, who accepted it.
pub(crate) fn run_note(run: &RunInfo) -> String {
    let mut parts = Vec::new();
    if let Some(coverage) = &run.coverage
        && !matches!(run.status, RunStatus::Running)
    {
        parts.push(coverage.summary());
    }
    match (&run.held, run.status) {
        (Some(held), RunStatus::Held) => parts.push(format!("held: {}", held.reason)),
        (Some(_), _) => {
            if let Some(by) = &run.accepted_by {
                parts.push(format!("drop accepted by {by}"));
            }
        }
        (None, _) => {}
    }
    if let Some(error) = &run.error
        && matches!(run.status, RunStatus::Failed | RunStatus::Interrupted)
    {
        parts.push(error.clone());
    }
    parts.join("; ")
}

fn write_table(out: &mut impl std::io::Write, runs: &[RunInfo]) -> anyhow::Result<()> {
    if runs.is_empty() {
        writeln!(out, "no runs yet: start one with `keelson scan NAME`")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>5}  {:<16}  {:<11}  {:<24}  {:>6}  {:>8}  NOTE",
        "RUN", "CONNECTION", "STATUS", "STARTED", "NEW", "RESOLVED"
    )?;
    for r in runs {
        // The note quotes the plugin's errors: the line is neutralised.
        let row = format!(
            "{:>5}  {:<16}  {:<11}  {:<24}  {:>6}  {:>8}  {}",
            r.id,
            crate::issues::truncate(&r.connection, 16),
            r.status.as_str(),
            r.started_at,
            r.findings_new,
            r.findings_resolved,
            run_note(r)
        );
        crate::output::line(out, &row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_shows_the_plugin_error_neutralised_on_its_line() {
        let run = RunInfo {
            id: RunId(5),
            connection: "prod".into(),
            trigger: "manual".into(),
            requested_scope: Vec::new(),
            covered_registries: None,
            status: RunStatus::Failed,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            finished_at: None,
            images_seen: 0,
            findings_new: 0,
            findings_seen: 0,
            findings_reopened: 0,
            findings_updated: 0,
            findings_resolved: 0,
            error: Some("from plugin: denied\x1b]52;c;SGk=\x07\nforged".into()),
            coverage: None,
            held: None,
            accepted_at: None,
            accepted_by: None,
        };
        let mut out = Vec::new();
        write_table(&mut out, &[run]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.ends_with("  from plugin: denied\\u{1b}]52;c;SGk=\\u{7}\\u{a}forged\n"),
            "{text}"
        );
    }
}
