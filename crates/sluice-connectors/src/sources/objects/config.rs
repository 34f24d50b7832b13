//! Configuration of the objects source.

use serde::Deserialize;

use super::ObjectsSource;
use crate::{
    aws::AwsTarget,
    sources::{BuildEnv, LoadEnv, Source, SourceSpec, chunks::DEFAULT_BATCH_BYTES},
};

/// `[sources.NAME] type = "objects"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectsSourceConfig {
    /// A local folder (relative to the pipeline file) or `s3://bucket/prefix`.
    /// The loader turns a folder into a `file://` URL.
    pub uri: String,
    /// S3 settings over the `AWS_*` environment (as for a lake sink).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub storage_options: sluice_core::StorageOptions,
    /// Glob on an object's key below the prefix (`*` also crosses `/`).
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// How objects are read: `"auto"` by the name without `.gz` (`.csv` is
    /// CSV, `.json` a JSON array, anything else NDJSON), `"ndjson"`,
    /// `"json_array"`, or `"csv"` (a header row, then one event per row: an
    /// object of strings, empty cells left out). Gzip is recognised by its
    /// magic bytes whatever the name. Default `"auto"`.
    #[serde(default)]
    pub format: ObjectFormat,
    /// How often the prefix is listed to find objects no notification announced.
    #[serde(default = "default_sweep_interval_secs")]
    pub sweep_interval_secs: u64,
    /// How often pending objects are pulled for reading.
    #[serde(default = "default_pull_interval_secs")]
    pub pull_interval_secs: u64,
    /// How many objects one pull takes.
    #[serde(default = "default_objects_per_pull")]
    pub objects_per_pull: usize,
    /// An object taken for reading and not finished within this time is
    /// handed out again.
    #[serde(default = "default_visibility_timeout_secs")]
    pub visibility_timeout_secs: u64,
    /// Reads that fail for reasons that may pass (the store unreachable)
    /// before the object is given up as failed.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Bytes of lines per queue batch; with a JetStream queue the default
    /// is 1044480, the most a NATS message carries. An object version is cut
    /// with the size in force when it was found, also when it is read again
    /// after a crash, so its batches keep their keys.
    #[serde(default)]
    #[schemars(extend("default" = 4194304))]
    pub max_batch_bytes: Option<usize>,
    /// An object is listed only once it has not changed for this long (a
    /// file still being written is left alone). `--until-idle` reads at once.
    #[serde(default = "default_settle_secs")]
    pub settle_secs: u64,
    /// Object-created notifications (S3 event JSON, plain, in an SNS
    /// envelope or from EventBridge) on a JetStream stream or an SQS queue.
    #[serde(default)]
    pub notifications: Option<NotificationConfig>,
}

/// `[sources.NAME.notifications]`: either `sqs` (an SQS queue) or `url` and
/// `stream` (a JetStream stream).
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationConfig {
    /// SQS: the URL of the queue S3 sends notifications to (directly,
    /// through an SNS topic, raw or not, or through EventBridge). Messages
    /// are deleted once the objects they announce are recorded.
    #[serde(default)]
    pub sqs: Option<String>,
    /// SQS: the region. Default: `AWS_REGION`, the profile's, or the one
    /// the queue URL names.
    #[serde(default)]
    pub region: Option<String>,
    /// SQS: the endpoint. Default: `AWS_ENDPOINT_URL_SQS`,
    /// `AWS_ENDPOINT_URL`, AWS's, or an emulator's queue URL's host.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// JetStream: `nats://host:4222`.
    #[serde(default)]
    pub url: Option<sluice_core::Secret>,
    /// JetStream: the stream the notifications are published to (it must exist).
    #[serde(default)]
    pub stream: Option<String>,
    /// JetStream: only notifications on subjects matching this filter.
    #[serde(default)]
    pub subject: Option<String>,
    /// JetStream: the durable consumer's name. Default: `sluice-<source name>-notifications`.
    #[serde(default)]
    pub consumer: Option<String>,
}

/// Where notifications come from, as checked.
pub(crate) enum NotificationInbox<'a> {
    Sqs {
        queue_url: &'a str,
        target: AwsTarget,
    },
    JetStream {
        url: &'a sluice_core::Secret,
        stream: &'a str,
        subject: Option<&'a str>,
        consumer: Option<&'a str>,
    },
}

impl NotificationConfig {
    /// The inbox the keys describe; an error names the keys that do not fit.
    pub(crate) fn inbox(&self) -> Result<NotificationInbox<'_>, String> {
        let jetstream_keys = [
            ("url", self.url.is_some()),
            ("stream", self.stream.is_some()),
            ("subject", self.subject.is_some()),
            ("consumer", self.consumer.is_some()),
        ];
        match (&self.sqs, &self.url, &self.stream) {
            (Some(queue_url), _, _) => {
                if let Some((key, _)) = jetstream_keys.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "notifications.{key}: is for JetStream notifications; with sqs = \"...\" only region and endpoint are allowed"
                    ));
                }
                crate::sources::sqs::check_queue_url("notifications.sqs", queue_url)?;
                let target = AwsTarget {
                    region: self.region.clone(),
                    endpoint: self.endpoint.clone(),
                    resource_url: Some(queue_url.clone()),
                };
                target.validate("notifications.")?;
                Ok(NotificationInbox::Sqs { queue_url, target })
            }
            (None, Some(url), Some(stream)) => {
                if self.region.is_some() || self.endpoint.is_some() {
                    return Err("notifications.region and notifications.endpoint: are for SQS notifications (sqs = \"https://...\")".into());
                }
                crate::sources::nats::check_endpoint("notifications.", url, stream, self.consumer.as_deref())?;
                Ok(NotificationInbox::JetStream {
                    url,
                    stream,
                    subject: self.subject.as_deref(),
                    consumer: self.consumer.as_deref(),
                })
            }
            _ => Err("notifications: give sqs = \"https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE\", or url = \"nats://...\" and stream = \"...\"".into()),
        }
    }
}

/// How an object's bytes become events. Gzip is recognised by its magic
/// bytes whatever the name, and unpacked first.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectFormat {
    /// By the name without `.gz`: `.csv` is CSV, `.json` a JSON array, anything else NDJSON.
    #[default]
    Auto,
    Ndjson,
    JsonArray,
    /// A header row, then one event per row: an object of strings, empty cells left out.
    Csv,
}

impl ObjectFormat {
    /// The format for `key` (`auto` decided by name).
    pub fn for_key(self, key: &str) -> ObjectFormat {
        if self != ObjectFormat::Auto {
            return self;
        }
        let name = key.strip_suffix(".gz").unwrap_or(key).to_ascii_lowercase();
        if name.ends_with(".csv") {
            ObjectFormat::Csv
        } else if name.ends_with(".json") {
            ObjectFormat::JsonArray
        } else {
            ObjectFormat::Ndjson
        }
    }
}

fn default_pattern() -> String {
    "*".into()
}
fn default_sweep_interval_secs() -> u64 {
    300
}
fn default_pull_interval_secs() -> u64 {
    1
}
fn default_objects_per_pull() -> usize {
    10
}
fn default_visibility_timeout_secs() -> u64 {
    300
}
fn default_max_attempts() -> u32 {
    5
}
/// The default before the ledger kept each version's batch size: what
/// versions found then were cut with, unless the config gave a size.
pub(super) const BATCH_BYTES_BEFORE_LEDGER: usize = 1024 * 1024;
fn default_settle_secs() -> u64 {
    1
}

impl ObjectsSourceConfig {
    /// The batch size versions found now are cut with.
    pub fn batch_bytes(&self) -> usize {
        self.max_batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES)
    }

    /// The batch size a version found before the ledger kept sizes was cut with.
    pub(super) fn batch_bytes_before_ledger(&self) -> usize {
        self.max_batch_bytes.unwrap_or(BATCH_BYTES_BEFORE_LEDGER)
    }
}

impl SourceSpec for ObjectsSourceConfig {
    fn validate(&self) -> Result<(), String> {
        glob::Pattern::new(&self.pattern)
            .map_err(|e| format!("pattern: {:?} is not a glob pattern ({e})", self.pattern))?;
        for (key, value) in [
            ("sweep_interval_secs", self.sweep_interval_secs),
            ("pull_interval_secs", self.pull_interval_secs),
            ("visibility_timeout_secs", self.visibility_timeout_secs),
            ("objects_per_pull", self.objects_per_pull as u64),
            ("max_attempts", u64::from(self.max_attempts)),
        ] {
            if value == 0 {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        if self.max_batch_bytes.is_some_and(|b| b < 1024) {
            return Err("max_batch_bytes: must be at least 1024".into());
        }
        if let Some(n) = &self.notifications {
            n.inbox()?;
        }
        Ok(())
    }

    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        let location = env.location(&self.uri, &self.storage_options)?;
        if self.notifications.is_some() && location.is_local {
            return Err("notifications: S3 event notifications need uri = \"s3://bucket/prefix\"; a local folder is found by its sweep".into());
        }
        self.uri = location.url;
        Ok(())
    }

    fn max_batch_bytes(&self) -> Option<usize> {
        Some(self.batch_bytes())
    }

    fn fit_default_batches(&mut self, max: usize) {
        self.max_batch_bytes.get_or_insert(DEFAULT_BATCH_BYTES.min(max));
    }

    fn build(&self, env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        let bucket = self
            .uri
            .strip_prefix("s3://")
            .map(|rest| rest.split('/').next().unwrap_or_default().to_string());
        let (store, prefix) = env.object_store(&self.uri, &self.storage_options)?;
        Ok(Box::new(ObjectsSource::new(self.clone(), store, prefix, bucket)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_format_goes_by_the_name_without_gz() {
        let auto = ObjectFormat::Auto;
        assert_eq!(auto.for_key("a/b.csv.gz"), ObjectFormat::Csv);
        assert_eq!(auto.for_key("a/b.JSON"), ObjectFormat::JsonArray);
        assert_eq!(auto.for_key("a/b.ndjson.gz"), ObjectFormat::Ndjson);
        assert_eq!(auto.for_key("firehose-2026-11-23-10"), ObjectFormat::Ndjson);
        assert_eq!(ObjectFormat::Csv.for_key("x.json"), ObjectFormat::Csv);
    }

    #[test]
    fn notifications_come_from_sqs_or_jetstream_and_the_keys_must_fit() {
        let inbox = |text: &str| -> Result<(), String> {
            let n: NotificationConfig = toml::from_str(text).map_err(|e| e.to_string())?;
            n.inbox().map(|_| ())
        };
        let sqs = "sqs = \"https://sqs.eu-west-1.amazonaws.com/123456789012/landing\"";
        inbox(sqs).unwrap();
        inbox(&format!(
            "{sqs}\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:4566\""
        ))
        .unwrap();
        inbox("url = \"nats://127.0.0.1:4222\"\nstream = \"S3_EVENTS\"").unwrap();
        assert_eq!(
            inbox(&format!("{sqs}\nstream = \"S3_EVENTS\"")).unwrap_err(),
            "notifications.stream: is for JetStream notifications; with sqs = \"...\" only region and endpoint are allowed"
        );
        assert!(
            inbox("url = \"nats://127.0.0.1:4222\"\nstream = \"S\"\nregion = \"eu-west-1\"")
                .unwrap_err()
                .starts_with("notifications.region and notifications.endpoint: are for SQS")
        );
        assert!(
            inbox("url = \"nats://127.0.0.1:4222\"")
                .unwrap_err()
                .starts_with("notifications: give sqs")
        );
        assert!(
            inbox("sqs = \"landing\"")
                .unwrap_err()
                .starts_with("notifications.sqs: \"landing\" is not an SQS queue URL")
        );
    }
}
