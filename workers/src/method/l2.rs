//! `l2`: backprop with L2 regularisation (weight decay) on weights and biases — the simplest
//! remedy for growing weights, one of the loss-of-plasticity paper's baselines. The same
//! method serves conv nets: every trainable buffer (kernels, biases, batch norm's γ and β) is
//! decayed, as PyTorch's `weight_decay` does to every parameter; running statistics are not
//! parameters and are left alone.

use serde::{Deserialize, Serialize};

use super::{ContinualMethod, MethodKind, StepContext};
use crate::engine::Trainable;
use crate::model::convnet::ConvNet;
use crate::model::Parameters;
use crate::optim::OptimizerConfig;

/// Hyper-parameters of `l2`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct L2Config {
    /// λ: the gradient gains λ·w for every weight and bias (default 1e-4).
    pub weight_decay: f64,
}

impl Default for L2Config {
    fn default() -> Self {
        L2Config { weight_decay: 1e-4 }
    }
}

/// Adds λ·w to every parameter's gradient, so with SGD a parameter whose loss gradient is zero
/// shrinks by the factor 1 − αλ per step.
pub struct L2Regularisation {
    weight_decay: f32,
}

/// Adds `weight_decay × w` to each gradient element.
pub(crate) fn add_weight_decay<M: Trainable>(cx: &mut StepContext<'_, M>, weight_decay: f32) {
    for (g, w) in cx.grads.slices_mut().into_iter().zip(cx.net.parameters().slices()) {
        for (g, &w) in g.iter_mut().zip(w) {
            *g += weight_decay * w;
        }
    }
}

impl<M: Trainable> ContinualMethod<M> for L2Regularisation {
    fn shape_gradients(&mut self, cx: &mut StepContext<'_, M>) {
        add_weight_decay(cx, self.weight_decay);
    }
}

/// The `l2` kind.
pub struct L2;

impl MethodKind for L2 {
    const KIND: &'static str = "l2";
    const SUMMARY: &'static str = "backprop with L2 weight decay on weights and biases";
    type Config = L2Config;
    fn check(c: &L2Config) -> Result<(), String> {
        check_weight_decay(c.weight_decay)
    }
    fn build(c: L2Config, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(L2Regularisation { weight_decay: c.weight_decay as f32 })
    }
    fn build_conv(c: L2Config, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(L2Regularisation { weight_decay: c.weight_decay as f32 }))
    }
}

pub(crate) fn check_weight_decay(v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("`weight_decay` must be a number ≥ 0, not {v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::context::testing::with_step;
    use crate::model::{Layers, Mlp};
    use crate::optim::{Optimizer, OptimizerKind};
    use crate::protocol::Activation;
    use crate::rng;

    #[test]
    fn a_weight_with_zero_gradient_shrinks_by_one_minus_lr_times_lambda() {
        let mut net = Mlp::new(&[3, 4, 2], Activation::Relu, &mut rng::stream(1, "t", 0));
        net.params.layers[0].bias[1] = 0.5;
        let before = net.clone();
        let mut grads = Layers::zeros_like(&net.params);
        let config = OptimizerConfig { lr: 0.1, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
        let mut opt = Optimizer::new(config, &net);
        let mut method = L2::build(L2Config { weight_decay: 0.01 }, &config);
        with_step(&mut net, &mut grads, &mut opt, &[0.0; 3], |cx| {
            method.shape_gradients(cx);
            method.update(cx);
        });
        let factor = 1.0 - 0.1 * 0.01;
        for (a, b) in net.params.buffers().zip(before.params.buffers()) {
            for (&w, &w0) in a.iter().zip(b) {
                assert!((w - w0 * factor).abs() <= 1e-7 * w0.abs(), "{w} vs {}", w0 * factor);
            }
        }
        assert!((net.params.layers[0].bias[1] - 0.5 * factor).abs() < 1e-7);
    }
}
