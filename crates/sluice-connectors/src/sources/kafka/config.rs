//! Configuration of the Kafka source.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::KafkaSource;
use crate::{
    kafka::{KafkaSecurity, validate_options},
    sources::{BuildEnv, LoadEnv, Source, SourceSpec},
};

/// `[sources.NAME] type = "kafka"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to consume; a name starting with `^` is a regular expression
    /// (new matching topics are picked up).
    pub topics: Vec<String>,
    /// The consumer group: replicas with one group share the partitions.
    pub group_id: String,
    /// Where a group without a committed offset starts: `earliest` or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// A batch of one partition is enqueued at this many records...
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    /// ... or this many bytes ...
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// ... or when its first record has waited this long.
    #[serde(default = "default_max_batch_wait_ms")]
    pub max_batch_wait_ms: u64,
    /// A record whose line (value, and metadata if added) is longer is a
    /// dead letter (`record_too_large`) instead. The default is Kafka's
    /// own message limit; with a JetStream queue, `max_batch_bytes` plus
    /// this must fit a NATS message (1 MiB by default).
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// A top-level field added to each JSON-object record with its
    /// `topic`, `partition`, `offset`, `timestamp` (ms), `key` and
    /// `headers` (as UTF-8 text), for transforms; `""` adds nothing.
    #[serde(default)]
    pub metadata_field: String,
    /// The group's session: a replica that stops answering for this long
    /// loses its partitions to the others.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// With `sluice run --until-idle`: stop after this long without a record.
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
    /// TLS and SASL for managed Kafka (secrets from environment variables).
    #[serde(default)]
    pub security: Option<KafkaSecurity>,
    /// More librdkafka consumer settings (`fetch.max.bytes`, ...); those
    /// Sluice sets are refused.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

/// `start_from`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

fn default_max_batch_records() -> usize {
    10_000
}
fn default_max_batch_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_record_bytes() -> usize {
    1024 * 1024
}
fn default_max_batch_wait_ms() -> u64 {
    500
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_idle_secs() -> u64 {
    5
}

impl SourceSpec for KafkaSourceConfig {
    fn validate(&self) -> Result<(), String> {
        if self.brokers.split(',').any(|b| {
            b.trim()
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            return Err(format!("brokers: {:?} is not host:port[,host:port...]", self.brokers));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("topics: list at least one topic (or a ^pattern), none empty".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("group_id: must not be empty".into());
        }
        if self.max_batch_records == 0 || self.max_batch_bytes < 1024 || self.max_batch_wait_ms == 0 {
            return Err("max_batch_records and max_batch_wait_ms: at least 1; max_batch_bytes: at least 1024".into());
        }
        if self.max_record_bytes < 1024 {
            return Err(format!(
                "max_record_bytes: {} is too small; at least 1024",
                self.max_record_bytes
            ));
        }
        if !(1_000..=3_600_000).contains(&self.session_timeout_ms) {
            return Err(format!(
                "session_timeout_ms: {} is not allowed; use 1000 to 3600000",
                self.session_timeout_ms
            ));
        }
        if self.metadata_field.contains('/') {
            return Err(format!(
                "metadata_field: {:?} is a top-level field name, without '/'",
                self.metadata_field
            ));
        }
        if let Some(security) = &self.security {
            security.validate()?;
        }
        validate_options(&self.librdkafka_options)
    }

    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        if let Some(security) = &mut self.security {
            security.resolve(env);
        }
        Ok(())
    }

    fn max_batch_bytes(&self) -> Option<usize> {
        // A batch closes at the first record past the limit.
        Some(self.max_batch_bytes + self.max_record_bytes)
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(KafkaSource::new(self.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> KafkaSourceConfig {
        toml::from_str(&format!(
            "brokers = \"127.0.0.1:9092\"\ntopics = [\"events\"]\ngroup_id = \"g\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn defaults_and_checks_name_the_key() {
        let c = config("");
        assert!(c.validate().is_ok());
        assert_eq!(c.start_from, StartFrom::Earliest);
        let e = |change: fn(&mut KafkaSourceConfig)| {
            let mut c = config("");
            change(&mut c);
            c.validate().unwrap_err()
        };
        assert!(e(|c| c.brokers = "nohost".into()).starts_with("brokers:"));
        assert!(e(|c| c.topics.clear()).starts_with("topics:"));
        assert!(e(|c| c.group_id = " ".into()).starts_with("group_id:"));
        assert!(e(|c| c.session_timeout_ms = 10).starts_with("session_timeout_ms:"));
        assert!(e(|c| c.metadata_field = "a/b".into()).starts_with("metadata_field:"));
        let options = config("librdkafka_options = { \"enable.auto.commit\" = \"true\" }");
        assert!(options.validate().unwrap_err().starts_with("librdkafka_options:"));
    }
}
