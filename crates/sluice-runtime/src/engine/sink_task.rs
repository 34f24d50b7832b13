//! Drives one sink: feeds it batches, flushes by size and by age, stores the
//! events it refuses as dead letters, and completes tickets after commits.
//!
//! A sink that commits in the background ([`Sink::start_flush`]) takes the
//! next batches while its commit runs; at most one commit runs at a time,
//! and a commit completes only the tickets of its own window.
//!
//! On any sink error the sink's uncommitted work is discarded and every
//! ticket it held fails (a running commit is waited for first, and its
//! tickets complete if it landed), so the queue delivers those batches
//! again (their redelivery checks the sink's log, so nothing is written
//! twice). When the
//! error says the backend cannot be reached, the batches come back without
//! spending an attempt, the sink counts as down (`/ready` is false, the
//! `sluice_sink_backend_up` gauge 0, one warning) until a flush succeeds,
//! and it backs off meanwhile, so the engine waits for the backend instead
//! of dead-lettering good events.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_core::{
    Accepted, DeadLetter, Event, FlushReport, Flushing, PendingCommit, Sink, StageError,
    retry::Backoff,
    telemetry::{Committed, SinkTelemetry},
};
use sluice_queue::DeadLetterStore;
use tokio::sync::mpsc;

use super::ticket::Ticket;
use sluice_core::readiness::Readiness;

pub struct SinkJob {
    pub ticket: Arc<Ticket>,
    pub source: String,
    pub maybe_committed: bool,
    pub events: Vec<Event>,
}

pub enum SinkMsg {
    Job(SinkJob),
    /// Start a flush now (the queue is idle, or in-flight limits are full).
    Flush,
}

pub struct SinkDriver {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub flush_interval: Duration,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub telemetry: SinkTelemetry,
    pub readiness: Arc<Readiness>,
}

/// The batches the sink holds: the open window's, and those of the sealed
/// window whose commit runs.
struct Window {
    pending: Vec<Arc<Ticket>>,
    started: Option<Instant>,
    committing: Option<Committing>,
    backoff: Backoff,
}

/// A sealed window's commit, running.
struct Committing {
    commit: PendingCommit,
    tickets: Vec<Arc<Ticket>>,
    started: Instant,
}

impl Window {
    fn take_pending(&mut self) -> Vec<Arc<Ticket>> {
        self.started = None;
        std::mem::take(&mut self.pending)
    }
}

/// Retries of a failed sink: from 0.2 s, doubling, at most 30 s apart.
fn sink_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
}

impl SinkDriver {
    /// Runs until the input closes; returns a fatal error if one occurs.
    pub async fn run(mut self, mut rx: mpsc::Receiver<SinkMsg>) -> Result<(), StageError> {
        let mut w = Window {
            pending: Vec::new(),
            started: None,
            committing: None,
            backoff: sink_backoff(),
        };
        loop {
            let deadline = w
                .started
                .map(|t| tokio::time::Instant::from_std(t + self.flush_interval));
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => {
                        self.flush(&mut w).await?;
                        return self.wait_for_commit_or_fail(&mut w).await;
                    }
                    Some(SinkMsg::Flush) => self.flush(&mut w).await?,
                    Some(SinkMsg::Job(job)) => {
                        self.accept(job, &mut w).await?;
                        if self.sink.buffered_bytes() >= self.sink.max_buffered_bytes() {
                            self.flush(&mut w).await?;
                        }
                    }
                },
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    self.flush(&mut w).await?;
                }
                result = async { w.committing.as_mut().expect("guarded").commit.as_mut().await }, if w.committing.is_some() => {
                    let Committing { tickets, started, .. } = w.committing.take().expect("guarded");
                    if let Err(e) = self.commit_outcome(&mut w, tickets, started, result) {
                        self.fail_all(&mut w, e).await?;
                    }
                }
            }
        }
    }

    async fn accept(&mut self, job: SinkJob, w: &mut Window) -> Result<(), StageError> {
        let count = job.events.len() as u64;
        self.telemetry.received(count);
        crate::tap::publish(&self.name, &job.events);
        match self.sink.accept(&job.ticket.key, job.maybe_committed, job.events).await {
            Ok(Accepted::AlreadyCommitted) => {
                tracing::debug!(sink = %self.name, batch = %job.ticket.key, "already committed");
                self.telemetry.already_committed();
                job.ticket.complete();
            }
            Ok(Accepted::Buffered { rejected }) => {
                if !rejected.is_empty() {
                    let letters: Vec<DeadLetter> = rejected
                        .into_iter()
                        .map(|r| {
                            self.telemetry.refused(&r.reason);
                            DeadLetter::refused(&job.ticket.key, &job.source, &self.name, r)
                        })
                        .collect();
                    if let Err(e) = self.dead_letters.put(letters).await {
                        w.pending.push(job.ticket);
                        return self
                            .fail_all(w, StageError::retriable(format!("storing dead letters: {e}")))
                            .await;
                    }
                }
                w.started.get_or_insert_with(Instant::now);
                w.pending.push(job.ticket);
            }
            Err(e) => {
                w.pending.push(job.ticket);
                return self.fail_all(w, e).await;
            }
        }
        Ok(())
    }

    /// Commits the open window: waits for a running commit first, then
    /// starts this one (in the background if the sink can).
    async fn flush(&mut self, w: &mut Window) -> Result<(), StageError> {
        if let Err(e) = self.wait_for_commit(w).await {
            return self.fail_all(w, e).await;
        }
        if w.pending.is_empty() {
            w.started = None;
            return Ok(());
        }
        let started = Instant::now();
        tracing::debug!(sink = %self.name, batches = w.pending.len(), "flush");
        match self.sink.start_flush().await {
            Ok(Flushing::Done(report)) => {
                let tickets = w.take_pending();
                self.landed(w, report, started, tickets);
                Ok(())
            }
            Ok(Flushing::Committing(commit)) => {
                let tickets = w.take_pending();
                w.committing = Some(Committing {
                    commit,
                    tickets,
                    started,
                });
                Ok(())
            }
            Err(e) => self.fail_all(w, e).await,
        }
    }

    /// Waits for the running commit, if one runs, and completes its batches;
    /// if it failed, its batches join the open window's and the error is
    /// returned for the caller to fail them all.
    async fn wait_for_commit(&mut self, w: &mut Window) -> Result<(), StageError> {
        let Some(Committing {
            commit,
            tickets,
            started,
        }) = w.committing.take()
        else {
            return Ok(());
        };
        let result = commit.await;
        self.commit_outcome(w, tickets, started, result)
    }

    async fn wait_for_commit_or_fail(&mut self, w: &mut Window) -> Result<(), StageError> {
        match self.wait_for_commit(w).await {
            Ok(()) => Ok(()),
            Err(e) => self.fail_all(w, e).await,
        }
    }

    fn commit_outcome(
        &mut self,
        w: &mut Window,
        tickets: Vec<Arc<Ticket>>,
        started: Instant,
        result: Result<FlushReport, StageError>,
    ) -> Result<(), StageError> {
        tracing::debug!(sink = %self.name, batches = tickets.len(), ok = result.is_ok(), "commit ended");
        match result {
            Ok(report) => {
                self.sink.commit_landed();
                self.landed(w, report, started, tickets);
                Ok(())
            }
            Err(e) => {
                w.pending.extend(tickets);
                Err(e)
            }
        }
    }

    /// A commit landed: its batches are done.
    fn landed(&mut self, w: &mut Window, report: FlushReport, started: Instant, tickets: Vec<Arc<Ticket>>) {
        self.telemetry.committed(&Committed {
            rows: report.rows,
            files: report.files,
            batches: report.batches,
            duplicates_dropped: report.duplicates_dropped,
            took: started.elapsed(),
        });
        for t in tickets {
            t.complete();
        }
        w.backoff.reset();
        if self.readiness.backend_up(&format!("sink {}", self.name)) {
            self.telemetry.backend_back();
        }
    }

    /// Discards uncommitted work and fails its tickets (after the running
    /// commit, if one runs, has landed or failed); a fatal error stops the
    /// pipeline.
    async fn fail_all(&mut self, w: &mut Window, error: StageError) -> Result<(), StageError> {
        let error = match self.wait_for_commit(w).await {
            Err(commit_error) if !commit_error.is_retriable() => commit_error,
            _ => error,
        };
        self.sink.reset();
        let unavailable = error.is_unavailable();
        for t in w.take_pending() {
            if unavailable {
                t.fail_unavailable(error.message.clone());
            } else {
                t.fail(error.message.clone());
            }
        }
        if unavailable && self.readiness.backend_down(&format!("sink {}", self.name)) {
            self.telemetry.backend_lost(&error);
        }
        if !error.is_retriable() {
            self.telemetry.failed(&error, None);
            return Err(error);
        }
        let delay = w.backoff.next_delay();
        self.telemetry.failed(&error, Some(delay));
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use sluice_core::{DeliveryId, FlushReport, Flushing, Sink, StageError};
    use sluice_queue::{QueueSettings, embedded::EmbeddedQueue};
    use tokio::sync::oneshot;

    use super::*;

    type Gate = oneshot::Sender<Result<FlushReport, StageError>>;

    /// A sink whose commits run in the background until the test resolves
    /// them; it records what it was asked.
    struct GatedSink {
        calls: Arc<Mutex<Vec<String>>>,
        gates: mpsc::UnboundedSender<Gate>,
    }

    #[async_trait]
    impl Sink for GatedSink {
        async fn accept(&mut self, key: &str, _: bool, _: Vec<Event>) -> Result<Accepted, StageError> {
            self.calls.lock().unwrap().push(format!("accept {key}"));
            Ok(Accepted::Buffered { rejected: Vec::new() })
        }

        fn buffered_bytes(&self) -> usize {
            0
        }

        fn max_buffered_bytes(&self) -> usize {
            usize::MAX
        }

        async fn flush(&mut self) -> Result<FlushReport, StageError> {
            unreachable!("the driver starts flushes")
        }

        async fn start_flush(&mut self) -> Result<Flushing, StageError> {
            self.calls.lock().unwrap().push("start_flush".into());
            let (gate, commit) = oneshot::channel();
            self.gates.send(gate).unwrap();
            Ok(Flushing::Committing(Box::pin(async move {
                commit
                    .await
                    .unwrap_or_else(|_| Err(StageError::retriable("gate dropped")))
            })))
        }

        fn commit_landed(&mut self) {
            self.calls.lock().unwrap().push("landed".into());
        }

        fn reset(&mut self) {
            self.calls.lock().unwrap().push("reset".into());
        }
    }

    struct Harness {
        tx: mpsc::Sender<SinkMsg>,
        gates: mpsc::UnboundedReceiver<Gate>,
        done: mpsc::UnboundedReceiver<Arc<Ticket>>,
        done_tx: mpsc::UnboundedSender<Arc<Ticket>>,
        calls: Arc<Mutex<Vec<String>>>,
        _dir: sluice_testkit::TempDir,
    }

    impl Harness {
        fn start() -> Self {
            let dir = sluice_testkit::tempdir().unwrap();
            let queue = EmbeddedQueue::open(dir.path(), QueueSettings::default()).unwrap();
            let calls = Arc::new(Mutex::new(Vec::new()));
            let (gates_tx, gates) = mpsc::unbounded_channel();
            let driver = SinkDriver {
                name: "gated".into(),
                sink: Box::new(GatedSink {
                    calls: calls.clone(),
                    gates: gates_tx,
                }),
                flush_interval: Duration::from_secs(3600),
                dead_letters: Arc::new(queue),
                telemetry: SinkTelemetry::new("gated", Duration::from_secs(3600)),
                readiness: Arc::default(),
            };
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(driver.run(rx));
            let (done_tx, done) = mpsc::unbounded_channel();
            Harness {
                tx,
                gates,
                done,
                done_tx,
                calls,
                _dir: dir,
            }
        }

        async fn job(&self, key: &str) -> Arc<Ticket> {
            let ticket = Ticket::new(key.into(), 10, DeliveryId(0), 1, self.done_tx.clone());
            let job = SinkJob {
                ticket: ticket.clone(),
                source: "s".into(),
                maybe_committed: false,
                events: Vec::new(),
            };
            self.tx.send(SinkMsg::Job(job)).await.unwrap();
            ticket
        }

        /// An early flush, as the consumer sends it.
        async fn flush(&mut self) -> Gate {
            self.tx.send(SinkMsg::Flush).await.unwrap();
            self.gates.recv().await.unwrap()
        }

        async fn until_called(&self, call: &str) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.calls.lock().unwrap().iter().any(|c| c == call) {
                assert!(Instant::now() < deadline, "the sink was never asked to {call}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        async fn next_done(&mut self) -> (String, bool) {
            let ticket = tokio::time::timeout(Duration::from_secs(5), self.done.recv())
                .await
                .expect("a ticket finishes")
                .unwrap();
            (ticket.key.clone(), ticket.failure().is_none())
        }
    }

    /// Batch `a` committing (its gate returned) and batch `b` taken after.
    async fn a_committing_b_open() -> (Harness, Gate) {
        let mut h = Harness::start();
        h.job("a").await;
        let first = h.flush().await;
        h.job("b").await;
        h.until_called("accept b").await;
        (h, first)
    }

    fn report(batches: u64) -> FlushReport {
        FlushReport {
            batches,
            ..FlushReport::default()
        }
    }

    #[tokio::test]
    async fn batches_are_taken_while_a_commit_runs_and_a_commit_completes_only_its_own() {
        let (mut h, first) = a_committing_b_open().await;
        assert!(h.done.try_recv().is_err(), "nothing completes before its commit lands");

        first.send(Ok(report(1))).unwrap();
        assert_eq!(h.next_done().await, ("a".into(), true));
        h.until_called("landed").await;
        assert!(h.done.try_recv().is_err(), "b is not in the landed commit");

        let second = h.flush().await;
        second.send(Ok(report(1))).unwrap();
        assert_eq!(h.next_done().await, ("b".into(), true));
        assert_eq!(
            *h.calls.lock().unwrap(),
            ["accept a", "start_flush", "accept b", "landed", "start_flush", "landed"]
        );
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_batches_and_the_open_window_after_a_reset() {
        let (mut h, first) = a_committing_b_open().await;
        first.send(Err(StageError::retriable("the store said no"))).unwrap();
        let mut finished = vec![h.next_done().await, h.next_done().await];
        finished.sort();
        assert_eq!(finished, [("a".into(), false), ("b".into(), false)]);
        assert_eq!(
            *h.calls.lock().unwrap(),
            ["accept a", "start_flush", "accept b", "reset"]
        );
    }

    #[tokio::test]
    async fn the_next_flush_waits_for_the_running_commit() {
        let mut h = Harness::start();
        h.job("a").await;
        let first = h.flush().await;
        h.job("b").await;
        h.tx.send(SinkMsg::Flush).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            h.calls.lock().unwrap().iter().filter(|c| *c == "start_flush").count(),
            1,
            "one commit at a time"
        );
        first.send(Ok(report(1))).unwrap();
        let second = h.gates.recv().await.unwrap();
        assert_eq!(h.next_done().await, ("a".into(), true));
        second.send(Ok(report(1))).unwrap();
        assert_eq!(h.next_done().await, ("b".into(), true));
    }
}
