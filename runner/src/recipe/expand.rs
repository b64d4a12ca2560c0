//! A recipe's runs: streams × method entries × grid points × seeds, and the table
//! `clorch validate` prints of them.

use std::collections::{BTreeMap, BTreeSet};

use protocol::{RunSpec, PROTOCOL_VERSION};
use serde_json::Value as Json;

use super::messages::show_value;
use super::types::Recipe;

/// One run of an experiment, ready for the scheduler (which sets `spec.run_dir`).
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRun {
    /// The worker's input; `spec.id` is [`RunSpec::content_id`], so the same configuration
    /// gets the same id in every expansion and finished runs are recognised.
    pub spec: RunSpec,
    /// Name of the stream ([`super::NamedStream::name`]).
    pub stream: String,
    /// Name of the method entry.
    pub method: String,
    /// The run's labels beyond stream, method and seed: its sweep point's values by dotted key
    /// (`network.hidden`) and its method's grid point by parameter name (`lr`), each with its
    /// JSON type (empty when nothing varies). Parameter names have no dots, so the two never
    /// collide.
    pub grid: BTreeMap<String, Json>,
    /// The run's seed.
    pub seed: u64,
    /// Tasks in the run's stream.
    pub tasks: usize,
}

impl Recipe {
    /// The runs, in a stable order: sweep points (the first axis varying slowest), then
    /// streams as written, then method entries as written, then grid points (axes sorted by
    /// name, the first varying slowest; each axis's values in the order written), then seeds
    /// as listed. Ids depend only on a run's content, so editing one method entry changes only
    /// its runs' ids, adding a seed keeps the others', and a sweep that includes the recipe's
    /// own value gives that point's runs the ids they had without the sweep.
    pub fn expand(&self) -> Vec<PlannedRun> {
        let mut runs = Vec::new();
        for point in &self.sweep {
            for stream in &point.streams {
                for method in &point.methods {
                    for grid in method.grid_points() {
                        let spec_method = method.spec(&grid);
                        let mut labels = point.values.clone();
                        labels.extend(grid.iter().map(|(k, v)| (k.clone(), v.clone())));
                        for &seed in &self.seeds {
                            let mut spec = RunSpec {
                                protocol: PROTOCOL_VERSION,
                                id: String::new(),
                                experiment: self.name.clone(),
                                seed,
                                stream: stream.spec.clone(),
                                network: point.network.clone(),
                                method: spec_method.clone(),
                                training: point.training.clone(),
                                eval: point.eval.clone(),
                                checkpoint: point.checkpoint.clone(),
                                run_dir: None,
                            };
                            spec.id = spec.content_id();
                            runs.push(PlannedRun {
                                spec,
                                stream: stream.name.clone(),
                                method: method.name.clone(),
                                grid: labels.clone(),
                                seed,
                                tasks: stream.tasks,
                            });
                        }
                    }
                }
            }
        }
        runs
    }
}

/// A grid point as `lr=0.01 replacement_rate=0.0001`, or `-` when empty.
pub(super) fn render_point(point: &BTreeMap<String, Json>) -> String {
    if point.is_empty() {
        return "-".to_string();
    }
    point.iter().map(|(k, v)| format!("{k}={}", show_value(v))).collect::<Vec<_>>().join(" ")
}

/// The runs as an aligned text table (id, stream, method, grid point, seed), preceded by a
/// count line such as `12 runs: 2 methods × 2 grid points × 3 seeds`.
pub fn plan_table(runs: &[PlannedRun]) -> String {
    let mut rows = vec![["id", "stream", "method", "grid point", "seed"].map(String::from).to_vec()];
    for run in runs {
        rows.push(vec![
            run.spec.id.clone(),
            run.stream.clone(),
            run.method.clone(),
            render_point(&run.grid),
            run.seed.to_string(),
        ]);
    }
    let mut out = count_line(runs);
    out.push('\n');
    out.push_str(&crate::columns::align(&rows));
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `N runs: [W sweep points × ][S streams × ]M methods[ × P grid points] × K seeds`; when the
/// methods have different numbers of grid points, `M methods (G grid points in all)`. A set of
/// runs that is not a full product (a filtered plan) gets just `N runs`.
fn count_line(runs: &[PlannedRun]) -> String {
    let total = plural(runs.len(), "run", "runs");
    // Sweep axes are the labels with dotted keys; the rest is the method's grid point.
    let split = |run: &PlannedRun| -> (String, String) {
        let (sweep, grid): (BTreeMap<String, Json>, BTreeMap<String, Json>) =
            run.grid.clone().into_iter().partition(|(key, _)| key.contains('.'));
        (render_point(&sweep), render_point(&grid))
    };
    let sweep: BTreeSet<String> = runs.iter().map(|r| split(r).0).collect();
    let streams: BTreeSet<&str> = runs.iter().map(|r| r.stream.as_str()).collect();
    let seeds: BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    let mut points: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for run in runs {
        points.entry(run.method.as_str()).or_default().insert(split(run).1);
    }
    let all_points: usize = points.values().map(BTreeSet::len).sum();
    if runs.is_empty() || sweep.len() * streams.len() * all_points * seeds.len() != runs.len() {
        return total;
    }
    let mut factors = Vec::new();
    if sweep.len() > 1 {
        factors.push(plural(sweep.len(), "sweep point", "sweep points"));
    }
    if streams.len() > 1 {
        factors.push(plural(streams.len(), "stream", "streams"));
    }
    let per_method: BTreeSet<usize> = points.values().map(BTreeSet::len).collect();
    let methods = plural(points.len(), "method", "methods");
    match per_method.iter().next() {
        Some(&p) if per_method.len() == 1 && p == 1 => factors.push(methods),
        Some(&p) if per_method.len() == 1 => {
            factors.push(methods);
            factors.push(plural(p, "grid point", "grid points"));
        }
        _ => factors.push(format!("{methods} ({all_points} grid points in all)")),
    }
    factors.push(plural(seeds.len(), "seed", "seeds"));
    format!("{total}: {}", factors.join(" × "))
}
