use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::json;

use super::*;

fn spec(source: Source, on_missing: OnMissing, refresh: Duration) -> LookupSpec {
    LookupSpec {
        name: "countries".into(),
        key: Pointer::parse("/geo/country").unwrap(),
        target: Pointer::parse("/geo/info").unwrap(),
        on_missing,
        source,
        key_column: "code".into(),
        refresh,
    }
}

fn file(path: &std::path::Path, format: Format) -> Source {
    Source::File {
        path: path.display().to_string(),
        format,
    }
}

fn events(countries: &[Value]) -> Vec<Event> {
    countries
        .iter()
        .enumerate()
        .map(|(i, c)| Event::from_line(i as u32, Bytes::from(json!({"geo": {"country": c}}).to_string())))
        .collect()
}

fn infos(out: &TransformOutput) -> Vec<Value> {
    out.events
        .iter()
        .map(|e| serde_json::from_slice::<Value>(&e.payload).unwrap()["geo"]["info"].clone())
        .collect()
}

/// Replaces `path` at once, as a reference-data job should.
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

#[tokio::test]
async fn csv_rows_enrich_events_and_missing_keys_follow_on_missing() {
    let dir = sluice_testkit::tempdir().unwrap();
    let path = dir.path().join("countries.csv");
    std::fs::write(&path, "code,name,region\nDE,Germany,EU\nUS,United States,NA\n").unwrap();
    let input = [json!("DE"), json!("FR"), json!(null)];

    let t = LookupTransform::new(spec(file(&path, Format::Csv), OnMissing::Null, Duration::from_secs(60)));
    let out = t.process(BatchInfo::first("test"), events(&input)).await.unwrap();
    assert_eq!(
        infos(&out),
        vec![
            json!({"code": "DE", "name": "Germany", "region": "EU"}),
            Value::Null,
            Value::Null
        ]
    );

    let t = LookupTransform::new(spec(file(&path, Format::Csv), OnMissing::Drop, Duration::from_secs(60)));
    let out = t.process(BatchInfo::first("test"), events(&input)).await.unwrap();
    assert_eq!((out.events.len(), out.dropped), (1, 2));

    let t = LookupTransform::new(spec(
        file(&path, Format::Csv),
        OnMissing::DeadLetter,
        Duration::from_secs(60),
    ));
    let out = t.process(BatchInfo::first("test"), events(&input)).await.unwrap();
    let reasons: Vec<(&str, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.reason.as_str(), r.detail.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                "lookup_missing:/geo/country",
                "no row with code = \"FR\" in the reference table"
            ),
            ("lookup_missing:/geo/country", "the key is null, not a string or number"),
        ]
    );
}

#[tokio::test]
async fn ndjson_and_parquet_keep_their_types_and_number_keys_match() {
    let dir = sluice_testkit::tempdir().unwrap();
    let ndjson = dir.path().join("ref.ndjson");
    std::fs::write(
        &ndjson,
        "{\"code\": 49, \"pop\": 83.2}\n\n{\"code\": 1, \"pop\": 335.9}\n",
    )
    .unwrap();
    let t = LookupTransform::new(spec(
        file(&ndjson, Format::Ndjson),
        OnMissing::Null,
        Duration::from_secs(60),
    ));
    let out = t
        .process(BatchInfo::first("test"), events(&[json!(49), json!("1")]))
        .await
        .unwrap();
    assert_eq!(
        infos(&out),
        vec![json!({"code": 49, "pop": 83.2}), json!({"code": 1, "pop": 335.9})]
    );

    let parquet_path = dir.path().join("ref.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("population_m", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["DE", "US"])),
            Arc::new(Int64Array::from(vec![Some(83), None])),
        ],
    )
    .unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet_path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let t = LookupTransform::new(spec(
        file(&parquet_path, Format::Parquet),
        OnMissing::Null,
        Duration::from_secs(60),
    ));
    let out = t
        .process(BatchInfo::first("test"), events(&[json!("DE"), json!("US")]))
        .await
        .unwrap();
    assert_eq!(
        infos(&out),
        vec![json!({"code": "DE", "population_m": 83}), json!({"code": "US"})]
    );
}

#[tokio::test]
async fn a_refresh_swaps_the_table_and_a_failed_one_keeps_the_last_good() {
    let dir = sluice_testkit::tempdir().unwrap();
    let path = dir.path().join("countries.csv");
    write_atomically(&path, "code,name\nDE,Germany\n");
    let t = LookupTransform::new(spec(
        file(&path, Format::Csv),
        OnMissing::Null,
        Duration::from_millis(50),
    ));
    assert_eq!(
        infos(
            &t.process(BatchInfo::first("test"), events(&[json!("DE")]))
                .await
                .unwrap()
        )[0]["name"],
        "Germany"
    );

    write_atomically(&path, "code,name\nDE,Deutschland\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let name = infos(
            &t.process(BatchInfo::first("test"), events(&[json!("DE")]))
                .await
                .unwrap(),
        )[0]["name"]
            .clone();
        if name == "Deutschland" {
            break;
        }
        assert!(Instant::now() < deadline, "the new table never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A broken file (a row without a key) fails to load; the last good table stays.
    write_atomically(&path, "name\nBroken\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        infos(
            &t.process(BatchInfo::first("test"), events(&[json!("DE")]))
                .await
                .unwrap()
        )[0]["name"],
        "Deutschland"
    );
}

#[tokio::test]
async fn no_table_yet_fails_the_batch_for_redelivery() {
    let dir = sluice_testkit::tempdir().unwrap();
    let path = dir.path().join("missing.csv");
    let t = LookupTransform::new(spec(file(&path, Format::Csv), OnMissing::Null, Duration::from_secs(60)));
    let err = t
        .process(BatchInfo::first("test"), events(&[json!("DE")]))
        .await
        .err()
        .unwrap();
    assert!(err.is_retriable() && err.message.contains("not loaded yet"), "{err}");
}

#[tokio::test]
async fn a_postgres_query_is_a_reference_table() {
    let Some(url) = sluice_testkit::services::postgres() else {
        return;
    };
    let schema = format!("sluice_lookup_{}", std::process::id());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.countries (code text, name text, members int8, share float8, eu bool);
             INSERT INTO {schema}.countries VALUES ('DE', 'Germany', 83, 0.19, true), ('US', 'United States', NULL, 0.25, false);"
        ))
        .await
        .unwrap();
    let source = Source::Postgres {
        url: url.as_str().into(),
        query: format!("SELECT code, name, members, share, eu FROM {schema}.countries"),
    };
    assert!(
        !format!("{source:?}").contains(url.as_str()),
        "the database URL never prints"
    );
    let t = LookupTransform::new(spec(source, OnMissing::Null, Duration::from_secs(60)));
    let out = t
        .process(BatchInfo::first("test"), events(&[json!("DE"), json!("US")]))
        .await
        .unwrap();
    assert_eq!(
        infos(&out),
        vec![
            json!({"code": "DE", "name": "Germany", "members": 83, "share": 0.19, "eu": true}),
            json!({"code": "US", "name": "United States", "members": null, "share": 0.25, "eu": false}),
        ]
    );
    let bad = Source::Postgres {
        url: url.as_str().into(),
        query: format!("SELECT code, now() AS at FROM {schema}.countries"),
    };
    let err = source::load(&bad, "code").await.unwrap_err();
    assert!(err.contains("column \"at\" is timestamptz; cast it"), "{err}");
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
