//! Values from a pipeline file that must never be printed: a connection
//! URL with a password, a key ([`Secret`]), and object-store options, some
//! of which are credentials ([`StorageOptions`]). `Debug` hides the values
//! and there is no `Display`, so a config struct printed in a log or an
//! error leaks nothing.

use std::{collections::BTreeMap, fmt, ops::Deref};

use serde::Deserialize;

#[derive(Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value with a URL's user and password replaced by `***`, for an
    /// error message that must say which URL is meant.
    pub fn redacted(&self) -> String {
        match self.0.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                match rest[..authority_end].rfind('@') {
                    Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                    None => self.0.clone(),
                }
            }
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

/// Options for an object store (`endpoint`, `region`,
/// `aws_secret_access_key`, ...). Reads as the map it holds; `Debug` shows
/// the keys only.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct StorageOptions(BTreeMap<String, String>);

impl Deref for StorageOptions {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl From<BTreeMap<String, String>> for StorageOptions {
    fn from(options: BTreeMap<String, String>) -> StorageOptions {
        StorageOptions(options)
    }
}

impl From<StorageOptions> for BTreeMap<String, String> {
    fn from(options: StorageOptions) -> BTreeMap<String, String> {
        options.0
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "***"))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Config {
        #[allow(dead_code)]
        url: Secret,
    }

    #[test]
    fn a_secret_reads_like_a_string_and_never_prints() {
        let c: Config = serde_json::from_str(r#"{"url": "postgres://app:hunter2@db/app"}"#).unwrap();
        assert_eq!(c.url.expose(), "postgres://app:hunter2@db/app");
        let printed = format!("{c:?} {c:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("Secret(***)"), "{printed}");
        assert_eq!(c.url.redacted(), "postgres://***@db/app");
        assert_eq!(Secret::new("nats://127.0.0.1:4222").redacted(), "nats://127.0.0.1:4222");
        assert_eq!(Secret::new("embedded").redacted(), "embedded");
    }

    #[test]
    fn storage_options_print_their_keys_only() {
        let options: StorageOptions =
            serde_json::from_str(r#"{"endpoint": "http://s3", "aws_secret_access_key": "hunter2"}"#).unwrap();
        assert_eq!(
            options.get("aws_secret_access_key").map(String::as_str),
            Some("hunter2")
        );
        let printed = format!("{options:?}");
        assert_eq!(printed, r#"{"aws_secret_access_key": "***", "endpoint": "***"}"#);
    }
}
