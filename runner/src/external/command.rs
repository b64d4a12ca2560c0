//! How an external worker's command line is formed.

use std::path::PathBuf;

use protocol::WorkerCommand;

/// The program to start: a path with a `/` is taken relative to the worker's folder (the
/// recipe's), as the recipe's author meant it; a bare name is looked up on `PATH`.
pub fn program(worker: &WorkerCommand) -> PathBuf {
    let first = &worker.command[0];
    if first.contains('/') {
        worker.dir.join(first)
    } else {
        PathBuf::from(first)
    }
}

/// The command as a shell would show it, for messages.
pub fn shown(worker: &WorkerCommand) -> String {
    worker
        .command
        .iter()
        .map(|arg| {
            let plain =
                !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The arguments an attempt appends to the command (the built-in worker's, without its
/// `worker` subcommand).
pub fn attempt_args(spec: &std::path::Path, watch_stdin: bool, heartbeat: u64) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["--spec".into(), spec.as_os_str().to_owned()];
    if watch_stdin {
        args.push(protocol::control::WATCH_STDIN_FLAG.into());
    }
    args.push("--heartbeat".into());
    args.push(heartbeat.to_string().into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_programs_are_the_recipes_and_bare_names_are_looked_up() {
        let w = |c: &[&str]| WorkerCommand {
            command: c.iter().map(|s| s.to_string()).collect(),
            dir: PathBuf::from("/proj/examples"),
        };
        assert_eq!(
            program(&w(&["./venv/bin/python", "w.py"])),
            PathBuf::from("/proj/examples/./venv/bin/python")
        );
        assert_eq!(program(&w(&["/usr/bin/python3"])), PathBuf::from("/usr/bin/python3"));
        assert_eq!(program(&w(&["python3", "w.py"])), PathBuf::from("python3"));
        assert_eq!(shown(&w(&["python3", "my worker.py", "--x=1"])), "python3 'my worker.py' --x=1");
    }
}
