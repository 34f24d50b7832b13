//! A collector's request-rate limit: a token bucket per source. A request
//! takes one token; with none left it is answered 429 with `Retry-After`
//! set to the whole seconds until the next token.
//!
//! Written here rather than taken from `governor`: one bucket behind a
//! mutex is all a source needs, and it keeps that crate's dependencies out
//! of the build.

use std::{sync::Mutex, time::Instant};

use serde::Deserialize;

/// `rate_limit = { requests_per_sec = 100, burst = 200 }`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second accepted on average.
    pub requests_per_sec: f64,
    /// Requests accepted at once after a quiet spell (at least 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

impl RateLimitConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.requests_per_sec.is_finite() && self.requests_per_sec > 0.0) {
            return Err(format!(
                "rate_limit.requests_per_sec: {} must be a number above 0",
                self.requests_per_sec
            ));
        }
        if self.burst == 0 {
            return Err("rate_limit.burst: must be at least 1".into());
        }
        Ok(())
    }
}

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> RateLimiter {
        let burst = f64::from(config.burst);
        RateLimiter {
            rate: config.requests_per_sec,
            burst,
            bucket: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token, or says in how many whole seconds one will be there.
    pub fn take(&self) -> Result<(), u64> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Result<(), u64> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, since) = *bucket;
        let tokens = (tokens + now.saturating_duration_since(since).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            Ok(())
        } else {
            *bucket = (tokens, now);
            Err(((1.0 - tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = RateLimiter::new(RateLimitConfig {
            requests_per_sec: 2.0,
            burst: 3,
        });
        let t0 = Instant::now();
        assert_eq!((0..3).filter(|_| limiter.take_at(t0).is_ok()).count(), 3);
        assert_eq!(limiter.take_at(t0), Err(1));
        // Half a second brings one token back, not more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take_at(t1), Ok(()));
        assert_eq!(limiter.take_at(t1), Err(1));
        // A long pause refills to the burst only.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| limiter.take_at(t2).is_ok()).count(), 3);
    }

    #[test]
    fn retry_after_counts_whole_seconds_to_the_next_token() {
        let limiter = RateLimiter::new(RateLimitConfig {
            requests_per_sec: 0.25,
            burst: 1,
        });
        let t0 = Instant::now();
        assert_eq!(limiter.take_at(t0), Ok(()));
        assert_eq!(limiter.take_at(t0 + Duration::from_secs(1)), Err(3));
    }
}
