//! The limits of one attempt in time: silence longer than the heartbeat limit means a hung
//! worker, an attempt past its timeout is asked to stop, and a worker asked to stop that has
//! not ended within its grace is killed.
//!
//! Both executors watch their attempts with it; they decide what an alarm does (a signal, a
//! `scancel`). Every method takes the current instant, so the rules are checked against
//! instants a test chooses, without sleeping.

use tokio::time::Instant;

use crate::executor::Limits;
use crate::store::Failure;

/// A limit that was reached; the two that break the attempt carry the failure to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// Nothing was heard for the heartbeat limit: the worker is hung.
    Silent(Failure),
    /// The attempt ran past its timeout: it should checkpoint and stop.
    TimedOut(Failure),
    /// A stop was asked for and the grace is over: the worker must be killed.
    GraceOver,
}

/// The deadlines of one attempt. Silence and timeout are armed while the worker runs (a
/// queued SLURM job is not silent); the grace deadline is armed by a stop request. Deadlines
/// are added with `checked_add`: a limit too long to represent is no deadline (silence,
/// timeout), so no limit can panic.
#[derive(Clone, Debug)]
pub struct Watchdog {
    limits: Limits,
    silent_at: Option<Instant>,
    timeout_at: Option<Instant>,
    kill_at: Option<Instant>,
}

impl Watchdog {
    /// A watchdog with nothing armed yet.
    pub fn new(limits: Limits) -> Watchdog {
        Watchdog { limits, silent_at: None, timeout_at: None, kill_at: None }
    }

    /// The worker started running at `now`: silence and timeout count from here.
    pub fn started(&mut self, now: Instant) {
        self.silent_at = now.checked_add(self.limits.heartbeat);
        self.timeout_at = self.limits.timeout.and_then(|t| now.checked_add(t));
    }

    /// The worker no longer runs (a requeued SLURM job waits again): silence and timeout are
    /// off until it starts again; a pending kill stays.
    pub fn paused(&mut self) {
        self.silent_at = None;
        self.timeout_at = None;
    }

    /// The worker said something (an event, a heartbeat, a log line) at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.silent_at = now.checked_add(self.limits.heartbeat);
    }

    /// The worker was asked at `now` to checkpoint and stop: it is killed if it has not ended
    /// within the grace. A second request does not extend the first one's grace.
    pub fn stop_requested(&mut self, now: Instant) {
        // A grace too long to add to `now` kills at once rather than never: the stop was asked
        // for, and a process that cannot end is worse than a lost checkpoint.
        if self.kill_at.is_none() {
            self.kill_at = Some(now.checked_add(self.limits.grace).unwrap_or(now));
        }
    }

    /// The earliest armed deadline, to sleep until.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.silent_at, self.timeout_at, self.kill_at].into_iter().flatten().min()
    }

    /// The first limit reached by `now` — silence, then timeout, then grace — which is
    /// disarmed (a heard line arms silence again); `None` when none is reached.
    pub fn alarm(&mut self, now: Instant) -> Option<Alarm> {
        let due = |at: &mut Option<Instant>| at.is_some_and(|t| t <= now) && at.take().is_some();
        if due(&mut self.silent_at) {
            Some(Alarm::Silent(Failure::Silent { silent_seconds: self.limits.heartbeat.as_secs() }))
        } else if due(&mut self.timeout_at) {
            let limit_seconds = self.limits.timeout.unwrap_or_default().as_secs();
            Some(Alarm::TimedOut(Failure::TimedOut { limit_seconds }))
        } else if due(&mut self.kill_at) {
            Some(Alarm::GraceOver)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const fn s(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    const SILENT: Alarm = Alarm::Silent(Failure::Silent { silent_seconds: 60 });

    fn timed_out(limit_seconds: u64) -> Alarm {
        Alarm::TimedOut(Failure::TimedOut { limit_seconds })
    }

    fn limits(timeout: Option<u64>) -> Limits {
        Limits { timeout: timeout.map(s), heartbeat: s(60), grace: s(30) }
    }

    fn running(timeout: Option<u64>) -> (Watchdog, Instant) {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(limits(timeout));
        dog.started(t0);
        (dog, t0)
    }

    #[test]
    fn silence_longer_than_the_limit_is_a_hung_worker() {
        let (mut dog, t0) = running(None);
        assert_eq!(dog.alarm(t0 + s(59)), None);
        assert_eq!(dog.next_deadline(), Some(t0 + s(60)));
        assert_eq!(dog.alarm(t0 + s(60)), Some(SILENT));
        assert_eq!(dog.alarm(t0 + s(600)), None, "an alarm fires once");
    }

    #[test]
    fn hearing_from_the_worker_resets_the_silence() {
        let (mut dog, t0) = running(None);
        dog.heard(t0 + s(50));
        assert_eq!(dog.alarm(t0 + s(100)), None);
        dog.heard(t0 + s(100));
        assert_eq!(dog.alarm(t0 + s(159)), None);
        assert_eq!(dog.alarm(t0 + s(160)), Some(SILENT));
    }

    #[test]
    fn a_worker_heard_after_its_silence_alarm_is_watched_again() {
        let (mut dog, t0) = running(None);
        assert_eq!(dog.alarm(t0 + s(60)), Some(SILENT));
        dog.heard(t0 + s(61));
        assert_eq!(dog.alarm(t0 + s(121)), Some(SILENT));
    }

    #[test]
    fn an_attempt_past_its_timeout_is_timed_out_even_while_talking() {
        let (mut dog, t0) = running(Some(90));
        for t in (10..90).step_by(10) {
            dog.heard(t0 + s(t));
            assert_eq!(dog.alarm(t0 + s(t)), None);
        }
        assert_eq!(dog.alarm(t0 + s(90)), Some(timed_out(90)));
    }

    #[test]
    fn no_timeout_means_no_timeout_alarm() {
        let (mut dog, t0) = running(None);
        dog.heard(t0 + s(86_400));
        assert_eq!(dog.alarm(t0 + s(86_400)), None);
    }

    #[test]
    fn a_worker_asked_to_stop_is_killed_after_the_grace() {
        let (mut dog, t0) = running(None);
        dog.heard(t0 + s(10));
        dog.stop_requested(t0 + s(10));
        dog.heard(t0 + s(35));
        assert_eq!(dog.alarm(t0 + s(39)), None);
        assert_eq!(dog.next_deadline(), Some(t0 + s(40)));
        assert_eq!(dog.alarm(t0 + s(40)), Some(Alarm::GraceOver));
    }

    #[test]
    fn a_second_stop_request_does_not_extend_the_grace() {
        let (mut dog, t0) = running(None);
        dog.stop_requested(t0);
        dog.stop_requested(t0 + s(20));
        dog.heard(t0 + s(25));
        assert_eq!(dog.alarm(t0 + s(30)), Some(Alarm::GraceOver));
    }

    #[test]
    fn silence_is_reported_before_a_timeout_due_at_the_same_time() {
        let (mut dog, t0) = running(Some(60));
        assert_eq!(dog.alarm(t0 + s(60)), Some(SILENT));
        assert_eq!(dog.alarm(t0 + s(60)), Some(timed_out(60)));
        assert_eq!(dog.alarm(t0 + s(60)), None);
    }

    #[test]
    fn a_paused_attempt_is_neither_silent_nor_timed_out_but_a_pending_kill_stays() {
        let (mut dog, t0) = running(Some(90));
        dog.stop_requested(t0 + s(10));
        dog.paused();
        assert_eq!(dog.alarm(t0 + s(39)), None);
        assert_eq!(dog.alarm(t0 + s(1000)), Some(Alarm::GraceOver));
        assert_eq!(dog.alarm(t0 + s(1000)), None);
        assert_eq!(dog.next_deadline(), None);
    }

    #[test]
    fn limits_too_long_for_an_instant_do_not_panic() {
        let huge = Limits { timeout: Some(Duration::MAX), heartbeat: Duration::MAX, grace: Duration::MAX };
        let mut dog = Watchdog::new(huge);
        let t0 = Instant::now();
        dog.started(t0);
        dog.heard(t0);
        assert_eq!(dog.next_deadline(), None);
        assert_eq!(dog.alarm(t0 + s(3600)), None);
        dog.stop_requested(t0);
        assert_eq!(dog.next_deadline(), Some(t0));
        assert_eq!(dog.alarm(t0), Some(Alarm::GraceOver));
    }

    #[test]
    fn a_watchdog_before_start_has_no_deadline() {
        let mut dog = Watchdog::new(limits(Some(1)));
        assert_eq!(dog.next_deadline(), None);
        assert_eq!(dog.alarm(Instant::now() + s(3600)), None);
    }
}
