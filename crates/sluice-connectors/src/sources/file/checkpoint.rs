//! Which files the file source has read, in a small SQLite database in the
//! data directory (`sources/<name>.sqlite3`).
//!
//! A file is identified by path, size and modification time. It is marked
//! `reading` before its first batch is enqueued and `done` (with the time)
//! after its last; a file found `reading` at start-up was cut off by a
//! crash and is read again, its batches flagged so sinks skip chunks they
//! already committed. Its row keeps the batch size of its first read, and
//! every read of it cuts batches of that size, so the chunks keep their
//! keys when `max_batch_bytes` changed in between.
//!
//! `sluice replay` marks `done` files of a time window `replay` with a
//! replay id ([`FileCheckpoints::request_replay`]); the source reads them
//! again under keys of that replay (kept while `reading`, so a crash in the
//! middle of a replay reads it again with the same keys).

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    New,
    /// Cut off by a crash; `replay` when it was being replayed.
    Reading {
        replay: Option<String>,
    },
    /// Asked to be read again by the replay named.
    Replay(String),
    Done,
}

/// A file a replay asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayCandidate {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
}

pub struct FileCheckpoints {
    conn: Connection,
}

fn err(e: rusqlite::Error) -> String {
    e.to_string()
}

impl FileCheckpoints {
    pub fn open(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS files (
                path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                state TEXT NOT NULL, PRIMARY KEY (path, size, mtime_ns))",
        )
        .map_err(err)?;
        // Columns added after the first release: files read before have no
        // `done_at` (a replay window then goes by their modification time).
        for (column, kind) in [("done_at", "INTEGER"), ("replay", "TEXT"), ("batch_bytes", "INTEGER")] {
            let present: bool = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('files') WHERE name = ?1",
                    [column],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(err)?
                > 0;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE files ADD COLUMN {column} {kind}"))
                    .map_err(err)?;
            }
        }
        Ok(FileCheckpoints { conn })
    }

    pub fn state(&self, path: &str, size: u64, mtime_ns: i64) -> Result<FileState, String> {
        let row: Option<(String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT state, replay FROM files WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3",
                params![path, size as i64, mtime_ns],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        Ok(match row {
            None => FileState::New,
            Some((state, _)) if state == "done" => FileState::Done,
            Some((state, Some(replay))) if state == "replay" => FileState::Replay(replay),
            Some((_, replay)) => FileState::Reading { replay },
        })
    }

    /// The file's first batch is about to be enqueued (a replay keeps its
    /// id). Returns the batch size to cut it with: the one it was first
    /// read with, or `batch_bytes` on its first read (and for a row from
    /// before sizes were kept).
    pub fn start(&self, path: &str, size: u64, mtime_ns: i64, batch_bytes: usize) -> Result<usize, String> {
        self.conn
            .query_row(
                "INSERT INTO files (path, size, mtime_ns, state, batch_bytes) VALUES (?1, ?2, ?3, 'reading', ?4)
                 ON CONFLICT (path, size, mtime_ns)
                 DO UPDATE SET state = 'reading', batch_bytes = coalesce(batch_bytes, excluded.batch_bytes)
                 RETURNING batch_bytes",
                params![path, size as i64, mtime_ns, batch_bytes as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|b| b as usize)
            .map_err(err)
    }

    /// The file's last batch is durable in the queue, at `now_ms`.
    pub fn finish(&self, path: &str, size: u64, mtime_ns: i64, now_ms: i64) -> Result<(), String> {
        self.conn
            .execute(
                "UPDATE files SET state = 'done', done_at = ?4, replay = NULL
                 WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3",
                params![path, size as i64, mtime_ns, now_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    /// Files read completely between `since_ms` and `until_ms` (by when
    /// they were done; files done before that was recorded, by their
    /// modification time), in path order.
    pub fn done_between(&self, since_ms: i64, until_ms: i64) -> Result<Vec<ReplayCandidate>, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, size, mtime_ns FROM files
                 WHERE state = 'done' AND coalesce(done_at, mtime_ns / 1000000) BETWEEN ?1 AND ?2
                 ORDER BY path",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![since_ms, until_ms], |r| {
                Ok(ReplayCandidate {
                    path: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    mtime_ns: r.get(2)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Files the replay `replay_id` asked for that are not read again yet.
    pub fn replay_left(&self, replay_id: &str) -> Result<u64, String> {
        self.conn
            .query_row("SELECT count(*) FROM files WHERE replay = ?1", [replay_id], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(err)
    }

    /// Asks for `file` (a done file) to be read again under `replay_id`;
    /// `false` when it is no longer done (being read, or already asked).
    pub fn request_replay(&self, file: &ReplayCandidate, replay_id: &str) -> Result<bool, String> {
        let n = self
            .conn
            .execute(
                "UPDATE files SET state = 'replay', replay = ?4
                 WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3 AND state = 'done'",
                params![file.path, file.size as i64, file.mtime_ns, replay_id],
            )
            .map_err(err)?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_persist_and_a_changed_file_is_new() {
        let dir = sluice_testkit::tempdir().unwrap();
        let db = dir.path().join("s/f.sqlite3");
        {
            let c = FileCheckpoints::open(&db).unwrap();
            assert_eq!(c.state("a", 10, 1).unwrap(), FileState::New);
            c.start("a", 10, 1, 1024).unwrap();
            c.start("b", 5, 1, 1024).unwrap();
            c.finish("b", 5, 1, 1_000).unwrap();
        }
        let c = FileCheckpoints::open(&db).unwrap();
        assert_eq!(c.state("a", 10, 1).unwrap(), FileState::Reading { replay: None });
        assert_eq!(c.state("b", 5, 1).unwrap(), FileState::Done);
        assert_eq!(c.state("b", 6, 2).unwrap(), FileState::New);
    }

    #[test]
    fn a_replay_asks_for_done_files_of_its_window_and_survives_a_crash() {
        let dir = sluice_testkit::tempdir().unwrap();
        let c = FileCheckpoints::open(&dir.path().join("f.sqlite3")).unwrap();
        for (path, done_at) in [("early", 1_000), ("inside", 2_000), ("late", 3_000)] {
            c.start(path, 1, 7, 1024).unwrap();
            c.finish(path, 1, 7, done_at).unwrap();
        }
        c.start("unfinished", 1, 7, 1024).unwrap();
        let window = c.done_between(1_500, 2_500).unwrap();
        assert_eq!(
            window,
            vec![ReplayCandidate {
                path: "inside".into(),
                size: 1,
                mtime_ns: 7
            }]
        );
        assert!(c.request_replay(&window[0], "r1").unwrap());
        assert!(!c.request_replay(&window[0], "r2").unwrap(), "already asked");
        assert_eq!(c.state("inside", 1, 7).unwrap(), FileState::Replay("r1".into()));
        c.start("inside", 1, 7, 1024).unwrap();
        assert_eq!(
            c.state("inside", 1, 7).unwrap(),
            FileState::Reading {
                replay: Some("r1".into())
            },
            "a crash now reads the replay again"
        );
        assert_eq!(c.replay_left("r1").unwrap(), 1);
        c.finish("inside", 1, 7, 4_000).unwrap();
        assert_eq!(c.replay_left("r1").unwrap(), 0);
        assert_eq!(c.state("inside", 1, 7).unwrap(), FileState::Done);
        assert!(c.done_between(1_500, 2_500).unwrap().is_empty());
    }

    /// Checkpoints of the first release gain the later columns: a file
    /// done then is windowed by its modification time, and a file cut off
    /// then takes the batch size in force; a file keeps the batch size of
    /// its first read.
    #[test]
    fn rows_from_the_first_release_and_batch_sizes_kept() {
        let dir = sluice_testkit::tempdir().unwrap();
        let db = dir.path().join("f.sqlite3");
        {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch(
                "CREATE TABLE files (path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                    state TEXT NOT NULL, PRIMARY KEY (path, size, mtime_ns));
                 INSERT INTO files VALUES ('done', 3, 2000000000, 'done');
                 INSERT INTO files VALUES ('old', 3, 7, 'reading');",
            )
            .unwrap();
        }
        let c = FileCheckpoints::open(&db).unwrap();
        assert_eq!(c.done_between(1_500, 2_500).unwrap().len(), 1);
        assert_eq!(c.state("done", 3, 2_000_000_000).unwrap(), FileState::Done);
        assert_eq!(c.start("new", 1, 7, 1024).unwrap(), 1024);
        assert_eq!(c.start("new", 1, 7, 4096).unwrap(), 1024, "read again as first cut");
        assert_eq!(
            c.start("old", 3, 7, 4096).unwrap(),
            4096,
            "a row from before sizes takes the size now"
        );
        assert_eq!(c.start("old", 3, 7, 8192).unwrap(), 4096);
    }
}
