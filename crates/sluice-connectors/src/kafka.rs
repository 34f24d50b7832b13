//! What the Kafka source and sink share: the brokers, the security
//! settings (secrets from the environment only, never from the file) and
//! extra librdkafka options, made a librdkafka client configuration.
//!
//! librdkafka (bundled, built from source by `rdkafka-sys`) brings its own
//! TLS stack, OpenSSL from the system; the rest of Sluice uses rustls.

use std::{collections::BTreeMap, path::PathBuf};

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::sources::LoadEnv;

/// `security = { ... }`: how clients reach a managed Kafka.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: SecurityProtocol,
    /// With `sasl_*`: `plain`, `scram_sha_256` or `scram_sha_512`.
    #[serde(default)]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// With `sasl_*`: the environment variable holding the user name.
    #[serde(default)]
    pub username_env: Option<String>,
    /// With `sasl_*`: the environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// With `ssl`/`sasl_ssl`: CA certificates (PEM) to verify brokers by,
    /// instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// With `ssl`/`sasl_ssl`: a client certificate (PEM), for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaslMechanism {
    Plain,
    #[serde(rename = "scram_sha_256")]
    ScramSha256,
    #[serde(rename = "scram_sha_512")]
    ScramSha512,
}

impl SecurityProtocol {
    fn librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

impl SaslMechanism {
    fn librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaSecurity {
    pub fn validate(&self) -> Result<(), String> {
        let sasl = self.protocol.sasl();
        if sasl && (self.sasl_mechanism.is_none() || self.username_env.is_none() || self.password_env.is_none()) {
            return Err("security: a sasl_* protocol needs sasl_mechanism, username_env and password_env".into());
        }
        if !sasl && (self.sasl_mechanism.is_some() || self.username_env.is_some() || self.password_env.is_some()) {
            return Err("security: sasl_mechanism, username_env and password_env need a sasl_* protocol".into());
        }
        let files = self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
        if files && !self.protocol.tls() {
            return Err("security: ca_file, cert_file and key_file need protocol ssl or sasl_ssl".into());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("security: cert_file and key_file go together".into());
        }
        Ok(())
    }

    /// Makes the certificate paths relative to the pipeline file absolute.
    pub fn resolve(&mut self, env: &dyn LoadEnv) {
        self.resolve_paths(|p| env.path(p));
    }

    /// Each certificate path made `absolute(path)`.
    pub fn resolve_paths(&mut self, absolute: impl Fn(&str) -> PathBuf) {
        for file in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file]
            .into_iter()
            .flatten()
        {
            *file = absolute(&file.to_string_lossy());
        }
    }
}

/// Settings Sluice sets itself; `librdkafka_options` may not change them.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
];

/// Checks `librdkafka_options` keys.
pub fn validate_options(options: &BTreeMap<String, String>) -> Result<(), String> {
    if let Some(key) = options.keys().find(|k| MANAGED.contains(&k.as_str())) {
        return Err(format!(
            "librdkafka_options: {key:?} is set by Sluice (use brokers, group_id, security); not allowed: {MANAGED:?}"
        ));
    }
    Ok(())
}

/// A client configuration for `brokers` with `security` (secrets read from
/// the environment now) and `options`; an error names the missing variable.
pub fn client_config(
    brokers: &str,
    security: Option<&KafkaSecurity>,
    options: &BTreeMap<String, String>,
) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in options {
        config.set(key, value);
    }
    let Some(security) = security else {
        return Ok(config);
    };
    config.set("security.protocol", security.protocol.librdkafka());
    if let Some(mechanism) = security.sasl_mechanism {
        config.set("sasl.mechanism", mechanism.librdkafka());
    }
    for (key, variable) in [
        ("sasl.username", &security.username_env),
        ("sasl.password", &security.password_env),
    ] {
        if let Some(variable) = variable {
            let value = std::env::var(variable)
                .map_err(|_| format!("security: the environment variable {variable} is not set"))?;
            config.set(key, value);
        }
    }
    for (key, file) in [
        ("ssl.ca.location", &security.ca_file),
        ("ssl.certificate.location", &security.cert_file),
        ("ssl.key.location", &security.key_file),
    ] {
        if let Some(file) = file {
            config.set(key, file.to_string_lossy());
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(text: &str) -> KafkaSecurity {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn sasl_needs_its_mechanism_and_both_variables() {
        let ok = security(
            "protocol = \"sasl_ssl\"\nsasl_mechanism = \"scram_sha_512\"\nusername_env = \"U\"\npassword_env = \"P\"",
        );
        assert!(ok.validate().is_ok());
        let missing = security("protocol = \"sasl_plaintext\"\nsasl_mechanism = \"plain\"\nusername_env = \"U\"");
        assert!(missing.validate().unwrap_err().contains("password_env"));
        let stray = security("protocol = \"ssl\"\nusername_env = \"U\"");
        assert!(stray.validate().unwrap_err().contains("need a sasl_* protocol"));
        let files = security("protocol = \"plaintext\"\nca_file = \"ca.pem\"");
        assert!(files.validate().unwrap_err().contains("need protocol ssl"));
    }

    #[test]
    fn secrets_come_from_the_environment_and_managed_keys_stay_managed() {
        let s = security(
            "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"scram_sha_256\"\nusername_env = \"SLUICE_TEST_KAFKA_USER_UNSET\"\npassword_env = \"SLUICE_TEST_KAFKA_PASSWORD_UNSET\"",
        );
        let e = client_config("127.0.0.1:9092", Some(&s), &BTreeMap::new()).unwrap_err();
        assert!(e.contains("SLUICE_TEST_KAFKA_USER_UNSET is not set"), "{e}");
        let options = BTreeMap::from([("enable.auto.commit".to_string(), "true".to_string())]);
        assert!(validate_options(&options).unwrap_err().contains("enable.auto.commit"));
        let config = client_config("b:1", None, &BTreeMap::from([("linger.ms".into(), "5".into())])).unwrap();
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:1"));
    }
}
