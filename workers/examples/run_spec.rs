//! Runs one run spec in this process and prints its events — the worker engine without the
//! orchestrator, for quick experiments on the engine itself:
//! `cargo run -p clorch-workers --example run_spec -- workers/examples/specs/permuted-mnist-sgd.json`
//! (`clorch worker --spec …` does the same from the main binary.)

use std::io::BufWriter;

use workers::engine::{self, RunControl};
use workers::protocol::RunSpec;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: run_spec <spec.json>");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2)
    });
    let spec: RunSpec = serde_json::from_str(&text).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2)
    });
    let out = Box::new(BufWriter::new(std::io::stdout()));
    if let Err(e) = engine::run(&spec, out, &RunControl::default()) {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    }
}
