//! A strict, allocation-free JSON pull parser over one line.
//!
//! The typed decoders drive it value by value, so each value is parsed straight into its
//! column: strings are copied once from the line into the column's buffer, numbers are
//! handed over as their raw text (decimals never pass through `f64`), and values the schema
//! does not know are returned as raw slices for `_extra`. UTF-8 is checked where it can
//! occur: outside strings only ASCII fits the grammar, and a string is validated only when
//! its scan met a byte above ASCII, so a line that parses is valid UTF-8 throughout without
//! a separate pass over it.
//!
//! Nesting is scanned iteratively with a depth limit, so no input can overflow the stack.

use super::fault::Fault;

/// Deepest nesting accepted in values the schema does not describe (`_extra`, `json`).
/// Deeper input is rejected rather than walked, so hostile lines cost bounded work.
pub const MAX_DEPTH: usize = 128;

/// A position in one JSON line.
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// The first byte of a JSON value, for dispatching on its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// `{`
    Object,
    /// `[`
    Array,
    /// `"`
    String,
    /// `-` or a digit
    Number,
    /// `true` or `false`
    Bool,
    /// `null`
    Null,
}

impl Token {
    /// How the token is named in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Token::Object => "an object",
            Token::Array => "an array",
            Token::String => "a string",
            Token::Number => "a number",
            Token::Bool => "a boolean",
            Token::Null => "null",
        }
    }
}

/// JSON's whitespace: space, tab, line feed, carriage return.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Self::from_bytes(text.as_bytes())
    }

    /// A cursor at the start of `bytes`, which need not be valid UTF-8: strings are
    /// validated as they are read, and any other non-ASCII byte is a syntax error.
    pub fn from_bytes(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Byte offset of the cursor in the line.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Moves the cursor back to `offset`, a position it has been at, to read the value
    /// there again another way.
    pub fn rewind(&mut self, offset: usize) {
        if offset <= self.pos {
            self.pos = offset;
        }
    }

    fn fault(&self, message: impl Into<String>) -> Fault {
        Fault::syntax(self.pos, message)
    }

    /// Skips whitespace. Exports are compact JSON, so the byte at the cursor is almost never
    /// whitespace: one comparison settles that, and the loop stays out of line.
    #[inline(always)]
    fn skip_ws(&mut self) {
        if let Some(&b) = self.bytes.get(self.pos) {
            if b > b' ' {
                return;
            }
        }
        self.skip_ws_slow();
    }

    #[inline(never)]
    fn skip_ws_slow(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if !is_ws(b) {
                break;
            }
            self.pos += 1;
        }
    }

    /// Whether the value at the cursor (positioned at its first byte) starts with `n`, so is
    /// `null` if it is anything valid; cheaper than [`Cursor::token`] for the per-property
    /// null check.
    #[inline(always)]
    pub fn at_null(&self) -> bool {
        self.bytes.get(self.pos) == Some(&b'n')
    }

    /// Whether the value at the cursor is the empty string `""`.
    pub fn at_empty_string(&self) -> bool {
        self.bytes.get(self.pos..self.pos + 2) == Some(b"\"\"")
    }

    /// The type of the value at the cursor, which is positioned at its first byte (as the
    /// column decoders are: their callers have skipped the whitespace already).
    #[inline(always)]
    pub fn token(&self) -> Result<Token, Fault> {
        match self.bytes.get(self.pos) {
            Some(b'{') => Ok(Token::Object),
            Some(b'[') => Ok(Token::Array),
            Some(b'"') => Ok(Token::String),
            Some(b'-' | b'0'..=b'9') => Ok(Token::Number),
            Some(b't' | b'f') => Ok(Token::Bool),
            Some(b'n') => Ok(Token::Null),
            _ => Err(self.peek_fault()),
        }
    }

    /// Whether the value at the cursor (positioned at its first byte) starts as `token`
    /// does: with a constant token, one comparison instead of [`Cursor::token`]'s dispatch
    /// on every kind of value.
    #[inline(always)]
    pub fn is_at(&self, token: Token) -> bool {
        let Some(&b) = self.bytes.get(self.pos) else {
            return false;
        };
        match token {
            Token::Object => b == b'{',
            Token::Array => b == b'[',
            Token::String => b == b'"',
            Token::Number => b == b'-' || b.is_ascii_digit(),
            Token::Bool => b == b't' || b == b'f',
            Token::Null => b == b'n',
        }
    }

    /// Skips whitespace and reports the type of the next value.
    #[inline(always)]
    pub fn peek(&mut self) -> Result<Token, Fault> {
        self.skip_ws();
        self.token()
    }

    /// Why no value starts at the cursor; out of line, as it runs only for rejected lines.
    #[cold]
    #[inline(never)]
    fn peek_fault(&self) -> Fault {
        match self.bytes.get(self.pos) {
            Some(&b) => self.fault(format!("unexpected character {:?}", b as char)),
            None => self.fault("unexpected end of line"),
        }
    }

    /// Whether only whitespace remains.
    pub fn is_at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.bytes.len()
    }

    #[inline]
    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `word`. Inlined so that each literal is compared as one constant word
    /// rather than through a `memcmp` call (a null or a boolean is in most rows).
    #[inline(always)]
    fn literal(&mut self, word: &'static [u8]) -> Result<(), Fault> {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.literal_fault())
        }
    }

    #[cold]
    #[inline(never)]
    fn literal_fault(&self) -> Fault {
        self.fault("invalid literal")
    }

    /// Consumes `null`; the caller has peeked [`Token::Null`].
    #[inline]
    pub fn parse_null(&mut self) -> Result<(), Fault> {
        self.literal(b"null")
    }

    /// Consumes `true` or `false`.
    #[inline(always)]
    pub fn parse_bool(&mut self) -> Result<bool, Fault> {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            Some(b't') => self.literal(b"true").map(|_| true),
            Some(b'f') => self.literal(b"false").map(|_| false),
            _ => Err(self.fault("expected true or false")),
        }
    }

    /// Consumes `{`; the caller has peeked [`Token::Object`].
    pub fn begin_object(&mut self) -> Result<(), Fault> {
        if self.eat(b'{') {
            Ok(())
        } else {
            Err(self.fault("expected '{'"))
        }
    }

    /// Moves to the next key of an object: returns its raw (still escaped) text, or `None`
    /// at the closing `}`. `first` says whether this is the first key of the object.
    #[inline]
    pub fn next_key(&mut self, first: bool) -> Result<Option<RawStr<'a>>, Fault> {
        if !self.next_member(first)? {
            return Ok(None);
        }
        self.member_key().map(Some)
    }

    /// Consumes `[`; the caller has peeked [`Token::Array`].
    pub fn begin_array(&mut self) -> Result<(), Fault> {
        if self.eat(b'[') {
            Ok(())
        } else {
            Err(self.fault("expected '['"))
        }
    }

    /// Moves to the next element of an array: `true` if there is one, `false` at `]`.
    #[inline]
    pub fn next_element(&mut self, first: bool) -> Result<bool, Fault> {
        self.separator(first, b']', "expected ',' or ']' after an array element")
    }

    /// Past the whitespace and the `,` between two items of an array or object: `false` (and
    /// consumed) at the `close` byte, `true` before the next item, `missing` if neither.
    #[inline]
    fn separator(&mut self, first: bool, close: u8, missing: &str) -> Result<bool, Fault> {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            Some(&b) if b == close => {
                self.pos += 1;
                return Ok(false);
            }
            Some(b',') if !first => {
                self.pos += 1;
                self.skip_ws();
            }
            _ if !first => return Err(self.fault(missing)),
            _ => {}
        }
        Ok(true)
    }

    /// Consumes a string and returns its raw content (between the quotes, escapes intact),
    /// checked to be valid UTF-8.
    #[inline(always)]
    pub fn raw_string(&mut self) -> Result<RawStr<'a>, Fault> {
        self.skip_ws();
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(self.fault("expected a string"));
        }
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            i = find_string_special(self.bytes, i);
            match self.bytes.get(i) {
                Some(b'"') => break,
                Some(&c) if c >= 0x80 => {
                    // Checked as UTF-8 once the string's end is known.
                    non_ascii = true;
                    i += 1;
                }
                Some(b'\\') => {
                    escaped = true;
                    // Skip the backslash and the escaped byte; `\u` digits are checked on
                    // unescape. A non-ASCII escaped byte is an invalid escape, which the
                    // unescape reports; it is noted here so that the UTF-8 check covers it.
                    non_ascii |= self.bytes.get(i + 1).is_some_and(|&c| c >= 0x80);
                    i += 2;
                    if i > self.bytes.len() {
                        self.pos = self.bytes.len();
                        return Err(self.fault("unterminated string"));
                    }
                }
                Some(_) => return Err(Fault::syntax(i, "unescaped control character in a string")),
                None => {
                    self.pos = self.bytes.len();
                    return Err(self.fault("unterminated string"));
                }
            }
        }
        let bytes = &self.bytes[start..i];
        if non_ascii {
            if let Err(e) = std::str::from_utf8(bytes) {
                return Err(Fault::syntax(start + e.valid_up_to(), "invalid UTF-8"));
            }
        }
        self.pos = i + 1;
        Ok(RawStr {
            bytes,
            has_escapes: escaped,
            offset: start,
        })
    }

    /// Consumes a string and appends its unescaped content to `out`: what
    /// `raw_string()?.unescape_into(out)` does, in one pass for the common string without
    /// escapes, copying sixteen bytes of the line at a time as they are scanned (then
    /// cutting the copy back at the closing quote) rather than scanning first and copying
    /// after, and checking non-ASCII characters as UTF-8 where they are met. Anything else
    /// (an escape, a control character, invalid UTF-8, the last bytes of the line) is left
    /// to the general path, which also words the errors. On error, `out` is left as it was.
    #[inline(always)]
    pub fn string_into(&mut self, out: &mut Vec<u8>) -> Result<(), Fault> {
        let b = self.bytes;
        let base = out.len();
        if b.get(self.pos) == Some(&b'"') {
            let start = self.pos + 1;
            let mut i = start;
            while let Some(chunk) = b.get(i..i + 16) {
                let chunk: &[u8; 16] = chunk.try_into().expect("sixteen bytes");
                out.extend_from_slice(chunk);
                let word = |at: usize| {
                    u64::from_le_bytes(chunk[at..at + 8].try_into().expect("eight bytes"))
                };
                let (low, high) = (special_flags(word(0)), special_flags(word(8)));
                if low | high == 0 {
                    i += 16;
                    continue;
                }
                let at = i + if low != 0 {
                    (low.trailing_zeros() / 8) as usize
                } else {
                    8 + (high.trailing_zeros() / 8) as usize
                };
                match b[at] {
                    b'"' => {
                        out.truncate(base + (at - start));
                        self.pos = at + 1;
                        return Ok(());
                    }
                    c if c >= 0x80 => match utf8_char_len(&b[at..]) {
                        Some(n) => {
                            // The character may reach past the bytes copied so far.
                            out.truncate(base + (at - start));
                            out.extend_from_slice(&b[at..at + n]);
                            i = at + n;
                        }
                        None => break,
                    },
                    _ => break,
                }
            }
            out.truncate(base);
        }
        self.string_into_general(out)
    }

    /// [`Cursor::string_into`] for what its fast path leaves, kept out of line so that the
    /// fast path stays small where it is inlined.
    #[inline(never)]
    fn string_into_general(&mut self, out: &mut Vec<u8>) -> Result<(), Fault> {
        let base = out.len();
        let result = self.raw_string().and_then(|raw| raw.unescape_into(out));
        if result.is_err() {
            out.truncate(base);
        }
        result
    }

    /// The bytes from the cursor to the end of the line, for decoders that recognise a
    /// value's common shape in place (see [`Cursor::advance`]).
    #[inline(always)]
    pub fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// Moves the cursor `n` bytes on, past a value recognised in [`Cursor::rest`]; the
    /// caller vouches that those bytes are a complete, valid JSON value.
    #[inline(always)]
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.bytes.len());
    }

    /// Moves to the next member of an object and stops at its key's opening quote: `true`
    /// if there is one, `false` at the closing `}`. Pair with [`Cursor::eat_key`] or
    /// [`Cursor::member_key`].
    #[inline(always)]
    pub fn next_member(&mut self, first: bool) -> Result<bool, Fault> {
        // Compact JSON settles it from one or two bytes; whitespace and errors take the call.
        match self.bytes.get(self.pos) {
            Some(b',') if !first && self.bytes.get(self.pos + 1) == Some(&b'"') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b'"') if first => Ok(true),
            Some(b'}') => {
                self.pos += 1;
                Ok(false)
            }
            _ => self.next_member_general(first),
        }
    }

    #[inline(never)]
    fn next_member_general(&mut self, first: bool) -> Result<bool, Fault> {
        if !self.separator(first, b'}', "expected ',' or '}' after a property")? {
            return Ok(false);
        }
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(self.fault("expected a property name"));
        }
        Ok(true)
    }

    /// If the key at the cursor and its colon are exactly `key` (the name with its quotes
    /// and a colon, `"Id":`), consumes them and the whitespace after. This byte comparison
    /// is the fast path for the common case of compact JSON with keys in schema order; any
    /// other spelling (escapes or whitespace included) falls back to [`Cursor::member_key`],
    /// which unescapes.
    #[inline]
    pub fn eat_key(&mut self, key: &KeyPattern) -> bool {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if key.matches(rest) {
            self.pos += key.bytes.len();
            self.skip_ws();
            true
        } else {
            false
        }
    }

    /// Consumes the key at the cursor and its colon.
    #[inline]
    pub fn member_key(&mut self) -> Result<RawStr<'a>, Fault> {
        let key = self.raw_string()?;
        self.expect_colon()?;
        Ok(key)
    }

    #[inline]
    fn expect_colon(&mut self) -> Result<(), Fault> {
        self.skip_ws();
        if self.bytes.get(self.pos) != Some(&b':') {
            return Err(self.fault("expected ':' after a property name"));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// Consumes a number of the common plain form `-?(0|[1-9][0-9]*)(.[0-9]+)?` with at most
    /// 18 digits in all, parsed in the same pass that checks it; `None` (consuming nothing)
    /// for anything else (exponents, more digits, or no number at all), which callers then
    /// read exactly with [`Cursor::raw_number`]. Stops where `raw_number` stops, so both
    /// paths leave the cursor at the same place.
    #[inline(always)]
    pub fn simple_number(&mut self) -> Option<SimpleNumber> {
        self.skip_ws();
        let b = self.bytes;
        let mut i = self.pos;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        let mut digits: u64 = 0;
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&c @ b'0'..=b'9') = b.get(i) {
                    digits = digits * 10 + u64::from(c - b'0');
                    i += 1;
                    if i - int_start > 18 {
                        return None;
                    }
                }
            }
            _ => return None,
        }
        let mut frac = 0u32;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let frac_start = i;
            // Digits so far, the dot excluded; more than 18 might overflow the u64.
            let int_digits = frac_start - 1 - int_start;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                if int_digits + (i - frac_start) >= 18 {
                    return None;
                }
                digits = digits * 10 + u64::from(c - b'0');
                i += 1;
            }
            frac = (i - frac_start) as u32;
            if frac == 0 {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            return None;
        }
        self.pos = i;
        Some(SimpleNumber {
            negative,
            digits,
            frac,
        })
    }

    /// Consumes a number and returns its text, checked against the JSON number grammar.
    #[inline]
    pub fn raw_number(&mut self) -> Result<&'a str, Fault> {
        self.skip_ws();
        let start = self.pos;
        let b = self.bytes;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => return Err(self.fault("invalid number")),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return Err(self.fault("invalid number: no digits after '.'"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return Err(self.fault("invalid number: no digits in exponent"));
            }
        }
        self.pos = i;
        // Only ASCII digits and signs were consumed.
        std::str::from_utf8(&b[start..i]).map_err(|_| Fault::syntax(start, "invalid number"))
    }

    /// Consumes any value and returns its exact text, checked for well-formedness, with
    /// nesting limited to [`MAX_DEPTH`].
    pub fn raw_value(&mut self) -> Result<&'a str, Fault> {
        let start = self.pos;
        let raw = self.raw_value_bytes()?;
        // Checked already (strings as they were read, ASCII elsewhere); converted for the type.
        std::str::from_utf8(raw)
            .map_err(|e| Fault::syntax(start + e.valid_up_to(), "invalid UTF-8"))
    }

    /// [`Cursor::raw_value`] as bytes (valid UTF-8), for callers that only copy them.
    pub fn raw_value_bytes(&mut self) -> Result<&'a [u8], Fault> {
        self.skip_ws();
        let start = self.pos;
        // Containers open so far: true for an object, false for an array.
        let mut stack: Vec<bool> = Vec::new();
        let mut first = true;
        loop {
            // Positioned where a value is expected (or a closing bracket of an empty container).
            if let Some(&is_object) = stack.last() {
                if is_object {
                    match self.next_key(first)? {
                        Some(key) => {
                            key.check_escapes()?;
                        }
                        None => {
                            stack.pop();
                            first = false;
                            if stack.is_empty() {
                                break;
                            }
                            continue;
                        }
                    }
                } else if !self.next_element(first)? {
                    stack.pop();
                    first = false;
                    if stack.is_empty() {
                        break;
                    }
                    continue;
                }
            }
            match self.peek()? {
                Token::Object | Token::Array => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(self.fault(format!("nested deeper than {MAX_DEPTH} levels")));
                    }
                    let is_object = self.bytes[self.pos] == b'{';
                    self.pos += 1;
                    stack.push(is_object);
                    first = true;
                    continue;
                }
                Token::String => {
                    self.raw_string()?.check_escapes()?;
                }
                Token::Number => {
                    self.raw_number()?;
                }
                Token::Bool => {
                    self.parse_bool()?;
                }
                Token::Null => self.parse_null()?,
            }
            first = false;
            if stack.is_empty() {
                break;
            }
        }
        Ok(&self.bytes[start..self.pos])
    }
}

/// A property name as it appears in compact JSON (`"Id":`), with its first 32 bytes held
/// as four masked words, so that matching a key usually costs a few loads from the line,
/// compared all at once, and no load from elsewhere in memory.
#[derive(Debug, Clone)]
pub struct KeyPattern {
    bytes: Box<[u8]>,
    words: [u64; 4],
    masks: [u64; 4],
}

impl KeyPattern {
    /// The pattern for the property `name`.
    pub fn new(name: &str) -> Self {
        let bytes: Box<[u8]> = format!("\"{name}\":").into_bytes().into();
        let mut head = [0u8; 32];
        let n = bytes.len().min(32);
        head[..n].copy_from_slice(&bytes[..n]);
        let mut mask = [0u8; 32];
        mask[..n].fill(0xff);
        let words = |b: &[u8; 32]| std::array::from_fn(|i| word_at(b, 8 * i));
        KeyPattern {
            words: words(&head),
            masks: words(&mask),
            bytes,
        }
    }

    /// Whether `hay` starts with the pattern.
    #[inline(always)]
    fn matches(&self, hay: &[u8]) -> bool {
        match hay.get(..32) {
            Some(head) => {
                let diff = |i: usize| (word_at(head, 8 * i) ^ self.words[i]) & self.masks[i];
                if self.bytes.len() <= 16 {
                    return diff(0) | diff(1) == 0;
                }
                diff(0) | diff(1) | diff(2) | diff(3) == 0
                    && (self.bytes.len() <= 32 || starts_with(hay, &self.bytes))
            }
            // Near the end of the line.
            None => starts_with(hay, &self.bytes),
        }
    }
}

/// The eight bytes of `b` at `at` as a little-endian word; `b` has them.
#[inline(always)]
fn word_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

/// `a == b` for short byte strings (enum values, names), without a `memcmp` call.
#[inline]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && starts_with(a, b)
}

/// `hay.starts_with(needle)` for the short needles of property names, compared a word at a
/// time inline rather than through a `memcmp` call per key.
#[inline]
fn starts_with(hay: &[u8], needle: &[u8]) -> bool {
    let n = needle.len();
    if hay.len() < n {
        return false;
    }
    if n < 8 {
        if n >= 4 {
            // Two overlapping four-byte words cover four to seven bytes.
            let word = |b: &[u8], at: usize| {
                u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
            };
            return word(hay, 0) == word(needle, 0) && word(hay, n - 4) == word(needle, n - 4);
        }
        // First, middle and last byte cover up to three bytes.
        return n == 0
            || (hay[0] == needle[0] && hay[n / 2] == needle[n / 2] && hay[n - 1] == needle[n - 1]);
    }
    let word =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"));
    let mut i = 0;
    while i + 8 <= n {
        if word(hay, i) != word(needle, i) {
            return false;
        }
        i += 8;
    }
    // The last word overlaps the previous one; comparing bytes twice is harmless.
    i == n || word(hay, n - 8) == word(needle, n - 8)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte at or after `i` that a string scan must look at (`"`, `\\`, a
/// control character, or a byte above ASCII), or `b.len()`.
///
/// Scans eight bytes at a time with the classic "has zero byte" word trick for the quote
/// and the backslash, and a plain subtraction for bytes below 0x20: a borrow only carries
/// upwards from a byte below 0x20, and a byte that sets the high bit of `w - 0x20…` without
/// one is itself above ASCII, so the lowest flag is always exact. Strings are short (ids,
/// codes, names), where one word loop beats setting up a vectorised search per string.
#[inline(always)]
fn find_string_special(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let flags = special_flags(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c) {
            return i;
        }
        i += 1;
    }
    i
}

/// The length of the UTF-8 character starting at `s[0]` (a byte above ASCII), or `None`
/// if no valid character starts there: the well-formed sequences of the Unicode standard
/// (table 3-7), so no overlong form, surrogate or code point above U+10FFFF passes.
#[inline]
fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let (len, low, high) = match *s.first()? {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return None,
    };
    let continuation = |i: usize| s.get(i).is_some_and(|&c| c & 0xC0 == 0x80);
    let second = *s.get(1)?;
    let ok = (low..=high).contains(&second)
        && (len < 3 || continuation(2))
        && (len < 4 || continuation(3));
    ok.then_some(len)
}

/// The high bit of each byte of `w` (eight line bytes, little-endian) that a string scan
/// must stop at, exact for the lowest one (see [`find_string_special`]).
#[inline(always)]
fn special_flags(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let flags = (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | w.wrapping_sub(ONES * 0x20)
        | w;
    flags & HIGHS
}

/// A plain JSON number read by [`Cursor::simple_number`]: its value is
/// `±digits × 10^-frac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleNumber {
    /// Whether it had a minus sign (`-0` included).
    pub negative: bool,
    /// All its digits as one integer, the fractional ones included (at most 18 digits).
    pub digits: u64,
    /// How many of the digits were after the decimal point.
    pub frac: u32,
}

/// The raw content of a JSON string, between its quotes.
#[derive(Debug, Clone, Copy)]
pub struct RawStr<'a> {
    /// The content with escapes intact, valid UTF-8.
    pub bytes: &'a [u8],
    /// Whether it contains a backslash (so must be unescaped before use).
    pub has_escapes: bool,
    /// Byte offset of the content in the line, for error messages.
    pub offset: usize,
}

impl<'a> RawStr<'a> {
    /// Appends the unescaped string to `out`.
    #[inline(always)]
    pub fn unescape_into(&self, out: &mut Vec<u8>) -> Result<(), Fault> {
        if !self.has_escapes {
            out.extend_from_slice(self.bytes);
            return Ok(());
        }
        unescape_slow(self.bytes, self.offset, out)
    }

    /// The unescaped string, borrowed when it has no escapes.
    pub fn to_cow(&self) -> Result<std::borrow::Cow<'a, str>, Fault> {
        let invalid = |_| Fault::syntax(self.offset, "invalid UTF-8");
        if !self.has_escapes {
            return std::str::from_utf8(self.bytes)
                .map(std::borrow::Cow::Borrowed)
                .map_err(invalid);
        }
        let mut out = Vec::with_capacity(self.bytes.len());
        unescape_slow(self.bytes, self.offset, &mut out)?;
        // Unescaping valid UTF-8 with valid escapes yields valid UTF-8.
        String::from_utf8(out)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| Fault::syntax(self.offset, "invalid string escape"))
    }

    /// Checks the escapes without keeping the result (for values copied raw).
    pub fn check_escapes(&self) -> Result<(), Fault> {
        if self.has_escapes {
            let mut sink = Vec::new();
            unescape_slow(self.bytes, self.offset, &mut sink)?;
        }
        Ok(())
    }
}

fn hex4(b: &[u8], at: usize, offset: usize) -> Result<u32, Fault> {
    let digits = b
        .get(at..at + 4)
        .ok_or_else(|| Fault::syntax(offset + at, "truncated \\u escape"))?;
    let mut v = 0u32;
    for &d in digits {
        let n = (d as char)
            .to_digit(16)
            .ok_or_else(|| Fault::syntax(offset + at, "invalid \\u escape"))?;
        v = v * 16 + n;
    }
    Ok(v)
}

#[cold]
fn unescape_slow(b: &[u8], offset: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
    let mut i = 0;
    while i < b.len() {
        let Some(found) = memchr::memchr(b'\\', &b[i..]) else {
            out.extend_from_slice(&b[i..]);
            break;
        };
        out.extend_from_slice(&b[i..i + found]);
        i += found + 1;
        let esc = *b
            .get(i)
            .ok_or_else(|| Fault::syntax(offset + i, "truncated escape"))?;
        i += 1;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(b, i, offset)?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                        return Err(Fault::syntax(
                            offset + i,
                            "unpaired surrogate in \\u escape",
                        ));
                    }
                    let lo = hex4(b, i + 2, offset)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(Fault::syntax(
                            offset + i,
                            "unpaired surrogate in \\u escape",
                        ));
                    }
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err(Fault::syntax(
                        offset + i,
                        "unpaired surrogate in \\u escape",
                    ));
                } else {
                    hi
                };
                char::from_u32(code)
                    .ok_or_else(|| Fault::syntax(offset + i, "invalid \\u escape"))?
            }
            other => {
                return Err(Fault::syntax(
                    offset + i,
                    format!("invalid escape '\\{}'", other as char),
                ))
            }
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Result<&str, Fault> {
        let mut c = Cursor::new(s);
        let v = c.raw_value()?;
        assert!(c.is_at_end(), "trailing input in {s:?}");
        Ok(v)
    }

    #[test]
    fn raw_value_accepts_what_serde_json_accepts() {
        for s in [
            "{}",
            "[]",
            "null",
            "true",
            "-0.5e+3",
            r#"{"a":[1,{"b":"c\"\u00e9"}],"d":null}"#,
            r#" [ [ ] , { } ] "#,
        ] {
            assert_eq!(raw(s).unwrap(), s.trim());
            serde_json::from_str::<serde_json::Value>(s).unwrap();
        }
    }

    #[test]
    fn raw_value_rejects_what_serde_json_rejects() {
        for s in [
            "{",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "\"\\x\"",
            "\"a",
            "[1 2]",
            "{1:2}",
            "\"\\ud800\"",
            "\"\u{1}\"",
        ] {
            let mut c = Cursor::new(s);
            let ok = c.raw_value().is_ok() && c.is_at_end();
            assert!(!ok, "accepted {s:?}");
            assert!(
                serde_json::from_str::<serde_json::Value>(s).is_err(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let s = "[".repeat(10_000) + &"]".repeat(10_000);
        let err = raw(&s).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn string_scan_finds_the_first_special_byte_at_every_position() {
        for len in 0..40 {
            for special in [b'"', b'\\', 0x01, 0x1f, 0x80, 0xc3, 0xff] {
                for at in 0..=len {
                    let mut v = vec![b'a'; len];
                    // Bytes that trip naive word tricks: 0x20 itself, 0x7f, and bytes just
                    // above the quote and the backslash.
                    for (i, x) in v.iter_mut().enumerate() {
                        *x = [b'a', 0x23, 0x20, 0x7f, b'!', 0x5d, b'~'][i % 7];
                    }
                    if at < len {
                        v[at] = special;
                    }
                    assert_eq!(
                        find_string_special(&v, 0),
                        at,
                        "len {len} at {at} byte {special}"
                    );
                }
            }
        }
    }

    #[test]
    fn key_patterns_match_exactly_their_key() {
        for name in [
            "A",
            "Id",
            "Code",
            "Value",
            "Currency",
            "EnterpriseId",
            "CreatorProfileId",
            "AccountingCategoryId",
            "RequestedResourceCategoryId",
            "RequestedResourceCategoryIdentifier",
        ] {
            let key = format!("\"{name}\":");
            let pattern = KeyPattern::new(name);
            let long_tail = format!("\"{}\"", "x".repeat(40));
            for tail in ["", "1", "\"abcdefghijklmnopqrstuvwxyz\"", &long_tail] {
                let line = format!("{key}{tail}");
                let b = line.as_bytes();
                assert!(pattern.matches(b), "{line}");
                // Any single changed byte within the key, and any truncation, is a mismatch.
                for at in 0..key.len() {
                    let mut changed = b.to_vec();
                    changed[at] ^= 0x01;
                    assert!(!pattern.matches(&changed), "{line} at {at}");
                    assert!(!pattern.matches(&b[..at]), "{line} cut at {at}");
                }
            }
        }
    }

    #[test]
    fn word_comparisons_agree_with_slice_comparisons() {
        let base: Vec<u8> = (0..24u8).map(|i| b'a' + i).collect();
        for n in 0..base.len() {
            let needle = &base[..n];
            for hay_len in 0..base.len() {
                let mut hay = base[..hay_len].to_vec();
                assert_eq!(starts_with(&hay, needle), hay.starts_with(needle));
                assert_eq!(short_eq(&hay, needle), hay == needle);
                for at in 0..hay_len {
                    hay[at] ^= 0x20;
                    assert_eq!(
                        starts_with(&hay, needle),
                        hay.starts_with(needle),
                        "{n} {at}"
                    );
                    assert_eq!(short_eq(&hay, needle), hay == needle, "{n} {at}");
                    hay[at] ^= 0x20;
                }
            }
        }
    }

    #[test]
    fn utf8_character_lengths_agree_with_the_standard_library() {
        let probes = [0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff];
        for first in 0x80..=0xffu8 {
            for second in 0..=0xffu8 {
                for third in probes {
                    for fourth in probes {
                        let s = [first, second, third, fourth];
                        let expected = match std::str::from_utf8(&s) {
                            Ok(text) => text.chars().next().map(char::len_utf8),
                            Err(e) if e.valid_up_to() > 0 => {
                                std::str::from_utf8(&s[..e.valid_up_to()])
                                    .ok()
                                    .and_then(|t| t.chars().next())
                                    .map(char::len_utf8)
                            }
                            Err(_) => None,
                        };
                        assert_eq!(utf8_char_len(&s), expected, "{s:x?}");
                        // Cut short, a character is never accepted past the end.
                        for cut in 1..4 {
                            let len = utf8_char_len(&s[..cut]);
                            assert!(len.is_none_or(|n| n <= cut), "{s:x?} cut at {cut}");
                        }
                    }
                }
            }
        }
    }

    /// The one-pass string copy gives exactly what the general path gives, value, position
    /// and error alike, on strings of every length up to past the word sizes, with the
    /// special bytes at every position and the line ending at every distance after them.
    #[test]
    fn string_into_agrees_with_raw_string_and_unescape() {
        let general = |line: &[u8]| {
            let mut c = Cursor::from_bytes(line);
            let mut out = b"prefix".to_vec();
            let r = c.raw_string().and_then(|raw| raw.unescape_into(&mut out));
            (r.map(|()| out).map_err(|f| f.to_string()), c.offset())
        };
        let fast = |line: &[u8]| {
            let mut c = Cursor::from_bytes(line);
            let mut out = b"prefix".to_vec();
            let r = c.string_into(&mut out);
            if r.is_err() {
                assert_eq!(out, b"prefix", "output not rolled back for {line:x?}");
            }
            (r.map(|()| out).map_err(|f| f.to_string()), c.offset())
        };
        let inserts: [&[u8]; 12] = [
            b"\"",
            b"\\n",
            b"\\u00e9",
            b"\\x",
            b"\x01",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            b"\xc3",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xff",
        ];
        for len in 0..40 {
            for insert in inserts {
                for at in 0..=len {
                    for after in [0usize, 1, 7, 20] {
                        let mut line = b"\"".to_vec();
                        line.extend((0..len).map(|i| b"abcdefghij-0123456789"[i % 21]));
                        line.splice(1 + at..1 + at, insert.iter().copied());
                        line.push(b'"');
                        line.extend(std::iter::repeat_n(b',', after));
                        assert_eq!(fast(&line), general(&line), "{line:x?}");
                        // And unterminated, cut just before the closing quote.
                        let cut = &line[..line.len() - after - 1];
                        assert_eq!(fast(cut), general(cut), "{cut:x?}");
                    }
                }
            }
        }
    }

    #[test]
    fn unescape_handles_all_escapes() {
        let mut c = Cursor::new(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z""#);
        let s = c.raw_string().unwrap();
        let mut out = Vec::new();
        s.unescape_into(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\"\\/\u{8}\u{c}\n\r\té😀z"
        );
    }
}
