//! Summary statistics over seeds: mean, sample standard deviation and the Student-t 95%
//! confidence interval, with the t quantile computed from first principles.
//!
//! The quantile inverts the Student-t distribution function
//! F(t; ν) = 1 − ½·I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0, where I_x(a, b) is the regularised
//! incomplete beta function, evaluated with its continued fraction (modified Lentz) and
//! inverted by bisection to machine precision. No tables: any ν > 0 and p ∈ (0, 1) work.

pub use metrics::ln_gamma;

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

/// The regularised incomplete beta function I_x(a, b) for a, b > 0 and x ∈ [0, 1].
///
/// Uses the continued fraction of Numerical Recipes §6.4 (modified Lentz), on x directly
/// when x < (a+1)/(a+b+2) and through I_x(a, b) = 1 − I_{1−x}(b, a) otherwise, where the
/// fraction converges fast.
pub fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-16;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step.
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        // Odd step.
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// The Student-t distribution function F(t; ν) with ν > 0 degrees of freedom.
pub fn student_t_cdf(t: f64, nu: f64) -> f64 {
    let tail = 0.5 * regularized_incomplete_beta(nu / 2.0, 0.5, nu / (nu + t * t));
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The p-quantile of the Student-t distribution with ν > 0 degrees of freedom: the t with
/// F(t; ν) = p, for p ∈ (0, 1). t_{0.975, ν} is the 95% two-sided critical value.
///
/// For p > ½ it solves I_x(ν/2, ½) = 2(1 − p) for x by bisection (I_x is increasing in x) to
/// the resolution of f64, then t = √(ν(1 − x)/x); quantiles below ½ follow by symmetry.
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
    let (a, b) = (nu / 2.0, 0.5);
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..2_000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if regularized_incomplete_beta(a, b, mid) < target {
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
    }

    #[test]
    fn the_distribution_function_inverts_the_quantile() {
        for nu in [1.0, 2.5, 7.0, 100.0] {
            for p in [0.01, 0.3, 0.5, 0.8, 0.975] {
                let t = student_t_quantile(p, nu);
                assert!((student_t_cdf(t, nu) - p).abs() < 1e-12, "ν={nu} p={p}");
            }
        }
    }

    #[test]
    fn incomplete_beta_matches_identities() {
        for x in [0.0, 0.1, 0.5, 0.93, 1.0] {
            assert!((regularized_incomplete_beta(1.0, 1.0, x) - x).abs() < 1e-14);
            assert!((regularized_incomplete_beta(3.0, 1.0, x) - x.powi(3)).abs() < 1e-14);
            let sym =
                regularized_incomplete_beta(2.5, 4.0, x) + regularized_incomplete_beta(4.0, 2.5, 1.0 - x);
            assert!((sym - 1.0).abs() < 1e-13);
        }
        assert!((regularized_incomplete_beta(6.0, 6.0, 0.5) - 0.5).abs() < 1e-14);
        // ln Γ at integers and at ½ (Γ(½) = √π).
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        assert!((ln_gamma(0.25) - 3.625_609_908_221_908_f64.ln()).abs() < 1e-13);
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
