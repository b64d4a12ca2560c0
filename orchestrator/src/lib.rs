//! The clorch orchestrator: recipes in, runs scheduled onto worker processes, results stored
//! and turned into comparison tables.
#![warn(missing_docs)]

pub mod report;
pub mod store;
