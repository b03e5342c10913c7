//! `timestamp` properties → Arrow `Timestamp(Microsecond, "UTC")` and `date` properties →
//! `Date32`, parsed from the string's bytes at fixed positions (no allocation, no
//! intermediate `String`).

use super::fault::Fault;
use super::json::{Cursor, Token};
use super::values::{PrimitiveDecoder, PrimitiveKind};
use crate::calendar::days_from_civil;
use arrow::array::{ArrayRef, Date32Array, TimestampMicrosecondArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use std::sync::Arc;

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

#[inline]
fn digits(b: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(range)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses `YYYY-MM-DD` at the start of `b` into days since the epoch.
fn parse_ymd(b: &[u8]) -> Option<i64> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = i64::from(digits(b, 0..4)?);
    let m = digits(b, 5..7)?;
    let d = digits(b, 8..10)?;
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Parses an ISO-8601 date-time into microseconds since the epoch, UTC.
///
/// Accepts `YYYY-MM-DDThh:mm:ss`, an optional fraction of up to 9 digits, and `Z` or a
/// `±hh:mm` offset (converted to UTC, so the instant is exact). Digits finer than a
/// microsecond must be zero: storing them would need rounding, which would change the value.
pub fn parse_timestamp_micros(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let bad = || format!("{s:?} is not an ISO-8601 date-time");
    let days = parse_ymd(b).ok_or_else(bad)?;
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let h = digits(b, 11..13).ok_or_else(bad)?;
    let mi = digits(b, 14..16).ok_or_else(bad)?;
    let sec = digits(b, 17..19).ok_or_else(bad)?;
    if h > 23 || mi > 59 || sec > 59 {
        return Err(bad());
    }
    let mut i = 19;
    let mut micros: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            let d = i64::from(b[i] - b'0');
            let n = i - start;
            if n < 6 {
                micros += d * 10i64.pow(5 - n as u32);
            } else if d != 0 {
                return Err(format!("{s:?} is more precise than a microsecond"));
            }
            i += 1;
        }
        if i == start || i - start > 9 {
            return Err(bad());
        }
    }
    let offset_secs: i64 = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = i64::from(digits(rest, 0..2).ok_or_else(bad)?);
            let om = i64::from(digits(rest, 3..5).ok_or_else(bad)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        // No offset at all: the API documents UTC everywhere, but an instant without a zone
        // is ambiguous, so it is rejected rather than guessed.
        _ => return Err(bad()),
    };
    let secs =
        days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec) - offset_secs;
    Ok(secs * 1_000_000 + micros)
}

/// Parses an ISO-8601 date (`YYYY-MM-DD`) into days since the epoch. A date-time at
/// midnight UTC (`2023-03-31T00:00:00Z`) is accepted as its date; any other time is an
/// error, since dropping it would change the value.
pub fn parse_date_days(s: &str) -> Result<i32, String> {
    let b = s.as_bytes();
    let bad = || format!("{s:?} is not an ISO-8601 date");
    let days = parse_ymd(b).ok_or_else(bad)?;
    if b.len() > 10 {
        let micros = parse_timestamp_micros(s).map_err(|_| bad())?;
        if micros.rem_euclid(86_400_000_000) != 0 {
            return Err(format!("{s:?} is a date-time, not a date"));
        }
        return i32::try_from(micros.div_euclid(86_400_000_000)).map_err(|_| bad());
    }
    i32::try_from(days).map_err(|_| bad())
}

/// ISO-8601 date-time strings, as microseconds since the epoch in UTC.
pub struct Timestamp;

/// Decodes `timestamp` properties.
pub type TimestampDecoder = PrimitiveDecoder<Timestamp>;

impl PrimitiveKind for Timestamp {
    type Native = i64;
    const TOKEN: Token = Token::String;
    const EXPECTED: &'static str = "a date-time";

    fn parse(cur: &mut Cursor<'_>) -> Result<i64, Fault> {
        let raw = cur.raw_string()?;
        parse_timestamp_micros(&raw.to_cow()?)
            .map_err(|e| Fault::mismatch(raw.offset, Self::EXPECTED, e))
    }

    fn array(values: ScalarBuffer<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::new(values, nulls).with_timezone("UTC"))
    }
}

/// ISO-8601 date strings, as days since the epoch.
pub struct Date;

/// Decodes `date` properties.
pub type DateDecoder = PrimitiveDecoder<Date>;

impl PrimitiveKind for Date {
    type Native = i32;
    const TOKEN: Token = Token::String;
    const EXPECTED: &'static str = "a date";

    fn parse(cur: &mut Cursor<'_>) -> Result<i32, Fault> {
        let raw = cur.raw_string()?;
        parse_date_days(&raw.to_cow()?).map_err(|e| Fault::mismatch(raw.offset, Self::EXPECTED, e))
    }

    fn array(values: ScalarBuffer<i32>, nulls: Option<NullBuffer>) -> ArrayRef {
        Arc::new(Date32Array::new(values, nulls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_micros("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_timestamp_micros("2023-03-28T07:28:04Z"),
            Ok(1_679_988_484_000_000)
        );
        assert_eq!(
            parse_timestamp_micros("2023-03-28T07:28:04+00:00"),
            Ok(1_679_988_484_000_000)
        );
        assert_eq!(
            parse_timestamp_micros("2023-03-28T09:28:04+02:00"),
            Ok(1_679_988_484_000_000)
        );
        assert_eq!(
            parse_timestamp_micros("2023-03-28T07:28:04.5Z"),
            Ok(1_679_988_484_500_000)
        );
        assert_eq!(
            parse_timestamp_micros("2023-03-28T07:28:04.123456Z"),
            Ok(1_679_988_484_123_456)
        );
        assert_eq!(
            parse_timestamp_micros("2023-03-28T07:28:04.1234560Z"),
            Ok(1_679_988_484_123_456)
        );
        assert_eq!(
            parse_timestamp_micros("1969-12-31T23:59:59Z"),
            Ok(-1_000_000)
        );
        assert_eq!(
            parse_timestamp_micros("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000_000)
        );
    }

    #[test]
    fn invalid_timestamps() {
        for s in [
            "2023-03-28",
            "2023-03-28T07:28:04",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-03-28T24:00:00Z",
            "2023-03-28T07:28:04.1234567Z",
            "2023-03-28T07:28:04.Z",
            "abc",
            "",
            "2023-03-28T07:28:04Zjunk",
        ] {
            assert!(parse_timestamp_micros(s).is_err(), "{s}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date_days("1970-01-02"), Ok(1));
        assert_eq!(parse_date_days("1969-12-31"), Ok(-1));
        assert_eq!(parse_date_days("2023-03-31T00:00:00Z"), Ok(19447));
        assert!(parse_date_days("2023-03-31T10:00:00Z").is_err());
        assert!(parse_date_days("2023-04-31").is_err());
        assert!(parse_date_days("20230331").is_err());
    }
}
