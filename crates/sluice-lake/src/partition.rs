//! Partition keys and the values derived from an event's parsed fields.
//!
//! `dt` and `hour` come from the event time (UTC). `bucket(N, /pointer)`
//! hashes the value at a JSON pointer (the event id, usually) into one of N
//! buckets: XXH64 (seed 0) of the value's UTF-8 text, modulo N, written with
//! zero padding so buckets sort (`00`..`15`). Values are digits and dashes
//! only, so no partition value can steer a path. An event's
//! [`PartitionSlot`] (date, hour, bucket number) is what a sink groups by;
//! the values are written out once per group.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use serde::Deserialize;
use twox_hash::XxHash64;

/// Most buckets a table may have.
pub const MAX_BUCKETS: u32 = 4096;

/// A partition column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String")]
pub enum PartitionKey {
    /// `YYYY-MM-DD`
    Dt,
    /// `00`..`23`
    Hour,
    /// `bucket(count, pointer)`
    Bucket { count: u32, pointer: String },
}

impl PartitionKey {
    pub fn column(&self) -> &'static str {
        match self {
            PartitionKey::Dt => "dt",
            PartitionKey::Hour => "hour",
            PartitionKey::Bucket { .. } => "bucket",
        }
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionKey::Bucket { count, pointer } => write!(f, "bucket({count}, {pointer})"),
            other => f.write_str(other.column()),
        }
    }
}

impl FromStr for PartitionKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let allowed = "allowed: \"dt\", \"hour\", \"bucket(N, /json/pointer)\"";
        match s.trim() {
            "dt" => return Ok(PartitionKey::Dt),
            "hour" => return Ok(PartitionKey::Hour),
            _ => {}
        }
        let inner = s
            .trim()
            .strip_prefix("bucket(")
            .and_then(|rest| rest.strip_suffix(')'))
            .ok_or_else(|| format!("{s:?} is not a partition key; {allowed}"))?;
        let (count, pointer) = inner
            .split_once(',')
            .ok_or_else(|| format!("{s:?}: write a bucket key as bucket(N, /json/pointer)"))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (2..=MAX_BUCKETS).contains(n))
            .ok_or_else(|| format!("{s:?}: the bucket count must be a whole number from 2 to {MAX_BUCKETS}"))?;
        let pointer = pointer.trim();
        if !pointer.starts_with('/') {
            return Err(format!(
                "{s:?}: {pointer:?} is not a JSON pointer; write it like \"/event_id\""
            ));
        }
        Ok(PartitionKey::Bucket {
            count,
            pointer: pointer.to_string(),
        })
    }
}

impl TryFrom<String> for PartitionKey {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Why an event has no partition values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionError {
    /// The event time is outside chrono's range.
    TimeOutOfRange,
    /// A bucket key's pointer finds no string or number.
    MissingBucketValue(String),
}

/// The bucket of a value: XXH64 (seed 0) of its UTF-8 text modulo `count`.
fn bucket_number(value: &str, count: u32) -> u32 {
    (XxHash64::oneshot(0, value.as_bytes()) % u64::from(count)) as u32
}

/// [`bucket_number`] as a partition value: zero-padded to the width of the
/// largest bucket.
pub fn bucket_of(value: &str, count: u32) -> String {
    bucket_text(bucket_number(value, count), count)
}

fn bucket_text(bucket: u32, count: u32) -> String {
    let width = (count - 1).to_string().len();
    format!("{bucket:0width$}")
}

/// The partition an event belongs to before its values are written out:
/// the UTC date and hour of its time and, with a bucket key, its bucket. A
/// sink groups a batch's events by this small key and writes each group's
/// [`values`](PartitionSlot::values) once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionSlot {
    date: NaiveDate,
    hour: u32,
    /// 0 when the keys have no bucket key.
    bucket: u32,
}

impl PartitionSlot {
    /// The slot of an event at `time_us`. `bucket_input` gives the text a
    /// bucket key hashes, by JSON pointer.
    pub fn of<'a>(
        keys: &[PartitionKey],
        time_us: i64,
        mut bucket_input: impl FnMut(&str) -> Option<std::borrow::Cow<'a, str>>,
    ) -> Result<Self, PartitionError> {
        let t = DateTime::from_timestamp_micros(time_us).ok_or(PartitionError::TimeOutOfRange)?;
        let mut bucket = 0;
        for key in keys {
            if let PartitionKey::Bucket { count, pointer } = key {
                let input = bucket_input(pointer).ok_or_else(|| PartitionError::MissingBucketValue(pointer.clone()))?;
                bucket = bucket_number(&input, *count);
            }
        }
        Ok(PartitionSlot {
            date: t.date_naive(),
            hour: t.hour(),
            bucket,
        })
    }

    /// The partition values, in `keys` order.
    pub fn values(self, keys: &[PartitionKey]) -> Vec<String> {
        keys.iter()
            .map(|k| match k {
                PartitionKey::Dt => format!(
                    "{:04}-{:02}-{:02}",
                    self.date.year(),
                    self.date.month(),
                    self.date.day()
                ),
                PartitionKey::Hour => format!("{:02}", self.hour),
                PartitionKey::Bucket { count, .. } => bucket_text(self.bucket, *count),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn no_bucket(_: &str) -> Option<Cow<'static, str>> {
        None
    }

    fn partition_values<'a>(
        keys: &[PartitionKey],
        time_us: i64,
        bucket_input: impl FnMut(&str) -> Option<Cow<'a, str>>,
    ) -> Result<Vec<String>, PartitionError> {
        PartitionSlot::of(keys, time_us, bucket_input).map(|slot| slot.values(keys))
    }

    #[test]
    fn values_come_from_utc_time() {
        let t = DateTime::parse_from_rfc3339("2026-11-01T01:30:00+02:00")
            .unwrap()
            .timestamp_micros();
        assert_eq!(
            partition_values(&[PartitionKey::Dt, PartitionKey::Hour], t, no_bucket).unwrap(),
            vec!["2026-10-31".to_string(), "23".to_string()]
        );
        assert_eq!(
            partition_values(&[PartitionKey::Hour], t, no_bucket).unwrap(),
            vec!["23".to_string()]
        );
    }

    #[test]
    fn events_of_one_hour_and_bucket_share_a_slot() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
        let keys = [PartitionKey::Dt, PartitionKey::Hour];
        let slot = |t: &str| PartitionSlot::of(&keys, at(t), no_bucket).unwrap();
        assert_eq!(slot("2026-11-01T10:00:00Z"), slot("2026-11-01T10:59:59.999999Z"));
        assert_ne!(slot("2026-11-01T10:59:59Z"), slot("2026-11-01T11:00:00Z"));
        assert_ne!(slot("2026-11-01T10:00:00Z"), slot("2026-11-02T10:00:00Z"));
        let bucketed = [
            PartitionKey::Hour,
            PartitionKey::Bucket {
                count: 4,
                pointer: "/id".into(),
            },
        ];
        let of_id = |id: &'static str| {
            PartitionSlot::of(&bucketed, at("2026-11-01T10:00:00Z"), |_| Some(Cow::Borrowed(id))).unwrap()
        };
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
        assert!(
            ids.iter().any(|id| bucket_of(id, 4) != bucket_of("a", 4)),
            "the ids fall in more than one bucket"
        );
        for x in ids {
            for y in ids {
                assert_eq!(of_id(x) == of_id(y), bucket_of(x, 4) == bucket_of(y, 4), "{x} {y}");
            }
        }
        assert_eq!(of_id("a").values(&bucketed), ["10".to_string(), bucket_of("a", 4)]);
    }

    #[test]
    fn years_before_1000_are_zero_padded() {
        let t = DateTime::parse_from_rfc3339("0099-01-02T03:00:00Z")
            .unwrap()
            .timestamp_micros();
        assert_eq!(
            partition_values(&[PartitionKey::Dt], t, no_bucket).unwrap(),
            vec!["0099-01-02".to_string()]
        );
    }

    #[test]
    fn out_of_range_time_is_an_error() {
        assert_eq!(
            partition_values(&[PartitionKey::Dt], i64::MAX, no_bucket),
            Err(PartitionError::TimeOutOfRange)
        );
    }

    #[test]
    fn parses_keys_and_names_what_is_allowed() {
        assert_eq!("dt".parse::<PartitionKey>().unwrap(), PartitionKey::Dt);
        assert_eq!(
            "bucket(16, /event_id)".parse::<PartitionKey>().unwrap(),
            PartitionKey::Bucket {
                count: 16,
                pointer: "/event_id".into()
            }
        );
        let unknown = "day".parse::<PartitionKey>().unwrap_err();
        assert!(unknown.contains("allowed: \"dt\", \"hour\""), "{unknown}");
        let zero = "bucket(0, /event_id)".parse::<PartitionKey>().unwrap_err();
        assert!(zero.contains("from 2 to 4096"), "{zero}");
        let pointer = "bucket(8, event_id)".parse::<PartitionKey>().unwrap_err();
        assert!(pointer.contains("not a JSON pointer"), "{pointer}");
    }

    #[test]
    fn buckets_are_stable_spread_and_padded() {
        // XXH64 with seed 0 is specified, so bucket numbers never change
        // between versions or machines.
        assert_eq!(XxHash64::oneshot(0, b""), 0xef46db3751d8e999);
        let keys = [PartitionKey::Bucket {
            count: 16,
            pointer: "/id".into(),
        }];
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            let id = format!("event-{i}");
            let values = partition_values(&keys, 0, |p| {
                assert_eq!(p, "/id");
                Some(Cow::Owned(id.clone()))
            })
            .unwrap();
            assert_eq!(values[0].len(), 2, "{values:?}");
            counts[values[0].parse::<usize>().unwrap()] += 1;
        }
        assert!(counts.iter().all(|&n| (800..1200).contains(&n)), "{counts:?}");
        assert_eq!(bucket_of("x", 4).len(), 1);
        assert_eq!(
            partition_values(&keys, 0, no_bucket),
            Err(PartitionError::MissingBucketValue("/id".into()))
        );
    }
}
