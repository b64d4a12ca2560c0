//! External workers: programs in any language that train a recipe's methods by speaking the
//! worker protocol (`docs/protocol.md`, "External workers").
//!
//! The orchestrator needs three things from such a worker beyond what the built-in one
//! gives: its description (`--describe`: the methods and parameters a recipe is validated
//! against, [`describe()`]); how to start it ([`program`], [`attempt_args`]: `clorch worker`
//! hands a spec with a `method.worker` over to the command, so both executors start external
//! workers exactly as they start built-in ones); and where its next attempt resumes, from the
//! manifest it keeps ([`resume_point`]). Everything downstream — retries, timeouts,
//! heartbeats, the store, reports — treats its runs as any other.
//!
//! clorch cannot estimate an external worker's memory: its runs are left out of `--max-memory`'s
//! planning, and the worker gets its share in `CLORCH_MAX_MEMORY` like any other.

pub mod check;
mod command;
mod describe;
mod resume;

pub use command::{attempt_args, program, shown};
pub use describe::{describe, DESCRIBE_TIMEOUT};
pub use resume::resume_point;
