//! Deterministic synthetic rows for every entity, derived from its schema alone.
//!
//! The demo server, the round-trip tests and the benchmarks all need exports that look like
//! Mews's, for entities whose schema files may change at any time. So nothing here names a
//! column (except the row's own `Id`): values follow the property's type, and a few name
//! patterns (`…Id`, `…Ids`, `…Currency…`, `…Code`, `…Email…`, `…Name`) pick plausible text.
//!
//! Row `i` depends only on `(seed, i)`, so any slice of a large export can be regenerated on
//! its own (by a benchmark thread, by the mock server answering a range request, or by a
//! test comparing what the pipeline wrote with what it was given).
//!
//! Rows are written as JSON text straight into a byte buffer, with hand-rolled number
//! formatting and pre-escaped keys: benchmarks feed gigabytes through the pipeline, and the
//! generator must not be what they measure.

use crate::calendar::civil_from_days;
use crate::schema::{DataType, EntitySchema, Property};
use std::io::{self, Write};

/// How varied generated rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variety {
    /// Rows shaped like the reference's examples: most optional properties present, realistic
    /// values (benchmarks, demo).
    Realistic,
    /// Every optional property cycles through absent / null / present; every enum value
    /// appears; arrays empty and full; strings with unicode, escapes and control characters;
    /// decimals with 0..=9 fractional digits, negatives and 29 integer digits; timestamps with
    /// and without fractional seconds and with `Z` or `+00:00` (tests).
    Thorough,
}

/// The values a top-level property is kept within, as an export filter selects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within {
    /// Instants from `start` (inclusive) to `end` (exclusive), in whole seconds since
    /// 1970-01-01T00:00:00Z; empty when `end <= start`.
    Seconds {
        /// First second.
        start: i64,
        /// First second after the range.
        end: i64,
    },
    /// Dates from `first` to `last`, both inclusive, in days since 1970-01-01; empty when
    /// `last < first`.
    Days {
        /// First day.
        first: i64,
        /// Last day.
        last: i64,
    },
}

impl Within {
    /// Whether no value lies within.
    pub fn is_empty(&self) -> bool {
        match *self {
            Within::Seconds { start, end } => end <= start,
            Within::Days { first, last } => last < first,
        }
    }
}

/// Writes synthetic rows of one entity as JSON text.
#[derive(Debug, Clone)]
pub struct Generator {
    /// Top-level properties, compiled into a write plan.
    root: Box<[Field]>,
    /// Mixed into every row's random stream, so different seeds give different exports.
    seed: u64,
    /// How varied the rows are.
    variety: Variety,
    /// Reused by [`Generator::write_lines`] to batch small rows into large writes.
    buf: Vec<u8>,
    /// Tricky strings for [`Variety::Thorough`], built once.
    tricky: Box<[String]>,
}

/// Bytes collected before [`Generator::write_lines`] hands them to its writer: large enough
/// that per-call overhead of the writer vanishes, small enough to stay in cache-friendly sizes.
const FLUSH_BYTES: usize = 256 * 1024;

/// Deepest object nesting the plan follows. Schemas cannot contain cycles (the schema loader
/// rejects them), so this only stops a pathological schema from producing enormous rows;
/// deeper objects are written as `{}`.
const MAX_DEPTH: usize = 16;

/// Distinct values of each foreign-key property in [`Variety::Realistic`]: real exports repeat
/// a few enterprises, services and accounts many times, which matters for dictionary encoding
/// and compression in benchmarks.
const FOREIGN_ID_POOL: u64 = 1024;

/// First day generated: 2022-01-01, in days since 1970-01-01.
const FIRST_DAY: i64 = 18_993;
/// Number of days generated: 2022-01-01 ..= 2024-12-31.
const DAY_COUNT: i64 = 365 + 365 + 366;

/// One property in the write plan.
#[derive(Debug, Clone)]
struct Field {
    /// `"Name":`, escaped once.
    key: Box<[u8]>,
    /// Required properties (and the row `Id`) are always present and non-null.
    required: bool,
    /// How to write the value.
    node: Node,
    /// What the value means to the other money values of its object.
    role: Role,
}

/// How a property's value relates to its neighbours', so that realistic rows add up: an
/// order item's `Amount` is its `UnitAmount` times its `UnitCount`, and its
/// `OriginalAmount` the same as its `Amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Unrelated to the others.
    Plain,
    /// `UnitCount`: how many units the amounts of the object count.
    UnitCount,
    /// `UnitAmount`: the price of one unit.
    UnitAmount,
    /// `OriginalAmount`: the amount before any currency conversion, the same here.
    OriginalAmount,
}

/// Money in the reference's `Amount` shape, in the row's currency and tax rate (realistic
/// rows; thorough rows write it as a plain object).
#[derive(Debug, Clone, Copy, Default)]
struct MoneyScope {
    /// The object's `UnitCount`, once written.
    count: Option<u64>,
    /// Net cents of the object's `UnitAmount`, once written.
    unit: Option<i64>,
    /// Net cents of the object's last other amount.
    total: Option<i64>,
}

/// How to write one value.
#[derive(Debug, Clone)]
enum Node {
    Text(TextHint),
    Integer,
    Decimal,
    Double,
    Boolean,
    Timestamp,
    /// An instant from `start` to `end` (exclusive), in seconds since the epoch.
    TimestampIn {
        start: i64,
        end: i64,
    },
    Date,
    /// A date from `first` to `last` (inclusive), in days since the epoch.
    DateIn {
        first: i64,
        last: i64,
    },
    Json,
    /// Documented values, each already written as a JSON string.
    Enum(Box<[Box<[u8]>]>),
    Object(Box<[Field]>),
    /// An object of the reference's `Amount` shape (currency, net, gross, tax values and
    /// breakdown); the fields serve thorough rows.
    Money(Box<[Field]>),
    Array(Box<Node>),
}

/// What kind of text a string property holds, guessed from its name.
#[derive(Debug, Clone, Copy)]
enum TextHint {
    /// The row's own `Id`: unique per row.
    RowId,
    /// Another entity's id; `salt` separates the pools of different properties.
    ForeignId {
        salt: u64,
    },
    Currency,
    Code,
    Email,
    Name,
    Free,
}

/// Where a value sits, for choices that must cycle deterministically by row index.
#[derive(Clone, Copy)]
struct Slot {
    /// `Some(n)` for top-level properties in [`Variety::Thorough`]: the n-th turn of this
    /// property, so consecutive rows walk through enum values and tricky strings in order.
    turn: Option<u64>,
}

/// Per-row state: the random stream and where the text goes.
struct RowWriter<'a> {
    rng: fastrand::Rng,
    index: u64,
    seed: u64,
    variety: Variety,
    tricky: &'a [String],
    out: &'a mut Vec<u8>,
    /// The currency of every amount of the row, drawn at its first.
    currency: Option<&'static str>,
    /// The tax rate of every amount of the row, drawn at its first.
    tax: Option<TaxRate>,
}

/// A tax rate: its code (`None` for untaxed amounts) and percentage.
#[derive(Debug, Clone, Copy)]
struct TaxRate {
    code: Option<&'static str>,
    percent: i64,
}

/// Tax rates of realistic amounts; one row in ten is untaxed.
const TAX_RATES: &[TaxRate] = &[
    TaxRate {
        code: Some("CZ-2019-21"),
        percent: 21,
    },
    TaxRate {
        code: Some("CZ-2019-15"),
        percent: 15,
    },
    TaxRate {
        code: Some("GB-2022-20"),
        percent: 20,
    },
    TaxRate {
        code: Some("DE-2020-1-L"),
        percent: 7,
    },
    TaxRate {
        code: Some("AT-2020-1-R"),
        percent: 10,
    },
];

impl Generator {
    /// Compiles `schema` into a write plan; rows depend only on `(seed, index)` and `variety`.
    pub fn new(schema: &EntitySchema, seed: u64, variety: Variety) -> Self {
        Generator {
            root: compile_fields(&schema.properties, 0),
            seed,
            variety,
            buf: Vec::new(),
            tricky: tricky_strings(),
        }
    }

    /// Keeps the top-level property `name` within `within` in every row (and always
    /// present), as in an export filtered on it; a property that is not a top-level instant
    /// (for [`Within::Seconds`]) or date (for [`Within::Days`]) of the schema, or an empty
    /// range, is left as it was. Returns whether the property is now confined.
    pub fn confine(&mut self, name: &str, within: Within) -> bool {
        let mut key = Vec::with_capacity(name.len() + 3);
        write_str(&mut key, name);
        key.push(b':');
        let Some(field) = self.root.iter_mut().find(|f| *f.key == *key) else {
            return false;
        };
        let node = match (&field.node, within) {
            _ if within.is_empty() => return false,
            (Node::Timestamp | Node::TimestampIn { .. }, Within::Seconds { start, end }) => {
                Node::TimestampIn { start, end }
            }
            (Node::Date | Node::DateIn { .. }, Within::Days { first, last }) => {
                Node::DateIn { first, last }
            }
            _ => return false,
        };
        field.node = node;
        field.required = true;
        true
    }

    /// Appends the JSON text of row number `index` (no trailing newline). Deterministic in
    /// `(seed, index)`.
    pub fn write_row(&mut self, index: u64, out: &mut Vec<u8>) {
        self.render(index, out);
    }

    /// Writes `rows` lines (each row + `'\n'`) starting at row `first_index` to `out`; returns
    /// the number of bytes written.
    pub fn write_lines(
        &mut self,
        first_index: u64,
        rows: u64,
        out: &mut impl Write,
    ) -> io::Result<u64> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = self.write_lines_via(&mut buf, first_index, rows, out);
        self.buf = buf;
        result
    }

    fn write_lines_via(
        &self,
        buf: &mut Vec<u8>,
        first_index: u64,
        rows: u64,
        out: &mut impl Write,
    ) -> io::Result<u64> {
        let mut written = 0u64;
        for i in 0..rows {
            self.render(first_index.wrapping_add(i), buf);
            buf.push(b'\n');
            if buf.len() >= FLUSH_BYTES {
                out.write_all(buf)?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            out.write_all(buf)?;
            written += buf.len() as u64;
            buf.clear();
        }
        Ok(written)
    }

    fn render(&self, index: u64, out: &mut Vec<u8>) {
        let mut w = RowWriter {
            rng: fastrand::Rng::with_seed(mix(self.seed ^ mix(index))),
            index,
            seed: self.seed,
            variety: self.variety,
            tricky: &self.tricky,
            out,
            currency: None,
            tax: None,
        };
        w.object(&self.root, true);
    }
}

fn compile_fields(props: &[Property], depth: usize) -> Box<[Field]> {
    props
        .iter()
        .map(|p| {
            let node = compile_node(&p.data_type, &p.name, depth);
            let is_row_id = matches!(node, Node::Text(TextHint::RowId));
            let mut key = Vec::with_capacity(p.name.len() + 3);
            write_str(&mut key, &p.name);
            key.push(b':');
            let role = match (p.name.as_str(), &node) {
                ("UnitCount", Node::Integer) => Role::UnitCount,
                ("UnitAmount", Node::Money(_)) => Role::UnitAmount,
                ("OriginalAmount", Node::Money(_)) => Role::OriginalAmount,
                _ => Role::Plain,
            };
            Field {
                key: key.into(),
                required: p.required || is_row_id,
                node,
                role,
            }
        })
        .collect()
}

fn compile_node(dt: &DataType, name: &str, depth: usize) -> Node {
    match dt {
        DataType::String => Node::Text(text_hint(name, depth)),
        DataType::Integer => Node::Integer,
        DataType::Decimal => Node::Decimal,
        DataType::Double => Node::Double,
        DataType::Boolean => Node::Boolean,
        DataType::Timestamp => Node::Timestamp,
        DataType::Date => Node::Date,
        DataType::Json => Node::Json,
        DataType::Enum(e) => Node::Enum(
            e.values
                .iter()
                .map(|v| {
                    let mut b = Vec::with_capacity(v.len() + 2);
                    write_str(&mut b, v);
                    b.into()
                })
                .collect(),
        ),
        DataType::Object(props, _) if depth < MAX_DEPTH && is_amount(props) => {
            Node::Money(compile_fields(props, depth + 1))
        }
        DataType::Object(props, _) if depth < MAX_DEPTH => {
            Node::Object(compile_fields(props, depth + 1))
        }
        DataType::Object(..) => Node::Object(Box::new([])),
        // `ReservationIds` holds values like a `ReservationId`: name the items in the singular.
        DataType::Array(item) => Node::Array(Box::new(compile_node(
            item,
            name.strip_suffix('s').unwrap_or(name),
            depth + 1,
        ))),
    }
}

/// Property names of an object and a test of each one's type.
type Shape<'a> = &'a [(&'a str, fn(&DataType) -> bool)];

/// Whether `props` are exactly `shape`: the same names, each of a type its test accepts.
fn has_shape(props: &[Property], shape: Shape) -> bool {
    props.len() == shape.len()
        && shape
            .iter()
            .all(|(name, is)| props.iter().any(|p| p.name == *name && is(&p.data_type)))
}

/// Whether `dt` is an array of objects of `shape`.
fn is_array_of(dt: &DataType, shape: Shape) -> bool {
    matches!(dt, DataType::Array(item)
        if matches!(&**item, DataType::Object(props, _) if has_shape(props, shape)))
}

fn is_string(dt: &DataType) -> bool {
    matches!(dt, DataType::String)
}

fn is_decimal(dt: &DataType) -> bool {
    matches!(dt, DataType::Decimal)
}

/// Whether `props` are exactly the reference's `Amount`: `Currency`, `NetValue`,
/// `GrossValue`, `TaxValues` (`Code`, `Value`) and `Breakdown` (`Items`: `TaxRateCode`,
/// `NetValue`, `TaxValue`), which [`RowWriter::money`] writes.
fn is_amount(props: &[Property]) -> bool {
    const TAX_VALUE: Shape = &[("Code", is_string), ("Value", is_decimal)];
    const BREAKDOWN_ITEM: Shape = &[
        ("TaxRateCode", is_string),
        ("NetValue", is_decimal),
        ("TaxValue", is_decimal),
    ];
    const BREAKDOWN: Shape = &[("Items", |dt| is_array_of(dt, BREAKDOWN_ITEM))];
    has_shape(
        props,
        &[
            ("Currency", is_string),
            ("NetValue", is_decimal),
            ("GrossValue", is_decimal),
            ("TaxValues", |dt| is_array_of(dt, TAX_VALUE)),
            (
                "Breakdown",
                |dt| matches!(dt, DataType::Object(props, _) if has_shape(props, BREAKDOWN)),
            ),
        ],
    )
}

fn text_hint(name: &str, depth: usize) -> TextHint {
    if depth == 0 && name == "Id" {
        TextHint::RowId
    } else if name.ends_with("Id") {
        TextHint::ForeignId {
            salt: name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            }),
        }
    } else if name.contains("Currency") {
        TextHint::Currency
    } else if name.ends_with("Code") {
        TextHint::Code
    } else if name.contains("Email") {
        TextHint::Email
    } else if name.ends_with("Name") {
        TextHint::Name
    } else {
        TextHint::Free
    }
}

/// Strings that exercise a decoder's string handling: unicode, every escape, control
/// characters, JSON look-alikes and a long value.
fn tricky_strings() -> Box<[String]> {
    let mut v: Vec<String> = [
        "",
        "plain",
        "Café crème, Pokoj č. 12",
        "漢字かな交じり",
        "emoji 😀🏨 and flags 🇨🇿",
        "quote \" and backslash \\ and both \\\"",
        "line\nbreak\ttab\rreturn",
        "control \u{1} \u{8} \u{c} \u{1f} \u{7f}",
        "nul \u{0} inside",
        "slash / and </script>",
        "separators \u{2028} \u{2029}",
        "  padded  ",
        "12.50",
        "null",
        "{\"not\":\"an object\"}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push("long ".repeat(300));
    v.into()
}

/// Present, null or left out: what one optional property is in one row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Absent,
    Null,
    Present,
}

impl RowWriter<'_> {
    fn object(&mut self, fields: &[Field], top: bool) {
        self.out.push(b'{');
        let mut first = true;
        let mut scope = MoneyScope::default();
        for (k, f) in fields.iter().enumerate() {
            let presence = if f.required {
                Presence::Present
            } else {
                self.presence(k as u64, top)
            };
            if presence == Presence::Absent {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            self.out.extend_from_slice(&f.key);
            if presence == Presence::Null {
                self.out.extend_from_slice(b"null");
            } else if self.variety == Variety::Realistic && f.role == Role::UnitCount {
                let count = self.unit_count();
                scope.count = Some(count);
                write_u64(self.out, count);
            } else if let (Variety::Realistic, Node::Money(_)) = (self.variety, &f.node) {
                self.money(f.role, &mut scope);
            } else {
                let turn =
                    (top && self.variety == Variety::Thorough).then(|| self.index / 3 + k as u64);
                self.node(&f.node, Slot { turn });
            }
        }
        self.out.push(b'}');
    }

    fn presence(&mut self, k: u64, top: bool) -> Presence {
        match self.variety {
            // Mews writes `null` for an optional value it does not have.
            Variety::Realistic if self.rng.u8(..100) < 80 => Presence::Present,
            Variety::Realistic => Presence::Null,
            Variety::Thorough => {
                // Top-level: any three consecutive rows show all three states; nested: random,
                // so that states of nested properties are not locked to their parents'.
                let state = if top {
                    self.index.wrapping_add(k) % 3
                } else {
                    u64::from(self.rng.u8(..3))
                };
                match state {
                    0 => Presence::Absent,
                    1 => Presence::Null,
                    _ => Presence::Present,
                }
            }
        }
    }

    /// A choice among `n` options: in turn for top-level Thorough values, random otherwise.
    fn pick(&mut self, n: usize, slot: Slot) -> usize {
        match slot.turn {
            Some(t) => (t % n as u64) as usize,
            None => self.rng.usize(..n),
        }
    }

    fn node(&mut self, node: &Node, slot: Slot) {
        match node {
            Node::Text(hint) => self.text(*hint, slot),
            Node::Integer => self.integer(),
            Node::Decimal => self.decimal(),
            Node::Double => self.double(),
            Node::Boolean => {
                let b: &[u8] = if self.rng.bool() { b"true" } else { b"false" };
                self.out.extend_from_slice(b);
            }
            Node::Timestamp => {
                let day = FIRST_DAY + self.rng.i64(0..DAY_COUNT);
                let second = i64::from(self.rng.u32(..86_400));
                self.timestamp(day * 86_400 + second);
            }
            Node::TimestampIn { start, end } => {
                let second = self.rng.i64(*start..*end);
                self.timestamp(second);
            }
            Node::Date => {
                let day = FIRST_DAY + self.rng.i64(0..DAY_COUNT);
                self.date(day);
            }
            Node::DateIn { first, last } => {
                let day = self.rng.i64(*first..=*last);
                self.date(day);
            }
            Node::Json => self.json(),
            Node::Enum(values) => {
                if values.is_empty() {
                    self.out.extend_from_slice(b"\"\"");
                } else {
                    let i = self.pick(values.len(), slot);
                    self.out.extend_from_slice(&values[i]);
                }
            }
            Node::Object(fields) => self.object(fields, false),
            Node::Money(fields) => match self.variety {
                Variety::Realistic => self.money(Role::Plain, &mut MoneyScope::default()),
                Variety::Thorough => self.object(fields, false),
            },
            Node::Array(item) => {
                let len = match (self.variety, &**item) {
                    // Like `TaxValues`: one item in most rows.
                    (Variety::Realistic, Node::Object(_)) => match self.rng.u8(..10) {
                        0 => 0,
                        1 => 2,
                        _ => 1,
                    },
                    _ => self.rng.usize(..=3),
                };
                self.out.push(b'[');
                for i in 0..len {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.node(item, Slot { turn: None });
                }
                self.out.push(b']');
            }
        }
    }

    fn text(&mut self, hint: TextHint, slot: Slot) {
        match (hint, self.variety) {
            (TextHint::RowId, _) => {
                let a = mix(self.seed ^ mix(self.index ^ 0x1d));
                write_uuid(self.out, a, mix(a));
            }
            (TextHint::ForeignId { salt }, Variety::Realistic) => {
                let a = mix(self.seed ^ salt ^ mix(self.rng.u64(..FOREIGN_ID_POOL)));
                write_uuid(self.out, a, mix(a));
            }
            (TextHint::ForeignId { .. }, Variety::Thorough) => {
                let (a, b) = (self.rng.u64(..), self.rng.u64(..));
                write_uuid(self.out, a, b);
            }
            (TextHint::Currency, Variety::Realistic) => {
                let c = if self.rng.u8(..100) < 70 {
                    "EUR"
                } else {
                    CURRENCIES[self.rng.usize(..CURRENCIES.len())]
                };
                write_str(self.out, c);
            }
            (TextHint::Currency, Variety::Thorough) => {
                let i = self.pick(CURRENCIES.len(), slot);
                write_str(self.out, CURRENCIES[i]);
            }
            (TextHint::Code, Variety::Realistic) => {
                let c = TAX_CODES[self.rng.usize(..TAX_CODES.len())];
                write_str(self.out, c);
            }
            (TextHint::Email, Variety::Realistic) => {
                self.out.extend_from_slice(b"\"guest");
                write_u64(self.out, self.rng.u64(1..100_000));
                self.out.extend_from_slice(b"@example.com\"");
            }
            (TextHint::Name, Variety::Realistic) => {
                let prefix: &[u8] = if self.rng.bool() {
                    b"\"Guest "
                } else {
                    b"\"Company "
                };
                self.out.extend_from_slice(prefix);
                write_u64(self.out, self.rng.u64(1..100_000));
                self.out.push(b'"');
            }
            (TextHint::Free, Variety::Realistic) => {
                let s = NOTES[self.rng.usize(..NOTES.len())];
                write_str(self.out, s);
            }
            (
                TextHint::Code | TextHint::Email | TextHint::Name | TextHint::Free,
                Variety::Thorough,
            ) => {
                let i = self.pick(self.tricky.len(), slot);
                let s = &self.tricky[i];
                // Also send some strings with every non-ASCII character as `\u` escapes
                // (surrogate pairs included), which decoders must turn back into the same text.
                if self.rng.u8(..4) == 0 {
                    write_str_escaped_fully(self.out, s);
                } else {
                    write_str(self.out, s);
                }
            }
        }
    }

    fn integer(&mut self) {
        match self.variety {
            Variety::Realistic => {
                let n = if self.rng.u8(..10) < 7 {
                    1
                } else {
                    self.rng.u64(..=30)
                };
                write_u64(self.out, n);
            }
            Variety::Thorough => {
                let n: i64 = match self.rng.u8(..16) {
                    0 => i64::MAX,
                    1 => i64::MIN,
                    2 => -1,
                    3 => 0,
                    _ => self.rng.i64(0..=1000),
                };
                write_i64(self.out, n);
            }
        }
    }

    fn decimal(&mut self) {
        match self.variety {
            Variety::Realistic => {
                let cents = self.cents();
                write_cents(self.out, cents);
            }
            Variety::Thorough => {
                if self.rng.u8(..8) == 0 {
                    let s = DECIMAL_EDGES[self.rng.usize(..DECIMAL_EDGES.len())];
                    self.out.extend_from_slice(s.as_bytes());
                    return;
                }
                // At most 29 integer digits and 9 fractional digits: exactly what
                // Decimal128(38, 9) holds. Trailing fractional zeros are kept on purpose.
                let int_digits = if self.rng.u8(..4) == 0 {
                    self.rng.u32(1..=29)
                } else {
                    self.rng.u32(1..=4)
                };
                let frac_digits = self.rng.u32(0..=9);
                if self.rng.u8(..3) == 0 {
                    self.out.push(b'-');
                }
                write_u128(self.out, self.rng.u128(..10u128.pow(int_digits)));
                if frac_digits > 0 {
                    self.out.push(b'.');
                    let frac = self.rng.u64(..10u64.pow(frac_digits));
                    write_u64_padded(self.out, frac, frac_digits as usize);
                }
            }
        }
    }

    /// A realistic count of units: mostly 1, up to 30.
    fn unit_count(&mut self) -> u64 {
        if self.rng.u8(..10) < 7 {
            1
        } else {
            self.rng.u64(2..=30)
        }
    }

    /// Realistic money in cents: mostly small amounts, some large, some refunds.
    fn cents(&mut self) -> i64 {
        match self.rng.u8(..100) {
            0..=59 => self.rng.i64(0..100_000),
            60..=84 => self.rng.i64(0..10_000_000),
            85..=89 => self.rng.i64(0..=1_000_000_000),
            90..=94 => self.rng.i64(0..1_000) * 100,
            _ => -self.rng.i64(1..100_000),
        }
    }

    /// An `Amount` that adds up: gross = net + tax, the tax values and breakdown saying
    /// the same, in the row's currency and tax rate. Its net follows `role` and the
    /// object's other amounts in `scope`.
    fn money(&mut self, role: Role, scope: &mut MoneyScope) {
        let net = match (role, scope.unit, scope.total) {
            (Role::UnitAmount, ..) => {
                let unit = self.cents();
                scope.unit = Some(unit);
                unit
            }
            (Role::OriginalAmount, _, Some(total)) => total,
            (Role::Plain, Some(unit), _) => {
                // At most 30 units of at most 10⁷ currency units: far within i64 cents.
                let count = i64::try_from(scope.count.unwrap_or(1)).unwrap_or(1);
                unit.saturating_mul(count)
            }
            _ => self.cents(),
        };
        if role != Role::UnitAmount {
            scope.total = Some(net);
        }
        let currency = match self.currency {
            Some(c) => c,
            None => {
                let c = if self.rng.u8(..100) < 70 {
                    "EUR"
                } else {
                    CURRENCIES[self.rng.usize(..CURRENCIES.len())]
                };
                *self.currency.insert(c)
            }
        };
        let rate = match self.tax {
            Some(t) => t,
            None => {
                let t = if self.rng.u8(..10) == 0 {
                    TaxRate {
                        code: None,
                        percent: 0,
                    }
                } else {
                    TAX_RATES[self.rng.usize(..TAX_RATES.len())]
                };
                *self.tax.insert(t)
            }
        };
        // Rounded half away from zero, to the cent.
        let tax = (net * rate.percent * 2 + 100 * net.signum()) / 200;
        let out = &mut *self.out;
        out.extend_from_slice(b"{\"Currency\":");
        write_str(out, currency);
        out.extend_from_slice(b",\"NetValue\":");
        write_cents(out, net);
        out.extend_from_slice(b",\"GrossValue\":");
        write_cents(out, net + tax);
        out.extend_from_slice(b",\"TaxValues\":[");
        if let Some(code) = rate.code {
            out.extend_from_slice(b"{\"Code\":");
            write_str(out, code);
            out.extend_from_slice(b",\"Value\":");
            write_cents(out, tax);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"Breakdown\":{\"Items\":[{\"TaxRateCode\":");
        match rate.code {
            Some(code) => write_str(out, code),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"NetValue\":");
        write_cents(out, net);
        out.extend_from_slice(b",\"TaxValue\":");
        write_cents(out, tax);
        out.extend_from_slice(b"}]}}");
    }

    /// A coordinate-like float in its shortest spelling (`50.08745150000001`); thorough
    /// rows also get any finite float, from subnormals to the largest.
    fn double(&mut self) {
        let v = match self.variety {
            Variety::Thorough if self.rng.u8(..4) == 0 => loop {
                let v = f64::from_bits(self.rng.u64(..));
                if v.is_finite() {
                    break v;
                }
            },
            _ => self.rng.f64() * 180.0 - 90.0,
        };
        // Rust's shortest round-trip spelling is valid JSON (`1e300`, `-0.0`, `5e-324`).
        self.out.extend_from_slice(format!("{v:?}").as_bytes());
    }

    fn date(&mut self, day: i64) {
        self.out.push(b'"');
        write_date(self.out, day);
        self.out.push(b'"');
    }

    /// Writes the instant `at` (seconds since the epoch), in this variety's spellings.
    fn timestamp(&mut self, at: i64) {
        let day = at.div_euclid(86_400);
        let second = at.rem_euclid(86_400) as u32;
        self.out.push(b'"');
        write_date(self.out, day);
        self.out.push(b'T');
        write_2(self.out, second / 3600);
        self.out.push(b':');
        write_2(self.out, second / 60 % 60);
        self.out.push(b':');
        write_2(self.out, second % 60);
        match self.variety {
            Variety::Realistic => self.out.extend_from_slice(b"Z\""),
            Variety::Thorough => {
                // Up to microseconds, the precision the table keeps.
                let frac_digits = self.rng.u32(0..=6);
                if frac_digits > 0 && self.rng.bool() {
                    self.out.push(b'.');
                    write_u64_padded(
                        self.out,
                        self.rng.u64(..10u64.pow(frac_digits)),
                        frac_digits as usize,
                    );
                }
                let zone: &[u8] = if self.rng.bool() { b"Z\"" } else { b"+00:00\"" };
                self.out.extend_from_slice(zone);
            }
        }
    }

    fn json(&mut self) {
        match self.variety {
            Variety::Realistic => {
                self.out.extend_from_slice(b"{\"Key\":\"Value\",\"N\":");
                write_u64(self.out, self.rng.u64(..100));
                self.out.push(b'}');
            }
            Variety::Thorough => {
                let s = JSON_SAMPLES[self.rng.usize(..JSON_SAMPLES.len())];
                self.out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

const CURRENCIES: &[&str] = &["EUR", "CZK", "USD", "GBP"];

const TAX_CODES: &[&str] = &[
    "DE-2020-1-L",
    "DE-2020-1-Z",
    "CZ-2019-15",
    "CZ-2019-21",
    "GB-2022-20",
    "AT-2020-1-R",
];

const NOTES: &[&str] = &[
    "Additional note",
    "Late check-out requested",
    "Breakfast included",
    "Paid at reception",
    "Airport transfer",
    "Parking space 14",
    "Pokoj č. 12, přistýlka",
    "Café au lait for two",
];

/// Decimal texts worth sending on purpose: zero in every spelling, the smallest step, and
/// the largest magnitudes Decimal128(38, 9) holds.
const DECIMAL_EDGES: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.000000000",
    "0.000000001",
    "-0.000000001",
    "1.000000000",
    "123456789.123456789",
    "99999999999999999999999999999.999999999",
    "-99999999999999999999999999999.999999999",
];

/// Open-shaped JSON objects, from empty to nested with unicode and escapes.
const JSON_SAMPLES: &[&str] = &[
    "{}",
    r#"{"Key":"Value","N":1}"#,
    r#"{"Nested":{"List":[1,2.5,null,true,false,"x"],"Empty":[]},"Text":"é 漢字 \"q\" \\ \n"}"#,
    r#"{"Escaped":"\u00e9\ud83d\ude00\u0001","Neg":-12,"Big":12345678901234567890}"#,
    r#"{ "Spaced" : [ { } , [ ] ] }"#,
];

/// SplitMix64's finaliser: spreads `(seed, index)` into independent-looking 64-bit values.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes a quoted version-4 UUID made from 128 random bits.
fn write_uuid(out: &mut Vec<u8>, a: u64, b: u64) {
    let a = (a & !(0xf << 12)) | (0x4 << 12);
    let b = (b & !(0b11 << 62)) | (0b10 << 62);
    let mut s = [0u8; 38];
    s[0] = b'"';
    s[37] = b'"';
    let mut pos = 1;
    for (i, nibble) in (0..16)
        .map(|i| (a >> (60 - 4 * i)) & 0xf)
        .chain((0..16).map(|i| (b >> (60 - 4 * i)) & 0xf))
        .enumerate()
    {
        if matches!(i, 8 | 12 | 16 | 20) {
            s[pos] = b'-';
            pos += 1;
        }
        s[pos] = HEX[nibble as usize];
        pos += 1;
    }
    out.extend_from_slice(&s);
}

/// Two-digit pairs "00".."99", so numbers are formatted two digits per division.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while n >= 100 {
        let p = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    }
    if n >= 10 {
        let p = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(out, n.unsigned_abs());
}

/// Writes `n` with exactly `width` digits, zero-padded on the left.
fn write_u64_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let start = out.len();
    write_u64(out, n);
    let digits = out.len() - start;
    if digits < width {
        out.splice(start..start, std::iter::repeat_n(b'0', width - digits));
    }
}

fn write_u128(out: &mut Vec<u8>, n: u128) {
    const TEN_POW_19: u128 = 10_000_000_000_000_000_000;
    if let Ok(small) = u64::try_from(n) {
        write_u64(out, small);
    } else {
        write_u128(out, n / TEN_POW_19);
        write_u64_padded(out, (n % TEN_POW_19) as u64, 19);
    }
}

fn write_2(out: &mut Vec<u8>, n: u32) {
    let p = n as usize * 2;
    out.extend_from_slice(&PAIRS[p..p + 2]);
}

/// Writes an amount of cents the way the reference's examples are (`93.46`, `100`, `5.5`).
fn write_cents(out: &mut Vec<u8>, cents: i64) {
    if cents < 0 {
        out.push(b'-');
    }
    let c = cents.unsigned_abs();
    write_u64(out, c / 100);
    let frac = c % 100;
    if frac != 0 {
        out.push(b'.');
        out.push(b'0' + (frac / 10) as u8);
        if !frac.is_multiple_of(10) {
            out.push(b'0' + (frac % 10) as u8);
        }
    }
}

/// Writes `YYYY-MM-DD` for a day counted from 1970-01-01.
fn write_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    write_2(out, (y / 100) as u32);
    write_2(out, (y % 100) as u32);
    out.push(b'-');
    write_2(out, m);
    out.push(b'-');
    write_2(out, d);
}

/// Writes `s` as a JSON string, escaping only what JSON requires (quote, backslash and
/// control characters), as most producers do.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes `s` as a JSON string with every non-ASCII character, every control character and
/// `/` escaped (`\uXXXX`, surrogate pairs for characters beyond the BMP; `\/`).
fn write_str_escaped_fully(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' => out.extend_from_slice(b"\\/"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX[usize::from((*unit >> shift) & 0xf)]);
                    }
                }
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};

    fn rows(schema: &EntitySchema, seed: u64, variety: Variety, n: u64) -> Vec<Value> {
        let mut g = Generator::new(schema, seed, variety);
        let mut text = Vec::new();
        g.write_lines(0, n, &mut text).unwrap();
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice(l)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l)))
            })
            .collect()
    }

    fn is_uuid(s: &str) -> bool {
        s.len() == 36
            && s.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    }

    fn is_timestamp(s: &str) -> bool {
        let b = s.as_bytes();
        let rest = if b.len() >= 19 && b[10] == b'T' && b[13] == b':' && b[16] == b':' {
            &s[19..]
        } else {
            return false;
        };
        let rest = match rest.strip_prefix('.') {
            Some(r) => {
                let digits = r.bytes().take_while(u8::is_ascii_digit).count();
                if !(1..=6).contains(&digits) {
                    return false;
                }
                &r[digits..]
            }
            None => rest,
        };
        is_date(&s[..10]) && (rest == "Z" || rest == "+00:00")
    }

    fn is_date(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && s.starts_with("202")
            && (2022..=2024).contains(&s[..4].parse::<i32>().unwrap_or(0))
    }

    /// Checks a generated value against its property type; records enum values seen.
    fn check(dt: &DataType, v: &Value, path: &str, seen: &mut BTreeMap<String, BTreeSet<String>>) {
        match (dt, v) {
            (DataType::String, Value::String(_)) => {}
            (DataType::Integer, Value::Number(n)) => {
                assert!(n.is_i64() || n.is_u64(), "{path}: {n}")
            }
            (DataType::Decimal | DataType::Double, Value::Number(_))
            | (DataType::Boolean, Value::Bool(_)) => {}
            (DataType::Timestamp, Value::String(s)) => assert!(is_timestamp(s), "{path}: {s}"),
            (DataType::Date, Value::String(s)) => assert!(is_date(s), "{path}: {s}"),
            (DataType::Json, Value::Object(_)) => {}
            (DataType::Enum(e), Value::String(s)) => {
                assert!(e.values.contains(s), "{path}: {s} is not a {}", e.name);
                seen.entry(e.name.clone()).or_default().insert(s.clone());
            }
            (DataType::Object(props, _), Value::Object(map)) => {
                check_object(props, map, path, seen)
            }
            (DataType::Array(item), Value::Array(items)) => {
                assert!(items.len() <= 3, "{path}: {} items", items.len());
                for (i, x) in items.iter().enumerate() {
                    check(item, x, &format!("{path}[{i}]"), seen);
                }
            }
            _ => panic!("{path}: {v} is not a {}", dt.spelling()),
        }
    }

    fn check_object(
        props: &[Property],
        map: &serde_json::Map<String, Value>,
        path: &str,
        seen: &mut BTreeMap<String, BTreeSet<String>>,
    ) {
        for key in map.keys() {
            assert!(
                props.iter().any(|p| &p.name == key),
                "{path}.{key} is not in the schema"
            );
        }
        for p in props {
            let here = format!("{path}.{}", p.name);
            match map.get(&p.name) {
                None | Some(Value::Null) => assert!(!p.required, "{here} is required"),
                Some(v) => check(&p.data_type, v, &here, seen),
            }
        }
    }

    #[test]
    fn every_entity_generates_rows_that_follow_its_schema() {
        for s in schema::all() {
            for variety in [Variety::Realistic, Variety::Thorough] {
                let mut ids = BTreeSet::new();
                for row in rows(s, 7, variety, 300) {
                    let Value::Object(map) = &row else {
                        panic!("{}: not an object: {row}", s.entity)
                    };
                    let id = map
                        .get("Id")
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("{}: no Id", s.entity));
                    assert!(is_uuid(id), "{}: Id {id}", s.entity);
                    assert!(ids.insert(id.to_owned()), "{}: Id {id} repeated", s.entity);
                    check_object(&s.properties, map, &s.entity, &mut BTreeMap::new());
                }
            }
        }
    }

    #[test]
    fn rows_depend_only_on_seed_and_index() {
        let s = schema::find("OrderItem").unwrap();
        for variety in [Variety::Realistic, Variety::Thorough] {
            let mut a = Generator::new(s, 42, variety);
            let mut b = Generator::new(s, 42, variety);
            let mut other_seed = Generator::new(s, 43, variety);
            for index in [0, 1, 2, 1000, u64::MAX] {
                let (mut x, mut y, mut z) = (Vec::new(), Vec::new(), Vec::new());
                // Generate out of order on one side: no state may carry from row to row.
                b.write_row(index.wrapping_add(5), &mut Vec::new());
                a.write_row(index, &mut x);
                b.write_row(index, &mut y);
                other_seed.write_row(index, &mut z);
                assert_eq!(x, y);
                assert_ne!(x, z);
            }
        }
    }

    #[test]
    fn confined_properties_stay_within_their_range_and_are_always_present() {
        let start = 1_717_200_000; // 2024-06-01T00:00:00Z
        let window = Within::Seconds {
            start,
            end: start + 3_600,
        };
        for variety in [Variety::Realistic, Variety::Thorough] {
            let mut g = Generator::new(schema::find("OrderItem").unwrap(), 7, variety);
            assert!(g.confine("UpdatedUtc", window));
            let rows = (0..300).map(|i| {
                let mut line = Vec::new();
                g.write_row(i, &mut line);
                serde_json::from_slice::<Value>(&line).unwrap()
            });
            for row in rows {
                let text = row["UpdatedUtc"].as_str().expect("present");
                let micros = crate::decode::parse_timestamp_micros(text).unwrap();
                assert!((start * 1_000_000..(start + 3_600) * 1_000_000).contains(&micros));
            }
        }
        let mut ledger = Generator::new(schema::find("LedgerEntry").unwrap(), 7, Variety::Thorough);
        let (first, last) = (19_875, 19_876); // 2024-06-01 and 02
        assert!(ledger.confine("PostingDate", Within::Days { first, last }));
        let mut seen = BTreeSet::new();
        for i in 0..100 {
            let mut line = Vec::new();
            ledger.write_row(i, &mut line);
            let row: Value = serde_json::from_slice(&line).unwrap();
            seen.insert(row["PostingDate"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            seen,
            BTreeSet::from(["2024-06-01".into(), "2024-06-02".into()])
        );
    }

    /// Cents of a decimal text with at most two fractional digits.
    fn cents_of(v: &Value) -> i64 {
        let text = v
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let negative = int.starts_with('-');
        let int: i64 = int.trim_start_matches('-').parse().unwrap();
        let frac: i64 = format!("{frac:0<2}").parse().unwrap();
        let cents = int * 100 + frac;
        if negative {
            -cents
        } else {
            cents
        }
    }

    #[test]
    fn realistic_amounts_add_up() {
        for entity in ["OrderItem", "Payment", "Bill"] {
            for row in rows(schema::find(entity).unwrap(), 11, Variety::Realistic, 300) {
                let mut amounts = Vec::new();
                collect_amounts(&row, &mut amounts);
                let currencies: BTreeSet<&str> = amounts
                    .iter()
                    .map(|a| a["Currency"].as_str().unwrap())
                    .collect();
                assert!(currencies.len() <= 1, "{entity}: {row}");
                for a in &amounts {
                    let (net, gross) = (cents_of(&a["NetValue"]), cents_of(&a["GrossValue"]));
                    let taxes: i64 = a["TaxValues"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| cents_of(&t["Value"]))
                        .sum();
                    assert_eq!(gross, net + taxes, "{entity}: {a}");
                    let items = a["Breakdown"]["Items"].as_array().unwrap();
                    assert_eq!(
                        items.iter().map(|i| cents_of(&i["NetValue"])).sum::<i64>(),
                        net
                    );
                    assert_eq!(
                        items.iter().map(|i| cents_of(&i["TaxValue"])).sum::<i64>(),
                        taxes
                    );
                    // Taxed at a rate of at most 21%, in the direction of the net.
                    assert!(taxes.abs() <= net.abs() * 21 / 100 + 1, "{entity}: {a}");
                }
                if entity == "OrderItem" {
                    let count = row["UnitCount"].as_i64().unwrap();
                    let unit = cents_of(&row["UnitAmount"]["NetValue"]);
                    assert_eq!(cents_of(&row["Amount"]["NetValue"]), unit * count, "{row}");
                    assert_eq!(row["OriginalAmount"], row["Amount"], "{row}");
                }
            }
        }
    }

    /// Every object of the `Amount` shape in `v`.
    fn collect_amounts<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
        match v {
            Value::Object(map) => {
                if map.contains_key("GrossValue") && map.contains_key("Breakdown") {
                    out.push(v);
                }
                map.values().for_each(|v| collect_amounts(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_amounts(v, out)),
            _ => {}
        }
    }

    #[test]
    fn only_top_level_instants_and_dates_are_confined() {
        let mut g = Generator::new(schema::find("OrderItem").unwrap(), 7, Variety::Realistic);
        let seconds = Within::Seconds { start: 0, end: 10 };
        assert!(!g.confine("Id", seconds));
        assert!(!g.confine("NoSuchProperty", seconds));
        assert!(!g.confine("UpdatedUtc", Within::Days { first: 0, last: 1 }));
        assert!(!g.confine("UpdatedUtc", Within::Seconds { start: 10, end: 10 }));
        assert!(g.confine("UpdatedUtc", seconds));
    }

    #[test]
    fn write_lines_writes_rows_in_order_and_counts_bytes() {
        let s = schema::find("OrderItem").unwrap();
        let mut g = Generator::new(s, 1, Variety::Realistic);
        let mut lines = Vec::new();
        let n = g.write_lines(10, 500, &mut lines).unwrap();
        assert_eq!(n, lines.len() as u64);
        assert!(lines.len() > FLUSH_BYTES, "the test should cross a flush");
        let mut expected = Vec::new();
        for i in 10..510 {
            g.write_row(i, &mut expected);
            expected.push(b'\n');
        }
        assert_eq!(lines, expected);
    }

    #[test]
    fn thorough_rows_cover_every_enum_value_of_order_item() {
        let s = schema::find("OrderItem").unwrap();
        let mut seen = BTreeMap::new();
        for row in rows(s, 3, Variety::Thorough, 3000) {
            check_object(&s.properties, row.as_object().unwrap(), "", &mut seen);
        }
        for (e, _) in &s.enums {
            let got = seen.get(&e.name).cloned().unwrap_or_default();
            let missing: Vec<_> = e.values.iter().filter(|v| !got.contains(*v)).collect();
            assert!(
                missing.is_empty(),
                "{}: never generated {missing:?}",
                e.name
            );
        }
    }

    #[test]
    fn thorough_rows_cycle_optional_properties_through_absent_null_present() {
        for s in schema::all() {
            let rows = rows(s, 9, Variety::Thorough, 3);
            for p in s
                .properties
                .iter()
                .filter(|p| !p.required && p.name != "Id")
            {
                let states: BTreeSet<&str> = rows
                    .iter()
                    .map(|r| match r.get(&p.name) {
                        None => "absent",
                        Some(Value::Null) => "null",
                        Some(_) => "present",
                    })
                    .collect();
                assert_eq!(states.len(), 3, "{}.{}: {states:?}", s.entity, p.name);
            }
        }
    }

    #[test]
    fn realistic_rows_fill_most_optional_properties() {
        let s = schema::find("OrderItem").unwrap();
        let rows = rows(s, 5, Variety::Realistic, 1000);
        let optional: Vec<_> = s.properties.iter().filter(|p| !p.required).collect();
        let filled = rows
            .iter()
            .flat_map(|r| {
                optional
                    .iter()
                    .map(move |p| r.get(&p.name).is_some_and(|v| !v.is_null()))
            })
            .filter(|&f| f)
            .count();
        let share = filled as f64 / (rows.len() * optional.len()) as f64;
        assert!((0.7..0.9).contains(&share), "{share}");
    }

    #[test]
    fn tricky_strings_round_trip_through_a_json_parser() {
        for s in tricky_strings().iter() {
            for escape in [write_str, write_str_escaped_fully] {
                let mut text = Vec::new();
                escape(&mut text, s);
                let back: String = serde_json::from_slice(&text).unwrap();
                assert_eq!(&back, s, "{}", String::from_utf8_lossy(&text));
            }
        }
        // And every one of them reaches a top-level string column.
        let schema = schema::find("OrderItem").unwrap();
        let texts: BTreeSet<String> = rows(schema, 11, Variety::Thorough, 3 * 16 * 4)
            .into_iter()
            .flat_map(|r| {
                r.as_object()
                    .unwrap()
                    .values()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect();
        for s in tricky_strings().iter() {
            assert!(texts.contains(s), "{s:?} never generated");
        }
    }

    /// Integer and fractional digit counts of a JSON number's text.
    fn digits(text: &str) -> (usize, usize) {
        let t = text.trim_start_matches('-');
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        assert!(
            int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()),
            "{text}"
        );
        (int.len(), frac.len())
    }

    fn decimals(variety: Variety, n: u64) -> Vec<String> {
        let tricky = tricky_strings();
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                let mut w = RowWriter {
                    rng: fastrand::Rng::with_seed(i),
                    index: i,
                    seed: 0,
                    variety,
                    tricky: &tricky,
                    out: &mut out,
                    currency: None,
                    tax: None,
                };
                w.decimal();
                String::from_utf8(out).unwrap()
            })
            .collect()
    }

    #[test]
    fn decimals_fit_decimal128_38_9() {
        let realistic = decimals(Variety::Realistic, 10_000);
        for d in &realistic {
            let (int, frac) = digits(d);
            assert!(int <= 8 && frac <= 2, "{d}");
            assert!(d.parse::<f64>().unwrap().abs() <= 1e7, "{d}");
        }
        assert!(realistic.iter().any(|d| d.starts_with('-')));
        assert!(realistic.iter().any(|d| !d.contains('.')));
        let thorough = decimals(Variety::Thorough, 10_000);
        let mut frac_lens = BTreeSet::new();
        for d in &thorough {
            let (int, frac) = digits(d);
            assert!(int <= 29 && frac <= 9, "{d}");
            frac_lens.insert(frac);
        }
        assert_eq!(frac_lens.len(), 10, "{frac_lens:?}");
        assert!(thorough.iter().any(|d| digits(d).0 == 29));
    }

    #[test]
    fn numbers_and_dates_format_exactly() {
        let fmt = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = Vec::new();
            f(&mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(fmt(&|o| write_u64(o, 0)), "0");
        assert_eq!(fmt(&|o| write_u64(o, 7)), "7");
        assert_eq!(fmt(&|o| write_u64(o, 1234567)), "1234567");
        assert_eq!(fmt(&|o| write_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(fmt(&|o| write_i64(o, i64::MIN)), i64::MIN.to_string());
        assert_eq!(fmt(&|o| write_u128(o, u128::MAX)), u128::MAX.to_string());
        assert_eq!(
            fmt(&|o| write_u128(o, 10u128.pow(19))),
            "10000000000000000000"
        );
        assert_eq!(fmt(&|o| write_u64_padded(o, 42, 5)), "00042");
        assert_eq!(fmt(&|o| write_date(o, 0)), "1970-01-01");
        assert_eq!(fmt(&|o| write_date(o, FIRST_DAY)), "2022-01-01");
        assert_eq!(
            fmt(&|o| write_date(o, FIRST_DAY + 365 + 365 + 59)),
            "2024-02-29"
        );
        assert_eq!(
            fmt(&|o| write_date(o, FIRST_DAY + DAY_COUNT - 1)),
            "2024-12-31"
        );
        let uuid = fmt(&|o| write_uuid(o, 0, 0));
        assert_eq!(uuid, "\"00000000-0000-4000-8000-000000000000\"");
    }
}
