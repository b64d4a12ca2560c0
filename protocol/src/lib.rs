//! The wire format between the orchestrator and a worker.
//!
//! A worker reads one [`RunSpec`] (JSON) and writes [`Event`]s, one JSON object per line, to its
//! standard output and to `events.jsonl` in its run folder. The orchestrator depends on this
//! module only — never on the model code — so the two sides agree on data, not on internals.
//!
//! # Events
//!
//! Every line looks like `{"run":"3f9a…","seq":12,"event":"eval",…}`:
//!
//! * `run` — the run id, the same as [`RunSpec::id`];
//! * `seq` — 0, 1, 2, … without gaps within a run. A resumed worker continues the numbering from
//!   its checkpoint and re-emits exactly the events an uninterrupted run would have emitted
//!   after that point, so `(run, seq)` identifies an event's content: storing an event twice
//!   changes nothing;
//! * `event` — the kind, one of the variants of [`EventBody`] in snake case; the remaining
//!   fields are those of that variant.
//!
//! Events contain no wall-clock times: the same spec yields the same bytes on every machine.
//! The orchestrator stamps times when it receives events.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Version of the [`RunSpec`] / [`Event`] format. A worker refuses specs of another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Exit statuses of `clorch worker`, part of the protocol: they tell the orchestrator whether a
/// retry can help.
pub mod exit {
    /// The run finished its stream.
    pub const FINISHED: i32 = 0;
    /// The run failed for a reason a retry cannot fix (diverged, a method error); a `failed`
    /// event says why.
    pub const FAILED: i32 = 1;
    /// The spec or its data is unusable (bad spec, missing or malformed data file); a retry
    /// cannot fix it either.
    pub const BAD_SPEC: i32 = 2;
    /// A stop was requested (SIGTERM, SIGINT, SIGUSR1); the worker checkpointed and the run can
    /// resume. Not a failure: it does not use up an attempt.
    pub const INTERRUPTED: i32 = 75;
    // Any other status, or death by a signal, is a crash: the orchestrator retries from the
    // last checkpoint.
}

/// Everything a worker needs to train one run: the task stream, the network, the continual
/// method, the seed and the evaluation and checkpoint schedules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Short content hash identifying the run (see [`RunSpec::content_id`]). Carried by every
    /// event.
    pub id: String,
    /// Name of the experiment the run belongs to (informational).
    #[serde(default)]
    pub experiment: String,
    /// Root seed. Every random stream of the run (initialisation, data order, task
    /// permutations, method noise) is derived from it and a fixed purpose label.
    pub seed: u64,
    /// The sequence of tasks.
    pub stream: StreamSpec,
    /// The learner's network.
    pub network: NetworkSpec,
    /// The continual-learning method and its hyper-parameters.
    pub method: MethodSpec,
    /// Mini-batch size and passes per task.
    #[serde(default)]
    pub training: TrainingSpec,
    /// What is measured, and when.
    #[serde(default)]
    pub eval: EvalSpec,
    /// How often the worker checkpoints. Not part of the run's identity: the numbers of a run do
    /// not depend on it.
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// Folder for `events.jsonl`, checkpoints and the worker's own files. Without it the worker
    /// only prints events and cannot checkpoint or resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
}

impl RunSpec {
    /// The id a spec's content determines: the first 12 hex digits of the BLAKE3 hash of the
    /// canonical JSON of everything that can change the run's numbers (stream, network, method,
    /// training, evaluation, seed). The experiment name, run folder and checkpoint cadence are
    /// left out, so renaming an experiment or checkpointing more often keeps the finished runs.
    pub fn content_id(&self) -> String {
        #[derive(Serialize)]
        struct Identity<'a> {
            protocol: u32,
            seed: u64,
            stream: &'a StreamSpec,
            network: &'a NetworkSpec,
            method: &'a MethodSpec,
            training: &'a TrainingSpec,
            eval: &'a EvalSpec,
        }
        // The data's fingerprint, not its path, identifies the data.
        let mut stream = self.stream.clone();
        if let Some(dir) = stream.data_dir_mut() {
            *dir = PathBuf::new();
        }
        let identity = Identity {
            protocol: self.protocol,
            seed: self.seed,
            stream: &stream,
            network: &self.network,
            method: &self.method,
            training: &self.training,
            eval: &self.eval,
        };
        // serde_json's Map is a BTreeMap (no `preserve_order`), so parameter order is canonical.
        let bytes = serde_json::to_vec(&identity).expect("a RunSpec always serialises");
        blake3::hash(&bytes).to_hex()[..12].to_string()
    }
}

/// A task stream. Each variant documents the paper setting it follows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StreamSpec {
    /// Permuted MNIST: every task applies its own fixed random permutation to the pixels of the
    /// same digits (Goodfellow et al. 2013; Kirkpatrick et al. 2017).
    PermutedMnist(PermutedMnistSpec),
    /// Online permuted MNIST (Dohare et al. 2024): every example is seen once, in batches of
    /// one, and the learner is not told where tasks begin; online accuracy is the prediction
    /// made before each example's update, averaged per task.
    OnlinePermutedMnist(PermutedMnistSpec),
    /// Split MNIST: disjoint groups of classes, one group per task (Zenke et al. 2017).
    SplitMnist(SplitMnistSpec),
    /// Slowly-changing regression (Dohare et al. 2024): 20 input bits, 15 of which change
    /// slowly; the target is a fixed random network of linear threshold units.
    SlowlyChangingRegression(SlowlyChangingRegressionSpec),
    /// A synthetic Gaussian-cluster classification problem whose input is permuted or rotated
    /// per task; needs no data files.
    SyntheticPermuted(SyntheticPermutedSpec),
}

impl StreamSpec {
    /// The stream's kind as written in recipes and events (`permuted_mnist`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            StreamSpec::PermutedMnist(_) => "permuted_mnist",
            StreamSpec::OnlinePermutedMnist(_) => "online_permuted_mnist",
            StreamSpec::SplitMnist(_) => "split_mnist",
            StreamSpec::SlowlyChangingRegression(_) => "slowly_changing_regression",
            StreamSpec::SyntheticPermuted(_) => "synthetic_permuted",
        }
    }

    /// Whether the stream follows the online protocol: each example once, batch size 1, and
    /// no task-boundary signal to the learner.
    pub fn is_online(&self) -> bool {
        matches!(self, StreamSpec::OnlinePermutedMnist(_) | StreamSpec::SlowlyChangingRegression(_))
    }

    /// Number of tasks the stream yields.
    pub fn tasks(&self) -> usize {
        match self {
            StreamSpec::PermutedMnist(s) | StreamSpec::OnlinePermutedMnist(s) => s.tasks,
            StreamSpec::SplitMnist(s) => s.groups.len(),
            StreamSpec::SlowlyChangingRegression(s) => s.tasks,
            StreamSpec::SyntheticPermuted(s) => s.tasks,
        }
    }

    /// Data folder the stream reads, if any, mutable.
    pub fn data_dir_mut(&mut self) -> Option<&mut PathBuf> {
        match self {
            StreamSpec::PermutedMnist(s) | StreamSpec::OnlinePermutedMnist(s) => Some(&mut s.data_dir),
            StreamSpec::SplitMnist(s) => Some(&mut s.data_dir),
            _ => None,
        }
    }

    /// The data fingerprint the orchestrator recorded, if any.
    pub fn fingerprint_mut(&mut self) -> Option<&mut Option<String>> {
        match self {
            StreamSpec::PermutedMnist(s) | StreamSpec::OnlinePermutedMnist(s) => Some(&mut s.fingerprint),
            StreamSpec::SplitMnist(s) => Some(&mut s.fingerprint),
            _ => None,
        }
    }

    /// Data folder the stream reads, if any.
    pub fn data_dir(&self) -> Option<&PathBuf> {
        match self {
            StreamSpec::PermutedMnist(s) | StreamSpec::OnlinePermutedMnist(s) => Some(&s.data_dir),
            StreamSpec::SplitMnist(s) => Some(&s.data_dir),
            _ => None,
        }
    }
}

/// Parameters of (online) permuted MNIST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermutedMnistSpec {
    /// Folder with `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    /// `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` (MNIST or
    /// Fashion-MNIST, full or subset).
    pub data_dir: PathBuf,
    /// Fingerprint of the data files' bytes (`workers::stream::MnistFiles::fingerprint`),
    /// filled in by the orchestrator when it plans the run. It stands for the data in the
    /// run's identity (the folder's path does not), and a worker refuses files that no longer
    /// match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Number of tasks (permutations).
    pub tasks: usize,
    /// Leave the first task's pixels in their natural order.
    #[serde(default)]
    pub first_unpermuted: bool,
    /// Use only the first `n` training images (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// Use only the first `n` test images (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_examples: Option<usize>,
}

/// Parameters of split MNIST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitMnistSpec {
    /// Folder with the four MNIST IDX files (see [`PermutedMnistSpec::data_dir`]).
    pub data_dir: PathBuf,
    /// Fingerprint of the data files' bytes (`workers::stream::MnistFiles::fingerprint`),
    /// filled in by the orchestrator when it plans the run. It stands for the data in the
    /// run's identity (the folder's path does not), and a worker refuses files that no longer
    /// match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The class groups, one task each, disjoint; default `[[0,1],[2,3],[4,5],[6,7],[8,9]]`.
    #[serde(default = "default_split_groups")]
    pub groups: Vec<Vec<u8>>,
    /// Task-incremental (one output head per task; the task id selects the head) or
    /// class-incremental (one shared head over all classes).
    #[serde(default)]
    pub setting: SplitSetting,
    /// Use only the first `n` training images (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// Use only the first `n` test images (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_examples: Option<usize>,
}

fn default_split_groups() -> Vec<Vec<u8>> {
    (0..5).map(|g| vec![2 * g, 2 * g + 1]).collect()
}

/// The two evaluation settings of split MNIST (van de Ven & Tolias 2019).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSetting {
    /// One head per task; the task id selects it at training and test time.
    #[default]
    TaskIncremental,
    /// One shared head over all classes; no task id at test time.
    ClassIncremental,
}

/// Parameters of slowly-changing regression (Dohare et al. 2024, Methods).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowlyChangingRegressionSpec {
    /// Number of tasks; a task is the `flip_every` examples between two changes of the slow
    /// bits, so the stream has `tasks × flip_every` examples.
    pub tasks: usize,
    /// Input bits m (default 20).
    #[serde(default = "default_regression_inputs")]
    pub inputs: usize,
    /// How many of them change slowly (default 15); the others are redrawn every example.
    #[serde(default = "default_regression_slow_bits")]
    pub slow_bits: usize,
    /// Examples between changes of the slow bits, T (default 10,000).
    #[serde(default = "default_regression_flip_every")]
    pub flip_every: usize,
    /// What changes every T examples: one slow bit chosen at random, or all of them redrawn.
    #[serde(default)]
    pub flip: FlipMode,
    /// Linear-threshold units of the target network (default 100).
    #[serde(default = "default_regression_target_hidden")]
    pub target_hidden: usize,
    /// β of the threshold θ_i = β·(m+1) − S_i (default 0.7).
    #[serde(default = "default_regression_beta")]
    pub beta: f64,
    /// Held-out examples per task for evaluation (default 1,000).
    #[serde(default = "default_regression_test_examples")]
    pub test_examples: usize,
}

fn default_regression_inputs() -> usize {
    20
}
fn default_regression_slow_bits() -> usize {
    15
}
fn default_regression_flip_every() -> usize {
    10_000
}
fn default_regression_target_hidden() -> usize {
    100
}
fn default_regression_beta() -> f64 {
    0.7
}
fn default_regression_test_examples() -> usize {
    1_000
}

/// How the slow bits of slowly-changing regression change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipMode {
    /// One slow bit, chosen uniformly at random, flips (the paper's setting).
    #[default]
    One,
    /// All slow bits are redrawn.
    All,
}

/// Parameters of the synthetic Gaussian-cluster stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticPermutedSpec {
    /// Number of tasks.
    pub tasks: usize,
    /// Classes (default 10).
    #[serde(default = "default_synthetic_classes")]
    pub classes: usize,
    /// Input dimension (default 64).
    #[serde(default = "default_synthetic_dim")]
    pub dim: usize,
    /// Training examples per class and task (default 100).
    #[serde(default = "default_synthetic_train")]
    pub train_per_class: usize,
    /// Held-out examples per class and task (default 50).
    #[serde(default = "default_synthetic_test")]
    pub test_per_class: usize,
    /// Standard deviation of each cluster around its centre; centres have unit-variance
    /// coordinates. Default 2.5: at the other defaults the Bayes rule (nearest true centre)
    /// is right about 92% of the time and a 64-64-10 MLP reaches about 80% after one epoch
    /// (SGD, lr 0.1, batch 32); at 1.0 the clusters in 64 dimensions barely overlap and both
    /// reach 100%.
    #[serde(default = "default_synthetic_noise")]
    pub noise: f64,
    /// How each task transforms the input.
    #[serde(default)]
    pub transform: InputTransform,
}

fn default_synthetic_classes() -> usize {
    10
}
fn default_synthetic_dim() -> usize {
    64
}
fn default_synthetic_train() -> usize {
    100
}
fn default_synthetic_test() -> usize {
    50
}
fn default_synthetic_noise() -> f64 {
    2.5
}

/// Per-task input transformation of the synthetic stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputTransform {
    /// A random permutation of the input coordinates.
    #[default]
    Permute,
    /// A random orthogonal rotation of the input space.
    Rotate,
}

/// The learner's network: a multi-layer perceptron whose sizes are known only at run time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Widths of the hidden layers; input and output sizes come from the stream.
    pub hidden: Vec<usize>,
    /// Hidden-layer non-linearity.
    #[serde(default)]
    pub activation: Activation,
    /// Output heads: one shared head, or one head per task (task-incremental learning).
    /// Streams that are task-incremental by definition (split MNIST in that setting) use one
    /// head per task whatever this says.
    #[serde(default)]
    pub heads: Heads,
    /// Which implementation computes gradients. Both give the same numbers up to float
    /// rounding; `fused` is the fast default, `autograd` the dfdx reference.
    #[serde(default)]
    pub engine: Engine,
}

/// Hidden-layer non-linearities; initialisation uses each one's gain (PyTorch's
/// `calculate_gain`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x); gain √2.
    #[default]
    Relu,
    /// tanh x; gain 5/3.
    Tanh,
    /// 1 / (1 + e^−x); gain 1.
    Sigmoid,
    /// max(0, x) + 0.01·min(0, x); gain √(2 / (1 + 0.01²)).
    LeakyRelu,
}

impl Activation {
    /// Slope of `leaky_relu` for negative inputs (PyTorch's default).
    pub const LEAKY_SLOPE: f32 = 0.01;

    /// The name used in recipes.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::LeakyRelu => "leaky_relu",
        }
    }
}

/// Output heads of a classification network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Heads {
    /// One head shared by all tasks.
    #[default]
    Shared,
    /// One head per task; a task's loss and predictions use only its head.
    PerTask,
}

/// Gradient implementation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Hand-written forward/backward kernels over preallocated buffers.
    #[default]
    Fused,
    /// dfdx reverse-mode autodiff on run-time shaped tensors.
    Autograd,
}

/// A continual-learning method and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    /// The method's label in tables (the recipe entry's name, e.g. `cbp`).
    pub name: String,
    /// The registered method kind (`sgd`, `adam`, `l2`, `shrink_perturb`, `cbp`, …).
    pub kind: String,
    /// Hyper-parameters: the optimiser's (`optimizer`, `lr`, `momentum`, `beta1`, `beta2`,
    /// `eps`) and the method's own. Unknown names are an error. One point of a grid.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Mini-batching and passes over each task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Examples per step (default 32). Online streams force 1.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Passes over each task's training split (default 1). Online streams force 1.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Examples held out of each task's training split (a seeded sample) for methods that
    /// measure the network after a task, such as CLNP's pruning threshold; they are never
    /// trained on. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_batch_size() -> usize {
    32
}
fn default_epochs() -> usize {
    1
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec { batch_size: default_batch_size(), epochs: default_epochs(), validation: 0 }
    }
}

/// What is measured, and when. Defaults give the full accuracy matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Evaluate after every `every`-th task (and always after the last one). Default 1.
    #[serde(default = "default_every")]
    pub every: usize,
    /// Which tasks an evaluation covers.
    #[serde(default)]
    pub tasks: EvalTasks,
    /// Evaluate the untrained network on every task first (b_j, needed for forward transfer).
    #[serde(default = "default_true")]
    pub before_training: bool,
    /// Held-out examples per task and evaluation (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_examples: Option<usize>,
    /// Examples per online bin; one bin per task when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_bin: Option<u64>,
    /// Plasticity diagnostics.
    #[serde(default)]
    pub plasticity: PlasticitySpec,
}

fn default_every() -> usize {
    1
}
fn default_true() -> bool {
    true
}

impl Default for EvalSpec {
    fn default() -> Self {
        EvalSpec {
            every: 1,
            tasks: EvalTasks::default(),
            before_training: true,
            max_examples: None,
            online_bin: None,
            plasticity: PlasticitySpec::default(),
        }
    }
}

/// The tasks covered by one evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EvalTasks {
    /// Every task of the stream, so R is a full T×T matrix (cost O(T²)).
    #[default]
    All,
    /// The task just trained, the next one (for forward transfer) and `earlier` earlier tasks
    /// drawn from a seeded stream, so cost stays linear in T on long streams.
    Subsample {
        /// How many earlier tasks to evaluate each time.
        earlier: usize,
    },
}

/// Plasticity diagnostics at task boundaries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlasticitySpec {
    /// Measure at every `every`-th task boundary; 0 turns the diagnostics off. Default 1.
    #[serde(default = "default_every")]
    pub every: usize,
    /// Examples of the probe batch (default 2,000; fewer when the task has fewer).
    #[serde(default = "default_probe")]
    pub probe: usize,
    /// τ of the τ-dormant ratio (default 0.1).
    #[serde(default = "default_tau")]
    pub dormant_tau: f64,
}

fn default_probe() -> usize {
    2_000
}
fn default_tau() -> f64 {
    0.1
}

impl Default for PlasticitySpec {
    fn default() -> Self {
        PlasticitySpec { every: 1, probe: default_probe(), dormant_tau: default_tau() }
    }
}

/// Checkpoint cadence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Checkpoint every `n` optimiser steps inside a task, besides every task boundary. When
    /// absent, `n` is derived from the network's size so that about a minute of work at most
    /// is lost (the count, not the clock, decides: events stay deterministic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_steps: Option<u64>,
    /// Checkpoint at the boundary after every `every_tasks`-th task. When absent, every task
    /// whose work is estimated above a minute, else as many tasks as fill about a minute, so
    /// long streams of short tasks do not spend their time syncing files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_tasks: Option<usize>,
    /// Checkpoints kept (default 2; the newest that verifies is resumed from).
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_keep() -> usize {
    2
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec { every_steps: None, every_tasks: None, keep: default_keep() }
    }
}

/// One line of a worker's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Run id ([`RunSpec::id`]).
    pub run: String,
    /// Position of the event in the run's stream: 0, 1, 2, … without gaps.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The kinds of events, tagged by `"event"` on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventBody {
    /// The run began (emitted once, not again on resume).
    Started {
        /// [`PROTOCOL_VERSION`] of the worker.
        protocol: u32,
        /// Tasks in the stream.
        tasks: usize,
        /// Input features per example.
        inputs: usize,
        /// Network outputs (all heads together).
        outputs: usize,
        /// Number of output heads.
        heads: usize,
        /// Trainable parameters of the network.
        parameters: usize,
        /// `classification` or `regression`.
        problem: String,
    },
    /// Training on a task began.
    TaskStarted {
        /// Task index, from 0.
        task: usize,
        /// Output head the task uses.
        head: usize,
        /// Training examples per pass.
        train_examples: usize,
    },
    /// Online performance over a bin of training examples, each measured by the prediction
    /// made before that example's update.
    Online {
        /// Task the bin belongs to.
        task: usize,
        /// Bin index within the task, from 0.
        bin: usize,
        /// Examples in the bin.
        examples: u64,
        /// Mean loss (cross-entropy, or squared error for regression).
        loss: f64,
        /// Fraction predicted correctly; absent for regression.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy: Option<f64>,
    },
    /// One entry of the accuracy matrix: performance on task `on_task`'s held-out split after
    /// training through task `after_task` (absent: before any training, the b_j of forward
    /// transfer).
    ///
    /// With a `variant`, the entry measures another form of the model than the one being
    /// trained, evaluated at the same point on the same examples: methods with versioned
    /// models (NIWF) report `version:t` (the model as committed after task t, a rollback)
    /// and `compose:i+j` (the gates of the regions committed after tasks i and j, mixed).
    /// Such entries are not part of the accuracy matrix R: consumers that build R must skip
    /// events whose `variant` is present. Absent on every ordinary entry, so runs without
    /// variants produce exactly the events they did before the field existed.
    Eval {
        /// i of R\[i\]\[j\], or absent for the untrained network.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_task: Option<usize>,
        /// j of R\[i\]\[j\].
        on_task: usize,
        /// Held-out examples evaluated.
        examples: usize,
        /// Mean loss.
        loss: f64,
        /// Fraction correct; absent for regression.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy: Option<f64>,
        /// Which other form of the model this entry measures (see above); absent for the
        /// model itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
    },
    /// Plasticity diagnostics of the hidden layers on a probe batch of task
    /// `min(after_tasks, T−1)`.
    Plasticity {
        /// Tasks trained so far (0 = the untrained network).
        after_tasks: usize,
        /// Task whose data formed the probe batch.
        probe_task: usize,
        /// Examples in the probe batch.
        probe_examples: usize,
        /// One entry per hidden layer, input side first.
        layers: Vec<LayerPlasticity>,
        /// Mean |w| over all weight matrices (biases excluded).
        mean_abs_weight: f64,
    },
    /// Method-specific diagnostics (e.g. CLNP's free units), after a task.
    Method {
        /// Task just finished.
        task: usize,
        /// What the values are, namespaced by method (`clnp.capacity`, …).
        name: String,
        /// The values; their shape is documented by the method.
        values: serde_json::Value,
    },
    /// A checkpoint was written and synced.
    Checkpoint {
        /// Tasks completed when it was written.
        tasks_done: usize,
        /// Optimiser steps taken in total.
        step: u64,
        /// File name inside the run folder.
        file: String,
        /// BLAKE3 of the file's payload, hex.
        checksum: String,
    },
    /// The run completed its stream.
    Finished {
        /// Tasks trained.
        tasks: usize,
        /// Optimiser steps taken.
        steps: u64,
        /// Training examples seen (with repetitions over epochs).
        examples: u64,
    },
    /// The run cannot go on; the worker exits non-zero after this event.
    Failed {
        /// One line saying what went wrong.
        reason: String,
    },
}

impl EventBody {
    /// The `"event"` tag of this body.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Started { .. } => "started",
            EventBody::TaskStarted { .. } => "task_started",
            EventBody::Online { .. } => "online",
            EventBody::Eval { .. } => "eval",
            EventBody::Plasticity { .. } => "plasticity",
            EventBody::Method { .. } => "method",
            EventBody::Checkpoint { .. } => "checkpoint",
            EventBody::Finished { .. } => "finished",
            EventBody::Failed { .. } => "failed",
        }
    }
}

/// Diagnostics of one hidden layer on a probe batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPlasticity {
    /// Units in the layer.
    pub units: usize,
    /// Fraction of units whose activation is 0 on every probe example (ReLU-family layers;
    /// 0 for others, which cannot be dead).
    pub dead: f64,
    /// τ-dormant ratio (Sokar et al. 2023): fraction of units with
    /// E|h_i| / (mean_k E|h_k| + 1e-9) ≤ τ.
    pub dormant: f64,
    /// Effective rank (Roy & Vetterli 2007) of the probe feature matrix.
    pub effective_rank: f64,
    /// Smallest k whose top-k singular values hold 99% of their sum.
    pub stable_rank: usize,
    /// Mean |w| of the layer's incoming weight matrix.
    pub mean_abs_weight: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec {
            protocol: PROTOCOL_VERSION,
            id: String::new(),
            experiment: "x".into(),
            seed: 1,
            stream: StreamSpec::SyntheticPermuted(SyntheticPermutedSpec {
                tasks: 2,
                classes: 10,
                dim: 8,
                train_per_class: 10,
                test_per_class: 5,
                noise: 1.0,
                transform: InputTransform::Permute,
            }),
            network: NetworkSpec {
                hidden: vec![16],
                activation: Activation::Relu,
                heads: Heads::Shared,
                engine: Engine::Fused,
            },
            method: MethodSpec { name: "sgd".into(), kind: "sgd".into(), params: BTreeMap::new() },
            training: TrainingSpec::default(),
            eval: EvalSpec::default(),
            checkpoint: CheckpointSpec::default(),
            run_dir: None,
        }
    }

    #[test]
    fn content_id_ignores_presentation_and_follows_content() {
        let a = spec();
        let mut b = a.clone();
        b.experiment = "renamed".into();
        b.run_dir = Some("/tmp/x".into());
        b.checkpoint.every_steps = Some(7);
        assert_eq!(a.content_id(), b.content_id());
        b.seed = 2;
        assert_ne!(a.content_id(), b.content_id());
        assert_eq!(a.content_id().len(), 12);
    }

    #[test]
    fn data_is_identified_by_its_fingerprint_not_its_path() {
        let mut a = spec();
        a.stream = StreamSpec::PermutedMnist(PermutedMnistSpec {
            data_dir: "/data/mnist".into(),
            fingerprint: Some("aaaa".into()),
            tasks: 2,
            first_unpermuted: false,
            train_examples: None,
            test_examples: None,
        });
        let mut b = a.clone();
        *b.stream.data_dir_mut().unwrap() = "../elsewhere/mnist".into();
        assert_eq!(a.content_id(), b.content_id());
        *b.stream.fingerprint_mut().unwrap() = Some("bbbb".into());
        assert_ne!(a.content_id(), b.content_id());
    }

    #[test]
    fn events_round_trip_through_json_lines() {
        let e = Event {
            run: "abc".into(),
            seq: 3,
            body: EventBody::Eval {
                after_task: None,
                on_task: 2,
                examples: 100,
                loss: 0.1 + 0.2,
                accuracy: Some(0.93),
                variant: None,
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.starts_with(r#"{"run":"abc","seq":3,"event":"eval","on_task":2"#), "{line}");
        assert!(!line.contains("variant"), "{line}");
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
        // A variant entry carries its label and reads back.
        let mut v = e.clone();
        if let EventBody::Eval { variant, .. } = &mut v.body {
            *variant = Some("version:3".into());
        }
        let line = serde_json::to_string(&v).unwrap();
        assert!(line.ends_with(r#""variant":"version:3"}"#), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), v);
    }

    #[test]
    fn specs_reject_unknown_fields() {
        let mut v = serde_json::to_value(spec()).unwrap();
        v["network"]["widths"] = serde_json::json!([3]);
        let err = serde_json::from_value::<RunSpec>(v).unwrap_err().to_string();
        assert!(err.contains("unknown field `widths`"), "{err}");
    }
}
