//! Reconnection delays: exponential, capped, with jitter applied after the cap.
//!
//! The ceiling for attempt `n` is `min(cap, base * 2^n)`; the delay is drawn uniformly from
//! `[ceiling * (1 - jitter), ceiling]`. Because the jitter is applied after the cap, clients
//! that have all reached the cap still spread out instead of retrying in lockstep. The attempt
//! counter saturates, so there is no cliff (no overflow, no zero delay) after many failures.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Shape of the backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// Ceiling of the first retry.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
    /// Fraction of the ceiling that is randomized, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            jitter: 0.5,
        }
    }
}

/// Backoff state for one connection.
#[derive(Debug)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            attempt: 0,
            rng: StdRng::from_entropy(),
        }
    }

    /// Deterministic jitter, for tests.
    pub fn with_seed(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            attempt: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Failures since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The un-jittered ceiling for a given attempt number (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.config
            .base
            .saturating_mul(factor)
            .min(self.config.cap)
            .max(Duration::from_millis(1))
    }

    /// The delay before the next attempt; counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay_for(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// A jittered delay for a given attempt number, without counting it.
    pub fn delay_for(&mut self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let low = 1.0 - jitter;
        let factor = if jitter > 0.0 {
            self.rng.gen_range(low..=1.0)
        } else {
            1.0
        };
        ceiling.mul_f64(factor).max(Duration::from_millis(1))
    }

    /// Back to the first delay, after a connection that stayed up.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
            jitter: 0.5,
        }
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff::with_seed(cfg(), 1);
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(7), Duration::from_secs(10));
        assert_eq!(b.ceiling(1000), Duration::from_secs(10));
    }

    #[test]
    fn jitter_is_applied_after_the_cap_so_capped_clients_spread_out() {
        // A thousand clients that have all failed long enough to reach the cap.
        let mut delays = Vec::new();
        for seed in 0..1000u64 {
            let mut b = Backoff::with_seed(cfg(), seed);
            for _ in 0..20 {
                b.next_delay();
            }
            delays.push(b.next_delay());
        }
        let cap = Duration::from_secs(10);
        assert!(delays.iter().all(|d| *d <= cap && *d >= cap / 2));
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(
            *max - *min > Duration::from_secs(4),
            "spread {min:?}..{max:?}"
        );
        let mut distinct: Vec<_> = delays.iter().map(|d| d.as_millis()).collect();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() > 500,
            "only {} distinct delays",
            distinct.len()
        );
    }

    #[test]
    fn no_cliff_after_very_many_failures() {
        let mut b = Backoff::with_seed(cfg(), 7);
        for _ in 0..100_000 {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(50));
            assert!(d <= Duration::from_secs(10));
        }
        assert!(b.attempt() >= 100_000);
        let d = b.next_delay();
        assert!(d >= Duration::from_secs(5), "{d:?}");
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::with_seed(cfg(), 3);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        let d = b.next_delay();
        assert!(d <= Duration::from_millis(100) && d >= Duration::from_millis(50));
    }
}
