//! Standard output and standard error for every command, with the Unix conventions (ripgrep's
//! habit): a reader that goes away (`clorch validate … | head -1`) ends the output quietly with
//! exit status 0, and no output error is ever a panic. `std`'s `print!` panics on a failed
//! write, so the crate root shadows `println!` and `print!` with a compile error and `eprintln!`
//! with [`error_line`]: every write to standard output goes through [`print()`] or
//! [`with_stdout`] and its error ends the command through [`OutputError::exit_code`].

use std::fmt;
use std::io::{self, Write};

use crate::cli::exit;

/// Standard output could not take the command's output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader closed the pipe: it has what it wanted.
    #[error("standard output was closed")]
    Closed,
    /// Writing failed otherwise (a full disk, an I/O error).
    #[error("cannot write to standard output: {0}")]
    Failed(io::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Failed(e)
        }
    }
}

impl OutputError {
    /// The exit status the command ends with: 0 after a closed pipe, with nothing said;
    /// [`exit::OUTPUT`] otherwise, with the reason on standard error.
    pub fn exit_code(self, command: &str) -> i32 {
        match self {
            OutputError::Closed => exit::OK,
            failed @ OutputError::Failed(_) => {
                error_line(format_args!("clorch {command}: {failed}"));
                exit::OUTPUT
            }
        }
    }
}

/// Writes `text` to standard output and flushes it.
pub fn print(text: impl fmt::Display) -> Result<(), OutputError> {
    with_stdout(|out| write!(out, "{text}"))
}

/// Runs `fill` on the locked standard output, then flushes it.
pub fn with_stdout(fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    fill(&mut out)?;
    out.flush()?;
    Ok(())
}

/// Writes one line to standard error, ignoring a failure: there is nowhere left to report it,
/// and a diagnostic must not turn into a panic (what `eprintln!` does on a closed pipe).
pub fn error_line(text: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(text).and_then(|()| err.write_all(b"\n"));
}
