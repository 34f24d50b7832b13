//! Configuration of the DynamoDB Streams source.

use serde::Deserialize;

use super::DynamoDbStreamsSource;
use crate::{
    aws::AwsTarget,
    sources::{BuildEnv, Source, SourceSpec},
};

/// `[sources.NAME] type = "dynamodb_streams"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DynamoDbStreamsSourceConfig {
    /// The table whose stream is read (its newest stream, which must have
    /// the view type `NEW_AND_OLD_IMAGES`).
    pub table: String,
    /// The change events' `entity`. Default: the table's name.
    #[serde(default)]
    pub entity: Option<String>,
    /// The AWS region. Default: `AWS_REGION` or the profile's.
    #[serde(default)]
    pub region: Option<String>,
    /// The DynamoDB Streams endpoint. Default:
    /// `AWS_ENDPOINT_URL_DYNAMODB_STREAMS` or `AWS_ENDPOINT_URL`, else AWS's.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Where a shard with no checkpoint starts (child shards always start
    /// at their beginning). Default `trim_horizon`: the last 24 hours.
    #[serde(default)]
    pub starting_position: DynamoDbStartingPosition,
    /// Records per GetRecords call (DynamoDB Streams allows up to 1000).
    #[serde(default = "crate::sources::shards::default_max_records")]
    pub max_records: usize,
    /// How long a caught-up shard waits before reading again.
    #[serde(default = "crate::sources::shards::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often the shards are listed (DynamoDB rolls shards over about
    /// every four hours; a replica's lost shards are taken at a listing).
    #[serde(default = "crate::sources::shards::default_shard_discovery_secs")]
    pub shard_discovery_secs: u64,
    /// Bytes of change events per queue batch.
    #[serde(default = "crate::sources::shards::default_max_batch_bytes")]
    pub max_batch_bytes: usize,
}

/// `starting_position`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DynamoDbStartingPosition {
    /// The oldest record the stream keeps (24 hours).
    #[default]
    TrimHorizon,
    /// Records that arrive after the source starts.
    Latest,
}

impl DynamoDbStreamsSourceConfig {
    pub(crate) fn target(&self) -> AwsTarget {
        AwsTarget {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            resource_url: None,
        }
    }

    pub(crate) fn entity(&self) -> &str {
        self.entity.as_deref().unwrap_or(&self.table)
    }
}

impl SourceSpec for DynamoDbStreamsSourceConfig {
    fn validate(&self) -> Result<(), String> {
        let name_ok = (3..=255).contains(&self.table.len())
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !name_ok {
            return Err(format!(
                "table: {:?} is not a DynamoDB table name (3 to 255 letters, digits, _ . -)",
                self.table
            ));
        }
        if self.entity.as_deref() == Some("") {
            return Err("entity: must not be empty".into());
        }
        self.target().validate("")?;
        crate::sources::shards::check_reading(
            "DynamoDB Streams",
            self.max_records,
            1000,
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
        Ok(Box::new(DynamoDbStreamsSource::new(self.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<DynamoDbStreamsSourceConfig, String> {
        let config: DynamoDbStreamsSourceConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_and_what_is_refused() {
        let c = config("table = \"users\"").unwrap();
        assert_eq!(
            (c.starting_position, c.max_records, c.entity()),
            (DynamoDbStartingPosition::TrimHorizon, 1000, "users")
        );
        assert_eq!(config("table = \"users\"\nentity = \"user\"").unwrap().entity(), "user");
        assert!(config("table = \"a b\"").unwrap_err().starts_with("table: \"a b\""));
        assert!(
            config("table = \"users\"\nmax_records = 1001")
                .unwrap_err()
                .starts_with("max_records: 1001")
        );
        assert_eq!(
            config("table = \"users\"\nentity = \"\"").unwrap_err(),
            "entity: must not be empty"
        );
        assert!(config("table = \"users\"\nstarting_position = \"at_timestamp\"").is_err());
    }
}
