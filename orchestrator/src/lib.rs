//! The clorch orchestrator: recipes in, runs scheduled onto worker processes, results stored
//! and turned into comparison tables.
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod columns;
pub mod executor;
pub mod lock;
pub mod plan;
pub mod recipe;
pub mod report;
pub mod results;
pub mod scheduler;
pub mod status;
pub mod store;
