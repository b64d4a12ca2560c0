//! The parallelism bound: which queued runs may start now.
//!
//! Kept apart from the dispatcher's I/O so the bound (never more than `capacity` attempts at
//! once) and the back-off admission (a retried run waits for its delay) are checked directly.

use std::collections::VecDeque;

use tokio::time::Instant;

/// Runs waiting for a worker, in the order they start, and runs waiting out a retry delay.
#[derive(Debug, Default)]
pub struct RunQueue {
    ready: VecDeque<String>,
    delayed: Vec<(Instant, String)>,
}

impl RunQueue {
    /// Queues `id` behind the runs already waiting.
    pub fn push(&mut self, id: String) {
        self.ready.push_back(id);
    }

    /// Queues `id` once `at` has come (a retry's back-off).
    pub fn push_at(&mut self, at: Instant, id: String) {
        self.delayed.push((at, id));
    }

    /// Runs waiting, ready or delayed.
    pub fn len(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    /// Whether no run waits, ready or delayed.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.delayed.is_empty()
    }

    /// Moves the delayed runs whose time has come to the back of the queue, then takes as many
    /// from its front as `active` attempts leave room for under `capacity` (none when
    /// `admitting` is false: a stopping scheduler starts nothing, but the queue keeps order).
    pub fn admit(&mut self, now: Instant, active: usize, capacity: usize, admitting: bool) -> Vec<String> {
        let mut due = Vec::new();
        self.delayed.retain(|(at, id)| {
            let ready = *at <= now;
            if ready {
                due.push(id.clone());
            }
            !ready
        });
        self.ready.extend(due);
        let free = if admitting { capacity.saturating_sub(active) } else { 0 };
        let take = free.min(self.ready.len());
        self.ready.drain(..take).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn queue(ids: &[&str]) -> RunQueue {
        let mut q = RunQueue::default();
        for id in ids {
            q.push(id.to_string());
        }
        q
    }

    #[test]
    fn never_admits_more_than_capacity() {
        let t = Instant::now();
        let mut q = queue(&["a", "b", "c", "d", "e"]);
        assert_eq!(q.admit(t, 0, 2, true), ["a", "b"]);
        assert!(q.admit(t, 2, 2, true).is_empty());
        assert_eq!(q.admit(t, 1, 2, true), ["c"]);
    }

    #[test]
    fn admits_in_order_as_slots_free() {
        let t = Instant::now();
        let mut q = queue(&["a", "b", "c"]);
        let mut active = q.admit(t, 0, 1, true);
        let mut started = active.clone();
        while !q.is_empty() {
            active.pop(); // the one attempt ends, freeing its slot
            let admitted = q.admit(t, active.len(), 1, true);
            assert_eq!(admitted.len(), 1);
            started.extend(admitted.clone());
            active.extend(admitted);
        }
        assert_eq!(started, ["a", "b", "c"]);
    }

    #[test]
    fn more_capacity_than_runs_admits_them_all() {
        let mut q = queue(&["a", "b"]);
        assert_eq!(q.admit(Instant::now(), 0, usize::MAX, true), ["a", "b"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_stopping_scheduler_admits_nothing_and_keeps_the_queue() {
        let t = Instant::now();
        let mut q = queue(&["a"]);
        assert!(q.admit(t, 0, 4, false).is_empty());
        assert!(!q.is_empty());
    }

    #[test]
    fn a_delayed_run_waits_for_its_time_then_queues_behind_the_others() {
        let t = Instant::now();
        let mut q = queue(&["a"]);
        q.push_at(t + Duration::from_secs(2), "retry".into());
        assert_eq!(q.admit(t + Duration::from_millis(1999), 0, 0, true), Vec::<String>::new());
        assert_eq!(q.admit(t + Duration::from_secs(2), 0, 2, true), ["a", "retry"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_delayed_run_keeps_the_loop_alive() {
        let t = Instant::now();
        let mut q = RunQueue::default();
        q.push_at(t + Duration::from_secs(1), "retry".into());
        assert!(!q.is_empty());
        assert!(q.admit(t, 0, 1, true).is_empty());
        assert!(!q.is_empty());
    }
}
