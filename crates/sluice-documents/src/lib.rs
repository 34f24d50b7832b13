//! Documents from change events: parsing changes ([`change`]), the
//! order-independent merge ([`merge`]), applying a batch of changes to the
//! records they touch ([`apply`]), the stores that keep the records
//! ([`store`]: embedded SQLite and PostgreSQL, one conformance suite), and
//! the `documents` stage that puts them together ([`transform`], configured
//! by [`config`]), snapshots of every document in a Delta table
//! ([`snapshot`]), and read models in Redis ([`projection`]). Versions are kept exactly
//! whatever their size ([`version`]).

pub mod apply;
pub mod change;
pub mod config;
pub mod merge;
pub mod projection;
pub mod snapshot;
pub mod store;
pub mod transform;
pub mod version;
