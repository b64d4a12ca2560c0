//! `clorch cancel`: cancels the SLURM jobs of an experiment, which a stopped `clorch run`
//! leaves queued or running.

use std::path::PathBuf;

use super::exit;
use runner::executor::slurm::{self, Cancel, JobId};
use runner::lock::{self, LockError};
use runner::store::{self, RunStatus};

/// Arguments of `clorch cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The results folder (e.g. results/quickstart).
    pub results: PathBuf,
}

/// Cancels (`scancel`) every job the store names for a run still queued or running, and marks
/// those runs interrupted: their workers checkpoint on the way out, and the next `clorch run`
/// resumes them. Refused while a `clorch run` follows the experiment, which would submit the
/// runs again.
pub fn run(args: &CancelArgs) -> i32 {
    let results = &args.results;
    if !results.join(store::folder::EXPERIMENT_FILE).exists() {
        eprintln!(
            "clorch cancel: {}: not a clorch results folder (no {}); expected the folder `clorch run` wrote",
            results.display(),
            store::folder::EXPERIMENT_FILE
        );
        return exit::BAD_INPUT;
    }
    if let Err(message) = super::check_results_folder(results, false) {
        eprintln!("clorch cancel: {message}");
        return exit::BAD_INPUT;
    }
    let _lock = match lock::acquire(results) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => {
            eprintln!(
                "clorch cancel: {e}\n(stop that `clorch run` with Ctrl-C first: in SLURM mode its jobs keep \
                 running, and this command then cancels them)"
            );
            return exit::BUSY;
        }
        Err(e) => {
            eprintln!("clorch cancel: {e}");
            return exit::BAD_INPUT;
        }
    };
    let (store, repairs) = match runner::store::open_for_writing(results) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clorch cancel: {e}");
            return exit::BAD_INPUT;
        }
    };
    for note in &repairs.notes {
        crate::logging::note(format_args!("note: {note}"));
    }
    let records = match store.runs() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("clorch cancel: {e}");
            return exit::BAD_INPUT;
        }
    };
    let mut targets = Vec::new();
    for record in records {
        let going = matches!(record.status, RunStatus::Running | RunStatus::Interrupted);
        if let Some(job) = record.executor_job.as_deref().filter(|_| going).and_then(JobId::parse) {
            targets.push((record, job));
        }
    }
    if targets.is_empty() {
        let said = crate::output::print(format_args!("no SLURM jobs to cancel in {}\n", results.display()));
        return said.map_or_else(|e| e.exit_code("cancel"), |()| exit::OK);
    }
    let jobs: Vec<JobId> = targets.iter().map(|(_, job)| *job).collect();
    let cancelled = super::block_on(slurm::scancel(&jobs, Cancel::Terminate))
        .and_then(|result| result.map_err(|e| e.to_string()));
    if let Err(e) = cancelled {
        eprintln!("clorch cancel: {e}");
        return exit::RUNS_FAILED;
    }
    for (mut record, _) in targets {
        record.status = RunStatus::Interrupted;
        record.executor_job = None;
        if let Err(e) = store.save_run(&record) {
            eprintln!("clorch cancel: {e}");
            return exit::BAD_INPUT;
        }
    }
    if let Err(e) = store.flush() {
        eprintln!("clorch cancel: {e}");
        return exit::BAD_INPUT;
    }
    let shown: Vec<String> = jobs.iter().take(8).map(JobId::to_string).collect();
    let more = if jobs.len() > 8 { format!(" and {} more", jobs.len() - 8) } else { String::new() };
    let said = crate::output::print(format_args!(
        "cancelled {} SLURM job(s): {}{more}; their workers checkpoint on the way out, and `clorch run` resumes \
         the runs\n",
        jobs.len(),
        shown.join(" ")
    ));
    said.map_or_else(|e| e.exit_code("cancel"), |()| exit::OK)
}
