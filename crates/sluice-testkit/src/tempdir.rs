//! Temporary folders for tests, removed when dropped. Sluice's own instead
//! of the `tempfile` crate: as a dev-dependency, `tempfile` turned on
//! features of crates the engine shares (rustix, bitflags), so the test
//! build compiled arrow, parquet and deltalake a second time.

use std::{
    io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// A folder under the system's temporary directory, deleted on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A new empty folder, named after the process, a counter and the clock.
pub fn tempdir() -> io::Result<TempDir> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = std::env::temp_dir().join(format!(
        "sluice-test-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&path)?;
    Ok(TempDir { path })
}

#[cfg(test)]
mod tests {
    #[test]
    fn folders_are_distinct_and_removed_on_drop() {
        let (a, b) = (super::tempdir().unwrap(), super::tempdir().unwrap());
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("x"), "x").unwrap();
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
        assert!(b.path().is_dir());
    }
}
