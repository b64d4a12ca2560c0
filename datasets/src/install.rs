//! A whole data set into `<dir>/<name>/`: downloaded and unpacked in a staging folder beside
//! it (`<dir>/.<name>.download/`, which keeps partial files for resuming), then renamed into
//! place in one step, with a manifest of every file's SHA-256.
//!
//! The data set's folder is only ever created by that rename: an existing folder is either an
//! earlier complete download, checked against its manifest and left as it is, or something
//! clorch did not write, which it refuses to touch.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::catalogue::{Dataset, Source, Unpack};
use crate::download::{self, DownloadError, Downloader};
use crate::unpack::{self, UnpackError};
use crate::{sha256, Event};

/// The manifest in a downloaded data set's folder: `<sha256>  <relative path>` lines after a
/// `# clorch data download <name>` header, like `sha256sum`'s output.
pub const MANIFEST: &str = ".clorch-download";

/// The lock file in the staging folder, held while a download runs.
const LOCK: &str = ".lock";

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Downloaded and put in place at `folder`, holding `files` files.
    Downloaded { folder: PathBuf, files: usize },
    /// An earlier download at `folder` is complete and every file still verifies.
    AlreadyPresent { folder: PathBuf, files: usize },
}

/// Why a data set is not in place.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// clorch does not download this data set: where to get it instead.
    #[error(
        "{title} is not downloaded by clorch: {instructions}.\n  licence: {licence}\n  layout \
         expected in {}: {layout}",
        folder.display()
    )]
    Manual { title: String, instructions: String, licence: String, layout: String, folder: PathBuf },
    /// The target folder holds files clorch did not write.
    #[error(
        "refusing to write into {}: it holds files that no `clorch data download` wrote (found \
         `{found}`); move them, or pass another --dir",
        folder.display()
    )]
    Foreign { folder: PathBuf, found: String },
    /// An earlier download's file is missing or changed since.
    #[error(
        "{}: `{file}` {problem} since `clorch data download` wrote it; delete {} to download \
         it again",
        folder.display(), folder.display()
    )]
    Changed { folder: PathBuf, file: String, problem: String },
    /// No source could be reached: the machine is offline (or behind a firewall).
    #[error(
        "{}; clorch data download needs internet access. Without it, copy the files into {} in \
         this layout: {layout}",
        hosts.iter().map(|(h, r)| format!("cannot reach {h}: {r}")).collect::<Vec<_>>().join("; "),
        folder.display()
    )]
    Offline { hosts: Vec<(String, String)>, folder: PathBuf, layout: String },
    /// Another `clorch data download` of the same data set into the same folder is running.
    #[error("another clorch data download is fetching into {}; wait for it to finish", staging.display())]
    Busy { staging: PathBuf },
    /// A file could not be fetched or verified.
    #[error(transparent)]
    Download(DownloadError),
    /// A verified archive could not be unpacked.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A local file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl InstallError {
    fn io(path: &Path, source: io::Error) -> Self {
        InstallError::Io { path: path.to_path_buf(), source }
    }
}

/// The folder `dataset` is put in under `dir`.
pub fn folder(dataset: &Dataset, dir: &Path) -> PathBuf {
    dir.join(&dataset.name)
}

/// Puts `dataset` in place under `dir`. `mirror`, when given, replaces the published URLs:
/// each file is fetched from `<mirror>/<data set name>/<file name>` (a local copy of the
/// files, or a test server).
pub fn install(
    dataset: &Dataset,
    dir: &Path,
    downloader: &Downloader,
    mirror: Option<&str>,
    progress: &mut dyn FnMut(Event),
) -> Result<Installed, InstallError> {
    let target = folder(dataset, dir);
    let files = match &dataset.source {
        Source::Download { files, .. } => files,
        Source::Manual { instructions, layout } => {
            return Err(InstallError::Manual {
                title: dataset.title.clone(),
                instructions: instructions.clone(),
                licence: dataset.licence.clone(),
                layout: layout.clone(),
                folder: target,
            })
        }
    };
    if let Some(present) = check_existing(&target)? {
        return Ok(Installed::AlreadyPresent { folder: target, files: present });
    }

    let staging = dir.join(format!(".{}.download", dataset.name));
    fs::create_dir_all(&staging).map_err(|e| InstallError::io(&staging, e))?;
    // Two downloads appending to one part would corrupt it: one at a time per data set.
    let lock_path = staging.join(LOCK);
    let lock = fs::File::create(&lock_path).map_err(|e| InstallError::io(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(InstallError::Busy { staging }),
        Err(fs::TryLockError::Error(e)) => return Err(InstallError::io(&lock_path, e)),
    }
    let release = || {
        let _ = fs::remove_file(&lock_path);
        // Kept when it holds a part to resume from; removed when nothing is left in it.
        let _ = fs::remove_dir(&staging);
    };
    if let Err(e) = fetch_all(dataset, &staging, &target, downloader, mirror, progress) {
        release();
        return Err(e);
    }

    // Assemble the folder's contents beside it, then rename it into place in one step.
    let assembled = staging.join("unpacked");
    if assembled.exists() {
        fs::remove_dir_all(&assembled).map_err(|e| InstallError::io(&assembled, e))?;
    }
    fs::create_dir(&assembled).map_err(|e| InstallError::io(&assembled, e))?;
    let mut manifest = Vec::new();
    for file in files {
        let verified = staging.join(&file.file_name);
        match file.unpack {
            Unpack::Keep => {
                let kept = assembled.join(&file.file_name);
                fs::rename(&verified, &kept).map_err(|e| InstallError::io(&kept, e))?;
                manifest.push((PathBuf::from(&file.file_name), file.sha256.clone()));
            }
            Unpack::TarGz => {
                progress(Event::Unpacking { file: &file.file_name });
                manifest.extend(unpack::tar_gz(&verified, &assembled)?);
            }
        }
    }
    write_manifest(&assembled, &dataset.name, &manifest)?;
    if target.exists() {
        // Only an empty folder gets here (`check_existing`); remove_dir refuses anything else.
        fs::remove_dir(&target).map_err(|e| InstallError::io(&target, e))?;
    }
    fs::rename(&assembled, &target).map_err(|e| InstallError::io(&target, e))?;
    for file in files {
        let verified = staging.join(&file.file_name);
        if verified.exists() {
            fs::remove_file(&verified).map_err(|e| InstallError::io(&verified, e))?;
        }
    }
    // The staging folder stays if anything else is in it: that is not clorch's to delete.
    release();
    drop(lock);
    Ok(Installed::Downloaded { folder: target, files: manifest.len() })
}

/// Fetches every file of `dataset` into `staging`, verified.
fn fetch_all(
    dataset: &Dataset,
    staging: &Path,
    target: &Path,
    downloader: &Downloader,
    mirror: Option<&str>,
    progress: &mut dyn FnMut(Event),
) -> Result<(), InstallError> {
    for file in dataset.files() {
        let urls = match mirror {
            Some(base) => vec![format!("{}/{}/{}", base.trim_end_matches('/'), dataset.name, file.file_name)],
            None => file.urls.clone(),
        };
        let dest = staging.join(&file.file_name);
        match downloader.fetch(file, &urls, &dest, progress) {
            Ok(download::Fetched::AlreadyThere) => progress(Event::Reused { file: &file.file_name }),
            Ok(download::Fetched::Downloaded) => {}
            // A verified file from an earlier run that no longer verifies is clorch's own
            // staging copy: drop it, so that the next run downloads it anew.
            Err(e @ DownloadError::Mismatch { .. }) if dest.exists() => {
                fs::remove_file(&dest).map_err(|e| InstallError::io(&dest, e))?;
                return Err(InstallError::Download(e));
            }
            Err(e) => {
                return Err(match e.unreachable_hosts() {
                    Some(hosts) => InstallError::Offline {
                        hosts: hosts.into_iter().map(|(h, r)| (h.to_string(), r.to_string())).collect(),
                        folder: target.to_path_buf(),
                        layout: dataset.layout().to_string(),
                    },
                    None => InstallError::Download(e),
                })
            }
        }
    }
    Ok(())
}

/// `Some(file count)` when `target` is a complete earlier download that still verifies,
/// `None` when it is absent or an empty folder (free to fill); an error otherwise.
fn check_existing(target: &Path) -> Result<Option<usize>, InstallError> {
    let entries = match fs::read_dir(target) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InstallError::io(target, e)),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InstallError::io(target, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    if names.is_empty() {
        return Ok(None);
    }
    let manifest_path = target.join(MANIFEST);
    let text = match fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            names.sort();
            return Err(InstallError::Foreign { folder: target.to_path_buf(), found: names.remove(0) });
        }
        Err(e) => return Err(InstallError::io(&manifest_path, e)),
    };
    let mut count = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let Some((expected, relative)) = line.split_once("  ") else {
            return Err(InstallError::Changed {
                folder: target.to_path_buf(),
                file: MANIFEST.into(),
                problem: format!("has the line {line:?}, which is not `<sha256>  <path>`; it changed"),
            });
        };
        let changed = |problem: String| InstallError::Changed {
            folder: target.to_path_buf(),
            file: relative.to_string(),
            problem,
        };
        match sha256::of_file(&target.join(relative)) {
            Ok(actual) if actual == expected => count += 1,
            Ok(actual) => return Err(changed(format!("has SHA-256 {actual}, not {expected}: it changed"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(changed("is missing: it was removed".into()))
            }
            Err(e) => return Err(InstallError::io(&target.join(relative), e)),
        }
    }
    Ok(Some(count))
}

fn write_manifest(folder: &Path, name: &str, files: &[(PathBuf, String)]) -> Result<(), InstallError> {
    let mut text = format!("# clorch data download {name}\n");
    for (path, sha) in files {
        text.push_str(&format!("{sha}  {}\n", path.to_string_lossy()));
    }
    let path = folder.join(MANIFEST);
    fs::write(&path, text).map_err(|e| InstallError::io(&path, e))
}
