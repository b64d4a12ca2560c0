//! From a recipe file and command-line overrides to a validated [`Recipe`].
//!
//! 1. the text is parsed into a tree ([`super::yaml`]) and the overrides are applied to it;
//! 2. the tree is deserialised into the private [`RecipeFile`] (unknown keys and wrong types
//!    stop here, one error, with its key path from `serde_path_to_error`);
//! 3. each part is converted and checked — streams (by kind, data folders resolved), method
//!    entries (kinds and parameters from the [`SpecChecker`], grid axes), seeds, counts — and
//!    every problem found is collected, so one run of `clorch validate` reports them all.
//!
//! Every problem is reported at the position of the node it is about, found again in the text
//! by [`yaml::locate`], or, when an override put the node there, named after the override.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use protocol::{MethodSpec, Params};
use serde_json::{Map, Value as Json};

use super::checker::{ParamSegment, SpecChecker};
use super::error::{RecipeError, RecipeErrors};
use super::expand::render_point;
use super::file::{RecipeFile, SeedsFile, SlurmFile};
use super::messages::{describe_json, rephrase, show_value, unknown_key, unknown_name, SerdeMessage};
use super::overrides::{self, Override};
use super::path::{KeyPath, Segment};
use super::sweep;
use super::types::{MethodEntry, NamedStream, Recipe, SlurmSettings, SweepPoint};
use super::yaml::{self, Position, Target};

/// More seeds than this in `seeds: n` is taken for a typo rather than expanded.
const MAX_SEED_COUNT: u64 = 100_000;
/// The widest hidden layer a recipe may ask for (recipes/README.md, "Bounds").
pub const MAX_WIDTH: u64 = 65_536;
/// The most epochs per task.
pub const MAX_EPOCHS: u64 = 100_000;
/// The largest minibatch.
pub const MAX_BATCH_SIZE: u64 = 1 << 20;
/// The most workers at once.
pub const MAX_PARALLEL: u64 = 65_536;
/// The largest count of tasks a setting may name (`eval.every`, `checkpoint.every_tasks`,
/// `eval.tasks.subsample.earlier`, `eval.plasticity.every`): a stream's most tasks.
pub const MAX_TASK_COUNT: u64 = 10_000_000;
/// The most examples a setting may name (`eval.max_examples`, `eval.plasticity.probe`,
/// `training.validation`, `eval.online_bin`).
pub const MAX_EXAMPLE_COUNT: u64 = 1_000_000_000;
/// The most optimiser steps between checkpoints (2^53: exact as a JSON number everywhere).
pub const MAX_STEPS: u64 = 1 << 53;
/// The most checkpoints kept per run.
pub const MAX_KEEP: u64 = 1_000;
/// The most attempts per run.
pub const MAX_ATTEMPTS: u64 = 1_000;
/// The most CPUs per SLURM task.
pub const MAX_CPUS: u64 = 65_536;

/// Whether comma lists on the command line are sweeps, as Hydra's `-m/--multirun` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multirun {
    /// `key=a,b` is refused: without `-m` Hydra refuses it too, and taking it for the string
    /// `a,b` would silently run something else than meant.
    Off,
    /// `key=a,b` sweeps the key over `a` and `b` (a method parameter's becomes its grid axis).
    On,
}

impl Recipe {
    /// Reads and validates the recipe at `path` with `overrides` (`key.path=value`) applied,
    /// comma lists refused ([`Multirun::Off`]). Reading the file is the only I/O (besides what
    /// `checker` does); nothing is created.
    pub fn load(
        path: impl AsRef<Path>,
        overrides: &[impl AsRef<str>],
        checker: &dyn SpecChecker,
    ) -> Result<Recipe, RecipeErrors> {
        Recipe::load_with(path, overrides, Multirun::Off, checker)
    }

    /// [`Recipe::load`], with comma lists on the command line taken as `multirun` says.
    pub fn load_with(
        path: impl AsRef<Path>,
        overrides: &[impl AsRef<str>],
        multirun: Multirun,
        checker: &dyn SpecChecker,
    ) -> Result<Recipe, RecipeErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| RecipeError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: KeyPath::root(),
            via_override: None,
            message: format!("cannot read the recipe: {error}"),
        })?;
        Recipe::from_text_with(path, text, overrides, multirun, checker)
    }

    /// Validates recipe `text` as if read from `path`: `path` names the file in messages, and
    /// relative data folders resolve against its folder. Comma lists are refused.
    pub fn from_text(
        path: impl AsRef<Path>,
        text: impl Into<String>,
        overrides: &[impl AsRef<str>],
        checker: &dyn SpecChecker,
    ) -> Result<Recipe, RecipeErrors> {
        Recipe::from_text_with(path, text, overrides, Multirun::Off, checker)
    }

    /// [`Recipe::from_text`], with comma lists taken as `multirun` says.
    pub fn from_text_with(
        path: impl AsRef<Path>,
        text: impl Into<String>,
        overrides: &[impl AsRef<str>],
        multirun: Multirun,
        checker: &dyn SpecChecker,
    ) -> Result<Recipe, RecipeErrors> {
        let path = path.as_ref();
        let text = text.into();
        let mut validation =
            Validation { file: path, text: &text, checker, applied: Vec::new(), errors: Vec::new() };
        let (tree, overrides, axes) = validation.read(overrides, multirun)?;
        let effective_text = effective_text(&text, &tree, &overrides, &axes);
        // Method-parameter axes are grid axes: written into their entries as lists.
        let mut tree = tree;
        for axis in axes.iter().filter(|a| a.is_method_parameter()) {
            match overrides::set(&mut tree, &axis.key, Json::Array(axis.values.clone())) {
                Ok(path) => validation.applied.push((path, Blame::of(axis))),
                Err(message) => validation.axis_problem(axis, message),
            }
        }
        if !validation.errors.is_empty() {
            return Err(validation.finish());
        }
        let swept: Vec<&sweep::Axis> = axes.iter().filter(|a| !a.is_method_parameter()).collect();
        let points = sweep::points(&swept);
        let mut shared = None;
        let mut sweep_points = Vec::new();
        let mut found: Vec<(RecipeError, Vec<usize>)> = Vec::new();
        for (p, point) in points.iter().enumerate() {
            let mut tree = tree.clone();
            let before = validation.applied.len();
            for (axis, &j) in swept.iter().zip(point) {
                match overrides::set(&mut tree, &axis.key, axis.values[j].clone()) {
                    Ok(path) => validation.applied.push((path, Blame::value_of(axis, j))),
                    Err(message) => validation.axis_problem(axis, message),
                }
            }
            if validation.errors.is_empty() {
                if let Some(file) = validation.deserialize(tree) {
                    if let Some(parts) = validation.convert(file) {
                        let values = sweep::values_of(&swept, point);
                        sweep_points.push(parts.point(values.clone()));
                        shared.get_or_insert(parts);
                    }
                }
            }
            validation.applied.truncate(before);
            for error in std::mem::take(&mut validation.errors) {
                match found.iter_mut().find(|(e, _)| *e == error) {
                    Some((_, at)) => at.push(p),
                    None => found.push((error, vec![p])),
                }
            }
        }
        if !found.is_empty() {
            // A problem of some sweep points only names the first of them.
            let errors = found
                .into_iter()
                .map(|(mut error, at)| {
                    if at.len() < points.len() {
                        let values = sweep::values_of(&swept, &points[at[0]]);
                        error.message.push_str(&format!(" (at sweep point {})", render_point(&values)));
                    }
                    error
                })
                .collect();
            return Err(RecipeErrors::new(errors));
        }
        let parts = shared.expect("validation without errors yields every part");
        let applied = std::mem::take(&mut validation.applied);
        let recipe = Recipe {
            name: parts.name,
            description: parts.description,
            path: path.to_path_buf(),
            text_hash: blake3::hash(text.as_bytes()).to_hex().to_string(),
            text,
            overrides,
            effective_text,
            output: parts.output,
            sweep: sweep_points,
            seeds: parts.seeds,
            parallel: parts.parallel,
            max_attempts: parts.max_attempts,
            timeout: parts.timeout,
            heartbeat: parts.heartbeat,
            slurm: parts.slurm,
            applied,
        };
        check_unique_ids(&recipe)?;
        Ok(recipe)
    }
}

/// The recipe as it runs, for the experiment's metadata: the text itself without overrides;
/// otherwise the overridden tree as YAML (keys sorted, comments gone), comma-list axes in its
/// `sweep:` section, under a comment that names the file and the overrides.
fn effective_text(text: &str, tree: &Json, overrides: &[Override], axes: &[sweep::Axis]) -> String {
    if overrides.is_empty() {
        return text.to_string();
    }
    let mut tree = tree.clone();
    if !axes.is_empty() {
        let section: Map<String, Json> =
            axes.iter().map(|a| (a.key.clone(), Json::Array(a.values.clone()))).collect();
        if let Json::Object(map) = &mut tree {
            map.insert("sweep".into(), Json::Object(section));
        }
    }
    let listed: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
    format!(
        "# The recipe with the command-line overrides applied: {}\n{}",
        listed.join(" "),
        yaml::emit(&tree)
    )
}

/// Every run id must be unique, or two planned runs would share one run folder and one store
/// record. The checks above (unique method names, no repeated grid values or seeds, no two
/// identical streams) already guarantee it; this is the guard should a future key escape them.
fn check_unique_ids(recipe: &Recipe) -> Result<(), RecipeErrors> {
    let mut seen: HashMap<String, String> = HashMap::new();
    for run in recipe.expand() {
        let label = format!(
            "stream `{}`, method `{}`, grid point {}, seed {}",
            run.stream,
            run.method,
            super::expand::render_point(&run.grid),
            run.seed
        );
        if let Some(first) = seen.insert(run.spec.id.clone(), label.clone()) {
            return Err(RecipeError {
                file: recipe.path.clone(),
                line: None,
                column: None,
                key: KeyPath::root(),
                via_override: None,
                message: format!("two runs would get the same id {}: {first} and {label}", run.spec.id),
            }
            .into());
        }
    }
    Ok(())
}

/// A problem of the node (or key) at `path` of the recipe `file` with `text`, displayed under
/// the key path `shown`. The last override of `applied` that set `path` or an ancestor takes
/// the blame; otherwise the problem is located in the text, noting any override that changed
/// something inside the node.
fn located(
    file: &Path,
    text: &str,
    applied: &[(KeyPath, Blame)],
    path: &KeyPath,
    target: Target,
    shown: KeyPath,
    mut message: String,
) -> RecipeError {
    let error = |position: Option<Position>, key, via_override, message| RecipeError {
        file: file.to_path_buf(),
        line: position.map(|p| p.line),
        column: position.map(|p| p.column),
        key,
        via_override,
        message,
    };
    match applied.iter().rev().find(|(p, _)| p.is_prefix_of(path)) {
        Some((set, Blame::Override(by))) => {
            let key = if shown.is_prefix_of(set) { KeyPath::root() } else { shown };
            return error(None, key, Some(by.clone()), message);
        }
        Some((set, Blame::Sweep(at))) => {
            // The sweep value written in the text, down to the part the problem is about.
            let tail: Vec<Segment> = path.segments()[set.segments().len()..].to_vec();
            let at = at.join(&KeyPath::from(tail));
            return error(yaml::locate(text, &at, Target::Node), at, None, message);
        }
        None => {}
    }
    let inside: Vec<String> = applied
        .iter()
        .filter(|(p, _)| path.is_prefix_of(p))
        .map(|(_, blame)| match blame {
            Blame::Override(t) => format!("`{t}`"),
            Blame::Sweep(at) => format!("`{at}`"),
        })
        .collect();
    if !inside.is_empty() {
        message.push_str(&format!(" (after override {})", inside.join(", ")));
    }
    error(yaml::locate(text, path, target), shown, None, message)
}

impl Recipe {
    /// A problem found after validation (a data folder that changed, a run too large for the
    /// memory budget) about the value at `path`, reported like the validation's own: at its
    /// line and column, or naming the override that set it.
    pub fn error_at(&self, path: &KeyPath, message: impl Into<String>) -> RecipeError {
        located(&self.path, &self.text, &self.applied, path, Target::Node, path.clone(), message.into())
    }
}

/// A method entry's grid axes: each parameter's values, in the order written.
type Axes = BTreeMap<String, Vec<Json>>;

/// The recipe's top-level `worker:`.
enum DefaultWorker {
    /// Absent or `builtin`.
    Builtin,
    /// An external worker that described itself.
    External(protocol::WorkerCommand),
    /// Wrong, already reported: the entries that would inherit it are skipped.
    Broken,
}

/// Everything of a [`Recipe`] that validation produces.
struct Parts {
    name: String,
    description: Option<String>,
    output: PathBuf,
    streams: Vec<NamedStream>,
    network: protocol::NetworkSpec,
    training: protocol::TrainingSpec,
    methods: Vec<MethodEntry>,
    seeds: Vec<u64>,
    eval: protocol::EvalSpec,
    checkpoint: protocol::CheckpointSpec,
    parallel: Option<usize>,
    max_attempts: u32,
    timeout: Option<std::time::Duration>,
    heartbeat: std::time::Duration,
    slurm: Option<SlurmSettings>,
}

/// What set a node of the tree, for messages about it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Blame {
    /// A command-line override, as written.
    Override(String),
    /// A value of the recipe's `sweep:` section, at this path of the text.
    Sweep(KeyPath),
}

impl Blame {
    /// Who set a method-parameter axis's list.
    fn of(axis: &sweep::Axis) -> Blame {
        match &axis.origin {
            sweep::Origin::Override(text) => Blame::Override(text.clone()),
            sweep::Origin::File => Blame::Sweep(KeyPath::root().key("sweep").key(axis.key.as_str())),
        }
    }

    /// Who set value `index` of an axis.
    fn value_of(axis: &sweep::Axis, index: usize) -> Blame {
        match &axis.origin {
            sweep::Origin::Override(text) => Blame::Override(text.clone()),
            sweep::Origin::File => Blame::Sweep(axis.value_path(index)),
        }
    }
}

impl Parts {
    /// The sweep point these parts make, with its values.
    fn point(&self, values: BTreeMap<String, Json>) -> SweepPoint {
        SweepPoint {
            values,
            streams: self.streams.clone(),
            network: self.network.clone(),
            training: self.training.clone(),
            methods: self.methods.clone(),
            eval: self.eval.clone(),
            checkpoint: self.checkpoint.clone(),
        }
    }
}

/// One validation: the text for positions, the applied overrides for attribution, and the
/// problems found so far.
struct Validation<'a> {
    file: &'a Path,
    text: &'a str,
    checker: &'a dyn SpecChecker,
    /// Path each applied override or sweep value set, and who set it.
    applied: Vec<(KeyPath, Blame)>,
    errors: Vec<RecipeError>,
}

impl Validation<'_> {
    /// Step 1: the tree with overrides applied and the sweep's axes taken out of it (the
    /// `sweep:` section, then `-m` comma lists, which replace a section axis of the same key).
    fn read(
        &mut self,
        raw_overrides: &[impl AsRef<str>],
        multirun: Multirun,
    ) -> Result<(Json, Vec<Override>, Vec<sweep::Axis>), RecipeErrors> {
        let mut parsed = Vec::new();
        for raw in raw_overrides {
            match Override::parse(raw.as_ref()) {
                Ok(o) => parsed.push(o),
                Err(message) => self.override_problem(raw.as_ref(), message),
            }
        }
        let mut tree = match yaml::parse(self.text) {
            Ok(tree) => tree,
            Err(problem) => {
                self.push(problem.position, problem.path, None, problem.message);
                return Err(self.finish());
            }
        };
        if !tree.is_object() {
            let found = describe_json(&tree);
            self.node(
                &KeyPath::root(),
                format!(
                    "expected a mapping of recipe keys (name, stream, network, methods, …), found {found}"
                ),
            );
            return Err(self.finish());
        }
        let mut axes = match tree.as_object_mut().and_then(|map| map.remove("sweep")) {
            None | Some(Json::Null) => Vec::new(),
            Some(section) => match sweep::read_section(section) {
                Ok(axes) => axes,
                Err(problems) => {
                    for problem in problems {
                        let mut path = KeyPath::root().key("sweep");
                        if let Some(key) = problem.key {
                            path = path.key(key);
                        }
                        if let Some(index) = problem.index {
                            path = path.index(index);
                        }
                        self.node(&path, problem.message);
                    }
                    Vec::new()
                }
            },
        };
        for o in &parsed {
            if let Some(items) = o.comma_list() {
                if multirun == Multirun::Off {
                    self.override_problem(
                        &o.to_string(),
                        format!(
                            "`{}` is a comma-separated list: pass -m (--multirun) to sweep `{}` over \
                             its values, write `[{}]` for one list value, or quote it for a string",
                            o.value,
                            o.key,
                            items.join(", ")
                        ),
                    );
                    continue;
                }
                let mut values = Vec::new();
                for item in items {
                    match overrides::parse_value(item) {
                        Ok(value) => values.push(value),
                        Err(message) => self.override_problem(&o.to_string(), message),
                    }
                }
                match sweep::check_axis(&o.key, &values) {
                    Ok(()) => {
                        axes.retain(|a| a.key != o.key);
                        axes.push(sweep::Axis {
                            key: o.key.clone(),
                            values,
                            origin: sweep::Origin::Override(o.to_string()),
                        });
                    }
                    Err((_, message)) => self.override_problem(&o.to_string(), message),
                }
                continue;
            }
            match overrides::apply(&mut tree, o) {
                Ok(path) => self.applied.push((path, Blame::Override(o.to_string()))),
                Err(message) => self.override_problem(&o.to_string(), message),
            }
        }
        if !self.errors.is_empty() {
            return Err(self.finish());
        }
        // A top-level key left empty (`eval:` with everything below commented out) means the
        // section's defaults, as if the key were absent.
        if let Json::Object(map) = &mut tree {
            map.retain(|_, value| !value.is_null());
        }
        Ok((tree, parsed, axes))
    }

    /// Step 2: the tree (of one sweep point) deserialised; `None` after reporting why not.
    fn deserialize(&mut self, tree: Json) -> Option<RecipeFile> {
        match serde_path_to_error::deserialize::<_, RecipeFile>(tree) {
            Ok(file) => Some(file),
            Err(error) => {
                self.serde_problem(&KeyPath::root(), "a recipe", error);
                None
            }
        }
    }

    /// An axis whose key cannot be set in the recipe (`methods.sdg.lr`).
    fn axis_problem(&mut self, axis: &sweep::Axis, message: String) {
        match &axis.origin {
            sweep::Origin::Override(text) => self.override_problem(text, message),
            sweep::Origin::File => {
                let path = KeyPath::root().key("sweep").key(axis.key.as_str());
                self.report(&path, Target::Key, path.clone(), message);
            }
        }
    }

    fn finish(&mut self) -> RecipeErrors {
        RecipeErrors::new(std::mem::take(&mut self.errors))
    }

    /// Step 3: every part converted and checked; `None` when any problem was found.
    fn convert(&mut self, file: RecipeFile) -> Option<Parts> {
        let root = KeyPath::root();
        if !valid_name(&file.name, true) {
            self.node(&root.key("name"), format!("expected {}, found {:?}", NAME_FORM_DOTTED, file.name));
        }
        let output = match file.output {
            Some(output) if output.as_os_str().is_empty() => {
                self.node(&root.key("output"), "expected a folder, found an empty path");
                PathBuf::new()
            }
            Some(output) => output,
            None => Path::new("results").join(&file.name),
        };
        let recipe_dir = self.file.parent().unwrap_or(Path::new("")).to_path_buf();
        let streams = self.streams(file.stream, file.streams, &recipe_dir);
        self.network(&file.network);
        self.training(&file.training);
        let default_worker = self.default_worker(file.worker, &recipe_dir);
        let methods = self.methods(file.methods, &default_worker, &recipe_dir);
        self.worker_streams(&methods, &streams);
        let seeds = self.seeds(file.seeds);
        self.eval(&file.eval);
        self.checkpoint(&file.checkpoint);
        if let Some(parallel) = file.parallel {
            self.bounded(&root.key("parallel"), parallel as u64, MAX_PARALLEL);
        }
        self.bounded(&root.key("max_attempts"), u64::from(file.max_attempts), MAX_ATTEMPTS);
        let slurm = file.slurm.map(|slurm| self.slurm(slurm));
        if let Some(slurm) = &slurm {
            if (slurm.cpus as usize) < file.training.threads {
                self.node(
                    &root.key("slurm").key("cpus"),
                    format!(
                        "expected at least {} CPUs per task: `training.threads` asks for {} threads per run",
                        file.training.threads, file.training.threads
                    ),
                );
            }
        }
        if !self.errors.is_empty() {
            return None;
        }
        Some(Parts {
            name: file.name,
            description: file.description,
            output,
            streams,
            network: file.network,
            training: file.training,
            methods,
            seeds,
            eval: file.eval,
            checkpoint: file.checkpoint,
            parallel: file.parallel,
            max_attempts: file.max_attempts,
            timeout: file.timeout.map(|t| t.0),
            heartbeat: file.heartbeat.0,
            slurm,
        })
    }

    fn streams(
        &mut self,
        stream: Option<Map<String, Json>>,
        streams: Option<Vec<Map<String, Json>>>,
        recipe_dir: &Path,
    ) -> Vec<NamedStream> {
        let root = KeyPath::root();
        match (stream, streams) {
            (Some(_), Some(_)) => {
                self.report(
                    &root.key("streams"),
                    Target::Key,
                    root.clone(),
                    "`stream` and `streams` exclude each other: write one stream under `stream:`, \
                     or several, each with a `name:`, under `streams:`"
                        .into(),
                );
                Vec::new()
            }
            (None, None) => {
                self.node(
                    &root,
                    "missing key `stream` (one stream) or `streams` (several, each with a `name:`)",
                );
                Vec::new()
            }
            (Some(map), None) => {
                self.stream(&root.key("stream"), map, false, recipe_dir).into_iter().collect()
            }
            (None, Some(list)) => {
                if list.is_empty() {
                    self.node(&root.key("streams"), "expected at least one stream, found an empty list");
                }
                let mut named: Vec<(usize, NamedStream)> = Vec::new();
                for (i, map) in list.into_iter().enumerate() {
                    let base = root.key("streams").index(i);
                    let Some(stream) = self.stream(&base, map, true, recipe_dir) else {
                        continue;
                    };
                    if let Some((j, _)) = named.iter().find(|(_, s)| s.name == stream.name) {
                        self.node(
                            &base.key("name"),
                            format!("duplicate stream name `{}` (also streams[{j}])", stream.name),
                        );
                    } else if let Some((j, same)) = named.iter().find(|(_, s)| s.spec == stream.spec) {
                        self.node(
                            &base,
                            format!(
                                "stream `{}` is identical to stream `{}` (streams[{j}]): their runs \
                                 would be the same runs",
                                stream.name, same.name
                            ),
                        );
                    } else {
                        named.push((i, stream));
                    }
                }
                named.into_iter().map(|(_, s)| s).collect()
            }
        }
    }

    /// One stream: `name` (under `streams:`), `kind`, and the kind's own keys, which are the
    /// fields of the protocol's spec for that kind.
    fn stream(
        &mut self,
        base: &KeyPath,
        mut map: Map<String, Json>,
        named: bool,
        recipe_dir: &Path,
    ) -> Option<NamedStream> {
        let name = if named { self.entry_name(base, map.remove("name"), "streams") } else { None };
        let kinds: Vec<String> = self.checker.stream_kinds();
        let kind = match map.remove("kind") {
            Some(Json::String(kind)) if kinds.contains(&kind) => kind,
            Some(Json::String(kind)) => {
                self.node(&base.key("kind"), unknown_name("stream kind", &kind, &kinds));
                return None;
            }
            Some(other) => {
                let message = format!(
                    "expected a stream kind, found {}; expected one of: {}",
                    describe_json(&other),
                    kinds.join(", ")
                );
                self.node(&base.key("kind"), message);
                return None;
            }
            None => {
                self.node(base, format!("missing key `kind`; expected one of: {}", kinds.join(", ")));
                return None;
            }
        };
        let params: Params = map.into_iter().collect();
        let mut spec = match self.checker.normalize_stream(&kind, &params) {
            Ok(spec) => spec,
            Err(problem) => {
                self.param_problem(base, &kind, &problem.path, &problem.message);
                return None;
            }
        };
        if !self.overridden(&base.key("data_dir")) {
            if let Some(dir) = spec.data_dir().filter(|d| d.is_relative()) {
                spec.set_data_dir(&clean_join(recipe_dir, &dir));
            }
        }
        let tasks = match self.checker.stream_tasks(&spec) {
            Ok(0) => {
                let message = "expected at least one task, found none";
                match spec.params.get("tasks") {
                    Some(_) => self.node(&base.key("tasks"), "expected a positive integer, found 0"),
                    None => self.node(base, message),
                }
                return None;
            }
            Ok(tasks) => tasks,
            Err(problem) => {
                let at = problem.key.map_or_else(|| base.clone(), |key| base.key(key));
                self.node(&at, problem.message);
                return None;
            }
        };
        if let Err(problem) = self.checker.check_stream(&spec) {
            let at = problem.key.map_or_else(|| base.clone(), |key| base.key(key));
            self.node(&at, problem.message);
            return None;
        }
        let name = if named { name? } else { kind };
        Some(NamedStream { name, key: base.clone(), spec, tasks })
    }

    /// The `name` of an entry of `list` (`methods`, `streams`), which must be a name usable in
    /// overrides (`methods.<name>.lr=…`): letters, digits, `_`, `-`.
    fn entry_name(&mut self, base: &KeyPath, value: Option<Json>, list: &str) -> Option<String> {
        match value {
            Some(Json::String(name)) if valid_name(&name, false) => Some(name),
            Some(Json::String(name)) => {
                self.node(&base.key("name"), format!("expected {NAME_FORM}, found {name:?}"));
                None
            }
            Some(other) => {
                self.node(
                    &base.key("name"),
                    format!("expected {NAME_FORM}, found {}", describe_json(&other)),
                );
                None
            }
            None => {
                self.node(base, format!("missing key `name`; every entry of `{list}` needs one"));
                None
            }
        }
    }

    fn network(&mut self, network: &protocol::NetworkSpec) {
        let hidden = KeyPath::root().key("network").key("hidden");
        for (i, &width) in network.hidden.iter().enumerate() {
            self.bounded(&hidden.index(i), width as u64, MAX_WIDTH);
        }
    }

    fn training(&mut self, training: &protocol::TrainingSpec) {
        let base = KeyPath::root().key("training");
        self.bounded(&base.key("batch_size"), training.batch_size as u64, MAX_BATCH_SIZE);
        self.bounded(&base.key("epochs"), training.epochs as u64, MAX_EPOCHS);
        self.at_most(&base.key("validation"), training.validation as u64, MAX_EXAMPLE_COUNT);
        self.bounded(&base.key("threads"), training.threads as u64, protocol::MAX_THREADS as u64);
    }

    fn eval(&mut self, eval: &protocol::EvalSpec) {
        let base = KeyPath::root().key("eval");
        self.bounded(&base.key("every"), eval.every as u64, MAX_TASK_COUNT);
        if let Some(n) = eval.max_examples {
            self.bounded(&base.key("max_examples"), n as u64, MAX_EXAMPLE_COUNT);
        }
        if let Some(n) = eval.online_bin {
            self.bounded(&base.key("online_bin"), n, MAX_EXAMPLE_COUNT);
        }
        if let protocol::EvalTasks::Subsample { earlier } = eval.tasks {
            let at = base.key("tasks").key("subsample").key("earlier");
            self.at_most(&at, earlier as u64, MAX_TASK_COUNT);
        }
        let plasticity = base.key("plasticity");
        self.at_most(&plasticity.key("every"), eval.plasticity.every as u64, MAX_TASK_COUNT);
        self.bounded(&plasticity.key("probe"), eval.plasticity.probe as u64, MAX_EXAMPLE_COUNT);
        let tau = eval.plasticity.dormant_tau;
        if !(tau.is_finite() && tau >= 0.0) {
            self.node(&plasticity.key("dormant_tau"), format!("expected a finite number ≥ 0, found {tau}"));
        }
    }

    fn checkpoint(&mut self, checkpoint: &protocol::CheckpointSpec) {
        let base = KeyPath::root().key("checkpoint");
        if let Some(n) = checkpoint.every_steps {
            self.bounded(&base.key("every_steps"), n, MAX_STEPS);
        }
        if let Some(n) = checkpoint.every_tasks {
            self.bounded(&base.key("every_tasks"), n as u64, MAX_TASK_COUNT);
        }
        self.bounded(&base.key("keep"), checkpoint.keep as u64, MAX_KEEP);
    }

    fn seeds(&mut self, seeds: SeedsFile) -> Vec<u64> {
        let path = KeyPath::root().key("seeds");
        match seeds {
            SeedsFile::Count(0) => {
                self.node(&path, "expected a positive number of seeds or a non-empty list of seeds, found 0");
                Vec::new()
            }
            SeedsFile::Count(n) if n > MAX_SEED_COUNT => {
                self.node(&path, format!("expected at most {MAX_SEED_COUNT} seeds, found {n}"));
                Vec::new()
            }
            SeedsFile::Count(n) => (0..n).collect(),
            SeedsFile::List(list) if list.is_empty() => {
                self.node(
                    &path,
                    "expected a positive number of seeds or a non-empty list of seeds, found an empty list",
                );
                Vec::new()
            }
            SeedsFile::List(list) => {
                for (j, seed) in list.iter().enumerate() {
                    if let Some(i) = list[..j].iter().position(|s| s == seed) {
                        self.node(&path.index(j), format!("seed {seed} is listed twice (also seeds[{i}])"));
                    }
                }
                list
            }
        }
    }

    fn slurm(&mut self, slurm: SlurmFile) -> SlurmSettings {
        let base = KeyPath::root().key("slurm");
        self.bounded(&base.key("cpus"), u64::from(slurm.cpus), MAX_CPUS);
        if let Some(mem) = &slurm.mem {
            if let Err(message) = super::duration::check_slurm_memory(mem) {
                self.node(&base.key("mem"), message);
            }
        }
        for (key, name) in [("partition", &slurm.partition), ("account", &slurm.account)] {
            if let Some(name) = name {
                if let Err(message) = check_slurm_name(name) {
                    self.node(&base.key(key), message);
                }
            }
        }
        if slurm.signal_seconds > super::duration::MAX_DURATION_SECONDS {
            self.node(
                &base.key("signal_seconds"),
                format!(
                    "expected at most {} seconds (365 days), found {}",
                    super::duration::MAX_DURATION_SECONDS,
                    slurm.signal_seconds
                ),
            );
        }
        for (key, value) in [
            ("gres", &slurm.gres),
            ("gpus_per_task", &slurm.gpus_per_task),
            ("constraint", &slurm.constraint),
        ] {
            if let Some(value) = value {
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    self.node(
                        &base.key(key),
                        format!("expected a SLURM value without spaces, such as `gpu:1`, found {value:?}"),
                    );
                }
            }
        }
        for (i, flag) in slurm.extra.iter().enumerate() {
            if !flag.starts_with('-') {
                self.node(
                    &base.key("extra").index(i),
                    format!("expected an sbatch flag such as `--qos=long`, found {flag:?}"),
                );
            }
        }
        SlurmSettings {
            partition: slurm.partition,
            account: slurm.account,
            time: slurm.time.map(|t| t.0),
            cpus: slurm.cpus,
            mem: slurm.mem,
            gres: slurm.gres,
            gpus_per_task: slurm.gpus_per_task,
            constraint: slurm.constraint,
            extra: slurm.extra,
            signal_seconds: slurm.signal_seconds,
        }
    }

    fn methods(
        &mut self,
        entries: Vec<Map<String, Json>>,
        default_worker: &DefaultWorker,
        recipe_dir: &Path,
    ) -> Vec<MethodEntry> {
        let list = KeyPath::root().key("methods");
        if entries.is_empty() {
            self.node(&list, "expected at least one method entry, found an empty list");
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut methods = Vec::new();
        for (i, mut map) in entries.into_iter().enumerate() {
            let base = list.index(i);
            let worker = match map.remove("worker") {
                Some(value) => match self.worker(&base.key("worker"), value, recipe_dir) {
                    Some(worker) => worker.map(|w| (w, base.key("worker"))),
                    None => continue,
                },
                None => match default_worker {
                    DefaultWorker::Broken => continue,
                    DefaultWorker::Builtin => None,
                    DefaultWorker::External(worker) => Some((worker.clone(), KeyPath::root().key("worker"))),
                },
            };
            if let Some(method) = self.method(&base, map, &mut names, i, worker) {
                methods.push(method);
            }
        }
        methods
    }

    /// The recipe's top-level `worker:`, which method entries without their own inherit.
    fn default_worker(&mut self, value: Option<Json>, recipe_dir: &Path) -> DefaultWorker {
        let Some(value) = value else { return DefaultWorker::Builtin };
        let path = KeyPath::root().key("worker");
        match self.worker(&path, value, recipe_dir) {
            None => DefaultWorker::Broken,
            Some(None) => DefaultWorker::Builtin,
            Some(Some(worker)) => match crate::external::describe(&worker) {
                Ok(_) => DefaultWorker::External(worker),
                Err(message) => {
                    self.node(&path, message);
                    DefaultWorker::Broken
                }
            },
        }
    }

    /// A `worker:` value: `builtin` (`Some(None)`), `{command: [program, args…]}`, or a
    /// problem reported at `path` (`None`).
    fn worker(
        &mut self,
        path: &KeyPath,
        value: Json,
        recipe_dir: &Path,
    ) -> Option<Option<protocol::WorkerCommand>> {
        const FORM: &str = "`builtin` or `{command: [program, arguments…]}`";
        let mut map = match value {
            Json::String(s) if s == "builtin" => return Some(None),
            Json::Object(map) => map,
            other => {
                self.node(path, format!("expected {FORM}, found {}", describe_json(&other)));
                return None;
            }
        };
        if let Some(key) = map.keys().find(|k| k.as_str() != "command").cloned() {
            self.report(
                &path.key(key.as_str()),
                Target::Key,
                path.clone(),
                format!("unknown key `{key}` of a worker; expected {FORM}"),
            );
            return None;
        }
        let command: Option<Vec<String>> = match map.remove("command") {
            Some(Json::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|item| match item {
                    Json::String(s) if !s.is_empty() && !s.contains('\0') => Some(s),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        let Some(command) = command else {
            self.node(
                &path.key("command"),
                "expected a non-empty list of non-empty strings: the program and its arguments",
            );
            return None;
        };
        // The folder commands run in is absolute, so a worker started from anywhere (a SLURM
        // node's job script) finds what the recipe named.
        let dir = if recipe_dir.is_absolute() {
            recipe_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(recipe_dir))
                .unwrap_or_else(|_| recipe_dir.to_path_buf())
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        Some(Some(protocol::WorkerCommand { command, dir }))
    }

    /// Every stream must be one the external workers of the method entries read.
    fn worker_streams(&mut self, methods: &[MethodEntry], streams: &[NamedStream]) {
        for method in methods {
            let Some(worker) = &method.worker else { continue };
            let Ok(description) = crate::external::describe(worker) else { continue };
            if description.streams.is_empty() {
                continue;
            }
            for stream in streams {
                if !description.streams.contains(&stream.spec.kind) {
                    let message = format!(
                        "method `{}` runs on `{}`, which reads only the streams {}; not `{}`",
                        method.name,
                        crate::external::shown(worker),
                        description.streams.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                        stream.spec.kind
                    );
                    self.node(&stream.key, message);
                }
            }
        }
    }

    /// One method entry: `name`, optional `kind`, and parameters; a list value is a grid axis.
    fn method(
        &mut self,
        base: &KeyPath,
        mut map: Map<String, Json>,
        names: &mut HashMap<String, usize>,
        index: usize,
        worker: Option<(protocol::WorkerCommand, KeyPath)>,
    ) -> Option<MethodEntry> {
        let name = self.entry_name(base, map.remove("name"), "methods");
        if let Some(name) = &name {
            if let Some(first) = names.get(name) {
                self.node(
                    &base.key("name"),
                    format!("duplicate method name `{name}` (also methods[{first}]); names label runs in tables and must be unique"),
                );
                return None;
            }
            names.insert(name.clone(), index);
        }
        let (kind, kind_path, defaulted) = match map.remove("kind") {
            Some(Json::String(kind)) => (Some(kind), base.key("kind"), false),
            Some(other) => {
                self.node(
                    &base.key("kind"),
                    format!("expected a method kind (a name), found {}", describe_json(&other)),
                );
                return None;
            }
            None => (name.clone(), base.key("name"), true),
        };
        let (name, kind) = (name?, kind?);
        if let Some((worker, worker_path)) = worker {
            return self.external_method(
                base,
                name,
                kind,
                (&kind_path, defaulted),
                map,
                worker,
                &worker_path,
            );
        }
        let Some(parameters) = self.checker.method_parameters(&kind) else {
            let mut message = unknown_name("method kind", &kind, &self.checker.method_kinds());
            if defaulted {
                message.push_str("; an entry without `kind:` uses its name as the kind");
            }
            self.node(&kind_path, message);
            return None;
        };
        let (fixed, axes) = self.parameters(base, map, &parameters, &kind)?;
        let entry = MethodEntry { name, kind, fixed, axes, worker: None };
        self.check_grid(base, &entry);
        Some(entry)
    }

    /// A method entry trained by an external worker: its kind and parameters checked against
    /// the worker's own description, every parameter the recipe leaves out given its default.
    #[allow(clippy::too_many_arguments)]
    fn external_method(
        &mut self,
        base: &KeyPath,
        name: String,
        kind: String,
        (kind_path, defaulted): (&KeyPath, bool),
        map: Map<String, Json>,
        worker: protocol::WorkerCommand,
        worker_path: &KeyPath,
    ) -> Option<MethodEntry> {
        let description = match crate::external::describe(&worker) {
            Ok(d) => d,
            Err(message) => {
                self.node(worker_path, message);
                return None;
            }
        };
        let shown = crate::external::shown(&worker);
        let Some(declared) = description.methods.iter().find(|m| m.kind == kind) else {
            let kinds: Vec<String> = description.methods.iter().map(|m| m.kind.clone()).collect();
            let mut message = unknown_name(&format!("method kind of `{shown}`"), &kind, &kinds);
            if defaulted {
                message.push_str("; an entry without `kind:` uses its name as the kind");
            }
            self.node(kind_path, message);
            return None;
        };
        let parameters: Vec<String> = declared.params.iter().map(|p| p.name.clone()).collect();
        let (mut fixed, axes) = self.parameters(base, map, &parameters, &kind)?;
        let mut valid = true;
        for param in &declared.params {
            let values: Vec<(KeyPath, &Json)> = match (fixed.get(&param.name), axes.get(&param.name)) {
                (Some(v), _) => vec![(base.key(param.name.as_str()), v)],
                (None, Some(vs)) => {
                    vs.iter().enumerate().map(|(j, v)| (base.key(param.name.as_str()).index(j), v)).collect()
                }
                (None, None) => Vec::new(),
            };
            if values.is_empty() {
                match &param.default {
                    Some(default) => {
                        fixed.insert(param.name.clone(), default.clone());
                    }
                    None => {
                        let doc =
                            if param.doc.is_empty() { String::new() } else { format!(" ({})", param.doc) };
                        self.node(
                            base,
                            format!(
                                "missing parameter `{}`{doc}: `{shown}` gives `{kind}` no default for it, expected {}",
                                param.name,
                                param.ty.name()
                            ),
                        );
                        valid = false;
                    }
                }
                continue;
            }
            for (path, value) in values {
                if !param.ty.admits(value) {
                    self.node(&path, format!("expected {}, found {}", param.ty.name(), describe_json(value)));
                    valid = false;
                } else if let Some(choices) = param.choices.as_ref().filter(|c| !c.contains(value)) {
                    let listed: Vec<String> = choices.iter().map(show_value).collect();
                    self.node(
                        &path,
                        format!("expected one of {}, found {}", listed.join(", "), show_value(value)),
                    );
                    valid = false;
                }
            }
        }
        valid.then_some(MethodEntry { name, kind, fixed, axes, worker: Some(worker) })
    }

    /// An entry's parameters split into fixed values and grid axes; unknown names, empty
    /// lists and repeated grid values are reported.
    fn parameters(
        &mut self,
        base: &KeyPath,
        map: Map<String, Json>,
        parameters: &[String],
        kind: &str,
    ) -> Option<(BTreeMap<String, Json>, Axes)> {
        let mut fixed = BTreeMap::new();
        let mut axes = BTreeMap::new();
        let mut valid = true;
        for (key, value) in map {
            if !parameters.contains(&key) {
                let message = unknown_key(&key, parameters, kind);
                self.report(&base.key(key.as_str()), Target::Key, base.clone(), message);
                valid = false;
                continue;
            }
            match value {
                Json::Array(values) if values.is_empty() => {
                    self.node(
                        &base.key(key.as_str()),
                        "expected a value or a non-empty list of values (a grid axis), found an empty list",
                    );
                    valid = false;
                }
                Json::Array(mut values) if values.len() == 1 => {
                    fixed.insert(key, values.pop().expect("one value"));
                }
                Json::Array(values) => {
                    for (j, value) in values.iter().enumerate() {
                        if let Some(i) = values[..j].iter().position(|v| v == value) {
                            let message = format!(
                                "grid value {} is listed twice (also {key}[{i}]); it would give the same runs twice",
                                show_value(value)
                            );
                            self.node(&base.key(key.as_str()).index(j), message);
                            valid = false;
                        }
                    }
                    axes.insert(key, values);
                }
                value => {
                    fixed.insert(key, value);
                }
            }
        }
        valid.then_some((fixed, axes))
    }

    /// The checker's value checks of every grid point. A problem shared by every point is
    /// reported once; one that only some points have names the first such point (or, when it
    /// is about an axis, points at that axis's value).
    fn check_grid(&mut self, base: &KeyPath, entry: &MethodEntry) {
        let points = entry.grid_points();
        let mut failures: Vec<(Option<String>, String, Vec<usize>)> = Vec::new();
        for (p, point) in points.iter().enumerate() {
            let spec: MethodSpec = entry.spec(point);
            if let Err(problem) = self.checker.check_method(&spec) {
                match failures.iter_mut().find(|f| f.0 == problem.key && f.1 == problem.message) {
                    Some(failure) => failure.2.push(p),
                    None => failures.push((problem.key, problem.message, vec![p])),
                }
            }
        }
        for (key, mut message, at) in failures {
            let point = &points[at[0]];
            let axis = key.as_ref().and_then(|k| entry.axes.get(k).map(|values| (k, values)));
            let path = match (&key, axis) {
                (Some(k), Some((_, values))) => {
                    let j = values.iter().position(|v| Some(v) == point.get(k)).unwrap_or(0);
                    base.key(k.as_str()).index(j)
                }
                (Some(k), None) if entry.fixed.contains_key(k) => base.key(k.as_str()),
                _ => base.clone(),
            };
            if axis.is_none() && at.len() < points.len() {
                message.push_str(&format!(" (at grid point {})", super::expand::render_point(point)));
            }
            self.node(&path, message);
        }
    }

    /// A positive integer at most `max`.
    fn bounded(&mut self, path: &KeyPath, value: u64, max: u64) {
        if value == 0 {
            self.node(path, "expected a positive integer, found 0");
        } else if value > max {
            self.node(path, format!("expected at most {max}, found {value}"));
        }
    }

    /// A count (zero allowed) at most `max`.
    fn at_most(&mut self, path: &KeyPath, value: u64, max: u64) {
        if value > max {
            self.node(path, format!("expected at most {max}, found {value}"));
        }
    }

    /// Whether an override set `path` or one of its ancestors.
    fn overridden(&self, path: &KeyPath) -> bool {
        self.applied.iter().any(|(p, blame)| matches!(blame, Blame::Override(_)) && p.is_prefix_of(path))
    }

    /// A problem of the node at `path`, shown under the same path.
    fn node(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.report(path, Target::Node, path.clone(), message.into());
    }

    /// A problem of the node (or key) at `path`, displayed under the key path `shown`. The
    /// last override that set `path` or an ancestor takes the blame; otherwise the problem is
    /// located in the text, noting any override that changed something inside the node.
    fn report(&mut self, path: &KeyPath, target: Target, shown: KeyPath, message: String) {
        let error = located(self.file, self.text, &self.applied, path, target, shown, message);
        self.errors.push(error);
    }

    fn override_problem(&mut self, text: &str, message: String) {
        self.push(None, KeyPath::root(), Some(text.to_string()), message);
    }

    fn push(&mut self, position: Option<Position>, key: KeyPath, via: Option<String>, message: String) {
        self.errors.push(RecipeError {
            file: self.file.to_path_buf(),
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            key,
            via_override: via,
            message,
        });
    }

    /// A deserialisation error below `base`, in recipe terms. `owner` names what takes the keys
    /// at `base` in "unknown key" messages; `tagged` drops the enum variant step that the
    /// kind-tagged stream conversion adds.
    fn serde_problem(
        &mut self,
        base: &KeyPath,
        owner: &str,
        error: serde_path_to_error::Error<serde_json::Error>,
    ) {
        let path: Vec<ParamSegment> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(ParamSegment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(ParamSegment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => Some(ParamSegment::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        self.param_problem(base, owner, &path, &error.inner().to_string());
    }

    /// Reports a parse error at the YAML position of the value it names, rephrasing serde's
    /// wording (`unknown field`, `expected one of`) into the recipe's.
    fn param_problem(&mut self, base: &KeyPath, owner: &str, segments: &[ParamSegment], message: &str) {
        let mut path = base.clone();
        for segment in segments {
            path = match segment {
                ParamSegment::Index(index) => path.index(*index),
                ParamSegment::Key(key) => path.key(key.as_str()),
            };
        }
        match rephrase(message) {
            SerdeMessage::UnknownKey { key, known } => {
                let container = if path.last() == Some(&Segment::Key(key.clone())) {
                    path.parent()
                } else {
                    path.clone()
                };
                let owner = if container == *base { owner.to_string() } else { format!("`{container}`") };
                let message = unknown_key(&key, &known, &owner);
                self.report(&container.key(key.as_str()), Target::Key, container, message);
            }
            SerdeMessage::Other(message) => self.node(&path, message),
        }
    }
}

const NAME_FORM: &str = "a name of letters, digits, `_` and `-`";
const NAME_FORM_DOTTED: &str = "a name of letters, digits, `_`, `.` and `-`";

/// Experiment names may contain dots (`pm.v2`) since they only name a folder; entry names may
/// not, since overrides address them between dots.
fn valid_name(name: &str, dots: bool) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.'))
}

/// `base/relative` with `.` steps dropped and `..` steps cancelled against earlier names,
/// lexically (a symbolic link followed by `..` is not resolved). The result stays relative
/// when `base` is, so the same recipe run from the same folder always yields the same data
/// path — the path is part of every run id.
fn clean_join(base: &Path, relative: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in base.join(relative).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// A SLURM partition or account name: letters, digits and `_ - . ,` (a comma separates
/// several), nothing a shell or an sbatch script line would read otherwise.
fn check_slurm_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ',');
    if name.is_empty() {
        Err("expected a SLURM name, found an empty string".to_string())
    } else if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        Err(format!("expected a SLURM name of letters, digits and `_ - . ,`, found {name:?} (with {bad:?})"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_clean_relative_paths() {
        let join = |b: &str, r: &str| clean_join(Path::new(b), Path::new(r)).display().to_string();
        assert_eq!(join("recipes", "../../shared/data"), "../shared/data");
        assert_eq!(join("", "data"), "data");
        assert_eq!(join("a/b", "./c/../d"), "a/b/d");
        assert_eq!(join("/r", "../../x"), "/x");
        assert_eq!(join("a", ".."), ".");
    }

    #[test]
    fn names() {
        assert!(valid_name("quickstart", true));
        assert!(valid_name("pm.v2", true));
        assert!(!valid_name("pm.v2", false));
        assert!(!valid_name("", true));
        assert!(!valid_name("..", true));
        assert!(!valid_name("a b", true));
        assert!(!valid_name("a/b", true));
    }
}
