//! jq programs (through jaq) over records: compile once with located errors, run per record.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::{Map as JqMap, Num, Rc, Val};

use crate::record::{Record, Value};

type Data = data::JustLut<Val>;
type Filter = jaq_core::compile::Filter<jaq_core::Native<Data>>;

/// A compiled jq program.
pub struct JqProgram {
    filter: Filter,
}

impl std::fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JqProgram")
    }
}

/// A compile error at a character offset of the program text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JqCompileError {
    pub offset: usize,
    pub message: String,
}

impl JqProgram {
    /// Compiles `code` with jq's standard library; every error found is returned.
    pub fn compile(code: &str) -> Result<JqProgram, Vec<JqCompileError>> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let loader = Loader::new(defs);
        let at = |part: &str| -> usize {
            let range = jaq_core::load::span(code, part);
            code.get(..range.start).map_or(0, |p| p.chars().count())
        };
        let in_code = |part: &str| {
            let (start, p) = (code.as_ptr() as usize, part.as_ptr() as usize);
            p >= start && p <= start + code.len()
        };
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let mut out = Vec::new();
                for (_, error) in errors {
                    match error {
                        jaq_core::load::Error::Io(errs) => {
                            for (path, msg) in errs {
                                out.push(JqCompileError {
                                    offset: 0,
                                    message: format!("cannot load module {path}: {msg}"),
                                });
                            }
                        }
                        jaq_core::load::Error::Lex(errs) => {
                            for (expect, part) in errs {
                                out.push(JqCompileError {
                                    offset: if in_code(part) { at(part) } else { 0 },
                                    message: format!("expected {}", expect.as_str()),
                                });
                            }
                        }
                        jaq_core::load::Error::Parse(errs) => {
                            for (expect, found) in errs {
                                let found_text = if found.is_empty() {
                                    "end of expression".to_string()
                                } else {
                                    format!("`{found}`")
                                };
                                out.push(JqCompileError {
                                    offset: if in_code(found) { at(found) } else { 0 },
                                    message: format!(
                                        "expected {}, found {found_text}",
                                        expect.as_str()
                                    ),
                                });
                            }
                        }
                    }
                }
                out
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| {
                let mut out = Vec::new();
                for (_, errs) in errors {
                    for (name, undefined) in errs {
                        let what = match &undefined {
                            jaq_core::compile::Undefined::Filter(arity) => {
                                format!("{name}/{arity}")
                            }
                            _ => name.to_string(),
                        };
                        out.push(JqCompileError {
                            offset: if in_code(name) { at(name) } else { 0 },
                            message: format!("undefined {} `{what}`", undefined.as_str()),
                        });
                    }
                }
                out
            })?;
        Ok(JqProgram { filter })
    }

    /// Runs the program on `input`; every output, or the first error.
    pub fn run(&self, input: Val) -> Result<Vec<Val>, String> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        let mut out = Vec::new();
        for result in self.filter.id.run((ctx, input)) {
            match result {
                Ok(v) => out.push(v),
                Err(exn) => return Err(describe_exception(exn)),
            }
        }
        Ok(out)
    }

    /// Runs the program on `input` and returns its first output, if any, without computing
    /// the rest.
    pub fn first(&self, input: Val) -> Result<Option<Val>, String> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        match self.filter.id.run((ctx, input)).next() {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(exn)) => Err(describe_exception(exn)),
        }
    }
}

fn describe_exception(exn: jaq_core::Exn<'_, Val>) -> String {
    match exn.get_err() {
        Ok(error) => format!("jq error: {error}"),
        Err(exn) => match exn.get_halt() {
            Ok(code) => format!("jq program called halt (exit code {code})"),
            Err(_) => "jq program ended abnormally".to_string(),
        },
    }
}

/// Whether a jq value counts as true (anything but `false` and `null`).
pub fn truthy(v: &Val) -> bool {
    !matches!(v, Val::Null | Val::Bool(false))
}

/// A JSON value as a jq value.
pub fn to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::Num(Num::Float(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => Val::Arr(Rc::new(items.iter().map(to_val).collect())),
        Value::Object(map) => record_to_val(map),
    }
}

/// A record as a jq object.
pub fn record_to_val(record: &Record) -> Val {
    let mut map = JqMap::with_capacity_and_hasher(record.len(), Default::default());
    for (k, v) in record {
        map.insert(Val::from(k.clone()), to_val(v));
    }
    Val::obj(map)
}

/// A jq value as a JSON value. NaN and infinities become null, as in jq.
pub fn from_val(value: Val) -> Result<Value, String> {
    Ok(match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(b),
        Val::Num(n) => num_to_json(&n),
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        Val::Arr(items) => Value::Array(
            Rc::try_unwrap(items)
                .unwrap_or_else(|rc| (*rc).clone())
                .into_iter()
                .map(from_val)
                .collect::<Result<_, _>>()?,
        ),
        Val::Obj(map) => Value::Object(map_to_record(
            Rc::try_unwrap(map).unwrap_or_else(|rc| (*rc).clone()),
        )?),
    })
}

fn map_to_record(map: JqMap) -> Result<Record, String> {
    let mut record = Record::with_capacity(map.len());
    for (k, v) in map {
        let key = match k {
            Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(&b).into_owned(),
            other => {
                return Err(format!(
                    "jq produced an object key that is not a string: {other}"
                ));
            }
        };
        record.insert(key, from_val(v)?);
    }
    Ok(record)
}

/// A jq value that must be an object, as a record.
pub fn val_to_record(value: Val) -> Result<Record, String> {
    match value {
        Val::Obj(map) => map_to_record(Rc::try_unwrap(map).unwrap_or_else(|rc| (*rc).clone())),
        other => Err(format!(
            "jq produced {}, not an object: {}",
            val_kind(&other),
            short(&other)
        )),
    }
}

fn val_kind(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "a boolean",
        Val::Num(_) => "a number",
        Val::TStr(_) | Val::BStr(_) => "a string",
        Val::Arr(_) => "a list",
        Val::Obj(_) => "an object",
    }
}

fn short(v: &Val) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        s.chars().take(60).collect::<String>() + "…"
    } else {
        s
    }
}

fn num_to_json(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        other => {
            let text = other.to_string();
            if let Ok(i) = text.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = text.parse::<u64>() {
                Value::from(u)
            } else {
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn runs_programs_on_records() {
        let p = JqProgram::compile(r#".tags = (.tags | split(","))"#).unwrap();
        let out = p
            .run(record_to_val(&rec(json!({"id": 1, "tags": "a,b"}))))
            .unwrap();
        assert_eq!(out.len(), 1);
        let r = val_to_record(out.into_iter().next().unwrap()).unwrap();
        assert_eq!(Value::Object(r), json!({"id": 1, "tags": ["a", "b"]}));
    }

    #[test]
    fn round_trips_values() {
        let v = json!({"a": [1, -2, 2.5, null, true, "ü"], "b": {"c": 18446744073709551615u64}});
        assert_eq!(from_val(to_val(&v)).unwrap(), v);
    }

    #[test]
    fn compile_errors_have_offsets() {
        let errs = JqProgram::compile(".email != null and (").unwrap_err();
        assert!(!errs.is_empty());
        let errs = JqProgram::compile(".a | nosuchfn(1)").unwrap_err();
        assert_eq!(errs[0].offset, 5);
        assert_eq!(errs[0].message, "undefined filter `nosuchfn/1`");
        let errs = JqProgram::compile(".a | ]").unwrap_err();
        assert_eq!(errs[0].offset, 5, "{errs:?}");
    }

    #[test]
    fn runtime_errors_and_halt_are_errors() {
        let p = JqProgram::compile(".a + 1").unwrap();
        assert!(
            p.run(record_to_val(&rec(json!({"a": "x"}))))
                .unwrap_err()
                .starts_with("jq error")
        );
        let p = JqProgram::compile("halt").unwrap();
        assert!(p.run(Val::Null).unwrap_err().contains("halt"));
    }

    #[test]
    fn programs_are_send() {
        fn send<T: Send>() {}
        send::<JqProgram>();
    }
}
