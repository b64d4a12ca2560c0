//! CLNP's bookkeeping of the network: which hidden units earlier tasks use (the set U) and
//! which are free (F), and from that which rows of every weight matrix are frozen.
//!
//! # Why freezing whole rows is enough
//!
//! Row i of layer l's weight matrix holds unit i's incoming weights (and `bias[i]` its bias).
//! After a task, every hidden unit is either used (in U) or free (F), and every free unit has
//! been pruned — its incoming row, bias and outgoing column zeroed. Freezing the rows (and
//! biases) of the used units and of the finished tasks' head outputs therefore fixes
//!
//! * U→U weights and the biases of U: part of the frozen rows;
//! * F→U weights (the paper's interference weights): the F columns of frozen rows, which are
//!   zero when they freeze and stay zero, so nothing a new task learns reaches an old unit;
//! * F→old head and U→old head: the frozen head rows;
//! * input→U weights of the first hidden layer: U rows too.
//!
//! What stays trainable is exactly the rows of free units — their U→F and F→F weights and
//! biases — and the current task's head, which may read every unit of the last hidden layer.
//! An old task's output is a function of frozen rows only, so it cannot change.

use std::ops::Range;

use super::pruning::{Activity, Candidate, Choice};
use crate::method::{MethodError, MethodState};
use crate::model::{Layers, Mlp, Workspace};
use crate::protocol::payload::{ClnpCapacity, ClnpLayer, MeasuredOn};

/// Correct predictions on the measurement split before pruning and after retraining (when
/// the method retrains).
#[derive(Clone, Copy, Debug)]
pub(super) struct Correct {
    pub unpruned: u64,
    pub retrained: Option<u64>,
}

/// The units of the hidden layers, each owned by the task that first kept it active, or free.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Partition {
    /// `owner[l][i]`: 0 when hidden unit i of layer l is free, k + 1 when task k (its index
    /// in the stream) was the first to keep it active. A unit belongs to U iff its owner ≠ 0,
    /// and task k's newly active units are those with owner k + 1.
    pub owner: Vec<Vec<u32>>,
    /// Output rows of finished tasks' heads (frozen).
    pub frozen_outputs: Vec<bool>,
}

impl Partition {
    /// Writes the owners and frozen head rows into a checkpoint's method state.
    pub fn save(&self, state: &mut MethodState) {
        for (l, owner) in self.owner.iter().enumerate() {
            state.put_u32(format!("owner.{l}"), owner.clone());
        }
        state.put_u32("frozen_outputs", self.frozen_outputs.iter().map(|&f| u32::from(f)).collect());
    }

    /// The partition [`Partition::save`] wrote for a network of `sizes` (empty: none yet).
    pub fn load(sizes: &[usize], state: &MethodState) -> Result<Partition, MethodError> {
        if sizes.is_empty() {
            return Ok(Partition::default());
        }
        if sizes.len() < 2 {
            return Err(MethodError::State(format!("clnp: network sizes {sizes:?} are too few")));
        }
        let mut partition = Partition::new(sizes);
        for (l, owner) in partition.owner.iter_mut().enumerate() {
            let name = format!("owner.{l}");
            let saved = state.u32(&name)?;
            if saved.len() != owner.len() {
                return Err(MethodError::State(format!(
                    "tensor `{name}` has {} units, the layer has {}",
                    saved.len(),
                    owner.len()
                )));
            }
            owner.copy_from_slice(saved);
        }
        let saved = state.u32("frozen_outputs")?;
        if saved.len() != partition.frozen_outputs.len() {
            return Err(MethodError::State(format!(
                "tensor `frozen_outputs` has {} rows, the output layer has {}",
                saved.len(),
                partition.frozen_outputs.len()
            )));
        }
        partition.frozen_outputs = saved.iter().map(|&f| f != 0).collect();
        Ok(partition)
    }

    /// The units pruning may remove after a task: every free unit, with its activity
    /// (`activity[layer][unit]`).
    pub fn candidates(&self, activity: &[Vec<f64>]) -> Vec<Candidate> {
        (0..self.hidden_layers())
            .flat_map(|layer| {
                let activity = &activity[layer];
                self.free_units(layer).map(move |unit| Candidate { layer, unit, activity: activity[unit] })
            })
            .collect()
    }

    /// Adds the task at `task` (its index in the stream) to U: the candidates pruning kept
    /// become its units, its head's rows freeze. Returns the partition as it was and the units
    /// each hidden layer gained.
    pub fn commit(
        &mut self,
        task: usize,
        candidates: &[Candidate],
        removed: &[Vec<usize>],
        head: &Range<usize>,
    ) -> Result<(Partition, Vec<usize>), MethodError> {
        let before = self.clone();
        let owner =
            u32::try_from(task + 1).map_err(|_| MethodError::Failed("clnp: too many tasks".into()))?;
        let mut new = vec![0usize; self.hidden_layers()];
        for c in candidates {
            if removed[c.layer].binary_search(&c.unit).is_err() {
                self.owner[c.layer][c.unit] = owner;
                new[c.layer] += 1;
            }
        }
        for row in head.clone() {
            self.frozen_outputs[row] = true;
        }
        Ok((before, new))
    }

    /// The `clnp.capacity` event of the task [`Partition::commit`] just added: its layers'
    /// units (used, free, new, pruned, reused — an earlier task's unit is reused when the
    /// task's head reaches it through non-zero weights and it is more active than θ_l), with
    /// the accuracies of the measurement split (`n` examples).
    #[allow(clippy::too_many_arguments)]
    pub fn capacity(
        &self,
        before: &Partition,
        new: &[usize],
        choice: &Choice,
        reached: &[Vec<bool>],
        activity: &[Vec<f64>],
        measure: Activity,
        n: usize,
        correct: Correct,
        measured_on: MeasuredOn,
    ) -> ClnpCapacity {
        let (used, free) = (self.used_counts(), self.free_counts());
        let layers = (0..self.hidden_layers())
            .map(|l| {
                let theta = choice.thresholds[l].unwrap_or(0.0);
                let units = self.owner[l].len();
                let reused = (0..units)
                    .filter(|&i| before.is_used(l, i) && reached[l][i] && activity[l][i] > theta)
                    .count();
                ClnpLayer {
                    free: free[l],
                    new: new[l],
                    pruned: choice.removed[l].len(),
                    reused,
                    threshold: choice.thresholds[l],
                    units,
                    used: used[l],
                }
            })
            .collect();
        let accuracy = |correct: u64| correct as f64 / n.max(1) as f64;
        ClnpCapacity {
            accuracy_pruned: accuracy(choice.correct),
            accuracy_retrained: correct.retrained.map(accuracy),
            accuracy_unpruned: accuracy(correct.unpruned),
            activity: measure.payload(),
            evaluations: choice.evaluations,
            examples: n,
            layers,
            measured_on,
            threshold: choice.threshold(),
        }
    }

    /// Every hidden unit free, no head frozen, for a network of sizes `sizes`.
    pub fn new(sizes: &[usize]) -> Self {
        let hidden = sizes.len().saturating_sub(2);
        Partition {
            owner: (0..hidden).map(|l| vec![0; sizes[l + 1]]).collect(),
            frozen_outputs: vec![false; sizes.last().copied().unwrap_or(0)],
        }
    }

    /// Number of hidden layers.
    pub fn hidden_layers(&self) -> usize {
        self.owner.len()
    }

    /// Whether hidden unit `unit` of layer `layer` belongs to U.
    pub fn is_used(&self, layer: usize, unit: usize) -> bool {
        self.owner[layer][unit] != 0
    }

    /// The free units of hidden layer `layer`, in order.
    pub fn free_units(&self, layer: usize) -> impl Iterator<Item = usize> + '_ {
        self.owner[layer].iter().enumerate().filter(|(_, &o)| o == 0).map(|(i, _)| i)
    }

    /// Number of free units of every hidden layer.
    pub fn free_counts(&self) -> Vec<usize> {
        self.owner.iter().map(|o| o.iter().filter(|&&v| v == 0).count()).collect()
    }

    /// Number of used units of every hidden layer.
    pub fn used_counts(&self) -> Vec<usize> {
        self.owner.iter().map(|o| o.iter().filter(|&&v| v != 0).count()).collect()
    }

    /// Whether row `row` of parameter layer `layer` (a hidden unit's incoming weights and
    /// bias, or one output of the last layer) is frozen.
    pub fn is_frozen(&self, layer: usize, row: usize) -> bool {
        if layer < self.owner.len() {
            self.owner[layer][row] != 0
        } else {
            self.frozen_outputs[row]
        }
    }

    /// Whether any row is frozen (false before the first task finishes), so the per-step hooks
    /// can skip their work.
    pub fn any_frozen(&self) -> bool {
        self.frozen_outputs.iter().any(|&f| f) || self.owner.iter().flatten().any(|&o| o != 0)
    }

    /// Zeroes the gradient of every row the current task may not train — frozen rows, and in
    /// the output layer every row outside `head` — and adds the L1 penalty's gradient α·sign(w)
    /// (sign 0 = 0) to the weights of the rows it may train. Biases carry no penalty.
    pub fn shape_gradients(&self, net: &Mlp, grads: &mut Layers, head: &Range<usize>, alpha: f32) {
        let last = net.params.layers.len() - 1;
        for (l, (g, w)) in grads.layers.iter_mut().zip(&net.params.layers).enumerate() {
            for row in 0..g.outputs {
                let trainable = !self.is_frozen(l, row) && (l < last || head.contains(&row));
                if !trainable {
                    g.row_mut(row).fill(0.0);
                    g.bias[row] = 0.0;
                } else if alpha != 0.0 {
                    for (g, &w) in g.row_mut(row).iter_mut().zip(w.row(row)) {
                        if w > 0.0 {
                            *g += alpha;
                        } else if w < 0.0 {
                            *g -= alpha;
                        }
                    }
                }
            }
        }
    }

    /// Adds the gradient of the activation penalty α·(1/B)·Σ_x Σ_i h_i(x) over the free units
    /// of every hidden layer, from the batch's values in `ws`: for ReLU, ∂h_i/∂z_i = 1[h_i > 0],
    /// so unit i's incoming row gains α/B·Σ_x 1[h_i(x) > 0]·a(x) (a: the layer's input) and
    /// its bias α/B·Σ_x 1[h_i(x) > 0]. Only this local term is added — not what the penalty of
    /// a layer would send further down through the units feeding it —, which pushes each free
    /// unit towards silence by its own weights, the part pruning by activity looks at.
    pub fn add_activation_penalty(&self, grads: &mut Layers, ws: &Workspace, alpha: f32) {
        let batch = ws.batch();
        if alpha == 0.0 || batch == 0 {
            return;
        }
        let scale = alpha / batch as f32;
        for l in 0..self.hidden_layers() {
            let g = &mut grads.layers[l];
            let (inputs, units) = (g.inputs, g.outputs);
            let input: &[f32] = if l == 0 { &ws.input } else { ws.hidden(l - 1) };
            let values = ws.hidden(l);
            for x in 0..batch {
                let a = &input[x * inputs..(x + 1) * inputs];
                for (i, &h) in values[x * units..(x + 1) * units].iter().enumerate() {
                    if h > 0.0 && self.owner[l][i] == 0 {
                        for (g, &a) in g.row_mut(i).iter_mut().zip(a) {
                            *g += scale * a;
                        }
                        g.bias[i] += scale;
                    }
                }
            }
        }
    }

    /// Copies every frozen row (weights and bias) of `snapshot` into `net`: undoes whatever
    /// the optimiser did to them (momentum, Adam's moments).
    pub fn restore(&self, net: &mut Mlp, snapshot: &Layers) {
        for (l, (p, s)) in net.params.layers.iter_mut().zip(&snapshot.layers).enumerate() {
            for row in 0..p.outputs {
                if self.is_frozen(l, row) {
                    p.row_mut(row).copy_from_slice(s.row(row));
                    p.bias[row] = s.bias[row];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused;
    use crate::protocol::Activation;
    use crate::rng;

    /// 3-4-3-4 network: two hidden layers, two heads of two outputs.
    fn net() -> Mlp {
        Mlp::new(&[3, 4, 3, 4], Activation::Relu, &mut rng::stream(5, "partition-test", 0))
    }

    #[test]
    fn frozen_rows_lose_their_gradient_and_trainable_weights_gain_alpha_times_sign() {
        let mut net = net();
        net.params.layers[0].row_mut(1)[2] = 0.0; // sign 0: no penalty
        let mut p = Partition::new(&net.sizes());
        p.owner[0][0] = 1;
        p.owner[1][2] = 1;
        p.frozen_outputs[0] = true;
        p.frozen_outputs[1] = true;
        let mut grads = Layers::zeros_like(&net.params);
        grads.buffers_mut().for_each(|b| b.fill(0.5));
        p.shape_gradients(&net, &mut grads, &(2..4), 0.25);
        // Layer 0: unit 0 frozen, the others trainable with 0.5 ± 0.25.
        assert!(grads.layers[0].row(0).iter().all(|&g| g == 0.0));
        assert_eq!(grads.layers[0].bias[0], 0.0);
        for unit in 1..4 {
            for (k, (&g, &w)) in
                grads.layers[0].row(unit).iter().zip(net.params.layers[0].row(unit)).enumerate()
            {
                let expected = if w > 0.0 {
                    0.75
                } else if w < 0.0 {
                    0.25
                } else {
                    0.5
                };
                assert_eq!(g, expected, "unit {unit} input {k} (w = {w})");
            }
            assert_eq!(grads.layers[0].bias[unit], 0.5, "biases carry no penalty");
        }
        assert_eq!(grads.layers[0].row(1)[2], 0.5);
        // Layer 1: unit 2 frozen.
        assert!(grads.layers[1].row(2).iter().all(|&g| g == 0.0));
        assert!(grads.layers[1].row(0).iter().all(|&g| g == 0.25 || g == 0.75));
        // Output layer: head 0 (rows 0, 1) frozen, head 1 (rows 2, 3) trained.
        for row in 0..2 {
            assert!(grads.layers[2].row(row).iter().all(|&g| g == 0.0));
            assert_eq!(grads.layers[2].bias[row], 0.0);
        }
        assert!(grads.layers[2].row(3).iter().all(|&g| g == 0.25 || g == 0.75));
    }

    #[test]
    fn rows_outside_the_current_head_are_not_trained_even_when_not_frozen() {
        let net = net();
        let p = Partition::new(&net.sizes());
        let mut grads = Layers::zeros_like(&net.params);
        grads.buffers_mut().for_each(|b| b.fill(1.0));
        p.shape_gradients(&net, &mut grads, &(0..2), 0.0);
        assert!(grads.layers[2].row(1).iter().all(|&g| g == 1.0));
        assert!(grads.layers[2].row(2).iter().all(|&g| g == 0.0));
        assert_eq!(grads.layers[2].bias[3], 0.0);
        assert!(grads.layers[0].weight.iter().all(|&g| g == 1.0), "α = 0 adds nothing");
    }

    #[test]
    fn the_activation_penalty_adds_alpha_over_batch_times_the_input_where_a_free_unit_fires() {
        let net = net();
        let mut ws = Workspace::new(&net.sizes(), 2);
        ws.input.copy_from_slice(&[1.0, -2.0, 0.5, 0.25, 1.0, -1.0]);
        fused::forward(&net, &mut ws);
        let mut p = Partition::new(&net.sizes());
        p.owner[0][0] = 1; // frozen: gains nothing
        let mut grads = Layers::zeros_like(&net.params);
        p.add_activation_penalty(&mut grads, &ws, 0.5);
        for l in 0..2 {
            let (units, inputs) = (net.sizes()[l + 1], net.sizes()[l]);
            let input: Vec<f32> = if l == 0 { ws.input.clone() } else { ws.hidden(0).to_vec() };
            for i in 0..units {
                let mut row = vec![0.0f32; inputs];
                let mut bias = 0.0f32;
                for x in 0..2 {
                    if ws.hidden(l)[x * units + i] > 0.0 && p.owner[l][i] == 0 {
                        for (r, &a) in row.iter_mut().zip(&input[x * inputs..(x + 1) * inputs]) {
                            *r += 0.25 * a;
                        }
                        bias += 0.25;
                    }
                }
                assert_eq!(grads.layers[l].row(i), &row[..], "layer {l} unit {i}");
                assert_eq!(grads.layers[l].bias[i], bias);
            }
        }
        assert!(grads.layers[0].row(0).iter().all(|&g| g == 0.0), "frozen unit: no penalty");
        assert!(grads.layers[2].weight.iter().all(|&g| g == 0.0), "the output layer carries none");
        let fired = (0..2).any(|l| grads.layers[l].bias.iter().any(|&b| b > 0.0));
        assert!(fired, "the test needs a free unit that fires");
    }

    #[test]
    fn restore_copies_exactly_the_frozen_rows() {
        let snapshot = net();
        let mut moved = snapshot.clone();
        moved.params.buffers_mut().for_each(|b| b.iter_mut().for_each(|w| *w += 1.0));
        let mut p = Partition::new(&snapshot.sizes());
        p.owner[1][1] = 3;
        p.frozen_outputs[3] = true;
        p.restore(&mut moved, &snapshot.params);
        for (l, (a, b)) in moved.params.layers.iter().zip(&snapshot.params.layers).enumerate() {
            for row in 0..a.outputs {
                let frozen = (l == 1 && row == 1) || (l == 2 && row == 3);
                assert_eq!(a.row(row) == b.row(row), frozen, "layer {l} row {row}");
                assert_eq!(a.bias[row] == b.bias[row], frozen, "layer {l} bias {row}");
            }
        }
        assert!(p.any_frozen());
        assert!(!Partition::new(&snapshot.sizes()).any_frozen());
    }

    #[test]
    fn counts_follow_the_owners() {
        let mut p = Partition::new(&[3, 4, 3, 4]);
        p.owner[0] = vec![0, 2, 1, 0];
        assert_eq!(p.free_counts(), vec![2, 3]);
        assert_eq!(p.used_counts(), vec![2, 0]);
        assert_eq!(p.free_units(0).collect::<Vec<_>>(), vec![0, 3]);
        assert!(p.is_used(0, 1) && !p.is_used(0, 0));
        assert_eq!(p.hidden_layers(), 2);
    }
}
