//! The one table the benchmark prints: a Markdown table, so it can go into the docs as is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use azure_sim::{Limits, Sku, StatsSnapshot};

use crate::Phase;
use crate::floor::Floor;
use crate::tenant::Size;

/// What the peer baseline did.
pub(crate) struct Sdk {
    pub(crate) wall: Duration,
    pub(crate) peak_rss: Option<u64>,
    pub(crate) stats: StatsSnapshot,
    pub(crate) registry_requests: BTreeMap<String, u64>,
    /// The script's own JSON summary (`registries`, `images`, `findings`).
    pub(crate) summary: serde_json::Value,
    pub(crate) db_bytes: u64,
}

/// Everything the table is made from.
pub(crate) struct Inputs<'a> {
    pub(crate) size: &'a Size,
    pub(crate) throttling: bool,
    pub(crate) limits: &'a Limits,
    pub(crate) skus: &'a BTreeMap<String, Sku>,
    pub(crate) arg_rows: u64,
    pub(crate) truth_images: u64,
    pub(crate) truth_findings: u64,
    pub(crate) repushed: usize,
    pub(crate) phases: [&'a Phase; 3],
    pub(crate) sdk: Option<&'a Sdk>,
    pub(crate) db_bytes: u64,
}

/// Rows of `metric | Keelson | SDK | Keelson / SDK | target or minimum`, with section headers.
pub(crate) struct Table {
    title: String,
    rows: Vec<[String; 5]>,
}

impl Table {
    pub(crate) fn new() -> Self {
        Self {
            title: String::new(),
            rows: Vec::new(),
        }
    }

    fn section(&mut self, name: &str) {
        self.rows.push([
            format!("**{name}**"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }

    fn row(&mut self, metric: &str, keelson: String, sdk: String, ratio: String, target: &str) {
        self.rows
            .push([metric.to_owned(), keelson, sdk, ratio, target.to_owned()]);
    }

    pub(crate) fn render(&self) -> String {
        let header = [
            "metric",
            "Keelson",
            "Azure SDK (Python)",
            "Keelson / SDK",
            "target / minimum",
        ];
        let mut widths = header.map(str::len);
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut s = String::from("|");
            for (cell, w) in cells.iter().zip(widths) {
                let pad = w - cell.chars().count();
                let _ = write!(s, " {cell}{} |", " ".repeat(pad));
            }
            s.push('\n');
            s
        };
        let mut out = format!("\n{}\n\n", self.title);
        out.push_str(&line(header));
        let rule = widths.map(|w| "-".repeat(w));
        out.push_str(&line([&rule[0], &rule[1], &rule[2], &rule[3], &rule[4]]));
        for row in &self.rows {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        }
        out
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".to_owned()
    }
}

fn opt_mb(b: Option<u64>) -> String {
    b.map_or_else(|| "?".to_owned(), mb)
}

fn throttled(stats: &StatsSnapshot) -> u64 {
    stats
        .requests
        .iter()
        .filter(|e| e.status == 429)
        .map(|e| e.count)
        .sum()
}

pub(crate) fn fill(t: &mut Table, i: &Inputs<'_>) {
    let size = i.size;
    t.title = format!(
        "Keelson scale benchmark: {} registries x {} repositories x {} images = {} images, {} open findings ({} Resource Graph rows); throttling {}",
        size.registries,
        size.repos,
        size.images,
        i.truth_images,
        i.truth_findings,
        i.arg_rows,
        match (i.throttling, size.scaled) {
            (false, _) => "off",
            (true, false) => "on at Azure's documented limits",
            (true, true) => "on at scaled-down limits (smoke size)",
        }
    );
    let [first, second, third] = i.phases;
    let sdk = i.sdk;
    // Without throttling there is no floor to compare with.
    let unthrottled = |f: Floor| {
        if i.throttling {
            f
        } else {
            Floor {
                arm: Duration::ZERO,
                arg: Duration::ZERO,
                acr: (Duration::ZERO, String::new()),
            }
        }
    };
    let floor_k = unthrottled(first.floor(i.limits, i.skus));
    let floor_s = sdk.map(|x| {
        unthrottled(crate::floor_of(
            &x.stats,
            &x.registry_requests,
            i.limits,
            i.skus,
        ))
    });
    let na = || "-".to_owned();

    t.section("first scan (empty database)");
    let kw = first.child.wall.as_secs_f64();
    let sw = sdk.map(|x| x.wall.as_secs_f64());
    t.row(
        "wall time",
        secs(first.child.wall),
        sw.map_or_else(na, |w| format!("{w:.1} s")),
        sw.map_or_else(na, |w| ratio(kw, w)),
        "<= 0.10x (10x faster)",
    );
    t.row(
        "throttling floor (binding budget)",
        format!("{} ({})", secs(floor_k.total()), floor_k.binding()),
        floor_s
            .as_ref()
            .map_or_else(na, |f| format!("{} ({})", secs(f.total()), f.binding())),
        na(),
        "",
    );
    t.row(
        "wall time / floor",
        floor_ratio(first.child.wall, &floor_k),
        match (sdk, &floor_s) {
            (Some(x), Some(f)) => floor_ratio(x.wall, f),
            _ => na(),
        },
        na(),
        "<= 1.2x",
    );
    let kr = first.stats.total_requests();
    let sr = sdk.map(|x| x.stats.total_requests());
    let min = size.minimum_requests(i.arg_rows, azure_sim::TenantSpec::large().arm_page_size);
    t.row(
        "requests (all endpoints)",
        kr.to_string(),
        sr.map_or_else(na, |r| r.to_string()),
        sr.map_or_else(na, |r| ratio(kr as f64, r as f64)),
        &format!("minimum {}", min.values().sum::<u64>()),
    );
    t.row(
        "throttled answers (429)",
        throttled(&first.stats).to_string(),
        sdk.map_or_else(na, |x| throttled(&x.stats).to_string()),
        na(),
        "0 in steady state",
    );
    let kf = first.findings_read();
    let sf = sdk.and_then(|x| x.summary["findings"].as_u64());
    t.row(
        "findings ingested",
        kf.to_string(),
        sf.map_or_else(na, |f| f.to_string()),
        na(),
        &format!("{} open", i.truth_findings),
    );
    t.row(
        "findings ingested / s (wall)",
        format!("{:.0}", kf as f64 / kw.max(1e-9)),
        match (sf, sw) {
            (Some(f), Some(w)) => format!("{:.0}", f as f64 / w.max(1e-9)),
            _ => na(),
        },
        match (sf, sw) {
            (Some(f), Some(w)) => ratio(kf as f64 / kw, f as f64 / w),
            _ => na(),
        },
        ">= 200k/s unthrottled",
    );
    t.row(
        "store writer busy (share of wall)",
        first.summary["store_busy"]
            .as_f64()
            .map_or_else(na, |busy| {
                format!(
                    "{} ({:.0}%)",
                    secs(Duration::from_secs_f64(busy)),
                    100.0 * busy / kw.max(1e-9)
                )
            }),
        na(),
        na(),
        "",
    );
    t.row(
        "peak RSS",
        opt_mb(first.child.peak_rss),
        sdk.map_or_else(na, |x| opt_mb(x.peak_rss)),
        match (first.child.peak_rss, sdk.and_then(|x| x.peak_rss)) {
            (Some(a), Some(b)) => ratio(a as f64, b as f64),
            _ => na(),
        },
        "< 200 MB",
    );
    t.row(
        "database size (after all scans)",
        mb(i.db_bytes),
        sdk.map_or_else(na, |x| mb(x.db_bytes)),
        na(),
        "",
    );

    t.section("requests by endpoint (first scan)");
    let mut endpoints: BTreeSet<String> = first
        .stats
        .requests
        .iter()
        .map(|e| e.endpoint.clone())
        .collect();
    if let Some(x) = sdk {
        endpoints.extend(x.stats.requests.iter().map(|e| e.endpoint.clone()));
    }
    endpoints.extend(min.keys().map(|k| (*k).to_owned()));
    for e in &endpoints {
        t.row(
            &format!("`{e}`"),
            first.stats.total(e).to_string(),
            sdk.map_or_else(na, |x| x.stats.total(e).to_string()),
            na(),
            &min.get(e.as_str())
                .map_or_else(|| "0".to_owned(), ToString::to_string),
        );
    }

    for (phase, title) in [
        (second, second.label.to_owned()),
        (
            third,
            format!("{} ({} images re-pushed)", third.label, i.repushed),
        ),
    ] {
        t.section(&title);
        let floor = unthrottled(phase.floor(i.limits, i.skus));
        t.row(
            "wall time / floor",
            format!(
                "{} / {} = {}",
                secs(phase.child.wall),
                secs(floor.total()),
                floor_ratio(phase.child.wall, &floor)
            ),
            na(),
            na(),
            "<= 1.2x",
        );
        t.row(
            "requests",
            phase.stats.total_requests().to_string(),
            na(),
            na(),
            "",
        );
        let run = &phase.summary["run"];
        t.row(
            "findings new / updated / reopened / resolved",
            format!(
                "{} / {} / {} / {}",
                run["findings_new"],
                run["findings_updated"],
                run["findings_reopened"],
                run["findings_resolved"]
            ),
            na(),
            na(),
            "",
        );
        t.row(
            "finding rows written",
            phase.rows.findings.to_string(),
            na(),
            na(),
            "0 when unchanged",
        );
        t.row(
            "image rows written / events",
            format!("{} / {}", phase.rows.images, phase.rows.events),
            na(),
            na(),
            "",
        );
        t.row(
            "peak RSS",
            opt_mb(phase.child.peak_rss),
            na(),
            na(),
            "< 200 MB",
        );
    }
}

fn floor_ratio(wall: Duration, floor: &Floor) -> String {
    if floor.total().is_zero() {
        "- (floor 0)".to_owned()
    } else {
        format!("{:.2}x", wall.as_secs_f64() / floor.total().as_secs_f64())
    }
}
