//! Hostile input over real HTTP: one request mixes valid events with lines
//! that are invalid UTF-8, carry raw NUL bytes, nest 100 000 levels deep or
//! hold a 3 MiB string. The request is accepted, each bad line becomes a dead
//! letter with its reason, the valid events land, and the collector keeps
//! answering.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_lines_are_dead_lettered_and_the_rest_lands() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3, 17);
    let (sluice, http, _) = support::start_http_pipeline(dir, "", "max_body_bytes = 8388608");

    let valid: Value = serde_json::from_str(&lines[2]).unwrap();
    let mut huge = valid.clone();
    huge["geo"]["city"] = "x".repeat(3 << 20).into();
    huge["event_id"] = "00000000-0000-4000-8000-000000000000".into();
    let mut body: Vec<u8> = Vec::new();
    for part in [
        lines[0].as_bytes().to_vec(),
        b"{\"event_id\":\"\xff\xfe\"}".to_vec(),
        b"{\"event_id\":\"a\0b\"}".to_vec(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        format!("{{\"x\":{}{}}}", "{\"a\":".repeat(100_000), "}".repeat(100_000)).into_bytes(),
        huge.to_string().into_bytes(),
        lines[1].as_bytes().to_vec(),
    ] {
        body.extend(part);
        body.push(b'\n');
    }
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/v1/events");
    let r = client.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{\"accepted\":7}");
    // The collector still answers, and a later valid event lands too.
    assert_eq!(
        client.post(&url).body(lines[2].clone()).send().await.unwrap().status(),
        200
    );
    sluice.stop();

    let contents = support::read_lake(&dir.join("lake/t")).await;
    let mut expected = support::event_ids(&lines);
    expected.insert("00000000-0000-4000-8000-000000000000".into());
    assert_eq!(contents.ids, expected, "the valid events, the 3 MiB one included, land");
    let by_reason = support::dead_letters_by_reason(&dir.join("pipeline.toml"));
    assert_eq!(
        by_reason,
        BTreeMap::from([("invalid_json".to_string(), 4)]),
        "{by_reason:?}"
    );
}
