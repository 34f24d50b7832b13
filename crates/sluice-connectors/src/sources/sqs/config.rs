//! Configuration of the SQS source.

use serde::Deserialize;

use super::SqsSource;
use crate::{
    aws::{AwsTarget, sqs::MAX_PER_CALL},
    sources::{BuildEnv, Source, SourceSpec},
};

/// `[sources.NAME] type = "sqs"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqsSourceConfig {
    /// The queue's URL (`https://sqs.eu-west-1.amazonaws.com/123456789012/clicks`).
    pub queue_url: String,
    /// The AWS region. Default: `AWS_REGION` or the profile's, else the one
    /// the queue URL names.
    #[serde(default)]
    pub region: Option<String>,
    /// The SQS endpoint. Default: `AWS_ENDPOINT_URL_SQS` or
    /// `AWS_ENDPOINT_URL`, else AWS's, or, for a queue URL not on
    /// amazonaws.com (an emulator), that URL's scheme, host and port.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Messages per receive call (SQS allows 1 to 10).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Receive calls in flight at once, each with its own enqueue and delete.
    #[serde(default = "default_receivers")]
    pub receivers: usize,
    /// Long polling: how long a receive waits for a first message (0 to 20).
    #[serde(default = "default_wait_time_secs")]
    pub wait_time_secs: u32,
    /// How long received messages stay invisible to other consumers. The
    /// source extends it while it waits on a full queue, and deletes the
    /// messages once their events are durable in Sluice's queue.
    #[serde(default = "default_visibility_timeout_secs")]
    pub visibility_timeout_secs: u32,
    /// Take the `Message` of SNS notification envelopes (a topic delivering
    /// to the queue without raw message delivery). Bodies that are not an
    /// envelope are taken as they are.
    #[serde(default)]
    pub unwrap_sns: bool,
    /// Messages per queue batch: a receiver keeps receiving while SQS
    /// returns full receives, up to this many.
    #[serde(default = "default_max_batch_messages")]
    pub max_batch_messages: usize,
    /// Bytes of lines per queue batch (a batch stops growing once past it).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
}

fn default_max_messages() -> usize {
    MAX_PER_CALL
}
fn default_receivers() -> usize {
    2
}
fn default_wait_time_secs() -> u32 {
    20
}
fn default_visibility_timeout_secs() -> u32 {
    60
}
fn default_max_batch_messages() -> usize {
    100
}
fn default_max_batch_bytes() -> usize {
    512 * 1024
}

/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY_SECS: u32 = 43_200;

impl SqsSourceConfig {
    pub(crate) fn target(&self) -> AwsTarget {
        AwsTarget {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            resource_url: Some(self.queue_url.clone()),
        }
    }
}

/// Checks an SQS queue URL; the error starts with `key`.
pub(crate) fn check_queue_url(key: &str, url: &str) -> Result<(), String> {
    let path = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, path)| path.trim_end_matches('/'));
    match path {
        Some(path) if !path.is_empty() => Ok(()),
        _ => Err(format!(
            "{key}: {url:?} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)"
        )),
    }
}

impl SourceSpec for SqsSourceConfig {
    fn validate(&self) -> Result<(), String> {
        check_queue_url("queue_url", &self.queue_url)?;
        self.target().validate("")?;
        if !(1..=MAX_PER_CALL).contains(&self.max_messages) {
            return Err(format!(
                "max_messages: {} is not allowed; SQS returns 1 to 10 messages per call",
                self.max_messages
            ));
        }
        if !(1..=64).contains(&self.receivers) {
            return Err(format!("receivers: {} is not allowed; use 1 to 64", self.receivers));
        }
        if self.wait_time_secs > 20 {
            return Err(format!(
                "wait_time_secs: {} is not allowed; SQS long polling waits 0 to 20 seconds",
                self.wait_time_secs
            ));
        }
        if !(1..=MAX_VISIBILITY_SECS).contains(&self.visibility_timeout_secs) {
            return Err(format!(
                "visibility_timeout_secs: {} is not allowed; SQS takes 1 to {MAX_VISIBILITY_SECS}",
                self.visibility_timeout_secs
            ));
        }
        if self.max_batch_messages == 0 {
            return Err("max_batch_messages: must be at least 1".into());
        }
        if self.max_batch_bytes < 1024 {
            return Err("max_batch_bytes: must be at least 1024".into());
        }
        Ok(())
    }

    fn max_batch_bytes(&self) -> Option<usize> {
        Some(self.max_batch_bytes)
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(SqsSource::new(self.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> Result<SqsSourceConfig, String> {
        let config: SqsSourceConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_and_limits() {
        let c = config("queue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/clicks\"").unwrap();
        assert_eq!((c.max_messages, c.receivers, c.wait_time_secs), (10, 2, 20));
        assert_eq!(c.visibility_timeout_secs, 60);
        let q = "queue_url = \"http://127.0.0.1:4566/123456789012/clicks\"\n";
        assert_eq!(
            config(&format!("{q}max_messages = 11")).unwrap_err(),
            "max_messages: 11 is not allowed; SQS returns 1 to 10 messages per call"
        );
        assert!(
            config(&format!("{q}wait_time_secs = 21"))
                .unwrap_err()
                .starts_with("wait_time_secs: 21")
        );
        assert!(config(&format!("{q}visibility_timeout_secs = 0")).is_err());
        assert!(config(&format!("{q}receivers = 0")).is_err());
        assert!(
            config(&format!("{q}queue = \"x\""))
                .unwrap_err()
                .contains("unknown field `queue`")
        );
        assert_eq!(
            config("queue_url = \"clicks\"").unwrap_err(),
            "queue_url: \"clicks\" is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)"
        );
        assert!(config("queue_url = \"https://sqs.eu-west-1.amazonaws.com/\"").is_err());
    }
}
