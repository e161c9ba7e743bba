//! `keelson-bench`: the scale benchmark.
//!
//! Starts the Azure simulator in-process with a generated tenant and throttling on, then runs the
//! real `keelson` binary (release build, real ACR plugin, real SQLite file) against it three
//! times: a full first scan, a rescan with nothing changed and a rescan after a share of the images
//! were pushed anew. Optionally runs the peer baseline (`sdk_baseline.py`, the official Azure SDK
//! for Python) against the same tenant. Prints one table: wall times against the throttling floor
//! ([`floor`]), requests by endpoint against the minimum the APIs allow, ingest rate, peak RSS,
//! database size, rows written, and the Keelson / SDK ratios.
//!
//! Every child's peak RSS is its `VmHWM`, sampled from `/proc/<pid>/status` while it runs.

mod floor;
mod report;
mod tenant;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use azure_sim::{SimHandle, SimOptions, Simulator, StatsSnapshot};
use clap::Parser;

use crate::floor::Floor;
use crate::report::Table;
use crate::tenant::Size;

/// Scale benchmark of a full Keelson scan against Azure's throttling floor and the Azure SDK.
#[derive(Debug, Parser)]
#[command(name = "keelson-bench")]
struct Args {
    /// Registries in the tenant (SKUs rotate Premium, Standard, Basic).
    #[arg(long, default_value_t = 20)]
    registries: u32,
    /// Repositories per registry.
    #[arg(long, default_value_t = 500)]
    repos: u32,
    /// Images per repository.
    #[arg(long, default_value_t = 20)]
    images: u32,
    /// A tiny tenant (3 x 10 x 5) with limits scaled down so throttling still bites; for CI.
    #[arg(long)]
    smoke: bool,
    /// Serve without throttling (measures ingest when Azure is not the limit).
    #[arg(long)]
    no_throttle: bool,
    /// Share of images pushed anew before the third scan.
    #[arg(long, default_value_t = 0.01)]
    repush_share: f64,
    /// Where the database, config and logs go (recreated).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// The keelson binary (built with `cargo build --release -p keelson`).
    #[arg(long, default_value = "target/release/keelson")]
    keelson: PathBuf,
    /// The ACR connector component.
    #[arg(
        long,
        default_value = "plugins/target/wasm32-wasip2/release/azure_container_registry.wasm"
    )]
    plugin: PathBuf,
    /// The connector's linear-memory cap (`memory_mb` in plugins.toml; 64 as in the repository's).
    #[arg(long, default_value_t = 64)]
    plugin_memory_mb: u32,
    /// Connector instances enumerating registries at once (`keelson scan --parallel-registries`)
    #[arg(long, default_value_t = 4)]
    parallel_registries: u16,
    /// A Python with the Azure SDK installed; runs the peer baseline (`bench/sdk_baseline.py`).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// One child process run: how long, how much memory, what it printed.
struct Child {
    wall: Duration,
    peak_rss: Option<u64>,
    stdout: String,
}

/// One scan of the benchmark and what the simulator saw meanwhile.
struct Phase {
    label: &'static str,
    child: Child,
    stats: StatsSnapshot,
    registry_requests: BTreeMap<String, u64>,
    summary: serde_json::Value,
    rows: Rows,
}

/// Rows the run touched, counted in the database afterwards by `last_run_id` / `run_id`.
#[derive(Debug, Default, Clone, Copy)]
struct Rows {
    findings: u64,
    images: u64,
    events: u64,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let size = if args.smoke {
        Size::smoke()
    } else {
        Size::new(args.registries, args.repos, args.images)
    };
    let root = workspace_root();
    for p in [&mut args.work, &mut args.keelson, &mut args.plugin] {
        if p.is_relative() {
            *p = root.join(&*p);
        }
    }
    // The children run in the work folder: a relative Python (a venv) must not depend on that.
    if let Some(python) = &mut args.python
        && python.components().count() > 1
    {
        *python = std::path::absolute(&*python)?;
    }
    for (what, p) in [("keelson", &args.keelson), ("plugin", &args.plugin)] {
        if !p.is_file() {
            bail!(
                "the {what} `{}` is missing: run ./scripts/bench, which builds it",
                p.display()
            );
        }
    }
    if args.work.exists() {
        std::fs::remove_dir_all(&args.work)
            .with_context(|| format!("cannot clear `{}`", args.work.display()))?;
    }
    std::fs::create_dir_all(&args.work)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let opts = SimOptions {
        tenant: size.spec(),
        limits: size.limits(),
        throttling: !args.no_throttle,
        ca_out: Some(args.work.join("sim-ca.pem")),
        ..SimOptions::default()
    };
    status(&format!(
        "starting the simulator: {} registries x {} repositories x {} images, throttling {}",
        size.registries,
        size.repos,
        size.images,
        if opts.throttling { "on" } else { "off" }
    ));
    let sim = rt.block_on(Simulator::start(opts.clone()))?;
    let (arg_rows, _) = sim.generate_all_rows(1000);
    let truth = sim.ground_truth();
    let truth_images = truth.images().count() as u64;
    let truth_findings = truth.findings().count() as u64;
    drop(truth);
    status(&format!(
        "tenant: {truth_images} images, {truth_findings} open findings, {arg_rows} Resource Graph rows"
    ));

    let config = write_config(&sim, &args)?;
    let bench = Bench {
        sim: &sim,
        args: &args,
        config,
        limits: opts.limits.clone(),
    };

    let first = bench.keelson_scan("first scan")?;
    bench.settle();
    let second = bench.keelson_scan("rescan, nothing changed")?;
    let repushed = sim.repush_images(args.repush_share);
    status(&format!("re-pushed {repushed} images"));
    bench.settle();
    let third = bench.keelson_scan("rescan after re-push")?;
    let sdk = match &args.python {
        Some(python) => {
            bench.settle();
            Some(bench.sdk_baseline(python)?)
        }
        None => None,
    };
    let db = db_size(&args.work.join("keelson.db"));

    let mut table = Table::new();
    report::fill(
        &mut table,
        &report::Inputs {
            size: &size,
            throttling: !args.no_throttle,
            limits: &opts.limits,
            skus: &size.skus(),
            arg_rows,
            truth_images,
            truth_findings,
            repushed,
            phases: [&first, &second, &third],
            sdk: sdk.as_ref(),
            db_bytes: db,
        },
    );
    print_out(&table.render());
    rt.block_on(sim.shutdown());
    Ok(())
}

struct Bench<'a> {
    sim: &'a SimHandle,
    args: &'a Args,
    config: PathBuf,
    limits: azure_sim::Limits,
}

impl Bench<'_> {
    /// Waits until every budget the last phase used has refilled, so each phase starts fresh and
    /// its floor holds (the simulator keeps its windows across phases, like Azure).
    fn settle(&self) {
        if self.args.no_throttle {
            return;
        }
        let wait = self
            .limits
            .acr_window
            .max(self.limits.arg_window)
            .max(Duration::from_secs_f64(
                f64::from(self.limits.arm_reads_capacity) / self.limits.arm_reads_per_sec,
            ));
        status(&format!(
            "waiting {}s for the throttling windows to reset (not timed)",
            wait.as_secs()
        ));
        std::thread::sleep(wait);
    }

    fn keelson_scan(&self, label: &'static str) -> anyhow::Result<Phase> {
        status(&format!("keelson scan: {label}"));
        self.sim.reset_stats();
        let mut cmd = Command::new(&self.args.keelson);
        cmd.args(["scan", "sim", "--json", "--parallel-registries"])
            .arg(self.args.parallel_registries.to_string())
            .current_dir(&self.args.work)
            .env("KEELSON_CONFIG", &self.config)
            .env("KEELSON_LOG", "warn")
            .env(
                "KEELSON_SIM_CLIENT_SECRET",
                self.sim.credentials().client_secret,
            );
        let child = run_child(cmd, &self.args.work.join(format!("{label}.log")))?;
        let summary: serde_json::Value = serde_json::from_str(&child.stdout)
            .with_context(|| format!("keelson printed no JSON summary for the {label}"))?;
        let summary = summary
            .as_array()
            .and_then(|a| a.first())
            .cloned()
            .context("keelson printed an empty summary")?;
        let run = summary["run"]["id"]
            .as_i64()
            .context("the summary has no run id")?;
        let status_text = summary["run"]["status"].as_str().unwrap_or("?");
        if status_text != "complete" {
            bail!("the {label} ended `{status_text}`: {summary}");
        }
        let rows = count_rows(&self.args.work.join("keelson.db"), run)?;
        Ok(Phase {
            label,
            child,
            stats: self.sim.stats(),
            registry_requests: self.sim.registry_requests(),
            summary,
            rows,
        })
    }

    fn sdk_baseline(&self, python: &Path) -> anyhow::Result<report::Sdk> {
        status("peer baseline: the Azure SDK for Python");
        self.sim.reset_stats();
        let creds = self.sim.credentials();
        let script = workspace_root().join("bench/sdk_baseline.py");
        let ca = self.args.work.join("sim-ca.pem");
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .args(["--tenant-id", &creds.tenant_id])
            .args(["--client-id", &creds.client_id])
            .args(["--subscription-id", &creds.subscription_id])
            .args(["--authority", &self.sim.login_url()])
            .args(["--management", &self.sim.management_url()])
            .args(["--pin", &format!("{}=127.0.0.1", self.sim.host_suffix())])
            .arg("--db")
            .arg(self.args.work.join("sdk.db"))
            .current_dir(&self.args.work)
            .env("AZURE_CLIENT_SECRET", &creds.client_secret)
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("SSL_CERT_FILE", &ca);
        let child = run_child(cmd, &self.args.work.join("sdk.log"))?;
        let summary: serde_json::Value = serde_json::from_str(child.stdout.trim())
            .context("the SDK baseline printed no JSON summary (see target/bench/sdk.log)")?;
        Ok(report::Sdk {
            wall: child.wall,
            peak_rss: child.peak_rss,
            stats: self.sim.stats(),
            registry_requests: self.sim.registry_requests(),
            summary,
            db_bytes: db_size(&self.args.work.join("sdk.db")),
        })
    }
}

impl Phase {
    fn findings_read(&self) -> u64 {
        self.summary["findings_read"].as_u64().unwrap_or(0)
    }

    fn floor(&self, limits: &azure_sim::Limits, skus: &BTreeMap<String, azure_sim::Sku>) -> Floor {
        floor_of(&self.stats, &self.registry_requests, limits, skus)
    }
}

/// The floor of the requests a client actually made.
fn floor_of(
    stats: &StatsSnapshot,
    registry_requests: &BTreeMap<String, u64>,
    limits: &azure_sim::Limits,
    skus: &BTreeMap<String, azure_sim::Sku>,
) -> Floor {
    let arm: u64 = stats
        .requests
        .iter()
        .filter(|e| e.endpoint.starts_with("arm."))
        .map(|e| e.count)
        .sum();
    let arg = stats.total("arg.resources");
    let regs = registry_requests
        .iter()
        .filter_map(|(name, n)| skus.get(name).map(|sku| (name.clone(), (*sku, *n))))
        .collect();
    Floor::of(limits, arm, arg, &regs)
}

/// Runs a child to its end, sampling its peak RSS; stderr goes to `log`.
fn run_child(mut cmd: Command, log: &Path) -> anyhow::Result<Child> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("cannot create `{}`", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd.get_program().display()))?;
    let pid = child.id();
    // Drain stdout on a thread so a large summary never blocks the child.
    let mut out = child.stdout.take().context("no stdout pipe")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).map(|_| s)
    });
    let mut peak = None;
    let exit = loop {
        if let Some(hwm) = vm_hwm(pid) {
            peak = Some(peak.unwrap_or(0).max(hwm));
        }
        if let Some(exit) = child.try_wait()? {
            break exit;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let stdout = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))??;
    if !exit.success() {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let tail: String = tail
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .fold(String::new(), |mut s, l| {
                let _ = writeln!(s, "  {l}");
                s
            });
        bail!(
            "`{}` exited with {exit}; last lines of its log `{}`:\n{tail}",
            cmd.get_program().display(),
            log.display()
        );
    }
    Ok(Child {
        wall,
        peak_rss: peak,
        stdout,
    })
}

/// `VmHWM` (peak resident set) of a running process, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The database file and its WAL.
fn db_size(db: &Path) -> u64 {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        total += std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.len());
    }
    total
}

fn count_rows(db: &Path, run: i64) -> anyhow::Result<Rows> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open `{}`", db.display()))?;
    let count = |sql: &str| -> anyhow::Result<u64> {
        let n: i64 = conn.query_row(sql, [run], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    Ok(Rows {
        findings: count("SELECT count(*) FROM findings WHERE last_run_id = ?1")?,
        images: count("SELECT count(*) FROM images WHERE last_run_id = ?1")?,
        events: count("SELECT count(*) FROM events WHERE run_id = ?1")?,
    })
}

/// plugins.toml for the simulator: its CA, its names pinned to loopback, the connection `sim`.
fn write_config(sim: &SimHandle, args: &Args) -> anyhow::Result<PathBuf> {
    let snippet = sim.config_snippet();
    let mut out = String::from("# Written by keelson-bench for the Azure simulator.\n");
    for line in snippet.lines() {
        if line.starts_with("path = ") {
            let _ = writeln!(
                out,
                "path = {}",
                toml_string(&args.plugin.display().to_string())
            );
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "[host]" {
            out.push_str("database = \"keelson.db\"\ncache_dir = \"cache\"\n");
        }
        if line.starts_with("allowed_hosts = ") {
            let _ = writeln!(
                out,
                "memory_mb = {}\ncall_timeout_s = 300",
                args.plugin_memory_mb
            );
        }
    }
    let path = args.work.join("plugins.toml");
    std::fs::write(&path, out)?;
    Ok(path)
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The workspace root, so the bench runs from any directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[allow(clippy::print_stderr, reason = "progress for the operator")]
fn status(line: &str) {
    eprintln!("bench: {line}");
}

#[allow(clippy::print_stdout, reason = "the table is the program's output")]
fn print_out(text: &str) {
    print!("{text}");
}
