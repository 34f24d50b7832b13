//! Documents from change events: the order-independent merge ([`merge`]).

pub mod merge;
