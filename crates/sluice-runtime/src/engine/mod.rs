//! Running a pipeline: builds the queue, transforms, sinks and sources from a
//! loaded [`Pipeline`], then moves batches from the queue through the graph.
//!
//! Invariants:
//! * A batch is acknowledged only after every sink it feeds committed it and
//!   its refused events are stored as dead letters ([`ticket`]).
//! * A batch being worked on is kept invisible (`extend`); a redelivery of a
//!   batch still in flight joins the existing ticket instead of being
//!   processed twice.
//! * At most `delivery.max_in_flight` batches (and about
//!   `delivery.max_in_flight_bytes` of payload) are in flight, and sink inputs
//!   are bounded channels: when sinks are slow, the queue fills and sources
//!   get backpressure (HTTP 503, files wait).
//! * Stopping (signal, or `--until-idle` once sources are drained) stops the
//!   sources first, then drains the queue, commits, and returns.

pub(crate) mod compaction;
mod plan;
mod receive;
mod sink_task;
pub(crate) mod snowplow_columns;
pub(crate) mod table_routes;
mod ticket;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sluice_connectors::{Source, SourceContext, sources::BuildEnv};
use sluice_core::readiness::Readiness;
use sluice_core::{
    BatchInfo, DeadLetter, Delivery, Event, StageError, split_lines,
    telemetry::{QueueTelemetry, SinkTelemetry},
};
use sluice_lake::StoreLocation;
use sluice_queue::{
    DeadLetterStore, Queue, QueueSettings,
    checkpoint::{Checkpoints, LocalCheckpoints},
    embedded::EmbeddedQueue,
    jetstream::{JetStreamNames, JetStreamQueue},
    lease::{Leases, LocalLeases},
};
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinSet,
};

use crate::{
    config::{Component, Pipeline, QueueBackend, SinkConfig, build_transforms},
    sinks::OpenedSink,
    telemetry,
};
use plan::{Plan, TransformNode, dependency_order, plan_for, run_plan};
use receive::ReceiveSize;
use sink_task::{SinkDriver, SinkJob, SinkMsg};
use ticket::{InFlight, RETRY_DELAY, Received, Ticket, run_acker, run_lease_keeper};

/// Object stores for sources, opened the way lake tables are.
struct StorageEnv;

impl BuildEnv for StorageEnv {
    fn object_store(
        &self,
        url: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path), String> {
        let url = url::Url::parse(url).map_err(|e| format!("uri: {url:?} is not a URL ({e})"))?;
        StoreLocation::new(url, options.clone())?.object_store()
    }
}

/// Opens a sink, waiting while its backend cannot be reached (a retriable
/// error, logged with the next try's delay) until it opens; `None` when the
/// pipeline is stopped first. Other errors end the start.
async fn open_when_reachable(
    name: &str,
    sink: &Component<SinkConfig>,
    pipeline: &Pipeline,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<OpenedSink>> {
    let mut backoff = sluice_core::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        match sink.config.spec().open(name, sink, pipeline).await {
            Ok(opened) => return Ok(Some(opened)),
            Err(e) if e.downcast_ref::<StageError>().is_some_and(StageError::is_retriable) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    sink = %name,
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "the sink's backend cannot be reached yet; waiting for it"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(None),
                }
            }
            Err(e) => return Err(e.context(format!("sinks.{name}"))),
        }
    }
}

/// The name `/ready` gives the transforms when a backend of theirs is down.
const TRANSFORMS: &str = "transforms";
/// The name `/ready` gives the queue when its backend is down.
const QUEUE: &str = "queue";

/// Least time between two early flushes (input drained, or in-flight limit reached).
const EARLY_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Longest an idle consumer waits before looking at the queue again
/// without being woken (batches whose retry delay or visibility timeout
/// ran out, or that another process redrove, send no signal).
const IDLE_RECHECK: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Return once every source is drained and everything is committed.
    pub until_idle: bool,
}

fn queue_settings(pipeline: &Pipeline) -> QueueSettings {
    let d = &pipeline.config.delivery;
    QueueSettings {
        visibility_timeout: Duration::from_secs(d.visibility_timeout_secs),
        max_attempts: d.max_attempts,
        max_crashes: d.max_crashes,
        max_bytes: d.max_queue_bytes,
    }
}

/// Opens the pipeline's embedded queue: as its one consumer (`sluice run`), or beside it (`sluice dlq`).
pub fn open_queue(pipeline: &Pipeline, consumer: bool) -> Result<Arc<EmbeddedQueue>> {
    let settings = queue_settings(pipeline);
    Ok(Arc::new(if consumer {
        EmbeddedQueue::open_consumer(&pipeline.data_dir, settings)?
    } else {
        EmbeddedQueue::open(&pipeline.data_dir, settings)?
    }))
}

/// What `run` works with: its queue, dead-letter store and leases.
struct RunQueue {
    queue: Arc<dyn Queue>,
    dead_letters: Arc<dyn DeadLetterStore>,
    leases: Arc<dyn Leases>,
    /// Sources' checkpoints, shared by the replicas as the leases are.
    checkpoints: Arc<dyn Checkpoints>,
    /// This replica's name in leases and compaction commits.
    replica: String,
    /// The embedded queue opened as this process's consumer. With JetStream
    /// it holds only the data directory's lock: one `run` per data directory
    /// (source checkpoints, embedded document stores).
    _local: Arc<EmbeddedQueue>,
}

/// The embedded queue, or JetStream (queue, dead letters and leases shared
/// by the replicas) when `queue` is a `nats://` URL.
async fn open_run_queue(pipeline: &Pipeline) -> Result<RunQueue> {
    let local = open_queue(pipeline, true)?;
    let replica = replica_name();
    if pipeline.config.queue == QueueBackend::Embedded {
        return Ok(RunQueue {
            queue: local.clone(),
            dead_letters: local.clone(),
            leases: Arc::new(LocalLeases::default()),
            checkpoints: Arc::new(LocalCheckpoints::open(&pipeline.data_dir).context("source checkpoints")?),
            replica,
            _local: local,
        });
    }
    let shared = Arc::new(open_jetstream(pipeline).await?);
    let leases = shared
        .leases(&replica, Duration::from_secs(pipeline.config.delivery.lease_secs))
        .await
        .context("queue leases")?;
    let checkpoints = shared.checkpoints().await.context("source checkpoints")?;
    Ok(RunQueue {
        queue: shared.clone(),
        dead_letters: shared,
        leases: Arc::new(leases),
        checkpoints: Arc::new(checkpoints),
        replica,
        _local: local,
    })
}

async fn open_jetstream(pipeline: &Pipeline) -> Result<JetStreamQueue> {
    let QueueBackend::JetStream { url } = &pipeline.config.queue else {
        bail!("queue: the pipeline's queue is embedded, not JetStream");
    };
    let names = JetStreamNames::for_pipeline(pipeline.config.queue_name.as_deref().unwrap_or(&pipeline.name));
    JetStreamQueue::open(url, names, queue_settings(pipeline))
        .await
        .context("queue")
}

/// The pipeline's queue, opened beside a running pipeline (not as its
/// consumer) for `sluice status`: the data directory's, or the JetStream one.
pub async fn open_queue_beside(pipeline: &Pipeline) -> Result<Arc<dyn Queue>> {
    if pipeline.config.queue == QueueBackend::Embedded {
        return Ok(open_queue(pipeline, false)?);
    }
    Ok(Arc::new(open_jetstream(pipeline).await?))
}

/// The pipeline's dead-letter store, beside a running pipeline (`sluice
/// dlq`, `status`): the data directory's, or the JetStream one.
pub async fn open_dead_letters(pipeline: &Pipeline) -> Result<Arc<dyn DeadLetterStore>> {
    if pipeline.config.queue == QueueBackend::Embedded {
        return Ok(open_queue(pipeline, false)?);
    }
    Ok(Arc::new(open_jetstream(pipeline).await?))
}

/// This replica's name in leases and compaction commits: `SLUICE_REPLICA`,
/// else the host name (a Kubernetes pod's name), with the process id.
fn replica_name() -> String {
    let host = std::env::var("SLUICE_REPLICA")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice".into());
    format!("{host}:{}", std::process::id())
}

struct SinkHandle {
    name: String,
    inputs: Vec<String>,
    tx: mpsc::Sender<SinkMsg>,
}

/// Runs the pipeline until `stop` turns true (or, with `until_idle`, until
/// drained). `ready` is what the API's `/ready` answers: sources take
/// input and every sink's backend answers.
pub async fn run(
    pipeline: &Pipeline,
    options: RunOptions,
    mut stop: watch::Receiver<bool>,
    ready: Arc<Readiness>,
) -> Result<()> {
    // Metric handles made before the recorder exists record nothing, and
    // components make theirs when built: install it first.
    telemetry::prometheus();
    QueueTelemetry::start();
    let mut background = JoinSet::new();
    let RunQueue {
        queue: q,
        dead_letters: dlq,
        leases,
        checkpoints,
        replica,
        _local,
    } = open_run_queue(pipeline).await?;
    let cfg = &pipeline.config;

    let transforms: Vec<TransformNode> = build_transforms(pipeline)?
        .into_iter()
        .map(|(name, transform)| {
            let inputs = cfg.transforms[&name].inputs.clone();
            TransformNode::new(name, inputs, transform)
        })
        .collect();
    let order = dependency_order(&transforms);

    let mut sinks = Vec::new();
    let mut sink_tasks = JoinSet::new();
    let mut compactions = JoinSet::new();
    let (compaction_stop_tx, compaction_stop_rx) = watch::channel(false);
    for (name, sink) in &cfg.sinks {
        let Some(OpenedSink {
            sink: opened,
            compaction,
        }) = open_when_reachable(name, sink, pipeline, &mut stop).await?
        else {
            tracing::info!("stopped before every sink could be opened");
            return Ok(());
        };
        if let Some((tables, config)) = compaction {
            let schedule = compaction::Schedule {
                sink: name.clone(),
                tables,
                config,
                leases: leases.clone(),
                replica: replica.clone(),
            };
            compactions.spawn(compaction::run_schedule(schedule, compaction_stop_rx.clone()));
        }
        let (tx, rx) = mpsc::channel(4);
        let flush_interval = sink.config.spec().flush_interval();
        let telemetry = SinkTelemetry::new(name, flush_interval);
        telemetry.backend_open();
        let driver = SinkDriver {
            telemetry,
            readiness: ready.clone(),
            name: name.clone(),
            sink: opened,
            flush_interval,
            dead_letters: dlq.clone(),
        };
        let sink_name = name.clone();
        sink_tasks.spawn(async move { driver.run(rx).await.with_context(|| format!("sink {sink_name}")) });
        sinks.push(SinkHandle {
            name: name.clone(),
            inputs: sink.inputs.clone(),
            tx,
        });
    }
    let sink_inputs: Vec<Vec<String>> = sinks.iter().map(|s| s.inputs.clone()).collect();
    let plans: HashMap<String, Plan> = cfg
        .sources
        .keys()
        .map(|s| (s.clone(), plan_for(s, &transforms, &order, &sink_inputs)))
        .collect();

    background.spawn(telemetry::poll_queue(q.clone(), dlq.clone()));

    let in_flight: InFlight = Arc::new(Mutex::new(HashMap::new()));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let freed = Arc::new(Notify::new());
    let acker = tokio::spawn(run_acker(q.clone(), in_flight.clone(), done_rx, freed.clone()));
    let lease_every = Duration::from_secs(cfg.delivery.visibility_timeout_secs).max(Duration::from_secs(1)) / 3;
    let received: Received = Arc::default();
    background.spawn(run_lease_keeper(
        q.clone(),
        in_flight.clone(),
        received.clone(),
        lease_every,
    ));

    let (source_stop_tx, source_stop_rx) = watch::channel(false);
    let mut sources = JoinSet::new();
    for (name, source) in &cfg.sources {
        let ctx = SourceContext {
            name: name.clone(),
            queue: q.clone(),
            dead_letters: dlq.clone(),
            shutdown: source_stop_rx.clone(),
            until_idle: options.until_idle,
            state_dir: pipeline.data_dir.join("sources"),
            leases: leases.clone(),
            checkpoints: checkpoints.clone(),
            telemetry: sluice_core::telemetry::SourceTelemetry::new(name).reporting_to(ready.clone()),
        };
        let s: Box<dyn Source> = source
            .spec()
            .build(&StorageEnv)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("source {name}"))?;
        let source_name = name.clone();
        sources.spawn(async move { s.run(ctx).await.with_context(|| format!("source {source_name}")) });
    }
    ready.set_taking_input(true);
    tracing::info!(pipeline = %pipeline.name, file = %pipeline.file.display(), data_dir = %pipeline.data_dir.display(), "pipeline running");

    let consumer = Consumer {
        queue: q.clone(),
        dlq,
        plans,
        transforms,
        sink_inputs,
        sinks: &sinks,
        in_flight: in_flight.clone(),
        done_tx,
        max_in_flight: cfg.delivery.max_in_flight,
        readiness: ready.clone(),
        unavailable_backoff: Mutex::new(sluice_core::retry::Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
        )),
    };
    let mut stopping = false;
    let mut last_early_flush: Option<Instant> = None;
    let mut receive_size = ReceiveSize::default();
    loop {
        // Each turn spends from the task's budget, so a queue that answers
        // at once with nothing cannot keep this loop from giving its worker
        // thread back to the sinks and commits it is waiting for.
        tokio::task::coop::consume_budget().await;
        if !stopping && *stop.borrow() {
            stopping = true;
            ready.set_taking_input(false);
            tracing::info!("stopping: no new input; committing what was accepted");
            let _ = source_stop_tx.send(true);
        }
        while let Some(finished) = sources.try_join_next() {
            finished.context("source task panicked")??;
        }
        if let Some(finished) = sink_tasks.try_join_next() {
            finished.context("sink task panicked")??;
            bail!("a sink stopped unexpectedly");
        }
        let (in_flight_now, in_flight_bytes) = {
            let tickets = in_flight.lock().expect("in-flight lock");
            (tickets.len(), tickets.values().map(|t| t.bytes as u64).sum::<u64>())
        };
        let free = if in_flight_bytes >= cfg.delivery.max_in_flight_bytes {
            0
        } else {
            consumer.max_in_flight.saturating_sub(in_flight_now)
        };
        let deliveries = if free > 0 {
            match q.receive(receive_size.count(free)).await {
                Ok(d) => {
                    if ready.backend_up(QUEUE) {
                        tracing::info!("the queue's backend is back");
                    }
                    receive_size.observe(&d);
                    let again = d.iter().filter(|delivery| delivery.attempts > 1).count();
                    if again > 0 {
                        QueueTelemetry::redelivered(again as u64);
                    }
                    d
                }
                Err(e) => {
                    if ready.backend_down(QUEUE) {
                        tracing::warn!(error = %e, "the queue's backend cannot be reached; batches wait in it, and /ready is false until it is back");
                    }
                    queue_trouble("receive", &e).await;
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        if deliveries.is_empty() {
            if sources.is_empty() && in_flight_now == 0 {
                match q.stats().await {
                    Ok(stats) if stats.batches == 0 => break,
                    Ok(_) => {}
                    Err(e) => queue_trouble("stats", &e).await,
                }
            }
            // Batches in flight are acknowledged only after their sinks commit,
            // and count against the queue's size until then. When no more
            // input will come, when an in-flight limit is reached, or when
            // in-flight batches fill half the queue (sources are about to be
            // refused), waiting for the sinks' age bound would only idle and
            // cap throughput at what fits in flight per flush interval:
            // commit now.
            let queue_filling = in_flight_bytes.saturating_mul(2) >= cfg.delivery.max_queue_bytes;
            let waiting = in_flight_now > 0 && (sources.is_empty() || free == 0 || queue_filling || q.isolating());
            if waiting && last_early_flush.is_none_or(|t| t.elapsed() > EARLY_FLUSH_EVERY) {
                last_early_flush = Some(Instant::now());
                for s in &sinks {
                    let _ = s.tx.try_send(SinkMsg::Flush);
                }
            }
            // Wait for whatever can change the picture: a batch arriving,
            // in-flight batches finishing, a source ending, a stop, the next
            // early flush, or (for batches whose delay or visibility timeout
            // ran out, which nothing signals) a recheck.
            tokio::select! {
                _ = q.wait_for_batches(IDLE_RECHECK), if free > 0 => {}
                _ = freed.notified(), if in_flight_now > 0 => {}
                Some(finished) = sources.join_next(), if !sources.is_empty() => {
                    finished.context("source task panicked")??;
                }
                _ = stop.changed(), if !stopping => {}
                _ = tokio::time::sleep(EARLY_FLUSH_EVERY), if waiting => {}
                _ = tokio::time::sleep(IDLE_RECHECK) => {}
            }
            continue;
        }
        received
            .lock()
            .expect("received lock")
            .extend(deliveries.iter().map(|d| d.id));
        for delivery in deliveries {
            let id = delivery.id;
            consumer.process(delivery).await?;
            received.lock().expect("received lock").remove(&id);
        }
    }

    drop(consumer);
    drop(sinks);
    while let Some(finished) = sink_tasks.join_next().await {
        finished.context("sink task panicked")??;
    }
    acker.await.context("acker panicked")?;
    background.abort_all();
    // A running compaction finishes its current partition, then returns.
    let _ = compaction_stop_tx.send(true);
    while compactions.join_next().await.is_some() {}
    tracing::info!("pipeline stopped; everything accepted is committed");
    Ok(())
}

struct Consumer<'a> {
    queue: Arc<dyn Queue>,
    dlq: Arc<dyn DeadLetterStore>,
    plans: HashMap<String, Plan>,
    transforms: Vec<TransformNode>,
    sink_inputs: Vec<Vec<String>>,
    sinks: &'a [SinkHandle],
    in_flight: InFlight,
    done_tx: mpsc::UnboundedSender<Arc<Ticket>>,
    max_in_flight: usize,
    readiness: Arc<Readiness>,
    /// Between batches returned because a transform's backend is down.
    unavailable_backoff: Mutex<sluice_core::retry::Backoff>,
}

/// A queue operation failed (storage trouble): the batches involved return
/// after their visibility timeout, so the pipeline logs, counts, pauses and
/// goes on instead of stopping.
async fn queue_trouble(operation: &str, error: &sluice_queue::QueueError) {
    QueueTelemetry::error(operation, error);
    tokio::time::sleep(Duration::from_millis(500)).await;
}

impl Consumer<'_> {
    /// Returns a batch to the queue for a later attempt; if even that fails,
    /// it comes back after its visibility timeout.
    async fn return_later(&self, id: sluice_core::DeliveryId, error: String, delay: Duration) {
        if let Err(e) = self.queue.nack(id, error, delay).await {
            queue_trouble("nack", &e).await;
        }
    }

    /// Returns a batch without spending an attempt: a backend a transform
    /// needs (document store, lookup source, schema registry) or the
    /// dead-letter store could not be reached. The transforms count as
    /// down until a batch passes them again, and the consumer backs off.
    async fn return_unavailable(&self, id: sluice_core::DeliveryId, error: &str) {
        let delay = self.unavailable_backoff.lock().expect("backoff lock").next_delay();
        if self.readiness.backend_down(TRANSFORMS) {
            tracing::warn!(error = %error, "a transform's backend cannot be reached; batches wait for it without spending attempts, and /ready is false until it is back");
        }
        if let Err(e) = self.queue.release(id, RETRY_DELAY).await {
            queue_trouble("release", &e).await;
        }
        tokio::time::sleep(delay).await;
    }

    async fn process(&self, d: Delivery) -> Result<()> {
        if let Some(t) = self.in_flight.lock().expect("in-flight lock").get(&d.key) {
            tracing::debug!(batch = %d.key, "delivered again while in flight: joins its ticket");
            t.add_delivery(d.id);
            return Ok(());
        }
        let Some(plan) = self.plans.get(&d.source) else {
            let error = format!("this pipeline has no source named {:?}", d.source);
            self.return_later(d.id, error, Duration::from_secs(60)).await;
            return Ok(());
        };
        let events: Vec<Event> = split_lines(&d.payload)
            .map(|(line, bytes)| Event::from_line(line, bytes))
            .collect();
        let batch = BatchInfo {
            key: &d.key,
            maybe_committed: d.maybe_committed,
            enqueued_at_ms: d.enqueued_at_ms,
        };
        let routed = match run_plan(&d.source, batch, events, plan, &self.transforms, &self.sink_inputs).await {
            Ok(r) => {
                if self.readiness.backend_up(TRANSFORMS) {
                    self.unavailable_backoff.lock().expect("backoff lock").reset();
                    tracing::info!("the transforms' backends are back");
                }
                r
            }
            Err(e) if e.is_unavailable() => {
                self.return_unavailable(d.id, &e.message).await;
                return Ok(());
            }
            Err(e) if e.is_retriable() => {
                self.return_later(d.id, e.message, RETRY_DELAY).await;
                return Ok(());
            }
            Err(e) => bail!("batch {}: {e}", d.key),
        };
        if !routed.rejected.is_empty() {
            let letters = routed
                .rejected
                .into_iter()
                .map(|(component, r)| DeadLetter::refused(&d.key, &d.source, &component, r))
                .collect();
            if let Err(e) = self.dlq.put(letters).await {
                self.return_unavailable(d.id, &format!("storing dead letters: {e}"))
                    .await;
                return Ok(());
            }
        }
        let jobs: Vec<(usize, Vec<Event>)> = routed.per_sink.into_iter().filter(|(_, e)| !e.is_empty()).collect();
        if jobs.is_empty() {
            tracing::debug!(batch = %d.key, "nothing for the sinks: acknowledged");
            if let Err(e) = self.queue.ack(vec![d.id]).await {
                queue_trouble("ack", &e).await;
            }
            return Ok(());
        }
        let ticket = Ticket::new(d.key.clone(), d.payload.len(), d.id, jobs.len(), self.done_tx.clone());
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .insert(d.key.clone(), ticket.clone());
        tracing::debug!(batch = %d.key, attempts = d.attempts, maybe_committed = d.maybe_committed, sinks = jobs.len(), "to the sinks");
        for (sink, events) in jobs {
            let job = SinkJob {
                ticket: ticket.clone(),
                source: d.source.clone(),
                maybe_committed: d.maybe_committed,
                events,
            };
            if self.sinks[sink].tx.send(SinkMsg::Job(job)).await.is_err() {
                ticket.fail(format!("sink {} stopped", self.sinks[sink].name));
            }
        }
        Ok(())
    }
}
