//! The vulnerability catalogue: packages, CVEs and how an image's findings are drawn from them.
//!
//! A small hand-written table keeps the demo readable (well-known packages and CVE ids); beyond
//! it, each package has a pool of synthetic CVE ids so large tenants get variety.

use serde::Serialize;

use crate::util::Rng;

/// Severity as Defender reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The string Azure uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }

    fn from_cvss(score: f64) -> Self {
        if score >= 9.0 {
            Self::Critical
        } else if score >= 7.0 {
            Self::High
        } else if score >= 4.0 {
            Self::Medium
        } else {
            Self::Low
        }
    }
}

/// Whether a package comes from the OS or a language ecosystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackageKind {
    Os,
    Language(&'static str),
}

pub(crate) struct PackageDef {
    pub(crate) name: &'static str,
    pub(crate) vendor: &'static str,
    pub(crate) kind: PackageKind,
    pub(crate) versions: &'static [&'static str],
    pub(crate) cves: &'static [(&'static str, f64)],
}

use PackageKind::{Language, Os};

/// The package table. CVSS scores drive the severity.
pub(crate) static PACKAGES: &[PackageDef] = &[
    PackageDef {
        name: "openssl",
        vendor: "openssl",
        kind: Os,
        versions: &["3.0.2", "3.0.8", "1.1.1n"],
        cves: &[
            ("CVE-2023-0286", 7.4),
            ("CVE-2023-0215", 7.5),
            ("CVE-2024-5535", 9.1),
        ],
    },
    PackageDef {
        name: "curl",
        vendor: "haxx",
        kind: Os,
        versions: &["7.81.0", "7.88.1"],
        cves: &[
            ("CVE-2023-38545", 9.8),
            ("CVE-2023-38546", 3.7),
            ("CVE-2024-2398", 5.3),
        ],
    },
    PackageDef {
        name: "zlib1g",
        vendor: "zlib",
        kind: Os,
        versions: &["1.2.11"],
        cves: &[("CVE-2022-37434", 9.8)],
    },
    PackageDef {
        name: "liblzma5",
        vendor: "tukaani",
        kind: Os,
        versions: &["5.6.0", "5.6.1"],
        cves: &[("CVE-2024-3094", 10.0)],
    },
    PackageDef {
        name: "libc6",
        vendor: "gnu",
        kind: Os,
        versions: &["2.35", "2.36"],
        cves: &[
            ("CVE-2023-4911", 7.8),
            ("CVE-2023-6246", 7.8),
            ("CVE-2019-1010022", 3.3),
        ],
    },
    PackageDef {
        name: "busybox",
        vendor: "busybox",
        kind: Os,
        versions: &["1.35.0", "1.36.1"],
        cves: &[("CVE-2022-48174", 9.8), ("CVE-2023-42363", 5.5)],
    },
    PackageDef {
        name: "log4j-core",
        vendor: "apache",
        kind: Language("java"),
        versions: &["2.14.1", "2.16.0"],
        cves: &[
            ("CVE-2021-44228", 10.0),
            ("CVE-2021-45046", 9.0),
            ("CVE-2021-44832", 6.6),
        ],
    },
    PackageDef {
        name: "py",
        vendor: "py",
        kind: Language("python"),
        versions: &["1.11.0.0"],
        cves: &[("CVE-2022-42969", 7.5)],
    },
    PackageDef {
        name: "requests",
        vendor: "python",
        kind: Language("python"),
        versions: &["2.28.1", "2.31.0"],
        cves: &[("CVE-2023-32681", 6.1), ("CVE-2024-35195", 5.6)],
    },
    PackageDef {
        name: "lodash",
        vendor: "lodash",
        kind: Language("javascript"),
        versions: &["4.17.15", "4.17.20"],
        cves: &[("CVE-2021-23337", 7.2), ("CVE-2020-28500", 5.3)],
    },
    PackageDef {
        name: "golang.org/x/net",
        vendor: "golang",
        kind: Language("go"),
        versions: &["0.7.0", "0.15.0"],
        cves: &[
            ("CVE-2023-44487", 7.5),
            ("CVE-2023-39325", 7.5),
            ("CVE-2023-3978", 6.1),
        ],
    },
    PackageDef {
        name: "libwebp7",
        vendor: "webmproject",
        kind: Os,
        versions: &["1.2.4"],
        cves: &[("CVE-2023-4863", 8.8)],
    },
    PackageDef {
        name: "libexpat1",
        vendor: "libexpat_project",
        kind: Os,
        versions: &["2.4.7"],
        cves: &[("CVE-2022-40674", 9.8), ("CVE-2023-52425", 7.5)],
    },
    PackageDef {
        name: "apt",
        vendor: "debian",
        kind: Os,
        versions: &["2.6.1"],
        cves: &[("CVE-2011-3374", 3.7)],
    },
    PackageDef {
        name: "gnupg",
        vendor: "gnupg",
        kind: Os,
        versions: &["2.2.40"],
        cves: &[("CVE-2022-3219", 3.3)],
    },
    PackageDef {
        name: "coreutils",
        vendor: "gnu",
        kind: Os,
        versions: &["9.1"],
        cves: &[("CVE-2016-2781", 3.1)],
    },
    PackageDef {
        name: "sqlite3",
        vendor: "sqlite",
        kind: Os,
        versions: &["3.37.2"],
        cves: &[("CVE-2022-35737", 7.5), ("CVE-2023-7104", 5.5)],
    },
    PackageDef {
        name: "jackson-databind",
        vendor: "fasterxml",
        kind: Language("java"),
        versions: &["2.13.2"],
        cves: &[("CVE-2022-42003", 7.5), ("CVE-2020-36518", 7.5)],
    },
];

/// Synthetic CVEs per package, beyond the hand-written ones.
const SYNTHETIC_CVES_PER_PACKAGE: u32 = 40;

/// One CVE as generated for the simulator.
#[derive(Clone, Debug)]
pub(crate) struct Cve {
    pub(crate) id: String,
    pub(crate) cvss: f64,
    pub(crate) severity: Severity,
    pub(crate) published: i64,
}

/// The CVE number `v` of package `p`: first the table, then synthetic ids.
pub(crate) fn cve(p: usize, v: u32) -> Cve {
    let def = &PACKAGES[p];
    if let Some((id, cvss)) = def.cves.get(v as usize) {
        let year: i64 = id[4..8].parse().unwrap_or(2023);
        return Cve {
            id: (*id).to_owned(),
            cvss: *cvss,
            severity: Severity::from_cvss(*cvss),
            published: (year - 1970) * 31_557_600 + i64::from(v) * 86_400 * 37,
        };
    }
    let mut r = Rng::new(&[0xC0E, p as u64, u64::from(v)]);
    let year = 2020 + (v % 6);
    // Mostly Medium/High, some Critical and Low, as in real scans.
    let cvss = match r.range(0, 99) {
        0..=9 => 9.0 + f64::from(r.range(0, 10)) / 10.0,
        10..=44 => 7.0 + f64::from(r.range(0, 19)) / 10.0,
        45..=84 => 4.0 + f64::from(r.range(0, 29)) / 10.0,
        _ => 1.0 + f64::from(r.range(0, 29)) / 10.0,
    };
    Cve {
        id: format!("CVE-{year}-{}", 20_000 + p as u32 * 1000 + v),
        cvss,
        severity: Severity::from_cvss(cvss),
        published: i64::from(year - 1970) * 31_557_600 + i64::from(r.range(0, 360)) * 86_400,
    }
}

/// The number of CVEs a package can draw from.
pub(crate) fn cve_pool(p: usize, synthetic: bool) -> u32 {
    let base = PACKAGES[p].cves.len() as u32;
    if synthetic {
        base + SYNTHETIC_CVES_PER_PACKAGE
    } else {
        base
    }
}

/// The CVSS vector for a score (shape only; the metrics are plausible, not exact).
pub(crate) fn cvss_vector(version: &str, cvss: f64) -> String {
    let (c, i, a) = if cvss >= 9.0 {
        ("H", "H", "H")
    } else if cvss >= 7.0 {
        ("H", "N", "N")
    } else if cvss >= 4.0 {
        ("L", "L", "N")
    } else {
        ("L", "N", "N")
    };
    format!("CVSS:{version}/AV:N/AC:L/PR:N/UI:N/S:U/C:{c}/I:{i}/A:{a}")
}

/// A fixed version one patch level above `version`.
pub(crate) fn bump(version: &str) -> String {
    let mut parts: Vec<String> = version.split('.').map(str::to_owned).collect();
    if let Some(last) = parts.last_mut() {
        let digits: String = last.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().unwrap_or(0);
        *last = (n + 1).to_string();
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cves_keep_their_ids_and_synthetic_ones_are_unique() {
        assert_eq!(cve(0, 0).id, "CVE-2023-0286");
        assert_eq!(cve(3, 0).severity, Severity::Critical);
        let mut ids = std::collections::HashSet::new();
        for p in 0..PACKAGES.len() {
            for v in 0..cve_pool(p, true) {
                assert!(
                    ids.insert(cve(p, v).id),
                    "duplicate cve for package {p} variant {v}"
                );
            }
        }
    }

    #[test]
    fn bump_increments_the_last_numeric_part() {
        assert_eq!(bump("3.0.2"), "3.0.3");
        assert_eq!(bump("1.1.1n"), "1.1.2");
    }
}
