//! The executors by name: what `clorch run --executor` offers, and how each is built.
//!
//! One table, so a new executor is its file plus one line here; the command line lists the
//! names and their help from it.

use std::path::PathBuf;
use std::sync::Arc;

use super::local::LocalExecutor;
use super::slurm::SlurmExecutor;
use super::Executor;
use crate::recipe::Recipe;
use crate::worker_side::WorkerSide;

/// What building an executor may need: the experiment's recipe (each executor reads its own
/// section, e.g. `slurm:`), where its results go, and the worker side its attempts resume
/// through.
#[derive(Clone, Debug)]
pub struct Setup<'a> {
    /// The planned recipe.
    pub recipe: &'a Recipe,
    /// The results folder (absolute).
    pub results_dir: PathBuf,
    /// Attempts at once the command line or the recipe asked for, if any.
    pub parallel: Option<usize>,
    /// The worker implementation (where an interrupted run resumes).
    pub worker: Arc<dyn WorkerSide>,
    /// Bytes each worker may use, handed to it in
    /// [`MAX_MEMORY_ENV`](protocol::memory::MAX_MEMORY_ENV); `None`: its own default.
    pub memory_per_worker: Option<u64>,
}

/// One executor the command line can choose.
#[derive(Clone, Copy, Debug)]
pub struct ExecutorKind {
    /// The name `--executor` takes.
    pub name: &'static str,
    /// One line of help for the name.
    pub about: &'static str,
    /// Checks, before anything is written, that the executor can work here (SLURM answers);
    /// the error says why not.
    pub preflight: fn() -> Result<(), String>,
    /// Whether its workers run on this machine (and so share its memory).
    pub on_this_machine: bool,
    /// Builds the executor; fails when the clorch executable to start workers is not found.
    pub build: fn(&Setup<'_>) -> std::io::Result<Box<dyn Executor>>,
}

/// Every executor, the default first.
pub fn registry() -> &'static [ExecutorKind] {
    &[
        ExecutorKind {
            name: "local",
            about: "Child processes of `clorch run`, at most `parallel` at once",
            preflight: || Ok(()),
            on_this_machine: true,
            build: |setup| {
                let mut local = LocalExecutor::current(setup.worker.clone())?;
                local.memory_per_worker = setup.memory_per_worker;
                Ok(Box::new(local))
            },
        },
        ExecutorKind {
            name: "slurm",
            about: "SLURM job arrays (`sbatch`), at most `parallel` tasks of an array at once",
            preflight: super::slurm::preflight,
            on_this_machine: false,
            build: |setup| Ok(Box::new(SlurmExecutor::new(setup)?)),
        },
    ]
}

/// The executor called `name`, if there is one.
pub fn by_name(name: &str) -> Option<&'static ExecutorKind> {
    registry().iter().find(|kind| kind.name == name)
}
