//! Cost per event of the per-event stages, in process on one thread, on
//! the bench's generated events: `validate` (full clickstream schema), a
//! typical `jq` program (revenue in cents, a field dropped) and `hash`
//! (HMAC-SHA256 of one field), each over the same batches; and
//! `self_describing` over the same events wrapped as
//! `{"schema": "iglu:...", "data": ...}`, its schema from a folder registry
//! (cached after the first event), beside `validate` for the registry's cost.

use std::{path::Path, time::Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::Serialize;
use sluice_core::{BatchInfo, Event, Transform};
use sluice_schema::{
    Pointers, SelfDescribingTransform, ValidateTransform, load_schema,
    registry::{Registry, SchemaKey},
};
use sluice_transform::{
    config::JqConfig,
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
    let schema = load_schema(&env.bench_dir.join("schemas/clickstream.schema.json"))?;
    let validate = ValidateTransform::new(&schema, "/event_id", "/ts").map_err(anyhow::Error::msg)?;
    let mut valid = Vec::new();
    for batch in &raw {
        valid.push(validate.process(BatchInfo::first("test"), batch.clone()).await?.events);
    }
    let jq: JqConfig = serde_json::from_value(serde_json::json!({"inputs": ["v"], "program": JQ_PROGRAM}))?;
    let jq = jq.build(Path::new("/")).map_err(anyhow::Error::msg)?;
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
        registry,
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
    let user_id = Pointer::parse("/user_id").map_err(anyhow::Error::msg)?;
    let hash = EditTransform(Hash::new(vec![user_id], b"bench-key".to_vec()));
    Ok(vec![
        measure("validate (full schema)", &validate, &raw).await?,
        measure("self_describing (registry, same schema)", &described, &wrapped).await?,
        measure("jq (revenue in cents, drop a field)", jq.as_ref(), &valid).await?,
        measure("hash (HMAC-SHA256 of one field)", &hash, &valid).await?,
    ])
}
