//! Optimisers with per-element state.
//!
//! State is kept per parameter element — including Adam's bias-correction powers — so that a
//! method can reset single units (continual backprop resets the moments of a reinitialised
//! unit's row, bias and outgoing column, as the reference `AdamGnT` does) without disturbing the
//! rest of the layer.

use serde::{Deserialize, Serialize};

use crate::model::{Layers, Mlp, Parameters};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent, optionally with (PyTorch-style) momentum.
    Sgd,
    /// Adam (Kingma & Ba 2015).
    Adam,
}

/// Hyper-parameters of the optimiser; part of every method's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Step size α.
    pub lr: f32,
    /// SGD momentum μ: v ← μv + g, w ← w − αv (0 = plain SGD).
    pub momentum: f32,
    /// Adam β₁.
    pub beta1: f32,
    /// Adam β₂.
    pub beta2: f32,
    /// Adam ε.
    pub eps: f32,
}

/// The parameter names the optimiser takes from a method's parameters.
pub const OPTIMIZER_PARAMETERS: [&str; 6] = ["optimizer", "lr", "momentum", "beta1", "beta2", "eps"];

impl OptimizerConfig {
    /// Defaults for a kind: lr 0.01 for SGD (the loss-of-plasticity paper's MNIST step size),
    /// lr 0.001, β = (0.9, 0.999), ε = 1e-8 for Adam (Kingma & Ba).
    pub fn defaults(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            kind,
            lr: match kind {
                OptimizerKind::Sgd => 0.01,
                OptimizerKind::Adam => 0.001,
            },
            momentum: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// An optimiser and its state for one network, shaped like its parameters `P` (an MLP's
/// [`Layers`], a conv net's [`ConvNet`](crate::model::convnet::ConvNet)).
#[derive(Clone, Debug)]
pub struct Optimizer<P = Layers> {
    /// Hyper-parameters.
    pub config: OptimizerConfig,
    /// SGD velocity, or Adam's first moment; absent for plain SGD.
    pub moment1: Option<P>,
    /// Adam's second moment.
    pub moment2: Option<P>,
    /// Adam's β₁^t per element (t = the element's own step count).
    pub beta1_power: Option<P>,
    /// Adam's β₂^t per element.
    pub beta2_power: Option<P>,
}

impl Optimizer<Layers> {
    /// Fresh state for `net`.
    pub fn new(config: OptimizerConfig, net: &Mlp) -> Self {
        Optimizer::for_parameters(config, &net.params)
    }

    /// Applies one update with `grads` to `net`.
    pub fn step(&mut self, net: &mut Mlp, grads: &Layers) {
        self.step_parameters(&mut net.params, grads);
    }
}

impl<P: Parameters> Optimizer<P> {
    /// Fresh state for parameters shaped like `params`.
    pub fn for_parameters(config: OptimizerConfig, params: &P) -> Self {
        let zeros = || Some(params.zeros_like());
        let ones = || {
            let mut l = params.zeros_like();
            l.slices_mut().into_iter().for_each(|b| b.fill(1.0));
            Some(l)
        };
        match config.kind {
            OptimizerKind::Sgd => Optimizer {
                config,
                moment1: if config.momentum != 0.0 { zeros() } else { None },
                moment2: None,
                beta1_power: None,
                beta2_power: None,
            },
            OptimizerKind::Adam => Optimizer {
                config,
                moment1: zeros(),
                moment2: zeros(),
                beta1_power: ones(),
                beta2_power: ones(),
            },
        }
    }

    /// Applies one update with `grads` to `params`.
    pub fn step_parameters(&mut self, params: &mut P, grads: &P) {
        let c = self.config;
        match c.kind {
            OptimizerKind::Sgd => match &mut self.moment1 {
                None => {
                    for (p, g) in params.slices_mut().into_iter().zip(grads.slices()) {
                        for (w, &g) in p.iter_mut().zip(g) {
                            *w -= c.lr * g;
                        }
                    }
                }
                Some(v) => {
                    let moments = v.slices_mut();
                    for ((p, g), v) in params.slices_mut().into_iter().zip(grads.slices()).zip(moments) {
                        for ((w, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
                            *v = c.momentum * *v + g;
                            *w -= c.lr * *v;
                        }
                    }
                }
            },
            OptimizerKind::Adam => {
                let (m, v, p1, p2) = (
                    self.moment1.as_mut().expect("Adam state"),
                    self.moment2.as_mut().expect("Adam state"),
                    self.beta1_power.as_mut().expect("Adam state"),
                    self.beta2_power.as_mut().expect("Adam state"),
                );
                let buffers = params
                    .slices_mut()
                    .into_iter()
                    .zip(grads.slices())
                    .zip(m.slices_mut().into_iter().zip(v.slices_mut()))
                    .zip(p1.slices_mut().into_iter().zip(p2.slices_mut()));
                for (((w, g), (m, v)), (p1, p2)) in buffers {
                    for i in 0..w.len() {
                        let g = g[i];
                        m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
                        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
                        p1[i] *= c.beta1;
                        p2[i] *= c.beta2;
                        let m_hat = m[i] / (1.0 - p1[i]);
                        let v_hat = v[i] / (1.0 - p2[i]);
                        w[i] -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
                    }
                }
            }
        }
    }

    /// Every state buffer set, with a name, for checkpoints and for resetting units.
    pub fn states(&self) -> Vec<(&'static str, &P)> {
        let mut out = Vec::new();
        for (name, s) in [
            ("moment1", &self.moment1),
            ("moment2", &self.moment2),
            ("beta1_power", &self.beta1_power),
            ("beta2_power", &self.beta2_power),
        ] {
            if let Some(s) = s {
                out.push((name, s));
            }
        }
        out
    }

    /// Every state buffer set, mutable, with the value a fresh element has.
    pub fn states_mut(&mut self) -> Vec<(&'static str, &mut P, f32)> {
        let mut out = Vec::new();
        for (name, s, fresh) in [
            ("moment1", &mut self.moment1, 0.0),
            ("moment2", &mut self.moment2, 0.0),
            ("beta1_power", &mut self.beta1_power, 1.0),
            ("beta2_power", &mut self.beta2_power, 1.0),
        ] {
            if let Some(s) = s {
                out.push((name, s, fresh));
            }
        }
        out
    }
}

impl Optimizer<Layers> {
    /// Resets the state of unit `unit` of layer `layer`: its incoming row and its bias, as if
    /// those elements had never been updated.
    pub fn reset_incoming(&mut self, layer: usize, unit: usize) {
        for (_, s, fresh) in self.states_mut() {
            let l = &mut s.layers[layer];
            l.row_mut(unit).fill(fresh);
            l.bias[unit] = fresh;
        }
    }

    /// Resets the state of the weights leaving unit `unit` of layer `layer` (column `unit` of
    /// layer `layer + 1`).
    pub fn reset_outgoing(&mut self, layer: usize, unit: usize) {
        for (_, s, fresh) in self.states_mut() {
            s.layers[layer + 1].fill_column(unit, fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Activation;
    use crate::rng;

    fn tiny() -> Mlp {
        Mlp::new(&[2, 2, 1], Activation::Relu, &mut rng::stream(0, "t", 0))
    }

    #[test]
    fn sgd_moves_against_the_gradient_by_lr() {
        let mut net = tiny();
        let before = net.clone();
        let mut g = Layers::zeros_like(&net.params);
        g.layers[0].weight[1] = 2.0;
        let mut opt = Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Sgd), &net);
        opt.step(&mut net, &g);
        assert_eq!(net.params.layers[0].weight[1], before.params.layers[0].weight[1] - 0.01 * 2.0);
        assert_eq!(net.params.layers[1], before.params.layers[1]);
    }

    #[test]
    fn adam_first_step_is_lr_times_sign_and_reset_restarts_bias_correction() {
        let mut net = tiny();
        let before = net.clone();
        let mut g = Layers::zeros_like(&net.params);
        g.layers[0].weight.iter_mut().for_each(|v| *v = -3.0);
        let mut opt = Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Adam), &net);
        opt.step(&mut net, &g);
        let moved = net.params.layers[0].weight[0] - before.params.layers[0].weight[0];
        assert!((moved - 0.001).abs() < 1e-6, "{moved}");
        opt.step(&mut net, &g);
        opt.reset_incoming(0, 1);
        let s = opt.beta1_power.as_ref().unwrap();
        assert_eq!(s.layers[0].row(1), &[1.0, 1.0]);
        assert!((s.layers[0].row(0)[0] - 0.81).abs() < 1e-6);
        assert_eq!(opt.moment1.as_ref().unwrap().layers[0].row(1), &[0.0, 0.0]);
        // A reset element's next step is again a full bias-corrected step of size lr.
        let w = net.params.layers[0].row(1)[0];
        opt.step(&mut net, &g);
        assert!((net.params.layers[0].row(1)[0] - w - 0.001).abs() < 1e-6);
    }
}
