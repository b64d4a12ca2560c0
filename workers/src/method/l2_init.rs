//! `l2_init` (Kumar, Marklund & Van Roy 2023, "Maintaining plasticity in continual learning via
//! regenerative regularization"): L2 regularisation toward the network's initial parameters θ₀
//! instead of toward 0. Plain weight decay shrinks every weight toward zero, which itself costs
//! plasticity (small weights, dead units); pulling toward θ₀ keeps the parameters near a point
//! from which the network was trainable, while letting the loss move them where it matters.
//!
//! One implementation serves both model families: θ₀ is every trainable buffer in
//! [`Parameters::slices`] order. On a conv net that is every convolution's and linear layer's
//! weights and biases and every batch norm's γ and β (pulled toward their initial 1 and 0), as
//! the paper's penalty covers all of a network's parameters; batch norm's running statistics
//! are not parameters and are neither snapshotted nor pulled.

use serde::{Deserialize, Serialize};

use super::l2::check_weight_decay;
use super::state::snapshot;
use super::{ContinualMethod, MethodError, MethodKind, MethodState, StepContext, TaskContext};
use crate::engine::Trainable;
use crate::model::convnet::ConvNet;
use crate::model::Parameters;
use crate::optim::OptimizerConfig;

/// Hyper-parameters of `l2_init`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct L2InitConfig {
    /// λ: every weight and bias's gradient gains λ·(θ − θ₀) (default 1e-4, as for `l2`; the
    /// paper tunes λ per benchmark over 1e-2 … 1e-5). The paper writes the penalty as
    /// λ‖θ − θ₀‖²; clorch's λ is the coefficient of the gradient, so it equals the paper's 2λ —
    /// the same convention as `l2`'s `weight_decay`, so the two grid alike.
    pub weight_decay: f64,
}

impl Default for L2InitConfig {
    fn default() -> Self {
        L2InitConfig { weight_decay: 1e-4 }
    }
}

/// L2 toward the initial parameters: with SGD, a parameter whose loss gradient is zero moves
/// toward its initial value, its distance shrinking by the factor 1 − αλ per step.
///
/// State: θ₀, snapshotted in [`ContinualMethod::begin`] (before any training) and checkpointed
/// as `init.*`. Emits no `method` events.
pub struct L2Init {
    weight_decay: f32,
    /// θ₀, buffer by buffer in [`Parameters::slices`] order.
    initial: Option<Vec<Vec<f32>>>,
}

impl<M: Trainable> ContinualMethod<M> for L2Init {
    fn begin(&mut self, cx: &mut TaskContext<'_, M>) -> Result<(), MethodError> {
        self.initial = Some(snapshot(cx.net.parameters()));
        Ok(())
    }

    fn shape_gradients(&mut self, cx: &mut StepContext<'_, M>) {
        let initial = self.initial.as_ref().expect("θ₀ is taken in `begin` or restored by `load`");
        let buffers = cx.grads.slices_mut().into_iter().zip(cx.net.parameters().slices()).zip(initial);
        for ((g, w), w0) in buffers {
            for ((g, &w), &w0) in g.iter_mut().zip(w).zip(w0) {
                *g += self.weight_decay * (w - w0);
            }
        }
    }

    fn save(&self, state: &mut MethodState) {
        if let Some(initial) = &self.initial {
            state.put_buffers("init", initial);
        }
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        self.initial = Some(state.buffers("init")?);
        Ok(())
    }
}

/// The `l2_init` kind.
pub struct L2InitKind;

impl MethodKind for L2InitKind {
    const KIND: &'static str = "l2_init";
    const SUMMARY: &'static str = "L2 regularisation toward the initial parameters (Kumar et al. 2023)";
    type Config = L2InitConfig;
    fn check(c: &L2InitConfig) -> Result<(), String> {
        check_weight_decay(c.weight_decay)
    }
    fn build(c: L2InitConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(L2Init { weight_decay: c.weight_decay as f32, initial: None })
    }
    fn build_conv(c: L2InitConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(L2Init { weight_decay: c.weight_decay as f32, initial: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::context::testing::{with_step, with_task};
    use crate::model::{Layers, Mlp, Parameters};
    use crate::optim::{Optimizer, OptimizerKind};
    use crate::protocol::Activation;
    use crate::rng;

    fn started(net: &mut Mlp, weight_decay: f64) -> Box<dyn ContinualMethod> {
        let config = OptimizerConfig::defaults(OptimizerKind::Sgd);
        let mut method = L2InitKind::build(L2InitConfig { weight_decay }, &config);
        with_task(net, |cx| method.begin(cx)).unwrap();
        method
    }

    #[test]
    fn a_parameter_without_loss_gradient_decays_toward_its_initial_value_by_one_minus_lr_lambda() {
        let mut net = Mlp::new(&[3, 4, 2], Activation::Relu, &mut rng::stream(1, "t", 0));
        let mut method = started(&mut net, 0.05);
        let initial = net.clone();
        // Move every parameter away from θ₀ by a known amount.
        for (l, layer) in net.params.layers.iter_mut().enumerate() {
            for (i, w) in layer.weight.iter_mut().chain(layer.bias.iter_mut()).enumerate() {
                *w += 0.1 * (1.0 + (l * 7 + i) as f32 * 0.01);
            }
        }
        let moved = net.clone();
        let mut grads = Layers::zeros_like(&net.params);
        let config = OptimizerConfig { lr: 0.2, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
        let mut opt = Optimizer::new(config, &net);
        with_step(&mut net, &mut grads, &mut opt, &[0.3; 3], |cx| {
            method.shape_gradients(cx);
            method.update(cx);
        });
        let factor = 1.0 - 0.2 * 0.05;
        let sets = net.params.buffers().zip(moved.params.buffers()).zip(initial.params.buffers());
        for ((now, before), w0) in sets {
            for ((&w, &b), &w0) in now.iter().zip(before).zip(w0) {
                let (distance, expected) = (w - w0, (b - w0) * factor);
                assert!((distance - expected).abs() <= 4e-7 * (1.0 + w0.abs()), "{distance} vs {expected}");
                assert!(distance.abs() < (b - w0).abs());
            }
        }
    }

    #[test]
    fn at_the_initial_parameters_nothing_moves_and_a_loss_gradient_is_left_alone() {
        let mut net = Mlp::new(&[3, 4, 2], Activation::Tanh, &mut rng::stream(2, "t", 0));
        let mut method = started(&mut net, 0.5);
        let initial = net.clone();
        let mut grads = Layers::zeros_like(&net.params);
        grads.layers[0].weight[2] = 0.25;
        let config = OptimizerConfig::defaults(OptimizerKind::Sgd);
        let mut opt = Optimizer::new(config, &net);
        let shaped = with_step(&mut net, &mut grads, &mut opt, &[0.3; 3], |cx| {
            method.shape_gradients(cx);
            cx.grads.clone()
        });
        assert_eq!(shaped.layers[0].weight[2], 0.25);
        assert!(shaped.buffers().flatten().enumerate().all(|(i, &g)| i == 2 || g == 0.0));
        with_step(&mut net, &mut Layers::zeros_like(&initial.params), &mut opt, &[0.3; 3], |cx| {
            method.shape_gradients(cx);
            method.update(cx);
        });
        assert_eq!(net, initial);
    }

    /// On a conv net every trainable buffer — kernels, biases, batch norm's γ and β — is
    /// pulled toward θ₀ (its distance shrinks by 1 − αλ when the loss gradient is 0), at θ₀
    /// the penalty adds nothing to a loss gradient, and the running statistics are left alone.
    #[test]
    fn on_a_conv_net_every_parameter_is_pulled_toward_its_initial_value_and_not_at_it() {
        use crate::method::conv_testing::{conv_task, small_net, with_conv_step, with_conv_task_of};
        use crate::model::convnet::ConvNet;
        let mut net = small_net(3, 1);
        let task = conv_task(&net, 3, 0, 2);
        let config = OptimizerConfig { lr: 0.2, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
        let mut method = L2InitKind::build_conv(L2InitConfig { weight_decay: 0.05 }, &config).unwrap();
        with_conv_task_of(&mut net, &task, 0..3, &mut rng::stream(0, "t", 1), |cx| method.begin(cx))
            .0
            .unwrap();
        let initial = net.clone();
        let input = vec![0.3; 2 * net.input_shape().len()];
        let mut opt = Optimizer::for_parameters(config, &net);

        // At θ₀ a loss gradient passes unchanged and nothing else gains a term.
        let mut grads = net.zeros_like();
        grads.slices_mut()[3][1] = 0.25;
        let shaped = with_conv_step(&mut net, &mut grads, &mut opt, &input, |cx| {
            method.shape_gradients(cx);
            cx.grads.clone()
        });
        let flat: Vec<f32> = shaped.slices().into_iter().flatten().copied().collect();
        let at = shaped.slices()[..3].iter().map(|s| s.len()).sum::<usize>() + 1;
        assert!(flat.iter().enumerate().all(|(i, &g)| if i == at { g == 0.25 } else { g == 0.0 }));

        // Away from θ₀, with no loss gradient, every distance shrinks by 1 − αλ.
        for (b, buffer) in net.slices_mut().into_iter().enumerate() {
            for (i, w) in buffer.iter_mut().enumerate() {
                *w += 0.1 * (1.0 + (b * 7 + i) as f32 * 0.01);
            }
        }
        let moved = net.clone();
        with_conv_step(&mut net, &mut ConvNet::zeros_like(&initial), &mut opt, &input, |cx| {
            method.shape_gradients(cx);
            method.update(cx);
        });
        let factor = 1.0 - 0.2 * 0.05;
        let (now, before, start) = (net.slices(), moved.slices(), initial.slices());
        // A biased convolution, four batch norms' γ and β, three block convolutions, the linear layer.
        assert_eq!(now.len(), 2 + 8 + 3 + 2);
        for ((now, before), w0) in now.iter().zip(&before).zip(&start) {
            for ((&w, &b), &w0) in now.iter().zip(*before).zip(*w0) {
                let (distance, expected) = (w - w0, (b - w0) * factor);
                assert!((distance - expected).abs() <= 4e-7 * (1.0 + w0.abs()), "{distance} vs {expected}");
            }
        }
        let running = |n: &ConvNet| -> Vec<Vec<f32>> {
            n.tensors().iter().filter(|t| t.name.contains("running_")).map(|t| t.values.to_vec()).collect()
        };
        assert_eq!(running(&net), running(&initial));
    }

    #[test]
    fn the_initial_parameters_survive_a_checkpoint() {
        let mut net = Mlp::new(&[3, 5, 2], Activation::Relu, &mut rng::stream(3, "t", 0));
        let method = started(&mut net, 0.1);
        let mut state = MethodState::default();
        method.save(&mut state);
        let mut restored = L2InitKind::build(
            L2InitConfig { weight_decay: 0.1 },
            &OptimizerConfig::defaults(OptimizerKind::Sgd),
        );
        restored.load(&state).unwrap();
        let mut again = MethodState::default();
        restored.save(&mut again);
        assert_eq!(state, again);
        assert!(restored.load(&MethodState::default()).is_err());
    }
}
