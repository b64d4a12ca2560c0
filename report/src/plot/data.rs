//! What the figures draw, computed from a report's run summaries: each group's finished runs,
//! and statistics over seeds at each point of a series (mean and 95% confidence band, the same
//! Student-t interval as the tables).

use std::collections::{BTreeMap, HashMap};

use crate::{GroupSummary, Report, RunSummary, Summary};

/// A group and its finished runs: the seeds a figure averages.
pub(super) struct Member<'a> {
    /// The group.
    pub group: &'a GroupSummary,
    /// Its finished runs, in report order.
    pub runs: Vec<&'a RunSummary>,
}

/// The report's groups that have finished runs, each with those runs.
pub(super) fn members(report: &Report) -> Vec<Member<'_>> {
    report
        .groups()
        .iter()
        .map(|group| Member {
            group,
            runs: report.runs().iter().filter(|r| r.finished() && group.contains(r)).collect(),
        })
        .filter(|m| !m.runs.is_empty())
        .collect()
}

/// A group's name in legends and titles: the method, its grid point when it has one, and the
/// experiment in comparisons.
pub(super) fn group_label(report: &Report, group: &GroupSummary) -> String {
    let mut label = group.method.clone();
    if !group.grid_text.is_empty() {
        label.push_str(&format!(" ({})", group.grid_text));
    }
    if report.is_comparison() {
        label = format!("{}: {label}", group.experiment);
    }
    label
}

/// One point of a series averaged over seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct BandPoint {
    /// Position on the x axis.
    pub x: f64,
    /// Mean over the seeds that have a value here.
    pub mean: f64,
    /// Mean − 95% CI half-width (the mean itself with fewer than two seeds).
    pub low: f64,
    /// Mean + 95% CI half-width.
    pub high: f64,
}

impl BandPoint {
    /// The point at `x` of `values` (one per seed); `None` without values.
    pub fn of(x: f64, values: &[f64]) -> Option<BandPoint> {
        let s = Summary::of(values);
        let mean = s.mean?;
        let half = s.ci95.unwrap_or(0.0);
        Some(BandPoint { x, mean, low: mean - half, high: mean + half })
    }
}

/// The band over seeds at each index of `series` (one per seed), at x = `x(index)`; indices
/// no seed has are left out.
pub(super) fn band_by_index(series: &[Vec<Option<f64>>], x: impl Fn(usize) -> f64) -> Vec<BandPoint> {
    let len = series.iter().map(Vec::len).max().unwrap_or(0);
    let mut values = Vec::with_capacity(series.len());
    (0..len)
        .filter_map(|i| {
            values.clear();
            values
                .extend(series.iter().filter_map(|s| s.get(i).copied().flatten()).filter(|v| v.is_finite()));
            BandPoint::of(x(i), &values)
        })
        .collect()
}

/// Mean accuracy of each accuracy-matrix entry over `runs`, keyed by `(after_task, on_task)`
/// (`after_task` `None` for the untrained network's b_j); entries without accuracy
/// (regression) are left out.
pub(super) fn mean_entries(runs: &[&RunSummary]) -> HashMap<(Option<usize>, usize), f64> {
    let mut sums: HashMap<(Option<usize>, usize), (f64, u32)> = HashMap::new();
    for run in runs {
        for e in &run.evals {
            if let Some(acc) = e.accuracy.filter(|a| a.is_finite()) {
                let slot = sums.entry((e.after_task, e.on_task)).or_default();
                slot.0 += acc;
                slot.1 += 1;
            }
        }
    }
    sums.into_iter().map(|(k, (sum, n))| (k, sum / n as f64)).collect()
}

/// The band over seeds at each key of `points` (key, value) pairs from all seeds — a task
/// index, a number of tasks trained — in key order, at x = `x(key)`.
pub(super) fn band_by_key(
    points: impl IntoIterator<Item = (usize, f64)>,
    x: impl Fn(usize) -> f64,
) -> Vec<BandPoint> {
    let mut by_key: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (key, value) in points.into_iter().filter(|(_, v)| v.is_finite()) {
        by_key.entry(key).or_default().push(value);
    }
    by_key.into_iter().filter_map(|(key, values)| BandPoint::of(x(key), &values)).collect()
}

/// The smallest and largest of `values` widened to a range a chart can draw: a small margin
/// around them, and a unit range around a single value. `None` without finite values.
pub(super) fn padded_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 0.5 };
        return Some((lo - pad, hi + pad));
    }
    let pad = (hi - lo) * 0.05;
    Some((lo - pad, hi + pad))
}

/// At most `limit` indices out of `0..n`, evenly spread and always with the first and last:
/// which tasks get a line when a stream has more tasks than a legend can hold.
pub(super) fn spread_indices(n: usize, limit: usize) -> Vec<usize> {
    if n <= limit {
        return (0..n).collect();
    }
    if limit < 2 {
        return (0..limit).collect();
    }
    let mut out: Vec<usize> =
        (0..limit).map(|k| ((k as f64) * (n - 1) as f64 / (limit - 1) as f64).round() as usize).collect();
    out.dedup();
    out
}

/// A file-name-safe form of `text`: lowercase ASCII letters, digits and `-`, runs of anything
/// else collapsed to one `-`, at most 60 characters.
pub(super) fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(60).collect();
    let trimmed = trimmed.trim_end_matches('-').to_string();
    if trimmed.is_empty() {
        "figure".into()
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_use_the_t_interval_and_skip_missing_values() {
        let series = vec![vec![Some(1.0), Some(0.0)], vec![Some(3.0), None], vec![Some(2.0)]];
        let band = band_by_index(&series, |i| i as f64 + 1.0);
        assert_eq!(band.len(), 2);
        assert_eq!((band[0].x, band[0].mean), (1.0, 2.0));
        // std 1, n 3: t_{0.975,2} / √3.
        let half = 4.302_652_729_749_464 / 3f64.sqrt();
        assert!((band[0].high - 2.0 - half).abs() < 1e-9, "{band:?}");
        assert_eq!((band[1].low, band[1].mean, band[1].high), (0.0, 0.0, 0.0), "one seed: no band");
    }

    #[test]
    fn ranges_indices_and_slugs() {
        assert_eq!(padded_range([0.0, 1.0]), Some((-0.05, 1.05)));
        assert_eq!(padded_range([2.0]), Some((1.8, 2.2)));
        assert_eq!(padded_range([f64::NAN]), None);
        assert_eq!(spread_indices(5, 10), [0, 1, 2, 3, 4]);
        assert_eq!(spread_indices(100, 5), [0, 25, 50, 74, 99]);
        assert_eq!(slug("CBP (lr=0.01, rho=1e-4)"), "cbp-lr-0.01-rho-1e-4");
        assert_eq!(slug("///"), "figure");
    }
}
