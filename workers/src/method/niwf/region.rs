//! Committed regions: the Gaussian a task's coordinates occupy, its anchors, and the test that
//! decides which examples the structural lock protects.
//!
//! A region is the Gaussian N(μ, Σ) fitted to a task's training coordinates. With Σ = L Lᵀ
//! (Cholesky) and W = L⁻¹, the Mahalanobis distance is D(z) = ‖W (z − μ)‖, and the ellipsoid
//! holding probability mass p is D(z) ≤ ρ_p = √(χ²_d quantile at p). Anchors are drawn inside
//! the `anchor_mass` ellipsoid (the paper's 95%): u ~ N(0, I) rejected until ‖u‖ ≤ ρ, then
//! a = μ + L u.
//!
//! The lock test ([`LockTest`]) measures a distance D_lock either in coordinate space (the
//! Gaussian above) or in input space (a diagonal Gaussian of the task's inputs, per input
//! D² = Σ_j (x_j − μ_j)² / (σ_j² + ε), ε = 10⁻³ × the mean σ²). Its radius ρ_lock = margin ·
//! the largest D_lock of the task's training examples (at least ρ_anchor in coordinate space),
//! so every training example is inside, with slack for held-out ones. The mask
//! m = s((D_lock − ρ_lock) / (w · ρ_lock)), s(u) = 3u² − 2u³ clamped to [0, 1], is exactly 0
//! inside and rises smoothly to 1 at (1 + w) · ρ_lock.

use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::metrics::chi_square_quantile;
use crate::model::field::RegionMasks;
use crate::rng::Rng;

/// Where the lock test measures distances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockSpace {
    /// The capability coordinate (the paper's space): frozen with the encoder at the first
    /// commit.
    Coordinate,
    /// The example's input: fixed by definition, and for streams whose tasks differ in their
    /// input distribution (permuted MNIST) far better at telling tasks apart than a
    /// coordinate fitted to the first task.
    Input,
}

/// The diagonal Gaussian of a task's inputs.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct InputGaussian {
    /// μ_j.
    pub mean: Vec<f64>,
    /// 1 / √(σ_j² + ε).
    pub inv_sd: Vec<f64>,
}

impl InputGaussian {
    fn fit(x: &[f32], dim: usize) -> InputGaussian {
        let n = (x.len() / dim).max(1) as f64;
        let mut mean = vec![0.0f64; dim];
        for row in x.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0f64; dim];
        for row in x.chunks_exact(dim) {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        var.iter_mut().for_each(|s| *s /= n);
        let floor = 1e-3 * var.iter().sum::<f64>() / dim as f64 + 1e-12;
        InputGaussian { mean, inv_sd: var.iter().map(|v| 1.0 / (v + floor).sqrt()).collect() }
    }

    fn distance(&self, x: &[f32]) -> f64 {
        x.iter()
            .zip(&self.mean)
            .zip(&self.inv_sd)
            .map(|((&v, m), s)| ((v as f64 - m) * s).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

/// Which examples a region protects: D_lock ≤ `radius`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct LockTest {
    /// The input Gaussian, or `None` for the region's coordinate Gaussian.
    pub input: Option<InputGaussian>,
    /// ρ_lock.
    pub radius: f64,
    /// Width of the mask's rise, as a fraction of ρ_lock.
    pub mask_width: f64,
}

/// How a region is shaped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct RegionShape {
    /// Probability mass of the anchors' ellipsoid.
    pub anchor_mass: f64,
    /// Anchors to draw.
    pub anchors: usize,
    /// Where the lock test measures.
    pub lock_space: LockSpace,
    /// ρ_lock / the largest D_lock of the training examples.
    pub lock_margin: f64,
    /// Width of the mask's rise, as a fraction of ρ_lock.
    pub mask_width: f64,
}

/// A committed region.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Region {
    /// The task whose coordinates it holds.
    pub task: usize,
    /// μ (d).
    pub mean: Vec<f64>,
    /// W = L⁻¹, lower triangular, `d × d` row-major.
    pub whitening: Vec<f64>,
    /// ρ of the anchors' ellipsoid.
    pub radius_anchor: f64,
    /// Which examples the region protects.
    pub lock: LockTest,
    /// Anchor coordinates, `anchors × d`.
    pub anchors: Vec<f32>,
    /// The field's logits at the anchors when the region was committed, `anchors × width`.
    pub snapshot: Vec<f32>,
    /// Bases when the region was committed.
    pub width: usize,
    /// Mean gates over the anchors after the commit (`width`): the region's capability as one
    /// gate vector, for compositions.
    pub mean_gates: Vec<f32>,
}

impl Region {
    /// Fits the Gaussian of `n` coordinates `z` (`n × d`) of examples with inputs `x`
    /// (`n × inputs`), the lock test, and draws the anchors. The snapshot, width and mean
    /// gates are left empty.
    pub fn fit(
        task: usize,
        z: &[f32],
        d: usize,
        x: &[f32],
        shape: RegionShape,
        rng: &mut Rng,
    ) -> Result<Region, String> {
        let n = z.len() / d;
        if n == 0 {
            return Err(format!("task {task} has no training examples to fit its region to"));
        }
        let mut mean = vec![0.0f64; d];
        for row in z.chunks_exact(d) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0.0f64; d * d];
        for row in z.chunks_exact(d) {
            for a in 0..d {
                let da = row[a] as f64 - mean[a];
                for b in 0..=a {
                    cov[a * d + b] += da * (row[b] as f64 - mean[b]);
                }
            }
        }
        let denominator = (n.max(2) - 1) as f64;
        for a in 0..d {
            for b in 0..=a {
                cov[a * d + b] /= denominator;
                cov[b * d + a] = cov[a * d + b];
            }
        }
        // A ridge keeps Σ positive definite when the coordinates span fewer than d dimensions.
        let trace: f64 = (0..d).map(|a| cov[a * d + a]).sum();
        let ridge = 1e-6 * (trace / d as f64).max(1e-12);
        (0..d).for_each(|a| cov[a * d + a] += ridge);
        let chol = cholesky(&cov, d).ok_or_else(|| {
            format!("task {task}: the covariance of its coordinates is not positive definite (non-finite coordinates?)")
        })?;
        let whitening = invert_lower(&chol, d);
        let radius_anchor = chi_square_quantile(d, shape.anchor_mass).sqrt();
        let input = match shape.lock_space {
            LockSpace::Coordinate => None,
            LockSpace::Input => Some(InputGaussian::fit(x, x.len() / n)),
        };
        let mut region = Region {
            task,
            mean,
            whitening,
            radius_anchor,
            lock: LockTest { input, radius: 0.0, mask_width: shape.mask_width },
            anchors: Vec::with_capacity(shape.anchors * d),
            snapshot: Vec::new(),
            width: 0,
            mean_gates: Vec::new(),
        };
        let inputs = x.len() / n;
        let farthest = (0..n)
            .map(|i| region.lock_distance(&x[i * inputs..(i + 1) * inputs], &z[i * d..(i + 1) * d]))
            .fold(0.0f64, f64::max);
        let floor = if region.lock.input.is_none() { radius_anchor } else { 0.0 };
        region.lock.radius = shape.lock_margin * floor.max(farthest);
        let mut u = vec![0.0f64; d];
        while region.anchors.len() < shape.anchors * d {
            u.iter_mut().for_each(|v| *v = StandardNormal.sample(rng));
            if u.iter().map(|v| v * v).sum::<f64>().sqrt() > radius_anchor {
                continue;
            }
            for a in 0..d {
                let offset: f64 = (0..=a).map(|b| chol[a * d + b] * u[b]).sum();
                region.anchors.push((region.mean[a] + offset) as f32);
            }
        }
        Ok(region)
    }

    /// Coordinate dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Anchors drawn.
    pub fn anchor_count(&self) -> usize {
        self.anchors.len() / self.dim()
    }

    /// The Mahalanobis distance D(z) of one coordinate.
    pub fn distance(&self, z: &[f32]) -> f64 {
        let d = self.dim();
        let mut sum = 0.0;
        for a in 0..d {
            let y: f64 = (0..=a).map(|b| self.whitening[a * d + b] * (z[b] as f64 - self.mean[b])).sum();
            sum += y * y;
        }
        sum.sqrt()
    }

    /// D_lock of an example with input `x` and coordinate `z`.
    pub fn lock_distance(&self, x: &[f32], z: &[f32]) -> f64 {
        match &self.lock.input {
            Some(g) => g.distance(x),
            None => self.distance(z),
        }
    }

    /// Whether the region protects an example (its mask is exactly 0).
    pub fn contains(&self, x: &[f32], z: &[f32]) -> bool {
        self.lock_distance(x, z) <= self.lock.radius
    }

    /// The mask m: 0 for examples the region protects, rising smoothly to 1 away from it.
    pub fn mask(&self, x: &[f32], z: &[f32]) -> f64 {
        let u = (self.lock_distance(x, z) - self.lock.radius) / (self.lock.mask_width * self.lock.radius);
        let u = u.clamp(0.0, 1.0);
        u * u * (3.0 - 2.0 * u)
    }

    /// Wᵀ in f32, row-major, for the separation hinge.
    pub fn whitening_t(&self) -> Vec<f32> {
        let d = self.dim();
        (0..d * d).map(|i| self.whitening[(i % d) * d + i / d] as f32).collect()
    }

    /// μ in f32.
    pub fn mean_f32(&self) -> Vec<f32> {
        self.mean.iter().map(|&v| v as f32).collect()
    }

    /// BLAKE3 of the region's numbers (mean, whitening, radii, anchors, snapshot).
    pub fn checksum(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(&(self.task as u64).to_le_bytes());
        for v in self.mean.iter().chain(&self.whitening).chain([&self.radius_anchor, &self.lock.radius]) {
            h.update(&v.to_le_bytes());
        }
        if let Some(g) = &self.lock.input {
            for v in g.mean.iter().chain(&g.inv_sd) {
                h.update(&v.to_le_bytes());
            }
        }
        for v in self.anchors.iter().chain(&self.snapshot) {
            h.update(&v.to_le_bytes());
        }
        h.finalize().to_hex().to_string()
    }
}

/// The first `count` committed regions, as the model's region masks.
pub(super) struct RegionSet<'a>(pub &'a [Region]);

impl RegionMasks for RegionSet<'_> {
    fn regions(&self) -> usize {
        self.0.len()
    }

    fn masks(&self, input: &[f32], z: &[f32], n: usize, out: &mut Vec<f64>) {
        out.clear();
        let (inputs, d) = (input.len() / n.max(1), z.len() / n.max(1));
        for i in 0..n {
            let (x, z) = (&input[i * inputs..(i + 1) * inputs], &z[i * d..(i + 1) * d]);
            out.extend(self.0.iter().map(|r| r.mask(x, z)));
        }
    }
}

/// Cholesky factor L (lower, row-major) of a symmetric positive-definite `d × d` matrix.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = a[i * d + i] - s;
                if !(v > 0.0 && v.is_finite()) {
                    return None;
                }
                l[i * d + j] = v.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// L⁻¹ of a lower-triangular `d × d` matrix (forward substitution, column by column).
fn invert_lower(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0f64; d * d];
    for col in 0..d {
        for i in col..d {
            let target = if i == col { 1.0 } else { 0.0 };
            let s: f64 = (col..i).map(|k| l[i * d + k] * inv[k * d + col]).sum();
            inv[i * d + col] = (target - s) / l[i * d + i];
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    #[test]
    fn a_fitted_region_recovers_the_gaussian_and_its_anchors_lie_inside_the_ellipsoid() {
        // Coordinates from a known Gaussian: μ = (1, −2, 0.5), L = [[2,0,0],[0.5,1,0],[−1,0.3,0.5]].
        let mut r = rng::stream(4, "region-test", 0);
        let l = [2.0, 0.0, 0.0, 0.5, 1.0, 0.0, -1.0, 0.3, 0.5];
        let mu = [1.0, -2.0, 0.5];
        let mut z = Vec::new();
        for _ in 0..20_000 {
            let u: Vec<f64> = (0..3).map(|_| StandardNormal.sample(&mut r)).collect();
            for a in 0..3 {
                z.push((mu[a] + (0..3).map(|b| l[a * 3 + b] * u[b]).sum::<f64>()) as f32);
            }
        }
        let shape = RegionShape {
            anchor_mass: 0.95,
            anchors: 500,
            lock_space: LockSpace::Coordinate,
            lock_margin: 1.1,
            mask_width: 0.5,
        };
        let region = Region::fit(7, &z, 3, &z, shape, &mut r).unwrap();
        for (m, expected) in region.mean.iter().zip(mu) {
            assert!((m - expected).abs() < 0.05, "{:?}", region.mean);
        }
        // W·L ≈ I.
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| region.whitening[i * 3 + k] * l[k * 3 + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 0.05, "(W L)[{i}][{j}] = {v}");
            }
        }
        assert!((region.radius_anchor - 7.814728f64.sqrt()).abs() < 1e-5);
        assert_eq!(region.anchor_count(), 500);
        let distances: Vec<f64> = region.anchors.chunks(3).map(|a| region.distance(a)).collect();
        assert!(
            distances.iter().all(|&d| d <= region.radius_anchor * (1.0 + 1e-6)),
            "an anchor lies outside"
        );
        // They fill the ellipsoid rather than sitting at its centre: D² of a Gaussian truncated at
        // the 95% radius has mean ≈ 2.7 in three dimensions.
        let mean_d2 = distances.iter().map(|d| d * d).sum::<f64>() / 500.0;
        assert!((2.3..3.1).contains(&mean_d2), "{mean_d2}");
        // The locked ellipsoid holds every training coordinate, and the mask is 0 inside.
        assert!(z.chunks(3).all(|c| region.contains(c, c) && region.mask(c, c) == 0.0));
        let far: Vec<f32> = region.mean.iter().map(|&m| (m + 1e3) as f32).collect();
        assert_eq!(region.mask(&far, &far), 1.0);
        assert_eq!(RegionSet(std::slice::from_ref(&region)).regions(), 1);
    }

    #[test]
    fn the_mask_rises_smoothly_between_the_radii() {
        let region = Region {
            task: 0,
            mean: vec![0.0, 0.0],
            whitening: vec![1.0, 0.0, 0.0, 1.0],
            radius_anchor: 1.0,
            lock: LockTest { input: None, radius: 2.0, mask_width: 0.5 },
            anchors: vec![],
            snapshot: vec![],
            width: 0,
            mean_gates: vec![],
        };
        let x = [0.0f32];
        assert_eq!(region.mask(&x, &[2.0, 0.0]), 0.0);
        assert_eq!(region.mask(&x, &[0.0, 3.0]), 1.0);
        // Half-way: u = 0.5, s = 0.5.
        assert!((region.mask(&x, &[2.5, 0.0]) - 0.5).abs() < 1e-12);
        let mut out = Vec::new();
        RegionSet(std::slice::from_ref(&region)).masks(
            &[0.0; 3],
            &[0.0, 0.0, 2.5, 0.0, 9.0, 9.0],
            3,
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert_eq!((out[0], out[2]), (0.0, 1.0));
    }

    #[test]
    fn an_input_space_lock_tells_a_shifted_input_distribution_apart() {
        // Task A's inputs vary in their first 6 of 10 features and are constant in the rest;
        // task B's vary in the last 6 (as pixels of a permuted image land where another task's
        // are always blank).
        let mut r = rng::stream(5, "region-test", 1);
        let draw = |r: &mut crate::rng::Rng, active: std::ops::Range<usize>| -> Vec<f32> {
            (0..10).map(|j| if active.contains(&j) { StandardNormal.sample(r) } else { 0.0 }).collect()
        };
        let a: Vec<f32> = (0..2000).flat_map(|_| draw(&mut r, 0..6)).collect();
        let b: Vec<f32> = (0..2000).flat_map(|_| draw(&mut r, 4..10)).collect();
        let z = vec![0.0f32; 2000 * 2];
        let z: Vec<f32> = z.iter().enumerate().map(|(i, _)| (i % 7) as f32).collect();
        let shape = RegionShape {
            anchor_mass: 0.95,
            anchors: 4,
            lock_space: LockSpace::Input,
            lock_margin: 1.1,
            mask_width: 0.5,
        };
        let region = Region::fit(0, &z, 2, &a, shape, &mut r).unwrap();
        let zero = [0.0f32, 0.0];
        assert!(a.chunks(10).all(|x| region.contains(x, &zero)), "every training input is protected");
        // B's inputs vary where A's never do: all but a handful (‖x_6..9‖ tiny) are far outside.
        let near = b.chunks(10).filter(|x| region.mask(x, &zero) < 1.0).count();
        assert!(near <= 10, "{near} of 2000 shifted inputs are near the region");
        assert!(b.chunks(10).filter(|x| region.contains(x, &zero)).count() <= 2);
    }
}
