//! Special functions the weight fields' χ² regions need: the χ² quantile (the anchors' radius)
//! and the ln Γ under it. The report's Student-t quantiles come from `statrs`.
//!
//! Kept rather than `statrs`: `radius_anchor` goes into every `niwf.commit` event to the last bit,
//! and statrs' χ² quantile (or a bisection over its incomplete Γ) lands a few ulps away, so
//! recorded runs would change; its `ChiSquared::inverse_cdf` is also only ~1e-10 accurate
//! (k = 2, p = 0.95). The tests prove these against closed forms, tables and (to 1e-12) statrs.

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, nine coefficients; relative error
/// below 1e-14), with the reflection formula for x < ½.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Γ(x)Γ(1−x) = π / sin(πx)
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The `p` quantile of the χ² distribution with `k` degrees of freedom: the x with
/// P(k/2, x/2) = p, P the regularised lower incomplete gamma function, by bisection.
pub fn chi_square_quantile(k: usize, p: f64) -> f64 {
    let a = k as f64 / 2.0;
    let (mut lo, mut hi) = (0.0f64, (k as f64).max(1.0));
    while lower_gamma_regularized(a, hi / 2.0) < p {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if lower_gamma_regularized(a, mid / 2.0) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// P(a, x) = γ(a, x) / Γ(a): a series for x < a + 1, a continued fraction (modified Lentz)
/// otherwise (Numerical Recipes §6.2).
fn lower_gamma_regularized(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        sum * log_prefix.exp()
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        1.0 - log_prefix.exp() * h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::distribution::{ChiSquared, ContinuousCDF};

    #[test]
    fn ln_gamma_matches_closed_forms() {
        // ln Γ at integers ((n−1)!), at ½ (Γ(½) = √π) and at ¼ (Γ(¼) = 3.6256099082219083…).
        let mut factorial = 1.0f64;
        for n in 1..=20 {
            assert!((ln_gamma(n as f64) - factorial.ln()).abs() < 1e-13 * factorial.ln().max(1.0), "{n}");
            factorial *= n as f64;
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        assert!((ln_gamma(0.25) - 3.625_609_908_221_908_f64.ln()).abs() < 1e-13);
        // Γ(x + 1) = x Γ(x), across the reflection boundary too.
        for x in [0.1, 0.3, 0.7, 2.5, 17.25] {
            assert!((ln_gamma(x + 1.0) - ln_gamma(x) - f64::ln(x)).abs() < 1e-12, "{x}");
        }
    }

    #[test]
    fn chi_square_quantiles_match_tables_and_closed_forms() {
        // Standard table values (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.4).
        for (k, p, x) in [
            (1, 0.95, 3.841459),
            (2, 0.95, 5.991465),
            (8, 0.95, 15.507313),
            (8, 0.5, 7.344121),
            (30, 0.99, 50.892181),
        ] {
            let q = chi_square_quantile(k, p);
            assert!((q - x).abs() < 1e-5, "χ²_{k}({p}) = {q}, expected {x}");
        }
        // k = 2 is the exponential with mean 2: x = −2 ln(1 − p).
        for p in [0.1f64, 0.5, 0.9, 0.95, 0.99, 0.999] {
            let exact = -2.0 * (1.0 - p).ln();
            assert!((chi_square_quantile(2, p) - exact).abs() < 1e-13 * exact, "{p}");
        }
    }

    #[test]
    fn chi_square_quantiles_agree_with_statrs() {
        for k in [1, 2, 3, 8, 16, 64, 200] {
            let statrs = ChiSquared::new(k as f64).unwrap();
            for p in [0.05, 0.5, 0.9, 0.95, 0.99] {
                let q = chi_square_quantile(k, p);
                assert!((statrs.cdf(q) - p).abs() < 1e-12, "χ²_{k}({p}) = {q}");
            }
        }
    }
}
