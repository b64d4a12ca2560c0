//! Forward and backward passes of a [`ConvNet`] over a [`Workspace`] that is reused across
//! steps: every activation, saved statistic and gradient buffer is allocated once per network
//! and batch size.
//!
//! Each layer keeps its output (the next layer's input) for the backward pass; batch norm
//! keeps its batch mean and 1/σ, max pooling its winners. Gradients flow through two
//! ping-pong buffers as large as the largest activation, and a basic block's backward pass
//! works in four shared scratch buffers, so gradient memory does not grow with depth.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef};

use super::{BasicBlock, BatchNorm2d, Conv2d, ConvNet, ConvNetError, Layer};
use crate::model::conv::{self, ConvScratch};
use crate::model::loss::{self, BatchLoss, Targets};
use crate::model::Linear;

/// Which statistics batch norm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The batch's statistics; running statistics are updated.
    Train,
    /// The running statistics, unchanged.
    Eval,
}

/// A batch norm's saved batch statistics, and (after a training-mode pass) the running
/// statistics the pass computed, which [`commit_statistics`] copies into the network — so a
/// training-mode pass itself only reads the network.
#[derive(Clone, Debug, Default)]
struct Saved {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
}

impl Saved {
    fn new(channels: usize) -> Self {
        Saved {
            mean: vec![0.0; channels],
            inv_std: vec![0.0; channels],
            running_mean: vec![0.0; channels],
            running_var: vec![0.0; channels],
        }
    }

    fn commit(&self, n: &mut BatchNorm2d) {
        n.running_mean.copy_from_slice(&self.running_mean);
        n.running_var.copy_from_slice(&self.running_var);
    }
}

/// A basic block's intermediate values.
#[derive(Clone, Debug, Default)]
struct BlockState {
    /// First convolution's output.
    c1: Vec<f32>,
    /// ReLU(BN(c1)).
    r1: Vec<f32>,
    /// Second convolution's output.
    c2: Vec<f32>,
    /// Projection convolution's output, and its batch norm's (empty without projection).
    s1: Vec<f32>,
    s2: Vec<f32>,
    saved: [Saved; 3],
}

/// What a layer keeps from its forward pass besides its output.
#[derive(Clone, Debug)]
enum State {
    None,
    Norm(Saved),
    ArgMax(Vec<u32>),
    Block(Box<BlockState>),
}

/// Buffers of one forward/backward pass of a network at one batch size.
#[derive(Clone, Debug)]
pub struct Workspace {
    batch: usize,
    mode: Mode,
    /// The batch's inputs, `batch × channels × height × width`. Fill before [`forward`].
    pub input: Vec<f32>,
    /// d(loss)/d(outputs), `batch × outputs`: filled by [`loss_and_gradients`] or the caller
    /// before [`backward`].
    pub output_grad: Vec<f32>,
    values: Vec<Vec<f32>>,
    states: Vec<State>,
    grads: [Vec<f32>; 2],
    tmp: [Vec<f32>; 4],
    scratch: ConvScratch,
}

impl Workspace {
    /// Buffers for `net` on batches of `batch` samples.
    pub fn new(net: &ConvNet, batch: usize) -> Self {
        let states = net
            .layers
            .iter()
            .map(|layer| match layer {
                Layer::BatchNorm2d(n) => State::Norm(Saved::new(n.channels)),
                Layer::MaxPool2d(_) => State::ArgMax(Vec::new()),
                Layer::BasicBlock(b) => {
                    let c = b.bn1.channels;
                    State::Block(Box::new(BlockState {
                        saved: [Saved::new(c), Saved::new(c), Saved::new(c)],
                        ..BlockState::default()
                    }))
                }
                _ => State::None,
            })
            .collect();
        let mut ws = Workspace {
            batch: 0,
            mode: Mode::Train,
            input: Vec::new(),
            output_grad: Vec::new(),
            values: vec![Vec::new(); net.layers.len()],
            states,
            grads: Default::default(),
            tmp: Default::default(),
            scratch: ConvScratch::default(),
        };
        ws.set_batch(net, batch);
        ws
    }

    /// Resizes every buffer for batches of `batch` samples of `net` (the network the
    /// workspace was built for); allocates only when the batch grows beyond any earlier size,
    /// so an epoch's shorter last batch costs no allocation.
    pub fn set_batch(&mut self, net: &ConvNet, batch: usize) {
        assert_eq!(self.values.len(), net.layers.len(), "workspace built for another network");
        if batch == self.batch {
            return;
        }
        self.batch = batch;
        self.input.resize(batch * net.input.len(), 0.0);
        self.output_grad.resize(batch * net.outputs(), 0.0);
        let mut largest = net.input.len();
        let layers = net.layers.iter().zip(&net.shapes).zip(self.values.iter_mut().zip(&mut self.states));
        for ((layer, shape), (values, state)) in layers {
            largest = largest.max(shape.len());
            let out = batch * shape.len();
            values.resize(out, 0.0);
            match (layer, state) {
                (Layer::MaxPool2d(_), State::ArgMax(arg)) => arg.resize(out, 0),
                (Layer::BasicBlock(b), State::Block(st)) => {
                    for buf in [&mut st.c1, &mut st.r1, &mut st.c2] {
                        buf.resize(out, 0.0);
                    }
                    if b.shortcut.is_some() {
                        st.s1.resize(out, 0.0);
                        st.s2.resize(out, 0.0);
                    }
                }
                _ => {}
            }
        }
        for buf in self.grads.iter_mut().chain(&mut self.tmp) {
            buf.resize(batch * largest, 0.0);
        }
    }

    /// Samples per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The network's outputs after [`forward`], `batch × outputs`.
    pub fn outputs(&self) -> &[f32] {
        self.values.last().expect("a network has layers")
    }

    /// The network's outputs, to overwrite (a model that assembles its outputs from several
    /// passes).
    pub fn outputs_mut(&mut self) -> &mut [f32] {
        self.values.last_mut().expect("a network has layers")
    }

    /// The outputs and the output gradient, to read one and write the other.
    pub fn outputs_and_grad(&mut self) -> (&[f32], &mut [f32]) {
        (self.values.last().expect("a network has layers"), &mut self.output_grad)
    }

    /// Layer `layer`'s output after [`forward`] (a basic block's: after its final ReLU).
    pub fn layer_output(&self, layer: usize) -> &[f32] {
        &self.values[layer]
    }

    /// The hidden values of the basic block at `layer` after [`forward`] — ReLU(BN(conv1(x))),
    /// `batch × channels × height × width`, what its second convolution reads — or `None` when
    /// layer `layer` is not a basic block. Continual backprop and ReDo treat these channels as
    /// units.
    pub fn block_hidden(&self, layer: usize) -> Option<&[f32]> {
        match &self.states[layer] {
            State::Block(st) => Some(&st.r1),
            _ => None,
        }
    }
}

fn gemm(dst: MatMut<'_, f32>, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>, accumulate: bool) {
    let accum = if accumulate { Accum::Add } else { Accum::Replace };
    matmul(dst, accum, lhs, rhs, 1.0f32, crate::model::threads::gemm_par());
}

#[inline(always)]
fn relu(values: &mut [f32]) {
    for v in values {
        *v = v.max(0.0);
    }
}

/// `grad ⊙ (output > 0)`, in place.
#[inline(always)]
fn relu_mask(output: &[f32], grad: &mut [f32]) {
    // A select rather than a conditional store, so that it vectorises.
    for (g, &o) in grad.iter_mut().zip(output) {
        *g = if o > 0.0 { *g } else { 0.0 };
    }
}

fn conv_forward(c: &Conv2d, batch: usize, x: &[f32], out: &mut [f32], scratch: &mut ConvScratch) {
    conv::conv2d_forward(&c.geometry, batch, x, &c.weight, c.bias.as_deref(), out, scratch);
}

#[allow(clippy::too_many_arguments)]
fn conv_backward(
    c: &Conv2d,
    g: &mut Conv2d,
    batch: usize,
    x: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    scratch: &mut ConvScratch,
) {
    conv::conv2d_backward(
        &c.geometry,
        batch,
        x,
        &c.weight,
        dy,
        dx,
        &mut g.weight,
        g.bias.as_deref_mut(),
        scratch,
    );
}

fn norm_forward(n: &BatchNorm2d, mode: Mode, x: &[f32], out: &mut [f32], saved: &mut Saved) {
    match mode {
        Mode::Train => conv::batch_norm_train_forward(
            &n.config,
            n.channels,
            n.plane,
            x,
            &n.gamma,
            &n.beta,
            {
                saved.running_mean.copy_from_slice(&n.running_mean);
                &mut saved.running_mean
            },
            {
                saved.running_var.copy_from_slice(&n.running_var);
                &mut saved.running_var
            },
            out,
            &mut saved.mean,
            &mut saved.inv_std,
        ),
        Mode::Eval => conv::batch_norm_eval_forward(
            &n.config,
            n.channels,
            n.plane,
            x,
            &n.gamma,
            &n.beta,
            &n.running_mean,
            &n.running_var,
            out,
        ),
    }
}

fn norm_backward(
    n: &BatchNorm2d,
    g: &mut BatchNorm2d,
    mode: Mode,
    x: &[f32],
    saved: &Saved,
    dy: &[f32],
    dx: &mut [f32],
) {
    match mode {
        Mode::Train => conv::batch_norm_backward(
            n.channels,
            n.plane,
            x,
            &n.gamma,
            &saved.mean,
            &saved.inv_std,
            dy,
            dx,
            &mut g.gamma,
            &mut g.beta,
        ),
        Mode::Eval => conv::batch_norm_eval_backward(
            &n.config,
            n.channels,
            n.plane,
            x,
            &n.gamma,
            &n.running_mean,
            &n.running_var,
            dy,
            dx,
            &mut g.gamma,
            &mut g.beta,
        ),
    }
}

#[inline(always)]
fn block_forward(
    b: &BasicBlock,
    mode: Mode,
    batch: usize,
    x: &[f32],
    out: &mut [f32],
    st: &mut BlockState,
    scratch: &mut ConvScratch,
) {
    let [s0, s1, s2] = &mut st.saved;
    conv_forward(&b.conv1, batch, x, &mut st.c1, scratch);
    norm_forward(&b.bn1, mode, &st.c1, &mut st.r1, s0);
    relu(&mut st.r1);
    conv_forward(&b.conv2, batch, &st.r1, &mut st.c2, scratch);
    norm_forward(&b.bn2, mode, &st.c2, out, s1);
    let identity: &[f32] = match b.shortcut.as_ref() {
        Some((c, n)) => {
            conv_forward(c, batch, x, &mut st.s1, scratch);
            norm_forward(n, mode, &st.s1, &mut st.s2, s2);
            &st.s2
        }
        None => x,
    };
    for (o, &s) in out.iter_mut().zip(identity) {
        *o = (*o + s).max(0.0);
    }
}

/// A block's backward pass; `tmp` holds three output-sized buffers and one input-sized one.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_backward(
    b: &BasicBlock,
    g: &mut BasicBlock,
    mode: Mode,
    batch: usize,
    x: &[f32],
    out: &[f32],
    st: &BlockState,
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    tmp: &mut [Vec<f32>; 4],
    scratch: &mut ConvScratch,
) {
    let (o, i) = (out.len(), x.len());
    let [t0, t1, t2, t3] = tmp;
    let (sum, t1, t2, t3) = (&mut t0[..o], &mut t1[..o], &mut t2[..o], &mut t3[..i]);
    sum.copy_from_slice(dy);
    relu_mask(out, sum);
    norm_backward(&b.bn2, &mut g.bn2, mode, &st.c2, &st.saved[1], sum, t1);
    conv_backward(&b.conv2, &mut g.conv2, batch, &st.r1, t1, Some(t2), scratch);
    relu_mask(&st.r1, t2);
    norm_backward(&b.bn1, &mut g.bn1, mode, &st.c1, &st.saved[0], t2, t1);
    conv_backward(&b.conv1, &mut g.conv1, batch, x, t1, dx.as_deref_mut(), scratch);
    match (b.shortcut.as_ref(), g.shortcut.as_mut()) {
        (Some((c, n)), Some((gc, gn))) => {
            norm_backward(n, gn, mode, &st.s1, &st.saved[2], sum, t1);
            let want = dx.is_some();
            conv_backward(c, gc, batch, x, t1, want.then_some(&mut *t3), scratch);
            if let Some(dx) = dx {
                for (d, &s) in dx.iter_mut().zip(t3.iter()) {
                    *d += s;
                }
            }
        }
        _ => {
            if let Some(dx) = dx {
                for (d, &s) in dx.iter_mut().zip(sum.iter()) {
                    *d += s;
                }
            }
        }
    }
}

fn linear_forward(l: &Linear, batch: usize, x: &[f32], out: &mut [f32]) {
    for row in out.chunks_exact_mut(l.outputs) {
        row.copy_from_slice(&l.bias);
    }
    gemm(
        MatMut::from_row_major_slice_mut(out, batch, l.outputs),
        MatRef::from_row_major_slice(x, batch, l.inputs),
        MatRef::from_row_major_slice(&l.weight, l.outputs, l.inputs).transpose(),
        true,
    );
}

fn linear_backward(l: &Linear, g: &mut Linear, batch: usize, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>) {
    gemm(
        MatMut::from_row_major_slice_mut(&mut g.weight, l.outputs, l.inputs),
        MatRef::from_row_major_slice(dy, batch, l.outputs).transpose(),
        MatRef::from_row_major_slice(x, batch, l.inputs),
        false,
    );
    g.bias.fill(0.0);
    for row in dy.chunks_exact(l.outputs) {
        for (b, &d) in g.bias.iter_mut().zip(row) {
            *b += d;
        }
    }
    if let Some(dx) = dx {
        gemm(
            MatMut::from_row_major_slice_mut(dx, batch, l.inputs),
            MatRef::from_row_major_slice(dy, batch, l.outputs),
            MatRef::from_row_major_slice(&l.weight, l.outputs, l.inputs),
            false,
        );
    }
}

/// Runs `net` on `ws.input`, filling every layer's output; in [`Mode::Train`] batch norm uses
/// the batch's statistics and updates its running statistics (hence `&mut`):
/// [`forward_pass`] then [`commit_statistics`].
pub fn forward(net: &mut ConvNet, ws: &mut Workspace, mode: Mode) -> Result<(), ConvNetError> {
    forward_pass(net, ws, mode)?;
    commit_statistics(net, ws);
    Ok(())
}

/// [`forward`] without touching the network: a training-mode pass leaves the running
/// statistics it computed in the workspace, for [`commit_statistics`].
pub fn forward_pass(net: &ConvNet, ws: &mut Workspace, mode: Mode) -> Result<(), ConvNetError> {
    let batch = ws.batch;
    if mode == Mode::Train {
        check_batch_norm(net, batch)?;
    }
    ws.mode = mode;
    // The element-wise loops (ReLU, residual adds) get the CPU's widest vectors.
    pulp::Arch::new().dispatch(|| forward_layers(net, ws, mode, 0));
    Ok(())
}

/// Re-runs layers `first..` of `net` in evaluation mode on the outputs the workspace holds for
/// layer `first − 1` (from an earlier pass at the same batch size): a network that differs
/// from the earlier pass's only from layer `first` on reuses its first layers' work (weight
/// fields run one backbone under several generated heads).
pub fn forward_from(net: &ConvNet, ws: &mut Workspace, first: usize) {
    ws.mode = Mode::Eval;
    pulp::Arch::new().dispatch(|| forward_layers(net, ws, Mode::Eval, first));
}

/// After a training-mode [`forward_pass`], moves every batch norm's running statistics on by
/// the batch's (PyTorch's momentum update); after an evaluation-mode pass, nothing.
pub fn commit_statistics(net: &mut ConvNet, ws: &Workspace) {
    if ws.mode != Mode::Train {
        return;
    }
    for (layer, state) in net.layers.iter_mut().zip(&ws.states) {
        match (layer, state) {
            (Layer::BatchNorm2d(n), State::Norm(saved)) => saved.commit(n),
            (Layer::BasicBlock(b), State::Block(st)) => {
                st.saved[0].commit(&mut b.bn1);
                st.saved[1].commit(&mut b.bn2);
                if let Some((_, n)) = b.shortcut.as_mut() {
                    st.saved[2].commit(n);
                }
            }
            _ => {}
        }
    }
}

#[inline(always)]
fn forward_layers(net: &ConvNet, ws: &mut Workspace, mode: Mode, first: usize) {
    let batch = ws.batch;
    for (l, layer) in net.layers.iter().enumerate().skip(first) {
        let (before, after) = ws.values.split_at_mut(l);
        let x: &[f32] = if l == 0 { &ws.input } else { &before[l - 1] };
        let out = &mut after[0];
        let in_shape = if l == 0 { net.input } else { net.shapes[l - 1] };
        match (layer, &mut ws.states[l]) {
            (Layer::Conv2d(c), _) => conv_forward(c, batch, x, out, &mut ws.scratch),
            (Layer::BatchNorm2d(n), State::Norm(saved)) => norm_forward(n, mode, x, out, saved),
            (Layer::Relu, _) => {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v.max(0.0);
                }
            }
            (Layer::MaxPool2d(g), State::ArgMax(arg)) => conv::max_pool_forward(g, batch, x, out, arg),
            (Layer::AvgPool2d(g), _) => conv::avg_pool_forward(g, batch, x, out),
            (Layer::GlobalAvgPool, _) => {
                conv::global_avg_pool_forward(in_shape.height * in_shape.width, x, out)
            }
            (Layer::Flatten, _) => out.copy_from_slice(x),
            (Layer::Linear(lin), _) => linear_forward(lin, batch, x, out),
            (Layer::BasicBlock(b), State::Block(st)) => {
                block_forward(b, mode, batch, x, out, st, &mut ws.scratch)
            }
            (layer, _) => unreachable!("workspace built for another network at layer {l}: {layer:?}"),
        }
    }
}

fn check_batch_norm(net: &ConvNet, batch: usize) -> Result<(), ConvNetError> {
    for layer in &net.layers {
        let plane = match layer {
            Layer::BatchNorm2d(n) => n.plane,
            Layer::BasicBlock(b) => b.bn1.plane,
            _ => continue,
        };
        if batch * plane <= 1 {
            return Err(ConvNetError::SingleValueBatchNorm { batch, plane });
        }
    }
    Ok(())
}

/// Back-propagates `ws.output_grad` through `net` after [`forward`] (in the same mode),
/// writing the gradient of every trainable buffer into `grads` (a [`ConvNet::zeros_like`] of
/// `net`; overwritten).
pub fn backward(net: &ConvNet, ws: &mut Workspace, grads: &mut ConvNet) {
    pulp::Arch::new().dispatch(|| backward_impl(net, ws, grads))
}

#[inline(always)]
fn backward_impl(net: &ConvNet, ws: &mut Workspace, grads: &mut ConvNet) {
    let batch = ws.batch;
    let mode = ws.mode;
    let last = net.layers.len() - 1;
    let mut cur = 0;
    ws.grads[0][..ws.output_grad.len()].copy_from_slice(&ws.output_grad);
    for l in (0..=last).rev() {
        let x: &[f32] = if l == 0 { &ws.input } else { &ws.values[l - 1] };
        let out = &ws.values[l];
        let [ga, gb] = &mut ws.grads;
        let (dy, dx) = if cur == 0 {
            (&ga[..out.len()], &mut gb[..x.len()])
        } else {
            (&gb[..out.len()], &mut ga[..x.len()])
        };
        let need_dx = l > 0;
        let in_shape = if l == 0 { net.input } else { net.shapes[l - 1] };
        match (&net.layers[l], &mut grads.layers[l], &ws.states[l]) {
            (Layer::Conv2d(c), Layer::Conv2d(g), _) => {
                conv_backward(c, g, batch, x, dy, need_dx.then_some(dx), &mut ws.scratch)
            }
            (Layer::BatchNorm2d(n), Layer::BatchNorm2d(g), State::Norm(saved)) => {
                norm_backward(n, g, mode, x, saved, dy, dx)
            }
            (Layer::Relu, _, _) => {
                for ((d, &g), &o) in dx.iter_mut().zip(dy).zip(out) {
                    *d = if o > 0.0 { g } else { 0.0 };
                }
            }
            (Layer::MaxPool2d(g), _, State::ArgMax(arg)) => conv::max_pool_backward(g, batch, dy, arg, dx),
            (Layer::AvgPool2d(g), _, _) => conv::avg_pool_backward(g, batch, dy, dx),
            (Layer::GlobalAvgPool, _, _) => {
                conv::global_avg_pool_backward(in_shape.height * in_shape.width, dy, dx)
            }
            (Layer::Flatten, _, _) => dx.copy_from_slice(dy),
            (Layer::Linear(lin), Layer::Linear(g), _) => {
                linear_backward(lin, g, batch, x, dy, need_dx.then_some(dx))
            }
            (Layer::BasicBlock(b), Layer::BasicBlock(g), State::Block(st)) => block_backward(
                b,
                g,
                mode,
                batch,
                x,
                out,
                st,
                dy,
                need_dx.then_some(dx),
                &mut ws.tmp,
                &mut ws.scratch,
            ),
            (layer, _, _) => {
                unreachable!("gradient or workspace of another network at layer {l}: {layer:?}")
            }
        }
        cur = 1 - cur;
    }
}

/// A training step's passes on `ws.input` with softmax cross-entropy on class targets over
/// all outputs: forward in `mode`, the mean loss's gradient into `ws.output_grad`, backward
/// into `grads`. Returns the batch's loss totals.
pub fn loss_and_gradients(
    net: &mut ConvNet,
    ws: &mut Workspace,
    mode: Mode,
    classes: &[u32],
    grads: &mut ConvNet,
) -> Result<BatchLoss, ConvNetError> {
    assert_eq!(classes.len(), ws.batch, "one class per sample");
    forward(net, ws, mode)?;
    let width = net.outputs();
    let totals = loss::evaluate(
        ws.values.last().expect("a network has layers"),
        width,
        0..width,
        Targets::Classes(classes),
        Some(&mut ws.output_grad),
    );
    backward(net, ws, grads);
    Ok(totals)
}

/// Plain SGD: every trainable parameter moves by −`lr` × its gradient.
pub fn sgd_step(net: &mut ConvNet, grads: &ConvNet, lr: f32) {
    net.zip_buffers_mut(grads, |p, g| {
        for (p, &g) in p.iter_mut().zip(g) {
            *p -= lr * g;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::{LayerSpec, Shape};
    use super::*;
    use crate::rng::{self, Rng};
    use rand::Rng as _;

    fn conv(channels: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> LayerSpec {
        LayerSpec::Conv2d { channels, kernel, stride, padding, bias }
    }

    /// Every trainable buffer of `net`, copied, in [`ConvNet::zip_buffers_mut`] order.
    fn buffers(net: &ConvNet) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        net.clone().zip_buffers_mut(net, |_, b| out.push(b.to_vec()));
        out
    }

    /// Adds `scale · direction` to trainable buffer `which`.
    fn perturb(net: &mut ConvNet, which: usize, direction: &[f32], scale: f32) {
        let shape = net.clone();
        let mut i = 0;
        net.zip_buffers_mut(&shape, |p, _| {
            if i == which {
                for (p, d) in p.iter_mut().zip(direction) {
                    *p += scale * d;
                }
            }
            i += 1;
        });
    }

    /// Σ outputs ⊙ weights, in f64: a loss whose output gradient is `weights`.
    fn surrogate(net: &mut ConvNet, ws: &mut Workspace, mode: Mode, weights: &[f32]) -> f64 {
        forward(net, ws, mode).unwrap();
        ws.outputs().iter().zip(weights).map(|(&o, &w)| o as f64 * w as f64).sum()
    }

    /// Back-propagated gradients of every trainable buffer equal central finite differences
    /// of the loss along a random direction, for networks using every layer kind (padding,
    /// strides, both pools, identity and projection blocks), in both batch-norm modes.
    #[test]
    fn network_gradients_match_finite_differences() {
        let mut r = rng::stream(41, "test", 0);
        let nets = [
            (
                Shape::new(2, 7, 7),
                vec![
                    conv(3, 3, 1, 1, true),
                    LayerSpec::BatchNorm2d,
                    LayerSpec::Relu,
                    LayerSpec::MaxPool2d { kernel: 3, stride: 2, padding: 1 },
                    conv(4, 2, 1, 0, false),
                    LayerSpec::Relu,
                    LayerSpec::AvgPool2d { kernel: 2, stride: 1, padding: 1 },
                    LayerSpec::Flatten,
                    LayerSpec::Linear { units: 5 },
                    LayerSpec::Relu,
                    LayerSpec::Linear { units: 3 },
                ],
            ),
            (
                Shape::new(3, 8, 8),
                vec![
                    conv(4, 3, 1, 1, false),
                    LayerSpec::BatchNorm2d,
                    LayerSpec::Relu,
                    LayerSpec::BasicBlock { channels: 4, stride: 1, bias: false },
                    LayerSpec::BasicBlock { channels: 6, stride: 2, bias: true },
                    LayerSpec::GlobalAvgPool,
                    LayerSpec::Linear { units: 3 },
                ],
            ),
        ];
        for (input, specs) in nets {
            let mut net = ConvNet::new(input, &specs, &mut r).unwrap();
            let batch = 3;
            let mut ws = Workspace::new(&net, batch);
            ws.input.iter_mut().for_each(|v| *v = r.gen_range(-1.0..1.0));
            // Move the running statistics away from (0, 1) before checking evaluation mode.
            forward(&mut net, &mut ws, Mode::Train).unwrap();
            for mode in [Mode::Train, Mode::Eval] {
                let weights: Vec<f32> = (0..ws.output_grad.len()).map(|_| r.gen_range(-1.0..1.0)).collect();
                let mut grads = net.zeros_like();
                forward(&mut net, &mut ws, mode).unwrap();
                ws.output_grad.copy_from_slice(&weights);
                backward(&net, &mut ws, &mut grads);
                for (which, grad) in buffers(&grads).into_iter().enumerate() {
                    let direction: Vec<f32> = (0..grad.len()).map(|_| r.gen_range(-1.0..1.0)).collect();
                    let analytic: f64 = grad.iter().zip(&direction).map(|(&g, &d)| g as f64 * d as f64).sum();
                    // A step crosses ReLU and max-pool kinks when too large, and drowns in
                    // f32 rounding when too small: one of these steps must agree.
                    let numeric: Vec<f64> = [1e-2f32, 3e-3, 1e-3, 3e-4, 1e-4]
                        .into_iter()
                        .map(|eps| {
                            let mut plus = net.clone();
                            perturb(&mut plus, which, &direction, eps);
                            let mut minus = net.clone();
                            perturb(&mut minus, which, &direction, -eps);
                            (surrogate(&mut plus, &mut ws, mode, &weights)
                                - surrogate(&mut minus, &mut ws, mode, &weights))
                                / (2.0 * eps as f64)
                        })
                        .collect();
                    assert!(
                        numeric.iter().any(|n| (n - analytic).abs() <= 1e-2 * analytic.abs() + 1e-4),
                        "{input:?} {mode:?} buffer {which}: finite differences {numeric:?} vs back-propagated {analytic}"
                    );
                }
            }
        }
    }

    /// A bar is horizontal (class 0) or vertical (class 1), anywhere, under noise.
    fn bars(r: &mut Rng, batch: usize, side: usize) -> (Vec<f32>, Vec<u32>) {
        let mut x = vec![0.0; batch * side * side];
        let mut y = Vec::with_capacity(batch);
        for (s, img) in x.chunks_exact_mut(side * side).enumerate() {
            let class = (s % 2) as u32;
            let at = r.gen_range(0..side);
            for (i, v) in img.iter_mut().enumerate() {
                let (row, col) = (i / side, i % side);
                let on = if class == 0 { row == at } else { col == at };
                *v = if on { 1.0 } else { 0.0 } + r.gen_range(-0.2..0.2);
            }
            y.push(class);
        }
        (x, y)
    }

    /// SGD on a small separable problem lowers the training loss, and the trained network
    /// classifies fresh samples in evaluation mode (with the running statistics).
    #[test]
    fn sgd_learns_a_separable_problem() {
        let mut r = rng::stream(42, "test", 0);
        let side = 6;
        let specs = [
            conv(4, 3, 1, 1, true),
            LayerSpec::BatchNorm2d,
            LayerSpec::Relu,
            LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 },
            conv(6, 3, 1, 1, true),
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear { units: 2 },
        ];
        let mut net = ConvNet::new(Shape::new(1, side, side), &specs, &mut r).unwrap();
        let batch = 16;
        let mut ws = Workspace::new(&net, batch);
        let mut grads = net.zeros_like();
        let mut losses = Vec::new();
        for _ in 0..150 {
            let (x, y) = bars(&mut r, batch, side);
            ws.input.copy_from_slice(&x);
            let totals = loss_and_gradients(&mut net, &mut ws, Mode::Train, &y, &mut grads).unwrap();
            losses.push(totals.mean_loss());
            sgd_step(&mut net, &grads, 0.1);
        }
        let first = losses[..5].iter().sum::<f64>() / 5.0;
        let last = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
        assert!(last < 0.3 * first, "loss {first} → {last}");
        let (x, y) = bars(&mut r, batch, side);
        ws.input.copy_from_slice(&x);
        forward(&mut net, &mut ws, Mode::Eval).unwrap();
        let correct =
            ws.outputs().chunks_exact(2).zip(&y).filter(|(o, &c)| (o[1] > o[0]) as u32 == c).count();
        assert!(correct >= batch - 1, "{correct}/{batch} correct in evaluation mode");
    }

    /// Training mode moves the running statistics and normalises with the batch's; evaluation
    /// mode leaves them alone and treats every sample on its own: a sample's outputs do not
    /// depend on the rest of its batch.
    #[test]
    fn evaluation_mode_treats_samples_independently_and_keeps_the_statistics() {
        let mut r = rng::stream(45, "test", 0);
        let specs = [
            conv(4, 3, 1, 1, true),
            LayerSpec::BatchNorm2d,
            LayerSpec::Relu,
            LayerSpec::BasicBlock { channels: 5, stride: 2, bias: false },
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear { units: 2 },
        ];
        let mut net = ConvNet::new(Shape::new(2, 6, 6), &specs, &mut r).unwrap();
        let mut ws = Workspace::new(&net, 3);
        ws.input.iter_mut().for_each(|v| *v = r.gen_range(-1.0..1.0) * 2.0 + 0.5);
        let before = net.clone();
        forward(&mut net, &mut ws, Mode::Train).unwrap();
        assert_ne!(net, before, "training mode updates the running statistics");
        let train_outputs = ws.outputs().to_vec();
        let trained = net.clone();
        forward(&mut net, &mut ws, Mode::Eval).unwrap();
        assert_eq!(net, trained, "evaluation mode leaves the running statistics alone");
        let batch_outputs = ws.outputs().to_vec();
        assert_ne!(batch_outputs, train_outputs);
        let mut single = Workspace::new(&net, 1);
        let per_sample = net.input_shape().len();
        for s in 0..3 {
            single.input.copy_from_slice(&ws.input[s * per_sample..(s + 1) * per_sample]);
            forward(&mut net, &mut single, Mode::Eval).unwrap();
            for (a, b) in single.outputs().iter().zip(&batch_outputs[s * 2..(s + 1) * 2]) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "sample {s}: {a} alone vs {b} in the batch"
                );
            }
        }
    }

    /// A workspace resized to a smaller batch computes what a fresh one computes.
    #[test]
    fn a_resized_workspace_matches_a_fresh_one() {
        let mut r = rng::stream(44, "test", 0);
        let specs = [
            conv(4, 3, 2, 1, false),
            LayerSpec::BatchNorm2d,
            LayerSpec::Relu,
            LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 },
            LayerSpec::BasicBlock { channels: 6, stride: 1, bias: false },
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear { units: 3 },
        ];
        let net = ConvNet::new(Shape::new(3, 9, 9), &specs, &mut r).unwrap();
        let mut reused = Workspace::new(&net, 5);
        reused.input.iter_mut().for_each(|v| *v = r.gen_range(-1.0..1.0));
        let mut grads = net.zeros_like();
        loss_and_gradients(&mut net.clone(), &mut reused, Mode::Train, &[0, 1, 2, 0, 1], &mut grads).unwrap();
        reused.set_batch(&net, 2);
        let mut fresh = Workspace::new(&net, 2);
        let input: Vec<f32> = (0..fresh.input.len()).map(|_| r.gen_range(-1.0..1.0)).collect();
        let mut outcomes = Vec::new();
        for ws in [&mut reused, &mut fresh] {
            ws.input.copy_from_slice(&input);
            let mut g = net.zeros_like();
            let loss = loss_and_gradients(&mut net.clone(), ws, Mode::Train, &[2, 1], &mut g).unwrap();
            outcomes.push((loss, ws.outputs().to_vec(), g));
        }
        assert_eq!(outcomes[0], outcomes[1]);
    }

    #[test]
    fn layers_that_do_not_fit_are_refused_with_their_reason() {
        let mut r = rng::stream(43, "test", 0);
        let input = Shape::new(3, 8, 8);
        assert_eq!(
            ConvNet::new(input, &[conv(4, 3, 1, 0, true), LayerSpec::Linear { units: 2 }], &mut r),
            Err(ConvNetError::NotFlat { layer: 1, input: Shape::new(4, 6, 6) })
        );
        assert!(matches!(
            ConvNet::new(input, &[conv(4, 9, 1, 0, true)], &mut r),
            Err(ConvNetError::Geometry { layer: 0, kind: "conv2d", .. })
        ));
        assert_eq!(ConvNet::new(input, &[], &mut r), Err(ConvNetError::Empty));
        // One value per channel: training-mode batch norm is undefined, evaluation mode is not.
        let mut net = ConvNet::new(
            input,
            &[
                LayerSpec::GlobalAvgPool,
                LayerSpec::BatchNorm2d,
                LayerSpec::Flatten,
                LayerSpec::Linear { units: 2 },
            ],
            &mut r,
        )
        .unwrap();
        let mut ws = Workspace::new(&net, 1);
        assert_eq!(
            forward(&mut net, &mut ws, Mode::Train),
            Err(ConvNetError::SingleValueBatchNorm { batch: 1, plane: 1 })
        );
        assert_eq!(forward(&mut net, &mut ws, Mode::Eval), Ok(()));
    }
}
