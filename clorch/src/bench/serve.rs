//! P5 — `clorch serve` on a big experiment: 200 runs × 1,000 tasks (~4,000 events each),
//! written as a `clorch run` writes them. Measured with the real binary in its own process:
//! the time from starting it to the first page and the experiment's view being served, how
//! long an appended event takes to show, and the server's CPU while runs go on writing and a
//! page polls it as the dashboard does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{line, Event, EventBody, LayerPlasticity};
use results::{
    run_dir, write_experiment_files, write_run_record, ExperimentMeta, RunLabels, RunRecord, RunStatus,
};

use super::Row;

const RUNS: usize = 200;
const TASKS: usize = 1000;
/// Runs still "running" while the CPU is measured: they receive events.
const LIVE: usize = 8;

/// The benchmark's rows.
pub fn dashboard(scratch: &Path, quick: bool) -> Result<Vec<Row>, String> {
    let dir = scratch.join("p5").join("results");
    let _ = std::fs::remove_dir_all(scratch.join("p5"));
    let (ids, events, mut next_seq) = write_experiment(&dir)?;

    let start = Instant::now();
    let mut child = Command::new(super::clorch_exe()?)
        .args(["serve", dir.to_str().unwrap_or_default(), "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting clorch serve: {e}"))?;
    let pid = child.id();
    let mut first = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    BufReader::new(stdout).read_line(&mut first).map_err(|e| e.to_string())?;
    let port: u16 = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("clorch serve printed {first:?}"))?;
    let measured = (|| {
        get(port, "/")?;
        let view = get(port, "/api/experiments/0")?;
        let first_page = start.elapsed();
        if !view.contains(&ids[0]) {
            return Err("the first view lacks the runs".to_string());
        }

        // Every run's events read (the first page came before them).
        loop {
            let view: serde_json::Value =
                serde_json::from_str(&get(port, "/api/experiments/0")?).map_err(|e| e.to_string())?;
            let rows = view["runs"].as_array().map(Vec::as_slice).unwrap_or_default();
            if rows.len() == RUNS && rows.iter().all(|r| r["task"].as_u64() >= Some(TASKS as u64 - 1)) {
                break;
            }
            if start.elapsed() > Duration::from_secs(300) {
                return Err("the events were not all read in 300 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let loaded = start.elapsed();

        // Latency: an event appended to a running run, until the run's view has it.
        let mut worst = Duration::ZERO;
        for round in 0..5 {
            let (k, id) = (round % LIVE, &ids[round % LIVE]);
            let before = online_reach(&get(port, &format!("/api/experiments/0/runs/{id}"))?);
            let written = Instant::now();
            append(&dir, id, next_seq[k], &[online(TASKS - 1, 1 + round)])?;
            next_seq[k] += 1;
            loop {
                let now = online_reach(&get(port, &format!("/api/experiments/0/runs/{id}"))?);
                if now > before {
                    worst = worst.max(written.elapsed());
                    break;
                }
                if written.elapsed() > Duration::from_secs(30) {
                    return Err(format!("an appended event did not show in 30 s (run {id})"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        // CPU: LIVE runs write an event a second each, a page polls every second.
        let window = Duration::from_secs(if quick { 5 } else { 20 });
        let cpu_before = cpu_seconds(pid)?;
        let wall = Instant::now();
        let mut version = 0u64;
        let mut polls = 0u32;
        let (mut view_time, mut table_time) = (Duration::ZERO, Duration::ZERO);
        while wall.elapsed() < window {
            for (k, id) in ids.iter().take(LIVE).enumerate() {
                append(&dir, id, next_seq[k], &[online(TASKS - 1, 10 + next_seq[k] as usize)])?;
                next_seq[k] += 1;
            }
            let asked = Instant::now();
            let view: serde_json::Value =
                serde_json::from_str(&get(port, &format!("/api/experiments/0?since={version}"))?)
                    .map_err(|e| e.to_string())?;
            view_time += asked.elapsed();
            version = view["version"].as_u64().unwrap_or(version);
            // The page asks for the comparison table every third second.
            if polls.is_multiple_of(3) {
                let asked = Instant::now();
                get(port, "/api/experiments/0/table")?;
                table_time = table_time.max(asked.elapsed());
            }
            polls += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        let cpu = (cpu_seconds(pid)? - cpu_before) / wall.elapsed().as_secs_f64();
        eprintln!(
            "P5: a view took {:.1} ms on average, the slowest table {:.0} ms",
            view_time.as_secs_f64() * 1e3 / f64::from(polls.max(1)),
            table_time.as_secs_f64() * 1e3
        );
        Ok((first_page, loaded, worst, cpu))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(scratch.join("p5"));
    let (first_page, loaded, worst, cpu) = measured?;
    let workload = format!("`clorch serve`, {RUNS} runs × {TASKS} tasks ({events} events)");
    Ok(vec![
        Row {
            id: "P5",
            workload: format!("{workload}: start to first page and view"),
            clorch: format!(
                "{:.2} s (every event read after {:.1} s)",
                first_page.as_secs_f64(),
                loaded.as_secs_f64()
            ),
            reference: "—".into(),
            target: "≤ 1 s".into(),
            met: first_page <= Duration::from_secs(1),
        },
        Row {
            id: "P5",
            workload: format!("{workload}: an appended event visible (worst of 5)"),
            clorch: format!("{:.2} s", worst.as_secs_f64()),
            reference: "—".into(),
            target: "≤ 2 s".into(),
            met: worst <= Duration::from_secs(2),
        },
        Row {
            id: "P5",
            workload: format!("{workload}: server CPU, {LIVE} runs writing, a page polling each second"),
            clorch: format!("{:.1}% of a core", 100.0 * cpu),
            reference: "—".into(),
            target: "< 5%".into(),
            met: cpu < 0.05,
        },
    ])
}

fn online(task: usize, bin: usize) -> EventBody {
    EventBody::Online { task, bin, examples: 1000, loss: 0.5, accuracy: Some(0.5 + (task % 7) as f64 * 0.05) }
}

/// Writes the experiment: per run `started`; per task `task_started`, an online bin, the
/// accuracy of the task and of the one before; plasticity every 10 tasks; `finished` for all
/// but the first [`LIVE`] runs, which stay running. Returns the run ids, the events written and
/// each live run's next sequence number.
fn write_experiment(dir: &Path) -> Result<(Vec<String>, usize, Vec<u64>), String> {
    let err = |e: results::FolderError| e.to_string();
    let spec_text = r#"{"protocol":1,"id":"000000000000","experiment":"bench","seed":0,"stream":{"synthetic_permuted":{"tasks":1000}},"network":{"hidden":[64],"activation":"relu","heads":"shared","engine":"fused"},"method":{"name":"sgd","kind":"sgd","params":{"lr":0.01}},"training":{"batch_size":32,"epochs":1},"eval":{"every":1,"tasks":"all","before_training":false},"checkpoint":{"keep":2}}"#;
    let mut ids = Vec::new();
    let mut written = 0;
    let mut next_seq = Vec::new();
    let mut meta = ExperimentMeta::new("bench-serve", "name: bench-serve\n", results::unix_now());
    for r in 0..RUNS {
        let id = format!("{r:012x}");
        let mut spec: protocol::RunSpec = serde_json::from_str(spec_text).map_err(|e| e.to_string())?;
        spec.id = id.clone();
        spec.seed = (r % 20) as u64;
        let method = format!("method{}", r / 20);
        let labels = RunLabels { stream: "bench".into(), method, grid: Default::default(), seed: spec.seed };
        let mut record = RunRecord::new(r as u64, spec, labels, TASKS);
        record.attempts = 1;
        record.status = if r < LIVE { RunStatus::Running } else { RunStatus::Finished };
        record.times.last_started = Some(results::unix_now());
        let folder = run_dir(dir, &id);
        write_run_record(&folder, &record).map_err(err)?;
        let mut bodies = vec![EventBody::Started {
            protocol: 1,
            tasks: TASKS,
            inputs: 64,
            outputs: 10,
            heads: 1,
            parameters: 4810,
            problem: "classification".into(),
        }];
        for t in 0..TASKS {
            bodies.push(EventBody::TaskStarted { task: t, head: 0, train_examples: 1000 });
            bodies.push(online(t, 0));
            for on in t.saturating_sub(1)..=t {
                if t > 0 || on == t {
                    let accuracy = Some(0.9 - 0.1 * (t - on) as f64);
                    bodies.push(EventBody::Eval {
                        after_task: Some(t),
                        on_task: on,
                        examples: 200,
                        loss: 0.3,
                        accuracy,
                        variant: None,
                    });
                }
            }
            if t % 10 == 9 {
                let layer = LayerPlasticity {
                    units: 64,
                    dead: 0.1,
                    dormant: 0.2,
                    effective_rank: 30.0,
                    stable_rank: 20,
                    mean_abs_weight: 0.1,
                };
                bodies.push(EventBody::Plasticity {
                    after_tasks: t + 1,
                    probe_task: t,
                    probe_examples: 100,
                    layers: vec![layer],
                    mean_abs_weight: 0.1,
                });
            }
        }
        if r < LIVE {
            next_seq.push(bodies.len() as u64);
        } else {
            bodies.push(EventBody::Finished { tasks: TASKS, steps: 31_000, examples: 1_000_000 });
        }
        written += bodies.len();
        append(dir, &id, 0, &bodies)?;
        meta.runs.push(id.clone());
        ids.push(id);
    }
    write_experiment_files(dir, &meta).map_err(err)?;
    Ok((ids, written, next_seq))
}

fn append(dir: &Path, id: &str, first_seq: u64, bodies: &[EventBody]) -> Result<(), String> {
    let mut bytes = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let event = Event { run: id.to_string(), seq: first_seq + i as u64, body: body.clone() };
        line::encode_into(&event, &mut bytes);
    }
    let path = run_dir(dir, id).join(protocol::files::EVENTS);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn get(port: u16, target: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    write!(stream, "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let (head, body) = reply.split_once("\r\n\r\n").ok_or("no reply")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{target}: {}", head.lines().next().unwrap_or_default()));
    }
    Ok(body.to_string())
}

/// How far a run view's online curve reaches, in examples.
fn online_reach(run_view: &str) -> f64 {
    serde_json::from_str::<serde_json::Value>(run_view)
        .ok()
        .and_then(|v| v["online"]["x"].as_array().and_then(|x| x.last()).and_then(serde_json::Value::as_f64))
        .unwrap_or(0.0)
}

/// User + system CPU seconds of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(ticks / 100.0)
}
