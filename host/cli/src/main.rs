//! The `keelson` command: loads `plugins.toml`, runs connector plugins in their sandbox, scans
//! connections into the store and serves the queue of active issues.
//!
//! This is the only crate that reads the environment (`KEELSON_CONFIG`, `KEELSON_LOG`,
//! `KEELSON_MASTER_KEY` and the `env:KEELSON_*` secret references) and initialises logging.

mod app;
mod conformance;
mod connections;
mod enrich;
mod host;
mod issues;
mod keys;
mod output;
mod plugins;
mod runs;
mod scan;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Keelson: container-registry security findings from sandboxed connectors.
#[derive(Debug, Parser)]
#[command(name = "keelson", version, about)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "KEELSON_CONFIG",
        default_value = "plugins.toml"
    )]
    config: PathBuf,

    /// Log filter (`info`, `keelson_runtime=debug`, ...); logs go to stderr.
    #[arg(long, global = true, env = "KEELSON_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List and inspect the connector plugins that plugins.toml enables.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Add a connection (an account of a plugin); it is saved only once it connects and verifies.
    Connect(connections::ConnectArgs),
    /// Verify connectivity of a connection: a green tick or the plugin's precise reason.
    Verify {
        /// The connection.
        name: String,
    },
    /// List a connection's registries and repositories with their selection; change what is scanned.
    Locations(connections::LocationsArgs),
    /// Delete a connection: no longer listed, scanned or in the queue; its secrets are wiped, its history stays.
    Disconnect {
        /// The connection.
        name: String,
    },
    /// Scan a connection (or `--all`) now, with progress and a summary.
    Scan(scan::ScanArgs),
    /// Keep running: scan each connection on its schedule until ctrl-c.
    Run(scan::RunArgs),
    /// Scan runs with their coverage; `runs accept RUN` applies a held run's resolution.
    Runs(runs::RunsArgs),
    /// The queue: active issues, filtered, as a table, JSON or CSV.
    Issues(issues::IssuesArgs),
    /// One issue.
    #[command(subcommand)]
    Issue(issues::IssueCommand),
    /// Threat feeds: import the CISA KEV catalog and FIRST EPSS scores from files.
    #[command(subcommand)]
    Feeds(enrich::FeedsCommand),
    /// Open issues and SLA breaches per compliance framework and control.
    Compliance(enrich::ComplianceArgs),
    /// Hide an issue, or every finding of a vulnerability, package, repository glob or application.
    Suppress(enrich::SuppressArgs),
    /// Lift an issue's suppression or a suppression rule.
    Unsuppress(enrich::UnsuppressArgs),
    /// The suppression rules.
    Suppressions(enrich::SuppressionsArgs),
    /// Set or clear an issue's priority by hand.
    #[command(subcommand)]
    Priority(enrich::PriorityCommand),
    /// Serve the HTTP API and the web page (on 127.0.0.1:8080 unless `--bind` says otherwise).
    Serve(serve::ServeArgs),
    /// Create, list and revoke the API tokens `keelson serve` accepts.
    #[command(subcommand)]
    Token(serve::TokenCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&anyhow::Error::new(err).context("cannot start the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // `keelson issues | head`: the reader left; that is not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The conformance runner tests a component file and needs no configuration.
    if let Command::Plugins(plugins::PluginsCommand::Test(args)) = cli.command {
        return conformance::run(*args).await;
    }
    let config = keelson_config::load(&cli.config)
        .with_context(|| format!("cannot use the configuration `{}`", cli.config.display()))?;
    if let Command::Plugins(command) = cli.command {
        return plugins::run(&config, command).await;
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the CLI is where the environment is read"
    )]
    let master_key = std::env::var(keys::ENV).ok();
    let mut app = app::App::open(config, master_key.as_deref())?;
    match cli.command {
        Command::Plugins(_) => unreachable!("handled above"),
        Command::Connect(args) => connections::connect_cmd(&mut app, args).await,
        Command::Verify { name } => connections::verify_cmd(&mut app, &name).await,
        Command::Locations(args) => connections::locations_cmd(&mut app, args).await,
        Command::Disconnect { name } => connections::disconnect_cmd(&mut app, &name),
        Command::Scan(args) => scan::scan_cmd(&mut app, args).await,
        Command::Run(args) => scan::run_cmd(&mut app, args).await,
        Command::Runs(args) => runs::runs_cmd(&mut app, &args),
        Command::Issues(args) => issues::issues_cmd(&app, &args),
        Command::Issue(command) => issues::issue_cmd(&app, &command),
        Command::Feeds(command) => enrich::feeds_cmd(&mut app, &command),
        Command::Compliance(args) => enrich::compliance_cmd(&app, &args),
        Command::Suppress(args) => enrich::suppress_cmd(&mut app, &args),
        Command::Unsuppress(args) => enrich::unsuppress_cmd(&mut app, &args),
        Command::Suppressions(args) => enrich::suppressions_cmd(&app, &args),
        Command::Priority(command) => enrich::priority_cmd(&mut app, &command),
        Command::Serve(args) => serve::serve_cmd(app, master_key, args).await,
        Command::Token(command) => serve::token_cmd(&mut app, command),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: in a log file they are noise, and any ESC there is not ours.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(log_fields())
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// How log fields are written: as the default format does (the message bare, others
/// `name=value`), each value neutralised as one line, since log lines quote plugins (their own
/// log calls, their errors, the names they return) and must stay one line each.
fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = keelson_core::text::for_terminal(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{field}={text}")
        }
    })
    .delimited(" ")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints an error and its causes on stderr, one per line. A cause whose text the line before
/// already ends with (a wrapper that repeats its source) is not printed twice.
fn report(err: &anyhow::Error) {
    // A write error here has nowhere left to go.
    let _ = write_report(&mut std::io::stderr().lock(), err);
}

/// The error report; causes are often the plugin's words, so each line is neutralised.
fn write_report(out: &mut impl std::io::Write, err: &anyhow::Error) -> std::io::Result<()> {
    output::line(out, &format!("error: {err}"))?;
    let mut previous = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !previous.ends_with(&text) {
            output::line(out, &format!("  caused by: {text}"))?;
        }
        previous = text;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use keelson_core::text::is_neutralised;

    use super::*;

    #[test]
    fn the_error_report_neutralises_every_line() {
        let err = anyhow::anyhow!("plugin said \x1b]52;c;SGk=\x07")
            .context("verifying failed\nerror: forged \u{202e}");
        let mut out = Vec::new();
        write_report(&mut out, &err).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "error: verifying failed\\u{a}error: forged \\u{202e}\n  caused by: plugin said \\u{1b}]52;c;SGk=\\u{7}\n"
        );
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(bytes)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_line_stays_one_line_without_control_characters() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(log_fields())
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let account = "acme\x1b[2J\u{202e}";
            tracing::warn!(plugin = %"p\u{9b}x", account, "from the plugin: {}", "a\nforged\x07");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line = text.strip_suffix('\n').expect("one line");
        assert!(!line.chars().any(is_neutralised), "{text:?}");
        assert!(
            line.contains(r"from the plugin: a\u{a}forged\u{7}"),
            "{line}"
        );
        assert!(line.contains(r"plugin=p\u{9b}x"), "{line}");
        assert!(
            line.contains(r#"account="acme\u{1b}[2J\u{202e}""#),
            "{line}"
        );
    }
}
