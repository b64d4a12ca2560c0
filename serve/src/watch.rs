//! Following a results folder while `clorch run` writes it, from its files alone.
//!
//! The dashboard must not take the experiment's lock (the run holds it) nor slow the run, so
//! it never opens the sled store: it reads what the orchestrator and the workers write anyway —
//! `experiment.json` and `recipe.yaml`, each run's `run.json` (written atomically at every
//! change of state) and `events.jsonl` (appended, every line sealed). Each refresh costs two
//! `stat`s per run and reads only the bytes appended since the last one, so watching a
//! running experiment stays cheap however long it has run.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use protocol::{files, line, Event};
use results::{ExperimentMeta, RunRecord};

use crate::series::RunSeries;

/// When a file last changed, as far as a poll can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        // symlink_metadata: a link planted in a results folder is not followed.
        let meta = fs::symlink_metadata(path).ok()?;
        meta.is_file().then(|| Stamp { len: meta.len(), modified: meta.modified().ok() })
    }
}

/// One run as the dashboard knows it.
#[derive(Debug)]
pub struct WatchedRun {
    /// Its folder.
    pub dir: PathBuf,
    /// The orchestrator's record, its progress brought up to date by the events read since.
    pub record: RunRecord,
    record_stamp: Option<Stamp>,
    /// Each event's JSON without its seal, in sequence order (what a report reads).
    pub events: Vec<Vec<u8>>,
    /// Bytes of `events.jsonl` read so far (whole lines only).
    events_read: u64,
    /// The curves the dashboard draws, kept up to date event by event.
    pub series: RunSeries,
    /// Why the events stopped being read (a damaged line); shown, not hidden.
    pub problem: Option<String>,
    /// The state of `events.jsonl` when reading it stopped at a problem: it is not read again
    /// until it changes.
    stuck_at: Option<Stamp>,
}

/// One results folder and everything read from it.
#[derive(Debug)]
pub struct Watched {
    /// The results folder.
    pub dir: PathBuf,
    /// The experiment's metadata, once `experiment.json` exists and reads.
    pub meta: Option<ExperimentMeta>,
    meta_stamp: Option<Stamp>,
    /// Why the metadata could not be read, if it could not.
    pub meta_problem: Option<String>,
    /// Runs by id.
    pub runs: BTreeMap<String, WatchedRun>,
    /// Bumped whenever anything above changes; clients poll with the last one they saw.
    pub version: u64,
    /// Bumped when the metadata or a run's record changes (a run starts, finishes, fails),
    /// not for events alone: what the comparison table is rebuilt on.
    pub records_version: u64,
}

/// At most this many bytes of `events.jsonl` are read per run per refresh, so that a first
/// look at a huge experiment answers its first requests between reads.
pub const READ_CHUNK: u64 = 8 << 20;

impl Watched {
    /// A folder not read yet: call [`Watched::refresh_records`], then [`Watched::refresh_events`].
    pub fn new(dir: PathBuf) -> Watched {
        Watched {
            dir,
            meta: None,
            meta_stamp: None,
            meta_problem: None,
            runs: BTreeMap::new(),
            version: 0,
            records_version: 0,
        }
    }

    /// The folder's name, how the dashboard labels the experiment until its metadata is read.
    pub fn label(&self) -> String {
        match &self.meta {
            Some(meta) => meta.name.clone(),
            None => self
                .dir
                .file_name()
                .map_or_else(|| self.dir.display().to_string(), |n| n.to_string_lossy().into_owned()),
        }
    }

    /// Runs of the recipe's latest expansion, in its order (all runs when the metadata does
    /// not list them) — the runs `clorch report` shows.
    pub fn current_runs(&self) -> Vec<&WatchedRun> {
        let mut runs: Vec<&WatchedRun> = match &self.meta {
            Some(meta) if !meta.runs.is_empty() => {
                meta.runs.iter().filter_map(|id| self.runs.get(id)).collect()
            }
            _ => self.runs.values().collect(),
        };
        runs.sort_by(|a, b| (a.record.order, &a.record.id).cmp(&(b.record.order, &b.record.id)));
        runs
    }

    /// Reads the experiment's metadata and every run's `run.json` that changed, and finds new
    /// run folders — a few small files, so the first page can be served at once while the
    /// events are read afterwards ([`Watched::refresh_events`]). Never fails: what cannot be
    /// read is reported in `meta_problem` or a run's `problem` and read again next time.
    pub fn refresh_records(&mut self) -> bool {
        let mut changed = self.refresh_meta();
        let runs_dir = self.dir.join("runs");
        if let Ok(entries) = fs::read_dir(&runs_dir) {
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else { continue };
                let id = entry.file_name().to_string_lossy().into_owned();
                if !kind.is_dir() || !is_run_id(&id) {
                    continue; // symlinks and stray files are not runs
                }
                match self.runs.get_mut(&id) {
                    Some(run) => changed |= run.refresh_record(),
                    None => {
                        if let Some(run) = WatchedRun::open(entry.path()) {
                            self.runs.insert(id, run);
                            changed = true;
                        }
                    }
                }
            }
        }
        if changed {
            self.records_version += 1;
        }
        self.bump(changed)
    }

    /// Reads the events appended to run `id`'s log since the last time (at most
    /// [`READ_CHUNK`] bytes). Returns whether there were any.
    pub fn refresh_events(&mut self, id: &str) -> bool {
        let changed = self.runs.get_mut(id).is_some_and(WatchedRun::read_events);
        self.bump(changed)
    }

    fn bump(&mut self, changed: bool) -> bool {
        if changed {
            self.version += 1;
        }
        changed
    }

    fn refresh_meta(&mut self) -> bool {
        let stamps = [results::folder::EXPERIMENT_FILE, results::folder::RECIPE_FILE]
            .map(|name| Stamp::of(&self.dir.join(name)));
        let stamp = match stamps {
            [Some(a), Some(b)] => Some(Stamp { len: a.len + b.len, modified: a.modified.max(b.modified) }),
            _ => None,
        };
        if stamp == self.meta_stamp && (self.meta.is_some() || self.meta_problem.is_some()) {
            return false;
        }
        self.meta_stamp = stamp;
        if stamp.is_none() {
            let was = self.meta.take().is_some() || self.meta_problem.take().is_some();
            return was;
        }
        match results::read_experiment_files(&self.dir) {
            Ok(meta) => {
                self.meta = Some(meta);
                self.meta_problem = None;
            }
            Err(e) => self.meta_problem = Some(e.to_string()),
        }
        true
    }
}

/// Run ids are 12 lowercase hex digits ([`protocol::RunSpec::id`]).
pub fn is_run_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl WatchedRun {
    /// A run folder with a readable `run.json`; `None` until the orchestrator has written one.
    fn open(dir: PathBuf) -> Option<WatchedRun> {
        let stamp = Stamp::of(&dir.join(files::RUN_RECORD))?;
        let record = results::read_run_record(&dir).ok()?;
        let series = RunSeries::new(&record);
        Some(WatchedRun {
            dir,
            record,
            record_stamp: Some(stamp),
            events: Vec::new(),
            events_read: 0,
            series,
            problem: None,
            stuck_at: None,
        })
    }

    /// Re-reads `run.json` if it changed.
    fn refresh_record(&mut self) -> bool {
        let stamp = Stamp::of(&self.dir.join(files::RUN_RECORD));
        if stamp.is_none() || stamp == self.record_stamp {
            return false;
        }
        let Ok(mut record) = results::read_run_record(&self.dir) else { return false };
        // The record may lag the events read: replay those it has not seen.
        let seen = record.progress.last_seq;
        for bytes in self.events.iter().skip(seen.map_or(0, |s| s as usize + 1)) {
            if let Ok(event) = serde_json::from_slice::<Event>(bytes) {
                record.observe(&event, Some(results::unix_now()));
            }
        }
        self.record = record;
        self.record_stamp = stamp;
        true
    }

    /// Reads the whole lines appended to `events.jsonl`. A file shorter than what was read
    /// (a resumed worker cut it back to its checkpoint) or a line that is not the next event
    /// starts the run's events over from the beginning of the file.
    fn read_events(&mut self) -> bool {
        let path = self.dir.join(files::EVENTS);
        let Some(stamp) = Stamp::of(&path) else {
            if self.events_read > 0 {
                self.restart();
                return true;
            }
            return false;
        };
        if Some(stamp) == self.stuck_at {
            return false;
        }
        if stamp.len < self.events_read || self.stuck_at.take().is_some() {
            // Cut back by a resumed worker, or changed after a problem: read it afresh.
            self.restart();
        }
        if stamp.len == self.events_read {
            return false;
        }
        let Ok(mut file) = fs::File::open(&path) else { return false };
        let want = (stamp.len - self.events_read).min(READ_CHUNK);
        let mut bytes = Vec::with_capacity(want as usize);
        if file.seek(SeekFrom::Start(self.events_read)).is_err()
            || file.take(want).read_to_end(&mut bytes).is_err()
        {
            return false;
        }
        let mut changed = false;
        let mut start = 0;
        while let Some(end) = bytes[start..].iter().position(|&b| b == b'\n').map(|i| start + i + 1) {
            let raw = &bytes[start..end];
            start = end;
            let expected = self.events.len() as u64;
            let parsed = line::verify(raw).map_err(|e| e.to_string()).and_then(|json| {
                let event: Event = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
                if event.run != self.record.id || event.seq != expected {
                    return Err(format!(
                        "event {} of run {} where event {expected} belongs",
                        event.seq, event.run
                    ));
                }
                Ok((json, event))
            });
            match parsed {
                Ok((json, event)) => {
                    if self.record.progress.last_seq.is_none_or(|s| event.seq > s) {
                        self.record.observe(&event, Some(results::unix_now()));
                    }
                    self.series.observe(&event);
                    self.events.push(json);
                    self.events_read += raw.len() as u64;
                    self.problem = None;
                    changed = true;
                }
                Err(reason) => {
                    self.problem = Some(format!("{} line {}: {reason}", files::EVENTS, expected + 1));
                    self.stuck_at = Some(stamp);
                    return true;
                }
            }
        }
        changed
    }

    fn restart(&mut self) {
        self.events.clear();
        self.events_read = 0;
        self.series = RunSeries::new(&self.record);
        if let Ok(record) = results::read_run_record(&self.dir) {
            self.record = record;
        }
    }
}
