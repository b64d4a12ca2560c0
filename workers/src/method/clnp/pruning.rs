//! Activation-based pruning with graceful forgetting: measure each candidate unit's activity,
//! find the largest activity threshold θ whose pruned network stays within the accuracy margin,
//! remove the units at or below it; and trace which units a head depends on.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::method::Compute;
use crate::model::Mlp;
use crate::protocol::payload::ClnpActivity;
use crate::stream::Split;

/// How a hidden unit's activity on the measurement data is summarised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// a_i = mean_x ReLU(h_i(x)): the unit's average output.
    #[default]
    MeanActivation,
    /// a_i = fraction of examples x with ReLU(h_i(x)) > 0: how often the unit fires.
    FiringRate,
}

impl Activity {
    /// How the `clnp.capacity` event names this measure.
    pub fn payload(self) -> ClnpActivity {
        match self {
            Activity::MeanActivation => ClnpActivity::MeanActivation,
            Activity::FiringRate => ClnpActivity::FiringRate,
        }
    }
}

/// Every hidden unit's activity on all examples of `split` (post-activation values of a
/// ReLU network, so h ≥ 0), summed in f64 and divided by the number of examples.
pub(super) fn measure_activity(
    compute: &mut Compute,
    net: &Mlp,
    split: &Split,
    kind: Activity,
) -> Vec<Vec<f64>> {
    let sizes = net.sizes();
    let mut sums: Vec<Vec<f64>> = (0..net.hidden_layers()).map(|l| vec![0.0; sizes[l + 1]]).collect();
    let indices: Vec<usize> = (0..split.len()).collect();
    compute.for_each_chunk(net, split, &indices, |ws, _| {
        for (l, sum) in sums.iter_mut().enumerate() {
            for row in ws.hidden(l).chunks_exact(sum.len()) {
                for (s, &h) in sum.iter_mut().zip(row) {
                    *s += match kind {
                        Activity::MeanActivation => h.max(0.0) as f64,
                        Activity::FiringRate => f64::from(u8::from(h > 0.0)),
                    };
                }
            }
        }
    });
    let n = split.len().max(1) as f64;
    sums.iter_mut().flatten().for_each(|s| *s /= n);
    sums
}

/// Removes hidden units from `net`: zeroes each one's incoming row, bias and outgoing column,
/// so it outputs ReLU(0) = 0 and nothing reads it. `removed[l]` lists units of hidden layer l.
pub(super) fn remove_units(net: &mut Mlp, removed: &[Vec<usize>]) {
    for (l, units) in removed.iter().enumerate() {
        for &i in units {
            let layer = &mut net.params.layers[l];
            layer.row_mut(i).fill(0.0);
            layer.bias[i] = 0.0;
            net.params.layers[l + 1].fill_column(i, 0.0);
        }
    }
}

/// A unit that may be pruned: free for the task just trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Candidate {
    /// Hidden layer.
    pub layer: usize,
    /// Unit within the layer.
    pub unit: usize,
    /// Its activity a_i.
    pub activity: f64,
}

/// The outcome of the threshold search.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Choice {
    /// θ_l per hidden layer: candidates of layer l with a_i ≤ θ_l are removed; `None` when
    /// none of the layer is. With one θ for all layers every entry that prunes holds it.
    pub thresholds: Vec<Option<f64>>,
    /// Removed units per hidden layer, ascending.
    pub removed: Vec<Vec<usize>>,
    /// Correct predictions of the pruned network on the measurement data.
    pub correct: u64,
    /// Pruned networks evaluated during the search.
    pub evaluations: usize,
}

impl Choice {
    /// The largest θ_l (the one θ when there is one); `None` when nothing was pruned.
    pub fn threshold(&self) -> Option<f64> {
        self.thresholds.iter().flatten().copied().reduce(f64::max)
    }
}

/// Where θ applies: one value for all hidden layers, or one per layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Thresholds {
    /// θ_l per hidden layer, searched from the output side down (see [`choose_thresholds`]).
    #[default]
    PerLayer,
    /// One θ for all hidden layers (the choice before per-layer thresholds existed).
    Global,
}

/// Graceful forgetting: the pruning that keeps the network within `allowed_loss` correct
/// examples of `baseline` (the unpruned network's count) and removes as much as the search can.
///
/// `Global`: the largest θ among all candidates' activities that satisfies the margin.
/// `PerLayer`: the layers are searched one at a time from the output side down, each for
/// the largest θ_l that keeps the network — with the layers above already pruned — within the
/// margin. Going down keeps every measured activity valid: removing units of a layer changes
/// the layers above it, never those below, so the activities of the layer searched next (taken
/// on the unpruned network) are still its activities; and the first layers searched may take
/// the whole margin (greedy). `correct_without(removed)` evaluates the network with `removed`
/// (per layer) taken out.
pub(super) fn choose_thresholds(
    candidates: &[Candidate],
    layers: usize,
    baseline: u64,
    allowed_loss: u64,
    mode: Thresholds,
    mut correct_without: impl FnMut(&[Vec<usize>]) -> u64,
) -> Choice {
    match mode {
        Thresholds::Global => {
            let (threshold, removed, correct, evaluations) =
                choose_threshold(candidates, layers, baseline, baseline, allowed_loss, &mut correct_without);
            let thresholds = removed.iter().map(|r| threshold.filter(|_| !r.is_empty())).collect();
            Choice { thresholds, removed, correct, evaluations }
        }
        Thresholds::PerLayer => {
            let mut choice = Choice {
                thresholds: vec![None; layers],
                removed: vec![Vec::new(); layers],
                correct: baseline,
                evaluations: 0,
            };
            for l in (0..layers).rev() {
                let own: Vec<Candidate> = candidates.iter().filter(|c| c.layer == l).copied().collect();
                let above = choice.removed.clone();
                let (threshold, removed, correct, evaluations) = choose_threshold(
                    &own,
                    layers,
                    baseline,
                    choice.correct,
                    allowed_loss,
                    |r: &[Vec<usize>]| {
                        let mut all = above.clone();
                        all[l].clone_from(&r[l]);
                        correct_without(&all)
                    },
                );
                choice.thresholds[l] = threshold;
                choice.removed[l].clone_from(&removed[l]);
                choice.correct = correct;
                choice.evaluations += evaluations;
            }
            choice
        }
    }
}

/// The largest θ among the candidates' activities such that the network without the
/// candidates of activity ≤ θ still gets at least `baseline − allowed_loss` examples right;
/// `current`: its count with none of them removed (≥ `baseline − allowed_loss`). Returns θ,
/// the removed units per layer, the count of the chosen network and the evaluations made.
///
/// Bisection over the sorted distinct activities assumes accuracy does not rise as θ grows;
/// the chosen θ always satisfies the margin, but when accuracy is not monotone a larger θ
/// that also satisfies it may exist. Units of activity exactly 0 are always removed without
/// evaluation: they output 0 on every measured example, so removing them changes no output
/// there. The search costs 1 + ⌈log₂ K⌉ evaluations for K distinct activities.
fn choose_threshold(
    candidates: &[Candidate],
    layers: usize,
    baseline: u64,
    current: u64,
    allowed_loss: u64,
    mut correct_without: impl FnMut(&[Vec<usize>]) -> u64,
) -> (Option<f64>, Vec<Vec<usize>>, u64, usize) {
    let mut values: Vec<f64> = candidates.iter().map(|c| c.activity).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let removed_at = |k: Option<usize>| -> Vec<Vec<usize>> {
        let mut removed = vec![Vec::new(); layers];
        if let Some(k) = k {
            for c in candidates.iter().filter(|c| c.activity <= values[k]) {
                removed[c.layer].push(c.unit);
            }
        }
        removed.iter_mut().for_each(|r| r.sort_unstable());
        removed
    };
    let mut evaluations = 0;
    let mut memo: Vec<Option<u64>> = vec![None; values.len()];
    if values.first() == Some(&0.0) {
        memo[0] = Some(current);
    }
    let mut correct_at = |k: usize| -> u64 {
        *memo[k].get_or_insert_with(|| {
            evaluations += 1;
            correct_without(&removed_at(Some(k)))
        })
    };
    let ok = |correct: u64| correct + allowed_loss >= baseline;

    // Invariant: `lo` satisfies the margin (None = nothing removed), `hi` does not.
    let mut lo: Option<usize> = (values.first() == Some(&0.0)).then_some(0);
    let chosen = match values.len().checked_sub(1) {
        None => None,
        Some(last) if ok(correct_at(last)) => Some(last),
        Some(last) => {
            let mut hi = last;
            loop {
                let next = lo.map_or(0, |l| l + 1);
                if next >= hi {
                    break lo;
                }
                let mid = next + (hi - next) / 2;
                if ok(correct_at(mid)) {
                    lo = Some(mid);
                } else {
                    hi = mid;
                }
            }
        }
    };
    let correct = match chosen {
        None => current,
        Some(k) => correct_at(k),
    };
    (chosen.map(|k| values[k]), removed_at(chosen), correct, evaluations)
}

/// The hidden units the outputs `head` depend on: those with a path of non-zero weights to a
/// row of `head` (a unit with all outgoing weights zero on such paths is not counted).
/// `reached[l][i]` for hidden layer l.
pub(super) fn reached_units(net: &Mlp, head: &Range<usize>) -> Vec<Vec<bool>> {
    let layers = net.layers();
    let hidden = net.hidden_layers();
    let mut reached: Vec<Vec<bool>> = (0..hidden).map(|l| vec![false; layers[l].outputs]).collect();
    if hidden == 0 {
        return reached;
    }
    let out = &layers[hidden];
    for row in head.clone() {
        for (r, &w) in reached[hidden - 1].iter_mut().zip(out.row(row)) {
            *r |= w != 0.0;
        }
    }
    for l in (0..hidden - 1).rev() {
        let (lower, upper) = reached.split_at_mut(l + 1);
        for (k, _) in upper[0].iter().enumerate().filter(|(_, &r)| r) {
            for (r, &w) in lower[l].iter_mut().zip(layers[l + 1].row(k)) {
                *r |= w != 0.0;
            }
        }
    }
    reached
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Linear;
    use crate::protocol::{Activation, Engine};
    use crate::stream::{InputTransform, SyntheticPermutedSpec};
    use crate::stream::{SyntheticPermuted, TaskStream};

    fn candidates(activities: &[(usize, usize, f64)]) -> Vec<Candidate> {
        activities.iter().map(|&(layer, unit, activity)| Candidate { layer, unit, activity }).collect()
    }

    fn global(
        c: &[Candidate],
        layers: usize,
        baseline: u64,
        allowed: u64,
        oracle: impl FnMut(&[Vec<usize>]) -> u64,
    ) -> Choice {
        choose_thresholds(c, layers, baseline, allowed, Thresholds::Global, oracle)
    }

    #[test]
    fn the_largest_threshold_within_the_margin_is_chosen() {
        // Five units of two layers; removing units of activity ≤ θ loses one correct example per
        // unit of activity ≥ 0.2 (units of lower activity cost nothing).
        let c = candidates(&[(0, 0, 0.0), (0, 1, 0.1), (0, 2, 0.2), (1, 0, 0.3), (1, 1, 0.3), (1, 2, 0.9)]);
        let all = c.clone();
        let cost = move |removed: &[Vec<usize>]| -> u64 {
            all.iter().filter(|c| c.activity >= 0.2 && removed[c.layer].contains(&c.unit)).count() as u64
        };
        let correct = |removed: &[Vec<usize>]| 100 - cost(removed);
        // m = 0: only the free units (activities 0 and 0.1) may go.
        let choice = global(&c, 2, 100, 0, correct);
        assert_eq!(choice.threshold(), Some(0.1));
        assert_eq!(choice.removed, vec![vec![0, 1], vec![]]);
        assert_eq!(choice.correct, 100);
        // Losing 3 examples allowed: θ = 0.3 removes units of 0.2 and both of 0.3 (cost 3).
        let choice = global(&c, 2, 100, 3, correct);
        assert_eq!(choice.threshold(), Some(0.3));
        assert_eq!(choice.removed, vec![vec![0, 1, 2], vec![0, 1]]);
        assert_eq!(choice.correct, 97);
        // Losing 2 allowed: θ = 0.3 would cost 3, so θ = 0.2.
        let choice = global(&c, 2, 100, 2, correct);
        assert_eq!(choice.threshold(), Some(0.2));
        assert_eq!(choice.correct, 99);
        // Everything may go when the margin covers it; one evaluation suffices.
        let choice = global(&c, 2, 100, 4, correct);
        assert_eq!(choice.threshold(), Some(0.9));
        assert_eq!(choice.removed, vec![vec![0, 1, 2], vec![0, 1, 2]]);
        assert_eq!(choice.evaluations, 1);
    }

    #[test]
    fn nothing_is_removed_when_even_the_least_active_unit_matters_and_dead_units_always_go() {
        let c = candidates(&[(0, 3, 0.5), (0, 1, 0.7)]);
        let choice = global(&c, 1, 10, 0, |removed| 10 - removed[0].len() as u64);
        assert_eq!(
            choice,
            Choice { thresholds: vec![None], removed: vec![vec![]], correct: 10, evaluations: 2 }
        );
        // A dead unit goes even if the oracle (wrongly) claimed its removal costs accuracy:
        // it is never asked, since removing a unit that is 0 on every example changes nothing.
        let c = candidates(&[(0, 3, 0.0), (0, 1, 0.7)]);
        let choice = global(&c, 1, 10, 0, |removed| 10 - removed[0].len() as u64);
        assert_eq!(choice.threshold(), Some(0.0));
        assert_eq!(choice.removed, vec![vec![3]]);
        assert_eq!((choice.correct, choice.evaluations), (10, 1));
        let none = global(&[], 2, 7, 0, |_| unreachable!("no candidates, no evaluation"));
        assert_eq!(
            none,
            Choice {
                thresholds: vec![None, None],
                removed: vec![vec![], vec![]],
                correct: 7,
                evaluations: 0
            }
        );
    }

    #[test]
    fn the_search_needs_logarithmically_many_evaluations() {
        let c: Vec<Candidate> =
            (0..1000).map(|i| Candidate { layer: 0, unit: i, activity: 1.0 + i as f64 }).collect();
        // Removing more than 600 units costs accuracy.
        let choice = global(&c, 1, 50, 0, |removed| if removed[0].len() > 600 { 49 } else { 50 });
        assert_eq!(choice.removed[0].len(), 600);
        assert_eq!(choice.threshold(), Some(600.0));
        assert!(choice.evaluations <= 11, "{} evaluations", choice.evaluations);
    }

    #[test]
    fn per_layer_thresholds_search_each_layer_from_the_output_side_within_one_shared_margin() {
        // Layer 0's activities are ten times layer 1's: one θ for both cannot prune layer 0's
        // quiet units without taking all of layer 1's. Removing a unit costs one example when its
        // activity is at least 0.5 (layer 0) or 0.05 (layer 1).
        let c = candidates(&[
            (0, 0, 0.1),
            (0, 1, 0.3),
            (0, 2, 0.6),
            (0, 3, 0.9),
            (1, 0, 0.01),
            (1, 1, 0.03),
            (1, 2, 0.06),
            (1, 3, 0.09),
        ]);
        let all = c.clone();
        let mut asked: Vec<Vec<Vec<usize>>> = Vec::new();
        let correct = |removed: &[Vec<usize>]| -> u64 {
            asked.push(removed.to_vec());
            let bar = [0.5, 0.05];
            100 - all
                .iter()
                .filter(|c| c.activity >= bar[c.layer] && removed[c.layer].contains(&c.unit))
                .count() as u64
        };
        let choice = choose_thresholds(&c, 2, 100, 0, Thresholds::PerLayer, correct);
        assert_eq!(choice.thresholds, vec![Some(0.3), Some(0.03)]);
        assert_eq!(choice.removed, vec![vec![0, 1], vec![0, 1]]);
        assert_eq!(choice.correct, 100);
        // Layer 1 was searched first, alone; every evaluation of layer 0 kept layer 1's choice.
        assert!(asked.iter().take_while(|r| r[0].is_empty()).count() >= 1);
        assert!(asked.iter().skip_while(|r| r[0].is_empty()).all(|r| r[1] == vec![0, 1]));
        // The margin is shared: with one example to lose, layer 1 (searched first) spends it.
        let all = c.clone();
        let correct = |removed: &[Vec<usize>]| -> u64 {
            let bar = [0.5, 0.05];
            100 - all
                .iter()
                .filter(|c| c.activity >= bar[c.layer] && removed[c.layer].contains(&c.unit))
                .count() as u64
        };
        let choice = choose_thresholds(&c, 2, 100, 1, Thresholds::PerLayer, correct);
        assert_eq!(choice.thresholds, vec![Some(0.3), Some(0.06)]);
        assert_eq!(choice.correct, 99);
        assert_eq!(choice.threshold(), Some(0.3));
        // One global θ on the same units: 0.03 is the largest admissible value; layer 0 keeps all.
        let all = c.clone();
        let choice = global(&c, 2, 100, 0, |removed: &[Vec<usize>]| {
            let bar = [0.5, 0.05];
            100 - all
                .iter()
                .filter(|c| c.activity >= bar[c.layer] && removed[c.layer].contains(&c.unit))
                .count() as u64
        });
        assert_eq!(choice.removed, vec![vec![], vec![0, 1]]);
        assert_eq!(choice.thresholds, vec![None, Some(0.03)]);
    }

    /// A 2-3-1 ReLU network with hand-set weights.
    fn tiny() -> Mlp {
        let mut net = Mlp::new(&[2, 3, 1], Activation::Relu, &mut crate::rng::stream(0, "t", 0));
        net.params.layers[0] = Linear {
            inputs: 2,
            outputs: 3,
            weight: vec![1.0, 0.0, 0.0, 1.0, -1.0, -1.0],
            bias: vec![0.0; 3],
        };
        net.params.layers[1] = Linear { inputs: 3, outputs: 1, weight: vec![2.0, 3.0, 4.0], bias: vec![0.5] };
        net
    }

    #[test]
    fn activity_is_the_mean_relu_output_or_the_firing_rate() {
        let net = tiny();
        let spec = SyntheticPermutedSpec {
            tasks: 1,
            classes: 2,
            dim: 2,
            train_per_class: 300,
            test_per_class: 1,
            noise: 1.0,
            transform: InputTransform::Permute,
        };
        let split = SyntheticPermuted::new(&spec, 3).task(0).train;
        // By hand: unit 0 outputs max(x₀, 0), unit 1 max(x₁, 0), unit 2 max(−x₀ − x₁, 0).
        let n = split.len();
        let mut x = vec![0.0; 2 * n];
        split.gather_inputs(&(0..n).collect::<Vec<_>>(), &mut x);
        let (mut mean, mut rate) = (vec![0.0f64; 3], vec![0.0f64; 3]);
        for e in x.chunks_exact(2) {
            for (u, h) in [e[0], e[1], -e[0] - e[1]].into_iter().enumerate() {
                mean[u] += h.max(0.0) as f64 / n as f64;
                rate[u] += f64::from(u8::from(h > 0.0)) / n as f64;
            }
        }
        assert!(rate.iter().all(|&r| r > 0.1 && r < 0.9), "every unit fires sometimes: {rate:?}");
        let mut compute = Compute::new(&net, Engine::Fused, 2);
        let measured = measure_activity(&mut compute, &net, &split, Activity::MeanActivation);
        for (m, e) in measured[0].iter().zip(&mean) {
            assert!((m - e).abs() < 1e-6, "{measured:?} vs {mean:?}");
        }
        let measured = measure_activity(&mut compute, &net, &split, Activity::FiringRate);
        for (m, e) in measured[0].iter().zip(&rate) {
            assert!((m - e).abs() < 1e-12, "{measured:?} vs {rate:?}");
        }
    }

    #[test]
    fn removal_zeroes_rows_biases_and_outgoing_columns() {
        let mut net = tiny();
        net.params.layers[0].bias[1] = 0.25;
        remove_units(&mut net, &[vec![1]]);
        assert_eq!(net.params.layers[0].weight, vec![1.0, 0.0, 0.0, 0.0, -1.0, -1.0]);
        assert_eq!(net.params.layers[0].bias, vec![0.0, 0.0, 0.0]);
        assert_eq!(net.params.layers[1].weight, vec![2.0, 0.0, 4.0]);
        assert_eq!(net.params.layers[1].bias, vec![0.5]);
    }

    #[test]
    fn reached_units_follow_non_zero_weights_back_from_the_head() {
        // 2-3-2-2: head 1 (output row 1) reads hidden-2 unit 0 only; that unit reads hidden-1
        // units 0 and 2.
        let mut net = Mlp::new(&[2, 3, 2, 2], Activation::Relu, &mut crate::rng::stream(0, "t", 0));
        net.params.layers[1].weight = vec![1.0, 0.0, -2.0, 0.0, 5.0, 0.0];
        net.params.layers[2].weight = vec![0.0, 7.0, 3.0, 0.0];
        let reached = reached_units(&net, &(1..2));
        assert_eq!(reached, vec![vec![true, false, true], vec![true, false]]);
        let reached = reached_units(&net, &(0..1));
        assert_eq!(reached, vec![vec![false, true, false], vec![false, true]]);
    }
}
