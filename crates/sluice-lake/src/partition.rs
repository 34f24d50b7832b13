//! Partition keys and the values derived from an event's parsed time.

use chrono::{DateTime, Datelike, Timelike};
use serde::Deserialize;

/// A partition column. Values are derived from the event time (UTC) only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKey {
    /// `YYYY-MM-DD`
    Dt,
    /// `00`..`23`
    Hour,
}

impl PartitionKey {
    pub fn column(self) -> &'static str {
        match self {
            PartitionKey::Dt => "dt",
            PartitionKey::Hour => "hour",
        }
    }
}

/// The partition values of an event time, in `keys` order; `None` when the
/// time is outside chrono's range.
pub fn partition_values(keys: &[PartitionKey], time_us: i64) -> Option<Vec<String>> {
    let t = DateTime::from_timestamp_micros(time_us)?;
    Some(
        keys.iter()
            .map(|k| match k {
                PartitionKey::Dt => format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
                PartitionKey::Hour => format!("{:02}", t.hour()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_utc_time() {
        let t = DateTime::parse_from_rfc3339("2026-11-01T01:30:00+02:00")
            .unwrap()
            .timestamp_micros();
        assert_eq!(
            partition_values(&[PartitionKey::Dt, PartitionKey::Hour], t).unwrap(),
            vec!["2026-10-31".to_string(), "23".to_string()]
        );
        assert_eq!(
            partition_values(&[PartitionKey::Hour], t).unwrap(),
            vec!["23".to_string()]
        );
    }

    #[test]
    fn years_before_1000_are_zero_padded() {
        let t = DateTime::parse_from_rfc3339("0099-01-02T03:00:00Z")
            .unwrap()
            .timestamp_micros();
        assert_eq!(
            partition_values(&[PartitionKey::Dt], t).unwrap(),
            vec!["0099-01-02".to_string()]
        );
    }
}
