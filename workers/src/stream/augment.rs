//! Data augmentation of training images as in the CIFAR literature: a random 32×32 crop of the
//! image padded by 4 pixels on every side, and a horizontal flip with probability ½ (He et al.
//! 2016; the loss-of-plasticity incremental CIFAR-100 code). Per-channel normalisation is not
//! here: it applies to held-out images too, so the streams do it while gathering inputs
//! ([`super::image::Normalization`]).
//!
//! # Resumable by construction
//!
//! The crop and flip of an example are a pure function of (run seed, task, epoch, the example's
//! position in the epoch's order): each (task, epoch) pair is its own ChaCha stream and each
//! position its own fixed window of it, found with `set_word_pos`. Nothing is carried from one
//! batch to the next, so a run resumed from a checkpoint at any batch draws exactly the
//! augmentations the uninterrupted run would have drawn, without saving any generator state,
//! and a batch's draws do not depend on the batch size.
//!
//! # Order of operations
//!
//! Augmentation works on the gathered (already normalised) inputs, so the padding is 0 in
//! normalised units — the data set's mean colour — as in the loss-of-plasticity code, which
//! normalises before it crops. Pipelines that crop first pad with black instead; with 4 pixels
//! of 32 the difference is small, but it is a difference.

use rand::RngCore;

use crate::model::layer::Shape;
use crate::rng;

/// What is done to each training image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding on each side before the crop back to the image's size; 0 disables cropping.
    pub padding: usize,
    /// Whether to mirror left–right with probability ½.
    pub flip: bool,
}

impl Augment {
    /// The literature's: 4-pixel padding and random flips.
    pub fn standard() -> Self {
        Augment { padding: 4, flip: true }
    }

    /// The offsets (rows, columns) into the padded image, each in `0..=2 × padding`, and
    /// whether to flip, of the example at `position` of `epoch` of `task`. Each position owns
    /// one 64-bit word of its (task, epoch) stream: bits 0–31 give the row offset, 32–62 the
    /// column offset (by multiply-shift; the bias is below 2⁻²⁶ for padding 4), bit 63 the flip.
    pub fn draw(&self, seed: u64, task: usize, epoch: usize, position: usize) -> (usize, usize, bool) {
        let mut r = rng::stream(seed, "train.augment", task as u64);
        r.set_stream(epoch as u64);
        r.set_word_pos(2 * position as u128);
        let word = r.next_u64();
        let choices = (2 * self.padding + 1) as u64;
        let dy = ((word & 0xFFFF_FFFF) * choices) >> 32;
        let dx = (((word >> 32) & 0x7FFF_FFFF) * choices) >> 31;
        (dy as usize, dx as usize, self.flip && word >> 63 == 1)
    }
}

/// Crops and flips, in place, the images of a batch of training examples: `images` holds
/// whole images of `shape` (channels first), the first at position `first_position` of
/// `epoch`'s order of task `task`, the next at `first_position + 1`, and so on.
///
/// # Panics
///
/// When `shape` is not an image or `images` is not a whole number of images: both are the
/// caller's wiring, not data.
pub fn augment_batch(
    augment: &Augment,
    shape: Shape,
    seed: u64,
    task: usize,
    epoch: usize,
    first_position: usize,
    images: &mut [f32],
) {
    let Shape::Image { channels, height, width } = shape else { panic!("augmenting {shape}, not an image") };
    let size = shape.len();
    assert!(
        size > 0 && images.len().is_multiple_of(size),
        "{} values are not whole images of {shape}",
        images.len()
    );
    let mut source = vec![0.0f32; size];
    for (k, image) in images.chunks_exact_mut(size).enumerate() {
        let (dy, dx, flip) = augment.draw(seed, task, epoch, first_position + k);
        source.copy_from_slice(image);
        let p = augment.padding;
        for c in 0..channels {
            let plane = &source[c * height * width..(c + 1) * height * width];
            let out = &mut image[c * height * width..(c + 1) * height * width];
            for y in 0..height {
                // Row y of the crop is row y + dy of the padded image, row y + dy − p of the source.
                let sy = (y + dy).checked_sub(p).filter(|&sy| sy < height);
                for x in 0..width {
                    let cx = if flip { width - 1 - x } else { x };
                    let sx = (cx + dx).checked_sub(p).filter(|&sx| sx < width);
                    out[y * width + x] = match (sy, sx) {
                        (Some(sy), Some(sx)) => plane[sy * width + sx],
                        _ => 0.0,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape::Image { channels: 2, height: 5, width: 6 };

    /// `count` images whose value k is 1 + k + 100 × image: nothing is 0, so padding shows.
    fn images(count: usize) -> Vec<f32> {
        (0..count).flat_map(|i| (0..SHAPE.len()).map(move |k| (1 + k + 100 * i) as f32)).collect()
    }

    #[test]
    fn the_same_inputs_give_the_same_augmentation_whatever_the_batching() {
        let aug = Augment::standard();
        let mut whole = images(8);
        augment_batch(&aug, SHAPE, 7, 2, 3, 40, &mut whole);
        // The same eight examples in two batches, as a run resumed after the first would see them.
        let mut parts = images(8);
        let (a, b) = parts.split_at_mut(3 * SHAPE.len());
        augment_batch(&aug, SHAPE, 7, 2, 3, 40, a);
        augment_batch(&aug, SHAPE, 7, 2, 3, 43, b);
        assert_eq!(whole, parts);
        assert_ne!(whole, images(8), "something was augmented");
    }

    #[test]
    fn draws_depend_on_seed_task_epoch_and_position() {
        let aug = Augment::standard();
        let draws = |seed, task, epoch| (0..64).map(|p| aug.draw(seed, task, epoch, p)).collect::<Vec<_>>();
        let base = draws(1, 0, 0);
        for other in [draws(2, 0, 0), draws(1, 1, 0), draws(1, 0, 1)] {
            assert_ne!(base, other);
        }
        assert_eq!(base, draws(1, 0, 0));
        // Every offset 0..=8 and both flips occur; nothing outside.
        assert!(base.iter().all(|&(dy, dx, _)| dy <= 8 && dx <= 8));
        let many: Vec<_> = (0..2000).map(|p| aug.draw(1, 0, 0, p)).collect();
        for v in 0..=8 {
            assert!(many.iter().any(|d| d.0 == v) && many.iter().any(|d| d.1 == v), "offset {v}");
        }
        let flips = many.iter().filter(|d| d.2).count();
        assert!((900..1100).contains(&flips), "{flips} flips of 2000");
    }

    /// Finds a position whose draw satisfies `want`.
    fn position(aug: &Augment, want: impl Fn((usize, usize, bool)) -> bool) -> usize {
        (0..10_000).find(|&p| want(aug.draw(5, 0, 0, p))).expect("some position draws it")
    }

    #[test]
    fn a_flip_without_a_shift_is_an_exact_mirror() {
        let aug = Augment::standard();
        let p = position(&aug, |d| d == (4, 4, true));
        let original = images(1);
        let mut x = original.clone();
        augment_batch(&aug, SHAPE, 5, 0, 0, p, &mut x);
        for c in 0..2 {
            for y in 0..5 {
                for col in 0..6 {
                    assert_eq!(x[c * 30 + y * 6 + col], original[c * 30 + y * 6 + (5 - col)]);
                }
            }
        }
        let unflipped = position(&aug, |d| d == (4, 4, false));
        let mut x = original.clone();
        augment_batch(&aug, SHAPE, 5, 0, 0, unflipped, &mut x);
        assert_eq!(x, original, "no shift, no flip: unchanged");
    }

    #[test]
    fn crops_shift_the_image_and_pad_with_zeros() {
        let aug = Augment { padding: 4, flip: false };
        // Offset (0, 8): the crop starts 4 rows above and 4 columns right of the image.
        let p = position(&aug, |d| d.0 == 0 && d.1 == 8);
        let original = images(1);
        let mut x = original.clone();
        augment_batch(&aug, SHAPE, 5, 0, 0, p, &mut x);
        for c in 0..2 {
            for y in 0..5 {
                for col in 0..6 {
                    let expected =
                        if y < 4 || col + 4 >= 6 { 0.0 } else { original[c * 30 + (y - 4) * 6 + col + 4] };
                    assert_eq!(x[c * 30 + y * 6 + col], expected, "channel {c}, ({y}, {col})");
                }
            }
        }
        let none = Augment { padding: 0, flip: false };
        let mut x = original.clone();
        augment_batch(&none, SHAPE, 5, 0, 0, 0, &mut x);
        assert_eq!(x, original);
    }
}
