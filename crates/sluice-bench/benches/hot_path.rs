//! Micro-benchmarks of the hot path, on 10 000 generator lines (1% malformed):
//! * `validate`: parse each event and check it against the full clickstream
//!   JSON Schema, extracting id and time;
//! * `jq`: the bench's typical jq program (revenue in cents, a field
//!   dropped) on the valid events;
//! * `lake_accept`: group by partition, dedupe, decode JSON into Arrow
//!   columns and encode them into in-memory Parquet (the sink's `accept`;
//!   `reset` discards the files, so no I/O is measured).
//!
//! `cargo bench -p sluice-bench --bench hot_path`

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::{BatchInfo, Event, Sink, Transform};
use sluice_lake::{LakeSink, LakeSinkConfig};
use sluice_schema::{ValidateTransform, arrow_layout, load_schema};

const LINES: usize = 10_000;

fn lines() -> Vec<Bytes> {
    let options = sluice_gen::ClickstreamOptions {
        bad_rate: 0.01,
        ..sluice_gen::ClickstreamOptions::clean(LINES as u64, 3)
    };
    let mut out = Vec::new();
    sluice_gen::clickstream(&options, &mut out).expect("writing to memory");
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(Bytes::copy_from_slice)
        .collect()
}

fn events(lines: &[Bytes]) -> Vec<Event> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| Event::from_line(i as u32, l.clone()))
        .collect()
}

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lines = lines();
    let schema = load_schema(&sluice_gen::clickstream_schema_path()).unwrap();
    let validate = ValidateTransform::new(&schema, "/event_id", "/ts").unwrap();
    let bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();

    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("validate", |b| {
        b.iter_batched(
            || events(&lines),
            |events| rt.block_on(validate.process(BatchInfo::first("test"), events)).unwrap(),
            BatchSize::LargeInput,
        )
    });

    let valid = rt
        .block_on(validate.process(BatchInfo::first("test"), events(&lines)))
        .unwrap()
        .events;
    let jq = sluice_transform::jq::JqTransform::in_process(sluice_bench::JQ_PROGRAM, Default::default()).unwrap();
    group.bench_function("jq", |b| {
        b.iter_batched(
            || valid.clone(),
            |events| rt.block_on(jq.process(BatchInfo::first("test"), events)).unwrap(),
            BatchSize::LargeInput,
        )
    });
    let layout = arrow_layout(&schema).unwrap();
    let dir = sluice_testkit::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path().join("t")).unwrap();
    let config = default_config(url.as_str());
    let url = sluice_lake::StoreLocation::from(url);
    let mut sink = rt
        .block_on(LakeSink::open(
            url,
            &config,
            &layout.schema,
            layout.json_text_paths.clone(),
            "/event_id",
        ))
        .unwrap();
    group.bench_function("lake_accept", |b| {
        b.iter_batched(
            || valid.clone(),
            |events| {
                rt.block_on(sink.accept("bench", false, events)).unwrap();
                sink.reset();
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
    eprintln!("input: {} events, {} bytes of JSON", lines.len(), bytes);
}

/// The sink's defaults, as a pipeline file with only `uri` gives them.
fn default_config(uri: &str) -> LakeSinkConfig {
    serde_json::from_value(serde_json::json!({ "uri": uri })).unwrap()
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
