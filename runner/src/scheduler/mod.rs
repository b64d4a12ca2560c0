//! The scheduler: runs of a plan onto workers, at most `parallel` at once, with retries,
//! time limits, signals, live progress, and the store kept up to date as events arrive.
//!
//! One `tokio::select!` loop (the dispatcher) owns the store and every run's record; each
//! attempt is a task of the executor that reports typed [`Message`]s through one channel and
//! obeys [`Control`]s — the shape of nextest's runner. The decisions it takes (the retry
//! policy, the parallelism bound, an attempt's time limits) are pure and take the time as an
//! argument; what it has to show goes as [`SchedulerEvent`]s to [`Reporter`]s (the progress
//! bar, the status file). The runtime is single-threaded: the work happens in the workers,
//! and one thread keeps signal delivery and child handling simple.

mod clock;
mod data_watch;
mod dispatcher;
mod events;
mod progress;
mod queue;
mod reporter;
pub mod retry;
mod status_file;
mod watchdog;

pub use clock::{Clock, SystemClock};
pub use dispatcher::{execute, Outcome, SchedulerError, Settings};
pub use events::{Board, Running, SchedulerEvent};
pub use reporter::{ReportError, Reporter};
pub use watchdog::{Alarm, Watchdog};

use crate::executor::{Control, Message};
