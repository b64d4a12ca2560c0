//! The served experiments and who may touch them: one refresher thread writes, requests read.

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

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

/// A comparison table as JSON and the experiment version it was built at.
type BuiltTable = (u64, Arc<Vec<u8>>);

impl Shared {
    /// Shares `experiments` (read once already, so the first page has data).
    pub fn new(experiments: Vec<Watched>, token: Option<String>) -> Shared {
        let n = experiments.len();
        Shared {
            experiments: experiments.into_iter().map(RwLock::new).collect(),
            token,
            tables: Mutex::new(vec![None; n]),
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
    pub fn refresh_forever(self: Arc<Self>, every: Duration) {
        loop {
            std::thread::sleep(every);
            for cell in &self.experiments {
                let mut w = cell.write().unwrap_or_else(|p| p.into_inner());
                w.refresh();
            }
        }
    }

    /// Experiment `i`'s comparison table as JSON, built by `clorch report`'s code when the
    /// experiment changed since it was last built.
    pub async fn table(self: &Arc<Self>, i: usize) -> Result<Arc<Vec<u8>>, String> {
        let version = self.read(i, |w| w.version);
        if let Some((v, json)) = &self.tables.lock().unwrap_or_else(|p| p.into_inner())[i] {
            if *v == version {
                return Ok(json.clone());
            }
        }
        let shared = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            shared.read(i, |w| {
                let table = crate::api::table(w)?;
                serde_json::to_vec(&table).map(|json| (w.version, Arc::new(json))).map_err(|e| e.to_string())
            })
        })
        .await
        .map_err(|e| format!("building the table failed: {e}"))??;
        let json = built.1.clone();
        self.tables.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(built);
        Ok(json)
    }
}
