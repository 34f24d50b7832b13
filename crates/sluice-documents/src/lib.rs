//! Documents from change events: parsing changes ([`change`]), the
//! order-independent merge ([`merge`]), applying a batch of changes to the
//! records they touch ([`apply`]), and the stores that keep the records
//! ([`store`]: embedded SQLite and PostgreSQL, one conformance suite).

pub mod apply;
pub mod change;
pub mod merge;
pub mod store;
