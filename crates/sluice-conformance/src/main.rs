//! `sluice-conformance`: third-party corpora run through Sluice as users
//! would, outside the default test run. `sluice-conformance jq PATH` runs
//! jq's own test file (`tests/jq.test` of jq's repository) through the `jq`
//! transform: each case's program and input become one transform whose
//! program is `{"out": ([INPUT | (PROGRAM)] | tojson)}` over an empty
//! object event, so any program and input fits an object event, and its
//! `out` is compared with the expected outputs. Every case runs in this one
//! process, as transforms run in the engine: programs in jq worker
//! processes, so a case that goes past a per-event limit is a `jq_limit`
//! dead letter (counted as `limit`) and the run goes on; a case that
//! crashed the runner would end the run.

mod jq_test;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sluice_core::{
    BatchInfo, Event,
    config::{TransformContext, TransformSpec},
    reason,
};
use sluice_transform::config::JqConfig;

#[derive(Parser)]
#[command(version, about = "Run third-party conformance corpora through Sluice")]
struct Args {
    #[command(subcommand)]
    corpus: Corpus,
}

#[derive(Subcommand)]
enum Corpus {
    /// jq's test file through the `jq` transform; prints passed, failed, not
    /// compiled, past a limit and excluded (modules, `input`), and the
    /// first failures.
    Jq {
        /// The test file (e.g. a copy of jq's tests/jq.test).
        path: PathBuf,
        /// Failures to print.
        #[arg(long, default_value_t = 20)]
        show: usize,
        /// Run only the case at this index (0-based) and print its result.
        #[arg(long)]
        case: Option<usize>,
    },
}

fn main() -> ExitCode {
    sluice_transform::jq::serve_or_enable_workers();
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let Corpus::Jq { path, show, case } = args.corpus;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cases = jq_test::parse(&text);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(index) = case {
        let case = cases.get(index).context("no such case")?;
        println!("{}", runtime.block_on(run_case(case)));
        return Ok(ExitCode::SUCCESS);
    }
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = if case.excluded() {
            json!({"status": "excluded"})
        } else {
            runtime.block_on(run_case(case))
        };
        let status = outcome["status"].as_str().unwrap_or_default().to_string();
        if status != "passed" && status != "excluded" {
            failures.push((case, outcome));
        }
        *counts.entry(status).or_default() += 1;
    }
    let runnable: usize = counts.iter().filter(|(s, _)| *s != "excluded").map(|(_, n)| n).sum();
    let passed = counts.get("passed").copied().unwrap_or(0);
    println!(
        "{}: {} cases; {runnable} runnable (modules and `input` excluded): {passed} passed ({:.1} %)",
        path.display(),
        cases.len(),
        100.0 * passed as f64 / runnable.max(1) as f64
    );
    for (status, n) in &counts {
        println!("  {status:<13} {n}");
    }
    for (case, outcome) in failures.iter().take(show) {
        println!(
            "\nline {} [{}]: {}",
            case.line,
            outcome["status"].as_str().unwrap_or_default(),
            case.program
        );
        if let Some(input) = &case.input {
            println!("  input:    {}", shorten(input));
        }
        println!("  expected: {}", shorten(&case.expected.join(" ")));
        println!(
            "  got:      {}",
            shorten(outcome["detail"].as_str().unwrap_or_default())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// At most 200 characters of `text`, for the report.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
        None => text.to_string(),
    }
}

/// One case through the `jq` transform, as `{"status", "detail"}`.
async fn run_case(case: &jq_test::Case) -> Value {
    let program = match &case.input {
        Some(input) => format!(
            "{{\"out\": ([{input} | try ({}) catch {{\"{ERROR_KEY}\": .}}] | tojson)}}",
            case.program
        ),
        None => case.program.clone(),
    };
    let config: JqConfig = match serde_json::from_value(json!({ "program": program })) {
        Ok(config) => config,
        Err(e) => return json!({"status": "not_compiled", "detail": e.to_string()}),
    };
    let context = TransformContext {
        name: "conformance",
        data_dir: std::path::Path::new("/"),
    };
    let transform = match config.build(&context) {
        Ok(t) => t,
        Err(e) if case.must_fail => return json!({"status": "passed", "detail": e}),
        Err(e) => return json!({"status": "not_compiled", "detail": e}),
    };
    if case.must_fail {
        return json!({"status": "failed", "detail": "compiled, but jq refuses it"});
    }
    let event = Event::from_line(0, bytes::Bytes::from_static(b"{}"));
    let output = match transform.process(BatchInfo::first("conformance"), vec![event]).await {
        Ok(output) => output,
        Err(e) => return json!({"status": "failed", "detail": e.message}),
    };
    if let Some(rejected) = output.rejected.first() {
        let status = if rejected.reason.starts_with(reason::JQ_LIMIT) {
            "limit"
        } else {
            "failed"
        };
        return json!({"status": status, "detail": format!("{}: {}", rejected.reason, rejected.detail)});
    }
    let got = output
        .events
        .first()
        .and_then(|e| serde_json::from_slice::<Value>(&e.payload).ok())
        .and_then(|v| v.get("out").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let expected: Result<Vec<Value>, _> = case.expected.iter().map(|e| serde_json::from_str(e)).collect();
    // As jq's own runner judges: the expected outputs, in order; an error
    // after the last of them passes (the file notes such runtime errors).
    let same = match (serde_json::from_str::<Value>(&got), expected) {
        (Ok(Value::Array(mut got)), Ok(expected)) => {
            if got.last().and_then(|last| last.get(ERROR_KEY)).is_some() {
                got.pop();
            }
            got.len() == expected.len() && got.iter().zip(&expected).all(|(g, e)| same_json(g, e))
        }
        _ => false,
    };
    json!({"status": if same { "passed" } else { "failed" }, "detail": got})
}

/// The key of the object that stands for a runtime error in a case's
/// outputs.
const ERROR_KEY: &str = "sluice_conformance_error";

/// JSON equality with numbers compared as numbers (`1.0` is `1`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(program: &str, input: Option<&str>, expected: &[&str], must_fail: bool) -> jq_test::Case {
        jq_test::Case {
            line: 1,
            program: program.into(),
            input: input.map(str::to_string),
            expected: expected.iter().map(|e| e.to_string()).collect(),
            must_fail,
        }
    }

    #[tokio::test]
    async fn cases_are_judged_by_what_the_transform_gives() {
        let status = async |c: &jq_test::Case| run_case(c).await["status"].as_str().unwrap().to_string();
        assert_eq!(
            status(&case(".a, .b", Some(r#"{"a": 1, "b": [2.0]}"#), &["1", "[2]"], false)).await,
            "passed"
        );
        assert_eq!(status(&case(".a", Some(r#"{"a": 1}"#), &["2"], false)).await, "failed");
        assert_eq!(
            status(&case(".a", Some(r#"{"a": 1}"#), &["1", "1"], false)).await,
            "failed",
            "one output, not two"
        );
        assert_eq!(
            status(&case("1, error(\"x\")", Some("null"), &["1"], false)).await,
            "passed",
            "an error after the expected outputs, as jq's runner takes it"
        );
        assert_eq!(
            status(&case("error(\"x\"), 1", Some("null"), &["1"], false)).await,
            "failed",
            "an error before an expected output"
        );
        assert_eq!(status(&case(".a |", Some("null"), &[], false)).await, "not_compiled");
        assert_eq!(
            status(&case(".a |", None, &[], true)).await,
            "passed",
            "must not compile, and does not"
        );
        assert_eq!(status(&case(".a", None, &[], true)).await, "failed");
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert!(same_json(&json!([1.0, {"a": 2}]), &json!([1, {"a": 2.0}])));
        assert!(!same_json(&json!([1]), &json!([1, 1])));
        assert!(!same_json(&json!({"a": 1}), &json!({"b": 1})));
    }
}
