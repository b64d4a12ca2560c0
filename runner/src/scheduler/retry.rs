//! When a broken attempt is tried again.

use std::time::Duration;

/// Exponential back-off between attempts of one run: `base`, `2·base`, `4·base`, … capped at
/// `max`. Waiting lets a transient cause (a full disk being cleaned, memory pressure from
/// another job) pass instead of burning every attempt in a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the second attempt.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// Delay before attempt `next` (2 for the first retry).
    pub fn delay(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_millis(500) };
        let d: Vec<u128> = (2..7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 500, 500]);
        assert_eq!(Backoff::default().delay(40), Duration::from_secs(60));
    }
}
