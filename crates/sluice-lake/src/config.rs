//! Configuration of the `lake` sink, as written in a pipeline file.

use deltalake::{
    arrow::datatypes::{DataType, Fields, Schema},
    parquet::{
        basic::{Compression, ZstdLevel},
        file::properties::{EnabledStatistics, WriterProperties},
        schema::types::ColumnPath,
    },
};
use serde::Deserialize;

use crate::{
    compaction::{CompactionOptions, Scope},
    partition::PartitionKey,
};

/// `[sinks.NAME] type = "lake"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LakeSinkConfig {
    /// Table location: a path (relative to the pipeline file), a `file://`
    /// URL or `s3://bucket/prefix` (S3 or an S3-compatible store with
    /// conditional puts: AWS, MinIO, R2; settings from the `AWS_*`
    /// environment variables and `storage_options`). Required unless
    /// `table_template` is given.
    #[serde(default)]
    pub uri: String,
    /// Instead of `uri`: one table per schema family and MODEL of
    /// self-describing or Avro events, e.g. `"lake/{vendor}/{name}_{model}"`
    /// (`{vendor}`, `{name}` and `{model}` required, `{format}` allowed).
    pub table_template: Option<String>,
    /// Options for an `s3://` table over the `AWS_*` environment variables:
    /// object_store's S3 keys (`endpoint`, `region`, `access_key_id`,
    /// `secret_access_key`, `allow_http`, ...); an unknown key is an error.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub storage_options: sluice_core::StorageOptions,
    /// Partition columns: `"dt"` and `"hour"` from the event time (UTC),
    /// `"bucket(N, /pointer)"` hashes a field into N buckets. Default
    /// `["dt", "hour"]`.
    #[serde(default = "default_partition_by")]
    pub partition_by: Vec<PartitionKey>,
    /// Longest time an accepted event waits before it is committed.
    #[serde(default = "default_flush_interval_secs")]
    pub flush_interval_secs: u64,
    /// Commit once this many encoded bytes are buffered; also the size at
    /// which a data file is closed and a new one started.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// An event id written within this many seconds is dropped as a
    /// producer duplicate (0: only within one flush).
    #[serde(default = "default_dedupe_window_secs")]
    pub dedupe_window_secs: u64,
    /// Most event ids the dedupe window holds (16-byte entries in a table
    /// at most half full: 36 MB at the default); past it, the oldest are
    /// forgotten early.
    #[serde(default = "default_dedupe_max_ids")]
    pub dedupe_max_ids: usize,
    /// Codec of the Parquet files the sink writes (compaction rewrites them
    /// with `compaction.compression`).
    #[serde(default = "default_ingest_compression")]
    pub compression: ParquetCompression,
    /// Scheduled compaction: each partition that received files within the
    /// look-back is rewritten into files of the target size, duplicates
    /// removed, in one commit.
    #[serde(default)]
    pub compaction: CompactionConfig,
}

/// A Parquet codec: `"snappy"`, `"zstd"` (level 3), `"lz4"` (LZ4_RAW) or `"none"`.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    Snappy,
    Zstd,
    Lz4,
    None,
}

impl ParquetCompression {
    /// Writer settings of a file compaction (or a keyed snapshot) writes
    /// with this codec: dictionaries where they help, but not for the event
    /// id column (a path through structs; empty: none), whose values are
    /// unique, so one would only cost time and memory.
    pub fn writer_properties(self, id_column: &[String]) -> WriterProperties {
        let builder = WriterProperties::builder().set_compression(self.codec());
        if id_column.is_empty() {
            return builder.build();
        }
        builder
            .set_column_dictionary_enabled(ColumnPath::new(id_column.to_vec()), false)
            .build()
    }

    /// Writer settings of the files the lake sink writes for a table of
    /// `columns` whose event id is `id_column`. These files live until
    /// compaction rewrites them with [`ParquetCompression::writer_properties`],
    /// so they skip what costs more than it serves that long:
    /// * no dictionaries: a sink keeps one file open per partition it
    ///   receives events for (dozens with late events), and every column
    ///   writer with a dictionary starts with a 4 096-entry hash table;
    /// * min/max statistics only for the event id and timestamp columns,
    ///   which lookups and time ranges within a partition skip files by;
    ///   the others' (two string compares per value) wait for compaction.
    pub fn ingest_writer_properties(self, id_column: &[String], columns: &Schema) -> WriterProperties {
        let mut builder = WriterProperties::builder()
            .set_compression(self.codec())
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None);
        let mut kept = Vec::new();
        timestamp_columns(columns.fields(), &mut Vec::new(), &mut kept);
        if !id_column.is_empty() {
            kept.push(id_column.to_vec());
        }
        for path in kept {
            builder = builder.set_column_statistics_enabled(ColumnPath::new(path), EnabledStatistics::Page);
        }
        builder.build()
    }

    fn codec(self) -> Compression {
        match self {
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")),
            ParquetCompression::Lz4 => Compression::LZ4_RAW,
            ParquetCompression::None => Compression::UNCOMPRESSED,
        }
    }
}

/// Appends to `found` the paths of the timestamp columns among `fields`,
/// within structs (not lists) below `prefix`.
fn timestamp_columns(fields: &Fields, prefix: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
    for field in fields {
        prefix.push(field.name().clone());
        match field.data_type() {
            DataType::Timestamp(..) => found.push(prefix.clone()),
            DataType::Struct(children) => timestamp_columns(children, prefix, found),
            _ => {}
        }
        prefix.pop();
    }
}

/// `[sinks.NAME.compaction]`: scheduled compaction inside `sluice run`; the
/// look-back and file size also apply to `sluice compact`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactionConfig {
    /// Compact on a schedule inside `sluice run`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often; with a JetStream queue, replicas take turns through a
    /// lease in JetStream KV (`SLUICE_<NAME>_LEASES`), so one compacts at a
    /// time.
    #[serde(default = "default_compaction_interval_secs")]
    pub interval_secs: u64,
    /// Partitions that received files within this many hours are compacted.
    #[serde(default = "default_lookback_hours")]
    pub lookback_hours: u64,
    /// Size compacted files are cut at.
    #[serde(default = "default_max_file_bytes")]
    pub target_file_bytes: u64,
    /// Codec of compacted files.
    #[serde(default = "default_compacted_compression")]
    pub compression: ParquetCompression,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            interval_secs: default_compaction_interval_secs(),
            lookback_hours: default_lookback_hours(),
            target_file_bytes: default_max_file_bytes(),
            compression: default_compacted_compression(),
        }
    }
}

impl CompactionConfig {
    /// Options for a compaction of `scope` with this file size.
    pub fn options(&self, scope: Scope, id_column: Vec<String>) -> CompactionOptions {
        CompactionOptions {
            scope,
            target_file_bytes: self.target_file_bytes,
            compression: self.compression,
            id_column,
            run_id: None,
        }
    }
}

/// Ingest files live until compaction replaces them: cheap to write and
/// to hold open by the hundred (a zstd column writer holds ~160 KB of codec
/// state).
fn default_ingest_compression() -> ParquetCompression {
    ParquetCompression::Snappy
}

/// Compacted files stay: small beats cheap.
fn default_compacted_compression() -> ParquetCompression {
    ParquetCompression::Zstd
}

fn default_true() -> bool {
    true
}

fn default_compaction_interval_secs() -> u64 {
    3600
}

fn default_lookback_hours() -> u64 {
    12
}

fn default_dedupe_window_secs() -> u64 {
    600
}

fn default_dedupe_max_ids() -> usize {
    1_000_000
}

fn default_partition_by() -> Vec<PartitionKey> {
    vec![PartitionKey::Dt, PartitionKey::Hour]
}

fn default_flush_interval_secs() -> u64 {
    5
}

fn default_max_file_bytes() -> u64 {
    128 * 1024 * 1024
}

/// The placeholders of `table_template`; the first three are required.
pub const TEMPLATE_FIELDS: [&str; 4] = ["{vendor}", "{name}", "{model}", "{format}"];

fn check_template(template: &str) -> Result<(), String> {
    let missing: Vec<&str> = TEMPLATE_FIELDS[..3]
        .iter()
        .copied()
        .filter(|f| !template.contains(f))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "table_template: {template:?} lacks {}; each schema family and MODEL needs a table of its own (allowed placeholders: {})",
            missing.join(", "),
            TEMPLATE_FIELDS.join(" ")
        ));
    }
    let mut rest = template.to_string();
    for field in TEMPLATE_FIELDS {
        rest = rest.replace(field, "");
    }
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "table_template: {template:?} has an unknown placeholder; allowed: {}",
            TEMPLATE_FIELDS.join(" ")
        ));
    }
    Ok(())
}

impl LakeSinkConfig {
    /// `table_template` filled in for one schema family and MODEL.
    pub fn table_uri(template: &str, vendor: &str, name: &str, format: &str, model: u32) -> String {
        template
            .replace("{vendor}", vendor)
            .replace("{name}", name)
            .replace("{format}", format)
            .replace("{model}", &model.to_string())
    }

    /// Pure checks: messages name the key and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        match (self.uri.trim().is_empty(), &self.table_template) {
            (true, None) => {
                return Err("uri: must not be empty (or give table_template to route self-describing events)".into());
            }
            (false, Some(_)) => {
                return Err("table_template: give either uri (one table) or table_template (a table per schema MODEL), not both".into());
            }
            (true, Some(template)) => check_template(template)?,
            (false, None) => {}
        }
        if self.flush_interval_secs == 0 {
            return Err("flush_interval_secs: must be at least 1".into());
        }
        if self.max_file_bytes < 1024 * 1024 {
            return Err("max_file_bytes: must be at least 1048576 (1 MiB)".into());
        }
        let mut seen = Vec::new();
        for p in &self.partition_by {
            if seen.contains(&p.column()) {
                return Err(format!("partition_by: \"{p}\" is listed twice"));
            }
            seen.push(p.column());
        }
        if self.dedupe_window_secs > 0 && self.dedupe_max_ids == 0 {
            return Err("dedupe_max_ids: must be at least 1 when dedupe_window_secs is set".into());
        }
        let c = &self.compaction;
        if c.interval_secs == 0 {
            return Err(
                "compaction.interval_secs: must be at least 1 (use compaction.enabled = false to turn it off)".into(),
            );
        }
        if c.lookback_hours == 0 {
            return Err("compaction.lookback_hours: must be at least 1".into());
        }
        if c.target_file_bytes < 1024 * 1024 {
            return Err("compaction.target_file_bytes: must be at least 1048576 (1 MiB)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    #[test]
    fn ingest_files_keep_statistics_for_the_id_and_timestamps_in_structs_only() {
        let time = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let inner = Fields::from(vec![
            Field::new("at", time(), true),
            Field::new("name", DataType::Utf8, true),
        ]);
        let columns = Schema::new(vec![
            Field::new("ts", time(), true),
            Field::new("user_id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("meta", DataType::Struct(inner.clone()), true),
            Field::new(
                "items",
                DataType::List(Arc::new(Field::new("element", DataType::Struct(inner), true))),
                true,
            ),
        ]);
        let id = vec!["meta".to_string(), "name".to_string()];
        let properties = ParquetCompression::Snappy.ingest_writer_properties(&id, &columns);
        let kept = |path: &[&str]| {
            properties.statistics_enabled(&ColumnPath::new(path.iter().map(|p| p.to_string()).collect()))
                != EnabledStatistics::None
        };
        assert!(kept(&["ts"]) && kept(&["meta", "at"]) && kept(&["meta", "name"]));
        assert!(!kept(&["user_id"]) && !kept(&["n"]));
        assert!(
            !kept(&["items", "list", "element", "at"]),
            "timestamps in lists are not looked for"
        );
        let without_id = ParquetCompression::Snappy.ingest_writer_properties(&[], &columns);
        assert_eq!(
            without_id.statistics_enabled(&ColumnPath::new(vec!["meta".into(), "name".into()])),
            EnabledStatistics::None
        );
        assert!(!properties.dictionary_enabled(&ColumnPath::new(vec!["user_id".into()])));
    }
}
