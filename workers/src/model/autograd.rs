//! The autograd engine: the same MLP built on dfdx's run-time shaped tensors, with reverse-mode
//! automatic differentiation.
//!
//! dfdx 0.13's `nn` layers take compile-time sizes only, so the network is written with tensor
//! operations on `(usize, usize)` shapes. This engine is the reference the fused kernels are
//! tested against, and the general path for models that are not a plain MLP.

use std::ops::Range;

use dfdx::prelude::{
    cross_entropy_with_logits_loss, mse_loss, Axes2, Axis, Backward, BroadcastTo, Cpu, Gradients, HasShape,
    NoneTape, OwnedTape, PermuteTo, Rank0, SumTo, Tensor, TensorFromVec, Trace, TryMatMul, TryPReLU,
};

use super::fused::Workspace;
use super::loss::{self, BatchLoss, Targets};
use super::mlp::{Layers, Mlp};
use crate::protocol::Activation;

type Matrix<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
type Vector = Tensor<(usize,), f32, Cpu>;

/// The dfdx device and entry point of the autograd engine.
#[derive(Clone, Debug, Default)]
pub struct Autograd {
    device: Cpu,
}

impl Autograd {
    /// A CPU engine. Denormals are flushed to zero (as the fused engine's callers do), because
    /// denormal arithmetic is 100× slower and changes no result that matters.
    pub fn new() -> Self {
        dfdx::flush_denormals_to_zero();
        Autograd { device: Cpu::default() }
    }

    /// A training step's passes on `ws.input`: dfdx's forward pass fills `ws.values`, then
    /// `output_gradient` writes d(loss)/d(outputs) into `ws.output_grad` (the loss and any
    /// method terms), and dfdx back-propagates it — as the gradient of the surrogate
    /// Σ outputs ⊙ G, whose gradient with respect to the outputs is exactly G — into `grads`.
    pub fn forward_backward(
        &self,
        net: &Mlp,
        ws: &mut Workspace,
        grads: &mut Layers,
        output_gradient: &mut dyn FnMut(&mut Workspace),
    ) {
        let dev = &self.device;
        let batch = ws.batch();
        let (weights, biases, h) = self.forward(net, ws);
        output_gradient(ws);
        let g = dev.tensor_from_vec(ws.output_grad.clone(), (batch, ws.output_width()));
        let gradients = (h * g).sum::<Rank0, _>().backward();
        read_gradients(&gradients, &weights, &biases, grads);
    }

    /// The traced forward pass on `ws.input`, copying every layer's values into `ws.values`;
    /// returns the parameter tensors (whose gradients the tape will hold) and the outputs.
    fn forward(
        &self,
        net: &Mlp,
        ws: &mut Workspace,
    ) -> (Vec<Matrix>, Vec<Vector>, Matrix<OwnedTape<f32, Cpu>>) {
        let (weights, biases) = self.parameters(net);
        let mut h = self
            .device
            .tensor_from_vec(ws.input.clone(), (ws.batch(), net.layers()[0].inputs))
            .leaky_traced();
        let hidden = net.hidden_layers();
        for (l, (w, b)) in weights.iter().zip(&biases).enumerate() {
            h = layer(h, w, b);
            if l < hidden {
                h = activate(h, net.activation);
            }
            ws.values[l].copy_from_slice(&h.retaped::<NoneTape>().as_vec());
        }
        (weights, biases, h)
    }

    fn parameters(&self, net: &Mlp) -> (Vec<Matrix>, Vec<Vector>) {
        let dev = &self.device;
        let weights = net
            .layers()
            .iter()
            .map(|l| dev.tensor_from_vec(l.weight.clone(), (l.outputs, l.inputs)))
            .collect();
        let biases = net.layers().iter().map(|l| dev.tensor_from_vec(l.bias.clone(), (l.outputs,))).collect();
        (weights, biases)
    }

    /// Forward and backward pass on `ws.input`: fills `ws.values` with every layer's values
    /// (as the fused engine does, so methods read activations the same way), writes the
    /// gradient of the mean loss on `head` into `grads` and returns the batch's loss totals.
    pub fn loss_and_gradients(
        &self,
        net: &Mlp,
        ws: &mut Workspace,
        head: Range<usize>,
        targets: Targets<'_>,
        grads: &mut Layers,
    ) -> BatchLoss {
        let dev = &self.device;
        let batch = ws.batch();
        let (weights, biases, h) = self.forward(net, ws);
        let width = ws.output_width();
        let totals = loss::evaluate(ws.outputs(), width, head.clone(), targets, None);
        let head_outputs = h.slice((.., head.start..head.end));
        let loss = match targets {
            Targets::Classes(classes) => {
                let c = head.len();
                let mut onehot = vec![0.0f32; batch * c];
                for (b, &k) in classes.iter().enumerate() {
                    onehot[b * c + k as usize] = 1.0;
                }
                cross_entropy_with_logits_loss(head_outputs, dev.tensor_from_vec(onehot, (batch, c)))
            }
            Targets::Reals(reals) => mse_loss(head_outputs, dev.tensor_from_vec(reals.to_vec(), (batch, 1))),
        };
        let gradients = loss.backward();
        read_gradients(&gradients, &weights, &biases, grads);
        totals
    }
}

/// Copies the gradients of every weight and bias out of dfdx's gradient store.
fn read_gradients(
    gradients: &Gradients<f32, Cpu>,
    weights: &[Matrix],
    biases: &[Vector],
    grads: &mut Layers,
) {
    for (l, (w, b)) in weights.iter().zip(biases).enumerate() {
        grads.layers[l].weight.copy_from_slice(&gradients.get(w).as_vec());
        grads.layers[l].bias.copy_from_slice(&gradients.get(b).as_vec());
    }
}

/// x · Wᵀ + b, with W and b traced.
fn layer(
    x: Matrix<OwnedTape<f32, Cpu>>,
    w: &Matrix,
    b: &Tensor<(usize,), f32, Cpu>,
) -> Matrix<OwnedTape<f32, Cpu>> {
    let z = x.matmul(w.leaky_trace().permute::<(usize, usize), Axes2<1, 0>>());
    let shape = *z.shape();
    z + b.leaky_trace().broadcast_like::<_, Axis<0>>(&shape)
}

fn activate<T>(z: Matrix<T>, activation: Activation) -> Matrix<T>
where
    T: dfdx::tensor::Tape<f32, Cpu>,
{
    match activation {
        Activation::Relu => z.relu(),
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => z.sigmoid(),
        Activation::LeakyRelu => z.prelu(Activation::LEAKY_SLOPE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused;
    use crate::rng;
    use rand::Rng as _;

    /// The fused kernels must agree with dfdx: same loss and gradients to 1e-5 relative, for
    /// every activation, on random networks, batches and heads.
    #[test]
    fn fused_engine_matches_autograd() {
        let engine = Autograd::new();
        let mut r = rng::stream(3, "test", 0);
        for (case, act) in [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::LeakyRelu]
            .into_iter()
            .enumerate()
        {
            for (sizes, batch, heads) in
                [(vec![7, 5, 3], 1, 1), (vec![20, 16, 9, 6], 13, 2), (vec![33, 40, 4], 64, 1)]
            {
                let net = Mlp::new(&sizes, act, &mut r);
                let out = *sizes.last().unwrap();
                let per_head = out / heads;
                let head = (heads - 1) * per_head..heads * per_head;
                let mut ws = Workspace::new(&sizes, batch);
                ws.input.iter_mut().for_each(|v| *v = r.gen_range(-1.0..1.0));
                let classes: Vec<u32> = (0..batch).map(|_| r.gen_range(0..per_head as u32)).collect();
                let reals: Vec<f32> = (0..batch).map(|_| r.gen_range(-2.0..2.0)).collect();
                let targets = if case % 2 == 0 && per_head > 1 {
                    Targets::Classes(&classes)
                } else {
                    Targets::Reals(&reals)
                };
                let head =
                    if matches!(targets, Targets::Reals(_)) { head.start..head.start + 1 } else { head };

                let mut g_auto = Layers::zeros(&sizes);
                let l_auto = engine.loss_and_gradients(&net, &mut ws, head.clone(), targets, &mut g_auto);
                let values_auto = ws.values.clone();

                let mut g_fused = Layers::zeros(&sizes);
                fused::forward(&net, &mut ws);
                let mut output_grad = vec![0.0; ws.output_grad.len()];
                let l_fused = loss::evaluate(ws.outputs(), out, head, targets, Some(&mut output_grad));
                ws.output_grad = output_grad;
                fused::backward(&net, &mut ws, &mut g_fused);

                assert!((l_auto.loss_sum - l_fused.loss_sum).abs() <= 1e-5 * l_auto.loss_sum.abs().max(1.0));
                for (a, b) in values_auto.iter().flatten().zip(ws.values.iter().flatten()) {
                    assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{act:?} {sizes:?}: values {a} vs {b}");
                }
                for (ga, gf) in g_auto.buffers().zip(g_fused.buffers()) {
                    let scale = ga.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
                    for (a, b) in ga.iter().zip(gf) {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale.max(a.abs()),
                            "{act:?} {sizes:?} batch {batch}: gradient {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
