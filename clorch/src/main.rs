//! `clorch`: the command line over the runner, the report and the worker engine. Parses the
//! arguments, calls the command, exits with its status; the commands are in [`cli`].

// Output goes through `output` (a closed pipe ends quietly, no output error panics); these
// shadow `std`'s macros for the whole crate, so a stray `println!` does not compile.
macro_rules! eprintln {
    ($($arg:tt)*) => { $crate::output::error_line(format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! println {
    ($($arg:tt)*) => {
        compile_error!("write standard output through crate::output (closed pipes, no panics)")
    };
}
#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => {
        compile_error!("write standard output through crate::output (closed pipes, no panics)")
    };
}

mod bench;
mod builtin;
mod cli;
mod logging;
mod output;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    std::process::exit(cli::run(cli));
}
