//! How much of a run's `events.jsonl` a resuming worker can build on.
//!
//! A checkpoint records how many bytes and events of the log precede it; resuming from it
//! keeps those lines and emits the rest again. If any kept line was damaged since (a changed
//! digit, garbled bytes, the file cut short or deleted), the run's tables would be rebuilt
//! from wrong numbers — so the kept part is checked line by line (seal, run id, sequence
//! number) before a checkpoint is accepted, and a checkpoint whose part is damaged is skipped
//! for an older one that precedes the damage, or for a fresh start.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::checkpoint::Refusal;
use crate::protocol::{files, line};

/// The intact beginning of an `events.jsonl`: the byte offset after each of its first lines
/// that verify, and what stopped the check.
#[derive(Debug)]
pub(crate) struct IntactLog {
    /// `ends[i]` is the offset just past line `i` (the event with `seq` `i`).
    ends: Vec<u64>,
    /// The first problem found, if any: where it is and what it is.
    damage: Option<Damage>,
}

#[derive(Debug)]
enum Damage {
    /// The file does not exist.
    Missing,
    /// Line `line` (1-based) is not the event it should be.
    Line { line: u64, problem: LineProblem },
}

#[derive(Debug)]
enum LineProblem {
    /// The seal does not hold (or the sealed bytes are no event).
    Seal(line::LineError),
    /// A sound event of another run.
    OtherRun(String),
    /// A sound event of this run in the wrong place.
    OutOfSequence { found: u64, expected: u64 },
}

impl LineProblem {
    /// A few words for tables, naming the file.
    fn summary(&self) -> &'static str {
        match self {
            LineProblem::Seal(line::LineError::Mismatch { .. }) => "events.jsonl checksum mismatch",
            LineProblem::Seal(line::LineError::NoChecksum) => "events.jsonl line cut or unsealed",
            LineProblem::Seal(line::LineError::Invalid { .. }) => "events.jsonl invalid event",
            LineProblem::OtherRun(_) => "events.jsonl holds another run's event",
            LineProblem::OutOfSequence { .. } => "events.jsonl out of sequence",
        }
    }
}

impl std::fmt::Display for LineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineProblem::Seal(e) => write!(f, "{e}"),
            LineProblem::OtherRun(run) => write!(f, "the event belongs to run {run:?}"),
            LineProblem::OutOfSequence { found, expected } => {
                write!(f, "the event has seq {found} where {expected} belongs")
            }
        }
    }
}

impl IntactLog {
    /// Checks the `events.jsonl` in `dir` of the run `run` from its beginning up to the first
    /// line that fails. A last line without its newline is a write the worker did not finish,
    /// not damage: it is simply not part of the intact beginning.
    pub(crate) fn read(dir: &Path, run: &str) -> io::Result<IntactLog> {
        let path = dir.join(files::EVENTS);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(IntactLog { ends: Vec::new(), damage: Some(Damage::Missing) })
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let mut reader = BufReader::new(file);
        let mut ends = Vec::new();
        let mut offset = 0u64;
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            let n = reader
                .read_until(b'\n', &mut bytes)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if n == 0 || bytes.last() != Some(&b'\n') {
                return Ok(IntactLog { ends, damage: None });
            }
            let expected = ends.len() as u64;
            let problem = match line::decode(&bytes) {
                Err(e) => Some(LineProblem::Seal(e)),
                Ok(event) if event.run != run => Some(LineProblem::OtherRun(event.run)),
                Ok(event) if event.seq != expected => {
                    Some(LineProblem::OutOfSequence { found: event.seq, expected })
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                return Ok(IntactLog { ends, damage: Some(Damage::Line { line: expected + 1, problem }) });
            }
            offset += n as u64;
            ends.push(offset);
        }
    }

    /// Whether a checkpoint that recorded `log_len` bytes and `next_seq` events before it can
    /// be resumed from: its events must all lie in the intact beginning.
    pub(crate) fn covers(&self, log_len: u64, next_seq: u64) -> Result<(), Refusal> {
        let intact = match next_seq.checked_sub(1) {
            None => log_len == 0,
            Some(last) => usize::try_from(last).ok().and_then(|i| self.ends.get(i)) == Some(&log_len),
        };
        if intact {
            return Ok(());
        }
        let needs = format!("the checkpoint follows its first {next_seq} events ({log_len} bytes)");
        Err(match &self.damage {
            Some(Damage::Missing) => Refusal {
                summary: "events.jsonl missing",
                reason: format!("{} is missing; {needs}", files::EVENTS),
            },
            Some(Damage::Line { line, problem }) => Refusal {
                summary: problem.summary(),
                reason: format!("{} line {line}: {problem}; {needs}", files::EVENTS),
            },
            None => Refusal {
                summary: "events.jsonl cut short",
                reason: format!(
                    "{} holds {} whole events ({} bytes); {needs}",
                    files::EVENTS,
                    self.ends.len(),
                    self.ends.last().copied().unwrap_or(0)
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Event, EventBody};

    fn write_log(dir: &Path, run: &str, n: u64) -> Vec<u64> {
        let mut text = Vec::new();
        let mut ends = Vec::new();
        for seq in 0..n {
            let e = Event {
                run: run.into(),
                seq,
                body: EventBody::Online {
                    task: 0,
                    bin: seq as usize,
                    examples: 5,
                    loss: 0.5,
                    accuracy: None,
                },
            };
            line::encode_into(&e, &mut text);
            ends.push(text.len() as u64);
        }
        std::fs::write(dir.join(files::EVENTS), text).unwrap();
        ends
    }

    #[test]
    fn an_intact_log_covers_every_checkpoint_at_a_line_end() {
        let scratch = test_support::scratch("intact-log");
        let ends = write_log(scratch.path(), "r", 4);
        let log = IntactLog::read(scratch.path(), "r").unwrap();
        assert!(log.covers(0, 0).is_ok());
        for (i, end) in ends.iter().enumerate() {
            assert!(log.covers(*end, i as u64 + 1).is_ok());
        }
        // Mid-line, or a count that disagrees with the bytes, is not a point the log has.
        assert!(log.covers(ends[1] - 1, 2).is_err());
        assert!(log.covers(ends[1], 3).is_err());
        assert_eq!(log.covers(ends[3] + 10, 5).unwrap_err().summary, "events.jsonl cut short");
    }

    #[test]
    fn damage_refuses_the_checkpoints_after_it_and_names_the_line() {
        let scratch = test_support::scratch("damaged-log");
        let dir = scratch.path();
        let ends = write_log(dir, "r", 5);
        let path = dir.join(files::EVENTS);
        let text = std::fs::read_to_string(&path).unwrap();
        // A changed digit in line 3 (seq 2).
        let start = ends[1] as usize;
        let line3 = &text[start..ends[2] as usize];
        let changed = text[..start].to_string()
            + &line3.replacen("\"bin\":2", "\"bin\":7", 1)
            + &text[ends[2] as usize..];
        std::fs::write(&path, changed).unwrap();
        let log = IntactLog::read(dir, "r").unwrap();
        assert!(log.covers(ends[1], 2).is_ok(), "checkpoints before the damage stay usable");
        let refusal = log.covers(ends[3], 4).unwrap_err();
        assert_eq!(refusal.summary, "events.jsonl checksum mismatch");
        assert!(refusal.reason.contains("events.jsonl line 3: checksum mismatch"), "{}", refusal.reason);

        // Another run's line, or one out of sequence, is damage too.
        write_log(dir, "someone-else", 2);
        let log = IntactLog::read(dir, "r").unwrap();
        assert_eq!(log.covers(ends[0], 1).unwrap_err().summary, "events.jsonl holds another run's event");

        std::fs::remove_file(&path).unwrap();
        let log = IntactLog::read(dir, "r").unwrap();
        assert!(log.covers(0, 0).is_ok());
        let refusal = log.covers(ends[0], 1).unwrap_err();
        assert_eq!(refusal.summary, "events.jsonl missing");
    }

    #[test]
    fn a_torn_last_line_is_not_damage_but_not_covered_either() {
        let scratch = test_support::scratch("torn-log");
        let dir = scratch.path();
        let ends = write_log(dir, "r", 3);
        let path = dir.join(files::EVENTS);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..ends[2] as usize - 5]).unwrap();
        let log = IntactLog::read(dir, "r").unwrap();
        assert!(log.covers(ends[1], 2).is_ok());
        assert_eq!(log.covers(ends[2], 3).unwrap_err().summary, "events.jsonl cut short");
    }
}
