//! The shipped alert rules and dashboard, checked against promtool and
//! against real runs:
//!
//! * `deploy/prometheus/alerts.yaml` passes `promtool check rules` and its
//!   unit tests (`alerts.test.yaml`: a firing and a quiet case per alert),
//!   and each alert's runbook section exists in `docs/guide/alerts.md`;
//! * every metric the dashboard and the rules query is in a real scrape of
//!   `/metrics` (an HTTP collector, an SQS source whose upstream is cut for
//!   a moment, validate, a compacted lake), and every dashboard query is
//!   PromQL promtool accepts;
//! * a PostgreSQL sink's backend is cut while input keeps arriving; the
//!   scrapes of `/metrics` taken each second become promtool input series
//!   (timestamps relative to the first scrape, each series carried on for
//!   three more minutes at the trend it showed, as the run would go on):
//!   on the scrapes of the outage `SluiceDataStopped` and
//!   `SluiceBackendDown` fire, on those of the healthy seconds before it
//!   neither does.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use sluice_testkit::{
    process::http_get,
    proxy::Proxy,
    services::{Service, host_port},
};

use crate::{
    aws_sources::aws,
    outages::{start_logged, wait_for},
    postgres::{connect, drop_schema, fresh_schema},
    support,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Debian's promtool (`scripts/test` installs the `prometheus` package).
fn promtool() -> Option<PathBuf> {
    support::tool("/usr/bin/promtool", "prometheus")
}

fn promtool_ok(promtool: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The alert names of the rules file, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_string)
        .collect()
}

/// Every `sluice_*` metric name in `text` (a summary's `_sum`/`_count`
/// stand for the metric).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sluice_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let preceded = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded && name.len() > "sluice_".len() {
            names.insert(name.clone());
        }
        rest = &rest[at + name.len().max(1)..];
    }
    names
}

/// The metric names of a `/metrics` scrape.
fn scraped_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let name = l.split(['{', ' ']).next().unwrap();
            name.strip_suffix("_sum")
                .or_else(|| name.strip_suffix("_count"))
                .unwrap_or(name)
                .to_string()
        })
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_and_each_has_tests_and_a_runbook() {
    let Some(promtool) = promtool() else { return };
    let dir = repo().join("deploy/prometheus");
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let names = alert_names(&rules);
    let checked = promtool_ok(
        &promtool,
        &["check", "rules", dir.join("alerts.yaml").to_str().unwrap()],
    );
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{checked}"
    );
    let tested = promtool_ok(
        &promtool,
        &["test", "rules", dir.join("alerts.test.yaml").to_str().unwrap()],
    );
    assert!(tested.contains("SUCCESS"), "{tested}");

    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).unwrap();
    let runbooks = std::fs::read_to_string(repo().join("docs/guide/alerts.md")).unwrap();
    for name in &names {
        // Each `alertname:` line opens one evaluation; the one after it says
        // whether alerts are expected.
        let cases: Vec<&str> = tests
            .split("alertname: ")
            .skip(1)
            .filter(|case| case.starts_with(&format!("{name}\n")))
            .collect();
        let quiet = cases.iter().filter(|c| c.contains("exp_alerts: []")).count();
        assert!(
            quiet >= 1 && cases.len() > quiet,
            "{name}: {} cases, {quiet} quiet",
            cases.len()
        );
        assert!(
            rules.contains(&format!("docs/guide/alerts.md#{}", name.to_lowercase())),
            "{name} links its runbook"
        );
        assert!(
            runbooks.contains(&format!("\n## {name}\n")),
            "{name} has a runbook section"
        );
    }
    assert_eq!(names.len(), 8, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_rules_query_only_metrics_a_real_run_exports() {
    if !support::services_up(&[Service::Aws]) {
        return;
    }
    let Some(promtool) = promtool() else { return };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate(dir, 2_000, 18);
    std::fs::create_dir_all(dir.join("landing")).unwrap();
    std::fs::write(dir.join("landing/a.ndjson"), lines[..10].join("\n") + "\n").unwrap();
    let setup = aws_sqs(dir, &format!("sluice-e2e-metrics-{}", std::process::id()));
    let real = Service::Aws.url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let (api, web) = (support::free_port(), support::free_port());
    let sources = format!(
        "[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:{web}\"\n\n\
         [sources.queue]\ntype = \"sqs\"\nqueue_url = \"{}\"\nendpoint = \"{}\"\nwait_time_secs = 1\n\n\
         [sources.landing]\ntype = \"objects\"\nuri = \"landing\"\npattern = \"*.ndjson\"\nsweep_interval_secs = 1\n\
         pull_interval_secs = 1\nsettle_secs = 0\n",
        setup.0,
        proxy.url_for(&real)
    );
    let pipeline = support::pipeline(
        api,
        "visibility_timeout_secs = 5",
        &sources,
        &["web", "queue", "landing"],
        "clickstream",
    ) + "dedupe_window_secs = 0\ncompaction.interval_secs = 1\ncompaction.lookback_hours = 1\n";
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
    let sluice = start_logged(dir, api);

    let body = lines.join("\n") + "\n";
    let client = reqwest::Client::new();
    let posted = client
        .post(format!("http://127.0.0.1:{web}/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    aws(&[
        "send",
        &setup.0,
        &setup.1,
        &dir.join("few.ndjson").display().to_string(),
        "0",
    ]);
    let received = "sluice_source_upstream_received_total{component=\"queue\"}";
    wait_for("SQS messages received", 60, 1, || async {
        support::metric(api, received).unwrap_or(0.0) as i64
    })
    .await;
    proxy.cut();
    let errors = "sluice_source_errors_total{component=\"queue\",operation=\"receive\"}";
    wait_for("SQS receive errors", 60, 1, || async {
        support::metric(api, errors).unwrap_or(0.0) as i64
    })
    .await;
    proxy.restore().await;
    let held = "sluice_dead_letter_depth";
    wait_for("dead letters held", 60, 1, || async {
        support::metric(api, held).unwrap_or(0.0) as i64
    })
    .await;
    let runs = "sluice_compaction_runs_total{component=\"lake\"}";
    wait_for("a compaction run", 60, 1, || async {
        support::metric(api, runs).unwrap_or(0.0) as i64
    })
    .await;
    let (_, scrape) = http_get(api, "/metrics").unwrap();
    sluice.stop();
    let exported = scraped_names(&scrape);

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/sluice.json")).unwrap()).unwrap();
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel ids are unique");
        let (x, w) = (
            panel["gridPos"]["x"].as_u64().unwrap(),
            panel["gridPos"]["w"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{} fits the grid", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} queries something", panel["title"]);
        exprs.extend(targets.iter().map(|t| t["expr"].as_str().unwrap().to_string()));
    }
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yaml")).unwrap();
    let mut queried = metric_names(&rules);
    queried.extend(exprs.iter().flat_map(|e| metric_names(e)));
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");

    // promtool parses each dashboard query as a recording rule.
    let mut recording = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr.replace("$job", ".*").replace("$instance", ".*");
        recording.push_str(&format!("      - record: dashboard:query{i}\n        expr: {expr:?}\n"));
    }
    std::fs::write(dir.join("dashboard-rules.yaml"), recording).unwrap();
    promtool_ok(
        &promtool,
        &["check", "rules", dir.join("dashboard-rules.yaml").to_str().unwrap()],
    );
    eprintln!(
        "{} metrics queried by {} dashboard queries and the rules, all in a real scrape of {} metrics",
        queried.len(),
        exprs.len(),
        exported.len()
    );
}

/// An SQS queue (behind an SNS topic) and a few lines to send to it:
/// (queue URL, topic ARN); the lines are in `dir/few.ndjson`.
fn aws_sqs(dir: &Path, name: &str) -> (String, String) {
    std::fs::create_dir_all(dir.join("few")).unwrap();
    let (lines, _) = support::generate_clean(&dir.join("few"), 20, 19);
    std::fs::write(dir.join("few.ndjson"), lines.join("\n") + "\n").unwrap();
    let setup = aws(&["setup-sqs", name]);
    (
        setup["queue_url"].as_str().unwrap().to_string(),
        setup["topic_arn"].as_str().unwrap().to_string(),
    )
}

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One scrape's series (`name{labels}` -> value) of the metrics in `names`.
fn series_of(scrape: &str, names: &BTreeSet<String>) -> BTreeMap<String, f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            let value: f64 = value.parse().ok()?;
            names.contains(name).then(|| (series.to_string(), value))
        })
        .collect()
}

/// How long a window's series are carried on, at the trend they showed.
const CARRIED: usize = 180;

/// A promtool test on `window` (one scrape a second; `(unix time,
/// series)`): each series as scraped, timestamps relative to the first
/// scrape, then carried on for three minutes at the rate it changed over
/// the window. With no `backend_down` labels, neither SluiceDataStopped
/// nor SluiceBackendDown may fire at the end; with them, the data-stopped
/// alert fires for sink `table` and the backend-down one once per label set.
fn rule_test(window: &[(f64, BTreeMap<String, f64>)], backend_down: &[&str]) -> String {
    let t0 = window[0].0;
    let all: BTreeSet<&String> = window.iter().flat_map(|(_, s)| s.keys()).collect();
    let mut input = String::new();
    for series in all {
        let shift = if series.split('{').next().unwrap().ends_with("_timestamp_seconds") {
            t0
        } else {
            0.0
        };
        let values: Vec<Option<f64>> = window.iter().map(|(_, s)| s.get(series).map(|v| v - shift)).collect();
        let shown: Vec<String> = values
            .iter()
            .map(|v| v.map_or("_".into(), |v| format!("{v}")))
            .collect();
        let carried = match (values.first().copied().flatten(), values.last().copied().flatten()) {
            (Some(first), Some(last)) => {
                let slope = (last - first) / (values.len() - 1) as f64;
                format!("{last}{}{}x{CARRIED}", if slope < 0.0 { "-" } else { "+" }, slope.abs())
            }
            _ => format!("_x{CARRIED}"),
        };
        input.push_str(&format!(
            "      - series: '{}'\n        values: '{} {carried}'\n",
            labelled(series),
            shown.join(" ")
        ));
    }
    let at = window.len() + CARRIED - 1;
    let expect = |labels: &str, alert: &str, summary: &str| {
        format!(
            "          - exp_labels: {{severity: critical, job: sluice, instance: e2e{labels}}}\n\
             \x20           exp_annotations:\n\
             \x20             summary: \"{summary}\"\n\
             \x20             runbook: \"docs/guide/alerts.md#{}\"\n",
            alert.to_lowercase()
        )
    };
    let (stopped, down) = if backend_down.is_empty() {
        (" []\n".to_string(), " []\n".to_string())
    } else {
        let summary = "Sink table has not committed for ten flush intervals while input arrives";
        let down: String = backend_down
            .iter()
            .map(|labels| {
                let labels = if labels.is_empty() {
                    String::new()
                } else {
                    format!(", {labels}")
                };
                expect(&labels, "SluiceBackendDown", "A backend of sluice cannot be reached")
            })
            .collect();
        (
            format!("\n{}", expect(", component: table", "SluiceDataStopped", summary)),
            format!("\n{down}"),
        )
    };
    format!(
        "rule_files:\n  - {rules}\nevaluation_interval: 1s\ntests:\n  - interval: 1s\n    input_series:\n{input}\
         \x20   alert_rule_test:\n\
         \x20     - eval_time: {at}s\n        alertname: SluiceDataStopped\n        exp_alerts:{stopped}\
         \x20     - eval_time: {at}s\n        alertname: SluiceBackendDown\n        exp_alerts:{down}",
        rules = repo().join("deploy/prometheus/alerts.yaml").display(),
    )
}

/// Writes `text` to `dir/name`; returns the path as text.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `series` with the scrape's `job` and `instance` labels added.
fn labelled(series: &str) -> String {
    match series.split_once('{') {
        Some((name, labels)) => format!("{name}{{job=\"sluice\",instance=\"e2e\",{labels}"),
        None => format!("{series}{{job=\"sluice\",instance=\"e2e\"}}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_stopped_fires_on_the_scrapes_of_a_real_outage() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let Some(promtool) = promtool() else { return };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 2_000, 20);
    let pg = connect().await;
    let schema = fresh_schema(&pg, "data_stopped").await;
    let real = crate::postgres::url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    support::file_to_postgres(dir, api, &proxy.url_for(&real), &schema);
    let sluice = start_logged(dir, api);
    let rows = || async {
        pg.query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
            .await
            .map_or(0, |r| r.get::<_, i64>(0))
    };
    std::fs::write(dir.join("incoming/0.ndjson"), lines[..500].join("\n") + "\n").unwrap();
    wait_for("rows before the outage", 60, 500, rows).await;

    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yaml")).unwrap();
    let inputs = metric_names(&rules);
    // Ten scrapes while healthy, then fifteen with the sink's PostgreSQL
    // cut; input keeps arriving every second throughout.
    let started = Instant::now();
    let mut scrapes = Vec::new();
    for second in 0..25u64 {
        if second == 10 {
            proxy.cut();
        }
        let part = &lines[500 + second as usize * 60..560 + second as usize * 60];
        std::fs::write(
            dir.join(format!("incoming/{}.ndjson", second + 1)),
            part.join("\n") + "\n",
        )
        .unwrap();
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        let at = unix_secs();
        let (_, scrape) = http_get(api, "/metrics").unwrap();
        scrapes.push((at, series_of(&scrape, &inputs)));
    }
    proxy.restore().await;
    wait_for("rows after the outage", 60, 2_000, rows).await;
    sluice.stop();

    let (healthy, outage) = scrapes.split_at(10);
    let quiet = rule_test(healthy, &[]);
    promtool_ok(&promtool, &["test", "rules", &write(dir, "healthy.test.yaml", &quiet)]);
    let backend_down = ["component: table", ""];
    let fired = rule_test(&outage[2..], &backend_down);
    promtool_ok(&promtool, &["test", "rules", &write(dir, "outage.test.yaml", &fired)]);
    eprintln!(
        "{} series from 10 healthy scrapes: no alert; from 13 scrapes of the outage: SluiceDataStopped and SluiceBackendDown fire",
        fired.matches("- series").count()
    );
    drop_schema(&pg, &schema).await;
}
