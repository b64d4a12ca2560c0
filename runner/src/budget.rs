//! The memory budget of a plan: a limit for the workers running at once, each worker's share,
//! and the check of every planned run's estimate against that share.
//!
//! A worker also checks its own estimate before it allocates (against the share the executor
//! hands it in [`MAX_MEMORY_ENV`](protocol::memory::MAX_MEMORY_ENV)); checking when planning
//! refuses the whole experiment before a results folder exists, at `clorch validate` too.
//!
//! With `-j N` the N workers share the limit evenly: each run must fit in limit / N. That
//! refuses a plan whose largest run cannot run N times at once even when most runs are small —
//! simple to state and to check, and what the workers are held to at run time, so a plan that
//! passes here is not refused later by its own workers.

use protocol::memory::{format_size, MemoryEstimate};
use protocol::RunSpec;

/// The memory the runs of a plan may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes for all the workers at once; `None`: no limit.
    pub limit: Option<u64>,
    /// Where the limit comes from, for messages.
    pub source: LimitSource,
    /// Workers that run at once and share the limit.
    pub workers: usize,
}

/// Where a memory limit comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSource {
    /// `--max-memory` on the command line.
    Flag,
    /// The memory the machine had available (`MemAvailable`).
    Available,
    /// No limit: none was given and the machine's memory could not be read (or the workers
    /// run elsewhere, on SLURM nodes, where each checks its own).
    None,
}

impl MemoryBudget {
    /// No limit at all.
    pub const UNLIMITED: MemoryBudget = MemoryBudget { limit: None, source: LimitSource::None, workers: 1 };

    /// `flag` (`--max-memory`) when given, else the memory this machine has available, shared
    /// by `workers` workers; `on_this_machine` false (SLURM) leaves the default to each worker.
    pub fn new(flag: Option<u64>, on_this_machine: bool, workers: usize) -> MemoryBudget {
        let workers = workers.max(1);
        match flag {
            Some(limit) => MemoryBudget { limit: Some(limit), source: LimitSource::Flag, workers },
            None if on_this_machine => match protocol::memory::available_memory() {
                Some(limit) => MemoryBudget { limit: Some(limit), source: LimitSource::Available, workers },
                None => MemoryBudget { workers, ..MemoryBudget::UNLIMITED },
            },
            None => MemoryBudget { workers, ..MemoryBudget::UNLIMITED },
        }
    }

    /// What one worker may use: the limit divided among the workers at once.
    pub fn per_worker(&self) -> Option<u64> {
        self.limit.map(|l| l / self.workers as u64)
    }

    /// The same budget for at most `runs` workers (a plan of 2 runs never runs 8 at once).
    pub fn for_runs(self, runs: usize) -> MemoryBudget {
        MemoryBudget { workers: self.workers.min(runs).max(1), ..self }
    }

    /// Checks one run's estimate against a worker's share.
    pub fn check(&self, estimate: &MemoryEstimate) -> Result<(), OverBudget> {
        match self.per_worker() {
            Some(share) if estimate.total() > share => {
                Err(OverBudget { estimate: estimate.clone(), budget: *self })
            }
            _ => Ok(()),
        }
    }
}

/// A run whose estimated peak memory is over its worker's share of the limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(self))]
pub struct OverBudget {
    /// The run's estimate, item by item.
    pub estimate: MemoryEstimate,
    /// The budget it does not fit.
    pub budget: MemoryBudget,
}

fn describe(over: &OverBudget) -> String {
    let budget = &over.budget;
    let limit = budget.limit.unwrap_or_default();
    let source = match budget.source {
        LimitSource::Flag => "--max-memory",
        LimitSource::Available => "the memory this machine has available; --max-memory sets another",
        LimitSource::None => "no limit",
    };
    let share = if budget.workers > 1 {
        format!(
            "{} per worker: {} shared by {} workers at once (-j; fewer workers get more each)",
            format_size(limit / budget.workers as u64),
            format_size(limit),
            budget.workers
        )
    } else {
        format_size(limit)
    };
    format!("the run needs {}; the memory limit is {share} ({source})", over.estimate)
}

/// Estimates every run with `estimate` and checks it against `budget`: one line per problem
/// (a run that does not fit, or cannot be estimated), naming the first run that has it and
/// how many more do.
pub fn check_runs<'a>(
    runs: impl IntoIterator<Item = (String, &'a RunSpec)>,
    budget: &MemoryBudget,
    estimate: impl Fn(&RunSpec) -> Result<MemoryEstimate, String>,
) -> Vec<String> {
    let mut problems: Vec<(String, String, usize)> = Vec::new();
    for (label, spec) in runs {
        let problem = match estimate(spec) {
            Ok(e) => budget.check(&e).err().map(|over| over.to_string()),
            Err(message) => Some(format!("cannot estimate its memory: {message}")),
        };
        let Some(problem) = problem else { continue };
        match problems.iter_mut().find(|(_, p, _)| *p == problem) {
            Some((_, _, more)) => *more += 1,
            None => problems.push((label, problem, 0)),
        }
    }
    problems
        .into_iter()
        .map(|(label, problem, more)| match more {
            0 => format!("{label}: {problem}"),
            n => format!("{label} (and {n} more runs alike): {problem}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(bytes: u64) -> MemoryEstimate {
        let mut e = MemoryEstimate::default();
        e.add("network parameters", bytes);
        e
    }

    #[test]
    fn workers_share_the_limit_evenly() {
        let budget = MemoryBudget { limit: Some(1000), source: LimitSource::Flag, workers: 4 };
        assert_eq!(budget.per_worker(), Some(250));
        assert!(budget.check(&estimate(250)).is_ok());
        let over = budget.check(&estimate(251)).unwrap_err().to_string();
        assert!(over.contains("network parameters 251 B"), "{over}");
        assert!(over.contains("250 B per worker: 1000 B shared by 4 workers at once"), "{over}");
        assert_eq!(budget.for_runs(2).per_worker(), Some(500));
        assert!(MemoryBudget::UNLIMITED.check(&estimate(u64::MAX)).is_ok());
    }

    #[test]
    fn runs_over_budget_alike_are_said_once() {
        let spec: RunSpec = serde_json::from_value(serde_json::json!({
            "protocol": 1, "id": "0123456789ab", "experiment": "x", "seed": 0,
            "stream": {"synthetic_permuted": {"tasks": 1}}, "network": {"hidden": [4]},
            "method": {"name": "sgd", "kind": "sgd", "params": {}},
            "training": {}, "eval": {}, "checkpoint": {}
        }))
        .unwrap();
        let budget = MemoryBudget { limit: Some(100), source: LimitSource::Flag, workers: 1 };
        let runs = [("a".to_string(), &spec), ("a".to_string(), &spec), ("b".to_string(), &spec)];
        let problems = check_runs(runs, &budget, |_| Ok(estimate(101)));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("a (and 2 more runs alike): the run needs about 101 B"),
            "{problems:?}"
        );
        assert!(check_runs([("a".to_string(), &spec)], &budget, |_| Ok(estimate(100))).is_empty());
    }
}
