//! The two public feeds, in their published formats, read from files (Keelson never downloads).
//!
//! - **CISA KEV**, the Known Exploited Vulnerabilities catalog: one JSON document
//!   (`known_exploited_vulnerabilities.json`, from
//!   <https://www.cisa.gov/known-exploited-vulnerabilities-catalog>) with `catalogVersion`,
//!   `dateReleased`, `count` and `vulnerabilities[]` of `cveID`, `vendorProject`, `product`,
//!   `vulnerabilityName`, `dateAdded`, `shortDescription`, `requiredAction`, `dueDate`,
//!   `knownRansomwareCampaignUse`, `notes`, `cwes`.
//! - **FIRST EPSS** daily scores (`epss_scores-current.csv.gz`, from <https://www.first.org/epss/data_stats>):
//!   a comment line `#model_version:v2025.03.14,score_date:2025-03-20T00:00:00+0000`, a header
//!   `cve,epss,percentile`, then one line per CVE. Gzipped or not.
//!
//! [`open`] tells them apart by content (gzip magic, then `{` for JSON), so operators pass files
//! as they downloaded them. EPSS is read as a stream: the full file has a quarter of a million
//! lines and never needs to sit in memory.

use std::io::{BufRead, BufReader, Read};

use serde::{Deserialize, Serialize};

use crate::Error;

/// One entry of the KEV catalog; the fields Keelson uses, unknown ones ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KevEntry {
    #[serde(rename = "cveID")]
    pub cve_id: String,
    #[serde(rename = "vendorProject", default)]
    pub vendor_project: String,
    #[serde(default)]
    pub product: String,
    #[serde(rename = "vulnerabilityName", default)]
    pub vulnerability_name: String,
    /// `YYYY-MM-DD`.
    #[serde(rename = "dateAdded")]
    pub date_added: String,
    /// `YYYY-MM-DD`: the remediation deadline CISA set for federal agencies.
    #[serde(rename = "dueDate", default)]
    pub due_date: Option<String>,
    #[serde(rename = "requiredAction", default)]
    pub required_action: String,
    /// `Known` or `Unknown`.
    #[serde(rename = "knownRansomwareCampaignUse", default)]
    pub known_ransomware_campaign_use: Option<String>,
}

impl KevEntry {
    pub fn ransomware(&self) -> bool {
        self.known_ransomware_campaign_use
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("known"))
    }
}

/// The KEV catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KevCatalog {
    #[serde(rename = "catalogVersion")]
    pub catalog_version: String,
    #[serde(rename = "dateReleased", default)]
    pub date_released: Option<String>,
    #[serde(default)]
    pub count: Option<u64>,
    pub vulnerabilities: Vec<KevEntry>,
}

/// One EPSS line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpssScore<'a> {
    pub cve: &'a str,
    /// Probability of exploitation activity in the next 30 days, 0 to 1.
    pub epss: f64,
    /// Share of CVEs scored at or below this one, 0 to 1.
    pub percentile: Option<f64>,
}

/// What the EPSS comment line says; both fields empty for files without it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpssHeader {
    pub model_version: Option<String>,
    pub score_date: Option<String>,
}

/// A streaming EPSS reader: call [`EpssReader::next_score`] until it returns `None`.
pub struct EpssReader {
    input: Box<dyn BufRead>,
    pub header: EpssHeader,
    line: String,
    line_no: u64,
    cve_col: usize,
    epss_col: usize,
    percentile_col: Option<usize>,
}

impl std::fmt::Debug for EpssReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpssReader")
            .field("header", &self.header)
            .field("line_no", &self.line_no)
            .finish_non_exhaustive()
    }
}

impl EpssReader {
    fn new(mut input: Box<dyn BufRead>) -> Result<Self, Error> {
        let mut header = EpssHeader::default();
        let mut line = String::new();
        let mut line_no = 0u64;
        let mut read = |line: &mut String, line_no: &mut u64| -> Result<bool, Error> {
            line.clear();
            *line_no += 1;
            let n = input
                .read_line(line)
                .map_err(|e| Error::Read(e.to_string()))?;
            Ok(n > 0)
        };
        if !read(&mut line, &mut line_no)? {
            return Err(Error::BadEpss {
                line: line_no,
                reason: "the file is empty".to_owned(),
            });
        }
        if let Some(comment) = line.trim_end().strip_prefix('#') {
            for part in comment.split(',') {
                match part.split_once(':') {
                    Some(("model_version", v)) => header.model_version = Some(v.to_owned()),
                    Some(("score_date", v)) => header.score_date = Some(v.to_owned()),
                    _ => {}
                }
            }
            if !read(&mut line, &mut line_no)? {
                return Err(Error::BadEpss {
                    line: line_no,
                    reason: "no `cve,epss,percentile` header".to_owned(),
                });
            }
        }
        let columns: Vec<String> = line
            .trim_end()
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        let col = |name: &str| columns.iter().position(|c| c == name);
        let (Some(cve_col), Some(epss_col)) = (col("cve"), col("epss")) else {
            return Err(Error::BadEpss {
                line: line_no,
                reason: format!(
                    "the header is `{}`; expected `cve,epss,percentile`",
                    line.trim_end()
                ),
            });
        };
        let percentile_col = col("percentile");
        Ok(Self {
            input,
            header,
            line: String::new(),
            line_no,
            cve_col,
            epss_col,
            percentile_col,
        })
    }

    /// The next score, `None` at the end. A malformed line is an error naming its number.
    pub fn next_score(&mut self) -> Option<Result<EpssScore<'_>, Error>> {
        loop {
            self.line.clear();
            self.line_no += 1;
            match self.input.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(Error::Read(e.to_string()))),
            }
            if !self.line.trim().is_empty() {
                break;
            }
        }
        let line_no = self.line_no;
        let text = self.line.trim_end();
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let bad = |reason: String| Error::BadEpss {
            line: line_no,
            reason,
        };
        let Some(cve) = fields
            .get(self.cve_col)
            .copied()
            .filter(|c| c.starts_with("CVE-"))
        else {
            return Some(Err(bad(format!("`{text}` does not start with a CVE id"))));
        };
        let probability = |col: usize| -> Option<f64> {
            fields
                .get(col)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| (0.0..=1.0).contains(v))
        };
        let Some(epss) = probability(self.epss_col) else {
            return Some(Err(bad(format!(
                "`{text}` has no EPSS score between 0 and 1"
            ))));
        };
        let percentile = self.percentile_col.and_then(probability);
        Some(Ok(EpssScore {
            cve,
            epss,
            percentile,
        }))
    }

    /// Lines read so far, the header included.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }
}

/// A feed file, recognised.
#[derive(Debug)]
pub enum Feed {
    Kev(KevCatalog),
    Epss(EpssReader),
}

/// Reads a feed file: gunzips when it starts with the gzip magic, then reads a JSON document as
/// the KEV catalog and anything else as EPSS CSV.
pub fn open(input: impl Read + 'static) -> Result<Feed, Error> {
    let mut buffered = BufReader::new(input);
    let head = buffered
        .fill_buf()
        .map_err(|e| Error::Read(e.to_string()))?;
    let gzipped = head.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn BufRead> = if gzipped {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(
            buffered,
        )))
    } else {
        Box::new(buffered)
    };
    let head = reader.fill_buf().map_err(|e| Error::Read(e.to_string()))?;
    let first = head.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first == Some(b'{') {
        let catalog: KevCatalog =
            serde_json::from_reader(reader).map_err(|e| Error::BadKev(e.to_string()))?;
        for entry in &catalog.vulnerabilities {
            if !entry.cve_id.starts_with("CVE-") {
                return Err(Error::BadKev(format!("`{}` is not a CVE id", entry.cve_id)));
            }
            crate::time::parse(&entry.date_added)?;
            if let Some(due) = &entry.due_date {
                crate::time::parse(due)?;
            }
        }
        Ok(Feed::Kev(catalog))
    } else {
        Ok(Feed::Epss(EpssReader::new(reader)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const EPSS: &str = "#model_version:v2025.03.14,score_date:2025-03-20T00:00:00+0000\ncve,epss,percentile\nCVE-2021-44228,0.94358,0.99957\nCVE-2019-1010022,0.00084,0.25\n";

    fn epss_scores(feed: Feed) -> (EpssHeader, Vec<(String, f64, Option<f64>)>) {
        let Feed::Epss(mut reader) = feed else {
            panic!("not EPSS")
        };
        let mut out = Vec::new();
        while let Some(score) = reader.next_score() {
            let s = score.unwrap();
            out.push((s.cve.to_owned(), s.epss, s.percentile));
        }
        (reader.header.clone(), out)
    }

    #[test]
    fn epss_csv_is_read_plain_and_gzipped() {
        let (header, plain) = epss_scores(open(std::io::Cursor::new(EPSS)).unwrap());
        assert_eq!(header.model_version.as_deref(), Some("v2025.03.14"));
        assert_eq!(
            header.score_date.as_deref(),
            Some("2025-03-20T00:00:00+0000")
        );
        assert_eq!(plain.len(), 2);
        assert_eq!(
            plain[0],
            ("CVE-2021-44228".to_owned(), 0.94358, Some(0.99957))
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(EPSS.as_bytes()).unwrap();
        let (_, zipped) = epss_scores(open(std::io::Cursor::new(gz.finish().unwrap())).unwrap());
        assert_eq!(zipped, plain);
    }

    #[test]
    fn a_bad_epss_line_is_named_by_number() {
        let text = "cve,epss,percentile\nCVE-1,0.1,0.2\nCVE-2,1.7,0.2\n";
        let Feed::Epss(mut reader) = open(std::io::Cursor::new(text)).unwrap() else {
            panic!()
        };
        assert!(reader.next_score().unwrap().is_ok());
        let err = reader.next_score().unwrap().unwrap_err();
        assert!(matches!(&err, Error::BadEpss { line: 3, .. }), "{err}");
        assert!(open(std::io::Cursor::new("a,b\n1,2\n")).is_err());
    }

    #[test]
    fn kev_json_is_recognised_and_checked() {
        let text = r#"{"title":"CISA Catalog","catalogVersion":"2025.01.02","dateReleased":"2025-01-02T15:00:00.0000Z","count":1,
            "vulnerabilities":[{"cveID":"CVE-2021-44228","vendorProject":"Apache","product":"Log4j2","vulnerabilityName":"x",
            "dateAdded":"2021-12-10","shortDescription":"d","requiredAction":"a","dueDate":"2021-12-24","knownRansomwareCampaignUse":"Known","notes":"","cwes":["CWE-917"]}]}"#;
        let Feed::Kev(catalog) = open(std::io::Cursor::new(text)).unwrap() else {
            panic!()
        };
        assert_eq!(catalog.catalog_version, "2025.01.02");
        assert!(catalog.vulnerabilities[0].ransomware());
        let bad = text.replace("2021-12-24", "soon");
        assert!(
            matches!(open(std::io::Cursor::new(bad)), Err(Error::BadTimestamp(t)) if t == "soon")
        );
    }
}
