//! The command line: argument types and the dispatch to each command's library code.

pub mod worker;

use clap::{Parser, Subcommand};

/// clorch — continual-learning experiments: recipes in, runs on workers, comparison tables out.
#[derive(Debug, Parser)]
#[command(name = "clorch", version, about, long_about = None)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one run from a spec (started by `clorch run`; also usable by hand).
    Worker(worker::WorkerArgs),
    /// List the continual-learning methods and their parameters with defaults.
    Methods,
}

/// Runs the command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Worker(args) => worker::run(&args),
        Command::Methods => {
            print!("{}", methods_table());
            0
        }
    }
}

/// The `clorch methods` listing.
pub fn methods_table() -> String {
    let mut out = String::new();
    for m in workers::method::registry() {
        out.push_str(&format!("{:<16} {}\n", m.kind, m.summary));
        let optimizer = match m.default_optimizer {
            workers::optim::OptimizerKind::Sgd => "sgd",
            workers::optim::OptimizerKind::Adam => "adam",
        };
        let choice = if m.optimizer_choice { " (optimizer: sgd | adam)" } else { "" };
        out.push_str(&format!("{:<16}   optimizer {optimizer}{choice}, lr, …\n", ""));
        for (name, default) in m.own_parameters() {
            out.push_str(&format!("{:<16}   {name} = {default}\n", ""));
        }
    }
    out
}
