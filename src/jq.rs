//! jq programs (through jaq) over records: compile once with located errors, run per record.

use std::cell::Cell;
use std::time::{Duration, Instant};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Bind, Compiler, Ctx, DataT, Native, Vars, data};
use jaq_json::{Map as JqMap, Num, Rc, Val};

use crate::record::{MAX_DEPTH, Record, Value};

type Filter = jaq_core::compile::Filter<Native<Guarded>>;
type Lut = jaq_core::Lut<Guarded>;

/// How long and how deep one record's evaluation may go, and how many outputs it may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JqLimits {
    /// Evaluation time per record (`jq_timeout_ms`).
    pub timeout: Duration,
    /// Outputs per record (`jq_max_outputs`).
    pub max_outputs: usize,
}

impl JqLimits {
    /// `jq_timeout_ms` default: 10 s per record.
    pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
    /// `jq_max_outputs` default.
    pub const DEFAULT_MAX_OUTPUTS: u64 = 100_000;
    /// Stack a jq evaluation may use below the stage that runs it: deeper recursion is
    /// stopped (a thread's stack is 2 MiB by default).
    pub const STACK_BYTES: usize = 1 << 20;
}

impl Default for JqLimits {
    fn default() -> JqLimits {
        JqLimits {
            timeout: Duration::from_millis(Self::DEFAULT_TIMEOUT_MS),
            max_outputs: Self::DEFAULT_MAX_OUTPUTS as usize,
        }
    }
}

/// jaq's data with a guard: jaq looks up its definitions through [`HasLut::lut`] at every
/// step of an evaluation, which is where the time and the stack depth are checked.
struct Guarded;

impl DataT for Guarded {
    type V<'a> = Val;
    type Data<'a> = GuardedLut<'a>;
}

#[derive(Clone)]
struct GuardedLut<'a>(&'a Lut);

impl<'a> data::HasLut<'a, Guarded> for GuardedLut<'a> {
    fn lut(&self) -> &'a Lut {
        guard::check();
        self.0
    }
}

/// The per-thread guard of the evaluation running on it. Hitting a limit unwinds out of
/// jaq (with `resume_unwind`, so no panic message) to [`guard::run`], which turns it into
/// an error; jaq has no other way to interrupt an evaluation.
mod guard {
    use super::*;

    #[derive(Clone, Copy)]
    struct Guard {
        /// `None`: a timeout too long to reach.
        deadline: Option<Instant>,
        timeout: Duration,
        stack_base: usize,
        /// Checks of the clock so far (it is read every few checks of the stack).
        checks: u32,
    }

    thread_local! {
        static GUARD: Cell<Option<Guard>> = const { Cell::new(None) };
        /// Steps left before the next check (most steps only count down).
        static COUNTDOWN: Cell<u32> = const { Cell::new(0) };
    }

    /// Steps between two checks: recursion deepens by no more than this many frames
    /// unchecked, well within the stack a thread has beyond the budget.
    const STEPS_PER_CHECK: u32 = 16;

    /// Why an evaluation was stopped.
    struct Stop(String);

    fn stack_address() -> usize {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize
    }

    /// Called at every evaluation step: stops the evaluation past its time or stack budget.
    pub(super) fn check() {
        let left = COUNTDOWN.with(Cell::get);
        if left > 0 {
            COUNTDOWN.with(|c| c.set(left - 1));
            return;
        }
        let Some(mut guard) = GUARD.with(Cell::get) else {
            return;
        };
        COUNTDOWN.with(|c| c.set(STEPS_PER_CHECK));
        if guard.stack_base.abs_diff(stack_address()) > JqLimits::STACK_BYTES {
            stop(format!(
                "jq recursion too deep: the evaluation used more than the {} MiB of stack a record may use",
                JqLimits::STACK_BYTES >> 20
            ));
        }
        guard.checks = guard.checks.wrapping_add(1);
        if guard.checks.is_multiple_of(16) && guard.deadline.is_some_and(|d| Instant::now() > d) {
            stop(format!(
                "jq program ran longer than jq_timeout_ms ({} ms) on this record",
                guard.timeout.as_millis()
            ));
        }
        GUARD.with(|g| g.set(Some(guard)));
    }

    /// Stops the evaluation when past the time budget (between outputs).
    pub(super) fn check_time() {
        if let Some(guard) = GUARD.with(Cell::get)
            && guard.deadline.is_some_and(|d| Instant::now() > d)
        {
            stop(format!(
                "jq program ran longer than jq_timeout_ms ({} ms) on this record",
                guard.timeout.as_millis()
            ));
        }
    }

    pub(super) fn stop(reason: String) -> ! {
        GUARD.with(|g| g.set(None));
        std::panic::resume_unwind(Box::new(Stop(reason)))
    }

    /// Runs `f` under a guard with `timeout`; a limit hit is an `Err` with its reason.
    pub(super) fn run<T>(timeout: Duration, f: impl FnOnce() -> T) -> Result<T, String> {
        GUARD.with(|g| {
            g.set(Some(Guard {
                deadline: Instant::now().checked_add(timeout),
                timeout,
                stack_base: stack_address(),
                checks: 0,
            }))
        });
        COUNTDOWN.with(|c| c.set(0));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        GUARD.with(|g| g.set(None));
        COUNTDOWN.with(|c| c.set(0));
        match result {
            Ok(v) => Ok(v),
            Err(payload) => match payload.downcast::<Stop>() {
                Ok(stop) => Err(stop.0),
                Err(other) => std::panic::resume_unwind(other),
            },
        }
    }
}

/// `range/3` as jaq's core has it, but checking the guard at every number (`[range(1e9)]`
/// would otherwise run inside one native step).
fn guarded_range() -> jaq_core::native::Fun<Guarded> {
    (
        "range",
        vec![Bind::Var(()); 3].into(),
        Native::new(|mut cv| {
            let by = cv.0.pop_var();
            let to = cv.0.pop_var();
            let from = cv.0.pop_var();
            let ascending = by > Val::from(0isize);
            let descending = by < Val::from(0isize);
            let mut next: Option<Val> = Some(from);
            Box::new(std::iter::from_fn(move || {
                guard::check();
                let x = next.take()?;
                let go_on = if ascending {
                    x < to
                } else if descending {
                    x > to
                } else {
                    x != to
                };
                if !go_on {
                    return None;
                }
                match x.clone() + by.clone() {
                    Ok(n) => next = Some(n),
                    Err(e) => return Some(Err(jaq_core::Exn::from(e))),
                }
                Some(Ok(x))
            }))
        }),
    )
}

/// `fromjson` as jaq-json has it, but refusing text nested deeper than [`MAX_DEPTH`] first
/// (jaq's parser recurses without a limit: 3000 `[` overflowed the stack).
fn guarded_fromjson() -> jaq_core::native::Fun<Guarded> {
    (
        "fromjson",
        Box::new([]),
        Native::new(|cv| {
            let fail = |e: String| -> jaq_core::ValXs<'_, Val> {
                Box::new(std::iter::once(Err(jaq_core::Exn::from(
                    jaq_core::Error::str(e),
                ))))
            };
            let text = match cv.1.try_as_utf8_bytes_owned() {
                Ok(t) => t,
                Err(e) => return Box::new(std::iter::once(Err(jaq_core::Exn::from(e)))),
            };
            if json_nesting(&text) > MAX_DEPTH {
                return fail(format!(
                    "cannot parse JSON nested deeper than the depth limit ({MAX_DEPTH} levels)"
                ));
            }
            let input = cv.1.clone();
            Box::new(
                jaq_json::bytes_valrs(text, move |s| {
                    Box::new(jaq_json::read::parse_many(s).map(move |r| {
                        r.map_err(|e| {
                            jaq_core::Error::str(format_args!("cannot parse {input} as JSON: {e}"))
                        })
                    }))
                })
                .map(|r| r.map_err(jaq_core::Exn::from)),
            )
        }),
    )
}

/// How deep the arrays and objects of JSON text nest (brackets outside strings), without
/// parsing it.
fn json_nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut strings = crate::record::JsonStrings::default();
    for &b in text {
        if strings.string_byte(b) {
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A compiled jq program.
pub struct JqProgram {
    filter: Filter,
    limits: JqLimits,
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
            .filter(|(name, args, _)| !(*name == "range" && args.len() == 3))
            .chain([guarded_range()])
            .chain(jaq_std::funs())
            .chain(jaq_json::funs().filter(|(name, _, _)| *name != "fromjson"))
            .chain([guarded_fromjson()]);
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
        Ok(JqProgram {
            filter,
            limits: JqLimits::default(),
        })
    }

    /// The program with other per-record limits.
    pub fn with_limits(mut self, limits: JqLimits) -> JqProgram {
        self.limits = limits;
        self
    }

    /// Runs the program on `input`; every output, or the first error. Past the time,
    /// stack or output limit, the error says which limit.
    pub fn run(&self, input: Val) -> Result<Vec<Val>, String> {
        let max = self.limits.max_outputs;
        let outcome = guard::run(self.limits.timeout, || {
            let ctx = Ctx::<Guarded>::new(GuardedLut(&self.filter.lut), Vars::new([]));
            let mut out = Vec::new();
            for result in self.filter.id.run((ctx, input)) {
                guard::check_time();
                match result {
                    Ok(_) if out.len() == max => {
                        return Err(format!(
                            "jq program gave more than jq_max_outputs ({max}) outputs for one record"
                        ));
                    }
                    Ok(v) => out.push(v),
                    Err(exn) => return Err(describe_exception(exn)),
                }
            }
            Ok(out)
        });
        outcome.and_then(|r| r)
    }

    /// Runs the program on `input` and returns its first output, if any, without computing
    /// the rest.
    pub fn first(&self, input: Val) -> Result<Option<Val>, String> {
        let outcome = guard::run(self.limits.timeout, || {
            let ctx = Ctx::<Guarded>::new(GuardedLut(&self.filter.lut), Vars::new([]));
            match self.filter.id.run((ctx, input)).next() {
                None => Ok(None),
                Some(Ok(v)) => Ok(Some(v)),
                Some(Err(exn)) => Err(describe_exception(exn)),
            }
        });
        outcome.and_then(|r| r)
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

/// A jq value as a JSON value. NaN and infinities become null, as in jq; integers too
/// large for 64 bits become strings of their digits (never rounded). A value nested deeper
/// than [`MAX_DEPTH`] is an error (and is taken apart without deep recursion).
pub fn from_val(value: Val) -> Result<Value, String> {
    if nesting_exceeds(&value, MAX_DEPTH) {
        drop_flat(value);
        return Err(format!(
            "jq produced a value nested deeper than the depth limit ({MAX_DEPTH} levels)"
        ));
    }
    convert(value)
}

/// Whether `value` nests deeper than `limit` levels, found without recursion.
fn nesting_exceeds(value: &Val, limit: usize) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Val>> = match v {
            Val::Arr(items) => Box::new(items.iter()),
            Val::Obj(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

/// Drops a value of any depth without recursion (dropping a deep value the usual way
/// overflows the stack).
pub fn drop_flat(value: Val) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Val::Arr(items) => {
                if let Ok(items) = Rc::try_unwrap(items) {
                    stack.extend(items);
                }
            }
            Val::Obj(map) => {
                if let Ok(map) = Rc::try_unwrap(map) {
                    stack.extend(map.into_iter().map(|(_, v)| v));
                }
            }
            _ => {}
        }
    }
}

fn convert(value: Val) -> Result<Value, String> {
    Ok(match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(b),
        Val::Num(n) => num_to_json(&n),
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        Val::Arr(items) => Value::Array(
            Rc::try_unwrap(items)
                .unwrap_or_else(|rc| (*rc).clone())
                .into_iter()
                .map(convert)
                .collect::<Result<_, _>>()?,
        ),
        Val::Obj(map) => Value::Object(
            Rc::try_unwrap(map)
                .unwrap_or_else(|rc| (*rc).clone())
                .into_iter()
                .map(|(k, v)| Ok((key_text(k)?, convert(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn key_text(key: Val) -> Result<String, String> {
    match key {
        Val::TStr(b) | Val::BStr(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        other => Err(format!(
            "jq produced an object key that is not a string: {other}"
        )),
    }
}

/// A jq value that must be an object, as a record.
pub fn val_to_record(value: Val) -> Result<Record, String> {
    match value {
        Val::Obj(_) => match from_val(value)? {
            Value::Object(record) => Ok(record),
            _ => unreachable!("an object converts to an object"),
        },
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
            } else if crate::record::is_integer_literal(&text) {
                Value::String(text)
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

    fn limited(code: &str, timeout_ms: u64, max_outputs: usize) -> JqProgram {
        JqProgram::compile(code).unwrap().with_limits(JqLimits {
            timeout: Duration::from_millis(timeout_ms),
            max_outputs,
        })
    }

    #[test]
    fn endless_programs_stop_at_the_time_limit() {
        for code in [
            "def f: f; f",
            "[range(1e12)]",
            "last(range(1e12))",
            "[repeat(1)]",
        ] {
            let p = limited(code, 20, 1000);
            let err = p.run(Val::Null).unwrap_err();
            assert!(err.contains("jq_timeout_ms (20 ms)"), "{code}: {err}");
            let err = p.first(Val::Null).unwrap_err();
            assert!(err.contains("jq_timeout_ms"), "{code}: {err}");
        }
        // The guard is gone afterwards: a quick program runs as usual.
        let p = limited("[range(5)] | length", 20, 1000);
        assert_eq!(p.run(Val::Null).unwrap().len(), 1);
        // A timeout too long to add to the clock is no timeout (and no overflow).
        let p = limited("[range(5)] | length", u64::MAX, 1000);
        assert_eq!(p.run(Val::Null).unwrap().len(), 1);
    }

    #[test]
    fn deep_recursion_stops_before_the_stack_ends() {
        for code in [
            "def f: 1 + f; f",
            "def f: [f]; f",
            "def f: {a: f}; f",
            "def f: f as $x | $x; f",
            "def f(g): 1 + f(g + 1); f(0)",
            "def f: if . > 1e9 then . else (. + 1 | f) + 0 end; 0 | f",
        ] {
            let p = limited(code, 60_000, 10);
            let err = p.run(Val::Null).unwrap_err();
            assert!(err.starts_with("jq recursion too deep"), "{code}: {err}");
        }
    }

    #[test]
    fn outputs_past_the_limit_are_an_error() {
        let p = limited("range(1e9)", 60_000, 3);
        let err = p.run(Val::Null).unwrap_err();
        assert!(err.contains("jq_max_outputs (3)"), "{err}");
        assert_eq!(
            limited("range(3)", 60_000, 3).run(Val::Null).unwrap().len(),
            3
        );
        assert_eq!(
            limited("range(0; 10; 3)", 60_000, 9)
                .run(Val::Null)
                .unwrap()
                .len(),
            4,
            "range with a step counts as jq's"
        );
    }

    #[test]
    fn values_past_the_depth_limit_are_errors_not_stack_overflows() {
        for depth in [MAX_DEPTH + 1, 3000, 200_000] {
            let p =
                JqProgram::compile(&format!("reduce range({depth}) as $i (null; [.])")).unwrap();
            let out = p.run(Val::Null).unwrap();
            let err = from_val(out.into_iter().next().unwrap()).unwrap_err();
            assert!(err.contains("depth limit (128 levels)"), "{err}");
        }
        let p =
            JqProgram::compile(&format!("reduce range({}) as $i (1; [.])", MAX_DEPTH - 1)).unwrap();
        assert!(from_val(p.run(Val::Null).unwrap().remove(0)).is_ok());
    }

    #[test]
    fn fromjson_refuses_text_past_the_depth_limit() {
        let p = JqProgram::compile(".x |= fromjson").unwrap();
        for text in ["[".repeat(3000), "[".repeat(3000) + &"]".repeat(3000)] {
            let input = record_to_val(&rec(json!({"x": text})));
            let err = p.run(input).unwrap_err();
            assert!(err.contains("depth limit (128 levels)"), "{err}");
        }
        let input = record_to_val(&rec(json!({"x": "{\"a\": [1, \"[[[[\"]}"})));
        let out = p.run(input).unwrap();
        assert_eq!(
            from_val(out.into_iter().next().unwrap()).unwrap(),
            json!({"x": {"a": [1, "[[[["]}})
        );
        assert!(
            p.run(record_to_val(&rec(json!({"x": "[1"}))))
                .unwrap_err()
                .contains("cannot parse")
        );
    }

    #[test]
    fn big_numbers_keep_their_digits() {
        let p = JqProgram::compile(r#""[12345678901234567890123]" | fromjson | .[0]"#).unwrap();
        let v = from_val(p.run(Val::Null).unwrap().remove(0)).unwrap();
        assert_eq!(v, json!("12345678901234567890123"));
    }

    #[test]
    fn programs_are_send() {
        fn send<T: Send>() {}
        send::<JqProgram>();
    }
}
