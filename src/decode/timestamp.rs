//! `timestamp` properties → Arrow `Timestamp(Microsecond, "UTC")` and `date` properties →
//! `Date32`, parsed from the string's bytes at fixed positions (no allocation, no
//! intermediate `String`).

use super::fault::Fault;
use super::json::{Cursor, Token};
use super::values::{PrimitiveDecoder, PrimitiveKind};
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

/// The value of the two ASCII digits at `b[at..at + 2]`, if both are digits.
#[inline(always)]
fn two_digits(b: &[u8; 19], at: usize) -> Option<u32> {
    let hi = u32::from(b[at].wrapping_sub(b'0'));
    let lo = u32::from(b[at + 1].wrapping_sub(b'0'));
    (hi < 10 && lo < 10).then_some(hi * 10 + lo)
}

/// Days since the epoch of a valid date in the years 1 to 9999, in unsigned arithmetic (the
/// general [`crate::calendar::days_from_civil`] handles any year; this range needs no floor
/// division).
#[inline(always)]
fn days_from_civil_ad(year: u32, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i64::from(era * 146_097 + doe) - 719_468
}

/// Parses `YYYY-MM-DD` at the start of `b` (padded to a date-time's length by the caller
/// when shorter) into days since the epoch.
#[inline(always)]
fn parse_ymd(b: &[u8; 19]) -> Option<i64> {
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = two_digits(b, 0)? * 100 + two_digits(b, 2)?;
    let m = two_digits(b, 5)?;
    let d = two_digits(b, 8)?;
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(i64::from(y), m) {
        return None;
    }
    Some(days_from_civil_ad(y, m, d))
}

/// Why a date or date-time was refused.
enum BadTime {
    /// Not the ISO-8601 form.
    Form,
    /// Non-zero digits finer than a microsecond.
    TooPrecise,
    /// A valid date-time whose offset takes the instant out of the years 1 to 9999 UTC,
    /// which Parquet readers (Spark, BigQuery) cannot hold.
    OutOfRange,
}

/// The first and last second of the years 1 to 9999, UTC, in seconds since the epoch.
const FIRST_SECOND: i64 = -62_135_596_800;
const LAST_SECOND: i64 = 253_402_300_799;

/// [`parse_timestamp_micros`] on bytes, with the reason of a refusal left to the caller to
/// word (the decoder only formats a message for rejected values).
fn timestamp_micros(b: &[u8]) -> Result<i64, BadTime> {
    let head: &[u8; 19] = b
        .get(..19)
        .and_then(|h| h.try_into().ok())
        .ok_or(BadTime::Form)?;
    let days = parse_ymd(head).ok_or(BadTime::Form)?;
    if !matches!(head[10], b'T' | b't' | b' ') || head[13] != b':' || head[16] != b':' {
        return Err(BadTime::Form);
    }
    let h = two_digits(head, 11).ok_or(BadTime::Form)?;
    let mi = two_digits(head, 14).ok_or(BadTime::Form)?;
    let sec = two_digits(head, 17).ok_or(BadTime::Form)?;
    if h > 23 || mi > 59 || sec > 59 {
        return Err(BadTime::Form);
    }
    let mut i = 19;
    let mut micros: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            let d = i64::from(c - b'0');
            let n = i - start;
            if n < 6 {
                micros += d * 10i64.pow(5 - n as u32);
            } else if d != 0 {
                return Err(BadTime::TooPrecise);
            }
            i += 1;
        }
        if i == start {
            return Err(BadTime::Form);
        }
    }
    let offset_secs: i64 = match b.get(i..).unwrap_or_default() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = i64::from(two_digits_of(*oh1, *oh2).ok_or(BadTime::Form)?);
            let om = i64::from(two_digits_of(*om1, *om2).ok_or(BadTime::Form)?);
            if oh > 23 || om > 59 {
                return Err(BadTime::Form);
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
        _ => return Err(BadTime::Form),
    };
    let secs =
        days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec) - offset_secs;
    if !(FIRST_SECOND..=LAST_SECOND).contains(&secs) {
        return Err(BadTime::OutOfRange);
    }
    Ok(secs * 1_000_000 + micros)
}

/// Per byte of a word: the high nibble expected (`0x3_` for a digit) or the whole byte (a
/// separator), under [`shape_mask`].
const fn shape(pattern: &[u8; 8]) -> (u64, u64, u64) {
    let mut mask = 0u64;
    let mut want = 0u64;
    let mut digits = 0u64;
    let mut i = 0;
    while i < 8 {
        let (m, w, d) = if pattern[i] == b'9' {
            (0xf0, 0x30, 0x0f)
        } else {
            (0xff, pattern[i] as u64, 0)
        };
        mask |= m << (8 * i);
        want |= w << (8 * i);
        digits |= d << (8 * i);
        i += 1;
    }
    (mask, want, digits)
}

/// Whether the eight bytes of `w` follow `shape` (`9` for a digit, any other byte for
/// itself), checking all eight at once: a byte is a digit when its high nibble is 3 and
/// adding 6 to its low nibble does not carry.
#[inline(always)]
fn fits(w: u64, (mask, want, digits): (u64, u64, u64)) -> bool {
    let carries = ((w & digits) + (digits & 0x0606_0606_0606_0606)) & (digits << 4);
    (w & mask) == want && carries == 0
}

const DATE_SHAPE: (u64, u64, u64) = shape(b"9999-99-");
const MIDDLE_SHAPE: (u64, u64, u64) = shape(b"99T99:99");
const TIME_SHAPE: (u64, u64, u64) = shape(b"99:99:99");

/// Days in each month of a common year (index 0 unused).
const MONTH_DAYS: [u8; 13] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// The common form of an exported instant, a JSON string `"YYYY-MM-DDThh:mm:ssZ"` with an
/// optional fraction of up to 9 digits before the `Z`, recognised in place at the start
/// of `b` (the opening quote): its microseconds since the epoch and its length in bytes
/// with the quotes. `None` for anything else, including invalid dates and sub-microsecond
/// digits, which [`timestamp_micros`] then reads and words; whatever this accepts,
/// `timestamp_micros` accepts with the same value (tested), so the fast path changes
/// speed only. The shape has no byte that needs escaping or UTF-8 validation, so the
/// string needs no scan of its own.
#[inline(always)]
fn quoted_utc_micros(b: &[u8]) -> Option<(i64, usize)> {
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    // The 19 bytes of date and time after the quote, as three (overlapping) words.
    let (date, middle, time) = (word(1)?, word(9)?, word(12)?);
    if b[0] != b'"' || !fits(date, DATE_SHAPE) || !fits(middle, MIDDLE_SHAPE) {
        return None;
    }
    if !fits(time, TIME_SHAPE) {
        return None;
    }
    // Two-digit values, all pairs of a word at once: each byte plus ten times the one
    // before it lands in the pair's first byte (digits only where the shape has them).
    let pairs = |w: u64, (_, _, digits): (u64, u64, u64)| {
        let x = w & digits;
        x.wrapping_mul(10).wrapping_add(x >> 8)
    };
    let byte = |w: u64, at: u32| ((w >> (8 * at)) & 0xff) as u32;
    let (date, middle, time) = (
        pairs(date, DATE_SHAPE),
        pairs(middle, MIDDLE_SHAPE),
        pairs(time, TIME_SHAPE),
    );
    let year = byte(date, 0) * 100 + byte(date, 2);
    let (month, day) = (byte(date, 5), byte(middle, 0));
    let (hour, minute, second) = (byte(middle, 3), byte(middle, 6), byte(time, 6));
    let month_days = match MONTH_DAYS.get(month as usize) {
        Some(28) if is_leap(i64::from(year)) => 29,
        Some(&n) => u32::from(n),
        None => 0,
    };
    if year == 0 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 20;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut scale = 100_000i64;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            if scale > 0 {
                micros += i64::from(c - b'0') * scale;
                scale /= 10;
            } else if c != b'0' {
                return None;
            }
            i += 1;
        }
        if i == start || i - start > 9 {
            return None;
        }
    }
    if b.get(i) != Some(&b'Z') || b.get(i + 1) != Some(&b'"') {
        return None;
    }
    let secs = days_from_civil_ad(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second);
    Some((secs * 1_000_000 + micros, i + 2))
}

fn two_digits_of(hi: u8, lo: u8) -> Option<u32> {
    let (hi, lo) = (hi.wrapping_sub(b'0'), lo.wrapping_sub(b'0'));
    (hi < 10 && lo < 10).then_some(u32::from(hi) * 10 + u32::from(lo))
}

fn timestamp_error(s: &str, bad: BadTime) -> String {
    match bad {
        BadTime::Form if lacks_offset(s) => {
            format!("{s:?} has no UTC offset (Z or ±hh:mm), so the instant it names is unknown")
        }
        BadTime::Form => format!("{s:?} is not an ISO-8601 date-time"),
        BadTime::TooPrecise => format!("{s:?} is more precise than a microsecond"),
        BadTime::OutOfRange => format!("{s:?} is outside the years 1 to 9999 once in UTC"),
    }
}

/// Whether `s` reads as a date-time once `Z` is added: a local time without its offset.
fn lacks_offset(s: &str) -> bool {
    s.len() >= 19 && timestamp_micros(format!("{s}Z").as_bytes()).is_ok()
}

/// Parses an ISO-8601 date-time into microseconds since the epoch, UTC.
///
/// Accepts `YYYY-MM-DDThh:mm:ss`, an optional fraction, and `Z` or a `±hh:mm` offset
/// (converted to UTC, so the instant is exact). Digits finer than a microsecond must be
/// zero: storing them would need rounding, which would change the value. The instant, in
/// UTC, must fall in the years 1 to 9999.
pub fn parse_timestamp_micros(s: &str) -> Result<i64, String> {
    timestamp_micros(s.as_bytes()).map_err(|bad| timestamp_error(s, bad))
}

/// [`parse_date_days`] on bytes; the error is `true` for a date-time other than midnight UTC
/// and `false` for anything else that is not a date.
fn date_days(b: &[u8]) -> Result<i32, bool> {
    // A date alone is padded to a date-time's length so that one fixed-size reader serves
    // both; the padding is never looked at for a date.
    let mut head = [b'0'; 19];
    let n = b.len().min(19);
    head[..n].copy_from_slice(&b[..n]);
    if b.len() < 10 {
        return Err(false);
    }
    let days = parse_ymd(&head).ok_or(false)?;
    if b.len() > 10 {
        let micros = timestamp_micros(b).map_err(|_| false)?;
        if micros.rem_euclid(86_400_000_000) != 0 {
            return Err(true);
        }
        return i32::try_from(micros.div_euclid(86_400_000_000)).map_err(|_| false);
    }
    i32::try_from(days).map_err(|_| false)
}

fn date_error(s: &str, is_date_time: bool) -> String {
    if is_date_time {
        format!("{s:?} is a date-time, not a date")
    } else {
        format!("{s:?} is not an ISO-8601 date")
    }
}

/// Parses an ISO-8601 date (`YYYY-MM-DD`) into days since the epoch. A date-time at
/// midnight UTC (`2023-03-31T00:00:00Z`) is accepted as its date; any other time is an
/// error, since dropping it would change the value.
pub fn parse_date_days(s: &str) -> Result<i32, String> {
    date_days(s.as_bytes()).map_err(|dt| date_error(s, dt))
}

/// ISO-8601 date-time strings, as microseconds since the epoch in UTC.
pub struct Timestamp;

/// Decodes `timestamp` properties.
pub type TimestampDecoder = PrimitiveDecoder<Timestamp>;

impl PrimitiveKind for Timestamp {
    type Native = i64;
    const TOKEN: Token = Token::String;
    const EXPECTED: &'static str = "a date-time";

    #[inline]
    fn parse(cur: &mut Cursor<'_>) -> Result<i64, Fault> {
        if let Some((v, len)) = quoted_utc_micros(cur.rest()) {
            cur.advance(len);
            return Ok(v);
        }
        Self::parse_general(cur)
    }

    fn array(values: ScalarBuffer<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::new(values, nulls).with_timezone("UTC"))
    }
}

impl Timestamp {
    /// Any other spelling than the fast path's, and the errors; out of line.
    #[inline(never)]
    fn parse_general(cur: &mut Cursor<'_>) -> Result<i64, Fault> {
        let raw = cur.raw_string()?;
        if !raw.has_escapes {
            if let Ok(v) = timestamp_micros(raw.bytes) {
                return Ok(v);
            }
        }
        parse_timestamp_micros(&raw.to_cow()?)
            .map_err(|e| Fault::invalid(raw.offset, Self::EXPECTED, e))
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

    #[inline]
    fn parse(cur: &mut Cursor<'_>) -> Result<i32, Fault> {
        let raw = cur.raw_string()?;
        if !raw.has_escapes {
            if let Ok(v) = date_days(raw.bytes) {
                return Ok(v);
            }
        }
        parse_date_days(&raw.to_cow()?).map_err(|e| Fault::invalid(raw.offset, Self::EXPECTED, e))
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
    fn instants_stay_within_the_years_1_to_9999_once_in_utc() {
        assert_eq!(FIRST_SECOND, days_from_civil_ad(1, 1, 1) * 86_400);
        assert_eq!(
            LAST_SECOND,
            days_from_civil_ad(9999, 12, 31) * 86_400 + 86_399
        );
        for s in ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"] {
            let e = parse_timestamp_micros(s).unwrap_err();
            assert!(e.contains("outside the years 1 to 9999"), "{e}");
        }
        for (s, secs) in [
            ("9999-12-31T23:59:59.999999Z", LAST_SECOND),
            ("9999-12-31T23:59:59+01:00", LAST_SECOND - 3600),
            ("0001-01-01T00:00:00Z", FIRST_SECOND),
            ("0001-01-01T00:00:00-01:00", FIRST_SECOND + 3600),
        ] {
            assert_eq!(
                parse_timestamp_micros(s).unwrap().div_euclid(1_000_000),
                secs,
                "{s}"
            );
        }
    }

    #[test]
    fn any_number_of_zero_digits_past_the_microsecond_is_exact() {
        let tenth = parse_timestamp_micros("2022-09-19T12:34:24.1Z").unwrap();
        for s in [
            "2022-09-19T12:34:24.1000000000Z",
            "2022-09-19T12:34:24.100000000000000000000Z",
        ] {
            assert_eq!(parse_timestamp_micros(s), Ok(tenth), "{s}");
        }
        assert!(parse_timestamp_micros("2022-09-19T12:34:24.10000000001Z")
            .unwrap_err()
            .contains("more precise than a microsecond"));
    }

    #[test]
    fn unsigned_day_count_agrees_with_the_calendar() {
        for y in (1..=9999)
            .step_by(7)
            .chain([1, 4, 100, 400, 1600, 1970, 2000, 9999])
        {
            for m in 1..=12 {
                for d in [1, 15, 28, days_in_month(i64::from(y), m)] {
                    assert_eq!(
                        days_from_civil_ad(y, m, d),
                        crate::calendar::days_from_civil(i64::from(y), m, d),
                        "{y}-{m}-{d}"
                    );
                }
            }
        }
    }

    #[test]
    fn error_messages_name_the_reason() {
        assert!(parse_timestamp_micros("2023-03-28T07:28:04.1234567Z")
            .unwrap_err()
            .contains("more precise than a microsecond"));
        assert!(parse_timestamp_micros("2023-03-28T07:28")
            .unwrap_err()
            .contains("is not an ISO-8601 date-time"));
        assert!(parse_timestamp_micros("2024-01-14T02:21:31.5")
            .unwrap_err()
            .contains("has no UTC offset"));
        assert!(parse_date_days("2023-03-31T10:00:00Z")
            .unwrap_err()
            .contains("is a date-time, not a date"));
        assert!(parse_date_days("2023-03")
            .unwrap_err()
            .contains("is not an ISO-8601 date"));
    }

    #[test]
    fn timestamps_with_odd_tails() {
        for s in [
            "2023-03-28T07:28:04+0200",
            "2023-03-28T07:28:04+02:0",
            "2023-03-28T07:28:04+02:00:00",
            "2023-03-28T07:28:04+24:00",
            "2023-03-28T07:28:04+02:60",
            "2023-03-28T07:28:04.Z",
            "2023-03-28X07:28:04Z",
            "0000-01-01T00:00:00Z",
            "2023-03-28T07:28:4Z",
            "2023-03-28T07:28:04ZZ",
        ] {
            assert!(parse_timestamp_micros(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_timestamp_micros("2023-03-28T07:28:04.123456000-01:30"),
            Ok(1_679_988_484_123_456 + 5_400_000_000)
        );
        assert_eq!(
            parse_timestamp_micros("0001-01-01T00:00:00z"),
            Ok(-62_135_596_800_000_000)
        );
        assert_eq!(parse_date_days("2023-03-31 00:00:00+00:00"), Ok(19447));
    }

    /// Whatever the in-place fast path accepts, the general parser accepts with the same
    /// value, and the fast path consumes exactly the quoted string.
    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let mut cases: Vec<String> = Vec::new();
        for date in [
            "2023-03-28",
            "2024-02-29",
            "2023-02-29",
            "2023-02-28",
            "2000-02-29",
            "1900-02-29",
            "0000-01-01",
            "0001-01-01",
            "9999-12-31",
            "2023-00-10",
            "2023-13-10",
            "2023-04-31",
            "2023-04-30",
            "2023-01-00",
            "2023-01-32",
            "2023/01/02",
            "20a3-01-02",
            "2023-0:-02",
        ] {
            for time in [
                "T00:00:00",
                "T23:59:59",
                "T24:00:00",
                "T12:60:00",
                "T12:00:60",
                "t12:00:00",
                " 12:00:00",
                "T1:00:000",
                "T12-00-00",
                "T0/:00:00",
            ] {
                for tail in [
                    "Z",
                    "z",
                    ".5Z",
                    ".123456Z",
                    ".1234567Z",
                    ".1234560Z",
                    ".000000000Z",
                    ".0000000000Z",
                    ".Z",
                    "+02:00",
                    "-01:30",
                    "",
                    "ZZ",
                    ".12a4Z",
                ] {
                    cases.push(format!("{date}{time}{tail}"));
                }
            }
        }
        // Every single-byte change of a valid instant, to reach the digit checks' edges.
        let valid = "2023-07-18T15:25:40.1234567Z";
        for at in 0..valid.len() {
            for b in [b'/', b'0', b'9', b':', b'@', b'T', b'Z', b'.', b'-'] {
                let mut v = valid.as_bytes().to_vec();
                v[at] = b;
                cases.extend(String::from_utf8(v).ok());
            }
        }
        let mut accepted = 0;
        for case in &cases {
            for trailer in ["", ",\"Next\":1}", "}"] {
                let line = format!("\"{case}\"{trailer}");
                if let Some((v, len)) = quoted_utc_micros(line.as_bytes()) {
                    accepted += 1;
                    assert_eq!(parse_timestamp_micros(case), Ok(v), "{case}");
                    assert_eq!(len, case.len() + 2, "{case}");
                }
            }
            // What the general parser accepts in the fast path's shape (a fraction of up to
            // 9 digits), the fast path accepts.
            let fraction = case.get(20..case.len().saturating_sub(1)).unwrap_or("");
            let shape = case.len() >= 20
                && case.as_bytes()[10] == b'T'
                && case.ends_with('Z')
                && fraction.len() <= 9;
            if shape && parse_timestamp_micros(case).is_ok() {
                let line = format!("\"{case}\",\"Next\":1}}");
                assert!(quoted_utc_micros(line.as_bytes()).is_some(), "{case}");
            }
        }
        assert!(accepted > 100, "only {accepted} cases took the fast path");
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
