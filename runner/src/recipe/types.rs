//! The validated recipe: what `clorch run` schedules and what the store records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use protocol::{CheckpointSpec, EvalSpec, MethodSpec, NetworkSpec, StreamSpec, TrainingSpec};
use serde_json::Value as Json;

use super::overrides::Override;
use super::path::KeyPath;

/// A recipe that parsed and passed every check: the experiment's streams, network, methods
/// with their hyper-parameter grids, seeds and schedules, plus how to run it. Built by
/// [`Recipe::load`] or [`Recipe::from_text`]; [`Recipe::expand`] turns it into runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// The experiment's name (letters, digits, `_`, `.`, `-`): its results folder and the
    /// `experiment` of every run.
    pub name: String,
    /// Free text from the recipe.
    pub description: Option<String>,
    /// The recipe file, as given.
    pub path: PathBuf,
    /// The recipe file's text, unchanged (overrides are not applied to it), kept for the
    /// experiment's metadata.
    pub text: String,
    /// BLAKE3 of [`Recipe::text`], hex: tells whether the file changed between two
    /// `clorch run`s of one experiment.
    pub text_hash: String,
    /// The command-line overrides applied on top of the text, in order.
    pub overrides: Vec<Override>,
    /// The recipe as it runs: [`Recipe::text`] when there are no overrides, else the tree with
    /// the overrides applied (and `-m` comma lists in its `sweep:` section), as YAML under a
    /// comment naming the overrides. What reports show as the experiment's recipe.
    pub effective_text: String,
    /// Results folder: `output:` as written (relative to the current directory), or
    /// `results/<name>`.
    pub output: PathBuf,
    /// The recipe at each point of its sweep, in sweep order (the first axis varying slowest);
    /// one point, with no values, when the recipe sweeps nothing.
    pub sweep: Vec<SweepPoint>,
    /// The seeds every configuration runs with; at least one, no repeats.
    pub seeds: Vec<u64>,
    /// Workers at once; `None`: as many as the machine has cores (the scheduler decides).
    pub parallel: Option<usize>,
    /// Attempts per run before it is recorded as failed (≥ 1; default 3).
    pub max_attempts: u32,
    /// Wall-clock limit of one attempt, if any.
    pub timeout: Option<Duration>,
    /// A worker that emits nothing for this long is presumed hung, killed and retried
    /// (default 10 minutes).
    pub heartbeat: Duration,
    /// Settings of the SLURM executor, when the recipe has a `slurm:` section.
    pub slurm: Option<SlurmSettings>,
    /// Path each command-line override set, and who set it: later problems
    /// ([`Recipe::error_at`]) blame the override rather than the file's line.
    pub(super) applied: Vec<(KeyPath, super::load::Blame)>,
}

/// What the runs of one sweep point train: the parts of the recipe a sweep can vary.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// The point's value of each swept key (dotted, as written: `network.hidden`), with its
    /// JSON type; empty without a sweep. Method-parameter axes are not here: they are grid
    /// axes of their entries.
    pub values: BTreeMap<String, Json>,
    /// The task streams, in the recipe's order; at least one.
    pub streams: Vec<NamedStream>,
    /// The learner's network.
    pub network: NetworkSpec,
    /// Mini-batching.
    pub training: TrainingSpec,
    /// The method entries, in the recipe's order; at least one, names unique.
    pub methods: Vec<MethodEntry>,
    /// What is measured, and when.
    pub eval: EvalSpec,
    /// Checkpoint cadence.
    pub checkpoint: CheckpointSpec,
}

/// One task stream of a recipe and the name its runs are grouped by.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedStream {
    /// The entry's `name` under `streams:`, or the stream's kind for a single `stream:`.
    pub name: String,
    /// Where the stream is in the recipe (`stream`, `streams[1]`), for messages about it.
    pub key: KeyPath,
    /// The stream, with a relative data folder resolved against the recipe file's folder.
    pub spec: StreamSpec,
    /// Tasks the stream yields (the worker's answer, asked once when the recipe is loaded).
    pub tasks: usize,
}

/// One entry of `methods:`: a method kind with fixed parameters and grid axes.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodEntry {
    /// The entry's name: its label in tables and its handle in overrides
    /// (`methods.<name>.lr=…`).
    pub name: String,
    /// The registered method kind (the name when the entry gives no `kind`).
    pub kind: String,
    /// Parameters with one value (a one-element list counts as one value: that is how a
    /// list-valued parameter is written).
    pub fixed: BTreeMap<String, Json>,
    /// Parameters with several values (grid axes), values in the order written, none repeated.
    pub axes: BTreeMap<String, Vec<Json>>,
    /// The external worker that trains this entry; `None`: the built-in worker.
    pub worker: Option<protocol::WorkerCommand>,
}

impl MethodEntry {
    /// The grid points, in lexicographic order of the axes sorted by name, each axis's values
    /// in the order written (the first axis varies slowest). One empty point when the entry
    /// has no axes.
    pub fn grid_points(&self) -> Vec<BTreeMap<String, Json>> {
        let mut points = vec![BTreeMap::new()];
        for (key, values) in &self.axes {
            points = points
                .into_iter()
                .flat_map(|point| {
                    values.iter().map(move |value| {
                        let mut point = point.clone();
                        point.insert(key.clone(), value.clone());
                        point
                    })
                })
                .collect();
        }
        points
    }

    /// The method spec of one grid point: the fixed parameters plus the point's.
    pub fn spec(&self, point: &BTreeMap<String, Json>) -> MethodSpec {
        let mut params = self.fixed.clone();
        params.extend(point.iter().map(|(k, v)| (k.clone(), v.clone())));
        MethodSpec { name: self.name.clone(), kind: self.kind.clone(), params, worker: self.worker.clone() }
    }
}

/// How the SLURM executor submits runs (`sbatch` options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmSettings {
    /// `--partition`, if given.
    pub partition: Option<String>,
    /// `--account`, if given.
    pub account: Option<String>,
    /// `--time` limit per job, if given (see [`super::slurm_time`] for sbatch's format).
    pub time: Option<Duration>,
    /// `--cpus-per-task` (default 1).
    pub cpus: u32,
    /// `--mem`, as written (`2G`), if given.
    pub mem: Option<String>,
    /// `--gres` (generic resources: `gpu:1`, `gpu:a100:2`), if given — what an external GPU
    /// worker asks for.
    pub gres: Option<String>,
    /// `--gpus-per-task` (`1`, `a100:1`), if given.
    pub gpus_per_task: Option<String>,
    /// `--constraint` (node features: `a100`, `v100|a100`), if given.
    pub constraint: Option<String>,
    /// Further `sbatch` flags, passed as written.
    pub extra: Vec<String>,
    /// Seconds before the time limit at which SLURM signals the worker to checkpoint and stop
    /// (`--signal`; default 120).
    pub signal_seconds: u64,
}

impl Default for SlurmSettings {
    /// What a recipe without a `slurm:` section gets: one CPU per task, the cluster's defaults
    /// for everything else, the checkpoint signal 120 s before the time limit.
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            account: None,
            time: None,
            cpus: 1,
            mem: None,
            gres: None,
            gpus_per_task: None,
            constraint: None,
            extra: Vec::new(),
            signal_seconds: super::file::DEFAULT_SIGNAL_SECONDS,
        }
    }
}
