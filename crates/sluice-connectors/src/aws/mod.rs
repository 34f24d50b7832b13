//! Connecting to AWS services: the SDK configuration every AWS-backed
//! source builds its client from.
//!
//! Credentials come only from the SDK's default chain (the `AWS_*`
//! environment, the shared config and credentials files, web identity and
//! container/instance roles), never from the pipeline file. The region is
//! the source's `region`, else the chain's (`AWS_REGION`, the profile), else
//! the one an AWS endpoint URL names (`sqs.eu-west-1.amazonaws.com`). The
//! endpoint is the source's `endpoint`, else the chain's
//! (`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`), else, for a resource
//! URL that is not on `amazonaws.com` (a local emulator such as moto or
//! LocalStack), that URL's scheme, host and port.

pub mod sqs;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Where a source's AWS resource lives and how to reach it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsTarget {
    /// The source's `region`, if set.
    pub region: Option<String>,
    /// The source's `endpoint`, if set.
    pub endpoint: Option<String>,
    /// The resource's own URL (an SQS queue URL), if it has one.
    pub resource_url: Option<String>,
}

impl AwsTarget {
    /// Checks the values alone; errors start with the key, under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "{prefix}endpoint: {endpoint:?} is not an http:// or https:// URL"
            ));
        }
        if let Some(region) = &self.region
            && (region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(format!(
                "{prefix}region: {region:?} is not a region name (like eu-west-1)"
            ));
        }
        Ok(())
    }

    /// The region an AWS endpoint URL names (`https://sqs.eu-west-1.amazonaws.com/...`).
    fn region_in_url(&self) -> Option<String> {
        let host = host_of(self.resource_url.as_deref()?)?;
        let rest = host
            .strip_suffix(".amazonaws.com")
            .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
        let mut labels = rest.split('.');
        let _service = labels.next()?;
        labels.next().map(str::to_string)
    }

    /// The endpoint of a resource URL that is not on AWS (an emulator).
    fn endpoint_in_url(&self) -> Option<String> {
        let url = self.resource_url.as_deref()?;
        let host = host_of(url)?;
        if host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn") {
            return None;
        }
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split('/').next()?;
        Some(format!("{scheme}://{authority}"))
    }

    /// The SDK configuration: credentials and settings from the default
    /// chain, with this target's region and endpoint over them.
    pub async fn sdk_config(&self) -> Result<SdkConfig, String> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let mut config = loader.load().await;
        if config.region().is_none() {
            let region = self
                .region_in_url()
                .ok_or("region: not set, and neither AWS_REGION, the AWS profile nor the resource URL names one")?;
            config = config.into_builder().region(Region::new(region)).build();
        }
        if config.endpoint_url().is_none()
            && let Some(endpoint) = self.endpoint_in_url()
        {
            config = config.into_builder().endpoint_url(endpoint).build();
        }
        Ok(config)
    }
}

/// SDK settings for tests against an emulator at `endpoint`: fixed
/// credentials, `us-east-1` (the sources themselves take only the default
/// chain).
#[cfg(test)]
pub(crate) fn test_sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build()
}

/// The host of `scheme://host[:port]/...`.
fn host_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    Some(host_port.split(':').next().unwrap_or(host_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> AwsTarget {
        AwsTarget {
            resource_url: Some(url.into()),
            ..AwsTarget::default()
        }
    }

    #[test]
    fn region_and_endpoint_read_from_the_resource_url() {
        let aws = target("https://sqs.eu-west-1.amazonaws.com/123456789012/clicks");
        assert_eq!(aws.region_in_url().as_deref(), Some("eu-west-1"));
        assert_eq!(aws.endpoint_in_url(), None);
        let moto = target("http://127.0.0.1:4566/123456789012/clicks");
        assert_eq!(moto.region_in_url(), None);
        assert_eq!(moto.endpoint_in_url().as_deref(), Some("http://127.0.0.1:4566"));
        let localstack = target("http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q");
        assert_eq!(
            localstack.endpoint_in_url().as_deref(),
            Some("http://sqs.us-east-1.localhost.localstack.cloud:4566")
        );
    }

    #[test]
    fn bad_region_and_endpoint_are_named() {
        let bad = AwsTarget {
            endpoint: Some("127.0.0.1:4566".into()),
            ..AwsTarget::default()
        };
        assert_eq!(
            bad.validate("notifications.").unwrap_err(),
            "notifications.endpoint: \"127.0.0.1:4566\" is not an http:// or https:// URL"
        );
        let bad = AwsTarget {
            region: Some("eu west".into()),
            ..AwsTarget::default()
        };
        assert!(bad.validate("").unwrap_err().starts_with("region: \"eu west\""));
    }
}
