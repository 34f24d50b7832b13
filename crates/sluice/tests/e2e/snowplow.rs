//! Snowplow's own Node tracker (`@snowplow/node-tracker` 4.8, from npm,
//! installed into `~/.cache/sluice/snowplow`) tracking page views,
//! structured events and self-describing link clicks with an entity
//! against a collector with `protocol = "snowplow"` (POSTs of 10 events
//! and GET pixels), unchanged but for its endpoint, while the engine is
//! SIGKILLed twice and restarted. The schemas are imported as an Iglu
//! static repository. The Snowplow-shaped table, read by delta-rs, holds
//! every valid event once (the tracker sends again what a killed engine
//! never answered; dedupe by `event_id` absorbs it) with its atomic fields
//! and its `unstruct_event_*` and `contexts_*` columns; the events that
//! break their schema or name an unknown one are dead letters with those
//! reasons; a browser's preflight is answered.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{
    outages::{start_logged, through_two_kills},
    support,
};

const LINK_CLICK_100: &str = r#"{
  "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
  "self": {"vendor": "com.snowplowanalytics.snowplow", "name": "link_click", "format": "jsonschema", "version": "1-0-0"},
  "type": "object",
  "properties": {
    "elementId": {"type": "string"},
    "elementClasses": {"type": "array", "items": {"type": "string"}},
    "elementTarget": {"type": "string"},
    "targetUrl": {"type": "string", "minLength": 1}
  },
  "required": ["targetUrl"],
  "additionalProperties": false
}"#;

const LINK_CLICK: &str = r#"{
  "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
  "self": {"vendor": "com.snowplowanalytics.snowplow", "name": "link_click", "format": "jsonschema", "version": "1-0-1"},
  "type": "object",
  "properties": {
    "elementId": {"type": "string"},
    "elementClasses": {"type": "array", "items": {"type": "string"}},
    "elementTarget": {"type": "string"},
    "targetUrl": {"type": "string", "minLength": 1},
    "elementContent": {"type": "string"}
  },
  "required": ["targetUrl"],
  "additionalProperties": false
}"#;

const PRODUCT: &str = r#"{
  "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
  "self": {"vendor": "com.acme", "name": "productView", "format": "jsonschema", "version": "1-0-0"},
  "type": "object",
  "properties": {"sku": {"type": "string"}, "unitPrice": {"type": "number"}},
  "required": ["sku"]
}"#;

/// Every row's atomic and entity values, read by delta-rs's Python package.
fn rows(table: &Path) -> Vec<Value> {
    // `os._exit`: pyarrow's threads sometimes abort the interpreter's teardown.
    let script = "import os, sys, json\nfrom deltalake import DeltaTable\n\
        t = DeltaTable(sys.argv[1]).to_pyarrow_table()\n\
        names = set(t.schema.names)\n\
        print(json.dumps({'columns': sorted(names), 'rows': [\n\
          {k: (str(v) if k.endswith('tstamp') and v is not None else v) for k, v in r.items()}\n\
          for r in t.to_pylist()]}, default=str), flush=True)\n\
        os._exit(0)";
    let out = support::run_ok(Command::new(support::python()).args(["-c", script]).arg(table));
    let read: Value = serde_json::from_str(out.trim()).unwrap();
    let columns = read["columns"].as_array().unwrap();
    for column in [
        "event_id",
        "collector_tstamp",
        "derived_tstamp",
        "page_urlhost",
        "unstruct_event_com_snowplowanalytics_snowplow_link_click_1",
        "contexts_com_acme_product_view_1",
        "dt",
        "hour",
    ] {
        assert!(columns.iter().any(|c| c == column), "{column} in {columns:?}");
    }
    read["rows"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowplows_node_tracker_lands_once_in_a_snowplow_shaped_table_through_kill_9() {
    let Some(modules) = support::npm_modules("snowplow", "@snowplow/node-tracker@4.8.0") else {
        return;
    };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    for (path, schema) in [
        (
            "com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-0",
            LINK_CLICK_100,
        ),
        ("com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1", LINK_CLICK),
        ("com.acme/productView/jsonschema/1-0-0", PRODUCT),
    ] {
        let file = dir.join("iglu/schemas").join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, schema).unwrap();
    }
    let (api, web) = (support::free_port(), support::free_port());
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[api]\naddress = \"127.0.0.1:{api}\"\n\n[delivery]\nvisibility_timeout_secs = 5\n\n\
             [sources.collector]\ntype = \"http\"\naddress = \"127.0.0.1:{web}\"\nprotocol = \"snowplow\"\n\n\
             [transforms.enrich]\ntype = \"snowplow\"\ninputs = [\"collector\"]\nuser_ipaddress = \"anonymized\"\n\n\
             [sinks.lake]\ntype = \"lake\"\ninputs = [\"enrich\"]\nuri = \"lake/events\"\nflush_interval_secs = 1\n"
        ),
    )
    .unwrap();
    let imported = support::run_ok(
        Command::new(support::SLUICE)
            .args(["schema", "import"])
            .arg(&pipeline)
            .arg(dir.join("iglu")),
    );
    assert!(imported.contains("registered"), "{imported}");
    let sluice = start_logged(dir, api);

    let client = reqwest::Client::new();
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            format!("http://127.0.0.1:{web}/com.snowplowanalytics.snowplow/tp2"),
        )
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(preflight.headers()["access-control-allow-credentials"], "true");
    let pixel = client.get(format!("http://127.0.0.1:{web}/i")).send().await.unwrap();
    assert_eq!(
        pixel.headers()["content-type"],
        "image/gif",
        "an empty pixel is still a pixel"
    );
    assert_eq!(pixel.bytes().await.unwrap().len(), 43);
    let bad = client
        .post(format!("http://127.0.0.1:{web}/com.snowplowanalytics.snowplow/tp2"))
        .body("[1, 2]")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "not a payload_data envelope");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/snowplow_client.js");
    let count = 1200;
    let tracker = Command::new("node")
        .arg(script)
        .args(["127.0.0.1", &web.to_string(), &count.to_string()])
        .env("SNOWPLOW_MODULES", &modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (sluice, printed) = through_two_kills(tracker, sluice, dir, api).await;
    let summary = printed.last().unwrap();
    assert_eq!(summary["done"], count, "{summary}");
    assert_eq!(summary["left"], 0, "the trackers' stores drained: {summary}");
    assert!(
        summary["failures"].as_u64().unwrap() > 0,
        "the kills failed some requests: {summary}"
    );
    sluice.stop();
    let status = Command::new(support::SLUICE)
        .args(["run", "--until-idle"])
        .arg(&pipeline)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let sent = &printed[..printed.len() - 1];
    let valid: BTreeMap<&str, &str> = sent
        .iter()
        .filter(|e| e["valid"] == true)
        .map(|e| (e["eid"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    let landed = rows(&dir.join("lake/events"));
    let ids: BTreeSet<&str> = landed.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(landed.len(), ids.len(), "each event once");
    assert_eq!(ids, valid.keys().copied().collect(), "exactly the valid events");
    for row in &landed {
        let kind = valid[row["event_id"].as_str().unwrap()];
        assert_eq!(row["app_id"], "shop");
        assert_eq!(row["domain_userid"], "d-1");
        assert!(row["user_ipaddress"].as_str().unwrap().ends_with(".x"), "{row}");
        assert!(row["derived_tstamp"].as_str().is_some() && row["dvce_created_tstamp"].as_str().is_some());
        match kind {
            "page_view" => {
                assert_eq!(row["event"], "page_view");
                assert_eq!(row["page_urlhost"], "shop.example");
                assert_eq!(row["page_urlfragment"], "top");
                assert_eq!(row["refr_urlhost"], "search.example");
            }
            "struct" => {
                assert_eq!(row["se_category"], "shop");
                assert!(row["se_value"].as_f64().is_some());
            }
            _ => {
                assert_eq!(row["event"], "unstruct");
                assert_eq!(row["event_name"], "link_click");
                let click = &row["unstruct_event_com_snowplowanalytics_snowplow_link_click_1"];
                assert!(
                    click["target_url"].as_str().unwrap().starts_with("https://x.example/"),
                    "{row}"
                );
                let products = row["contexts_com_acme_product_view_1"].as_array().unwrap();
                assert_eq!(products.len(), 1);
                assert!(products[0]["sku"].as_str().unwrap().starts_with("sku-"));
            }
        }
    }
    let dead = Command::new(support::SLUICE)
        .args(["dlq", "list", "--json"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let dead: Value = serde_json::from_slice(&dead.stdout).unwrap();
    let invalid: BTreeSet<&str> = sent
        .iter()
        .filter(|e| e["valid"] == false)
        .map(|e| e["eid"].as_str().unwrap())
        .collect();
    let reasons = dead["by_reason"].to_string();
    // A request whose answer a kill cut off is sent again by the tracker
    // under a new batch: its invalid events are stored again (dead letters
    // are kept per batch and line), at most ten per failed request.
    let shown = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show", "--json", "--limit", "100000"])
            .arg(&pipeline),
    );
    let dead_ids: BTreeSet<String> = shown
        .lines()
        .map(|l| {
            let letter: Value = serde_json::from_str(l).unwrap();
            let line: Value = serde_json::from_str(letter["bytes"].as_str().unwrap()).unwrap();
            line["parameters"]["eid"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(dead_ids, invalid.iter().map(|e| e.to_string()).collect(), "{dead}");
    let total = dead["total"].as_u64().unwrap();
    let resent = 10 * summary["failures"].as_u64().unwrap();
    assert!(
        total >= invalid.len() as u64 && total <= invalid.len() as u64 + resent,
        "{dead}"
    );
    assert!(
        reasons.contains("schema:/unstruct_event/targetUrl:minLength"),
        "{reasons}"
    );
    assert!(reasons.contains("unknown_schema"), "{reasons}");
    eprintln!(
        "{} Snowplow events ({} valid) through 2 kills, {} requests ({} failed): {} rows, {} dead letters",
        sent.len(),
        valid.len(),
        summary["requests"],
        summary["failures"],
        landed.len(),
        dead["total"]
    );
}
