//! `clorch bench`: the speed targets, measured on this machine.

use std::path::PathBuf;

use super::exit;
use crate::bench::{self, BenchOptions};
use crate::output;

/// Arguments of `clorch bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Shorter measurements (noisier numbers).
    #[arg(long)]
    pub quick: bool,
    /// Only these parts, comma-separated: p1 (regression µs/example), p2 (MLP samples/s),
    /// p3 (parallel sweep), p4 (1,000-task stream memory), p5 (`clorch serve` on 200 runs ×
    /// 1,000 tasks), p6 (event lines ingested per second), p7 (conv-net samples/s), p8 (conv nets with
    /// `training.threads`: the speed-up by the wall clock).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Scratch folder for the sweep and the long stream (default: a folder in the system's
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// A Python with PyTorch installed: P7 times PyTorch's conv nets on one thread in the same
    /// run (`OMP_NUM_THREADS=1`) instead of showing the committed figures of this machine kind.
    #[arg(long, value_name = "PYTHON")]
    pub torch: Option<PathBuf>,
}

/// Prints the benchmark table; exits 1 when a target is missed.
pub fn run(args: &BenchArgs) -> i32 {
    let (scratch, remove) = match &args.scratch {
        Some(p) => (p.clone(), false),
        None => (std::env::temp_dir().join(format!("clorch-bench-{}", std::process::id())), true),
    };
    let options = BenchOptions {
        quick: args.quick,
        only: args.only.clone(),
        scratch: scratch.clone(),
        torch: args.torch.clone(),
    };
    if let Err(e) = output::print(format_args!("{}\n", bench::header())) {
        return e.exit_code("bench");
    }
    // A closed output stops the printing, not the measurements' clean-up.
    let mut unprinted: Option<output::OutputError> = None;
    let result = bench::run(&options, |row| {
        if unprinted.is_none() {
            unprinted = output::print(format_args!("{}\n", bench::row_line(row))).err();
        }
    });
    if remove {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    if let Some(e) = unprinted {
        return e.exit_code("bench");
    }
    match result {
        Ok(rows) if rows.iter().all(|r| r.met) => exit::OK,
        Ok(rows) => {
            let missed: Vec<&str> = rows.iter().filter(|r| !r.met).map(|r| r.id).collect();
            eprintln!("targets missed: {}", missed.join(", "));
            exit::RUNS_FAILED
        }
        Err(e) => {
            eprintln!("clorch bench: {e}");
            exit::BAD_INPUT
        }
    }
}
