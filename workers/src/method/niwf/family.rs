//! What the weight field needs of a model family: which of the network's weights it
//! generates, and the passes that run the network with generated weights.
//!
//! On an MLP the field covers every layer. On a conv net it covers the linear layers, which
//! must come after the conv backbone (the per-task heads and any hidden linear layers); the
//! backbone (convolutions, batch norm, residual blocks) is W0 alone, shared by every
//! coordinate. Evaluation runs the backbone once per batch and only the linear tail once per
//! task coordinate. While the backbone is frozen (`niwf` from its first commit on) it runs in
//! evaluation mode in training too, so batch norm's running statistics stay as they were at
//! the freeze and training sees the features evaluation sees.

use std::ops::Range;

use crate::engine::Trainable;
use crate::method::MethodError;
use crate::model::convnet::{self, ConvNet, Layer, Mode};
use crate::model::{fused, loss, BatchLoss, Layers, Linear, Mlp, Targets, Workspace};
use crate::optim::Optimizer;

/// A model family the weight field can generate weights for.
pub(crate) trait FieldNet: Trainable {
    /// Examples per chunk when the method runs the model itself (the drift references): a
    /// conv net's activations per example are far larger than an MLP's.
    const CHUNK: usize;

    /// Input values per example.
    fn input_len(&self) -> usize;

    /// The linear layers the field generates, of a parameter set (the network, a gradient),
    /// input side first.
    fn field_layers(params: &Self::Params) -> Vec<&Linear>;

    /// The same layers, mutable.
    fn field_layers_mut(params: &mut Self::Params) -> Vec<&mut Linear>;

    /// Why the network cannot carry a field (checked at `begin`).
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// A training pass of `net` (W0 with generated weights) on the batch in `ws`: forward —
    /// with the backbone in evaluation mode when `frozen_backbone` — loss on `head` and, when
    /// the loss is finite, backward into `grads` (overwritten).
    fn train_pass(
        net: &Self,
        ws: &mut Self::Workspace,
        head: Range<usize>,
        targets: Targets<'_>,
        frozen_backbone: bool,
        grads: &mut Self::Params,
    ) -> Result<BatchLoss, MethodError>;

    /// After a kept training step: what the pass leaves for W0 besides its gradient (a conv
    /// net's training-mode batch norm moves its running statistics).
    fn keep_statistics(_net: &mut Self, _ws: &Self::Workspace) {}

    /// One optimiser step on W0; with `frozen_backbone` only the field's layers move.
    fn step(
        optimizer: &mut Optimizer<Self::Params>,
        net: &mut Self,
        grads: &Self::Params,
        frozen_backbone: bool,
    );

    /// Runs `net` on the workspace's input (evaluation).
    fn forward(net: &Self, ws: &mut Self::Workspace);

    /// After [`FieldNet::forward`] of a network that differs from `net` only in the field's
    /// layers, runs `net` again, recomputing as little as the family allows (on a conv net,
    /// the linear tail alone).
    fn forward_field_layers(net: &Self, ws: &mut Self::Workspace);

    /// Buffers for the network on batches of `batch`.
    fn workspace(&self, batch: usize) -> Self::Workspace;

    /// The workspace's input, to fill.
    fn input_values(ws: &mut Self::Workspace) -> &mut [f32];

    /// The outputs of the last forward pass, `batch × outputs`.
    fn output_values(ws: &Self::Workspace) -> &[f32];

    /// The same, to overwrite.
    fn outputs_mut(ws: &mut Self::Workspace) -> &mut [f32];
}

/// The field's layers of `params`, copied.
pub(super) fn field_part<M: FieldNet>(params: &M::Params) -> Layers {
    Layers { layers: M::field_layers(params).into_iter().cloned().collect() }
}

/// Overwrites the field's layers of `params` with `part`.
pub(super) fn set_field_part<M: FieldNet>(params: &mut M::Params, part: &Layers) {
    copy_layers(M::field_layers_mut(params), &part.layers);
}

/// Copies layers `from` into the same-shaped layers `to`.
pub(super) fn copy_layers<'a>(to: Vec<&mut Linear>, from: impl IntoIterator<Item = &'a Linear>) {
    for (l, p) in to.into_iter().zip(from) {
        l.weight.copy_from_slice(&p.weight);
        l.bias.copy_from_slice(&p.bias);
    }
}

/// `net` with the field's layers replaced by `part`.
pub(super) fn with_field_part<M: FieldNet>(net: &M, part: &Layers) -> M {
    let mut out = net.clone();
    set_field_part::<M>(out.parameters_mut(), part);
    out
}

impl FieldNet for Mlp {
    const CHUNK: usize = 500;

    fn input_len(&self) -> usize {
        self.sizes()[0]
    }

    fn field_layers(params: &Layers) -> Vec<&Linear> {
        params.layers.iter().collect()
    }

    fn field_layers_mut(params: &mut Layers) -> Vec<&mut Linear> {
        params.layers.iter_mut().collect()
    }

    fn train_pass(
        net: &Mlp,
        ws: &mut Workspace,
        head: Range<usize>,
        targets: Targets<'_>,
        _frozen_backbone: bool,
        grads: &mut Layers,
    ) -> Result<BatchLoss, MethodError> {
        fused::forward(net, ws);
        let width = ws.output_width();
        let task = loss::evaluate(
            ws.values.last().expect("output layer"),
            width,
            head,
            targets,
            Some(&mut ws.output_grad),
        );
        if task.loss_sum.is_finite() {
            fused::backward(net, ws, grads);
        }
        Ok(task)
    }

    fn step(optimizer: &mut Optimizer<Layers>, net: &mut Mlp, grads: &Layers, _frozen_backbone: bool) {
        optimizer.step(net, grads);
    }

    fn forward(net: &Mlp, ws: &mut Workspace) {
        fused::forward(net, ws);
    }

    fn forward_field_layers(net: &Mlp, ws: &mut Workspace) {
        fused::forward(net, ws);
    }

    fn workspace(&self, batch: usize) -> Workspace {
        Workspace::new(&self.sizes(), batch)
    }

    fn input_values(ws: &mut Workspace) -> &mut [f32] {
        &mut ws.input
    }

    fn output_values(ws: &Workspace) -> &[f32] {
        ws.outputs()
    }

    fn outputs_mut(ws: &mut Workspace) -> &mut [f32] {
        ws.values.last_mut().expect("output layer")
    }
}

/// Index of a conv net's first linear layer (where the field's tail begins).
fn first_linear(net: &ConvNet) -> Option<usize> {
    net.layers.iter().position(|l| matches!(l, Layer::Linear(_)))
}

impl FieldNet for ConvNet {
    const CHUNK: usize = 64;

    fn input_len(&self) -> usize {
        self.input_shape().len()
    }

    fn field_layers(params: &ConvNet) -> Vec<&Linear> {
        params.layers.iter().filter_map(|l| if let Layer::Linear(l) = l { Some(l) } else { None }).collect()
    }

    fn field_layers_mut(params: &mut ConvNet) -> Vec<&mut Linear> {
        params
            .layers
            .iter_mut()
            .filter_map(|l| if let Layer::Linear(l) = l { Some(l) } else { None })
            .collect()
    }

    /// The linear layers must follow the whole backbone: after the first of them only linear
    /// layers, ReLUs and flattens (parameter-free, no statistics), so the field's tail can be
    /// re-run alone and a frozen backbone is everything before it.
    fn check(&self) -> Result<(), String> {
        let first = first_linear(self).ok_or("the network has no linear layer for the field to generate")?;
        match self.layers[first..]
            .iter()
            .position(|l| !matches!(l, Layer::Linear(_) | Layer::Relu | Layer::Flatten))
        {
            Some(k) => Err(format!(
                "layer {} comes after the first linear layer ({first}); the field generates the linear \
                 layers after the conv backbone, so only linear, relu and flatten layers may follow it",
                first + k
            )),
            None => Ok(()),
        }
    }

    fn train_pass(
        net: &ConvNet,
        ws: &mut convnet::Workspace,
        head: Range<usize>,
        targets: Targets<'_>,
        frozen_backbone: bool,
        grads: &mut ConvNet,
    ) -> Result<BatchLoss, MethodError> {
        let mode = if frozen_backbone { Mode::Eval } else { Mode::Train };
        convnet::forward_pass(net, ws, mode).map_err(|e| MethodError::Failed(e.to_string()))?;
        let width = net.outputs();
        let (outputs, output_grad) = ws.outputs_and_grad();
        let task = loss::evaluate(outputs, width, head, targets, Some(output_grad));
        if task.loss_sum.is_finite() {
            convnet::backward(net, ws, grads);
        }
        Ok(task)
    }

    fn keep_statistics(net: &mut ConvNet, ws: &convnet::Workspace) {
        // A no-op after an evaluation-mode pass (a frozen backbone).
        convnet::commit_statistics(net, ws);
    }

    fn step(optimizer: &mut Optimizer<ConvNet>, net: &mut ConvNet, grads: &ConvNet, frozen_backbone: bool) {
        if frozen_backbone {
            // The optimiser steps every buffer; only the linear layers' new values are kept,
            // so the backbone stays bit-identical (its moments move, and are never used).
            let mut stepped = net.clone();
            optimizer.step_parameters(&mut stepped, grads);
            copy_layers(Self::field_layers_mut(net), Self::field_layers(&stepped));
        } else {
            optimizer.step_parameters(net, grads);
        }
    }

    fn forward(net: &ConvNet, ws: &mut convnet::Workspace) {
        convnet::forward_pass(net, ws, Mode::Eval)
            .expect("an evaluation-mode pass has no batch-size condition");
    }

    fn forward_field_layers(net: &ConvNet, ws: &mut convnet::Workspace) {
        convnet::forward_from(net, ws, first_linear(net).unwrap_or(0));
    }

    fn workspace(&self, batch: usize) -> convnet::Workspace {
        convnet::Workspace::new(self, batch)
    }

    fn input_values(ws: &mut convnet::Workspace) -> &mut [f32] {
        &mut ws.input
    }

    fn output_values(ws: &convnet::Workspace) -> &[f32] {
        ws.outputs()
    }

    fn outputs_mut(ws: &mut convnet::Workspace) -> &mut [f32] {
        ws.outputs_mut()
    }
}
