//! The `jq` transform: a jq program (jaq, with its standard library) run on
//! each event. Every value the program emits becomes an event (none drops
//! it, several fan it out); an error, or an output that is not a JSON
//! object, sends the input event to the dead-letter store with the reason.
//! The program is compiled once; compile errors name line and column.
//!
//! jaq recurses over the depth of programs and values (printing, comparing,
//! merging and dropping a 10 000-deep array), far past a worker thread's
//! 2 MiB stack, and a stack overflow aborts the process. Compiling and each
//! batch's evaluation therefore run on a thread of their own with a
//! [`STACK_BYTES`] stack (reserved, not committed: only what a program
//! uses is touched). A program that panics fails its event, not the
//! engine.

use async_trait::async_trait;
use bytes::Bytes;
use jaq_core::{
    Compiler, Ctx, Vars, data,
    load::{Arena, File, Loader},
    unwrap_valr,
};
use jaq_json::Val;
use sluice_core::{BatchInfo, Event, Rejected, StageError, Transform, TransformOutput, reason};

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// The stack of the threads that compile and run jq programs.
pub const STACK_BYTES: usize = 256 << 20;

/// Runs `work` on a thread with a [`STACK_BYTES`] stack and waits for it;
/// an error if the thread cannot start or `work` panics.
fn on_big_stack<T: Send>(work: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sluice-jq".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|e| format!("cannot start a jq thread: {e}"))?
            .join()
            .map_err(|_| "the program panicked".to_string())
    })
}

pub struct JqTransform {
    filter: Filter,
}

impl JqTransform {
    /// Compiles `program`; the error names the line and column of each problem.
    pub fn compile(program: &str) -> Result<Self, String> {
        on_big_stack(|| Self::compile_here(program)).and_then(|compiled| compiled)
    }

    fn compile_here(program: &str) -> Result<Self, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .chain(sluice_defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let arena = Arena::default();
        let loader = Loader::new(defs);
        let modules = loader
            .load(
                &arena,
                File {
                    code: program,
                    path: (),
                },
            )
            .map_err(|errors| load_errors(program, errors))?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errors| {
            let mut messages = Vec::new();
            for (_, undefined) in errors {
                for (name, kind) in undefined {
                    messages.push(format!(
                        "{}: undefined {} {name}",
                        position(program, name),
                        kind.as_str()
                    ));
                }
            }
            messages.join("; ")
        })?;
        Ok(JqTransform { filter })
    }

    /// Runs the program on one event's JSON; the outputs' JSON texts, or the reason and detail of a refusal.
    pub fn run(&self, payload: &[u8]) -> Result<Vec<Bytes>, (String, String)> {
        let input =
            jaq_json::read::parse_single(payload).map_err(|e| (reason::INVALID_JSON.to_string(), e.to_string()))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut out = Vec::new();
        for value in self.filter.id.run((ctx, input)).map(unwrap_valr) {
            let value = value.map_err(|e| (reason::JQ_ERROR.to_string(), e.to_string()))?;
            if !matches!(value, Val::Obj(_)) {
                return Err((
                    reason::JQ_OUTPUT.into(),
                    format!("the program emitted {}, not an object", shorten(&value.to_string())),
                ));
            }
            let text = value.to_string();
            // jaq prints values JSON cannot hold (nan, byte strings) as non-JSON.
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                return Err((
                    reason::JQ_OUTPUT.into(),
                    format!("the program emitted a value that is not JSON ({e}): {}", shorten(&text)),
                ));
            }
            out.push(Bytes::from(text));
        }
        Ok(out)
    }
}

/// What jq has and jaq lacks, written in jq (`jq_defs.jq`).
fn sluice_defs() -> impl Iterator<Item = jaq_core::load::parse::Def<&'static str>> {
    jaq_core::load::parse(include_str!("jq_defs.jq"), |p| p.defs())
        .expect("jq_defs.jq parses (checked by a test)")
        .into_iter()
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// `line L, column C` of `part`, a slice of `code`.
fn position(code: &str, part: &str) -> String {
    let offset = (part.as_ptr() as usize)
        .checked_sub(code.as_ptr() as usize)
        .filter(|o| *o <= code.len())
        .unwrap_or(0);
    let before = &code[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

fn load_errors(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut messages = Vec::new();
    for (_, error) in errors {
        match error {
            Error::Io(errs) => messages.extend(errs.into_iter().map(|(path, e)| format!("cannot load {path}: {e}"))),
            Error::Lex(errs) => messages.extend(
                errs.into_iter()
                    .map(|(expect, at)| format!("{}: expected {}", position(code, at), expect.as_str())),
            ),
            Error::Parse(errs) => messages.extend(errs.into_iter().map(|(expect, at)| {
                let found = if at.is_empty() {
                    "the end".to_string()
                } else {
                    format!("{at:?}")
                };
                format!("{}: expected {}, found {found}", position(code, at), expect.as_str())
            })),
        }
    }
    messages.join("; ")
}

#[async_trait]
impl Transform for JqTransform {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let results = match on_big_stack(|| events.iter().map(|e| self.run(&e.payload)).collect::<Vec<_>>()) {
            Ok(results) => results,
            // A panic: run the events one by one to fail only the one that panics.
            Err(_) => events
                .iter()
                .map(|e| {
                    on_big_stack(|| self.run(&e.payload)).unwrap_or_else(|why| Err((reason::JQ_ERROR.to_string(), why)))
                })
                .collect(),
        };
        let mut output = TransformOutput::default();
        for (event, result) in events.into_iter().zip(results) {
            match result {
                Ok(outs) if outs.is_empty() => output.dropped += 1,
                Ok(outs) => output.events.extend(outs.into_iter().map(|payload| Event {
                    payload,
                    ..event.clone()
                })),
                Err((reason, detail)) => output.rejected.push(Rejected::new(event, reason, detail)),
            }
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program: &str, input: &str) -> Result<Vec<String>, (String, String)> {
        let t = JqTransform::compile(program).unwrap();
        t.run(input.as_bytes()).map(|outs| {
            outs.into_iter()
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .collect()
        })
    }

    /// jaq recurses over a value's depth to print, compare and drop it: on
    /// a worker thread's stack this nesting aborts the process.
    #[tokio::test]
    async fn deeply_nested_values_do_not_take_the_engine_down() {
        let program = "reduce range(30000) as $i (null; {inner: ., i: $i}) | {text: (tojson | length), same: (. == .)}";
        let transform = JqTransform::compile(program).unwrap();
        let event = Event::from_line(0, Bytes::from_static(b"{}"));
        let output = transform.process(BatchInfo::first("deep"), vec![event]).await.unwrap();
        assert!(output.rejected.is_empty(), "{:?}", output.rejected);
        let out: serde_json::Value = serde_json::from_slice(&output.events[0].payload).unwrap();
        assert_eq!(out["same"], true);
        assert!(
            out["text"].as_u64().unwrap() > 30_000 * 10,
            "every level printed: {}",
            out["text"]
        );
    }

    /// Parsing and running recurse once per `elif`: a long chain compiles
    /// and runs on the jq threads' stack instead of overflowing the caller's.
    #[tokio::test]
    async fn a_long_elif_chain_compiles_and_runs() {
        let branches: String = (1..5000).map(|i| format!(" elif .n == {i} then {{k: {i}}}")).collect();
        let program = format!("if .n == 0 then {{k: 0}}{branches} else {{k: -1}} end");
        let transform = JqTransform::compile(&program).unwrap();
        let event = Event::from_line(0, Bytes::from_static(br#"{"n": 4321}"#));
        let output = transform.process(BatchInfo::first("elif"), vec![event]).await.unwrap();
        assert_eq!(output.events[0].payload, Bytes::from_static(br#"{"k":4321}"#));
    }

    #[test]
    fn the_definitions_jaq_lacks_answer_as_jq_does() {
        let one = |program: &str, input: &str| run(&format!("{{out: ({program})}}"), input).unwrap().join("");
        assert_eq!(
            one("[1, \"a\\\"b\", null, true] | @csv", "{}"),
            r#"{"out":"1,\"a\"\"b\",,true"}"#
        );
        assert_eq!(one("[\"a\\tb\", 2, null] | @tsv", "{}"), r#"{"out":"a\\tb\t2\t"}"#);
        assert_eq!(one(".n | IN(2, 3)", r#"{"n": 3}"#), r#"{"out":true}"#);
        assert_eq!(one(".n | IN(2, 3)", r#"{"n": 4}"#), r#"{"out":false}"#);
        assert_eq!(
            one(
                ".rows | INDEX(.id)",
                r#"{"rows": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}"#
            ),
            r#"{"out":{"1":{"id":1,"v":"a"},"2":{"id":2,"v":"b"}}}"#
        );
        assert_eq!(one(".s | trimstr(\"-\")", r#"{"s": "-x-"}"#), r#"{"out":"x"}"#);
        assert!(run("{out: ({} | @csv)}", "{}").is_err(), "only an array is a CSV row");
        assert_eq!(
            one(".xs | join(\"-\")", r#"{"xs": ["a", null, 2, false]}"#),
            r#"{"out":"a--2-false"}"#
        );
        assert_eq!(
            one("[.xs[] | ltrimstr(\"ab\")]", r#"{"xs": ["abc", "xab", 7]}"#),
            r#"{"out":["c","xab",7]}"#
        );
        assert_eq!(
            one("[.xs[] | rtrimstr(\"bc\")]", r#"{"xs": ["abc", "bcx", null]}"#),
            r#"{"out":["a","bcx",null]}"#
        );
        assert_eq!(
            one(
                ".es | from_entries",
                r#"{"es": [{"k": "a", "v": 1}, {"name": "b", "value": 2}, {"key": 3, "value": 4}]}"#
            ),
            r#"{"out":{"a":1,"b":2,"3":4}}"#
        );
    }

    #[test]
    fn a_program_rewrites_drops_or_fans_out() {
        let cents = ".props.revenue_cents = ((.props.revenue // 0) * 100 | round) | del(.page.referrer)";
        assert_eq!(
            run(
                cents,
                r#"{"props":{"revenue":12.34},"page":{"url":"u","referrer":"r"}}"#
            )
            .unwrap(),
            vec![r#"{"props":{"revenue":12.34,"revenue_cents":1234},"page":{"url":"u"}}"#]
        );
        assert_eq!(run("select(.n > 1)", r#"{"n":1}"#).unwrap(), Vec::<String>::new());
        assert_eq!(
            run(".items[] | {sku}", r#"{"items":[{"sku":"a"},{"sku":"b"}]}"#).unwrap(),
            vec![r#"{"sku":"a"}"#, r#"{"sku":"b"}"#]
        );
    }

    #[test]
    fn errors_and_non_objects_are_refused_with_a_reason() {
        let (reason, detail) = run(r#"error("no thanks")"#, "{}").unwrap_err();
        assert_eq!(reason, "jq_error");
        assert!(detail.contains("no thanks"), "{detail}");
        assert_eq!(run(".n + 1", r#"{"n":1}"#).unwrap_err().0, "jq_output");
        assert_eq!(run("{x: nan}", "{}").unwrap_err().0, "jq_output");
        assert_eq!(run(".", "{").unwrap_err().0, "invalid_json");
        assert_eq!(
            run(".", r#"{"s":"quote \" tab \t nul \u0000 é"}"#).unwrap(),
            vec![r#"{"s":"quote \" tab \t nul \u0000 é"}"#]
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = JqTransform::compile(".a |\n  .b | (").err().unwrap();
        assert!(
            err.starts_with("line 2, column 9: expected closing parenthesis"),
            "{err}"
        );
        let err = JqTransform::compile(".a | nosuchfn(1)").err().unwrap();
        assert!(
            err.contains("line 1, column 6: undefined") && err.contains("nosuchfn"),
            "{err}"
        );
    }
}
