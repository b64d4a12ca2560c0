//! The rehearsal methods' defining properties on a conv net with batch norm (the small net of
//! `conv_testing`: a biased convolution, batch norm, max pooling, a residual block with a
//! projection, global average pooling): A-GEM's projection as applied, DER++'s stored logits
//! and replay loss, and ER's reservoir over conv-shaped inputs.
//!
//! The gradient a step applied is read from a fresh momentum-SGD optimiser's velocity, which
//! after one step is that gradient exactly (v = μ·0 + g); the expected gradients are computed
//! here from the buffer's contents with the network's own passes and hand-written losses.

use std::ops::Range;

use super::agem::{project, Agem, AgemConfig};
use super::buffer::Buffer;
use super::der::Der;
use super::er::{Er, ErConfig};
use super::replay::{self, ReplayNet};
use super::testing::{chi_square_999, pearson};
use crate::method::conv_testing::{conv_task, small_net, with_conv_task};
use crate::method::{Learner, LearnerStep};
use crate::model::convnet::{self, ConvNet, Mode, Workspace};
use crate::model::{loss, BatchLoss, Parameters, Targets};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::rng::{self, Rng};
use crate::stream::{Target, Task};

/// A fresh SGD optimiser with momentum 0.9: after one step its velocity is the gradient applied.
fn momentum_sgd(net: &ConvNet, lr: f32) -> Optimizer<ConvNet> {
    let config = OptimizerConfig { lr, momentum: 0.9, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
    Optimizer::for_parameters(config, net)
}

/// One learner step of `method` on `input` (whole samples) and `classes` with a fresh
/// momentum-SGD optimiser; returns the loss and the gradient the step applied.
fn step(
    method: &mut dyn Learner<ConvNet>,
    net: &mut ConvNet,
    rng: &mut Rng,
    input: &[f32],
    classes: &[u32],
    head: Range<usize>,
    lr: f32,
) -> (BatchLoss, ConvNet) {
    let mut ws = net.workspace(classes.len());
    ConvNet::input_mut(&mut ws).copy_from_slice(input);
    let mut optimizer = momentum_sgd(net, lr);
    let loss = method
        .train_step(&mut LearnerStep {
            net,
            optimizer: &mut optimizer,
            rng,
            workspace: &mut ws,
            targets: Targets::Classes(classes),
            head,
            task: 0,
            step: 0,
        })
        .unwrap();
    let applied = optimizer.states()[0].1.clone();
    (loss, applied)
}

/// The outputs of a pass of `net` in `mode` on `input`, without touching the network.
fn outputs(net: &ConvNet, input: &[f32], mode: Mode) -> Vec<f32> {
    let mut ws = Workspace::new(net, input.len() / net.input_shape().len());
    ws.input.copy_from_slice(input);
    convnet::forward_pass(net, &mut ws, mode).unwrap();
    ws.outputs().to_vec()
}

/// The gradient of a training-mode pass on `input` whose output gradient `output_grad` writes
/// from the outputs (the whole batch, `width` per example).
fn gradient_of(net: &ConvNet, input: &[f32], output_grad: impl FnOnce(&[f32], &mut [f32])) -> ConvNet {
    let mut ws = Workspace::new(net, input.len() / net.input_shape().len());
    ws.input.copy_from_slice(input);
    convnet::forward_pass(net, &mut ws, Mode::Train).unwrap();
    let (outputs, grad) = ws.outputs_and_grad();
    output_grad(outputs, grad);
    let mut g = net.zeros_like();
    convnet::backward(net, &mut ws, &mut g);
    g
}

/// The gradient of the mean cross-entropy of `classes` on `head`, as the methods compute the
/// current batch's.
fn cross_entropy_gradient(net: &ConvNet, input: &[f32], classes: &[u32], head: Range<usize>) -> ConvNet {
    let width = net.outputs();
    gradient_of(net, input, |outputs, grad| {
        loss::evaluate(outputs, width, head, Targets::Classes(classes), Some(grad));
    })
}

/// The training split's examples `indices` of `task`: their inputs and classes plus `offset`.
fn examples(task: &Task, indices: &[usize], offset: u32) -> (Vec<f32>, Vec<u32>) {
    let mut input = vec![0.0; indices.len() * task.train.dim()];
    task.train.gather_inputs(indices, &mut input);
    let classes = indices.iter().map(|&i| class(task.train.target(i)) + offset).collect();
    (input, classes)
}

fn class(target: Target) -> u32 {
    match target {
        Target::Class(c) => c,
        Target::Real(_) => unreachable!("classification tasks"),
    }
}

/// The inputs and classes of buffer slots `slots`, in that order.
fn stored(buffer: &Buffer, slots: &[usize]) -> (Vec<f32>, Vec<u32>) {
    let input = slots.iter().flat_map(|&s| buffer.example(s).input.to_vec()).collect();
    let classes = slots.iter().map(|&s| class(buffer.example(s).target)).collect();
    (input, classes)
}

fn norm(a: &ConvNet) -> f64 {
    replay::dot(a, a).sqrt()
}

/// a − b, buffer by buffer.
fn minus(a: &ConvNet, b: &ConvNet) -> ConvNet {
    let mut d = a.clone();
    for (d, b) in d.slices_mut().into_iter().zip(b.slices()) {
        d.iter_mut().zip(b).for_each(|(d, b)| *d -= b);
    }
    d
}

fn bits(net: &ConvNet) -> Vec<u32> {
    net.slices().into_iter().flatten().map(|v| v.to_bits()).collect()
}

/// Class-incremental A-GEM on the conv net: a first task of classes 0 and 1, whose memory then
/// constrains 60 steps of one shared head, two of every three on classes 2 and 3 (whose
/// gradient mostly points against the memory's), the third on more examples of classes 0 and 1
/// (whose gradient mostly agrees with it). Each step's raw gradient g and
/// reference gradient g_ref (the mean loss on the memory batch the step draws, found by
/// replaying its random stream) are recomputed here. Where g·g_ref < 0 the applied gradient
/// must be g's projection — orthogonal to g_ref, not against it; elsewhere the step must be
/// plain SGD with g, bit for bit (parameters and all).
#[test]
fn agem_on_a_conv_net_applies_no_gradient_against_the_memorys() {
    let head = 0..4;
    let mut net = small_net(4, 11);
    let old = conv_task(&net, 2, 0, 16);
    let new = conv_task(&net, 2, 1, 40);
    let mut agem = Agem::<ConvNet>::new(&AgemConfig { buffer_size: 24.0, replay_batch_size: Some(8.0) });
    let mut r = rng::stream(11, "agem-conv-test", 0);
    let batch = 8;
    // The first task: an empty memory, plain training.
    for s in 0..8 {
        let indices: Vec<usize> = (0..batch).map(|k| (s * batch + k) % old.train.len()).collect();
        let (input, classes) = examples(&old, &indices, 0);
        step(&mut agem, &mut net, &mut r, &input, &classes, head.clone(), 0.05);
    }
    let mut optimizer = momentum_sgd(&net, 0.05);
    with_conv_task(&mut net, &mut optimizer, &old, head.clone(), 2, &mut r, |cx| {
        crate::method::ContinualMethod::task_finished(&mut agem, cx).unwrap()
    });
    assert_eq!(agem.buffer().len(), 12, "⌊24 / 2 tasks⌋ examples of the first task");
    let (mut projected, mut unchanged, mut worst) = (0, 0, 0.0f64);
    for s in 0..60 {
        let (input, classes) = if s % 3 == 2 {
            let indices: Vec<usize> = (0..batch).map(|k| (s * batch + k) % old.train.len()).collect();
            examples(&old, &indices, 0)
        } else {
            let indices: Vec<usize> = (0..batch).map(|k| (s * batch + k) % new.train.len()).collect();
            examples(&new, &indices, 2)
        };
        let before = net.clone();
        let slots = agem.buffer().sample(batch, &mut r.clone());
        let (memory, labels) = stored(agem.buffer(), &slots);
        let g = cross_entropy_gradient(&before, &input, &classes, head.clone());
        let reference = cross_entropy_gradient(&before, &memory, &labels, head.clone());
        let (_, applied) = step(&mut agem, &mut net, &mut r, &input, &classes, head.clone(), 0.05);
        let scale = norm(&applied) * norm(&reference);
        let along = replay::dot(&applied, &reference);
        if replay::dot(&g, &reference) < 0.0 {
            projected += 1;
            assert!(along >= -1e-6 * scale, "step {s}: g̃·g_ref = {along:e}, norms {scale:e}");
            worst = worst.min(along / scale);
            assert_ne!(bits(&applied), bits(&g), "step {s}: a conflicting gradient was applied as it is");
            let mut expected = g.clone();
            assert!(project(&mut expected, &reference));
            let off = norm(&minus(&applied, &expected)) / norm(&g);
            assert!(off < 1e-4, "step {s}: the applied gradient is {off:e} (relative) from g's projection");
        } else {
            unchanged += 1;
            let mut sgd = before.clone();
            momentum_sgd(&before, 0.05).step_parameters(&mut sgd, &g);
            assert_eq!(bits(&net), bits(&sgd), "step {s}: an unconflicting step was not plain SGD with g");
        }
    }
    eprintln!("A-GEM on a conv net: {projected} of 60 steps projected, {unchanged} unchanged; min g̃·g_ref/norms {worst:e}");
    assert!(projected >= 5, "only {projected} of 60 steps conflicted with the memory");
    assert!(unchanged >= 5, "only {unchanged} of 60 steps agreed with the memory");
}

/// DER++ on the conv net. The logits stored with an example are the outputs of the step's own
/// forward pass — a training-mode pass (batch norm on the batch's statistics) by the network
/// before the update, as Mammoth's `outputs.data` under `net.train()` — not an evaluation-mode
/// pass and not the updated network's. The next step's gradient is the current batch's
/// cross-entropy plus the replay loss α·MSE(f(x'), ℓ') + β·CE(f(x''), y''), written out here
/// from the buffer's contents (both replay batches take all six stored examples, so the loss
/// does not depend on which were drawn), its output gradient checked against central
/// differences of that loss.
#[test]
fn derpp_on_a_conv_net_stores_training_pass_logits_and_replays_alpha_mse_plus_beta_ce() {
    let (alpha, beta) = (0.7f32, 0.3f32);
    let head = 0..4;
    let net0 = small_net(4, 12);
    let task = conv_task(&net0, 4, 0, 6);
    let (first, first_classes) = examples(&task, &[0, 5, 10, 15, 20, 3], 0);
    let (next, next_classes) = examples(&task, &[1, 7, 13, 19, 2, 8], 0);
    let mut derpp = Der::<ConvNet>::new("derpp", 100.0, None, alpha.into(), Some(beta.into()));
    let mut r = rng::stream(12, "derpp-conv-test", 0);
    let mut net = net0.clone();
    step(&mut derpp, &mut net, &mut r, &first, &first_classes, head.clone(), 0.1);
    let net1 = net.clone();

    let width = net0.outputs();
    let train0 = outputs(&net0, &first, Mode::Train);
    let buffer = derpp.buffer();
    assert_eq!(buffer.len(), 6);
    assert_eq!(buffer.dim(), net0.input_shape().len());
    for slot in 0..6 {
        let e = buffer.example(slot);
        assert_eq!(e.input, &first[slot * buffer.dim()..(slot + 1) * buffer.dim()]);
        assert_eq!(e.logits, &train0[slot * width..(slot + 1) * width], "slot {slot}");
    }
    let differs = |other: &[f32]| other.iter().zip(&train0).any(|(a, b)| (a - b).abs() > 1e-3);
    assert!(differs(&outputs(&net0, &first, Mode::Eval)), "evaluation-mode logits are not what is stored");
    assert!(
        differs(&outputs(&net1, &first, Mode::Train)),
        "the updated network's logits are not what is stored"
    );

    // The replay loss at θ1 on the six stored examples, in slot order, weighted (a, b).
    let (memory, labels) = stored(buffer, &(0..6).collect::<Vec<_>>());
    let logits: Vec<f64> = (0..6).flat_map(|s| buffer.example(s).logits.to_vec()).map(f64::from).collect();
    let terms = ReplayTerms { width, labels: &labels, logits: &logits };
    let (a, b) = (f64::from(alpha), f64::from(beta));
    let z1 = outputs(&net1, &memory, Mode::Train);
    let z1: Vec<f64> = z1.iter().copied().map(f64::from).collect();
    let analytic = terms.gradient(&z1, a, b);
    for k in 0..z1.len() {
        let (mut up, mut down) = (z1.clone(), z1.clone());
        up[k] += 1e-5;
        down[k] -= 1e-5;
        let numeric = (terms.loss(&up, a, b) - terms.loss(&down, a, b)) / 2e-5;
        assert!((numeric - analytic[k]).abs() < 1e-7, "output {k}: {numeric} vs {}", analytic[k]);
    }
    let replayed = |a: f64, b: f64| {
        gradient_of(&net1, &memory, |z, grad| {
            let z: Vec<f64> = z.iter().copied().map(f64::from).collect();
            grad.iter_mut().zip(terms.gradient(&z, a, b)).for_each(|(g, v)| *g = v as f32);
        })
    };
    let current = cross_entropy_gradient(&net1, &next, &next_classes, head.clone());
    let with = |a: f64, b: f64| {
        let mut g = current.clone();
        replay::add(&mut g, &replayed(a, b));
        g
    };
    let expected = with(a, b);
    let (_, applied) = step(&mut derpp, &mut net, &mut r, &next, &next_classes, head, 0.1);
    let off = norm(&minus(&applied, &expected)) / norm(&expected);
    eprintln!(
        "DER++ on a conv net: replay loss {:.4} (α·MSE {:.4} + β·CE {:.4}); applied vs expected gradient {off:e} (relative)",
        terms.loss(&z1, a, b),
        terms.loss(&z1, a, 0.0),
        terms.loss(&z1, 0.0, b)
    );
    assert!(off < 1e-4, "the applied gradient is {off:e} (relative) from CE + α·MSE + β·CE");
    // Each term matters: without either, or with the weights swapped, the gradient is far from
    // the one applied.
    for (a, b) in [(a, 0.0), (0.0, b), (b, a)] {
        let miss = norm(&minus(&applied, &with(a, b))) / norm(&expected);
        eprintln!("  with α = {a:.1}, β = {b:.1} instead: {miss:e} from the applied gradient");
        assert!(miss > 100.0 * off.max(1e-7), "α = {a}, β = {b}: only {miss:e} from the applied gradient");
    }
    // The second batch joined the buffer with θ1's training-pass logits.
    let train1 = outputs(&net1, &next, Mode::Train);
    let buffer = derpp.buffer();
    assert_eq!(buffer.len(), 12);
    for (k, slot) in (6..12).enumerate() {
        assert_eq!(buffer.example(slot).logits, &train1[k * width..(k + 1) * width], "slot {slot}");
    }
}

/// DER++'s replay loss written out from a buffer's contents: `a`·MSE(z, ℓ) over every output
/// column of every example plus `b`·the mean cross-entropy of each example's stored class.
struct ReplayTerms<'a> {
    width: usize,
    labels: &'a [u32],
    logits: &'a [f64],
}

impl ReplayTerms<'_> {
    /// The row's log-softmax normaliser, log Σ exp z.
    fn log_sum_exp(row: &[f64]) -> f64 {
        let top = row.iter().copied().fold(f64::MIN, f64::max);
        top + row.iter().map(|v| (v - top).exp()).sum::<f64>().ln()
    }

    fn loss(&self, z: &[f64], a: f64, b: f64) -> f64 {
        let n = self.labels.len() as f64;
        let mse = z.iter().zip(self.logits).map(|(z, l)| (z - l).powi(2)).sum::<f64>() / z.len() as f64;
        let ce: f64 = z
            .chunks_exact(self.width)
            .zip(self.labels)
            .map(|(row, &c)| Self::log_sum_exp(row) - row[c as usize])
            .sum();
        a * mse + b * ce / n
    }

    fn gradient(&self, z: &[f64], a: f64, b: f64) -> Vec<f64> {
        let (n, count) = (self.labels.len() as f64, z.len() as f64);
        let mut g: Vec<f64> = z.iter().zip(self.logits).map(|(z, l)| a * 2.0 * (z - l) / count).collect();
        for ((row, g), &c) in z.chunks_exact(self.width).zip(g.chunks_exact_mut(self.width)).zip(self.labels)
        {
            let norm = Self::log_sum_exp(row);
            for (k, (v, g)) in row.iter().zip(g).enumerate() {
                let onehot = if k == c as usize { 1.0 } else { 0.0 };
                *g += b * ((v - norm).exp() - onehot) / n;
            }
        }
        g
    }
}

/// Item `id` of the reservoir test's stream: a 3×6×6 image whose first value is `id` and whose
/// others are a fixed function of it, so a stored row shows which item it is and that it was
/// stored whole.
fn item(id: usize, dim: usize) -> Vec<f32> {
    let mut row: Vec<f32> = (0..dim).map(|k| ((id * 131 + k * 17) % 23) as f32 / 23.0 - 0.5).collect();
    row[0] = id as f32;
    row
}

/// Inclusion counts of each of `items` items after `trials` runs of `keep` over a stream of
/// them, each run returning the ids its buffer ended with.
fn inclusion_counts(items: usize, trials: usize, mut keep: impl FnMut(usize) -> Vec<usize>) -> Vec<u64> {
    let mut counts = vec![0u64; items];
    for trial in 0..trials {
        for id in keep(trial) {
            counts[id] += 1;
        }
    }
    counts
}

/// ER on the conv net, through its training steps: 48 images in batches of 4 (12 steps, each
/// replaying 4 buffer examples) into a buffer of 8, 300 times. Every image must end in the
/// buffer equally often (8/48 of the runs): Pearson's χ² of the inclusion counts, 47 degrees
/// of freedom, stays below its 99.9% quantile, while the same statistic of a buffer that keeps
/// the latest 8 images is far above it. Every stored row is an offered 3×6×6 image, whole, with
/// its class, and the buffer holds exactly 8 × 108 input values and no logits.
#[test]
fn er_on_a_conv_net_keeps_every_image_with_the_same_probability() {
    let (items, capacity, batch, trials) = (48, 8, 4, 300);
    let net0 = small_net(4, 13);
    let dim = net0.input_shape().len();
    let mut r = rng::stream(13, "er-conv-test", 0);
    let config = ErConfig { buffer_size: capacity as f64, replay_batch_size: Some(batch as f64) };
    let counts = inclusion_counts(items, trials, |_| {
        let mut net = net0.clone();
        let mut er = Er::<ConvNet>::new(&config);
        for first in (0..items).step_by(batch) {
            let input: Vec<f32> = (first..first + batch).flat_map(|id| item(id, dim)).collect();
            let classes: Vec<u32> = (first..first + batch).map(|id| (id % 4) as u32).collect();
            let (loss, _) = step(&mut er, &mut net, &mut r, &input, &classes, 0..4, 0.01);
            assert!(loss.loss_sum.is_finite());
        }
        let buffer = er.buffer();
        assert_eq!((buffer.len(), buffer.dim()), (capacity, dim));
        (0..capacity)
            .map(|slot| {
                let e = buffer.example(slot);
                let id = e.input[0] as usize;
                assert_eq!(e.input, &item(id, dim)[..], "slot {slot} holds a mixed row");
                assert_eq!(e.target, Target::Class((id % 4) as u32));
                assert!(e.logits.is_empty());
                id
            })
            .collect()
    });
    let expected = (trials * capacity) as f64 / items as f64;
    let threshold = chi_square_999((items - 1) as f64);
    let chi = pearson(&counts, expected);
    let latest = pearson(&inclusion_counts(items, trials, |_| (items - capacity..items).collect()), expected);
    eprintln!("ER reservoir on a conv net: χ² = {chi:.1} (47 d.o.f., 99.9% quantile {threshold:.1}); latest-8 buffer χ² = {latest:.0}");
    assert!(chi < threshold, "χ² = {chi:.1} ≥ {threshold:.1}: {counts:?}");
    assert!(latest > 10.0 * threshold);
}
