//! `double` properties → Arrow `Float64`.

use super::fault::Fault;
use super::json::{Cursor, Token};
use super::values::{PrimitiveDecoder, PrimitiveKind};
use arrow::array::{ArrayRef, Float64Array};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use std::sync::Arc;

/// JSON numbers as the nearest 64-bit float.
pub struct Double;

/// Decodes `double` properties.
pub type DoubleDecoder = PrimitiveDecoder<Double>;

/// Parses a JSON number's text into the nearest `f64` (correctly rounded, so the shortest
/// spelling of a float reads back as that float); a number beyond the `f64` range is an
/// error, not an infinity.
pub fn parse_double(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{text} is out of the 64-bit float range")),
        Err(_) => Err(format!("{text} is not a number")),
    }
}

impl PrimitiveKind for Double {
    type Native = f64;
    const TOKEN: Token = Token::Number;
    const EXPECTED: &'static str = "a number";

    fn parse(cur: &mut Cursor<'_>) -> Result<f64, Fault> {
        let at = cur.offset();
        let text = cur.raw_number()?;
        parse_double(text).map_err(|e| Fault::invalid(at, Self::EXPECTED, e))
    }

    fn array(values: ScalarBuffer<f64>, nulls: Option<NullBuffer>) -> ArrayRef {
        Arc::new(Float64Array::new(values, nulls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles() {
        assert_eq!(parse_double("50.08745150000001"), Ok(50.08745150000001));
        assert_eq!(parse_double("0.30000000000000004"), Ok(0.1 + 0.2));
        assert_eq!(parse_double("-14.429645"), Ok(-14.429645));
        assert_eq!(parse_double("1e2"), Ok(100.0));
        assert_eq!(parse_double("-0"), Ok(-0.0));
        assert_eq!(parse_double("5e-324"), Ok(5e-324));
        // Every float's shortest spelling reads back as itself.
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..10_000 {
            let v = f64::from_bits(rng.u64(..));
            if v.is_finite() {
                assert_eq!(parse_double(&format!("{v:?}")), Ok(v));
            }
        }
        assert!(parse_double("1e309").unwrap_err().contains("range"));
        assert!(parse_double("-1e400").is_err());
    }
}
