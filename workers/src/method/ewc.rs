//! `ewc`: elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, "Overcoming
//! catastrophic forgetting in neural networks"), with the online variant of Schwarz et al.
//! (2018, "Progress & compress").
//!
//! After a task, the parameters θ* that solve it and the diagonal of the Fisher information F
//! at θ* say how much each parameter matters to it; later tasks are trained on
//!
//! ```text
//! L(θ) + Σ_anchors (λ/2) Σ_i F_i (θ_i − θ*_i)²,   i.e.   ∇ += λ Σ_anchors F ⊙ (θ − θ*)
//! ```
//!
//! so important parameters are held near their old values and unimportant ones stay free.
//!
//! - **Fisher.** F_i = (1/N) Σ_n (∂ log p(y_n | x_n) / ∂θ_i)² over N = `fisher_samples` training
//!   examples of the task (a seeded sample without replacement from the method's random
//!   stream; all of them when the task has fewer), each gradient from its own forward and
//!   backward pass (a batch of one, [`Compute::example_gradients`]). With `fisher: true` (the
//!   default, the paper's Fisher) y_n is drawn from the model's own predictive distribution
//!   softmax(z(x_n)); with `fisher: empirical`, y_n is the example's label. For regression
//!   streams the squared error is the negative log-likelihood of N(z, ½), so `true` draws
//!   y_n ~ N(z, ½).
//! - **`mode: separate`** keeps one (F_t, θ*_t) per finished task, the separate penalties the
//!   paper describes for a third task. **`mode: online`** (Schwarz et al.) keeps one running
//!   F ← γF + F_t and the latest θ* only, so memory does not grow with the number of tasks.
//!
//! - **Conv nets.** One implementation serves both model families, over every trainable
//!   buffer in [`Parameters::slices`] order: on a conv net every convolution's and linear
//!   layer's weights and biases and every batch norm's γ and β get a Fisher and an anchor.
//!   Batch norm's running statistics are not parameters: they are not anchored and keep
//!   following the data of later tasks (as in PyTorch EWC code, whose penalty runs over
//!   `named_parameters()`). The per-example gradients run in evaluation mode
//!   ([`ConvCompute::example_gradients`]), with the running statistics, like the
//!   `model.eval()` Fisher passes of common PyTorch EWC code: the Fisher is that of the
//!   predictive distribution the network has when it predicts. A training-mode pass on a
//!   batch of one would normalise the example by its own statistics, a different function
//!   (and undefined on 1×1 maps).
//!
//! EWC needs task boundaries: on online streams (no task hooks) it never anchors and equals its
//! optimiser. It emits no `method` events, so with λ = 0 a run's events are byte for byte those
//! of plain backprop with the same optimiser.
//!
//! [`Compute::example_gradients`]: super::Compute::example_gradients
//! [`ConvCompute::example_gradients`]: super::ConvCompute::example_gradients

use rand::Rng as _;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::state::snapshot;
use super::{
    Compute, ContinualMethod, ConvCompute, MethodError, MethodKind, MethodState, StepContext, TaskContext,
};
use crate::engine::Trainable;
use crate::model::convnet::ConvNet;
use crate::model::{Layers, Mlp, Parameters};
use crate::optim::OptimizerConfig;
use crate::rng::Rng;
use crate::stream::{Split, Target};

/// How the penalties of several tasks combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EwcMode {
    /// One penalty per finished task (Kirkpatrick et al. 2017).
    #[default]
    Separate,
    /// One running Fisher F ← γF + F_t anchored at the latest solution (Schwarz et al. 2018).
    Online,
}

/// Which label the Fisher's log-likelihood gradients use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FisherKind {
    /// y drawn from the model's predictive distribution: the Fisher information itself.
    #[default]
    True,
    /// y = the example's label: the "empirical Fisher", cheaper to explain, biased.
    Empirical,
}

impl Serialize for FisherKind {
    /// `true` as the boolean a recipe writes (`fisher: true`; `clorch methods` lists it so), the
    /// other choice as its name.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FisherKind::True => s.serialize_bool(true),
            FisherKind::Empirical => s.serialize_str("empirical"),
        }
    }
}

impl<'de> Deserialize<'de> for FisherKind {
    /// `"true"` or `"empirical"`; a bare YAML `true` is accepted for `"true"`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(true) => Ok(FisherKind::True),
            serde_json::Value::String(s) if s == "true" => Ok(FisherKind::True),
            serde_json::Value::String(s) if s == "empirical" => Ok(FisherKind::Empirical),
            other => Err(serde::de::Error::custom(format!(
                "`fisher` must be `true` (labels sampled from the model) or `empirical` (the data's labels), not {other}"
            ))),
        }
    }
}

/// Hyper-parameters of `ewc`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EwcConfig {
    /// λ, the penalty's strength: the gradient gains λ·F ⊙ (θ − θ*) per anchor (default 100).
    /// The paper tunes λ per benchmark; it scales inversely with the Fisher's magnitude, so
    /// grid it over decades (10 … 10⁴ for MNIST MLPs). 0 turns the penalty off.
    pub lambda: f64,
    /// `separate` (default; one penalty per task) or `online` (one running Fisher).
    pub mode: EwcMode,
    /// γ of `online` mode, F ← γF + F_t (default 1: a plain running sum; Schwarz et al. use
    /// γ < 1 to forget old tasks' importance gradually). Ignored by `separate`. In [0, 1].
    pub gamma: f64,
    /// `true` (default; labels sampled from the model, the paper's Fisher) or `empirical`.
    pub fisher: FisherKind,
    /// Training examples of a task that estimate its Fisher (default 1000; all of them when
    /// the task has fewer). A whole number ≥ 1.
    #[serde(serialize_with = "super::params::whole_number")]
    pub fisher_samples: f64,
}

impl Default for EwcConfig {
    fn default() -> Self {
        EwcConfig {
            lambda: 100.0,
            mode: EwcMode::Separate,
            gamma: 1.0,
            fisher: FisherKind::True,
            fisher_samples: 1000.0,
        }
    }
}

/// One penalty: the Fisher diagonal and the parameters it anchors to, buffer by buffer in
/// [`Parameters::slices`] order.
#[derive(Clone, Debug, PartialEq)]
struct Anchor {
    fisher: Vec<Vec<f32>>,
    theta: Vec<Vec<f32>>,
}

/// A model family's per-example gradients, from which EWC estimates the Fisher.
pub trait ExampleGradients<M: Trainable> {
    /// For each example `indices[i]` of `split`, the gradient of its own loss on `head`
    /// against the target `target(head outputs, stored target)` picks, passed to
    /// `visit(i, gradient)`.
    #[allow(clippy::too_many_arguments)]
    fn gradients_per_example(
        &mut self,
        net: &M,
        split: &Split,
        indices: &[usize],
        head: std::ops::Range<usize>,
        task: usize,
        target: &mut dyn FnMut(&[f32], Target) -> Target,
        visit: &mut dyn FnMut(usize, &M::Params),
    );
}

impl ExampleGradients<Mlp> for Compute {
    fn gradients_per_example(
        &mut self,
        net: &Mlp,
        split: &Split,
        indices: &[usize],
        head: std::ops::Range<usize>,
        task: usize,
        target: &mut dyn FnMut(&[f32], Target) -> Target,
        visit: &mut dyn FnMut(usize, &Layers),
    ) {
        self.example_gradients(net, split, indices, head, task, target, visit)
    }
}

impl ExampleGradients<ConvNet> for ConvCompute {
    fn gradients_per_example(
        &mut self,
        net: &ConvNet,
        split: &Split,
        indices: &[usize],
        head: std::ops::Range<usize>,
        _task: usize,
        target: &mut dyn FnMut(&[f32], Target) -> Target,
        visit: &mut dyn FnMut(usize, &ConvNet),
    ) {
        self.example_gradients(net, split, indices, head, target, visit)
    }
}

/// EWC: the quadratic penalties, added to the gradients before the optimiser's update.
///
/// State: the anchors (checkpointed as `fisher.<k>.*` and `theta.<k>.*`, their count in the
/// meta). The Fisher samples draw from the method's random stream, which the trainer
/// checkpoints.
pub struct Ewc {
    config: EwcConfig,
    lambda: f32,
    anchors: Vec<Anchor>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    anchors: usize,
}

/// Draws a class from softmax(`logits`), or a regression target from N(z, ½).
fn sample_prediction(logits: &[f32], stored: Target, rng: &mut Rng) -> Target {
    match stored {
        Target::Class(_) => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f64> = logits.iter().map(|&z| f64::from(z - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            let mut u = rng.gen::<f64>() * total;
            for (k, w) in weights.iter().enumerate() {
                if u < *w {
                    return Target::Class(k as u32);
                }
                u -= w;
            }
            // Rounding left u just above the last weight: the last non-zero class.
            let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
            Target::Class(last as u32)
        }
        Target::Real(_) => {
            let noise = Normal::new(0.0, std::f64::consts::FRAC_1_SQRT_2).expect("σ = √½ is valid");
            Target::Real(logits[0] + noise.sample(rng) as f32)
        }
    }
}

impl Ewc {
    fn new(config: EwcConfig) -> Self {
        Ewc { lambda: config.lambda as f32, config, anchors: Vec::new() }
    }

    /// The diagonal Fisher of the network at its current parameters on `cx`'s task.
    fn fisher<M: Trainable>(&self, cx: &mut TaskContext<'_, M>) -> Vec<Vec<f32>>
    where
        M::Compute: ExampleGradients<M>,
    {
        let TaskContext { task, head, net, rng, compute, .. } = cx;
        let n = task.train.len();
        let m = (self.config.fisher_samples as usize).min(n);
        let mut indices = rand::seq::index::sample(*rng, n, m).into_vec();
        // Summed in example order, so the estimate depends on which examples, not on the order
        // they were drawn in.
        indices.sort_unstable();
        let mut sums: Vec<Vec<f64>> = net.parameters().slices().iter().map(|b| vec![0.0; b.len()]).collect();
        let kind = self.config.fisher;
        compute.gradients_per_example(
            net,
            &task.train,
            &indices,
            head.clone(),
            task.index,
            &mut |logits, stored| match kind {
                FisherKind::True => sample_prediction(logits, stored, rng),
                FisherKind::Empirical => stored,
            },
            &mut |_, grads| {
                for (sum, g) in sums.iter_mut().zip(grads.slices()) {
                    for (s, &g) in sum.iter_mut().zip(g) {
                        *s += f64::from(g) * f64::from(g);
                    }
                }
            },
        );
        let count = m.max(1) as f64;
        sums.iter().map(|sum| sum.iter().map(|s| (s / count) as f32).collect()).collect()
    }
}

impl<M: Trainable> ContinualMethod<M> for Ewc
where
    M::Compute: ExampleGradients<M>,
{
    fn shape_gradients(&mut self, cx: &mut StepContext<'_, M>) {
        if self.lambda == 0.0 {
            return;
        }
        for anchor in &self.anchors {
            let sets = cx
                .grads
                .slices_mut()
                .into_iter()
                .zip(cx.net.parameters().slices())
                .zip(anchor.fisher.iter().zip(&anchor.theta));
            for ((g, w), (f, star)) in sets {
                for (((g, &w), &f), &star) in g.iter_mut().zip(w).zip(f).zip(star) {
                    *g += self.lambda * f * (w - star);
                }
            }
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_, M>) -> Result<(), MethodError> {
        let fisher = self.fisher(cx);
        let theta = snapshot(cx.net.parameters());
        match (self.config.mode, self.anchors.last_mut()) {
            (EwcMode::Online, Some(anchor)) => {
                let gamma = self.config.gamma as f32;
                for (old, new) in anchor.fisher.iter_mut().zip(&fisher) {
                    for (f, &n) in old.iter_mut().zip(new) {
                        *f = gamma * *f + n;
                    }
                }
                anchor.theta = theta;
            }
            _ => self.anchors.push(Anchor { fisher, theta }),
        }
        Ok(())
    }

    fn save(&self, state: &mut MethodState) {
        state.meta = serde_json::to_value(Meta { anchors: self.anchors.len() }).expect("a count serialises");
        for (k, anchor) in self.anchors.iter().enumerate() {
            state.put_buffers(&format!("fisher.{k}"), &anchor.fisher);
            state.put_buffers(&format!("theta.{k}"), &anchor.theta);
        }
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        let meta: Meta = serde_json::from_value(state.meta.clone())
            .map_err(|e| MethodError::State(format!("ewc anchor count: {e}")))?;
        self.anchors = (0..meta.anchors)
            .map(|k| {
                Ok(Anchor {
                    fisher: state.buffers(&format!("fisher.{k}"))?,
                    theta: state.buffers(&format!("theta.{k}"))?,
                })
            })
            .collect::<Result<_, MethodError>>()?;
        Ok(())
    }
}

/// The `ewc` kind.
pub struct EwcKind;

impl MethodKind for EwcKind {
    const NEEDS_TASK_BOUNDARIES: bool = true;
    const KIND: &'static str = "ewc";
    const SUMMARY: &'static str =
        "elastic weight consolidation: a Fisher-weighted quadratic penalty per task, or online (Kirkpatrick et al. 2017)";
    type Config = EwcConfig;
    fn check(c: &EwcConfig) -> Result<(), String> {
        if !(c.lambda.is_finite() && c.lambda >= 0.0) {
            return Err(format!("`lambda` must be a number ≥ 0, not {}", c.lambda));
        }
        if !(c.gamma.is_finite() && (0.0..=1.0).contains(&c.gamma)) {
            return Err(format!("`gamma` must lie in [0, 1], not {}", c.gamma));
        }
        if !(c.fisher_samples >= 1.0 && c.fisher_samples.fract() == 0.0 && c.fisher_samples <= 1e9) {
            return Err(format!("`fisher_samples` must be a whole number ≥ 1, not {}", c.fisher_samples));
        }
        Ok(())
    }
    fn build(c: EwcConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(Ewc::new(c))
    }
    fn build_conv(c: EwcConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(Ewc::new(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::context::testing::{synthetic_task, train_steps, with_task_of};
    use crate::model::Mlp;
    use crate::optim::{Optimizer, OptimizerKind};
    use crate::protocol::{Activation, MethodSpec};
    use crate::rng;
    use crate::stream::Task;

    fn ewc(config: EwcConfig) -> Ewc {
        Ewc::new(config)
    }

    fn finish(method: &mut Ewc, net: &mut Mlp, task: &Task, head: std::ops::Range<usize>, seed: u64) {
        with_task_of(net, task, head, &mut rng::stream(seed, "fisher", 0), |cx| method.task_finished(cx))
            .0
            .unwrap();
    }

    /// Softmax outputs of a one-layer network (z = Wx + b) on `x`, in f64.
    fn probabilities(net: &Mlp, x: &[f32]) -> Vec<f64> {
        let layer = &net.layers()[0];
        let z: Vec<f64> = (0..layer.outputs)
            .map(|k| {
                layer.row(k).iter().zip(x).map(|(&w, &x)| f64::from(w) * f64::from(x)).sum::<f64>()
                    + f64::from(layer.bias[k])
            })
            .collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
        let total: f64 = e.iter().sum();
        e.iter().map(|v| v / total).collect()
    }

    /// For softmax regression, ∂(−log p_y)/∂W_kj = (p_k − δ_ky) x_j and ∂/∂b_k = p_k − δ_ky. The
    /// empirical Fisher is the mean of their squares at the labels; the true Fisher takes the
    /// expectation over y ~ p: E[(p_k − δ_ky)²] = p_k(1 − p_k), so F_kj = mean x_j² p_k(1 − p_k).
    #[test]
    fn the_fisher_of_softmax_regression_equals_the_analytic_value() {
        let mut net = Mlp::new(&[3, 4], Activation::Relu, &mut rng::stream(7, "t", 0));
        net.params.layers[0].bias.copy_from_slice(&[0.3, -0.2, 0.1, 0.0]);
        let task = synthetic_task(&net, 0, 2500);
        let n = task.train.len();
        let mut x = vec![0.0f32; 3];
        // Analytic values, and the variance of the sampled (true) estimate.
        let (mut empirical, mut expected, mut variance) =
            (vec![0.0f64; 16], vec![0.0f64; 16], vec![0.0f64; 16]);
        for i in 0..n {
            task.train.gather_inputs(&[i], &mut x);
            let p = probabilities(&net, &x);
            let Target::Class(y) = task.train.target(i) else { unreachable!() };
            for k in 0..4 {
                let d = p[k] - f64::from(u8::from(k == y as usize));
                let (second, fourth) =
                    (p[k] * (1.0 - p[k]), p[k].powi(4) * (1.0 - p[k]) + (1.0 - p[k]).powi(4) * p[k]);
                for j in 0..4 {
                    // Columns 0..3 are the weights from input j, column 3 the bias.
                    let scale = if j < 3 { f64::from(x[j]).powi(2) } else { 1.0 };
                    empirical[k * 4 + j] += scale * d * d / n as f64;
                    expected[k * 4 + j] += scale * second / n as f64;
                    variance[k * 4 + j] += scale * scale * (fourth - second * second) / (n * n) as f64;
                }
            }
        }
        let estimate =
            |kind: FisherKind| {
                let mut method =
                    ewc(EwcConfig { fisher: kind, fisher_samples: n as f64, ..EwcConfig::default() });
                finish(&mut method, &mut net.clone(), &task, 0..4, 1);
                let (weight, bias) = (&method.anchors[0].fisher[0], &method.anchors[0].fisher[1]);
                (0..16)
                    .map(|i| {
                        if i % 4 < 3 {
                            f64::from(weight[i / 4 * 3 + i % 4])
                        } else {
                            f64::from(bias[i / 4])
                        }
                    })
                    .collect::<Vec<_>>()
            };
        for (got, want) in estimate(FisherKind::Empirical).iter().zip(&empirical) {
            assert!((got - want).abs() <= 1e-5 * want.abs() + 1e-9, "empirical Fisher {got} vs {want}");
        }
        for ((got, want), var) in estimate(FisherKind::True).iter().zip(&expected).zip(&variance) {
            // The sampled estimate is unbiased; four standard errors (about 1% here).
            assert!((got - want).abs() <= 4.0 * var.sqrt(), "true Fisher {got} vs {want} ± {}", var.sqrt());
        }
    }

    /// Two heads: task 0 reads outputs 0..4, task 1 outputs 4..8. Task 1's head has Fisher 0 for
    /// task 0 (its outputs never entered task 0's loss), so EWC leaves it free, while the
    /// hidden layer, which task 0 used, is held near θ*.
    #[test]
    fn with_a_large_lambda_important_parameters_barely_move_and_unimportant_ones_do() {
        let mut trained = Mlp::new(&[6, 10, 8], Activation::Tanh, &mut rng::stream(8, "t", 0));
        let half = Mlp::new(&[6, 4], Activation::Tanh, &mut rng::stream(8, "t", 1));
        let (task0, task1) = (synthetic_task(&half, 0, 40), synthetic_task(&half, 1, 40));
        let config = OptimizerConfig { lr: 0.05, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
        let mut r = rng::stream(9, "method", 0);
        let mut plain = crate::method::backprop::Backprop;
        let mut opt = Optimizer::new(config, &trained);
        train_steps(&mut plain, &mut trained, &mut opt, &mut r, &task0, 0..4, 0..300, 16);

        let mut probe = ewc(EwcConfig { lambda: 0.0, ..EwcConfig::default() });
        finish(&mut probe, &mut trained.clone(), &task0, 0..4, 2);
        let fisher = &probe.anchors[0].fisher;
        // Buffers: hidden weight, hidden bias, output weight, output bias.
        assert!(fisher[2][4 * 10..].iter().chain(&fisher[3][4..]).all(|&f| f == 0.0));
        let max = fisher.iter().flatten().fold(0.0f32, |m, &f| m.max(f));
        // As large as SGD stays stable with: lr·λ·max F = 1.
        let large = 1.0 / (0.05 * f64::from(max));

        // Hidden-layer parameters (weights and biases) in decreasing order of their Fisher.
        let hidden_fisher: Vec<f32> = fisher[0].iter().chain(&fisher[1]).copied().collect();
        let mut order: Vec<usize> = (0..hidden_fisher.len()).collect();
        order.sort_by(|&a, &b| hidden_fisher[b].total_cmp(&hidden_fisher[a]));
        let important = &order[..order.len() / 4];
        let moved = |lambda: f64| {
            let mut method = ewc(EwcConfig { lambda, ..EwcConfig::default() });
            let mut net = trained.clone();
            finish(&mut method, &mut net, &task0, 0..4, 2);
            let mut opt = Optimizer::new(config, &net);
            train_steps(&mut method, &mut net, &mut opt, &mut r.clone(), &task1, 4..8, 0..300, 16);
            let flat = |m: &Mlp| -> Vec<f32> {
                m.layers()[0].weight.iter().chain(&m.layers()[0].bias).copied().collect()
            };
            let (now, before) = (flat(&net), flat(&trained));
            let hidden =
                important.iter().map(|&i| (now[i] - before[i]).abs()).sum::<f32>() / important.len() as f32;
            let (l1, t1) = (&net.layers()[1], &trained.layers()[1]);
            let new_head =
                l1.weight[40..].iter().zip(&t1.weight[40..]).map(|(a, b)| (a - b).abs()).sum::<f32>() / 40.0;
            (hidden, new_head)
        };
        let (free_hidden, free_head) = moved(0.0);
        let (held_hidden, held_head) = moved(large);
        assert!(
            held_hidden < 0.05 * free_hidden,
            "the quarter of the hidden layer most important to task 0 moved {held_hidden} (λ = {large}) vs {free_hidden} (λ = 0)"
        );
        assert!(
            held_head > 0.5 * free_head && held_head > 20.0 * held_hidden,
            "new head {held_head} vs {free_head}"
        );
    }

    /// The conv-net version of the test above: two heads on a conv net with batch norm and a
    /// residual block; the new head's rows of the linear layer have Fisher 0 for task 0 and
    /// move freely, while the parameters of the convolutional part (kernels, biases, γ, β)
    /// important to task 0 are held near θ*.
    #[test]
    fn on_a_conv_net_important_parameters_barely_move_and_unimportant_ones_do() {
        use crate::method::conv_testing::{conv_task, small_net, train_conv_steps, with_conv_task_of};
        use crate::model::convnet::ConvNet;
        let mut trained = small_net(8, 8);
        let (task0, task1) = (conv_task(&trained, 4, 0, 40), conv_task(&trained, 4, 1, 40));
        let config = OptimizerConfig { lr: 0.05, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
        let mut r = rng::stream(9, "method", 0);
        let mut plain = crate::method::backprop::Backprop;
        let mut opt = Optimizer::for_parameters(config, &trained);
        train_conv_steps(&mut plain, &mut trained, &mut opt, &mut r, &task0, 0..4, 0..200, 16);
        let finish = |method: &mut Ewc, net: &mut ConvNet| {
            let running = net.tensors().iter().map(|t| t.values.to_vec()).collect::<Vec<_>>();
            with_conv_task_of(net, &task0, 0..4, &mut rng::stream(2, "fisher", 0), |cx| {
                method.task_finished(cx)
            })
            .0
            .unwrap();
            // The Fisher passes run in evaluation mode: the running statistics do not move.
            assert_eq!(net.tensors().iter().map(|t| t.values.to_vec()).collect::<Vec<_>>(), running);
        };

        let mut probe = ewc(EwcConfig { lambda: 0.0, ..EwcConfig::default() });
        finish(&mut probe, &mut trained.clone());
        let fisher = &probe.anchors[0].fisher;
        // The last two buffers are the linear layer's weight (8 × 6) and bias.
        let (weight, bias) = (&fisher[fisher.len() - 2], &fisher[fisher.len() - 1]);
        assert!(weight[4 * 6..].iter().chain(&bias[4..]).all(|&f| f == 0.0));
        assert!(weight[..4 * 6].iter().any(|&f| f > 0.0));
        let max = fisher.iter().flatten().fold(0.0f32, |m, &f| m.max(f));
        let large = 1.0 / (0.05 * f64::from(max));

        // The important parameters of the convolutional part: those whose penalty pulls back at
        // least a tenth of their distance per step (lr·λ·F ≥ 0.1, F ≥ max F / 10): about a tenth
        // of them, in kernels, γ and β alike.
        let body = fisher.len() - 2;
        let body_fisher: Vec<f32> = fisher[..body].iter().flatten().copied().collect();
        let important: Vec<usize> =
            (0..body_fisher.len()).filter(|&i| body_fisher[i] >= max / 10.0).collect();
        assert!(important.len() * 20 > body_fisher.len(), "{} of {}", important.len(), body_fisher.len());
        let moved = |lambda: f64| {
            let mut method = ewc(EwcConfig { lambda, ..EwcConfig::default() });
            let mut net = trained.clone();
            finish(&mut method, &mut net);
            let mut opt = Optimizer::for_parameters(config, &net);
            train_conv_steps(&mut method, &mut net, &mut opt, &mut r.clone(), &task1, 4..8, 0..600, 16);
            let flat =
                |m: &ConvNet| -> Vec<f32> { m.slices()[..body].iter().copied().flatten().copied().collect() };
            let (now, before) = (flat(&net), flat(&trained));
            let held =
                important.iter().map(|&i| (now[i] - before[i]).abs()).sum::<f32>() / important.len() as f32;
            let (w, w0) = (net.slices()[body], trained.slices()[body]);
            let head = w[24..].iter().zip(&w0[24..]).map(|(a, b)| (a - b).abs()).sum::<f32>() / 24.0;
            (held, head)
        };
        let (free_body, free_head) = moved(0.0);
        let (held_body, held_head) = moved(large);
        // Measured: 0.0040 vs 0.058 (7%); the new head 0.46 vs 0.32.
        assert!(
            held_body < 0.12 * free_body,
            "the conv part's parameters important to task 0 moved {held_body} (λ = {large}) vs {free_body} (λ = 0)"
        );
        assert!(
            held_head > 0.5 * free_head && held_head > 20.0 * held_body,
            "new head {held_head} vs {free_head}"
        );
    }

    #[test]
    fn online_mode_keeps_one_decayed_running_fisher_anchored_at_the_latest_solution() {
        let mut net = Mlp::new(&[5, 6, 3], Activation::Relu, &mut rng::stream(10, "t", 0));
        let (task0, task1) = (synthetic_task(&net, 0, 5), synthetic_task(&net, 1, 5));
        let empirical =
            EwcConfig { fisher: FisherKind::Empirical, fisher_samples: 15.0, ..EwcConfig::default() };
        let mut online = ewc(EwcConfig { mode: EwcMode::Online, gamma: 0.75, ..empirical.clone() });
        let mut separate = ewc(empirical);
        let mut second = net.clone();
        second.params.layers[0].weight[0] += 0.5;
        for method in [&mut online, &mut separate] {
            finish(method, &mut net.clone(), &task0, 0..3, 3);
            finish(method, &mut second.clone(), &task1, 0..3, 3);
        }
        assert_eq!((online.anchors.len(), separate.anchors.len()), (1, 2));
        let (f0, f1) = (&separate.anchors[0].fisher, &separate.anchors[1].fisher);
        let mut expected = f0.clone();
        for ((e, a), b) in expected.iter_mut().zip(f0).zip(f1) {
            for ((e, &a), &b) in e.iter_mut().zip(a).zip(b) {
                *e = 0.75 * a + b;
            }
        }
        assert_eq!(online.anchors[0].fisher, expected);
        assert_eq!(online.anchors[0].theta, snapshot(&second.params));
        assert_eq!(separate.anchors[0].theta, snapshot(&net.params));
        // The penalty gradient is λ Σ F ⊙ (θ − θ*).
        let mut grads = Layers::zeros_like(&net.params);
        let mut opt = Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Sgd), &net);
        let shaped =
            crate::method::context::testing::with_step(&mut net, &mut grads, &mut opt, &[0.0; 5], |cx| {
                online.shape_gradients(cx);
                cx.grads.layers[0].weight[0]
            });
        let f = online.anchors[0].fisher[0][0];
        assert!((shaped - 100.0 * f * -0.5).abs() <= 1e-6 * shaped.abs(), "{shaped}");
    }

    #[test]
    fn anchors_survive_a_checkpoint() {
        let mut net = Mlp::new(&[4, 5, 3], Activation::Relu, &mut rng::stream(11, "t", 0));
        let task = synthetic_task(&net, 0, 3);
        for mode in [EwcMode::Separate, EwcMode::Online] {
            let mut method = ewc(EwcConfig { mode, fisher_samples: 4.0, ..EwcConfig::default() });
            let mut empty = MethodState::default();
            ContinualMethod::<Mlp>::save(&method, &mut empty);
            finish(&mut method, &mut net, &task, 0..3, 4);
            finish(&mut method, &mut net, &task, 0..3, 5);
            let mut state = MethodState::default();
            ContinualMethod::<Mlp>::save(&method, &mut state);
            let mut restored = ewc(EwcConfig { mode, ..EwcConfig::default() });
            ContinualMethod::<Mlp>::load(&mut restored, &state).unwrap();
            assert_eq!(restored.anchors, method.anchors);
            ContinualMethod::<Mlp>::load(&mut restored, &empty).unwrap();
            assert!(restored.anchors.is_empty());
        }
    }

    #[test]
    fn parameters_are_named_and_checked() {
        let spec = |params: serde_json::Value| MethodSpec {
            name: "e".into(),
            kind: "ewc".into(),
            params: serde_json::from_value(params).unwrap(),
            worker: None,
        };
        let ok = |p| crate::method::validate(&spec(p)).unwrap();
        ok(
            serde_json::json!({"lambda": 5000, "mode": "online", "gamma": 0.9, "fisher": true, "fisher_samples": 200}),
        );
        ok(serde_json::json!({"fisher": "empirical", "optimizer": "adam"}));
        let err = |p| crate::method::validate(&spec(p)).unwrap_err().to_string();
        assert!(err(serde_json::json!({"lambda": -1})).contains("`lambda` must be a number ≥ 0"));
        assert!(err(serde_json::json!({"gamma": 1.5})).contains("`gamma` must lie in [0, 1]"));
        assert!(err(serde_json::json!({"fisher_samples": 2.5}))
            .contains("`fisher_samples` must be a whole number"));
        let e = err(serde_json::json!({"fisher": false}));
        assert!(e.contains("`fisher` must be `true`") && e.contains("`empirical`"), "{e}");
        assert!(err(serde_json::json!({"mode": "both"})).contains("unknown variant `both`"));
    }
}
