//! Issue 16, Unix conventions: a command whose reader has gone (`clorch … | head -1`) ends
//! quietly — exit status 0 (or 141, killed by SIGPIPE, as other tools), nothing on standard
//! error, never a panic — and an output that fails otherwise is an error with a reason, not a
//! panic. The pipes are real: their reading end is closed before clorch writes.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

mod common;
use common::{text, Scratch, CLORCH, SMALL};

/// Runs `clorch args…` with standard output a pipe whose reading end is already closed.
fn into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(CLORCH).args(args).stdout(Stdio::from(writer)).stderr(Stdio::piped()).output().unwrap()
}

fn assert_quiet_end(args: &[&str], out: &Output) {
    let ok = out.status.code() == Some(0) || out.status.signal() == Some(13);
    assert!(ok, "clorch {args:?}: {:?}\n{}", out.status, text(&out.stderr));
    assert!(out.stderr.is_empty(), "clorch {args:?} said: {}", text(&out.stderr));
}

#[test]
fn every_printing_command_ends_quietly_on_a_closed_pipe() {
    let s = Scratch::new("pipes");
    let recipe = s.recipe("small", SMALL);
    let recipe = recipe.to_str().unwrap();
    let out = Command::new(CLORCH).args(["run", recipe, "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results = s.path("results-small");
    let results = results.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["validate", "../recipes/quickstart.yaml", "seeds=3000"],
        vec!["validate", recipe],
        vec!["report", results, "--runs"],
        vec!["report", results],
        vec!["compare", results, results],
        vec!["status", results],
        vec!["methods"],
        vec!["run", recipe, "-q"],
    ];
    for args in commands {
        let out = into_closed_pipe(&args);
        // `compare` of a folder with itself is refused before anything is printed.
        if args[0] == "compare" {
            assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
            continue;
        }
        assert_quiet_end(&args, &out);
    }
}

#[test]
fn an_output_that_fails_otherwise_is_an_error_not_a_panic() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        test_support::missing("/dev/full", "a Linux system provides it");
        return;
    };
    let out = Command::new(CLORCH).arg("methods").stdout(Stdio::from(full)).output().unwrap();
    assert_eq!(out.status.code(), Some(74), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("cannot write to standard output"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
