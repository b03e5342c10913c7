//! Why one line cannot be represented: the data error behind a rejected line.

use std::fmt;

/// A data error in one line: what is wrong, where in the line, and under which property.
///
/// Built only on the error path, so the property path is assembled as the error unwinds
/// through the nested decoders rather than tracked for every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault(Box<FaultInner>);

/// The fields of a [`Fault`], boxed so that the `Result`s returned for every value on the
/// hot path stay one pointer wide.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FaultInner {
    /// Property names from the outermost inwards (`UnitAmount`, `NetValue`); empty for
    /// syntax errors outside any property.
    path: Vec<String>,
    /// Byte offset in the line where the problem was found.
    offset: usize,
    /// What is wrong.
    message: String,
}

impl Fault {
    /// A malformed-JSON or otherwise unreadable value at `offset`.
    pub fn syntax(offset: usize, message: impl Into<String>) -> Self {
        Fault(Box::new(FaultInner {
            path: Vec::new(),
            offset,
            message: message.into(),
        }))
    }

    /// A value the column's type cannot hold.
    pub fn mismatch(offset: usize, expected: &str, found: impl fmt::Display) -> Self {
        Fault::syntax(offset, format!("expected {expected}, found {found}"))
    }

    /// A value of the right JSON kind that does not read as `expected`, for the reason
    /// `why` (a sentence naming the value).
    pub fn invalid(offset: usize, expected: &str, why: impl fmt::Display) -> Self {
        Fault::syntax(offset, format!("expected {expected}: {why}"))
    }

    /// Prefixes the property path with `name`, as the error leaves a nested decoder.
    pub fn within(mut self, name: &str) -> Self {
        self.0.path.push(name.to_owned());
        self
    }

    /// The dotted property path, outermost first (`UnitAmount.NetValue`), if any.
    pub fn property(&self) -> Option<String> {
        if self.0.path.is_empty() {
            return None;
        }
        let mut out = String::new();
        for part in self.0.path.iter().rev() {
            // Array indices attach to their property: `TaxValues[0].Value`.
            if !out.is_empty() && !part.starts_with('[') {
                out.push('.');
            }
            out.push_str(part);
        }
        Some(out)
    }

    /// The byte offset in the line.
    pub fn offset(&self) -> usize {
        self.0.offset
    }

    /// The message without location.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.property() {
            Some(p) => write!(
                f,
                "property {p}: {} (byte {})",
                self.0.message,
                self.0.offset + 1
            ),
            None => write!(f, "{} (byte {})", self.0.message, self.0.offset + 1),
        }
    }
}

impl std::error::Error for Fault {}
