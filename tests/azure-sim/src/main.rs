//! `azure-sim`: serve a simulated Azure tenant on loopback until SIGINT or SIGTERM.
//!
//! Prints `# azure-sim ready port=<PORT>` on stdout once listening (a TOML comment, so it can
//! share stdout with `--print-config`). The client secret goes to stderr, never to the snippet.
//! `--anomaly NAME` (repeatable) starts with named anomalies on; `--expected` then writes their
//! ground truth too.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use azure_sim::{Anomaly, DataSet, Scenario, SimOptions, Simulator, peak_rss_bytes};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "azure-sim",
    about = "A faithful Azure simulator: Entra ID, ARM, Resource Graph and the ACR data plane"
)]
struct Args {
    /// demo, small, hostile or large.
    #[arg(long, default_value = "demo")]
    scenario: String,
    /// Seed for the tenant, credentials and faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the CA certificate (PEM).
    #[arg(long, default_value = "azure-sim-ca.pem")]
    ca_out: PathBuf,
    /// Write the ground truth (JSON) to this file before serving.
    #[arg(long)]
    expected: Option<PathBuf>,
    /// Print the Keelson plugins.toml snippet for this simulator.
    #[arg(long)]
    print_config: bool,
    /// Defender data set: individual, mdvm or qualys.
    #[arg(long)]
    data_set: Option<String>,
    /// Host suffix.
    #[arg(long, default_value = "sim.localhost")]
    suffix: String,
    /// Entra token lifetime in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime: u64,
    /// Turn throttling off.
    #[arg(long)]
    no_throttling: bool,
    /// Turn a named anomaly on (repeatable): arg-null-data, arg-empty-after-full,
    /// arg-missing-status, arm-nextlink-loop-at-end, acr-catalog-loop, one-registry-forbidden,
    /// arg-html-200 or totals-mismatch.
    #[arg(long = "anomaly", value_name = "NAME", value_parser = parse_anomaly)]
    anomalies: Vec<Anomaly>,
    /// Generate every Resource Graph page and the ground truth in-process, print peak RSS and
    /// rates, then exit.
    #[arg(long)]
    measure: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let scenario = Scenario::parse(&args.scenario)?;
    let mut opts = SimOptions::new(scenario).seed(args.seed);
    opts.port = args.port;
    opts.host_suffix = args.suffix.clone();
    opts.token_lifetime = Duration::from_secs(args.token_lifetime.max(1));
    opts.throttling = !args.no_throttling;
    opts.ca_out = Some(std::path::absolute(&args.ca_out).unwrap_or(args.ca_out.clone()));
    if let Some(ds) = &args.data_set {
        opts.tenant.data_set = DataSet::parse(ds)?;
    }
    opts.faults.anomalies.extend(&args.anomalies);
    opts.faults.anomalies.sort_unstable();
    opts.faults.anomalies.dedup();
    let sim = Simulator::start(opts)
        .await
        .context("starting the simulator")?;
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();

    if args.measure {
        measure(&sim, &mut err)?;
        sim.shutdown().await;
        return Ok(());
    }
    if let Some(path) = &args.expected {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating `{}`", path.display()))?;
        let counts = sim
            .ground_truth()
            .write_json(std::io::BufWriter::new(file))
            .with_context(|| format!("writing `{}`", path.display()))?;
        writeln!(
            err,
            "azure-sim: wrote {} registries, {} images, {} open findings to {}",
            counts.registries,
            counts.images,
            counts.findings,
            path.display()
        )?;
    }
    if args.print_config {
        write!(out, "{}", sim.config_snippet())?;
        writeln!(
            err,
            "azure-sim: the connection reads its secret from the environment:\n  export KEELSON_SIM_CLIENT_SECRET='{}'",
            sim.credentials().client_secret
        )?;
    }
    let signals = ShutdownSignals::install()?;
    writeln!(out, "# azure-sim ready port={}", sim.port())?;
    out.flush()?;
    drop(out);
    drop(err);

    signals.wait().await;
    sim.shutdown().await;
    Ok(())
}

fn parse_anomaly(s: &str) -> Result<Anomaly, String> {
    s.parse().map_err(|e: azure_sim::Error| e.to_string())
}

/// SIGTERM and SIGINT listeners. Created before the ready line is printed: a signal that arrives
/// before its listener exists would kill the process instead of stopping it gracefully.
struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn measure(sim: &azure_sim::SimHandle, err: &mut impl std::io::Write) -> anyhow::Result<()> {
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let t0 = Instant::now();
    let counts = sim.ground_truth().write_json(std::io::sink())?;
    let truth_secs = t0.elapsed().as_secs_f64();
    writeln!(
        err,
        "ground truth: {} images, {} open findings in {truth_secs:.1} s ({:.0} findings/s)",
        counts.images,
        counts.findings,
        counts.findings as f64 / truth_secs.max(1e-9)
    )?;
    let t1 = Instant::now();
    let (rows, bytes) = sim.generate_all_rows(1000);
    let secs = t1.elapsed().as_secs_f64();
    writeln!(
        err,
        "resource graph: {rows} rows, {:.0} MiB of JSON in {secs:.1} s ({:.0} rows/s, {:.0} pages/s, {:.0} MiB/s)",
        mb(bytes),
        rows as f64 / secs.max(1e-9),
        rows as f64 / 1000.0 / secs.max(1e-9),
        mb(bytes) / secs.max(1e-9)
    )?;
    match peak_rss_bytes() {
        Some(b) => writeln!(err, "peak RSS: {:.1} MiB", mb(b))?,
        None => writeln!(err, "peak RSS: unknown on this platform")?,
    }
    Ok(())
}
