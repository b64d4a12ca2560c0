//! Metrics both sides need: the accuracy matrix and its continual-learning metrics (the
//! report's tables; the engine's tests check runs with them) and the special functions behind a
//! method's χ² regions. Pure functions in their own crate so the report can use them without
//! the training engine.
#![warn(missing_docs)]

mod accuracy_matrix;
mod special;

pub use accuracy_matrix::{AccuracyMatrix, MetricError};
pub use special::{chi_square_quantile, ln_gamma};
