//! The lake: a Delta Lake table of zstd Parquet files, partitioned by event
//! date and hour, written by the `lake` sink.
//!
//! Invariants:
//! * Every commit that adds data also records, as Delta `txn` actions in the
//!   same atomic commit, the key of every queue batch whose events it holds
//!   (`appId = "sluice/<batch key>"`). A batch whose key is already in the log
//!   is never written again.
//! * Partition values come only from the parsed event time (`dt=YYYY-MM-DD`,
//!   `hour=HH`, UTC), never from raw strings, so no value can steer a path.
//! * Within the dedupe window, an event id is written at most once; across
//!   any span, compaction leaves each id once per partition.
//! * Maintenance (compaction, vacuum) never removes rows: compaction removes
//!   only files whose rows it rewrote, in the same commit (one per group of
//!   partitions).
//! * A table's columns only grow, and only for routed tables (schema
//!   families): a newer version adds nullable columns in the same commit as
//!   the first rows that have them; a column never changes type.

mod columns;
pub mod compaction;
pub mod config;
pub mod inspect;
pub mod keyed;
pub mod partition;
pub mod sink;
mod storage;
mod table;
pub mod vacuum;

pub use config::{CompactionConfig, LakeSinkConfig, ParquetCompression};
pub use inspect::{LastCommit, PartitionStats, TableSummary, distinct_strings, last_commit, summarize};
pub use sink::{
    LakeSink,
    routed::{Route, RouteError, RoutedLakeSink, Routes},
};
pub use storage::StoreLocation;
pub use table::{existing_schema, merge_columns, table_exists};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake table {uri}: {message}")]
    Table { uri: String, message: String },
    #[error(
        "lake table {uri} has columns {found}, but the schema gives {expected}; a table fed by `validate` keeps its columns: write to a new table, or route self-describing events with table_template (those tables gain the columns later versions add)"
    )]
    SchemaMismatch {
        uri: String,
        found: String,
        expected: String,
    },
}
