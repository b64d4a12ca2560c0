//! tar.gz archives unpacked as plain files and folders under one folder, and nothing else:
//! an entry that names a path outside it (absolute, or through `..`), a link, a device or a
//! second copy of a file is refused, since a verified archive never holds one and an
//! unverified one must not get to write anywhere.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use crate::sha256;

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry would land outside the target folder.
    #[error("{archive}: entry `{entry}` points outside the folder it unpacks into; refused", archive = archive.display())]
    Escapes { archive: PathBuf, entry: String },
    /// An entry of a kind clorch does not unpack (links, devices, FIFOs).
    #[error("{archive}: entry `{entry}` is a {kind}; clorch unpacks plain files and folders only", archive = archive.display())]
    NotPlain { archive: PathBuf, entry: String, kind: String },
    /// Two entries for the same file.
    #[error("{archive}: `{entry}` appears twice; refused", archive = archive.display())]
    Duplicate { archive: PathBuf, entry: String },
    /// The archive could not be read (truncated, not gzip, not tar).
    #[error("{archive}: {source}", archive = archive.display())]
    Read { archive: PathBuf, source: io::Error },
    /// A file could not be written.
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Unpacks the gzip-compressed tar `archive` into the existing folder `into`; returns each
/// file written, relative to `into`, with its SHA-256 (what a later run checks the folder
/// against).
pub fn tar_gz(archive: &Path, into: &Path) -> Result<Vec<(PathBuf, String)>, UnpackError> {
    let read_err = |source| UnpackError::Read { archive: archive.to_path_buf(), source };
    let file = File::open(archive).map_err(read_err)?;
    let mut tar = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let mut written = Vec::new();
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let relative = contained(&entry.path().map_err(read_err)?)
            .ok_or_else(|| UnpackError::Escapes { archive: archive.to_path_buf(), entry: shown.clone() })?;
        if relative.as_os_str().is_empty() {
            continue; // `./` itself
        }
        let target = into.join(&relative);
        let write_err = |source| UnpackError::Write { path: target.clone(), source };
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(write_err)?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(write_err)?;
            }
            let mut out = match OpenOptions::new().write(true).create_new(true).open(&target) {
                Ok(out) => out,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(UnpackError::Duplicate { archive: archive.to_path_buf(), entry: shown })
                }
                Err(e) => return Err(write_err(e)),
            };
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = entry.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(write_err)?;
            }
            out.sync_all().map_err(write_err)?;
            written.push((relative, sha256::hex(hasher)));
        } else {
            let kind = match kind {
                tar::EntryType::Symlink => "symbolic link".to_string(),
                tar::EntryType::Link => "hard link".to_string(),
                other => format!("{other:?} entry"),
            };
            return Err(UnpackError::NotPlain { archive: archive.to_path_buf(), entry: shown, kind });
        }
    }
    Ok(written)
}

/// `path` as a relative path of normal components, or `None` when it is absolute or climbs
/// out with `..` (even a `a/../b` that would stay inside: archives that need it are not data).
fn contained(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        assert_eq!(contained(Path::new("./a/b.bin")), Some(PathBuf::from("a/b.bin")));
        assert_eq!(contained(Path::new("a/../b")), None);
        assert_eq!(contained(Path::new("/etc/passwd")), None);
        assert_eq!(contained(Path::new("..")), None);
    }
}
