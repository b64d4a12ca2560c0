//! Exit statuses of a worker. They tell the orchestrator whether a retry can help; any status
//! not listed here, and death by a signal, is a crash, retried from the last checkpoint.

/// The run finished its stream.
pub const FINISHED: i32 = 0;
/// The run failed for a reason a retry cannot fix (diverged, a method error); a `failed` event
/// says why.
pub const FAILED: i32 = 1;
/// The spec or its data is unusable (bad spec, missing or malformed data file); a retry cannot
/// fix it either.
pub const BAD_SPEC: i32 = 2;
/// Trouble that may pass (a full disk, a torn checkpoint, a broken pipe): the attempt counts as
/// a crash and is retried from the last checkpoint (`EX_SOFTWARE` of sysexits.h).
pub const TRANSIENT: i32 = 70;
/// A stop was requested ([`crate::control`]); the worker checkpointed and the run can resume.
/// Not a failure: it does not use up an attempt (`EX_TEMPFAIL` of sysexits.h).
pub const INTERRUPTED: i32 = 75;

/// What an exit status means for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// [`FINISHED`].
    Finished,
    /// [`INTERRUPTED`]: resumable, not an attempt used.
    Interrupted,
    /// [`FAILED`] or [`BAD_SPEC`]: final, a retry cannot help.
    Failed,
    /// Anything else: a crash, retried from the last checkpoint.
    Crashed,
}

/// Reads an exit status.
pub fn meaning(code: i32) -> Meaning {
    match code {
        FINISHED => Meaning::Finished,
        INTERRUPTED => Meaning::Interrupted,
        FAILED | BAD_SPEC => Meaning::Failed,
        _ => Meaning::Crashed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failed_and_bad_spec_are_final() {
        assert_eq!(meaning(0), Meaning::Finished);
        assert_eq!(meaning(75), Meaning::Interrupted);
        assert_eq!(meaning(1), Meaning::Failed);
        assert_eq!(meaning(2), Meaning::Failed);
        for crash in [TRANSIENT, 3, 101, 137, -1] {
            assert_eq!(meaning(crash), Meaning::Crashed, "{crash}");
        }
    }
}
