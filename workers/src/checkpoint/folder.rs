//! Checkpoint files in a run folder: durable writes, listing, pruning, and finding the one to
//! resume from.
//!
//! A run folder holds `checkpoint-{index:010}.ckpt` files whose index the worker increases
//! with every checkpoint. Each is written to `<name>.tmp` in the same folder, synced, renamed
//! over its final name and the folder synced, so after a crash a checkpoint file is either
//! complete or absent — unless the storage itself tears or corrupts it, which the checksum
//! catches and [`newest_valid`] steps past. Temporary files a crash leaves behind are never
//! mistaken for checkpoints and are removed by [`prune`].

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::container::Checkpoint;
use super::error::CheckpointError;
use super::format::{decode, recorded_checksum_hex};

const PREFIX: &str = "checkpoint-";
const EXTENSION: &str = ".ckpt";
const TEMP_SUFFIX: &str = ".tmp";

/// The file name of checkpoint `index`: `checkpoint-{index:010}.ckpt`.
pub fn file_name(index: u64) -> String {
    format!("{PREFIX}{index:010}{EXTENSION}")
}

/// The index in a checkpoint file name, or `None` for any other name (temporary files
/// included).
pub fn parse_index(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_prefix(PREFIX)?.strip_suffix(EXTENSION)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A checkpoint file found in a run folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointFile {
    /// Its index (from the file name).
    pub index: u64,
    /// Its path.
    pub path: PathBuf,
}

impl CheckpointFile {
    /// The file name, as events and messages quote it.
    pub fn file_name(&self) -> String {
        file_name(self.index)
    }
}

impl Checkpoint {
    /// Writes the checkpoint durably as `dir/file_name` and returns its BLAKE3 (hex, as the
    /// `checkpoint` event records it): write `dir/file_name.tmp`, `sync_all`, rename over
    /// `file_name` (replacing an older file of that name atomically), then sync `dir` so the
    /// rename survives a power cut. The temporary file is removed if a step fails.
    pub fn write_atomic(&self, dir: &Path, file_name: &str) -> Result<String, CheckpointError> {
        check_file_name(file_name)?;
        let bytes = self.to_bytes();
        let checksum = recorded_checksum_hex(&bytes);
        let temp = dir.join(format!("{file_name}{TEMP_SUFFIX}"));
        let target = dir.join(file_name);
        let written = write_synced(&temp, &bytes).and_then(|()| {
            fs::rename(&temp, &target).map_err(|source| CheckpointError::Io {
                path: target.clone(),
                action: "rename the temporary file into place",
                source,
            })
        });
        if let Err(e) = written {
            // Best effort: the error that matters is the one above.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        sync_dir(dir)?;
        Ok(checksum)
    }

    /// Reads and verifies one checkpoint file; errors name the file.
    pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
        read_verified(path).map(|(checkpoint, _)| checkpoint)
    }
}

fn read_verified(path: &Path) -> Result<(Checkpoint, String), CheckpointError> {
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        action: "read",
        source,
    })?;
    let (checkpoint, checksum) =
        decode(&bytes).map_err(|source| CheckpointError::Invalid { path: path.to_owned(), source })?;
    Ok((checkpoint, checksum.to_hex().to_string()))
}

fn check_file_name(name: &str) -> Result<(), CheckpointError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." || name.contains(['/', '\\']) {
        Some("it must be a plain file name inside the run folder, not a path")
    } else if name.ends_with(TEMP_SUFFIX) {
        Some("names ending in .tmp are reserved for files being written")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CheckpointError::InvalidFileName { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |action: &'static str| {
        move |source: io::Error| CheckpointError::Io { path: path.to_owned(), action, source }
    };
    let mut file = File::create(path).map_err(io("create"))?;
    file.write_all(bytes).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))
}

/// Makes a rename inside `dir` durable. Only Unix can open and sync a directory; elsewhere the
/// rename is as durable as the file system makes it.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    #[cfg(unix)]
    {
        let io = |action: &'static str| {
            move |source: io::Error| CheckpointError::Io { path: dir.to_owned(), action, source }
        };
        File::open(dir)
            .map_err(io("open the folder to sync it"))?
            .sync_all()
            .map_err(io("sync the folder"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The file names in `dir`; a missing folder is empty (a run that has not checkpointed yet
/// may not have created it).
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, CheckpointError> {
    let io = |source| CheckpointError::Io { path: dir.to_owned(), action: "list", source };
    let reader = match fs::read_dir(dir) {
        Ok(reader) => reader,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut names = Vec::new();
    for entry in reader {
        let entry = entry.map_err(io)?;
        // Names that are not UTF-8 are not ours.
        if let Ok(name) = entry.file_name().into_string() {
            if entry.file_type().map_err(io)?.is_file() {
                names.push((name, entry.path()));
            }
        }
    }
    Ok(names)
}

/// The checkpoint files in `dir`, oldest (lowest index) first. Temporary files and anything
/// not named like a checkpoint are ignored; a missing folder holds none.
pub fn list(dir: &Path) -> Result<Vec<CheckpointFile>, CheckpointError> {
    let mut files: Vec<CheckpointFile> = entries(dir)?
        .into_iter()
        .filter_map(|(name, path)| parse_index(&name).map(|index| CheckpointFile { index, path }))
        .collect();
    files.sort_by_key(|f| f.index);
    Ok(files)
}

/// Deletes every checkpoint but the newest `keep` (by index), and every temporary file a
/// crashed write left behind; returns the paths removed. Call it right after a successful
/// [`Checkpoint::write_atomic`] (never during one: it would remove that write's temporary
/// file), so the newest file is known good. `keep = 0` removes every checkpoint.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut doomed: Vec<PathBuf> = entries(dir)?
        .into_iter()
        .filter(|(name, _)| name.strip_suffix(TEMP_SUFFIX).and_then(parse_index).is_some())
        .map(|(_, path)| path)
        .collect();
    let files = list(dir)?;
    let old = files.len().saturating_sub(keep);
    doomed.extend(files.into_iter().take(old).map(|f| f.path));
    for path in &doomed {
        match fs::remove_file(path) {
            Ok(()) => {}
            // Already gone (removed by hand meanwhile): the goal is reached.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(CheckpointError::Io { path: path.clone(), action: "remove", source }),
        }
    }
    Ok(doomed)
}

/// The checkpoint a run resumes from, found by [`newest_valid`].
#[derive(Debug)]
pub struct ValidCheckpoint {
    /// Its index.
    pub index: u64,
    /// Its path.
    pub path: PathBuf,
    /// Its verified BLAKE3, hex (compare with the one the `checkpoint` event recorded).
    pub checksum: String,
    /// Its contents.
    pub checkpoint: Checkpoint,
}

/// A checkpoint newer than the one resumed from that failed to read or verify.
#[derive(Debug)]
pub struct RejectedCheckpoint {
    /// Its index.
    pub index: u64,
    /// Its path.
    pub path: PathBuf,
    /// Why it was rejected (names the file).
    pub reason: CheckpointError,
}

/// Where a run resumes, and what it had to skip to get there.
#[derive(Debug)]
pub struct Resume {
    /// The newest checkpoint that verifies, or `None` if the folder holds none (the run
    /// starts from the beginning).
    pub checkpoint: Option<ValidCheckpoint>,
    /// Every newer checkpoint that failed, newest first; the caller reports them.
    pub rejected: Vec<RejectedCheckpoint>,
}

impl fmt::Display for Resume {
    /// One line per rejected file, then where the run resumes, e.g.
    /// `…/checkpoint-0000000017.ckpt: checksum mismatch: … (torn write or corruption?)` and
    /// `resuming from checkpoint-0000000012.ckpt`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for rejected in &self.rejected {
            writeln!(f, "{}", rejected.reason)?;
        }
        match &self.checkpoint {
            Some(valid) => write!(f, "resuming from {}", file_name(valid.index)),
            None if self.rejected.is_empty() => {
                write!(f, "no checkpoint; starting from the beginning")
            }
            None => write!(f, "no checkpoint verifies; starting from the beginning"),
        }
    }
}

/// Finds the newest checkpoint in `dir` that reads and verifies, stepping past newer ones that
/// do not (a torn or corrupted newest file falls back to the previous one) and reporting them.
/// Temporary files are ignored; a missing or empty folder gives `checkpoint: None`. Errors
/// only if the folder cannot be listed.
pub fn newest_valid(dir: &Path) -> Result<Resume, CheckpointError> {
    newest_valid_where(dir, |_| Ok(()))
}

/// Why a reader does not accept a checkpoint that verifies ([`newest_valid_where`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A few words for tables (`another run's`, `events.jsonl damaged`).
    pub summary: &'static str,
    /// The whole reason.
    pub reason: String,
}

/// [`newest_valid`], also stepping past checkpoints that verify but that `accept` refuses
/// (reported as [`CheckpointError::Refused`]) — e.g. another run's checkpoint in the folder,
/// or one whose events were damaged since, which is skipped like a corrupt one rather than
/// failing the run.
pub fn newest_valid_where(
    dir: &Path,
    mut accept: impl FnMut(&Checkpoint) -> Result<(), Refusal>,
) -> Result<Resume, CheckpointError> {
    let mut rejected = Vec::new();
    for file in list(dir)?.into_iter().rev() {
        let verified =
            read_verified(&file.path).and_then(|(checkpoint, checksum)| match accept(&checkpoint) {
                Ok(()) => Ok((checkpoint, checksum)),
                Err(Refusal { summary, reason }) => {
                    Err(CheckpointError::Refused { path: file.path.clone(), summary, reason })
                }
            });
        match verified {
            Ok((checkpoint, checksum)) => {
                let checkpoint = ValidCheckpoint { index: file.index, path: file.path, checksum, checkpoint };
                return Ok(Resume { checkpoint: Some(checkpoint), rejected });
            }
            Err(reason) => rejected.push(RejectedCheckpoint { index: file.index, path: file.path, reason }),
        }
    }
    Ok(Resume { checkpoint: None, rejected })
}
