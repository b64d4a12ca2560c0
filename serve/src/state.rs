//! The served experiments and who may touch them: one refresher thread writes, requests read.

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::watch::Watched;

/// What every request handler shares.
pub struct Shared {
    experiments: Vec<RwLock<Watched>>,
    /// Required on every request when set.
    pub token: Option<String>,
    /// The comparison table of each experiment as JSON, with the version it was built at: a
    /// report is the one expensive answer, so it is built at most once per change.
    tables: Mutex<Vec<Option<BuiltTable>>>,
}

/// How stale the comparison table may get while runs only write events (longer when it is
/// expensive to build).
pub const TABLE_REFRESH: Duration = Duration::from_secs(30);

/// A comparison table as JSON and what it was built from.
struct BuiltTable {
    version: u64,
    records_version: u64,
    at: Instant,
    took: Duration,
    json: Arc<Vec<u8>>,
}

impl Shared {
    /// Shares `experiments` (read once already, so the first page has data).
    pub fn new(experiments: Vec<Watched>, token: Option<String>) -> Shared {
        let n = experiments.len();
        Shared {
            experiments: experiments.into_iter().map(RwLock::new).collect(),
            token,
            tables: Mutex::new((0..n).map(|_| None).collect()),
        }
    }

    /// Experiments served.
    pub fn len(&self) -> usize {
        self.experiments.len()
    }

    /// Whether none are (never, once serving).
    pub fn is_empty(&self) -> bool {
        self.experiments.is_empty()
    }

    fn lock(&self, i: usize) -> RwLockReadGuard<'_, Watched> {
        // A refresher that panicked left a usable value: reading stays possible.
        self.experiments[i].read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on experiment `i`.
    pub fn read<T>(&self, i: usize, f: impl FnOnce(&Watched) -> T) -> T {
        f(&self.lock(i))
    }

    /// Runs `f` on every experiment at once.
    pub fn read_all<T>(&self, f: impl FnOnce(&[&Watched]) -> T) -> T {
        let guards: Vec<RwLockReadGuard<'_, Watched>> = (0..self.len()).map(|i| self.lock(i)).collect();
        let all: Vec<&Watched> = guards.iter().map(|g| &**g).collect();
        f(&all)
    }

    /// Reads every experiment's changes, forever, every `every`. Runs on its own thread: the
    /// reads are plain file I/O and must not stall request handling.
    ///
    /// The write lock is taken per run, not for a whole pass: a first pass over a big
    /// experiment reads hundreds of megabytes, and requests are answered between runs (with
    /// the runs read so far) instead of after it.
    pub fn refresh_forever(self: Arc<Self>, every: Duration) {
        loop {
            for cell in &self.experiments {
                let write = || cell.write().unwrap_or_else(|p| p.into_inner());
                let ids: Vec<String> = {
                    let mut w = write();
                    w.refresh_records();
                    w.runs.keys().cloned().collect()
                };
                for id in ids {
                    // A pass reads at most a chunk per run; a run with more waits a pass.
                    write().refresh_events(&id);
                }
            }
            std::thread::sleep(every);
        }
    }

    /// Experiment `i`'s comparison table as JSON, built by `clorch report`'s code. A report
    /// reads every event, so it is rebuilt when a run's record changes (a run starts,
    /// finishes or fails) and, while runs only write events, at most every
    /// `TABLE_REFRESH` (30 s, longer for a table that is slow to build).
    pub async fn table(self: &Arc<Self>, i: usize) -> Result<Arc<Vec<u8>>, String> {
        let (version, records) = self.read(i, |w| (w.version, w.records_version));
        if let Some(built) = &self.tables.lock().unwrap_or_else(|p| p.into_inner())[i] {
            // Never more than 1/20 of a core on tables: a report that took 1.5 s is reused
            // for 30 s, one that took 3 s for a minute.
            let wait = TABLE_REFRESH.max(built.took * 20);
            let fresh =
                built.version == version || (built.records_version == records && built.at.elapsed() < wait);
            if fresh {
                return Ok(built.json.clone());
            }
        }
        let shared = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            shared.read(i, |w| {
                let began = Instant::now();
                let table = crate::api::table(w)?;
                let json = serde_json::to_vec(&table).map_err(|e| e.to_string())?;
                Ok::<_, String>(BuiltTable {
                    version: w.version,
                    records_version: w.records_version,
                    at: Instant::now(),
                    took: began.elapsed(),
                    json: Arc::new(json),
                })
            })
        })
        .await
        .map_err(|e| format!("building the table failed: {e}"))??;
        let json = built.json.clone();
        self.tables.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(built);
        Ok(json)
    }
}
