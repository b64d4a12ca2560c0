//! One published file over HTTP(S): into `<file>.part`, resumed with `Range` after a cut
//! transfer, verified against its SHA-256, then renamed into place — so a file under its final
//! name is always a verified one.
//!
//! A complete file whose SHA-256 differs is deleted, not kept for resuming: resuming can only
//! append to it, and appending to wrong bytes can never make them right.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::catalogue::RemoteFile;
use crate::{sha256, Event};

/// Why a file could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No connection: DNS failed, the connection was refused or timed out.
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },
    /// The server answered, but not with the file.
    #[error("{url}: the server answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The transfer stopped part-way; what arrived is kept for the next attempt.
    #[error(
        "{url}: the transfer stopped after {received} of {expected} bytes ({reason}); they are kept \
         in {part}, and running the same command again resumes from there",
        part = part.display(),
        expected = total.map_or_else(|| "?".to_string(), |t| t.to_string())
    )]
    Interrupted { url: String, received: u64, total: Option<u64>, part: PathBuf, reason: String },
    /// The complete file is not the published one; it was deleted.
    #[error(
        "{file} from {url} has SHA-256 {actual}, not the published {expected}; refused and \
         deleted (a wrong mirror, a proxy's error page, or a changed upload)"
    )]
    Mismatch { file: String, url: String, expected: String, actual: String },
    /// The server sent something a download cannot use.
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    /// Reading or writing the local file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// Every source of the file failed; each one's reason, in the order tried.
    #[error("{}", join(.0))]
    AllSources(Vec<DownloadError>),
}

fn join(errors: &[DownloadError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; then ")
}

impl DownloadError {
    /// The hosts that could not be reached, when no source was reachable at all (the machine
    /// is offline, or behind a firewall); `None` when some server answered.
    pub fn unreachable_hosts(&self) -> Option<Vec<(&str, &str)>> {
        match self {
            DownloadError::Unreachable { host, reason } => Some(vec![(host.as_str(), reason.as_str())]),
            DownloadError::AllSources(errors) => {
                let mut hosts = Vec::new();
                for e in errors {
                    hosts.extend(e.unreachable_hosts()?);
                }
                Some(hosts)
            }
            _ => None,
        }
    }

    fn io(path: &Path, source: io::Error) -> Self {
        DownloadError::Io { path: path.to_path_buf(), source }
    }

    /// Whether the next source may succeed where this one failed: not when the local disk
    /// failed, nor when bytes were kept to resume from.
    fn try_next_source(&self) -> bool {
        !matches!(self, DownloadError::Io { .. } | DownloadError::Interrupted { .. })
    }
}

/// What [`Downloader::fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The file was transferred (all of it, or the rest of a kept part) and verified.
    Downloaded,
    /// A verified file was already in place; nothing was transferred.
    AlreadyThere,
}

/// An HTTP(S) client for published files: timeouts, redirects, and how often a cut transfer
/// is resumed before giving up.
#[derive(Debug, Clone)]
pub struct Downloader {
    agent: ureq::Agent,
    resumes: u32,
}

impl Default for Downloader {
    fn default() -> Self {
        Downloader::new(Duration::from_secs(20), Duration::from_secs(60), 3)
    }
}

impl Downloader {
    /// `connect`: how long to wait for a connection; `idle`: how long a transfer may stall
    /// without a byte before it counts as cut (a slow transfer is never cut); `resumes`: how
    /// many times a cut transfer is resumed within one call before the error is returned (the
    /// part is kept either way).
    pub fn new(connect: Duration, idle: Duration, resumes: u32) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(connect)
            .timeout_read(idle)
            .timeout_write(idle)
            .redirects(5)
            .user_agent(concat!("clorch/", env!("CARGO_PKG_VERSION")))
            .build();
        Downloader { agent, resumes }
    }

    /// Fetches `file` to `dest` from the first of `urls` that delivers it, resuming
    /// `<dest>.part` when an earlier attempt left one. An existing `dest` is verified and kept
    /// when it matches; one that does not match is an error, and is left alone.
    pub fn fetch(
        &self,
        file: &RemoteFile,
        urls: &[String],
        dest: &Path,
        progress: &mut dyn FnMut(Event),
    ) -> Result<Fetched, DownloadError> {
        if dest.exists() {
            progress(Event::Verifying { file: &file.file_name });
            let actual = sha256::of_file(dest).map_err(|e| DownloadError::io(dest, e))?;
            if actual == file.sha256 {
                return Ok(Fetched::AlreadyThere);
            }
            return Err(DownloadError::Mismatch {
                file: file.file_name.clone(),
                url: dest.display().to_string(),
                expected: file.sha256.clone(),
                actual,
            });
        }
        let part = part_path(dest);
        let mut failures = Vec::new();
        for url in urls {
            match self.fetch_from(file, url, &part, progress) {
                Ok(()) => {
                    std::fs::rename(&part, dest).map_err(|e| DownloadError::io(dest, e))?;
                    return Ok(Fetched::Downloaded);
                }
                Err(e) if e.try_next_source() => failures.push(e),
                Err(e) => return Err(e),
            }
        }
        Err(match failures.len() {
            0 => DownloadError::Protocol { url: String::new(), reason: "no URL to download from".into() },
            1 => failures.remove(0),
            _ => DownloadError::AllSources(failures),
        })
    }

    /// Completes and verifies `part` from `url`, resuming up to `self.resumes` times.
    fn fetch_from(
        &self,
        file: &RemoteFile,
        url: &str,
        part: &Path,
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), DownloadError> {
        let mut resumes_left = self.resumes;
        loop {
            match self.transfer(file, url, part, progress) {
                Ok(()) => break,
                // The next request asks for the rest with `Range`.
                Err(DownloadError::Interrupted { .. }) if resumes_left > 0 => resumes_left -= 1,
                Err(e) => return Err(e),
            }
        }
        progress(Event::Verifying { file: &file.file_name });
        let actual = sha256::of_file(part).map_err(|e| DownloadError::io(part, e))?;
        if actual != file.sha256 {
            std::fs::remove_file(part).map_err(|e| DownloadError::io(part, e))?;
            return Err(DownloadError::Mismatch {
                file: file.file_name.clone(),
                url: url.to_string(),
                expected: file.sha256.clone(),
                actual,
            });
        }
        File::open(part).and_then(|f| f.sync_all()).map_err(|e| DownloadError::io(part, e))?;
        Ok(())
    }

    /// One request: appends the rest of the file to `part`. `Ok` means the server sent all of
    /// it; nothing is verified yet.
    fn transfer(
        &self,
        file: &RemoteFile,
        url: &str,
        part: &Path,
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), DownloadError> {
        let mut offset = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if file.size.is_some_and(|size| offset > size) {
            // Longer than the published file: not a prefix of it, so nothing to resume.
            offset = 0;
        }
        if offset > 0 && Some(offset) == file.size {
            // Complete already (the previous run stopped before verifying).
            return Ok(());
        }
        let response = self.request(url, offset)?;
        let (start, total) = match (response.status(), offset) {
            (206, _) => match parse_content_range(response.header("Content-Range")) {
                Some((start, total)) if start == offset => (start, total.or(file.size)),
                _ => {
                    return Err(DownloadError::Protocol {
                        url: url.to_string(),
                        reason: format!(
                            "asked for bytes {offset}- and got Content-Range {:?}",
                            response.header("Content-Range")
                        ),
                    })
                }
            },
            // The server ignored the range (or none was asked): the whole file, from the start.
            (200, _) => {
                let length = response.header("Content-Length").and_then(|v| v.trim().parse().ok());
                (0, length.or(file.size))
            }
            (status, _) => return Err(DownloadError::Status { url: url.to_string(), status }),
        };
        if let (Some(total), Some(size)) = (total, file.size) {
            if total != size {
                return Err(DownloadError::Protocol {
                    url: url.to_string(),
                    reason: format!(
                        "the server offers {total} bytes; the published {} has {size}",
                        file.file_name
                    ),
                });
            }
        }
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .append(start > 0)
            .open(part)
            .map_err(|e| DownloadError::io(part, e))?;
        progress(Event::Transfer { file: &file.file_name, url, offset: start, total });
        let mut body = response.into_reader();
        let mut done = start;
        let mut buf = vec![0u8; 1 << 16];
        let cut = |done: u64, reason: String| DownloadError::Interrupted {
            url: url.to_string(),
            received: done,
            total,
            part: part.to_path_buf(),
            reason,
        };
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.flush().map_err(|e| DownloadError::io(part, e))?;
                    return Err(cut(done, e.to_string()));
                }
            };
            if total.is_some_and(|t| done + n as u64 > t) {
                drop(out);
                std::fs::remove_file(part).map_err(|e| DownloadError::io(part, e))?;
                return Err(DownloadError::Protocol {
                    url: url.to_string(),
                    reason: format!(
                        "the server sent more than the {} bytes it announced",
                        total.unwrap_or(0)
                    ),
                });
            }
            out.write_all(&buf[..n]).map_err(|e| DownloadError::io(part, e))?;
            done += n as u64;
            progress(Event::Bytes { file: &file.file_name, done });
        }
        out.flush().map_err(|e| DownloadError::io(part, e))?;
        match total {
            Some(t) if done < t => Err(cut(done, "the server closed the connection".into())),
            _ => Ok(()),
        }
    }

    /// A GET, with `Range` from `offset` when it is not zero. Statuses of 400 and above come
    /// back as [`DownloadError::Status`], transport failures as unreachable or cut.
    fn request(&self, url: &str, offset: u64) -> Result<ureq::Response, DownloadError> {
        let mut request = self.agent.get(url);
        if offset > 0 {
            request = request.set("Range", &format!("bytes={offset}-"));
        }
        match request.call() {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, _)) => {
                Err(DownloadError::Status { url: url.to_string(), status })
            }
            Err(ureq::Error::Transport(t)) => Err(match t.kind() {
                ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::ProxyConnect => {
                    DownloadError::Unreachable {
                        host: host_of(url).to_string(),
                        reason: transport_reason(&t),
                    }
                }
                _ => DownloadError::Protocol { url: url.to_string(), reason: transport_reason(&t) },
            }),
        }
    }
}

/// The message of a transport error with its cause (ureq's own message omits the OS error).
fn transport_reason(t: &ureq::Transport) -> String {
    let mut reason = t.message().map(str::to_string).unwrap_or_else(|| t.kind().to_string());
    let mut source = std::error::Error::source(t);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    reason
}

/// `<dest>.part`: where an unverified download lives.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// The host (with port) of a URL, for messages.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// `bytes START-END/TOTAL` → (START, TOTAL), TOTAL `None` when it is `*`.
fn parse_content_range(value: Option<&str>) -> Option<(u64, Option<u64>)> {
    let range = value?.trim().strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let (start, _end) = span.split_once('-')?;
    let total = if total.trim() == "*" { None } else { Some(total.trim().parse().ok()?) };
    Some((start.trim().parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range(Some("bytes 100-199/200")), Some((100, Some(200))));
        assert_eq!(parse_content_range(Some("bytes 5-9/*")), Some((5, None)));
        assert_eq!(parse_content_range(Some("items 5-9/10")), None);
        assert_eq!(parse_content_range(None), None);
    }

    #[test]
    fn hosts_and_parts() {
        assert_eq!(host_of("https://www.cs.toronto.edu/~kriz/x.tar.gz"), "www.cs.toronto.edu");
        assert_eq!(host_of("http://127.0.0.1:9/mnist/a.gz"), "127.0.0.1:9");
        assert_eq!(part_path(Path::new("/d/a.gz")), Path::new("/d/a.gz.part"));
    }
}
