//! The one retry policy: exponential backoff with "equal jitter" (half the
//! delay fixed, half random), so replicas that failed together do not
//! retry together. Every retry loop in Sluice (sink flushes, queue
//! operations, upstream pulls) takes its delays from a [`Backoff`]; the
//! caller sleeps (this crate has no runtime).

use std::time::Duration;

/// Delays that double from `first` up to `max`, jittered; `reset` after a
/// success starts again from `first`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay before the next attempt (between half of the current
    /// step and the whole of it), and the step doubled for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        let steps = [200, 400, 800, 1000, 1000];
        let mut seen = Vec::new();
        for step in steps {
            let d = b.next_delay();
            let step = Duration::from_millis(step);
            assert!(d >= step / 2 && d <= step, "{d:?} outside [{:?}, {step:?}]", step / 2);
            seen.push(d);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
        let mut other = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let draws: std::collections::BTreeSet<Duration> = (0..20).map(|_| other.next_delay()).collect();
        assert!(draws.len() > 1, "jittered: {draws:?}");
    }
}
