//! `decimal` properties → Arrow `Decimal128(38, 9)`, exactly: the number's text is scaled
//! as digits, never through a float, so `93.46` is stored as 93460000000 × 10⁻⁹.

use super::fault::Fault;
use super::json::{Cursor, Token};
use super::values::{PrimitiveDecoder, PrimitiveKind};
use crate::schema::{DECIMAL_PRECISION, DECIMAL_SCALE};
use arrow::array::{ArrayRef, Decimal128Array};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use std::sync::Arc;

/// JSON numbers as exact decimals with [`DECIMAL_SCALE`] fractional digits.
pub struct Decimal;

/// Decodes `decimal` properties.
pub type DecimalDecoder = PrimitiveDecoder<Decimal>;

/// Parses a JSON number's text into an integer scaled by `10^scale`, exactly.
///
/// Errors when the value has more significant fractional digits than `scale` (rounding
/// would change it) or more than [`DECIMAL_PRECISION`] digits in all.
pub fn parse_decimal(text: &str, scale: u32) -> Result<i128, String> {
    let b = text.as_bytes();
    let (negative, rest) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    // Split mantissa digits and exponent; the grammar was checked by the JSON cursor, but
    // this function is public, so it checks again instead of assuming.
    let mut mantissa: i128 = 0;
    let mut significant = 0u32; // digits in `mantissa` after leading zeros
    let mut frac_digits: i64 = 0;
    let mut dropped_nonzero = false; // digits beyond precision that were not zero
    let mut dropped: i64 = 0; // trailing digits not accumulated (only zeros allowed to matter)
    let mut seen_dot = false;
    let mut i = 0;
    let mut any_digit = false;
    while i < rest.len() {
        let c = rest[i];
        match c {
            b'0'..=b'9' => {
                any_digit = true;
                let d = i128::from(c - b'0');
                if seen_dot {
                    frac_digits += 1;
                }
                if significant == 0 && d == 0 {
                    // Leading zero: no effect on the value.
                } else if significant < u32::from(DECIMAL_PRECISION) {
                    mantissa = mantissa * 10 + d;
                    significant += 1;
                } else {
                    // Too many digits to hold; remember whether they matter.
                    dropped += 1;
                    dropped_nonzero |= d != 0;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            b'e' | b'E' => break,
            _ => return Err(format!("{text} is not a number")),
        }
        i += 1;
    }
    if !any_digit {
        return Err(format!("{text} is not a number"));
    }
    let mut exponent: i64 = 0;
    if i < rest.len() {
        let exp = &rest[i + 1..];
        let (exp_neg, digits) = match exp.first() {
            Some(b'-') => (true, &exp[1..]),
            Some(b'+') => (false, &exp[1..]),
            _ => (false, exp),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(format!("{text} is not a number"));
        }
        for &d in digits {
            // Saturate, far above any count of digits a line can hold (the shift below adds
            // them to it): an exponent that large puts the value out of range whatever the
            // digits, so it is reported as such, never overflowed nor mis-scaled.
            exponent = (exponent * 10 + i64::from(d - b'0')).min(EXPONENT_CAP);
        }
        if exp_neg {
            exponent = -exponent;
        }
    }
    // value = mantissa × 10^(dropped + exponent − frac_digits); we want value × 10^scale.
    let shift = dropped + exponent - frac_digits + i64::from(scale);
    if mantissa == 0 {
        return Ok(0);
    }
    let too_precise = || format!("{text} has more than {scale} fractional digits");
    // With `scale` digits after the point, the rest of the precision is before it.
    let too_large = || {
        format!(
            "{text} has more than {} digits before the decimal point (decimal({DECIMAL_PRECISION},{scale}) holds no more)",
            i64::from(DECIMAL_PRECISION) - i64::from(scale)
        )
    };
    let value = if shift >= 0 {
        if dropped_nonzero || i64::from(significant) + shift > i64::from(DECIMAL_PRECISION) {
            // More digits than the precision: too large if those before the point are more
            // than it leaves them, else too precise after it.
            let before_point = i64::from(significant) + dropped - frac_digits + exponent;
            return Err(
                if before_point > i64::from(DECIMAL_PRECISION) - i64::from(scale) {
                    too_large()
                } else {
                    too_precise()
                },
            );
        }
        mantissa * 10i128.pow(shift as u32)
    } else {
        if dropped_nonzero {
            return Err(too_precise());
        }
        let down = -shift;
        if down > i64::from(significant) {
            return Err(too_precise());
        }
        let divisor = 10i128.pow(down as u32);
        if mantissa % divisor != 0 {
            return Err(too_precise());
        }
        let v = mantissa / divisor;
        if i64::from(significant) - down > i64::from(DECIMAL_PRECISION) {
            return Err(too_large());
        }
        v
    };
    Ok(if negative { -value } else { value })
}

/// Largest exponent magnitude read as it is; beyond it, exponents saturate. Larger than
/// the digits of any line (2⁵⁰ bytes), small enough that adding such counts cannot overflow.
const EXPONENT_CAP: i64 = 1 << 50;

/// The common case in one pass: `-?digits(.digits)?` with at most 18 digits and at most
/// [`DECIMAL_SCALE`] of them fractional, accumulated in a `u64`. Returns the scaled value
/// and the text's length, or `None` for anything else (exponents, long or very precise
/// numbers), which [`parse_decimal`] then handles exactly.
#[inline]
fn parse_simple_decimal(b: &[u8]) -> Option<(i128, usize)> {
    let negative = b.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let mut v: u64 = 0;
    let mut digits = 0;
    let mut frac: Option<usize> = None;
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => {
                v = v * 10 + u64::from(c - b'0');
                digits += 1;
                if let Some(f) = frac.as_mut() {
                    *f += 1;
                }
            }
            b'.' if frac.is_none() => frac = Some(0),
            b'e' | b'E' => return None,
            _ => break,
        }
        if digits > 18 {
            return None;
        }
        i += 1;
    }
    let frac = frac.unwrap_or(0);
    if digits == 0 || frac > DECIMAL_SCALE as usize {
        return None;
    }
    let scaled = i128::from(v) * 10i128.pow(DECIMAL_SCALE as u32 - frac as u32);
    Some((if negative { -scaled } else { scaled }, i))
}

/// `10^i` for every scaling a plain number may need.
const POW10: [u64; DECIMAL_SCALE as usize + 1] = {
    let mut t = [1u64; DECIMAL_SCALE as usize + 1];
    let mut i = 1;
    while i < t.len() {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

impl PrimitiveKind for Decimal {
    type Native = i128;
    const TOKEN: Token = Token::Number;
    const EXPECTED: &'static str = "a decimal";

    #[inline]
    fn parse(cur: &mut Cursor<'_>) -> Result<i128, Fault> {
        let at = cur.offset();
        if let Some(n) = cur.simple_number() {
            if let Some(&scale) = POW10.get((DECIMAL_SCALE as u32).wrapping_sub(n.frac) as usize) {
                // At most 18 digits times at most 10^9: far inside the 38-digit range.
                let v = i128::from(n.digits) * i128::from(scale);
                return Ok(if n.negative { -v } else { v });
            }
            // More fractional digits than the scale: only the exact parser may say whether
            // they are all zeros, so read the number again from its start.
            cur.rewind(at);
        }
        let text = cur.raw_number()?;
        if let Some((v, len)) = parse_simple_decimal(text.as_bytes()) {
            if len == text.len() {
                return Ok(v);
            }
        }
        parse_decimal(text, DECIMAL_SCALE as u32).map_err(|e| Fault::invalid(at, Self::EXPECTED, e))
    }

    fn array(values: ScalarBuffer<i128>, nulls: Option<NullBuffer>) -> ArrayRef {
        let array = Decimal128Array::new(values, nulls)
            .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)
            .expect("the schema's precision and scale are valid");
        Arc::new(array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<i128, String> {
        parse_decimal(s, 9)
    }

    #[test]
    fn the_limit_named_is_the_digits_before_the_point() {
        let most = "9".repeat(29);
        assert_eq!(d(&most), Ok(most.parse::<i128>().unwrap() * 1_000_000_000));
        assert!(d(&format!("{most}.123456789")).is_ok());
        // 29 digits before the point and a tenth significant one after it: too precise.
        for over in [
            format!("{most}.1234567891"),
            format!("{most}1234567891e-10"),
        ] {
            let e = d(&over).unwrap_err();
            assert!(e.contains("more than 9 fractional digits"), "{over}: {e}");
        }
        for over in [format!("1{most}"), format!("-1{most}.5"), "1e29".to_owned()] {
            let e = d(&over).unwrap_err();
            assert!(
                e.contains("has more than 29 digits before the decimal point (decimal(38,9)"),
                "{e}"
            );
        }
    }

    #[test]
    fn simple_path_agrees_with_the_general_parser() {
        for s in [
            "0",
            "-0",
            "1",
            "93.46",
            "-5.5",
            "123456789.123456789",
            "999999999999999999",
            "0.000000001",
            "00.5",
        ] {
            let (v, len) = parse_simple_decimal(s.as_bytes()).unwrap();
            assert_eq!(len, s.len());
            assert_eq!(Ok(v), d(s), "{s}");
        }
        for s in ["1e2", "1.0000000001", "1234567890123456789"] {
            assert!(
                parse_simple_decimal(s.as_bytes()).is_none_or(|(_, l)| l < s.len()),
                "{s}"
            );
        }
    }

    /// The reference reading of a number: its checked text, then the exact parser.
    fn reference(s: &str, exact: impl Fn(&str) -> Option<i128>) -> (Option<i128>, usize) {
        let mut c = Cursor::new(s);
        match c.raw_number().ok().and_then(&exact) {
            Some(v) => (Some(v), c.offset()),
            None => (None, usize::MAX),
        }
    }

    #[test]
    fn plain_number_fast_path_agrees_with_the_exact_parsers() {
        use crate::decode::integer::Integer;
        let numbers = [
            "0",
            "-0",
            "7",
            "-7",
            "01",
            "-01",
            "0.5",
            "00.5",
            "1.",
            "-",
            "-.5",
            ".5",
            "1.2.3",
            "93.46",
            "100",
            "-648.94",
            "0.000000001",
            "0.0000000010",
            "0.0000000011",
            "1.0",
            "1.50",
            "2e3",
            "2E-3",
            "1.5e1",
            "123456789012345678",
            "1234567890123456789",
            "99999999999999999.9",
            "9999999999999999.99",
            "999999999.999999999",
            "9999999999.999999999",
            "-9223372036854775808",
            "9223372036854775807",
            "1e",
        ];
        for n in numbers {
            for tail in ["", ",", "}", "]", " ", "x", "e", ".", "0"] {
                let s = format!("{n}{tail}");
                let want = reference(&s, |t| parse_decimal(t, DECIMAL_SCALE as u32).ok());
                let mut c = Cursor::new(&s);
                let got = match Decimal::parse(&mut c) {
                    Ok(v) => (Some(v), c.offset()),
                    Err(_) => (None, usize::MAX),
                };
                assert_eq!(got, want, "decimal {s:?}");

                let want = reference(&s, |t| super::super::parse_integer(t).ok().map(i128::from));
                let mut c = Cursor::new(&s);
                let got = match Integer::parse(&mut c) {
                    Ok(v) => (Some(i128::from(v)), c.offset()),
                    Err(_) => (None, usize::MAX),
                };
                assert_eq!(got, want, "integer {s:?}");
            }
        }
    }

    #[test]
    fn exact_values() {
        assert_eq!(d("93.46"), Ok(93_460_000_000));
        assert_eq!(d("100"), Ok(100_000_000_000));
        assert_eq!(d("-5.5"), Ok(-5_500_000_000));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("-0.0"), Ok(0));
        assert_eq!(d("0.000000001"), Ok(1));
        assert_eq!(d("1.2300000000000"), Ok(1_230_000_000));
        assert_eq!(d("1e2"), Ok(100_000_000_000));
        assert_eq!(d("1.5E-3"), Ok(1_500_000));
        assert_eq!(d("12345e-9"), Ok(12345));
        assert_eq!(d("0.1"), Ok(100_000_000));
        // 29 integer digits + 9 fractional = 38: the widest value that fits.
        let max = "9".repeat(29) + "." + &"9".repeat(9);
        assert_eq!(d(&max), Ok(10i128.pow(38) - 1));
        assert_eq!(d(&format!("0000{}", "1")), Ok(1_000_000_000));
        // Long digit strings with exponents that cancel them: exact, never mis-scaled
        // (the exponent used to saturate at a million).
        let zeros = "0".repeat(1_000_001);
        assert_eq!(d(&format!("1{zeros}e-1000001")), Ok(1_000_000_000));
        assert_eq!(d(&format!("1{zeros}e-1000000")), Ok(10_000_000_000));
        assert_eq!(d(&format!("0.{zeros}1e1000001")), Ok(100_000_000));
        assert_eq!(d(&format!("0.{zeros}1e1000002")), Ok(1_000_000_000));
    }

    #[test]
    fn values_that_cannot_be_held_exactly_are_errors() {
        assert!(d("0.0000000001").unwrap_err().contains("fractional digits"));
        assert!(d("1e-10").is_err());
        assert!(d(&("1".to_owned() + &"0".repeat(29)))
            .unwrap_err()
            .contains("digits"));
        assert!(d("1e30").is_err());
        assert!(d("1e999999999999").is_err());
        assert!(d("1e-999999999999999999999999").is_err());
        assert!(d("abc").is_err());
        assert!(d("").is_err());
    }

    #[test]
    fn agrees_with_float_free_string_reference() {
        // Every value with ≤ 9 fractional digits built from a digit string round-trips.
        for (int, frac) in [("123456789", "123456789"), ("0", "05"), ("42", "")] {
            let text = if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{int}.{frac}")
            };
            let expected: i128 = format!("{int}{frac:0<9}").parse().unwrap();
            assert_eq!(d(&text), Ok(expected), "{text}");
        }
    }
}
