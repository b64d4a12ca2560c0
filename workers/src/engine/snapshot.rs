//! A run's full state in a checkpoint, and back: the model, the optimiser's per-element state,
//! the method's state, the method's random stream, the position in the stream, the online bin
//! being filled and the event sink's position.
//!
//! Everything else a run uses is a pure function of the spec and the position (task
//! permutations, example order, evaluation subsamples, probe batches), so it is not stored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::event_log::IntactLog;
use super::trainer::{Counters, OnlineBin, Position, Trainer};
use super::RunError;
use super::Trainable;
use crate::checkpoint::{self, Checkpoint, Refusal};
use crate::method::{MethodState, StateTensor};
use crate::model::Parameters;
use crate::optim::OptimizerConfig;
use crate::protocol::{EventBody, RunSpec};
use crate::rng::RngState;

/// Version of [`RunState`]; a checkpoint of another version is not resumed from.
const RUN_STATE_VERSION: u32 = 1;

/// The checkpoint's JSON metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RunState {
    version: u32,
    /// Content id of the spec the checkpoint belongs to.
    spec: String,
    sizes: Vec<usize>,
    position: Position,
    counters: Counters,
    bin: OnlineBin,
    /// Sequence number of the next event.
    pub next_seq: u64,
    /// Bytes of `events.jsonl` that precede the checkpoint.
    pub log_len: u64,
    /// Whether a `checkpoint` event announces this checkpoint (and must be emitted again on
    /// resume, right after `log_len`).
    announced: bool,
    optimizer: OptimizerConfig,
    method_rng: RngState,
    method_meta: serde_json::Value,
}

/// A checkpoint found in a run folder.
pub(crate) struct Found {
    pub state: RunState,
    checkpoint: Checkpoint,
    file: String,
    checksum: String,
}

/// The index in a checkpoint's file name: twice the step count, plus one at a task boundary,
/// so names grow with progress and the same point of a run always gets the same name.
fn index<M: Trainable>(trainer: &Trainer<'_, M>) -> u64 {
    2 * trainer.counters.steps + u64::from(!trainer.position.task_begun)
}

/// Writes the trainer's state as a checkpoint in `dir` and prunes old ones. Returns the file
/// name and checksum.
pub(crate) fn write<M: Trainable>(
    trainer: &mut Trainer<'_, M>,
    dir: &Path,
    announced: bool,
) -> Result<(String, String), RunError> {
    let fail = |e: checkpoint::CheckpointError| RunError::Checkpoint(e.to_string());
    let mut method_state = MethodState::default();
    trainer.method.save(&mut method_state);
    let state = RunState {
        version: RUN_STATE_VERSION,
        spec: trainer.spec.content_id(),
        sizes: trainer.net.structure(),
        position: trainer.position,
        counters: trainer.counters,
        bin: trainer.bin,
        next_seq: trainer.sink.next_seq(),
        log_len: trainer.sink.log_len(),
        announced,
        optimizer: trainer.optimizer.config,
        method_rng: RngState::capture(&trainer.method_rng),
        method_meta: method_state.meta.clone(),
    };
    let meta = serde_json::to_value(&state).map_err(|e| RunError::Checkpoint(e.to_string()))?;
    let mut ckpt = Checkpoint::new(meta);
    put_tensors(&mut ckpt, "model", trainer.net.parameters()).map_err(fail)?;
    for (name, state) in trainer.optimizer.states() {
        put_tensors(&mut ckpt, &format!("optimizer.{name}"), state).map_err(fail)?;
    }
    for (name, tensor) in method_state.tensors {
        let name = format!("method.{name}");
        match tensor {
            StateTensor::F32(v) => ckpt.put_f32(name, v.len(), v),
            StateTensor::U32(v) => ckpt.put_u32(name, v.len(), v),
            StateTensor::U64(v) => ckpt.put_u64(name, v.len(), v),
        }
        .map_err(fail)?;
    }
    let file = checkpoint::file_name(index(trainer));
    let checksum = ckpt.write_atomic(dir, &file).map_err(fail)?;
    checkpoint::prune(dir, trainer.spec.checkpoint.keep.max(1)).map_err(fail)?;
    Ok((file, checksum))
}

fn put_tensors<P: Parameters>(
    ckpt: &mut Checkpoint,
    prefix: &str,
    params: &P,
) -> Result<(), checkpoint::CheckpointError> {
    for t in params.tensors() {
        ckpt.put_f32(format!("{prefix}.{}", t.name), t.shape, t.values.to_vec())?;
    }
    Ok(())
}

fn read_tensors<P: Parameters>(ckpt: &Checkpoint, prefix: &str, params: &mut P) -> Result<(), RunError> {
    for (name, out) in params.tensors_mut() {
        let key = format!("{prefix}.{name}");
        let v = ckpt.f32(&key).map_err(|e| RunError::Checkpoint(e.to_string()))?;
        if v.len() != out.len() {
            return Err(RunError::Checkpoint(format!(
                "`{key}` holds {} values; the network needs {}",
                v.len(),
                out.len()
            )));
        }
        out.copy_from_slice(v);
    }
    Ok(())
}

/// What a search of a run folder for a checkpoint to resume from found.
pub(crate) struct Search {
    /// The newest checkpoint that verifies (and belongs to the spec), if any.
    pub found: Option<Found>,
    /// Every newer checkpoint that did not verify, newest first.
    pub rejected: Vec<checkpoint::RejectedCheckpoint>,
}

impl Search {
    /// The file resumed from, if any.
    pub fn resumed_from(&self) -> Option<&str> {
        self.found.as_ref().map(|f| f.file.as_str())
    }

    /// Reports to the worker's log (target `checkpoint`): a WARN per newer checkpoint that
    /// failed verification, naming the file, why, and the one used instead; an INFO for the
    /// checkpoint resumed from. Nothing for a run that starts from the beginning cleanly.
    pub fn log(&self) {
        let instead = self.resumed_from().map_or_else(
            || "starting from the beginning".to_string(),
            |f| format!("resuming from the older {f}"),
        );
        for rejected in &self.rejected {
            let file =
                rejected.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            let what = match rejected.reason {
                checkpoint::CheckpointError::Refused { .. } => "cannot be resumed from",
                _ => "failed verification",
            };
            tracing::warn!(
                target: "checkpoint",
                "{file} {what} ({}); {instead}",
                rejected.reason.without_path()
            );
        }
        if let Some(file) = self.resumed_from() {
            tracing::info!(target: "checkpoint", "resuming from {file}");
        }
    }
}

/// The newest checkpoint in `dir` that verifies and belongs to `spec`, with every newer one
/// that did not (for the caller to report: [`Search::log`]). A checkpoint that verifies but
/// whose run state is unreadable, of another version, or of another spec (another run's
/// file in the folder), or whose events in `events.jsonl` are damaged ([`IntactLog`]), is
/// skipped like a corrupt one: the run resumes from an older one or starts from the
/// beginning.
pub(crate) fn find(spec: &RunSpec, dir: &Path) -> Result<Search, RunError> {
    let id = spec.content_id();
    let log = IntactLog::read(dir, &spec.id).map_err(|e| RunError::Checkpoint(e.to_string()))?;
    let accept = |ckpt: &Checkpoint| {
        let state = state_of(ckpt, &id).map_err(|reason| Refusal { summary: "another run's", reason })?;
        log.covers(state.log_len, state.next_seq)
    };
    let resume =
        checkpoint::newest_valid_where(dir, accept).map_err(|e| RunError::Checkpoint(e.to_string()))?;
    let rejected = resume.rejected;
    let Some(valid) = resume.checkpoint else { return Ok(Search { found: None, rejected }) };
    let state = state_of(&valid.checkpoint, &id).map_err(RunError::Checkpoint)?;
    let file = valid.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let found = Found { state, file, checksum: valid.checksum, checkpoint: valid.checkpoint };
    Ok(Search { found: Some(found), rejected })
}

/// The run state of a checkpoint, if it is one this worker can resume the spec with content
/// id `id` from; else why not.
fn state_of(ckpt: &Checkpoint, id: &str) -> Result<RunState, String> {
    let state: RunState =
        serde_json::from_value(ckpt.meta().clone()).map_err(|e| format!("unreadable run state: {e}"))?;
    if state.version != RUN_STATE_VERSION {
        return Err(format!("run state version {} (this worker writes {RUN_STATE_VERSION})", state.version));
    }
    if state.spec != id {
        return Err(format!("belongs to another run (spec content id {}, not {id})", state.spec));
    }
    Ok(state)
}

/// Restores a found checkpoint into a freshly built trainer (whose sink was opened at the
/// checkpoint's position), re-emitting its `checkpoint` event if it had one.
pub(crate) fn restore<M: Trainable>(trainer: &mut Trainer<'_, M>, found: Found) -> Result<(), RunError> {
    let Found { state, checkpoint: ckpt, file, checksum } = found;
    if state.sizes != trainer.net.structure() {
        return Err(RunError::Checkpoint(format!(
            "{file}: network sizes {:?} differ from the spec's {:?}",
            state.sizes,
            trainer.net.structure()
        )));
    }
    read_tensors(&ckpt, "model", trainer.net.parameters_mut())?;
    trainer.optimizer.config = state.optimizer;
    for (name, state, _) in trainer.optimizer.states_mut() {
        read_tensors(&ckpt, &format!("optimizer.{name}"), state)?;
    }
    let mut method_state = MethodState { meta: state.method_meta, ..MethodState::default() };
    for name in ckpt.tensors_with_prefix("method.") {
        let short = name.trim_start_matches("method.").to_string();
        let tensor = if let Ok(v) = ckpt.f32(name) {
            StateTensor::F32(v.to_vec())
        } else if let Ok(v) = ckpt.u32(name) {
            StateTensor::U32(v.to_vec())
        } else {
            StateTensor::U64(ckpt.u64(name).map_err(|e| RunError::Checkpoint(e.to_string()))?.to_vec())
        };
        method_state.tensors.insert(short, tensor);
    }
    trainer.method.load(&method_state).map_err(super::RunError::Method)?;
    trainer.method_rng = state.method_rng.restore();
    trainer.position = state.position;
    trainer.counters = state.counters;
    trainer.bin = state.bin;
    if state.announced {
        trainer
            .sink
            .emit(EventBody::Checkpoint {
                tasks_done: state.position.task,
                step: state.counters.steps,
                file,
                checksum,
            })
            .map_err(RunError::Output)?;
    }
    Ok(())
}
