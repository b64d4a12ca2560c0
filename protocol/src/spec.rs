//! The run spec: everything a worker needs to train one run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{LayerSpec, StreamSpec};

/// Everything a worker needs to train one run: the task stream, the network, the continual
/// method, the seed and the evaluation and checkpoint schedules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Must equal [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
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
        if stream.params.get(crate::stream::DATA_DIR).is_some() {
            stream.params.set(crate::stream::DATA_DIR, serde_json::Value::String(String::new()));
        }
        // Likewise the folder an external worker runs in.
        let mut method = self.method.clone();
        if let Some(worker) = &mut method.worker {
            worker.dir = PathBuf::new();
        }
        // And the threads: they change how fast the numbers come, not the numbers.
        let training = TrainingSpec { threads: 1, ..self.training.clone() };
        let identity = Identity {
            protocol: self.protocol,
            seed: self.seed,
            stream: &stream,
            network: &self.network,
            method: &method,
            training: &training,
            eval: &self.eval,
        };
        // serde_json's Map is a BTreeMap (no `preserve_order`), so parameter order is canonical.
        let bytes = serde_json::to_vec(&identity).expect("a RunSpec always serialises");
        blake3::hash(&bytes).to_hex()[..12].to_string()
    }
}

/// The learner's network, whose sizes are known only at run time: the hidden part written
/// as `hidden` widths (a multi-layer perceptron with one activation), as a list of `layers`,
/// or as a named `architecture` — exactly one of them; the output head, sized from the
/// stream, follows any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Widths of the hidden layers, each followed by `activation`: shorthand for `layers`
    /// `[linear, activation, linear, activation, …]`. Input and output sizes come from the
    /// stream. Always written (also when empty), so specs from before `layers` keep their ids.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// The hidden layers as registered layer kinds (`{"linear": {"units": 100}}`,
    /// `{"relu": {}}`, …), input side first; the output head is appended. The worker says
    /// which kinds and orders it computes. Exclusive with a non-empty `hidden`; written only
    /// when non-empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
    /// A named architecture from the papers (`convnet`, `resnet18`, `reduced_resnet18`,
    /// `cnn_mnist`), shorthand for its `layers`; `mlp` is the `hidden` form. Written only when
    /// set, so specs from before it keep their ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// Hidden-layer non-linearity of `hidden` (a `layers` network names its activation layers).
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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

impl NetworkSpec {
    /// A multi-layer perceptron with hidden widths `hidden` and the default activation, heads
    /// and engine.
    pub fn mlp(hidden: Vec<usize>) -> Self {
        NetworkSpec {
            hidden,
            layers: Vec::new(),
            architecture: None,
            activation: Activation::default(),
            heads: Heads::default(),
            engine: Engine::default(),
        }
    }

    /// Refuses a network that writes its hidden part twice (`hidden`, `layers`, or a
    /// convolutional `architecture`, more than one of them).
    pub fn check_form(&self) -> Result<(), String> {
        if !self.hidden.is_empty() && !self.layers.is_empty() {
            return Err("`network.hidden` and `network.layers` both describe the hidden layers; \
                        write one of them"
                .into());
        }
        if let Some(architecture) = self.architecture.filter(|a| *a != Architecture::Mlp) {
            let other = if !self.hidden.is_empty() {
                Some("hidden")
            } else if !self.layers.is_empty() {
                Some("layers")
            } else {
                None
            };
            if let Some(other) = other {
                return Err(format!(
                    "`network.architecture: {}` and `network.{other}` both describe the hidden \
                     layers; write one of them",
                    architecture.name()
                ));
            }
        }
        if self.architecture == Some(Architecture::Mlp) && !self.layers.is_empty() {
            return Err("`network.architecture: mlp` is the `hidden` form; a network written as \
                        `layers` leaves `architecture` out"
                .into());
        }
        Ok(())
    }
}

/// Named architectures of the papers' image benchmarks, each shorthand for a layer list
/// (the worker's layer registry expands them; recipes/README.md lists their layers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// The multi-layer perceptron of `hidden` and `activation`.
    Mlp,
    /// Loss of plasticity's Continual-ImageNet ConvNet (`lop/nets/conv_net.py`): three
    /// convolution + max-pool stages (32, 64, 128 channels) and two 128-unit layers.
    Convnet,
    /// Loss of plasticity's ResNet-18 for class-incremental CIFAR-100
    /// (`lop/nets/torchvision_modified_resnet.py`): 3×3 stem, no max pool, biased
    /// convolutions, widths 64–512.
    Resnet18,
    /// The reduced ResNet-18 of GEM, Mammoth and Avalanche for split CIFAR-100: 20 base
    /// filters (widths 20–160), unbiased convolutions.
    ReducedResnet18,
    /// A small MNIST CNN (PyTorch's MNIST example without dropout): two 3×3 convolutions
    /// (32, 64), a 2×2 max pool and a 128-unit layer.
    CnnMnist,
}

impl Architecture {
    /// Every architecture, in the order the recipe reference lists them.
    pub const ALL: [Architecture; 5] = [
        Architecture::Mlp,
        Architecture::Convnet,
        Architecture::Resnet18,
        Architecture::ReducedResnet18,
        Architecture::CnnMnist,
    ];

    /// The name used in recipes.
    pub const fn name(self) -> &'static str {
        match self {
            Architecture::Mlp => "mlp",
            Architecture::Convnet => "convnet",
            Architecture::Resnet18 => "resnet18",
            Architecture::ReducedResnet18 => "reduced_resnet18",
            Architecture::CnnMnist => "cnn_mnist",
        }
    }
}

impl Activation {
    /// Slope of `leaky_relu` for negative inputs (PyTorch's default).
    pub const LEAKY_SLOPE: f32 = 0.01;

    /// The name used in recipes.
    pub const fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::LeakyRelu => "leaky_relu",
        }
    }
}

/// Output heads of a classification network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Heads {
    /// One head shared by all tasks.
    #[default]
    Shared,
    /// One head per task; a task's loss and predictions use only its head.
    PerTask,
}

/// Gradient implementation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Hand-written forward/backward kernels over preallocated buffers.
    #[default]
    Fused,
    /// dfdx reverse-mode autodiff on run-time shaped tensors.
    Autograd,
}

/// A continual-learning method and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// The program that trains this method, when it is not the built-in worker: an external
    /// worker in any language (see `docs/protocol.md`, "External workers"). Absent for
    /// built-in methods, so their specs keep their bytes and ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerCommand>,
}

/// How to start an external worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerCommand {
    /// The program and its first arguments, as the recipe wrote them (`["python3",
    /// "worker.py"]`); the orchestrator appends `--spec …` or `--describe`.
    pub command: Vec<String>,
    /// The folder the command runs in (the recipe's folder, absolute), so that relative paths
    /// in `command` mean what they meant in the recipe. Like a stream's `data_dir`, it is left
    /// out of the run id: moving a project keeps its runs.
    pub dir: PathBuf,
}

/// Mini-batching and passes over each task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Threads for the run's matrix products (default 1: one core per worker), for a single
    /// run that should finish sooner. The numbers are the same with any count (the products
    /// never split a sum), so it is not part of the run id and a run may resume with another.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub threads: usize,
}

/// The most threads one run may ask for (`training.threads`).
pub const MAX_THREADS: usize = 1024;

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
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
        TrainingSpec { batch_size: default_batch_size(), epochs: default_epochs(), validation: 0, threads: 1 }
    }
}

/// What is measured, and when. Defaults give the full accuracy matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Params;
    use serde_json::json;

    fn stream(kind: &str, params: serde_json::Value) -> StreamSpec {
        StreamSpec::new(kind, serde_json::from_value::<Params>(params).unwrap())
    }

    fn spec() -> RunSpec {
        RunSpec {
            protocol: crate::PROTOCOL_VERSION,
            id: String::new(),
            experiment: "x".into(),
            seed: 1,
            stream: stream("synthetic_permuted", json!({"tasks": 2, "dim": 8})),
            network: NetworkSpec::mlp(vec![16]),
            method: MethodSpec {
                name: "sgd".into(),
                kind: "sgd".into(),
                params: BTreeMap::new(),
                worker: None,
            },
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
    fn threads_are_not_part_of_the_id_nor_of_a_default_specs_bytes() {
        let a = spec();
        let mut b = a.clone();
        b.training.threads = 4;
        assert_eq!(a.content_id(), b.content_id());
        assert!(!serde_json::to_string(&a.training).unwrap().contains("threads"));
        let back: TrainingSpec = serde_json::from_str(&serde_json::to_string(&b.training).unwrap()).unwrap();
        assert_eq!(back.threads, 4);
    }

    #[test]
    fn data_is_identified_by_its_fingerprint_not_its_path() {
        let mut a = spec();
        a.stream =
            stream("permuted_mnist", json!({"data_dir": "/data/mnist", "fingerprint": "aaaa", "tasks": 2}));
        let mut b = a.clone();
        b.stream.set_data_dir(std::path::Path::new("../elsewhere/mnist"));
        assert_eq!(a.content_id(), b.content_id());
        b.stream.params.set(crate::stream::FINGERPRINT, json!("bbbb"));
        assert_ne!(a.content_id(), b.content_id());
    }

    #[test]
    fn layers_are_written_only_when_present_so_older_ids_stay() {
        let a = spec();
        let text = serde_json::to_string(&a.network).unwrap();
        assert_eq!(text, r#"{"hidden":[16],"activation":"relu","heads":"shared","engine":"fused"}"#);
        // The id this spec had before `layers` existed.
        assert_eq!(a.content_id(), "ec22fedc17a8");
        let layered: NetworkSpec =
            serde_json::from_value(json!({"layers": [{"linear": {"units": 16}}, {"relu": {}}]})).unwrap();
        assert!(layered.hidden.is_empty() && layered.check_form().is_ok());
        let both: NetworkSpec =
            serde_json::from_value(json!({"hidden": [16], "layers": [{"relu": {}}]})).unwrap();
        assert!(both.check_form().unwrap_err().contains("write one of them"));
    }

    #[test]
    fn specs_reject_unknown_fields() {
        let mut v = serde_json::to_value(spec()).unwrap();
        v["network"]["widths"] = json!([3]);
        let err = serde_json::from_value::<RunSpec>(v).unwrap_err().to_string();
        assert!(err.contains("unknown field `widths`"), "{err}");
    }
}
