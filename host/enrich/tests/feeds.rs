//! The shipped samples read as the real feeds do.

use std::fs::File;
use std::path::{Path, PathBuf};

use keelson_enrich::feeds::{self, Feed};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn epss(name: &str) -> Vec<(String, f64)> {
    let Feed::Epss(mut reader) = feeds::open(File::open(sample(name)).unwrap()).unwrap() else {
        panic!("{name} is not read as EPSS");
    };
    assert_eq!(reader.header.model_version.as_deref(), Some("v2025.03.14"));
    let mut out = Vec::new();
    while let Some(score) = reader.next_score() {
        let score = score.unwrap();
        out.push((score.cve.to_owned(), score.epss));
    }
    out
}

#[test]
fn the_kev_sample_is_a_catalog() {
    let Feed::Kev(catalog) = feeds::open(File::open(sample("kev-sample.json")).unwrap()).unwrap()
    else {
        panic!("not read as KEV");
    };
    assert_eq!(catalog.count, Some(catalog.vulnerabilities.len() as u64));
    let log4shell = &catalog.vulnerabilities[0];
    assert_eq!(log4shell.cve_id, "CVE-2021-44228");
    assert_eq!(log4shell.due_date.as_deref(), Some("2021-12-24"));
    assert!(log4shell.ransomware());
}

#[test]
fn the_epss_samples_match_gzipped_or_not() {
    let plain = epss("epss-sample.csv");
    assert!(plain.len() > 20);
    assert!(
        plain
            .iter()
            .any(|(cve, s)| cve == "CVE-2021-44228" && *s > 0.9)
    );
    assert_eq!(epss("epss-sample.csv.gz"), plain);
}
