//! Just enough calendar arithmetic for SLA due dates and "not pushed for N days": RFC 3339
//! timestamps to seconds since the Unix epoch and back, in UTC.

use crate::Error;

/// Seconds since 1970-01-01T00:00:00Z.
pub type Seconds = i64;

/// One day in seconds.
pub const DAY: Seconds = 86_400;

/// Days since the epoch of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Shift the year to start in March so the leap day is the last day of the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since the epoch.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn number(text: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| range.contains(n))
}

/// Reads `YYYY-MM-DD` or an RFC 3339 date-time (`2024-05-01T12:00:00Z`, fractions and offsets
/// allowed; a missing offset is read as UTC, as the EPSS header writes `+0000`).
pub fn parse(text: &str) -> Result<Seconds, Error> {
    let bad = || Error::BadTimestamp(text.to_owned());
    let (date, rest) = text.trim().split_at_checked(10).ok_or_else(bad)?;
    let mut parts = date.split('-');
    let (Some(year), Some(month), Some(day), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let year_n = number(year, 1..=9999).ok_or_else(bad)?;
    let month_n = number(month, 1..=12).ok_or_else(bad)?;
    let day_n = number(day, 1..=31).ok_or_else(bad)?;
    let mut seconds = days_from_civil(year_n, month_n, day_n) * DAY;
    if rest.is_empty() {
        return Ok(seconds);
    }
    let rest = rest.strip_prefix(['T', 't', ' ']).ok_or_else(bad)?;
    let (clock, zone) = rest.split_at_checked(8).ok_or_else(bad)?;
    let mut hms = clock.split(':');
    let (Some(hh), Some(mm), Some(ss), None) = (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return Err(bad());
    };
    seconds += number(hh, 0..=23).ok_or_else(bad)? * 3600
        + number(mm, 0..=59).ok_or_else(bad)? * 60
        + number(ss, 0..=60).ok_or_else(bad)?;
    let zone = match zone.strip_prefix('.') {
        Some(frac) => frac.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => zone,
    };
    let offset = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            let digits = zone[1..].replace(':', "");
            if digits.len() != 4 {
                return Err(bad());
            }
            let hours = number(&digits[..2], 0..=23).ok_or_else(bad)?;
            let minutes = number(&digits[2..], 0..=59).ok_or_else(bad)?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    Ok(seconds - offset)
}

/// The stored form: `2026-03-01T00:00:00.000Z`.
pub fn format(seconds: Seconds) -> String {
    let days = seconds.div_euclid(DAY);
    let in_day = seconds.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// `YYYY-MM-DD` of a time.
pub fn date(seconds: Seconds) -> String {
    format(seconds)[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_round_trip_through_the_stored_form() {
        assert_eq!(parse("1970-01-01").unwrap(), 0);
        assert_eq!(parse("2024-02-29").unwrap(), 19_782 * DAY);
        assert_eq!(
            format(parse("2024-02-29").unwrap()),
            "2024-02-29T00:00:00.000Z"
        );
        let t = parse("2026-03-01T02:30:15.1234567+02:00").unwrap();
        assert_eq!(format(t), "2026-03-01T00:30:15.000Z");
        assert_eq!(
            format(parse("2025-03-20T00:00:00+0000").unwrap()),
            "2025-03-20T00:00:00.000Z"
        );
        assert_eq!(
            date(parse("1999-12-31T23:59:59Z").unwrap() + 1),
            "2000-01-01"
        );
        assert_eq!(format(-DAY), "1969-12-31T00:00:00.000Z");
    }

    #[test]
    fn garbage_is_refused_naming_the_text() {
        for bad in [
            "",
            "2024",
            "2024-13-01",
            "2024-01-01X",
            "2024-01-01T25:00:00Z",
            "next tuesday",
            "2024-01-01T00:00:00+5",
        ] {
            assert!(
                matches!(parse(bad), Err(Error::BadTimestamp(t)) if t == bad),
                "{bad}"
            );
        }
    }
}
