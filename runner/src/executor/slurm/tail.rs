//! Following files a worker on another machine writes: its `events.jsonl`, which the worker
//! truncates when it resumes from a checkpoint, and its log.
//!
//! The files are re-opened at every poll, so a shared filesystem's close-to-open consistency
//! (NFS) shows what the worker wrote; only whole lines are taken, so a line being written (or
//! left half-written by a killed worker) is read once it is complete, or never.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use protocol::Event;

/// What a poll of `events.jsonl` found, in order.
#[derive(Debug, PartialEq)]
pub enum Tailed {
    /// The worker (re)started from a checkpoint and cut the file back: the events from this
    /// sequence number on are (or will be) written again, so the scheduler drops its copies.
    Resuming(u64),
    /// A new event.
    Event(Box<Event>),
}

/// Why following `events.jsonl` failed.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The file could not be read (a transient filesystem error, usually).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file holds something a worker of this run does not write.
    #[error("{0}")]
    Protocol(String),
}

/// One line taken from the file: where it ends, and a hash of its bytes to notice a rewrite.
#[derive(Clone, Copy, Debug)]
struct Mark {
    end: u64,
    hash: u64,
}

/// Follows one run's `events.jsonl`. Line `i` of the file is the event with sequence number
/// `i` (the worker numbers events from 0 without gaps, and cuts the file back to a line
/// boundary when it resumes), which is how a truncation maps to a sequence number.
#[derive(Debug)]
pub struct EventTail {
    path: PathBuf,
    run: String,
    taken: Vec<Mark>,
    /// Lines below this index are taken without being reported: the store has them.
    quiet_below: u64,
    /// Report `Resuming` with the file's line count at the first poll.
    announce: bool,
}

impl EventTail {
    /// Follows `path` for run `run` when the store already holds the file's first `known`
    /// events (a new attempt, after the folder was claimed and the file cut back to them).
    pub fn new(path: PathBuf, run: &str, known: u64) -> EventTail {
        EventTail { path, run: run.to_string(), taken: Vec::new(), quiet_below: known, announce: false }
    }

    /// Follows `path` for run `run` when the store may hold more or other events than the file
    /// (reattaching to a job that went on while nobody watched): the first poll reports
    /// `Resuming` with the file's line count, then every line of the file.
    pub fn reattach(path: PathBuf, run: &str) -> EventTail {
        EventTail { path, run: run.to_string(), taken: Vec::new(), quiet_below: 0, announce: true }
    }

    fn pos(&self) -> u64 {
        self.taken.last().map_or(0, |m| m.end)
    }

    fn io(&self, source: std::io::Error) -> TailError {
        TailError::Io { path: self.path.clone(), source }
    }

    /// Reads the file from `from` to its end; a missing file reads as empty.
    fn read_from(&self, from: u64) -> Result<Vec<u8>, TailError> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let len = file.metadata().map_err(|e| self.io(e))?.len();
        if len < from {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(from)).map_err(|e| self.io(e))?;
        let mut bytes = Vec::with_capacity((len - from) as usize);
        file.read_to_end(&mut bytes).map_err(|e| self.io(e))?;
        Ok(bytes)
    }

    fn file_len(&self) -> Result<u64, TailError> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Takes the lines written since the last poll.
    pub fn poll(&mut self) -> Result<Vec<Tailed>, TailError> {
        let mut out = Vec::new();
        let pos = self.pos();
        if self.file_len()? < pos {
            return self.resync(out);
        }
        // Read from the start of the last line taken, to check it is still there: a worker
        // that resumed may have rewritten the file past the point read.
        let from = match self.taken.len() {
            0 | 1 => 0,
            n => self.taken[n - 2].end,
        };
        let bytes = self.read_from(from)?;
        let last_len = (pos - from) as usize;
        if let Some(last) = self.taken.last() {
            if bytes.len() < last_len || hash(&bytes[..last_len]) != last.hash {
                return self.resync(out);
            }
        }
        let bytes = &bytes[last_len..];
        if self.announce {
            self.announce = false;
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            out.push(Tailed::Resuming(lines));
        }
        match self.take(bytes, pos, &mut out)? {
            None => Ok(out),
            // A line that does not continue the sequence: the worker resumed and rewrote the
            // file past the point read, with different bytes. Compare the whole file.
            Some(_) => self.resync(out),
        }
    }

    /// Compares the whole file with the lines taken, keeps the common prefix, reports
    /// `Resuming` at the first difference, and takes the rest.
    fn resync(&mut self, mut out: Vec<Tailed>) -> Result<Vec<Tailed>, TailError> {
        let bytes = self.read_from(0)?;
        let mut same = 0usize;
        let mut start = 0usize;
        for line in complete_lines(&bytes) {
            match self.taken.get(same) {
                Some(mark) if mark.end == (start + line.len()) as u64 && mark.hash == hash(line) => {
                    same += 1;
                    start += line.len();
                }
                _ => break,
            }
        }
        if same < self.taken.len() {
            self.taken.truncate(same);
            self.quiet_below = self.quiet_below.min(same as u64);
            out.push(Tailed::Resuming(same as u64));
        }
        match self.take(&bytes[start..], start as u64, &mut out)? {
            None => Ok(out),
            Some(problem) => Err(TailError::Protocol(problem)),
        }
    }

    /// Takes the complete lines of `bytes` (which start at offset `at` of the file) while they
    /// continue the sequence; returns what was wrong with the first line that does not.
    fn take(&mut self, bytes: &[u8], at: u64, out: &mut Vec<Tailed>) -> Result<Option<String>, TailError> {
        let mut end = at;
        for line in complete_lines(bytes) {
            end += line.len() as u64;
            let event = match protocol::line::decode(line) {
                Ok(e) => e,
                Err(e) => {
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                    let shown: String = text.chars().take(120).collect();
                    return Ok(Some(format!("a line that is not a sealed event: `{shown}`: {e}")));
                }
            };
            if event.run != self.run {
                return Err(TailError::Protocol(format!(
                    "an event of run `{}`, not `{}`, in {}",
                    event.run,
                    self.run,
                    self.path.display()
                )));
            }
            let expected = self.taken.len() as u64;
            if event.seq != expected {
                return Ok(Some(format!(
                    "event {} where event {expected} was expected in {}",
                    event.seq,
                    self.path.display()
                )));
            }
            self.taken.push(Mark { end, hash: hash(line) });
            if event.seq >= self.quiet_below {
                out.push(Tailed::Event(Box::new(event)));
            }
        }
        Ok(None)
    }
}

/// The newline-terminated lines of `bytes`, each with its newline.
fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes[..whole].split_inclusive(|&b| b == b'\n')
}

fn hash(line: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(line);
    h.finish()
}

/// Follows a text file that only grows (the worker's log, `jobs.log`): the complete lines
/// added since the last poll.
#[derive(Debug)]
pub struct LineTail {
    path: PathBuf,
    pos: u64,
}

impl LineTail {
    /// Follows `path` from its current end: what is already there belongs to earlier attempts.
    pub fn at_end(path: PathBuf) -> LineTail {
        let pos = std::fs::metadata(&path).map_or(0, |m| m.len());
        LineTail { path, pos }
    }

    /// The complete lines added since the last poll (the file shrinking starts it over).
    pub fn poll(&mut self) -> std::io::Result<Vec<String>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.pos {
            self.pos = 0;
        }
        if len == self.pos {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.pos))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let lines: Vec<String> =
            complete_lines(&bytes).map(|l| String::from_utf8_lossy(&l[..l.len() - 1]).into_owned()).collect();
        self.pos += lines.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
        Ok(lines)
    }
}

/// The last 64 KiB of `path` (logs can be long; the reason a worker gave is in its last
/// lines); the first line may be cut.
pub fn last_text(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last line of `path` that `keep` accepts, looking at its last 64 KiB only.
#[cfg(test)]
pub fn last_line(path: &Path, keep: impl Fn(&str) -> bool) -> Option<String> {
    let text = last_text(path)?;
    text.lines().rev().map(str::trim).find(|l| !l.is_empty() && keep(l)).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::EventBody;
    use std::io::Write;

    /// A file in its own scratch folder (removed with it).
    struct File(PathBuf, #[allow(dead_code)] test_support::TempDir);

    impl File {
        fn new(name: &str) -> File {
            let dir = test_support::scratch(&format!("tail-{name}"));
            File(dir.path().join("events.jsonl"), dir)
        }
        fn append(&self, text: &str) {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.0).unwrap();
            f.write_all(text.as_bytes()).unwrap();
        }
        fn cut(&self, len: u64) {
            std::fs::OpenOptions::new().write(true).open(&self.0).unwrap().set_len(len).unwrap();
        }
    }

    fn line(seq: u64, task: usize) -> String {
        let event = Event {
            run: "r1".into(),
            seq,
            body: EventBody::TaskStarted { task, head: 0, train_examples: 8 },
        };
        protocol::line::encode(&event)
    }

    fn seqs(items: &[Tailed]) -> Vec<String> {
        items
            .iter()
            .map(|t| match t {
                Tailed::Resuming(n) => format!("resume@{n}"),
                Tailed::Event(e) => e.seq.to_string(),
            })
            .collect()
    }

    #[test]
    fn whole_lines_are_taken_and_a_partial_one_waits() {
        let f = File::new("partial");
        let mut tail = EventTail::new(f.0.clone(), "r1", 0);
        assert!(tail.poll().unwrap().is_empty(), "no file yet");
        let l1 = line(1, 1);
        f.append(&line(0, 0));
        f.append(&l1[..10]);
        assert_eq!(seqs(&tail.poll().unwrap()), ["0"]);
        f.append(&l1[10..]);
        assert_eq!(seqs(&tail.poll().unwrap()), ["1"]);
        assert!(tail.poll().unwrap().is_empty());
    }

    #[test]
    fn known_events_are_not_reported_again() {
        let f = File::new("known");
        f.append(&(line(0, 0) + &line(1, 1)));
        let mut tail = EventTail::new(f.0.clone(), "r1", 2);
        assert!(tail.poll().unwrap().is_empty());
        f.append(&line(2, 2));
        assert_eq!(seqs(&tail.poll().unwrap()), ["2"]);
    }

    #[test]
    fn a_truncation_reports_resuming_at_the_cut() {
        let f = File::new("cut");
        let mut tail = EventTail::new(f.0.clone(), "r1", 0);
        let (a, b, c) = (line(0, 0), line(1, 1), line(2, 2));
        f.append(&(a.clone() + &b + &c));
        assert_eq!(seqs(&tail.poll().unwrap()), ["0", "1", "2"]);
        // The worker resumes from a checkpoint after event 0 and has re-emitted event 1 by the
        // next poll: the file is shorter, and its lines are the same up to event 2.
        f.cut(a.len() as u64);
        f.append(&b);
        assert_eq!(seqs(&tail.poll().unwrap()), ["resume@2"]);
        f.cut(a.len() as u64);
        assert_eq!(seqs(&tail.poll().unwrap()), ["resume@1"]);
        f.append(&b);
        assert_eq!(seqs(&tail.poll().unwrap()), ["1"]);
        // A torn last line from a killed worker, then a resume that rewrites it.
        f.append(&c[..5]);
        assert!(tail.poll().unwrap().is_empty());
        f.cut((a.len() + b.len()) as u64);
        f.append(&c);
        assert_eq!(seqs(&tail.poll().unwrap()), ["2"], "the same bytes again need no resume");
    }

    #[test]
    fn a_rewrite_past_the_read_point_with_other_bytes_is_noticed() {
        let f = File::new("rewrite");
        let mut tail = EventTail::new(f.0.clone(), "r1", 0);
        f.append(&(line(0, 0) + &line(1, 1)));
        assert_eq!(seqs(&tail.poll().unwrap()), ["0", "1"]);
        // Cut after event 0, then event 1 written with other content, and more, before the
        // next poll: the file never looked shorter.
        f.cut(line(0, 0).len() as u64);
        f.append(&(line(1, 7) + &line(2, 2) + &line(3, 3)));
        assert_eq!(seqs(&tail.poll().unwrap()), ["resume@1", "1", "2", "3"]);
    }

    #[test]
    fn reattaching_announces_the_file_then_reads_it_all() {
        let f = File::new("reattach");
        f.append(&(line(0, 0) + &line(1, 1)));
        let mut tail = EventTail::reattach(f.0.clone(), "r1");
        assert_eq!(seqs(&tail.poll().unwrap()), ["resume@2", "0", "1"]);
    }

    #[test]
    fn foreign_and_malformed_lines_are_protocol_errors() {
        let f = File::new("foreign");
        let foreign =
            Event { run: "r2".into(), seq: 0, body: EventBody::Finished { tasks: 1, steps: 1, examples: 1 } };
        f.append(&protocol::line::encode(&foreign));
        let err = EventTail::new(f.0.clone(), "r1", 0).poll().unwrap_err();
        assert!(err.to_string().contains("run `r2`"), "{err}");
        let g = File::new("garbage");
        g.append("this is not json\n");
        let err = EventTail::new(g.0.clone(), "r1", 0).poll().unwrap_err();
        assert!(err.to_string().contains("not a sealed event: `this is not json`"), "{err}");
        // A changed digit is caught by the seal.
        let h = File::new("changed");
        h.append(&line(0, 0).replace("\"train_examples\":8", "\"train_examples\":9"));
        let err = EventTail::new(h.0.clone(), "r1", 0).poll().unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn line_tails_follow_growth_and_last_line_filters() {
        let f = File::new("log");
        f.append("old\n");
        let mut tail = LineTail::at_end(f.0.clone());
        assert!(tail.poll().unwrap().is_empty());
        f.append("a\nb");
        assert_eq!(tail.poll().unwrap(), ["a"]);
        f.append("\n");
        assert_eq!(tail.poll().unwrap(), ["b"]);
        assert_eq!(last_line(&f.0, |l| l != "b").as_deref(), Some("a"));
        assert_eq!(last_line(&f.0.with_extension("none"), |_| true), None);
    }
}
