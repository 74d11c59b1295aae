//! View scripts (DESIGN.md "View scripts"): [rhai](https://rhai.rs), compiled once per
//! view, run once per record, sandboxed.
//!
//! Owns: the engine configuration (no modules, no `eval`, no output, an operations cap
//! and a wall-clock cap per record, bounded strings, arrays and maps), what a script sees
//! (`key`, `value`, `json`, `headers`, `timestamp`, `partition`, `offset`) and what its
//! result means ([`Outcome`]). Knows nothing of logs or the network.

mod json;
mod native;
mod uses;
pub mod views;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhai::{Dynamic, Engine, Map, Scope, AST};

use uses::{JsonUse, Uses};

/// Operations a script may run per record.
pub const MAX_OPERATIONS: u64 = 200_000;
/// Wall-clock time a script may take per record.
pub const MAX_TIME: Duration = Duration::from_millis(20);
/// Longest script accepted.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// The wall-clock cap is checked once every this many operations.
const TIME_CHECK_OPS: u64 = 64;

/// A script that did not compile: where and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CompileError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{} (line {l}, column {c})", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// What a script made of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    Drop,
    /// Keep the record with this value.
    Replace(Bytes),
}

/// The record a script sees.
pub struct Input<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(Bytes, Option<Bytes>)],
    pub timestamp: i64,
    pub partition: i32,
    pub offset: i64,
}

thread_local! {
    static STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Reused from record to record (emptied before each), to save its allocations.
    static SCOPE: RefCell<Scope<'static>> = RefCell::new(Scope::new());
}

fn engine() -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(1 << 20)
        .set_max_array_size(10_000)
        .set_max_map_size(10_000)
        .set_max_modules(0)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        .disable_symbol("eval")
        .on_print(|_| {})
        .on_debug(|_, _, _| {});
    // Reading the clock costs about as much as a simple operation: look every
    // TIME_CHECK_OPS operations only (no single operation is long, strings being bounded).
    e.on_progress(|ops| {
        if ops % TIME_CHECK_OPS != 0 {
            return None;
        }
        let late = STARTED.with(|s| s.get().is_some_and(|t| t.elapsed() > MAX_TIME));
        late.then(|| Dynamic::from("time limit exceeded"))
    });
    e
}

/// A compiled script; cheap to clone and share between threads.
#[derive(Clone)]
pub struct Script {
    engine: Arc<Engine>,
    ast: Arc<AST>,
    /// What the record's scope must hold.
    uses: Arc<Uses>,
    /// The same script in native code, when it is a simple condition.
    native: Option<Arc<native::Predicate>>,
}

impl Script {
    pub fn compile(source: &str) -> Result<Script, CompileError> {
        if source.len() > MAX_SCRIPT_BYTES {
            return Err(CompileError {
                message: format!("script longer than {MAX_SCRIPT_BYTES} bytes"),
                line: None,
                column: None,
            });
        }
        let engine = engine();
        let ast = engine.compile(source).map_err(|e| CompileError {
            message: e.err_type().to_string(),
            line: e.position().line(),
            column: e.position().position(),
        })?;
        Ok(Script {
            engine: Arc::new(engine),
            native: native::Predicate::compile(&ast).map(Arc::new),
            ast: Arc::new(ast),
            uses: Arc::new(Uses::of(source)),
        })
    }

    /// Whether the script runs natively (for the records native predicates model).
    pub fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// Runs the script on one record. Err: the script failed (an error it raised, a
    /// limit, a result of the wrong type).
    pub fn run(&self, rec: &Input) -> Result<Outcome, String> {
        if let Some(keep) = self.native.as_ref().and_then(|p| p.keep(rec)) {
            return Ok(if keep { Outcome::Keep } else { Outcome::Drop });
        }
        SCOPE.with(|scope| match scope.try_borrow_mut() {
            Ok(mut scope) => self.run_in(&mut scope, rec),
            Err(_) => self.run_in(&mut Scope::new(), rec),
        })
    }

    fn run_in(&self, scope: &mut Scope<'static>, rec: &Input) -> Result<Outcome, String> {
        let u = &*self.uses;
        scope.clear();
        // Only the variables the script names (see `uses`): the rest could not be read.
        if u.key {
            scope.push_dynamic("key", text(rec.key));
        }
        if u.value {
            scope.push_dynamic("value", text(rec.value));
        }
        // serde_json, not rhai's own parse_json (which runs the script parser: ~50x slower).
        let json = match (&u.json, rec.value) {
            (JsonUse::No, _) | (_, None) => None,
            (JsonUse::Fields(f), Some(v)) => Some(json::fields(v, f)),
            (JsonUse::Whole, Some(v)) => Some(json::whole(v)),
        };
        if u.json != JsonUse::No {
            scope.push_dynamic("json", json.unwrap_or(Dynamic::UNIT));
        }
        if u.headers {
            let mut headers = Map::new();
            for (k, v) in rec.headers {
                headers.insert(
                    String::from_utf8_lossy(k).into_owned().into(),
                    text(v.as_deref()),
                );
            }
            scope.push("headers", headers);
        }
        if u.timestamp {
            scope.push("timestamp", rec.timestamp);
        }
        if u.partition {
            scope.push("partition", rec.partition as i64);
        }
        if u.offset {
            scope.push("offset", rec.offset);
        }
        STARTED.with(|s| s.set(Some(Instant::now())));
        let result = self.engine.eval_ast_with_scope::<Dynamic>(scope, &self.ast);
        STARTED.with(|s| s.set(None));
        scope.clear();
        let r = result.map_err(|e| match *e {
            rhai::EvalAltResult::ErrorTerminated(..) => {
                format!("stopped after {} ms", MAX_TIME.as_millis())
            }
            other => other.to_string(),
        })?;
        if r.is_unit() {
            return Ok(Outcome::Drop);
        }
        if let Ok(b) = r.as_bool() {
            return Ok(if b { Outcome::Keep } else { Outcome::Drop });
        }
        if r.is_string() {
            return Ok(Outcome::Replace(Bytes::from(
                r.into_string().unwrap_or_default(),
            )));
        }
        if let Some(m) = r.clone().try_cast::<Map>() {
            return Ok(Outcome::Replace(Bytes::from(rhai::format_map_as_json(&m))));
        }
        Err(format!(
            "the script returned a {}; it must return a bool, (), a string or a map",
            r.type_name()
        ))
    }
}

/// Bytes as a rhai string (invalid UTF-8 replaced), or `()` for null.
fn text(b: Option<&[u8]>) -> Dynamic {
    match b {
        // from_utf8 checks ASCII a word at a time; from_utf8_lossy goes byte by byte.
        Some(b) => Dynamic::from(match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        }),
        None => Dynamic::UNIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, value: &str) -> Result<Outcome, String> {
        let s = Script::compile(src).map_err(|e| e.to_string())?;
        let headers = vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"x")))];
        s.run(&Input {
            key: Some(b"k1"),
            value: Some(value.as_bytes()),
            headers: &headers,
            timestamp: 1000,
            partition: 2,
            offset: 7,
        })
    }

    #[test]
    fn the_contract_example_filters_json() {
        let src = r#"json.city == "beijing" && json.price > 10"#;
        assert_eq!(
            run(src, r#"{"city":"beijing","price":12}"#),
            Ok(Outcome::Keep)
        );
        assert_eq!(
            run(src, r#"{"city":"beijing","price":2}"#),
            Ok(Outcome::Drop)
        );
        assert_eq!(
            run(src, r#"{"city":"paris","price":12}"#),
            Ok(Outcome::Drop)
        );
    }

    #[test]
    fn results_and_scope() {
        assert_eq!(run("()", "v"), Ok(Outcome::Drop));
        assert_eq!(run("false", "v"), Ok(Outcome::Drop));
        assert_eq!(
            run(
                r#"value + "!" + key + headers.h + partition + offset + timestamp"#,
                "v"
            ),
            Ok(Outcome::Replace(Bytes::from_static(b"v!k1x271000")))
        );
        let Ok(Outcome::Replace(b)) = run(r#"#{ a: 1, b: json.x }"#, r#"{"x":"y"}"#) else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1, "b": "y"}));
        assert_eq!(run("json == ()", "not json"), Ok(Outcome::Keep));
        assert!(run("42", "v").unwrap_err().contains("must return"));
    }

    /// The scope trimmed to what a script names gives the same outcome as the full one.
    #[test]
    fn trimmed_scope_changes_no_outcome() {
        let scripts = [
            r#"json.city == "beijing" && json.price > 10"#,
            r#"json.missing == ()"#,
            r#"json.a.b"#,
            r#"json.len"#,
            r#"json.keys"#,
            r#"json.city.len() > 3"#,
            r#"json.price = 1; json.price == 1"#,
            r#"#{ c: json.city, n: json.nope }"#,
            r#"json.len() == 4"#,
            r#"json == ()"#,
            r#"type_of(json)"#,
            r#"json.to_json()"#,
            r#"is_def_var("value") && is_def_var("key")"#,
            r#"key + value + headers.h"#,
            r#"let value = 1; value"#,
        ];
        let values = [
            r#"{"city":"beijing","price":12,"a":{"b":true},"len":"L","pad":"x"}"#,
            r#"{"city":"paris","price":2}"#,
            r#"{"keys":[1],"city":{"x":1}}"#,
            "[1,2]",
            "not json",
            r#"{"a":1"#,
        ];
        let headers = vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"x")))];
        for src in scripts {
            let trimmed = Script::compile(src).unwrap();
            let full = Script {
                uses: Arc::new(Uses::all()),
                ..trimmed.clone()
            };
            for v in values {
                let input = Input {
                    key: Some(b"k1"),
                    value: Some(v.as_bytes()),
                    headers: &headers,
                    timestamp: 1000,
                    partition: 2,
                    offset: 7,
                };
                assert_eq!(trimmed.run(&input), full.run(&input), "{src} on {v}");
            }
        }
    }

    #[test]
    fn sandbox_limits() {
        let e = Script::compile("let x = ;").err().unwrap();
        assert_eq!(e.line, Some(1));
        assert!(e.column.is_some());
        assert!(Script::compile(r#"import "x" as y; true"#).is_ok());
        assert!(run(r#"import "x" as y; true"#, "v").is_err(), "no modules");
        assert!(
            run(r#"eval("true")"#, "v").is_err() || Script::compile(r#"eval("true")"#).is_err()
        );
        let err = run("loop { }", "v").unwrap_err();
        assert!(!err.is_empty());
        assert!(run(r#"let s = "x"; loop { s += s; }"#, "v").is_err());
        assert!(run(r#"throw "bad""#, "v").unwrap_err().contains("bad"));
    }
}
