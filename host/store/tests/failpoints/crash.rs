//! T29: crash safety. The test re-runs its own binary as a child that scans in a loop and kills
//! it with SIGKILL, in turn at each of the store's failpoints (before and after every commit,
//! inside resolution, between pages: the `n`-th time the point is met, `n` drawn from a seed) and
//! after a random delay. After every kill it checks that the file is sound, every run is finished
//! or interrupted, nothing committed was lost and nothing was resolved except by a complete or
//! partial run (a held one only once accepted) that read it completely, and it prints what the
//! loop found.
//!
//! The child appends a line to a log after each commit returns, so everything in the log must be
//! in the database (the log may lag by one commit, never lead).
//!
//! `scripts/crash-loop N` runs `N` kills (200 by default); the suite runs a short loop.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use keelson_core::ScanScope;
use keelson_store::{
    Coverage, FAILPOINTS, RegistryCoverage, ResolveGuard, RunOutcome, RunStatus, RunTrigger, Store,
};
use rand::{Rng, SeedableRng};

use crate::{TOOL, add_prod, finding};

/// Tells the child which database to use; set only by the parent test.
const CHILD_DB: &str = "KEELSON_STORE_CRASH_CHILD_DB";
const CHILD_SEED: &str = "KEELSON_STORE_CRASH_CHILD_SEED";
/// `point:n`: the child kills itself the `n`-th time it meets failpoint `point`.
const CHILD_KILL_AT: &str = "KEELSON_STORE_CRASH_CHILD_KILL_AT";
/// How many kills the parent makes (`scripts/crash-loop N` sets it).
const ITERATIONS: &str = "KEELSON_STORE_CRASH_ITERATIONS";
/// Kills when [`ITERATIONS`] is not set: one round of the failpoints and as many random ones.
const DEFAULT_ITERATIONS: u64 = 2 * FAILPOINTS.len() as u64;
/// Scans a child makes before it ends by itself (a failpoint it never met leaves it alive).
const CHILD_RUNS: usize = 60;

const REGISTRIES: [&str; 3] = ["r0.azurecr.io", "r1.azurecr.io", "r2.azurecr.io"];

fn universe() -> Vec<(usize, String, String)> {
    let mut keys = Vec::new();
    for r in 0..REGISTRIES.len() {
        for d in 0..4 {
            for v in 0..5 {
                keys.push((r, format!("sha256:{d}"), format!("CVE-{v}")));
            }
        }
    }
    keys
}

fn log_path(db: &Path) -> PathBuf {
    db.with_extension("log")
}

#[allow(
    clippy::disallowed_methods,
    reason = "a test child learns its role from its parent's environment"
)]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Child side: scans `CHILD_RUNS` times, logging each commit. Only meaningful under the parent.
#[test]
#[ignore = "the child process of `killed_scans_lose_nothing_and_resolve_nothing_wrongly`"]
fn crash_child() {
    let (Some(db), Some(seed)) = (env(CHILD_DB), env(CHILD_SEED)) else {
        return;
    };
    if let Some((point, hit)) = env(CHILD_KILL_AT)
        .as_deref()
        .and_then(|a| a.rsplit_once(':'))
    {
        kill_at(point, hit.parse().unwrap());
    }
    let db = PathBuf::from(db);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.parse().unwrap());
    let mut log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_path(&db))
        .unwrap();
    let mut store = Store::open(&db).unwrap();
    let keys = universe();
    for _ in 0..CHILD_RUNS {
        let run = store
            .begin_run("prod", RunTrigger::Schedule, &ScanScope::default())
            .unwrap();
        store.ingest_inventory(run, &[]).unwrap();
        // Now and then a run sees nothing, so the resolve guard holds it.
        let seen = if rng.random_bool(0.25) { 0.0 } else { 0.7 };
        let reported: Vec<_> = keys.iter().filter(|_| rng.random_bool(seen)).collect();
        for page in reported.chunks(7) {
            let findings: Vec<_> = page
                .iter()
                .map(|(r, d, v)| finding(REGISTRIES[*r], d, v))
                .collect();
            store.ingest_findings(run, TOOL, &findings).unwrap();
            let keys: Vec<String> = page
                .iter()
                .map(|(r, d, v)| format!("{r}|{d}|{v}"))
                .collect();
            let line = format!("seen {run} {}\n", keys.join(" "));
            log.write_all(line.as_bytes()).unwrap();
        }
        if let Some((r, d, _)) = reported.first() {
            store
                .save_image_contexts(run, &[context(finding(REGISTRIES[*r], d, "-").image)])
                .unwrap();
        }
        let coverage = Coverage {
            registry_listing: None,
            findings: rng
                .random_bool(0.15)
                .then(|| "a page was malformed".to_owned()),
            registries: REGISTRIES
                .iter()
                .map(|r| {
                    if rng.random_bool(0.8) {
                        RegistryCoverage::covered(*r)
                    } else {
                        RegistryCoverage::uncovered(*r, "403")
                    }
                })
                .collect(),
        };
        let outcome = if coverage.incomplete() {
            RunOutcome::Partial {
                reason: "throttled".into(),
            }
        } else {
            RunOutcome::Complete
        };
        let guard = ResolveGuard {
            accept_drop: rng.random_bool(0.3),
            ..ResolveGuard::default()
        };
        let info = store
            .finish_run(run, &outcome, &coverage, &guard, &|_, _| true)
            .unwrap();
        log.write_all(format!("finished {run} {}\n", info.status).as_bytes())
            .unwrap();
        if info.status == RunStatus::Held && rng.random_bool(0.7) {
            let info = store.accept_held(run, "crash-child").unwrap();
            log.write_all(format!("accepted {run} {}\n", info.status).as_bytes())
                .unwrap();
        }
    }
}

/// Makes the `hit`-th pass through failpoint `point` send this process SIGKILL: no destructor,
/// no rollback, no unlock, exactly as `kill -9` from outside.
fn kill_at(point: &str, hit: u32) {
    let passes = AtomicU32::new(0);
    fail::cfg_callback(point, move || {
        if passes.fetch_add(1, Ordering::SeqCst) + 1 == hit {
            let _ = Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            // The signal is on its way; nothing after this point may run.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    })
    .unwrap();
}

fn context(image: keelson_core::ImageRef) -> keelson_core::ImageContext {
    keelson_core::ImageContext {
        image,
        tags: vec!["1.0".into()],
        last_pushed_at: None,
        last_pulled_at: None,
        running: Some(true),
        registry_public_network_access: None,
        attributes: vec![],
    }
}

fn spawn_child(db: &Path, seed: u64, kill_at: Option<&str>) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "crash::crash_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_DB, db)
        .env(CHILD_SEED, seed.to_string())
        .env_remove(CHILD_KILL_AT)
        .stdin(Stdio::null())
        // The harness prints a failing child's panic on stdout.
        .stdout(std::fs::File::create(db.with_extension("child-output")).unwrap())
        .stderr(Stdio::null());
    if let Some(at) = kill_at {
        command.env(CHILD_KILL_AT, at);
    }
    command.spawn().unwrap()
}

/// Checks the database after a crash and returns the number of findings.
fn verify(db: &Path, iteration: u64) -> i64 {
    // Opening runs recovery, exactly as `keelson` does on start.
    let store = Store::open(db).unwrap();
    assert_eq!(
        store.integrity_check().unwrap(),
        ["ok"],
        "iteration {iteration}"
    );
    drop(store);
    let conn = rusqlite::Connection::open(db).unwrap();
    let query_strings = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };

    let statuses: BTreeSet<String> = query_strings("SELECT DISTINCT status FROM scan_runs")
        .into_iter()
        .collect();
    assert!(
        statuses
            .iter()
            .all(|s| ["complete", "partial", "held", "interrupted"].contains(&s.as_str())),
        "iteration {iteration}: {statuses:?}"
    );

    // Everything the child logged as committed is there.
    let log = std::fs::read_to_string(log_path(db)).unwrap_or_default();
    // A kill can land inside the child's write of a long line (Linux cuts a write short when a
    // fatal signal arrives between pages), so only newline-terminated lines are claims.
    let log = log.rfind('\n').map_or("", |end| &log[..=end]);
    let present: BTreeSet<String> = query_strings(
        "SELECT i.registry || '|' || im.digest || '|' || i.vulnerability_id || '@' || f.last_run_id
         FROM findings f JOIN issues i ON i.id = f.issue_id JOIN images im ON im.id = f.image_id",
    )
    .into_iter()
    .collect();
    let present_keys: BTreeSet<&str> = present
        .iter()
        .map(|p| p.split('@').next().unwrap())
        .collect();
    for line in log.lines() {
        let mut words = line.split(' ');
        match words.next() {
            Some("seen") => {
                let _run = words.next();
                for key in words {
                    let (r, rest) = key.split_once('|').unwrap();
                    let full = format!("{}|{rest}", REGISTRIES[r.parse::<usize>().unwrap()]);
                    assert!(
                        present_keys.contains(full.as_str()),
                        "iteration {iteration}: lost {full}"
                    );
                }
            }
            Some(step @ ("finished" | "accepted")) => {
                let run: i64 = words.next().unwrap().parse().unwrap();
                let (status, accepted): (String, bool) = conn
                    .query_row(
                        "SELECT status, accepted_at IS NOT NULL FROM scan_runs WHERE id = ?1",
                        [run],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                let logged = words.next();
                // An accept may have committed after the `finished … held` line, unlogged.
                let accepted_later = step == "finished" && logged == Some("held") && accepted;
                assert!(
                    Some(status.as_str()) == logged || accepted_later,
                    "iteration {iteration}: run {run} is `{status}`, logged {step} {logged:?}"
                );
            }
            _ => {} // A line cut by the kill.
        }
    }

    // Nothing resolved except by a complete or partial run (held ones only once accepted) that
    // read the registry and the findings listing completely and did not see it.
    let wrong: i64 = conn
        .query_row(
            "SELECT count(*) FROM findings f JOIN issues i ON i.id = f.issue_id
             LEFT JOIN scan_runs r ON r.id = f.resolved_run_id
             WHERE f.status = 'resolved' AND (
                 r.id IS NULL OR r.status NOT IN ('complete', 'partial') OR f.last_run_id >= r.id
                 OR json_extract(r.coverage, '$.findings') IS NOT NULL
                 OR (r.held IS NOT NULL AND r.accepted_at IS NULL)
                 OR i.registry NOT IN (SELECT value FROM json_each(r.covered_registries)))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(wrong, 0, "iteration {iteration}: wrongly resolved findings");
    let resolved_by_unfinished: i64 = conn
        .query_row(
            "SELECT count(*) FROM events e JOIN scan_runs r ON r.id = e.run_id
             WHERE e.kind = 'resolved' AND r.status NOT IN ('complete', 'partial')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        resolved_by_unfinished, 0,
        "iteration {iteration}: an unfinished or held run resolved something"
    );
    conn.query_row("SELECT count(*) FROM findings", [], |r| r.get(0))
        .unwrap()
}

/// What the kills at one failpoint (or at random moments) found.
#[derive(Default)]
struct Tally {
    tries: u32,
    /// The child died of SIGKILL (at the point, or at the random moment).
    killed: u32,
    /// The child ended by itself first: the point was not met `n` times.
    missed: u32,
    /// Runs the restart found interrupted, over these kills.
    interrupted: u64,
}

#[test]
fn killed_scans_lose_nothing_and_resolve_nothing_wrongly() {
    let iterations: u64 = env(ITERATIONS)
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keelson.db");
    add_prod(&mut Store::open(&db).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b65_656c);
    let mut findings = 0;
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for iteration in 0..iterations {
        // Even iterations kill at the failpoints in turn, odd ones at a random moment.
        let point =
            (iteration % 2 == 0).then(|| FAILPOINTS[(iteration / 2) as usize % FAILPOINTS.len()]);
        let kill_at = point.map(|p| format!("{p}:{}", rng.random_range(1..=3)));
        let interrupted_before = interrupted_runs(&db);
        let mut child = spawn_child(&db, iteration, kill_at.as_deref());
        let status = if point.is_some() {
            wait_at_most(&mut child, Duration::from_mins(2))
        } else {
            std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
            let _ = child.kill();
            child.wait().unwrap()
        };
        let killed = status.signal() == Some(9);
        assert!(
            killed || status.success(),
            "iteration {iteration}: the child failed by itself ({status}):\n{}",
            std::fs::read_to_string(db.with_extension("child-output")).unwrap_or_default()
        );
        let now = verify(&db, iteration);
        assert!(
            now >= findings,
            "iteration {iteration}: findings went from {findings} to {now}"
        );
        findings = now;
        let tally = tallies
            .entry(point.unwrap_or("(random moment)"))
            .or_default();
        tally.tries += 1;
        if killed {
            tally.killed += 1;
        } else {
            tally.missed += 1;
        }
        tally.interrupted += interrupted_runs(&db) - interrupted_before;
    }
    report(iterations, findings, &tallies);
    assert!(
        findings > 0,
        "the child never committed anything: the test exercised nothing"
    );
    let interrupted: u64 = tallies.values().map(|t| t.interrupted).sum();
    assert!(interrupted > 0, "no kill landed inside a run");
    if iterations >= DEFAULT_ITERATIONS {
        for point in FAILPOINTS {
            assert!(
                tallies.get(point).is_some_and(|t| t.killed > 0),
                "no kill landed at `{point}`"
            );
        }
    }
}

fn interrupted_runs(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let count: i64 = conn
        .query_row(
            "SELECT count(*) FROM scan_runs WHERE status = 'interrupted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    count.try_into().unwrap()
}

/// Waits for `child`; kills it (and fails) if it hangs.
fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the crash child hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Prints, per kill point, how often the kill landed and how many runs it interrupted.
#[allow(clippy::print_stderr, reason = "the crash loop's report is its output")]
fn report(iterations: u64, findings: i64, tallies: &BTreeMap<&str, Tally>) {
    eprintln!("crash loop: {iterations} kills, {findings} findings at the end, invariants held");
    eprintln!(
        "{:<44} {:>5} {:>7} {:>7} {:>12}",
        "kill point", "tries", "killed", "missed", "interrupted"
    );
    for (point, t) in tallies {
        eprintln!(
            "{point:<44} {:>5} {:>7} {:>7} {:>12}",
            t.tries, t.killed, t.missed, t.interrupted
        );
    }
}
