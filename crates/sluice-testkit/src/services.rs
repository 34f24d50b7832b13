//! The services integration tests talk to, each named by an environment
//! variable with the machine's default:
//!
//! | service | variable | default |
//! |---|---|---|
//! | PostgreSQL | `SLUICE_TEST_POSTGRES` | `postgres://postgres@127.0.0.1:5432/test` |
//! | Redis | `SLUICE_TEST_REDIS` | `redis://127.0.0.1:6379` |
//! | NATS JetStream | `SLUICE_TEST_NATS` | `nats://127.0.0.1:4222` |
//! | S3 (moto) | `SLUICE_TEST_S3` | `http://127.0.0.1:4566` |
//! | AWS: SQS, SNS, S3 notifications, Kinesis (moto) | `SLUICE_TEST_AWS` | `http://127.0.0.1:4566` |
//! | Kinesis resharding (kinesalite) | `SLUICE_TEST_KINESALITE` | `http://127.0.0.1:4567` |
//!
//! `postgres()` and friends return the URL when something listens there.
//! When nothing does, the test skips (prints why and returns `None`), unless
//! `SLUICE_TEST_REQUIRE_SERVICES` is set: then it fails, so a run that must
//! cover everything (`scripts/test`, CI) cannot pass by skipping.

use std::{
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

/// A backing service of the integration tests.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Postgres,
    Redis,
    Nats,
    S3,
    /// moto's AWS services (SQS, SNS, S3 notifications) on one endpoint.
    Aws,
    /// kinesalite's Kinesis, which ends a split shard's iterator as AWS does.
    Kinesalite,
}

impl Service {
    fn variable(self) -> &'static str {
        match self {
            Service::Postgres => "SLUICE_TEST_POSTGRES",
            Service::Redis => "SLUICE_TEST_REDIS",
            Service::Nats => "SLUICE_TEST_NATS",
            Service::S3 => "SLUICE_TEST_S3",
            Service::Aws => "SLUICE_TEST_AWS",
            Service::Kinesalite => "SLUICE_TEST_KINESALITE",
        }
    }

    fn default_url(self) -> &'static str {
        match self {
            Service::Postgres => "postgres://postgres@127.0.0.1:5432/test",
            Service::Redis => "redis://127.0.0.1:6379",
            Service::Nats => "nats://127.0.0.1:4222",
            Service::S3 | Service::Aws => "http://127.0.0.1:4566",
            Service::Kinesalite => "http://127.0.0.1:4567",
        }
    }

    /// The configured URL, whether or not anything answers there.
    pub fn url(self) -> String {
        std::env::var(self.variable()).unwrap_or_else(|_| self.default_url().into())
    }

    /// The URL when the service accepts a TCP connection; otherwise skips
    /// (`None`, with a message) or, when services are required, panics.
    pub fn available(self) -> Option<String> {
        let url = self.url();
        if listening(&url) {
            return Some(url);
        }
        let why = format!(
            "{self:?} is not reachable at {url} (set {} or run scripts/test, which starts it)",
            self.variable()
        );
        assert!(std::env::var_os("SLUICE_TEST_REQUIRE_SERVICES").is_none(), "{why}");
        eprintln!("skipping: {why}");
        None
    }
}

/// PostgreSQL's URL, or `None` (skip) when it is not running.
pub fn postgres() -> Option<String> {
    Service::Postgres.available()
}

/// Redis's URL, or `None` (skip) when it is not running.
pub fn redis() -> Option<String> {
    Service::Redis.available()
}

/// The NATS (JetStream) URL, or `None` (skip) when it is not running.
pub fn nats() -> Option<String> {
    Service::Nats.available()
}

/// The S3 endpoint, or `None` (skip) when it is not running.
pub fn s3() -> Option<String> {
    Service::S3.available()
}

/// The endpoint of the AWS emulator (moto), or `None` (skip) when it is not running.
pub fn aws() -> Option<String> {
    Service::Aws.available()
}

/// Whether something accepts TCP connections at the URL's host and port.
/// The `host:port` of a service URL (without user or password).
pub fn host_port(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    Some(authority.rsplit_once('@').map_or(authority, |(_, hp)| hp))
}

fn listening(url: &str) -> bool {
    let Some(host_port) = host_port(url) else {
        return false;
    };
    let Ok(addresses) = host_port.to_socket_addrs() else {
        return false;
    };
    addresses
        .into_iter()
        .any(|address| TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_not_listening_and_an_open_one_is() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening(&format!("postgres://user:pw@127.0.0.1:{port}/db")));
        drop(listener);
        assert!(!listening(&format!("redis://127.0.0.1:{port}")));
        assert!(!listening("not a url"));
    }
}
