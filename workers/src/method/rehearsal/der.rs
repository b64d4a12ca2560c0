//! `der` and `derpp`: dark experience replay (Buzzega et al. 2020, NeurIPS, "Dark experience for
//! general continual learning: a strong, simple baseline"), as Mammoth's `der` and `derpp`.
//!
//! The buffer (a reservoir over every training example) keeps with each example the network's
//! logits — the raw outputs of the whole output layer, every head's columns — computed in the
//! forward pass of the step that trained on it, before that step's update. Each step minimises
//!
//! ```text
//! CE(current batch) + α · MSE(f(x'), ℓ')  [+ β · CE(f(x''), y'')   for derpp]
//! ```
//!
//! where (x', ℓ') is a replay batch of stored inputs and logits, the MSE the mean over its
//! examples and every output column (PyTorch's `mse_loss`), and for DER++ (x'', y'') a second
//! replay batch, drawn independently, with its stored labels, each on its own head. Each term
//! is a separate forward and backward pass, as in Mammoth; their gradients add up before one
//! optimiser step. After the step the current batch is offered to the reservoir with its logits.
//!
//! Defaults: α and β are the paper's best values for sequential MNIST with a 500-example buffer
//! (Mammoth's `best_args.py`, `seq-mnist`, buffer 500: DER α = 1.0; DER++ α = 1.0, β = 0.5;
//! both with lr 0.03). Differences: the stored inputs are the trained ones, after the stream's
//! augmentation when it has one (Mammoth stores non-augmented copies and augments replayed
//! examples afresh); the β term reads each example's own head on task-incremental streams.
//! Works on online streams. On conv nets each of the three passes is a training pass, so batch
//! norm's running statistics move three times a step, as in Mammoth; the logits stored are the
//! current batch's training-mode outputs (batch norm on the batch's own statistics), as
//! Mammoth stores `outputs.data` computed under `net.train()`, not an evaluation-mode pass's.

use serde::{Deserialize, Serialize};

use super::buffer::Buffer;
use super::replay::{self, ReplayNet, Scratch};
use crate::method::{ContinualMethod, Learner, LearnerStep, MethodError, MethodKind, MethodState};
use crate::model::convnet::ConvNet;
use crate::model::{loss, BatchLoss, Mlp};
use crate::optim::OptimizerConfig;

/// Hyper-parameters of `der`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DerConfig {
    /// Examples kept (default 500).
    #[serde(serialize_with = "crate::method::params::whole_number")]
    pub buffer_size: f64,
    /// Buffer examples replayed per step (default null: as many as the current batch).
    #[serde(serialize_with = "super::whole_or_null")]
    pub replay_batch_size: Option<f64>,
    /// α, the weight of the logit-matching term (default 1.0).
    pub alpha: f64,
}

impl Default for DerConfig {
    fn default() -> Self {
        DerConfig { buffer_size: 500.0, replay_batch_size: None, alpha: 1.0 }
    }
}

/// Hyper-parameters of `derpp`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DerppConfig {
    /// Examples kept (default 500).
    #[serde(serialize_with = "crate::method::params::whole_number")]
    pub buffer_size: f64,
    /// Buffer examples replayed per step in each of the two replay batches (default null: as
    /// many as the current batch).
    #[serde(serialize_with = "super::whole_or_null")]
    pub replay_batch_size: Option<f64>,
    /// α, the weight of the logit-matching term (default 1.0).
    pub alpha: f64,
    /// β, the weight of the cross-entropy on replayed labels (default 0.5).
    pub beta: f64,
}

impl Default for DerppConfig {
    fn default() -> Self {
        DerppConfig { buffer_size: 500.0, replay_batch_size: None, alpha: 1.0, beta: 0.5 }
    }
}

/// The `der` kind.
pub struct DerKind;

impl MethodKind for DerKind {
    const KIND: &'static str = "der";
    const SUMMARY: &'static str =
        "dark experience replay: match the logits stored with reservoir-buffer examples";
    type Config = DerConfig;
    fn check(c: &DerConfig) -> Result<(), String> {
        super::check_sizes(c.buffer_size, c.replay_batch_size)?;
        super::check_weight("alpha", c.alpha)
    }
    fn build(c: DerConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(Der::<Mlp>::new(DerKind::KIND, c.buffer_size, c.replay_batch_size, c.alpha, None))
    }
    fn build_conv(c: DerConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(Der::<ConvNet>::new(DerKind::KIND, c.buffer_size, c.replay_batch_size, c.alpha, None)))
    }
}

/// The `derpp` kind.
pub struct DerppKind;

impl MethodKind for DerppKind {
    const KIND: &'static str = "derpp";
    const SUMMARY: &'static str =
        "DER++: dark experience replay plus cross-entropy on a second batch of buffer labels";
    type Config = DerppConfig;
    fn check(c: &DerppConfig) -> Result<(), String> {
        super::check_sizes(c.buffer_size, c.replay_batch_size)?;
        super::check_weight("alpha", c.alpha)?;
        super::check_weight("beta", c.beta)
    }
    fn build(c: DerppConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(Der::<Mlp>::new(DerppKind::KIND, c.buffer_size, c.replay_batch_size, c.alpha, Some(c.beta)))
    }
    fn build_conv(c: DerppConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        let beta = Some(c.beta);
        Some(Box::new(Der::<ConvNet>::new(
            DerppKind::KIND,
            c.buffer_size,
            c.replay_batch_size,
            c.alpha,
            beta,
        )))
    }
}

/// DER, or DER++ when `beta` is set, on networks of family `M`. State: the buffer
/// (checkpointed).
pub struct Der<M: ReplayNet> {
    kind: &'static str,
    buffer: Buffer,
    replay: Option<usize>,
    alpha: f32,
    beta: Option<f32>,
    scratch: Option<Scratch<M>>,
}

impl<M: ReplayNet> Der<M> {
    pub(super) fn new(
        kind: &'static str,
        buffer_size: f64,
        replay: Option<f64>,
        alpha: f64,
        beta: Option<f64>,
    ) -> Self {
        Der {
            kind,
            buffer: Buffer::new(buffer_size as usize),
            replay: replay.map(|r| r as usize),
            alpha: alpha as f32,
            beta: beta.map(|b| b as f32),
            scratch: None,
        }
    }

    /// The buffer, for tests that check what it holds.
    #[cfg(test)]
    pub(super) fn buffer(&self) -> &Buffer {
        &self.buffer
    }
}

impl<M: ReplayNet> ContinualMethod<M> for Der<M> {
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

impl<M: ReplayNet> Learner<M> for Der<M> {
    fn train_step(&mut self, cx: &mut LearnerStep<'_, M>) -> Result<BatchLoss, MethodError> {
        let b = cx.targets.len();
        let r = super::replay_count(self.replay, b);
        let scratch = Scratch::fit(&mut self.scratch, cx.net, r);
        let ws = &mut *cx.workspace;
        cx.net.train_forward(ws)?;
        let width = cx.net.outputs();
        let (outputs, output_grad) = M::outputs_and_grad(ws);
        let current = loss::evaluate(outputs, width, cx.head.clone(), cx.targets, Some(output_grad));
        if !current.loss_sum.is_finite() {
            return Ok(current);
        }
        cx.net.backward(ws, &mut scratch.total);
        let mut finite = true;
        if !self.buffer.is_empty() {
            let slots = self.buffer.sample(r, cx.rng);
            replay::load(&*cx.net, &self.buffer, &slots, &mut scratch.ws);
            cx.net.train_forward(&mut scratch.ws)?;
            let (outputs, grad) = M::outputs_and_grad(&mut scratch.ws);
            grad.fill(0.0);
            let mse = replay::logit_mse(outputs, width, &self.buffer, &slots, self.alpha, grad);
            finite &= mse.is_finite();
            cx.net.backward(&mut scratch.ws, &mut scratch.grads);
            replay::add(&mut scratch.total, &scratch.grads);
            if let Some(beta) = self.beta {
                let slots = self.buffer.sample(r, cx.rng);
                replay::load(&*cx.net, &self.buffer, &slots, &mut scratch.ws);
                cx.net.train_forward(&mut scratch.ws)?;
                let (outputs, grad) = M::outputs_and_grad(&mut scratch.ws);
                grad.fill(0.0);
                let labels = replay::replay_loss(outputs, width, &self.buffer, &slots, beta, grad);
                finite &= labels.loss_sum.is_finite();
                cx.net.backward(&mut scratch.ws, &mut scratch.grads);
                replay::add(&mut scratch.total, &scratch.grads);
            }
        }
        if !finite {
            return Ok(BatchLoss { loss_sum: f64::NAN, ..current });
        }
        cx.optimizer.step_parameters(cx.net.parameters_mut(), &scratch.total);
        // The workspace still holds this step's forward pass: the logits before the update.
        let ws = &*cx.workspace;
        replay::offer_batch(
            &mut self.buffer,
            M::input(ws),
            cx.targets,
            cx.head.clone(),
            M::output_values(ws),
            cx.rng,
        );
        Ok(current)
    }

    fn forward(&mut self, variant: Option<&str>, net: &M, ws: &mut M::Workspace) -> Result<(), MethodError> {
        super::no_variant(self.kind, variant)?;
        net.predict(ws);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::rehearsal::replay::ReplayNet;
    use crate::method::rehearsal::testing::{batch_of, close, gradient, step_on, stepped, Batch};
    use crate::model::activation::Activation;
    use crate::model::{Layers, Workspace};
    use crate::rng;

    fn net_and_batches() -> (Mlp, Vec<Batch>) {
        let mut r = rng::stream(4, "der-test", 0);
        let net = Mlp::new(&[5, 8, 4], Activation::Relu, &mut r);
        let batches = (0..2).map(|_| batch_of(&net, 6, &mut r)).collect();
        (net, batches)
    }

    #[test]
    fn stored_logits_are_the_networks_outputs_before_the_update() {
        let (net, batches) = net_and_batches();
        let (inputs, classes) = &batches[0];
        let classes: Vec<u32> = classes.iter().map(|c| c % 2).collect();
        let mut der = Der::<Mlp>::new("der", 100.0, None, 1.0, None);
        let mut trained = net.clone();
        // Trained on the head of columns 0..2; the logits kept are all four columns.
        step_on(&mut der, &mut trained, inputs, &classes, 0..2, 1);
        assert_ne!(trained, net);
        let mut ws = Workspace::new(&net.sizes(), 6);
        ws.input.copy_from_slice(inputs);
        net.predict(&mut ws);
        assert_eq!(der.buffer.len(), 6);
        for slot in 0..6 {
            let e = der.buffer.example(slot);
            assert_eq!(e.logits, &ws.outputs()[slot * 4..(slot + 1) * 4]);
            assert_eq!(e.input, &inputs[slot * 5..(slot + 1) * 5]);
            assert_eq!(e.head, 0..2);
        }
    }

    #[test]
    fn the_logit_term_pulls_only_when_the_outputs_moved_from_the_stored_logits() {
        let (net, batches) = net_and_batches();
        let ((first, first_classes), (next, next_classes)) = (&batches[0], &batches[1]);
        let mut der = Der::<Mlp>::new("der", 100.0, None, 1.0, None);
        let mut trained = net.clone();
        step_on(&mut der, &mut trained, first, first_classes, 0..4, 1);
        // The same network again: it reproduces the stored logits, so the step is plain SGD.
        let mut again = Der { buffer: der.buffer.clone(), ..Der::<Mlp>::new("der", 100.0, None, 1.0, None) };
        let mut from_net = net.clone();
        step_on(&mut again, &mut from_net, next, next_classes, 0..4, 2);
        assert!(close(&from_net, &stepped(&net, &gradient(&net, next, next_classes, 0..4))));
        // The trained network has moved away from them: the term adds a gradient.
        let before = trained.clone();
        step_on(&mut der, &mut trained, next, next_classes, 0..4, 2);
        assert!(!close(&trained, &stepped(&before, &gradient(&before, next, next_classes, 0..4))));
    }

    #[test]
    fn the_derpp_label_term_is_beta_times_the_cross_entropy_on_stored_labels() {
        let (net, batches) = net_and_batches();
        let ((first, first_classes), (next, next_classes)) = (&batches[0], &batches[1]);
        // α = 0 leaves the label term alone; the replay batch (6) takes every stored example.
        let mut derpp = Der::<Mlp>::new("derpp", 100.0, None, 0.0, Some(0.5));
        let mut trained = net.clone();
        step_on(&mut derpp, &mut trained, first, first_classes, 0..4, 1);
        let before = trained.clone();
        step_on(&mut derpp, &mut trained, next, next_classes, 0..4, 2);
        let mut expected: Layers = gradient(&before, next, next_classes, 0..4);
        let mut labels = gradient(&before, first, first_classes, 0..4);
        labels.buffers_mut().for_each(|b| b.iter_mut().for_each(|g| *g *= 0.5));
        replay::add(&mut expected, &labels);
        assert!(close(&trained, &stepped(&before, &expected)));
        // Other labels, another step.
        let other: Vec<u32> = first_classes.iter().map(|c| (c + 1) % 4).collect();
        assert!(!close(
            &trained,
            &stepped(&before, &{
                let mut g = gradient(&before, next, next_classes, 0..4);
                let mut l = gradient(&before, first, &other, 0..4);
                l.buffers_mut().for_each(|b| b.iter_mut().for_each(|g| *g *= 0.5));
                replay::add(&mut g, &l);
                g
            })
        ));
    }
}
