//! The fused engine: forward and backward passes of the MLP over preallocated buffers.
//!
//! dfdx builds a graph and allocates per operation, which dominates at batch 1 and on small
//! networks; these kernels reuse one [`Workspace`] for the whole run and call faer's GEMM
//! (single-threaded) for the matrix products. They are tested against the dfdx engine
//! (`autograd`) to 1e-5 relative.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef};

use super::activation;
use super::mlp::{Layers, Mlp};

/// Buffers of one forward/backward pass, reused across steps.
#[derive(Clone, Debug)]
pub struct Workspace {
    batch: usize,
    sizes: Vec<usize>,
    /// The batch's inputs, `batch × sizes[0]`, row-major. Fill it before [`forward`].
    pub input: Vec<f32>,
    /// Per layer, `batch × sizes[l+1]`: post-activation values of hidden layers, raw outputs
    /// (logits) of the last layer.
    pub values: Vec<Vec<f32>>,
    /// d(loss)/d(outputs), `batch × output size`. Filled by the loss.
    pub output_grad: Vec<f32>,
    /// Back-propagated errors per layer (pre-activation gradients).
    delta: Vec<Vec<f32>>,
}

impl Workspace {
    /// Buffers for a network of these sizes and a batch of `batch` examples.
    pub fn new(sizes: &[usize], batch: usize) -> Self {
        let mut ws = Workspace {
            batch: 0,
            sizes: sizes.to_vec(),
            input: Vec::new(),
            values: vec![Vec::new(); sizes.len() - 1],
            output_grad: Vec::new(),
            delta: vec![Vec::new(); sizes.len() - 1],
        };
        ws.set_batch(batch);
        ws
    }

    /// Resizes the buffers for `batch` examples (allocates only when the batch grows beyond
    /// any earlier size).
    pub fn set_batch(&mut self, batch: usize) {
        if batch == self.batch {
            return;
        }
        self.batch = batch;
        self.input.resize(batch * self.sizes[0], 0.0);
        for (l, v) in self.values.iter_mut().enumerate() {
            v.resize(batch * self.sizes[l + 1], 0.0);
        }
        for (l, d) in self.delta.iter_mut().enumerate() {
            d.resize(batch * self.sizes[l + 1], 0.0);
        }
        self.output_grad.resize(batch * self.sizes[self.sizes.len() - 1], 0.0);
    }

    /// Examples in the current batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Post-activation values of hidden layer `layer` (`batch × units`).
    pub fn hidden(&self, layer: usize) -> &[f32] {
        &self.values[layer]
    }

    /// The network's outputs (`batch × outputs`).
    pub fn outputs(&self) -> &[f32] {
        self.values.last().expect("a network has an output layer")
    }

    /// Output width (all heads).
    pub fn output_width(&self) -> usize {
        *self.sizes.last().expect("sizes are never empty")
    }
}

/// `dst (m×n) = lhs (m×k) · rhs (k×n)` (or `+=` with `accumulate`), on row-major views.
fn gemm(dst: MatMut<'_, f32>, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>, accumulate: bool) {
    let accum = if accumulate { Accum::Add } else { Accum::Replace };
    matmul(dst, accum, lhs, rhs, 1.0f32, crate::model::threads::gemm_par());
}

/// Runs the network on `ws.input`, filling `ws.values`.
pub fn forward(net: &Mlp, ws: &mut Workspace) {
    let batch = ws.batch;
    let hidden = net.hidden_layers();
    for (l, layer) in net.layers().iter().enumerate() {
        let (before, after) = ws.values.split_at_mut(l);
        let x: &[f32] = if l == 0 { &ws.input } else { &before[l - 1] };
        let out = &mut after[0];
        for row in out.chunks_exact_mut(layer.outputs) {
            row.copy_from_slice(&layer.bias);
        }
        let w = MatRef::from_row_major_slice(&layer.weight, layer.outputs, layer.inputs);
        gemm(
            MatMut::from_row_major_slice_mut(out, batch, layer.outputs),
            MatRef::from_row_major_slice(x, batch, layer.inputs),
            w.transpose(),
            true,
        );
        if l < hidden {
            activation::apply(net.activation, out);
        }
    }
}

/// Back-propagates `ws.output_grad` through the network after [`forward`], writing the
/// gradient of every weight and bias into `grads` (overwriting it).
pub fn backward(net: &Mlp, ws: &mut Workspace, grads: &mut Layers) {
    let batch = ws.batch;
    let last = net.layers().len() - 1;
    ws.delta[last].copy_from_slice(&ws.output_grad);
    for l in (0..=last).rev() {
        let layer = &net.layers()[l];
        let (lower, upper) = ws.delta.split_at_mut(l);
        let delta = &upper[0];
        let x: &[f32] = if l == 0 { &ws.input } else { &ws.values[l - 1] };
        let g = &mut grads.layers[l];
        // dW = δᵀ · x ; db = Σ_batch δ
        gemm(
            MatMut::from_row_major_slice_mut(&mut g.weight, layer.outputs, layer.inputs),
            MatRef::from_row_major_slice(delta, batch, layer.outputs).transpose(),
            MatRef::from_row_major_slice(x, batch, layer.inputs),
            false,
        );
        g.bias.fill(0.0);
        for row in delta.chunks_exact(layer.outputs) {
            for (b, &d) in g.bias.iter_mut().zip(row) {
                *b += d;
            }
        }
        if l > 0 {
            // δ_{l−1} = (δ_l · W_l) ⊙ act′
            let prev = &mut lower[l - 1];
            gemm(
                MatMut::from_row_major_slice_mut(prev, batch, layer.inputs),
                MatRef::from_row_major_slice(delta, batch, layer.outputs),
                MatRef::from_row_major_slice(&layer.weight, layer.outputs, layer.inputs),
                false,
            );
            activation::backprop(net.activation, &ws.values[l - 1], prev);
        }
    }
}
