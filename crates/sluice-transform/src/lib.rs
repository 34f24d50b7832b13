//! User transforms: jq programs per event ([`jq`]), built-in field
//! operations that need no program ([`ops`]: rename, drop, set, cast,
//! filter, keyed hash for PII), reference-data enrichment refreshed in the
//! background ([`lookup`]), the JSON pointers they address fields with
//! ([`pointer`]), and their pipeline-file configuration ([`config`]).

pub mod config;
pub mod jq;
pub mod lookup;
pub mod ops;
pub mod pointer;
