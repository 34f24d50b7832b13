//! A client of a running engine's API (`[api]` of the pipeline file), for
//! the commands that read it: `status` and `tail`.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::Pipeline;

/// How long a request may take (a streamed answer: its connection).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The engine's API of `pipeline`, as configured.
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    /// `None` when the pipeline has no `[api]`.
    pub fn of(pipeline: &Pipeline) -> Result<Option<Api>> {
        let Some(api) = &pipeline.config.api else {
            return Ok(None);
        };
        let mut client = reqwest::Client::builder().connect_timeout(ANSWER_WITHIN);
        let scheme = match &api.tls {
            Some(tls) => {
                // The API's own certificate is trusted: a self-signed one, or
                // a chain whose first certificate is the one served.
                let pem = std::fs::read(&tls.cert_file)
                    .with_context(|| format!("api.tls.cert_file {}", tls.cert_file.display()))?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                    client = client.add_root_certificate(cert);
                }
                "https"
            }
            None => "http",
        };
        let address = api.address;
        let host = if address.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if address.is_ipv6() {
            format!("[{}]", address.ip())
        } else {
            address.ip().to_string()
        };
        Ok(Some(Api {
            base: format!("{scheme}://{host}:{}", address.port()),
            client: client.build()?,
        }))
    }

    /// `path`'s status and body; `None` when nothing answers.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = self.request(path).timeout(ANSWER_WITHIN).send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// A request to `path` (no time limit: for a streamed answer).
    pub fn request(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }
}
