//! Weight fields: the learner's weights as a function of a continuous capability coordinate
//! (NIWF, Chaudhry 2026, arXiv 2602.18628), at MLP scale.
//!
//! A [`WeightField`] sits on a backbone [`Mlp`](super::Mlp) (the recipe's network). Every
//! prediction is a two-pass forward:
//!
//! 1. **first pass**: the backbone alone; its hidden values (all hidden layers, concatenated)
//!    are the features the coordinate is read from;
//! 2. **coordinate**: the encoder G (one tanh hidden layer) maps the features to z ∈ R^d;
//! 3. **field**: F (one tanh hidden layer per component) maps z to K gate logits; the logits of
//!    the components are summed, each extension component weighted by the method's region
//!    masks (see [`RegionMasks`]); the gates are a softmax over the `top_k` largest logits
//!    (others are exactly 0);
//! 4. **second pass**: every adapted layer l computes x·(W0_l + Σ_b g_b B_b A_b)ᵀ + b0_l, with
//!    A_b (r × inputs) and B_b (outputs × r) the low-rank bases of the layer's bank.
//!
//! The paper pools hidden states over a sequence and runs a GRU over tokens; an MLP example is
//! a sequence of length one, so pooling is the identity and G is a plain MLP.
//!
//! # Parameter layout
//!
//! All field parameters live in one [`Layers`] (so the run's [`Optimizer`](crate::optim::Optimizer)
//! steps them), addressed by [`FieldLayout`]:
//!
//! * the encoder: two layers, `features → encoder_hidden → d`;
//! * per field component: two layers, `d → field_hidden → K_c`, where K_c is the number of bases
//!   when the component was created (the first component is created with the field, the others
//!   by [`WeightField::add_component`]);
//! * per bank block (a group of bases created together): for every adapted layer, the stacked
//!   A (`bases·r × inputs`, rows `j·r..(j+1)·r` are basis j's A) and the stacked Bᵀ
//!   (`bases·r × outputs`), as two [`Linear`]s whose biases are unused and stay 0.
//!
//! Bases are grouped in blocks that never change shape, because the prediction sums a block's
//! bases in one matrix product: blocks added later leave every earlier product, and so every
//! committed output, bit for bit unchanged.

mod pass;

pub use pass::{
    FieldEngine, Gates, LockTerm, RegionMasks, SeparationRegion, SeparationTerm, StepResult, StepTerms,
};

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::mlp::{init_bound, Layers, Linear};
use crate::protocol::Activation;
use crate::rng::Rng;

/// The architecture of a weight field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Bases per bank when the field is created (K).
    pub bases: usize,
    /// Rank r of every basis B_b A_b.
    pub rank: usize,
    /// Dimension d of the capability coordinate z.
    pub coordinate_dim: usize,
    /// Gates kept per example: the softmax runs over the `top_k` largest logits.
    pub top_k: usize,
    /// Hidden units of the coordinate encoder G.
    pub encoder_hidden: usize,
    /// Hidden units of each field component F.
    pub field_hidden: usize,
    /// Whether the output layer gets a bank too (hidden layers always do).
    pub adapt_output: bool,
}

/// One component of the field network F (the base field or an extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Index in [`WeightField::params`] of its hidden layer (its output layer follows).
    pub first: usize,
    /// Logits it produces: the bases that existed when it was created.
    pub bases: usize,
    /// Committed regions that existed when it was created; its logits are weighted by the
    /// product of those regions' masks, so it is silent inside them.
    pub regions_before: usize,
}

/// A group of bases created together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Index in [`WeightField::params`] of the stacked A of the first adapted layer; then Bᵀ,
    /// then A and Bᵀ of the next adapted layer, and so on.
    pub first: usize,
    /// Bases in the block.
    pub bases: usize,
}

/// Where every parameter of a [`WeightField`] lives, and which are frozen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldLayout {
    /// The architecture.
    pub spec: FieldSpec,
    /// The backbone's sizes (input, hidden…, output).
    pub sizes: Vec<usize>,
    /// Backbone layers with a bank, input side first.
    pub adapted: Vec<usize>,
    /// Index of the encoder's first layer in the parameters (the second follows).
    pub encoder: usize,
    /// The field components, base field first.
    pub components: Vec<Component>,
    /// The bank's blocks, oldest first; basis indices run through them in order.
    pub blocks: Vec<Block>,
    /// Per basis: the committed region whose commit froze it, if any. A basis is silenced (its
    /// gate forced to 0) inside every region committed while it was not frozen, so that
    /// training it later cannot change those regions.
    pub basis_locked_by: Vec<Option<usize>>,
    /// Per parameter layer: frozen (encoder and field components; bank layers freeze per
    /// basis through `basis_locked_by`).
    pub frozen: Vec<bool>,
}

/// A weight field: encoder, field components and bank, with their layout.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightField {
    /// Every parameter, addressed by `layout`.
    pub params: Layers,
    /// What each parameter layer is.
    pub layout: FieldLayout,
}

impl WeightField {
    /// A field for a backbone of `sizes` with one base component and one block of `spec.bases`
    /// bases. The encoder and field layers are initialised like the MLP (Kaiming-uniform with
    /// the tanh gain, linear for output layers); each basis's A is drawn from U(−1/√inputs,
    /// 1/√inputs) and its B is 0, as in LoRA, so the field starts as the plain backbone.
    pub fn new(sizes: &[usize], spec: FieldSpec, rng: &mut Rng) -> Result<Self, String> {
        if sizes.len() < 2 {
            return Err("the backbone needs an input and an output layer".into());
        }
        for (name, v) in [
            ("bases", spec.bases),
            ("rank", spec.rank),
            ("coordinate_dim", spec.coordinate_dim),
            ("top_k", spec.top_k),
            ("encoder_hidden", spec.encoder_hidden),
            ("field_hidden", spec.field_hidden),
        ] {
            if v == 0 {
                return Err(format!("`{name}` must be at least 1"));
            }
        }
        if spec.top_k > spec.bases {
            return Err(format!("`top_k` ({}) cannot exceed `bases` ({})", spec.top_k, spec.bases));
        }
        let hidden = sizes.len() - 2;
        if hidden == 0 {
            return Err(
                "a weight field reads the backbone's hidden features; the network needs a hidden layer"
                    .into(),
            );
        }
        let features: usize = sizes[1..=hidden].iter().sum();
        let layers = sizes.len() - 1;
        let adapted: Vec<usize> = (0..layers).filter(|&l| l < hidden || spec.adapt_output).collect();
        let mut field = WeightField {
            params: Layers { layers: Vec::new() },
            layout: FieldLayout {
                spec: spec.clone(),
                sizes: sizes.to_vec(),
                adapted,
                encoder: 0,
                components: Vec::new(),
                blocks: Vec::new(),
                basis_locked_by: Vec::new(),
                frozen: Vec::new(),
            },
        };
        field.push(random(features, spec.encoder_hidden, Some(Activation::Tanh), rng));
        field.push(random(spec.encoder_hidden, spec.coordinate_dim, None, rng));
        field.add_block(spec.bases, rng);
        field.add_component(0, 0..0, 0.0, rng);
        Ok(field)
    }

    fn push(&mut self, layer: Linear) -> usize {
        self.params.layers.push(layer);
        self.layout.frozen.push(false);
        self.params.layers.len() - 1
    }

    /// Total number of bases (the width of the gate vector).
    pub fn bases(&self) -> usize {
        self.layout.basis_locked_by.len()
    }

    /// Appends a block of `bases` fresh bases (A random, B = 0: they change nothing until
    /// trained). Existing components do not produce logits for them; only components added
    /// afterwards do.
    pub fn add_block(&mut self, bases: usize, rng: &mut Rng) {
        let r = self.layout.spec.rank;
        let first = self.params.layers.len();
        for l in self.layout.adapted.clone() {
            let (inputs, outputs) = (self.layout.sizes[l], self.layout.sizes[l + 1]);
            let mut a = Linear::zeros(inputs, bases * r);
            let bound = 1.0 / (inputs as f32).sqrt();
            a.weight.iter_mut().for_each(|w| *w = rng.gen_range(-bound..=bound));
            self.push(a);
            self.push(Linear::zeros(outputs, bases * r));
        }
        self.layout.blocks.push(Block { first, bases });
        self.layout.basis_locked_by.extend(std::iter::repeat_n(None, bases));
    }

    /// Appends a field component producing logits for every current basis, silent inside the
    /// first `regions_before` committed regions. The base component (the first) has a random
    /// output layer. An extension's output weights start at 0 and its output bias at
    /// `favour` for the bases in `favoured` (0 elsewhere), so that where it is active the
    /// favoured (fresh) bases can start inside the top-k: a basis outside the top-k gets no
    /// gradient and would never be tried.
    pub fn add_component(
        &mut self,
        regions_before: usize,
        favoured: std::ops::Range<usize>,
        favour: f32,
        rng: &mut Rng,
    ) {
        let spec = self.layout.spec.clone();
        let bases = self.bases();
        let first = self.push(random(spec.coordinate_dim, spec.field_hidden, Some(Activation::Tanh), rng));
        let output = if self.layout.components.is_empty() {
            random(spec.field_hidden, bases, None, rng)
        } else {
            let mut l = Linear::zeros(spec.field_hidden, bases);
            l.bias[favoured.start.min(bases)..favoured.end.min(bases)].fill(favour);
            l
        };
        self.push(output);
        self.layout.components.push(Component { first, bases, regions_before });
    }

    /// Freezes the encoder G.
    pub fn freeze_encoder(&mut self) {
        let e = self.layout.encoder;
        self.layout.frozen[e] = true;
        self.layout.frozen[e + 1] = true;
    }

    /// Whether the encoder G is still trained.
    pub fn encoder_trainable(&self) -> bool {
        !self.layout.frozen[self.layout.encoder]
    }

    /// Freezes every field component that exists now.
    pub fn freeze_components(&mut self) {
        for c in self.layout.components.clone() {
            self.layout.frozen[c.first] = true;
            self.layout.frozen[c.first + 1] = true;
        }
    }

    /// Freezes bases `bases` on behalf of committed region `region`.
    pub fn lock_bases(&mut self, bases: &[usize], region: usize) {
        for &b in bases {
            if self.layout.basis_locked_by[b].is_none() {
                self.layout.basis_locked_by[b] = Some(region);
            }
        }
    }

    /// Whether basis `basis` is silenced inside committed region `region`: it was not frozen
    /// when that region was committed.
    pub fn silenced_in(&self, basis: usize, region: usize) -> bool {
        !matches!(self.layout.basis_locked_by[basis], Some(r) if r <= region)
    }

    /// Sets to 0 every entry of a parameter-shaped set (gradients, optimiser moments) that
    /// belongs to a frozen parameter, so an optimiser step leaves frozen parameters exactly as
    /// they are.
    pub fn zero_frozen(&self, set: &mut Layers) {
        for (i, frozen) in self.layout.frozen.iter().enumerate() {
            if *frozen {
                set.layers[i].clear();
            }
        }
        let r = self.layout.spec.rank;
        let mut basis = 0;
        for block in &self.layout.blocks {
            for j in 0..block.bases {
                if self.layout.basis_locked_by[basis + j].is_some() {
                    for k in 0..2 * self.layout.adapted.len() {
                        let layer = &mut set.layers[block.first + k];
                        for row in j * r..(j + 1) * r {
                            layer.row_mut(row).fill(0.0);
                        }
                    }
                }
            }
            basis += block.bases;
        }
    }

    /// BLAKE3 of every parameter's bytes and of the layout: identifies a committed version.
    pub fn checksum(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for buffer in self.params.buffers() {
            for v in buffer {
                hasher.update(&v.to_le_bytes());
            }
        }
        hasher.update(serde_json::to_string(&self.layout).expect("a layout serialises").as_bytes());
        hasher.finalize().to_hex().to_string()
    }

    /// Rebuilds a field from its layout and parameters (a checkpoint), checking that they fit.
    pub fn from_parts(layout: FieldLayout, params: Layers) -> Result<Self, String> {
        let field = WeightField { params, layout };
        if field.layout.frozen.len() != field.params.layers.len() {
            return Err(format!(
                "the layout describes {} parameter layers, the checkpoint holds {}",
                field.layout.frozen.len(),
                field.params.layers.len()
            ));
        }
        let blocks: usize = field.layout.blocks.iter().map(|b| b.bases).sum();
        if blocks != field.bases() {
            return Err(format!("the blocks hold {blocks} bases, the lock table {}", field.bases()));
        }
        Ok(field)
    }

    /// The shapes (inputs, outputs) of every parameter layer, for rebuilding from a checkpoint.
    pub fn shapes(layout: &FieldLayout) -> Vec<(usize, usize)> {
        let mut shapes = vec![(0, 0); layout.frozen.len()];
        let spec = &layout.spec;
        let features: usize = layout.sizes[1..layout.sizes.len() - 1].iter().sum();
        shapes[layout.encoder] = (features, spec.encoder_hidden);
        shapes[layout.encoder + 1] = (spec.encoder_hidden, spec.coordinate_dim);
        for c in &layout.components {
            shapes[c.first] = (spec.coordinate_dim, spec.field_hidden);
            shapes[c.first + 1] = (spec.field_hidden, c.bases);
        }
        for block in &layout.blocks {
            for (k, &l) in layout.adapted.iter().enumerate() {
                let rows = block.bases * spec.rank;
                shapes[block.first + 2 * k] = (layout.sizes[l], rows);
                shapes[block.first + 2 * k + 1] = (layout.sizes[l + 1], rows);
            }
        }
        shapes
    }
}

fn random(inputs: usize, outputs: usize, activation: Option<Activation>, rng: &mut Rng) -> Linear {
    let mut layer = Linear::zeros(inputs, outputs);
    let bound = init_bound(activation, inputs);
    layer.weight.iter_mut().for_each(|w| *w = rng.gen_range(-bound..=bound));
    layer
}

#[cfg(test)]
mod tests;
