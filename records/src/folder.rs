//! The files of the results folder: the source of truth the store is rebuilt from.
//!
//! ```text
//! <results dir>/
//!   recipe.yaml          the recipe as it ran: its text, or with the overrides applied
//!   invocations.jsonl    every `clorch run` of the experiment ([`crate::invocation`])
//!   recipes/<hash>.yaml  each distinct recipe text those runs read
//!   experiment.json      {"format":1,"name":…,"recipe_hash":…,"clorch_version":…,
//!                         "created":…,"updated":…}
//!   runs/<run id>/
//!     run.json           {"format":1,"record":<RunRecord>}, written atomically by the
//!                        orchestrator whenever it saves the record
//!     spec.json          the RunSpec the worker reads
//!     events.jsonl       the worker's events, one JSON object per line, appended
//!     worker.lock        held by the live worker of the run
//!     worker.log         the worker's standard error (local executor)
//! ```
//!
//! The names of a run folder's files are the protocol's ([`protocol::files`]): the worker
//! writes some of them, so they are part of its contract.
//!
//! Files the orchestrator writes are replaced atomically (temporary file, fsync, rename, fsync
//! of the folder), so a reader sees the old or the new content, never a mix.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use protocol::{files, Event, RunSpec};
use serde::{Deserialize, Serialize};

use crate::error::{FolderError, Result};
use crate::record::{recipe_hash, ExperimentMeta, RunRecord};
use crate::STORE_FORMAT;

/// Folder of the run folders inside a results folder.
pub const RUNS_DIR: &str = "runs";
/// The recipe's text inside a results folder.
pub const RECIPE_FILE: &str = "recipe.yaml";
/// The experiment's metadata (without the recipe text) inside a results folder.
pub const EXPERIMENT_FILE: &str = "experiment.json";
/// Format version of `run.json` and `experiment.json`.
pub const FOLDER_FORMAT: u32 = 1;

/// The folder of run `id`: `<results dir>/runs/<id>`.
pub fn run_dir(results_dir: &Path, id: &str) -> PathBuf {
    results_dir.join(RUNS_DIR).join(id)
}

/// `run.json`: the record and the format it is written in.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile<R> {
    format: u32,
    record: R,
}

/// `experiment.json`: [`ExperimentMeta`] without the recipe text (that is `recipe.yaml`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    format: u32,
    name: String,
    recipe_hash: String,
    clorch_version: String,
    created: u64,
    updated: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    runs: Vec<String>,
}

/// Replaces `path` with `bytes` through a temporary file and a rename, without syncing: readers
/// never see a half-written file and a crash of this process cannot tear it, but a power cut
/// may lose the latest version. For files rewritten often whose loss costs nothing (the live
/// status snapshot, a run's transient `running` record, which a rebuild re-derives).
pub fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| FolderError::io(dir, e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    fs::write(&tmp, bytes).map_err(|e| FolderError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| FolderError::io(path, e))
}

/// Writes `bytes` to `path` atomically: a temporary file next to it, fsynced, renamed over
/// `path`, then the folder fsynced so the rename itself survives a power cut. Creates the
/// folder if needed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| FolderError::io(dir, e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = File::create(&tmp).map_err(|e| FolderError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| FolderError::io(&tmp, e))?;
    file.sync_all().map_err(|e| FolderError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| FolderError::io(path, e))?;
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| FolderError::io(dir, e))?;
    Ok(())
}

fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| FolderError::io(path, e))
}

/// Decodes JSON, naming the file and the field path on failure.
fn decode<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if field.is_empty() || field == "." {
            FolderError::bad_file(path, inner.to_string())
        } else {
            FolderError::bad_file(path, format!("field `{field}`: {inner}"))
        }
    })
}

fn check_format(path: &Path, format: u32) -> Result<()> {
    if format != FOLDER_FORMAT {
        return Err(FolderError::bad_file(
            path,
            format!("format version {format}, but this clorch reads version {FOLDER_FORMAT}"),
        ));
    }
    Ok(())
}

/// Writes `run.json` into the run folder `dir` atomically (creating the folder).
pub fn write_run_record(dir: &Path, record: &RunRecord) -> Result<()> {
    write_atomically(&dir.join(files::RUN_RECORD), &run_record_bytes(record))
}

/// Writes `run.json` as [`write_run_record`] does, without syncing ([`write_replacing`]): for
/// transient states (a run just started) that a rebuild can re-derive.
pub fn note_run_record(dir: &Path, record: &RunRecord) -> Result<()> {
    write_replacing(&dir.join(files::RUN_RECORD), &run_record_bytes(record))
}

fn run_record_bytes(record: &RunRecord) -> Vec<u8> {
    let file = RunFile { format: FOLDER_FORMAT, record };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("run records serialise");
    bytes.push(b'\n');
    bytes
}

/// Reads `run.json` from the run folder `dir`.
pub fn read_run_record(dir: &Path) -> Result<RunRecord> {
    let path = dir.join(files::RUN_RECORD);
    let file: RunFile<RunRecord> = decode(&path, &read_to_string(&path)?)?;
    check_format(&path, file.format)?;
    Ok(file.record)
}

/// Writes `spec.json` (the worker's input) into the run folder `dir` atomically.
pub fn write_run_spec(dir: &Path, spec: &RunSpec) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(spec).expect("run specs serialise");
    bytes.push(b'\n');
    write_atomically(&dir.join(files::SPEC), &bytes)
}

/// Reads `spec.json` from the run folder `dir`.
pub fn read_run_spec(dir: &Path) -> Result<RunSpec> {
    let path = dir.join(files::SPEC);
    decode(&path, &read_to_string(&path)?)
}

/// Writes `recipe.yaml` (the recipe text) and `experiment.json` (the rest of `meta`) into the
/// results folder, each atomically.
pub fn write_experiment_files(results_dir: &Path, meta: &ExperimentMeta) -> Result<()> {
    write_atomically(&results_dir.join(RECIPE_FILE), meta.recipe.as_bytes())?;
    let file = ExperimentFile {
        format: FOLDER_FORMAT,
        name: meta.name.clone(),
        recipe_hash: meta.recipe_hash.clone(),
        clorch_version: meta.clorch_version.clone(),
        created: meta.created,
        updated: meta.updated,
        runs: meta.runs.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("experiment files serialise");
    bytes.push(b'\n');
    write_atomically(&results_dir.join(EXPERIMENT_FILE), &bytes)
}

/// Reads the experiment's metadata back from `recipe.yaml` and `experiment.json`. The recipe
/// text must still hash to the recorded `recipe_hash`: a copy edited after the run would
/// misdescribe the results.
pub fn read_experiment_files(results_dir: &Path) -> Result<ExperimentMeta> {
    let recipe_path = results_dir.join(RECIPE_FILE);
    let recipe = read_to_string(&recipe_path)?;
    let path = results_dir.join(EXPERIMENT_FILE);
    let file: ExperimentFile = decode(&path, &read_to_string(&path)?)?;
    check_format(&path, file.format)?;
    let actual = recipe_hash(&recipe);
    if actual != file.recipe_hash {
        return Err(FolderError::bad_file(
            &recipe_path,
            format!(
                "its hash {actual} differs from the recipe_hash {} recorded in {EXPERIMENT_FILE}; \
                 the recipe was edited after the experiment ran",
                file.recipe_hash
            ),
        ));
    }
    Ok(ExperimentMeta {
        name: file.name,
        recipe,
        recipe_hash: file.recipe_hash,
        clorch_version: file.clorch_version,
        store_format: STORE_FORMAT,
        created: file.created,
        updated: file.updated,
        runs: file.runs,
    })
}

/// What a folder named as a results folder holds, as far as clorch is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderState {
    /// Nothing there yet.
    Missing,
    /// An existing, empty folder: clorch may make it a results folder.
    Empty,
    /// A results folder clorch wrote: its `experiment.json` carries the folder format and the
    /// clorch version, or (an earlier run stopped before writing it) it holds only what clorch
    /// creates first (lock, store, run folders).
    Experiment,
    /// Something else: a file, or a folder holding files clorch did not write. The text says
    /// what was found.
    Foreign(String),
}

/// Entries a `clorch run` creates before it writes `experiment.json`.
fn is_early_clorch_entry(name: &str) -> bool {
    matches!(name, "clorch.lock" | "store" | "runs" | "status.json")
        || name.starts_with("store.old-")
        || name.starts_with("store.damaged-")
}

/// Looks at `dir` without changing anything, so that commands can refuse to write into (or
/// read from) a folder that is not theirs before they create anything.
pub fn inspect_folder(dir: &Path) -> FolderState {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FolderState::Missing,
        Err(e) => return FolderState::Foreign(format!("cannot read it: {e}")),
    };
    if !meta.is_dir() {
        return FolderState::Foreign("a file, not a folder".to_string());
    }
    let experiment = dir.join(EXPERIMENT_FILE);
    if experiment.exists() {
        let marked = fs::read_to_string(&experiment)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|v| {
                v.get("format").is_some_and(serde_json::Value::is_u64)
                    && v.get("clorch_version").is_some_and(serde_json::Value::is_string)
                    && v.get("recipe_hash").is_some_and(serde_json::Value::is_string)
            });
        return if marked {
            FolderState::Experiment
        } else {
            FolderState::Foreign(format!(
                "an {EXPERIMENT_FILE} that clorch did not write (no `format`, `clorch_version` and `recipe_hash`)"
            ))
        };
    }
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => {
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        }
        Err(e) => return FolderState::Foreign(format!("cannot list it: {e}")),
    };
    if names.is_empty() {
        return FolderState::Empty;
    }
    let has_lock = names.iter().any(|n| n == "clorch.lock");
    // `recipe.yaml` is written just before `experiment.json`; alone it may be the user's.
    names.retain(|n| !(is_early_clorch_entry(n) || (has_lock && n == RECIPE_FILE)));
    if names.is_empty() {
        return FolderState::Experiment;
    }
    names.sort();
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    let more = if names.len() > 3 { format!(" and {} more", names.len() - 3) } else { String::new() };
    FolderState::Foreign(format!(
        "files clorch did not write ({}{more}) and no {EXPERIMENT_FILE}",
        shown.join(", ")
    ))
}

/// What reading an `events.jsonl` found besides its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventsFileSummary {
    /// Events read.
    pub events: u64,
    /// The last line was cut short (no newline and not a valid event) and was ignored: the
    /// worker stopped mid-write.
    pub truncated_tail: bool,
}

/// Reads an `events.jsonl`, handing each event to `visit` in file order.
///
/// A worker appends one line per event, so a crash can leave the last line incomplete: a
/// final line without a newline that does not decode is ignored (and reported in the
/// summary). Any other line that is not a valid event or whose seal
/// ([`protocol::line`]) does not hold is corruption, reported with the file and line number. Blank lines are skipped.
/// `visit`'s error type is the caller's (the store's, when it ingests), so a failure of the
/// visit passes through unchanged.
pub fn read_events_file<E: From<FolderError>>(
    path: &Path,
    mut visit: impl FnMut(Event) -> Result<(), E>,
) -> Result<EventsFileSummary, E> {
    let file = File::open(path).map_err(|e| FolderError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut summary = EventsFileSummary::default();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(|e| FolderError::io(path, e))?;
        if read == 0 {
            return Ok(summary);
        }
        number += 1;
        let complete = line.last() == Some(&b'\n');
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match protocol::line::decode(&line) {
            Ok(event) => {
                summary.events += 1;
                visit(event)?;
            }
            Err(_) if !complete => {
                summary.truncated_tail = true;
                return Ok(summary);
            }
            Err(e) => {
                return Err(FolderError::CorruptEventLine {
                    file: path.to_path_buf(),
                    line: number,
                    reason: e.to_string(),
                }
                .into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::record;
    use crate::record::{Failure, RunStatus};
    use protocol::EventBody;

    fn line(seq: u64) -> String {
        let e = Event {
            run: "r".into(),
            seq,
            body: EventBody::Online {
                task: 0,
                bin: seq as usize,
                examples: 10,
                loss: 0.5,
                accuracy: Some(0.5),
            },
        };
        protocol::line::encode(&e).trim_end().to_string()
    }

    fn read_seqs(path: &Path) -> Result<(Vec<u64>, EventsFileSummary)> {
        let mut seqs = Vec::new();
        let summary = read_events_file(path, |e| {
            seqs.push(e.seq);
            Ok(())
        })?;
        Ok((seqs, summary))
    }

    #[test]
    fn run_records_round_trip_atomically() {
        let scratch = test_support::scratch("record");
        let dir = scratch.path().join("runs").join("abc");
        let mut r = record(3, 2, "cbp", 0.01, 4);
        r.status = RunStatus::Failed { failure: Failure::Silent { silent_seconds: 60 } };
        write_run_record(&dir, &r).unwrap();
        assert_eq!(read_run_record(&dir).unwrap(), r);
        assert!(!dir.join("run.json.tmp").exists());
        r.attempts = 2;
        write_run_record(&dir, &r).unwrap();
        assert_eq!(read_run_record(&dir).unwrap().attempts, 2);
        write_run_spec(&dir, &r.spec).unwrap();
        assert_eq!(read_run_spec(&dir).unwrap(), r.spec);
    }

    #[test]
    fn a_bad_run_file_names_the_file_and_field() {
        let scratch = test_support::scratch("bad-record");
        let dir = scratch.path();
        fs::write(dir.join(files::RUN_RECORD), r#"{"format":1,"record":{"id":3}}"#).unwrap();
        let err = read_run_record(dir).unwrap_err().to_string();
        assert!(err.contains("run.json: field `record.id`"), "{err}");
        fs::write(dir.join(files::RUN_RECORD), r#"{"format":7,"record":null}"#).unwrap();
        let err = read_run_record(dir).unwrap_err().to_string();
        assert!(err.contains("field `record`"), "{err}");
        let r = record(0, 1, "sgd", 0.1, 1);
        let text = serde_json::json!({"format": 7, "record": r}).to_string();
        fs::write(dir.join(files::RUN_RECORD), text).unwrap();
        let err = read_run_record(dir).unwrap_err().to_string();
        assert!(err.contains("format version 7, but this clorch reads version 1"), "{err}");
    }

    #[test]
    fn experiment_files_round_trip_and_detect_an_edited_recipe() {
        let scratch = test_support::scratch("experiment");
        let dir = scratch.path();
        let mut meta = ExperimentMeta::new("quick", "name: quick\nseeds: [1, 2]\n", 10);
        meta.updated = 20;
        write_experiment_files(dir, &meta).unwrap();
        assert_eq!(read_experiment_files(dir).unwrap(), meta);
        fs::write(dir.join(RECIPE_FILE), "name: quick\nseeds: [1, 2, 3]\n").unwrap();
        let err = read_experiment_files(dir).unwrap_err().to_string();
        assert!(err.contains("recipe.yaml: its hash") && err.contains("was edited"), "{err}");
    }

    #[test]
    fn a_truncated_last_line_is_ignored() {
        let scratch = test_support::scratch("truncated");
        let dir = scratch.path();
        let path = dir.join(files::EVENTS);
        let full = line(2);
        fs::write(&path, format!("{}\n{}\n{}", line(0), line(1), &full[..full.len() / 2])).unwrap();
        let (seqs, summary) = read_seqs(&path).unwrap();
        assert_eq!(seqs, vec![0, 1]);
        assert_eq!(summary, EventsFileSummary { events: 2, truncated_tail: true });
        // A complete last line without its newline is still an event.
        fs::write(&path, format!("{}\n\n{}", line(0), line(1))).unwrap();
        let (seqs, summary) = read_seqs(&path).unwrap();
        assert_eq!(seqs, vec![0, 1]);
        assert!(!summary.truncated_tail);
    }

    #[test]
    fn a_malformed_line_in_the_middle_is_corruption_naming_file_and_line() {
        let scratch = test_support::scratch("corrupt-line");
        let dir = scratch.path();
        let path = dir.join(files::EVENTS);
        fs::write(&path, format!("{}\n{{\"run\":\"r\",\"seq\"\n{}\n", line(0), line(2))).unwrap();
        let err = read_seqs(&path).unwrap_err();
        assert!(matches!(err, FolderError::CorruptEventLine { line: 2, .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("events.jsonl:2: corrupt event line"), "{text}");
        // A malformed last line that ends with its newline was written whole: corruption too.
        fs::write(&path, format!("{}\nnot json\n", line(0))).unwrap();
        assert!(matches!(read_seqs(&path), Err(FolderError::CorruptEventLine { line: 2, .. })));
    }

    #[test]
    fn a_changed_digit_is_found_by_the_seal_not_read_as_another_number() {
        let scratch = test_support::scratch("changed-digit");
        let path = scratch.path().join(files::EVENTS);
        let changed = line(1).replace("\"loss\":0.5", "\"loss\":0.6");
        assert_ne!(changed, line(1));
        fs::write(&path, format!("{}\n{changed}\n{}\n", line(0), line(2))).unwrap();
        let text = read_seqs(&path).unwrap_err().to_string();
        assert!(
            text.contains("events.jsonl:2: corrupt event line") && text.contains("checksum mismatch"),
            "{text}"
        );
    }
}
