//! Simple `filter` and `skip` predicates, recognised from their jq text and evaluated on the
//! record directly: field paths (`.a`, `.a.b`, `."odd key"`), literals (`null`, `true`,
//! `false`, numbers, strings), comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`), `and`, `or`,
//! `| not` and parentheses. jq converts the whole record to its own values for every record;
//! a recognised predicate reads only the fields it names (issue 15: the convert benchmark's
//! `.email != null`).
//!
//! It is jq, not a reimplementation of it: comparisons convert the two sides to jq values and
//! use jq's own ordering, and truthiness is jq's. Where jq would raise an error (a path
//! through a string, a number or an array) evaluation gives up (`None`) and the caller runs
//! jq, which raises it. A corpus test checks every recognised predicate against jq.

use std::cmp::Ordering;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use serde_json::Value;

use crate::jq::to_val;
use crate::record::Record;

/// A recognised predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// A field path (keys from the record down); a missing key or a null reads as null.
    Path(Vec<String>),
    Literal(Value),
    Compare(Box<Predicate>, Op, Box<Predicate>),
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
    Not(Box<Predicate>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
        }
    }
}

/// What an expression evaluates to: a value of the record (borrowed), a literal, or the
/// boolean of a comparison or connective.
enum Out<'a> {
    Value(Option<&'a Value>),
    Bool(bool),
}

impl Out<'_> {
    fn truthy(&self) -> bool {
        match self {
            Out::Value(None | Some(Value::Null) | Some(Value::Bool(false))) => false,
            Out::Value(Some(_)) => true,
            Out::Bool(b) => *b,
        }
    }

    fn to_val(&self) -> jaq_json::Val {
        match self {
            Out::Value(None) => jaq_json::Val::Null,
            Out::Value(Some(v)) => to_val(v),
            Out::Bool(b) => jaq_json::Val::Bool(*b),
        }
    }
}

impl Predicate {
    /// The predicate `code` is, if it is one of the simple forms (else jq runs it).
    pub fn recognise(code: &str) -> Option<Predicate> {
        let tokens = tokenize(code)?;
        let mut parser = Parser { tokens, at: 0 };
        let p = parser.pipe()?;
        (parser.at == parser.tokens.len()).then_some(p)
    }

    /// Whether `record` passes (the expression is truthy), or `None` where jq would raise an
    /// error: the caller runs jq for that record.
    pub fn holds(&self, record: &Record) -> Option<bool> {
        self.eval(record).map(|o| o.truthy())
    }

    fn eval<'a>(&'a self, record: &'a Record) -> Option<Out<'a>> {
        Some(match self {
            Predicate::Path(keys) => {
                let mut at: Option<&Value> = record.get(&keys[0]);
                for key in &keys[1..] {
                    at = match at {
                        None | Some(Value::Null) => None,
                        Some(Value::Object(map)) => map.get(key),
                        // jq: "cannot index ... with ...".
                        Some(_) => return None,
                    };
                }
                Out::Value(at)
            }
            Predicate::Literal(v) => Out::Value(Some(v)),
            Predicate::Compare(a, op, b) => {
                let (a, b) = (a.eval(record)?, b.eval(record)?);
                let ordering = a.to_val().partial_cmp(&b.to_val())?;
                Out::Bool(op.holds(ordering))
            }
            Predicate::And(a, b) => Out::Bool(a.eval(record)?.truthy() && b.eval(record)?.truthy()),
            Predicate::Or(a, b) => Out::Bool(a.eval(record)?.truthy() || b.eval(record)?.truthy()),
            Predicate::Not(a) => Out::Bool(!a.eval(record)?.truthy()),
        })
    }

    /// The predicate as jq text (fully parenthesised).
    pub fn to_jq(&self) -> String {
        match self {
            Predicate::Path(keys) => keys
                .iter()
                .map(|k| {
                    if is_identifier(k) {
                        format!(".{k}")
                    } else {
                        format!(".{}", serde_json::to_string(k).expect("a string"))
                    }
                })
                .collect(),
            Predicate::Literal(v) => v.to_string(),
            Predicate::Compare(a, op, b) => format!("({} {} {})", a.to_jq(), op.text(), b.to_jq()),
            Predicate::And(a, b) => format!("({} and {})", a.to_jq(), b.to_jq()),
            Predicate::Or(a, b) => format!("({} or {})", a.to_jq(), b.to_jq()),
            Predicate::Not(a) => format!("({} | not)", a.to_jq()),
        }
    }
}

/// A predicate's operand read off a batch's columns, for [`Predicate::mask`].
enum ColumnOut<'a> {
    /// A column (a field path), or all nulls where the path names no column.
    Column(Option<&'a ArrayRef>),
    Literal(&'a Value),
    Bools(Vec<bool>),
}

/// One row's value of an operand, borrowed.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    /// A literal number that is neither (a u64 beyond i64).
    Other(&'a Value),
}

impl Cell<'_> {
    fn truthy(self) -> bool {
        !matches!(self, Cell::Null | Cell::Bool(false))
    }

    fn to_val(self) -> jaq_json::Val {
        use jaq_json::Val;
        match self {
            Cell::Null => Val::Null,
            Cell::Bool(b) => Val::Bool(b),
            Cell::Int(i) => to_val(&Value::from(i)),
            Cell::Float(f) => {
                serde_json::Number::from_f64(f).map_or(Val::Null, |n| to_val(&Value::Number(n)))
            }
            Cell::Str(s) => Val::from(s.to_string()),
            Cell::Other(v) => to_val(v),
        }
    }

    /// jq's ordering of the two (strings byte by byte, as jq).
    fn compare(self, other: Cell<'_>) -> Option<Ordering> {
        match (self, other) {
            (Cell::Str(a), Cell::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (a, b) => a.to_val().partial_cmp(&b.to_val()),
        }
    }
}

impl<'a> ColumnOut<'a> {
    fn cell(&self, i: usize) -> Cell<'a> {
        match self {
            ColumnOut::Column(None) => Cell::Null,
            ColumnOut::Column(Some(c)) => {
                if c.is_null(i) {
                    return Cell::Null;
                }
                match c.data_type() {
                    DataType::Boolean => Cell::Bool(c.as_boolean().value(i)),
                    DataType::Int64 => Cell::Int(c.as_primitive::<Int64Type>().value(i)),
                    DataType::Float64 => Cell::Float(c.as_primitive::<Float64Type>().value(i)),
                    DataType::Utf8 => Cell::Str(c.as_string::<i32>().value(i)),
                    // Ruled out by `columns`.
                    _ => Cell::Null,
                }
            }
            ColumnOut::Literal(v) => match v {
                Value::Null => Cell::Null,
                Value::Bool(b) => Cell::Bool(*b),
                Value::Number(n) if n.is_i64() => Cell::Int(n.as_i64().unwrap_or_default()),
                Value::Number(n) if n.is_f64() => Cell::Float(n.as_f64().unwrap_or_default()),
                Value::String(s) => Cell::Str(s),
                other => Cell::Other(other),
            },
            ColumnOut::Bools(b) => Cell::Bool(b[i]),
        }
    }
}

impl Predicate {
    /// For each row of `batch`, whether it passes, exactly as [`Predicate::holds`] decides
    /// on the record the row is; `None` where that cannot be told from the columns alone
    /// (a path through a column that is not an object, a value other than a null, boolean,
    /// number or string): the caller then decides row by row.
    pub fn mask(&self, batch: &RecordBatch) -> Option<BooleanArray> {
        let out = self.columns(batch)?;
        Some(
            (0..batch.num_rows())
                .map(|i| Some(out.cell(i).truthy()))
                .collect(),
        )
    }

    fn columns<'a>(&'a self, batch: &'a RecordBatch) -> Option<ColumnOut<'a>> {
        let rows = batch.num_rows();
        let truthy = |o: &ColumnOut<'_>| (0..rows).map(|i| o.cell(i).truthy()).collect();
        Some(match self {
            Predicate::Path(keys) => {
                let mut at = batch.column_by_name(&keys[0]);
                for key in &keys[1..] {
                    at = match at {
                        None => None,
                        Some(c) if c.logical_null_count() == c.len() => None,
                        Some(c) => match c.as_struct_opt() {
                            // A null object's children hold whatever: rows then decide.
                            Some(s) if s.null_count() > 0 => return None,
                            Some(s) => s.column_by_name(key),
                            // jq: "cannot index ... with ...".
                            None => return None,
                        },
                    };
                }
                if let Some(c) = at
                    && !matches!(
                        c.data_type(),
                        DataType::Null
                            | DataType::Boolean
                            | DataType::Int64
                            | DataType::Float64
                            | DataType::Utf8
                    )
                {
                    return None;
                }
                ColumnOut::Column(at)
            }
            Predicate::Literal(v) => ColumnOut::Literal(v),
            Predicate::Compare(a, op, b) => {
                let (a, b) = (a.columns(batch)?, b.columns(batch)?);
                let mut out = Vec::with_capacity(rows);
                for i in 0..rows {
                    out.push(op.holds(a.cell(i).compare(b.cell(i))?));
                }
                ColumnOut::Bools(out)
            }
            Predicate::And(a, b) => {
                let (a, b): (Vec<bool>, Vec<bool>) =
                    (truthy(&a.columns(batch)?), truthy(&b.columns(batch)?));
                ColumnOut::Bools(a.iter().zip(&b).map(|(x, y)| *x && *y).collect())
            }
            Predicate::Or(a, b) => {
                let (a, b): (Vec<bool>, Vec<bool>) =
                    (truthy(&a.columns(batch)?), truthy(&b.columns(batch)?));
                ColumnOut::Bools(a.iter().zip(&b).map(|(x, y)| *x || *y).collect())
            }
            Predicate::Not(a) => {
                let a: Vec<bool> = truthy(&a.columns(batch)?);
                ColumnOut::Bools(a.iter().map(|x| !x).collect())
            }
        })
    }
}

/// Whether jq reads `key` after a dot as is.
fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&key)
}

/// jq's keywords: `.and` is not a field in every jq.
const KEYWORDS: [&str; 21] = [
    "and", "or", "not", "if", "then", "elif", "else", "end", "as", "def", "reduce", "foreach",
    "try", "catch", "label", "import", "include", "__loc__", "null", "true", "false",
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Path(Vec<String>),
    Literal(Value),
    Op(Op),
    And,
    Or,
    Not,
    Pipe,
    Open,
    Close,
}

fn tokenize(code: &str) -> Option<Vec<Token>> {
    let bytes = code.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'#' => return None,
            b'(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            b'|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    (b'=', true) => Op::Eq,
                    (b'!', true) => Op::Ne,
                    (b'<', true) => Op::Le,
                    (b'>', true) => Op::Ge,
                    (b'<', false) => Op::Lt,
                    (b'>', false) => Op::Gt,
                    _ => return None,
                };
                tokens.push(Token::Op(op));
                i += if two { 2 } else { 1 };
            }
            b'.' => {
                let mut keys = Vec::new();
                while bytes.get(i) == Some(&b'.') {
                    i += 1;
                    match bytes.get(i) {
                        Some(b'"') => {
                            let (s, end) = string_at(code, i)?;
                            keys.push(s);
                            i = end;
                        }
                        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                            let start = i;
                            while bytes
                                .get(i)
                                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                            {
                                i += 1;
                            }
                            keys.push(code[start..i].to_string());
                        }
                        // `.` alone, `.[`, `..`: not a simple path.
                        _ => return None,
                    }
                }
                tokens.push(Token::Path(keys));
            }
            b'"' => {
                let (s, end) = string_at(code, i)?;
                tokens.push(Token::Literal(Value::String(s)));
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while bytes.get(i).is_some_and(|c| {
                    c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')
                }) {
                    // `-` and `+` only right after an exponent mark.
                    if matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
                        break;
                    }
                    i += 1;
                }
                let text = &code[start..i];
                // An integer beyond 64 bits is a big number to jq, not a float: jq's.
                if crate::record::is_integer_literal(text) && text.parse::<i64>().is_err() {
                    return None;
                }
                let n: serde_json::Number = text.parse().ok()?;
                // Only what jq reads exactly as JSON does: integers within i64, plain floats.
                if n.as_i64().is_none() && n.as_f64().is_none_or(|f| !f.is_finite()) {
                    return None;
                }
                if n.as_u64().is_some_and(|u| u > i64::MAX as u64) {
                    return None;
                }
                tokens.push(Token::Literal(Value::Number(n)));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
                tokens.push(match &code[start..i] {
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    "null" => Token::Literal(Value::Null),
                    "true" => Token::Literal(Value::Bool(true)),
                    "false" => Token::Literal(Value::Bool(false)),
                    // A function call or another keyword: jq runs it.
                    _ => return None,
                });
            }
            _ => return None,
        }
    }
    Some(tokens)
}

/// The JSON string literal starting at byte `at` of `code`, and where it ends. String
/// interpolation (`\(`) is jq's: not recognised.
fn string_at(code: &str, at: usize) -> Option<(String, usize)> {
    let bytes = code.as_bytes();
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => {
                if bytes.get(i + 1) == Some(&b'(') {
                    return None;
                }
                i += 2;
            }
            b'"' => break,
            _ => i += 1,
        }
    }
    let s: String = serde_json::from_str(&code[at..=i]).ok()?;
    Some((s, i + 1))
}

/// jq's precedence, loosest first: `|`, `or`, `and`, comparisons.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, t: &Token) -> bool {
        if self.peek() == Some(t) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// `expr (| not)*`: a pipe into anything but `not` is jq's.
    fn pipe(&mut self) -> Option<Predicate> {
        let mut p = self.or()?;
        while self.eat(&Token::Pipe) {
            if !self.eat(&Token::Not) {
                return None;
            }
            p = Predicate::Not(Box::new(p));
        }
        Some(p)
    }

    fn or(&mut self) -> Option<Predicate> {
        let mut p = self.and()?;
        while self.eat(&Token::Or) {
            p = Predicate::Or(Box::new(p), Box::new(self.and()?));
        }
        Some(p)
    }

    fn and(&mut self) -> Option<Predicate> {
        let mut p = self.compare()?;
        while self.eat(&Token::And) {
            p = Predicate::And(Box::new(p), Box::new(self.compare()?));
        }
        Some(p)
    }

    /// Comparisons do not chain in jq (`a < b < c` is an error).
    fn compare(&mut self) -> Option<Predicate> {
        let a = self.atom()?;
        if let Some(Token::Op(op)) = self.peek().cloned() {
            self.at += 1;
            let b = self.atom()?;
            if matches!(self.peek(), Some(Token::Op(_))) {
                return None;
            }
            return Some(Predicate::Compare(Box::new(a), op, Box::new(b)));
        }
        Some(a)
    }

    fn atom(&mut self) -> Option<Predicate> {
        match self.tokens.get(self.at)?.clone() {
            Token::Path(keys) => {
                self.at += 1;
                Some(Predicate::Path(keys))
            }
            Token::Literal(v) => {
                self.at += 1;
                Some(Predicate::Literal(v))
            }
            Token::Open => {
                self.at += 1;
                let p = self.pipe()?;
                self.eat(&Token::Close).then_some(p)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jq::{JqProgram, record_to_val, truthy};
    use proptest::prelude::*;
    use serde_json::json;

    fn record(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn recognises_the_simple_forms_and_leaves_the_rest_to_jq() {
        for code in [
            ".email != null",
            ".a.b == \"x\" and (.c > 3 or .d | not)",
            "(.plan == \"pro\") | not",
            ".\"odd key\" >= -1.5e3",
            ".active",
            "true",
        ] {
            assert!(Predicate::recognise(code).is_some(), "{code}");
        }
        for code in [
            ".a | length > 1",
            ".a[0] == 1",
            "test(\"x\")",
            ".a == \"\\(.b)\"",
            ".a < .b < .c",
            "select(.a)",
            ". == null",
            ".a // 1",
            ".a + 1 > 2",
            "$x == 1",
            ".a == 1 # comment",
            ".a == 99999999999999999999",
        ] {
            assert_eq!(Predicate::recognise(code), None, "{code}");
        }
        assert_eq!(
            Predicate::recognise(".a.b != null").unwrap(),
            Predicate::Compare(
                Box::new(Predicate::Path(vec!["a".into(), "b".into()])),
                Op::Ne,
                Box::new(Predicate::Literal(Value::Null))
            )
        );
    }

    #[test]
    fn a_path_through_a_scalar_is_left_to_jq_which_raises_the_error() {
        let p = Predicate::recognise(".a.b == 1").unwrap();
        assert_eq!(p.holds(&record(json!({"a": "text"}))), None);
        assert_eq!(p.holds(&record(json!({"a": null}))), Some(false));
        assert_eq!(p.holds(&record(json!({"a": {"b": 1}}))), Some(true));
        let jq = JqProgram::compile(".a.b == 1").unwrap();
        assert!(
            jq.first(record_to_val(&record(json!({"a": "text"}))))
                .is_err()
        );
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..5).prop_map(|n| json!(n)),
            prop_oneof![Just(1.0f64), Just(-0.5), Just(2.5), Just(0.0), Just(1e300)]
                .prop_map(|f| json!(f)),
            prop_oneof![
                Just(""),
                Just("a"),
                Just("B"),
                Just("é"),
                Just("ab"),
                Just("10")
            ]
            .prop_map(|s| json!(s)),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec((prop_oneof![Just("a"), Just("b")], inner), 0..3).prop_map(
                    |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                ),
            ]
        })
    }

    fn predicate() -> impl Strategy<Value = Predicate> {
        let key = prop_oneof![Just("a"), Just("b"), Just("odd key")].prop_map(str::to_string);
        let path = prop::collection::vec(key, 1..3).prop_map(Predicate::Path);
        let literal = scalar().prop_map(Predicate::Literal);
        let op = prop_oneof![
            Just(Op::Eq),
            Just(Op::Ne),
            Just(Op::Lt),
            Just(Op::Le),
            Just(Op::Gt),
            Just(Op::Ge)
        ];
        let operand = prop_oneof![path.clone(), literal];
        let compare = (operand.clone(), op, operand)
            .prop_map(|(a, op, b)| Predicate::Compare(Box::new(a), op, Box::new(b)));
        prop_oneof![compare, path].prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Predicate::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Predicate::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|a| Predicate::Not(Box::new(a))),
            ]
        })
    }

    fn records() -> impl Strategy<Value = Record> {
        prop::collection::vec(
            (prop_oneof![Just("a"), Just("b"), Just("odd key")], value()),
            0..4,
        )
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// A column of one type (or all null), as a source or kernel may make it.
    fn column(rows: usize) -> impl Strategy<Value = ArrayRef> {
        use arrow::array::{BooleanArray, Float64Array, Int64Array, NullArray, StringArray};
        use std::sync::Arc;
        let n = rows;
        prop_oneof![
            Just(Arc::new(NullArray::new(n)) as ArrayRef),
            prop::collection::vec(prop::option::of(any::<bool>()), n)
                .prop_map(|v| Arc::new(BooleanArray::from(v)) as ArrayRef),
            prop::collection::vec(prop::option::of(-3i64..3), n)
                .prop_map(|v| Arc::new(Int64Array::from(v)) as ArrayRef),
            prop::collection::vec(
                prop::option::of(prop_oneof![Just(1.0f64), Just(-0.5), Just(2.5), Just(0.0)]),
                n
            )
            .prop_map(|v| Arc::new(Float64Array::from(v)) as ArrayRef),
            prop::collection::vec(
                prop::option::of(prop_oneof![
                    Just(""),
                    Just("a"),
                    Just("B"),
                    Just("é"),
                    Just("10")
                ]),
                n
            )
            .prop_map(|v| Arc::new(StringArray::from(v)) as ArrayRef),
        ]
    }

    /// A batch of columns `a`, `b` and maybe a struct `odd key` holding `a` and `b`.
    fn batch() -> impl Strategy<Value = crate::batch::Batch> {
        use arrow::array::StructArray;
        use arrow::datatypes::{Field, Schema};
        use std::sync::Arc;
        (1usize..6).prop_flat_map(|n| {
            (column(n), column(n), column(n), column(n), any::<bool>()).prop_map(
                move |(a, b, c, d, nested)| {
                    let mut fields = vec![
                        Field::new("a", a.data_type().clone(), true),
                        Field::new("b", b.data_type().clone(), true),
                    ];
                    let mut columns = vec![a, b];
                    if nested {
                        let inner = StructArray::new(
                            vec![
                                Field::new("a", c.data_type().clone(), true),
                                Field::new("b", d.data_type().clone(), true),
                            ]
                            .into(),
                            vec![c, d],
                            None,
                        );
                        fields.push(Field::new("odd key", inner.data_type().clone(), true));
                        columns.push(Arc::new(inner));
                    }
                    crate::batch::Batch {
                        columns: RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                            .unwrap(),
                        file: "t".into(),
                        lines: None,
                        rows: (1..=n as u64).collect(),
                        seqs: (0..n as u64).collect(),
                    }
                },
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Every generated predicate, written as jq, is recognised as itself and decides
        /// every generated record as jq does; where it gives up, jq raises an error.
        #[test]
        fn recognised_predicates_decide_as_jq_does(p in predicate(), records in prop::collection::vec(records(), 1..8)) {
            let code = p.to_jq();
            let recognised = Predicate::recognise(&code);
            prop_assert_eq!(recognised.as_ref(), Some(&p), "{}", code);
            let jq = JqProgram::compile(&code).unwrap();
            for r in records {
                let by_jq = jq.first(record_to_val(&r));
                match p.holds(&r) {
                    Some(b) => prop_assert_eq!(
                        by_jq.clone().map(|v| v.map(|v| truthy(&v))),
                        Ok(Some(b)),
                        "{} on {:?}",
                        code,
                        r
                    ),
                    None => prop_assert!(by_jq.is_err(), "{} on {:?}: jq gave {:?}", code, r, by_jq),
                }
            }
        }

        /// On a batch, `mask` decides every row as `holds` does on the record the row is
        /// (and so as jq does), wherever it decides at all.
        #[test]
        fn masks_on_columns_decide_as_rows_do(p in predicate(), batch in batch()) {
            let Some(mask) = p.mask(&batch.columns) else { return Ok(()) };
            for (i, (record, _)) in batch.to_rows().into_iter().enumerate() {
                prop_assert_eq!(Some(mask.value(i)), p.holds(&record), "{} on {:?}", p.to_jq(), record);
            }
        }
    }
}
