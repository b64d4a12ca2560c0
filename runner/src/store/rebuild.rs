//! Rebuilding a store from the results folder, the source of truth.
//!
//! sled 0.34 can lose the last writes of an abrupt stop, and a damaged store cannot be opened
//! at all; the run folders survive both (events are appended by the worker, `run.json` is
//! replaced atomically by the orchestrator). A rebuild reads them back into a store.

use std::fs;
use std::path::{Path, PathBuf};

use protocol::{files, EventBody};

use super::db::Store;
use super::error::{Result, StoreError};
use super::folder::{
    read_events_file, read_experiment_files, read_run_record, read_run_spec, EXPERIMENT_FILE, RUNS_DIR,
};
use results::{Failure, RunRecord, RunStatus};

/// What a rebuild found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildSummary {
    /// Runs restored.
    pub runs: usize,
    /// Events restored (after replacing events a resumed worker re-emitted).
    pub events: u64,
    /// `events.jsonl` files whose cut-short last line was ignored.
    pub truncated_tails: Vec<PathBuf>,
    /// Folders under `runs/` without a `run.json`, skipped: the orchestrator stopped before it
    /// first saved the run, so the recipe's next expansion recreates it as pending.
    pub skipped: Vec<PathBuf>,
}

/// Empties `store` and fills it from the results folder `results_dir`: the experiment from
/// `recipe.yaml` and `experiment.json`, each run from its `run.json` with its events from its
/// `events.jsonl`.
///
/// Events are taken in file order; an event whose sequence number is not above the previous
/// one is a resumed worker re-emitting, so the events from that number on are replaced. The
/// run's progress and last checkpoint are recomputed from the events ([`RunRecord::observe`]),
/// and its status is:
///
/// * `finished` if a `finished` event is stored;
/// * else `failed` if a `failed` event is stored (keeping the record's failure if the record
///   already says failed, since the orchestrator may know more, else the event's reason);
/// * else the record's status, except that `running` (the orchestrator stopped abruptly) and
///   `finished` (its `finished` event was lost, so its results are incomplete) become
///   `interrupted`: the next `clorch run` resumes them.
///
/// A folder that cannot be read stops the rebuild with an error naming its file; the store is
/// then partly filled, and a rebuild after the folder is fixed starts over.
pub fn rebuild(results_dir: &Path, store: &Store) -> Result<RebuildSummary> {
    let experiment = read_experiment_files(results_dir)?;
    store.clear()?;
    store.put_experiment(&experiment)?;
    let mut summary = RebuildSummary::default();
    for dir in run_folders(results_dir)? {
        if !dir.join(files::RUN_RECORD).exists() {
            summary.skipped.push(dir);
            continue;
        }
        let record = rebuild_run(&dir, store, &mut summary)?;
        store.upsert_run(&record)?;
        summary.runs += 1;
    }
    store.flush()?;
    tracing::info!(
        "rebuilt the store of {} from {} run folders ({} without run.json skipped)",
        results_dir.display(),
        summary.runs,
        summary.skipped.len()
    );
    Ok(summary)
}

/// The folders under `<results dir>/runs`, sorted by name so rebuilds are reproducible.
fn run_folders(results_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = results_dir.join(RUNS_DIR);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut dirs = Vec::new();
    for entry in fs::read_dir(&root).map_err(|e| StoreError::io(&root, e))? {
        let entry = entry.map_err(|e| StoreError::io(&root, e))?;
        let path = entry.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn rebuild_run(dir: &Path, store: &Store, summary: &mut RebuildSummary) -> Result<RunRecord> {
    let record_path = dir.join(files::RUN_RECORD);
    let mut record = read_run_record(dir)?;
    let folder_name = dir.file_name().unwrap_or_default().to_string_lossy();
    if record.id != folder_name {
        return Err(StoreError::bad_file(
            &record_path,
            format!("field `record.id` is {:?}, but the folder is named {folder_name:?}", record.id),
        ));
    }
    if record.spec.id != record.id {
        return Err(StoreError::bad_file(
            &record_path,
            format!("field `record.spec.id` is {:?}, expected the run id {:?}", record.spec.id, record.id),
        ));
    }
    if dir.join(files::SPEC).exists() {
        let spec = read_run_spec(dir)?;
        if spec.id != record.id {
            return Err(StoreError::bad_file(
                dir.join(files::SPEC),
                format!("field `id` is {:?}, expected the run id {:?}", spec.id, record.id),
            ));
        }
    }

    let events_path = dir.join(files::EVENTS);
    if events_path.exists() {
        let mut last_seq: Option<u64> = None;
        let file = read_events_file(&events_path, |event| {
            if event.run != record.id {
                return Err(StoreError::bad_file(
                    &events_path,
                    format!("event {} belongs to run {:?}, not {:?}", event.seq, event.run, record.id),
                ));
            }
            if last_seq.is_some_and(|last| event.seq <= last) {
                store.remove_events_from(&record.id, event.seq)?;
            }
            last_seq = Some(event.seq);
            store.put_event(&event)
        })?;
        if file.truncated_tail {
            summary.truncated_tails.push(events_path.clone());
        }
    }

    // Recompute what the events say, from the events as finally stored.
    let saved_checkpoint = record.last_checkpoint.take();
    record.progress.tasks_done = 0;
    record.progress.last_seq = None;
    let mut finished = false;
    let mut failed: Option<String> = None;
    for event in store.events(&record.id) {
        let event = event?;
        summary.events += 1;
        record.observe(&event, None);
        match &event.body {
            EventBody::Finished { .. } => finished = true,
            EventBody::Failed { reason } => failed = Some(reason.clone()),
            _ => {}
        }
    }
    if let Some(checkpoint) = &mut record.last_checkpoint {
        checkpoint.received = match &saved_checkpoint {
            Some(saved) if saved.seq == checkpoint.seq && saved.file == checkpoint.file => saved.received,
            _ => modified_secs(&dir.join(&checkpoint.file)),
        };
    }
    record.status = if finished {
        RunStatus::Finished
    } else if let Some(reason) = failed {
        match record.status {
            RunStatus::Failed { failure } => RunStatus::Failed { failure },
            _ => RunStatus::Failed { failure: Failure::Reported { reason } },
        }
    } else {
        match record.status {
            RunStatus::Running | RunStatus::Finished => RunStatus::Interrupted,
            other => other,
        }
    };
    if let RunStatus::Failed { failure } = &record.status {
        record.last_failure = Some(failure.clone());
    }
    Ok(record)
}

/// A difference between the store and the results folder that means the store lost writes
/// (or missed events the worker wrote) and should be rebuilt.
///
/// sled 0.34.7 does not report damage to its log: a segment whose checksum fails is taken for
/// the torn tail of an abrupt stop, and the store opens with everything before it — possibly
/// nothing, so a damaged store can look brand new. Comparing with the folders is how such a
/// loss is noticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// `experiment.json` exists but the store has no experiment metadata.
    MissingExperiment,
    /// A run folder has a `run.json` but the store has no record of the run.
    MissingRun {
        /// The run id (the folder's name).
        id: String,
    },
    /// The store's last event of a run is older than the last one in its `events.jsonl`.
    EventsBehind {
        /// The run id.
        id: String,
        /// Last sequence number in the store, if any.
        store: Option<u64>,
        /// Last sequence number in the folder.
        folder: u64,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::MissingExperiment => f.write_str("the store has no experiment metadata"),
            Drift::MissingRun { id } => write!(f, "the store has no record of run {id}"),
            Drift::EventsBehind { id, store: None, folder } => {
                write!(f, "run {id}: the store has no events, events.jsonl reaches {folder}")
            }
            Drift::EventsBehind { id, store: Some(s), folder } => {
                write!(f, "run {id}: the store's events end at {s}, events.jsonl reaches {folder}")
            }
        }
    }
}

/// Compares `store` with the results folder cheaply (one record lookup and the tail of one
/// file per run) and lists what the store is missing; empty means nothing is missing. Run it
/// when opening an existing experiment: a non-empty answer means [`rebuild`].
pub fn drift(results_dir: &Path, store: &Store) -> Result<Vec<Drift>> {
    let mut found = Vec::new();
    if results_dir.join(EXPERIMENT_FILE).exists() && store.experiment()?.is_none() {
        found.push(Drift::MissingExperiment);
    }
    for dir in run_folders(results_dir)? {
        if !dir.join(files::RUN_RECORD).exists() {
            continue;
        }
        let id = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let Some(record) = store.run(&id)? else {
            found.push(Drift::MissingRun { id });
            continue;
        };
        // A run that failed for breaking the protocol has in its folder what its worker wrote
        // and the orchestrator refused: there the store is right, and the file is not.
        if matches!(record.status, results::RunStatus::Failed { failure: results::Failure::Protocol { .. } })
        {
            continue;
        }
        let events_path = dir.join(files::EVENTS);
        if !events_path.exists() {
            continue;
        }
        if let Some(folder) = last_seq_in_file(&events_path)? {
            let in_store = store.last_event_seq(&id)?;
            let behind = match in_store {
                Some(s) => s < folder,
                None => true,
            };
            if behind {
                found.push(Drift::EventsBehind { id, store: in_store, folder });
            }
        }
    }
    Ok(found)
}

/// The sequence number of the last complete event of an `events.jsonl`, reading only its
/// tail when that holds a complete line.
fn last_seq_in_file(path: &Path) -> Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    const TAIL: u64 = 64 * 1024;
    let mut file = fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start)).map_err(|e| StoreError::io(path, e))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(|e| StoreError::io(path, e))?;
    let lines: Vec<&[u8]> =
        tail.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).collect();
    // The last line may be cut short, the one before it is whole; the first line of a tail
    // that starts mid-file may be partial, so it is never used.
    let first_whole = usize::from(start > 0).min(lines.len());
    for line in lines[first_whole..].iter().rev().take(2) {
        if let Ok(Seq { seq }) = serde_json::from_slice(line) {
            return Ok(Some(seq));
        }
    }
    if start == 0 {
        return Ok(None);
    }
    let mut last = None;
    read_events_file(path, |event| {
        last = Some(event.seq);
        Ok::<_, StoreError>(())
    })?;
    Ok(last)
}

/// The modification time of `path` in unix seconds, if it exists.
fn modified_secs(path: &Path) -> Option<u64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    modified.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::folder::{run_dir, write_experiment_files, write_run_record, write_run_spec};
    use protocol::Event;
    use results::fixtures::record;
    use results::ExperimentMeta;
    use std::io::Write;

    fn append(dir: &Path, events: &[Event]) {
        let mut f = fs::OpenOptions::new().create(true).append(true).open(dir.join(files::EVENTS)).unwrap();
        for e in events {
            f.write_all(protocol::line::encode(e).as_bytes()).unwrap();
        }
    }

    fn ev(run: &str, seq: u64, body: EventBody) -> Event {
        Event { run: run.into(), seq, body }
    }

    fn task(run: &str, seq: u64, task: usize) -> Event {
        ev(run, seq, EventBody::TaskStarted { task, head: 0, train_examples: 10 })
    }

    fn checkpoint(run: &str, seq: u64, tasks_done: usize) -> Event {
        ev(
            run,
            seq,
            EventBody::Checkpoint {
                tasks_done,
                step: 10 * tasks_done as u64,
                file: format!("ckpt-{tasks_done}.bin"),
                checksum: "00".into(),
            },
        )
    }

    fn setup(name: &str) -> test_support::TempDir {
        let results = test_support::scratch(name);
        write_experiment_files(results.path(), &ExperimentMeta::new("exp", "name: exp\n", 5)).unwrap();
        results
    }

    #[test]
    fn statuses_are_recomputed_from_events() {
        let scratch = setup("statuses");
        let results = scratch.path();
        let mut finished = record(0, 2, "sgd", 0.1, 1);
        finished.status = RunStatus::Running;
        let mut failed = record(1, 2, "sgd", 0.1, 2);
        failed.status = RunStatus::Running;
        let mut running = record(2, 2, "sgd", 0.1, 3);
        running.status = RunStatus::Running;
        let pending = record(3, 2, "sgd", 0.1, 4);
        for r in [&finished, &failed, &running, &pending] {
            let dir = run_dir(results, &r.id);
            write_run_record(&dir, r).unwrap();
            write_run_spec(&dir, &r.spec).unwrap();
        }
        let f = &finished.id;
        append(
            &run_dir(results, f),
            &[
                task(f, 0, 0),
                task(f, 1, 1),
                ev(f, 2, EventBody::Finished { tasks: 2, steps: 2, examples: 2 }),
            ],
        );
        let x = &failed.id;
        append(
            &run_dir(results, x),
            &[task(x, 0, 0), ev(x, 1, EventBody::Failed { reason: "loss is NaN".into() })],
        );
        let r = &running.id;
        append(&run_dir(results, r), &[task(r, 0, 0), checkpoint(r, 1, 1), task(r, 2, 1)]);

        let store = Store::temporary().unwrap();
        let summary = rebuild(results, &store).unwrap();
        assert_eq!(summary.runs, 4);
        assert_eq!(summary.events, 3 + 2 + 3);
        let status = |id: &str| store.run(id).unwrap().unwrap().status;
        assert_eq!(status(f), RunStatus::Finished);
        let reported = Failure::Reported { reason: "loss is NaN".into() };
        assert_eq!(status(x), RunStatus::Failed { failure: reported.clone() });
        assert_eq!(store.run(x).unwrap().unwrap().last_failure, Some(reported));
        assert_eq!(status(r), RunStatus::Interrupted);
        assert_eq!(status(&pending.id), RunStatus::Pending);
        let resumable = store.run(r).unwrap().unwrap();
        assert_eq!(resumable.progress.tasks_done, 1);
        assert_eq!(resumable.progress.last_seq, Some(2));
        let ckpt = resumable.last_checkpoint.unwrap();
        assert_eq!((ckpt.seq, ckpt.tasks_done, ckpt.file.as_str()), (1, 1, "ckpt-1.bin"));
        assert_eq!(store.experiment().unwrap().unwrap().name, "exp");
    }

    #[test]
    fn re_emitted_events_of_a_resumed_worker_replace_the_old_ones() {
        let scratch = setup("resume");
        let results = scratch.path();
        let rec = record(0, 3, "sgd", 0.1, 1);
        let dir = run_dir(results, &rec.id);
        write_run_record(&dir, &rec).unwrap();
        let id = &rec.id;
        // First attempt: checkpoint at seq 1, then task 1 started and a failure at seq 3.
        append(&dir, &[task(id, 0, 0), checkpoint(id, 1, 1), task(id, 2, 1)]);
        append(&dir, &[ev(id, 3, EventBody::Failed { reason: "oom".into() })]);
        // Resumed from the checkpoint: re-emits from seq 2 and finishes.
        append(&dir, &[task(id, 2, 1), task(id, 3, 2)]);
        append(&dir, &[ev(id, 4, EventBody::Finished { tasks: 3, steps: 3, examples: 3 })]);
        let store = Store::temporary().unwrap();
        let summary = rebuild(results, &store).unwrap();
        assert_eq!(summary.events, 5);
        let kinds: Vec<&str> = store.events(id).map(|e| e.unwrap().body.kind()).collect::<Vec<_>>();
        assert_eq!(kinds, ["task_started", "checkpoint", "task_started", "task_started", "finished"]);
        assert_eq!(store.run(id).unwrap().unwrap().status, RunStatus::Finished);
    }

    #[test]
    fn folder_problems_are_reported_with_their_file() {
        let scratch = setup("problems");
        let results = scratch.path();
        let rec = record(0, 2, "sgd", 0.1, 1);
        let dir = run_dir(results, &rec.id);
        write_run_record(&dir, &rec).unwrap();
        append(&dir, &[task("someone-else", 0, 0)]);
        let store = Store::temporary().unwrap();
        let err = rebuild(results, &store).unwrap_err().to_string();
        assert!(err.contains("events.jsonl: event 0 belongs to run \"someone-else\""), "{err}");

        fs::remove_file(dir.join(files::EVENTS)).unwrap();
        let moved = results.join("runs").join("renamed");
        fs::rename(&dir, &moved).unwrap();
        let err = rebuild(results, &store).unwrap_err().to_string();
        assert!(err.contains("run.json: field `record.id`") && err.contains("\"renamed\""), "{err}");

        // A folder the orchestrator never saved a record into is skipped, and said so.
        fs::remove_file(moved.join(files::RUN_RECORD)).unwrap();
        let summary = rebuild(results, &store).unwrap();
        assert_eq!((summary.runs, summary.skipped), (0, vec![moved]));
    }

    #[test]
    fn a_store_rebuilt_from_folders_equals_the_ingested_one() {
        let scratch = setup("equal");
        let results = scratch.path();
        let live = Store::open(results).unwrap();
        live.put_experiment(&read_experiment_files(results).unwrap()).unwrap();
        for (i, seed) in [1u64, 2].into_iter().enumerate() {
            let mut rec = record(i as u64, 2, "sgd", 0.1, seed);
            let id = rec.id.clone();
            rec.status = RunStatus::Running;
            rec.attempts = 1;
            live.save_run(&rec).unwrap();
            let events = [
                task(&id, 0, 0),
                checkpoint(&id, 1, 1),
                task(&id, 2, 1),
                ev(&id, 3, EventBody::Finished { tasks: 2, steps: 2, examples: 2 }),
            ];
            append(&run_dir(results, &id), &events);
            for e in &events {
                live.ingest(e).unwrap();
                rec.observe(e, None);
            }
            rec.status = RunStatus::Finished;
            live.save_run(&rec).unwrap();
        }
        live.flush().unwrap();
        let rebuilt = Store::temporary().unwrap();
        rebuild(results, &rebuilt).unwrap();
        assert_eq!(rebuilt.runs().unwrap(), live.runs().unwrap());
        assert_eq!(rebuilt.experiment().unwrap(), live.experiment().unwrap());
        for run in live.runs().unwrap() {
            let a: Vec<Event> = live.events(&run.id).map(Result::unwrap).collect();
            let b: Vec<Event> = rebuilt.events(&run.id).map(Result::unwrap).collect();
            assert_eq!(a, b);
        }
        drop(live);
    }

    #[test]
    fn drift_finds_what_the_store_lost() {
        let scratch = setup("drift");
        let results = scratch.path();
        let rec = record(0, 2, "sgd", 0.1, 1);
        let dir = run_dir(results, &rec.id);
        write_run_record(&dir, &rec).unwrap();
        let id = &rec.id;
        let events = [task(id, 0, 0), checkpoint(id, 1, 1), task(id, 2, 1)];
        append(&dir, &events);

        let store = Store::temporary().unwrap();
        assert_eq!(
            drift(results, &store).unwrap(),
            vec![Drift::MissingExperiment, Drift::MissingRun { id: id.clone() }]
        );
        rebuild(results, &store).unwrap();
        assert_eq!(drift(results, &store).unwrap(), vec![]);
        store.truncate_events_after(id, 0).unwrap();
        let behind = drift(results, &store).unwrap();
        assert_eq!(behind, vec![Drift::EventsBehind { id: id.clone(), store: Some(0), folder: 2 }]);
        assert!(behind[0].to_string().contains("events end at 0, events.jsonl reaches 2"));
    }

    #[test]
    fn the_last_sequence_number_is_read_from_the_tail_of_long_files() {
        let scratch = test_support::scratch("tail");
        let dir = scratch.path();
        let path = dir.join(files::EVENTS);
        let long = |seq, chars| {
            let reason = "x".repeat(chars);
            ev("r", seq, EventBody::Failed { reason })
        };
        // Short file with a truncated last line: the line before it counts.
        fs::write(
            &path,
            format!("{}\n{{\"run\":\"r\",\"se", serde_json::to_string(&task("r", 4, 0)).unwrap()),
        )
        .unwrap();
        assert_eq!(last_seq_in_file(&path).unwrap(), Some(4));
        // Long file: the tail holds whole lines.
        fs::remove_file(&path).unwrap();
        append(dir, &(0..10).map(|s| task("r", s, 0)).collect::<Vec<_>>());
        append(dir, &[long(10, 30_000), long(11, 30_000), long(12, 30_000), task("r", 13, 0)]);
        assert_eq!(last_seq_in_file(&path).unwrap(), Some(13));
        // Lines longer than the tail: no whole line in it, so the whole file is read.
        fs::remove_file(&path).unwrap();
        append(dir, &[long(0, 70_000), long(1, 70_000), long(2, 70_000), long(3, 70_000)]);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        let cut = serde_json::to_string(&long(4, 70_000)).unwrap();
        f.write_all(&cut.as_bytes()[..cut.len() - 10]).unwrap();
        assert_eq!(last_seq_in_file(&path).unwrap(), Some(3));
    }
}
