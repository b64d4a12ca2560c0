//! Where an external worker will resume: the manifest it keeps in its run folder.
//!
//! The built-in worker's checkpoints are read by the orchestrator directly to learn where the
//! next attempt resumes. A worker with its own checkpoint format (a PyTorch `state_dict`, an
//! `.npz`) says it instead in [`crate::files::RESUME`], written after every checkpoint (by
//! writing a temporary file and renaming it over the old one, so that it is never half
//! written). Before each attempt the orchestrator reads it and the events the checkpoint
//! covers; when the file is absent, unreadable or names a checkpoint that is gone, or the
//! covered lines of `events.jsonl` are damaged, the next attempt starts from the beginning —
//! the rule a worker applies to itself, so both sides agree on the resume point.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The content of [`crate::files::RESUME`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeManifest {
    /// Events the checkpoint covers: the `seq` the resumed worker emits first. Lines
    /// `0..next_seq` of `events.jsonl` are kept; the rest is emitted again.
    pub next_seq: u64,
    /// The checkpoint's file name inside the run folder (no folders).
    pub checkpoint: String,
}

impl ResumeManifest {
    /// Whether `checkpoint` names a file directly inside the run folder (no separators, not
    /// `.` or `..`): anything else is refused, so a manifest cannot point outside its run.
    pub fn names_a_plain_file(&self) -> bool {
        let c = &self.checkpoint;
        !c.is_empty() && c != "." && c != ".." && !c.contains('/') && !c.contains('\\') && !c.contains('\0')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_a_file_of_its_own_folder_only() {
        let m = |c: &str| ResumeManifest { next_seq: 3, checkpoint: c.into() };
        assert!(m("checkpoint-3.pt").names_a_plain_file());
        for bad in ["", ".", "..", "../spec.json", "/etc/passwd", "a/b"] {
            assert!(!m(bad).names_a_plain_file(), "{bad}");
        }
        let text = r#"{"next_seq":12,"checkpoint":"ckpt-12.npz"}"#;
        let parsed: ResumeManifest = serde_json::from_str(text).unwrap();
        assert_eq!(parsed, m("ckpt-12.npz").clone_with(12));
        assert!(serde_json::from_str::<ResumeManifest>(r#"{"next_seq":1,"checkpoint":"a","x":1}"#).is_err());
    }

    impl ResumeManifest {
        fn clone_with(mut self, next_seq: u64) -> Self {
            self.next_seq = next_seq;
            self
        }
    }
}
