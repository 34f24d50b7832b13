//! Configuration of the Kinesis source.

use serde::Deserialize;

use super::KinesisSource;
use crate::{
    aws::AwsTarget,
    sources::{BuildEnv, Source, SourceSpec},
};

/// `[sources.NAME] type = "kinesis"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceConfig {
    /// The data stream's name.
    pub stream: String,
    /// The AWS region. Default: `AWS_REGION` or the profile's.
    #[serde(default)]
    pub region: Option<String>,
    /// The Kinesis endpoint. Default: `AWS_ENDPOINT_URL_KINESIS` or
    /// `AWS_ENDPOINT_URL`, else AWS's.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Where a shard with no checkpoint starts (child shards of a
    /// resharding always start at their beginning). Default `trim_horizon`.
    #[serde(default)]
    pub starting_position: StartingPosition,
    /// With `starting_position = "at_timestamp"`: an RFC 3339 time.
    #[serde(default)]
    pub starting_timestamp: Option<String>,
    /// Records per GetRecords call (Kinesis allows up to 10 000).
    #[serde(default = "crate::sources::shards::default_max_records")]
    pub max_records: usize,
    /// How long a caught-up shard waits before reading again (Kinesis
    /// allows five reads a second per shard, shared by its consumers).
    #[serde(default = "crate::sources::shards::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often the shards are listed (new shards, shards whose lease
    /// another replica let go).
    #[serde(default = "crate::sources::shards::default_shard_discovery_secs")]
    pub shard_discovery_secs: u64,
    /// Bytes of lines per queue batch.
    #[serde(default = "crate::sources::shards::default_max_batch_bytes")]
    pub max_batch_bytes: usize,
}

/// `starting_position`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartingPosition {
    /// The oldest record the stream keeps.
    #[default]
    TrimHorizon,
    /// Records that arrive after the source starts.
    Latest,
    /// Records that arrived at or after `starting_timestamp`.
    AtTimestamp,
}

impl KinesisSourceConfig {
    pub(crate) fn target(&self) -> AwsTarget {
        AwsTarget {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            resource_url: None,
        }
    }

    /// `starting_timestamp` as seconds since the epoch.
    pub(crate) fn starting_seconds(&self) -> Result<Option<f64>, String> {
        let Some(text) = &self.starting_timestamp else {
            return Ok(None);
        };
        aws_sdk_kinesis::primitives::DateTime::from_str(text, aws_sdk_kinesis::primitives::DateTimeFormat::DateTime)
            .map(|t| Some(t.as_secs_f64()))
            .map_err(|e| format!("starting_timestamp: {text:?} is not an RFC 3339 time ({e})"))
    }
}

impl SourceSpec for KinesisSourceConfig {
    fn validate(&self) -> Result<(), String> {
        let name_ok = |n: &str| {
            (1..=128).contains(&n.len())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        };
        if !name_ok(&self.stream) {
            return Err(format!(
                "stream: {:?} is not a stream name (1 to 128 letters, digits, _ . -)",
                self.stream
            ));
        }
        self.target().validate("")?;
        match (self.starting_position, self.starting_seconds()?) {
            (StartingPosition::AtTimestamp, None) => {
                return Err("starting_timestamp: required with starting_position = \"at_timestamp\"".into());
            }
            (StartingPosition::TrimHorizon | StartingPosition::Latest, Some(_)) => {
                return Err("starting_timestamp: only with starting_position = \"at_timestamp\"".into());
            }
            _ => {}
        }
        crate::sources::shards::check_reading(
            "Kinesis",
            self.max_records,
            10_000,
            self.poll_interval_ms,
            self.shard_discovery_secs,
            self.max_batch_bytes,
        )?;
        Ok(())
    }

    fn max_batch_bytes(&self) -> Option<usize> {
        Some(self.max_batch_bytes)
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(KinesisSource::new(self.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<KinesisSourceConfig, String> {
        let config: KinesisSourceConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_and_what_is_refused() {
        let c = config("stream = \"changes\"").unwrap();
        assert_eq!(c.starting_position, StartingPosition::TrimHorizon);
        assert_eq!((c.max_records, c.poll_interval_ms), (1000, 1000));
        let at = config(
            "stream = \"changes\"\nstarting_position = \"at_timestamp\"\nstarting_timestamp = \"2026-12-01T10:00:00Z\"",
        )
        .unwrap();
        assert_eq!(at.starting_seconds().unwrap(), Some(1_796_119_200.0));
        assert_eq!(
            config("stream = \"changes\"\nstarting_position = \"at_timestamp\"").unwrap_err(),
            "starting_timestamp: required with starting_position = \"at_timestamp\""
        );
        assert!(
            config("stream = \"changes\"\nstarting_position = \"at_timestamp\"\nstarting_timestamp = \"yesterday\"")
                .unwrap_err()
                .starts_with("starting_timestamp: \"yesterday\" is not an RFC 3339 time")
        );
        assert!(config("stream = \"a b\"").unwrap_err().starts_with("stream: \"a b\""));
        assert!(
            config("stream = \"s\"\nmax_records = 10001")
                .unwrap_err()
                .starts_with("max_records: 10001")
        );
        assert!(config("stream = \"s\"\nstarting_position = \"newest\"").is_err());
    }
}
