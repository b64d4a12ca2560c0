//! The recipe as written: private serde types that mirror the YAML keys exactly and reject
//! unknown ones. [`super::load`] converts them, with checks, into the public
//! [`super::Recipe`].
//!
//! The network, training, evaluation and checkpoint sections deserialise straight into the
//! protocol's types, so their keys and defaults are the protocol's by construction. Streams and
//! method entries stay raw JSON mappings here: a stream's keys depend on its `kind`, and a
//! method's parameters on the worker's registry, which later steps consult.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use protocol::{CheckpointSpec, EvalSpec, NetworkSpec, TrainingSpec};
use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::duration::{parse_duration, parse_slurm_time, seconds, DURATION_FORMS};

/// The top level of a recipe file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecipeFile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub output: Option<PathBuf>,
    #[serde(default)]
    pub stream: Option<Map<String, Json>>,
    #[serde(default)]
    pub streams: Option<Vec<Map<String, Json>>>,
    pub network: NetworkSpec,
    #[serde(default)]
    pub training: TrainingSpec,
    pub methods: Vec<Map<String, Json>>,
    #[serde(default)]
    pub seeds: SeedsFile,
    #[serde(default)]
    pub eval: EvalSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    #[serde(default)]
    pub parallel: Option<usize>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub timeout: Option<DurationFile>,
    #[serde(default = "default_heartbeat")]
    pub heartbeat: DurationFile,
    #[serde(default)]
    pub slurm: Option<SlurmFile>,
    /// `worker:` — the worker of every method entry that names none: `builtin` or
    /// `{command: [...]}` (checked by the validation, as a method entry's `worker:` is).
    #[serde(default)]
    pub worker: Option<Json>,
    /// `sweep:` is taken out of the tree before it is deserialised ([`super::sweep`]); the
    /// field is here so that messages about unknown keys list it.
    #[serde(default, rename = "sweep")]
    pub _sweep: Option<de::IgnoredAny>,
}

/// Attempts per run when the recipe does not say.
pub(super) const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Silence after which a worker is presumed hung, when the recipe does not say.
pub(super) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(600);
/// Seconds between SLURM's warning signal and its kill, when the recipe does not say.
pub(super) const DEFAULT_SIGNAL_SECONDS: u64 = 120;

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

fn default_heartbeat() -> DurationFile {
    DurationFile(DEFAULT_HEARTBEAT)
}

/// `seeds:` — a count n (seeds 0..n−1) or an explicit list. Zero and empty lists are let
/// through here and refused with a position by the validation.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SeedsFile {
    Count(u64),
    List(Vec<u64>),
}

impl Default for SeedsFile {
    fn default() -> SeedsFile {
        SeedsFile::Count(1)
    }
}

impl<'de> Deserialize<'de> for SeedsFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SeedsFile, D::Error> {
        struct SeedsVisitor;
        impl<'de> Visitor<'de> for SeedsVisitor {
            type Value = SeedsFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seeds or a list of seeds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SeedsFile, E> {
                Ok(SeedsFile::Count(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SeedsFile, E> {
                Err(E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SeedsFile, A::Error> {
                let mut seeds = Vec::new();
                while let Some(seed) = seq.next_element::<u64>()? {
                    seeds.push(seed);
                }
                Ok(SeedsFile::List(seeds))
            }
        }
        deserializer.deserialize_any(SeedsVisitor)
    }
}

/// A duration written as `90s`, `30m`, `2h`, `1d` or a number of seconds.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DurationFile(pub Duration);

impl<'de> Deserialize<'de> for DurationFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DurationFile, D::Error> {
        struct DurationVisitor;
        impl<'de> Visitor<'de> for DurationVisitor {
            type Value = DurationFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_FORMS)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationFile, E> {
                seconds(v).map(DurationFile).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationFile, E> {
                Err(E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationFile, E> {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationFile, E> {
                parse_duration(v).map(DurationFile).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// `slurm:` — settings of the SLURM executor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlurmFile {
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub time: Option<SlurmTimeFile>,
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    #[serde(default)]
    pub mem: Option<String>,
    #[serde(default)]
    pub gres: Option<String>,
    #[serde(default)]
    pub gpus_per_task: Option<String>,
    #[serde(default)]
    pub constraint: Option<String>,
    #[serde(default)]
    pub extra: Vec<String>,
    #[serde(default = "default_signal_seconds")]
    pub signal_seconds: u64,
}

fn default_cpus() -> u32 {
    1
}

fn default_signal_seconds() -> u64 {
    DEFAULT_SIGNAL_SECONDS
}

/// A SLURM time limit, `HH:MM:SS` or `D-HH:MM:SS`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SlurmTimeFile(pub Duration);

impl<'de> Deserialize<'de> for SlurmTimeFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SlurmTimeFile, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_slurm_time(&text).map(SlurmTimeFile).map_err(de::Error::custom)
    }
}
