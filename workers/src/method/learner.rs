//! Methods whose model is not the plain MLP take over the training step and the predictions.
//!
//! Most methods shape the MLP's gradients and parameters through the hooks of
//! [`ContinualMethod`](super::ContinualMethod). A method with a model of its own (weight fields
//! generate the weights per example) returns a [`Learner`] from
//! [`ContinualMethod::learner`](super::ContinualMethod::learner); the trainer then calls
//! [`Learner::train_step`] instead of its forward → loss → backward → update step, and
//! [`Learner::forward`] wherever it would run the MLP (evaluation, plasticity probes). The
//! trainer's network stays the method's backbone: it is checkpointed with the run, and the
//! trainer's optimiser is the backbone's.

use std::ops::Range;

use super::MethodError;
use crate::engine::Trainable;
use crate::model::{BatchLoss, Mlp, Targets};
use crate::optim::Optimizer;
use crate::rng::Rng;

/// One training step of a learner, on a batch already loaded into `workspace.input`.
pub struct LearnerStep<'a, M: Trainable = Mlp> {
    /// The trainer's network (the learner's backbone).
    pub net: &'a mut M,
    /// The trainer's optimiser, whose state is shaped like `net`.
    pub optimizer: &'a mut Optimizer<M::Params>,
    /// The method's random stream.
    pub rng: &'a mut Rng,
    /// The batch's inputs; the learner may fill the values.
    pub workspace: &'a mut M::Workspace,
    /// The batch's targets.
    pub targets: Targets<'a>,
    /// Output columns of the task's head.
    pub head: Range<usize>,
    /// Index of the task being trained (the trainer knows it even on online streams; a method
    /// that must not see task boundaries there should not rely on it).
    pub task: usize,
    /// Optimiser steps taken before this one.
    pub step: u64,
}

/// A method's own model: how it trains on a batch and how it predicts.
pub trait Learner<M: Trainable = Mlp>: Send {
    /// Trains on the batch and returns its loss totals, measured before the update (the
    /// online performance). When the loss is not finite the learner must leave its state
    /// unchanged: the trainer then stops the run as diverged.
    fn train_step(&mut self, cx: &mut LearnerStep<'_, M>) -> Result<BatchLoss, MethodError>;

    /// Runs the model on `ws.input`, filling `ws.values` like the MLP engines (post-activation
    /// values of the hidden layers, then the outputs). `variant` selects another form of the
    /// model, one of [`Learner::variants`]; `None` is the model itself.
    fn forward(&mut self, variant: Option<&str>, net: &M, ws: &mut M::Workspace) -> Result<(), MethodError>;

    /// Further forms of the model to evaluate alongside it, as `eval` events with this
    /// `variant` label (e.g. `version:3`, an earlier committed version). Empty by default.
    fn variants(&self) -> Vec<String> {
        Vec::new()
    }
}
