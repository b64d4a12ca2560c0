//! The retry policy: what an attempt's ending means for its run — whether it used up an
//! attempt, when the next one may start, and when the run has failed for good.
//!
//! Pure decisions, apart from the dispatcher that acts on them, so each rule is checked
//! without a worker, a store or a clock.

use std::time::Duration;

use crate::executor::Ending;
use crate::store::Failure;

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

/// How often a run is tried, and how long apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per run (broken attempts are retried until this many have broken).
    pub max_attempts: u32,
    /// Delays between attempts.
    pub backoff: Backoff,
}

/// What becomes of a run whose attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The attempt goes on without the scheduler; the next call reattaches to it.
    Detached,
    /// The run is done.
    Finished,
    /// Stopped because the scheduler asked: resumable by the next call, no attempt used. A
    /// failure is that of an attempt that broke on its way out, kept so `status` shows it.
    Interrupted {
        /// Why the attempt broke while stopping, if it did.
        failure: Option<Failure>,
    },
    /// Stopped by someone else (a shutdown, a preemption): queued again at once, no attempt
    /// used.
    Resume,
    /// Failed in a way another attempt cannot fix.
    Failed(Failure),
    /// Broke; attempt `attempt` of `of` may start once `delay` has passed.
    Retry {
        /// Why this attempt broke.
        failure: Failure,
        /// The number of the next attempt.
        attempt: u32,
        /// Attempts allowed.
        of: u32,
        /// How long the next attempt waits.
        delay: Duration,
    },
    /// Broke, and every allowed attempt has now broken: failed for good.
    Exhausted {
        /// Why the last attempt broke.
        failure: Failure,
        /// Attempts that broke.
        attempts: u32,
    },
}

/// The ending the scheduler holds an attempt to, from what the executor reported and what the
/// scheduler saw of its events: a protocol violation the scheduler found (`protocol`) fails
/// it whatever the exit; a clean exit without a `finished` event broke the protocol's promise.
pub fn attempt_ending(reported: Ending, saw_finished: bool, protocol: Option<String>) -> Ending {
    match (reported, protocol) {
        (_, Some(reason)) => Ending::Failed(Failure::Protocol { reason }),
        (Ending::Exited, None) if !saw_finished => Ending::Broke(Failure::ExitedEarly),
        (ending, None) => ending,
    }
}

impl RetryPolicy {
    /// Judges `ending`; `stopping` says whether the scheduler asked its attempts to stop, and
    /// `broken` counts the run's attempts that broke so far in this call — a broken attempt
    /// judged outside a stop is added to it.
    pub fn judge(&self, ending: Ending, stopping: bool, broken: &mut u32) -> Verdict {
        match ending {
            Ending::Detached => Verdict::Detached,
            Ending::Exited => Verdict::Finished,
            Ending::Interrupted if stopping => Verdict::Interrupted { failure: None },
            Ending::Interrupted => Verdict::Resume,
            Ending::Failed(failure) => Verdict::Failed(failure),
            // Broken by the stop itself (killed after the grace): not the run's fault.
            Ending::Broke(failure) if stopping => Verdict::Interrupted { failure: Some(failure) },
            Ending::Broke(failure) => {
                *broken += 1;
                if *broken < self.max_attempts {
                    let attempt = *broken + 1;
                    let delay = self.backoff.delay(attempt);
                    Verdict::Retry { failure, attempt, of: self.max_attempts, delay }
                } else {
                    Verdict::Exhausted { failure, attempts: self.max_attempts }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRASH: Failure = Failure::Crashed { exit_code: 3 };

    fn policy(max_attempts: u32) -> RetryPolicy {
        let backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_millis(250) };
        RetryPolicy { max_attempts, backoff }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_millis(500) };
        let d: Vec<u128> = (2..7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 500, 500]);
        assert_eq!(Backoff::default().delay(40), Duration::from_secs(60));
    }

    #[test]
    fn broken_attempts_are_retried_with_growing_delays_until_the_last_fails_for_good() {
        let p = policy(4);
        let mut broken = 0;
        let verdicts: Vec<Verdict> =
            (0..4).map(|_| p.judge(Ending::Broke(CRASH), false, &mut broken)).collect();
        let retry =
            |attempt, ms| Verdict::Retry { failure: CRASH, attempt, of: 4, delay: Duration::from_millis(ms) };
        assert_eq!(
            verdicts,
            vec![
                retry(2, 100),
                retry(3, 200),
                retry(4, 250),
                Verdict::Exhausted { failure: CRASH, attempts: 4 }
            ]
        );
        assert_eq!(broken, 4);
    }

    #[test]
    fn one_allowed_attempt_fails_at_the_first_break() {
        let mut broken = 0;
        let v = policy(1).judge(Ending::Broke(CRASH), false, &mut broken);
        assert_eq!(v, Verdict::Exhausted { failure: CRASH, attempts: 1 });
    }

    #[test]
    fn a_reported_failure_is_not_retried_and_uses_no_attempt() {
        let mut broken = 0;
        let failure = Failure::Reported { reason: "diverged".into() };
        let v = policy(3).judge(Ending::Failed(failure.clone()), false, &mut broken);
        assert_eq!((v, broken), (Verdict::Failed(failure), 0));
    }

    #[test]
    fn an_interruption_from_outside_resumes_without_using_an_attempt() {
        let mut broken = 0;
        assert_eq!(policy(1).judge(Ending::Interrupted, false, &mut broken), Verdict::Resume);
        assert_eq!(broken, 0);
    }

    #[test]
    fn endings_during_a_stop_leave_the_run_interrupted_without_using_an_attempt() {
        let p = policy(1);
        let mut broken = 0;
        assert_eq!(p.judge(Ending::Interrupted, true, &mut broken), Verdict::Interrupted { failure: None });
        let killed = Failure::Signaled { signal: 9 };
        let v = p.judge(Ending::Broke(killed.clone()), true, &mut broken);
        assert_eq!((v, broken), (Verdict::Interrupted { failure: Some(killed) }, 0));
    }

    #[test]
    fn clean_exits_finish_and_detached_attempts_stay_detached() {
        let mut broken = 0;
        assert_eq!(policy(2).judge(Ending::Exited, false, &mut broken), Verdict::Finished);
        assert_eq!(policy(2).judge(Ending::Detached, true, &mut broken), Verdict::Detached);
    }

    #[test]
    fn a_clean_exit_without_a_finished_event_broke_the_protocol() {
        assert_eq!(attempt_ending(Ending::Exited, false, None), Ending::Broke(Failure::ExitedEarly));
        assert_eq!(attempt_ending(Ending::Exited, true, None), Ending::Exited);
    }

    #[test]
    fn a_protocol_violation_fails_the_attempt_whatever_its_exit() {
        let reason = "event 3 differs".to_string();
        let failed = Ending::Failed(Failure::Protocol { reason: reason.clone() });
        assert_eq!(attempt_ending(Ending::Exited, true, Some(reason.clone())), failed);
        assert_eq!(attempt_ending(Ending::Broke(CRASH), false, Some(reason)), failed);
    }

    #[test]
    fn other_endings_pass_unchanged() {
        assert_eq!(attempt_ending(Ending::Interrupted, false, None), Ending::Interrupted);
        assert_eq!(attempt_ending(Ending::Broke(CRASH), false, None), Ending::Broke(CRASH));
    }
}
