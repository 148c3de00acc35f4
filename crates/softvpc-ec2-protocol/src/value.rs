//! The typed tree that requests decode into and responses encode from: structures keyed by the
//! model's member names (`VpcId`, `TagSpecifications`), lists, and typed scalars. Also
//! [`Timestamp`], an ISO 8601 instant without a date-time dependency.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A decoded request or a response to encode.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A structure: member name -> value; absent members are simply not there.
    Struct(BTreeMap<String, Value>),
    /// `list` shapes, in order.
    List(Vec<Value>),
    /// `string` shapes (enums included) and `blob`s (kept as their base64 text).
    String(String),
    /// `integer` and `long` shapes.
    Integer(i64),
    /// `double` and `float` shapes.
    Double(f64),
    /// `boolean` shapes.
    Boolean(bool),
    /// `timestamp` shapes.
    Timestamp(Timestamp),
}

impl Value {
    /// What kind of value this is, as error messages say it (`a list`, `a string`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Struct(_) => "a structure",
            Value::List(_) => "a list",
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Double(_) => "a number",
            Value::Boolean(_) => "a boolean",
            Value::Timestamp(_) => "a timestamp",
        }
    }

    /// An empty structure.
    pub fn new_struct() -> Value {
        Value::Struct(BTreeMap::new())
    }

    /// A structure from `(member name, value)` pairs.
    pub fn structure<K: Into<String>>(members: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Struct(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Adds or replaces member `name` of a structure (no effect on other values); returns self
    /// for chaining.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Value {
        if let Value::Struct(m) = &mut self {
            m.insert(name.into(), value.into());
        }
        self
    }

    /// Member `name` of a structure.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(m) => m.get(name),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number of an integer value.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// A number (integers too) as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// A timestamp value.
    pub fn as_timestamp(&self) -> Option<Timestamp> {
        match self {
            Value::Timestamp(t) => Some(*t),
            _ => None,
        }
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The members of a structure.
    pub fn as_struct(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Struct(m) => Some(m),
            _ => None,
        }
    }

    /// Member `name` as text.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// Member `name` as a boolean.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    /// Member `name` as an integer.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }

    /// Member `name` as a list (empty when absent).
    pub fn get_list(&self, name: &str) -> &[Value] {
        self.get(name).and_then(Value::as_list).unwrap_or(&[])
    }

    /// Member `name` as a list of strings (non-strings skipped; empty when absent).
    pub fn get_strings(&self, name: &str) -> Vec<&str> {
        self.get_list(name)
            .iter()
            .filter_map(Value::as_str)
            .collect()
    }

    /// The JSON form: structures as objects, timestamps as ISO 8601 text (what the botocore
    /// fixtures and the parse checker use).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Struct(m) => {
                J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::String(s) => J::String(s.clone()),
            Value::Integer(i) => J::from(*i),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(J::Number)
                .unwrap_or_else(|| J::String(d.to_string())),
            Value::Boolean(b) => J::Bool(*b),
            Value::Timestamp(t) => J::String(t.to_iso8601()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Integer(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Integer(i.into())
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Integer(i.into())
    }
}
impl From<f64> for Value {
    fn from(d: f64) -> Value {
        Value::Double(d)
    }
}
impl From<Timestamp> for Value {
    fn from(t: Timestamp) -> Value {
        Value::Timestamp(t)
    }
}
impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Value {
        Value::List(l)
    }
}

/// Untyped JSON into a tree: objects become structures, nulls are dropped (in objects and
/// arrays; a bare null becomes the empty string), numbers integers when
/// they are whole, strings strings. The encoder writes a string given for a timestamp member as
/// is, so `serde_json::json!` trees can be encoded directly.
impl From<&serde_json::Value> for Value {
    fn from(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::String(String::new()),
            J::Bool(b) => Value::Boolean(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(s.clone()),
            J::Array(a) => {
                Value::List(a.iter().filter(|v| !v.is_null()).map(Value::from).collect())
            }
            J::Object(o) => Value::Struct(
                o.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), Value::from(v)))
                    .collect(),
            ),
        }
    }
}

/// An instant, UTC, to the nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

/// Days since 1970-01-01 of a calendar date; `None` if there is no such date.
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    Some(i64::from(
        date.to_julian_day() - time::OffsetDateTime::UNIX_EPOCH.date().to_julian_day(),
    ))
}

/// The calendar date of a day count since 1970-01-01, clamped to the `time` crate's range
/// (years -9999..=9999).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let julian = i64::from(time::OffsetDateTime::UNIX_EPOCH.date().to_julian_day()) + days;
    let julian = julian.clamp(
        i64::from(time::Date::MIN.to_julian_day()),
        i64::from(time::Date::MAX.to_julian_day()),
    ) as i32;
    let date =
        time::Date::from_julian_day(julian).unwrap_or(time::OffsetDateTime::UNIX_EPOCH.date());
    (
        i64::from(date.year()),
        u32::from(u8::from(date.month())),
        u32::from(date.day()),
    )
}

impl Timestamp {
    /// The instant `secs` seconds after the epoch.
    pub fn from_unix(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 0 }
    }

    /// Now, from the system clock.
    pub fn now() -> Timestamp {
        Self::from_system_time(SystemTime::now())
    }

    /// `t` as a timestamp (instants before 1970 count back from it).
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d: Duration = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Timestamp { secs, nanos }
            }
        }
    }

    /// `2016-11-15T20:30:00.000Z`, the form EC2 responses use (milliseconds, always).
    pub fn to_iso8601(&self) -> String {
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60,
            self.nanos / 1_000_000
        )
    }

    /// Parses ISO 8601 as clients send it: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM)`
    /// (botocore: `2016-11-15T20:30:00Z` or with microseconds), or a date alone (midnight UTC).
    pub fn parse_iso8601(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = b.get(from..from + len)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        let y = num(0, 4)?;
        if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        let mo = u32::try_from(num(5, 2)?).ok()?;
        let d = u32::try_from(num(8, 2)?).ok()?;
        let days = days_from_civil(y, mo, d)?;
        if b.len() == 10 {
            return Some(Timestamp::from_unix(days * 86_400));
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
            return None;
        }
        let h = num(11, 2)?;
        let mi = num(14, 2)?;
        let (sec, mut i) = if b.get(16) == Some(&b':') {
            (num(17, 2)?, 19)
        } else {
            (0, 16)
        };
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut nanos: u32 = 0;
        if matches!(b.get(i), Some(b'.' | b',')) {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                if i - start < 9 {
                    nanos = nanos * 10 + u32::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start).min(9)..9 {
                nanos *= 10;
            }
        }
        let offset = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) => {
                let oh = num(i + 1, 2)?;
                let (om, end) = if b.get(i + 3) == Some(&b':') {
                    (num(i + 4, 2)?, i + 6)
                } else {
                    (num(i + 3, 2)?, i + 5)
                };
                if end != b.len() || oh > 23 || om > 59 {
                    return None;
                }
                let o = oh * 3600 + om * 60;
                if *sign == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return None,
        };
        Some(Timestamp {
            secs: days * 86_400 + h * 3600 + mi * 60 + sec - offset,
            nanos,
        })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso8601())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_round_trip_and_forms() {
        let t = Timestamp::parse_iso8601("2016-11-15T20:30:05Z").unwrap();
        assert_eq!(t.secs, 1_479_241_805);
        assert_eq!(t.to_iso8601(), "2016-11-15T20:30:05.000Z");
        let m = Timestamp::parse_iso8601("2016-11-15T20:30:05.123456Z").unwrap();
        assert_eq!((m.secs, m.nanos), (1_479_241_805, 123_456_000));
        assert_eq!(m.to_iso8601(), "2016-11-15T20:30:05.123Z");
        let o = Timestamp::parse_iso8601("2016-11-15T22:30:05+02:00").unwrap();
        assert_eq!(o.secs, t.secs);
        let d = Timestamp::parse_iso8601("1969-12-31").unwrap();
        assert_eq!(d.secs, -86_400);
        assert_eq!(d.to_iso8601(), "1969-12-31T00:00:00.000Z");
        assert_eq!(
            Timestamp::parse_iso8601("2024-02-29T00:00:00Z")
                .unwrap()
                .to_iso8601(),
            "2024-02-29T00:00:00.000Z"
        );
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2016-13-01T00:00:00Z",
            "2016-11-15T24:00:00Z",
            "2016-11-15T20:30:05",
            "2016-11-15T20:30:05Zjunk",
            "yesterday",
            "2016-11-15T20:30:05.Z",
        ] {
            assert_eq!(Timestamp::parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_days_agree_over_centuries() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), Some(z));
        }
    }
}
