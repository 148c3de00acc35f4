//! The two timestamp formats SigV4 meets, parsed strictly and without a date library.
//!
//! `X-Amz-Date` / the presigned `X-Amz-Date` parameter use ISO 8601 basic format
//! (`20150830T123600Z`); the `Date` header fallback uses the HTTP IMF-fixdate format
//! (`Sun, 30 Aug 2015 12:36:00 GMT`). Both are converted to seconds since the Unix epoch with the
//! proleptic Gregorian calendar (Howard Hinnant's `days_from_civil`), which is all the verifier
//! needs: a skew comparison and the `YYYYMMDD` day of the credential scope.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// A validated UTC timestamp with one-second resolution (all SigV4 carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the Unix epoch; requests from before 1970 are refused at parse time.
    secs: u64,
}

impl Timestamp {
    fn from_parts(year: i64, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<Self> {
        if !(1970..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || h > 23
            || m > 59
            || s > 59
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s);
        Some(Self {
            secs: u64::try_from(secs).ok()?,
        })
    }

    /// Parses ISO 8601 basic format exactly as SigV4 writes it: `YYYYMMDDTHHMMSSZ`.
    pub fn parse_amz(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[4..6])?;
        let day = digits(&b[6..8])?;
        let h = digits(&b[9..11])?;
        let m = digits(&b[11..13])?;
        let sec = digits(&b[13..15])?;
        Self::from_parts(i64::from(year), month, day, h, m, sec)
    }

    /// Parses the HTTP `Date` header's IMF-fixdate form: `Sun, 30 Aug 2015 12:36:00 GMT`.
    /// The weekday must be a weekday name but is not checked against the date: it carries no
    /// information, and the 2011 AWS test suite itself signs `Mon, 09 Sep 2011` (a Friday).
    pub fn parse_http(s: &str) -> Option<Self> {
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let b = s.as_bytes();
        // "Sun, 30 Aug 2015 12:36:00 GMT" is exactly 29 bytes.
        if b.len() != 29
            || &b[3..5] != b", "
            || b[7] != b' '
            || b[11] != b' '
            || b[16] != b' '
            || b[19] != b':'
            || b[22] != b':'
            || &b[25..] != b" GMT"
        {
            return None;
        }
        let weekday = std::str::from_utf8(&b[0..3]).ok()?;
        let day = digits(&b[5..7])?;
        let month_name = std::str::from_utf8(&b[8..11]).ok()?;
        let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
        let year = digits(&b[12..16])?;
        let h = digits(&b[17..19])?;
        let m = digits(&b[20..22])?;
        let sec = digits(&b[23..25])?;
        if !WEEKDAYS.contains(&weekday) {
            return None;
        }
        Self::from_parts(i64::from(year), month, day, h, m, sec)
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(self) -> u64 {
        self.secs
    }

    /// The same instant as a [`SystemTime`].
    pub fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.secs)
    }

    /// Truncates a [`SystemTime`] to whole seconds; `None` before 1970.
    pub fn from_system_time(t: SystemTime) -> Option<Self> {
        let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
        // Keep the year within four digits so formatting stays in the SigV4 shape.
        (secs < 253_402_300_800).then_some(Self { secs })
    }

    /// `YYYYMMDDTHHMMSSZ`, the form the string to sign carries.
    pub fn amz(self) -> String {
        let (y, mo, d) = civil_from_days((self.secs / 86_400) as i64);
        let rem = self.secs % 86_400;
        format!(
            "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }

    /// `YYYYMMDD`, the day the credential scope must name.
    pub fn day(self) -> String {
        let (y, mo, d) = civil_from_days((self.secs / 86_400) as i64);
        format!("{y:04}{mo:02}{d:02}")
    }
}

/// ASCII decimal digits to a number; `None` on anything else (no sign, no spaces).
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_round_trip_and_day() {
        let t = Timestamp::parse_amz("20150830T123600Z").expect("valid");
        assert_eq!(t.unix_secs(), 1_440_938_160);
        assert_eq!(t.amz(), "20150830T123600Z");
        assert_eq!(t.day(), "20150830");
        let leap = Timestamp::parse_amz("20240229T235959Z").expect("leap day");
        assert_eq!(leap.amz(), "20240229T235959Z");
    }

    #[test]
    fn amz_rejects_malformed() {
        for bad in [
            "",
            "20150830T123600",
            "20150830 123600Z",
            "2015083OT123600Z",
            "20150230T123600Z",
            "20230229T000000Z",
            "20151301T000000Z",
            "20150830T243600Z",
            "20150830T126000Z",
            "19691231T235959Z",
            "+0150830T123600Z",
            "20150830T123600Zx",
        ] {
            assert_eq!(Timestamp::parse_amz(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_date_matches_amz() {
        let t = Timestamp::parse_http("Sun, 30 Aug 2015 12:36:00 GMT").expect("valid");
        assert_eq!(t.amz(), "20150830T123600Z");
        assert_eq!(Timestamp::parse_http("Xyz, 30 Aug 2015 12:36:00 GMT"), None);
        assert_eq!(Timestamp::parse_http("Sun, 31 Sep 2015 12:36:00 GMT"), None);
        assert_eq!(Timestamp::parse_http("Sun, 30 Aug 2015 12:36:00 UTC"), None);
        assert_eq!(Timestamp::parse_http("Sun, 30 Agu 2015 12:36:00 GMT"), None);
        let epoch = Timestamp::parse_http("Thu, 01 Jan 1970 00:00:00 GMT").expect("epoch");
        assert_eq!(epoch.unix_secs(), 0);
    }

    #[test]
    fn civil_conversion_is_inverse_over_a_wide_range() {
        for days in (0..2_932_896).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
