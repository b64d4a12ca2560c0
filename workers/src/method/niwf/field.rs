//! The weight field: W(z) = W0 + Σ_b κ_b(z) ΔW_b, every layer's weights and biases generated
//! from a coordinate z ∈ R^d.
//!
//! Basis b is a full weight configuration ΔW_b (shaped like the network) centred at its task's
//! coordinate c_b, with the compact bump κ_b(z) = (1 − ‖z − c_b‖²/ρ²)² inside the ball of
//! radius ρ and exactly 0 outside; a basis created under the hard lock is also exactly 0 inside
//! every region committed before it (`silenced_in`). W0 is the trainer's network (the
//! backbone). A term whose κ is 0 is skipped, so a weight that no basis reaches is W0's value
//! to the bit, and at its own coordinate a basis enters with κ = 1 exactly.

use super::family::{copy_layers, FieldNet};
use crate::model::{Layers, Linear};

/// One basis of the field.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Basis {
    /// The task it was created for.
    pub task: usize,
    /// The output columns of that task's head.
    pub head: std::ops::Range<usize>,
    /// Its centre c_b (the task's coordinate).
    pub center: Vec<f32>,
    /// ΔW_b, shaped like the field's layers (starts at 0).
    pub delta: Layers,
    /// Frozen by a hard-lock commit.
    pub frozen: bool,
    /// Committed regions (their indices) in which it is silenced: κ_b = 0 there.
    pub silenced_in: Vec<usize>,
}

/// The field's geometry and bases (W0 lives in the trainer's network).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Field {
    pub radius: f32,
    pub spacing: f32,
    pub dim: usize,
    pub bases: Vec<Basis>,
    /// Centres of the committed regions, by region index (the region is the open ball of
    /// radius ρ around it).
    pub regions: Vec<Vec<f32>>,
}

fn distance2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl Field {
    /// The coordinate given to the `index`-th basis: `spacing · (⌊index/d⌋ + 1)` on axis
    /// `index mod d`.
    pub fn place(&self, index: usize) -> Vec<f32> {
        let mut z = vec![0.0f32; self.dim];
        z[index % self.dim] = self.spacing * ((index / self.dim) + 1) as f32;
        z
    }

    /// Whether `z` lies inside committed region `region`.
    pub fn inside(&self, region: usize, z: &[f32]) -> bool {
        distance2(&self.regions[region], z) < self.radius * self.radius
    }

    /// κ_b(z).
    pub fn kappa(&self, b: usize, z: &[f32]) -> f32 {
        let basis = &self.bases[b];
        let s = distance2(&basis.center, z) / (self.radius * self.radius);
        if s >= 1.0 || basis.silenced_in.iter().any(|&r| self.inside(r, z)) {
            return 0.0;
        }
        if s == 0.0 {
            return 1.0;
        }
        let u = 1.0 - s;
        u * u
    }

    /// W(z) with W0 = `w0` (the rest of the network is `w0`'s).
    pub fn generate<M: FieldNet>(&self, w0: &M, z: &[f32]) -> M {
        let mut net = w0.clone();
        self.add_bases(&mut net, z);
        net
    }

    /// W(z) into `net`, a copy of `w0` but for the field's layers (a network generated
    /// earlier): the same values as [`Field::generate`], without copying the rest again.
    pub fn generate_into<M: FieldNet>(&self, w0: &M, z: &[f32], net: &mut M) {
        copy_layers(M::field_layers_mut(net.parameters_mut()), M::field_layers(w0.parameters()));
        self.add_bases(net, z);
    }

    /// Adds κ_b(z) ΔW_b of every basis reaching `z` to `net`'s field layers.
    fn add_bases<M: FieldNet>(&self, net: &mut M, z: &[f32]) {
        for b in 0..self.bases.len() {
            let k = self.kappa(b, z);
            if k != 0.0 {
                axpy_layers(M::field_layers_mut(net.parameters_mut()), k, &self.bases[b].delta);
            }
        }
    }

    /// The index of task `task`'s basis.
    pub fn basis_of(&self, task: usize) -> Option<usize> {
        self.bases.iter().position(|b| b.task == task)
    }
}

/// `y += a · x`.
pub(super) fn axpy(y: &mut Layers, a: f32, x: &Layers) {
    axpy_layers(y.layers.iter_mut(), a, x);
}

/// `y += a · x` on layers `y` shaped like `x`'s (a network's field layers).
pub(super) fn axpy_layers<'a>(y: impl IntoIterator<Item = &'a mut Linear>, a: f32, x: &Layers) {
    for (y, x) in y.into_iter().zip(&x.layers) {
        for (y, x) in [(&mut y.weight, &x.weight), (&mut y.bias, &x.bias)] {
            for (y, &x) in y.iter_mut().zip(x) {
                *y += a * x;
            }
        }
    }
}

/// `⟨x, y⟩` over every buffer, in f64.
pub(super) fn dot(x: &Layers, y: &Layers) -> f64 {
    let mut s = 0.0f64;
    for (x, y) in x.buffers().zip(y.buffers()) {
        for (&x, &y) in x.iter().zip(y) {
            s += x as f64 * y as f64;
        }
    }
    s
}

/// `x − y`.
pub(super) fn difference(x: &Layers, y: &Layers) -> Layers {
    let mut out = x.clone();
    axpy(&mut out, -1.0, y);
    out
}
