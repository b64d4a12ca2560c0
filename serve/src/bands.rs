//! Curves over seeds: the mean and a 95% confidence band at each point, as `clorch report`
//! gives for its tables (Student t over seeds), thinned to a size a browser draws at once.

use serde::Serialize;

/// At most this many points per curve leave the server; longer curves are averaged in
/// consecutive buckets. The page's charts are 520 pixels wide, and a running experiment's
/// view is sent every second: 400 points keep it to a few hundred kilobytes.
pub const MAX_POINTS: usize = 400;

/// A curve over seeds, point by point.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Band {
    /// Position of each point (index of the bin or task, or the bucket's first index).
    pub x: Vec<f64>,
    /// Mean over the runs that have the point.
    pub mean: Vec<Option<f64>>,
    /// Half-width of the 95% confidence interval of the mean (`None` with fewer than 2 runs).
    pub half: Vec<Option<f64>>,
    /// Runs that have the point.
    pub n: Vec<usize>,
}

/// The band of `curves` (one per run, index-aligned; NaN or missing = no value), with `x`
/// giving each index's position (`None`: the index itself).
pub fn band(curves: &[Vec<f64>], x: Option<&[f64]>) -> Band {
    let len = curves.iter().map(Vec::len).max().unwrap_or(0);
    let per_bucket = len.div_ceil(MAX_POINTS).max(1);
    let mut out = Band::default();
    // t quantiles by run count: computing one is ~10 µs, and a band has hundreds of points
    // with the same few counts.
    let mut quantiles: Vec<Option<f64>> = vec![None; curves.len() + 1];
    let mut start = 0;
    while start < len {
        let end = (start + per_bucket).min(len);
        // One value per run for the bucket: its mean over the bucket's finite points.
        let values: Vec<f64> = curves
            .iter()
            .filter_map(|c| {
                let finite: Vec<f64> =
                    c.get(start..end.min(c.len()))?.iter().copied().filter(|v| v.is_finite()).collect();
                (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
            })
            .collect();
        out.x.push(x.and_then(|x| x.get(end - 1).copied()).unwrap_or((end - 1) as f64));
        out.n.push(values.len());
        let t = *quantiles[values.len()].get_or_insert_with(|| t_975(values.len()));
        let (mean, half) = mean_and_half_width_with(&values, t);
        out.mean.push(mean);
        out.half.push(half);
        start = end;
    }
    out
}

/// t₀.₉₇₅ with n − 1 degrees of freedom (NaN for n < 2, where there is no interval).
fn t_975(n: usize) -> f64 {
    if n < 2 {
        f64::NAN
    } else {
        report::student_t_quantile(0.975, (n - 1) as f64)
    }
}

/// The mean and the 95% half-width t · s / √n of `values`, with `t` = t₀.₉₇₅,ₙ₋₁.
fn mean_and_half_width_with(values: &[f64], t: f64) -> (Option<f64>, Option<f64>) {
    let n = values.len();
    if n == 0 {
        return (None, None);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (Some(mean), None);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (Some(mean), Some(t * var.sqrt() / (n as f64).sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_band_is_the_mean_and_student_t_interval_per_point() {
        let b = band(&[vec![1.0, 2.0], vec![3.0, f64::NAN], vec![5.0]], None);
        assert_eq!(b.x, [0.0, 1.0]);
        assert_eq!(b.n, [3, 1]);
        assert_eq!(b.mean, [Some(3.0), Some(2.0)]);
        // s = 2, n = 3, t(0.975, 2) = 4.303: 4.303 · 2 / √3.
        let half = b.half[0].unwrap();
        assert!((half - 4.302_652_7 * 2.0 / 3f64.sqrt()).abs() < 1e-6, "{half}");
        assert_eq!(b.half[1], None);
    }

    #[test]
    fn long_curves_are_thinned_by_bucket_means() {
        let curve: Vec<f64> = (0..10_000).map(f64::from).collect();
        let b = band(&[curve], None);
        assert!(b.x.len() <= MAX_POINTS, "{}", b.x.len());
        // 25 points per bucket: the first bucket's mean is 12.
        assert_eq!(b.mean[0], Some(12.0));
        assert_eq!(b.x[0], 24.0);
    }
}
