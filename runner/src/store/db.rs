//! The sled database of one experiment: metadata, run records and events.
//!
//! sled 0.34 lets one process open a database, buffers writes in memory and syncs them in the
//! background every 500 ms; [`Store::flush`] makes everything written so far durable. The
//! orchestrator flushes at checkpoints and run ends, never per event.

use std::path::{Path, PathBuf};

use protocol::Event;

use super::blocks::{self, Pending, BLOCK};
use super::error::{Result, StoreError};
use super::folder;
use super::{STORE_DIR, STORE_FORMAT};
use results::{ExperimentMeta, RunRecord};

const META_TREE: &str = "meta";
const RUNS_TREE: &str = "runs";
const EVENTS_TREE: &str = "events";
const FORMAT_KEY: &str = "format";
const EXPERIMENT_KEY: &str = "experiment";

/// Byte that separates the run id from the sequence number in event keys. Run ids never
/// contain it, so a run's events are exactly the keys with prefix `id ++ 0x00`.
const KEY_SEPARATOR: u8 = 0x00;

/// Prefix of sled's message when the database file is locked by another open handle
/// (sled 0.34.7, `Config::try_lock`: an `io::Error` of kind `Other` wrapping the `flock`
/// error `EWOULDBLOCK`). sled has no dedicated error variant, so the message is matched; the
/// version is pinned and a test guards the mapping.
const SLED_LOCK_MESSAGE: &str = "could not acquire lock on";

/// What [`Store::ingest`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// The event was new and is now stored.
    New,
    /// The same event was already stored; nothing changed.
    Duplicate,
}

/// sled's page cache when reading (reports, status): reports scan every event, so a large
/// cache helps. sled's default (1 GiB) is more than any of them needs.
const READ_CACHE_BYTES: u64 = 64 << 20;

/// sled's page cache of the orchestrator, which writes: mostly appends to the end of each
/// run's event range and rewrites of run records, which need little cache — and a small cache
/// keeps the orchestrator's memory flat however long the stream (sled keeps the pages it wrote
/// cached up to the limit: with 2 MiB the orchestrator grew 1.3–1.5× between tasks 100 and
/// 1,000 of a long stream, with 256 KiB 1.13×, at no measurable cost in speed).
const WRITE_CACHE_BYTES: u64 = 256 << 10;

/// One stored event's JSON bytes (see [`Store::event_bytes`]); dereferences to `[u8]`.
pub struct EventBytes {
    seq: u64,
    /// The event's block, shared by the block's events (no copy).
    block: sled::IVec,
    range: std::ops::Range<usize>,
}

impl EventBytes {
    /// The event's sequence number (from its key).
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl std::ops::Deref for EventBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.block[self.range.clone()]
    }
}

/// One experiment's store. Cheap to share by reference across tasks (sled is thread-safe).
pub struct Store {
    /// Store folder, or `None` for a temporary store.
    path: Option<PathBuf>,
    /// The results folder the store lives in, or `None` for a temporary store.
    results_dir: Option<PathBuf>,
    db: sled::Db,
    meta: sled::Tree,
    runs: sled::Tree,
    events: sled::Tree,
    /// Each run's last, partly filled block of events, written when full or on a flush or
    /// read ([`super::blocks`]).
    pending: std::sync::Mutex<std::collections::HashMap<String, Pending>>,
}

impl Drop for Store {
    /// The partly filled blocks go to sled with the store (a reader after a writer in one
    /// process sees every event; a crash loses them, and the next `clorch run` rebuilds them
    /// from the run folders).
    fn drop(&mut self) {
        let dirty = self.pending.lock().unwrap_or_else(|e| e.into_inner()).values().any(|p| p.dirty);
        if dirty && self.write_pending().is_ok() {
            let _ = self.db.flush();
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store of the experiment whose results folder is
    /// `results_dir`, at `<results_dir>/store/`.
    ///
    /// Fails with [`StoreError::Locked`] when another process has it open,
    /// [`StoreError::Corrupt`] when sled finds damaged data, [`StoreError::WrongFormat`] when
    /// it was written in another store format, and [`StoreError::Io`] otherwise.
    pub fn open(results_dir: &Path) -> Result<Store> {
        Store::open_with_cache(results_dir, READ_CACHE_BYTES)
    }

    /// Opens the store as [`Store::open`] does, with the small page cache suited to the
    /// orchestrator's writing (its memory then stays flat on long streams).
    pub fn open_for_writing(results_dir: &Path) -> Result<Store> {
        Store::open_with_cache(results_dir, WRITE_CACHE_BYTES)
    }

    /// Opens (creating if needed) a store at `store_dir` for the results folder `results_dir`:
    /// `clorch store rebuild` builds the new store beside the old one and swaps it in only
    /// once it is complete.
    pub fn open_at(store_dir: &Path, results_dir: &Path) -> Result<Store> {
        let db = sled::Config::new()
            .path(store_dir)
            .cache_capacity(READ_CACHE_BYTES)
            .open()
            .map_err(|e| open_error(store_dir, e))?;
        Store::init(db, Some(store_dir.to_path_buf()), Some(results_dir.to_path_buf()))
    }

    fn open_with_cache(results_dir: &Path, cache: u64) -> Result<Store> {
        let path = results_dir.join(STORE_DIR);
        let db =
            sled::Config::new().path(&path).cache_capacity(cache).open().map_err(|e| open_error(&path, e))?;
        Store::init(db, Some(path), Some(results_dir.to_path_buf()))
    }

    /// A store that lives in memory (backed by a temporary file that is deleted on drop), for
    /// a view rebuilt from the run folders while the real store is locked or damaged.
    pub fn temporary() -> Result<Store> {
        let db = sled::Config::new()
            .cache_capacity(READ_CACHE_BYTES)
            .temporary(true)
            .open()
            .map_err(|e| open_error(Path::new("<temporary>"), e))?;
        Store::init(db, None, None)
    }

    fn init(db: sled::Db, path: Option<PathBuf>, results_dir: Option<PathBuf>) -> Result<Store> {
        let shown = path.clone().unwrap_or_else(|| PathBuf::from("<temporary>"));
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(&shown, e));
        let store = Store {
            meta: tree(META_TREE)?,
            runs: tree(RUNS_TREE)?,
            events: tree(EVENTS_TREE)?,
            pending: Default::default(),
            db,
            path,
            results_dir,
        };
        store.check_format()?;
        Ok(store)
    }

    /// Checks the format version of an existing store, or writes it into a new one.
    fn check_format(&self) -> Result<()> {
        match self.meta.get(FORMAT_KEY).map_err(|e| self.error(e))? {
            Some(bytes) => {
                let found: u32 = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    path: self.shown_path(),
                    detail: format!("the format version record does not decode: {e}"),
                })?;
                if found != STORE_FORMAT {
                    return Err(StoreError::WrongFormat {
                        path: self.shown_path(),
                        found,
                        expected: STORE_FORMAT,
                    });
                }
                Ok(())
            }
            None => {
                let has_data = !self.runs.is_empty() || !self.events.is_empty();
                if has_data || self.meta.get(EXPERIMENT_KEY).map_err(|e| self.error(e))?.is_some() {
                    return Err(StoreError::Corrupt {
                        path: self.shown_path(),
                        detail: "it holds records but no format version".into(),
                    });
                }
                self.write_format(STORE_FORMAT)?;
                self.flush()
            }
        }
    }

    fn write_format(&self, format: u32) -> Result<()> {
        let bytes = serde_json::to_vec(&format).expect("a u32 serialises");
        self.meta.insert(FORMAT_KEY, bytes).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The store folder (`<results dir>/store`), or `None` for a temporary store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The experiment's results folder, or `None` for a temporary store.
    pub fn results_dir(&self) -> Option<&Path> {
        self.results_dir.as_deref()
    }

    fn shown_path(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| PathBuf::from("<temporary>"))
    }

    fn error(&self, e: sled::Error) -> StoreError {
        engine_error(&self.shown_path(), e)
    }

    /// Makes every write so far durable. Call at checkpoints and run ends, not per event.
    pub fn flush(&self) -> Result<()> {
        self.write_pending()?;
        self.db.flush().map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Writes every run's partly filled block that changed since it was last written.
    fn write_pending(&self) -> Result<()> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (run, block) in pending.iter_mut() {
            self.write_block(run, block)?;
            block.dirty = false;
        }
        Ok(())
    }

    fn write_block(&self, run: &str, block: &Pending) -> Result<()> {
        if !block.dirty {
            return Ok(());
        }
        let key = event_key(run, block.block);
        match block.value() {
            Some(value) => self.events.insert(key, value).map(drop),
            None => self.events.remove(key).map(drop),
        }
        .map_err(|e| self.error(e))
    }

    fn load_block(&self, run: &str, block: u64) -> Result<Pending> {
        match self.events.get(event_key(run, block)).map_err(|e| self.error(e))? {
            None => Ok(Pending::new(block)),
            Some(value) => Pending::from_value(block, &value).map_err(|detail| StoreError::Corrupt {
                path: self.shown_path(),
                detail: format!("event block {run}#{block}: {detail}"),
            }),
        }
    }

    /// Puts `event` into its run's block; with `replace`, over whatever is stored under its
    /// sequence number, else only where nothing is (the same event again is a duplicate, a
    /// different one a conflict).
    fn stage(&self, event: &Event, replace: bool) -> Result<Ingested> {
        check_run_id(&event.run)?;
        let value = serde_json::to_vec(event).expect("events serialise");
        let (block, offset) = (event.seq / BLOCK, (event.seq % BLOCK) as usize);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.get(&event.run).is_none_or(|p| p.block != block) {
            if let Some(old) = pending.remove(&event.run) {
                self.write_block(&event.run, &old)?;
            }
            let loaded = self.load_block(&event.run, block)?;
            pending.insert(event.run.clone(), loaded);
        }
        let current = pending.get_mut(&event.run).expect("the run's block was just put in");
        let outcome = match &current.entries[offset] {
            Some(stored) if !replace && *stored == value => return Ok(Ingested::Duplicate),
            Some(_) if !replace => {
                return Err(StoreError::EventConflict { run: event.run.clone(), seq: event.seq })
            }
            _ => Ingested::New,
        };
        current.entries[offset] = Some(value);
        current.dirty = true;
        if current.is_full() {
            let full = pending.remove(&event.run).expect("present");
            self.write_block(&event.run, &full)?;
        }
        Ok(outcome)
    }

    /// The experiment's metadata, if it has been written.
    pub fn experiment(&self) -> Result<Option<ExperimentMeta>> {
        match self.meta.get(EXPERIMENT_KEY).map_err(|e| self.error(e))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Decode { what: "experiment metadata".into(), source }),
        }
    }

    /// Writes the experiment's metadata, replacing what was there.
    pub fn put_experiment(&self, meta: &ExperimentMeta) -> Result<()> {
        let bytes = serde_json::to_vec(meta).expect("experiment metadata serialises");
        self.meta.insert(EXPERIMENT_KEY, bytes).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Every run record, in the recipe's expansion order (`order`, then id).
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        let mut runs = Vec::with_capacity(self.runs.len());
        for item in self.runs.iter() {
            let (key, value) = item.map_err(|e| self.error(e))?;
            runs.push(decode_run(&key, &value)?);
        }
        runs.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.id.cmp(&b.id)));
        Ok(runs)
    }

    /// The record of run `id`, if stored.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        match self.runs.get(id.as_bytes()).map_err(|e| self.error(e))? {
            None => Ok(None),
            Some(value) => decode_run(id.as_bytes(), &value).map(Some),
        }
    }

    /// Inserts or replaces a run record (in the store only; see [`Store::save_run`]).
    pub fn upsert_run(&self, record: &RunRecord) -> Result<()> {
        check_run_id(&record.id)?;
        let bytes = serde_json::to_vec(record).expect("run records serialise");
        self.runs.insert(record.id.as_bytes(), bytes).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Inserts or replaces a run record and, for a store on disk, writes it atomically to
    /// `<results dir>/runs/<id>/run.json` too, so the run folders stay the source of truth a
    /// rebuild starts from (and what `clorch status` reads while the store is locked).
    pub fn save_run(&self, record: &RunRecord) -> Result<()> {
        self.upsert_run(record)?;
        if let Some(results_dir) = &self.results_dir {
            folder::write_run_record(&folder::run_dir(results_dir, &record.id), record)?;
        }
        Ok(())
    }

    /// Stores a run record like [`Store::save_run`], but writes its `run.json` without
    /// syncing: for transient states (a run launched) that a power cut may lose at no cost,
    /// since the run folder's events say where the run is.
    pub fn note_run(&self, record: &RunRecord) -> Result<()> {
        self.upsert_run(record)?;
        if let Some(results_dir) = &self.results_dir {
            folder::note_run_record(&folder::run_dir(results_dir, &record.id), record)?;
        }
        Ok(())
    }

    /// Stores one event under `(run, seq)`. Storing the same event again changes nothing and
    /// returns [`Ingested::Duplicate`]; a different event under a stored `(run, seq)` is
    /// refused with [`StoreError::EventConflict`]. Nothing is flushed.
    pub fn ingest(&self, event: &Event) -> Result<Ingested> {
        self.stage(event, false)
    }

    /// Stores one event under `(run, seq)`, replacing whatever was there. For the rebuild,
    /// which follows the events files (where a resumed worker's events win).
    pub(crate) fn put_event(&self, event: &Event) -> Result<()> {
        self.stage(event, true).map(drop)
    }

    /// Scans the blocks of `run` (after writing the pending ones), each with its number.
    fn blocks<'a>(&'a self, run: &str) -> impl Iterator<Item = Result<(u64, sled::IVec)>> + 'a {
        let first = check_run_id(run).and_then(|()| self.write_pending()).err();
        let scan = first.is_none().then(|| self.events.scan_prefix(run_prefix(run)));
        let path = self.shown_path();
        first.map(Err).into_iter().chain(scan.into_iter().flatten().map(move |item| {
            let (key, value) = item.map_err(|e| engine_error(&path, e))?;
            Ok((key_seq(&key), value))
        }))
    }

    /// A run's stored events as `(seq, block, range of the event in the block)`.
    fn stored<'a>(
        &'a self,
        run: &str,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec, std::ops::Range<usize>)>> + 'a {
        let path = self.shown_path();
        let run_shown = run.to_string();
        self.blocks(run).flat_map(move |block| {
            let (path, run_shown) = (path.clone(), run_shown.clone());
            let items: Vec<Result<(u64, sled::IVec, std::ops::Range<usize>)>> = match block {
                Err(e) => vec![Err(e)],
                Ok((number, value)) => blocks::entries(&value)
                    .map(|entry| {
                        let (offset, range) = entry.map_err(|detail| StoreError::Corrupt {
                            path: path.clone(),
                            detail: format!("event block {run_shown}#{number}: {detail}"),
                        })?;
                        Ok((number * BLOCK + u64::from(offset), value.clone(), range))
                    })
                    .collect(),
            };
            items
        })
    }

    /// The events of run `run` in sequence order, decoded one at a time.
    pub fn events<'a>(&'a self, run: &str) -> impl Iterator<Item = Result<Event>> + 'a {
        let shown = run.to_string();
        self.stored(run).map(move |item| {
            let (seq, block, range) = item?;
            serde_json::from_slice(&block[range])
                .map_err(|source| StoreError::Decode { what: format!("event {shown}#{seq}"), source })
        })
    }

    /// The events of run `run` in sequence order as their stored JSON bytes, undecoded (no
    /// copy), for readers that decode only the fields they need (a report over 10^6 events
    /// spends about 1 s of CPU this way against 1.5 s just to decode them through
    /// [`Store::events`]; `benches/report.rs`). The bytes are exactly what [`Store::events`]
    /// decodes into [`Event`]s.
    pub fn event_bytes<'a>(&'a self, run: &str) -> impl Iterator<Item = Result<EventBytes>> + 'a {
        self.stored(run).map(|item| item.map(|(seq, block, range)| EventBytes { seq, block, range }))
    }

    /// The highest sequence number stored for `run`, if any.
    pub fn last_event_seq(&self, run: &str) -> Result<Option<u64>> {
        check_run_id(run)?;
        self.write_pending()?;
        match self.events.scan_prefix(run_prefix(run)).next_back() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item.map_err(|e| self.error(e))?;
                let number = key_seq(&key);
                let last =
                    blocks::entries(&value).last().transpose().map_err(|detail| StoreError::Corrupt {
                        path: self.shown_path(),
                        detail: format!("event block {run}#{number}: {detail}"),
                    })?;
                Ok(last.map(|(offset, _)| number * BLOCK + u64::from(offset)))
            }
        }
    }

    /// Removes the events of `run` with a sequence number above `seq` and returns how many
    /// there were. Called before resuming a run from the checkpoint event `seq`: the resumed
    /// worker re-emits the events after it.
    pub fn truncate_events_after(&self, run: &str, seq: u64) -> Result<usize> {
        check_run_id(run)?;
        match seq.checked_add(1) {
            Some(first) => self.remove_events_from(run, first),
            None => Ok(0),
        }
    }

    /// Removes the events of `run` with a sequence number of `first` or more.
    pub fn remove_events_from(&self, run: &str, first: u64) -> Result<usize> {
        check_run_id(run)?;
        self.write_pending()?;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(run);
        let (first_block, keep) = (first / BLOCK, (first % BLOCK) as usize);
        let start = event_key(run, first_block);
        let end = event_key(run, u64::MAX);
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for item in self.events.range(start..=end) {
            let (key, value) = item.map_err(|e| self.error(e))?;
            let number = key_seq(&key);
            let mut block = Pending::from_value(number, &value).map_err(|detail| StoreError::Corrupt {
                path: self.shown_path(),
                detail: format!("event block {run}#{number}: {detail}"),
            })?;
            let from = if number == first_block { keep } else { 0 };
            removed += block.entries[from..].iter().filter(|e| e.is_some()).count();
            block.entries[from..].iter_mut().for_each(|e| *e = None);
            match block.value() {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        self.events.apply_batch(batch).map_err(|e| self.error(e))?;
        Ok(removed)
    }

    /// Removes every run, event and the experiment metadata (the format version stays), so a
    /// rebuild starts from nothing.
    pub(crate) fn clear(&self) -> Result<()> {
        self.runs.clear().map_err(|e| self.error(e))?;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.events.clear().map_err(|e| self.error(e))?;
        self.meta.remove(EXPERIMENT_KEY).map_err(|e| self.error(e))?;
        Ok(())
    }
}

fn check_run_id(id: &str) -> Result<()> {
    if id.is_empty() || id.as_bytes().contains(&KEY_SEPARATOR) {
        return Err(StoreError::InvalidRunId { id: id.to_string() });
    }
    Ok(())
}

fn run_prefix(run: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(run.len() + 1);
    key.extend_from_slice(run.as_bytes());
    key.push(KEY_SEPARATOR);
    key
}

/// `run id ++ 0x00 ++ seq (u64 big-endian)`: big-endian makes byte order equal numeric order,
/// so a run's events are one ordered range.
fn event_key(run: &str, seq: u64) -> Vec<u8> {
    let mut key = run_prefix(run);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn key_seq(key: &[u8]) -> u64 {
    let mut seq = [0u8; 8];
    if key.len() >= 8 {
        seq.copy_from_slice(&key[key.len() - 8..]);
    }
    u64::from_be_bytes(seq)
}

fn decode_run(key: &[u8], value: &[u8]) -> Result<RunRecord> {
    serde_json::from_slice(value).map_err(|source| StoreError::Decode {
        what: format!("record of run {}", String::from_utf8_lossy(key)),
        source,
    })
}

/// Maps sled's errors at open time onto the store's error kinds (see [`SLED_LOCK_MESSAGE`]).
fn open_error(path: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::Other && io.to_string().starts_with(SLED_LOCK_MESSAGE) =>
        {
            StoreError::Locked { path: path.to_path_buf(), detail: io.to_string() }
        }
        other => engine_error(path, other),
    }
}

/// Maps sled's errors after open onto the store's error kinds.
fn engine_error(path: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(source) => StoreError::Io { path: path.to_path_buf(), source },
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: match at {
                Some(at) => format!("sled found damaged data at {at}"),
                None => "sled found damaged data".into(),
            },
        },
        other => StoreError::Engine { path: path.to_path_buf(), detail: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::EventBody;
    use results::fixtures::record;
    use results::{Failure, RunStatus};

    fn eval(run: &str, seq: u64, after: Option<usize>, on: usize, acc: f64) -> Event {
        Event {
            run: run.into(),
            seq,
            body: EventBody::Eval {
                after_task: after,
                on_task: on,
                examples: 50,
                loss: 1.0 - acc,
                accuracy: Some(acc),
                variant: None,
            },
        }
    }

    #[test]
    fn runs_round_trip_in_expansion_order() {
        let store = Store::temporary().unwrap();
        let late = record(5, 2, "sgd", 0.1, 1);
        let mut early = record(1, 2, "cbp", 0.1, 1);
        early.status = RunStatus::Failed { failure: Failure::Crashed { exit_code: 101 } };
        store.upsert_run(&late).unwrap();
        store.upsert_run(&early).unwrap();
        let runs = store.runs().unwrap();
        assert_eq!(runs, vec![early.clone(), late.clone()]);
        assert_eq!(store.run(&early.id).unwrap(), Some(early));
        assert_eq!(store.run("nope").unwrap(), None);
    }

    #[test]
    fn experiment_metadata_round_trips() {
        let store = Store::temporary().unwrap();
        assert_eq!(store.experiment().unwrap(), None);
        let meta = ExperimentMeta::new("quick", "name: quick\n", 3);
        store.put_experiment(&meta).unwrap();
        assert_eq!(store.experiment().unwrap(), Some(meta));
    }

    #[test]
    fn ingesting_twice_changes_nothing_and_conflicts_are_refused() {
        let store = Store::temporary().unwrap();
        let e = eval("r1", 0, Some(0), 0, 0.9);
        assert_eq!(store.ingest(&e).unwrap(), Ingested::New);
        assert_eq!(store.ingest(&e).unwrap(), Ingested::Duplicate);
        let events: Vec<Event> = store.events("r1").map(Result::unwrap).collect();
        assert_eq!(events, vec![e]);
        let err = store.ingest(&eval("r1", 0, Some(0), 0, 0.8)).unwrap_err();
        assert!(matches!(err, StoreError::EventConflict { ref run, seq: 0 } if run == "r1"));
        assert!(err.to_string().contains("event 0 of run r1 differs"), "{err}");
    }

    #[test]
    fn a_runs_events_are_one_ordered_range() {
        let store = Store::temporary().unwrap();
        // Sequence numbers across a byte boundary and a run whose id extends another's.
        for seq in [300, 2, 256, 0, 1] {
            store.ingest(&eval("r1", seq, Some(0), 0, 0.5)).unwrap();
        }
        store.ingest(&eval("r10", 0, Some(0), 0, 0.5)).unwrap();
        let seqs: Vec<u64> = store.events("r1").map(|e| e.unwrap().seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 256, 300]);
        assert_eq!(store.last_event_seq("r1").unwrap(), Some(300));
        assert_eq!(store.last_event_seq("r10").unwrap(), Some(0));
        assert_eq!(store.last_event_seq("r2").unwrap(), None);
    }

    #[test]
    fn truncation_drops_only_later_events_of_that_run() {
        let store = Store::temporary().unwrap();
        for seq in 0..6 {
            store.ingest(&eval("a", seq, Some(0), 0, 0.5)).unwrap();
            store.ingest(&eval("b", seq, Some(0), 0, 0.5)).unwrap();
        }
        assert_eq!(store.truncate_events_after("a", 2).unwrap(), 3);
        assert_eq!(store.truncate_events_after("a", u64::MAX).unwrap(), 0);
        let a: Vec<u64> = store.events("a").map(|e| e.unwrap().seq).collect();
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(store.events("b").count(), 6);
        // After truncation a resumed worker's (different) event is accepted.
        assert_eq!(store.ingest(&eval("a", 3, Some(1), 0, 0.1)).unwrap(), Ingested::New);
    }

    /// Events live in blocks of 64: duplicates and conflicts are found in written blocks as in
    /// the one being filled, truncation cuts a block in the middle, and a dropped store's
    /// partly filled blocks are there when it is opened again.
    #[test]
    fn blocks_keep_every_rule_across_their_boundaries() {
        let scratch = test_support::scratch("blocks");
        let dir = scratch.path();
        {
            let store = Store::open(dir).unwrap();
            for seq in 0..150 {
                assert_eq!(store.ingest(&eval("r", seq, Some(0), 0, 0.5)).unwrap(), Ingested::New);
            }
            // Seq 10 is in a written (full) block, 140 in the one being filled.
            assert_eq!(store.ingest(&eval("r", 10, Some(0), 0, 0.5)).unwrap(), Ingested::Duplicate);
            assert!(store.ingest(&eval("r", 10, Some(0), 0, 0.6)).is_err());
            assert!(store.ingest(&eval("r", 140, Some(0), 0, 0.6)).is_err());
            assert_eq!(store.last_event_seq("r").unwrap(), Some(149));
            assert_eq!(store.remove_events_from("r", 100).unwrap(), 50);
            assert_eq!(store.last_event_seq("r").unwrap(), Some(99));
            // The block cut at 100 takes new events after it, and a replaced one.
            for seq in 100..130 {
                store.ingest(&eval("r", seq, Some(1), 0, 0.25)).unwrap();
            }
            store.put_event(&eval("r", 5, Some(0), 0, 0.75)).unwrap();
        }
        let store = Store::open(dir).unwrap();
        let events: Vec<Event> = store.events("r").map(Result::unwrap).collect();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..130).collect::<Vec<_>>());
        assert_eq!(events[5], eval("r", 5, Some(0), 0, 0.75));
        assert_eq!(events[120], eval("r", 120, Some(1), 0, 0.25));
        let bytes: Vec<u64> = store.event_bytes("r").map(|b| b.unwrap().seq()).collect();
        assert_eq!(bytes.len(), 130);
        let decoded: Event =
            serde_json::from_slice(&store.event_bytes("r").nth(64).unwrap().unwrap()).unwrap();
        assert_eq!(decoded, events[64]);
    }

    #[test]
    fn invalid_run_ids_are_refused() {
        let store = Store::temporary().unwrap();
        for id in ["", "a\0b"] {
            let err = store.ingest(&eval(id, 0, None, 0, 0.1)).unwrap_err();
            assert!(matches!(err, StoreError::InvalidRunId { .. }), "{err}");
            let first = store.events(id).next().unwrap();
            assert!(matches!(first, Err(StoreError::InvalidRunId { .. })));
        }
    }

    #[test]
    fn reopening_keeps_records_and_events() {
        let scratch = test_support::scratch("reopen");
        let dir = scratch.path();
        let r = record(0, 2, "sgd", 0.1, 1);
        {
            let store = Store::open(dir).unwrap();
            assert_eq!(store.path(), Some(dir.join("store").as_path()));
            store.save_run(&r).unwrap();
            store.ingest(&eval(&r.id, 0, None, 0, 0.1)).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir).unwrap();
        assert_eq!(store.run(&r.id).unwrap(), Some(r.clone()));
        assert_eq!(store.events(&r.id).count(), 1);
        // save_run also wrote the run folder's run.json.
        let on_disk = folder::read_run_record(&folder::run_dir(dir, &r.id)).unwrap();
        assert_eq!(on_disk, r);
        drop(store);
    }

    #[test]
    fn another_format_version_is_refused_on_open() {
        let scratch = test_support::scratch("format");
        let dir = scratch.path();
        {
            let store = Store::open(dir).unwrap();
            store.write_format(STORE_FORMAT + 98).unwrap();
            store.flush().unwrap();
        }
        let err = Store::open(dir).unwrap_err();
        assert!(
            matches!(err, StoreError::WrongFormat { found, expected, .. }
                if found == STORE_FORMAT + 98 && expected == STORE_FORMAT),
            "{err:?}"
        );
        assert!(err.to_string().contains(&format!("has format version {}", STORE_FORMAT + 98)), "{err}");
    }

    #[test]
    fn a_second_open_in_the_same_process_is_locked() {
        let scratch = test_support::scratch("lock-same");
        let dir = scratch.path();
        let first = Store::open(dir).unwrap();
        let err = Store::open(dir).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains("in use by another process"), "{err}");
        drop(first);
        // Once the holder is gone the store opens again.
        Store::open(dir).unwrap();
    }

    const LOCK_CHILD_ENV: &str = "CLORCH_TEST_HOLD_STORE";
    const LOCK_CHILD_READY: &str = "clorch-test-store-held";

    /// Helper process for `another_process_holding_the_store_is_reported_as_locked`: opens the
    /// store named by the environment, says so, and holds it until its stdin closes.
    #[test]
    #[ignore = "helper process, started by another test"]
    fn hold_store_in_child_process() {
        let Some(dir) = std::env::var_os(LOCK_CHILD_ENV) else {
            return;
        };
        let _store = Store::open(Path::new(&dir)).unwrap();
        println!("{LOCK_CHILD_READY}");
        let mut sink = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut sink);
    }

    #[test]
    fn another_process_holding_the_store_is_reported_as_locked() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let scratch = test_support::scratch("lock-child");
        let dir = scratch.path();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::db::tests::hold_store_in_child_process"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(LOCK_CHILD_ENV, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.by_ref().any(|line| line.unwrap().contains(LOCK_CHILD_READY));
        assert!(ready, "the child process never opened the store");
        let err = Store::open(dir).unwrap_err();
        drop(child.stdin.take());
        // Drain the child's remaining output so it can exit cleanly.
        lines.for_each(drop);
        assert!(child.wait().unwrap().success());
        match err {
            StoreError::Locked { detail, .. } => {
                assert!(detail.contains("could not acquire lock"), "{detail}");
                assert!(detail.contains("WouldBlock"), "{detail}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        Store::open(dir).unwrap();
    }

    #[test]
    fn a_damaged_sled_config_is_reported_as_corrupt() {
        let scratch = test_support::scratch("corrupt");
        let dir = scratch.path();
        {
            let store = Store::open(dir).unwrap();
            store.upsert_run(&record(0, 2, "sgd", 0.1, 1)).unwrap();
            store.flush().unwrap();
        }
        // sled's `conf` file holds `key: value` lines; a line without the separator is
        // corruption to sled 0.34.7.
        std::fs::write(dir.join("store/conf"), "this is not a sled config file\n").unwrap();
        let err = Store::open(dir).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("rebuild it from the run folders"), "{err}");
    }
}
