//! Metrics: pure functions from measurements to numbers, with no I/O.

pub mod plasticity;

pub use ::metrics::{chi_square_quantile, AccuracyMatrix, MetricError};
pub use plasticity::{
    dormant_fraction_of, effective_rank, layer_plasticity, mean_abs_weight, mean_abs_weight_over,
    stable_rank, Features, PlasticityError, DORMANT_EPSILON, STABLE_RANK_MASS,
};
