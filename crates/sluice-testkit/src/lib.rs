//! What Sluice's tests share, so no test reads a service URL, spawns the
//! binary or generates data its own way.
//!
//! * [`services`]: the URL of each backing service (PostgreSQL, Redis, NATS,
//!   S3) and whether it answers; tests of an absent service skip with a
//!   message, unless `SLUICE_TEST_REQUIRE_SERVICES` is set (`scripts/test`
//!   sets it, so CI never skips).
//! * [`process`]: a running `sluice` process (ready wait, SIGTERM, SIGKILL),
//!   free ports, a blocking HTTP GET.
//! * [`data`]: generated clickstream and change events with their oracle,
//!   written where a test wants them.
//! * [`docs`]: generated reference files checked against their generator.
//! * [`floats`]: decimal numbers a float parser must round with care.
//! * [`proxy`]: a TCP proxy that can cut a service off and restore it.
//! * [`tls`]: a certificate authority and server certificates (openssl).
//! * [`tempdir`]: temporary folders removed on drop.

pub mod data;
pub mod docs;
pub mod floats;
pub mod process;
pub mod proxy;
pub mod services;
pub mod tempdir;
pub mod tls;

pub use sluice_gen as generator;
pub use tempdir::{TempDir, tempdir};
