//! Summary statistics over seeds: mean, sample standard deviation and the Student-t 95%
//! confidence interval. The t quantile inverts statrs' regularised incomplete beta by bisection
//! (any ν > 0 and p ∈ (0, 1)).
//!
//! Not `statrs::distribution::StudentsT::inverse_cdf`: its inverse incomplete beta drifts for
//! large ν (1.95985 at ν = 10⁶, 1.82656 at ν = 10⁷, against 1.95996).

use statrs::function::beta::beta_reg;

/// Mean, spread and count of one metric over a group's runs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Number of values (finished runs with the metric defined).
    pub n: usize,
    /// Arithmetic mean; `None` when n = 0.
    pub mean: Option<f64>,
    /// Sample standard deviation √(Σ(x − x̄)² / (n − 1)); `None` when n < 2.
    pub std: Option<f64>,
    /// Half-width of the 95% confidence interval of the mean, t_{0.975, n−1} · std / √n;
    /// `None` when n < 2.
    pub ci95: Option<f64>,
}

impl Summary {
    /// Summarises `values` (finite numbers).
    pub fn of(values: &[f64]) -> Summary {
        let n = values.len();
        if n == 0 {
            return Summary::default();
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Summary { n, mean: Some(mean), std: None, ci95: None };
        }
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        let std = (ss / (n - 1) as f64).sqrt();
        let ci95 = student_t_quantile(0.975, (n - 1) as f64) * std / (n as f64).sqrt();
        Summary { n, mean: Some(mean), std: Some(std), ci95: Some(ci95) }
    }
}

/// The p-quantile of the Student-t distribution with ν > 0 degrees of freedom: the t with
/// F(t; ν) = p, for p ∈ (0, 1). t_{0.975, ν} is the 95% two-sided critical value.
///
/// F(t; ν) = 1 − ½·I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0: for p > ½ this solves I_x(ν/2, ½) = 2(1 − p)
/// for x by bisection (I_x is increasing in x) to the resolution of f64, then
/// t = √(ν(1 − x)/x); quantiles below ½ follow by symmetry.
pub fn student_t_quantile(p: f64, nu: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "a quantile needs p in (0, 1), got {p}");
    assert!(nu > 0.0, "Student t needs positive degrees of freedom, got {nu}");
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -student_t_quantile(1.0 - p, nu);
    }
    let target = 2.0 * (1.0 - p);
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..2_000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if beta_reg(nu / 2.0, 0.5, mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let x = 0.5 * (lo + hi);
    (nu * (1.0 - x) / x).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_published_values() {
        // Standard tables (e.g. NIST/SEMATECH e-Handbook, Table 1.3.6.7.2), to 1e-3.
        for (nu, t) in [(1.0, 12.706), (2.0, 4.303), (4.0, 2.776), (29.0, 2.045)] {
            let q = student_t_quantile(0.975, nu);
            assert!((q - t).abs() < 1e-3, "t_0.975,{nu} = {q}, expected {t}");
        }
        // More digits (R: qt(0.975, df)).
        for (nu, t) in [(1.0, 12.706_204_736_174_71), (4.0, 2.776_445_105_197_8), (29.0, 2.045_229_642_132_7)]
        {
            let q = student_t_quantile(0.975, nu);
            assert!((q - t).abs() < 1e-9, "t_0.975,{nu} = {q}, expected {t}");
        }
    }

    #[test]
    fn t_quantiles_match_closed_forms() {
        for p in [0.6, 0.9, 0.975, 0.995, 0.999_9] {
            // ν = 1 (Cauchy): tan(π(p − ½)).
            let cauchy = (std::f64::consts::PI * (p - 0.5)).tan();
            let q = student_t_quantile(p, 1.0);
            assert!((q - cauchy).abs() < 1e-9 * cauchy.max(1.0), "{p}: {q} vs {cauchy}");
            // ν = 2: (2p − 1) / √(2p(1 − p)).
            let two = (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
            let q = student_t_quantile(p, 2.0);
            assert!((q - two).abs() < 1e-9 * two.max(1.0), "{p}: {q} vs {two}");
            assert!((student_t_quantile(1.0 - p, 2.0) + two).abs() < 1e-9 * two.max(1.0));
        }
        assert_eq!(student_t_quantile(0.5, 3.0), 0.0);
        // Large ν tends to the normal quantile 1.959963984540054.
        assert!((student_t_quantile(0.975, 1e7) - 1.959_963_984_540_054).abs() < 1e-6);
        assert!((student_t_quantile(0.975, 1e6) - 1.959_963_984_540_054).abs() < 1e-5);
    }

    #[test]
    fn summaries_match_hand_computed_values() {
        // 0.90, 0.92, 0.94: mean 0.92; deviations ±0.02, 0 → std = √(0.0008/2) = 0.02;
        // CI = t_{0.975,2} · 0.02 / √3 with t_{0.975,2} = 0.95 / √(2 · 0.975 · 0.025)
        // = 4.302652729749464 (closed form for ν = 2).
        let s = Summary::of(&[0.90, 0.92, 0.94]);
        assert_eq!(s.n, 3);
        assert!((s.mean.unwrap() - 0.92).abs() < 1e-15);
        assert!((s.std.unwrap() - 0.02).abs() < 1e-15);
        assert!((s.ci95.unwrap() - 0.049_682_754_235_006_62).abs() < 1e-12, "{:?}", s.ci95);
        let one = Summary::of(&[0.5]);
        assert_eq!(one, Summary { n: 1, mean: Some(0.5), std: None, ci95: None });
        assert_eq!(Summary::of(&[]), Summary::default());
    }
}
