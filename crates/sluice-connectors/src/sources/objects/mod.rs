//! The objects source (`type = "objects"`): files producers drop into a
//! local folder or under an S3 prefix (NDJSON, gzip, JSON arrays, CSV),
//! found by listing and by S3 event notifications on JetStream or SQS, recorded in
//! a ledger, and read once in effect.

mod config;
mod inbox;
mod ledger;
mod listing;
mod notification;
mod source;

pub use config::{NotificationConfig, ObjectFormat, ObjectsSourceConfig};
pub use ledger::{Ledger, ObjectRecord};
pub use source::ObjectsSource;

#[cfg(test)]
mod tests;
