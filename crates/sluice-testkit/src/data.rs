//! Generated events written where a test wants them, with their oracle as
//! JSON (the same document `sluice-gen --expect` writes).

use std::{io::Write, path::Path};

use sluice_gen::{CdcOptions, ClickstreamOptions};

/// Writes `dir/events.ndjson`; returns its lines and the oracle.
pub fn clickstream(dir: &Path, options: &ClickstreamOptions) -> (Vec<String>, serde_json::Value) {
    let mut out = Vec::new();
    let oracle = sluice_gen::clickstream(options, &mut out).expect("writing to memory");
    std::fs::File::create(dir.join("events.ndjson"))
        .and_then(|mut f| f.write_all(&out))
        .expect("writing events.ndjson");
    let lines = String::from_utf8(out)
        .expect("generated UTF-8")
        .lines()
        .map(str::to_string)
        .collect();
    (lines, serde_json::to_value(oracle).expect("oracle as JSON"))
}

/// The usual noisy mix (2 % duplicates, 1 % malformed, 5 % late).
pub fn noisy_clickstream(dir: &Path, lines: u64, seed: u64) -> (Vec<String>, serde_json::Value) {
    clickstream(dir, &ClickstreamOptions::noisy(lines, seed))
}

/// Only valid, unique events.
pub fn clean_clickstream(dir: &Path, lines: u64, seed: u64) -> (Vec<String>, serde_json::Value) {
    clickstream(dir, &ClickstreamOptions::clean(lines, seed))
}

/// Change events as delivered (reordered, repeated); returns the lines and
/// the oracle.
pub fn cdc(options: &CdcOptions) -> (Vec<String>, sluice_gen::CdcOracle) {
    let mut out = Vec::new();
    let oracle = sluice_gen::cdc(options, &mut out).expect("writing to memory");
    let lines = String::from_utf8(out)
        .expect("generated UTF-8")
        .lines()
        .map(str::to_string)
        .collect();
    (lines, oracle)
}
