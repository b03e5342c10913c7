//! `integer` properties → Arrow `Int64`.

use super::decimal::parse_decimal;
use super::fault::Fault;
use super::json::{Cursor, Token};
use super::values::{PrimitiveDecoder, PrimitiveKind};
use arrow::array::{ArrayRef, Int64Array};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use std::sync::Arc;

/// JSON numbers whose exact value is an integer within `i64`.
pub struct Integer;

/// Decodes `integer` properties.
pub type IntegerDecoder = PrimitiveDecoder<Integer>;

/// Parses an integer from a JSON number's text. `12`, `-3` and also `1.0` or `2e3` (exact
/// integers however written); `1.5` and out-of-range values are errors.
pub fn parse_integer(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    // Fast path: plain digits that cannot overflow.
    if !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) {
        let mut v: i64 = 0;
        for &d in digits {
            v = v * 10 + i64::from(d - b'0');
        }
        return Ok(if digits.len() == b.len() { v } else { -v });
    }
    let scaled = parse_decimal(text, 0).map_err(|e| {
        if e.contains("fractional digits") {
            format!("{text} has a fractional part")
        } else {
            e
        }
    })?;
    i64::try_from(scaled).map_err(|_| format!("{text} is out of the 64-bit integer range"))
}

impl PrimitiveKind for Integer {
    type Native = i64;
    const TOKEN: Token = Token::Number;
    const EXPECTED: &'static str = "an integer";

    fn parse(cur: &mut Cursor<'_>) -> Result<i64, Fault> {
        let at = cur.offset();
        if let Some(n) = cur.simple_number() {
            if n.frac == 0 {
                // At most 18 digits: always inside the i64 range.
                let v = n.digits as i64;
                return Ok(if n.negative { -v } else { v });
            }
            // `1.0` is an integer too, but only the exact parser knows it.
            cur.rewind(at);
        }
        let text = cur.raw_number()?;
        parse_integer(text).map_err(|e| Fault::invalid(at, Self::EXPECTED, e))
    }

    fn array(values: ScalarBuffer<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
        Arc::new(Int64Array::new(values, nulls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_integer("0"), Ok(0));
        assert_eq!(parse_integer("-42"), Ok(-42));
        assert_eq!(parse_integer("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_integer("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_integer("2e3"), Ok(2000));
        assert_eq!(parse_integer("1.0"), Ok(1));
        assert!(parse_integer("9223372036854775808").is_err());
        assert!(parse_integer("1.5").is_err());
    }
}
