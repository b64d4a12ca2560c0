//! The two-pass forward of a weight field and its gradients, with dfdx tensors on run-time
//! shapes (dfdx 0.13's `nn` layers need compile-time sizes).
//!
//! Every parameter becomes one dfdx leaf per call, so all its uses share one id and their
//! gradients add up. A value used several times (a hidden layer feeding the next layer and
//! every bank block, the gates feeding every block) is split from its tape once; each use
//! takes a fresh handle on the value, and the split tapes are merged into the loss before
//! `backward`, so no path is lost.
//!
//! The prediction path and the training path run the same operations in the same order, so
//! an example's outputs do not depend on whether they were computed while training or while
//! evaluating (given the same batch composition).

use dfdx::prelude::{
    Axes2, Axis, Backward, BroadcastTo, Cpu, Gradients, HasShape, Merge, NoneTape, OwnedTape, PermuteTo,
    PutTape, Rank0, SplitTape, SumTo, Tensor, TensorFromVec, Trace, TryConcatAlong, TryMatMul, ZerosTensor,
};

use super::WeightField;
use crate::model::fused::Workspace;
use crate::model::loss::BatchLoss;
use crate::model::mlp::{Layers, Mlp};
use crate::protocol::Activation;

type Tp = OwnedTape<f32, Cpu>;
type Mat<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
type Col<T = NoneTape> = Tensor<(usize,), f32, Cpu, T>;
type Scalar = Tensor<Rank0, f32, Cpu, Tp>;

/// The committed regions as the continual method defines them: a mask m_r ∈ [0, 1] per region
/// and example that is exactly 0 inside region r. Extension components are weighted by the
/// product of the masks of the regions committed before them, and a basis is silenced inside
/// every region committed while it was not frozen (its logit gets ln m_r, −∞ inside). A mask
/// may read the example's input and its coordinate; whatever it reads must not change after
/// the commit (the backbone and the encoder are frozen by then), or the lock is not exact.
pub trait RegionMasks {
    /// Number of committed regions.
    fn regions(&self) -> usize;
    /// Writes m_r of example i to `out[i * regions + r]`, for `n` examples with inputs `input`
    /// (`n × inputs`) and coordinates `z` (`n × d`).
    fn masks(&self, input: &[f32], z: &[f32], n: usize, out: &mut Vec<f64>);
}

/// Where the gates of a pass come from.
#[derive(Clone, Copy)]
pub enum Gates<'a> {
    /// From each example's coordinate through the field; with region masks when the
    /// structural lock is on.
    Field(Option<&'a dyn RegionMasks>),
    /// The same gate vector (one entry per basis) for every example: a composition of
    /// committed regions.
    Fixed(&'a [f32]),
}

/// The functional lock on one committed region: the field's logits at its anchors should stay
/// at their snapshot.
pub struct LockTerm<'a> {
    /// Anchor coordinates, `count × d`.
    pub anchors: &'a [f32],
    /// Snapshot logits, `count × width`.
    pub targets: &'a [f32],
    /// Anchors.
    pub count: usize,
    /// Bases when the snapshot was taken (the first `width` logits are compared).
    pub width: usize,
}

/// One committed region for the separation hinge.
pub struct SeparationRegion<'a> {
    /// Mean μ of the region's Gaussian (d).
    pub mean: &'a [f32],
    /// Wᵀ of its whitening W = L⁻¹ (Σ = L Lᵀ), `d × d` row-major, so that the Mahalanobis
    /// distance is D(z) = ‖(z − μ)·Wᵀ‖.
    pub whitening_t: &'a [f32],
    /// Radius ρ the hinge pushes coordinates beyond.
    pub radius: f32,
}

/// Pushes new coordinates out of committed regions:
/// L_sep = mean over the batch of Σ_r max(0, ρ_r² − D_r(z)²) / ρ_r².
pub struct SeparationTerm<'a> {
    /// The committed regions.
    pub regions: Vec<SeparationRegion<'a>>,
    /// λ_sep.
    pub weight: f32,
}

/// The loss terms of a training step besides the task loss.
pub struct StepTerms<'a> {
    /// The functional lock, one term per committed region:
    /// L_lock = (1/N) Σ_anchors ‖F(a) − s_a‖², N the anchors of all regions.
    pub lock: Vec<LockTerm<'a>>,
    /// λ_lock.
    pub lock_weight: f32,
    /// The separation hinge, when the encoder is trained and regions exist.
    pub separation: Option<SeparationTerm<'a>>,
    /// λ of the gate budget L_budget = mean over the batch of 1 − Σ_b g_b² (the Gini impurity
    /// of the gates: 0 when one basis carries the example, 1 − 1/k when k share it equally).
    pub budget_weight: f32,
}

/// What a training step measured (before its update).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepResult {
    /// The task loss totals.
    pub task: BatchLoss,
    /// L_lock (0 without committed regions).
    pub lock: f64,
    /// L_sep (0 without the term).
    pub separation: f64,
    /// L_budget.
    pub budget: f64,
}

/// The dfdx device and the passes of a weight field.
#[derive(Clone, Debug, Default)]
pub struct FieldEngine {
    dev: Cpu,
}

/// A parameter set as dfdx leaves, one per buffer, and which of them a pass used.
struct Leaves {
    weights: Vec<Mat>,
    biases: Vec<Col>,
    used_weight: Vec<bool>,
    used_bias: Vec<bool>,
}

impl Leaves {
    fn new(dev: &Cpu, layers: &Layers) -> Self {
        let weights: Vec<Mat> = layers
            .layers
            .iter()
            .map(|l| dev.tensor_from_vec(l.weight.clone(), (l.outputs, l.inputs)))
            .collect();
        let biases: Vec<Col> =
            layers.layers.iter().map(|l| dev.tensor_from_vec(l.bias.clone(), (l.outputs,))).collect();
        let n = weights.len();
        Leaves { weights, biases, used_weight: vec![false; n], used_bias: vec![false; n] }
    }

    fn w(&mut self, i: usize) -> Mat<Tp> {
        self.used_weight[i] = true;
        self.weights[i].leaky_trace()
    }

    fn b(&mut self, i: usize) -> Col<Tp> {
        self.used_bias[i] = true;
        self.biases[i].leaky_trace()
    }

    /// Copies the gradient of every leaf for which `wanted(i)` holds into `out` (0 for unused
    /// leaves and for the others).
    fn collect(&self, grads: &mut Gradients<f32, Cpu>, out: &mut Layers, wanted: impl Fn(usize) -> bool) {
        for (i, layer) in out.layers.iter_mut().enumerate() {
            if wanted(i) && self.used_weight[i] {
                let g = grads.get_or_alloc_mut(&self.weights[i]).expect("CPU allocation");
                layer.weight.copy_from_slice(g);
            } else {
                layer.weight.fill(0.0);
            }
            if wanted(i) && self.used_bias[i] {
                let g = grads.get_or_alloc_mut(&self.biases[i]).expect("CPU allocation");
                layer.bias.copy_from_slice(g);
            } else {
                layer.bias.fill(0.0);
            }
        }
    }
}

/// Tapes split off values that are used more than once; merged into the loss at the end.
#[derive(Default)]
struct Tapes(Vec<Tp>);

impl Tapes {
    fn share(&mut self, t: Mat<Tp>) -> Mat {
        let (value, tape) = t.split_tape();
        self.0.push(tape);
        value
    }

    fn close(self, loss: Scalar) -> Scalar {
        let (value, mut tape) = loss.split_tape();
        for t in self.0 {
            tape = tape.merge(t);
        }
        value.put_tape(tape)
    }
}

/// A traced handle on a shared value (same id, empty tape).
fn handle(v: &Mat) -> Mat<Tp> {
    v.clone().leaky_traced()
}

fn host(t: &Mat<Tp>) -> Vec<f32> {
    t.retaped::<NoneTape>().as_vec()
}

/// x · Wᵀ + b.
fn affine(x: Mat<Tp>, w: Mat<Tp>, b: Col<Tp>) -> Mat<Tp> {
    let z = x.matmul(w.permute::<(usize, usize), Axes2<1, 0>>());
    let shape = *z.shape();
    z + b.broadcast_like::<_, Axis<0>>(&shape)
}

fn activate(z: Mat<Tp>, activation: Activation) -> Mat<Tp> {
    use dfdx::prelude::TryPReLU;
    match activation {
        Activation::Relu => z.relu(),
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => z.sigmoid(),
        Activation::LeakyRelu => z.prelu(Activation::LEAKY_SLOPE),
    }
}

/// Per-call state: the leaves of the backbone and of the field.
struct Graph<'a> {
    dev: &'a Cpu,
    net: &'a Mlp,
    field: &'a WeightField,
    backbone: Leaves,
    params: Leaves,
}

/// Component weights and basis offsets derived from the region masks for `n` coordinates.
struct Routing {
    /// `n × components`: the factor of each component's logits (1 where unmasked).
    weights: Option<Vec<f32>>,
    /// `n × bases`: 0, ln m, or −∞.
    offsets: Vec<f32>,
}

impl Routing {
    fn new(field: &WeightField, masks: Option<&dyn RegionMasks>, input: &[f32], z: &[f32], n: usize) -> Self {
        let bases = field.bases();
        let mut offsets = vec![0.0f32; n * bases];
        let Some(masks) = masks else { return Routing { weights: None, offsets } };
        let regions = masks.regions();
        if regions == 0 {
            return Routing { weights: None, offsets };
        }
        let mut m = Vec::with_capacity(n * regions);
        masks.masks(input, z, n, &mut m);
        let components = &field.layout.components;
        let mut weights = vec![1.0f32; n * components.len()];
        for i in 0..n {
            let row = &m[i * regions..(i + 1) * regions];
            for (c, comp) in components.iter().enumerate() {
                let upto = comp.regions_before.min(regions);
                weights[i * components.len() + c] = row[..upto].iter().product::<f64>() as f32;
            }
            for b in 0..bases {
                let mut offset = 0.0f64;
                for (r, &mr) in row.iter().enumerate() {
                    if field.silenced_in(b, r) {
                        offset += mr.ln();
                    }
                }
                offsets[i * bases + b] = offset as f32;
            }
        }
        Routing { weights: Some(weights), offsets }
    }
}

/// The additive mask of the top-k softmax: the offset for the `k` largest finite
/// `logit + offset` of each row (ties to the lower index), −∞ elsewhere. A row whose every
/// basis is silenced cannot occur when regions lock the bases they use (each region's own
/// bases stay finite inside it); should one occur, it falls back to the raw logits rather than
/// produce NaN gates.
pub(super) fn top_k_mask(logits: &[f32], offsets: &[f32], n: usize, bases: usize, k: usize) -> Vec<f32> {
    let mut mask = vec![f32::NEG_INFINITY; n * bases];
    let mut order: Vec<usize> = Vec::with_capacity(bases);
    for i in 0..n {
        let row = i * bases..(i + 1) * bases;
        let score = |b: usize| logits[row.start + b] + offsets[row.start + b];
        order.clear();
        order.extend((0..bases).filter(|&b| score(b).is_finite()));
        if order.is_empty() {
            order.extend(0..bases);
            order.sort_by(|&a, &b| logits[row.start + b].total_cmp(&logits[row.start + a]).then(a.cmp(&b)));
            for &b in order.iter().take(k) {
                mask[row.start + b] = 0.0;
            }
            continue;
        }
        order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
        for &b in order.iter().take(k) {
            mask[row.start + b] = offsets[row.start + b];
        }
    }
    mask
}

impl<'a> Graph<'a> {
    fn new(dev: &'a Cpu, net: &'a Mlp, field: &'a WeightField) -> Self {
        Graph {
            dev,
            net,
            field,
            backbone: Leaves::new(dev, &net.params),
            params: Leaves::new(dev, &field.params),
        }
    }

    fn constant(&self, data: Vec<f32>, rows: usize, cols: usize) -> Mat {
        self.dev.tensor_from_vec(data, (rows, cols))
    }

    /// Columns `start..start + width` of `t`, each repeated `repeat` times: `t · S` with the 0/1
    /// matrix S[start + j, j·repeat + q] = 1. Exact (one non-zero term per output), and unlike
    /// dfdx 0.13's `slice`, whose backward overwrites the input's gradient instead of adding to
    /// it, it keeps the gradients of a value's other uses.
    fn columns(&self, t: Mat<Tp>, start: usize, width: usize, repeat: usize) -> Mat<Tp> {
        let total = t.shape().1;
        let cols = width * repeat;
        let mut select = vec![0.0f32; total * cols];
        for j in 0..width {
            let row = (start + j) * cols;
            select[row + j * repeat..row + (j + 1) * repeat].fill(1.0);
        }
        t.matmul(self.constant(select, total, cols))
    }

    /// First pass (backbone alone) and encoder: the coordinates of the batch `x`. The backbone
    /// is recorded on `backbone_tapes`, the encoder on `encoder_tapes` (a throw-away set
    /// detaches what does not need gradients).
    fn coordinate(&mut self, x: &Mat, backbone_tapes: &mut Tapes, encoder_tapes: &mut Tapes) -> Mat {
        let hidden = self.net.hidden_layers();
        let mut h = x.clone();
        let mut features: Option<Mat<Tp>> = None;
        for l in 0..hidden {
            let pre = affine(handle(&h), self.backbone.w(l), self.backbone.b(l));
            h = backbone_tapes.share(activate(pre, self.net.activation));
            features = Some(match features {
                None => handle(&h),
                Some(f) => (f, handle(&h)).concat_along(Axis::<1>),
            });
        }
        let features = backbone_tapes.share(features.expect("a weight field needs a hidden layer"));
        let e = self.field.layout.encoder;
        let hidden_g = affine(handle(&features), self.params.w(e), self.params.b(e)).tanh();
        encoder_tapes.share(affine(hidden_g, self.params.w(e + 1), self.params.b(e + 1)))
    }

    /// Σ_c w_c(z) · F_c(z), each component's logits padded with zeros to all bases.
    fn logits(&mut self, z: &Mat, weights: Option<&[f32]>) -> Mat<Tp> {
        let n = z.shape().0;
        let bases = self.field.bases();
        let count = self.field.layout.components.len();
        let mut total: Option<Mat<Tp>> = None;
        for (c, comp) in self.field.layout.components.clone().iter().enumerate() {
            let h = affine(handle(z), self.params.w(comp.first), self.params.b(comp.first)).tanh();
            let mut y = affine(h, self.params.w(comp.first + 1), self.params.b(comp.first + 1));
            if comp.bases < bases {
                let pad: Mat = self.dev.zeros_like(&(n, bases - comp.bases));
                y = (y, pad).concat_along(Axis::<1>);
            }
            if let (Some(w), true) = (weights, comp.regions_before > 0) {
                let column: Vec<f32> = (0..n).map(|i| w[i * count + c]).collect();
                let column: Col = self.dev.tensor_from_vec(column, (n,));
                let shape = *y.shape();
                y = y * column.broadcast_like::<_, Axis<1>>(&shape);
            }
            total = Some(match total {
                None => y,
                Some(t) => t + y,
            });
        }
        total.expect("a field has a base component")
    }

    /// Gates of examples with inputs `input` at coordinates `z`: the field's logits, the
    /// routing's offsets, top-k softmax.
    fn gates(
        &mut self,
        input: &[f32],
        z: &Mat,
        masks: Option<&dyn RegionMasks>,
        tapes: &mut Tapes,
    ) -> (Mat, Mat<Tp>) {
        let n = z.shape().0;
        let bases = self.field.bases();
        let routing = Routing::new(self.field, masks, input, &z.as_vec(), n);
        let logits = self.logits(z, routing.weights.as_deref());
        let mask = top_k_mask(&host(&logits), &routing.offsets, n, bases, self.field.layout.spec.top_k);
        let gates = (logits + self.constant(mask, n, bases)).softmax::<Axis<1>>();
        let (value, tape) = gates.split_tape();
        tapes.0.push(tape);
        let traced = handle(&value);
        (value, traced)
    }

    /// Second pass: every layer with W0 plus its bank's gated bases. Fills `values` with every
    /// layer's values (post-activation for hidden layers) and returns the outputs.
    fn second_pass(&mut self, x: &Mat, gates: &Mat, tapes: &mut Tapes, values: &mut [Vec<f32>]) -> Mat<Tp> {
        let layout = &self.field.layout;
        let r = layout.spec.rank;
        let layers = self.net.layers().len();
        let mut h = x.clone();
        let mut out: Option<Mat<Tp>> = None;
        for (l, value) in values.iter_mut().enumerate().take(layers) {
            let mut pre = affine(handle(&h), self.backbone.w(l), self.backbone.b(l));
            if let Some(k) = layout.adapted.iter().position(|&a| a == l) {
                let mut start = 0;
                for block in layout.blocks.clone() {
                    let end = start + block.bases;
                    let a = self.params.w(block.first + 2 * k);
                    let bt = self.params.w(block.first + 2 * k + 1);
                    let u = handle(&h).matmul(a.permute::<(usize, usize), Axes2<1, 0>>());
                    let g = self.columns(handle(gates), start, block.bases, r);
                    pre = pre + (u * g).matmul(bt);
                    start = end;
                }
            }
            let y = if l + 1 < layers { activate(pre, self.net.activation) } else { pre };
            value.copy_from_slice(&host(&y));
            if l + 1 < layers {
                h = tapes.share(y);
            } else {
                out = Some(y);
            }
        }
        out.expect("a network has an output layer")
    }
}

impl FieldEngine {
    /// A CPU engine.
    pub fn new() -> Self {
        FieldEngine { dev: Cpu::default() }
    }

    /// Runs the field on `ws.input`: fills `ws.values` with the second pass's values (hidden
    /// layers post-activation, then the outputs), as the MLP engines do, so evaluation and
    /// plasticity probes read them the same way.
    pub fn predict(&self, net: &Mlp, field: &WeightField, gates: Gates<'_>, ws: &mut Workspace) {
        let n = ws.batch();
        let mut graph = Graph::new(&self.dev, net, field);
        let x = graph.constant(ws.input.clone(), n, net.layers()[0].inputs);
        let mut scratch = Tapes::default();
        let g = match gates {
            Gates::Field(masks) => {
                let mut encoder = Tapes::default();
                let z = graph.coordinate(&x, &mut scratch, &mut encoder);
                graph.gates(&ws.input, &z, masks, &mut scratch).0
            }
            Gates::Fixed(g) => {
                let bases = field.bases();
                let row: Vec<f32> = (0..bases).map(|b| g.get(b).copied().unwrap_or(0.0)).collect();
                graph.constant(row.repeat(n), n, bases)
            }
        };
        graph.second_pass(&x, &g, &mut scratch, &mut ws.values);
    }

    /// The capability coordinates of `n` examples (`input` is `n × inputs`), `n × d`.
    pub fn coordinates(&self, net: &Mlp, field: &WeightField, input: &[f32], n: usize) -> Vec<f32> {
        let mut graph = Graph::new(&self.dev, net, field);
        let x = graph.constant(input.to_vec(), n, net.layers()[0].inputs);
        let (mut a, mut b) = (Tapes::default(), Tapes::default());
        graph.coordinate(&x, &mut a, &mut b).as_vec()
    }

    /// The field's logits at `n` coordinates `z` (`n × d`) that lie outside every committed
    /// region (every component at full weight, before offsets and top-k), `n × bases`: what a
    /// commit snapshots at its anchors. Coordinates alone carry no input, so region masks do
    /// not apply.
    pub fn field_logits(&self, net: &Mlp, field: &WeightField, z: &[f32], n: usize) -> Vec<f32> {
        let mut graph = Graph::new(&self.dev, net, field);
        let zt = graph.constant(z.to_vec(), n, field.layout.spec.coordinate_dim);
        host(&graph.logits(&zt, None))
    }

    /// The gates at `n` coordinates `z` outside every committed region (see
    /// [`FieldEngine::field_logits`]), `n × bases`.
    pub fn gates(&self, net: &Mlp, field: &WeightField, z: &[f32], n: usize) -> Vec<f32> {
        let mut graph = Graph::new(&self.dev, net, field);
        let zt = graph.constant(z.to_vec(), n, field.layout.spec.coordinate_dim);
        graph.gates(&[], &zt, None, &mut Tapes::default()).0.as_vec()
    }

    /// The gates of `n` examples `input` (`n × inputs`), with the region masks, `n × bases`:
    /// exactly those their prediction uses.
    pub fn gates_of_inputs(
        &self,
        net: &Mlp,
        field: &WeightField,
        masks: Option<&dyn RegionMasks>,
        input: &[f32],
        n: usize,
    ) -> Vec<f32> {
        let mut graph = Graph::new(&self.dev, net, field);
        let x = graph.constant(input.to_vec(), n, net.layers()[0].inputs);
        let (mut a, mut b) = (Tapes::default(), Tapes::default());
        let z = graph.coordinate(&x, &mut a, &mut b);
        graph.gates(input, &z, masks, &mut a).0.as_vec()
    }

    /// One training step's passes on `n` examples: the forward pass, the task loss through
    /// `output_gradient` (given the outputs, `n × outputs`, it writes d(task loss)/d(outputs)
    /// and returns the loss totals), the other terms, and the backward pass. Gradients of the
    /// field's unfrozen parameters go to `field_grads`; the backbone's go to `backbone_grads`
    /// when `train_backbone` (otherwise the backbone is a constant and `backbone_grads` is
    /// left alone). `values` receives the layers' values as in [`FieldEngine::predict`].
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &self,
        net: &Mlp,
        field: &WeightField,
        train_backbone: bool,
        masks: Option<&dyn RegionMasks>,
        input: &[f32],
        values: &mut [Vec<f32>],
        output_gradient: &mut dyn FnMut(&[f32], &mut [f32]) -> BatchLoss,
        terms: &StepTerms<'_>,
        field_grads: &mut Layers,
        backbone_grads: &mut Layers,
    ) -> StepResult {
        let inputs = net.layers()[0].inputs;
        let n = input.len() / inputs;
        let mut graph = Graph::new(&self.dev, net, field);
        let x = graph.constant(input.to_vec(), n, inputs);
        let mut tapes = Tapes::default();
        let trace_encoder = train_backbone || field.encoder_trainable();
        let z = {
            let mut scratch_backbone = Tapes::default();
            let mut scratch_encoder = Tapes::default();
            let backbone_tapes = if train_backbone { &mut tapes } else { &mut scratch_backbone };
            let z = graph.coordinate(&x, backbone_tapes, &mut scratch_encoder);
            if trace_encoder {
                tapes.0.append(&mut scratch_encoder.0);
            }
            z
        };
        let (gates, g) = graph.gates(input, &z, masks, &mut tapes);
        let outputs = graph.second_pass(&x, &gates, &mut tapes, values);
        let width = net.layers().last().expect("output layer").outputs;
        let mut grad = vec![0.0f32; n * width];
        let task = output_gradient(values.last().expect("output layer"), &mut grad);
        let mut loss = (outputs * graph.constant(grad, n, width)).sum::<Rank0, _>();

        let mut result = StepResult { task, ..StepResult::default() };
        let anchors: usize = terms.lock.iter().map(|t| t.count).sum();
        if anchors > 0 {
            let d = field.layout.spec.coordinate_dim;
            let mut sum: Option<Scalar> = None;
            for term in &terms.lock {
                let a = graph.constant(term.anchors.to_vec(), term.count, d);
                let mut logits = graph.logits(&a, None);
                if term.width < field.bases() {
                    logits = graph.columns(logits, 0, term.width, 1);
                }
                let target = graph.constant(term.targets.to_vec(), term.count, term.width);
                let s = (logits - target).square().sum::<Rank0, _>();
                sum = Some(match sum {
                    None => s,
                    Some(t) => t + s,
                });
            }
            let lock = sum.expect("at least one lock term") * (1.0 / anchors as f32);
            result.lock = lock.retaped::<NoneTape>().as_vec()[0] as f64;
            loss = loss + lock * terms.lock_weight;
        }
        if let Some(sep) = terms.separation.as_ref().filter(|s| !s.regions.is_empty()) {
            let d = field.layout.spec.coordinate_dim;
            let mut sum: Option<Scalar> = None;
            for region in &sep.regions {
                let mean: Col = self.dev.tensor_from_vec(region.mean.to_vec(), (d,));
                let zt = handle(&z);
                let shape = *zt.shape();
                let centred = zt - mean.broadcast_like::<_, Axis<0>>(&shape);
                let y = centred.matmul(graph.constant(region.whitening_t.to_vec(), d, d));
                let d2 = y.square().sum::<(usize,), Axis<1>>();
                let r2 = region.radius * region.radius;
                let s = (d2.negate() + r2).relu().sum::<Rank0, _>() * (1.0 / (r2 * n as f32));
                sum = Some(match sum {
                    None => s,
                    Some(t) => t + s,
                });
            }
            let sep_loss = sum.expect("at least one region");
            result.separation = sep_loss.retaped::<NoneTape>().as_vec()[0] as f64;
            loss = loss + sep_loss * sep.weight;
        }
        let square_sum = g.square().sum::<Rank0, _>();
        result.budget = 1.0 - square_sum.retaped::<NoneTape>().as_vec()[0] as f64 / n as f64;
        loss = loss + square_sum * (-terms.budget_weight / n as f32);

        let mut grads = tapes.close(loss).backward();
        let layout = &field.layout;
        graph.params.collect(&mut grads, field_grads, |i| !layout.frozen[i]);
        field.zero_frozen(field_grads);
        if train_backbone {
            graph.backbone.collect(&mut grads, backbone_grads, |_| true);
        }
        result
    }
}
