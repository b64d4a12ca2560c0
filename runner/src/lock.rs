//! One orchestrator per results folder.
//!
//! `clorch.lock` in the results folder is held with an exclusive `flock` for as long as a `clorch
//! run` lives. The kernel drops the lock when the process dies, however it dies, so a lock left
//! by a killed process can never block a new run: the file stays (with the dead process's pid,
//! which is reported) and is taken over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the lock inside a results folder.
pub const LOCK_FILE: &str = "clorch.lock";

/// Who holds (or held) a results folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// When the process took the lock (unix seconds).
    pub since: u64,
    /// The command, for the message a second `clorch run` prints.
    pub command: String,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error(
        "{folder} is in use by `{}` (pid {} on {}, since {}); wait for it to end or stop it \
         (Ctrl-C in its terminal, or `kill {}`) — a second run would corrupt its results",
        .holder.as_ref().map_or("another clorch", |h| h.command.as_str()),
        .holder.as_ref().map_or(0, |h| h.pid),
        .holder.as_ref().map_or("this host", |h| h.host.as_str()),
        .holder.as_ref().map_or_else(|| "?".to_string(), |h| format_time(h.since)),
        .holder.as_ref().map_or(0, |h| h.pid)
    )]
    Held {
        /// The results folder.
        folder: PathBuf,
        /// The holder, when its record could be read.
        holder: Option<Holder>,
    },
    /// The lock file could not be opened or written.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn format_time(unix: u64) -> String {
    let age = now().saturating_sub(unix);
    format!("{age} s ago")
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct ExperimentLock {
    file: File,
    /// A previous holder that died without releasing the folder cleanly, if any.
    pub taken_over: Option<Holder>,
}

impl Drop for ExperimentLock {
    /// A clean release empties the record, so only a holder that died leaves its pid behind
    /// for the next run to report.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.sync_data();
    }
}

/// Takes the lock of `folder` (created if needed), or says who holds it.
pub fn acquire(folder: &Path) -> Result<ExperimentLock, LockError> {
    let path = folder.join(LOCK_FILE);
    let io = |source| LockError::Io { path: path.clone(), source };
    std::fs::create_dir_all(folder).map_err(io)?;
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    let previous = read_holder(&mut file);
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::Held { folder: folder.to_path_buf(), holder: previous });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let me = Holder {
        pid: std::process::id(),
        host: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        since: now(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let record = serde_json::to_vec(&me).expect("a holder always serialises");
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&record).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(ExperimentLock { file, taken_over: previous.filter(|h| h.pid != me.pid) })
}

/// The holder recorded in a folder's lock file, and whether it still holds the lock.
pub fn inspect(folder: &Path) -> Option<(Holder, bool)> {
    let path = folder.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    let holder = read_holder(&mut file)?;
    let held = match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    };
    Some((holder, held))
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let scratch = test_support::scratch("second");
        let dir = scratch.path();
        let first = acquire(dir).unwrap();
        assert!(first.taken_over.is_none());
        let err = acquire(dir).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("in use"), "{err}");
        let (holder, held) = inspect(dir).unwrap();
        assert!(held);
        assert_eq!(holder.pid, std::process::id());
        drop(first);
        let second = acquire(dir).unwrap();
        assert!(second.taken_over.is_none(), "a clean release left a holder behind");
    }

    #[test]
    fn a_stale_lock_of_a_dead_process_is_taken_over() {
        let scratch = test_support::scratch("stale");
        let dir = scratch.path();
        std::fs::create_dir_all(dir).unwrap();
        let dead = Holder { pid: 999_999, host: "gone".into(), since: 1, command: "clorch run x".into() };
        std::fs::write(dir.join(LOCK_FILE), serde_json::to_vec(&dead).unwrap()).unwrap();
        assert_eq!(inspect(dir).unwrap(), (dead.clone(), false));
        let lock = acquire(dir).unwrap();
        assert_eq!(lock.taken_over, Some(dead));
    }
}
