use std::time::Duration;

use apache_avro::{Schema as AvroSchema, types::Value as AvroValue};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use sluice_core::{BatchInfo, Event, Transform, TransformOutput};

use super::{transform::AvroTransform, *};
use crate::{
    arrow_layout, doc,
    registry::{Registry, RegistryError, SchemaKey},
};

fn page_view(extra: Option<Value>) -> Value {
    let mut fields = vec![
        json!({"name": "id", "type": "string"}),
        json!({"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}}),
        json!({"name": "n", "type": ["null", "long"], "default": null}),
        json!({"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["view", "click"]}}),
        json!({"name": "tags", "type": {"type": "array", "items": "string"}}),
        json!({"name": "attrs", "type": {"type": "map", "values": "string"}}),
    ];
    fields.extend(extra);
    json!({"type": "record", "name": "PageView", "namespace": "com.acme", "fields": fields})
}

fn key(version: &str) -> SchemaKey {
    format!("iglu:com.acme/page_view/avro/{version}").parse().unwrap()
}

/// A base64 line of `value` in single-object encoding.
fn encode(schema: &AvroSchema, value: AvroValue) -> String {
    let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
    bytes.extend(fingerprint_bytes(schema));
    bytes.extend(apache_avro::to_avro_datum(schema, value).unwrap());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn datum(id: &str, n: Option<i64>) -> AvroValue {
    AvroValue::Record(vec![
        ("id".into(), AvroValue::String(id.into())),
        ("ts".into(), AvroValue::TimestampMicros(1_795_000_000_123_456)),
        (
            "n".into(),
            match n {
                Some(n) => AvroValue::Union(1, Box::new(AvroValue::Long(n))),
                None => AvroValue::Union(0, Box::new(AvroValue::Null)),
            },
        ),
        ("kind".into(), AvroValue::Enum(1, "click".into())),
        ("tags".into(), AvroValue::Array(vec![AvroValue::String("a".into())])),
        (
            "attrs".into(),
            AvroValue::Map([("k".to_string(), AvroValue::String("v".into()))].into()),
        ),
    ])
}

async fn run(t: &AvroTransform, lines: Vec<String>) -> TransformOutput {
    let events = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| Event::from_line(i as u32, Bytes::from(l)))
        .collect();
    let batch = BatchInfo {
        key: "k",
        maybe_committed: false,
        enqueued_at_ms: 0,
    };
    t.process(batch, events).await.unwrap()
}

#[test]
fn an_avro_schema_reads_as_the_json_schema_of_its_datums() {
    let schema = parse(&page_view(None)).unwrap();
    let json_schema = to_json_schema(&schema);
    let as_value = json_schema.to_value();
    assert_eq!(as_value["required"], json!(["id", "ts", "kind", "tags", "attrs"]));
    assert_eq!(
        as_value["properties"]["ts"],
        json!({"type": "string", "format": "date-time"})
    );
    assert_eq!(as_value["properties"]["n"], json!({"type": ["integer", "null"]}));
    assert_eq!(as_value["properties"]["kind"], json!({"enum": ["view", "click"]}));
    let layout = arrow_layout(&json_schema).unwrap();
    let names: Vec<&str> = layout.schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "ts", "n", "kind", "tags", "attrs"]);
    assert_eq!(
        layout.json_text_paths,
        vec![vec!["attrs".to_string()]],
        "a map is JSON text"
    );

    assert_eq!(
        canonical_form(&schema),
        r#"{"name":"com.acme.PageView","type":"record","fields":[{"name":"id","type":"string"},{"name":"ts","type":"long"},{"name":"n","type":["null","long"]},{"name":"kind","type":{"name":"com.acme.Kind","type":"enum","symbols":["view","click"]}},{"name":"tags","type":{"type":"array","items":"string"}},{"name":"attrs","type":{"type":"map","values":"string"}}]}"#,
        "a logical type is its primitive in the canonical form"
    );

    let decoded = to_json(datum("a", Some(3))).unwrap();
    assert_eq!(
        decoded,
        json!({"id": "a", "ts": "2026-11-18T11:06:40.123456Z", "n": 3, "kind": "click", "tags": ["a"], "attrs": {"k": "v"}})
    );
    let validator = crate::validate::compile::<jsonschema::json::SerdeJson>(&as_value).unwrap();
    assert!(validator.is_valid(&decoded), "a datum is valid against its JSON Schema");
}

#[tokio::test]
async fn avro_versions_are_checked_for_compatibility_and_fingerprints_are_unique() {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    registry.register(&key("1-0-0"), &doc(page_view(None))).await.unwrap();
    let with_default = page_view(Some(json!({"name": "referrer", "type": "string", "default": ""})));
    registry
        .register(&key("1-0-1"), &doc(with_default.clone()))
        .await
        .unwrap();
    let mut required = with_default.clone();
    required["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "user", "type": "string"}));
    let refused = registry.register(&key("1-0-2"), &doc(required)).await.unwrap_err();
    assert!(
        matches!(&refused, RegistryError::Breaking { breaking, .. } if breaking == &["/user: new required field"]),
        "{refused}"
    );
    let twin = registry
        .register(
            &"iglu:com.acme/other/avro/1-0-0".parse().unwrap(),
            &doc(page_view(None)),
        )
        .await
        .unwrap_err();
    assert!(
        twin.to_string()
            .contains("has the fingerprint of iglu:com.acme/page_view/avro/1-0-0"),
        "{twin}"
    );
    let stored = registry.get(&key("1-0-0")).await.unwrap().unwrap();
    assert_eq!(
        stored.fingerprint,
        fingerprint_hex(&fingerprint_bytes(&parse(&page_view(None)).unwrap()))
    );
    let invalid = registry
        .register(
            &key("2-0-0"),
            &doc(json!({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})),
        )
        .await
        .unwrap_err();
    assert!(invalid.to_string().contains("not a valid Avro schema"), "{invalid}");
}

#[tokio::test]
async fn datums_are_decoded_by_fingerprint_and_bad_ones_dead_lettered() {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    registry.register(&key("1-0-0"), &doc(page_view(None))).await.unwrap();
    let t = AvroTransform::new(
        Registry::folder(dir.path()).unwrap(),
        "/id",
        "/ts",
        Some("_schema".into()),
        Duration::from_millis(200),
    );
    let v100 = parse(&page_view(None)).unwrap();
    let v101_json = page_view(Some(json!({"name": "referrer", "type": "string", "default": ""})));
    let v101 = parse(&v101_json).unwrap();
    let mut later = datum("c", None);
    if let AvroValue::Record(fields) = &mut later {
        fields.push(("referrer".into(), AvroValue::String("r".into())));
    }
    let good = encode(&v100, datum("a", Some(3)));
    let mut truncated = base64::engine::general_purpose::STANDARD.decode(&good).unwrap();
    truncated.truncate(truncated.len() - 4);
    let out = run(
        &t,
        vec![
            good.clone(),
            encode(&v101, later.clone()),
            "not base64 !".into(),
            base64::engine::general_purpose::STANDARD.encode(b"{\"json\": true}"),
            base64::engine::general_purpose::STANDARD.encode(truncated),
        ],
    )
    .await;
    assert_eq!(out.events.len(), 1);
    let event = &out.events[0];
    assert_eq!(event.id.as_deref(), Some("a"));
    assert_eq!(event.time_us, Some(1_795_000_000_123_456));
    assert_eq!(event.schema.as_deref(), Some("iglu:com.acme/page_view/avro/1-0-0"));
    let payload: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(payload["_schema"], "iglu:com.acme/page_view/avro/1-0-0");
    assert_eq!(payload["n"], 3);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["unknown_schema", "invalid_avro", "invalid_avro", "invalid_avro"]
    );
    assert!(
        out.rejected[0]
            .detail
            .contains(&fingerprint_hex(&fingerprint_bytes(&v101)))
    );

    // Registered later, 1-0-1 decodes once the registry is read again.
    registry.register(&key("1-0-1"), &doc(v101_json)).await.unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let out = run(&t, vec![encode(&v101, later)]).await;
    assert_eq!(out.events.len(), 1, "{:?}", out.rejected.first().map(|r| &r.detail));
    let payload: Value = serde_json::from_slice(&out.events[0].payload).unwrap();
    assert_eq!(payload["referrer"], "r");
    assert_eq!(payload["n"], Value::Null);

    // With the registry gone, known fingerprints still decode.
    std::fs::remove_dir_all(dir.path().join("schemas")).unwrap();
    let out = run(&t, vec![good]).await;
    assert_eq!(out.events.len(), 1);
}
