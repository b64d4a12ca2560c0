use clap::Parser;

fn main() {
    let cli = orchestrator::cli::Cli::parse();
    std::process::exit(orchestrator::cli::run(cli));
}
