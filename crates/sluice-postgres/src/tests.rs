//! The sink against the machine's real PostgreSQL (`SLUICE_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432/test`). Each test works in a
//! schema of its own and drops it at the end.

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_core::{Accepted, Event, Sink};
use tokio_postgres::Client;

use crate::{PostgresSink, PostgresSinkConfig, WriteMode, db};

fn url() -> String {
    sluice_testkit::services::Service::Postgres.url()
}

/// A fresh schema name and a client to look at it.
async fn scratch() -> (String, Client) {
    static N: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "sluice_unit_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let client = db::connect(&url()).await.expect("the test PostgreSQL is reachable");
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    (schema, client)
}

async fn drop_schema(client: &Client, schema: &str) {
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A scratch schema, a client to look at it and a sink writing into it;
/// `None` (the test skips) when the test PostgreSQL is not there.
async fn opened(mode: WriteMode) -> Option<(String, Client, PostgresSink)> {
    sluice_testkit::services::postgres()?;
    let (schema, client) = scratch().await;
    let sink = PostgresSink::open(&config(&schema, mode), None).await.unwrap();
    Some((schema, client, sink))
}

fn config(schema: &str, mode: WriteMode) -> PostgresSinkConfig {
    let mut c: PostgresSinkConfig = toml::from_str(&format!(
        "url = \"{}\"\nschema = \"{schema}\"\ntable = \"events\"",
        url()
    ))
    .unwrap();
    c.mode = mode;
    if mode == WriteMode::Upsert {
        c.primary_key = vec!["/id".into()];
    }
    c.validate().unwrap();
    c
}

fn events(values: &[Value]) -> Vec<Event> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Event::from_line(i as u32, Bytes::from(v.to_string())))
        .collect()
}

async fn accept(sink: &mut PostgresSink, key: &str, values: &[Value]) -> Vec<(String, String)> {
    accept_events(sink, key, events(values)).await
}

/// Offers batch `key`; returns the refused events' reasons and details.
async fn accept_events(sink: &mut PostgresSink, key: &str, events: Vec<Event>) -> Vec<(String, String)> {
    match sink.accept(key, false, events).await.unwrap() {
        Accepted::Buffered { rejected } => rejected.into_iter().map(|r| (r.reason, r.detail)).collect(),
        Accepted::AlreadyCommitted => panic!("{key} was already committed"),
    }
}

async fn strings(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_else(|| "NULL".into()))
        .collect()
}

async fn columns(client: &Client, schema: &str, table: &str) -> Vec<String> {
    strings(
        client,
        &format!(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns
             WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    )
    .await
}

#[tokio::test]
async fn events_flatten_into_a_root_table_and_child_tables_linked_by_parent_and_index() {
    let Some((schema, client, mut sink)) = opened(WriteMode::Append).await else {
        return;
    };
    let refused = accept(
        &mut sink,
        "b1",
        &[
            json!({"id": "a", "ts": "2026-11-01T00:00:00Z", "device": {"screen": {"w": 390}}, "tags": ["x", "y"],
                   "props": {"items": [{"sku": "s1", "qty": 2, "price": 1.5}, {"sku": "s2", "qty": 1, "price": 10.0}]}}),
            json!({"id": "b", "props": {"items": []}}),
        ],
    )
    .await;
    assert!(refused.is_empty(), "{refused:?}");
    let report = sink.flush().await.unwrap();
    assert_eq!((report.rows, report.batches), (2, 1));

    assert_eq!(
        columns(&client, &schema, "events").await,
        vec![
            "_sluice_id uuid",
            "_sluice_loaded_at timestamp with time zone",
            "device__screen__w bigint",
            "id text",
            "tags jsonb",
            "ts text",
        ]
    );
    let linked = strings(
        &client,
        &format!(
            "SELECT e.id || ':' || i._sluice_list_idx || ':' || i.sku || ':' || i.qty * i.price
             FROM {schema}.events e JOIN {schema}.events__props__items i ON i._sluice_parent_id = e._sluice_id
             ORDER BY 1"
        ),
    )
    .await;
    assert_eq!(linked, vec!["a:0:s1:3", "a:1:s2:10"]);
    let tags = strings(&client, &format!("SELECT tags->>1 FROM {schema}.events ORDER BY id")).await;
    assert_eq!(tags, vec!["y", "NULL"]);
    drop_schema(&client, &schema).await;
}

#[tokio::test]
async fn a_new_field_mid_stream_adds_a_nullable_column_and_a_misfit_is_refused() {
    let Some((schema, client, mut sink)) = opened(WriteMode::Append).await else {
        return;
    };
    accept(&mut sink, "b1", &[json!({"id": "a", "n": 1})]).await;
    sink.flush().await.unwrap();
    let refused = accept(
        &mut sink,
        "b2",
        &[
            json!({"id": "b", "n": 2, "coupon": "X1", "experiment": {"arm": "B"}}),
            json!({"id": "c", "n": "three"}),
            json!({"id": "d", "n": 4.5}),
        ],
    )
    .await;
    assert_eq!(
        refused,
        vec![
            (
                "column_type:/n".to_string(),
                "expected bigint, got string \"three\" (column \"n\" of table \"events\")".to_string()
            ),
            (
                "column_type:/n".to_string(),
                "4.5 does not fit bigint (column \"n\" of table \"events\")".to_string()
            ),
        ]
    );
    sink.flush().await.unwrap();
    let rows = strings(
        &client,
        &format!("SELECT id || ',' || n || ',' || coalesce(coupon, '-') || ',' || coalesce(experiment__arm, '-') FROM {schema}.events ORDER BY id"),
    )
    .await;
    assert_eq!(rows, vec!["a,1,-,-", "b,2,X1,B"]);

    // A new process reads the shape back: `coupon` stays text.
    drop(sink);
    let mut again = PostgresSink::open(&config(&schema, WriteMode::Append), None)
        .await
        .unwrap();
    let refused = accept(&mut again, "b3", &[json!({"id": "e", "coupon": 5})]).await;
    assert_eq!(refused[0].0, "column_type:/coupon");
    drop_schema(&client, &schema).await;
}

/// A double precision column holds the correctly rounded double of the
/// number the event gave, not one a unit in the last place away.
#[tokio::test]
async fn floats_land_correctly_rounded() {
    let Some((schema, client, mut sink)) = opened(WriteMode::Append).await else {
        return;
    };
    let hard = sluice_testkit::floats::HARD_FLOATS;
    let batch = hard
        .iter()
        .enumerate()
        .map(|(i, text)| Event::from_line(i as u32, Bytes::from(format!(r#"{{"n": {i}, "x": {text}}}"#))))
        .collect();
    let refused = accept_events(&mut sink, "b1", batch).await;
    assert!(refused.is_empty(), "{refused:?}");
    sink.flush().await.unwrap();
    let stored: Vec<f64> = client
        .query(&format!("SELECT x FROM {schema}.events ORDER BY n"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), hard.len());
    for (text, got) in hard.iter().zip(stored) {
        let nearest: f64 = text.parse().unwrap();
        assert_eq!(got.to_bits(), nearest.to_bits(), "{text}");
    }
    drop_schema(&client, &schema).await;
}

#[tokio::test]
async fn a_committed_batch_is_recognised_and_two_writers_never_commit_one_batch_twice() {
    if sluice_testkit::services::postgres().is_none() {
        return;
    }
    let (schema, client) = scratch().await;
    let cfg = config(&schema, WriteMode::Append);
    let mut one = PostgresSink::open(&cfg, None).await.unwrap();
    let mut two = PostgresSink::open(&cfg, None).await.unwrap();
    accept(&mut one, "same", &[json!({"id": "a"})]).await;
    accept(&mut two, "same", &[json!({"id": "a"})]).await;
    one.flush().await.unwrap();
    let err = two.flush().await.unwrap_err();
    assert!(err.is_retriable() && err.message.contains("duplicate key"), "{err}");
    two.reset();
    assert!(matches!(
        two.accept("same", true, events(&[json!({"id": "a"})])).await.unwrap(),
        Accepted::AlreadyCommitted
    ));
    let count = strings(&client, &format!("SELECT count(*)::text FROM {schema}.events")).await;
    assert_eq!(count, vec!["1"]);
    drop_schema(&client, &schema).await;
}

#[tokio::test]
async fn upsert_replaces_the_row_and_its_children_and_keeps_the_last_version() {
    let Some((schema, client, mut sink)) = opened(WriteMode::Upsert).await else {
        return;
    };
    accept(
        &mut sink,
        "b1",
        &[
            json!({"id": "a", "v": 1, "items": [{"k": 1}, {"k": 2}, {"k": 3}]}),
            json!({"id": "b", "v": 1}),
        ],
    )
    .await;
    sink.flush().await.unwrap();
    let refused = accept(
        &mut sink,
        "b2",
        &[
            json!({"id": "a", "v": 2, "items": [{"k": 9}]}),
            json!({"id": "a", "v": 3, "items": [{"k": 10}, {"k": 11}]}),
            json!({"v": 4}),
        ],
    )
    .await;
    assert_eq!(refused[0].0, "missing_primary_key:/id");
    let report = sink.flush().await.unwrap();
    assert_eq!((report.rows, report.duplicates_dropped), (1, 1));
    let rows = strings(
        &client,
        &format!(
            "SELECT e.id || ':' || e.v || ':' || coalesce(string_agg(i.k::text, ',' ORDER BY i._sluice_list_idx), '')
             FROM {schema}.events e LEFT JOIN {schema}.events__items i ON i._sluice_root_id = e._sluice_id
             GROUP BY e.id, e.v ORDER BY e.id"
        ),
    )
    .await;
    assert_eq!(rows, vec!["a:3:10,11", "b:1:"]);
    drop_schema(&client, &schema).await;
}

#[tokio::test]
async fn hostile_field_names_are_quoted_and_long_ones_shortened() {
    let Some((schema, client, mut sink)) = opened(WriteMode::Append).await else {
        return;
    };
    let evil = "x\"; DROP TABLE events; --";
    let long = "a".repeat(80);
    let refused = accept(
        &mut sink,
        "b1",
        &[json!({evil: "'); DROP TABLE events; --", &long: 1, "Mixed Case": true, "": 1})],
    )
    .await;
    assert_eq!(refused[0].0, "column_name:/");
    accept(
        &mut sink,
        "b2",
        &[json!({evil: "'); DROP TABLE events; --", &long: 1, "Mixed Case": true})],
    )
    .await;
    sink.flush().await.unwrap();
    let cols = columns(&client, &schema, "events").await;
    assert!(cols.contains(&format!("{evil} text")), "{cols:?}");
    assert!(cols.contains(&"Mixed Case boolean".to_string()), "{cols:?}");
    assert!(
        cols.iter()
            .any(|c| c.starts_with(&"a".repeat(54)) && c.len() == 63 + " bigint".len())
    );
    let stored = strings(
        &client,
        &format!("SELECT \"x\"\"; DROP TABLE events; --\" FROM {schema}.events"),
    )
    .await;
    assert_eq!(stored, vec!["'); DROP TABLE events; --"]);
    drop_schema(&client, &schema).await;
}

#[tokio::test]
async fn the_schema_declares_tables_up_front_and_a_conflicting_type_or_foreign_table_is_refused() {
    if sluice_testkit::services::postgres().is_none() {
        return;
    }
    let (schema, client) = scratch().await;
    let json_schema = r#"{"type": "object", "properties": {
        "ts": {"type": "string", "format": "date-time"},
        "id": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}
    }}"#;
    let cfg = config(&schema, WriteMode::Append);
    PostgresSink::open(&cfg, Some(json_schema.parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        columns(&client, &schema, "events").await[2..],
        ["ts timestamp with time zone", "id text"],
        "the schema's order, after the bookkeeping columns"
    );
    assert!(
        columns(&client, &schema, "events__items")
            .await
            .contains(&"sku text".to_string())
    );

    let changed = r#"{"type": "object", "properties": {"ts": {"type": "integer"}}}"#;
    let err = PostgresSink::open(&cfg, Some(changed.parse().unwrap()))
        .await
        .err()
        .unwrap();
    assert!(
        err.message
            .contains("column \"ts\" of table \"events\" is timestamp with time zone but the schema makes /ts bigint"),
        "{err}"
    );

    client
        .batch_execute(&format!("CREATE TABLE {schema}.theirs (a int)"))
        .await
        .unwrap();
    let mut theirs = cfg.clone();
    theirs.table = "theirs".into();
    let err = PostgresSink::open(&theirs, None).await.err().unwrap();
    assert!(err.message.contains("exists but was not made by Sluice"), "{err}");
    drop_schema(&client, &schema).await;
}

#[tokio::test]
async fn delete_when_removes_the_row_and_its_children_and_the_last_event_of_a_key_wins() {
    if sluice_testkit::services::postgres().is_none() {
        return;
    }
    let (schema, client) = scratch().await;
    let mut cfg = config(&schema, WriteMode::Upsert);
    cfg.delete_when = Some(crate::DeleteWhen {
        pointer: "/op".into(),
        equals: json!("delete"),
    });
    let mut sink = PostgresSink::open(&cfg, None).await.unwrap();
    // A delete before the table has any row deletes nothing and creates the table.
    accept(&mut sink, "b0", &[json!({"id": "z", "op": "delete"})]).await;
    sink.flush().await.unwrap();
    accept(
        &mut sink,
        "b1",
        &[
            json!({"id": "a", "v": 1, "items": [{"k": 1}, {"k": 2}]}),
            json!({"id": "b", "v": 1}),
            json!({"id": "c", "v": 1, "items": [{"k": 3}]}),
        ],
    )
    .await;
    sink.flush().await.unwrap();
    accept(
        &mut sink,
        "b2",
        &[
            json!({"id": "a", "op": "delete"}),
            json!({"id": "b", "v": 2}),
            json!({"id": "b", "op": "delete"}),
            json!({"id": "c", "op": "delete"}),
            json!({"id": "c", "v": 5, "items": [{"k": 7}]}),
        ],
    )
    .await;
    let report = sink.flush().await.unwrap();
    assert_eq!((report.rows, report.duplicates_dropped), (3, 2));
    let rows = strings(
        &client,
        &format!(
            "SELECT e.id || ':' || e.v || ':' || coalesce(string_agg(i.k::text, ',' ORDER BY i._sluice_list_idx), '')
             FROM {schema}.events e LEFT JOIN {schema}.events__items i ON i._sluice_root_id = e._sluice_id
             GROUP BY e.id, e.v ORDER BY e.id"
        ),
    )
    .await;
    assert_eq!(rows, vec!["c:5:7"]);
    let orphans = strings(&client, &format!("SELECT count(*)::text FROM {schema}.events__items")).await;
    assert_eq!(orphans, vec!["1"], "the deleted rows' children are gone");
    drop_schema(&client, &schema).await;
}

/// Whether the server encrypts this client's connection.
async fn encrypted(client: &Client) -> bool {
    client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The machine's PostgreSQL serves TLS with Debian's self-signed
/// certificate for `localhost` (`ssl = on`, `ssl_cert_file`); each sslmode
/// is tried against it, the certificate itself as the trusted CA.
#[tokio::test]
async fn connections_follow_sslmode_as_libpq_spells_it() {
    if sluice_testkit::services::postgres().is_none() {
        return;
    }
    let plain = db::connect(&format!("{}?sslmode=disable", url())).await.unwrap();
    assert!(!encrypted(&plain).await);
    let ssl: String = plain.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on", "the test PostgreSQL must serve TLS (ssl = on)");
    let cert_file: String = plain.query_one("SHOW ssl_cert_file", &[]).await.unwrap().get(0);
    let base = url();
    let with = |host: &str, query: &str| format!("{}?{query}", base.replacen("127.0.0.1", host, 1));

    for (host, query) in [
        ("localhost", format!("sslmode=verify-full&sslrootcert={cert_file}")),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={cert_file}")),
        ("127.0.0.1", "sslmode=require".to_string()),
        ("127.0.0.1", "sslmode=prefer".to_string()),
    ] {
        let client = db::connect(&with(host, &query))
            .await
            .unwrap_or_else(|e| panic!("{host} {query}: {e}"));
        assert!(encrypted(&client).await, "{query}");
    }

    // The certificate names localhost, not 127.0.0.1.
    let e = db::connect(&with(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={cert_file}"),
    ))
    .await
    .err()
    .unwrap();
    assert!(e.tls_refused() && !e.unreachable(), "{e}");
    assert!(e.to_string().contains("not valid for name \"127.0.0.1\""), "{e}");
    // Another authority's certificate does not vouch for this server.
    let dir = sluice_testkit::tempdir().unwrap();
    let other = sluice_testkit::tls::authority(dir.path(), "other-ca");
    let e = db::connect(&with(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.cert.display()),
    ))
    .await
    .err()
    .unwrap();
    assert!(e.tls_refused(), "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
}
