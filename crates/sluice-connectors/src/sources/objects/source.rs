//! The objects source at work: three loops over one ledger, run by the
//! replica that holds the lease `source.<name>` (the others stand by and
//! take over when it stops renewing).
//!
//! * The sweep lists the prefix every `sweep_interval_secs` (first at start)
//!   and records every matching object version it finds: the safety net for
//!   notifications that never came.
//! * The notification loop (when configured) pulls S3 event notifications
//!   from a durable JetStream consumer or an SQS queue, records the
//!   versions they announce, and acknowledges (deletes) them only after the
//!   ledger committed.
//! * The worker, every `pull_interval_secs`, claims up to
//!   `objects_per_pull` pending versions and reads each one: a reader thread
//!   fetches it (`If-Match` its version, so a replaced object is not read
//!   under the old version's name) and cuts it into batches keyed
//!   `object:<source>:<key>@<version>#<chunk>`, of the size the ledger kept
//!   for the version, so every read of it cuts the same batches. The object is `done` once
//!   its last batch is durable. Its batches are always flagged
//!   `maybe_committed`: any run may have read this version before (a killed
//!   one, or one whose ledger is gone), so every sink checks its commit
//!   record first and an object's events land once.
//!
//! A read that fails on the store is tried again after a back-off, up to
//! `max_attempts`; bytes that are not what the format says make the object
//! `failed` at once. Either way the object gets a dead letter naming it.

use std::{
    io,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::{GetOptions, ObjectStore, path::Path};
use sluice_core::{DeadLetter, now_ms, reason};
use sluice_queue::{QueueError, lease::Lease};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{
    ObjectsSourceConfig,
    inbox::Inbox,
    ledger::{Claim, FoundBy, Ledger},
    listing::Objects,
    notification,
};
use crate::sources::{
    Source, SourceContext, SourceError,
    chunks::{Chunk, FetchError, Layout, ReadError, dead_letter_unreadable, enqueue_chunks, read_chunks},
};

/// How often a standing-by replica asks for the source's lease.
const LEASE_POLL: Duration = Duration::from_secs(2);

/// How often the `sluice_objects{state}` gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(10);

/// The longest wait before a failed read is tried again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// When an object whose store could not be reached is read again.
const UNAVAILABLE_RETRY_DELAY: Duration = Duration::from_secs(2);

pub struct ObjectsSource {
    config: ObjectsSourceConfig,
    objects: Objects,
}

impl ObjectsSource {
    /// `store` holds the objects under `prefix`; `bucket` is the S3 bucket
    /// notifications must name.
    pub fn new(
        config: ObjectsSourceConfig,
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        bucket: Option<String>,
    ) -> Result<Self, String> {
        let pattern = glob::Pattern::new(&config.pattern)
            .map_err(|e| format!("pattern: {:?} is not a glob pattern ({e})", config.pattern))?;
        Ok(ObjectsSource {
            objects: Objects {
                store,
                prefix,
                bucket,
                pattern,
            },
            config,
        })
    }
}

type SharedLedger = Arc<Mutex<Ledger>>;

fn locked(ledger: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Source for ObjectsSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let ledger = Ledger::open(&Ledger::path(&ctx.state_dir, &ctx.name)).map_err(SourceError::State)?;
        let ledger: SharedLedger = Arc::new(Mutex::new(ledger));
        let inbox = match &self.config.notifications {
            Some(n) => match Inbox::open(n, &ctx).await? {
                Some(inbox) => Some(inbox),
                None => return Ok(()),
            },
            None => None,
        };
        let lease_name = format!("source.{}", ctx.name);
        let renew_every = ctx.leases.time_to_live() / 3;
        loop {
            let Some(mut lease) = self.wait_for_lease(&ctx, &lease_name).await? else {
                return Ok(());
            };
            ctx.telemetry.lease_held(true);
            let released = locked(&ledger).release_claims().map_err(SourceError::State)?;
            if released > 0 {
                tracing::info!(source = %ctx.name, objects = released, "reading objects an earlier holder had claimed again");
            }
            let lost = tokio::select! {
                served = self.serve(&ctx, &ledger, inbox.as_ref()) => {
                    lease.release().await;
                    ctx.telemetry.lease_held(false);
                    return served;
                }
                lost = keep_renewed(lease.as_mut(), renew_every) => lost,
            };
            ctx.telemetry.lease_held(false);
            tracing::warn!(source = %ctx.name, error = %lost, "lost the source's lease; another replica reads the objects now");
        }
    }
}

/// Renews `lease` every `every` until a renewal fails; returns that error.
async fn keep_renewed(lease: &mut dyn Lease, every: Duration) -> QueueError {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = lease.renew().await {
            return e;
        }
    }
}

impl ObjectsSource {
    /// Takes the source's lease, waiting while another replica holds it;
    /// `None` if the pipeline stops first. One replica at a time sweeps,
    /// takes notifications and reads objects, so replicas do not read every
    /// object once each.
    async fn wait_for_lease(&self, ctx: &SourceContext, name: &str) -> Result<Option<Box<dyn Lease>>, SourceError> {
        let mut shutdown = ctx.shutdown.clone();
        let mut told = false;
        loop {
            match ctx.leases.try_acquire(name).await {
                Ok(Some(lease)) => return Ok(Some(lease)),
                Ok(None) if !told => {
                    tracing::info!(source = %ctx.name, "another replica reads this objects source; standing by");
                    told = true;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(source = %ctx.name, error = %e, "cannot take the source's lease; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(LEASE_POLL.min(ctx.leases.time_to_live() / 3)) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(None),
            }
        }
    }

    /// Sweeps, takes notifications and reads objects until stopped (or, in
    /// batch mode, until everything found now is read).
    async fn serve(
        &self,
        ctx: &SourceContext,
        ledger: &SharedLedger,
        inbox: Option<&Inbox>,
    ) -> Result<(), SourceError> {
        if ctx.until_idle {
            self.sweep(ctx, ledger, Duration::ZERO).await?;
            if let Some(inbox) = inbox {
                while self.take_notifications(ctx, ledger, inbox).await? > 0 {}
            }
            return self.work(ctx, ledger).await;
        }
        let notifier = async {
            match inbox {
                Some(inbox) => self.notification_loop(ctx, ledger, inbox).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(self.sweep_loop(ctx, ledger), notifier, self.work(ctx, ledger)).map(|_| ())
    }

    /// Lists the prefix and records what it finds; `false` if listing failed.
    async fn sweep(&self, ctx: &SourceContext, ledger: &SharedLedger, settle: Duration) -> Result<bool, SourceError> {
        let found = match self.objects.list(settle).await {
            Ok(found) => {
                ctx.telemetry.upstream_answered();
                found
            }
            Err(e) => {
                ctx.telemetry.upstream_error("list", &e);
                return Ok(false);
            }
        };
        let new = locked(ledger)
            .found(&found, FoundBy::Sweep, now_ms(), self.config.batch_bytes())
            .map_err(SourceError::State)?;
        if new > 0 {
            tracing::info!(source = %ctx.name, objects = new, "the sweep found objects no notification announced");
        }
        ctx.telemetry.objects_found("sweep", new as u64);
        Ok(true)
    }

    async fn sweep_loop(&self, ctx: &SourceContext, ledger: &SharedLedger) -> Result<(), SourceError> {
        let mut shutdown = ctx.shutdown.clone();
        let settle = Duration::from_secs(self.config.settle_secs);
        loop {
            self.sweep(ctx, ledger, settle).await?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(self.config.sweep_interval_secs)) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    async fn notification_loop(
        &self,
        ctx: &SourceContext,
        ledger: &SharedLedger,
        inbox: &Inbox,
    ) -> Result<(), SourceError> {
        let mut shutdown = ctx.shutdown.clone();
        loop {
            tokio::select! {
                taken = self.take_notifications(ctx, ledger, inbox) => { taken?; }
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    /// One pull of notifications: records what they announce, then settles
    /// them. Returns how many messages there were.
    async fn take_notifications(
        &self,
        ctx: &SourceContext,
        ledger: &SharedLedger,
        inbox: &Inbox,
    ) -> Result<usize, SourceError> {
        let messages = match inbox.pull().await {
            Ok(messages) => {
                ctx.telemetry.notifications_answered();
                messages
            }
            Err(e) => {
                ctx.telemetry.notifications_error(&e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Ok(0);
            }
        };
        let mut found = Vec::new();
        let mut letters = Vec::new();
        for message in &messages {
            match notification::parse(&message.payload) {
                Ok(created) => {
                    for c in &created {
                        match self.objects.announced(c).await {
                            Ok(Some(object)) => found.push(object),
                            Ok(None) => {}
                            Err(e) => {
                                // Not acknowledged: the notification comes back.
                                tracing::warn!(source = %ctx.name, key = %c.key, error = %e, "cannot look up a notified object; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                return Ok(messages.len());
                            }
                        }
                    }
                }
                Err(detail) => {
                    letters.push(DeadLetter::new(
                        format!("notification:{}:{}", inbox.name(), message.id),
                        0,
                        &ctx.name,
                        &ctx.name,
                        reason::BAD_NOTIFICATION,
                        detail,
                        message.payload.clone(),
                    ));
                }
            }
        }
        if !letters.is_empty() {
            ctx.dead_letters
                .put(letters)
                .await
                .map_err(|e| SourceError::State(format!("storing dead letter: {e}")))?;
        }
        let new = locked(ledger)
            .found(&found, FoundBy::Notification, now_ms(), self.config.batch_bytes())
            .map_err(SourceError::State)?;
        ctx.telemetry.objects_found("notification", new as u64);
        let unsettled = inbox.settle(&messages).await;
        if unsettled > 0 {
            tracing::debug!(source = %ctx.name, notifications = unsettled, "notifications not settled; they come back and change nothing");
        }
        Ok(messages.len())
    }

    /// Claims and reads objects until stopped (or, in batch mode, until none are left).
    async fn work(&self, ctx: &SourceContext, ledger: &SharedLedger) -> Result<(), SourceError> {
        let mut shutdown = ctx.shutdown.clone();
        let visibility_ms = (self.config.visibility_timeout_secs * 1000) as i64;
        let mut last_counted = None;
        loop {
            let claims = locked(ledger)
                .claim(self.config.objects_per_pull, now_ms(), visibility_ms)
                .map_err(SourceError::State)?;
            for claim in &claims {
                match self.read(ctx, ledger, claim).await {
                    Err(SourceError::Stopped) => return Ok(()),
                    other => other?,
                }
            }
            // Counting every state scans the ledger: the gauges are
            // refreshed now and then, not after every pull.
            if last_counted.is_none_or(|at: Instant| at.elapsed() >= GAUGE_EVERY) {
                for (state, n) in locked(ledger).counts().map_err(SourceError::State)? {
                    ctx.telemetry.objects_in_state(&state, n);
                }
                last_counted = Some(Instant::now());
            }
            if ctx.until_idle && claims.is_empty() && !locked(ledger).has_work().map_err(SourceError::State)? {
                return Ok(());
            }
            if ctx.stopping() {
                return Ok(());
            }
            if claims.len() < self.config.objects_per_pull {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(self.config.pull_interval_secs)) => {}
                    _ = shutdown.wait_for(|s| *s) => return Ok(()),
                }
            }
        }
    }

    /// Reads one claimed object version into batches and records the outcome.
    async fn read(&self, ctx: &SourceContext, ledger: &SharedLedger, claim: &Claim) -> Result<(), SourceError> {
        let object = &claim.object;
        let mut base = format!(
            "object:{}:{}@{}",
            ctx.name,
            object.key,
            object.version.trim_matches('"')
        );
        if let Some(replay) = &claim.replay {
            base = sluice_core::replay_key(replay, &base);
        }
        let layout = match self.config.format.for_key(&object.key) {
            super::ObjectFormat::Csv => Layout::Csv,
            super::ObjectFormat::JsonArray => Layout::JsonArray,
            super::ObjectFormat::Ndjson | super::ObjectFormat::Auto => Layout::Ndjson,
        };
        let options = GetOptions {
            if_match: Some(object.version.clone()),
            ..GetOptions::default()
        };
        let failed = match self
            .objects
            .store
            .get_opts(&Path::from(object.key.as_str()), options)
            .await
        {
            Err(object_store::Error::NotFound { .. }) => Some(ReadError {
                message: "the object no longer exists".into(),
                retriable: false,
                unavailable: false,
            }),
            Err(object_store::Error::Precondition { .. }) => Some(ReadError {
                message: "the object was replaced before this version was read (the new version is read as new data)"
                    .into(),
                retriable: false,
                unavailable: false,
            }),
            Err(e) => Some(ReadError {
                message: e.to_string(),
                retriable: true,
                unavailable: sluice_core::is_connection_error(&e),
            }),
            Ok(got) => {
                ctx.telemetry.upstream_answered();
                let stream = got.into_stream().map_err(|e| io::Error::other(FetchError::new(&e)));
                let body = SyncIoBridge::new(StreamReader::new(stream));
                let (tx, rx) = mpsc::channel::<Chunk>(2);
                let max = claim
                    .batch_bytes
                    .unwrap_or_else(|| self.config.batch_bytes_before_ledger());
                let reader = std::thread::spawn(move || read_chunks(Box::new(body), layout, max, &tx));
                let result = enqueue_chunks(ctx, rx, &base, true, None).await;
                let _ = reader.join();
                let done = result?;
                done.failed.map(|mut e| {
                    e.message = format!("{} (after {} batches)", e.message, done.batches);
                    e
                })
            }
        };
        let now = now_ms();
        let outcome = match failed {
            None => {
                locked(ledger).finish(object, now).map_err(SourceError::State)?;
                "done"
            }
            Some(e) if e.unavailable => {
                // The store is away, not the object at fault: no attempt spent.
                ctx.telemetry.upstream_error("get", &e.message);
                locked(ledger)
                    .give_back(object, &e.message, now + UNAVAILABLE_RETRY_DELAY.as_millis() as i64)
                    .map_err(SourceError::State)?;
                "unavailable"
            }
            Some(e) if e.retriable && claim.attempts < self.config.max_attempts => {
                let delay = Duration::from_secs(1 << claim.attempts.min(6)).min(MAX_RETRY_DELAY);
                tracing::warn!(source = %ctx.name, key = %object.key, attempt = claim.attempts, error = %e.message, "reading an object failed; trying again");
                locked(ledger)
                    .retry_at(object, &e.message, now + delay.as_millis() as i64)
                    .map_err(SourceError::State)?;
                "retry"
            }
            Some(e) => {
                let message = if e.retriable {
                    format!("gave up after {} attempts: {}", claim.attempts, e.message)
                } else {
                    e.message
                };
                tracing::warn!(source = %ctx.name, key = %object.key, error = %message, "object failed");
                let detail = format!("{} (version {}): {message}", object.key, object.version);
                dead_letter_unreadable(ctx, &base, detail).await?;
                locked(ledger).fail(object, &message, now).map_err(SourceError::State)?;
                "failed"
            }
        };
        ctx.telemetry.object_read(outcome);
        Ok(())
    }
}
