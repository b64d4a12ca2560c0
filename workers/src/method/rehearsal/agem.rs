//! `agem`: averaged gradient episodic memory (Chaudhry et al. 2019, ICLR, "Efficient lifelong
//! learning with A-GEM").
//!
//! Each step computes the gradient g of the current batch's loss and the reference gradient
//! g_ref of the mean loss on a batch drawn from the episodic memory (uniformly, without
//! replacement, every example on its own head). When g·g_ref < 0 the step would increase the
//! memory's loss to first order, and g is projected to
//!
//! ```text
//! g̃ = g − (g·g_ref / g_ref·g_ref) · g_ref,   so that g̃·g_ref = 0;
//! ```
//!
//! otherwise g is used as it is. The optimiser then steps with g̃.
//!
//! The memory is the paper's per-task episodic memory: at the end of each task,
//! ⌊`buffer_size` / tasks⌋ examples drawn uniformly without replacement from its training split
//! are added (Mammoth's `agem` does the same at `end_task`), so the memory never holds examples
//! of the task being trained and is empty during the first task, where A-GEM is plain training.
//! It therefore needs task boundaries and is refused on online streams. Differences: the paper
//! draws a 256-example reference batch; here `replay_batch_size` defaults to the training batch's
//! size, as Mammoth's `--minibatch_size` defaults to `--batch_size` — set 256 to match the paper.

use serde::{Deserialize, Serialize};

use super::buffer::{Buffer, Example};
use super::replay::{self, ReplayNet, Scratch};
use crate::method::{
    ContinualMethod, Learner, LearnerStep, MethodError, MethodKind, MethodState, TaskContext,
};
use crate::model::convnet::ConvNet;
use crate::model::{loss, BatchLoss, Parameters};
use crate::optim::OptimizerConfig;

/// Hyper-parameters of `agem`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgemConfig {
    /// Examples in the episodic memory over all tasks, ⌊`buffer_size` / tasks⌋ per task
    /// (default 500).
    #[serde(serialize_with = "crate::method::params::whole_number")]
    pub buffer_size: f64,
    /// Memory examples in the reference batch (default null: as many as the current batch;
    /// the paper uses 256).
    #[serde(serialize_with = "super::whole_or_null")]
    pub replay_batch_size: Option<f64>,
}

impl Default for AgemConfig {
    fn default() -> Self {
        AgemConfig { buffer_size: 500.0, replay_batch_size: None }
    }
}

/// The `agem` kind.
pub struct AgemKind;

impl MethodKind for AgemKind {
    const KIND: &'static str = "agem";
    const SUMMARY: &'static str =
        "A-GEM: project the gradient so the loss on an episodic memory of past tasks does not rise";
    const NEEDS_TASK_BOUNDARIES: bool = true;
    type Config = AgemConfig;
    fn check(c: &AgemConfig) -> Result<(), String> {
        super::check_sizes(c.buffer_size, c.replay_batch_size)
    }
    fn check_stream(c: &AgemConfig, tasks: usize) -> Result<(), String> {
        if (c.buffer_size as usize) < tasks {
            return Err(format!(
                "`buffer_size` ({}) must hold at least one example per task ({tasks} tasks)",
                c.buffer_size
            ));
        }
        Ok(())
    }
    fn build(c: AgemConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(Agem::new(&c))
    }
    fn build_conv(c: AgemConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(Agem::new(&c)))
    }
}

/// A-GEM on networks of family `M`. State: the episodic memory (checkpointed).
pub struct Agem<M: ReplayNet> {
    buffer: Buffer,
    replay: Option<usize>,
    scratch: Option<Scratch<M>>,
}

impl<M: ReplayNet> Agem<M> {
    pub(super) fn new(c: &AgemConfig) -> Self {
        Agem {
            buffer: Buffer::new(c.buffer_size as usize),
            replay: c.replay_batch_size.map(|r| r as usize),
            scratch: None,
        }
    }

    /// The buffer, for tests that check what it holds.
    #[cfg(test)]
    pub(super) fn buffer(&self) -> &Buffer {
        &self.buffer
    }
}

/// Projects `g` so that it does not point against `reference`: when g·r < 0,
/// g ← g − (g·r / r·r)·r. Returns whether it projected.
pub fn project<P: Parameters>(g: &mut P, reference: &P) -> bool {
    let gr = replay::dot(g, reference);
    let rr = replay::dot(reference, reference);
    if gr >= 0.0 || rr <= 0.0 {
        return false;
    }
    let c = (gr / rr) as f32;
    for (g, r) in g.slices_mut().into_iter().zip(reference.slices()) {
        for (g, &r) in g.iter_mut().zip(r) {
            *g -= c * r;
        }
    }
    true
}

impl<M: ReplayNet> ContinualMethod<M> for Agem<M> {
    fn task_finished(&mut self, cx: &mut TaskContext<'_, M>) -> Result<(), MethodError> {
        let split = &cx.task.train;
        let per_task = self.buffer.capacity() / cx.tasks_total.max(1);
        let k = per_task.min(split.len());
        let indices = rand::seq::index::sample(cx.rng, split.len(), k).into_vec();
        let dim = split.dim();
        let mut inputs = vec![0.0f32; k * dim];
        split.gather_inputs(&indices, &mut inputs);
        for (row, &i) in inputs.chunks_exact(dim).zip(&indices) {
            let example = Example { input: row, target: split.target(i), head: cx.head.clone(), logits: &[] };
            self.buffer.push(example);
        }
        Ok(())
    }

    fn save(&self, state: &mut MethodState) {
        self.buffer.save("memory", state);
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        self.buffer.load("memory", state)
    }

    fn learner(&mut self) -> Option<&mut dyn Learner<M>> {
        Some(self)
    }
}

impl<M: ReplayNet> Learner<M> for Agem<M> {
    fn train_step(&mut self, cx: &mut LearnerStep<'_, M>) -> Result<BatchLoss, MethodError> {
        let r = super::replay_count(self.replay, cx.targets.len());
        let scratch = Scratch::fit(&mut self.scratch, cx.net, r);
        let ws = &mut *cx.workspace;
        cx.net.train_forward(ws)?;
        let width = cx.net.outputs();
        let (outputs, grad) = M::outputs_and_grad(ws);
        let current = loss::evaluate(outputs, width, cx.head.clone(), cx.targets, Some(grad));
        if !current.loss_sum.is_finite() {
            return Ok(current);
        }
        cx.net.backward(ws, &mut scratch.total);
        if !self.buffer.is_empty() {
            let slots = self.buffer.sample(r, cx.rng);
            replay::load(&*cx.net, &self.buffer, &slots, &mut scratch.ws);
            cx.net.train_forward(&mut scratch.ws)?;
            let (outputs, grad) = M::outputs_and_grad(&mut scratch.ws);
            grad.fill(0.0);
            let reference = replay::replay_loss(outputs, width, &self.buffer, &slots, 1.0, grad);
            if !reference.loss_sum.is_finite() {
                return Ok(BatchLoss { loss_sum: f64::NAN, ..current });
            }
            cx.net.backward(&mut scratch.ws, &mut scratch.grads);
            project(&mut scratch.total, &scratch.grads);
        }
        cx.optimizer.step_parameters(cx.net.parameters_mut(), &scratch.total);
        Ok(current)
    }

    fn forward(&mut self, variant: Option<&str>, net: &M, ws: &mut M::Workspace) -> Result<(), MethodError> {
        super::no_variant(AgemKind::KIND, variant)?;
        net.predict(ws);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng as _;

    use super::*;
    use crate::method::context::testing::{synthetic_task, with_task_of};
    use crate::method::rehearsal::testing::{batch_of, close, gradient, step_on, stepped};
    use crate::model::activation::Activation;
    use crate::model::{Layers, Mlp};
    use crate::rng;

    fn norm(a: &Layers) -> f64 {
        replay::dot(a, a).sqrt()
    }

    #[test]
    fn the_projected_gradient_never_points_against_the_reference() {
        let mut r = rng::stream(5, "agem-test", 0);
        let mut projected = 0;
        for trial in 0..200 {
            let net = Mlp::new(&[6, 9, 5], Activation::Relu, &mut r);
            let (x, y) = batch_of(&net, 1 + trial % 7, &mut r);
            let (xr, yr) = batch_of(&net, 1 + trial % 5, &mut r);
            let g = gradient(&net, &x, &y, 0..4);
            // Half the trials against a reversed reference, so both cases occur often.
            let mut reference = gradient(&net, &xr, &yr, 0..4);
            if r.gen_bool(0.5) {
                reference.buffers_mut().for_each(|b| b.iter_mut().for_each(|v| *v = -*v));
            }
            let mut tilde = g.clone();
            let did = project(&mut tilde, &reference);
            let before = replay::dot(&g, &reference);
            assert_eq!(did, before < 0.0);
            let after = replay::dot(&tilde, &reference);
            assert!(after >= -1e-6 * norm(&g) * norm(&reference), "trial {trial}: {after}");
            if before >= 0.0 {
                assert_eq!(tilde, g);
            } else {
                projected += 1;
            }
        }
        assert!((50..150).contains(&projected), "{projected} of 200 projected");
    }

    #[test]
    fn the_memory_holds_each_finished_tasks_share_and_the_step_uses_the_projection() {
        let mut r = rng::stream(6, "agem-test", 1);
        let mut net = Mlp::new(&[6, 9, 4], Activation::Relu, &mut r);
        let mut agem = Agem { buffer: Buffer::new(9), replay: Some(64), scratch: None };
        let (x, y) = batch_of(&net, 8, &mut r);
        // The first task: nothing in memory, plain SGD.
        let before = net.clone();
        step_on(&mut agem, &mut net, &x, &y, 0..4, 1);
        assert_eq!(net, stepped(&before, &gradient(&before, &x, &y, 0..4)));
        // Task 0 of 3 ends: ⌊9 / 3⌋ = 3 of its examples enter the memory.
        let task = synthetic_task(&net, 0, 5);
        let head = 0..4;
        let mut method_rng = rng::stream(6, "agem-test", 2);
        with_task_of(&mut net.clone(), &task, head.clone(), &mut method_rng, |cx| {
            cx.tasks_total = 3;
            agem.task_finished(cx).unwrap();
        });
        assert_eq!(agem.buffer.len(), 3);
        // A step: the gradient projected against the reference on all three memory examples.
        let memory: Vec<f32> = (0..3).flat_map(|s| agem.buffer.example(s).input.to_vec()).collect();
        let labels: Vec<u32> = (0..3)
            .map(|s| match agem.buffer.example(s).target {
                crate::stream::Target::Class(c) => c,
                crate::stream::Target::Real(_) => unreachable!("a classification task"),
            })
            .collect();
        let before = net.clone();
        step_on(&mut agem, &mut net, &x, &y, 0..4, 3);
        let mut g = gradient(&before, &x, &y, 0..4);
        project(&mut g, &gradient(&before, &memory, &labels, 0..4));
        assert!(close(&net, &stepped(&before, &g)));
    }
}
