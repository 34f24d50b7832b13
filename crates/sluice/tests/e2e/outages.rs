//! Backends that go away: each test puts a TCP proxy in front of the
//! machine's real service (so the shared server never stops) and cuts it,
//! as when the service stops or the network fails.
//!
//! * Not there yet: `sluice run` started while its PostgreSQL cannot be
//!   reached waits for it (saying so in its log) instead of exiting, and
//!   lands everything once it can.
//! * Gone mid-run for longer than the visibility timeout (a sink's or the
//!   queue's backend; transforms: `transform_outages`; sources:
//!   `source_outages`), with `max_attempts = 1` so any attempt spent on the outage would show as
//!   dead letters: `/ready` turns false and says which sink, the
//!   `sluice_sink_backend_up` gauge drops to 0, the log says so once; after
//!   the service is back everything lands exactly once and nothing is
//!   dead-lettered.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sluice_testkit::{
    process::{Running, http_get},
    proxy::Proxy,
    services::{Service, host_port},
};

use crate::{
    documents,
    postgres::{connect, drop_schema, fresh_schema},
    support,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_sink_waits_for_its_database_and_then_lands_everything() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 2_000, 5);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::write(dir.join("incoming/a.ndjson"), lines.join("\n") + "\n").unwrap();
    let pg = connect().await;
    let schema = fresh_schema(&pg, "outage").await;
    let real = crate::postgres::url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    proxy.cut();
    let url = proxy.url_for(&real);
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            r#"
[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0

[sinks.table]
type = "postgres"
inputs = ["input"]
url = "{url}"
schema = "{schema}"
table = "events"
"#
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sluice.log")).unwrap();
    let mut sluice = Command::new(support::SLUICE)
        .arg("run")
        .arg(dir.join("pipeline.toml"))
        .arg("--until-idle")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sluice.try_wait().unwrap().is_none(), "sluice waits instead of exiting");
    let waited = std::fs::read_to_string(dir.join("sluice.log")).unwrap();
    assert!(
        waited.contains("the sink's backend cannot be reached yet; waiting for it sink=table"),
        "{waited}"
    );

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = sluice.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sluice did not finish once PostgreSQL was there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(dir.join("sluice.log")).unwrap()
    );
    let rows: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as usize, lines.len(), "every line landed once");
    drop_schema(&pg, &schema).await;
}

/// Starts `sluice run` on `dir/pipeline.toml` with its log in
/// `dir/sluice.log`, and waits until it is ready.
pub(crate) fn start_logged(dir: &std::path::Path, api: u16) -> Running {
    let log = std::fs::File::create(dir.join("sluice.log")).unwrap();
    let child = Command::new(support::SLUICE)
        .arg("run")
        .arg(dir.join("pipeline.toml"))
        .envs(support::AWS_ENV)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut sluice = Running { child };
    sluice.wait_ready(api);
    sluice
}

/// Lets `client` (a tracker library's script printing JSON lines) run to
/// its end while the engine in `dir` is SIGKILLed and restarted twice,
/// 1.5 s apart; the engine running at the end, and what the client printed.
pub(crate) async fn through_two_kills(
    client: std::process::Child,
    mut sluice: Running,
    dir: &std::path::Path,
    api: u16,
) -> (Running, Vec<serde_json::Value>) {
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sluice.child.kill().unwrap();
        sluice.child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        sluice = start_logged(dir, api);
    }
    let out = tokio::task::spawn_blocking(move || client.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "the client failed");
    let printed = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (sluice, printed)
}

/// Cuts `proxy` for `secs` seconds (checking the pipeline reports
/// `component` down meanwhile), restores it, and returns how long it was cut.
pub(crate) async fn outage(proxy: &mut Proxy, api: u16, component: &str, secs: u64) -> Duration {
    proxy.cut();
    let cut_at = Instant::now();
    assert_reported_down(api, component).await;
    tokio::time::sleep(Duration::from_secs(secs).saturating_sub(cut_at.elapsed())).await;
    let outage = cut_at.elapsed();
    proxy.restore().await;
    outage
}

/// The log lines of an outage of a sink's backend, the queue's, a
/// transform's and a source's upstream.
const SINK_LOST: [&str; 2] = [
    "the sink's backend cannot be reached; its batches wait",
    "the sink's backend is back",
];
const QUEUE_LOST: [&str; 2] = [
    "the queue's backend cannot be reached; batches wait in it",
    "the queue's backend is back",
];
pub(crate) const TRANSFORM_LOST: [&str; 2] = [
    "a transform's backend cannot be reached; batches wait",
    "the transforms' backends are back",
];
pub(crate) const SOURCE_LOST: [&str; 2] = [
    "the source's upstream cannot be reached; it retries with backoff",
    "the source's upstream is back",
];

/// After an outage: `/ready` is back, the run stops cleanly, nothing was
/// dead-lettered, and the log told of the outage once and of the return.
pub(crate) async fn assert_recovered(dir: &std::path::Path, api: u16, sluice: Running, [lost, back]: [&str; 2]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(api, "/ready").is_none_or(|(status, _)| status != 200) {
        assert!(Instant::now() < deadline, "/ready did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sluice.stop();
    let dead = dead_letters(dir);
    assert!(
        dead.is_empty(),
        "{} good events were dead-lettered: {:?}",
        dead.len(),
        &dead[..1]
    );
    let log = std::fs::read_to_string(dir.join("sluice.log")).unwrap();
    assert_eq!(log.matches(lost).count(), 1, "the outage is logged once: {log}");
    assert!(log.contains(back), "{log}");
}

/// The `[api]` and `[delivery]` of an outage test: a 2 s visibility
/// timeout, and one attempt, so any attempt spent on the outage shows.
pub(crate) fn outage_settings(api: u16) -> String {
    format!("[api]\naddress = \"127.0.0.1:{api}\"\n\n[delivery]\nvisibility_timeout_secs = 2\nmax_attempts = 1\n")
}

/// Writes `dir/pipeline.toml`: the outage settings, a file source `input`
/// on `dir/incoming/*.ndjson` (64 KiB batches) and `sink`.
/// Writes `path` whole under another name and renames it in, as the guide
/// asks of producers (with `settle_secs = 0` the source may otherwise read
/// a file while it is being written).
pub(crate) fn put_whole(path: &std::path::Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

pub(crate) fn write_file_pipeline(dir: &std::path::Path, api: u16, sink: &str) {
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    let source =
        "[sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0\nmax_batch_bytes = 65536\n";
    std::fs::write(
        dir.join("pipeline.toml"),
        format!("{}\n{source}\n{sink}", outage_settings(api)),
    )
    .unwrap();
}

/// Reason and detail of each dead letter of the pipeline in `dir`.
pub(crate) fn dead_letters(dir: &std::path::Path) -> Vec<String> {
    support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show"])
            .arg(dir.join("pipeline.toml"))
            .args(["--json", "--limit", "100000000"]),
    )
    .lines()
    .map(|l| {
        let letter: serde_json::Value = serde_json::from_str(l).unwrap();
        format!("{}: {}", letter["reason"], letter["detail"])
    })
    .collect()
}

/// Waits until `count` returns at least `want` (at most `secs`).
pub(crate) async fn wait_for<F, Fut>(what: &str, secs: u64, want: i64, mut count: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let have = count().await;
        if have >= want {
            return have;
        }
        assert!(Instant::now() < deadline, "{what}: {have} of {want} after {secs} s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// While the backend is cut: `/ready` says which component is down (`sink
/// NAME` or `source NAME`, with its gauge at 0, or `transforms`); returns
/// once seen.
async fn assert_reported_down(api: u16, component: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http_get(api, "/ready");
        let metrics = http_get(api, "/metrics").map(|(_, body)| body).unwrap_or_default();
        let gauge = match component.split_once(' ') {
            Some(("sink", sink)) => metrics.contains(&format!("sluice_sink_backend_up{{component=\"{sink}\"}} 0")),
            Some(("source", source)) => {
                metrics.contains(&format!("sluice_source_upstream_up{{component=\"{source}\"}} 0"))
            }
            _ => true,
        };
        if let Some((503, body)) = &ready
            && body.contains(&format!("backend unavailable for {component}"))
            && gauge
        {
            return;
        }
        assert!(Instant::now() < deadline, "the outage was not reported: {ready:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the proxy of a file -> PostgreSQL outage test stands in front of.
enum Cut {
    /// The postgres sink's server.
    Postgres,
    /// NATS, as the pipeline's JetStream queue named so.
    Queue(String),
    /// NATS as the same queue, with the files read by an `objects` source
    /// whose lease is in the queue's key-value bucket.
    QueueAndLease(String),
}

/// Lands 1 000 lines in a postgres sink, cuts the proxied service for 8 s
/// (four visibility timeouts, so every batch of the next 2 000 lines is
/// tried and returned several times meanwhile), then checks every line
/// lands once and nothing is dead-lettered. Returns how long it was cut.
async fn file_to_postgres_through_an_outage(cut: Cut, seed: u64) -> Duration {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, seed);
    let pg = connect().await;
    let schema = fresh_schema(&pg, &format!("outage_{seed}")).await;
    let (real_pg, real_nats) = (crate::postgres::url(), support::nats_url());
    let proxied = match cut {
        Cut::Postgres => &real_pg,
        Cut::Queue(_) | Cut::QueueAndLease(_) => &real_nats,
    };
    let mut proxy = Proxy::start(host_port(proxied).unwrap()).await;
    let (pg_url, queue, component, lost) = match &cut {
        Cut::Postgres => (proxy.url_for(&real_pg), String::new(), "sink table", SINK_LOST),
        Cut::Queue(name) | Cut::QueueAndLease(name) => (
            real_pg.clone(),
            format!("queue = \"{}\"\nqueue_name = \"{name}\"\n", proxy.url_for(&real_nats)),
            "queue",
            QUEUE_LOST,
        ),
    };
    let api = support::free_port();
    write_file_pipeline(
        dir,
        api,
        &format!(
            "[sinks.table]\ntype = \"postgres\"\ninputs = [\"input\"]\nurl = \"{pg_url}\"\n\
             schema = \"{schema}\"\ntable = \"events\"\nflush_interval_secs = 1\n"
        ),
    );
    let mut text = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
    if let Cut::QueueAndLease(_) = cut {
        // A 3 s lease, renewed every second: the cut outlasts it.
        text = text
            .replace(
                "type = \"file\"\npath = \"incoming/*.ndjson\"",
                "type = \"objects\"\nuri = \"incoming\"\npattern = \"*.ndjson\"\nsweep_interval_secs = 1\npull_interval_secs = 1",
            )
            .replace("max_attempts = 1\n", "max_attempts = 1\nlease_secs = 3\n");
    }
    std::fs::write(dir.join("pipeline.toml"), queue + &text).unwrap();
    let sluice = start_logged(dir, api);
    let rows = || async {
        pg.query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
            .await
            .map_or(0, |r| r.get::<_, i64>(0))
    };
    put_whole(&dir.join("incoming/a.ndjson"), &(lines[..1_000].join("\n") + "\n"));
    wait_for("rows before the outage", 60, 1_000, rows).await;
    put_whole(&dir.join("incoming/b.ndjson"), &(lines[1_000..].join("\n") + "\n"));
    let took = outage(&mut proxy, api, component, 8).await;
    let landed = wait_for("rows after the outage", 120, lines.len() as i64, rows).await;
    assert_recovered(dir, api, sluice, lost).await;
    if let Cut::QueueAndLease(_) = cut {
        let log = std::fs::read_to_string(dir.join("sluice.log")).unwrap();
        assert!(log.contains("lost the source's lease"), "{log}");
    }
    let distinct =
        crate::postgres::one_i64(&pg, &format!("SELECT count(DISTINCT event_id) FROM {schema}.events")).await;
    assert_eq!(
        (landed as usize, distinct as usize),
        (lines.len(), lines.len()),
        "every line once"
    );
    drop_schema(&pg, &schema).await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_mid_run_costs_no_attempts_and_everything_lands_once() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let cut = file_to_postgres_through_an_outage(Cut::Postgres, 8).await;
    eprintln!("PostgreSQL cut for {cut:?}; 3 000 rows, 0 dead letters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_run_costs_no_attempts_and_the_projection_ends_equal() {
    if !support::services_up(&[Service::Redis]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let oracle = documents::generate_sized(dir, 75, 6_000, 400);
    let real = Service::Redis.url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    let prefix = format!("sluice-outage-{}:", std::process::id());
    let projection = format!(
        r#"
[sinks.cards]
type = "projection"
inputs = ["doctors.changes"]
redis = "{url}"
key = "{prefix}{{entity}}:{{id}}"
entity = "doctor"
fields = {{ name = "/name", specialty = "/specialty" }}
flush_interval_secs = 1
"#,
        url = proxy.url_for(&real)
    );
    std::fs::write(
        dir.join("pipeline.toml"),
        outage_settings(api) + &documents::pipeline("embedded") + &projection,
    )
    .unwrap();
    let sluice = start_logged(dir, api);
    let client = redis::Client::open(real.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    documents::deliver(dir, 0..2);
    let keys = || {
        let mut conn = conn.clone();
        let pattern = format!("{prefix}*");
        async move {
            let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap();
            keys.len() as i64
        }
    };
    wait_for("hashes before the outage", 60, 1, keys).await;
    documents::deliver(dir, 2..5);
    let cut = outage(&mut proxy, api, "sink cards", 8).await;

    let expected = documents::card_hashes(&oracle, &prefix);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if documents::redis_hashes(&mut conn, &prefix).await == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projection did not catch up after the outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_recovered(dir, api, sluice, SINK_LOST).await;
    eprintln!(
        "Redis cut for {cut:?}; {} hashes equal the oracle, 0 dead letters",
        expected.len()
    );
    let stale: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL").arg(&stale).query_async(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_going_away_mid_run_costs_no_attempts_and_each_event_is_published_once() {
    if !support::services_up(&[Service::Nats]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, 9);
    let real = support::nats_url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    let pid = std::process::id();
    let stream = format!("SLUICE_E2E_OUTAGE_{pid}");
    write_file_pipeline(
        dir,
        api,
        &format!(
            r#"[sinks.processed]
type = "stream"
inputs = ["input"]
url = "{url}"
subject = "sluice.e2e.{pid}.outage"
stream = "{stream}"
flush_interval_secs = 1
"#,
            url = proxy.url_for(&real)
        ),
    );
    let sluice = start_logged(dir, api);
    let js = async_nats::jetstream::new(async_nats::connect(real).await.unwrap());
    let published = || {
        let (js, stream) = (js.clone(), stream.clone());
        async move {
            match js.get_stream(&stream).await {
                Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages as i64),
                Err(_) => 0,
            }
        }
    };
    put_whole(&dir.join("incoming/a.ndjson"), &(lines[..1_000].join("\n") + "\n"));
    wait_for("messages before the outage", 60, 1_000, published).await;
    put_whole(&dir.join("incoming/b.ndjson"), &(lines[1_000..].join("\n") + "\n"));
    let cut = outage(&mut proxy, api, "sink processed", 8).await;
    let landed = wait_for("messages after the outage", 90, lines.len() as i64, published).await;
    assert_recovered(dir, api, sluice, SINK_LOST).await;
    let messages = crate::jetstream::read_stream(&stream).await;
    assert_eq!(messages.len(), lines.len(), "each event once");
    eprintln!("NATS cut for {cut:?}; {landed} messages, 0 dead letters");
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_store_going_away_mid_run_costs_no_attempts_and_the_documents_end_equal() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let oracle = documents::generate_sized(dir, 76, 6_000, 400);
    let pg = connect().await;
    let schema = fresh_schema(&pg, "outage_store").await;
    let real = crate::postgres::url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    let store = format!("{}\"\nschema = \"{schema}", proxy.url_for(&real));
    std::fs::write(
        dir.join("pipeline.toml"),
        outage_settings(api) + &documents::pipeline(&store),
    )
    .unwrap();
    let sluice = start_logged(dir, api);
    let stored = || async {
        pg.query_one(&format!("SELECT count(*) FROM {schema}.doctors"), &[])
            .await
            .map_or(0, |r| r.get::<_, i64>(0))
    };
    documents::deliver(dir, 0..2);
    wait_for("documents before the outage", 60, 1, stored).await;
    documents::deliver(dir, 2..5);
    let cut = outage(&mut proxy, api, "transforms", 8).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while crate::documents::postgres_documents(&pg, &schema).await != oracle {
        assert!(
            Instant::now() < deadline,
            "the documents did not catch up after the outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_recovered(dir, api, sluice, TRANSFORM_LOST).await;
    eprintln!(
        "the document store cut for {cut:?}; {} documents equal the oracle, 0 dead letters",
        oracle.len()
    );
    drop_schema(&pg, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_going_away_mid_run_costs_no_attempts_and_the_lake_ends_equal() {
    if !support::services_up(&[Service::S3]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, 10);
    let bucket = format!("sluice-e2e-outage-{}", std::process::id());
    support::create_bucket(&bucket).await;
    let real = support::s3_endpoint();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    // object_store retries a request for up to `retry_timeout` before the
    // sink sees an error; short here, so the outage shows within the test.
    write_file_pipeline(
        dir,
        api,
        &format!(
            r#"[transforms.standardize]
type = "validate"
inputs = ["input"]
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "s3://{bucket}/events"
flush_interval_secs = 1
storage_options = {{ endpoint = "{url}", access_key_id = "test", secret_access_key = "test", region = "us-east-1", allow_http = "true", max_retries = "2", retry_timeout = "2s" }}
"#,
            url = proxy.url_for(&real),
            schema = support::schema_path().display()
        ),
    );
    let sluice = start_logged(dir, api);
    let table = format!("s3://{bucket}/events");
    let rows = || {
        let table = table.clone();
        async move { lake_rows(&table) }
    };
    put_whole(&dir.join("incoming/a.ndjson"), &(lines[..1_000].join("\n") + "\n"));
    wait_for("rows before the outage", 60, 1_000, rows).await;
    put_whole(&dir.join("incoming/b.ndjson"), &(lines[1_000..].join("\n") + "\n"));
    let cut = outage(&mut proxy, api, "sink lake", 12).await;
    let landed = wait_for("rows after the outage", 120, lines.len() as i64, rows).await;
    assert_recovered(dir, api, sluice, SINK_LOST).await;
    assert_eq!(landed as usize, lines.len(), "every line once");
    eprintln!("S3 cut for {cut:?}; {landed} rows, 0 dead letters");
}

/// Rows of a Delta table on the test S3, read by delta-rs's Python package.
fn lake_rows(table: &str) -> i64 {
    let script = "import os, sys\nfrom deltalake import DeltaTable\n\
                  try:\n    print(DeltaTable(sys.argv[1]).to_pyarrow_table(columns=['event_id']).num_rows, flush=True)\n\
                  except Exception:\n    print(0, flush=True)\n\
                  os._exit(0)";
    let out = Command::new(support::python())
        .args(["-c", script, table])
        .envs([
            ("AWS_ENDPOINT_URL", support::s3_endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_queue_going_away_mid_run_costs_no_attempts_and_everything_lands_once() {
    if !support::services_up(&[Service::Nats, Service::Postgres]) {
        return;
    }
    let queue_name = format!("outage-{}", std::process::id());
    let cut = file_to_postgres_through_an_outage(Cut::Queue(queue_name.clone()), 11).await;
    eprintln!("the JetStream queue cut for {cut:?}; 3 000 rows, 0 dead letters");
    delete_queue(&queue_name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objects_sources_lease_and_queue_going_away_mid_run_lose_nothing() {
    if !support::services_up(&[Service::Nats, Service::Postgres]) {
        return;
    }
    let queue_name = format!("outage-lease-{}", std::process::id());
    let cut = file_to_postgres_through_an_outage(Cut::QueueAndLease(queue_name.clone()), 21).await;
    eprintln!("NATS (queue and the objects source's lease) cut for {cut:?}; 3 000 rows, 0 dead letters");
    delete_queue(&queue_name).await;
}

/// Deletes the JetStream streams and buckets of the queue `name`.
async fn delete_queue(name: &str) {
    let js = async_nats::jetstream::new(async_nats::connect(support::nats_url()).await.unwrap());
    let names = sluice_queue::jetstream::JetStreamNames::for_pipeline(name);
    for stream in [&names.stream, &names.dead_stream] {
        let _ = js.delete_stream(stream).await;
    }
    for bucket in [&names.leases, &names.checkpoints, &names.deliveries] {
        let _ = js.delete_key_value(bucket).await;
    }
}
