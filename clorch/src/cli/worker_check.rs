//! `clorch worker-check -- <command>`: the protocol conformance check for worker authors
//! (`runner::external::check`), on a tiny spec built from the worker's own description.

use std::path::PathBuf;

use protocol::describe::WorkerDescription;
use protocol::{
    CheckpointSpec, EvalSpec, MethodSpec, NetworkSpec, Params, RunSpec, StreamSpec, TrainingSpec,
    WorkerCommand,
};
use runner::external::check::{check, CheckOptions, Step};
use runner::recipe::SpecChecker;
use serde_json::{json, Value};

use crate::builtin::BuiltinWorker;
use crate::cli::exit;
use crate::output;

/// Arguments of `clorch worker-check`.
#[derive(Debug, clap::Args)]
pub struct WorkerCheckArgs {
    /// The method to run (a `kind` of the worker's `--describe`); the first it describes when
    /// absent.
    #[arg(long, value_name = "KIND")]
    pub method: Option<String>,
    /// A method parameter, `name=value` (YAML value); repeatable. Parameters without a default
    /// in the description must be given.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The stream to run on; the first the worker reads that clorch can make tiny
    /// (`synthetic_permuted`, `permuted_mnist`, `split_mnist`) when absent.
    #[arg(long, value_name = "KIND")]
    pub stream: Option<String>,
    /// The MNIST files for the MNIST streams (default: `data/mnist-10k`, shipped in the
    /// repository, from the current folder).
    #[arg(long, value_name = "DIR", default_value = "data/mnist-10k")]
    pub data_dir: PathBuf,
    /// Tasks in the tiny stream.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=20))]
    pub tasks: u64,
    /// The worker is not bit-reproducible (GPU kernels): compare resumed runs by event kinds
    /// and order, not bytes.
    #[arg(long)]
    pub nondeterministic: bool,
    /// Keep the scratch run folders here instead of deleting them (for a look at a failure).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// The worker's command, after `--`: `clorch worker-check -- python3 worker.py`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Runs the check; exit 0 when the worker passes, 1 when a check fails, 2 for bad input.
pub fn run(args: &WorkerCheckArgs) -> i32 {
    let dir = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(e) => return bad(format!("the current folder: {e}")),
    };
    if args.command.iter().any(|a| a.is_empty()) {
        return bad("the command has an empty argument".into());
    }
    let worker = WorkerCommand { command: args.command.clone(), dir };
    let description = match runner::external::describe(&worker) {
        Ok(d) => d,
        Err(message) => return bad(message),
    };
    let spec = match tiny_spec(args, &worker, &description) {
        Ok(spec) => spec,
        Err(message) => return bad(message),
    };
    let scratch = match &args.keep {
        Some(dir) => match std::fs::create_dir(dir) {
            Ok(()) => Scratch::Kept(dir.clone()),
            Err(e) => return bad(format!("--keep {}: {e} (give a new folder)", dir.display())),
        },
        None => match tempfile::Builder::new().prefix("clorch-worker-check-").tempdir() {
            Ok(t) => Scratch::Temporary(t),
            Err(e) => return bad(format!("a scratch folder: {e}")),
        },
    };
    let header = format!(
        "checking `{}`: method `{}`, stream `{}` ({} tasks), run {}\n",
        runner::external::shown(&worker),
        spec.method.kind,
        spec.stream.kind,
        args.tasks,
        spec.id
    );
    if let Err(e) = output::print(header) {
        return e.exit_code("worker-check");
    }
    let mut printed = Ok(());
    let options = CheckOptions { nondeterministic: args.nondeterministic };
    let passed = check(&worker, &spec, scratch.path(), &options, &mut |step: &Step| {
        let line = match &step.outcome {
            Ok(note) => format!("ok    {}: {note}\n", step.name),
            Err(problem) => format!("FAIL  {}: {problem}\n", step.name),
        };
        if printed.is_ok() {
            printed = output::print(line);
        }
    });
    if let Err(e) = printed {
        return e.exit_code("worker-check");
    }
    let verdict = if passed {
        "the worker keeps the protocol\n".to_string()
    } else {
        let kept = match &scratch {
            Scratch::Kept(dir) => format!("; its run folders are in {}", dir.display()),
            Scratch::Temporary(_) => "; --keep DIR keeps its run folders for a look".to_string(),
        };
        format!("the worker breaks the protocol (docs/protocol.md){kept}\n")
    };
    if let Err(e) = output::print(verdict) {
        return e.exit_code("worker-check");
    }
    if passed {
        exit::OK
    } else {
        exit::RUNS_FAILED
    }
}

enum Scratch {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl Scratch {
    fn path(&self) -> &std::path::Path {
        match self {
            Scratch::Kept(dir) => dir,
            Scratch::Temporary(t) => t.path(),
        }
    }
}

fn bad(message: String) -> i32 {
    crate::output::error_line(format_args!("clorch worker-check: {message}"));
    exit::BAD_INPUT
}

/// The spec every check runs: a few small tasks, a small network, the method's defaults.
fn tiny_spec(
    args: &WorkerCheckArgs,
    worker: &WorkerCommand,
    d: &WorkerDescription,
) -> Result<RunSpec, String> {
    let method = match &args.method {
        Some(kind) => d.methods.iter().find(|m| &m.kind == kind).ok_or_else(|| {
            let kinds: Vec<&str> = d.methods.iter().map(|m| m.kind.as_str()).collect();
            format!("--method {kind}: the worker describes {}", kinds.join(", "))
        })?,
        None => &d.methods[0],
    };
    let mut params = std::collections::BTreeMap::new();
    for given in &args.params {
        let (name, text) =
            given.split_once('=').ok_or_else(|| format!("--param {given}: expected NAME=VALUE"))?;
        let declared = method.params.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = method.params.iter().map(|p| p.name.as_str()).collect();
            format!("--param {name}: `{}` has the parameters {}", method.kind, names.join(", "))
        })?;
        let value: Value = serde_yaml::from_str(text).map_err(|e| format!("--param {given}: {e}"))?;
        if !declared.ty.admits(&value) {
            return Err(format!("--param {given}: expected {}", declared.ty.name()));
        }
        params.insert(name.to_string(), value);
    }
    for p in &method.params {
        if !params.contains_key(&p.name) {
            let default = p.default.clone().ok_or_else(|| {
                format!(
                    "`{}` has no default for `{}`: give it with --param {}=…",
                    method.kind, p.name, p.name
                )
            })?;
            params.insert(p.name.clone(), default);
        }
    }
    let stream = tiny_stream(args, d)?;
    let mut spec = RunSpec {
        protocol: protocol::PROTOCOL_VERSION,
        id: String::new(),
        experiment: "worker-check".into(),
        seed: 0,
        stream,
        network: NetworkSpec {
            hidden: vec![32],
            ..serde_json::from_value(json!({})).map_err(|e| e.to_string())?
        },
        method: MethodSpec {
            name: method.kind.clone(),
            kind: method.kind.clone(),
            params,
            worker: Some(worker.clone()),
        },
        training: TrainingSpec { batch_size: 16, epochs: 1, validation: 0, threads: 1 },
        eval: EvalSpec::default(),
        checkpoint: CheckpointSpec::default(),
        run_dir: None,
    };
    spec.id = spec.content_id();
    Ok(spec)
}

fn tiny_stream(args: &WorkerCheckArgs, d: &WorkerDescription) -> Result<StreamSpec, String> {
    const TINY: [&str; 3] = ["synthetic_permuted", "permuted_mnist", "split_mnist"];
    let kind = match &args.stream {
        Some(kind) => kind.clone(),
        None if d.streams.is_empty() => TINY[0].to_string(),
        None => d.streams.iter().find(|s| TINY.contains(&s.as_str())).cloned().ok_or_else(|| {
            format!(
                "the worker reads only {}; worker-check makes tiny {} streams (or give --stream)",
                d.streams.join(", "),
                TINY.join(", ")
            )
        })?,
    };
    let tasks = args.tasks;
    let mut params: Params = match kind.as_str() {
        "synthetic_permuted" => {
            json!({"tasks": tasks, "classes": 4, "dim": 16, "train_per_class": 40, "test_per_class": 10})
        }
        "permuted_mnist" => json!({"tasks": tasks, "train_examples": 400, "test_examples": 100}),
        "split_mnist" => {
            let groups: Vec<Vec<u64>> = (0..tasks.min(5)).map(|g| vec![2 * g, 2 * g + 1]).collect();
            json!({"groups": groups, "train_examples": 1500, "test_examples": 400})
        }
        _ => json!({"tasks": tasks}),
    }
    .as_object()
    .expect("an object")
    .iter()
    .map(|(k, v)| (k.clone(), v.clone()))
    .collect();
    let checker = BuiltinWorker;
    if kind.contains("mnist") {
        let dir = std::fs::canonicalize(&args.data_dir).map_err(|e| {
            format!("--data-dir {}: {e} (the MNIST files the stream reads)", args.data_dir.display())
        })?;
        params.set(protocol::stream::DATA_DIR, Value::String(dir.display().to_string()));
        let print = checker.fingerprint(&kind, &dir)?;
        params.set(protocol::stream::FINGERPRINT, Value::String(print));
    }
    let spec =
        checker.normalize_stream(&kind, &params).map_err(|p| format!("stream `{kind}`: {}", p.message))?;
    checker.check_stream(&spec).map_err(|p| format!("stream `{kind}`: {}", p.message))?;
    Ok(spec)
}
