//! View scripts (DESIGN.md "View scripts"): [rhai](https://rhai.rs), compiled once per
//! view, run once per record, sandboxed.
//!
//! Owns: the engine configuration (no modules, no `eval`, no output, an operations cap
//! and a wall-clock cap per record, bounded strings, arrays and maps), what a script sees
//! (`key`, `value`, `json`, `headers`, `timestamp`, `partition`, `offset`) and what its
//! result means ([`Outcome`]). Knows nothing of logs or the network.

pub mod views;

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhai::{Dynamic, Engine, Map, Scope, AST};

/// Operations a script may run per record.
pub const MAX_OPERATIONS: u64 = 200_000;
/// Wall-clock time a script may take per record.
pub const MAX_TIME: Duration = Duration::from_millis(20);
/// Longest script accepted.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;

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
    e.on_progress(|_| {
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
    /// The script mentions `json`: only then is the value parsed.
    uses_json: bool,
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
            ast: Arc::new(ast),
            uses_json: source.contains("json"),
        })
    }

    /// Runs the script on one record. Err: the script failed (an error it raised, a
    /// limit, a result of the wrong type).
    pub fn run(&self, rec: &Input) -> Result<Outcome, String> {
        let text = |b: Option<&[u8]>| match b {
            Some(b) => Dynamic::from(String::from_utf8_lossy(b).into_owned()),
            None => Dynamic::UNIT,
        };
        // serde_json, not rhai's own parse_json (which runs the script parser: ~50x slower),
        // and only for scripts that use `json`.
        let json = rec
            .value
            .filter(|_| self.uses_json)
            .filter(|v| v.trim_ascii_start().starts_with(b"{"))
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
            .and_then(|v| rhai::serde::to_dynamic(v).ok())
            .unwrap_or(Dynamic::UNIT);
        let mut headers = Map::new();
        for (k, v) in rec.headers {
            headers.insert(
                String::from_utf8_lossy(k).into_owned().into(),
                text(v.as_deref()),
            );
        }
        let mut scope = Scope::new();
        scope.push_dynamic("key", text(rec.key));
        scope.push_dynamic("value", text(rec.value));
        scope.push_dynamic("json", json);
        scope.push("headers", headers);
        scope.push("timestamp", rec.timestamp);
        scope.push("partition", rec.partition as i64);
        scope.push("offset", rec.offset);
        STARTED.with(|s| s.set(Some(Instant::now())));
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast);
        STARTED.with(|s| s.set(None));
        let r = result.map_err(|e| match *e {
            rhai::EvalAltResult::ErrorTerminated(..) => {
                format!("stopped after {} ms", MAX_TIME.as_millis())
            }
            other => other.to_string(),
        })?;
        if r.is_unit() {
            return Ok(Outcome::Drop);
        }
        if let Some(b) = r.clone().try_cast::<bool>() {
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
