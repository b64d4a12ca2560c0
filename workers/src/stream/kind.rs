//! The stream registry: how recipes name streams, what parameters each takes, and how each is
//! checked and built.
//!
//! Adding a stream: one file with its parameter struct (serde, `deny_unknown_fields`, field
//! order = the order parameters are written in specs and hashed into run ids) and an
//! implementation of [`StreamKind`], one line in [`registry`], and tests.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{StreamError, TaskStream};
use crate::model::layer::Shape;
use crate::protocol::stream::{ParamProblem, ParamSegment};
use crate::protocol::{Params, StreamSpec};

/// Static description of a stream kind.
pub trait StreamKind {
    /// The kind's name in recipes and specs (`permuted_mnist`, …).
    const KIND: &'static str;
    /// One line for `clorch streams` and the recipe reference.
    const SUMMARY: &'static str;
    /// Online protocol: each example once, batch size 1, no task-boundary signal.
    const ONLINE: bool = false;
    /// The parameters; serde field names are the recipe's keys. A stream that reads files
    /// has a `data_dir` field (and a `fingerprint` the orchestrator fills in).
    type Params: DeserializeOwned + Serialize;
    /// Tasks the stream yields.
    fn tasks(params: &Self::Params) -> usize;
    /// The shape of one example's input: an image for the MNIST and image streams, a vector
    /// otherwise. May read file headers (as [`StreamKind::check_data`]), never the data.
    fn input_shape(params: &Self::Params) -> Result<Shape, StreamError>;
    /// Whether the stream itself needs one output head per task (its targets mean something
    /// only within a task, as in task-incremental split MNIST); see [`super::StreamInfo`].
    fn head_per_task(_params: &Self::Params) -> bool {
        false
    }
    /// Parameter ranges, without touching data; one line saying what is wrong.
    fn check(_params: &Self::Params) -> Result<(), String> {
        Ok(())
    }
    /// Data checks that need no full read (files exist, headers valid, limits fit).
    fn check_data(_params: &Self::Params) -> Result<(), StreamError> {
        Ok(())
    }
    /// A digest of the data files in `dir`, for streams that read any.
    fn fingerprint(_dir: &Path) -> Result<String, StreamError> {
        Err(StreamError::Invalid { stream: Self::KIND, reason: "this stream reads no data folder".into() })
    }
    /// Builds the stream, loading its data.
    fn build(params: &Self::Params, seed: u64) -> Result<Box<dyn TaskStream>, StreamError>;

    /// The spec of a stream of this kind with `params`, normalised.
    fn spec(params: &Self::Params) -> StreamSpec {
        StreamSpec::new(Self::KIND, to_params(params))
    }
}

/// A registered stream kind.
pub struct StreamEntry {
    /// Name in recipes.
    pub kind: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Whether the stream follows the online protocol.
    pub online: bool,
    normalize: fn(&Params) -> Result<Params, ParamProblem>,
    tasks: fn(&Params) -> Result<usize, StreamError>,
    head_per_task: fn(&Params) -> Result<bool, StreamError>,
    input_shape: fn(&Params) -> Result<Shape, StreamError>,
    validate: fn(&Params) -> Result<(), StreamError>,
    fingerprint: fn(&Path) -> Result<String, StreamError>,
    build: BuildFn,
}

/// How an entry builds its stream from wire parameters and a seed.
type BuildFn = fn(&Params, u64) -> Result<Box<dyn TaskStream>, StreamError>;

impl StreamEntry {
    /// The parameters with every default filled in, in declared order — the form specs carry
    /// and run ids hash.
    pub fn normalize(&self, params: &Params) -> Result<Params, ParamProblem> {
        (self.normalize)(params)
    }
}

fn parse<K: StreamKind>(params: &Params) -> Result<K::Params, ParamProblem> {
    let value = serde_json::Value::Object(params.to_object());
    serde_path_to_error::deserialize(value).map_err(|e| ParamProblem {
        path: e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(ParamSegment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(ParamSegment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => Some(ParamSegment::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect(),
        message: e.into_inner().to_string(),
    })
}

fn invalid<K: StreamKind>(e: ParamProblem) -> StreamError {
    StreamError::Invalid { stream: K::KIND, reason: e.message }
}

/// Parameters as the struct serialises them: declared order, defaults filled in.
fn to_params<P: Serialize>(params: &P) -> Params {
    let text = serde_json::to_string(params).expect("stream parameters always serialise");
    serde_json::from_str(&text).expect("a serialised parameter struct is an object")
}

/// The most tasks a stream may have (recipes/README.md, "Bounds").
pub const MAX_TASKS: usize = 10_000_000;

/// A size parameter's upper bound, naming the parameter.
pub(crate) fn at_most(field: &str, value: usize, max: usize) -> Result<(), String> {
    if value > max {
        Err(format!("`{field}` is {value}; at most {max} is supported"))
    } else {
        Ok(())
    }
}

/// Parsed parameters whose ranges hold.
fn checked<K: StreamKind>(params: &Params) -> Result<K::Params, StreamError> {
    let typed = parse::<K>(params).map_err(invalid::<K>)?;
    let fail = |reason: String| StreamError::Invalid { stream: K::KIND, reason };
    if K::tasks(&typed) == 0 {
        return Err(fail("needs at least one task (`tasks` ≥ 1)".into()));
    }
    at_most("tasks", K::tasks(&typed), MAX_TASKS).map_err(fail)?;
    K::check(&typed).map_err(fail)?;
    Ok(typed)
}

fn entry<K: StreamKind>() -> StreamEntry {
    StreamEntry {
        kind: K::KIND,
        summary: K::SUMMARY,
        online: K::ONLINE,
        normalize: |p| parse::<K>(p).map(|typed| to_params(&typed)),
        tasks: |p| parse::<K>(p).map(|typed| K::tasks(&typed)).map_err(invalid::<K>),
        head_per_task: |p| parse::<K>(p).map(|typed| K::head_per_task(&typed)).map_err(invalid::<K>),
        input_shape: |p| K::input_shape(&checked::<K>(p)?),
        validate: |p| {
            let typed = checked::<K>(p)?;
            K::check_data(&typed)
        },
        fingerprint: K::fingerprint,
        build: |p, seed| K::build(&checked::<K>(p)?, seed),
    }
}

/// Every stream kind clorch knows, in the order `clorch streams` lists them.
pub fn registry() -> Vec<StreamEntry> {
    vec![
        entry::<super::permuted::PermutedMnistKind>(),
        entry::<super::permuted::OnlinePermutedMnistKind>(),
        entry::<super::split_mnist::SplitMnistKind>(),
        entry::<super::regression::SlowlyChangingRegressionKind>(),
        entry::<super::synthetic::SyntheticPermutedKind>(),
        entry::<super::split_cifar::SplitCifar10Kind>(),
        entry::<super::split_cifar::SplitCifar100Kind>(),
        entry::<super::split_cifar::ClassIncrementalCifar100Kind>(),
        entry::<super::continual_imagenet::ContinualImagenetKind>(),
        entry::<super::split_tinyimagenet::SplitTinyImagenetKind>(),
    ]
}

/// The registered kind `kind`.
pub fn lookup(kind: &str) -> Result<StreamEntry, StreamError> {
    registry().into_iter().find(|s| s.kind == kind).ok_or_else(|| StreamError::UnknownKind {
        kind: kind.to_string(),
        known: registry().iter().map(|s| s.kind).collect::<Vec<_>>().join(", "),
    })
}

/// Builds the stream a spec describes, loading data files as needed.
pub fn build(spec: &StreamSpec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
    (lookup(&spec.kind)?.build)(&spec.params, seed)
}

/// Checks a spec without loading its data: parameter ranges, and for streams that read files
/// that they exist and their headers are well formed. The orchestrator calls this when it
/// validates a recipe, so a wrong path fails before any run starts.
pub fn validate(spec: &StreamSpec) -> Result<(), StreamError> {
    (lookup(&spec.kind)?.validate)(&spec.params)
}

/// Tasks the stream of `spec` yields.
pub fn tasks(spec: &StreamSpec) -> Result<usize, StreamError> {
    (lookup(&spec.kind)?.tasks)(&spec.params)
}

/// The stream `kind` with `params` normalised (every default filled in, declared order), or
/// where the parameters do not parse (an unknown kind is a problem with an empty path).
pub fn normalize(kind: &str, params: &Params) -> Result<StreamSpec, ParamProblem> {
    let entry = lookup(kind).map_err(|e| ParamProblem { path: Vec::new(), message: e.to_string() })?;
    Ok(StreamSpec::new(kind, entry.normalize(params)?))
}

/// The shape of one example's input to `spec`'s stream (may read file headers).
pub fn input_shape(spec: &StreamSpec) -> Result<Shape, StreamError> {
    (lookup(&spec.kind)?.input_shape)(&spec.params)
}

/// Whether `spec`'s stream itself needs one output head per task.
pub fn head_per_task(spec: &StreamSpec) -> Result<bool, StreamError> {
    (lookup(&spec.kind)?.head_per_task)(&spec.params)
}

/// Whether `spec`'s stream follows the online protocol.
pub fn is_online(spec: &StreamSpec) -> bool {
    lookup(&spec.kind).map(|s| s.online).unwrap_or(false)
}

/// The fingerprint of the data in `dir` as stream `kind` reads it.
pub fn fingerprint(kind: &str, dir: &Path) -> Result<String, StreamError> {
    (lookup(kind)?.fingerprint)(dir)
}

/// The spec of a stream of kind `K` with `params` (normalised): how code and tests name a
/// stream without writing its JSON.
pub fn spec_of<K: StreamKind>(params: &K::Params) -> StreamSpec {
    K::spec(params)
}
