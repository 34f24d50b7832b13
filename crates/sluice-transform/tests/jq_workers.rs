//! The `jq` transform in a binary that serves jq workers (this test's
//! `main` calls `serve_or_enable_workers` first, as the `sluice` binary
//! does): an event that goes past a limit is a `jq_limit:<limit>` dead
//! letter, the batch's other events keep their answers, the transform goes
//! on, and a worker killed from outside costs no event.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_core::{BatchInfo, Event, Transform, TransformOutput};
use sluice_transform::jq::{JqLimits, JqTransform};

const PROGRAM: &str = r#"
  if .kind == "loop" then reduce range(1e15) as $i (0; . + 1)
  elif .kind == "memory" then {s: ("abc" * 100000000)}
  elif .kind == "deep" then (def nest: [nest]; nest)
  elif .kind == "flood" then {xs: [range(300000)]}
  elif .kind == "busy" then {ok: .n, sum: (reduce range(1000000) as $i (0; . + $i))}
  else {ok: .n} end
"#;

const LIMITS: JqLimits = JqLimits {
    time_ms: 700,
    memory_mib: 64,
    output_mib: 1,
    stack_mib: 8,
};

fn main() {
    sluice_transform::jq::serve_or_enable_workers();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(each_limit_is_a_dead_letter_and_the_batch_goes_on());
    runtime.block_on(a_worker_killed_from_outside_costs_no_event());
    compiling_within_limits();
    println!("jq_workers: 3 tests passed");
}

fn events(kinds: &[&str]) -> Vec<Event> {
    kinds
        .iter()
        .enumerate()
        .map(|(n, kind)| Event::from_line(n as u32, Bytes::from(json!({"kind": kind, "n": n}).to_string())))
        .collect()
}

/// Each output's `ok`, and each dead letter's line and reason.
fn outcome(output: &TransformOutput) -> (Vec<Value>, Vec<(u32, String)>) {
    let oks = output
        .events
        .iter()
        .map(|e| serde_json::from_slice::<Value>(&e.payload).unwrap()["ok"].clone())
        .collect();
    let dead = output
        .rejected
        .iter()
        .map(|r| (r.event.line, r.reason.clone()))
        .collect();
    (oks, dead)
}

async fn each_limit_is_a_dead_letter_and_the_batch_goes_on() {
    let transform = JqTransform::new(PROGRAM, LIMITS).unwrap();
    let kinds = ["ok", "loop", "ok", "memory", "ok", "deep", "ok", "flood", "ok"];
    let started = Instant::now();
    let output = transform
        .process(BatchInfo::first("limits"), events(&kinds))
        .await
        .unwrap();
    let took = started.elapsed();
    let (oks, dead) = outcome(&output);
    assert_eq!(oks, vec![json!(0), json!(2), json!(4), json!(6), json!(8)]);
    assert_eq!(
        dead,
        vec![
            (1, "jq_limit:time".to_string()),
            (3, "jq_limit:memory".to_string()),
            (5, "jq_limit:depth".to_string()),
            (7, "jq_limit:output".to_string()),
        ]
    );
    let details: Vec<&str> = output.rejected.iter().map(|r| r.detail.as_str()).collect();
    assert!(details[0].contains("700 ms (limits.time_ms)"), "{details:?}");
    assert!(details[1].contains("64 MiB (limits.memory_mib)"), "{details:?}");
    assert!(details[2].contains("8 MiB stack"), "{details:?}");
    assert!(details[3].contains("1 MiB of JSON"), "{details:?}");
    assert!(took < Duration::from_secs(10), "the limits held the batch for {took:?}");

    let again = transform
        .process(BatchInfo::first("after"), events(&["ok", "ok"]))
        .await
        .unwrap();
    assert_eq!(outcome(&again), (vec![json!(0), json!(1)], vec![]));
}

/// The pids of this process's children (the workers).
fn children() -> Vec<i32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    pids
}

async fn a_worker_killed_from_outside_costs_no_event() {
    let transform = JqTransform::new(
        PROGRAM,
        JqLimits {
            time_ms: 20_000,
            ..LIMITS
        },
    )
    .unwrap();
    let kinds = ["ok", "busy", "busy", "busy", "ok"];
    let killer = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let pids = children();
        for pid in &pids {
            std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status()
                .unwrap();
        }
        pids.len()
    });
    let started = Instant::now();
    let output = transform
        .process(BatchInfo::first("killed"), events(&kinds))
        .await
        .unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(300),
        "the batch outlasted the kill: {:?}",
        started.elapsed()
    );
    assert!(killer.await.unwrap() >= 1, "a worker was running to be killed");
    assert_eq!(outcome(&output), ((0..5).map(|n| json!(n)).collect(), vec![]));
}

fn compiling_within_limits() {
    let program = format!("{}.{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = JqTransform::new(&program, JqLimits { stack_mib: 1, ..LIMITS })
        .err()
        .unwrap();
    assert!(err.contains("cannot be compiled within its limits"), "{err}");
    assert!(err.contains("limits.stack_mib"), "{err}");
    let err = JqTransform::new(".a |\n  .b | (", LIMITS).err().unwrap();
    assert!(
        err.starts_with("line 2, column 9: expected closing parenthesis"),
        "{err}"
    );
    let err = JqTransform::new(".", JqLimits { time_ms: 0, ..LIMITS }).err().unwrap();
    assert_eq!(err, "limits.time_ms: 0 is out of range; allowed: 1 to 3600000");
}
