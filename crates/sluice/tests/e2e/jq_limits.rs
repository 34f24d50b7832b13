//! A jq program that goes past its limits on some events, in a running
//! engine fed over real HTTP: each such event is a `jq_limit:<limit>` dead
//! letter, every other event lands in the lake, the collector keeps
//! answering and the engine exits cleanly. A program that cannot be
//! compiled within its limits is refused by `sluice validate`, by name.

use std::{collections::BTreeMap, process::Command};

use serde_json::json;

use crate::support;

const GUARD: &str = r#"
[transforms.guard]
type = "jq"
inputs = ["web"]
program = '''
  if .poison == "loop" then reduce range(1e15) as $i (0; . + 1)
  elif .poison == "memory" then {s: ("abc" * 100000000)}
  elif .poison == "deep" then (def nest: [nest]; nest)
  elif .poison == "flood" then (range(100000) | {i: ., pad: ("x" * 100)})
  else . end
'''
limits = { time_ms = 500, memory_mib = 64, output_mib = 1, stack_mib = 8 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_a_limit_are_dead_lettered_and_the_rest_lands() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 400, 23);
    let (http, api) = (support::free_port(), support::free_port());
    let sources = format!("[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:{http}\"\n\n{GUARD}");
    let pipeline = support::pipeline(api, "", &sources, &["guard"], "t");
    std::fs::write(dir.join("pipeline.toml"), &pipeline).unwrap();
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);

    let poisons = ["loop", "memory", "deep", "flood"];
    let mut body = String::new();
    for (n, line) in lines.iter().enumerate() {
        body.push_str(line);
        body.push('\n');
        if n % 100 == 50 {
            body.push_str(&json!({"poison": poisons[n / 100]}).to_string());
            body.push('\n');
        }
    }
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/v1/events");
    let r = client.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{\"accepted\":404}");
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while jq_limit_dead_letters(api) < 4.0 {
        assert!(std::time::Instant::now() < settled, "the dead letters did not come");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    sluice.stop();

    let contents = support::read_lake(&dir.join("lake/t")).await;
    assert_eq!(contents.ids, support::event_ids(&lines), "every other event lands");
    let by_reason = support::dead_letters_by_reason(&dir.join("pipeline.toml"));
    assert_eq!(
        by_reason,
        BTreeMap::from([
            ("jq_limit:depth".to_string(), 1),
            ("jq_limit:memory".to_string(), 1),
            ("jq_limit:output".to_string(), 1),
            ("jq_limit:time".to_string(), 1),
        ]),
    );

    let nested = format!("{}.{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = pipeline.replace(
        "limits = { time_ms = 500, memory_mib = 64, output_mib = 1, stack_mib = 8 }",
        "limits = { stack_mib = 1 }",
    );
    let huge = huge.replace(
        &huge[huge.find("program = '''").unwrap()..huge.find("'''\nlimits").unwrap() + 3],
        &format!("program = '''{nested}'''"),
    );
    std::fs::write(dir.join("huge.toml"), huge).unwrap();
    let out = Command::new(support::SLUICE)
        .arg("validate")
        .arg(dir.join("huge.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("transforms.guard")
            && stderr.contains("cannot be compiled within its limits")
            && stderr.contains("limits.stack_mib"),
        "{stderr}"
    );
}

/// `sluice_dead_letters_total` of the `jq_limit` reasons, from the engine's scrape.
fn jq_limit_dead_letters(api: u16) -> f64 {
    let body = support::http_get(api, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("sluice_dead_letters_total{") && l.contains("reason=\"jq_limit"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
