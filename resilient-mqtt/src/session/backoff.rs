//! Reconnect delays: bounded exponential backoff with jitter.

use crate::time::Duration;

/// How the client waits between connection attempts.
///
/// Attempt `n` (from 0) waits a random time in `[d/2, d]` with `d = min(initial * 2^n, max)`; a refused CONNACK waits
/// at least `refused_min`. The attempt count goes back to 0 when a connection stayed up for `stable_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct BackoffConfig {
    /// Upper bound of the first delay (default 500 ms, so the first retry is sub-second).
    pub initial: Duration,
    /// Cap of the delay (default 30 s).
    pub max: Duration,
    /// Least delay after the broker refused the CONNECT (default 5 s), so bad credentials do not storm the broker.
    pub refused_min: Duration,
    /// A connection that lasted this long resets the backoff (default 5 s).
    pub stable_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            refused_min: Duration::from_secs(5),
            stable_after: Duration::from_secs(5),
        }
    }
}

/// Backoff state: attempt counter and a small xorshift generator for the jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    pub(crate) config: BackoffConfig,
    attempt: u32,
    rng: u32,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig, seed: u32) -> Self {
        Self {
            config,
            attempt: 0,
            rng: if seed == 0 { 0x9e37_79b9 } else { seed },
        }
    }

    fn next_random(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// The delay before the next attempt; counts the attempt.
    pub(crate) fn next_delay(&mut self, refused: bool) -> Duration {
        let shift = self.attempt.min(20);
        let ceiling = self
            .config
            .initial
            .as_millis()
            .saturating_mul(1u64 << shift)
            .min(self.config.max.as_millis());
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter = if half == 0 {
            0
        } else {
            u64::from(self.next_random()) % (half + 1)
        };
        let mut d = half + jitter;
        if refused {
            d = d.max(self.config.refused_min.as_millis());
        }
        Duration::from_millis(d)
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_retry_is_sub_second_and_delays_grow_to_the_cap() {
        let mut b = Backoff::new(BackoffConfig::default(), 7);
        let first = b.next_delay(false).as_millis();
        assert!((250..=500).contains(&first), "{first}");
        let mut last = 0;
        for _ in 0..30 {
            last = b.next_delay(false).as_millis();
            assert!(last <= 30_000);
        }
        assert!(last >= 15_000, "{last}");
        b.reset();
        assert!(b.next_delay(false).as_millis() <= 500);
    }

    #[test]
    fn jitter_spreads_two_clients_apart() {
        let mut a = Backoff::new(BackoffConfig::default(), 1);
        let mut b = Backoff::new(BackoffConfig::default(), 2);
        let da: [u64; 6] = core::array::from_fn(|_| a.next_delay(false).as_millis());
        let db: [u64; 6] = core::array::from_fn(|_| b.next_delay(false).as_millis());
        assert_ne!(da, db);
    }

    #[test]
    fn refusal_waits_at_least_the_refused_minimum() {
        let mut b = Backoff::new(BackoffConfig::default(), 3);
        assert!(b.next_delay(true).as_millis() >= 5_000);
    }
}
