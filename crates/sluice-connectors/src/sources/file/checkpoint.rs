//! Which files the file source has read, in a small SQLite database in the
//! data directory (`sources/<name>.sqlite3`).
//!
//! A file is identified by path, size and modification time. It is marked
//! `reading` before its first batch is enqueued and `done` after its last;
//! a file found `reading` at start-up was cut off by a crash and is read
//! again, its batches flagged so sinks skip chunks they already committed.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    New,
    Reading,
    Done,
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
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS files (
                path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                state TEXT NOT NULL, PRIMARY KEY (path, size, mtime_ns))",
        )
        .map_err(err)?;
        Ok(FileCheckpoints { conn })
    }

    pub fn state(&self, path: &str, size: u64, mtime_ns: i64) -> Result<FileState, String> {
        let state: Option<String> = self
            .conn
            .query_row(
                "SELECT state FROM files WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3",
                params![path, size as i64, mtime_ns],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        Ok(match state.as_deref() {
            None => FileState::New,
            Some("done") => FileState::Done,
            Some(_) => FileState::Reading,
        })
    }

    pub fn mark(&self, path: &str, size: u64, mtime_ns: i64, state: FileState) -> Result<(), String> {
        let name = match state {
            FileState::New => return Ok(()),
            FileState::Reading => "reading",
            FileState::Done => "done",
        };
        self.conn
            .execute(
                "INSERT INTO files (path, size, mtime_ns, state) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path, size, mtime_ns) DO UPDATE SET state = excluded.state",
                params![path, size as i64, mtime_ns, name],
            )
            .map_err(err)?;
        Ok(())
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
            c.mark("a", 10, 1, FileState::Reading).unwrap();
            c.mark("b", 5, 1, FileState::Reading).unwrap();
            c.mark("b", 5, 1, FileState::Done).unwrap();
        }
        let c = FileCheckpoints::open(&db).unwrap();
        assert_eq!(c.state("a", 10, 1).unwrap(), FileState::Reading);
        assert_eq!(c.state("b", 5, 1).unwrap(), FileState::Done);
        assert_eq!(c.state("b", 6, 2).unwrap(), FileState::New);
    }
}
