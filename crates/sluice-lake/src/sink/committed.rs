//! Which batch keys the table has committed (its `txn` actions), asked for
//! every batch that may have been committed before (the objects source
//! asks for all of its batches). The Delta kernel answers by replaying the
//! log, and the log grows by a commit per flush, so asking the live table
//! cost more with every commit of a run: a tenth of the objects source's
//! wall time at 200 000 lines.
//!
//! Here the table as it was when first asked is kept, and every commit
//! after it is read once, as it comes, for its `txn` actions. When the
//! kept table's whole log is still there as commit files (no more than
//! [`MAX_LOG_READ`]), those are read once too and the kernel is never
//! asked; otherwise a key not among the later commits' asks the kernel
//! against the kept table, whose log does not grow. Commits by other
//! replicas are read like our own: the next commit file is read until
//! there is none.

use std::collections::HashSet;

use deltalake::{DeltaResult, DeltaTable, table::state::DeltaTableState};
use serde::Deserialize;

/// Keys read from later commits before the kept table is taken afresh.
const MAX_LATER_KEYS: usize = 100_000;

/// The most commit files read to know the kept table's keys without the kernel.
const MAX_LOG_READ: u64 = 1_000;

#[derive(Default)]
pub struct CommittedKeys {
    /// The table when first asked (or when the key set was last cleared).
    kept: Option<DeltaTableState>,
    /// Whether `keys` holds every key of the kept table too (its whole log
    /// was read), so the kernel need not be asked.
    complete: bool,
    /// How many of `keys` came from the kept table's own log.
    kept_keys: usize,
    /// The last commit read.
    through: u64,
    /// The `txn` app ids of the commits read.
    keys: HashSet<String>,
}

impl CommittedKeys {
    /// Whether a commit of `table` carries a `txn` action for `app_id`.
    pub async fn contains(&mut self, table: &mut DeltaTable, app_id: &str) -> DeltaResult<bool> {
        if self.kept.is_none() || self.keys.len() > self.kept_keys + MAX_LATER_KEYS {
            self.keep(table).await?;
        }
        let log_store = table.log_store();
        while let Some(commit) = log_store.read_commit_entry(self.through + 1).await? {
            self.keys.extend(txn_app_ids(&commit));
            self.through += 1;
        }
        if self.keys.contains(app_id) {
            return Ok(true);
        }
        if self.complete {
            return Ok(false);
        }
        let kept = self.kept.as_ref().expect("kept above");
        Ok(kept.transaction_version(log_store.as_ref(), app_id).await?.is_some())
    }

    /// Keeps the table as it is now, with its keys when its log is short
    /// and whole.
    async fn keep(&mut self, table: &mut DeltaTable) -> DeltaResult<()> {
        table.update_incremental(None).await?;
        let kept = table.snapshot()?.clone();
        self.through = kept.version();
        self.keys.clear();
        self.kept_keys = 0;
        self.complete = false;
        if self.through < MAX_LOG_READ {
            let log_store = table.log_store();
            let mut keys = HashSet::new();
            let mut whole = true;
            for version in 0..=self.through {
                match log_store.read_commit_entry(version).await? {
                    Some(commit) => keys.extend(txn_app_ids(&commit)),
                    None => {
                        whole = false;
                        break;
                    }
                }
            }
            if whole {
                self.kept_keys = keys.len();
                self.keys = keys;
                self.complete = true;
            }
        }
        self.kept = Some(kept);
        Ok(())
    }
}

#[derive(Deserialize)]
struct Action {
    txn: Option<Txn>,
}

#[derive(Deserialize)]
struct Txn {
    #[serde(rename = "appId")]
    app_id: String,
}

/// The app ids of a commit file's `txn` actions (one action per line).
fn txn_app_ids(commit: &[u8]) -> impl Iterator<Item = String> + '_ {
    commit
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Action>(line).ok()?.txn)
        .map(|txn| txn.app_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_come_from_txn_actions_only() {
        let commit = br#"{"commitInfo":{"timestamp":1,"operation":"WRITE"}}
{"txn":{"appId":"sluice/a#0","version":0,"lastUpdated":1}}
{"add":{"path":"p=1/x.parquet","size":1,"dataChange":true,"stats":"{\"txn\":{\"appId\":\"no\"}}"}}
{"txn":{"appId":"sluice/b#1","version":0}}
"#;
        let ids: Vec<String> = txn_app_ids(commit).collect();
        assert_eq!(ids, vec!["sluice/a#0", "sluice/b#1"]);
    }
}
