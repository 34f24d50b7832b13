//! A value from a pipeline file that must never be printed: a connection
//! URL with a password, a key. `Debug` shows `Secret(***)`, there is no
//! `Display`, and the value is read only through [`Secret::expose`], so a
//! config struct printed in a log or an error leaks nothing.

use std::fmt;

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
    }
}
