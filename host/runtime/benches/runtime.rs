//! Prints what the runtime costs: compile, cache load, instantiate, one export call, one host
//! call, memory per instance. Figures only; nothing is asserted about time.
//!
//! Needs the fixtures: `cd plugins && cargo build --release --target wasm32-wasip2`.

// Printing the figures is this program's whole job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use keelson_config::{PluginId, PluginLimits, PluginSpec};
use keelson_core::KeyValue;
use keelson_http::{Egress, EgressSettings};
use keelson_runtime::{Runtime, RuntimeSettings};

fn fixture() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm32-wasip2/release/well_behaved.wasm");
    assert!(
        path.is_file(),
        "build the plugins first: `cd plugins && cargo build --release --target wasm32-wasip2`"
    );
    path
}

fn per(total: Duration, n: u32) -> String {
    let ns = total.as_nanos() / u128::from(n);
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} µs", ns as f64 / 1e3)
    }
}

fn log_lines(n: u32) -> Vec<KeyValue> {
    vec![KeyValue {
        key: "log_lines".to_owned(),
        value: n.to_string(),
    }]
}

/// Resident set size of this process, from `/proc` where there is one.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

async fn run() {
    let cache = tempfile::tempdir().unwrap();
    let rt = Runtime::new(
        RuntimeSettings::new(cache.path()),
        Egress::new(EgressSettings::default()).unwrap(),
    )
    .unwrap();
    let spec = PluginSpec {
        id: PluginId::new("well-behaved").unwrap(),
        path: fixture(),
        sha256: None,
        allowed_hosts: Vec::new(),
        limits: PluginLimits::default(),
        enabled: true,
        // The well-behaved fixture is built against 0.1.0.
        allow_plaintext_secrets: true,
        secret_hosts: std::collections::BTreeMap::new(),
    };
    let size = std::fs::metadata(&spec.path).unwrap().len();
    println!("component: well_behaved.wasm, {size} bytes");

    let t = Instant::now();
    rt.load(&spec).await.unwrap();
    println!(
        "load, cold cache (read, sha256, compile, cache write, link, describe): {:?}",
        t.elapsed()
    );

    let n = 20;
    let t = Instant::now();
    let mut plugin = None;
    for _ in 0..n {
        plugin = Some(rt.load(&spec).await.unwrap());
    }
    let plugin = plugin.unwrap();
    println!(
        "load, warm cache (read, sha256, deserialize_file, link, describe): {}",
        per(t.elapsed(), n)
    );

    let n = 2_000;
    let t = Instant::now();
    for _ in 0..n {
        plugin.describe_fresh().await.unwrap();
    }
    println!(
        "new store + instantiate + describe: {}",
        per(t.elapsed(), n)
    );

    let t = Instant::now();
    for _ in 0..n {
        plugin
            .connect("bench", log_lines(0), Vec::new())
            .await
            .unwrap();
    }
    println!(
        "new store + instantiate + connect (one host log call): {}",
        per(t.elapsed(), n)
    );

    let mut conn = plugin
        .connect("bench", log_lines(0), Vec::new())
        .await
        .unwrap();
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        conn.verify().await.unwrap();
    }
    let export = t.elapsed();
    println!(
        "one export call (session.verify, instance reused): {}",
        per(export, n)
    );

    let lines = 1_000;
    let mut conn = plugin
        .connect("bench", log_lines(lines), Vec::new())
        .await
        .unwrap();
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        conn.verify().await.unwrap();
    }
    let with_logs = t.elapsed();
    let host = with_logs.saturating_sub(export / 100) / lines;
    println!("one host call (log, no subscriber): {}", per(host, n));

    println!(
        "linear memory per instance after connect + verify: {} KiB",
        conn.peak_memory_bytes() >> 10
    );
    let live = 200;
    let before = rss_bytes();
    let mut kept = Vec::with_capacity(live);
    for _ in 0..live {
        let mut c = plugin
            .connect("bench", log_lines(0), Vec::new())
            .await
            .unwrap();
        c.verify().await.unwrap();
        kept.push(c);
    }
    if let (Some(before), Some(after)) = (before, rss_bytes()) {
        println!(
            "RSS per live connection ({live} kept): {} KiB",
            (after.saturating_sub(before) / live as u64) >> 10
        );
    }
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
