//! P6 — ingest: how many worker event lines the orchestrator takes in per second of CPU on one
//! core, the path every line of every worker (built-in or external) follows: the seal checked
//! and the line parsed ([`protocol::line::decode`]), the event stored under `(run, seq)` in
//! the experiment's sled store ([`runner::store::Store::ingest`], which also refuses a changed
//! event), and the run's progress updated ([`results::RunRecord::observe`]). The store is a
//! real one on disk, written with the orchestrator's small page cache, and flushed at the end.

use std::path::Path;
use std::time::Instant;

use protocol::{line, Event, EventBody};
use results::{RunLabels, RunRecord};

use super::Row;

/// Events per second of CPU the target asks for.
const TARGET: f64 = 200_000.0;

/// The benchmark's row.
pub fn ingest(scratch: &Path, quick: bool) -> Result<Vec<Row>, String> {
    let runs = 8;
    let per_run: u64 = if quick { 25_000 } else { 125_000 };
    let dir = scratch.join("p6");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let store = runner::store::Store::open_for_writing(&dir).map_err(|e| e.to_string())?;

    // The lines as workers print them: mostly online bins and accuracy-matrix entries.
    let mut records = Vec::new();
    let mut lines: Vec<String> = Vec::with_capacity(runs * per_run as usize);
    for r in 0..runs {
        let spec = test_like_spec(r);
        records.push(RunRecord::new(r as u64, spec.clone(), labels(&spec), 1000));
        for seq in 0..per_run {
            let task = (seq / 100) as usize;
            let body = if seq % 3 == 2 {
                EventBody::Eval {
                    after_task: Some(task),
                    on_task: (seq % 97) as usize,
                    examples: 2000,
                    loss: 0.25 + seq as f64 * 1e-7,
                    accuracy: Some(0.9 - (seq % 101) as f64 * 1e-3),
                    variant: None,
                }
            } else {
                EventBody::Online {
                    task,
                    bin: (seq % 100) as usize,
                    examples: 500,
                    loss: 0.5 + seq as f64 * 1e-7,
                    accuracy: Some(0.8 + (seq % 89) as f64 * 1e-3),
                }
            };
            lines.push(line::encode(&Event { run: spec.id.clone(), seq, body }));
        }
    }

    let cpu = workers::bench::cpu_seconds();
    let wall = Instant::now();
    for (i, text) in lines.iter().enumerate() {
        let event = line::decode(text.as_bytes()).map_err(|e| format!("line {i}: {e}"))?;
        store.ingest(&event).map_err(|e| e.to_string())?;
        records[i / per_run as usize].observe(&event, None);
    }
    store.flush().map_err(|e| e.to_string())?;
    let cpu = workers::bench::cpu_seconds() - cpu;
    let wall = wall.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);

    let events = lines.len() as f64;
    let rate = events / cpu.max(1e-9);
    Ok(vec![Row {
        id: "P6",
        workload: format!(
            "ingest {} sealed event lines ({runs} runs): check, parse, store, progress",
            lines.len()
        ),
        clorch: format!("{rate:.0} events/s of CPU ({:.0} events/s wall)", events / wall.max(1e-9)),
        reference: "—".into(),
        target: format!("≥ {TARGET:.0} events/s on one core"),
        met: rate >= TARGET,
    }])
}

fn labels(spec: &protocol::RunSpec) -> RunLabels {
    RunLabels { stream: "bench".into(), method: "sgd".into(), grid: Default::default(), seed: spec.seed }
}

/// A spec with a distinct id per run.
fn test_like_spec(r: usize) -> protocol::RunSpec {
    let mut spec = workers::bench::regression_spec("sgd", serde_json::json!({"lr": 0.01}), 3);
    spec.seed = r as u64;
    spec.id = spec.content_id();
    spec
}
