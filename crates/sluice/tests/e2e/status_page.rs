//! The status page at `/`, loaded by a real browser (headless Chromium,
//! Debian's package) during a run: the numbers it renders equal the
//! engine's `/metrics`, a dead letter holding HTML is shown as text, and a
//! screenshot is taken (`SLUICE_SCREENSHOT=PATH` keeps it, as the docs'
//! `docs/images/status-page.png` was made). With `[api] ui = false`, `/`
//! is not served.

use std::{path::Path, process::Command};

use sluice_testkit::process::http_get;

use crate::{
    outages::{start_logged, wait_for},
    support,
};

/// Chromium run headless on `url` with `args`, given time for the page's
/// requests and a few of its 2 s refreshes.
fn headless(chromium: &Path, url: &str, args: &[&str]) -> std::process::Output {
    let profile = sluice_testkit::tempdir().unwrap();
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=7000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

/// The text of the element whose opening tag contains `marker`.
fn text_after(dom: &str, marker: &str) -> String {
    let at = dom.find(marker).unwrap_or_else(|| panic!("{marker} not rendered")) + marker.len();
    let open_end = at + dom[at..].find('>').unwrap() + 1;
    let close = open_end + dom[open_end..].find('<').unwrap();
    dom[open_end..close].to_string()
}

/// `n` as the page writes it: digits grouped by threes with spaces.
fn grouped(n: f64) -> String {
    let digits = (n.round() as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_the_engines_numbers_in_a_real_browser() {
    let Some(chromium) = support::tool("/usr/bin/chromium", "chromium") else {
        return;
    };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 3_000, 34);
    let (api, web) = support::collector_pipeline(dir);
    let sluice = start_logged(dir, api);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{web}/v1/events");
    // First, so it is the oldest letter of its reason and the page's sample.
    let hostile = "\"<script>alert(1)</script>\"";
    for body in [hostile.to_string(), lines.join("\n") + "\n"] {
        let answer = client
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let valid = oracle["valid_unique"].as_i64().unwrap();
    let invalid = oracle["invalid"].as_i64().unwrap() + 1;
    let sent = "sluice_component_sent_events_total{component=\"lake\"}";
    wait_for("rows committed", 60, valid, || async {
        support::metric(api, sent).unwrap_or(0.0) as i64
    })
    .await;
    let held = "sluice_dead_letter_depth";
    wait_for("dead letters held", 30, invalid, || async {
        support::metric(api, held).unwrap_or(0.0) as i64
    })
    .await;

    let page = format!("http://127.0.0.1:{api}/");
    let out = headless(&chromium, &page, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(dom.contains("data-refreshed"), "the page's script ran: {dom}");
    let metric = |series: &str| support::metric(api, series).unwrap();
    let rendered = [
        (
            "data-stage=\"web\"><td data-field=\"name\">web</td><td data-field=\"events\"",
            grouped(metric("sluice_component_received_events_total{component=\"web\"}")),
        ),
        (
            "data-stage=\"lake\"><td data-field=\"name\">lake</td><td data-field=\"rows\"",
            grouped(metric(sent)),
        ),
        ("id=\"queue-depth\"", grouped(metric("sluice_queue_depth_batches"))),
        ("id=\"dead-total\"", grouped(metric(held))),
        ("id=\"verdict\"", "ready".to_string()),
    ];
    for (marker, want) in rendered {
        assert_eq!(text_after(&dom, marker), want, "{marker}");
    }
    assert_eq!(text_after(&dom, "id=\"dead-total\""), grouped(invalid as f64));
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !dom.contains("<script>alert(1)"),
        "the hostile letter is shown as text"
    );
    assert!(
        dom.contains("data-from=\"web\" data-to=\"standardize\""),
        "the graph's edges are drawn"
    );

    let shot = dir.join("status-page.png");
    let out = headless(
        &chromium,
        &page,
        &["--window-size=1280,1000", &format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
    if let Some(keep) = std::env::var_os("SLUICE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    sluice.stop();

    let text = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        text.replacen("[api]\n", "[api]\nui = false\n", 1),
    )
    .unwrap();
    let sluice = start_logged(dir, api);
    assert_eq!(http_get(api, "/").map(|(status, _)| status), Some(404));
    assert_eq!(http_get(api, "/api/pipeline").map(|(status, _)| status), Some(404));
    sluice.stop();
}
