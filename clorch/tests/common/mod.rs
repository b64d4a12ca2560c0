//! What the `clorch` binary's end-to-end tests share: running the binary and a scratch folder.
//! Each test file uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Two methods × two seeds on a small synthetic stream: seconds per run.
pub const SMALL: &str = "
stream: {kind: synthetic_permuted, tasks: 3, classes: 4, dim: 16, train_per_class: 30, test_per_class: 10}
network: {hidden: [16]}
training: {batch_size: 8, epochs: 2}
methods:
  - {name: sgd, lr: 0.05}
  - {name: l2, lr: 0.05, weight_decay: 0.001}
seeds: 2
";

/// The binary under test.
pub const CLORCH: &str = env!("CARGO_BIN_EXE_clorch");

/// Runs `clorch args…` and waits for it.
pub fn clorch(args: &[&str]) -> Output {
    clorch_env(args, &[])
}

/// Runs `clorch args…` with extra environment variables and waits for it.
pub fn clorch_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(CLORCH);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch folder per test (`test_support::scratch`), removed with it.
pub struct Scratch(pub test_support::TempDir);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        Scratch(test_support::scratch(name))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A recipe `name` with `body`, writing to `results-<name>`.
    pub fn recipe(&self, name: &str, body: &str) -> PathBuf {
        let output = self.path(&format!("results-{name}"));
        self.write(&format!("{name}.yaml"), &format!("name: {name}\noutput: {}\n{body}", output.display()))
    }
}
