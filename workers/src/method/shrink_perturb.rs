//! `shrink_perturb` (Ash & Adams 2020, as used by Dohare et al. 2024): L2 shrinkage plus small
//! Gaussian noise added to every parameter after each step, keeping units from settling
//! into states they cannot leave.
//!
//! This is the method as the loss-of-plasticity reference code runs it, for its MLPs and for
//! its class-incremental CIFAR ResNet alike: weight decay on every parameter through the
//! optimiser, and after each step `param += N(0, noise_std²)` on every parameter. One
//! implementation serves both model families over [`Parameters::slices`]: on a conv net every
//! convolution's and linear layer's weights and biases and every batch norm's γ and β are
//! shrunk and perturbed (the reference code perturbs `net.parameters()`, which includes them);
//! running statistics are not parameters and are left alone.
//!
//! Differences from Ash & Adams (2020, "On warm-starting neural network training"), where the
//! name comes from: they shrink and perturb once, when new data arrives (θ ← λθ + p·ε, with ε
//! drawn from the initialisation's distribution, e.g. U(±1/√fan_in) per layer), not after every
//! step with Gaussian noise. We follow the continual-learning form of Dohare et al., whose
//! hyper-parameters (`weight_decay`, `noise_std`) mean the same on both model families.

use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::l2::{add_weight_decay, check_weight_decay};
use super::{ContinualMethod, MethodKind, StepContext};
use crate::engine::Trainable;
use crate::model::convnet::ConvNet;
use crate::model::Parameters;
use crate::optim::OptimizerConfig;

/// Hyper-parameters of `shrink_perturb`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShrinkPerturbConfig {
    /// λ of the L2 term (default 1e-4).
    pub weight_decay: f64,
    /// σ of the noise N(0, σ²) added to every weight and bias after each step (default 1e-5).
    pub noise_std: f64,
}

impl Default for ShrinkPerturbConfig {
    fn default() -> Self {
        ShrinkPerturbConfig { weight_decay: 1e-4, noise_std: 1e-5 }
    }
}

/// L2 in the gradient, then noise after the update.
pub struct ShrinkAndPerturb {
    weight_decay: f32,
    noise: Normal<f32>,
}

impl<M: Trainable> ContinualMethod<M> for ShrinkAndPerturb {
    fn shape_gradients(&mut self, cx: &mut StepContext<'_, M>) {
        add_weight_decay(cx, self.weight_decay);
    }

    fn after_update(&mut self, cx: &mut StepContext<'_, M>) {
        if self.noise.std_dev() == 0.0 {
            return;
        }
        for buffer in cx.net.parameters_mut().slices_mut() {
            for w in buffer.iter_mut() {
                *w += self.noise.sample(cx.rng);
            }
        }
    }
}

/// The `shrink_perturb` kind.
pub struct ShrinkPerturb;

impl MethodKind for ShrinkPerturb {
    const KIND: &'static str = "shrink_perturb";
    const SUMMARY: &'static str = "L2 shrinkage plus Gaussian noise on every parameter after each step";
    type Config = ShrinkPerturbConfig;
    fn check(c: &ShrinkPerturbConfig) -> Result<(), String> {
        check_weight_decay(c.weight_decay)?;
        if !(c.noise_std.is_finite() && c.noise_std >= 0.0) {
            return Err(format!("`noise_std` must be a number ≥ 0, not {}", c.noise_std));
        }
        Ok(())
    }
    fn build(c: ShrinkPerturbConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(ShrinkAndPerturb::new(&c))
    }
    fn build_conv(c: ShrinkPerturbConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(ShrinkAndPerturb::new(&c)))
    }
}

impl ShrinkAndPerturb {
    fn new(c: &ShrinkPerturbConfig) -> Self {
        ShrinkAndPerturb {
            weight_decay: c.weight_decay as f32,
            noise: Normal::new(0.0, c.noise_std as f32).expect("σ checked to be finite and ≥ 0"),
        }
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
    fn noise_has_the_configured_standard_deviation_and_no_bias() {
        let mut net = Mlp::new(&[100, 200, 10], Activation::Relu, &mut rng::stream(1, "t", 0));
        let before = net.clone();
        let mut grads = Layers::zeros_like(&net.params);
        let config = OptimizerConfig::defaults(OptimizerKind::Sgd);
        let mut opt = Optimizer::new(config, &net);
        let sigma = 0.05;
        let mut method =
            ShrinkPerturb::build(ShrinkPerturbConfig { weight_decay: 0.0, noise_std: sigma }, &config);
        with_step(&mut net, &mut grads, &mut opt, &[0.0; 100], |cx| {
            method.shape_gradients(cx);
            method.update(cx);
            method.after_update(cx);
        });
        let diffs: Vec<f64> = net
            .params
            .buffers()
            .zip(before.params.buffers())
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y) as f64).collect::<Vec<_>>())
            .collect();
        let n = diffs.len() as f64;
        let mean = diffs.iter().sum::<f64>() / n;
        let std = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        // 22,210 draws: the sample σ is within 2% and the mean within 4 standard errors.
        assert!((std / sigma - 1.0).abs() < 0.02, "σ = {std}");
        assert!(mean.abs() < 4.0 * sigma / n.sqrt(), "mean = {mean}");
    }

    /// On a conv net one step with no loss gradient leaves every trainable buffer (kernels,
    /// biases, batch norm's γ and β) at (1 − αλ)·w + σ·z, with z the method stream's standard
    /// normal draws in buffer order, and the running statistics where they were.
    #[test]
    fn on_a_conv_net_every_parameter_is_shrunk_then_perturbed_from_the_method_stream() {
        use crate::method::conv_testing::{small_net, with_conv_step};
        use crate::model::convnet::ConvNet;
        use crate::model::Parameters;
        let mut net = small_net(5, 3);
        let before = net.clone();
        let config = OptimizerConfig { lr: 0.1, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
        let (lambda, sigma) = (0.01f32, 0.05f32);
        let mut method = ShrinkPerturb::build_conv(
            ShrinkPerturbConfig { weight_decay: f64::from(lambda), noise_std: f64::from(sigma) },
            &config,
        )
        .unwrap();
        let mut opt = Optimizer::for_parameters(config, &net);
        let input = vec![0.1; 2 * net.input_shape().len()];
        with_conv_step(&mut net, &mut ConvNet::zeros_like(&before), &mut opt, &input, |cx| {
            method.shape_gradients(cx);
            method.update(cx);
            method.after_update(cx);
        });
        // The draws `with_conv_step` gives the method.
        let mut r = rng::stream(0, "method-test", 0);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        let (mut z, mut count) = (Vec::new(), 0);
        for (now, w) in net.slices().iter().zip(before.slices()) {
            for (&now, &w) in now.iter().zip(w) {
                let draw = normal.sample(&mut r);
                z.push(f64::from(draw));
                let expected = (1.0 - 0.1 * lambda) * w + sigma * draw;
                assert!((now - expected).abs() <= 1e-6, "{now} vs {expected}");
                count += 1;
            }
        }
        assert_eq!(count, net.parameter_count());
        // γ starts at 1 and β at 0: both are perturbed too.
        let gamma = &net.slices()[2];
        assert!(gamma.iter().all(|&g| g != 1.0 && (g - 0.999).abs() < 6.0 * sigma), "{gamma:?}");
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let std = (z.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (z.len() - 1) as f64).sqrt();
        assert!(mean.abs() < 4.0 / (z.len() as f64).sqrt() && (std - 1.0).abs() < 0.1, "{mean} {std}");
        let running = |n: &ConvNet| -> Vec<Vec<f32>> {
            n.tensors().iter().filter(|t| t.name.contains("running_")).map(|t| t.values.to_vec()).collect()
        };
        assert_eq!(running(&net), running(&before));
    }

    #[test]
    fn with_zero_noise_it_is_exactly_l2() {
        let mut a = Mlp::new(&[5, 6, 3], Activation::Tanh, &mut rng::stream(2, "t", 0));
        let mut b = a.clone();
        let config = OptimizerConfig::defaults(OptimizerKind::Sgd);
        let mut grads = Layers::zeros_like(&a.params);
        grads.layers[1].weight[2] = 0.7;
        let mut g2 = grads.clone();
        let mut sp =
            ShrinkPerturb::build(ShrinkPerturbConfig { weight_decay: 0.01, noise_std: 0.0 }, &config);
        let mut l2 = super::super::l2::L2::build(super::super::l2::L2Config { weight_decay: 0.01 }, &config);
        let (mut o1, mut o2) = (Optimizer::new(config, &a), Optimizer::new(config, &b));
        with_step(&mut a, &mut grads, &mut o1, &[0.1; 5], |cx| {
            sp.shape_gradients(cx);
            sp.update(cx);
            sp.after_update(cx);
        });
        with_step(&mut b, &mut g2, &mut o2, &[0.1; 5], |cx| {
            l2.shape_gradients(cx);
            l2.update(cx);
            l2.after_update(cx);
        });
        assert_eq!(a, b);
    }
}
