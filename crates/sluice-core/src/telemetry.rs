//! Telemetry: every metric defined once ([`catalogue`]) and recorded
//! through typed handles whose methods name what happened ([`events`]),
//! writing the log line with the metric.

pub mod catalogue;
pub mod events;

pub use catalogue::{ALL, Metric, MetricKind, describe_all, reference_markdown};
pub use events::*;
