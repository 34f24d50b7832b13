//! Generated documentation checked against the code that generates it.

use std::path::Path;

/// Fails when the file at `path` (relative to the repository root) does
/// not hold `generated`; with `SLUICE_BLESS` set it writes it first. The
/// message says how to regenerate: `bless` is the command to run.
pub fn assert_current(path: &str, generated: &str, bless: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&file, generated).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    }
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(have == generated, "{path} is stale; run SLUICE_BLESS=1 {bless}");
}
