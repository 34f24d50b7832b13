//! Replayed events replace the rows earlier reads left (`sluice replay`).
//!
//! The events of a replay batch ([`sluice_core::is_replay`]) are written as
//! usual, and their ids are held per partition. At the flush, every active
//! file of those partitions that holds one of the ids is read, its other
//! rows go into the window's files, and the commit removes it: the commit
//! that adds the replayed rows removes their earlier copies, atomically.
//!
//! * Only the partitions the replayed rows land in are searched: an earlier
//!   copy in another partition (a fix that moved the event time) stays
//!   until compaction, which keeps the first copy.
//! * The commit is tried on the version the files were read from and only
//!   there: a concurrent commit (another replica, a compaction) fails it, the
//!   window's batches come again and the search is redone on the new files.
//! * Removals are `dataChange = true`: rows changed.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use arrow_array::{BooleanArray, cast::AsArray};
use arrow_schema::Schema;
use deltalake::{DeltaTable, ObjectStore};
use twox_hash::XxHash3_128;

use super::files::Files;
use crate::{
    compaction::{
        FileInfo, active_files,
        plan::PartitionValues,
        rewrite::{conform, id_strings, partition_scalars},
    },
    storage::read_data_file,
};

/// Ids of replayed events in the open window, by partition.
#[derive(Default)]
pub(super) struct Replacing {
    partitions: HashMap<PartitionValues, HashSet<u128>>,
}

/// What the search for earlier copies found and rewrote.
pub(super) struct Replaced {
    /// Files whose rows were rewritten without the replaced ids; the commit removes them.
    pub files: Vec<FileInfo>,
    /// Rows of those files that stay (written again into the window's files).
    pub rows_kept: u64,
    /// Earlier copies removed.
    pub rows_replaced: u64,
}

impl Replacing {
    /// Holds `id` for `partition`; `false` when the window already replaces it
    /// (a duplicate within the replay).
    pub fn insert(&mut self, partition: PartitionValues, id: &str) -> bool {
        self.partitions
            .entry(partition)
            .or_default()
            .insert(XxHash3_128::oneshot(id.as_bytes()))
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    pub fn clear(&mut self) {
        self.partitions.clear();
    }

    /// Finds the active files of the replaced partitions that hold a replaced
    /// id and writes their other rows through `files` (with `data_schema`,
    /// the table's data columns).
    pub async fn rewrite(
        &self,
        table: &DeltaTable,
        id_column: &[String],
        data_schema: &Arc<Schema>,
        files: &Files,
    ) -> Result<Replaced, String> {
        let store: Arc<dyn ObjectStore> = table.object_store();
        let mut replaced = Replaced {
            files: Vec::new(),
            rows_kept: 0,
            rows_replaced: 0,
        };
        for file in active_files(table).map_err(|e| e.to_string())? {
            let Some(ids) = self.partitions.get(&file.partition) else {
                continue;
            };
            let in_file = |e: &dyn std::fmt::Display| format!("{}: {e}", file.path);
            let mut kept = Vec::new();
            let mut removed = 0u64;
            let batches = read_data_file(store.as_ref(), &file.path).await?;
            for batch in batches {
                let batch = batch.map_err(|e| in_file(&e))?;
                let keep = not_replaced(&batch, id_column, ids).map_err(|e| in_file(&e))?;
                removed += (batch.num_rows() - keep.true_count()) as u64;
                kept.push(arrow_select::filter::filter_record_batch(&batch, &keep).map_err(|e| in_file(&e))?);
            }
            if removed == 0 {
                continue;
            }
            let partition = partition_scalars(&file.partition);
            let mut rows = Vec::with_capacity(kept.len());
            for batch in kept.into_iter().filter(|b| b.num_rows() > 0) {
                replaced.rows_kept += batch.num_rows() as u64;
                rows.push((conform(batch, data_schema).map_err(|e| in_file(&e))?, partition.clone()));
            }
            files.write(rows).await.map_err(|e| in_file(&e))?;
            replaced.rows_replaced += removed;
            replaced.files.push(file);
        }
        Ok(replaced)
    }
}

/// A mask keeping each row whose id is not replaced (rows without an id stay).
fn not_replaced(
    batch: &arrow_array::RecordBatch,
    id_column: &[String],
    ids: &HashSet<u128>,
) -> Result<BooleanArray, String> {
    let column = id_strings(batch, id_column)?;
    Ok(column
        .as_string::<i32>()
        .iter()
        .map(|id| Some(id.is_none_or(|id| !ids.contains(&XxHash3_128::oneshot(id.as_bytes())))))
        .collect())
}
