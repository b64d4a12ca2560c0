//! Metrics: pure functions from measurements to numbers, with no I/O.

mod accuracy_matrix;

pub use accuracy_matrix::{AccuracyMatrix, MetricError};
