//! The retry schedule: when a deferred message is tried again, and when it has been in the
//! queue long enough to give up (RFC 5321 §4.5.4.1).
//!
//! Pure arithmetic on Unix milliseconds. The caller supplies the randomness for the jitter, so
//! the schedule is deterministic under test and the shard keeps its own generator.

use std::time::Duration;

use crate::config::DeliveryConfig;

/// The largest share of a delay added or removed at random, so that messages deferred together
/// (a next hop that was down) do not all come back in the same instant.
const JITTER_SHARE: f64 = 0.1;

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextAttempt {
    At {
        unix_ms: u64,
    },
    /// Past `max_age`: fail the remaining recipients and bounce.
    Expired,
}

#[derive(Clone, Debug)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    max_age: Duration,
}

impl RetrySchedule {
    pub fn new(config: &DeliveryConfig) -> RetrySchedule {
        debug_assert!(!config.retry_schedule.is_empty(), "validated as non-empty");
        RetrySchedule {
            delays: config.retry_schedule.clone(),
            max_age: config.max_age,
        }
    }

    /// When to try again after the `attempts`-th failed attempt (1 for the first) of a message
    /// received at `received_unix_ms`. `random` is any value from a uniform generator.
    pub fn after_failure(
        &self,
        received_unix_ms: u64,
        attempts: u32,
        now_unix_ms: u64,
        random: u64,
    ) -> NextAttempt {
        let expires = received_unix_ms.saturating_add(self.max_age.as_millis() as u64);
        if now_unix_ms >= expires {
            return NextAttempt::Expired;
        }

        let step = (attempts.max(1) as usize - 1).min(self.delays.len() - 1);
        let delay_ms = self.delays[step].as_millis() as f64;
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64; // uniform in [0, 1)
        let jittered_ms = delay_ms * (1.0 + JITTER_SHARE * (2.0 * unit - 1.0));

        // The last try happens at the expiry time, so a message is never given up on without an
        // attempt close to its deadline.
        let at = now_unix_ms.saturating_add(jittered_ms.max(1.0) as u64);
        NextAttempt::At {
            unix_ms: at.min(expires),
        }
    }

    /// When the message expires.
    pub fn expires_unix_ms(&self, received_unix_ms: u64) -> u64 {
        received_unix_ms.saturating_add(self.max_age.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(delays: &[u64], max_age_s: u64) -> RetrySchedule {
        RetrySchedule {
            delays: delays.iter().map(|s| Duration::from_secs(*s)).collect(),
            max_age: Duration::from_secs(max_age_s),
        }
    }

    const MIDDLE: u64 = 1 << 63; // a random value that gives no jitter

    #[test]
    fn follows_the_steps_then_repeats_the_last() {
        let schedule = schedule(&[60, 300], 86_400);
        let at = |attempts| schedule.after_failure(0, attempts, 1_000, MIDDLE);
        assert_eq!(at(1), NextAttempt::At { unix_ms: 61_000 });
        assert_eq!(at(2), NextAttempt::At { unix_ms: 301_000 });
        assert_eq!(at(9), NextAttempt::At { unix_ms: 301_000 });
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        let schedule = schedule(&[100], 86_400);
        for random in [0, 1 << 40, MIDDLE, u64::MAX] {
            let NextAttempt::At { unix_ms } = schedule.after_failure(0, 1, 0, random) else {
                panic!("not expired");
            };
            assert!((90_000..=110_000).contains(&unix_ms), "{unix_ms}");
        }
    }

    #[test]
    fn expiry_caps_the_last_attempt_and_then_gives_up() {
        let schedule = schedule(&[3_600], 7_200);
        assert_eq!(
            schedule.after_failure(0, 1, 5_000_000, MIDDLE),
            NextAttempt::At { unix_ms: 7_200_000 }
        );
        assert_eq!(
            schedule.after_failure(0, 2, 7_200_000, MIDDLE),
            NextAttempt::Expired
        );
    }
}
