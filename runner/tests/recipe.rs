//! Recipe loading, validation messages, overrides and expansion, against a fake worker-side
//! checker and the fixtures in `tests/fixtures/recipes/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{EvalTasks, MethodSpec, Params, RunSpec, StreamSpec};
use runner::recipe::{plan_table, Multirun, ParamProblem, Recipe, RecipeErrors, SpecChecker, SpecProblem};
use serde_json::json;

/// Stands in for the worker crate's method registry: five method kinds with plausible
/// parameters, a positivity check of `lr`, a range check of `replacement_rate`, and an
/// existence check of data folders. Streams are the worker crate's own registry (a
/// dev-dependency: the runner itself never links the engine), so stream messages are real.
struct FakeChecker;

const OPTIMIZER_KEYS: [&str; 6] = ["optimizer", "lr", "momentum", "beta1", "beta2", "eps"];

impl SpecChecker for FakeChecker {
    fn method_kinds(&self) -> Vec<String> {
        ["sgd", "adam", "l2", "shrink_perturb", "cbp"].map(String::from).to_vec()
    }

    fn method_parameters(&self, kind: &str) -> Option<Vec<String>> {
        let own: &[&str] = match kind {
            "sgd" | "adam" => &[],
            "l2" => &["weight_decay"],
            "shrink_perturb" => &["shrink", "noise_std"],
            "cbp" => {
                &["accumulate", "bias_correction", "decay_rate", "maturity_threshold", "replacement_rate"]
            }
            _ => return None,
        };
        Some(OPTIMIZER_KEYS.iter().chain(own).map(|s| s.to_string()).collect())
    }

    fn check_method(&self, method: &MethodSpec) -> Result<(), SpecProblem> {
        if let Some(lr) = method.params.get("lr") {
            if !lr.as_f64().is_some_and(|lr| lr > 0.0) {
                return Err(SpecProblem::at("lr", format!("expected a positive number, found {lr}")));
            }
        }
        if let Some(rate) = method.params.get("replacement_rate") {
            if !rate.as_f64().is_some_and(|r| (0.0..=1.0).contains(&r)) {
                return Err(SpecProblem::at(
                    "replacement_rate",
                    format!("expected a number in [0, 1], found {rate}"),
                ));
            }
        }
        if method.params.get("optimizer").is_some_and(|o| o != "sgd" && o != "adam") {
            return Err(SpecProblem::new("optimizer must be `sgd` or `adam`"));
        }
        Ok(())
    }

    fn stream_kinds(&self) -> Vec<String> {
        workers::stream::registry().iter().map(|s| s.kind.to_string()).collect()
    }

    fn normalize_stream(&self, kind: &str, params: &Params) -> Result<StreamSpec, ParamProblem> {
        workers::stream::normalize(kind, params)
    }

    fn stream_tasks(&self, stream: &StreamSpec) -> Result<usize, SpecProblem> {
        workers::stream::tasks(stream).map_err(|e| SpecProblem::new(e.to_string()))
    }

    fn fingerprint(&self, kind: &str, dir: &Path) -> Result<String, String> {
        workers::stream::fingerprint(kind, dir).map_err(|e| e.to_string())
    }

    fn check_run(&self, _spec: &RunSpec) -> Result<(), String> {
        Ok(())
    }

    fn check_stream(&self, stream: &StreamSpec) -> Result<(), SpecProblem> {
        match stream.data_dir() {
            Some(dir) if !dir.is_dir() => {
                Err(SpecProblem::at("data_dir", format!("data folder `{}` does not exist", dir.display())))
            }
            _ => Ok(()),
        }
    }
}

const NO_OVERRIDES: &[&str] = &[];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recipes").join(name)
}

fn load(name: &str, overrides: &[&str]) -> Result<Recipe, RecipeErrors> {
    Recipe::load(fixture(name), overrides, &FakeChecker)
}

/// A valid recipe around a replaceable part; the stream comes first so tests know its lines.
const BASE: &str = "\
name: demo
stream:
  kind: synthetic_permuted
  tasks: 3
network: {hidden: [8]}
methods:
  - name: sgd
    lr: 0.1
  - name: cbp
    replacement_rate: [1e-4, 1e-5]
";

fn errors(text: &str, overrides: &[&str]) -> String {
    match Recipe::from_text("recipes/x.yaml", text, overrides, &FakeChecker) {
        Ok(_) => panic!("expected the recipe to be refused:\n{text}\noverrides: {overrides:?}"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn quickstart_loads_with_defaults() {
    let recipe = load("quickstart.yaml", NO_OVERRIDES).unwrap();
    assert_eq!(recipe.name, "quickstart");
    assert_eq!(recipe.output, PathBuf::from("results/quickstart"));
    assert_eq!(recipe.seeds, vec![0, 1, 2]);
    assert_eq!(recipe.parallel, Some(2));
    assert_eq!(recipe.max_attempts, 3);
    assert_eq!(recipe.timeout, Some(Duration::from_secs(1_800)));
    assert_eq!(recipe.heartbeat, Duration::from_secs(600));
    assert_eq!(recipe.slurm, None);
    assert_eq!(recipe.sweep[0].streams.len(), 1);
    assert_eq!(recipe.sweep[0].streams[0].name, "synthetic_permuted");
    let text = std::fs::read_to_string(fixture("quickstart.yaml")).unwrap();
    assert_eq!(recipe.text, text);
    assert_eq!(recipe.text_hash, blake3::hash(text.as_bytes()).to_hex().to_string());
    assert!(recipe.overrides.is_empty());
    let cbp = &recipe.sweep[0].methods[1];
    assert_eq!(cbp.kind, "cbp");
    assert_eq!(cbp.fixed, BTreeMap::from([("lr".into(), json!(0.001)), ("optimizer".into(), json!("adam"))]));
    assert_eq!(cbp.axes["replacement_rate"], vec![json!(0.0001), json!(0.00001)]);
}

#[test]
fn every_key_of_the_format_is_read() {
    let recipe = load("everything.yaml", NO_OVERRIDES).unwrap();
    assert_eq!(recipe.name, "everything.v1");
    assert_eq!(recipe.output, PathBuf::from("scratch/everything"));
    let stub = fixture("mnist-stub");
    let names: Vec<&str> = recipe.sweep[0].streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["pm", "split"]);
    let pm = &recipe.sweep[0].streams[0].spec;
    assert_eq!(pm.kind, "permuted_mnist");
    assert_eq!(pm.data_dir(), Some(stub.clone()), "relative to the recipe's folder");
    assert_eq!(
        serde_json::to_value(&pm.params).unwrap(),
        json!({"data_dir": stub, "tasks": 3, "first_unpermuted": true, "train_examples": 1000, "test_examples": 200})
    );
    let split = &recipe.sweep[0].streams[1].spec;
    assert_eq!(split.kind, "split_mnist");
    assert_eq!(split.data_dir(), Some(stub.clone()), "`.` and `..` steps are cleaned");
    assert_eq!(split.params.get("groups"), Some(&json!([[0, 1], [2, 3]])));
    assert_eq!(split.params.get("setting"), Some(&json!("class_incremental")));
    assert_eq!(recipe.sweep[0].network.hidden, vec![64]);
    assert_eq!(recipe.sweep[0].network.activation.name(), "tanh");
    assert_eq!((recipe.sweep[0].training.batch_size, recipe.sweep[0].training.epochs), (10, 2));
    assert_eq!(recipe.seeds, vec![0, 7, 42]);
    assert_eq!(recipe.sweep[0].eval.tasks, EvalTasks::Subsample { earlier: 5 });
    assert!(!recipe.sweep[0].eval.before_training);
    assert_eq!((recipe.sweep[0].eval.max_examples, recipe.sweep[0].eval.online_bin), (Some(500), Some(100)));
    assert_eq!((recipe.sweep[0].eval.plasticity.every, recipe.sweep[0].eval.plasticity.probe), (2, 256));
    assert_eq!(recipe.sweep[0].eval.plasticity.dormant_tau, 0.05);
    assert_eq!(recipe.sweep[0].checkpoint.every_steps, Some(5000));
    assert_eq!((recipe.sweep[0].checkpoint.every_tasks, recipe.sweep[0].checkpoint.keep), (Some(2), 3));
    assert_eq!((recipe.parallel, recipe.max_attempts), (Some(4), 5));
    assert_eq!(recipe.timeout, Some(Duration::from_secs(7_200)));
    assert_eq!(recipe.heartbeat, Duration::from_secs(90));
    let slurm = recipe.slurm.as_ref().unwrap();
    assert_eq!(slurm.partition.as_deref(), Some("debug"));
    assert_eq!(slurm.account.as_deref(), Some("lab"));
    assert_eq!(slurm.time, Some(Duration::from_secs(26 * 3_600)));
    assert_eq!(runner::recipe::slurm_time(slurm.time.unwrap()), "1-02:00:00");
    assert_eq!((slurm.cpus, slurm.mem.as_deref(), slurm.signal_seconds), (2, Some("4G"), 300));
    assert_eq!(slurm.extra, vec!["--qos=long".to_string()]);
    // A one-element list is a fixed value, not an axis.
    let cbp = &recipe.sweep[0].methods[2];
    assert_eq!(cbp.fixed["accumulate"], json!(true));
    assert_eq!(cbp.axes.keys().collect::<Vec<_>>(), ["maturity_threshold"]);
    // 2 streams × (1 + 2 + 2) grid points × 3 seeds.
    let runs = recipe.expand();
    assert_eq!(runs.len(), 30);
    assert!(
        plan_table(&runs).starts_with("30 runs: 2 streams × 3 methods (5 grid points in all) × 3 seeds\n")
    );
}

#[test]
fn expansion_order_and_parameters() {
    let recipe = load("quickstart.yaml", NO_OVERRIDES).unwrap();
    let runs = recipe.expand();
    let order: Vec<(String, String, u64)> =
        runs.iter().map(|r| (r.method.clone(), serde_json::to_string(&r.grid).unwrap(), r.seed)).collect();
    let expected: Vec<(String, String, u64)> = [
        ("sgd", r#"{"lr":0.01}"#),
        ("sgd", r#"{"lr":0.003}"#),
        ("cbp", r#"{"replacement_rate":0.0001}"#),
        ("cbp", r#"{"replacement_rate":0.00001}"#),
    ]
    .iter()
    .flat_map(|(m, g)| (0..3).map(move |s| (m.to_string(), g.to_string(), s)))
    .collect();
    assert_eq!(order, expected);
    let run = &runs[6];
    assert_eq!(run.spec.experiment, "quickstart");
    assert_eq!(run.spec.run_dir, None);
    assert_eq!(run.spec.id, run.spec.content_id());
    assert_eq!(run.stream, "synthetic_permuted");
    // YAML's 1e-4 is the JSON number 0.0001; fixed and grid parameters are merged.
    assert_eq!(
        serde_json::to_string(&run.spec.method.params).unwrap(),
        r#"{"lr":0.001,"optimizer":"adam","replacement_rate":0.0001}"#
    );
    let ids: std::collections::HashSet<&str> = runs.iter().map(|r| r.spec.id.as_str()).collect();
    assert_eq!(ids.len(), runs.len());
}

#[test]
fn grid_points_vary_the_first_axis_slowest() {
    let text = BASE.replace(
        "replacement_rate: [1e-4, 1e-5]",
        "replacement_rate: [0.1, 0.2]\n    decay_rate: [0.9, 0.99]\n    lr: [3, 1]",
    );
    let recipe = Recipe::from_text("x.yaml", text, NO_OVERRIDES, &FakeChecker).unwrap();
    let grids: Vec<String> = recipe
        .expand()
        .iter()
        .filter(|r| r.method == "cbp" && r.seed == 0)
        .map(|r| serde_json::to_string(&r.grid).unwrap())
        .collect();
    assert_eq!(grids[0], r#"{"decay_rate":0.9,"lr":3,"replacement_rate":0.1}"#, "integers stay integers");
    assert_eq!(grids[1], r#"{"decay_rate":0.9,"lr":3,"replacement_rate":0.2}"#);
    assert_eq!(grids[2], r#"{"decay_rate":0.9,"lr":1,"replacement_rate":0.1}"#);
    assert_eq!(grids[7], r#"{"decay_rate":0.99,"lr":1,"replacement_rate":0.2}"#);
    assert_eq!(grids.len(), 8);
}

/// Pinned so that an accidental change of the canonical form (protocol, parameter encoding,
/// defaults) is noticed: it would orphan every finished run of every experiment.
#[test]
fn run_ids_are_pinned() {
    let recipe = load("quickstart.yaml", NO_OVERRIDES).unwrap();
    let runs = recipe.expand();
    assert_eq!(runs[0].spec.id, "0564bf45f61d");
}

#[test]
fn editing_one_method_changes_only_its_ids() {
    let before = load("quickstart.yaml", NO_OVERRIDES).unwrap().expand();
    let after = load("quickstart.yaml", &["methods.cbp.lr=0.002"]).unwrap().expand();
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.method, a.method);
        if b.method == "cbp" {
            assert_ne!(b.spec.id, a.spec.id);
        } else {
            assert_eq!(b.spec.id, a.spec.id);
        }
    }
}

#[test]
fn adding_a_seed_keeps_the_existing_ids() {
    let before = load("quickstart.yaml", NO_OVERRIDES).unwrap().expand();
    let after = load("quickstart.yaml", &["seeds=4"]).unwrap().expand();
    assert_eq!(after.len(), before.len() / 3 * 4);
    let after_ids: Vec<&str> = after.iter().map(|r| r.spec.id.as_str()).collect();
    for run in &before {
        assert!(after_ids.contains(&run.spec.id.as_str()), "{} lost its id", run.spec.id);
    }
}

#[test]
fn renaming_the_experiment_or_checkpointing_differently_keeps_ids() {
    let before = load("quickstart.yaml", NO_OVERRIDES).unwrap().expand();
    let after = load("quickstart.yaml", &["name=renamed", "checkpoint.keep=5"]).unwrap().expand();
    let ids =
        |runs: &[runner::recipe::PlannedRun]| runs.iter().map(|r| r.spec.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&before), ids(&after));
    assert_eq!(after[0].spec.experiment, "renamed");
}

#[test]
fn overrides_are_applied_validated_and_recorded() {
    let overrides = [
        "seeds=5",
        "methods.sgd.lr=[0.01,0.003]",
        "parallel=1",
        "stream.tasks=3",
        "network.hidden=[50,50]",
        "eval.tasks={subsample: {earlier: 3}}",
        "methods.cbp.momentum=0.5",
        "heartbeat=1h",
    ];
    let recipe = load("quickstart.yaml", &overrides).unwrap();
    assert_eq!(recipe.seeds, vec![0, 1, 2, 3, 4]);
    assert_eq!(recipe.sweep[0].methods[0].axes["lr"], vec![json!(0.01), json!(0.003)]);
    assert_eq!(recipe.parallel, Some(1));
    assert_eq!(recipe.sweep[0].streams[0].tasks, 3);
    assert_eq!(recipe.sweep[0].network.hidden, vec![50, 50]);
    assert_eq!(recipe.sweep[0].eval.tasks, EvalTasks::Subsample { earlier: 3 });
    assert_eq!(recipe.sweep[0].methods[1].fixed["momentum"], json!(0.5));
    assert_eq!(recipe.heartbeat, Duration::from_secs(3_600));
    let recorded: Vec<String> = recipe.overrides.iter().map(|o| o.to_string()).collect();
    assert_eq!(recorded, overrides);
    // The text is the file's, not the overridden one.
    assert!(recipe.text.contains("seeds: 3"));
}

#[test]
fn data_folders_from_overrides_are_relative_to_the_current_folder() {
    let stub = fixture("mnist-stub");
    let text = BASE.replace("kind: synthetic_permuted", "kind: permuted_mnist\n  data_dir: nowhere");
    let data_dir = format!("stream.data_dir={}", stub.display());
    let recipe = Recipe::from_text("recipes/x.yaml", text, &[data_dir.as_str()], &FakeChecker).unwrap();
    assert_eq!(recipe.sweep[0].streams[0].spec.data_dir(), Some(stub.clone()));
    // Written in the file, the same relative path resolves against the file's folder.
    let message = errors(
        &BASE.replace("kind: synthetic_permuted", "kind: permuted_mnist\n  data_dir: ../data"),
        NO_OVERRIDES,
    );
    assert!(
        message.contains("recipes/x.yaml:4:13: stream.data_dir: data folder `data` does not exist"),
        "{message}"
    );
}

#[test]
fn plan_table_is_aligned_and_counted() {
    let runs = load("quickstart.yaml", NO_OVERRIDES).unwrap().expand();
    let table = plan_table(&runs);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "12 runs: 2 methods × 2 grid points × 3 seeds");
    assert_eq!(lines.len(), 2 + 12);
    let header = lines[1];
    assert!(header.starts_with("id            stream              method  grid point"), "{table}");
    let seed_column = header.find("seed").unwrap();
    for (line, run) in lines[2..].iter().zip(&runs) {
        assert!(line.starts_with(&run.spec.id), "{line}");
        assert_eq!(&line[seed_column..], run.seed.to_string(), "{table}");
    }
    assert!(lines[8].contains("cbp     replacement_rate=0.0001"), "{table}");
    assert!(lines[2].contains("sgd     lr=0.01"), "{table}");
    // Uneven grids and a single grid point per method are counted in words too.
    let uneven = Recipe::from_text("x.yaml", BASE, NO_OVERRIDES, &FakeChecker).unwrap().expand();
    assert!(plan_table(&uneven).starts_with("3 runs: 2 methods (3 grid points in all) × 1 seed\n"));
    let plain = Recipe::from_text("x.yaml", BASE.replace("[1e-4, 1e-5]", "1e-4"), NO_OVERRIDES, &FakeChecker)
        .unwrap()
        .expand();
    assert!(plan_table(&plain).starts_with("2 runs: 2 methods × 1 seed\n"));
    assert!(plan_table(&uneven[..1]).starts_with("1 run: 1 method × 1 seed\n"));
    assert_eq!(plan_table(&[]).lines().next(), Some("0 runs"));
}

/// (case, recipe text, overrides, substrings the message must contain).
type Case = (&'static str, String, &'static [&'static str], &'static [&'static str]);

fn invalid_recipes() -> Vec<Case> {
    let with = |from: &str, to: &str| {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    };
    vec![
        (
            "unknown top-level key, near a known one",
            format!("{BASE}paralel: 2\n"),
            &[],
            &["recipes/x.yaml:11:1: unknown key `paralel` (did you mean `parallel`?); a recipe takes: name, description,"],
        ),
        ("unknown top-level key, far from all", format!("{BASE}colour: red\n"), &[], &["recipes/x.yaml:11:1: unknown key `colour`; a recipe takes:"]),
        (
            "wrong type",
            with("tasks: 3", "tasks: ten"),
            &[],
            &[r#"recipes/x.yaml:4:10: stream.tasks: expected a non-negative integer, found "ten""#],
        ),
        ("zero tasks", with("tasks: 3", "tasks: 0"), &[], &["recipes/x.yaml:4:10: stream.tasks: expected a positive integer, found 0"]),
        (
            "grid on a training key",
            format!("{BASE}training: {{batch_size: [16, 32]}}\n"),
            &[],
            &["recipes/x.yaml:11:24: training.batch_size: expected a non-negative integer, found a list; grids (lists) are allowed only in method parameters"],
        ),
        (
            "grid on parallel",
            format!("{BASE}parallel: [1, 2]\n"),
            &[],
            &["recipes/x.yaml:11:11: parallel: expected a non-negative integer, found a list; grids (lists) are allowed only in method parameters"],
        ),
        (
            "unknown method kind from the name",
            with("name: sgd", "name: sdg"),
            &[],
            &["recipes/x.yaml:7:11: methods[0].name: unknown method kind `sdg` (did you mean `sgd`?); expected one of: sgd, adam, l2, shrink_perturb, cbp; an entry without `kind:` uses its name"],
        ),
        (
            "unknown method kind",
            with("name: cbp", "name: mine\n    kind: ewc"),
            &[],
            &["recipes/x.yaml:10:11: methods[1].kind: unknown method kind `ewc`; expected one of:"],
        ),
        (
            "unknown method parameter",
            with("replacement_rate", "replacment_rate"),
            &[],
            &["recipes/x.yaml:10:5: methods[1]: unknown key `replacment_rate` (did you mean `replacement_rate`?); cbp takes: optimizer, lr, momentum, beta1, beta2, eps, accumulate, bias_correction,"],
        ),
        (
            "duplicate method names",
            with("name: cbp", "name: sgd\n    kind: cbp"),
            &[],
            &["recipes/x.yaml:9:11: methods[1].name: duplicate method name `sgd` (also methods[0])"],
        ),
        (
            "stream and streams both",
            format!("{BASE}streams:\n  - {{name: a, kind: synthetic_permuted, tasks: 2}}\n"),
            &[],
            &["recipes/x.yaml:11:1: `stream` and `streams` exclude each other"],
        ),
        (
            "neither stream nor streams",
            with("stream:\n  kind: synthetic_permuted\n  tasks: 3\n", ""),
            &[],
            &["recipes/x.yaml:1:1: missing key `stream` (one stream) or `streams`"],
        ),
        ("empty methods", "name: demo\nstream: {kind: synthetic_permuted, tasks: 3}\nnetwork: {hidden: [8]}\nmethods: []\n".to_string(), &[], &["recipes/x.yaml:4:10: methods: expected at least one method entry, found an empty list"]),
        ("seeds 0", format!("{BASE}seeds: 0\n"), &[], &["recipes/x.yaml:11:8: seeds: expected a positive number of seeds or a non-empty list of seeds, found 0"]),
        ("negative seeds", format!("{BASE}seeds: -2\n"), &[], &["seeds: expected a number of seeds or a list of seeds, found -2"]),
        ("repeated seed", format!("{BASE}seeds: [1, 2, 1]\n"), &[], &["recipes/x.yaml:11:15: seeds[2]: seed 1 is listed twice (also seeds[0])"]),
        ("invalid name", with("name: demo", "name: my demo"), &[], &[r#"recipes/x.yaml:1:7: name: expected a name of letters, digits, `_`, `.` and `-`, found "my demo""#]),
        ("invalid method name", with("name: sgd", "name: sgd.v2\n    kind: sgd"), &[], &["methods[0].name: expected a name of letters, digits, `_` and `-`, found \"sgd.v2\""]),
        ("bad duration", format!("{BASE}timeout: 2 hours\n"), &[], &["recipes/x.yaml:11:10: timeout: expected a duration such as `90s`, `30m`, `2h`, `1d` or a number of seconds, found `2 hours`"]),
        ("zero duration", format!("{BASE}heartbeat: 0\n"), &[], &["recipes/x.yaml:11:12: heartbeat: expected a positive duration, found 0"]),
        ("bad slurm time", format!("{BASE}slurm: {{time: '90'}}\n"), &[], &["slurm.time: expected a time limit `HH:MM:SS` or `D-HH:MM:SS`, found `90`"]),
        ("bad slurm memory", format!("{BASE}slurm: {{mem: 2GB}}\n"), &[], &["slurm.mem: expected a memory size such as `500M` or `2G`, found `2GB`"]),
        ("fewer slurm cpus than threads", format!("{BASE}training: {{threads: 4}}\nslurm: {{cpus: 2}}\n"), &[], &["slurm.cpus: expected at least 4 CPUs per task: `training.threads` asks for 4 threads per run"]),
        ("checker value error", with("lr: 0.1", "lr: -0.1"), &[], &["recipes/x.yaml:8:9: methods[0].lr: expected a positive number, found -0.1"]),
        (
            "checker error on one grid value",
            with("[1e-4, 1e-5]", "[1e-4, 2.0]"),
            &[],
            &["recipes/x.yaml:10:30: methods[1].replacement_rate[1]: expected a number in [0, 1], found 2.0"],
        ),
        (
            "checker error about the whole entry",
            with("name: cbp", "name: cbp\n    optimizer: rmsprop"),
            &[],
            &["recipes/x.yaml:9:5: methods[1]: optimizer must be `sgd` or `adam`"],
        ),
        ("repeated grid value", with("[1e-4, 1e-5]", "[1e-4, 0.0001]"), &[], &["methods[1].replacement_rate[1]: grid value 0.0001 is listed twice (also replacement_rate[0])"]),
        ("empty grid", with("[1e-4, 1e-5]", "[]"), &[], &["methods[1].replacement_rate: expected a value or a non-empty list of values"]),
        ("unknown stream kind", with("kind: synthetic_permuted", "kind: permutted_mnist"), &[], &["recipes/x.yaml:3:9: stream.kind: unknown stream kind `permutted_mnist` (did you mean `permuted_mnist`?)"]),
        ("missing stream kind", with("  kind: synthetic_permuted\n", ""), &[], &["recipes/x.yaml:3:3: stream: missing key `kind`; expected one of: permuted_mnist,"]),
        (
            "unknown stream key",
            with("tasks: 3", "tasks: 3\n  taks: 4"),
            &[],
            &["recipes/x.yaml:5:3: stream: unknown key `taks` (did you mean `tasks`?); synthetic_permuted takes: tasks, classes, dim,"],
        ),
        ("missing stream key", with("  tasks: 3\n", "  dim: 4\n"), &[], &["stream: missing key `tasks`"]),
        (
            "unknown enum value",
            with("{hidden: [8]}", "{hidden: [8], activation: rleu}"),
            &[],
            &["recipes/x.yaml:5:36: network.activation: unknown value `rleu` (did you mean `relu`?); expected one of: relu, tanh, sigmoid, leaky_relu"],
        ),
        ("unknown nested key", with("{hidden: [8]}", "{hidden: [8], width: 3}"), &[], &["recipes/x.yaml:5:24: network: unknown key `width`; `network` takes: hidden, layers, architecture, activation, heads, engine"]),
        ("missing network", with("network: {hidden: [8]}\n", ""), &[], &["recipes/x.yaml:1:1: missing key `network`"]),
        ("zero width", with("{hidden: [8]}", "{hidden: [8, 0]}"), &[], &["recipes/x.yaml:5:23: network.hidden[1]: expected a positive integer, found 0"]),
        ("eval tasks", format!("{BASE}eval: {{tasks: some}}\n"), &[], &["eval.tasks: unknown value `some`; expected one of: all, subsample"]),
        ("syntax error", format!("{BASE}  - oops: [1, 2\n"), &[], &["recipes/x.yaml:"]),
        ("not a mapping", "- just\n- a list\n".to_string(), &[], &["recipes/x.yaml:1:1: expected a mapping of recipe keys"]),
        ("empty file", String::new(), &[], &["recipes/x.yaml:", "expected a mapping of recipe keys (name, stream, network, methods, …), found nothing (null)"]),
        ("tags", format!("{BASE}parallel: !big 3\n"), &[], &["recipes/x.yaml:11:11: parallel: YAML tags are not supported"]),
        (
            "streams without names, duplicate names, identical streams",
            "name: demo\nstreams:\n  - {kind: synthetic_permuted, tasks: 2}\n  - {name: a, kind: synthetic_permuted, tasks: 2}\n  - {name: a, kind: synthetic_permuted, tasks: 3}\n  - {name: b, kind: synthetic_permuted, tasks: 2}\nnetwork: {hidden: [8]}\nmethods: [{name: sgd}]\n".to_string(),
            &[],
            &[
                "recipes/x.yaml:3:5: streams[0]: missing key `name`; every entry of `streams` needs one",
                "recipes/x.yaml:5:12: streams[2].name: duplicate stream name `a` (also streams[1])",
                "recipes/x.yaml:6:5: streams[3]: stream `b` is identical to stream `a` (streams[1])",
            ],
        ),
        ("override value of the wrong type", BASE.to_string(), &["parallel=x"], &[r#"recipes/x.yaml: override `parallel=x`: expected a non-negative integer, found "x""#]),
        ("override of zero", BASE.to_string(), &["parallel=0"], &["recipes/x.yaml: override `parallel=0`: expected a positive integer, found 0"]),
        ("override without =", BASE.to_string(), &["seeds"], &["recipes/x.yaml: override `seeds`: expected `key.path=value`"]),
        ("override of an unknown method", BASE.to_string(), &["methods.sdg.lr=1"], &["override `methods.sdg.lr=1`: `methods` has no entry named `sdg` (did you mean `sgd`?); entries: sgd, cbp"]),
        ("override of an unknown key", BASE.to_string(), &["stream.taks=3"], &["override `stream.taks=3`: unknown key `taks` (did you mean `tasks`?)"]),
        ("override of an unknown top-level key", BASE.to_string(), &["paralel=3"], &["override `paralel=3`: unknown key `paralel` (did you mean `parallel`?)"]),
        ("override adding an unknown parameter", BASE.to_string(), &["methods.sgd.momentom=0.9"], &["override `methods.sgd.momentom=0.9`: unknown key `momentom` (did you mean `momentum`?); sgd takes:"]),
        ("override with a bad parameter value", BASE.to_string(), &["methods.sgd.lr=[0.1, -1]"], &["override `methods.sgd.lr=[0.1, -1]`: methods[0].lr[1]: expected a positive number, found -1"]),
        ("override of a whole section", BASE.to_string(), &["network={hidden: [8], depth: 2}"], &["override `network={hidden: [8], depth: 2}`: unknown key `depth`; `network` takes: hidden"]),
        ("override inside a node with a whole-entry problem", with("name: cbp", "name: cbp\n    optimizer: rmsprop"), &["methods.cbp.lr=0.5"], &["recipes/x.yaml:9:5: methods[1]: optimizer must be `sgd` or `adam` (after override `methods.cbp.lr=0.5`)"]),
        ("unparsable override value", BASE.to_string(), &["seeds=[1, 2"], &["override `seeds=[1, 2`: cannot read the value:"]),
    ]
}

#[test]
fn invalid_recipes_are_refused_with_located_messages() {
    let mut failures = Vec::new();
    for (case, text, overrides, expected) in invalid_recipes() {
        let message = errors(&text, overrides);
        if std::env::var_os("SHOW_MESSAGES").is_some() {
            eprintln!("{case}:\n{message}\n");
        }
        for part in expected {
            if !message.contains(part) {
                failures.push(format!(
                    "{case}:\n  expected: {part}\n  got:      {}",
                    message.replace('\n', "\n            ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_missing_data_folder_is_shown_resolved() {
    let errors = load("mnist_missing_data.yaml", NO_OVERRIDES).unwrap_err();
    assert_eq!(errors.errors.len(), 1);
    let error = &errors.errors[0];
    assert_eq!((error.line, error.column), (Some(4), Some(13)));
    assert_eq!(error.key.to_string(), "stream.data_dir");
    let resolved = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/no-such-data");
    assert!(error.message.contains(&format!("`{}`", resolved.display())), "{}", error.message);
}

#[test]
fn independent_problems_are_reported_together_in_file_order() {
    let text = BASE
        .replace("name: demo", "name: my demo")
        .replace("lr: 0.1", "lr: 0")
        .replace("replacement_rate", "replacment_rate")
        + "seeds: 0\n";
    let errors = Recipe::from_text("x.yaml", text, NO_OVERRIDES, &FakeChecker).unwrap_err();
    let keys: Vec<String> = errors.errors.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(keys, ["name", "methods[0].lr", "methods[1]", "seeds"]);
    assert_eq!(errors.to_string().lines().count(), 4);
}

#[test]
fn empty_top_level_keys_mean_their_defaults() {
    let text = format!("{BASE}eval:\n  # every: 2\nslurm:\nparallel: ~\n");
    let recipe = Recipe::from_text("x.yaml", text, NO_OVERRIDES, &FakeChecker).unwrap();
    assert_eq!(recipe.sweep[0].eval, protocol::EvalSpec::default());
    assert_eq!((recipe.slurm, recipe.parallel), (None, None));
    let message = errors(&BASE.replace("name: demo", "name:"), NO_OVERRIDES);
    assert!(message.contains("missing key `name`"), "{message}");
}

#[test]
fn an_unreadable_file_is_an_error_not_a_panic() {
    let errors = load("no-such-recipe.yaml", NO_OVERRIDES).unwrap_err();
    assert!(errors.to_string().contains("no-such-recipe.yaml: cannot read the recipe:"), "{errors}");
}

#[test]
fn merge_keys_share_parameters() {
    let text = format!("{BASE}x-common: &common {{lr: 0.1}}\n");
    // Unknown keys stay unknown, even as anchors' hosts.
    assert!(errors(&text, NO_OVERRIDES).contains("unknown key `x-common`"));
    let text = BASE
        .replace("  - name: sgd\n    lr: 0.1\n", "  - name: sgd\n    <<: &common {lr: 0.5, momentum: 0.9}\n")
        .replace("  - name: cbp\n", "  - name: cbp\n    <<: *common\n    lr: 0.2\n");
    let recipe = Recipe::from_text("x.yaml", text, NO_OVERRIDES, &FakeChecker).unwrap();
    assert_eq!(recipe.sweep[0].methods[0].fixed["lr"], json!(0.5));
    assert_eq!(recipe.sweep[0].methods[1].fixed["momentum"], json!(0.9));
    assert_eq!(recipe.sweep[0].methods[1].fixed["lr"], json!(0.2), "keys written beside a merge win");
}

/// The keys each section takes, as the loader lists them when it meets an unknown one.
fn keys_taken(text: &str) -> Vec<String> {
    let message = errors(text, NO_OVERRIDES);
    let list = message.split("takes: ").nth(1).unwrap_or_else(|| panic!("{message}"));
    list.trim().split(", ").map(String::from).collect()
}

/// recipes/README.md must document every key the loader accepts, including fields the
/// protocol gains later.
#[test]
fn the_reference_documents_every_key() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/README.md")).unwrap();
    let mut sections = vec![
        format!("{BASE}zz_unknown: 1\n"),
        BASE.replace("{hidden: [8]}", "{hidden: [8], zz_unknown: 1}"),
        format!("{BASE}training: {{zz_unknown: 1}}\n"),
        format!("{BASE}eval: {{zz_unknown: 1}}\n"),
        format!("{BASE}eval: {{plasticity: {{zz_unknown: 1}}}}\n"),
        format!("{BASE}checkpoint: {{zz_unknown: 1}}\n"),
        format!("{BASE}slurm: {{zz_unknown: 1}}\n"),
    ];
    for kind in [
        "permuted_mnist",
        "online_permuted_mnist",
        "split_mnist",
        "slowly_changing_regression",
        "synthetic_permuted",
    ] {
        sections.push(BASE.replace("kind: synthetic_permuted", &format!("kind: {kind}\n  zz_unknown: 1")));
        assert!(readme.contains(&format!("`{kind}`")), "stream kind `{kind}` is not documented");
    }
    for text in sections {
        let keys = keys_taken(&text);
        assert!(keys.len() > 1, "{keys:?}");
        for key in keys {
            assert!(
                readme.contains(&format!("`{key}`")),
                "key `{key}` is not documented in recipes/README.md"
            );
        }
    }
}

/// Issue 16, finding 1: a `sweep:` section multiplies the recipe over any run-shaping key, every
/// axis is a typed label, and the point equal to the recipe's own values keeps its runs' ids.
#[test]
fn a_sweep_section_multiplies_the_runs_and_keeps_todays_ids() {
    let plain = Recipe::from_text("x.yaml", BASE, NO_OVERRIDES, &FakeChecker).unwrap().expand();
    let text = format!("{BASE}sweep:\n  network.hidden: [[8], [16, 16]]\n  training.batch_size: [32, 4]\n");
    let swept = Recipe::from_text("x.yaml", text, NO_OVERRIDES, &FakeChecker).unwrap().expand();
    assert_eq!(swept.len(), plain.len() * 4);
    for run in &plain {
        let same = swept.iter().find(|s| s.spec.id == run.spec.id).expect("today's run keeps its id");
        assert_eq!(same.grid["network.hidden"], json!([8]));
        assert_eq!(same.grid["training.batch_size"], json!(32));
        assert_eq!(same.method, run.method);
    }
    let wide = swept.iter().find(|s| s.grid["network.hidden"] == json!([16, 16])).unwrap();
    assert_eq!(wide.spec.network.hidden, vec![16, 16]);
    let cbp = swept.iter().find(|s| s.method == "cbp").unwrap();
    let keys: Vec<&str> = cbp.grid.keys().map(String::as_str).collect();
    assert_eq!(keys, ["network.hidden", "replacement_rate", "training.batch_size"]);
    let ids: std::collections::BTreeSet<&str> = swept.iter().map(|r| r.spec.id.as_str()).collect();
    assert_eq!(ids.len(), swept.len(), "every sweep point's runs are distinct");
}

/// Issue 16, finding 1: Hydra's multirun syntax gives the same runs as the `sweep:` section; a
/// method parameter's comma list is that method's grid axis; without `-m` a comma list is refused.
#[test]
fn multirun_comma_lists_sweep_like_the_section() {
    let text = format!("{BASE}sweep:\n  network.hidden: [[8], [16, 16]]\n  training.batch_size: [1, 4]\n");
    let section = Recipe::from_text("x.yaml", text, NO_OVERRIDES, &FakeChecker).unwrap().expand();
    let overrides = ["network.hidden=[8],[16,16]", "training.batch_size=1,4"];
    let multirun = Recipe::from_text_with("x.yaml", BASE, &overrides, Multirun::On, &FakeChecker).unwrap();
    let ids = |runs: &[runner::recipe::PlannedRun]| {
        runs.iter().map(|r| r.spec.id.clone()).collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(ids(&section), ids(&multirun.expand()));
    assert!(multirun.effective_text.contains("training.batch_size=1,4"), "{}", multirun.effective_text);
    assert!(multirun.effective_text.contains("sweep:"), "{}", multirun.effective_text);

    let grid = Recipe::from_text("x.yaml", BASE, &["methods.sgd.lr=[0.1,0.01]"], &FakeChecker).unwrap();
    let comma =
        Recipe::from_text_with("x.yaml", BASE, &["methods.sgd.lr=0.1,0.01"], Multirun::On, &FakeChecker)
            .unwrap();
    assert_eq!(ids(&grid.expand()), ids(&comma.expand()));
    assert_eq!(comma.sweep.len(), 1, "a method parameter's axis is a grid axis, not a sweep point");
    assert!(comma.expand().iter().any(|r| r.grid.get("lr") == Some(&json!(0.01))));

    let message = errors(BASE, &["training.batch_size=16,32"]);
    assert!(
        message.contains(
            "override `training.batch_size=16,32`: `16,32` is a comma-separated list: pass -m (--multirun)"
        ),
        "{message}"
    );
}

/// Issue 16, finding 1: a bad sweep value is reported at its place in the `sweep:` section,
/// with the point it belongs to; keys that do not shape runs cannot be swept.
#[test]
fn sweep_problems_name_the_value_or_the_override() {
    let text = format!("{BASE}sweep:\n  network.hidden: [[8], [0]]\n");
    let message = errors(&text, NO_OVERRIDES);
    assert!(
        message.contains("recipes/x.yaml:12:26: sweep.network.hidden[1][0]: expected a positive integer, found 0 (at sweep point network.hidden=[0])"),
        "{message}"
    );
    let message = errors(&format!("{BASE}sweep:\n  parallel: [1, 2]\n"), NO_OVERRIDES);
    assert!(
        message
            .contains("recipes/x.yaml:12:13: sweep.parallel: `parallel` does not change what a run trains"),
        "{message}"
    );
    let message = errors(&format!("{BASE}sweep:\n  training.epochs: [1, 2, 1]\n"), NO_OVERRIDES);
    assert!(
        message.contains("x.yaml:12:27: sweep.training.epochs[2]: sweep value 1 is listed twice"),
        "{message}"
    );
    let message = errors(&format!("{BASE}sweep: [1, 2]\n"), NO_OVERRIDES);
    assert!(
        message.contains("x.yaml:11:8: sweep: expected a mapping of dotted keys to lists of values"),
        "{message}"
    );
    let message = errors(&format!("{BASE}sweep:\n  training.epochs: 2\n"), NO_OVERRIDES);
    assert!(
        message.contains("sweep.training.epochs: expected a list of the values to sweep, found 2"),
        "{message}"
    );
    let refused = Recipe::from_text_with("recipes/x.yaml", BASE, &["seeds=1,2"], Multirun::On, &FakeChecker)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("override `seeds=1,2`: `seeds` cannot be swept"), "{refused}");
    let typo =
        Recipe::from_text_with("recipes/x.yaml", BASE, &["methods.sdg.lr=1,2"], Multirun::On, &FakeChecker)
            .unwrap_err()
            .to_string();
    assert!(typo.contains("override `methods.sdg.lr=1,2`: `methods` has no entry named `sdg`"), "{typo}");
}
