//! The `lake` sink: buffers events into per-partition Parquet files and
//! commits them to the Delta log together with the keys of their batches.
//!
//! Flow of one batch: events are grouped by partition (event time, and the
//! bucket of a field if configured), event ids seen within the dedupe window
//! ([`seen`]) are dropped, the JSON payloads
//! become Arrow columns ([`crate::columns`]) and are streamed into the
//! partition's open file. A flush closes the files and makes one Delta commit holding the
//! `add` actions and one `txn` action per batch key. If the commit fails, the
//! driver resets the sink (its files are dropped from the window, never
//! committed) and the batches are delivered again.
//!
//! The commit runs in the background ([`Sink::start_flush`]): the window is
//! sealed (its files closed, its keys and ids set aside) and the commit is a
//! task of its own, holding the table ([`TableState`]) until it has read the
//! table back; the sink meanwhile writes the next batches into new files.
//! The next commit waits for that task, so commits land one at a time, in
//! order. Asking whether a batch was committed does not: it reads the log
//! through a table handle of its own, and a batch of the running commit is
//! known by its key.
//!
//! A replay batch's events replace the rows earlier reads of their input
//! left ([`replace`]).
//!
//! Schema evolution ([`LakeSink::widen`]): columns a newer schema version
//! adds (nullable, never a changed type) close the files open so far and
//! replace the writer by one with the wider schema; the next commit carries
//! the table's new `metaData` together with the data written under it, so
//! no reader sees rows of columns the table does not have. Files written
//! before lack the new columns, which Delta readers read as null.

mod committed;
mod files;
mod replace;
pub mod routed;
mod seen;

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use async_trait::async_trait;
use delta_kernel::expressions::Scalar;
use deltalake::{
    DeltaTable,
    kernel::{
        Action, Add, MetadataExt, StructType, Transaction,
        engine::arrow_conversion::TryFromArrow,
        transaction::{CommitBuilder, CommitProperties},
    },
    protocol::{DeltaOperation, SaveMode},
    writer::RecordBatchWriter,
};
use serde_json::Value;
use sluice_core::{
    Accepted, Event, FlushReport, Flushing, Rejected, Sink, StageError, is_replay, now_ms, pointer_tokens, reason,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{
    LakeError, LakeSinkConfig, ParquetCompression, StoreLocation,
    columns::decode_events,
    compaction::{plan::PartitionValues, remove_action},
    partition::{PartitionError, PartitionKey, PartitionSlot},
    table::{check_schema, merge_columns, open_or_create, table_error, table_schema},
};

/// Prefix of the Delta `txn` application ids Sluice writes.
pub const TXN_PREFIX: &str = "sluice/";

/// Events of one partition in one batch from which their decoding to Arrow
/// is split in two ([`LakeSink::decode_group`]).
const SPLIT_DECODE_EVENTS: usize = 2048;

/// The table and what is known of its log: the sink's, or its running
/// commit's while one runs.
struct TableState {
    table: DeltaTable,
    /// The table could not be read back after the last commit: read it
    /// before the next.
    stale: bool,
    /// Tests: the next read-back fails.
    #[cfg(test)]
    fail_next_read_back: bool,
}

impl TableState {
    /// Reads the table's commits since the one it holds.
    async fn read_back(&mut self) -> Result<(), deltalake::DeltaTableError> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_read_back) {
            return Err(deltalake::DeltaTableError::Generic("the test failed this read".into()));
        }
        self.table.update_incremental(None).await
    }
}

pub struct LakeSink {
    location: StoreLocation,
    state: Arc<Mutex<TableState>>,
    /// The table as the committed-key lookup reads it.
    lookup: DeltaTable,
    /// Batch keys the table has committed, read as commits come.
    committed: committed::CommittedKeys,
    files: files::Files,
    /// Data columns as the table stores them (partition columns excluded).
    data_schema: Arc<Schema>,
    json_text_paths: Vec<Vec<String>>,
    partition_by: Vec<PartitionKey>,
    /// JSON pointer of the event id (a bucket key on it uses `Event::id`).
    event_id: String,
    /// The event id's column path (through structs).
    id_column: Vec<String>,
    max_buffered: usize,
    /// Codec of the files written; with the schema, their writer settings
    /// ([`ParquetCompression::ingest_writer_properties`], also after widening).
    compression: ParquetCompression,
    seen: seen::SeenIds,
    /// Ids of replayed events whose earlier rows the next commit removes.
    replacing: replace::Replacing,
    /// Batch keys in the current window (written, not yet committed).
    window_keys: Vec<String>,
    /// Batch keys of the sealed window, whose commit is running.
    sealed_keys: Vec<String>,
    window_rows: u64,
    duplicates_dropped: u64,
    /// Files closed (by a flush or a widening) and not yet committed.
    closed_files: Vec<Add>,
    /// The table's full schema once widened, until a commit records it.
    pending_schema: Option<Arc<Schema>>,
    /// The schema the running commit records, if it records one.
    committing_schema: Option<Arc<Schema>>,
}

impl LakeSink {
    /// Opens (or creates) the table at `location` with the columns of `data_schema`;
    /// `event_id` is the JSON pointer of the events' id. An existing table
    /// must have exactly these columns.
    pub async fn open(
        location: StoreLocation,
        config: &LakeSinkConfig,
        data_schema: &Schema,
        json_text_paths: Vec<Vec<String>>,
        event_id: &str,
    ) -> Result<Self, LakeError> {
        let table = open_or_create(&location, data_schema, &config.partition_by).await?;
        check_schema(&table, &location, &table_schema(data_schema, &config.partition_by))?;
        Self::for_table(location, table, config, json_text_paths, event_id)
    }

    /// Opens a table of a schema family, or creates it with the columns of
    /// `data_schema`: an existing table keeps the columns it has, and
    /// [`LakeSink::widen`] adds those of later versions.
    pub async fn open_evolving(
        location: StoreLocation,
        config: &LakeSinkConfig,
        data_schema: &Schema,
        event_id: &str,
    ) -> Result<Self, LakeError> {
        let table = open_or_create(&location, data_schema, &config.partition_by).await?;
        Self::for_table(location, table, config, Vec::new(), event_id)
    }

    fn for_table(
        location: StoreLocation,
        table: DeltaTable,
        config: &LakeSinkConfig,
        json_text_paths: Vec<Vec<String>>,
        event_id: &str,
    ) -> Result<Self, LakeError> {
        let writer = RecordBatchWriter::for_table(&table).map_err(|e| table_error(&location, e))?;
        let data_schema = Arc::new(data_columns(&writer.arrow_schema(), &config.partition_by));
        let id_column = pointer_tokens(event_id);
        let writer = writer
            .with_writer_properties(config.compression.ingest_writer_properties(&id_column, &data_schema))
            .with_target_file_size(config.max_file_bytes);
        Ok(LakeSink {
            location,
            lookup: table.clone(),
            committed: Default::default(),
            state: Arc::new(Mutex::new(TableState {
                table,
                stale: false,
                #[cfg(test)]
                fail_next_read_back: false,
            })),
            files: files::Files::start(writer),
            data_schema,
            json_text_paths,
            partition_by: config.partition_by.clone(),
            event_id: event_id.to_string(),
            id_column,
            max_buffered: config.max_file_bytes as usize,
            compression: config.compression,
            seen: seen::SeenIds::new(Duration::from_secs(config.dedupe_window_secs), config.dedupe_max_ids),
            replacing: replace::Replacing::default(),
            window_keys: Vec::new(),
            sealed_keys: Vec::new(),
            window_rows: 0,
            duplicates_dropped: 0,
            closed_files: Vec::new(),
            pending_schema: None,
            committing_schema: None,
        })
    }

    /// Makes the table hold every column of `data` (a later version of the
    /// schema it was made from) and stores `json_text_paths` values as text.
    /// Columns only ever get added; a column whose type would change is an
    /// error and nothing changes.
    pub async fn widen(&mut self, data: &Schema, json_text_paths: &[Vec<String>]) -> Result<(), StageError> {
        let merged = merge_columns(&self.data_schema, data)
            .map_err(|e| StageError::fatal(format!("lake {}: {e}", self.location)))?;
        for path in json_text_paths {
            if !self.json_text_paths.contains(path) {
                self.json_text_paths.push(path.clone());
            }
        }
        let Some(merged) = merged else {
            return Ok(());
        };
        self.close_files().await?;
        let full = Arc::new(table_schema(&merged, &self.partition_by));
        let partition_columns = self.partition_by.iter().map(|p| p.column().to_string()).collect();
        let wider = RecordBatchWriter::try_new(
            self.location.url().as_str(),
            full.clone(),
            Some(partition_columns),
            Some(self.location.options().clone().into_iter().collect()),
        )
        .map_err(|e| self.retriable("opening a wider writer", e))?
        .with_writer_properties(self.compression.ingest_writer_properties(&self.id_column, &merged))
        .with_target_file_size(self.max_buffered as u64);
        self.files.replace(wider);
        self.data_schema = Arc::new(merged);
        self.pending_schema = Some(full);
        Ok(())
    }

    /// Closes the open files; their `add`s wait for the next commit.
    async fn close_files(&mut self) -> Result<(), StageError> {
        let adds = self
            .files
            .close()
            .await
            .map_err(|e| self.retriable("closing files", e))?
            .map_err(|e| self.retriable("closing files", e))?;
        self.closed_files.extend(adds);
        Ok(())
    }

    fn retriable<E: std::error::Error + 'static>(&self, what: &str, e: E) -> StageError {
        storage_error(&self.location, what, e)
    }

    /// Whether the Delta log already records batch `key` (one not in the
    /// running commit).
    async fn committed(&mut self, key: &str) -> Result<bool, StageError> {
        self.committed
            .contains(&mut self.lookup, &format!("{TXN_PREFIX}{key}"))
            .await
            .map_err(|e| self.retriable("reading committed batch keys", e))
    }

    /// A slot's partition columns and values, as the Delta log names them.
    fn partition_values(&self, slot: PartitionSlot) -> PartitionValues {
        self.partition_by
            .iter()
            .zip(slot.values(&self.partition_by))
            .map(|(k, v)| (k.column().to_string(), Some(v)))
            .collect()
    }

    /// Decodes one partition's events into record batches; events that do
    /// not decode are returned as rejected and left out. A large group is
    /// decoded in two halves, the second on a task of its own, so that with
    /// a second worker thread the sink's largest piece of work is shared.
    async fn decode_group(
        &self,
        mut events: Vec<Event>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Vec<RecordBatch>, StageError> {
        if events.len() < SPLIT_DECODE_EVENTS {
            return Ok(
                decode_events(&self.data_schema, &self.json_text_paths, events, rejected)?
                    .into_iter()
                    .collect(),
            );
        }
        let second = events.split_off(events.len() / 2);
        let (schema, paths) = (self.data_schema.clone(), self.json_text_paths.clone());
        let other = tokio::spawn(async move {
            let mut rejected = Vec::new();
            decode_events(&schema, &paths, second, &mut rejected).map(|batch| (batch, rejected))
        });
        let first = decode_events(&self.data_schema, &self.json_text_paths, events, rejected)?;
        let (second, second_rejected) = other
            .await
            .map_err(|e| StageError::fatal(format!("lake {}: decoding rows: {e}", self.location)))??;
        rejected.extend(second_rejected);
        Ok(first.into_iter().chain(second).collect())
    }
}

/// A failed storage call: `Unavailable` when the object store could not be
/// reached, else an ordinary retriable error.
fn storage_error<E: std::error::Error + 'static>(location: &StoreLocation, what: &str, e: E) -> StageError {
    StageError::from_backend(format!("lake {location}: {what}: {e}"), &e)
}

/// A sealed window's commit: its actions, made against the table `state` holds.
struct Commit {
    location: StoreLocation,
    state: OwnedMutexGuard<TableState>,
    actions: Vec<Action>,
    properties: CommitProperties,
    operation: DeltaOperation,
    /// The table's wider schema, recorded with the data written under it.
    widened: Option<Arc<Schema>>,
    replaced: Option<replace::Replaced>,
    report: FlushReport,
}

impl Commit {
    /// Commits, then reads the table back (a failed read-back leaves the
    /// table stale, to be read before the next commit, and the commit stands).
    async fn run(self) -> Result<FlushReport, StageError> {
        let Commit {
            location,
            mut state,
            mut actions,
            properties,
            operation,
            widened,
            replaced,
            report,
        } = self;
        let snapshot = state
            .table
            .snapshot()
            .map_err(|e| storage_error(&location, "reading snapshot", e))?;
        if let Some(schema) = &widened {
            let kernel = StructType::try_from_arrow(schema.as_ref())
                .map_err(|e| storage_error(&location, "converting the wider schema", e))?;
            let metadata = snapshot
                .metadata()
                .clone()
                .with_schema(&kernel)
                .map_err(|e| storage_error(&location, "widening the schema", e))?;
            actions.push(Action::Metadata(metadata));
        }
        CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(snapshot), state.table.log_store(), operation)
            .await
            .map_err(|e| storage_error(&location, "committing", e))?;
        // Committed: nothing after this may fail the window's batches or
        // forget their ids (a redelivery would find them committed, but a
        // redrive of their copies would not).
        if let Err(e) = state.read_back().await {
            tracing::warn!(table = %location, error = %e, "reading the table back after a commit failed; reading it again before the next");
            state.stale = true;
        }
        if let Some(replaced) = replaced {
            tracing::info!(
                table = %location,
                rows_replaced = replaced.rows_replaced,
                files_rewritten = replaced.files.len(),
                rows_kept = replaced.rows_kept,
                "replayed events replaced their earlier rows"
            );
        }
        Ok(report)
    }
}

/// The data columns of a table schema: all but the partition columns.
fn data_columns(full: &Schema, partition_by: &[PartitionKey]) -> Schema {
    let partition_columns: Vec<&str> = partition_by.iter().map(|p| p.column()).collect();
    Schema::new(
        full.fields()
            .iter()
            .filter(|f| !partition_columns.contains(&f.name().as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    )
}

/// The text a bucket key hashes: the event id, or the string or number at
/// `pointer` in the payload.
fn bucket_input<'a>(event: &'a Event, event_id: &str, pointer: &str) -> Option<Cow<'a, str>> {
    if pointer == event_id {
        return event.id.as_deref().map(Cow::Borrowed);
    }
    let value: Value = serde_json::from_slice(&event.payload).ok()?;
    match value.pointer(pointer)? {
        Value::String(s) => Some(Cow::Owned(s.clone())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

#[async_trait]
impl Sink for LakeSink {
    async fn accept(&mut self, key: &str, maybe_committed: bool, events: Vec<Event>) -> Result<Accepted, StageError> {
        let in_window = self.window_keys.iter().chain(&self.sealed_keys).any(|k| k == key);
        if in_window {
            // A redelivery of a batch this process holds: a pending commit covers it.
            return Ok(Accepted::Buffered { rejected: Vec::new() });
        }
        if maybe_committed && self.committed(key).await? {
            return Ok(Accepted::AlreadyCommitted);
        }
        let replay = is_replay(key);
        let mut rejected = Vec::new();
        let mut groups: HashMap<PartitionSlot, Vec<Event>> = HashMap::new();
        for event in events {
            let Some(time_us) = event.time_us else {
                rejected.push(Rejected::new(
                    event,
                    reason::MISSING_EVENT_TIME,
                    "the lake partitions by event time; no upstream stage set it",
                ));
                continue;
            };
            let slot = match PartitionSlot::of(&self.partition_by, time_us, |p| bucket_input(&event, &self.event_id, p))
            {
                Ok(slot) => slot,
                Err(PartitionError::TimeOutOfRange) => {
                    rejected.push(Rejected::new(
                        event,
                        reason::BAD_EVENT_TIME,
                        format!("event time {time_us}µs is out of range"),
                    ));
                    continue;
                }
                Err(PartitionError::MissingBucketValue(pointer)) => {
                    rejected.push(Rejected::new(
                        event,
                        reason::MISSING_PARTITION_VALUE,
                        format!("the bucket partition hashes {pointer}, which holds no string or number"),
                    ));
                    continue;
                }
            };
            if replay {
                let Some(id) = &event.id else {
                    rejected.push(Rejected::new(
                        event,
                        reason::REPLAY_WITHOUT_ID,
                        "a replayed event needs an event id to replace its earlier row",
                    ));
                    continue;
                };
                if !self.replacing.insert(self.partition_values(slot), id) {
                    self.duplicates_dropped += 1;
                    continue;
                }
                self.seen.insert(id);
            } else if let Some(id) = &event.id
                && !self.seen.insert(id)
            {
                self.duplicates_dropped += 1;
                continue;
            }
            groups.entry(slot).or_default().push(event);
        }
        let mut rows = Vec::with_capacity(groups.len());
        for (slot, events) in groups {
            let batches = self.decode_group(events, &mut rejected).await?;
            let partition: indexmap::IndexMap<String, Scalar> = self
                .partition_by
                .iter()
                .zip(slot.values(&self.partition_by))
                .map(|(k, v)| (k.column().to_string(), Scalar::String(v)))
                .collect();
            for batch in batches {
                self.window_rows += batch.num_rows() as u64;
                rows.push((batch, partition.clone()));
            }
        }
        self.files
            .write(rows)
            .await
            .map_err(|e| self.retriable("writing parquet", e))?;
        self.window_keys.push(key.to_string());
        Ok(Accepted::Buffered { rejected })
    }

    fn buffered_bytes(&self) -> usize {
        self.files.buffered()
    }

    fn max_buffered_bytes(&self) -> usize {
        self.max_buffered
    }

    async fn flush(&mut self) -> Result<FlushReport, StageError> {
        match self.start_flush().await? {
            Flushing::Done(report) => Ok(report),
            Flushing::Committing(commit) => {
                let report = commit.await?;
                self.commit_landed();
                Ok(report)
            }
        }
    }

    /// Seals the window (closes its files; a replay's rewrites of earlier
    /// files are made first, against the latest version) and sets its
    /// commit going as a task of its own.
    async fn start_flush(&mut self) -> Result<Flushing, StageError> {
        if self.window_keys.is_empty() {
            return Ok(Flushing::Done(FlushReport::default()));
        }
        let mut state = self.state.clone().lock_owned().await;
        if state.stale || !self.replacing.is_empty() {
            state
                .read_back()
                .await
                .map_err(|e| self.retriable("refreshing table", e))?;
            state.stale = false;
        }
        let replaced = if self.replacing.is_empty() {
            None
        } else {
            let replaced = self
                .replacing
                .rewrite(&state.table, &self.id_column, &self.data_schema, &self.files)
                .await
                .map_err(|e| StageError::retriable(format!("lake {}: replacing replayed rows: {e}", self.location)))?;
            Some(replaced)
        };
        self.close_files().await?;
        let now = now_ms();
        let txns = self
            .window_keys
            .iter()
            .map(|k| Transaction {
                app_id: format!("{TXN_PREFIX}{k}"),
                version: 0,
                last_updated: Some(now),
            })
            .collect();
        let report = FlushReport {
            rows: std::mem::take(&mut self.window_rows),
            files: self.closed_files.len() as u64,
            batches: self.window_keys.len() as u64,
            duplicates_dropped: std::mem::take(&mut self.duplicates_dropped),
        };
        let mut actions: Vec<Action> = self.closed_files.drain(..).map(Action::Add).collect();
        let partition_by = Some(self.partition_by.iter().map(|p| p.column().to_string()).collect());
        let mut properties = CommitProperties::default().with_application_transactions(txns);
        let operation = match &replaced {
            None => DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by,
                predicate: None,
            },
            Some(replaced) => {
                actions.extend(replaced.files.iter().map(|f| remove_action(f, true, now)));
                // Only on the version the replaced files were read from.
                properties = properties.with_max_retries(0);
                DeltaOperation::Write {
                    mode: SaveMode::Overwrite,
                    partition_by,
                    predicate: Some(format!(
                        "sluice replay: {} earlier rows of replayed events",
                        replaced.rows_replaced
                    )),
                }
            }
        };
        self.sealed_keys = std::mem::take(&mut self.window_keys);
        self.committing_schema = self.pending_schema.clone();
        self.replacing.clear();
        self.seen.seal();
        let commit = Commit {
            location: self.location.clone(),
            state,
            actions,
            properties,
            operation,
            widened: self.committing_schema.clone(),
            replaced,
            report,
        };
        let running = tokio::spawn(commit.run());
        let location = self.location.clone();
        Ok(Flushing::Committing(Box::pin(async move {
            running
                .await
                .map_err(|e| StageError::fatal(format!("lake {location}: the commit task failed: {e}")))?
        })))
    }

    fn commit_landed(&mut self) {
        self.sealed_keys.clear();
        if let Some(committed) = self.committing_schema.take()
            && self.pending_schema.as_ref().is_some_and(|p| Arc::ptr_eq(p, &committed))
        {
            self.pending_schema = None;
        }
        self.seen.sealed_committed(Instant::now());
    }

    /// Drops what is not committed; a widened schema stays pending, as the
    /// writer keeps it.
    fn reset(&mut self) {
        self.files.reset();
        self.seen.discard();
        self.replacing.clear();
        self.window_keys.clear();
        self.sealed_keys.clear();
        self.committing_schema = None;
        self.window_rows = 0;
        self.duplicates_dropped = 0;
        self.closed_files.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests;
