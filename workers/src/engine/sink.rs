//! Where a run's events go: sealed JSON lines ([`crate::protocol::line`]) on the worker's
//! standard output (read live by the orchestrator) and appended to `events.jsonl` in the run
//! folder (the durable record the store can be rebuilt from).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::protocol::{Event, EventBody};

/// Numbers events and writes them out.
pub struct EventSink {
    run: String,
    next_seq: u64,
    out: Box<dyn Write + Send>,
    log: Option<EventLog>,
    line: Vec<u8>,
}

struct EventLog {
    path: PathBuf,
    file: File,
    len: u64,
}

impl EventSink {
    /// A sink for run `run` writing to `out` and, with a run folder, to its `events.jsonl`
    /// (created or truncated to `log_len` bytes: on resume, events after the checkpoint are
    /// dropped because the worker emits them again).
    pub fn new(
        run: &str,
        out: Box<dyn Write + Send>,
        run_dir: Option<&Path>,
        next_seq: u64,
        log_len: u64,
    ) -> io::Result<Self> {
        let log = match run_dir {
            None => None,
            Some(dir) => {
                let path = dir.join(crate::protocol::files::EVENTS);
                let file =
                    OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&path)?;
                let existing = file.metadata()?.len();
                if existing < log_len {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} holds {existing} bytes but the checkpoint recorded {log_len}; the log was \
                             truncated behind the checkpoint's back",
                            path.display()
                        ),
                    ));
                }
                file.set_len(log_len)?;
                let mut log = EventLog { path, file, len: log_len };
                io::Seek::seek(&mut log.file, io::SeekFrom::Start(log_len))?;
                Some(log)
            }
        };
        Ok(EventSink { run: run.to_string(), next_seq, out, log, line: Vec::with_capacity(256) })
    }

    /// Sequence number the next event will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes in `events.jsonl` so far (0 without a run folder).
    pub fn log_len(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.len)
    }

    /// Emits one event.
    pub fn emit(&mut self, body: EventBody) -> io::Result<()> {
        let event = Event { run: self.run.clone(), seq: self.next_seq, body };
        self.line.clear();
        crate::protocol::line::encode_into(&event, &mut self.line);
        if let Some(log) = &mut self.log {
            log.file.write_all(&self.line)?;
            log.len += self.line.len() as u64;
        }
        // Flushed per event: the orchestrator shows progress live, and events are per task or
        // per bin, never per step.
        self.out.write_all(&self.line)?;
        self.out.flush()?;
        self.next_seq += 1;
        Ok(())
    }

    /// Makes everything emitted so far durable (before a checkpoint refers to it) and visible.
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if let Some(log) = &mut self.log {
            log.file
                .sync_data()
                .map_err(|e| io::Error::new(e.kind(), format!("syncing {}: {e}", log.path.display())))?;
        }
        Ok(())
    }
}
