//! `er`: experience replay with a reservoir buffer, as Mammoth's `er` (Buzzega et al. 2020 use
//! it as their ER baseline; Chaudhry et al. 2019b, "On tiny episodic memories in continual
//! learning", study it).
//!
//! Each step trains on the current batch concatenated with `replay_batch_size` examples drawn
//! uniformly without replacement from the buffer, in one forward and backward pass; the loss
//! is the mean cross-entropy over the union, every example on its own head. After the update
//! the current batch is offered to the reservoir, so every training example seen is in the
//! buffer with equal probability.
//!
//! Differences from Mammoth: Mammoth stores the non-augmented inputs and augments replayed
//! ones afresh; clorch stores the inputs as trained (after the stream's augmentation, when it
//! has one), so a replayed image keeps the crop and flip it was first seen with. Replayed
//! examples keep the head they were trained on (task-incremental streams), where Mammoth's ER
//! uses the class index on the shared output. Works on online streams: it needs no task
//! boundaries. On conv nets the union batch is one training pass, so batch norm normalises
//! current and replayed examples together, as Mammoth's single forward pass does.

use serde::{Deserialize, Serialize};

use super::buffer::Buffer;
use super::replay::{self, ReplayNet, Scratch};
use crate::method::{ContinualMethod, Learner, LearnerStep, MethodError, MethodKind, MethodState};
use crate::model::convnet::ConvNet;
use crate::model::{loss, BatchLoss};
use crate::optim::OptimizerConfig;

/// Hyper-parameters of `er`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErConfig {
    /// Examples kept (default 500, one of the paper's three sizes 200, 500, 5120).
    #[serde(serialize_with = "crate::method::params::whole_number")]
    pub buffer_size: f64,
    /// Buffer examples replayed per step (default null: as many as the current batch).
    #[serde(serialize_with = "super::whole_or_null")]
    pub replay_batch_size: Option<f64>,
}

impl Default for ErConfig {
    fn default() -> Self {
        ErConfig { buffer_size: 500.0, replay_batch_size: None }
    }
}

/// The `er` kind.
pub struct ErKind;

impl MethodKind for ErKind {
    const KIND: &'static str = "er";
    const SUMMARY: &'static str =
        "experience replay: current batch plus a batch from a reservoir buffer of past examples";
    type Config = ErConfig;
    fn check(c: &ErConfig) -> Result<(), String> {
        super::check_sizes(c.buffer_size, c.replay_batch_size)
    }
    fn build(c: ErConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(Er::new(&c))
    }
    fn build_conv(c: ErConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(Er::new(&c)))
    }
}

/// Experience replay on networks of family `M`. State: the buffer (checkpointed); the
/// scratch buffers are rebuilt.
pub struct Er<M: ReplayNet> {
    buffer: Buffer,
    replay: Option<usize>,
    scratch: Option<Scratch<M>>,
}

impl<M: ReplayNet> Er<M> {
    pub(super) fn new(c: &ErConfig) -> Self {
        Er {
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

impl<M: ReplayNet> ContinualMethod<M> for Er<M> {
    fn save(&self, state: &mut MethodState) {
        self.buffer.save("buffer", state);
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        self.buffer.load("buffer", state)
    }

    fn learner(&mut self) -> Option<&mut dyn Learner<M>> {
        Some(self)
    }
}

impl<M: ReplayNet> Learner<M> for Er<M> {
    fn train_step(&mut self, cx: &mut LearnerStep<'_, M>) -> Result<BatchLoss, MethodError> {
        let b = cx.targets.len();
        let slots = self.buffer.sample(super::replay_count(self.replay, b), cx.rng);
        let n = b + slots.len();
        let scratch = Scratch::fit(&mut self.scratch, cx.net, n);
        let ws = &mut scratch.ws;
        let inputs = M::input(cx.workspace);
        M::input_mut(ws)[..inputs.len()].copy_from_slice(inputs);
        replay::gather(&self.buffer, &slots, M::input_mut(ws), b);
        cx.net.train_forward(ws)?;
        let width = cx.net.outputs();
        let (outputs, output_grad) = M::outputs_and_grad(ws);
        let (current_grad, replay_grad) = output_grad.split_at_mut(b * width);
        // The mean over the union: the current rows' mean gradient scaled by b / n, each
        // replayed row by 1 / n.
        let current =
            loss::evaluate(&outputs[..b * width], width, cx.head.clone(), cx.targets, Some(current_grad));
        let share = b as f32 / n as f32;
        if share != 1.0 {
            current_grad.iter_mut().for_each(|g| *g *= share);
        }
        replay_grad.fill(0.0);
        let replayed = replay::replay_loss(
            &outputs[b * width..],
            width,
            &self.buffer,
            &slots,
            slots.len() as f32 / n as f32,
            replay_grad,
        );
        if !current.loss_sum.is_finite() || !replayed.loss_sum.is_finite() {
            return Ok(BatchLoss { loss_sum: f64::NAN, ..current });
        }
        cx.net.backward(ws, &mut scratch.grads);
        cx.optimizer.step_parameters(cx.net.parameters_mut(), &scratch.grads);
        replay::offer_batch(
            &mut self.buffer,
            M::input(cx.workspace),
            cx.targets,
            cx.head.clone(),
            &[],
            cx.rng,
        );
        Ok(current)
    }

    fn forward(&mut self, variant: Option<&str>, net: &M, ws: &mut M::Workspace) -> Result<(), MethodError> {
        super::no_variant(ErKind::KIND, variant)?;
        net.predict(ws);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::rehearsal::testing::{batch_of, close, gradient, step_on, stepped};
    use crate::model::activation::Activation;
    use crate::model::Mlp;
    use crate::rng;

    #[test]
    fn an_empty_buffer_trains_like_sgd_then_replay_joins_the_batch() {
        let mut r = rng::stream(3, "er-test", 0);
        let net = Mlp::new(&[5, 7, 4], Activation::Relu, &mut r);
        let (inputs, classes) = batch_of(&net, 6, &mut r);
        let mut er = Er::<Mlp> { buffer: Buffer::new(100), replay: None, scratch: None };
        let mut trained = net.clone();
        step_on(&mut er, &mut trained, &inputs, &classes, 0..4, 1);
        assert_eq!(trained, stepped(&net, &gradient(&net, &inputs, &classes, 0..4)));
        assert_eq!(er.buffer.len(), 6);
        assert_eq!(er.buffer.example(2).input, &inputs[10..15]);
        // The next step replays all six stored examples with a new batch: the mean over the
        // union of 12 is the SGD step on the batch and the stored examples together.
        let (next, next_classes) = batch_of(&net, 6, &mut r);
        let before = trained.clone();
        step_on(&mut er, &mut trained, &next, &next_classes, 0..4, 2);
        let union: Vec<f32> = next.iter().chain(&inputs).copied().collect();
        let union_classes: Vec<u32> = next_classes.iter().chain(&classes).copied().collect();
        let expected = stepped(&before, &gradient(&before, &union, &union_classes, 0..4));
        assert!(close(&trained, &expected));
        assert!(!close(&trained, &stepped(&before, &gradient(&before, &next, &next_classes, 0..4))));
        assert_eq!(er.buffer.len(), 12);
    }
}
