//! An in-memory `Write` for a run's event stream, readable after the run.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A `Write` whose bytes can be read after the run (clones share the buffer, so one clone goes
/// to the engine and the test keeps the other).
#[derive(Clone, Debug, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
