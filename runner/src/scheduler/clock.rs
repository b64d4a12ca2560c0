//! Where the scheduler reads the time. The dispatcher takes its clock as a parameter, so the
//! time-dependent parts it hands to reporters (the status file's `taken`) and its decisions
//! can be checked against a clock a test sets, instead of against a test that sleeps.

use std::fmt::Debug;

use tokio::time::Instant;

/// A source of the two times the scheduler needs.
pub trait Clock: Debug + Send + Sync {
    /// A monotonic instant, for deadlines and durations (retry back-off, attempt wall time).
    fn now(&self) -> Instant;
    /// Wall-clock unix seconds, for what is recorded (run times, the status file).
    fn unix_seconds(&self) -> u64;
}

/// The real clock: tokio's monotonic time (which a paused test runtime controls) and the
/// system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_seconds(&self) -> u64 {
        crate::store::unix_now()
    }
}
