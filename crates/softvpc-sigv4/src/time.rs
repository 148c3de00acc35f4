//! The two timestamp formats SigV4 meets, parsed strictly.
//!
//! `X-Amz-Date` / the presigned `X-Amz-Date` parameter use ISO 8601 basic format
//! (`20150830T123600Z`); the `Date` header fallback uses the HTTP IMF-fixdate format
//! (`Sun, 30 Aug 2015 12:36:00 GMT`). Both are converted to seconds since the Unix epoch with the
//! proleptic Gregorian calendar of the `time` crate, which is all the verifier needs: a skew
//! comparison and the `YYYYMMDD` day of the credential scope. The two parsers are our own because
//! SigV4 wants exactly these fixed shapes and nothing looser (a general ISO 8601 or HTTP-date
//! parser would accept forms AWS refuses).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A validated UTC timestamp with one-second resolution (all SigV4 carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the Unix epoch; requests from before 1970 are refused at parse time.
    secs: u64,
}

impl Timestamp {
    fn from_parts(year: u32, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<Self> {
        let small = |v: u32| u8::try_from(v).ok();
        if !(1970..=9999).contains(&year) {
            return None;
        }
        let month = time::Month::try_from(small(month)?).ok()?;
        let date = time::Date::from_calendar_date(year as i32, month, small(day)?).ok()?;
        let at = date.with_hms(small(h)?, small(m)?, small(s)?).ok()?;
        Some(Self {
            secs: u64::try_from(at.assume_utc().unix_timestamp()).ok()?,
        })
    }

    /// The UTC date and time of this instant (always in range: years 1970-9999).
    fn utc(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(self.secs as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
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
        Self::from_parts(year, month, day, h, m, sec)
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
        Self::from_parts(year, month, day, h, m, sec)
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
        let t = self.utc();
        format!(
            "{}T{:02}{:02}{:02}Z",
            self.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// `YYYYMMDD`, the day the credential scope must name.
    pub fn day(self) -> String {
        let t = self.utc();
        format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
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
    fn day_boundaries_round_trip_over_a_wide_range() {
        for days in (0..2_932_896u64).step_by(997) {
            let t = Timestamp {
                secs: days * 86_400 + 86_399,
            };
            assert_eq!(Timestamp::parse_amz(&t.amz()), Some(t));
        }
    }
}
