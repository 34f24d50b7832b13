//! What the bench command and the criterion benches share: where the
//! shared generator and schema live, and the jq program they measure.

use std::path::{Path, PathBuf};

/// `shared/bench` (generator, schema, DuckDB reference): `SLUICE_BENCH_DIR`,
/// or beside the repository, or the workplace default.
pub fn bench_dir() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        std::env::var_os("SLUICE_BENCH_DIR").map(PathBuf::from),
        Some(manifest.join("../../../shared/bench")),
        Some(PathBuf::from("/work/shared/bench")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("gen_events.py").exists())
}

/// The jq program the bench measures: what a user would write to derive cents.
pub const JQ_PROGRAM: &str = r#"if .event_type == "purchase" then .props.revenue_cents = (.props.revenue * 100 | round) else . end | del(.page.referrer)"#;
