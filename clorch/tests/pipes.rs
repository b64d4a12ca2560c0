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
    // Nothing but what the command says on any run (`store rebuild` names the store it kept;
    // `compare` notes what differs between the recipes): no word about the pipe.
    let said = text(&out.stderr);
    let extra: Vec<&str> = said
        .lines()
        .filter(|l| !l.starts_with("kept the previous store as ") && !l.starts_with("note: "))
        .collect();
    assert!(extra.is_empty(), "clorch {args:?} said: {said}");
}

#[test]
fn every_printing_command_ends_quietly_on_a_closed_pipe() {
    let s = Scratch::new("pipes");
    let mut folders = Vec::new();
    let mut recipes = Vec::new();
    for name in ["small", "other"] {
        let recipe = s.recipe(name, SMALL);
        let out = Command::new(CLORCH).args(["run", recipe.to_str().unwrap(), "-q"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        recipes.push(recipe.to_str().unwrap().to_string());
        folders.push(s.path(&format!("results-{name}")).to_str().unwrap().to_string());
    }
    let (recipe, results, other) = (recipes[0].as_str(), folders[0].as_str(), folders[1].as_str());
    let plots = s.path("plots");
    let commands: Vec<Vec<&str>> = vec![
        vec!["validate", "../recipes/quickstart.yaml", "seeds=3000"],
        vec!["validate", recipe],
        vec!["report", results, "--runs"],
        vec!["report", results],
        vec!["compare", results, other],
        vec!["status", results],
        vec!["plot", results, "--out", plots.to_str().unwrap()],
        vec!["store", "rebuild", other],
        vec!["methods"],
        vec!["run", recipe, "-q"],
    ];
    for args in commands {
        let out = into_closed_pipe(&args);
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
