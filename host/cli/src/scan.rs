//! `keelson scan` (on demand, with progress bars) and `keelson run` (the scheduler).
//!
//! Both stop gracefully on ctrl-c: the scan in progress finishes the page it is on and ends
//! `cancelled`, which resolves nothing. A second ctrl-c exits at once; the run is then found and
//! marked `interrupted` when the store is next opened.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use clap::builder::TypedValueParser as _;
use indicatif::{ProgressBar, ProgressStyle};
use keelson_config::Schedule;
use keelson_core::text::for_terminal;
use keelson_scan::{PagingPolicy, Progress, ScanRequest, ScanSummary, scan_with_policy};
use keelson_store::{IngestCounts, RunId, RunStatus, RunTrigger};

use crate::app::App;
use crate::connections::say;

/// `keelson scan`.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// The connection to scan.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    name: Option<String>,
    /// Scan every connection, one after the other.
    #[arg(long)]
    all: bool,
    /// Items asked for per page (the connector caps it at what its API allows); smaller pages
    /// mean more requests and smaller transactions.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    page_size: u32,
    /// Connector instances enumerating registries at once (each registry has its own throttling
    /// budget); one more reads the findings. Each instance signs in on its own.
    #[arg(long, default_value_t = keelson_scan::DEFAULT_PARALLEL_REGISTRIES,
          value_parser = clap::value_parser!(u16).range(1..=32).map(usize::from))]
    parallel_registries: usize,
    /// Apply this run's resolution even if it would resolve every open finding it covers or more
    /// than `resolve_guard_percent` of the connection's (a drop you expect, such as a registry
    /// you emptied); without it such a run ends `held`.
    #[arg(long, conflicts_with = "all")]
    accept_drop: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// The exit code of `keelson scan`: 0 when every run is complete, 2 when one is partial, 3 when
/// one is held (and none worse), 1 when one failed, was cancelled or could not run.
fn exit_code(statuses: &[Option<RunStatus>]) -> ExitCode {
    let rank = |s: &Option<RunStatus>| match s {
        Some(RunStatus::Complete) => 0,
        Some(RunStatus::Partial) => 1,
        Some(RunStatus::Held) => 2,
        _ => 3,
    };
    match statuses.iter().map(rank).max().unwrap_or(0) {
        0 => ExitCode::SUCCESS,
        1 => ExitCode::from(2),
        2 => ExitCode::from(3),
        _ => ExitCode::FAILURE,
    }
}

/// Cancels scans on ctrl-c; exits on the second.
fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
            note("stopping after the current page (ctrl-c again to quit at once)");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    cancel
}

#[allow(clippy::print_stderr, reason = "status for the operator")]
fn note(line: &str) {
    eprintln!("{}", for_terminal(line));
}

pub(crate) async fn scan_cmd(app: &mut App, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = if args.all {
        app.store
            .connections()?
            .into_iter()
            .map(|c| c.name)
            .collect()
    } else {
        let name = args.name.clone().unwrap_or_default();
        app.stored(&name)?;
        vec![name]
    };
    if names.is_empty() {
        say("no connections to scan: add one with `keelson connect` or in plugins.toml");
        return Ok(ExitCode::SUCCESS);
    }
    let cancel = cancel_on_ctrl_c();
    let policy = PagingPolicy {
        page_size: args.page_size,
        parallel_registries: args.parallel_registries,
        ..PagingPolicy::default()
    };
    let mut statuses = Vec::new();
    let mut summaries = Vec::new();
    for name in &names {
        if cancel.load(Ordering::Relaxed) {
            statuses.push(None);
            break;
        }
        let run = scan_one(
            app,
            name,
            RunTrigger::Manual,
            &policy,
            args.accept_drop,
            &cancel,
            !args.json,
        );
        match run.await {
            Ok(summary) => {
                statuses.push(Some(summary.run.status));
                if !args.json {
                    print_summary(&summary);
                }
                summaries.push(summary);
            }
            Err(err) => {
                statuses.push(None);
                say(&format!("✘ scan of `{name}`: {err:#}"));
            }
        }
    }
    if args.json {
        crate::output::json(&summaries)?;
    }
    Ok(exit_code(&statuses))
}

/// One run of connection `name`, with progress bars on stderr when `bars` (and stderr is a
/// terminal).
async fn scan_one(
    app: &mut App,
    name: &str,
    trigger: RunTrigger,
    policy: &PagingPolicy,
    accept_drop: bool,
    cancel: &AtomicBool,
    bars: bool,
) -> anyhow::Result<ScanSummary> {
    let mut progress = Bars::new(name, bars);
    let summary = scan_with(
        app,
        name,
        trigger,
        policy,
        accept_drop,
        cancel,
        &mut progress,
    )
    .await;
    progress.finish();
    summary
}

/// One run of connection `name`, reporting to `progress`: what `keelson scan` and a scan started
/// from the web page both do. `accept_drop` pre-approves a resolution the guard would hold.
pub(crate) async fn scan_with(
    app: &mut App,
    name: &str,
    trigger: RunTrigger,
    policy: &PagingPolicy,
    accept_drop: bool,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> anyhow::Result<ScanSummary> {
    let request = ScanRequest {
        connection: name.to_owned(),
        trigger,
        selection: app.selection(name)?,
        policy: policy.clone(),
        guard: app.resolve_guard(name, accept_drop),
    };
    // The connector is opened by the scan after it took the lease; until then the store is
    // borrowed by the scan, so the pieces needed to connect are prepared here.
    let stored = app.stored(name)?;
    let secrets = app.secrets_of(name)?;
    let plugin = app.load_plugin(&stored.plugin).await;
    let open = async move || -> Result<keelson_runtime::Connection, String> {
        let plugin = plugin.as_ref().map_err(|e| format!("{e:#}"))?;
        crate::app::connect(plugin, name, &stored.settings, &secrets)
            .await
            .map_err(|e| format!("{e:#}"))
    };
    let enrichment = app.config.policy();
    scan_with_policy(
        &mut app.store,
        &request,
        &enrichment,
        open,
        progress,
        cancel,
    )
    .await
    .with_context(|| format!("scan of `{name}`"))
}

/// Progress bars for one scan: a spinner while enumerating, a counter while reading findings.
struct Bars {
    bar: ProgressBar,
    name: String,
    images: u64,
    findings: u64,
    counts: IngestCounts,
}

impl Bars {
    fn new(name: &str, show: bool) -> Self {
        let bar = if show {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} [{elapsed}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(name.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self {
            bar,
            name: name.to_owned(),
            images: 0,
            findings: 0,
            counts: IngestCounts::default(),
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bars {
    fn started(&mut self, run: RunId) {
        self.bar.set_message(format!("run {run}: connecting"));
    }

    fn registries(&mut self, selected: usize, total: usize) {
        self.bar
            .set_message(format!("{selected} of {total} registries selected"));
    }

    fn registry_started(&mut self, registry: &str, repositories: usize) {
        let registry = for_terminal(registry);
        self.bar.set_message(format!(
            "{registry}: {repositories} repositories · {} images so far",
            self.images
        ));
    }

    fn repository_done(&mut self, registry: &str, repository: &str, images: u64) {
        self.images += images;
        let (registry, repository) = (for_terminal(registry), for_terminal(repository));
        self.bar
            .set_message(format!("{registry}/{repository} · {} images", self.images));
    }

    fn findings_page(&mut self, _read: u64, kept: u64, counts: IngestCounts) {
        self.findings += kept;
        self.counts += counts;
        self.bar.set_message(format!(
            "findings: {} ({} new, {} seen, {} reopened, {} updated)",
            self.findings,
            self.counts.new,
            self.counts.seen,
            self.counts.reopened,
            self.counts.updated
        ));
    }

    fn problem(&mut self, what: &str, reason: &str) {
        let line = format!("  ! {}: {what}: {reason}", self.name);
        self.bar.println(for_terminal(&line));
    }
}

/// The summary of one run; the reasons in it are often the plugin's words, so each line goes
/// out through [`say`].
fn print_summary(s: &ScanSummary) {
    let r = &s.run;
    let mark = match r.status {
        RunStatus::Complete => "✔",
        RunStatus::Partial | RunStatus::Held => "!",
        _ => "✘",
    };
    say(&format!(
        "{mark} scan of `{}` {} in {:.1} s (run {})",
        r.connection,
        r.status,
        s.elapsed.as_secs_f64(),
        r.id
    ));
    if let Some(err) = &r.error
        && r.status != RunStatus::Partial
    {
        say(&format!("  reason: {err}"));
    }
    say(&format!("  coverage: {}", s.coverage.summary()));
    say(&format!(
        "  registries: {} selected of {}, {} covered · repositories: {} · images: {}",
        s.registries_selected,
        s.registries_total,
        s.covered.len(),
        s.repositories,
        s.images
    ));
    say(&format!(
        "  findings: {} new · {} seen · {} updated · {} reopened · {} resolved   ({} read, {} kept)",
        r.findings_new,
        r.findings_seen,
        r.findings_updated,
        r.findings_reopened,
        r.findings_resolved,
        s.findings_read,
        s.findings_kept
    ));
    if let Some(held) = &r.held {
        say(&format!("  held: {}", held.reason));
        say(&format!(
            "  nothing was resolved; if the drop is real: `keelson runs accept {}`",
            r.id
        ));
    }
    say(&format!("  requests: {}", s.requests));
    let e = &s.enrichment;
    say(&format!(
        "  enrichment: {} images described · {} findings evaluated · {} re-prioritised{}",
        s.images_described,
        e.evaluated,
        e.reprioritised,
        if e.suppressed > 0 {
            format!(" · {} suppressed by rules", e.suppressed)
        } else {
            String::new()
        }
    ));
    if let Some(reason) = &s.coverage.registry_listing {
        say(&format!(
            "  not complete (registries not listed stay as they were): {reason}"
        ));
    }
    for u in &s.uncovered {
        say(&format!(
            "  not covered (nothing resolved there): {}: {}",
            u.registry, u.reason
        ));
    }
    if let Some(reason) = &s.coverage.findings {
        say(&format!(
            "  findings not complete (nothing resolved): {reason}"
        ));
    }
}

/// `keelson run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Schedule of connections that have none (those made with `keelson connect`), e.g.
    /// `every 6h`, `every 30m`, `every 1d`.
    #[arg(long, default_value = "every 6h", value_parser = parse_schedule)]
    every: Schedule,
}

/// `every 6h`, or just `6h`.
fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let text = text.trim();
    let full = if text.starts_with("every ") {
        text.to_owned()
    } else {
        format!("every {text}")
    };
    Schedule::parse(&full).map_err(|p| p.to_string())
}

/// Keeps scanning each connection on its schedule until ctrl-c. A connection is due when its
/// last run started at least one interval ago (or it never ran).
pub(crate) async fn run_cmd(app: &mut App, args: RunArgs) -> anyhow::Result<ExitCode> {
    let cancel = cancel_on_ctrl_c();
    let policy = PagingPolicy::default();
    // Next due time per connection, on the monotonic clock.
    let mut due: BTreeMap<String, Instant> = BTreeMap::new();
    say("keelson run: scanning on schedule; ctrl-c to stop");
    while !cancel.load(Ordering::Relaxed) {
        let now = Instant::now();
        for conn in app.store.connections()? {
            let interval = app
                .declared(&conn.name)
                .and_then(|d| d.schedule)
                .unwrap_or(args.every)
                .interval();
            if due.contains_key(&conn.name) {
                continue;
            }
            let last = app.store.runs(Some(&conn.name), 1)?.pop();
            let since = last
                .as_ref()
                .and_then(|r| seconds_since(&r.started_at))
                .map_or(interval, Duration::from_secs);
            due.insert(conn.name, now + interval.saturating_sub(since));
        }
        let next = due
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(n, at)| (n.clone(), *at));
        let Some((name, at)) = next else {
            say("no connections to scan: add one with `keelson connect` or in plugins.toml");
            return Ok(ExitCode::SUCCESS);
        };
        // Sleep in short steps so ctrl-c is noticed promptly.
        while Instant::now() < at && !cancel.load(Ordering::Relaxed) {
            let left = at.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(500))).await;
        }
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        due.remove(&name);
        match scan_one(
            app,
            &name,
            RunTrigger::Schedule,
            &policy,
            false,
            &cancel,
            false,
        )
        .await
        {
            Ok(summary) => print_summary(&summary),
            Err(err) => say(&format!("✘ scan of `{name}`: {err:#}")),
        }
    }
    say("keelson run: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Whole seconds from the stored timestamp `at` to now.
fn seconds_since(at: &str) -> Option<u64> {
    let then = unix_seconds(at)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(now.saturating_sub(then))
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff]Z`, the form the store writes.
fn unix_seconds(at: &str) -> Option<u64> {
    let b = at.as_bytes();
    if b.len() < 20 || !at.ends_with('Z') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| at.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_timestamps_convert_to_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(unix_seconds("2000-03-01T00:00:00.000Z"), Some(951_868_800));
        assert_eq!(
            unix_seconds("2026-02-28T23:59:59.999Z"),
            Some(1_772_323_199)
        );
        assert_eq!(unix_seconds("not a time"), None);
    }

    #[test]
    fn schedules_read_with_or_without_every() {
        assert_eq!(parse_schedule("6h"), parse_schedule("every 6h"));
        assert_eq!(
            parse_schedule("30m").unwrap().interval(),
            Duration::from_mins(30)
        );
        assert!(parse_schedule("soon").is_err());
    }
}
