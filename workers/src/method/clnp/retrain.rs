//! Retraining after pruning: a few epochs of plain cross-entropy on the task's training data
//! with the pruned units held out, so the units the task keeps recover what the L1 penalty and
//! the pruning cost them.
//!
//! Only what the task just trained moves: the rows of the units it keeps and its head. Frozen
//! rows (earlier tasks' units and heads) are masked out of the gradient and copied back after
//! every step, as during training; the pruned units get no gradient and are zeroed again after
//! every step (incoming row, bias, outgoing column), since momentum or Adam's moments could
//! move them. Nothing an earlier task computes can change, so zero forgetting is kept.

use rand::seq::SliceRandom;

use super::partition::Partition;
use super::pruning::remove_units;
use crate::method::TaskContext;
use crate::model::Layers;

/// `epochs` passes over the task's training split in shuffled batches of `batch_size`
/// (the last one shorter), without the sparsity penalty. `removed[l]`: the pruned units of
/// hidden layer l; `frozen`: the values the frozen rows of `partition` keep.
pub(super) fn retrain(
    cx: &mut TaskContext<'_>,
    partition: &Partition,
    frozen: &Layers,
    removed: &[Vec<usize>],
    epochs: usize,
    batch_size: usize,
) {
    let train = &cx.task.train;
    let n = train.len();
    if n == 0 || epochs == 0 {
        return;
    }
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..epochs {
        order.shuffle(cx.rng);
        for batch in order.chunks(batch_size.max(1)) {
            cx.compute.load(train, batch);
            cx.compute.loss_and_gradients(cx.net, cx.head.clone(), cx.task.index, |_| {});
            let grads = &mut cx.compute.grads;
            partition.shape_gradients(cx.net, grads, &cx.head, 0.0);
            mask_removed(grads, removed);
            cx.optimizer.step(cx.net, grads);
            if partition.any_frozen() {
                partition.restore(cx.net, frozen);
            }
            remove_units(cx.net, removed);
        }
    }
}

/// Zeroes the gradient of every removed unit's incoming row, bias and outgoing column.
fn mask_removed(grads: &mut Layers, removed: &[Vec<usize>]) {
    for (l, units) in removed.iter().enumerate() {
        for &i in units {
            grads.layers[l].row_mut(i).fill(0.0);
            grads.layers[l].bias[i] = 0.0;
            grads.layers[l + 1].fill_column(i, 0.0);
        }
    }
}
