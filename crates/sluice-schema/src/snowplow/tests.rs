use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;
use crate::doc;

const LINK_CLICK: &str = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-0";
const PRODUCT: &str = "iglu:com.acme/productView/jsonschema/1-0-0";

async fn transform() -> (sluice_testkit::TempDir, SnowplowTransform) {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    let link_click = json!({"type": "object", "required": ["targetUrl"], "additionalProperties": false,
        "properties": {"targetUrl": {"type": "string", "minLength": 1}, "elementId": {"type": "string"}}});
    let product = json!({"type": "object", "required": ["sku"],
        "properties": {"sku": {"type": "string"}, "unitPrice": {"type": "number"}}});
    registry
        .register(&LINK_CLICK.parse().unwrap(), &doc(link_click))
        .await
        .unwrap();
    registry
        .register(&PRODUCT.parse().unwrap(), &doc(product))
        .await
        .unwrap();
    let t = SnowplowTransform::new(registry, Duration::from_secs(60), IpAddresses::Anonymized);
    (dir, t)
}

fn line(parameters: Value) -> Event {
    let line = json!({"collector_tstamp": "2026-12-03T12:00:00.000Z", "user_ipaddress": "203.0.113.9",
        "parameters": parameters});
    Event::from_line(0, Bytes::from(line.to_string()))
}

fn ue(key: &str, data: Value) -> String {
    let envelope = json!({"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": key, "data": data}});
    URL_SAFE_NO_PAD.encode(envelope.to_string())
}

fn contexts(entities: Value) -> String {
    json!({"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", "data": entities}).to_string()
}

async fn run(t: &SnowplowTransform, events: Vec<Event>) -> TransformOutput {
    let batch = BatchInfo {
        key: "k",
        maybe_committed: false,
        enqueued_at_ms: 0,
    };
    t.process(batch, events).await.unwrap()
}

fn payload(event: &Event) -> Value {
    serde_json::from_slice(&event.payload).unwrap()
}

#[tokio::test]
async fn a_self_describing_event_with_entities_fills_its_columns() {
    let (_dir, t) = transform().await;
    let out = run(
        &t,
        vec![line(json!({"e": "ue", "eid": "e-1", "aid": "shop",
        "ue_px": ue(LINK_CLICK, json!({"targetUrl": "https://x.example", "elementId": "buy"})),
        "co": contexts(json!([
            {"schema": PRODUCT, "data": {"sku": "a", "unitPrice": 2.5}},
            {"schema": PRODUCT, "data": {"sku": "b"}}
        ]))}))],
    )
    .await;
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let event = &out.events[0];
    let p = payload(event);
    assert_eq!(p["event"], "unstruct");
    assert_eq!(p["event_name"], "link_click");
    assert_eq!(p["event_version"], "1-0-0");
    assert_eq!(
        p["unstruct_event_com_snowplowanalytics_snowplow_link_click_1"],
        json!({"target_url": "https://x.example", "element_id": "buy"})
    );
    assert_eq!(
        p["contexts_com_acme_product_view_1"],
        json!([{"sku": "a", "unit_price": 2.5}, {"sku": "b"}])
    );
    assert_eq!(p["user_ipaddress"], "203.0.113.x", "anonymised as configured");
    assert_eq!(event.id.as_deref(), Some("e-1"));
    assert_eq!(event.time_us, Some(1_796_299_200_000_000));
    assert_eq!(
        event.schema.as_deref(),
        Some(format!("contexts:{PRODUCT} unstruct:{LINK_CLICK}").as_str())
    );
}

#[tokio::test]
async fn a_built_in_event_has_an_empty_shape() {
    let (_dir, t) = transform().await;
    let out = run(
        &t,
        vec![line(json!({"e": "pv", "eid": "e-2", "url": "http://a.example/"}))],
    )
    .await;
    assert_eq!(out.events[0].schema.as_deref(), Some(""));
    assert_eq!(payload(&out.events[0])["event_name"], "page_view");
}

#[tokio::test]
async fn a_part_that_breaks_its_schema_dead_letters_the_whole_event_naming_schema_and_pointer() {
    let (_dir, t) = transform().await;
    let bad_ue = line(json!({"e": "ue", "eid": "e-3", "ue_pr": serde_json::from_str::<Value>(
        &String::from_utf8(URL_SAFE_NO_PAD.decode(ue(LINK_CLICK, json!({"targetUrl": ""}))).unwrap()).unwrap()
    ).unwrap().to_string()}));
    let bad_context = line(json!({"e": "pv", "eid": "e-4",
        "co": contexts(json!([{"schema": PRODUCT, "data": {"sku": "a"}}, {"schema": PRODUCT, "data": {"unitPrice": 1}}]))}));
    let unknown = line(json!({"e": "ue", "eid": "e-5", "ue_px": ue("iglu:com.acme/nope/jsonschema/1-0-0", json!({}))}));
    let not_base64 = line(json!({"e": "ue", "eid": "e-6", "ue_px": "%%%"}));
    let wrong_envelope = line(
        json!({"e": "pv", "eid": "e-7", "co": json!({"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": []}).to_string()}),
    );
    let no_ue = line(json!({"e": "ue", "eid": "e-8"}));
    let out = run(
        &t,
        vec![bad_ue, bad_context, unknown, not_base64, wrong_envelope, no_ue],
    )
    .await;
    assert!(out.events.is_empty());
    let reasons: Vec<(&str, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.reason.as_str(), r.detail.as_str()))
        .collect();
    assert_eq!(reasons[0].0, "schema:/unstruct_event/targetUrl:minLength");
    assert!(reasons[0].1.starts_with(LINK_CLICK), "{}", reasons[0].1);
    assert_eq!(reasons[1].0, "schema:/contexts/1/sku:required");
    assert!(reasons[1].1.starts_with(PRODUCT), "{}", reasons[1].1);
    assert_eq!(reasons[2].0, "unknown_schema");
    assert!(
        reasons[2].1.contains("iglu:com.acme/nope/jsonschema/1-0-0"),
        "{}",
        reasons[2].1
    );
    assert_eq!(reasons[3].0, "tracker_protocol:ue_px");
    assert_eq!(reasons[4].0, "tracker_protocol:co");
    assert_eq!(reasons[5].0, "tracker_protocol:ue_pr");
    assert!(out.rejected.iter().all(|r| !r.event.raw.is_empty()), "bytes kept");
}

#[test]
fn base64_is_read_in_either_alphabet_with_or_without_padding() {
    let text = "{\"a\":\"??>>\"}";
    for encoded in [
        URL_SAFE_NO_PAD.encode(text),
        base64::engine::general_purpose::STANDARD.encode(text),
    ] {
        assert_eq!(base64_any(&encoded).unwrap(), text.as_bytes());
    }
    assert!(base64_any("%%%").is_none());
}

#[test]
fn addresses_are_anonymised_as_snowplow_does() {
    assert_eq!(anonymized("203.0.113.9"), "203.0.113.x");
    assert_eq!(anonymized("2001:db8:85a3::8a2e:370:7334"), "2001:db8:85a3:x:x:x:x:x");
    assert_eq!(anonymized("unknown"), "x");
}

#[test]
fn the_atomic_columns_start_with_snowplows_first_columns() {
    let names: Vec<&String> = atomic_layout()
        .schema
        .fields()
        .iter()
        .map(|f| f.name())
        .take(3)
        .collect();
    assert_eq!(names, ["app_id", "platform", "etl_tstamp"]);
    assert!(atomic_layout().json_text_paths.is_empty());
}
