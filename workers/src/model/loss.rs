//! Losses on a head's slice of the network's outputs, and their gradients.
//!
//! All heads share the output layer; a task's loss and predictions read only its head's
//! outputs, and the gradient of every other output is zero, so other heads are untouched.

use std::ops::Range;

/// Targets of a batch.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Class indices within the head.
    Classes(&'a [u32]),
    /// Real targets (one output per example).
    Reals(&'a [f32]),
}

impl Targets<'_> {
    /// Examples in the batch.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Reals(r) => r.len(),
        }
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Loss totals over a batch: sums, so batches can be added up exactly in any grouping of
/// whole batches.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchLoss {
    /// Sum over examples of the per-example loss (cross-entropy, or squared error).
    pub loss_sum: f64,
    /// Examples whose arg-max prediction equals the class (classification only).
    pub correct: u64,
    /// Examples.
    pub examples: u64,
}

impl BatchLoss {
    /// Adds another batch's totals.
    pub fn add(&mut self, other: BatchLoss) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.examples += other.examples;
    }

    /// Mean loss per example.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.examples.max(1) as f64
    }

    /// Fraction correct.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.examples.max(1) as f64
    }
}

/// Per-example losses and predictions of `outputs` (`batch × width`, row-major) on the head
/// `head` (a column range). When `gradient` is given it receives d(mean loss)/d(outputs): the
/// softmax cross-entropy gradient (p − onehot)/B on the head's columns, or 2(z − y)/B for
/// squared error, and 0 elsewhere.
pub fn evaluate(
    outputs: &[f32],
    width: usize,
    head: Range<usize>,
    targets: Targets<'_>,
    mut gradient: Option<&mut [f32]>,
) -> BatchLoss {
    let batch = targets.len();
    debug_assert_eq!(outputs.len(), batch * width);
    if let Some(g) = gradient.as_deref_mut() {
        g.fill(0.0);
    }
    let scale = 1.0 / batch as f32;
    let mut total = BatchLoss { examples: batch as u64, ..BatchLoss::default() };
    match targets {
        Targets::Classes(classes) => {
            for (b, &class) in classes.iter().enumerate() {
                let z = &outputs[b * width + head.start..b * width + head.end];
                let (mut best, mut max) = (0, f32::NEG_INFINITY);
                for (k, &v) in z.iter().enumerate() {
                    if v > max {
                        best = k;
                        max = v;
                    }
                }
                let sum: f32 = z.iter().map(|&v| (v - max).exp()).sum();
                let log_sum = sum.ln();
                total.loss_sum += (log_sum - (z[class as usize] - max)) as f64;
                total.correct += (best == class as usize) as u64;
                if let Some(g) = gradient.as_deref_mut() {
                    let g = &mut g[b * width + head.start..b * width + head.end];
                    for (gk, &v) in g.iter_mut().zip(z) {
                        *gk = (v - max).exp() / sum * scale;
                    }
                    g[class as usize] -= scale;
                }
            }
        }
        Targets::Reals(reals) => {
            for (b, &y) in reals.iter().enumerate() {
                let z = outputs[b * width + head.start];
                let err = z - y;
                total.loss_sum += (err * err) as f64;
                if let Some(g) = gradient.as_deref_mut() {
                    g[b * width + head.start] = 2.0 * err * scale;
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_on_a_head_matches_the_formula_and_leaves_other_heads_alone() {
        // Two heads of 2 outputs; the example uses head 1 with class 0.
        let outputs = [5.0f32, -3.0, 1.0, 2.0];
        let mut g = [9.0f32; 4];
        let r = evaluate(&outputs, 4, 2..4, Targets::Classes(&[0]), Some(&mut g));
        let expected = -(1.0f64.exp() / (1.0f64.exp() + 2.0f64.exp())).ln();
        assert!((r.loss_sum - expected).abs() < 1e-6);
        assert_eq!(r.correct, 0);
        let p0 = 1.0f32.exp() / (1.0f32.exp() + 2.0f32.exp());
        assert_eq!(&g[..2], &[0.0, 0.0]);
        assert!((g[2] - (p0 - 1.0)).abs() < 1e-6 && (g[3] - (1.0 - p0)).abs() < 1e-6);
    }

    #[test]
    fn squared_error_gradient_is_two_errors_over_batch() {
        let outputs = [1.0f32, 3.0];
        let mut g = [0.0f32; 2];
        let r = evaluate(&outputs, 1, 0..1, Targets::Reals(&[0.0, 1.0]), Some(&mut g));
        assert_eq!(r.loss_sum, 5.0);
        assert_eq!(g, [1.0, 2.0]);
        assert_eq!(r.mean_loss(), 2.5);
    }
}
