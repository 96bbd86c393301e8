//! Exponential back-off: how long the n-th retry waits, the initial delay doubling per attempt up
//! to a ceiling. The work queue (client-go's per-item exponential limiter), the scheduling queue
//! (upstream's pod back-off) and the Job and DaemonSet controllers' failed-pod back-off each keep
//! their own parameters and attempt counts.

use std::time::Duration;

/// The first wait and the longest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The wait after `attempts` failed attempts: `initial` after the first (and for 0), doubling
    /// with each further one, never more than `max`. Pure; saturates instead of overflowing.
    pub(crate) fn after(&self, attempts: u32) -> Duration {
        self.initial
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_attempt_up_to_the_ceiling() {
        let backoff = Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_secs(1),
        };
        assert_eq!(backoff.after(0), Duration::from_millis(5));
        assert_eq!(backoff.after(1), Duration::from_millis(5));
        assert_eq!(backoff.after(2), Duration::from_millis(10));
        assert_eq!(backoff.after(8), Duration::from_millis(640));
        assert_eq!(backoff.after(9), Duration::from_secs(1));
        assert_eq!(backoff.after(u32::MAX), Duration::from_secs(1));
    }
}
