//! Drives one sink: feeds it batches, flushes by size and by age, stores the
//! events it refuses as dead letters, and completes tickets after commits.
//!
//! On any sink error the sink's uncommitted work is discarded and every
//! ticket it held fails, so the queue delivers those batches again (their
//! redelivery checks the sink's log, so nothing is written twice). When the
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
    Accepted, DeadLetter, Event, Sink, StageError,
    retry::Backoff,
    telemetry::{Committed, SinkTelemetry},
};
use sluice_queue::DeadLetterStore;
use tokio::sync::{mpsc, oneshot};

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
    /// Flush now (idle or stopping) and answer when done.
    Flush(oneshot::Sender<()>),
}

pub struct SinkDriver {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub flush_interval: Duration,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub telemetry: SinkTelemetry,
    pub readiness: Arc<Readiness>,
}

/// Retries of a failed sink: from 0.2 s, doubling, at most 30 s apart.
fn sink_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
}

impl SinkDriver {
    /// Runs until the input closes; returns a fatal error if one occurs.
    pub async fn run(mut self, mut rx: mpsc::Receiver<SinkMsg>) -> Result<(), StageError> {
        let mut pending: Vec<Arc<Ticket>> = Vec::new();
        let mut window_started: Option<Instant> = None;
        let mut backoff = sink_backoff();
        loop {
            let deadline = window_started.map(|t| tokio::time::Instant::from_std(t + self.flush_interval));
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    self.flush(&mut pending, &mut window_started, &mut backoff).await?;
                    continue;
                }
            };
            match msg {
                None => {
                    self.flush(&mut pending, &mut window_started, &mut backoff).await?;
                    return Ok(());
                }
                Some(SinkMsg::Flush(reply)) => {
                    self.flush(&mut pending, &mut window_started, &mut backoff).await?;
                    let _ = reply.send(());
                }
                Some(SinkMsg::Job(job)) => {
                    self.accept(job, &mut pending, &mut window_started, &mut backoff)
                        .await?;
                    if self.sink.buffered_bytes() >= self.sink.max_buffered_bytes() {
                        self.flush(&mut pending, &mut window_started, &mut backoff).await?;
                    }
                }
            }
        }
    }

    async fn accept(
        &mut self,
        job: SinkJob,
        pending: &mut Vec<Arc<Ticket>>,
        window_started: &mut Option<Instant>,
        backoff: &mut Backoff,
    ) -> Result<(), StageError> {
        let count = job.events.len() as u64;
        self.telemetry.received(count);
        crate::tap::publish(&self.name, &job.events);
        match self.sink.accept(&job.ticket.key, job.maybe_committed, job.events).await {
            Ok(Accepted::AlreadyCommitted) => {
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
                        pending.push(job.ticket);
                        return self
                            .fail_all(
                                pending,
                                window_started,
                                backoff,
                                StageError::retriable(format!("storing dead letters: {e}")),
                            )
                            .await;
                    }
                }
                window_started.get_or_insert_with(Instant::now);
                pending.push(job.ticket);
            }
            Err(e) => {
                pending.push(job.ticket);
                return self.fail_all(pending, window_started, backoff, e).await;
            }
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        pending: &mut Vec<Arc<Ticket>>,
        window_started: &mut Option<Instant>,
        backoff: &mut Backoff,
    ) -> Result<(), StageError> {
        if pending.is_empty() {
            *window_started = None;
            return Ok(());
        }
        let started = Instant::now();
        match self.sink.flush().await {
            Ok(report) => {
                self.telemetry.committed(&Committed {
                    rows: report.rows,
                    files: report.files,
                    batches: report.batches,
                    duplicates_dropped: report.duplicates_dropped,
                    took: started.elapsed(),
                });
                for t in pending.drain(..) {
                    t.complete();
                }
                *window_started = None;
                backoff.reset();
                if self.readiness.backend_up(&format!("sink {}", self.name)) {
                    self.telemetry.backend_back();
                }
                Ok(())
            }
            Err(e) => self.fail_all(pending, window_started, backoff, e).await,
        }
    }

    /// Discards uncommitted work and fails its tickets; a fatal error stops the pipeline.
    async fn fail_all(
        &mut self,
        pending: &mut Vec<Arc<Ticket>>,
        window_started: &mut Option<Instant>,
        backoff: &mut Backoff,
        error: StageError,
    ) -> Result<(), StageError> {
        self.sink.reset();
        let unavailable = error.is_unavailable();
        for t in pending.drain(..) {
            if unavailable {
                t.fail_unavailable(error.message.clone());
            } else {
                t.fail(error.message.clone());
            }
        }
        *window_started = None;
        if unavailable && self.readiness.backend_down(&format!("sink {}", self.name)) {
            self.telemetry.backend_lost(&error);
        }
        if !error.is_retriable() {
            self.telemetry.failed(&error, None);
            return Err(error);
        }
        let delay = backoff.next_delay();
        self.telemetry.failed(&error, Some(delay));
        tokio::time::sleep(delay).await;
        Ok(())
    }
}
