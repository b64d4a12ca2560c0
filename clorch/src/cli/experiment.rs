//! `clorch run` and `clorch validate`: a recipe into a plan, and a plan onto workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser};

use super::{command_line, exit, report::print_table};
use crate::builtin::BuiltinWorker;
use crate::logging::note;
use report::ReportOptions;
use runner::budget::MemoryBudget;
use runner::executor::{self, Executor, ExecutorKind, Limits, Setup};
use runner::lock::{self, LockError};
use runner::plan::{check_memory, plan, Plan, PlanError};
use runner::recipe::{plan_table, Multirun};
use runner::scheduler::retry::Backoff;
use runner::scheduler::{execute, SchedulerError, Settings, SystemClock};
use runner::store::{self, ExperimentMeta};

/// `-j`: a positive number of workers, with the bounds and words `parallel:` gets.
fn parse_parallel(text: &str) -> Result<usize, String> {
    let max = runner::recipe::MAX_PARALLEL;
    match text.parse::<u64>() {
        Ok(0) => Err("expected a positive integer, found 0".to_string()),
        Ok(n) if n > max => Err(format!("expected at most {max}, found {n}")),
        Ok(n) => Ok(n as usize),
        Err(e) => Err(e.to_string()),
    }
}

/// `--max-memory`: a size such as `4GiB` or `500MB`.
fn parse_memory(text: &str) -> Result<u64, String> {
    protocol::memory::parse_size(text)
}

/// Arguments of `clorch run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The recipe (YAML).
    pub recipe: PathBuf,
    /// Overrides, Hydra-style: `seeds=5 methods.sgd.lr=[0.01,0.003] parallel=1`; with `-m`,
    /// comma lists sweep a key (`training.batch_size=16,32`).
    pub overrides: Vec<String>,
    /// Hydra's multirun: a comma list (`network.hidden=[100],[400] training.batch_size=16,32`)
    /// sweeps its key over the values, every combination with every seed. Without it a comma
    /// list is refused.
    #[arg(long, short = 'm')]
    pub multirun: bool,
    /// Workers at once (default: the recipe's `parallel`, else the number of cores divided by the
    /// runs' `training.threads`).
    #[arg(long, short = 'j', value_parser = parse_parallel)]
    pub parallel: Option<usize>,
    /// Results folder (default: the recipe's `output`, else `results/<name>`).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Run again the runs that failed in an earlier invocation.
    #[arg(long)]
    pub retry_failed: bool,
    /// No progress bar (messages only).
    #[arg(long)]
    pub no_progress: bool,
    /// Seconds a stopped worker may take to checkpoint before it is killed (at most 365 days,
    /// 31536000).
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(..=runner::recipe::MAX_DURATION_SECONDS))]
    pub grace: u64,
    /// Where workers run: `local` (child processes of this command) or `slurm` (job arrays
    /// submitted with sbatch, on a cluster that shares the results folder and this executable;
    /// the recipe's `slurm:` section sets their resources). With `slurm`, Ctrl-C leaves the jobs
    /// running and a later `clorch run` reattaches to them.
    #[arg(long, default_value = "local", value_parser = executor_names())]
    pub executor: String,
    /// Memory all workers at once may use (`4GiB`, `500MB`, bytes); each of the N workers that
    /// run at once (-j) gets 1/N of it, and a run whose estimated peak exceeds its share is
    /// refused before anything is written. Default: the memory this machine has available
    /// (MemAvailable; no limit where it cannot be read). With `--executor slurm` the default
    /// is no limit here: each job's worker checks against its node's available memory.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub max_memory: Option<u64>,
}

/// The names `--executor` takes, with their help: the runner's executor registry.
fn executor_names() -> PossibleValuesParser {
    PossibleValuesParser::new(executor::registry().iter().map(|k| PossibleValue::new(k.name).help(k.about)))
}

/// The executor `--executor` names (clap allowed only registered names).
fn executor_kind(args: &RunArgs) -> &'static ExecutorKind {
    executor::by_name(&args.executor).expect("clap accepts registered executor names only")
}

/// Arguments of `clorch validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The recipe (YAML).
    pub recipe: PathBuf,
    /// Overrides, as for `clorch run`.
    pub overrides: Vec<String>,
    /// Comma lists sweep their keys, as for `clorch run -m`.
    #[arg(long, short = 'm')]
    pub multirun: bool,
    /// The memory limit `clorch run` would hold the runs to (as for `clorch run`, with the
    /// recipe's `parallel`, else one worker per core, sharing it); default: the memory this
    /// machine has available.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub max_memory: Option<u64>,
}

/// Plans `recipe` (comma lists sweeping with `multirun`) and checks its runs against the
/// memory budget: `max_memory` (or, for workers on this machine, its available memory)
/// shared by the workers that run at once — `parallel` (-j), else the recipe's, else one
/// per core.
fn load(
    recipe: &Path,
    overrides: &[String],
    multirun: bool,
    max_memory: Option<u64>,
    parallel: Option<usize>,
    on_this_machine: bool,
) -> Result<Plan, i32> {
    let multirun = if multirun { Multirun::On } else { Multirun::Off };
    let report = |e: PlanError| {
        match e {
            PlanError::Recipe(errors) => eprintln!("{errors}"),
            other => eprintln!("{other}"),
        }
        exit::BAD_INPUT
    };
    let plan = plan(recipe, overrides, multirun, &BuiltinWorker).map_err(report)?;
    let workers = if on_this_machine { workers_at_once(parallel, &plan) } else { 1 };
    let budget = MemoryBudget::new(max_memory, on_this_machine, workers);
    check_memory(&plan, budget, &BuiltinWorker).map_err(report)?;
    Ok(plan)
}

/// Workers at once: `-j`, else the recipe's `parallel`, else as many as the cores hold when
/// each takes the `training.threads` of the plan's most-threaded run.
fn workers_at_once(parallel: Option<usize>, plan: &Plan) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = plan.runs.iter().map(|run| run.spec.training.threads).max().unwrap_or(1).max(1);
    parallel.or(plan.recipe.parallel).unwrap_or(cores / threads).max(1)
}

/// `clorch validate`: prints the runs a recipe would launch, or its errors — every error
/// `clorch run` would report before starting a worker: the recipe, the whole-run checks of
/// each planned run, its data, and its results folder.
pub fn validate(args: &ValidateArgs) -> i32 {
    match load(&args.recipe, &args.overrides, args.multirun, args.max_memory, None, true) {
        Ok(plan) => {
            // `clorch run` refuses a results folder it did not create; so does its check.
            if let Err(message) = super::check_results_folder(&plan.recipe.output, true) {
                eprintln!("clorch validate: {message}");
                return exit::BAD_INPUT;
            }
            let printed = crate::output::with_stdout(|out| {
                write!(out, "{}", plan_table(&plan.runs))?;
                writeln!(out, "results folder: {}", plan.recipe.output.display())
            });
            match printed {
                Ok(()) => exit::OK,
                Err(e) => e.exit_code("validate"),
            }
        }
        Err(code) => code,
    }
}

/// The executor `--executor` names, with workers from this executable (the engine it links
/// says where interrupted runs resume).
fn make_executor(
    args: &RunArgs,
    plan: &Plan,
    results_dir: &Path,
    memory_per_worker: Option<u64>,
) -> Result<Box<dyn Executor>, String> {
    let setup = Setup {
        recipe: &plan.recipe,
        results_dir: results_dir.to_path_buf(),
        parallel: args.parallel.or(plan.recipe.parallel),
        worker: Arc::new(BuiltinWorker),
        memory_per_worker,
    };
    (executor_kind(args).build)(&setup)
        .map_err(|e| format!("cannot find the clorch executable to start workers: {e}"))
}

/// This invocation, for the experiment's log.
fn invocation(args: &RunArgs, plan: &Plan, now: u64) -> results::Invocation {
    results::Invocation {
        time: now,
        argv: command_line::argv(),
        recipe: args.recipe.display().to_string(),
        overrides: args.overrides.clone(),
        multirun: args.multirun,
        recipe_hash: plan.recipe.text_hash.clone(),
        clorch_version: env!("CARGO_PKG_VERSION").to_string(),
        host: results::invocation::this_host(),
    }
}

/// `clorch run`: plans, then runs every unfinished run, then prints the comparison table.
pub fn run(args: &RunArgs) -> i32 {
    let on_this_machine = executor_kind(args).on_this_machine;
    let plan = match load(
        &args.recipe,
        &args.overrides,
        args.multirun,
        args.max_memory,
        args.parallel,
        on_this_machine,
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // The share each worker is held to: what the plan was checked against.
    let budget = MemoryBudget::new(args.max_memory, on_this_machine, workers_at_once(args.parallel, &plan));
    let memory_per_worker = budget.for_runs(plan.runs.len()).per_worker();
    tracing::info!("{}: {} runs in the plan", args.recipe.display(), plan.runs.len());
    // Before anything is written: an executor that cannot work here (no SLURM) has nothing to do.
    if let Err(e) = (executor_kind(args).preflight)() {
        eprintln!("clorch run: --executor {}: {e}", args.executor);
        return exit::BAD_INPUT;
    }
    let results_dir = args.output.clone().unwrap_or_else(|| plan.recipe.output.clone());
    // Never write over files clorch did not create: checked before the lock, store and recipe
    // copy exist, so a refused run leaves the folder as it was.
    if let Err(message) = super::check_results_folder(&results_dir, true) {
        eprintln!("clorch run: {message}");
        return exit::BAD_INPUT;
    }
    let lock = match lock::acquire(&results_dir) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => {
            eprintln!("clorch run: {e}");
            return exit::BUSY;
        }
        Err(e) => {
            eprintln!("clorch run: {e}");
            return exit::BAD_INPUT;
        }
    };
    if let Some(previous) = &lock.taken_over {
        note(format_args!(
            "note: taking over {} from an earlier `clorch run` that did not end cleanly (pid {} on {})",
            results_dir.display(),
            previous.pid,
            previous.host
        ));
    }
    let results_dir = match std::fs::canonicalize(&results_dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("clorch run: {}: {e}", results_dir.display());
            return exit::BAD_INPUT;
        }
    };
    let (store, repairs) = match runner::store::open_for_writing(&results_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clorch run: {e}");
            return exit::BAD_INPUT;
        }
    };
    for text in &repairs.notes {
        note(format_args!("note: {text}"));
    }
    let now = store::unix_now();
    let mut meta = ExperimentMeta::new(&plan.recipe.name, plan.recipe.effective_text.clone(), now);
    if let Ok(Some(old)) = store.experiment() {
        meta.created = old.created;
    }
    meta.runs = plan.runs.iter().map(|r| r.spec.id.clone()).collect();
    if let Err(e) = store::write_experiment_files(&results_dir, &meta)
        .map_err(store::StoreError::from)
        .and_then(|_| store.put_experiment(&meta))
    {
        eprintln!("clorch run: {e}");
        return exit::BAD_INPUT;
    }
    if let Err(e) = results::append_invocation(&results_dir, &invocation(args, &plan, now), &plan.recipe.text)
    {
        eprintln!("clorch run: {e}");
        return exit::BAD_INPUT;
    }
    let executor = match make_executor(args, &plan, &results_dir, memory_per_worker) {
        Ok(e) => e,
        Err(message) => {
            eprintln!("clorch run: {message}");
            return exit::BAD_INPUT;
        }
    };
    tracing::info!(
        "executor {}: up to {} workers at once, results in {}",
        args.executor,
        workers_at_once(args.parallel, &plan),
        results_dir.display()
    );
    let settings = Settings {
        parallel: workers_at_once(args.parallel, &plan),
        max_attempts: plan.recipe.max_attempts.max(1),
        limits: Limits {
            timeout: plan.recipe.timeout,
            heartbeat: plan.recipe.heartbeat,
            grace: Duration::from_secs(args.grace),
        },
        backoff: Backoff::default(),
        retry_failed: args.retry_failed,
        show_progress: !args.no_progress,
        quiet: crate::logging::quiet(),
        clock: Arc::new(SystemClock),
        worker: Arc::new(BuiltinWorker),
    };
    let outcome = match execute(&plan, &results_dir, &store, executor, &settings) {
        Ok(o) => o,
        Err(e @ SchedulerError::Refused { .. }) => {
            eprintln!("clorch run: {e}");
            return exit::BAD_INPUT;
        }
        Err(e) => {
            eprintln!("clorch run: {e}");
            return exit::RUNS_FAILED;
        }
    };
    if outcome.skipped_finished > 0 {
        note(format_args!("{} finished runs skipped", outcome.skipped_finished));
    }
    if outcome.skipped_failed > 0 {
        note(format_args!(
            "{} failed runs skipped (`{}` runs them again)",
            outcome.skipped_failed,
            command_line::again(&["--retry-failed"])
        ));
    }
    if outcome.stopped && outcome.detached > 0 {
        eprintln!(
            "stopped watching: {} SLURM job(s) keep running ({} of {} runs unfinished); `{}` \
             reattaches to them and submits the rest, `clorch cancel {}` cancels them",
            outcome.detached,
            outcome.unfinished,
            outcome.total,
            command_line::again(&[]),
            command_line::shell_line(&[results_dir.display().to_string()])
        );
        drop(lock);
        return exit::STOPPED;
    }
    if outcome.stopped {
        eprintln!(
            "stopped: {} of {} runs unfinished; `{}` resumes them from their checkpoints",
            outcome.unfinished,
            outcome.total,
            command_line::again(&[])
        );
        drop(lock);
        return exit::STOPPED;
    }
    if let Err(code) = print_table(&store, &ReportOptions::default()) {
        return code;
    }
    drop(lock);
    if outcome.failed > 0 || outcome.skipped_failed > 0 {
        eprintln!(
            "{} run(s) failed; `clorch status {}` shows why",
            outcome.failed + outcome.skipped_failed,
            results_dir.display()
        );
        exit::RUNS_FAILED
    } else {
        exit::OK
    }
}
