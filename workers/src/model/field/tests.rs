use rand::Rng as _;

use super::pass::top_k_mask;
use super::*;
use crate::model::fused::{self, Workspace};
use crate::model::loss::BatchLoss;
use crate::model::mlp::{Layers, Mlp};
use crate::rng;

fn spec() -> FieldSpec {
    FieldSpec {
        bases: 4,
        rank: 2,
        coordinate_dim: 3,
        top_k: 2,
        encoder_hidden: 5,
        field_hidden: 4,
        adapt_output: false,
    }
}

fn setup(seed: u64) -> (Mlp, WeightField, Vec<f32>) {
    let mut r = rng::stream(seed, "field-test", 0);
    let sizes = [5, 6, 4, 3];
    let net = Mlp::new(&sizes, Activation::Tanh, &mut r);
    let mut field = WeightField::new(&sizes, spec(), &mut r).unwrap();
    // Non-zero B so the bases matter.
    for block in field.layout.blocks.clone() {
        for k in 0..field.layout.adapted.len() {
            let bt = &mut field.params.layers[block.first + 2 * k + 1];
            bt.weight.iter_mut().for_each(|w| *w = r.gen_range(-0.5..0.5));
        }
    }
    let input: Vec<f32> = (0..7 * 5).map(|_| r.gen_range(-1.0..1.0)).collect();
    (net, field, input)
}

fn predict(
    engine: &FieldEngine,
    net: &Mlp,
    field: &WeightField,
    input: &[f32],
    gates: Gates<'_>,
) -> Vec<f32> {
    let mut ws = Workspace::new(&net.sizes(), input.len() / 5);
    ws.input.copy_from_slice(input);
    engine.predict(net, field, gates, &mut ws);
    ws.outputs().to_vec()
}

#[test]
fn a_new_field_computes_the_backbone() {
    let mut r = rng::stream(1, "field-test", 1);
    let sizes = [5, 6, 4, 3];
    let net = Mlp::new(&sizes, Activation::Relu, &mut r);
    let field = WeightField::new(&sizes, spec(), &mut r).unwrap();
    let input: Vec<f32> = (0..9 * 5).map(|_| r.gen_range(-1.0..1.0)).collect();
    let engine = FieldEngine::new();
    let mut ws = Workspace::new(&sizes, 9);
    ws.input.copy_from_slice(&input);
    engine.predict(&net, &field, Gates::Field(None), &mut ws);
    let ours = ws.clone();
    fused::forward(&net, &mut ws);
    for (a, b) in ours.values.iter().flatten().zip(ws.values.iter().flatten()) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn gates_are_a_softmax_over_the_top_k_logits() {
    let mask = top_k_mask(&[0.5, 2.0, -1.0, 2.0], &[0.0, 0.0, 0.0, f32::NEG_INFINITY], 1, 4, 2);
    // Basis 3 is silenced, so the top two finite scores are bases 1 and 0.
    assert_eq!(mask, vec![0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
    // Ties go to the lower index; offsets are kept on the selected entries.
    let mask = top_k_mask(&[1.0, 1.0, 1.0], &[-0.5, 0.0, 0.0], 1, 3, 1);
    assert_eq!(mask, vec![f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]);
    // A row with every basis silenced falls back to the raw logits instead of NaN gates.
    let mask = top_k_mask(&[0.1, 0.3, 0.2], &[f32::NEG_INFINITY; 3], 1, 3, 2);
    assert_eq!(mask, vec![f32::NEG_INFINITY, 0.0, 0.0]);

    let (net, field, input) = setup(2);
    let engine = FieldEngine::new();
    let z = engine.coordinates(&net, &field, &input, 7);
    let logits = engine.field_logits(&net, &field, &z, 7);
    let gates = engine.gates(&net, &field, &z, 7);
    assert_eq!(engine.gates_of_inputs(&net, &field, None, &input, 7), gates);
    for i in 0..7 {
        let l = &logits[i * 4..(i + 1) * 4];
        let g = &gates[i * 4..(i + 1) * 4];
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let (top, rest) = order.split_at(2);
        let norm: f32 = top.iter().map(|&b| l[b].exp()).sum();
        for &b in top {
            assert!((g[b] - l[b].exp() / norm).abs() < 1e-6);
        }
        for &b in rest {
            assert_eq!(g[b], 0.0);
        }
    }
}

/// Host total of what `train_step` minimises: ½Σo² + λ_lock·L_lock + λ_sep·L_sep + λ_b·L_budget.
fn total_loss(
    engine: &FieldEngine,
    net: &Mlp,
    field: &WeightField,
    input: &[f32],
    terms: &StepTerms<'_>,
    train_backbone: bool,
) -> (f64, Layers, Layers) {
    let mut values: Vec<Vec<f32>> = net.sizes()[1..].iter().map(|w| vec![0.0; 7 * w]).collect();
    let mut fg = Layers::zeros_like(&field.params);
    let mut bg = Layers::zeros_like(&net.params);
    let mut half_square = 0.0f64;
    let mut og = |o: &[f32], g: &mut [f32]| {
        g.copy_from_slice(o);
        half_square = o.iter().map(|&v| 0.5 * (v as f64) * (v as f64)).sum();
        BatchLoss::default()
    };
    let r = engine.train_step(
        net,
        field,
        train_backbone,
        None,
        input,
        &mut values,
        &mut og,
        terms,
        &mut fg,
        &mut bg,
    );
    let total = half_square
        + terms.lock_weight as f64 * r.lock
        + terms.separation.as_ref().map_or(0.0, |s| s.weight as f64 * r.separation)
        + terms.budget_weight as f64 * r.budget;
    (total, fg, bg)
}

#[test]
fn gradients_match_finite_differences() {
    let (net, field, input) = setup(3);
    let engine = FieldEngine::new();
    let z = engine.coordinates(&net, &field, &input, 7);
    // One region centred on the batch's first coordinate, so the hinge is active.
    let mean: Vec<f32> = z[..3].to_vec();
    let whitening_t = vec![2.0, 0.0, 0.0, 0.3, 1.5, 0.0, -0.2, 0.1, 1.0];
    let anchors: Vec<f32> = z[3..9].to_vec();
    let targets = vec![0.1, -0.2, 0.3, 0.0, 0.5, 0.5, -0.5, 0.2];
    let terms = StepTerms {
        lock: vec![LockTerm { anchors: &anchors, targets: &targets, count: 2, width: 4 }],
        lock_weight: 0.7,
        separation: Some(SeparationTerm {
            regions: vec![SeparationRegion { mean: &mean, whitening_t: &whitening_t, radius: 3.0 }],
            weight: 0.9,
        }),
        budget_weight: 0.4,
    };
    let (_, fg, bg) = total_loss(&engine, &net, &field, &input, &terms, true);
    let eps = 1e-2f32;
    let mut checked = 0;
    // A few entries of every field layer and every backbone layer.
    for (l, layer) in field.params.layers.iter().enumerate() {
        for i in [0, layer.weight.len() / 2, layer.weight.len() - 1] {
            let mut plus = field.clone();
            plus.params.layers[l].weight[i] += eps;
            let mut minus = field.clone();
            minus.params.layers[l].weight[i] -= eps;
            let numeric = (total_loss(&engine, &net, &plus, &input, &terms, true).0
                - total_loss(&engine, &net, &minus, &input, &terms, true).0)
                / (2.0 * eps as f64);
            let analytic = fg.layers[l].weight[i] as f64;
            assert!(
                (numeric - analytic).abs() <= 2e-2 * numeric.abs().max(analytic.abs()).max(0.05),
                "field layer {l} weight {i}: numeric {numeric} vs analytic {analytic}"
            );
            checked += 1;
        }
    }
    for (l, layer) in net.params.layers.iter().enumerate() {
        for i in [0, layer.weight.len() - 1] {
            let mut plus = net.clone();
            plus.params.layers[l].weight[i] += eps;
            let mut minus = net.clone();
            minus.params.layers[l].weight[i] -= eps;
            let numeric = (total_loss(&engine, &plus, &field, &input, &terms, true).0
                - total_loss(&engine, &minus, &field, &input, &terms, true).0)
                / (2.0 * eps as f64);
            let analytic = bg.layers[l].weight[i] as f64;
            assert!(
                (numeric - analytic).abs() <= 2e-2 * numeric.abs().max(analytic.abs()).max(0.05),
                "backbone layer {l} weight {i}: numeric {numeric} vs analytic {analytic}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20);
    // Unused bias entries of the bank stay without gradient.
    let block = field.layout.blocks[0];
    assert!(fg.layers[block.first].bias.iter().all(|&g| g == 0.0));
}

#[test]
fn frozen_parameters_get_no_gradient() {
    let (net, mut field, input) = setup(4);
    field.freeze_encoder();
    field.freeze_components();
    field.lock_bases(&[1, 2], 0);
    let engine = FieldEngine::new();
    let terms = StepTerms { lock: vec![], lock_weight: 0.0, separation: None, budget_weight: 0.1 };
    let (_, fg, bg) = total_loss(&engine, &net, &field, &input, &terms, false);
    let e = field.layout.encoder;
    for i in [e, e + 1, field.layout.components[0].first, field.layout.components[0].first + 1] {
        assert!(fg.layers[i].weight.iter().chain(&fg.layers[i].bias).all(|&g| g == 0.0), "layer {i}");
    }
    let r = field.layout.spec.rank;
    let block = field.layout.blocks[0];
    let mut unlocked_moved = false;
    for k in 0..2 * field.layout.adapted.len() {
        let layer = &fg.layers[block.first + k];
        for basis in 0..4 {
            let zero = (basis * r..(basis + 1) * r).all(|row| layer.row(row).iter().all(|&g| g == 0.0));
            if basis == 1 || basis == 2 {
                assert!(zero, "locked basis {basis} got a gradient");
            } else {
                unlocked_moved |= !zero;
            }
        }
    }
    assert!(unlocked_moved);
    // Without backbone training the backbone gradients are untouched.
    assert!(bg.buffers().all(|b| b.iter().all(|&g| g == 0.0)));
}

struct Ball {
    centre: Vec<f32>,
    radius: f32,
}

impl RegionMasks for Ball {
    fn regions(&self) -> usize {
        1
    }
    fn masks(&self, _input: &[f32], z: &[f32], n: usize, out: &mut Vec<f64>) {
        let d = self.centre.len();
        out.clear();
        for i in 0..n {
            let dist: f32 =
                z[i * d..(i + 1) * d].iter().zip(&self.centre).map(|(a, b)| (a - b).powi(2)).sum();
            out.push(((dist.sqrt() - self.radius) / self.radius).clamp(0.0, 1.0) as f64);
        }
    }
}

#[test]
fn extensions_and_new_bases_change_nothing_inside_a_masked_region() {
    let (net, mut field, input) = setup(5);
    let engine = FieldEngine::new();
    let z = engine.coordinates(&net, &field, &input, 7);
    // A ball around example 0 that holds some of the batch and not the rest.
    let ball =
        Ball { centre: z[..3].to_vec(), radius: 0.5 * (0..7).map(|i| dist(&z, 0, i)).fold(0.0, f32::max) };
    let inside: Vec<usize> = (0..7).filter(|&i| dist(&z, 0, i) <= ball.radius).collect();
    assert!(!inside.is_empty() && inside.len() < 7, "{inside:?}");

    // Commit: bases 0..3 locked by region 0 (basis 3 stays free, so it is silenced inside),
    // then grow and extend.
    field.lock_bases(&[0, 1, 2], 0);
    field.freeze_encoder();
    field.freeze_components();
    let before = predict(&engine, &net, &field, &input, Gates::Field(Some(&ball)));
    let mut r = rng::stream(5, "field-test", 9);
    field.add_block(3, &mut r);
    field.add_component(1, 4..7, 0.0, &mut r);
    // Train-like changes to everything that is not frozen: the new block, the extension and
    // the free basis 3.
    for (i, layer) in field.params.layers.iter_mut().enumerate() {
        if i >= field.layout.blocks[1].first {
            layer.weight.iter_mut().for_each(|w| *w += r.gen_range(-1.0..1.0));
        }
    }
    let (first, rank) = (field.layout.blocks[0].first, field.layout.spec.rank);
    for k in 0..2 * field.layout.adapted.len() {
        for row in 3 * rank..4 * rank {
            field.params.layers[first + k].row_mut(row).iter_mut().for_each(|w| *w += 0.5);
        }
    }
    let after = predict(&engine, &net, &field, &input, Gates::Field(Some(&ball)));
    for i in 0..7 {
        let (a, b) = (&before[i * 3..(i + 1) * 3], &after[i * 3..(i + 1) * 3]);
        if inside.contains(&i) {
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "example {i} inside the region changed"
            );
        }
    }
    assert_ne!(before, after, "outside the region the extension must act");
}

fn dist(z: &[f32], a: usize, b: usize) -> f32 {
    (0..3).map(|k| (z[a * 3 + k] - z[b * 3 + k]).powi(2)).sum::<f32>().sqrt()
}

#[test]
fn layout_shapes_rebuild_the_parameters() {
    let (_, mut field, _) = setup(6);
    let mut r = rng::stream(6, "field-test", 1);
    field.add_block(2, &mut r);
    field.add_component(1, 4..7, 0.0, &mut r);
    let shapes = WeightField::shapes(&field.layout);
    let expected: Vec<(usize, usize)> = field.params.layers.iter().map(|l| (l.inputs, l.outputs)).collect();
    assert_eq!(shapes, expected);
    let rebuilt = WeightField::from_parts(field.layout.clone(), field.params.clone()).unwrap();
    assert_eq!(rebuilt.checksum(), field.checksum());
    let mut other = field.clone();
    other.params.layers[0].weight[0] += 1.0;
    assert_ne!(other.checksum(), field.checksum());
}

#[test]
fn bad_specs_are_refused() {
    let mut r = rng::stream(0, "field-test", 0);
    let err = WeightField::new(&[4, 3], spec(), &mut r).unwrap_err();
    assert!(err.contains("hidden layer"), "{err}");
    let err = WeightField::new(&[4, 5, 3], FieldSpec { top_k: 9, ..spec() }, &mut r).unwrap_err();
    assert!(err.contains("top_k") && err.contains("bases"), "{err}");
    let err = WeightField::new(&[4, 5, 3], FieldSpec { rank: 0, ..spec() }, &mut r).unwrap_err();
    assert!(err.contains("rank"), "{err}");
}
