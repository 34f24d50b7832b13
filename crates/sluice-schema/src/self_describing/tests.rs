use serde_json::json;

use super::*;
use crate::{doc, registry::SchemaKey};

fn pointers() -> Pointers {
    Pointers {
        schema: "/schema".into(),
        data: "/data".into(),
        event_id: "/id".into(),
        event_time: "/ts".into(),
        key_field: Some("/_schema".into()),
    }
}

fn page_view(extra: Option<&str>) -> Value {
    let mut schema = json!({"type": "object", "required": ["id", "ts", "url"], "additionalProperties": false,
        "properties": {"id": {"type": "string"}, "ts": {"type": "string", "format": "date-time"}, "url": {"type": "string"}}});
    if let Some(field) = extra {
        schema["properties"][field] = json!({"type": "string"});
    }
    schema
}

fn event(schema: &str, data: Value) -> Event {
    let line = json!({"schema": schema, "data": data}).to_string();
    Event::from_line(0, Bytes::from(line))
}

async fn run(t: &SelfDescribingTransform, events: Vec<Event>) -> TransformOutput {
    let batch = BatchInfo {
        key: "k",
        maybe_committed: false,
        enqueued_at_ms: 0,
    };
    t.process(batch, events).await.unwrap()
}

#[tokio::test]
async fn each_event_is_checked_against_its_exact_version_and_unknown_ones_are_dead_letters() {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    let v100: SchemaKey = "iglu:com.acme/page_view/jsonschema/1-0-0".parse().unwrap();
    let v101: SchemaKey = "iglu:com.acme/page_view/jsonschema/1-0-1".parse().unwrap();
    registry.register(&v100, &doc(page_view(None))).await.unwrap();
    registry
        .register(&v101, &doc(page_view(Some("referrer"))))
        .await
        .unwrap();
    let t = SelfDescribingTransform::new(
        Registry::folder(dir.path()).unwrap(),
        pointers(),
        Duration::from_millis(200),
    );

    let data = |id: &str, extra: bool| {
        let mut d = json!({"id": id, "ts": "2026-11-23T10:00:00Z", "url": "/a"});
        if extra {
            d["referrer"] = json!("x");
        }
        d
    };
    let out = run(
        &t,
        vec![
            event(&v100.to_string(), data("a", false)),
            event(&v101.to_string(), data("b", true)),
            event(&v100.to_string(), data("c", true)), // 1-0-0 has no referrer
            event("iglu:com.acme/page_view/jsonschema/1-0-2", data("d", true)),
            event("not a key", data("e", false)),
        ],
    )
    .await;
    let ids: Vec<&str> = out.events.iter().map(|e| e.id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    let payload: Value = serde_json::from_slice(&out.events[1].payload).unwrap();
    assert_eq!(
        payload["_schema"],
        v101.to_string(),
        "the output is the data, with its schema key"
    );
    assert_eq!(payload["referrer"], "x");
    let routed: Vec<&str> = out.events.iter().map(|e| e.schema.as_deref().unwrap()).collect();
    assert_eq!(
        routed,
        [v100.to_string(), v101.to_string()],
        "each event carries its version's key"
    );
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["schema:/:additionalProperties", "unknown_schema", "unknown_schema"]
    );

    // Registered later, 1-0-2 is found once the miss is rechecked.
    registry
        .register(
            &"iglu:com.acme/page_view/jsonschema/1-0-2".parse().unwrap(),
            &doc(page_view(Some("referrer"))),
        )
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let out = run(
        &t,
        vec![event("iglu:com.acme/page_view/jsonschema/1-0-2", data("d", true))],
    )
    .await;
    assert_eq!(out.events.len(), 1);

    // With the registry gone, cached versions still pass; an uncached one
    // fails the batch as retriable instead of losing its events.
    std::fs::remove_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::write(dir.path().join("schemas"), "not a folder").unwrap();
    let out = run(&t, vec![event(&v100.to_string(), data("f", false))]).await;
    assert_eq!(out.events.len(), 1);
    let batch = BatchInfo {
        key: "k",
        maybe_committed: false,
        enqueued_at_ms: 0,
    };
    let Err(err) = t
        .process(
            batch,
            vec![event("iglu:com.acme/other/jsonschema/1-0-0", data("g", false))],
        )
        .await
    else {
        panic!("an outage for an uncached key fails the batch");
    };
    assert!(err.to_string().contains("schema registry"), "{err}");
}
