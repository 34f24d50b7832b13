//! `sluice-conformance`: third-party corpora run through Sluice as users
//! would, outside the default test run. `sluice-conformance jq PATH` runs
//! jq's own test file (`tests/jq.test` of jq's repository) through the `jq`
//! transform: each case's program and input become one transform whose
//! program is `{"out": ([INPUT | (PROGRAM)] | tojson)}` over an empty
//! object event, so any program and input fits an object event, and its
//! `out` is compared with the expected outputs. Each case runs in a child
//! process, so a case that crashes or exhausts the engine is counted, not
//! fatal to the run.

mod jq_test;

use std::{
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sluice_core::{
    BatchInfo, Event,
    config::{TransformContext, TransformSpec},
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
    /// compiled, crashed, timed out and excluded (modules, `input`), and the
    /// first failures.
    Jq {
        /// The test file (e.g. a copy of jq's tests/jq.test).
        path: PathBuf,
        /// Failures to print.
        #[arg(long, default_value_t = 20)]
        show: usize,
        /// A case's time limit.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
        /// Run only the case at this index and print its result (used by the runner).
        #[arg(long, hide = true)]
        case: Option<usize>,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let Corpus::Jq {
        path,
        show,
        timeout_secs,
        case,
    } = args.corpus;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cases = jq_test::parse(&text);
    if let Some(index) = case {
        let case = cases.get(index).context("no such case")?;
        println!("{}", run_case(case));
        return Ok(ExitCode::SUCCESS);
    }
    let me = std::env::current_exe()?;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let outcome = if case.excluded() {
            json!({"status": "excluded"})
        } else {
            in_child(&me, &path, index, Duration::from_secs(timeout_secs))?
        };
        let status = outcome["status"].as_str().unwrap_or("crashed").to_string();
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
            outcome["status"].as_str().unwrap_or("crashed"),
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

/// Runs case `index` in a child process; a signal or a non-zero exit is a
/// crash, the time limit a time-out.
fn in_child(me: &std::path::Path, path: &std::path::Path, index: usize, limit: Duration) -> Result<Value> {
    let mut child = Command::new(me)
        .arg("jq")
        .arg(path)
        .arg("--case")
        .arg(index.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                std::io::Read::read_to_string(&mut stdout, &mut out)?;
            }
            return Ok(match serde_json::from_str::<Value>(out.trim()) {
                Ok(result) if status.success() => result,
                _ => json!({"status": "crashed", "detail": format!("the process ended: {status}")}),
            });
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(json!({"status": "timed_out", "detail": format!("no answer within {} s", limit.as_secs())}));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One case through the `jq` transform, as `{"status", "detail"}`.
fn run_case(case: &jq_test::Case) -> Value {
    let program = match &case.input {
        Some(input) => format!("{{\"out\": ([{input} | ({})] | tojson)}}", case.program),
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
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => return json!({"status": "crashed", "detail": e.to_string()}),
    };
    let event = Event::from_line(0, bytes::Bytes::from_static(b"{}"));
    let output = match runtime.block_on(transform.process(BatchInfo::first("conformance"), vec![event])) {
        Ok(output) => output,
        Err(e) => return json!({"status": "failed", "detail": e.message}),
    };
    if let Some(rejected) = output.rejected.first() {
        return json!({"status": "failed", "detail": format!("{}: {}", rejected.reason, rejected.detail)});
    }
    let got = output
        .events
        .first()
        .and_then(|e| serde_json::from_slice::<Value>(&e.payload).ok())
        .and_then(|v| v.get("out").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let expected: Result<Vec<Value>, _> = case.expected.iter().map(|e| serde_json::from_str(e)).collect();
    let same = match (serde_json::from_str::<Value>(&got), expected) {
        (Ok(Value::Array(got)), Ok(expected)) => {
            got.len() == expected.len() && got.iter().zip(&expected).all(|(g, e)| same_json(g, e))
        }
        _ => false,
    };
    json!({"status": if same { "passed" } else { "failed" }, "detail": got})
}

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

    #[test]
    fn cases_are_judged_by_what_the_transform_gives() {
        let status = |c: &jq_test::Case| run_case(c)["status"].as_str().unwrap().to_string();
        assert_eq!(
            status(&case(".a, .b", Some(r#"{"a": 1, "b": [2.0]}"#), &["1", "[2]"], false)),
            "passed"
        );
        assert_eq!(status(&case(".a", Some(r#"{"a": 1}"#), &["2"], false)), "failed");
        assert_eq!(
            status(&case(".a", Some(r#"{"a": 1}"#), &["1", "1"], false)),
            "failed",
            "one output, not two"
        );
        assert_eq!(status(&case("error(\"x\")", Some("null"), &[], false)), "failed");
        assert_eq!(status(&case(".a |", Some("null"), &[], false)), "not_compiled");
        assert_eq!(
            status(&case(".a |", None, &[], true)),
            "passed",
            "must not compile, and does not"
        );
        assert_eq!(status(&case(".a", None, &[], true)), "failed");
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert!(same_json(&json!([1.0, {"a": 2}]), &json!([1, {"a": 2.0}])));
        assert!(!same_json(&json!([1]), &json!([1, 1])));
        assert!(!same_json(&json!({"a": 1}), &json!({"b": 1})));
    }
}
