//! Asking an external worker what it implements (`<command> --describe`), once per command.
//!
//! A recipe is validated on every `clorch validate`, `run` and `status`; starting a Python
//! interpreter (which may import PyTorch) each time would cost seconds. Descriptions are
//! therefore cached on disk, keyed by the command, its folder and the size and modification
//! time of every file the command names (the interpreter, the script): editing the worker
//! asks it again, anything else reads the cache.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use protocol::describe::WorkerDescription;
use protocol::WorkerCommand;

use super::command::{program, shown};

/// How long a worker may take to describe itself.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a description may print; more is not a description.
const MAX_DESCRIPTION: usize = 1 << 20;

/// A description, or why there is none.
type Described = Result<Arc<WorkerDescription>, String>;

/// The description of `worker`: from this process's memo, the disk cache, or by running
/// `<command> --describe`. The error is one line naming the command and what went wrong.
pub fn describe(worker: &WorkerCommand) -> Described {
    static MEMO: OnceLock<Mutex<HashMap<String, Described>>> = OnceLock::new();
    let key = cache_key(worker);
    let memo = MEMO.get_or_init(Default::default);
    if let Some(known) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return known.clone();
    }
    let cache = cache_dir().map(|dir| dir.join(format!("{key}.json")));
    let cached = cache.as_ref().and_then(|path| std::fs::read(path).ok()).and_then(|bytes| {
        serde_json::from_slice::<WorkerDescription>(&bytes).ok().filter(|d| checked(worker, d).is_ok())
    });
    let result = match cached {
        Some(description) => Ok(Arc::new(description)),
        None => ask(worker).map(|description| {
            if let Some(path) = &cache {
                store(path, &description);
            }
            Arc::new(description)
        }),
    };
    memo.lock().unwrap_or_else(|e| e.into_inner()).insert(key, result.clone());
    result
}

/// Runs `<command> --describe` in the worker's folder and reads its answer.
fn ask(worker: &WorkerCommand) -> Result<WorkerDescription, String> {
    let line = format!("`{} --describe`", shown(worker));
    let mut child = Command::new(program(worker))
        .args(&worker.command[1..])
        .arg("--describe")
        .current_dir(&worker.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("{line} in {}: cannot start {}: {e}", worker.dir.display(), worker.command[0])
        })?;
    // Both pipes are drained on threads so that a chatty worker cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_DESCRIPTION as u64 + 1).read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < DESCRIBE_TIMEOUT => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{line} did not answer within {} s", DESCRIBE_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("{line}: {e}")),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    let last_words = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    if !status.success() {
        let code =
            status.code().map_or_else(|| "was killed by a signal".to_string(), |c| format!("exited {c}"));
        let said = if last_words.is_empty() { String::new() } else { format!(": {last_words}") };
        return Err(format!("{line} {code}{said}"));
    }
    if out.len() > MAX_DESCRIPTION {
        return Err(format!(
            "{line} printed more than {MAX_DESCRIPTION} bytes; a description is one JSON document"
        ));
    }
    let description: WorkerDescription = serde_json::from_slice(&out).map_err(|e| {
        format!("{line} printed no worker description ({e}); expected the JSON of docs/schemas/worker-description.schema.json")
    })?;
    checked(worker, &description)?;
    Ok(description)
}

/// What serde cannot check: the version, and names that are unique and non-empty.
fn checked(worker: &WorkerCommand, d: &WorkerDescription) -> Result<(), String> {
    let line = format!("`{} --describe`", shown(worker));
    if d.protocol != protocol::PROTOCOL_VERSION {
        return Err(format!(
            "{line} speaks protocol {}; this clorch speaks protocol {}",
            d.protocol,
            protocol::PROTOCOL_VERSION
        ));
    }
    if d.methods.is_empty() {
        return Err(format!("{line} describes no methods"));
    }
    for (i, m) in d.methods.iter().enumerate() {
        if m.kind.is_empty() || d.methods[..i].iter().any(|o| o.kind == m.kind) {
            return Err(format!("{line}: method kind {:?} is empty or listed twice", m.kind));
        }
        for (j, p) in m.params.iter().enumerate() {
            if p.name.is_empty() || m.params[..j].iter().any(|o| o.name == p.name) {
                return Err(format!(
                    "{line}: method `{}` lists parameter {:?} twice or empty",
                    m.kind, p.name
                ));
            }
            if let Some(default) = &p.default {
                if !p.ty.admits(default) {
                    return Err(format!(
                        "{line}: method `{}`, parameter `{}`: the default {default} is not {}",
                        m.kind,
                        p.name,
                        p.ty.name()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The cache key: BLAKE3 over the command, its folder, and the size and modification time of
/// every file it names (arguments resolved against the folder, the program also on `PATH`).
fn cache_key(worker: &WorkerCommand) -> String {
    let mut hasher = blake3::Hasher::new();
    let text = serde_json::to_string(worker).unwrap_or_default();
    hasher.update(text.as_bytes());
    let mut files: Vec<PathBuf> = worker.command.iter().map(|arg| worker.dir.join(arg)).collect();
    if let Some(found) = on_path(&worker.command[0]) {
        files.push(found);
    }
    for file in files {
        if let Ok(meta) = std::fs::metadata(&file) {
            if meta.is_file() {
                let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                let stamp =
                    format!("\n{}:{}:{}", file.display(), meta.len(), modified.map_or(0, |d| d.as_nanos()));
                hasher.update(stamp.as_bytes());
            }
        }
    }
    hasher.finalize().to_hex()[..32].to_string()
}

/// `name` found in a folder of `PATH`, when it is a bare name.
fn on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// `$XDG_CACHE_HOME/clorch/workers`, or `~/.cache/clorch/workers`; `None` when neither can be
/// named (then nothing is cached).
fn cache_dir() -> Option<PathBuf> {
    let base =
        std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| Path::new(&h).join(".cache"))
        })?;
    Some(base.join("clorch").join("workers"))
}

/// Writes the cache entry through a temporary file and a rename, so a reader never sees half
/// of it. Failing to cache costs only time, so failures are logged, not reported.
fn store(path: &Path, description: &WorkerDescription) {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(description).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        tracing::debug!(target: "workers", "not caching a worker description at {}: {e}", path.display());
    }
}
