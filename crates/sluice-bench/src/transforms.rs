//! Cost per event of the per-event stages, in process on one thread, on
//! the bench's generated events: `validate` (full clickstream schema), a
//! typical `jq` program (revenue in cents, a field dropped) and `hash`
//! (HMAC-SHA256 of one field), each over the same batches; and
//! `self_describing` over the same events wrapped as
//! `{"schema": "iglu:...", "data": ...}`, its schema from a folder registry
//! (cached after the first event), beside `validate` for the registry's cost;
//! and `avro` over the valid events' top-level scalar fields encoded as
//! base64 Avro single-object datums, decoded by fingerprint.

use std::{path::Path, time::Instant};

use anyhow::{Context, Result};
use apache_avro::types::Value as AvroValue;
use base64::Engine;
use bytes::Bytes;
use serde::Serialize;
use sluice_core::{
    BatchInfo, Event, Transform,
    config::{TransformContext, TransformSpec},
};
use sluice_schema::{
    AvroTransform, Pointers, SelfDescribingTransform, ValidateTransform, avro, load_schema,
    registry::{Registry, SchemaKey},
};
use sluice_transform::{
    config::JqConfig,
    jq::{JqLimits, JqTransform},
    ops::{EditTransform, Hash},
    pointer::Pointer,
};

use sluice_bench::JQ_PROGRAM;

use crate::Env;

const EVENTS: usize = 200_000;
const BATCH: usize = 1000;

#[derive(Debug, Serialize)]
pub struct Cost {
    pub stage: String,
    pub events: u64,
    pub ns_per_event: f64,
}

async fn measure(stage: &str, transform: &dyn Transform, batches: &[Vec<Event>]) -> Result<Cost> {
    let started = Instant::now();
    let mut events = 0u64;
    for batch in batches {
        events += batch.len() as u64;
        transform.process(BatchInfo::first("test"), batch.clone()).await?;
    }
    Ok(Cost {
        stage: stage.to_string(),
        events,
        ns_per_event: started.elapsed().as_nanos() as f64 / events as f64,
    })
}

pub async fn costs(env: &Env, input: &Path) -> Result<Vec<Cost>> {
    let text = std::fs::read(input).context("reading the events")?;
    let lines: Vec<Event> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(EVENTS)
        .enumerate()
        .map(|(i, l)| Event::from_line(i as u32, Bytes::copy_from_slice(l)))
        .collect();
    let raw: Vec<Vec<Event>> = lines.chunks(BATCH).map(<[Event]>::to_vec).collect();
    let schema = load_schema(&sluice_gen::clickstream_schema_path())?;
    let validate = ValidateTransform::new(&schema, "/event_id", "/ts").map_err(anyhow::Error::msg)?;
    let mut valid = Vec::new();
    for batch in &raw {
        valid.push(validate.process(BatchInfo::first("test"), batch.clone()).await?.events);
    }
    let jq: JqConfig = serde_json::from_value(serde_json::json!({"program": JQ_PROGRAM}))?;
    let context = TransformContext {
        name: "jq",
        data_dir: &env.work,
    };
    let jq = jq.build(&context).map_err(anyhow::Error::msg)?;
    let jq_in_process = JqTransform::in_process(JQ_PROGRAM, JqLimits::default()).map_err(anyhow::Error::msg)?;
    let registry_dir = env.work.join("registry");
    if registry_dir.exists() {
        std::fs::remove_dir_all(&registry_dir)?;
    }
    let key: SchemaKey = "iglu:com.example/click/jsonschema/1-0-0"
        .parse()
        .map_err(anyhow::Error::msg)?;
    let registry = Registry::folder(&registry_dir)?;
    registry.register(&key, &schema).await?;
    let described = SelfDescribingTransform::new(
        registry.clone(),
        Pointers {
            schema: "/schema".into(),
            data: "/data".into(),
            event_id: "/event_id".into(),
            event_time: "/ts".into(),
            key_field: Some("/_schema".into()),
        },
        std::time::Duration::from_secs(60),
    );
    let wrapped: Vec<Vec<Event>> = raw
        .iter()
        .map(|batch| {
            batch
                .iter()
                .map(|e| {
                    let mut line = format!("{{\"schema\":\"{key}\",\"data\":").into_bytes();
                    line.extend_from_slice(&e.payload);
                    line.push(b'}');
                    Event::from_line(e.line, Bytes::from(line))
                })
                .collect()
        })
        .collect();
    let avro_key: SchemaKey = "iglu:com.example/click/avro/1-0-0"
        .parse()
        .map_err(anyhow::Error::msg)?;
    let avro_schema = serde_json::json!({"type": "record", "name": "Click", "namespace": "com.example", "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "event_type", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "user_id", "type": ["null", "string"], "default": null},
        {"name": "session_id", "type": ["null", "string"], "default": null}
    ]});
    registry
        .register(&avro_key, &serde_json::from_value(avro_schema.clone())?)
        .await?;
    let decoder = AvroTransform::new(
        registry.clone(),
        "/event_id",
        "/ts",
        Some("_schema".into()),
        std::time::Duration::from_secs(60),
    );
    let encoded = avro_lines(&avro::parse(&avro_schema).map_err(anyhow::Error::msg)?, &valid)?;
    let user_id = Pointer::parse("/user_id").map_err(anyhow::Error::msg)?;
    let hash = EditTransform(Hash::new(vec![user_id], b"bench-key".to_vec()));
    Ok(vec![
        measure("validate (full schema)", &validate, &raw).await?,
        measure("self_describing (registry, same schema)", &described, &wrapped).await?,
        measure("avro (decode by fingerprint, 5 scalar fields)", &decoder, &encoded).await?,
        measure(
            "jq (revenue in cents, drop a field; worker process)",
            jq.as_ref(),
            &valid,
        )
        .await?,
        measure(
            "jq (the same, in-process: no limits but output)",
            &jq_in_process,
            &valid,
        )
        .await?,
        measure("hash (HMAC-SHA256 of one field)", &hash, &valid).await?,
    ])
}

/// The events' id, type, time, user and session as base64 lines of Avro
/// single-object datums of `schema`.
fn avro_lines(schema: &apache_avro::Schema, batches: &[Vec<Event>]) -> Result<Vec<Vec<Event>>> {
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
    let optional = |s: Option<String>| match s {
        Some(s) => AvroValue::Union(1, Box::new(AvroValue::String(s))),
        None => AvroValue::Union(0, Box::new(AvroValue::Null)),
    };
    let mut out = Vec::new();
    for batch in batches {
        let mut lines = Vec::with_capacity(batch.len());
        for event in batch {
            let v: serde_json::Value = serde_json::from_slice(&event.payload)?;
            let record = AvroValue::Record(vec![
                (
                    "event_id".into(),
                    AvroValue::String(text(&v, "event_id").unwrap_or_default()),
                ),
                (
                    "event_type".into(),
                    AvroValue::String(text(&v, "event_type").unwrap_or_default()),
                ),
                (
                    "ts".into(),
                    AvroValue::TimestampMicros(event.time_us.unwrap_or_default()),
                ),
                ("user_id".into(), optional(text(&v, "user_id"))),
                ("session_id".into(), optional(text(&v, "session_id"))),
            ]);
            let mut bytes = avro::SINGLE_OBJECT_MAGIC.to_vec();
            bytes.extend(avro::fingerprint_bytes(schema));
            bytes.extend(apache_avro::to_avro_datum(schema, record)?);
            let line = base64::engine::general_purpose::STANDARD.encode(bytes);
            lines.push(Event::from_line(event.line, Bytes::from(line)));
        }
        out.push(lines);
    }
    Ok(out)
}
