//! User transforms: jq programs per event ([`jq`]), built-in field
//! operations that need no program ([`ops`]: rename, drop, set, cast,
//! filter, keyed hash for PII), the JSON pointers they address fields with
//! ([`pointer`]), and their pipeline-file configuration ([`config`]).

pub mod config;
pub mod jq;
pub mod ops;
pub mod pointer;
