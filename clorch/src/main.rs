//! `clorch`: the command line over the runner, the report and the worker engine. Parses the
//! arguments, calls the command, exits with its status; the commands are in [`cli`].

mod bench;
mod builtin;
mod cli;
mod logging;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    std::process::exit(cli::run(cli));
}
