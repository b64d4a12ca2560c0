//! When a run evaluates, measures plasticity and checkpoints. Pure functions of the spec and
//! the position in the stream, so every schedule is deterministic.

use rand::seq::index::sample;

use crate::protocol::{CheckpointSpec, EvalSpec, EvalTasks};
use crate::rng;

/// Whether the accuracy-matrix row after task `task` is measured.
pub fn evaluates_after(eval: &EvalSpec, task: usize, tasks: usize) -> bool {
    task + 1 == tasks || (task + 1).is_multiple_of(eval.every.max(1))
}

/// The tasks evaluated after task `task`, ascending. `All` gives every task; `Subsample` gives
/// the task just trained, the next one (for forward transfer) and `earlier` earlier tasks drawn
/// from the run's seeded stream — except after the last task, where every task is evaluated
/// so that ACC, BWT and forgetting are defined.
pub fn tasks_evaluated_after(eval: &EvalSpec, task: usize, tasks: usize, seed: u64) -> Vec<usize> {
    match eval.tasks {
        EvalTasks::All => (0..tasks).collect(),
        _ if task + 1 == tasks => (0..tasks).collect(),
        EvalTasks::Subsample { earlier } => {
            let mut chosen: Vec<usize> = if earlier >= task {
                (0..task).collect()
            } else {
                let mut r = rng::stream(seed, "eval.subsample", task as u64);
                sample(&mut r, task, earlier).into_vec()
            };
            chosen.push(task);
            if task + 1 < tasks {
                chosen.push(task + 1);
            }
            chosen.sort_unstable();
            chosen
        }
    }
}

/// Whether plasticity is measured after `after_tasks` tasks (0 = the untrained network).
pub fn measures_plasticity(eval: &EvalSpec, after_tasks: usize, tasks: usize) -> bool {
    let every = eval.plasticity.every;
    every > 0 && (after_tasks.is_multiple_of(every) || after_tasks == tasks)
}

/// Resolved checkpoint cadence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    /// Checkpoint after every this many optimiser steps within a task (`u64::MAX`: never).
    pub every_steps: u64,
    /// Checkpoint at the boundary after every this many tasks.
    pub every_tasks: usize,
}

/// About this much work may be lost in a crash when the recipe sets no cadence.
const TARGET_SECONDS: f64 = 60.0;
/// A deliberately low estimate of the worker's speed, so the real interval stays under a
/// minute on slow machines.
const ASSUMED_FLOPS: f64 = 2e9;
/// Per-step overhead independent of size (gathering, bookkeeping), in seconds.
const STEP_OVERHEAD_SECONDS: f64 = 2e-6;

/// Resolves the cadence: the spec's values where given; otherwise from the estimated cost of a
/// step (6 × parameters × batch floating-point operations for forward and backward), so that
/// about a minute of work at most is lost. Counts, not clocks, decide, so the events of a run
/// do not depend on the machine's speed.
pub fn cadence(spec: &CheckpointSpec, parameters: usize, batch: usize, steps_per_task: u64) -> Cadence {
    let step_seconds = 6.0 * parameters as f64 * batch as f64 / ASSUMED_FLOPS + STEP_OVERHEAD_SECONDS;
    let every_steps = spec.every_steps.unwrap_or_else(|| {
        let steps = (TARGET_SECONDS / step_seconds).floor() as u64;
        if steps >= steps_per_task {
            u64::MAX
        } else {
            steps.max(1)
        }
    });
    let every_tasks = spec.every_tasks.unwrap_or_else(|| {
        let task_seconds = step_seconds * steps_per_task.max(1) as f64;
        ((TARGET_SECONDS / task_seconds).floor() as usize).max(1)
    });
    Cadence { every_steps: every_steps.max(1), every_tasks: every_tasks.max(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsampled_evaluation_is_linear_and_keeps_what_metrics_need() {
        let eval = EvalSpec { tasks: EvalTasks::Subsample { earlier: 3 }, ..EvalSpec::default() };
        let t = tasks_evaluated_after(&eval, 10, 100, 7);
        assert_eq!(t.len(), 5);
        assert!(t.contains(&10) && t.contains(&11));
        assert!(t.iter().filter(|&&j| j < 10).count() == 3);
        assert_eq!(t, tasks_evaluated_after(&eval, 10, 100, 7));
        assert_eq!(tasks_evaluated_after(&eval, 1, 100, 7), vec![0, 1, 2]);
        assert_eq!(tasks_evaluated_after(&eval, 99, 100, 7).len(), 100);
        let total: usize = (0..1000).map(|i| tasks_evaluated_after(&eval, i, 1000, 1).len()).sum();
        assert!(total < 6 * 1000 + 1000);
    }

    #[test]
    fn evaluation_every_k_tasks_always_includes_the_last() {
        let eval = EvalSpec { every: 3, ..EvalSpec::default() };
        let rows: Vec<usize> = (0..7).filter(|&t| evaluates_after(&eval, t, 7)).collect();
        assert_eq!(rows, vec![2, 5, 6]);
    }

    #[test]
    fn default_cadence_bounds_lost_work() {
        // A big network: checkpoint within tasks.
        let big = cadence(&CheckpointSpec::default(), 10_000_000, 128, 1_000_000);
        assert!(big.every_steps < 1_000_000 && big.every_steps >= 1);
        assert_eq!(big.every_tasks, 1);
        // A tiny one: never within a task, and many tasks per checkpoint.
        let tiny = cadence(&CheckpointSpec::default(), 111, 1, 10_000);
        assert_eq!(tiny.every_steps, u64::MAX);
        assert!(tiny.every_tasks > 100);
        let fixed =
            cadence(&CheckpointSpec { every_steps: Some(5), every_tasks: Some(2), keep: 2 }, 1, 1, 10);
        assert_eq!(fixed, Cadence { every_steps: 5, every_tasks: 2 });
    }
}
