//! Choosing what a compaction rewrites. Pure: it sees only the table's list
//! of active files, so it is cheap to re-run after a commit conflict.
//!
//! A partition is chosen when it holds at least one file that no compaction
//! wrote (new data since its last compaction) and, unless the scope is
//! `All`, one such file was added within the look-back. Every file of a
//! chosen partition is rewritten, so a compacted partition holds only
//! compaction output and is not chosen again until new data arrives.

use std::collections::BTreeMap;

/// Partition column names and values, in the table's partition-column order.
pub type PartitionValues = Vec<(String, Option<String>)>;

/// One active data file of the table, as the Delta log describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Path relative to the table root.
    pub path: String,
    pub partition: PartitionValues,
    pub size: u64,
    /// When the file was written (the `add` action's modification time).
    pub modification_time_ms: i64,
    /// Whether a compaction wrote it (tagged in its `add` action).
    pub compacted: bool,
}

/// Which partitions a compaction looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Partitions that received a file at or after this time (ms since epoch).
    Since { cutoff_ms: i64 },
    /// Every partition with files no compaction wrote.
    All,
}

impl Scope {
    /// Partitions that received files within the last `hours`.
    pub fn lookback_hours(hours: u64) -> Scope {
        Scope::Since {
            cutoff_ms: sluice_core::now_ms() - (hours as i64).saturating_mul(3_600_000),
        }
    }
}

/// The rewrite of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionJob {
    pub partition: PartitionValues,
    /// Every file of the partition in ingest order: compaction output first
    /// (it holds the oldest data), then the rest by the time they were
    /// written. Duplicates keep their first occurrence in this order.
    pub files: Vec<FileInfo>,
    pub bytes: u64,
}

impl PartitionJob {
    /// Most output files the rewrite may produce: ceil(bytes / target), at least one.
    pub fn max_output_files(&self, target_file_bytes: u64) -> u64 {
        self.bytes.div_ceil(target_file_bytes.max(1)).max(1)
    }

    /// `dt=2026-11-01/hour=03`.
    pub fn name(&self) -> String {
        partition_name(&self.partition)
    }
}

pub fn partition_name(values: &PartitionValues) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null")))
        .collect::<Vec<_>>()
        .join("/")
}

/// The partitions to rewrite, in partition order.
pub fn plan(files: &[FileInfo], scope: Scope) -> Vec<PartitionJob> {
    let mut partitions: BTreeMap<&PartitionValues, Vec<&FileInfo>> = BTreeMap::new();
    for file in files {
        partitions.entry(&file.partition).or_default().push(file);
    }
    partitions
        .into_iter()
        .filter(|(_, files)| {
            files.iter().any(|f| {
                !f.compacted
                    && match scope {
                        Scope::All => true,
                        Scope::Since { cutoff_ms } => f.modification_time_ms >= cutoff_ms,
                    }
            })
        })
        .map(|(partition, files)| {
            let mut files: Vec<FileInfo> = files.into_iter().cloned().collect();
            files.sort_by(|a, b| {
                (!a.compacted, a.modification_time_ms, &a.path).cmp(&(!b.compacted, b.modification_time_ms, &b.path))
            });
            PartitionJob {
                partition: partition.clone(),
                bytes: files.iter().map(|f| f.size).sum(),
                files,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, hour: &str, size: u64, time: i64, compacted: bool) -> FileInfo {
        FileInfo {
            path: path.into(),
            partition: vec![
                ("dt".into(), Some("2026-11-01".into())),
                ("hour".into(), Some(hour.into())),
            ],
            size,
            modification_time_ms: time,
            compacted,
        }
    }

    fn paths(job: &PartitionJob) -> Vec<&str> {
        job.files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn rewrites_partitions_with_new_files_in_ingest_order() {
        let files = [
            file("h1-new-b", "01", 10, 300, false),
            file("h1-old", "01", 100, 100, true),
            file("h1-new-a", "01", 10, 200, false),
            file("h2-done", "02", 100, 100, true),
        ];
        let jobs = plan(&files, Scope::All);
        assert_eq!(jobs.len(), 1, "the compacted partition is left alone: {jobs:?}");
        assert_eq!(jobs[0].name(), "dt=2026-11-01/hour=01");
        assert_eq!(paths(&jobs[0]), ["h1-old", "h1-new-a", "h1-new-b"]);
        assert_eq!(jobs[0].bytes, 120);
    }

    #[test]
    fn a_compacted_table_plans_nothing() {
        let files = [file("a", "01", 10, 1, true), file("b", "01", 10, 1, true)];
        assert!(plan(&files, Scope::All).is_empty());
        assert!(plan(&[], Scope::All).is_empty());
    }

    #[test]
    fn look_back_is_by_when_files_arrived_not_by_event_hour() {
        let files = [
            file("late-to-old-hour", "01", 10, 5_000, false),
            file("stale", "02", 10, 1_000, false),
            file("stale-done", "03", 10, 6_000, true),
        ];
        let recent = plan(&files, Scope::Since { cutoff_ms: 4_000 });
        assert_eq!(recent.len(), 1);
        assert_eq!(paths(&recent[0]), ["late-to-old-hour"]);
        let all = plan(&files, Scope::All);
        assert_eq!(all.len(), 2, "--all reaches files older than the look-back");
    }

    #[test]
    fn output_files_are_bounded_by_bytes_over_target() {
        let job = PartitionJob {
            partition: vec![],
            files: vec![],
            bytes: 250,
        };
        assert_eq!(job.max_output_files(100), 3);
        assert_eq!(job.max_output_files(250), 1);
        assert_eq!(job.max_output_files(1000), 1);
        let empty = PartitionJob { bytes: 0, ..job };
        assert_eq!(empty.max_output_files(100), 1);
    }

    #[test]
    fn partitions_are_told_apart_by_every_column() {
        let mut a = file("a", "01", 10, 1, false);
        a.partition.push(("bucket".into(), Some("03".into())));
        let mut b = file("b", "01", 10, 1, false);
        b.partition.push(("bucket".into(), Some("04".into())));
        let jobs = plan(&[a, b], Scope::All);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1].name(), "dt=2026-11-01/hour=01/bucket=04");
    }
}
