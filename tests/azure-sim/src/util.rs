//! Small deterministic helpers: seeded hashing, GUIDs, and the date formats Azure uses.
//!
//! Everything the simulator generates is a pure function of the seed and an index, so these
//! helpers avoid any global random state.

use std::time::{SystemTime, UNIX_EPOCH};

/// One round of SplitMix64: a cheap, well-mixed 64-bit permutation.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of integers into one well-mixed value.
pub(crate) fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED_u64, |acc, p| mix(acc ^ mix(*p)))
}

/// Hashes bytes (request fingerprints, names) with FNV-1a followed by a final mix.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// A deterministic stream of pseudo-random numbers.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(parts: &[u64]) -> Self {
        Self(hash(parts))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A float in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A number in the inclusive range `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u32, hi: u32) -> u32 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }
}

/// A unit float from a hash value, for one-off decisions.
pub(crate) fn unit_of(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Formats 128 bits as a lowercase GUID.
pub(crate) fn guid(hi: u64, lo: u64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// A GUID derived from a seed and a label.
pub(crate) fn seeded_guid(seed: u64, label: &str) -> String {
    let h = hash_bytes(label.as_bytes());
    guid(hash(&[seed, h, 1]), hash(&[seed, h, 2]))
}

/// A fresh, non-deterministic GUID for request and correlation ids.
pub(crate) fn request_guid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = now_nanos();
    guid(hash(&[t, n, 7]), hash(&[t, n, 8]))
}

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_secs() -> i64 {
    (now_nanos() / 1_000_000_000) as i64
}

/// Converts days since 1970-01-01 to a civil date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Splits Unix seconds into `(year, month, day, hour, minute, second)`.
pub(crate) fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
}

/// RFC 3339 with seven fractional digits, as ACR and Defender print them:
/// `2023-03-02T23:15:59.8012764Z`.
pub(crate) fn rfc3339_7(secs: i64, frac_100ns: u32) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:07}Z",
        frac_100ns % 10_000_000
    )
}

/// RFC 3339 without fractions: `2022-10-16T06:15:00Z`.
pub(crate) fn rfc3339(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// The Entra timestamp format: `2020-04-07 20:52:51Z`.
pub(crate) fn entra_time(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// The US format ARM prints in `ExpiredAuthenticationToken`: `8/17/2017 10:54:41 PM`.
pub(crate) fn us_time(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    let (h12, ampm) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!("{mo}/{d}/{y} {h12}:{mi:02}:{s:02} {ampm}")
}

/// ARM's routing-id timestamp: `20210402T220248Z`.
pub(crate) fn compact_time(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `hh:mm:ss` as in `x-ms-user-quota-resets-after`.
pub(crate) fn hms(total_secs: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        total_secs / 3600,
        (total_secs / 60) % 60,
        total_secs % 60
    )
}

/// The HTTP `Date` header format.
pub(crate) fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s) = civil(secs);
    let dow = DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize];
    format!(
        "{dow}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        MONTHS[(mo - 1) as usize]
    )
}

/// Percent-encodes a query or path component the way ACR's `Link` header does
/// (`/` → `%2F`, `:` → `%3A`).
pub(crate) fn encode_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

/// Decodes a percent-encoded component, keeping invalid UTF-8 lossy.
pub(crate) fn decode_component(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses an `application/x-www-form-urlencoded` string into pairs, keeping repeats.
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of a form or query field.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_azure_formats() {
        // 2017-08-17 22:54:41 UTC
        let t = 1_503_010_481;
        assert_eq!(us_time(t), "8/17/2017 10:54:41 PM");
        assert_eq!(entra_time(t), "2017-08-17 22:54:41Z");
        assert_eq!(rfc3339_7(t, 8_012_764), "2017-08-17T22:54:41.8012764Z");
        assert_eq!(compact_time(t), "20170817T225441Z");
        assert_eq!(http_date(t), "Thu, 17 Aug 2017 22:54:41 GMT");
        assert_eq!(hms(3), "00:00:03");
    }

    #[test]
    fn guid_has_the_canonical_shape() {
        let g = seeded_guid(42, "tenant");
        assert_eq!(g.len(), 36);
        assert_eq!(g.matches('-').count(), 4);
        assert_eq!(g, seeded_guid(42, "tenant"));
        assert_ne!(g, seeded_guid(43, "tenant"));
    }

    #[test]
    fn link_encoding_matches_acr() {
        assert_eq!(encode_component("library/busybox"), "library%2Fbusybox");
        assert_eq!(encode_component("sha256:40d0"), "sha256%3A40d0");
        assert_eq!(encode_component("my-repo_x.y"), "my-repo_x.y");
    }
}
