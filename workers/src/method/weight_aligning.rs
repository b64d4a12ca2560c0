//! `weight_aligning` (Zhao, Xiao, Gan, Zhang & Xia 2020, CVPR, "Maintaining discrimination and
//! fairness in class incremental learning"), for class-incremental streams with one shared head
//! (split MNIST, `setting: class_incremental`).
//!
//! Trained on new classes only, the output layer's weight vectors of the new classes grow
//! longer than those of the old ones, so the network predicts new classes far too often. After
//! each task, Weight Aligning (WA) rescales the new classes' output rows so that their mean
//! norm equals the old classes':
//!
//! ```text
//! γ = mean_{k ∈ old} ‖W_k‖ / mean_{k ∈ new} ‖W_k‖,     W_k ← γ W_k   (k ∈ new)
//! ```
//!
//! and knowledge distillation (KD) from the network as it was after the previous task keeps the
//! old classes discriminated among themselves: the loss is
//!
//! ```text
//! (1 − λ) CE + λ KD,   KD = −(1/B) Σ_b Σ_{k ∈ old} q̂_k log q_k,   q = softmax(z_old / T)
//! ```
//!
//! with q̂ from the frozen previous network, T = 2 and λ = n_old / (n_old + n_new), as in the
//! paper. "New" classes are those in this task's training targets that no earlier task had,
//! "old" those seen in earlier tasks — the paper's incremental step, whose training data holds
//! the new classes and exemplars of the old ones. With disjoint class groups (split MNIST)
//! these are the current and the earlier groups; on a stream whose tasks hold every class seen
//! so far (class-incremental CIFAR-100, whose head grows) the new classes are the increment and
//! the old ones are still trained on, as with the paper's exemplars. A task that adds no class
//! (permuted MNIST: the same classes every task) has no new classes, so nothing is old either:
//! no alignment and no distillation (λ would be 1, leaving no cross-entropy). Classes are
//! output units of the head, so outputs of classes not yet seen are neither old nor new and are
//! left alone.
//!
//! Choices and deviations:
//! - **Bias.** The paper writes the logits as Wφ(x) and the corrected new-class logits as
//!   γ·o_new. clorch's output layer has biases, so by default (`align_bias: true`) the new
//!   classes' biases are scaled by γ too, which makes every new-class logit exactly γ times its
//!   old value; `align_bias: false` scales the weights only, as PyCIL does.
//! - **Distillation** is on by default, as in the paper; `distillation` scales the paper's λ
//!   (1: the paper's, 0: off, training then equals plain backprop until the first alignment).
//!   KD's gradient is (q − q̂)/T per example, without a T² factor, like PyCIL and FACIL.
//! - **Exemplars.** The paper also replays a memory of old-class examples; clorch has no replay
//!   buffer, so this is WA without exemplars. Without them the cross-entropy of a task sees no
//!   old class and drives old logits down through more than the weight norms (biases, features),
//!   so expect far less benefit than the paper reports.
//! - **Weight clipping.** `clip_weights: true` clips the output layer's weights at 0 after every
//!   step, the paper's optional positive-weights constraint (off by default, as in FACIL).
//!
//! The conv-net version ([`conv`]) aligns the rows of the network's final `linear` layer.
//!
//! WA needs task boundaries and class labels: on online streams it never acts, and on a stream
//! whose tasks all share the same classes (permuted MNIST) there are never old classes, so it
//! equals plain backprop.
//!
//! # Events
//!
//! `weight_aligning.gamma` after each task that was aligned: `{"gamma": γ, "old_classes":
//! [..], "new_classes": [..], "mean_norm_old": m_old, "mean_norm_new": m_new}` (norms before the
//! alignment; classes as output indices of the head).

mod conv;

use serde::{Deserialize, Serialize};

use super::{ContinualMethod, MethodError, MethodKind, MethodState, OutputContext, StepContext, TaskContext};
use crate::model::convnet::ConvNet;
use crate::model::{fused, Linear, Mlp, Workspace};
use crate::optim::OptimizerConfig;
use crate::protocol::payload::{MethodPayload, WeightAligningGamma};
use crate::protocol::Activation;
use crate::stream::{Target, Task};

/// Hyper-parameters of `weight_aligning`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightAligningConfig {
    /// Scale of the distillation weight: the loss is (1 − λ)·CE + λ·KD with λ = `distillation`
    /// × n_old / (n_old + n_new) (default 1, the paper's λ; 0 turns distillation off). In [0, 1].
    pub distillation: f64,
    /// T, the distillation temperature (default 2, the paper's). > 0.
    pub temperature: f64,
    /// Scale the new classes' biases by γ along with their weights, so their logits are exactly
    /// γ times larger or smaller (default true; false scales weights only, as PyCIL).
    pub align_bias: bool,
    /// Clip the output layer's weights at 0 after every step (default false).
    pub clip_weights: bool,
}

impl Default for WeightAligningConfig {
    fn default() -> Self {
        WeightAligningConfig { distillation: 1.0, temperature: 2.0, align_bias: true, clip_weights: false }
    }
}

/// Weight Aligning with knowledge distillation.
///
/// State: the classes seen in earlier tasks, the current task's classes, and the frozen network
/// of the previous task (checkpointed as `previous.*`).
pub struct WeightAligning {
    config: WeightAligningConfig,
    /// Output indices of classes seen in tasks before the current one, sorted.
    seen: Vec<usize>,
    /// Output indices of the current task's classes, sorted.
    current: Vec<usize>,
    /// The network as it was after the previous task (after its alignment), for distillation.
    previous: Option<Mlp>,
    /// Buffers of the previous network's forward pass (not state: rebuilt on demand).
    workspace: Option<Workspace>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    seen: Vec<usize>,
    current: Vec<usize>,
    previous_activation: Option<Activation>,
}

impl WeightAligning {
    /// Old classes of the current task (see [`old_classes`]).
    fn old(&self) -> Vec<usize> {
        old_classes(&self.seen, &self.current)
    }

    /// λ of the current task: `distillation` × n_old / (n_old + n_new).
    fn distillation_weight(&self) -> f32 {
        distillation_weight(&self.config, self.old().len(), new_classes(&self.seen, &self.current).len())
    }
}

/// New classes: those in `current` (the task's classes) not in `seen` (earlier tasks').
fn new_classes(seen: &[usize], current: &[usize]) -> Vec<usize> {
    current.iter().copied().filter(|c| seen.binary_search(c).is_err()).collect()
}

/// Old classes: every class in `seen` when the task adds new ones; none when it adds none.
fn old_classes(seen: &[usize], current: &[usize]) -> Vec<usize> {
    if new_classes(seen, current).is_empty() {
        Vec::new()
    } else {
        seen.to_vec()
    }
}

/// λ = `distillation` × n_old / (n_old + n_new); 0 without old classes.
fn distillation_weight(config: &WeightAligningConfig, old: usize, new: usize) -> f32 {
    if old == 0 || config.distillation == 0.0 {
        return 0.0;
    }
    (config.distillation * old as f64 / (old + new) as f64) as f32
}

/// The output indices of `task`'s training classes (its targets offset by `head_start`), sorted.
fn task_classes(task: &Task, head_start: usize) -> Result<Vec<usize>, MethodError> {
    let mut classes = Vec::new();
    for i in 0..task.train.len() {
        match task.train.target(i) {
            Target::Class(c) => classes.push(head_start + c as usize),
            Target::Real(_) => {
                return Err(MethodError::Failed(
                    "weight_aligning needs a classification stream; this one has real-valued targets".into(),
                ))
            }
        }
    }
    classes.sort_unstable();
    classes.dedup();
    Ok(classes)
}

/// Adds `current` to the sorted list `seen`.
fn add_seen(seen: &mut Vec<usize>, current: Vec<usize>) {
    for c in current {
        if let Err(at) = seen.binary_search(&c) {
            seen.insert(at, c);
        }
    }
}

/// Turns the cross-entropy gradient in `output_grad` (`batch × width`) into that of
/// (1 − λ)·CE + λ·KD over the `old` outputs, KD's targets from `previous` (the previous
/// network's outputs on the same batch) at temperature `t`.
fn distil(
    lambda: f32,
    t: f64,
    old: &[usize],
    outputs: &[f32],
    previous: &[f32],
    output_grad: &mut [f32],
    width: usize,
) {
    let batch = outputs.len() / width.max(1);
    let scale = lambda as f64 / (t * batch as f64);
    for g in output_grad.iter_mut() {
        *g *= 1.0 - lambda;
    }
    for b in 0..batch {
        let row = b * width..(b + 1) * width;
        let q = softened(&outputs[row.clone()], old, t);
        let target = softened(&previous[row.clone()], old, t);
        let grad = &mut output_grad[row];
        for ((&k, q), target) in old.iter().zip(q).zip(target) {
            grad[k] += (scale * (q - target)) as f32;
        }
    }
}

/// Softmax of `z / t` over the entries `columns` of `row`, in f64.
fn softened(row: &[f32], columns: &[usize], t: f64) -> Vec<f64> {
    let z: Vec<f64> = columns.iter().map(|&k| f64::from(row[k]) / t).collect();
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|v| v / total).collect()
}

/// Weight Aligning proper: rescales the `new` rows of `output` (and their biases with
/// `align_bias`) by γ = mean old norm / mean new norm. Nothing happens without old or new
/// classes, or when the new rows are all zero (no direction to rescale).
fn align(output: &mut Linear, old: &[usize], new: &[usize], align_bias: bool) -> Option<WeightAligningGamma> {
    if old.is_empty() || new.is_empty() {
        return None;
    }
    let norm = |output: &Linear, k: usize| {
        output.row(k).iter().map(|&w| f64::from(w) * f64::from(w)).sum::<f64>().sqrt()
    };
    let mean =
        |classes: &[usize]| classes.iter().map(|&k| norm(output, k)).sum::<f64>() / classes.len() as f64;
    let (mean_old, mean_new) = (mean(old), mean(new));
    if mean_new <= 0.0 {
        return None;
    }
    let gamma = mean_old / mean_new;
    for &k in new {
        for w in output.row_mut(k) {
            *w = (f64::from(*w) * gamma) as f32;
        }
        if align_bias {
            output.bias[k] = (f64::from(output.bias[k]) * gamma) as f32;
        }
    }
    Some(WeightAligningGamma {
        gamma,
        mean_norm_new: mean_new,
        mean_norm_old: mean_old,
        new_classes: new.to_vec(),
        old_classes: old.to_vec(),
    })
}

impl ContinualMethod for WeightAligning {
    fn task_started(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        self.current = task_classes(cx.task, cx.head.start)?;
        Ok(())
    }

    fn output_gradient(&mut self, cx: &mut OutputContext<'_>) {
        let lambda = self.distillation_weight();
        let Some(previous) = self.previous.as_ref().filter(|_| lambda > 0.0) else { return };
        let old = self.old();
        let sizes = previous.sizes();
        let batch = cx.input.len() / sizes[0];
        let ws = self.workspace.get_or_insert_with(|| Workspace::new(&sizes, batch));
        ws.set_batch(batch);
        ws.input.copy_from_slice(cx.input);
        fused::forward(previous, ws);
        distil(lambda, self.config.temperature, &old, cx.outputs, ws.outputs(), cx.output_grad, cx.width);
    }

    fn after_update(&mut self, cx: &mut StepContext<'_>) {
        if self.config.clip_weights {
            let last = cx.net.params.layers.len() - 1;
            cx.net.params.layers[last].weight.iter_mut().for_each(|w| *w = w.max(0.0));
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        let output = cx.net.params.layers.last_mut().expect("a network has an output layer");
        let new = new_classes(&self.seen, &self.current);
        if let Some(aligned) = align(output, &self.old(), &new, self.config.align_bias) {
            cx.report.push(MethodPayload::WeightAligningGamma(aligned));
        }
        add_seen(&mut self.seen, std::mem::take(&mut self.current));
        if self.config.distillation > 0.0 {
            self.previous = Some(cx.net.clone());
        }
        Ok(())
    }

    fn save(&self, state: &mut MethodState) {
        let meta = Meta {
            seen: self.seen.clone(),
            current: self.current.clone(),
            previous_activation: self.previous.as_ref().map(|n| n.activation),
        };
        state.meta = serde_json::to_value(meta).expect("class lists serialise");
        if let Some(previous) = &self.previous {
            state.put_sized_layers("previous", &previous.params);
        }
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        let meta: Meta = serde_json::from_value(state.meta.clone())
            .map_err(|e| MethodError::State(format!("weight_aligning classes: {e}")))?;
        self.seen = meta.seen;
        self.current = meta.current;
        self.previous = match meta.previous_activation {
            Some(activation) => Some(Mlp { params: state.sized_layers("previous")?, activation }),
            None => None,
        };
        Ok(())
    }
}

/// The `weight_aligning` kind.
pub struct WeightAligningKind;

impl MethodKind for WeightAligningKind {
    const NEEDS_TASK_BOUNDARIES: bool = true;
    const KIND: &'static str = "weight_aligning";
    const SUMMARY: &'static str =
        "class-incremental: align new classes' output norms to old ones after each task, with distillation (Zhao et al. 2020)";
    type Config = WeightAligningConfig;
    fn check(c: &WeightAligningConfig) -> Result<(), String> {
        if !(c.distillation.is_finite() && (0.0..=1.0).contains(&c.distillation)) {
            return Err(format!("`distillation` must lie in [0, 1], not {}", c.distillation));
        }
        if !(c.temperature.is_finite() && c.temperature > 0.0) {
            return Err(format!("`temperature` must be a number > 0, not {}", c.temperature));
        }
        Ok(())
    }
    fn build(c: WeightAligningConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(WeightAligning {
            config: c,
            seen: Vec::new(),
            current: Vec::new(),
            previous: None,
            workspace: None,
        })
    }
    fn build_conv(c: WeightAligningConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(conv::ConvWeightAligning::new(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::context::testing::{synthetic_task, with_task_of};
    use crate::model::loss::{self, Targets};
    use crate::protocol::MethodSpec;
    use crate::rng;

    fn wa(config: WeightAligningConfig) -> WeightAligning {
        WeightAligning { config, seen: Vec::new(), current: Vec::new(), previous: None, workspace: None }
    }

    fn outputs(net: &Mlp, input: &[f32]) -> Vec<f32> {
        let mut ws = Workspace::new(&net.sizes(), input.len() / net.sizes()[0]);
        ws.input.copy_from_slice(input);
        fused::forward(net, &mut ws);
        ws.outputs().to_vec()
    }

    fn mean_norm(net: &Mlp, classes: &[usize]) -> f64 {
        let out = net.layers().last().unwrap();
        classes
            .iter()
            .map(|&k| out.row(k).iter().map(|&w| f64::from(w).powi(2)).sum::<f64>().sqrt())
            .sum::<f64>()
            / classes.len() as f64
    }

    #[test]
    fn alignment_equalises_mean_norms_and_keeps_the_order_of_new_class_logits() {
        let mut net = Mlp::new(&[4, 7, 8], Activation::Relu, &mut rng::stream(1, "t", 0));
        // New classes 4, 5 trained "too long": long rows, large biases.
        for k in [4, 5] {
            net.params.layers[1].row_mut(k).iter_mut().for_each(|w| *w *= 3.0);
            net.params.layers[1].bias[k] = 0.4 + k as f32 * 0.1;
        }
        let before = net.clone();
        let mut method = wa(WeightAligningConfig::default());
        method.seen = vec![0, 1, 2, 3];
        method.current = vec![4, 5];
        let task = synthetic_task(&net, 0, 2);
        let (_, report) = with_task_of(&mut net, &task, 0..8, &mut rng::stream(0, "t", 1), |cx| {
            method.task_finished(cx).unwrap()
        });
        let (old, new) = (mean_norm(&net, &[0, 1, 2, 3]), mean_norm(&net, &[4, 5]));
        assert!((old - new).abs() <= 1e-6 * old, "{old} vs {new}");
        let gamma = mean_norm(&before, &[0, 1, 2, 3]) / mean_norm(&before, &[4, 5]);
        assert!(gamma < 0.5, "{gamma}");
        let [MethodPayload::WeightAligningGamma(aligned)] = report.as_slice() else { panic!("{report:?}") };
        assert!((aligned.gamma - gamma).abs() < 1e-12);
        assert!((aligned.mean_norm_old / aligned.mean_norm_new - gamma).abs() < 1e-12, "{aligned:?}");
        assert_eq!(
            (aligned.old_classes.as_slice(), aligned.new_classes.as_slice()),
            (&[0, 1, 2, 3][..], &[4, 5][..])
        );
        // Old and unseen classes' rows are untouched.
        for k in [0, 1, 2, 3, 6, 7] {
            assert_eq!(net.layers()[1].row(k), before.layers()[1].row(k));
            assert_eq!(net.layers()[1].bias[k], before.layers()[1].bias[k]);
        }
        // Every new-class logit is γ times its old value, so their order is unchanged.
        let mut r = rng::stream(2, "inputs", 0);
        let inputs: Vec<f32> = (0..20 * 4).map(|_| rand::Rng::gen_range(&mut r, -2.0f32..2.0)).collect();
        let (now, was) = (outputs(&net, &inputs), outputs(&before, &inputs));
        for b in 0..20 {
            let (z, z0) = (&now[b * 8..b * 8 + 8], &was[b * 8..b * 8 + 8]);
            assert_eq!(z[4] < z[5], z0[4] < z0[5]);
            for k in [4, 5] {
                assert!((f64::from(z[k]) - gamma * f64::from(z0[k])).abs() < 1e-5, "{} vs {}", z[k], z0[k]);
            }
        }
        // The task's classes are now seen, and the network is kept for distillation.
        assert_eq!((method.seen.as_slice(), method.current.is_empty()), (&[0, 1, 2, 3, 4, 5][..], true));
        assert_eq!(method.previous.as_ref(), Some(&net));
    }

    #[test]
    fn without_old_classes_nothing_is_aligned_and_classes_are_tracked_from_the_targets() {
        let mut net = Mlp::new(&[4, 5, 3], Activation::Relu, &mut rng::stream(3, "t", 0));
        let before = net.clone();
        let task = synthetic_task(&net, 0, 2);
        let mut method = wa(WeightAligningConfig { distillation: 0.0, ..WeightAligningConfig::default() });
        let (_, report) = with_task_of(&mut net, &task, 0..3, &mut rng::stream(0, "t", 1), |cx| {
            method.task_started(cx).unwrap();
            assert_eq!(method.current, [0, 1, 2]);
            method.task_finished(cx).unwrap();
        });
        assert!(report.is_empty());
        assert_eq!(net, before);
        assert_eq!(method.seen, [0, 1, 2]);
        assert!(method.previous.is_none(), "no distillation, no copy");
        // The same classes again: none of them is old, so there is nothing to distil or align.
        let (_, report) = with_task_of(&mut net, &task, 0..3, &mut rng::stream(0, "t", 1), |cx| {
            method.task_started(cx).unwrap();
            assert_eq!(method.distillation_weight(), 0.0);
            method.task_finished(cx).unwrap();
        });
        assert!(report.is_empty());
    }

    /// The adjusted output gradient is the gradient of (1 − λ)·CE + λ·KD, checked against
    /// central differences of that loss written out independently.
    #[test]
    fn the_output_gradient_is_that_of_the_weighted_cross_entropy_and_distillation_loss() {
        let net = Mlp::new(&[3, 5, 6], Activation::Tanh, &mut rng::stream(4, "t", 0));
        let mut previous = net.clone();
        previous.params.layers[1].weight.iter_mut().for_each(|w| *w *= -0.7);
        let mut method = wa(WeightAligningConfig::default());
        method.seen = vec![0, 1, 2];
        method.current = vec![3, 4];
        method.previous = Some(previous.clone());
        let lambda = 3.0 / 5.0;
        assert!((method.distillation_weight() - lambda).abs() < 1e-7);
        let input = [0.5f32, -1.0, 0.3, 1.2, 0.1, -0.4];
        let classes = [3u32, 4];
        let z = outputs(&net, &input);
        let z_old = outputs(&previous, &input);
        let loss = |z: &[f64]| -> f64 {
            let t = 2.0;
            let mut total = 0.0;
            for b in 0..2 {
                let row = &z[b * 6..b * 6 + 6];
                let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
                let ce = lse - row[classes[b] as usize];
                let soft = |r: &[f64]| {
                    let s: f64 = (0..3).map(|k| (r[k] / t).exp()).sum();
                    (0..3).map(|k| (r[k] / t).exp() / s).collect::<Vec<_>>()
                };
                let old_row: Vec<f64> = z_old[b * 6..b * 6 + 6].iter().map(|&v| f64::from(v)).collect();
                let (q, q_hat) = (soft(row), soft(&old_row));
                let kd = -(0..3).map(|k| q_hat[k] * q[k].ln()).sum::<f64>();
                total += ((1.0 - lambda as f64) * ce + lambda as f64 * kd) / 2.0;
            }
            total
        };
        let mut grad = vec![0.0f32; 12];
        loss::evaluate(&z, 6, 0..6, Targets::Classes(&classes), Some(&mut grad));
        method.output_gradient(&mut OutputContext {
            net: &net,
            input: &input,
            outputs: &z,
            output_grad: &mut grad,
            width: 6,
            head: 0..6,
            task: 1,
        });
        let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
        for i in 0..12 {
            let h = 1e-5;
            let (mut up, mut down) = (z64.clone(), z64.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!((f64::from(grad[i]) - numeric).abs() < 1e-5, "output {i}: {} vs {numeric}", grad[i]);
        }
    }

    #[test]
    fn clipping_keeps_output_weights_non_negative_and_state_survives_a_checkpoint() {
        let mut net = Mlp::new(&[3, 4, 5], Activation::Relu, &mut rng::stream(5, "t", 0));
        let mut method = wa(WeightAligningConfig { clip_weights: true, ..WeightAligningConfig::default() });
        let mut grads = crate::model::Layers::zeros_like(&net.params);
        let mut opt =
            crate::optim::Optimizer::new(OptimizerConfig::defaults(crate::optim::OptimizerKind::Sgd), &net);
        let hidden_before = net.layers()[0].clone();
        crate::method::context::testing::with_step(&mut net, &mut grads, &mut opt, &[0.0; 3], |cx| {
            method.after_update(cx)
        });
        assert!(net.layers()[1].weight.iter().all(|&w| w >= 0.0));
        assert!(net.layers()[1].weight.iter().any(|&w| w > 0.0));
        assert_eq!(net.layers()[0], hidden_before, "only the output layer is clipped");

        method.seen = vec![0, 1];
        method.current = vec![2];
        method.previous = Some(net.clone());
        let mut state = MethodState::default();
        method.save(&mut state);
        let mut restored = wa(WeightAligningConfig::default());
        restored.load(&state).unwrap();
        assert_eq!((restored.seen, restored.current, restored.previous), (vec![0, 1], vec![2], Some(net)));
    }

    #[test]
    fn parameters_are_checked() {
        let spec = |params: serde_json::Value| MethodSpec {
            name: "w".into(),
            kind: "weight_aligning".into(),
            params: serde_json::from_value(params).unwrap(),
            worker: None,
        };
        crate::method::validate(&spec(serde_json::json!({"distillation": 0.5, "temperature": 1}))).unwrap();
        let err = |p| crate::method::validate(&spec(p)).unwrap_err().to_string();
        assert!(err(serde_json::json!({"distillation": 2})).contains("`distillation` must lie in [0, 1]"));
        assert!(err(serde_json::json!({"temperature": 0})).contains("`temperature` must be a number > 0"));
    }
}
