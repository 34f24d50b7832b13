//! The routed `lake` sink (`table_template`): each event goes to the table
//! of the schema version it was checked against (`Event::schema`), one
//! table per schema family and MODEL, so one collector feeds many tables.
//!
//! Each table is a [`LakeSink`] of its own, opened (or created) when its
//! first event arrives, and widened ([`LakeSink::widen`]) when an event of a
//! newer version of its MODEL adds columns. A batch's events commit to
//! each table with the batch key, so a redelivered batch is checked table by
//! table: a table that committed its part skips it, the others write theirs.
//! Where a version goes and which columns it has is the [`Routes`]' answer
//! (the pipeline's schema registry); the sink knows no registry.

use std::{collections::BTreeMap, sync::Arc};

use arrow_schema::Schema;
use async_trait::async_trait;
use sluice_core::{Accepted, Event, FlushReport, Rejected, Sink, StageError, reason};

use super::LakeSink;
use crate::{LakeSinkConfig, StoreLocation};

/// The table one schema version's events go to, and that version's columns.
#[derive(Debug, Clone)]
pub struct Route {
    pub location: StoreLocation,
    pub data_schema: Arc<Schema>,
    pub json_text_paths: Vec<Vec<String>>,
}

/// Why a schema key has no route.
#[derive(Debug)]
pub enum RouteError {
    /// Not registered, or not something a table can hold: a dead letter.
    Unknown(String),
    /// The registry could not be read: the batch is retried.
    Unavailable(String),
}

/// Where each schema version's events go.
#[async_trait]
pub trait Routes: Send + Sync {
    async fn route(&self, schema_key: &str) -> Result<Route, RouteError>;
}

pub struct RoutedLakeSink {
    config: LakeSinkConfig,
    event_id: String,
    routes: Arc<dyn Routes>,
    /// Open tables by URL.
    tables: BTreeMap<String, LakeSink>,
}

impl RoutedLakeSink {
    /// `event_id` is the JSON pointer of the events' id in every table.
    pub fn new(config: LakeSinkConfig, event_id: &str, routes: Arc<dyn Routes>) -> Self {
        RoutedLakeSink {
            config,
            event_id: event_id.to_string(),
            routes,
            tables: BTreeMap::new(),
        }
    }

    /// The table at `route`, opened on first use (its columns come with
    /// [`LakeSink::widen`], which `accept` calls for every version).
    async fn table(&mut self, route: &Route) -> Result<&mut LakeSink, StageError> {
        let url = route.location.url().to_string();
        if !self.tables.contains_key(&url) {
            let sink =
                LakeSink::open_evolving(route.location.clone(), &self.config, &route.data_schema, &self.event_id)
                    .await
                    .map_err(|e| StageError::retriable(e.to_string()))?;
            self.tables.insert(url.clone(), sink);
        }
        Ok(self.tables.get_mut(&url).expect("inserted above"))
    }
}

/// One table's share of a batch: each version's route and events.
type Share = Vec<(Arc<str>, Route, Vec<Event>)>;

#[async_trait]
impl Sink for RoutedLakeSink {
    async fn accept(&mut self, key: &str, maybe_committed: bool, events: Vec<Event>) -> Result<Accepted, StageError> {
        let mut rejected = Vec::new();
        let mut by_version: BTreeMap<Arc<str>, Vec<Event>> = BTreeMap::new();
        for event in events {
            match event.schema.clone() {
                Some(version) => by_version.entry(version).or_default().push(event),
                None => rejected.push(Rejected::new(
                    event,
                    reason::UNKNOWN_SCHEMA,
                    "no schema key: a lake sink with table_template takes events from a self_describing transform",
                )),
            }
        }
        // Routed once per version in the batch, not per event.
        let mut shares: BTreeMap<String, Share> = BTreeMap::new();
        for (version, events) in by_version {
            match self.routes.route(&version).await {
                Ok(route) => shares
                    .entry(route.location.url().to_string())
                    .or_default()
                    .push((version, route, events)),
                Err(RouteError::Unknown(why)) => rejected.extend(
                    events
                        .into_iter()
                        .map(|event| Rejected::new(event, reason::UNKNOWN_SCHEMA, why.clone())),
                ),
                Err(RouteError::Unavailable(why)) => return Err(StageError::retriable(why)),
            }
        }
        let mut all_committed = !shares.is_empty();
        for share in shares.into_values() {
            let mut events = Vec::new();
            let mut table = None;
            for (version, route, mut version_events) in share {
                let sink = self.table(&route).await?;
                match sink.widen(&route.data_schema, &route.json_text_paths).await {
                    Ok(()) => events.append(&mut version_events),
                    Err(e) if e.is_retriable() => return Err(e),
                    Err(e) => rejected.extend(version_events.into_iter().map(|event| {
                        Rejected::new(event, reason::INCOMPATIBLE_SCHEMA, format!("{version}: {}", e.message))
                    })),
                }
                table = Some(route.location.url().to_string());
            }
            let Some(sink) = table.and_then(|url| self.tables.get_mut(&url)) else {
                continue;
            };
            match sink.accept(key, maybe_committed, events).await? {
                Accepted::AlreadyCommitted => {}
                Accepted::Buffered { rejected: more } => {
                    all_committed = false;
                    rejected.extend(more);
                }
            }
        }
        if all_committed && rejected.is_empty() {
            return Ok(Accepted::AlreadyCommitted);
        }
        Ok(Accepted::Buffered { rejected })
    }

    fn buffered_bytes(&self) -> usize {
        self.tables.values().map(Sink::buffered_bytes).sum()
    }

    fn max_buffered_bytes(&self) -> usize {
        self.config.max_file_bytes as usize
    }

    /// Commits every table with something buffered; a table that fails does
    /// not keep the others from committing, and the first failure is
    /// returned (its batches are redelivered, and skipped by the tables
    /// that committed them).
    async fn flush(&mut self) -> Result<FlushReport, StageError> {
        let mut total = FlushReport::default();
        let mut failed = None;
        for sink in self.tables.values_mut() {
            match sink.flush().await {
                Ok(report) => {
                    total.rows += report.rows;
                    total.files += report.files;
                    total.batches += report.batches;
                    total.duplicates_dropped += report.duplicates_dropped;
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    fn reset(&mut self) {
        self.tables.values_mut().for_each(Sink::reset);
    }
}
