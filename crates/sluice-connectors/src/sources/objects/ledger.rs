//! The objects ledger: every object version the source has found, and how
//! far it got, in SQLite in the data directory
//! (`sources/<name>.objects.sqlite3`). It is the source's work queue and its
//! processed record at once.
//!
//! * An object version (`key`, `version`: ETag, or size and mtime) is one
//!   row; finding it again (a second notification, the next sweep) changes
//!   nothing. A new version of a key is a new row: new data.
//! * `pending` → `reading` (claimed, with attempts counted and a visibility
//!   deadline) → `done` once its last batch is durable in the queue, or
//!   `failed` (unreadable, or out of attempts). A claim past its deadline is
//!   handed out again; at start-up every claim of a killed predecessor is.
//! * `sluice replay` puts `done` rows of a time window back to `pending`
//!   with a replay id ([`Ledger::request_replay`]); their claims carry it,
//!   and the source keys their batches as that replay's.
//! * Each row keeps the batch size (`max_batch_bytes`) in force when the
//!   version was found, and every read of it is cut with that size: a read
//!   again after a crash cuts the batches, and so the keys, the first read
//!   cut, so the sinks' commit records skip exactly what they hold. Rows
//!   from before sizes were kept have none; they were cut with the size the
//!   config gave, or the old default ([`super::config::BATCH_BYTES_BEFORE_LEDGER`]).
//! * Writes are `synchronous=FULL` in WAL mode: a row the source reported
//!   found survives a crash, so acknowledging a notification after `found`
//!   loses nothing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// One version of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub key: String,
    pub version: String,
    pub size: u64,
}

/// How an object version was first found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    Sweep,
    Notification,
}

impl FoundBy {
    fn as_str(self) -> &'static str {
        match self {
            FoundBy::Sweep => "sweep",
            FoundBy::Notification => "notification",
        }
    }
}

/// An object version taken for reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub object: ObjectRef,
    /// 1 on the first claim.
    pub attempts: u32,
    /// The replay that asked for this read, if one did.
    pub replay: Option<String>,
    /// The batch size the version is cut with (`None`: found before the
    /// ledger kept sizes).
    pub batch_bytes: Option<usize>,
}

/// A ledger row, as `sluice objects status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRecord {
    pub key: String,
    pub version: String,
    pub size: u64,
    pub state: String,
    pub attempts: u32,
    pub found_by: String,
    pub found_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
}

pub struct Ledger {
    conn: Connection,
}

fn err(e: rusqlite::Error) -> String {
    format!("objects ledger: {e}")
}

impl Ledger {
    /// Where source `name` keeps its ledger under a pipeline's source state folder.
    pub fn path(state_dir: &Path, name: &str) -> PathBuf {
        state_dir.join(format!("{name}.objects.sqlite3"))
    }

    pub fn open(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                key TEXT NOT NULL, version TEXT NOT NULL, size INTEGER NOT NULL,
                state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                visible_at INTEGER NOT NULL, found_by TEXT NOT NULL, found_at INTEGER NOT NULL,
                finished_at INTEGER, error TEXT,
                PRIMARY KEY (key, version));
             CREATE INDEX IF NOT EXISTS objects_work ON objects (state, visible_at);",
        )
        .map_err(err)?;
        // Added after the first release.
        for (column, kind) in [("replay", "TEXT"), ("batch_bytes", "INTEGER")] {
            let present: i64 = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('objects') WHERE name = ?1",
                    [column],
                    |r| r.get(0),
                )
                .map_err(err)?;
            if present == 0 {
                conn.execute_batch(&format!("ALTER TABLE objects ADD COLUMN {column} {kind}"))
                    .map_err(err)?;
            }
        }
        Ok(Ledger { conn })
    }

    /// Makes every claim visible at once (the claims of a killed predecessor).
    pub fn release_claims(&self) -> Result<u64, String> {
        let n = self
            .conn
            .execute("UPDATE objects SET visible_at = 0 WHERE state = 'reading'", [])
            .map_err(err)?;
        Ok(n as u64)
    }

    /// Records object versions found, to be cut into batches of
    /// `batch_bytes`; returns how many were new.
    pub fn found(
        &mut self,
        objects: &[ObjectRef],
        by: FoundBy,
        now_ms: i64,
        batch_bytes: usize,
    ) -> Result<usize, String> {
        let tx = self.conn.transaction().map_err(err)?;
        let mut new = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO objects (key, version, size, state, visible_at, found_by, found_at, batch_bytes)
                     VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for o in objects {
                new += insert
                    .execute(params![
                        o.key,
                        o.version,
                        o.size as i64,
                        by.as_str(),
                        now_ms,
                        batch_bytes as i64
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(new)
    }

    /// Takes up to `n` visible pending or expired objects, oldest found first.
    pub fn claim(&mut self, n: usize, now_ms: i64, visibility_ms: i64) -> Result<Vec<Claim>, String> {
        let tx = self.conn.transaction().map_err(err)?;
        let claims = {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE objects SET state = 'reading', attempts = attempts + 1, visible_at = ?1
                     WHERE rowid IN (SELECT rowid FROM objects
                                     WHERE state IN ('pending', 'reading') AND visible_at <= ?2
                                     ORDER BY found_at, key LIMIT ?3)
                     RETURNING key, version, size, attempts, replay, batch_bytes",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![now_ms + visibility_ms, now_ms, n as i64], |r| {
                    Ok(Claim {
                        object: ObjectRef {
                            key: r.get(0)?,
                            version: r.get(1)?,
                            size: r.get::<_, i64>(2)? as u64,
                        },
                        attempts: r.get(3)?,
                        replay: r.get(4)?,
                        batch_bytes: r.get::<_, Option<i64>>(5)?.map(|b| b as usize),
                    })
                })
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)?
        };
        tx.commit().map_err(err)?;
        let mut claims = claims;
        claims.sort_by(|a, b| a.object.key.cmp(&b.object.key));
        Ok(claims)
    }

    /// Every batch of the object is durable in the queue.
    pub fn finish(&self, object: &ObjectRef, now_ms: i64) -> Result<(), String> {
        self.set_final(object, "done", None, now_ms)
    }

    /// The object cannot be read (or ran out of attempts); `error` says why.
    pub fn fail(&self, object: &ObjectRef, error: &str, now_ms: i64) -> Result<(), String> {
        self.set_final(object, "failed", Some(error), now_ms)
    }

    fn set_final(&self, object: &ObjectRef, state: &str, error: Option<&str>, now_ms: i64) -> Result<(), String> {
        self.conn
            .execute(
                "UPDATE objects SET state = ?3, error = ?4, finished_at = ?5 WHERE key = ?1 AND version = ?2",
                params![object.key, object.version, state, error, now_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    /// A read failed for a reason that may pass: try again at `at_ms`.
    pub fn retry_at(&self, object: &ObjectRef, error: &str, at_ms: i64) -> Result<(), String> {
        self.conn
            .execute(
                "UPDATE objects SET visible_at = ?3, error = ?4 WHERE key = ?1 AND version = ?2",
                params![object.key, object.version, at_ms, error],
            )
            .map_err(err)?;
        Ok(())
    }

    /// Puts a claimed object back without spending the attempt its claim
    /// took (its store could not be reached): visible again at `at_ms`.
    pub fn give_back(&self, object: &ObjectRef, error: &str, at_ms: i64) -> Result<(), String> {
        self.conn
            .execute(
                "UPDATE objects SET attempts = max(attempts - 1, 0), visible_at = ?3, error = ?4
                 WHERE key = ?1 AND version = ?2",
                params![object.key, object.version, at_ms, error],
            )
            .map_err(err)?;
        Ok(())
    }

    /// Puts failed objects (all, or those with `key`) back to pending with
    /// fresh attempts; returns how many.
    pub fn redrive(&self, key: Option<&str>) -> Result<u64, String> {
        let n = self
            .conn
            .execute(
                "UPDATE objects SET state = 'pending', attempts = 0, visible_at = 0, finished_at = NULL
                 WHERE state = 'failed' AND (?1 IS NULL OR key = ?1)",
                params![key],
            )
            .map_err(err)?;
        Ok(n as u64)
    }

    /// Puts every object version read completely between `since_ms` and
    /// `until_ms` back to pending, to be read under `replay_id`'s keys;
    /// returns how many.
    pub fn request_replay(&self, since_ms: i64, until_ms: i64, replay_id: &str) -> Result<u64, String> {
        let n = self
            .conn
            .execute(
                "UPDATE objects SET state = 'pending', attempts = 0, visible_at = 0, finished_at = NULL,
                        error = NULL, replay = ?3
                 WHERE state = 'done' AND finished_at BETWEEN ?1 AND ?2",
                params![since_ms, until_ms, replay_id],
            )
            .map_err(err)?;
        Ok(n as u64)
    }

    /// Object versions the replay `replay_id` asked for that are not read again yet.
    pub fn replay_left(&self, replay_id: &str) -> Result<u64, String> {
        self.conn
            .query_row(
                "SELECT count(*) FROM objects WHERE replay = ?1 AND state IN ('pending', 'reading')",
                [replay_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(err)
    }

    /// Objects per state: `pending` (not yet read, or to be read again),
    /// `reading`, `done`, `failed`.
    pub fn counts(&self) -> Result<BTreeMap<String, u64>, String> {
        let mut counts: BTreeMap<String, u64> = ["pending", "reading", "done", "failed"]
            .into_iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        let mut stmt = self
            .conn
            .prepare("SELECT state, count(*) FROM objects GROUP BY state")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(err)?;
        for row in rows {
            let (state, n) = row.map_err(err)?;
            counts.insert(state, n as u64);
        }
        Ok(counts)
    }

    /// Whether any object is still to be read (an index lookup, not a count).
    pub fn has_work(&self) -> Result<bool, String> {
        self.conn
            .query_row(
                "SELECT 1 FROM objects WHERE state IN ('pending', 'reading') LIMIT 1",
                [],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(err)
    }

    /// Rows in `state` (or all), newest found first.
    pub fn list(&self, state: Option<&str>, limit: usize) -> Result<Vec<ObjectRecord>, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT key, version, size, state, attempts, found_by, found_at, finished_at, error FROM objects
                 WHERE ?1 IS NULL OR state = ?1 ORDER BY found_at DESC, key LIMIT ?2",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![state, limit.min(i64::MAX as usize) as i64], |r| {
                Ok(ObjectRecord {
                    key: r.get(0)?,
                    version: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    state: r.get(3)?,
                    attempts: r.get(4)?,
                    found_by: r.get(5)?,
                    found_at_ms: r.get(6)?,
                    finished_at_ms: r.get(7)?,
                    error: r.get(8)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch size objects are found with in these tests.
    const SIZE: usize = 4096;

    fn obj(key: &str, version: &str) -> ObjectRef {
        ObjectRef {
            key: key.into(),
            version: version.into(),
            size: 10,
        }
    }

    #[test]
    fn an_object_version_is_found_once_and_a_new_version_is_new_work() {
        let dir = sluice_testkit::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("s/x.objects.sqlite3")).unwrap();
        assert_eq!(
            l.found(&[obj("a", "1"), obj("b", "1")], FoundBy::Notification, 5, SIZE)
                .unwrap(),
            2
        );
        assert_eq!(
            l.found(&[obj("a", "1"), obj("b", "1")], FoundBy::Sweep, 6, SIZE)
                .unwrap(),
            0
        );
        let claims = l.claim(10, 100, 1000).unwrap();
        assert_eq!(claims.len(), 2);
        assert!(claims.iter().all(|c| c.attempts == 1));
        l.finish(&obj("a", "1"), 200).unwrap();
        assert_eq!(
            l.found(&[obj("a", "1")], FoundBy::Sweep, 300, SIZE).unwrap(),
            0,
            "done stays done"
        );
        assert_eq!(
            l.found(&[obj("a", "2")], FoundBy::Sweep, 300, SIZE).unwrap(),
            1,
            "a changed object is new"
        );
        assert_eq!(
            l.claim(10, 400, 1000).unwrap(),
            vec![Claim {
                object: obj("a", "2"),
                attempts: 1,
                replay: None,
                batch_bytes: Some(SIZE),
            }]
        );
        let counts = l.counts().unwrap();
        assert_eq!((counts["done"], counts["reading"], counts["pending"]), (1, 2, 0));
    }

    #[test]
    fn claims_expire_are_released_at_start_and_failed_objects_can_be_redriven() {
        let dir = sluice_testkit::tempdir().unwrap();
        let path = dir.path().join("x.objects.sqlite3");
        let mut l = Ledger::open(&path).unwrap();
        l.found(&[obj("a", "1")], FoundBy::Sweep, 0, SIZE).unwrap();
        assert_eq!(l.claim(1, 0, 1000).unwrap().len(), 1);
        assert!(l.claim(1, 999, 1000).unwrap().is_empty(), "claimed until the deadline");
        assert_eq!(
            l.claim(1, 1000, 1000).unwrap()[0].attempts,
            2,
            "handed out again after it"
        );
        drop(l);
        let mut l = Ledger::open(&path).unwrap();
        assert_eq!(l.release_claims().unwrap(), 1);
        let again = l.claim(1, 1001, 1000).unwrap();
        assert_eq!(again[0].attempts, 3, "a killed predecessor's claim is visible at once");
        l.fail(&obj("a", "1"), "bad gzip", 1002).unwrap();
        assert!(!l.has_work().unwrap());
        assert_eq!(l.counts().unwrap()["failed"], 1);
        let failed = l.list(Some("failed"), 10).unwrap();
        assert_eq!(failed[0].error.as_deref(), Some("bad gzip"));
        assert_eq!(l.redrive(Some("other")).unwrap(), 0);
        assert_eq!(l.redrive(None).unwrap(), 1);
        assert_eq!(l.claim(1, 1003, 1000).unwrap()[0].attempts, 1);
        l.give_back(&obj("a", "1"), "connection refused", 1010).unwrap();
        assert!(l.claim(1, 1009, 1000).unwrap().is_empty(), "given back until 1010");
        assert_eq!(
            l.claim(1, 1010, 1000).unwrap()[0].attempts,
            1,
            "a claim given back spent no attempt"
        );
    }

    #[test]
    fn a_replay_puts_done_objects_of_its_window_back_under_its_id() {
        let dir = sluice_testkit::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("x.objects.sqlite3")).unwrap();
        l.found(&[obj("a", "1"), obj("b", "1"), obj("c", "1")], FoundBy::Sweep, 0, SIZE)
            .unwrap();
        l.claim(3, 0, 1000).unwrap();
        l.finish(&obj("a", "1"), 100).unwrap();
        l.finish(&obj("b", "1"), 200).unwrap();
        assert_eq!(
            l.request_replay(150, 250, "r1").unwrap(),
            1,
            "only b is done in the window"
        );
        let claims = l.claim(3, 300, 1000).unwrap();
        let b = claims.iter().find(|c| c.object.key == "b").unwrap();
        assert_eq!((b.attempts, b.replay.as_deref()), (1, Some("r1")));
        assert_eq!(l.replay_left("r1").unwrap(), 1);
        l.finish(&obj("b", "1"), 400).unwrap();
        assert_eq!(l.replay_left("r1").unwrap(), 0);
        let c = claims.iter().find(|c| c.object.key == "c");
        assert!(
            c.is_none_or(|c| c.replay.is_none()),
            "a claim no replay asked for has none"
        );
    }

    /// A ledger written before sizes were kept gains the column; its rows
    /// have no size, rows found from then on the one they were found with,
    /// kept when the size in force changes.
    #[test]
    fn each_version_keeps_the_batch_size_it_was_found_with() {
        let dir = sluice_testkit::tempdir().unwrap();
        let path = dir.path().join("x.objects.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE objects (
                    key TEXT NOT NULL, version TEXT NOT NULL, size INTEGER NOT NULL,
                    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                    visible_at INTEGER NOT NULL, found_by TEXT NOT NULL, found_at INTEGER NOT NULL,
                    finished_at INTEGER, error TEXT, replay TEXT,
                    PRIMARY KEY (key, version));
                 INSERT INTO objects VALUES ('old', '1', 10, 'reading', 1, 0, 'sweep', 0, NULL, NULL, NULL);",
            )
            .unwrap();
        let mut l = Ledger::open(&path).unwrap();
        l.found(&[obj("new", "1")], FoundBy::Sweep, 1, 1024).unwrap();
        l.found(&[obj("new", "1")], FoundBy::Sweep, 2, 2048).unwrap();
        let sizes: Vec<(String, Option<usize>)> = l
            .claim(10, 10, 1000)
            .unwrap()
            .into_iter()
            .map(|c| (c.object.key, c.batch_bytes))
            .collect();
        assert_eq!(sizes, vec![("new".into(), Some(1024)), ("old".into(), None)]);
        drop(l);
        let mut l = Ledger::open(&path).unwrap();
        l.release_claims().unwrap();
        assert_eq!(
            l.claim(10, 20, 1000).unwrap()[0].batch_bytes,
            Some(1024),
            "kept across runs"
        );
    }
}
