//! The scheduler: runs of a plan onto workers, at most `parallel` at once, with retries,
//! time limits, signals, live progress, and the store kept up to date as events arrive.
//!
//! One `tokio::select!` loop (the dispatcher) owns the store and every run's record; each
//! attempt is a task of the executor that reports typed [`Message`]s through one channel and
//! obeys [`Control`]s — the shape of nextest's runner. The runtime is single-threaded: the
//! work happens in the workers, and one thread keeps signal delivery and child handling simple.

mod dispatcher;
mod progress;
pub mod retry;

pub use dispatcher::{execute, Outcome, SchedulerError, Settings};

use crate::executor::{Control, Message};
